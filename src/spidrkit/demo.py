"""The main job on a fresh machine: from nothing to a report, on 2 CPU cores.

``run_demo(out_dir, minutes=20)``:
  1. builds an aligned corpus with flite (three voices for train/dev, a fourth held out entirely);
  2. pretrains a ``tiny`` SpidR for ``minutes`` of wall time on it;
  3. runs the evaluation sweep on dev + held-out speech (every layer: ABX within/across speaker, word MAP;
     every codebook layer: unit ABX and PNMI; k-means units; MFCC and random-weight baselines), with the
     perplexity curves of the run;
  4. writes ``OUT/report.md`` (and ``report.json``) with tables and plots.
Every stage resumes: running the same command again after an interruption redoes only what is missing.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from spidrkit.config import load_config
from spidrkit.io import write_json_atomic

logger = logging.getLogger("spidrkit.demo")

VOICES = ("awb", "rms", "slt", "kal16")
HELDOUT = "kal16"


def corpus_hours(minutes: float) -> float:
    """Speech to synthesise for a pretraining budget: 2 h for the 20-minute default, less for short runs."""
    return round(min(2.0, max(0.1, minutes / 10.0)), 2)


def demo_config(corpus: Path, minutes: float, seed: int, variant: str = "spidr", overrides: tuple[str, ...] = ()):
    return load_config(
        "tiny",
        [
            f"data.train_manifest={corpus / 'train.csv'}",
            f"data.valid_manifest={corpus / 'dev.csv'}",
            f"train.max_minutes={float(minutes)}",
            f"train.seed={seed}",
            "train.device=cpu",
            *overrides,
        ],
        variant=variant,
    )


def _stage(name: str, timings: dict[str, float]):
    class _Timer:
        def __enter__(self):
            self.t = time.perf_counter()
            print(f"\n==> {name}", flush=True)

        def __exit__(self, *exc):
            timings[name] = round(time.perf_counter() - self.t, 1)
            if exc[0] is None:
                print(f"    {name}: {timings[name]:.0f} s", flush=True)

    return _Timer()


def run_demo(
    out_dir: str | os.PathLike = "runs/demo",
    minutes: float = 20.0,
    hours: float | None = None,
    seed: int = 0,
    variant: str = "spidr",
    kmeans_k: int = 100,
    workers: int = 2,
    overrides: tuple[str, ...] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Run the whole demo into ``out_dir``; returns the report's dict (also in ``OUT/report.json``)."""
    from spidrkit.checkpoints.run import latest_checkpoint
    from spidrkit.data.synth import synthesize_corpus
    from spidrkit.evaluation.sweep import sweep
    from spidrkit.training.loop import pretrain

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    hours = corpus_hours(minutes) if hours is None else hours
    corpus = out / "corpus"
    run_dir = out / f"pretrain_{variant}"
    t0 = time.perf_counter()

    with _stage(f"1/3 corpus: {hours} h of speech from {', '.join(VOICES)} ({HELDOUT} held out)", timings):
        synthesize_corpus(corpus, voices=VOICES, hours=hours, seed=seed, heldout_voice=HELDOUT,
                          workers=workers, progress=progress)

    cfg = demo_config(corpus, minutes, seed, variant, overrides)
    (out / "config.toml").write_text(cfg.to_toml())
    with _stage(f"2/3 pretraining a tiny {variant} for {minutes:g} min", timings):
        summary = pretrain(cfg, run_dir, resume=True, progress=progress)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise RuntimeError(f"pretraining wrote no checkpoint in {run_dir}")

    with _stage("3/3 evaluation sweep (every layer, baselines, k-means, plots)", timings):
        results = sweep(
            checkpoint, corpus, out, splits=("dev", "heldout"), kmeans_k=kmeans_k,
            baselines=("mfcc", "random"), metrics_jsonl=[run_dir / "metrics.jsonl"],
            title=f"spidrkit demo: tiny {variant}, {minutes:g} min on {os.cpu_count()} CPU cores",
            progress=progress,
        )
    timings["total"] = round(time.perf_counter() - t0, 1)
    demo_info = {
        "minutes": minutes, "hours": hours, "seed": seed, "variant": variant, "voices": list(VOICES),
        "heldout_voice": HELDOUT, "checkpoint": str(checkpoint), "training": _jsonable(summary),
        "timings_s": timings,
    }
    write_json_atomic(out / "demo.json", demo_info)
    _prepend_summary(out / "report.md", demo_info, results)
    print(f"\nreport: {out / 'report.md'}  ({timings['total'] / 60:.1f} min in all)")
    return {"demo": demo_info, "results": results}


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


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
    report.write_text("\n".join(lines) + "\n\n" + body)


def _headline(results: dict[str, Any]) -> str:
    """One sentence: does the best layer beat MFCC on across-speaker ABX?"""
    try:
        best = results["best_layer"]
        layers = results["layers"]
        ours = (layers[str(best)] if str(best) in layers else layers[best])["abx_across"]
        mfcc = results["baselines"]["mfcc"]["abx_across"]
    except (KeyError, TypeError):
        return ""
    verdict = "beats" if ours < mfcc else "does not beat"
    return (f"**Best layer {best}: across-speaker ABX {ours:.2f} % vs MFCC {mfcc:.2f} %: the pretrained model "
            f"{verdict} MFCC.**")
