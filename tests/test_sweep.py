"""The layer sweep: every table and figure of a report, numbers that match the metric functions called
directly, the best layer, baselines, provenance, memory grouping, and the ``evaluate sweep`` CLI."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from spidrkit.config import load_config
from spidrkit.data.flite import flite_available
from spidrkit.data.manifest import ManifestEntry, read_manifest
from spidrkit.evaluation import sweep as sweep_mod
from spidrkit.evaluation.sweep import SweepError, check_fileids, layer_groups, load_eval_set, spread, sweep
from spidrkit.models.spidr import SpidR

needs_flite = pytest.mark.skipif(not flite_available(), reason="flite is not installed (sudo apt-get install flite)")

# a 3-layer, 64-wide SpidR: codebooks on layers 2 and 3 (small enough for a sweep in seconds)
OVERRIDES = ["model.conv_dim=32", "model.dim=64", "model.num_layers=3", "model.num_heads=2", "model.ffn_dim=128",
             "model.pos_conv_groups=4", "model.num_codebooks=2", "model.codebook_size=32"]
K = 8


def png_size(path: Path) -> tuple[int, int]:
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    return struct.unpack(">II", data[16:24])


def mean_abx(row) -> float:
    return (row["abx_within"] + row["abx_across"]) / 2


def small_model(seed: int = 1) -> SpidR:
    cfg = load_config("tiny", OVERRIDES)
    torch.manual_seed(seed)
    return SpidR(cfg.model).eval()


def write_metrics(path: Path, layers, scale: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"split": "train", "step": s, "layers": layers,
                         "codebook_ppl": [scale * (1 + s / 10) + k for k in range(len(layers))],
                         "prediction_ppl": [scale * (2 + s / 20) + k for k in range(len(layers))]})
             for s in range(10, 110, 10)]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def built_once(tmp_path_factory, name: str):
    """A folder shared by the pytest-xdist workers of this session, and a lock: the expensive fixtures are
    built by the first worker that needs them and read by the others."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with open(shared / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield shared / name
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    if not flite_available():
        pytest.skip("flite is not installed")
    from spidrkit.data.synth import synthesize_corpus

    with built_once(tmp_path_factory, "sweep_corpus") as root:
        if not (root / "done").is_file():
            # ~2 minutes of speech: train + dev from awb and slt, kal16 held out (reads the dev sentences)
            synthesize_corpus(root, voices=("awb", "slt", "kal16"), hours=0.025, seed=2, heldout_voice="kal16",
                              dev_fraction=0.35, workers=2, progress=False)
            (root / "done").touch()
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from spidrkit.checkpoints import save_spidrkit

    with built_once(tmp_path_factory, "sweep_ckpt") as root:
        path = root / "small.pt"
        if not path.is_file():
            save_spidrkit(path, load_config("tiny", OVERRIDES), small_model().state_dict())
    return path


@pytest.fixture(scope="module")
def swept(corpus, checkpoint, tmp_path_factory) -> tuple[Path, dict]:
    """The full sweep (every option on), run once: its folder and report.json's results."""
    with built_once(tmp_path_factory, "sweep_report") as out:
        if not (out / "report.json").is_file():
            runs = [write_metrics(out.parent / "sweep_runs" / name / "metrics.jsonl", [2, 3], scale)
                    for name, scale in (("spidr", 2.5), ("dinosr", 1.5))]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                returned = sweep(checkpoint, corpus, out, kmeans_k=K, kmeans_max_frames=3000,
                                 baselines=("mfcc", "noise", "random"), posteriors=True, metrics_jsonl=runs,
                                 progress=False)
            assert set(returned["outputs"]) == {"report_json", "report_md", "eval", *sweep_mod.PLOT_NAMES}
    return out, json.loads((out / "report.json").read_text())["results"]


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


@needs_flite
def test_eval_set_merges_splits(corpus, tmp_path):
    from spidrkit.data.alignments import read_frame_labels, read_item_file

    ev = load_eval_set(corpus, ["dev", "heldout"], tmp_path / "eval")
    dev, held = read_manifest(corpus / "dev.csv"), read_manifest(corpus / "heldout.csv")
    assert {e.fileid for e in ev.entries} == {e.fileid for e in dev + held}
    n_items = len(read_item_file(corpus / "dev.item")) + len(read_item_file(corpus / "heldout.item"))
    assert ev.num_items == n_items == len(read_item_file(ev.item_file))
    assert ev.speakers == ["awb", "kal16", "slt"]
    assert read_frame_labels(tmp_path / "eval" / "eval_frames.txt") == ev.frame_labels

    small = load_eval_set(corpus, ["dev", "heldout"], tmp_path / "small", max_files=2)
    assert len(small.entries) == 4
    kept = {e.fileid for e in small.entries}
    assert {it.file for it in read_item_file(small.item_file)} == kept
    assert {w.utt for w in small.words} <= kept and set(small.frame_labels) == kept

    with pytest.raises(SweepError, match="test.csv not found"):
        load_eval_set(corpus, ["test"], tmp_path / "bad")


@needs_flite
def test_bad_options_are_refused_early(corpus, tmp_path):
    model = small_model()
    with pytest.raises(SweepError, match="out of range"):
        sweep(model, corpus, tmp_path, layers=[0, 4], progress=False)
    with pytest.raises(SweepError, match="unknown baselines"):
        sweep(model, corpus, tmp_path, baselines=["hubert"], progress=False)
    with pytest.raises(SweepError, match="kmeans_k"):
        sweep(model, corpus, tmp_path, kmeans_k=1, progress=False)
    with pytest.raises(SweepError, match="no metrics file"):
        sweep(model, corpus, tmp_path, metrics_jsonl=tmp_path / "none.jsonl", progress=False)


# ------------------------------------------------------------------------------------------- the sweep
@needs_flite
def test_report_tables(swept, checkpoint):
    out, res = swept
    layers = res["layers"]
    assert set(layers) == {"1", "2", "3"}
    for row in [*layers.values(), *res["baselines"].values(), *res["random_init_layers"].values()]:
        assert 0 <= row["abx_within"] <= 100 and 0 <= row["abx_across"] <= 100 and 0 <= row["map"] <= 100
    best = min(layers, key=lambda k: mean_abx(layers[k]))
    assert res["best_layer"] == int(best)
    assert res["best_layer_mean_abx"] == pytest.approx(mean_abx(layers[best]))
    assert f"Best layer by mean ABX: **{best}**" in (out / "report.md").read_text()

    base = res["baselines"]
    random_best = min(res["random_init_layers"], key=lambda k: mean_abx(res["random_init_layers"][k]))
    assert set(base) == {"mfcc", "noise", f"random init (L{random_best})"}
    assert base[f"random init (L{random_best})"] == res["random_init_layers"][random_best]
    # MFCC separates phones far better than noise, which is at chance
    assert base["mfcc"]["abx_within"] < 20 and base["mfcc"]["abx_within"] < base["noise"]["abx_within"] - 20
    assert 30 < base["noise"]["abx_within"] < 70

    units = res["units"]
    assert list(units) == ["codebook L2", "codebook L3", "posteriors L2", "posteriors L3",
                           f"kmeans{K} L1", f"kmeans{K} L2", f"kmeans{K} L3"]
    for name, row in units.items():
        assert 0 <= row["abx_within"] <= 100
        if not name.startswith("posteriors"):
            assert 0 <= row["pnmi"] <= 1 and 0 < row["phone_purity"] <= 1 and row["bitrate"] > 0
            assert 1 <= row["codebook_perplexity"] <= row["active_codewords"] <= (K if "kmeans" in name else 32)
    assert 1 < units["codebook L2"]["prediction_perplexity"] <= 32
    pgc = res["phone_given_code"]
    assert pgc["layer"] == res["best_codebook_layer"] == max((2, 3), key=lambda la: units[f"codebook L{la}"]["pnmi"])
    assert np.allclose(np.asarray(pgc["matrix"]).sum(axis=1), 1, atol=1e-3)

    info = res["info"]
    from spidrkit.io import file_sha256

    assert info["checkpoint_sha256"] == file_sha256(checkpoint) and info["model"].endswith(file_sha256(checkpoint))
    assert info["layers"] == [1, 2, 3] and info["codebook_layers"] == [2, 3] and info["kmeans_k"] == K
    assert info["splits"] == ["dev", "heldout"] and info["speakers"] == ["awb", "kal16", "slt"]
    for stage in ("model_features", "model_abx", "codebook_units", "kmeans", "baseline_mfcc", "random_abx"):
        assert res["timings_s"][stage] >= 0
    assert res["timings_s"]["total"] >= sum(v for k, v in res["timings_s"].items() if k.endswith("_abx"))
    for k in range(1, 4):  # the centroids of every layer, with their provenance
        assert json.loads((out / "kmeans" / f"kmeans{K}_layer{k:02d}.npy.json").read_text())["layer"] == k


@needs_flite
def test_report_figures(swept):
    out, _ = swept
    assert png_size(out / "layers.png") == (1100, 400)
    assert png_size(out / "phone_given_code.png") == (1200, 600)
    assert png_size(out / "tsne.png") == (1200, 550)
    assert png_size(out / "perplexity.png") == (1100, 400)
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["plots"]) == sorted(sweep_mod.PLOT_NAMES.values())
    assert all(f"![{Path(p).stem}]({p})" in (out / "report.md").read_text() for p in report["plots"])


@needs_flite
def test_numbers_match_the_metric_functions(swept, corpus):
    """The sweep's numbers are those of abx / word_map / unit_quality called on the same features."""
    from spidrkit.data.audio import load_audio
    from spidrkit.evaluation.abx import abx
    from spidrkit.evaluation.baselines import mfcc
    from spidrkit.evaluation.unit_metrics import unit_quality
    from spidrkit.evaluation.word_map import word_map

    out, results = swept
    ev = out / "eval"
    entries = read_manifest(corpus / "dev.csv") + read_manifest(corpus / "heldout.csv")
    model = small_model()
    feats, units = {}, {}
    with torch.inference_mode():
        for e in entries:
            wav = load_audio(e.path)
            feats[e.fileid] = model.layer_outputs(wav, layers=[2])[2][0]
            units[e.fileid] = model.codebook_predictions(wav, layers=[3])[3].units[0].numpy()
    row = results["layers"]["2"]
    assert abx(feats, ev / "eval.item", speaker="across", progress=False) == pytest.approx(row["abx_across"], abs=1e-6)
    assert word_map(feats, ev / "eval_words.txt", progress=False) == pytest.approx(row["map"], abs=1e-6)
    from spidrkit.data.alignments import read_frame_labels

    q = unit_quality(units, read_frame_labels(ev / "eval_frames.txt"))
    assert q["pnmi"] == pytest.approx(results["units"]["codebook L3"]["pnmi"], abs=1e-9)
    mf = {e.fileid: mfcc(load_audio(e.path)) for e in entries}
    assert abx(mf, ev / "eval.item", progress=False) == pytest.approx(results["baselines"]["mfcc"]["abx_within"],
                                                                       abs=1e-6)


@needs_flite
def test_layer_groups_give_the_same_numbers(swept, corpus, tmp_path):
    """One layer per model pass (a tiny memory bound) changes nothing but the time."""
    _, results = swept
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = sweep(small_model(), corpus, tmp_path, layers=[1, 3], baselines=(), max_memory_gb=1e-9,
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


@needs_flite
def test_sweep_cli(corpus, checkpoint, tmp_path, capsys):
    from spidrkit.cli import main

    out = tmp_path / "cli"
    code = main(["evaluate", "sweep", "--model", str(checkpoint), "--corpus", str(corpus), "-o", str(out),
                 "--layers", "3", "--baselines", "mfcc", "--max-files", "8", "--quiet"])
    assert code == 0
    res = json.loads((out / "report.json").read_text())["results"]
    assert list(res["layers"]) == ["3"] and res["best_layer"] == 3 and list(res["baselines"]) == ["mfcc"]
    assert res["info"]["eval_files"] == 16 and res["info"]["max_files_per_split"] == 8
    printed = capsys.readouterr().out
    assert f"{res['layers']['3']['abx_across']:.2f}" in printed and "best layer by mean ABX: 3" in printed

    assert main(["evaluate", "sweep", "--model", str(checkpoint), "--corpus", str(tmp_path / "nowhere"),
                 "-o", str(out), "--quiet"]) == 2
    assert "no corpus folder" in capsys.readouterr().err
    assert main(["evaluate", "sweep", "--model", str(checkpoint), "--corpus", str(corpus), "-o", str(out),
                 "--layers", "7", "--quiet"]) == 2
    assert "out of range" in capsys.readouterr().err


@needs_flite
def test_default_splits_fall_back_to_dev(corpus, tmp_path):
    """A corpus built without a held-out voice has no heldout split: the default evaluates dev, with a warning."""
    only_dev = tmp_path / "corpus"
    only_dev.mkdir()
    for name in ("dev.csv", "dev.item", "dev_words.txt", "dev_phones.txt", "dev_frames.txt", "wav"):
        (only_dev / name).symlink_to(corpus / name)
    with pytest.warns(UserWarning, match="evaluating on dev only"):
        res = sweep(small_model(), only_dev, tmp_path / "out", layers=[1], baselines=(), tsne_points=0,
                    max_files=6, progress=False)
    assert res["info"]["splits"] == ["dev"] and res["info"]["speakers"] == ["awb", "slt"]
    assert 0 <= res["layers"][1]["abx_across"] <= 100
    with pytest.raises(SweepError, match="heldout.csv not found"):
        sweep(small_model(), only_dev, tmp_path / "out", splits=["dev", "heldout"], progress=False)
    with pytest.raises(SweepError, match="k-means units are fit on the train split"), pytest.warns(UserWarning):
        sweep(small_model(), only_dev, tmp_path / "out", kmeans_k=4, progress=False)
