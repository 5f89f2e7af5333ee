"""The main job on a fresh machine: from nothing to a report, on 2 CPU cores.

``run_demo(out_dir, minutes=20)``:
  1. builds an aligned corpus with flite (three voices for train/dev, a fourth held out entirely);
  2. pretrains a ``tiny`` SpidR for ``minutes`` of wall time on it;
  3. runs the evaluation sweep on dev + held-out speech (every layer: ABX within/across speaker, word MAP;
     every codebook layer: unit ABX and PNMI; k-means units; MFCC and random-weight baselines), with the
     perplexity curves of the run;
  4. the budget curve (:func:`budget_stage`): the milestone checkpoints of the run (at 2, 5, 10 and 20 of 24
     minutes, scaled with ``minutes``) and the last one against MFCC and random weights, in ``OUT/budget/``;
  5. writes ``OUT/report.md`` (and ``report.json``) with tables and plots.
Every stage resumes: running the same command again after an interruption redoes only what is missing.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spidrkit.config import load_config
from spidrkit.errors import Terminated
from spidrkit.io import json_safe, write_json_atomic, write_text_atomic
from spidrkit.runtime import Stopwatch

logger = logging.getLogger("spidrkit.demo")

VOICES = ("awb", "rms", "slt", "kal16")
HELDOUT = "kal16"
DEFAULT_MINUTES = 24.0
MILESTONES = (2.0, 5.0, 10.0, 20.0)  # minutes of a 24-minute run, scaled for other budgets
# the budget curve's cheap evaluation: files per split, fixed-set frames (measured: see budget_stage)
BUDGET_MAX_FILES = 60
BUDGET_MIN_FRAMES = 10_000


def milestone_minutes(minutes: float) -> list[float]:
    """The demo's milestones for a ``minutes`` budget: 2, 5, 10, 20 for 24 minutes, in proportion otherwise."""
    return [round(m * minutes / DEFAULT_MINUTES, 4) for m in MILESTONES]


def corpus_hours(minutes: float) -> float:
    """Speech to synthesise for a pretraining budget: 2 h for the 20-minute default, less for short runs."""
    return round(min(2.0, max(0.1, minutes / 10.0)), 2)


def demo_config(corpus: Path, minutes: float, seed: int, variant: str = "spidr", overrides: tuple[str, ...] = ()):
    """The ``tiny`` configuration trained on ``corpus``'s train split (validated on dev), on the CPU."""
    return load_config(
        "tiny",
        [
            f"data.train_manifest={corpus / 'train.csv'}",
            f"data.valid_manifest={corpus / 'dev.csv'}",
            f"train.max_minutes={float(minutes)}",
            f"train.seed={seed}",
            "train.device=cpu",
            f"train.milestone_minutes={milestone_minutes(minutes)}",
            *overrides,
        ],
        variant=variant,
    )


@contextlib.contextmanager
def _stage(name: str, watch: Stopwatch) -> Iterator[None]:
    """Announce a stage, time it, and say how long it took."""
    print(f"\n==> {name}", flush=True)
    with watch(name):
        yield
    print(f"    {name}: {watch.seconds[name]:.0f} s", flush=True)


def run_demo(
    out_dir: str | os.PathLike = "runs/demo",
    minutes: float = DEFAULT_MINUTES,
    hours: float | None = None,
    seed: int = 0,
    variant: str = "spidr",
    kmeans_k: int = 100,
    workers: int = 2,
    overrides: tuple[str, ...] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Run the whole demo into ``out_dir``; returns the report's dict (also in ``OUT/report.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    watch = Stopwatch()
    hours = corpus_hours(minutes) if hours is None else hours
    corpus = out / "corpus"
    run_dir = out / f"pretrain_{variant}"
    with watch("total"):
        summary, checkpoint, results = _run_stages(out, corpus, run_dir, watch, minutes=minutes, hours=hours,
                                                   seed=seed, variant=variant, kmeans_k=kmeans_k, workers=workers,
                                                   overrides=overrides, progress=progress)
        budget = budget_stage(out, corpus, run_dir, watch)
    timings = watch.rounded(1)  # the stages, then "total" (timed last)
    demo_info = {
        "minutes": minutes, "hours": hours, "seed": seed, "variant": variant, "voices": list(VOICES),
        "heldout_voice": HELDOUT, "checkpoint": str(checkpoint), "training": json_safe(summary),
        "timings_s": timings, "budget_crossing": budget.get("crossing"),
    }
    write_json_atomic(out / "demo.json", demo_info)
    _prepend_summary(out / "report.md", demo_info, results)
    print(f"\nreport: {out / 'report.md'}  ({timings['total'] / 60:.1f} min in all)")
    return {"demo": demo_info, "results": results}


def _run_stages(out: Path, corpus: Path, run_dir: Path, watch: Stopwatch, *, minutes: float, hours: float,
                seed: int, variant: str, kmeans_k: int, workers: int, overrides: tuple[str, ...], progress: bool):
    """Corpus, pretraining, sweep: ``(training summary, checkpoint, sweep results)``."""
    from spidrkit.checkpoints.run import latest_checkpoint
    from spidrkit.data.synth import synthesize_corpus
    from spidrkit.evaluation.perplexity import perplexity_note
    from spidrkit.evaluation.sweep import sweep
    from spidrkit.training.loop import pretrain

    with _stage(f"1/3 corpus: {hours} h of speech from {', '.join(VOICES)} ({HELDOUT} held out)", watch):
        synthesize_corpus(corpus, voices=VOICES, hours=hours, seed=seed, heldout_voice=HELDOUT,
                          workers=workers, progress=progress)

    cfg = demo_config(corpus, minutes, seed, variant, overrides)
    write_text_atomic(out / "config.toml", cfg.to_toml())
    with _stage(f"2/3 pretraining a tiny {variant} for {minutes:g} min", watch):
        summary = pretrain(cfg, run_dir, resume=True, progress=progress)
    if summary.get("signal") == "SIGINT":  # stopped by the user: the checkpoint is saved, the demo stops
        raise KeyboardInterrupt  # (the same command resumes)
    if summary.get("signal") == "SIGTERM":
        raise Terminated()
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise RuntimeError(f"pretraining wrote no checkpoint in {run_dir}")

    # a run that ended before its first logging step has no metrics log: the report says so (no figure)
    metrics = run_dir / "metrics.jsonl"
    notes = [] if metrics.is_file() else [perplexity_note(metrics)]
    with _stage("3/3 evaluation sweep (every layer, baselines, k-means, plots)", watch):
        results = sweep(
            checkpoint, corpus, out, splits=("dev", "heldout"), kmeans_k=kmeans_k,
            baselines=("mfcc", "random"), metrics_jsonl=[metrics] if metrics.is_file() else None, notes=notes,
            title=f"spidrkit demo: tiny {variant}, {minutes:g} min on {os.cpu_count()} CPU cores",
            progress=progress,
        )
    return summary, checkpoint, results


def budget_stage(out: Path, corpus: Path, run_dir: Path, watch: Stopwatch) -> dict[str, Any]:
    """The budget curve of the run's milestones (:func:`spidrkit.evaluation.budget.budget_curve`) into
    ``OUT/budget/``, its table appended to ``OUT/report.md``. Kept cheap for the demo's 6 minutes of sweep and
    curve: across-speaker ABX only, :data:`BUDGET_MAX_FILES` files per split, the fixed set of
    :data:`BUDGET_MIN_FRAMES` frames (each point is cached: a rerun evaluates only new checkpoints)."""
    from spidrkit.evaluation.budget import budget_curve

    with _stage("budget curve: milestones against MFCC and random weights", watch):
        result = budget_curve(run_dir, corpus, out / "budget", max_files=BUDGET_MAX_FILES,
                              min_frames=BUDGET_MIN_FRAMES)
    report = out / "report.md"
    body = report.read_text() if report.exists() else ""
    table = (out / "budget" / "budget.md").read_text().replace("# Budget curve", "## Budget curve", 1)
    write_text_atomic(report, body + "\n" + table + "\n![budget curve](budget/budget.png)\n")
    return result


def _prepend_summary(report: Path, info: dict[str, Any], results: dict[str, Any]) -> None:
    """Put what the demo did (corpus, training, timings) and the headline comparison at the top."""
    train = info["training"] or {}
    last = train.get("train") or {}
    seen = [v for v in info["voices"] if v != info["heldout_voice"]]
    lines = [
        "# spidrkit demo report",
        "",
        f"- corpus: {info['hours']} h of flite speech (train/dev: {', '.join(seen)}; "
        f"held-out voice: {info['heldout_voice']}), seed {info['seed']}",
        f"- pretraining: tiny {info['variant']}, {info['minutes']:g} min budget, status {train.get('status')}, "
        f"{train.get('step')} steps, last loss {last.get('loss', float('nan')):.3f}",
        f"- checkpoint: `{info['checkpoint']}`",
        "- time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in info["timings_s"].items()),
    ]
    headline = _headline(results)
    if headline:
        lines += ["", headline]
    body = report.read_text() if report.exists() else ""
    write_text_atomic(report, "\n".join(lines) + "\n\n" + body)


def _headline(results: dict[str, Any]) -> str:
    """One sentence: does the best layer beat MFCC on across-speaker ABX? Empty when either is missing."""
    best = results.get("best_layer")
    layers = results.get("layers") or {}
    row = layers.get(best, layers.get(str(best))) if best is not None else None
    mfcc = (results.get("baselines") or {}).get("mfcc")
    if row is None or mfcc is None or row.get("abx_across") is None or mfcc.get("abx_across") is None:
        return ""
    ours, theirs = row["abx_across"], mfcc["abx_across"]
    verdict = "beats" if ours < theirs else "does not beat"
    return (f"**Best layer {best}: across-speaker ABX {ours:.2f} % vs MFCC {theirs:.2f} %: the pretrained model "
            f"{verdict} MFCC.**")
