"""Each plot writes a PNG and returns the data it draws: series, reference lines, axis labels, the heat map
shown, the t-SNE points; the data are checked exactly against values computed by hand or from the inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spidrkit.data.corpora.alignments import Interval
from spidrkit.evaluation.metrics.units import unit_quality
from spidrkit.evaluation.plots.figures import Series
from spidrkit.evaluation.plots.layers import (
    phone_class,
    phone_embeddings,
    phone_order,
    plot_layer_metrics,
    plot_perplexity,
    plot_phone_given_code,
    plot_tsne,
    read_perplexities,
)
from spidrkit.evaluation.plots.tsne import tsne_points

PHONES = ["AA1", "IY0", "EH1", "T", "K", "S", "SH", "M", "N", "L", "R", "SIL"]
RATE = 50


def is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_phone_classes():
    assert [phone_class(p) for p in ["ah0", "AA1", "T", "JH", "NG", "W", "SIL"]] == [
        "vowels", "vowels", "stops", "fricatives", "nasals", "approximants", "other"]
    assert [["T", "AA", "S", "IY"][i] for i in phone_order(["T", "AA", "S", "IY"], [5, 1, 3, 9])] == [
        "IY", "AA", "T", "S"]


def test_layer_metrics_plot(tmp_path):
    layers = {
        "SpidR": {k: {"abx_within": 8 - 0.5 * k, "abx_across": 10 - 0.5 * k, "map": 20 + 3 * k} for k in range(1, 7)},
        "DinoSR": {str(k): {"abx_within": 9 - 0.4 * k, "abx_across": None if k == 3 else 11 - 0.4 * k,
                            "map": 15 + 2 * k} for k in range(6, 0, -1)},
    }
    baselines = {"mfcc": {"abx_within": 10.9, "abx_across": 20.2, "map": 12.0}, "random": {"map": 1.0}}
    fig = plot_layer_metrics(layers, tmp_path / "layers.png", baselines=baselines, title="layer sweep")
    assert fig.path == tmp_path / "layers.png" and is_png(fig.path) and fig.title == "layer sweep"
    abx_panel, map_panel = fig.panels
    assert (abx_panel.xlabel, abx_panel.ylabel) == ("layer", "ABX error rate (%) ↓")
    assert (map_panel.xlabel, map_panel.ylabel) == ("layer", "MAP over words (%) ↑")
    assert [s.label for s in abx_panel.series] == ["SpidR within", "SpidR across", "DinoSR within", "DinoSR across"]
    assert abx_panel.get("SpidR within") == Series("SpidR within", (1, 2, 3, 4, 5, 6), (7.5, 7.0, 6.5, 6.0, 5.5, 5.0))
    # layers sorted as numbers; the missing value of layer 3 is left out
    assert abx_panel.get("DinoSR across") == Series("DinoSR across", (1, 2, 4, 5, 6),
                                                    tuple(11 - 0.4 * k for k in (1, 2, 4, 5, 6)))
    assert map_panel.series == [Series("SpidR", (1, 2, 3, 4, 5, 6), (23, 26, 29, 32, 35, 38)),
                                Series("DinoSR", (1, 2, 3, 4, 5, 6), (17, 19, 21, 23, 25, 27))]
    assert abx_panel.hlines == {"mfcc within": 10.9, "mfcc across": 20.2}
    assert map_panel.hlines == {"mfcc": 12.0, "random": 1.0}
    with pytest.raises(ValueError, match="no layer results"):
        plot_layer_metrics({}, tmp_path / "none.png")


def test_phone_given_code_plot(tmp_path):
    """By hand: code 0 pairs with AA AA AA AA T T S S, code 1 with S S (2 label frames per unit)."""
    units = {"u": np.array([0, 0, 0, 0, 1])}
    labels = {"u": np.array(["AA1"] * 4 + ["T"] * 2 + ["S"] * 5)}
    q = unit_quality(units, labels, unit_rate=RATE)
    fig = plot_phone_given_code(q, tmp_path / "pgc.png", figsize=(8, 5))
    assert is_png(fig.path) and fig.title == "P(phone | code)"
    # phones by class (vowels, stops, fricatives); codes by their most likely phone: 0 (AA), then 1 (S)
    assert fig.rows == ["AA", "T", "S"] and fig.columns == [0, 1]
    np.testing.assert_array_equal(fig.matrix, [[0.5, 0.0], [0.25, 0.0], [0.25, 1.0]])
    assert fig.panels[0].xlabel == "code (sorted by most likely phone; 2 active codes)"

    # stress variants are summed into one row; the codes keep their ids
    units = {"u": np.array([7, 7, 3, 3])}
    labels = {"u": np.array(["IY0", "IY0", "IY1", "IY1", "K", "K", "K", "K"])}
    fig = plot_phone_given_code(unit_quality(units, labels, unit_rate=RATE), tmp_path / "pgc2.png")
    assert fig.rows == ["IY", "K"] and fig.columns == [7, 3]
    np.testing.assert_array_equal(fig.matrix, [[1.0, 0.0], [0.0, 1.0]])


def _phone_corpus():
    """Two speakers, 12 instances of each phone, each 3 identical frames (a noisy phone centre)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(PHONES), 16))
    phones, speakers, frames = {}, {}, {}
    for spk in ("spk1", "spk2"):
        utt, rows = f"{spk}-utt", []
        phones[utt], speakers[utt] = [], spk
        for _rep in range(12):
            for p, phone in enumerate(PHONES):
                start = len(rows)
                rows += [centres[p] + 0.3 * rng.normal(size=16)] * 3
                phones[utt].append(Interval(start / RATE, (start + 3) / RATE, phone))
        frames[utt] = torch.tensor(np.array(rows), dtype=torch.float32)
    return phones, speakers, frames


def test_phone_embeddings():
    phones, speakers, frames = _phone_corpus()
    # every instance kept: each embedding is the mean of its 3 identical frames, i.e. that frame
    emb, names, spk = phone_embeddings(frames, phones, speakers, frame_rate=RATE, per_speaker_and_phone=12,
                                       progress=False)
    expected = [(utt, iv) for utt, ivs in phones.items() for iv in ivs if iv.label != "SIL"]
    assert names == [iv.label.rstrip("01") for _, iv in expected] and spk == [speakers[u] for u, _ in expected]
    torch.testing.assert_close(emb, torch.stack([frames[u][round(iv.onset * RATE)] for u, iv in expected]),
                               rtol=0, atol=1e-6)
    # sampled: SIL is ignored; 11 phones x 2 speakers x 5 instances, each one of the corpus' instances
    emb, names, spk = phone_embeddings(frames, phones, speakers, frame_rate=RATE, per_speaker_and_phone=5,
                                       progress=False)
    assert emb.shape == (110, 16) and "SIL" not in names and names.count("AA") == 10 and spk.count("spk1") == 55
    every = torch.stack([frames[u][round(iv.onset * RATE)] for u, iv in expected])
    assert torch.cdist(emb, every, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values.max() < 1e-5


def test_tsne_plot(tmp_path):
    phones, speakers, frames = _phone_corpus()
    emb, names, spk = phone_embeddings(frames, phones, speakers, frame_rate=RATE, per_speaker_and_phone=3,
                                       progress=False)
    fig = plot_tsne(emb, names, spk, tmp_path / "tsne.png", figsize=(10, 5))
    assert is_png(fig.path)
    xy = tsne_points(emb, seed=0)  # the same points, computed directly
    by_class, by_speaker = fig.panels
    assert [s.label for s in by_class.series] == ["vowels", "stops", "fricatives", "nasals", "approximants"]
    for s in by_class.series:
        rows = [i for i, p in enumerate(names) if phone_class(p) == s.label]
        np.testing.assert_array_equal(np.column_stack([s.x, s.y]), xy[rows])
    assert by_speaker.title == "by speaker (2)" and [s.label for s in by_speaker.series] == ["spk1", "spk2"]
    np.testing.assert_array_equal(np.column_stack([by_speaker.series[1].x, by_speaker.series[1].y]),
                                  xy[[i for i, s in enumerate(spk) if s == "spk2"]])
    assert len(by_speaker.series[0].x) == 11 * 3


def test_perplexity_plot(tmp_path):
    runs, values = {}, {}
    for name, collapse in (("SpidR", 0.0), ("DinoSR", 1.0)):
        path = tmp_path / f"{name}.jsonl"
        lines = []
        values[name] = []
        for step in range(0, 2000, 100):
            cb = [200 * np.exp(-collapse * step / 1000 * (k + 1) / 8) + 5 for k in range(8)]
            values[name].append(cb)
            lines.append(json.dumps({"step": step, "loss": 1.0, "codebook_ppl": cb,
                                     "prediction_ppl": [c * 0.8 for c in cb]}))
            lines.append(json.dumps({"step": step, "valid_loss": 2.0}))  # other records are skipped
        path.write_text("\n".join(lines) + '\n{"step": 2000, "codebook')  # killed mid-write: skipped
        runs[name] = path
    d = read_perplexities(runs["DinoSR"])
    assert d["step"].tolist() == list(range(0, 2000, 100)) and d["codebook_ppl"].shape == (20, 8)
    assert d["codebook_ppl"][0, 0] == 205.0 and d["prediction_ppl"][0, 0] == pytest.approx(164.0)
    fig = plot_perplexity(runs, tmp_path / "ppl.png", layers=range(5, 13), codebook_size=256)
    assert is_png(fig.path)
    codebook, prediction = fig.panels
    assert (codebook.ylabel, prediction.ylabel) == ("codebook perplexity", "prediction perplexity")
    assert codebook.hlines == prediction.hlines == {"V": 256.0}
    assert [s.label for s in codebook.series] == [f"{r} layer {k}" for r in runs for k in range(5, 13)]
    steps = tuple(float(s) for s in range(0, 2000, 100))
    assert codebook.get("DinoSR layer 12") == Series("DinoSR layer 12", steps, tuple(v[7] for v in values["DinoSR"]))
    assert prediction.get("SpidR layer 5").y == tuple(0.8 * v[0] for v in values["SpidR"])
    with pytest.raises(ValueError, match="3 layer names for 8"):
        plot_perplexity(runs, tmp_path / "bad.png", layers=[1, 2, 3])


def test_report_tables_bold_best_and_links(tmp_path):
    from spidrkit.evaluation.sweep.report import write_report

    plot = plot_layer_metrics({"m": {1: {"map": 1.0}, 2: {"map": 2.0}}}, tmp_path / "figs" / "layers.png")
    results = {
        "info": {"model": "spidr-tiny", "checkpoint": "abc123"},
        "layers": {
            1: {"abx_within": 9.0, "abx_across": 12.0, "map": np.float32(30.0)},
            2: {"abx_within": 7.5, "abx_across": 11.0, "map": 35.123},
            3: {"abx_within": 8.0, "abx_across": 10.0, "map": 33.0},
        },
        "baselines": {"mfcc": {"abx_within": 10.95, "abx_across": 20.16, "map": 5.0}},
        "units": {
            "codebook L2": {"pnmi": 0.6021, "bitrate": 80.0, "phone_given_code": np.eye(2)},
            "kmeans L2": {"pnmi": 0.6331, "bitrate": 90.0},
        },
        "seconds": 12.5,
    }
    json_path, md_path = write_report(tmp_path / "rep", results, [plot], title="Tiny run")
    md = md_path.read_text()
    assert md.startswith("# Tiny run\n")
    assert "| layer | abx_within | abx_across | map |" in md
    assert "| 1 | 9.00 | 12.00 | 30.00 |" in md
    assert "| 2 | **7.50** | 11.00 | **35.12** |" in md
    assert "| 3 | 8.00 | **10.00** | 33.00 |" in md
    assert "| *mfcc* | 10.95 | 20.16 | 5.00 |" in md
    # mean ABX: layer 1 10.5, layer 2 9.25, layer 3 9.0
    assert "Best layer by mean ABX: **3** (9.00 %)." in md
    assert "| codebook L2 | 0.602 | 80.00 |" in md and "| kmeans L2 | **0.633** | 90.00 |" in md
    assert "phone_given_code" not in md
    assert "![layers](../figs/layers.png)" in md
    data = json.loads(json_path.read_text())
    assert data["results"]["layers"]["2"]["map"] == 35.123
    assert data["results"]["units"]["codebook L2"]["phone_given_code"] == [[1.0, 0.0], [0.0, 1.0]]
    assert data["plots"] == ["../figs/layers.png"]
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "rep", results, [tmp_path / "nope.png"])
