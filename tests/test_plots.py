"""Each plot writes a PNG of the expected pixel size; the data helpers behind the plots give known values."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from spidrkit.evaluation.plots import (
    phone_class,
    phone_embeddings,
    phone_order,
    plot_layer_metrics,
    plot_perplexity,
    plot_phone_given_code,
    plot_tsne,
    read_perplexities,
)
from spidrkit.evaluation.unit_metrics import unit_quality
from spidrkit.evaluation.word_map import Segment

PHONES = ["AA1", "IY0", "EH1", "T", "K", "S", "SH", "M", "N", "L", "R", "SIL"]


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    return struct.unpack(">II", data[16:24])


def test_phone_classes():
    assert [phone_class(p) for p in ["ah0", "AA1", "T", "JH", "NG", "W", "SIL"]] == [
        "vowels", "vowels", "stops", "fricatives", "nasals", "approximants", "other"]
    assert [["T", "AA", "S", "IY"][i] for i in phone_order(["T", "AA", "S", "IY"], [5, 1, 3, 9])] == [
        "IY", "AA", "T", "S"]


def test_layer_metrics_plot(tmp_path):
    layers = {
        "SpidR": {k: {"abx_within": 8 - 0.5 * k, "abx_across": 10 - 0.5 * k, "map": 20 + 3 * k} for k in range(1, 7)},
        "DinoSR": {str(k): {"abx_within": 9 - 0.4 * k, "abx_across": 11 - 0.4 * k, "map": 15 + 2 * k}
                   for k in range(1, 7)},
    }
    baselines = {"mfcc": {"abx_within": 10.9, "abx_across": 20.2, "map": 12.0}, "random": {"map": 1.0}}
    out = plot_layer_metrics(layers, tmp_path / "layers.png", baselines=baselines, title="layer sweep")
    assert png_size(out) == (1100, 400)


def test_phone_given_code_plot(tmp_path):
    rng = np.random.default_rng(0)
    seq = rng.integers(0, len(PHONES), 3000)
    units = {"u": np.where(rng.random(3000) < 0.8, seq * 3 + rng.integers(0, 3, 3000), rng.integers(0, 40, 3000))}
    labels = {"u": np.array(PHONES)[np.repeat(seq, 2)]}
    q = unit_quality(units, labels)
    out = plot_phone_given_code(q, tmp_path / "pgc.png", figsize=(8, 5))
    assert png_size(out) == (800, 500)


def test_tsne_plot_and_phone_embeddings(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(PHONES), 16))
    segments, frames = [], {}
    for spk in ("spk1", "spk2"):
        rows = []
        for _rep in range(12):
            for p, phone in enumerate(PHONES):
                start = len(rows)
                rows += [centres[p] + 0.3 * rng.normal(size=16)] * 3
                segments.append(Segment(f"{spk}-utt", start / 50, (start + 3) / 50, phone, spk))
        frames[f"{spk}-utt"] = torch.tensor(np.array(rows), dtype=torch.float32)
    emb, phones, speakers = phone_embeddings(frames, segments, per_speaker_and_phone=5, progress=False)
    # SIL is ignored; 11 phones x 2 speakers x 5 sampled instances
    assert emb.shape == (110, 16) and "SIL" not in phones and phones.count("AA") == 10
    assert speakers.count("spk1") == 55
    # each embedding is the mean of 3 identical frames: close to its phone centre
    aa = emb[[i for i, p in enumerate(phones) if p == "AA"]]
    assert np.abs(aa.numpy() - centres[0]).max() < 1.5
    out = plot_tsne(emb, phones, speakers, tmp_path / "tsne.png", figsize=(10, 5))
    assert png_size(out) == (1000, 500)


def test_perplexity_plot(tmp_path):
    runs = {}
    for name, collapse in (("SpidR", 0.0), ("DinoSR", 1.0)):
        path = tmp_path / f"{name}.jsonl"
        lines = []
        for step in range(0, 2000, 100):
            cb = [200 * np.exp(-collapse * step / 1000 * (k + 1) / 8) + 5 for k in range(8)]
            lines.append(json.dumps({"step": step, "loss": 1.0, "codebook_ppl": cb,
                                     "prediction_ppl": [c * 0.8 for c in cb]}))
            lines.append(json.dumps({"step": step, "valid_loss": 2.0}))  # other records are skipped
        path.write_text("\n".join(lines) + '\n{"step": 2000, "codebook')  # killed mid-write
        runs[name] = path
    with pytest.warns(UserWarning, match="incomplete"):
        d = read_perplexities(runs["DinoSR"])
    assert d["step"].shape == (20,) and d["codebook_ppl"].shape == (20, 8)
    assert d["codebook_ppl"][0, 0] == pytest.approx(205.0)
    assert d["prediction_ppl"][0, 0] == pytest.approx(164.0)
    with pytest.warns(UserWarning):
        out = plot_perplexity(runs, tmp_path / "ppl.png", layers=range(5, 13), codebook_size=256)
    assert png_size(out) == (1100, 400)


def test_report_tables_bold_best_and_links(tmp_path):
    from spidrkit.evaluation.report import write_report

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
