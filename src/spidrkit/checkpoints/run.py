"""Pretraining checkpoints: atomic, pruned, loadable with ``torch.load(weights_only=True)``.

A checkpoint ``RUN_DIR/checkpoints/step_00001000.pt`` is a dict of tensors and plain Python values:

- ``model``: the model's state dict, in the released layout (``docs/formats.md``), float32;
- ``config``: ``Config.to_dict()`` of the run (checked on resume by :mod:`spidrkit.training.resume`);
- ``step``: optimiser steps done; ``format``: ``FORMAT``;
- ``stepper``: optimiser and step state (:meth:`spidrkit.training.step.Stepper.state_dict`);
- ``data``: one batch-sampler state per rank (resume at the next batch of each rank);
- ``rng``: one dict of RNG states per rank (python, numpy, torch CPU, CUDA);
- ``world_size``, ``elapsed`` (training seconds so far), ``metrics`` (the last logged training record).

Milestones (``train.milestone_minutes`` / ``train.milestone_steps``) are the same dicts under
``RUN_DIR/milestones/minutes_{M}_step_{S:08d}.pt`` (or ``steps_{N}_step_...``): outside ``checkpoints/``,
so :func:`prune_checkpoints` and resuming never see them (:func:`list_milestones`).

Files are written to a temporary name in the same folder, flushed to disk, then renamed, so a crash
never leaves a truncated checkpoint under a real name. A checkpoint found unreadable (damaged on disk,
truncated by a copy) is renamed aside to ``step_XXXXXXXX.pt.corrupt``: it is then never resumed from,
never counted among the ``keep`` checkpoints kept and never deleted in place of a good one; it stays
for inspection (delete it by hand).
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from spidrkit.checkpoints.errors import CheckpointError
from spidrkit.io import atomic_write, remove_stale_temps

logger = logging.getLogger(__name__)

FORMAT = "spidrkit-pretrain/1"
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d+)\.pt$")
CORRUPT_SUFFIX = ".corrupt"


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, path)`` of every checkpoint of the run, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


MILESTONE_DIR = "milestones"
_MILESTONE = re.compile(r"^(minutes|steps)_([0-9.e+-]+)_step_(\d+)\.pt$")


def milestone_path(run_dir: str | os.PathLike, kind: str, value: float, step: int) -> Path:
    """``RUN_DIR/milestones/{kind}_{value:g}_step_{step:08d}.pt``; ``kind`` is "minutes" or "steps"."""
    return Path(run_dir) / MILESTONE_DIR / f"{kind}_{value:g}_step_{step:08d}.pt"


def list_milestones(run_dir: str | os.PathLike) -> list[tuple[str, float, int, Path]]:
    """``(kind, value, step, path)`` of every milestone checkpoint of the run, by step."""
    folder = Path(run_dir) / MILESTONE_DIR
    found = []
    for p in folder.iterdir() if folder.is_dir() else ():
        m = _MILESTONE.match(p.name)
        if m and p.is_file():
            found.append((m.group(1), float(m.group(2)), int(m.group(3)), p))
    return sorted(found, key=lambda x: (x[2], x[0], x[1]))


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (temporary file, fsync, rename)."""
    with atomic_write(path, "wb", fsync=True) as f:
        torch.save(state, f)
    return Path(path)


def looks_complete(path: str | os.PathLike) -> bool:
    """A cheap check (the zip directory at the end of the file, no tensor read) that ``path`` is a whole
    ``torch.save`` file: a truncated or overwritten checkpoint fails it."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("data.pkl") for n in z.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def set_aside(path: str | os.PathLike) -> Path | None:
    """Rename an unreadable checkpoint to ``NAME.corrupt`` (kept for inspection, no longer a checkpoint of
    the run); returns the new path, or ``None`` when it could not be renamed (already gone)."""
    path = Path(path)
    aside = path.with_name(path.name + CORRUPT_SUFFIX)
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return None
    logger.warning("%s is unreadable: renamed to %s (not resumed from, not counted among the kept "
                   "checkpoints; delete it once inspected)", path, aside.name)
    return aside


def prune_checkpoints(run_dir: str | os.PathLike, keep: int, up_to: int | None = None) -> list[Path]:
    """Delete all but the ``keep`` newest good checkpoints (and stale temporary files); returns what went.

    Only checkpoints of steps ``<= up_to`` (when given: the step just written) take part, and one that
    fails :func:`looks_complete` is set aside (:func:`set_aside`) instead of being counted, so a damaged
    file never takes the place of a good one.
    """
    found = [(s, p) for s, p in list_checkpoints(run_dir) if up_to is None or s <= up_to]
    good = []
    for _, p in found:
        if looks_complete(p):
            good.append(p)
        else:
            set_aside(p)
    gone = good[: max(len(good) - keep, 0)]
    folder = checkpoint_dir(run_dir)
    if folder.is_dir():
        gone += remove_stale_temps(folder, ".step_*.pt.tmp*")
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def read_run_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no code runs while loading)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a spidrkit checkpoint (no 'model' entry)")
    return state


def load_latest(run_dir: str | os.PathLike, set_aside_unreadable: bool = False) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint of the run. An unreadable newer one is reported and passed over; with
    ``set_aside_unreadable`` (the process that owns the run folder: rank 0), once an older one is read, the
    newer ones whose content is damaged are renamed aside (:func:`set_aside`; not those that failed for a
    reason of the system, such as a permission). With no readable checkpoint nothing is renamed."""
    damaged = []
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            state = read_run_checkpoint(path)
        except CheckpointError as e:
            logger.warning("%s; trying the previous checkpoint", e)
            if not isinstance(e.__cause__, OSError):
                damaged.append(path)
            continue
        if set_aside_unreadable:
            for p in damaged:
                set_aside(p)
        return path, state
    return None
