"""SpidR vs DinoSR under the same budget and seed: codebook perplexity over training (the paper's Figure 2).

    python benchmarks/spidr_vs_dinosr.py --corpus runs/demo/corpus --minutes 20 --out runs/stability
    python benchmarks/spidr_vs_dinosr.py --corpus runs/demo/corpus --minutes 20 --only dinosr   # one arm

Each arm pretrains the ``tiny`` config (variant spidr / dinosr, same seed, same data, same wall-time budget)
into OUT/VARIANT, then the script overlays both runs' codebook and prediction perplexities in
OUT/perplexity.png and prints, per run, the mean codebook perplexity of the last layers over the final
quarter of training. Run the arms in parallel with ``--only`` and OMP_NUM_THREADS=1 to share 2 cores fairly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="a corpus from `spidrkit data synth` (train.csv, dev.csv)")
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/stability")
    p.add_argument("--only", choices=["spidr", "dinosr"], default=None, help="train one arm only")
    p.add_argument("--plot-only", action="store_true", help="no training: plot the runs already in OUT")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()

    from spidrkit.config import load_config
    from spidrkit.evaluation.perplexity import plot_runs_perplexity, read_perplexities
    from spidrkit.training.loop import pretrain

    out = Path(args.out)
    variants = [args.only] if args.only else ["spidr", "dinosr"]
    if not args.plot_only:
        for variant in variants:
            corpus = Path(args.corpus)
            cfg = load_config("tiny", [f"data.train_manifest={corpus / 'train.csv'}",
                                       f"data.valid_manifest={corpus / 'dev.csv'}",
                                       f"train.max_minutes={float(args.minutes)}", f"train.seed={args.seed}",
                                       "train.device=cpu", *args.overrides], variant=variant)
            pretrain(cfg, out / variant, resume=True)
    runs = [v for v in ("spidr", "dinosr") if (out / v / "metrics.jsonl").is_file()]
    if not runs:
        raise SystemExit(f"no run in {out}")
    figure = plot_runs_perplexity([out / v / "metrics.jsonl" for v in runs], out / "perplexity.png", labels=runs,
                               title=f"codebook / prediction perplexity, tiny, {args.minutes:g} min budget")
    summary = {}
    for v in runs:
        ppl = read_perplexities(out / v / "metrics.jsonl")
        n = len(ppl["step"])
        tail = slice(n - max(n // 4, 1), n)
        cb = ppl["codebook_ppl"][tail]  # (steps, K)
        half = cb.shape[1] // 2
        summary[v] = {
            "steps": int(ppl["step"][-1]),
            "codebook_ppl_last_layers": float(np.mean(cb[:, half:])),
            "codebook_ppl_per_layer": [round(float(x), 2) for x in cb.mean(0)],
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("| run | steps | mean codebook perplexity, last half of the layers, last quarter of training | per layer |")
    print("|---|---|---|---|")
    for v, s in summary.items():
        print(f"| {v} | {s['steps']} | {s['codebook_ppl_last_layers']:.2f} | {s['codebook_ppl_per_layer']} |")
    print(f"plot: {figure.path}")


if __name__ == "__main__":
    main()
