"""``spidrkit pretrain``: pretrain SpidR or DinoSR from a config; run it again to resume.

    spidrkit pretrain CONFIG.toml [--variant spidr|dinosr] [--set section.key=value ...] [-o RUN_DIR]
                      [--report-to none|tensorboard|wandb]     # docs/formats.md, "Tracking"
    torchrun --nproc-per-node 8 $(which spidrkit) pretrain CONFIG.toml -o RUN_DIR     # one node, 8 GPUs
    srun --ntasks-per-node 8 spidrkit pretrain CONFIG.toml -o RUN_DIR                 # SLURM, by hand
    spidrkit pretrain CONFIG.toml -o RUN_DIR --slurm nodes=2,gpus=8,partition=gpu,time=1440

example: spidrkit pretrain tiny --set data.train_manifest=corpus/train.csv -o runs/tiny

Exit status: 0 when the run completed, stopped at its time budget (train.max_minutes) or was stopped by
SIGUSR1/SIGUSR2 (SLURM's time-limit warning: the job is requeued); 130 after SIGINT (Ctrl-C) and 143
after SIGTERM, each once the checkpoint of the current step is written (a second Ctrl-C stops at once);
run the same command again to resume. 2 for an error in the config or the data; 3 when the run diverged
(train.max_nonfinite non-finite losses in a row, or non-finite weights at a checkpoint); 74 for an I/O
error (disk full: nothing partial is left, the previous checkpoint is intact; free space and rerun);
75 when another live process holds the run folder's lock (RUN_DIR/run.lock; --force breaks it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from spidrkit.cli import UserError
from spidrkit.cli.config import add_config_arguments, config_from_args
from spidrkit.cli.flags import add_output, note, show_progress
from spidrkit.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED
from spidrkit.tracking import REPORT_TO, REPORT_TO_HELP, report_to_override


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = __doc__.split("\n\n", 1)[1]
    add_config_arguments(parser)
    add_output(parser, "RUN_DIR", "where checkpoints, metrics and logs go (default: runs/<config name>-<variant>); "
               "an existing run there is resumed", old=("--run-dir",))
    parser.add_argument(
        "--fresh", action="store_true",
        help="start the run folder anew: delete its checkpoints, milestones and metrics first (also the way to "
        "train an existing run folder on other data)"
    )
    parser.add_argument(
        "--force", action="store_true",
        help="break the run folder's lock (RUN_DIR/run.lock) although its holder seems alive "
        "(e.g. a run on another host that is gone); a stale lock on this host is taken over anyway",
    )
    parser.add_argument(
        "--slurm", default=None, metavar="KEY=VALUE,...",
        help="submit to SLURM with submitit instead of running here: nodes, gpus (per node), cpus (per task), "
        "time (minutes), partition, account, qos, constraint, mem, signal_delay (s); e.g. nodes=2,gpus=8",
    )
    parser.add_argument("--report-to", choices=REPORT_TO, default=None, help=REPORT_TO_HELP)


def default_run_dir(config: str, variant: str) -> Path:
    return Path("runs") / f"{Path(config).stem}-{variant}"


def run(args: argparse.Namespace) -> int:
    from spidrkit.io import check_output_dir
    from spidrkit.training.loop import pretrain
    from spidrkit.training.runfolder import start_anew
    from spidrkit.training.slurm import parse_slurm_spec, submit_slurm

    args.overrides += report_to_override(args.report_to)
    cfg = config_from_args(args)
    run_dir = Path(args.output) if args.output else default_run_dir(args.config, cfg.variant)
    check_output_dir(run_dir, "-o")
    if not cfg.data.train_manifest:
        raise UserError("no training data: set data.train_manifest in the config or --set data.train_manifest=PATH")
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.slurm is not None:
        if args.fresh:  # before the job exists: no rank runs yet
            start_anew(run_dir, force=args.force)
        job = submit_slurm(cfg.to_dict(), run_dir.resolve(), parse_slurm_spec(args.slurm), run_dir.name)
        note(args, f"submitted SLURM job {job.job_id}; run dir {run_dir}, logs in {run_dir / 'slurm'}")
        return EXIT_OK
    # --fresh: pretrain deletes once the process group is up (rank 0, then a barrier: no rank resumes from it)
    summary = pretrain(cfg, run_dir, progress=show_progress(args), force=args.force, fresh=args.fresh)
    sig = summary.get("signal")
    status = f"{summary['status']} ({sig})" if sig else summary["status"]
    code = {"SIGINT": EXIT_INTERRUPTED, "SIGTERM": EXIT_TERMINATED}.get(sig, EXIT_OK)
    print(
        f"{'spidrkit pretrain: ' if code else ''}{status} at step {summary['step']}/{summary['max_steps']} "
        f"({summary['steps_run']} steps run); checkpoint {summary['checkpoint']}; run dir {run_dir}"
        f"{'; run the same command again to resume' if code else ''}",
        file=sys.stderr,
    )
    return code
