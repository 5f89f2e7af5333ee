"""``spidrkit push RUN|FILE|DIR REPO_ID``: a model as a Hugging Face Hub repo, its model folder and model card
(:func:`spidrkit.checkpoints.publish.push`, ``docs/hub.md``).

    spidrkit push runs/base OWNER/NAME [--private] [--report sweep/report.json] [--report slm/report.json]
    spidrkit push runs/base OWNER/NAME --dry-run -o DIR      # writes DIR/, uploads nothing
"""

from __future__ import annotations

import argparse

from spidrkit.cli.flags import add_output, note


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="RUN|FILE|DIR",
                        help="a pretraining run folder (its latest checkpoint), a checkpoint file (released, fairseq "
                        "DinoSR, spidrkit), a spidrkit model folder, or a published model's name")
    parser.add_argument("repo_id", metavar="REPO_ID", help="the Hub model repo, OWNER/NAME (created when missing)")
    parser.add_argument("--private", action="store_true", help="create the repo private (when it does not exist)")
    parser.add_argument("--report", dest="reports", action="append", default=[], metavar="REPORT.json",
                        help="report.json of `evaluate sweep` (or the demo) or of `evaluate slm`: its best-layer ABX, "
                        "PNMI or sLM scores go into the model card (repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="write the model folder and its card to --output, upload nothing")
    add_output(parser, "DIR", "where the model folder and card are written (needed with --dry-run; default: a "
               "temporary folder)")
    parser.add_argument("--variant", choices=("spidr", "dinosr"), default=None,
                        help="model variant, for released files that do not say it (default: spidr)")
    parser.add_argument("--force", action="store_true", help="replace the model files in an existing --output")
    parser.epilog = "example: spidrkit push runs/tiny someuser/spidr-tiny --dry-run -o hub/spidr-tiny"


def run(args: argparse.Namespace) -> int:
    from spidrkit.checkpoints.publish import CARD, push
    from spidrkit.io import check_output_dir

    if args.output is not None:
        check_output_dir(args.output, "-o")
    done = push(args.source, args.repo_id, private=args.private, reports=args.reports, output=args.output,
                dry_run=args.dry_run, variant=args.variant, force=args.force)
    for path in done.other_checkpoint_reports:
        note(args, f"spidrkit push: note: {path} measured another checkpoint than the one pushed (the card says so)")
    if done.folder is not None:
        print(f"wrote {done.folder}/ (config.json, model.safetensors, {CARD}): model.safetensors SHA-256 {done.sha256}")
    if done.url is None:
        print(f"dry run: nothing uploaded; `spidrkit push {args.source} {args.repo_id}` uploads it")
    else:
        print(f"pushed to {args.repo_id}: {done.url}")
    return 0
