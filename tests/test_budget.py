"""The budget curve: the log-time trend and its crossing (hand-computed), and the curve of a tiny run folder."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

from spidrkit.checkpoints.run import FORMAT, checkpoint_path, milestone_path, save_checkpoint
from spidrkit.config import load_config
from spidrkit.evaluation.metrics.abx import abx_both
from spidrkit.evaluation.runs import budget as budget_mod
from spidrkit.evaluation.runs.budget import budget_curve, crossing_time, fit_log_trend, render_budget
from spidrkit.evaluation.sweep.features import model_outputs
from spidrkit.io import OutputExistsError
from spidrkit.models.spidr import SpidR


def test_trend_and_crossing_by_hand():
    # ln t = 0, 1, 2; ABX 40, 36, 30: slope -10 / 2 = -5, intercept 35.333 + 5 = 40.333
    t = [1.0, math.e, math.e**2]
    a, b = fit_log_trend(t, [40.0, 36.0, 30.0])
    assert (a, b) == (pytest.approx(40.0 + 1 / 3), pytest.approx(-5.0))
    c = crossing_time(t, [40.0, 36.0, 30.0], 15.0, resamples=200)
    assert c["minutes"] == pytest.approx(math.exp((15.0 - 40.0 - 1 / 3) / -5.0))  # e^5.0667 = 158.7 min
    assert c["low"] <= c["minutes"] <= c["high"] or c["never"] > 0
    # points exactly on a line: every resample with two distinct times refits the same line
    exact = crossing_time(t, [40.0, 35.0, 30.0], 15.0, resamples=200)
    assert [exact["minutes"], exact["low"], exact["high"]] == pytest.approx([math.exp(5.0)] * 3)
    assert exact["never"] == 0.0 and 0 < exact["resamples"] <= 200
    # a trend that rises never crosses; one already below the target crosses at once
    assert crossing_time([1, 2], [30.0, 31.0], 15.0, resamples=50)["minutes"] == math.inf
    assert crossing_time([1, 2], [10.0, 11.0], 15.0, resamples=50)["minutes"] == 0.0
    with pytest.raises(ValueError, match="two distinct"):
        fit_log_trend([2.0, 2.0], [1.0, 2.0])


SMALL = ["model.conv_dim=32", "model.dim=64", "model.num_layers=2", "model.num_heads=2", "model.ffn_dim=128",
         "model.pos_conv_groups=4", "model.num_codebooks=2", "model.codebook_size=32"]


@pytest.mark.needs_flite
def test_budget_curve_of_a_tiny_run_folder(speech_corpus, tmp_path, monkeypatch, capsys):
    cfg = load_config("tiny", SMALL)
    run = tmp_path / "run"
    for i, (minutes, step) in enumerate(((1.0, 3), (4.0, 12))):
        torch.manual_seed(i)
        state = {"format": FORMAT, "step": step, "model": SpidR(cfg.model).state_dict(), "config": cfg.to_dict(),
                 "elapsed": 60.0 * minutes + 1.5}
        path = milestone_path(run, "minutes", minutes, step) if i == 0 else checkpoint_path(run, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = budget_curve(run, speech_corpus, tmp_path / "out", min_frames=300, resamples=100)
    points = res["points"]
    assert [p["name"] for p in points] == ["minutes_1_step_00000003", "final"]
    assert [p["step"] for p in points] == [3, 12]
    assert [p["minutes"] for p in points] == pytest.approx([1.025, 4.025])
    # the reported number is abx_both at the layer with the lowest dev across-speaker ABX
    from spidrkit.checkpoints import load_model

    model = load_model(points[0]["checkpoint"])
    feats = model_outputs(model, budget_mod.load_eval_set(speech_corpus, ["dev", "heldout"], tmp_path / "e").entries,
                          [1, 2], progress=False)
    dev = {la: abx_both(feats[la], tmp_path / "out" / "eval_dev" / "eval.item", frame_rate=model.frame_rate,
                        speakers=("across",))["abx_across"] for la in (1, 2)}
    best = min(dev, key=dev.__getitem__)
    assert {int(k): v for k, v in points[0]["dev_abx_across"].items()} == pytest.approx(dev)  # JSON: str keys
    assert points[0]["layer"] == best
    full = abx_both(feats[best], tmp_path / "out" / "eval" / "eval.item", frame_rate=model.frame_rate,
                    speakers=("across",))
    assert points[0]["abx_across"] == pytest.approx(full["abx_across"])
    assert points[0]["min_codebook_ppl"] == min(r["codebook_ppl"] for r in points[0]["diagnostics"]["layers"].values())
    expected = crossing_time([p["minutes"] for p in points], [p["abx_across"] for p in points],
                             res["mfcc"]["abx_across"], resamples=100)
    assert res["crossing"] == pytest.approx(expected, nan_ok=True)
    assert (tmp_path / "out" / "budget.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "out" / "budget.json").read_text())["points"][1]["step"] == 12
    assert (tmp_path / "out" / "budget.md").read_text() == render_budget(json.loads(
        (tmp_path / "out" / "budget.json").read_text()))
    assert res["outputs"]["figure"].panels[0].get("model").y == tuple(p["abx_across"] for p in points)

    # a finished curve is not replaced without force; a rerun with it reads every point from OUT/points/
    def no(*a, **k):
        raise AssertionError("evaluated again")

    monkeypatch.setattr(budget_mod, "evaluate_point", no)
    with pytest.raises(OutputExistsError, match="budget.png exists; pass --force"):
        budget_curve(run, speech_corpus, tmp_path / "out", min_frames=300, resamples=100)
    again = budget_curve(run, speech_corpus, tmp_path / "out", min_frames=300, resamples=100, force=True)
    assert [p["abx_across"] for p in again["points"]] == [p["abx_across"] for p in points]

    # the CLI (spidrkit evaluate budget) prints the same table it writes; a bad number is refused before any work
    from spidrkit.cli import main

    assert main(["evaluate", "budget", str(run), "--corpus", str(speech_corpus), "-o", str(tmp_path / "out"),
                 "--min-frames", "300", "--force"]) == 0
    printed = capsys.readouterr().out
    assert printed == (tmp_path / "out" / "budget.md").read_text()
    cli_points = json.loads((tmp_path / "out" / "budget.json").read_text())["points"]
    assert [p["abx_across"] for p in cli_points] == [p["abx_across"] for p in points]
    assert main(["evaluate", "budget", str(run), "--corpus", str(speech_corpus), "-o", str(tmp_path / "o2"),
                 "--max-files", "0"]) == 2
    assert capsys.readouterr().err.strip() == ("spidrkit evaluate budget: error: --max-files 0: give a number of "
                                               "files >= 1")
