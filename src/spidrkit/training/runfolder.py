"""Owning a run folder: its lock, what the sidecar says when a run ends (however it ends), and the checks
that keep a bad state out of a checkpoint.

- **Lock** (``RUN_DIR/run.lock``, :func:`run_lock`): rank 0 holds it for the whole run
  (:func:`spidrkit.io.hold_lock`: host, pid, start time, command); the other ranks wait for rank 0 to
  have it (one collective) and stop with it when it cannot, so two runs never write one folder.
- **End status** (:func:`end_status`): every way out of a run maps to the sidecar's ``status``:
  ``completed``, ``time_budget``, ``preempted`` (SIGTERM, SIGUSR1, SIGUSR2), ``interrupted`` (SIGINT),
  ``diverged``, ``failed`` (any other error, with its one-line ``error``).
- **Finite weights** (:func:`check_finite_weights`): a checkpoint is never written from weights holding
  NaN or infinities; checked only when writing, so training keeps no host synchronisation per step.
- **Non-finite losses** (:func:`check_loss_streak`): ``train.max_nonfinite`` of them in a row stop the run;
  both checks name the last good checkpoint (:func:`last_good_checkpoint`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from spidrkit.checkpoints.run import list_checkpoints
from spidrkit.errors import Diverged, LockHeldError, Terminated
from spidrkit.io import clear_state, hold_lock, remove_entries
from spidrkit.runtime import all_reduce_sum, barrier, world

LOCK_NAME = "run.lock"


class TrainingDiverged(Diverged):
    """Too many non-finite losses in a row, or non-finite weights; the message names the last good
    checkpoint (exit status 3, :data:`spidrkit.errors.EXIT_DIVERGED`)."""


class NonFiniteWeights(TrainingDiverged):
    """The model's weights hold NaN or infinities at checkpoint time: that checkpoint is not written."""


RUN_STATE = ("checkpoints", "milestones", "metrics.jsonl", "tensorboard", "skipped.tsv")


def start_anew(run_dir: str | os.PathLike, *, force: bool = False) -> None:
    """Delete a pretraining run folder's training state (checkpoints first, then milestones and metrics), under
    its lock, so that the next :func:`~spidrkit.training.pretrain` starts at step 0 whatever the run was, on
    whatever data (``spidrkit pretrain --fresh``). ``force`` breaks the folder's lock, as ``pretrain``'s does."""
    clear_state(run_dir, RUN_STATE, lock=LOCK_NAME, what="this pretraining run folder", force=force)


def start_anew_locked(run_dir: str | os.PathLike) -> None:
    """:func:`start_anew` inside :func:`run_lock`, every rank together: rank 0 deletes the state (it holds the
    lock), and no rank leaves before the deletion is done (a barrier), so none resumes from what goes."""
    if world()[0] == 0:
        remove_entries(run_dir, RUN_STATE)
    barrier()


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, device: torch.device, force: bool = False) -> Iterator[Path | None]:
    """Hold ``RUN_DIR/run.lock`` (rank 0) for the block; every rank leaves the collective at its start only
    once rank 0 holds the lock, and raises :class:`LockHeldError` when rank 0 could not take it.
    ``force`` breaks a lock held by a live process (``--force``); a stale one is taken over anyway."""
    rank, _ = world()
    with contextlib.ExitStack() as stack:
        failure: BaseException | None = None
        path = None
        if rank == 0:
            try:
                path = stack.enter_context(
                    hold_lock(Path(run_dir) / LOCK_NAME, force=force, what="this pretraining run folder"))
            except (LockHeldError, OSError) as e:
                failure = e
        failed = all_reduce_sum(torch.tensor([1.0 if failure is not None else 0.0], device=device))
        if failure is not None:
            raise failure
        if failed.item() > 0:
            raise LockHeldError(f"{Path(run_dir) / LOCK_NAME}: rank 0 could not take the lock of this "
                                "pretraining run folder (see its message)")
        yield path


def end_status(error: BaseException) -> tuple[str, str | None]:
    """The sidecar's ``(status, signal)`` for a run ended by ``error``."""
    if isinstance(error, TrainingDiverged):
        return "diverged", None
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", "SIGINT"
    if isinstance(error, Terminated):
        return "preempted", "SIGTERM"
    return "failed", None


def check_finite_weights(model: torch.nn.Module, step: int, run_dir: str | os.PathLike) -> None:
    """Raise :class:`NonFiniteWeights` naming the step, the first bad tensor and the last good checkpoint of
    ``run_dir`` when a floating-point parameter or buffer of ``model`` is not finite (one host
    synchronisation, at checkpoint time)."""
    tensors = [(k, v) for k, v in model.state_dict().items() if v.is_floating_point()]
    if not tensors:
        return
    ok = torch.stack([torch.isfinite(v).all() for _, v in tensors])
    if bool(ok.all()):
        return
    bad = [k for (k, _), good in zip(tensors, ok.tolist()) if not good]
    raise NonFiniteWeights(
        f"step {step}: the model's weights hold non-finite values ({bad[0]}"
        f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}): refusing to write that checkpoint. The last "
        f"good checkpoint is {last_good_checkpoint(run_dir)}. Lower optim.lr or use train.precision='fp32', then "
        "resume from it."
    )


def last_good_checkpoint(run_dir: str | os.PathLike, up_to: int | None = None) -> str:
    """The newest checkpoint of ``run_dir`` (of step ``up_to`` at most) and its step, for an error message."""
    good = [(s, p) for s, p in list_checkpoints(run_dir) if up_to is None or s <= up_to]
    return f"{good[-1][1]} (step {good[-1][0]})" if good else "none (the run diverged before its first checkpoint)"


def check_loss_streak(run_dir: str | os.PathLike, limit: int, step: int, consecutive: int) -> None:
    """Raise :class:`TrainingDiverged` once ``consecutive`` non-finite losses in a row up to ``step`` reach
    ``limit`` (``train.max_nonfinite``; 0: never), naming the last checkpoint before them."""
    if limit <= 0 or consecutive < limit:
        return
    raise TrainingDiverged(
        f"{consecutive} non-finite losses in a row up to step {step} (train.max_nonfinite={limit}); "
        f"stopping. The last good checkpoint is {last_good_checkpoint(run_dir, step - consecutive)}. Lower "
        "optim.lr or use train.precision='fp32', then resume from it (move newer checkpoints away)."
    )
