"""The layer sweep: every number of a report equals the metric function called directly on the same inputs;
the figures draw those numbers; the best layer, baselines, provenance, the model's frame rate, memory
grouping, and the ``evaluate sweep`` CLI."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from spidrkit.data.corpora.manifest import ManifestEntry, read_manifest
from spidrkit.evaluation.sweep import run as sweep_mod
from spidrkit.evaluation.sweep.errors import SweepError
from spidrkit.evaluation.sweep.evalset import check_fileids, load_eval_set, spread
from spidrkit.evaluation.sweep.features import layer_groups
from spidrkit.evaluation.sweep.run import sweep
from support import built_once, small_model

pytestmark = pytest.mark.usefixtures("one_thread_module")  # as under xdist, also when run alone

K = 8
RATE = 50  # the small model's frame rate


def mean_abx(row) -> float:
    return (row["abx_within"] + row["abx_across"]) / 2


def assert_rows_equal(got: dict, expected: dict) -> None:
    """Same metrics, same values (to the float rounding of batched vs one-file-at-a-time features)."""
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


def write_metrics(path: Path, layers, scale: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"split": "train", "step": s, "layers": layers,
                         "codebook_ppl": [scale * (1 + s / 10) + k for k in range(len(layers))],
                         "prediction_ppl": [scale * (2 + s / 20) + k for k in range(len(layers))]})
             for s in range(10, 110, 10)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def swept(speech_corpus, small_checkpoint, tmp_path_factory) -> tuple[Path, dict]:
    """The full sweep (every option on), run once: its folder and report.json's results. The t-SNE map takes one
    phone instance per speaker and phone (~105 points: exact t-SNE, 0.5 s instead of 2-4 s for 500)."""
    with built_once(tmp_path_factory, "sweep_report") as out:
        if not (out / "report.json").is_file():
            runs = [write_metrics(out.parent / "sweep_runs" / name / "metrics.jsonl", [2, 3], scale)
                    for name, scale in (("spidr", 2.5), ("dinosr", 1.5))]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                returned = sweep(small_checkpoint, speech_corpus, out, kmeans_k=K, kmeans_max_frames=3000,
                                 baselines=("mfcc", "noise", "random"), posteriors=True, metrics_jsonl=runs,
                                 tsne_points=120, progress=False)
            assert set(returned["outputs"]) == {"report_json", "report_md", "report_html", "eval",
                                                *sweep_mod.PLOT_NAMES}
            figures = {k: v for k, v in returned["outputs"].items() if k in sweep_mod.PLOT_NAMES}
            (out / "figures.pkl").write_bytes(pickle.dumps(figures))  # for the other test workers
    return out, json.loads((out / "report.json").read_text())["results"]


@pytest.fixture(scope="module")
def direct(swept, speech_corpus) -> dict:
    """The inputs of every number of the full sweep, computed directly: features, codebook units and posteriors
    of every file (one file at a time, no batching), the random-weights model's features, the baselines."""
    from spidrkit.data.corpora.audio import load_audio
    from spidrkit.encoders.mfcc import mfcc
    from spidrkit.evaluation.sweep.baselines import random_baseline

    entries = read_manifest(speech_corpus / "dev.csv") + read_manifest(speech_corpus / "heldout.csv")
    model = small_model()
    random_model = small_model(seed=0)  # the sweep's "random" baseline: the architecture seeded with its seed 0
    d: dict = {"feats": {la: {} for la in (1, 2, 3)}, "random": {la: {} for la in (1, 2, 3)},
               "units": {2: {}, 3: {}}, "probs": {2: {}, 3: {}}, "mfcc": {}, "noise": {}}
    with torch.inference_mode():
        for e in entries:
            wav = load_audio(e.path)
            for la, x in model.layer_outputs(wav, layers=[1, 2, 3]).items():
                d["feats"][la][e.fileid] = x[0]
            for la, x in random_model.layer_outputs(wav, layers=[1, 2, 3]).items():
                d["random"][la][e.fileid] = x[0]
            for la, p in model.codebook_predictions(wav, layers=[2, 3]).items():
                d["units"][la][e.fileid] = p.units[0].numpy()
                d["probs"][la][e.fileid] = p.probs[0].float()
            d["mfcc"][e.fileid] = mfcc(wav)
            d["noise"][e.fileid] = random_baseline(wav, dim=64, seed=0, key=e.fileid)
    return d



# ------------------------------------------------------------------------------------------- helpers
def test_spread_keeps_every_voice_and_order():
    entries = [ManifestEntry(f"{v}_{i:03d}", "x.wav", 16000) for v in ("awb", "slt") for i in range(10)]
    chosen = [e.fileid for e in spread(entries[::-1], 4)]
    assert chosen == ["awb_000", "awb_006", "slt_003", "slt_009"]
    assert len(spread(entries, None)) == 20 and len(spread(entries, 50)) == 20
    with pytest.raises(SweepError):
        spread(entries, 0)


def test_layer_groups_fit_the_memory_bound():
    assert layer_groups([1, 2, 3, 4, 5], 2**30, 2.0) == [[1, 2], [3, 4], [5]]
    assert layer_groups([1, 2, 3], 10 * 2**30, 2.0) == [[1], [2], [3]]  # at least one layer per group
    assert layer_groups([2, 4], 1, 4.0) == [[2, 4]]


def test_check_fileids_names_the_missing():
    check_fileids(["a", "b"], {"a", "b", "c"}, "the item file", "the features")
    with pytest.raises(SweepError, match=r"2 files of the item file are missing from the features: x, y"):
        check_fileids(["a", "x", "y"], {"a"}, "the item file", "the features")


@pytest.mark.needs_flite
def test_eval_set_merges_splits(speech_corpus, tmp_path):
    from spidrkit.data.corpora.alignments import read_frame_labels, read_item_file

    ev = load_eval_set(speech_corpus, ["dev", "heldout"], tmp_path / "eval")
    dev, held = read_manifest(speech_corpus / "dev.csv"), read_manifest(speech_corpus / "heldout.csv")
    assert {e.fileid for e in ev.entries} == {e.fileid for e in dev + held}
    n_items = len(read_item_file(speech_corpus / "dev.item")) + len(read_item_file(speech_corpus / "heldout.item"))
    assert ev.num_items == n_items == len(read_item_file(ev.item_file))
    assert ev.speakers == ["awb", "kal16", "slt"]
    assert read_frame_labels(tmp_path / "eval" / "eval_frames.txt") == ev.frame_labels

    small = load_eval_set(speech_corpus, ["dev", "heldout"], tmp_path / "small", max_files=2)
    assert len(small.entries) == 4
    kept = {e.fileid for e in small.entries}
    assert {it.file for it in read_item_file(small.item_file)} == kept
    assert set(small.words) <= kept and set(small.frame_labels) == kept and set(small.speaker_of) == kept

    with pytest.raises(SweepError, match="test.csv not found"):
        load_eval_set(speech_corpus, ["test"], tmp_path / "bad")


@pytest.mark.needs_flite
def test_bad_options_are_refused_early(speech_corpus, tmp_path):
    model = small_model()
    with pytest.raises(SweepError, match="out of range"):
        sweep(model, speech_corpus, tmp_path, layers=[0, 4], progress=False)
    with pytest.raises(SweepError, match="unknown baselines"):
        sweep(model, speech_corpus, tmp_path, baselines=["hubert"], progress=False)
    with pytest.raises(SweepError, match="kmeans_k"):
        sweep(model, speech_corpus, tmp_path, kmeans_k=1, progress=False)
    with pytest.raises(SweepError, match="no metrics file"):
        sweep(model, speech_corpus, tmp_path, metrics_jsonl=tmp_path / "none.jsonl", progress=False)


# ------------------------------------------------------------------------------------------- the sweep
def _feature_row(feats: dict, ev: Path) -> dict:
    from spidrkit.evaluation.metrics.abx import abx
    from spidrkit.evaluation.metrics.word_map import word_map

    return {"abx_within": abx(feats, ev / "eval.item", speaker="within", frequency=RATE, progress=False),
            "abx_across": abx(feats, ev / "eval.item", speaker="across", frequency=RATE, progress=False),
            "map": word_map(feats, ev / "eval_words.txt", frame_rate=RATE, progress=False)}


def _unit_row(units: dict, ev: Path) -> dict:
    from spidrkit.data.corpora.alignments import read_frame_labels
    from spidrkit.evaluation.metrics.abx import abx_units
    from spidrkit.evaluation.metrics.units import UNIT_METRICS, unit_quality

    q = unit_quality(units, read_frame_labels(ev / "eval_frames.txt"), unit_rate=RATE)
    return {"abx_within": abx_units(units, ev / "eval.item", speaker="within", frequency=RATE, progress=False),
            "abx_across": abx_units(units, ev / "eval.item", speaker="across", frequency=RATE, progress=False),
            **{k: q[k] for k in UNIT_METRICS}}


@pytest.mark.slow
@pytest.mark.needs_flite
def test_feature_tables_equal_the_metric_functions(swept, direct):
    """Every layer of the model and of the random-weights model, and every feature baseline: ABX within,
    across and word MAP are those of abx / word_map on the same features; the best layers follow."""
    out, res = swept
    ev = out / "eval"
    for la in (1, 2, 3):
        assert_rows_equal(res["layers"][str(la)], _feature_row(direct["feats"][la], ev))
        assert_rows_equal(res["random_init_layers"][str(la)], _feature_row(direct["random"][la], ev))
    assert_rows_equal(res["baselines"]["mfcc"], _feature_row(direct["mfcc"], ev))
    assert_rows_equal(res["baselines"]["noise"], _feature_row(direct["noise"], ev))

    layers = res["layers"]
    best = min(layers, key=lambda k: mean_abx(layers[k]))
    assert res["best_layer"] == int(best) and res["best_layer_mean_abx"] == mean_abx(layers[best])
    assert f"Best layer by mean ABX: **{best}**" in (out / "report.md").read_text()
    random_best = min(res["random_init_layers"], key=lambda k: mean_abx(res["random_init_layers"][k]))
    assert set(res["baselines"]) == {"mfcc", "noise", f"random init (L{random_best})"}
    assert res["baselines"][f"random init (L{random_best})"] == res["random_init_layers"][random_best]


@pytest.mark.slow
@pytest.mark.needs_flite
def test_unit_tables_equal_the_metric_functions(swept, direct):
    """Codebook units, their posteriors and the k-means units (with the centroids the sweep saved): ABX and
    unit quality are those of abx_units / abx / unit_quality on the same units."""
    from spidrkit.data.corpora.alignments import read_frame_labels
    from spidrkit.evaluation.metrics.abx import abx
    from spidrkit.evaluation.metrics.units import entropy_bits, unit_quality
    from spidrkit.extraction.kmeans import KMeansModel

    out, res = swept
    ev = out / "eval"
    units = res["units"]
    assert list(units) == ["codebook L2", "codebook L3", "posteriors L2", "posteriors L3",
                           f"kmeans{K} L1", f"kmeans{K} L2", f"kmeans{K} L3"]
    for la in (2, 3):
        probs = direct["probs"][la]
        total = sum(p.double().sum(0) for p in probs.values()).numpy()
        expected = {**_unit_row(direct["units"][la], ev), "prediction_perplexity": 2.0 ** entropy_bits(total)}
        assert_rows_equal(units[f"codebook L{la}"], expected)
        assert_rows_equal(units[f"posteriors L{la}"], {
            f"abx_{s}": abx(probs, ev / "eval.item", speaker=s, distance="kl_symmetric", frequency=RATE,
                            progress=False) for s in ("within", "across")})
    for la in (1, 2, 3):
        path = out / "kmeans" / f"kmeans{K}_layer{la:02d}.npy"
        km = KMeansModel.load(path)
        kunits = {u: km.predict(x).numpy() for u, x in direct["feats"][la].items()}
        row = dict(units[f"kmeans{K} L{la}"])
        assert row.pop("kmeans_inertia_per_frame") == km.info["inertia_per_frame"]
        assert_rows_equal(row, _unit_row(kunits, ev))
        assert json.loads(path.with_name(path.name + ".json").read_text())["layer"] == la  # provenance

    best_cb = max((2, 3), key=lambda la: units[f"codebook L{la}"]["pnmi"])
    q = unit_quality(direct["units"][best_cb], read_frame_labels(ev / "eval_frames.txt"), unit_rate=RATE)
    pgc = res["phone_given_code"]
    assert pgc["layer"] == res["best_codebook_layer"] == best_cb
    assert (pgc["codes"], pgc["phones"], pgc["phone_counts"]) == (q["codes"], q["phones"], q["phone_counts"])
    assert pgc["matrix"] == np.round(q["phone_given_code"], 5).tolist()


@pytest.mark.slow
@pytest.mark.needs_flite
def test_report_info(swept, small_checkpoint, speech_corpus):
    from spidrkit.io import file_sha256

    _, res = swept
    info = res["info"]
    digest = file_sha256(small_checkpoint)
    assert info["checkpoint_sha256"] == digest and info["model"].endswith(digest)
    assert info["layers"] == [1, 2, 3] and info["codebook_layers"] == [2, 3] and info["kmeans_k"] == K
    assert info["splits"] == ["dev", "heldout"] and info["speakers"] == ["awb", "kal16", "slt"]
    assert info["frame_rate_hz"] == RATE == small_model().frame_rate
    entries = read_manifest(speech_corpus / "dev.csv") + read_manifest(speech_corpus / "heldout.csv")
    assert info["eval_files"] == len(entries)
    assert info["eval_seconds"] == round(sum(e.num_samples for e in entries) / 16000, 1)
    assert info["architecture"] == "3 layers of width 64, 2 codebooks of 32 on layers [2, 3]"
    for stage in ("model_features", "model_abx", "codebook_units", "kmeans", "baseline_mfcc", "random_abx"):
        assert stage in res["timings_s"]
    assert res["timings_s"]["total"] >= sum(v for k, v in res["timings_s"].items() if k.endswith("_abx"))


@pytest.mark.slow
@pytest.mark.needs_flite
def test_report_figures_draw_the_tables(swept):
    """Each figure shows the report's numbers: the layer curves and baseline lines, the heat map of the best
    codebook layer, the t-SNE of the best layer's phones, the runs' perplexities."""
    from spidrkit.evaluation.plots.figures import Series
    from spidrkit.evaluation.plots.perplexity import read_perplexities

    out, res = swept
    figures = pickle.loads((out / "figures.pkl").read_bytes())
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["plots"]) == sorted(sweep_mod.PLOT_NAMES.values())
    assert all(f"![{Path(p).stem}]({p})" in (out / "report.md").read_text() for p in report["plots"])
    assert {name: f.path for name, f in figures.items()} == {k: out / v for k, v in sweep_mod.PLOT_NAMES.items()}
    assert (out / "report.html").read_text().count('<img src="data:image/png;base64,') == len(report["plots"])

    abx_panel, map_panel = figures["layers"].panels
    for model, table in (("SpidR", res["layers"]), ("random init", res["random_init_layers"])):
        for key in ("abx_within", "abx_across"):
            assert abx_panel.get(f"{model} {key[4:]}") == Series(f"{model} {key[4:]}", (1, 2, 3),
                                                                 tuple(table[str(la)][key] for la in (1, 2, 3)))
        assert map_panel.get(model).y == tuple(table[str(la)]["map"] for la in (1, 2, 3))
    base = res["baselines"]
    assert abx_panel.hlines == {f"{b} {s}": base[b][f"abx_{s}"]
                                for b in ("mfcc", "noise") for s in ("within", "across")}
    assert map_panel.hlines == {b: base[b]["map"] for b in ("mfcc", "noise")}

    heat = figures["phone_given_code"]
    pgc = res["phone_given_code"]
    assert sorted(heat.columns) == pgc["codes"] and heat.title == f"P(phone | code), codebook of layer {pgc['layer']}"
    assert np.allclose(np.asarray(heat.matrix).sum(axis=0), 1.0)  # each code's column is P(. | code)

    tsne = figures["tsne"]
    assert tsne.title == f"t-SNE of phone embeddings, layer {res['best_layer']}"
    assert [s.label for s in tsne.panels[1].series] == ["awb", "kal16", "slt"]

    codebook, _ = figures["perplexity"].panels
    assert codebook.hlines == {"V": 32.0}  # the runs name this model's codebook layers: V is drawn
    ppl = read_perplexities(out.parent / "sweep_runs" / "spidr" / "metrics.jsonl")
    assert codebook.get("spidr layer 3").y == tuple(ppl["codebook_ppl"][:, 1])


@pytest.mark.slow
@pytest.mark.needs_flite
def test_layer_groups_give_the_same_numbers(swept, speech_corpus, tmp_path):
    """One layer per model pass (a tiny memory bound) changes nothing but the time."""
    _, results = swept
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = sweep(small_model(), speech_corpus, tmp_path, layers=[1, 3], baselines=(), max_memory_gb=1e-9,
                      tsne_points=0, progress=False)
    assert set(again["layers"]) == {1, 3}
    for layer in (1, 3):
        assert again["layers"][layer] == pytest.approx(results["layers"][str(layer)], abs=1e-9)
    assert again["units"]["codebook L3"]["pnmi"] == pytest.approx(results["units"]["codebook L3"]["pnmi"])
    assert again["baselines"] == {} and "random_init_layers" not in again
    # an in-memory model is identified by the hash of its weights
    from spidrkit.checkpoints import weights_sha256

    assert again["info"]["model"] == f"spidr:{weights_sha256(small_model())}"
    assert again["info"]["checkpoint_format"] == "in-memory"
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["layers.png", "phone_given_code.png"]


@pytest.mark.needs_flite
def test_the_model_frame_rate_is_used_throughout(speech_corpus, tmp_path):
    """A model at 100 Hz (one stride-2 layer fewer): its features are sliced at 100 Hz by ABX and word MAP, its
    units paired with one label frame each, and the report says 100 Hz."""
    from spidrkit.data.corpora.alignments import read_frame_labels
    from spidrkit.data.corpora.audio import load_audio
    from spidrkit.evaluation.metrics.abx import abx
    from spidrkit.evaluation.metrics.units import unit_quality
    from spidrkit.evaluation.metrics.word_map import word_map

    model = small_model(overrides=("model.conv_strides=[5,2,2,2,2,2]", "model.conv_kernels=[10,3,3,3,3,2]"))
    assert model.frame_rate == 100
    # the baselines' frames are not a 100 Hz model's: refused rather than misread
    with pytest.raises(SweepError, match=r"mfcc baseline gives \d+ frames for \w+ where the model gives \d+ \(at 100"):
        sweep(model, speech_corpus, tmp_path, layers=[3], baselines=("mfcc",), tsne_points=0, max_files=8,
              progress=False)
    res = sweep(model, speech_corpus, tmp_path, layers=[3], baselines=(), tsne_points=0, max_files=8, progress=False)
    assert res["info"]["frame_rate_hz"] == 100
    ev = tmp_path / "eval"
    feats, units = {}, {}
    with torch.inference_mode():
        for e in load_eval_set(speech_corpus, ["dev", "heldout"], tmp_path / "again", max_files=8).entries:
            wav = load_audio(e.path)
            feats[e.fileid] = model.layer_outputs(wav, layers=[3])[3][0]
            units[e.fileid] = model.codebook_predictions(wav, layers=[3])[3].units[0].numpy()
    row = res["layers"][3]
    assert row["abx_within"] == pytest.approx(abx(feats, ev / "eval.item", frequency=100, progress=False), abs=1e-6)
    assert row["map"] == pytest.approx(word_map(feats, ev / "eval_words.txt", frame_rate=100, progress=False),
                                       abs=1e-6)
    q = unit_quality(units, read_frame_labels(ev / "eval_frames.txt"), unit_rate=100)
    assert res["units"]["codebook L3"]["pnmi"] == pytest.approx(q["pnmi"], abs=1e-9)
    assert res["units"]["codebook L3"]["bitrate"] == pytest.approx(q["bitrate"], abs=1e-9)


@pytest.mark.needs_flite
def test_sweep_cli(speech_corpus, small_checkpoint, tmp_path, capsys):
    from spidrkit.cli import main

    out = tmp_path / "cli"
    code = main(["evaluate", "sweep", "--model", str(small_checkpoint), "--corpus", str(speech_corpus), "-o", str(out),
                 "--layers", "3", "--baselines", "mfcc", "--max-files", "8", "--quiet"])
    assert code == 0
    res = json.loads((out / "report.json").read_text())["results"]
    assert list(res["layers"]) == ["3"] and res["best_layer"] == 3 and list(res["baselines"]) == ["mfcc"]
    assert res["info"]["eval_files"] == 16 and res["info"]["max_files_per_split"] == 8
    printed = capsys.readouterr().out
    assert f"{res['layers']['3']['abx_across']:.2f}" in printed and "best layer by mean ABX: 3" in printed

    assert main(["evaluate", "sweep", "--model", str(small_checkpoint), "--corpus", str(tmp_path / "nowhere"),
                 "-o", str(out), "--quiet", "--force"]) == 2
    assert "no corpus folder" in capsys.readouterr().err
    assert main(["evaluate", "sweep", "--model", str(small_checkpoint), "--corpus", str(speech_corpus), "-o", str(out),
                 "--layers", "7", "--quiet", "--force"]) == 2
    assert "out of range" in capsys.readouterr().err


@pytest.mark.needs_flite
def test_default_splits_fall_back_to_dev(speech_corpus, tmp_path):
    """A corpus built without a held-out voice has no heldout split: the default evaluates dev, with a warning."""
    only_dev = tmp_path / "corpus"
    only_dev.mkdir()
    for name in ("dev.csv", "dev.item", "dev_words.txt", "dev_phones.txt", "dev_frames.txt", "wav"):
        (only_dev / name).symlink_to(speech_corpus / name)
    with pytest.warns(UserWarning, match="evaluating on dev only"):
        res = sweep(small_model(), only_dev, tmp_path / "out", layers=[1], baselines=(), tsne_points=0,
                    max_files=6, progress=False)
    assert res["info"]["splits"] == ["dev"] and res["info"]["speakers"] == ["awb", "slt"]
    from spidrkit.data.corpora.audio import load_audio
    from spidrkit.evaluation.metrics.abx import abx

    model = small_model()
    with torch.inference_mode():
        feats = {e.fileid: model.layer_outputs(load_audio(e.path), layers=[1])[1][0]
                 for e in spread(read_manifest(only_dev / "dev.csv"), 6)}
    expected = abx(feats, tmp_path / "out" / "eval" / "eval.item", speaker="across", frequency=RATE, progress=False)
    assert res["layers"][1]["abx_across"] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(SweepError, match="heldout.csv not found"):
        sweep(small_model(), only_dev, tmp_path / "out", splits=["dev", "heldout"], progress=False, force=True)
    with pytest.raises(SweepError, match="k-means units are fit on the train split"), pytest.warns(UserWarning):
        sweep(small_model(), only_dev, tmp_path / "out", kmeans_k=4, progress=False, force=True)


@pytest.mark.needs_flite
def test_a_figure_that_fails_loses_no_number(speech_corpus, tmp_path, monkeypatch):
    """The sweep writes report.json, report.md and the tables' CSV before it draws a figure: a figure that fails
    leaves them on disk (and no page)."""
    def broken(*args, **kwargs):
        raise RuntimeError("the figure failed")

    monkeypatch.setattr(sweep_mod, "draw_figures", broken)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="the figure failed"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sweep(small_model(), speech_corpus, out, layers=[2], baselines=(), tsne_points=0, max_files=4, progress=False)
    report = json.loads((out / "report.json").read_text())
    assert list(report["results"]["layers"]) == ["2"] and report["plots"] == []
    row = report["results"]["layers"]["2"]
    assert f"| 2 | {row['abx_within']:.2f} | {row['abx_across']:.2f} |" in (out / "report.md").read_text()
    assert (out / "tables" / "metrics_by_layer.csv").read_text().splitlines()[1].startswith(
        f"2,{row['abx_within']:.2f},{row['abx_across']:.2f},")
    assert not (out / "report.html").exists() and not (out / "layers.png").exists()


# ------------------------------------------------------------------------------ short runs (too short to log)
@pytest.mark.needs_flite
@pytest.mark.parametrize("records", [0, 1])
def test_a_run_too_short_for_a_curve_gives_a_report_with_a_note(speech_corpus, tmp_path, records):
    """A metrics log of 0 or 1 records (pretraining ended before its second logging step): the report is
    written without the perplexity figure, and its notes (report.json and report.md) say why."""
    log = write_metrics(tmp_path / "run" / "metrics.jsonl", [2, 3], 1.0)
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:records]))
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = sweep(small_model(), speech_corpus, out, layers=[3], baselines=(), max_files=4, tsne_points=0,
                       metrics_jsonl=log, progress=False)
    assert not (out / "perplexity.png").exists() and "perplexity" not in result["outputs"]
    plural = "" if records == 1 else "s"
    note = (f"no perplexity figure: {log} holds {records} record{plural} with a perplexity and a curve needs 2: "
            "the run was too short (train longer, or log more often with train.log_every)")
    report = json.loads((out / "report.json").read_text())
    assert note in report["results"]["notes"]
    assert f"- {note}" in (out / "report.md").read_text()
    # what the ABX numbers rest on: few files, so few cells, and a note saying so
    counts = {k: v for k, v in report["results"]["info"].items() if k.endswith(("_cells", "_triplets"))}
    assert counts == {"abx_within_cells": 1, "abx_within_triplets": 2, "abx_across_cells": 2, "abx_across_triplets": 2}
    assert report["results"]["notes"][1:] == [
        f"ABX {s} speaker rests on {n} ({t} triplets), fewer than 50: the error rate is not reliable; evaluate on "
        "more items" for s, n, t in (("within", "1 cell", 2), ("across", "2 cells", 2))]


def test_the_note_of_a_missing_log(tmp_path):
    from spidrkit.evaluation.plots.perplexity import perplexity_note

    missing = tmp_path / "run" / "metrics.jsonl"
    assert perplexity_note(missing) == (f"no perplexity figure: the run wrote no metrics log ({missing}): it ended "
                                        "before its first logging step")
    assert perplexity_note(write_metrics(missing, [2, 3], 1.0)) is None


# ------------------------------------------------------------------------------------------- probe, several models
@pytest.fixture(scope="module")
def probe_corpus(speech_corpus, tmp_path_factory) -> Path:
    """``speech_corpus`` with 8 of its train files (4 per voice; links to its files, the same dev and heldout):
    the probe's training set, whose linear CTC heads (full batch, 110 steps each) are most of a probed sweep's
    time (the compared models' probe rows take 6 s instead of 19 s)."""
    from spidrkit.data.corpora.manifest import write_manifest

    with built_once(tmp_path_factory, "probe_corpus") as root:
        if not (root / "train.csv").is_file():
            root.mkdir(exist_ok=True)
            for path in speech_corpus.iterdir():
                if path.name != "train.csv" and not (root / path.name).is_symlink():
                    (root / path.name).symlink_to(path)
            write_manifest(spread(read_manifest(speech_corpus / "train.csv"), 8), root / "train.csv")
    return root


@pytest.fixture(scope="module")
def compared(probe_corpus, small_checkpoint, tmp_path_factory) -> tuple[Path, dict, dict]:
    """Two models of different depths (3 and 2 layers) with the probe, in one report."""
    with built_once(tmp_path_factory, "sweep_compared") as out:
        if not (out / "report.json").is_file():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                returned = sweep([small_checkpoint, small_model(2, ("model.num_layers=2",))], probe_corpus, out,
                                 label=["small", None], probe=True, baselines=("mfcc", "random"), tsne_points=0,
                                 progress=False)
            figures = {k: v for k, v in returned["outputs"].items()
                       if k not in ("report_json", "report_md", "report_html")}
            (out / "figures.pkl").write_bytes(pickle.dumps(figures))
    results = json.loads((out / "report.json").read_text())["results"]
    return out, results, pickle.loads((out / "figures.pkl").read_bytes())


@pytest.mark.slow
@pytest.mark.needs_flite
def test_several_models_nest_one_report_each(compared):
    out, res, _ = compared
    assert set(res) == {"info", "models", "comparison"}
    assert list(res["models"]) == ["small", "SpidR"] and res["info"]["models"] == ["small", "SpidR"]
    for label, layers in (("small", ["1", "2", "3"]), ("SpidR", ["1", "2"])):
        nested = res["models"][label]
        own = json.loads((out / nested["report"]).with_suffix(".json").read_text())["results"]
        assert {k: v for k, v in nested.items() if k != "report"} == own  # the single-model report, unchanged
        assert {"info", "layers", "baselines", "units", "best_layer", "timings_s"} <= set(own)
        assert list(own["layers"]) == layers
    assert res["models"]["small"]["info"]["eval_files"] == res["models"]["SpidR"]["info"]["eval_files"]
    md = (out / "report.md").read_text()
    assert "## phone probe accuracy (%)" in md and "| layer | small | SpidR | *mfcc* |" in md
    # the page: a figure per metric embedded, the models' own pages linked, a CSV per table
    page = (out / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == len(res["comparison"]["tables"]) == 6
    assert all(f'href="models/{label}/report.html"' in page for label in ("small", "SpidR"))
    assert sorted(p.stem for p in (out / "tables").glob("*.csv")) == sorted([
        "models", "abx_within_speaker", "abx_across_speakers", "word_map", "phone_probe_accuracy", "phone_probe_per",
        "speaker_probe_accuracy"])


@pytest.mark.slow
@pytest.mark.needs_flite
def test_comparison_tables_and_figures_are_the_models_numbers(compared):
    out, res, figures = compared
    tables, lines = res["comparison"]["tables"], res["comparison"]["baselines"]
    assert list(tables) == ["abx_within", "abx_across", "map", "probe_acc", "probe_per", "speaker_acc"]
    for metric, table in tables.items():
        for label, model in res["models"].items():
            layers = sorted(int(la) for la in model["layers"])
            assert {la: table[str(la)][label] for la in layers} == {la: model["layers"][str(la)][metric]
                                                                   for la in layers}
            series = figures[metric].panels[0].get(label)
            assert series.x == tuple(layers)
            assert series.y == tuple(model["layers"][str(la)][metric] for la in layers)
            random_row = next(k for k in model["baselines"] if k.startswith("random init"))
            assert lines[metric][f"{label} {random_row}"] == model["baselines"][random_row][metric]
        assert lines[metric]["mfcc"] == res["models"]["small"]["baselines"]["mfcc"][metric]
        assert figures[metric].panels[0].hlines == lines[metric]
        assert figures[metric].path == out / f"{metric}.png" and figures[metric].path.is_file()


@pytest.mark.slow
@pytest.mark.needs_flite
def test_probe_columns_equal_the_probe(compared, small_checkpoint, probe_corpus, tmp_path):
    """The sweep's probe columns are the numbers of ``probe()``; each interval holds its estimate; the layers
    figure gets a probe panel."""
    from spidrkit.evaluation.metrics.probe import probe
    from spidrkit.evaluation.plots.layers import plot_layer_metrics

    _, res, _ = compared
    small = res["models"]["small"]
    direct = probe(small_checkpoint, probe_corpus, layers=[2], baselines=("mfcc",), progress=False)
    for key in ("probe_acc", "probe_acc_ci", "probe_per", "probe_per_ci", "speaker_acc", "speaker_acc_ci"):
        assert small["layers"]["2"][key] == pytest.approx(direct["layers"][2][key], abs=1e-9), key
        assert small["baselines"]["mfcc"][key] == pytest.approx(direct["baselines"]["mfcc"][key], abs=1e-9), key
    for row in [*small["layers"].values(), small["baselines"]["mfcc"]]:
        for key in ("probe_acc", "probe_per", "speaker_acc"):
            lo, hi = row[f"{key}_ci"]
            assert lo <= row[key] <= hi
    assert "logistic regression (L2, C=1" in small["info"]["probe"]
    fig = plot_layer_metrics({"small": small["layers"]}, tmp_path / "layers.png", baselines=small["baselines"])
    probe_panel = fig.panels[2]
    assert probe_panel.get("small").y == tuple(small["layers"][la]["probe_acc"] for la in ("1", "2", "3"))
    assert probe_panel.hlines["mfcc"] == small["baselines"]["mfcc"]["probe_acc"]
