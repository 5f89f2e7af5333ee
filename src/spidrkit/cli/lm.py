"""``spidrkit lm``: unit language models.

    spidrkit lm train UNITS... [--config opt125m|tiny|FILE.toml] [--set section.key=value ...] --run-dir DIR
                      [--valid UNITS ...] [--force] [--no-progress]
    torchrun --nproc-per-node 8 $(which spidrkit) lm train UNITS --config opt125m --run-dir DIR

UNITS: unit files as `spidrkit extract` writes them (units.txt, units.jsonl) or fairseq .km files.
Run the same command again to resume. Exit status: 0 when done; 2 for an error in the config or the
units; 3 when the training loss became NaN or infinite; 74 for an I/O error; 75 when another live
process holds RUN_DIR/run.lock (--force breaks it); 130 / 143 after Ctrl-C / SIGTERM, once the
checkpoint of the last completed step is written.
"""

from __future__ import annotations

import argparse
import json
import sys

from spidrkit.errors import EXIT_DIVERGED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("train", help="train (or resume) a unit LM")
    p.add_argument("units", nargs="+", metavar="UNITS", help="training units files (.txt, .jsonl, .km)")
    p.add_argument("--config", default="tiny", help="preset (opt125m: the paper's; tiny: CPU-sized) or a TOML "
                   "file (default: tiny)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (repeatable), e.g. --set train.max_steps=500")
    p.add_argument("--run-dir", required=True, metavar="DIR", help="the run folder (an existing run is resumed)")
    p.add_argument("--valid", nargs="+", default=None, metavar="UNITS",
                   help="validation units files (default: a seeded lm.valid_fraction of the utterances)")
    p.add_argument("--force", action="store_true", help="break the run folder's lock (RUN_DIR/run.lock)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from spidrkit.lm.trainer import LMDiverged, train

    try:
        summary = train(args.units, args.run_dir, args.config, args.overrides, args.valid,
                        progress=not args.no_progress, force=args.force)
    except LMDiverged as e:
        print(f"spidrkit lm: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_DIVERGED
    print(json.dumps(summary))
    return 0
