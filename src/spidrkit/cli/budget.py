"""``spidrkit evaluate budget RUN --corpus DIR -o OUT``: the budget curve of a pretraining run (how its
across-speaker ABX falls with training time, from its milestone checkpoints; ``docs/cpu_study.md``), with
the minutes at which its fitted trend reaches MFCC's. Python API:
:func:`spidrkit.evaluation.runs.budget.budget_curve`."""

from __future__ import annotations

import argparse


def add_budget_parser(sub) -> argparse.ArgumentParser:
    from spidrkit.cli.flags import add_layers, add_output
    from spidrkit.evaluation.runs.budget import DEFAULT_MIN_FRAMES

    p = sub.add_parser("budget", help="ABX of a run's milestone checkpoints against training time",
                       description="Across-speaker ABX of every minutes milestone of a pretraining run "
                       "(train.milestone_minutes) and its last checkpoint, at the layer chosen on the first "
                       "split, with the fitted trend a + b ln(minutes) and when it reaches MFCC.",
                       epilog="example: spidrkit evaluate budget runs/demo/run --corpus runs/demo/corpus "
                       "-o runs/budget")
    p.add_argument("run", metavar="RUN", help="pretraining run folder (with milestone checkpoints)")
    p.add_argument("--corpus", required=True, metavar="DIR", help="aligned corpus folder (dev, heldout splits)")
    add_output(p, "OUT", "output folder", required=True)
    p.add_argument("--max-files", type=int, default=None, metavar="N", help="files per split (default: all)")
    add_layers(p, "1-based layers to choose from, comma-separated (default: all)")
    p.add_argument("--min-frames", type=int, default=DEFAULT_MIN_FRAMES, metavar="N",
                   help="shortest utterance kept, in frames (default: %(default)s)")
    p.add_argument("--within", action="store_true", help="also within-speaker ABX at the chosen layer")
    return p


def run_budget(args: argparse.Namespace) -> int:
    from spidrkit.cli import UserError
    from spidrkit.evaluation.runs.budget import budget_curve, render_budget
    from spidrkit.io import json_safe

    if args.max_files is not None and args.max_files < 1:
        raise UserError(f"--max-files {args.max_files}: give a number of files >= 1")
    res = budget_curve(args.run, args.corpus, args.output, layers=args.layers, max_files=args.max_files,
                       min_frames=args.min_frames, speakers=("within", "across") if args.within else ("across",),
                       force=args.force)
    print(render_budget(json_safe({k: v for k, v in res.items() if k != "outputs"})), end="")
    return 0
