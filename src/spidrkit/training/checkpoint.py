"""Pretraining checkpoints: atomic, pruned, loadable with ``torch.load(weights_only=True)``.

A checkpoint ``RUN_DIR/checkpoints/step_00001000.pt`` is a dict of tensors and plain Python values:

- ``model``: the model's state dict, in the released layout (SPEC §7), float32;
- ``config``: ``Config.to_dict()`` of the run;
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
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spidrkit.config import Config

logger = logging.getLogger(__name__)

FORMAT = "spidrkit-pretrain/1"
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read, or does not fit the run that wants to resume from it."""


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest checkpoints (and stale temporary files); returns what went."""
    found = list_checkpoints(run_dir)
    gone = [p for _, p in found[: max(len(found) - keep, 0)]]
    folder = checkpoint_dir(run_dir)
    if folder.is_dir():
        gone += [p for p in folder.glob(".step_*.pt.tmp*") if _stale(p)]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def _stale(tmp: Path) -> bool:
    """A temporary file whose writer is gone (its pid is in the name; saves are synchronous, so one of
    this process is a leftover too)."""
    pid = tmp.name.rsplit(".tmp", 1)[-1]
    if not pid.isdigit() or int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
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
            return path, load_checkpoint(path)
        except CheckpointError as e:
            logger.warning("%s; trying the previous checkpoint", e)
    return None


def config_changes(saved: dict[str, Any], cfg: Config) -> tuple[list[str], list[str]]:
    """Differences between a checkpoint's config and the current one: (fatal, harmless).

    The model (its shapes and variant) cannot change under a resumed run; optimisation, data and training
    settings may (e.g. a larger ``train.max_steps`` to train longer), and are reported.
    """
    current = cfg.to_dict()
    fatal, harmless = [], []
    for section, values in current.items():
        old = saved.get(section)
        if not isinstance(values, dict):
            if old != values:
                (fatal if section == "variant" else harmless).append(f"{section}: {old!r} -> {values!r}")
            continue
        old = old or {}
        for key, value in values.items():
            if old.get(key) != value:
                msg = f"{section}.{key}: {old.get(key)!r} -> {value!r}"
                (fatal if section == "model" else harmless).append(msg)
    return fatal, harmless


# ---------------------------------------------------------------------------------------------- RNG
def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The process's RNG states as tensors and lists (``weights_only``-loadable)."""
    py = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {
            "key": np_state["state"]["key"].tolist(),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np.asarray(n["key"], dtype=np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(state["torch"].cpu())
    if device is not None and device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
