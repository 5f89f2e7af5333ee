"""Pretraining checkpoints: atomic, pruned, loadable with ``torch.load(weights_only=True)``.

A checkpoint ``RUN_DIR/checkpoints/step_00001000.pt`` is a dict of tensors and plain Python values:

- ``model``: the model's state dict, in the released layout (``docs/formats.md``), float32;
- ``config``: ``Config.to_dict()`` of the run (checked on resume by :mod:`spidrkit.training.resume`);
- ``step``: optimiser steps done; ``format``: ``FORMAT``;
- ``stepper``: optimiser and step state (:meth:`spidrkit.training.step.Stepper.state_dict`);
- ``data``: one batch-sampler state per rank (resume at the next batch of each rank);
- ``rng``: one dict of RNG states per rank (python, numpy, torch CPU, CUDA);
- ``world_size``, ``elapsed`` (training seconds so far), ``metrics`` (the last logged training record).

Files are written to a temporary name in the same folder, flushed to disk, then renamed, so a crash
never leaves a truncated checkpoint under a real name.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from spidrkit.checkpoints.errors import CheckpointError
from spidrkit.io import atomic_write, remove_stale_temps

logger = logging.getLogger(__name__)

FORMAT = "spidrkit-pretrain/1"
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d+)\.pt$")


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


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (temporary file, fsync, rename)."""
    with atomic_write(path, "wb", fsync=True) as f:
        torch.save(state, f)
    return Path(path)


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest checkpoints (and stale temporary files); returns what went."""
    found = list_checkpoints(run_dir)
    gone = [p for _, p in found[: max(len(found) - keep, 0)]]
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


def load_latest(run_dir: str | os.PathLike) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint of the run (an unreadable newer one is reported and passed over)."""
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            return path, read_run_checkpoint(path)
        except CheckpointError as e:
            logger.warning("%s; trying the previous checkpoint", e)
    return None
