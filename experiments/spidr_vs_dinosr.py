"""SpidR vs DinoSR under the same budget and seed: codebook perplexity over training (the paper's Figure 2).

    python experiments/spidr_vs_dinosr.py --corpus runs/demo/corpus --minutes 20 --out runs/stability
    python experiments/spidr_vs_dinosr.py --corpus runs/demo/corpus --minutes 20 --only dinosr   # one arm

Each arm pretrains the ``tiny`` config (variant spidr / dinosr, same seed, same data, same wall-time budget)
into OUT/VARIANT, then the script overlays both runs' codebook and prediction perplexities in
OUT/perplexity.png and prints, per run, the mean codebook perplexity of the last layers over the final
quarter of training and its trend (slope over the second half). Run the arms in parallel with ``--only`` and
OMP_NUM_THREADS=1 to share 2 cores fairly. ``--runs SPIDR_DIR DINOSR_DIR`` compares two runs trained elsewhere
(e.g. the 90-minute arms of ``experiments/cpu_study.py``, docs/cpu_study.md) without training.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def trend(steps: np.ndarray, values: np.ndarray) -> float:
    """The tendency of a perplexity curve: the least-squares slope of ``values`` against ``steps`` over the
    second half of training, per 1,000 steps (positive: still rising; near 0: settled; negative: collapsing)."""
    late = steps >= steps[-1] / 2
    if late.sum() < 2:
        return float("nan")
    return float(np.polyfit(steps[late] / 1000.0, values[late], 1)[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", help="a corpus from `spidrkit data synth` (train.csv, dev.csv); needed to train")
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/stability")
    p.add_argument("--only", choices=["spidr", "dinosr"], default=None, help="train one arm only")
    p.add_argument("--plot-only", action="store_true", help="no training: plot the runs already in OUT")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--runs", nargs=2, type=Path, metavar=("SPIDR_DIR", "DINOSR_DIR"),
                   help="compare these two finished runs (no training; the plot and summary go to --out)")
    args = p.parse_args()
    if not (args.corpus or args.plot_only or args.runs):
        p.error("--corpus is needed to train (or pass --plot-only / --runs)")

    from spidrkit.config import load_config
    from spidrkit.evaluation.plots.perplexity import plot_runs_perplexity, read_perplexities
    from spidrkit.training.loop import pretrain

    out = Path(args.out)
    variants = [args.only] if args.only else ["spidr", "dinosr"]
    folders = dict(zip(("spidr", "dinosr"), args.runs)) if args.runs else {v: out / v for v in ("spidr", "dinosr")}
    if not args.plot_only and not args.runs:
        for variant in variants:
            corpus = Path(args.corpus)
            cfg = load_config("tiny", [f"data.train_manifest={corpus / 'train.csv'}",
                                       f"data.valid_manifest={corpus / 'dev.csv'}",
                                       f"train.max_minutes={float(args.minutes)}", f"train.seed={args.seed}",
                                       "train.device=cpu", *args.overrides], variant=variant)
            pretrain(cfg, out / variant, resume=True)
    runs = [v for v in ("spidr", "dinosr") if (folders[v] / "metrics.jsonl").is_file()]
    if not runs:
        raise SystemExit(f"no run in {out}")
    out.mkdir(parents=True, exist_ok=True)
    figure = plot_runs_perplexity([folders[v] / "metrics.jsonl" for v in runs], out / "perplexity.png", labels=runs,
                               title=f"codebook / prediction perplexity, tiny, {args.minutes:g} min budget")
    summary = {}
    for v in runs:
        ppl = read_perplexities(folders[v] / "metrics.jsonl")
        n = len(ppl["step"])
        tail = slice(n - max(n // 4, 1), n)
        cb = ppl["codebook_ppl"][tail]  # (steps, K)
        half = cb.shape[1] // 2
        summary[v] = {
            "steps": int(ppl["step"][-1]),
            "codebook_ppl_last_layers": float(np.mean(cb[:, half:])),
            "codebook_ppl_per_layer": [round(float(x), 2) for x in cb.mean(0)],
            "trend_per_1000_steps": trend(ppl["step"], ppl["codebook_ppl"][:, half:].mean(1)),
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("| run | steps | mean codebook perplexity, last half of the layers, last quarter of training | "
          "its trend over the second half (per 1,000 steps) | per layer |")
    print("|---|---|---|---|---|")
    for v, s in summary.items():
        print(f"| {v} | {s['steps']} | {s['codebook_ppl_last_layers']:.2f} | {s['trend_per_1000_steps']:+.2f} | "
              f"{s['codebook_ppl_per_layer']} |")
    print(f"plot: {figure.path}")


if __name__ == "__main__":
    main()
