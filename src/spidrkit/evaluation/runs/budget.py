"""The budget curve (docs/cpu_study.md): how a run's phonetic quality grows with training time, from its milestones.

:func:`budget_curve` evaluates every milestone checkpoint of a run (``RUN/milestones/minutes_*``, written
with ``train.milestone_minutes``, see :mod:`spidrkit.training.milestones`) and its latest checkpoint:

- best-layer across-speaker ABX: the layer with the lowest across-speaker ABX on the ``dev`` split alone is
  chosen, and its across-speaker ABX is reported on ``dev`` + ``heldout`` (the sweep's evaluation set, whose
  across-speaker pairs include the voice the model never heard), with the sweep's own functions
  (:func:`~spidrkit.evaluation.metrics.abx.abx_both`, :func:`~spidrkit.evaluation.sweep.features.model_outputs`);
- the minimum over the codebooks of the teacher-codebook perplexity over a fixed set of ``min_frames``
  frames (:func:`~spidrkit.evaluation.runs.diagnostics.diagnose`);

next to MFCC and the same architecture with random weights (its layer chosen the same way), and fits
``ABX = a + b ln(minutes)`` by least squares (:func:`crossing_time`): the time at which the trend would
reach MFCC's ABX, with a 95 % percentile interval from a bootstrap over the milestones (resampling the
points with replacement and refitting; resamples without two distinct times are dropped, and those whose
slope does not fall give an infinite time). Writes ``OUT/budget.json``, ``OUT/budget.md`` and
``OUT/budget.png``; each checkpoint's numbers are kept in ``OUT/points/`` so a rerun evaluates only new ones.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spidrkit.checkpoints import load
from spidrkit.checkpoints.run import latest_checkpoint, list_milestones, read_run_checkpoint
from spidrkit.evaluation.metrics.abx import Speaker, abx_both
from spidrkit.evaluation.metrics.bootstrap import LEVEL, percentile_interval, resample_indices
from spidrkit.evaluation.plots.layers import plot_budget_curve
from spidrkit.evaluation.runs.diagnostics import DEFAULT_MIN_FRAMES, diagnose
from spidrkit.evaluation.sweep.errors import SweepError
from spidrkit.evaluation.sweep.evalset import EvalSet, load_eval_set
from spidrkit.evaluation.sweep.features import baseline_outputs, model_outputs, random_like
from spidrkit.io import BUDGET_LAST_FILE, json_safe, refuse_report_overwrite, write_json_atomic, write_text_atomic


def fit_log_trend(minutes: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``(a, b)`` of ``value = a + b ln(minutes)``."""
    x, y = np.log(np.asarray(minutes, dtype=float)), np.asarray(values, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        raise ValueError("a trend needs at least two distinct training times")
    b = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
    return float(y.mean() - b * x.mean()), b


def _cross(a: float, b: float, target: float) -> float:
    """Minutes at which ``a + b ln(t)`` falls to ``target`` (``inf`` when it never does; 0 when already below
    it at the start)."""
    if b >= 0:
        return math.inf if a > target else 0.0
    return float(math.exp(min((target - a) / b, 700.0)))


def crossing_time(minutes: Sequence[float], values: Sequence[float], target: float, *, resamples: int = 2000,
                  seed: int = 0, level: float = LEVEL) -> dict[str, Any]:
    """The fitted trend and the minutes at which it reaches ``target`` (lower is better), with a bootstrap
    interval over the points (see the module docstring): ``{"a", "b", "minutes", "low", "high", "level",
    "resamples", "never"}`` (``never``: the share of resamples that never reach the target)."""
    a, b = fit_log_trend(minutes, values)
    x, y = np.asarray(minutes, dtype=float), np.asarray(values, dtype=float)
    times = [_cross(*fit_log_trend(x[idx], y[idx]), target)
             for idx in resample_indices(len(x), resamples, seed) if np.ptp(x[idx]) > 0]
    times_arr = np.asarray(times)
    low, high = percentile_interval(times_arr, level, method="inverted_cdf")
    return {"a": a, "b": b, "minutes": _cross(a, b, target), "low": float(low), "high": float(high),
            "level": level, "resamples": len(times_arr),
            "never": float(np.isinf(times_arr).mean()) if len(times_arr) else math.nan}


def run_points(run_dir: str | os.PathLike) -> list[tuple[str, Path]]:
    """``(name, checkpoint)`` of the run's minutes milestones, then its latest checkpoint (named ``final``)."""
    points = [(p.stem, p) for kind, _, _, p in list_milestones(run_dir) if kind == "minutes"]
    last = latest_checkpoint(run_dir)
    return points + ([("final", last)] if last is not None else [])


def best_layer_abx(model, sets: tuple[EvalSet, EvalSet], layers: Sequence[int],
                   speakers: Sequence[Speaker] = ("across",)) -> dict[str, Any]:
    """Across-speaker ABX of every layer on the dev set, the best of them, and its ABX (``speakers``) on the
    reported set: ``{"layer", "dev_abx_across": {layer: %}, "abx_across", ["abx_within"]}``."""
    dev, full = sets
    feats = model_outputs(model, full.entries, list(layers), progress=False)
    on_dev = {la: abx_both(feats[la], dev.item_file, frame_rate=model.frame_rate, speakers=("across",))["abx_across"]
              for la in layers}
    scored = {la: v for la, v in on_dev.items() if v is not None}
    if not scored:
        raise SweepError("no across-speaker ABX on dev: the dev split needs two speakers or more")
    best = min(scored, key=scored.__getitem__)
    row = abx_both(feats[best], full.item_file, frame_rate=model.frame_rate, speakers=speakers)
    return {"layer": best, "dev_abx_across": on_dev, **row}


def evaluate_point(model, sets: tuple[EvalSet, EvalSet], corpus_dir: str | os.PathLike, layers: Sequence[int],
                   *, speakers: Sequence[Speaker] = ("across",), min_frames: int = DEFAULT_MIN_FRAMES
                   ) -> dict[str, Any]:
    """One checkpoint's numbers: :func:`best_layer_abx` and the fixed-set diagnostics, with the seconds spent."""
    t0 = time.perf_counter()
    row = best_layer_abx(model, sets, layers, speakers)
    diag = diagnose(model, corpus_dir, "dev", min_frames, predictions=False)
    return {**row, "min_codebook_ppl": diag["min_codebook_ppl"], "diagnostics": diag,
            "eval_seconds": time.perf_counter() - t0}


def _cached(path: Path, compute) -> dict[str, Any]:
    import json

    if path.is_file():
        return json.loads(path.read_text())
    value = json_safe(compute())
    write_json_atomic(path, value)
    return value


@dataclass(frozen=True)
class BudgetOptions:
    """The options of :func:`budget_curve`: ``layers`` among which the best is chosen (default: all);
    ``max_files`` per split (evenly spaced: the cheap setting of the demo); ``min_frames`` of the diagnostics;
    ``speakers``: the ABX conditions reported at the chosen layer (``("within", "across")`` for the study);
    ``seed`` and ``resamples`` of the bootstrap of the crossing time."""

    layers: Sequence[int] | None = None
    max_files: int | None = None
    min_frames: int = DEFAULT_MIN_FRAMES
    speakers: Sequence[Speaker] = ("across",)
    seed: int = 0
    resamples: int = 2000


def budget_curve(run_dir: str | os.PathLike, corpus_dir: str | os.PathLike, out_dir: str | os.PathLike,
                 options: BudgetOptions | None = None, *, force: bool = False, **overrides: Any) -> dict[str, Any]:
    """Evaluate the run's milestones (see the module docstring) and write the table, the figure and the fit.

    :param options: a :class:`BudgetOptions`, and/or its fields as keywords (``layers=[4, 5]``).
    :param force: replace a finished curve in ``out_dir`` (its ``budget.png``, written last); without it one is
        refused before any work, and an unfinished one is completed (its evaluated points are kept in ``points/``).
    :returns: ``{"points": [{name, minutes, step, layer, abx_across, min_codebook_ppl, ...}], "mfcc", "random",
        "crossing", "outputs"}``.
    """
    from spidrkit.config.validation import with_overrides

    opts = with_overrides(BudgetOptions, options, overrides, "budget_curve")
    layers, speakers, min_frames, seed = opts.layers, opts.speakers, opts.min_frames, opts.seed
    out = Path(out_dir)
    refuse_report_overwrite(out, force, "evaluate budget", BUDGET_LAST_FILE)
    points_dir = out / "points"
    found = run_points(run_dir)
    if not found:
        raise SweepError(f"no checkpoint in {run_dir} (train with train.milestone_minutes=[...] for a curve)")
    sets = (load_eval_set(corpus_dir, ["dev"], out / "eval_dev", opts.max_files),
            load_eval_set(corpus_dir, ["dev", "heldout"], out / "eval", opts.max_files))
    points, model = [], None
    for name, path in found:
        def compute(path=path, name=name):
            nonlocal model
            ckpt = read_run_checkpoint(path)
            model = load(path).model
            use = list(layers or range(1, model.num_layers + 1))
            row = evaluate_point(model, sets, corpus_dir, use, speakers=speakers, min_frames=min_frames)
            return {"name": name, "checkpoint": str(path), "step": int(ckpt["step"]),
                    "minutes": float(ckpt.get("elapsed", 0.0)) / 60, **row}
        points.append(_cached(points_dir / f"{name}_{path.stem}.json", compute))
    model = model or load(found[-1][1]).model

    def baselines() -> dict[str, Any]:
        use = list(layers or range(1, model.num_layers + 1))
        mfcc = baseline_outputs("mfcc", sets[1].entries, model, seed=seed, progress=False)
        rand = random_like(model, seed)
        return {"mfcc": abx_both(mfcc, sets[1].item_file, frame_rate=model.frame_rate, speakers=speakers),
                "random": evaluate_point(rand, sets, corpus_dir, use, speakers=speakers, min_frames=min_frames)}
    base = _cached(points_dir / "_baselines.json", baselines)
    return _write(out, points, base, resamples=opts.resamples, seed=seed)


def _write(out: Path, points: list[dict[str, Any]], base: dict[str, Any], *, resamples: int, seed: int
           ) -> dict[str, Any]:
    curve = [p for p in points if p["minutes"] > 0 and p.get("abx_across") is not None]
    mfcc, rand = base["mfcc"].get("abx_across"), base["random"]
    crossing = None
    if mfcc is not None and len({p["minutes"] for p in curve}) >= 2:
        crossing = crossing_time([p["minutes"] for p in curve], [p["abx_across"] for p in curve], mfcc,
                                 resamples=resamples, seed=seed)
    trend = None
    if crossing is not None:
        t = np.geomspace(min(p["minutes"] for p in curve), max(p["minutes"] for p in curve) * 4, 30)
        trend = (t.tolist(), (crossing["a"] + crossing["b"] * np.log(t)).tolist())
    result = {"points": points, "mfcc": base["mfcc"], "random": rand, "crossing": crossing,
              "abx": "across speaker, dev + heldout, layer chosen by across ABX on dev",
              "trend": "ABX = a + b ln(minutes), least squares; interval: bootstrap over the milestones "
                       f"({int(LEVEL * 100)} % percentile)"}
    write_json_atomic(out / "budget.json", json_safe(result))
    write_text_atomic(out / "budget.md", render_budget(json_safe(result)))  # the numbers before the figure
    xs = [p["minutes"] for p in curve]
    figure = plot_budget_curve(
        {"abx": (xs, [p["abx_across"] for p in curve]), "ppl": (xs, [p["min_codebook_ppl"] for p in curve])},
        out / BUDGET_LAST_FILE, trend=trend, title="budget curve",
        abx_lines={k: v for k, v in (("MFCC", mfcc), ("random weights", rand.get("abx_across"))) if v is not None},
        ppl_lines={"random weights": rand["min_codebook_ppl"]})
    return {**result, "outputs": {"json": out / "budget.json", "md": out / "budget.md", "figure": figure}}


def _num(x: Any, fmt: str = ".2f") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def render_budget(result: dict[str, Any]) -> str:
    """The Markdown table of a budget curve and the crossing sentence."""
    lines = ["# Budget curve", "", f"ABX: {result['abx']}. Trend: {result['trend']}.", "",
             "| point | minutes | step | layer | ABX across (%) | ABX within (%) | min codebook ppl | eval s |",
             "|---|---|---|---|---|---|---|---|"]
    for p in result["points"]:
        lines.append(f"| {p['name']} | {_num(p['minutes'])} | {p['step']} | {p['layer']} | {_num(p.get('abx_across'))} "
                     f"| {_num(p.get('abx_within'))} | {_num(p['min_codebook_ppl'], '.1f')} | "
                     f"{_num(p.get('eval_seconds'), '.0f')} |")
    rand = result["random"]
    lines.append(f"| random weights | - | - | {rand['layer']} | {_num(rand.get('abx_across'))} | "
                 f"{_num(rand.get('abx_within'))} | {_num(rand['min_codebook_ppl'], '.1f')} | - |")
    lines.append(f"| MFCC | - | - | - | {_num(result['mfcc'].get('abx_across'))} | "
                 f"{_num(result['mfcc'].get('abx_within'))} | - | - |")
    c = result["crossing"]
    if c is None:
        lines += ["", "No trend: fewer than two timed points or no MFCC score."]
    else:
        def when(x: Any) -> str:  # JSON: an infinite time (never) is null
            return "never" if x is None or x == math.inf else f"{x:.3g} min"

        lines += ["", f"Trend ABX = {c['a']:.2f} {c['b']:+.2f} ln(min): it reaches MFCC at "
                      f"{when(c['minutes'])} ({int(c['level'] * 100)} % interval "
                      f"{when(c['low'])} to {when(c['high'])}, over "
                      f"{c['resamples']} bootstrap resamples; "
                      f"{c['never'] * 100:.0f} % never reach it)."]
    return "\n".join(lines) + "\n"
