"""The main job end to end, shrunk: corpus -> pretraining -> sweep -> report (the integration test of the
README's first command)."""

import json

import pytest
import torch

import browser
from spidrkit.checkpoints import load_model
from spidrkit.config import load_config
from spidrkit.data.corpora.audio import load_audio
from spidrkit.data.corpora.manifest import read_manifest
from spidrkit.data.synth.engines import available_voices, missing
from spidrkit.demo import DEMO_POOL, DemoOptions, _headline, corpus_hours, run_demo
from spidrkit.evaluation.metrics.abx import abx


def test_corpus_hours_scale_with_the_budget():
    assert corpus_hours(20) == 2.0 and corpus_hours(40) == 2.0
    assert corpus_hours(1) == 0.1 and corpus_hours(5) == 0.5


def test_headline_needs_both_numbers():
    row = {"abx_across": 12.345}
    results = {"best_layer": 2, "layers": {2: row}, "baselines": {"mfcc": {"abx_across": 20.0}}}
    assert _headline(results) == ("**Best layer 2: across-speaker ABX 12.35 % vs MFCC 20.00 %: the pretrained "
                                  "model beats MFCC.**")
    assert _headline({**results, "layers": {"2": {"abx_across": 25.0}}}).endswith("does not beat MFCC.**")
    assert _headline({**results, "baselines": {}}) == ""
    assert _headline({**results, "best_layer": None}) == ""
    assert _headline({**results, "layers": {2: {"abx_across": None}}}) == ""


# the demo, shrunk: a 3-layer, 64-wide model, 30 steps (or 0.5 min), 0.03 h of speech, a 0.02 min LM; the speech
# synthesised in this process (workers=1: for ~120 short files, 2 spawned workers cost more than they save; the
# pool is test_synth's)
SMALL = ("model.conv_dim=32", "model.dim=64", "model.num_heads=2", "model.ffn_dim=128", "model.num_layers=3",
         "model.num_codebooks=2", "model.codebook_size=32", "data.max_batch_samples=64000",
         "train.log_every=5", "train.checkpoint_every=20", "train.valid_every=20", "train.valid_batches=2",
         "train.max_steps=30", "data.num_workers=0")
SHRUNK = dict(minutes=0.5, hours=0.03, kmeans_k=8, overrides=SMALL, progress=False, slm_minutes=0.02, slm_pairs=2,
              workers=1)


@pytest.mark.slow
@pytest.mark.needs_flite
def test_demo_end_to_end_and_its_rerun(tmp_path):
    """One demo run checked stage by stage, then the same command again: it resumes (two runs are the test)."""
    out = tmp_path / "demo"
    result = run_demo(out, **SHRUNK)
    info = json.loads((out / "demo.json").read_text())
    _check_report_and_stages(out, result, info)
    across = _check_numbers_are_the_metric_functions(out, result, info)
    _check_slm_stage(out, result, across)
    _check_the_page(out)
    _check_a_rerun_resumes(out, result, info)


def _check_report_and_stages(out, result, info) -> None:
    report = (out / "report.md").read_text()
    assert report.startswith("# spidrkit demo report")
    heldout = ("kal16", "ked") if missing("festival") is None else ("kal16",)  # a voice and, if it can, an engine
    voices = (*(v for v in available_voices(DEMO_POOL)[0] if v not in heldout), *heldout)  # every installed one
    assert {"awb", "rms", "slt"} <= set(voices) and not {"kal", "kal16", "ked"} & set(voices[:-len(heldout)])
    assert "MFCC" in report and f"held-out voices: {', '.join(heldout)}" in report
    outputs = result["results"]["outputs"]
    for name in ("layers", "phone_given_code", "tsne", "perplexity"):
        assert outputs[name].path == out / f"{name}.png" and outputs[name].path.read_bytes()[:4] == b"\x89PNG"
    assert info["training"]["step"] >= 1 and info["training"]["status"] in ("completed", "time_budget")
    assert list(info["timings_s"]) == [
        f"1/6 corpus: 0.03 h of speech from {', '.join(voices)} ({', '.join(heldout)} held out)",
        "2/6 pretraining a tiny spidr for 30 steps or 0.5 min",
        "3/6 evaluation sweep (every layer, baselines, k-means, probes, plots)",
        "4/6 budget curve: milestones against MFCC and random weights",
        "5/6 sLM: kmeans units of 1100 utterances, a tiny unit LM (0.02 min in all)",
        "6/6 sLM: benchmark (2 pairs per task), sWUGGY, sBLIMP, tSC scores", "total"]
    # the budget curve: the milestones at 1, 2, 4, 7 of 24 minutes, scaled to 0.5 min, and the last checkpoint
    budget = json.loads((out / "budget" / "budget.json").read_text())
    assert [p["name"].split("_step_")[0] for p in budget["points"]][-1] == "final"
    assert {p["name"].split("_step_")[0] for p in budget["points"][:-1]} <= {
        "minutes_0.0208", "minutes_0.0417", "minutes_0.0833", "minutes_0.1458"}
    assert "## Budget curve" in report and (out / "budget" / "budget.png").is_file()


def _check_numbers_are_the_metric_functions(out, result, info) -> float:
    """The best layer's across-speaker ABX is that of abx() on the trained checkpoint's features; returned."""
    res = result["results"]
    layers, best = res["layers"], res["best_layer"]
    assert list(layers) == [1, 2, 3]
    model = load_model(info["checkpoint"])
    with torch.inference_mode():
        feats = {e.fileid: model.layer_outputs(load_audio(e.path), layers=[best])[best][0]
                 for split in ("dev", "heldout") for e in read_manifest(out / "corpus" / f"{split}.csv")}
    across = abx(feats, out / "eval" / "eval.item", speaker="across", frequency=model.frame_rate, progress=False)
    assert layers[best]["abx_across"] == pytest.approx(across, abs=1e-6)
    mfcc = res["baselines"]["mfcc"]["abx_across"]
    reported = layers[best]["abx_across"]
    verdict = "beats" if reported < mfcc else "does not beat"
    assert (f"**Best layer {best}: across-speaker ABX {reported:.2f} % vs MFCC {mfcc:.2f} %: "
            f"the pretrained model {verdict} MFCC.**") in (out / "report.md").read_text()
    return across


def _check_slm_stage(out, result, across: float) -> None:
    """A tiny LM on k-means units of the best layer (the sweep's centroids), stopped by its budget, scored on
    the 2 pair ids per task of each split, its table at the end of the report, its point on the ABX scatter."""
    from spidrkit.extraction.units import read_units

    slm, best = result["slm"], result["results"]["best_layer"]
    label = f"SpidR k-means L{best}"
    assert slm["rows"][0]["units"] == str(out / "kmeans" / f"kmeans8_layer{best:02d}.npy").join(("kmeans:", ""))
    assert slm["lm"]["stopped"] == "max_minutes" and slm["lm"]["step"] >= 1
    n_train = len(read_manifest(out / "corpus" / "train.csv"))
    assert len(read_units(out / "slm" / "units_train.txt")) == min(1000, n_train)
    assert {m: c["pairs"] for m, c in slm["table"][label].items()} == {"swuggy_all": 2, "swuggy_in_vocab":
                                                                      slm["table"][label]["swuggy_in_vocab"]["pairs"],
                                                                      "sblimp": 2, "tsc": 2}
    assert slm["scatter"][0]["abx_across"] == pytest.approx(across, abs=1e-6)  # abx() of the best layer
    report = (out / "report.md").read_text()
    assert "## Spoken language modelling" in report and f"| {label} | " in report


def _check_a_rerun_resumes(out, result, info) -> None:
    """The same command again finds everything done: the corpus is kept, training resumes from its checkpoint
    (no step logged twice), the sweep of an unchanged checkpoint is kept (its report written anew from
    report.json: the same page), the finished LM is kept, not trained again."""
    from spidrkit.io import json_safe, read_metrics

    def mtimes(folder, pattern):
        return {p: p.stat().st_mtime_ns for p in folder.rglob(pattern)}

    def numbers(results):  # as report.json holds them (layer numbers as strings), the paths left out
        return json.loads(json.dumps(json_safe({k: v for k, v in results.items() if k != "outputs"})))

    corpus, kmeans = mtimes(out / "corpus", "*.wav"), mtimes(out / "kmeans", "*.npy")
    report = (out / "report.md").read_text()
    again = run_demo(out, **SHRUNK)
    assert mtimes(out / "corpus", "*.wav") == corpus
    steps = [r["step"] for r in read_metrics(out / "pretrain_spidr", "train")]
    assert steps and steps == sorted(set(steps))
    assert again["demo"]["training"]["step"] >= info["training"]["step"]
    if info["training"]["status"] == "completed":  # train.max_steps reached: nothing left to train
        assert again["demo"]["training"]["step"] == info["training"]["step"]
        assert mtimes(out / "kmeans", "*.npy") == kmeans and numbers(again["results"]) == numbers(result["results"])
        assert list(again["results"]["layers"]) == [1, 2, 3] and again["results"]["outputs"]["tsne"].is_file()
        timings = "- time per stage (s): "  # the only line of the page that differs
        assert ([x for x in (out / "report.md").read_text().splitlines() if not x.startswith(timings)]
                == [x for x in report.splitlines() if not x.startswith(timings)])
    assert again["slm"]["lm"] == result["slm"]["lm"]


def _check_the_page(out) -> None:
    """The whole report as one page (every figure of the Markdown embedded, the budget curve included) and CSV,
    in a real browser when one is installed (a missing one skips this part only, unless CI requires it)."""
    report = (out / "report.md").read_text()
    assert {"budget_curve.csv", "spoken_language_modelling.csv"} <= {p.name for p in (out / "tables").iterdir()}
    assert "metrics_by_layer.csv" in json.loads((out / "tables" / "spidrkit.json").read_text())["tables"]
    figures = report.count("\n![")
    assert (out / "report.html").read_text().count('<img src="data:image/png;base64,') == figures >= 5
    if browser.available() or browser.REQUIRED:
        with browser.chromium() as driver:
            state = browser.load(driver, out / "report.html")
        assert state["title"] == "spidrkit demo report" and state["fetched"] == 0
        assert len(state["images"]) == figures and all(done and width > 0 for _, done, width in state["images"])


def test_a_run_without_a_metrics_log_gives_a_note_not_an_error(tmp_path, monkeypatch):
    """Pretraining that ended before its first logging step (a run too short to log): the sweep gets no metrics
    log and a note saying why, instead of a missing file."""
    import spidrkit.checkpoints.run as run_mod
    import spidrkit.data.synth.corpus as synth
    import spidrkit.evaluation.sweep.run as sweep_mod
    import spidrkit.training.loop as loop
    from spidrkit.demo import _run_stages, demo_config
    from spidrkit.runtime import Stopwatch

    seen = {}
    monkeypatch.setattr(synth, "synthesize_corpus", lambda *a, **k: None)
    monkeypatch.setattr(loop, "pretrain", lambda cfg, run_dir, **k: {"status": "time_budget", "step": 3})
    monkeypatch.setattr(run_mod, "latest_checkpoint", lambda run_dir: run_dir / "step_00000003.pt")
    monkeypatch.setattr(sweep_mod, "sweep", lambda *a, **k: seen.update(k) or {})
    run_dir = tmp_path / "run"
    _run_stages(tmp_path, tmp_path / "corpus", run_dir, Stopwatch(), demo_config(tmp_path / "corpus", 0.1, 0),
                DemoOptions(hours=0.01, kmeans_k=8, workers=1, progress=False))
    assert seen["metrics_jsonl"] is None
    assert seen["notes"] == [f"no perplexity figure: the run wrote no metrics log ({run_dir / 'metrics.jsonl'}): "
                             "it ended before its first logging step"]


def test_the_stages_name_what_the_config_trains_not_the_arguments(tmp_path, monkeypatch, capsys):
    """``--set train.max_minutes=`` / ``train.seed=`` / ``variant=`` win over ``--minutes`` / ``--seed`` /
    ``--variant``: the corpus seed, the stage titles and the sweep's title name what trains."""
    import spidrkit.checkpoints.run as run_mod
    import spidrkit.data.synth.corpus as synth
    import spidrkit.evaluation.sweep.run as sweep_mod
    import spidrkit.training.loop as loop
    from spidrkit.demo import _run_stages, demo_config, milestone_minutes
    from spidrkit.runtime import Stopwatch

    seen, trained = {}, []
    monkeypatch.setattr(synth, "synthesize_corpus", lambda *a, **k: seen.update(corpus_seed=k["seed"]))
    monkeypatch.setattr(loop, "pretrain", lambda cfg, run_dir, **k: trained.append(cfg) or {"status": "done"})
    monkeypatch.setattr(run_mod, "latest_checkpoint", lambda run_dir: run_dir / "step_00000003.pt")
    monkeypatch.setattr(sweep_mod, "sweep", lambda *a, **k: seen.update(k) or {})
    cfg = demo_config(tmp_path / "corpus", 0.1, 0, "spidr",
                      ("train.max_minutes=0.3", "train.seed=7", "variant=dinosr"))
    _run_stages(tmp_path, tmp_path / "corpus", tmp_path / "run", Stopwatch(), cfg,
                DemoOptions(hours=0.01, kmeans_k=8, workers=1, progress=False))
    assert trained == [cfg]
    assert list(cfg.train.milestone_minutes) == milestone_minutes(0.3) == [0.0125, 0.025, 0.05, 0.0875]
    assert (cfg.train.max_steps, cfg.optim.hold_steps, cfg.teacher.timescale) == (2500, 5400, 4000.0)  # the demo's
    assert seen["corpus_seed"] == 7
    assert seen["title"].startswith("spidrkit demo: tiny dinosr, 2500 steps or 0.3 min on ")
    assert "2/6 pretraining a tiny dinosr for 2500 steps or 0.3 min" in capsys.readouterr().out


@pytest.mark.parametrize(("signal", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_demo_stopped_by_a_signal_stops_after_saving(signal, code, tmp_path, monkeypatch, capsys):
    """Pretraining saved its checkpoint on the signal: the demo exits 130 / 143 there, without a sweep."""
    import spidrkit.data.synth.corpus as synth
    import spidrkit.evaluation.sweep.run as sweep_mod
    import spidrkit.training.loop as loop
    from spidrkit.cli import main as cli_main

    swept = []
    monkeypatch.setattr(synth, "synthesize_corpus", lambda *a, **k: None)
    monkeypatch.setattr(loop, "pretrain", lambda cfg, run_dir, **k: {"status": "interrupted", "signal": signal})
    monkeypatch.setattr(sweep_mod, "sweep", lambda *a, **k: swept.append(1))
    assert cli_main(["demo", "--minutes", "0.1", "-o", str(tmp_path / "demo"), "--quiet"]) == code
    assert swept == []
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"spidrkit demo: {'interrupted' if signal == 'SIGINT' else 'terminated'}")


def test_demo_departures_are_named_and_a_set_restores_the_paper(tmp_path):
    from spidrkit.demo import _departures, demo_config

    cfg = demo_config(tmp_path, 24.0, 0)
    assert (cfg.model.frontend, cfg.model.codebook_init, cfg.data.voice_perturb) == ("logmel_cmvn", "data", "vtlp")
    assert _departures(cfg) == ("logmel_cmvn front end, codebooks initialised from the data, vtlp voice perturbation "
                                "of the student's input")
    paper = demo_config(tmp_path, 24.0, 0, overrides=("model.frontend=cnn", "model.codebook_init=random",
                                                      "data.voice_perturb=none"))
    assert _departures(paper) == "" and paper.model == load_config("tiny").model
    assert paper.data.voice_perturb == load_config("tiny").data.voice_perturb


def test_a_kept_sweep_needs_the_same_checkpoint_bytes_settings_and_figures(tmp_path):
    """A rerun keeps the finished sweep only when sweep_done.json names this request and the checkpoint file still
    has the SHA-256 the sweep read; a changed byte, a changed setting or a deleted figure runs the sweep again."""
    from spidrkit.demo import SWEEP_DONE, _kept_sweep
    from spidrkit.io import file_sha256

    ckpt = tmp_path / "step_00000030.pt"
    ckpt.write_bytes(b"weights")
    (tmp_path / "layers.png").write_bytes(b"\x89PNG")
    results = {"info": {"checkpoint": str(ckpt)}, "layers": {"1": {"abx_across": 30.0}, "2": {"abx_across": 20.0}},
               "best_layer": 2}
    (tmp_path / "report.json").write_text(json.dumps({"title": "t", "results": results, "plots": ["layers.png"]}))
    request = {"checkpoint": str(ckpt), "kmeans_k": 8}
    (tmp_path / SWEEP_DONE).write_text(json.dumps({**request, "sha256": file_sha256(ckpt)}))

    kept = _kept_sweep(tmp_path, request)
    assert kept["layers"] == {1: {"abx_across": 30.0}, 2: {"abx_across": 20.0}} and kept["best_layer"] == 2
    assert kept["outputs"]["layers"] == tmp_path / "layers.png"
    assert (tmp_path / "report.md").read_text().startswith("# t\n")  # the report written anew from report.json
    assert _kept_sweep(tmp_path, {**request, "kmeans_k": 16}) is None
    ckpt.write_bytes(b"weights, trained on")
    assert _kept_sweep(tmp_path, request) is None
    ckpt.write_bytes(b"weights")
    (tmp_path / "layers.png").unlink()
    assert _kept_sweep(tmp_path, request) is None
