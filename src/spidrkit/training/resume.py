"""Picking a run up again: which checkpoint it resumes from, what its config may change, and each rank's
data and RNG states.

A resumed run takes exactly the steps the uninterrupted run would have taken: model, optimiser,
codebooks, batch-sampler position, masks and RNG states all come back. A checkpoint written by another
number of processes resumes too, less exactly (the data order restarts at the next epoch, RNGs re-seeded).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from spidrkit.checkpoints.run import FORMAT, CheckpointError, list_checkpoints, load_latest
from spidrkit.config import Config, ModelConfig, TeacherConfig, variant_of
from spidrkit.data.corpora.manifest import ManifestEntry, entries_sha256
from spidrkit.errors import InputError
from spidrkit.io import read_sidecar
from spidrkit.runtime import seed_everything, set_rng_state

logger = logging.getLogger("spidrkit.training")


def find_checkpoint(run_dir: Path, cfg: Config, resume: bool, is_main: bool) -> tuple[Path, dict[str, Any]] | None:
    """The latest checkpoint of ``run_dir`` and its contents, when the run can resume from it; ``None``
    for a new run. Raises :class:`CheckpointError` when it cannot (``resume=False``, another model)."""
    found = list_checkpoints(run_dir)
    if not found:
        return None
    if not resume:
        raise CheckpointError(
            f"{run_dir} already holds checkpoints (up to {found[-1][1].name}); "
            "resume from them or choose another run directory"
        )
    latest = load_latest(run_dir, set_aside_unreadable=is_main)
    if latest is None:
        raise CheckpointError(f"no readable checkpoint in {run_dir / 'checkpoints'}")
    path, ckpt = latest
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {ckpt.get('format')!r}, expected {FORMAT!r}")
    fatal, harmless = config_changes(ckpt["config"], cfg)
    if fatal:
        raise CheckpointError(f"{path} was trained with another model; cannot resume with: " + "; ".join(fatal))
    if harmless and is_main:
        logger.warning("resuming with changed settings: %s", "; ".join(harmless))
    if is_main:
        logger.info("resuming from %s (step %d)", path, ckpt["step"])
    return path, ckpt


def restore_data_and_rng(
    ckpt: dict[str, Any] | None, seed: int, rank: int, world_size: int, device: torch.device
) -> tuple[dict[str, Any] | None, bool]:
    """Restore this rank's RNG states; returns its batch-sampler state and whether it resumes exactly."""
    if ckpt is None:
        seed_everything(seed + 1000 * rank)  # dropout differs across ranks
        return None, True
    if int(ckpt.get("world_size", 1)) == world_size:
        set_rng_state(ckpt["rng"][rank], device)
        return ckpt["data"][rank], True
    logger.warning(
        "the checkpoint was written by %s processes, this run has %s: the data order restarts at the "
        "next epoch and the RNGs are re-seeded", ckpt.get("world_size"), world_size,
    )
    seed_everything(seed + 1000 * rank + 7919 * int(ckpt["step"]))
    return ckpt["data"][0], False


def checkpoint_rng(states: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rank's RNG states with their tensors on the CPU, as a checkpoint stores them."""
    return [{k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in r.items()} for r in states]


class DataMismatch(InputError):
    """A run folder resumed on other data than it was trained or validated on."""


def data_identity(cfg: Config, train: Sequence[ManifestEntry], valid: Sequence[ManifestEntry]) -> dict[str, Any]:
    """What a run trains and validates on, as its sidecar records it (``data``): each manifest as given, its
    number of rows and the digest of its rows (:func:`~spidrkit.data.corpora.manifest.entries_sha256`)."""
    return {"train_manifest": str(cfg.data.train_manifest), "train_files": len(train),
            "train_sha256": entries_sha256(train), "valid_manifest": str(cfg.data.valid_manifest or ""),
            "valid_files": len(valid), "valid_sha256": entries_sha256(valid) if valid else ""}


def check_same_data(run_dir: Path, now: dict[str, Any]) -> None:
    """:class:`DataMismatch` when ``run_dir`` holds checkpoints of a run whose sidecar records other training
    or validation data than ``now`` (:func:`data_identity`; a sidecar without it, from an older spidrkit, is not
    checked). The message names both and the way out."""
    if not list_checkpoints(run_dir):
        return
    try:
        stored = read_sidecar(run_dir).get("data")
    except (FileNotFoundError, ValueError):
        return
    if not isinstance(stored, dict):
        return
    for split, done in (("train", "trained"), ("valid", "validated")):
        if stored.get(f"{split}_sha256") != now[f"{split}_sha256"]:
            raise DataMismatch(f"{run_dir} was {done} on {_described(stored, split)}, not {_described(now, split)}: "
                               f"use another --run-dir, or --fresh to start {run_dir} anew")


def _described(identity: dict[str, Any], split: str) -> str:
    if not identity.get(f"{split}_files"):
        return "no validation data" if split == "valid" else "no data"
    return (f"{identity.get(f'{split}_manifest')} ({identity.get(f'{split}_files')} files, rows sha256 "
            f"{str(identity.get(f'{split}_sha256'))[:16]})")


# The switches the variant derives from; a change of either changes what the run trains.
_SWITCHES = {("model", "heads"), ("teacher", "schedule")}


def config_changes(saved: dict[str, Any], cfg: Config) -> tuple[list[str], list[str]]:
    """Differences between a checkpoint's config (``Config.to_dict()``) and the current one: (fatal, harmless).

    The model (its shapes and variant) cannot change under a resumed run: a change in ``[model]`` or in
    ``teacher.schedule`` is fatal, and a change of variant is named first. Optimisation, data and training
    settings may change (e.g. a larger ``train.max_steps`` to train longer), and are reported. The saved
    variant is derived from the saved switches, not read from its stored label.
    """
    current = cfg.to_dict()
    current.pop("variant")
    fatal, harmless = [], []
    old_heads = (saved.get("model") or {}).get("heads", ModelConfig.heads)
    old_variant = variant_of(old_heads, (saved.get("teacher") or {}).get("schedule", TeacherConfig.schedule))
    if old_variant != cfg.variant:
        fatal.append(f"variant: {old_variant!r} -> {cfg.variant!r}")
    defaults = Config().to_dict()  # a key missing from an older checkpoint had its default's behaviour
    for section, values in current.items():
        old = {**defaults[section], **(saved.get(section) or {})}
        for key, value in values.items():
            if old.get(key) != value:
                msg = f"{section}.{key}: {old.get(key)!r} -> {value!r}"
                (fatal if section == "model" or (section, key) in _SWITCHES else harmless).append(msg)
    return fatal, harmless
