"""``spidrkit demo``: corpus -> pretraining -> extraction -> evaluation -> report, on a CPU."""

from __future__ import annotations

import argparse

from spidrkit.cli.flags import add_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=24.0,
                        help="pretraining wall-time budget (default 24); it also stops at 2,500 steps "
                             "(--set train.max_steps=N)")
    add_output(parser, "DIR", "output folder", default="runs/demo", old=("--out",))
    parser.add_argument("--hours", type=float, default=None,
                        help="speech to synthesise (default: 2 h for 20 min, less for shorter runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", choices=["spidr", "dinosr"], default="spidr")
    parser.add_argument("--kmeans", type=int, default=100, help="k of the k-means units (0: none)")
    parser.add_argument("--workers", type=int, default=2, help="synthesis processes")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override the tiny config (repeatable)")
    parser.add_argument("--slm-minutes", type=float, default=4.0,
                        help="training budget of the unit LM of the sLM stage (default 4; 0: no sLM stage)")
    parser.add_argument("--force", action="store_true",
                        help="write into an existing folder that is not a demo's (a demo's folder is resumed)")
    parser.epilog = "example: spidrkit demo --minutes 24 -o runs/demo"


def run(args: argparse.Namespace) -> int:
    from spidrkit.cli import UserError
    from spidrkit.cli.flags import show_progress
    from spidrkit.config import ConfigError
    from spidrkit.demo import run_demo
    from spidrkit.io import check_output_dir

    check_output_dir(args.output, "-o")  # run_demo checks then that a folder is a demo's (or --force)
    if args.minutes <= 0:
        raise UserError("--minutes must be > 0")
    try:
        run_demo(args.output, minutes=args.minutes, hours=args.hours, seed=args.seed, variant=args.variant,
                 kmeans_k=args.kmeans or None, workers=args.workers, overrides=tuple(args.overrides),
                 progress=show_progress(args), slm_minutes=args.slm_minutes, force=args.force)
    except ConfigError as e:
        raise UserError(str(e)) from e
    return 0
