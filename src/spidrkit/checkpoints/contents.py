"""What a raw checkpoint dict holds, whatever its layout: its state dict (unwrapped), hints in a foreign
config (variant, heads), the variant to build, and key listings for error messages."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from spidrkit.checkpoints.errors import CheckpointError
from spidrkit.config import VARIANTS

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def state_dict_of(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The state dict of a checkpoint (``model``, ``state_dict``... or the file itself), without the
    prefixes that wrappers add to every name."""
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(raw.get(key), Mapping):
            return strip_wrappers(dict(raw[key]))
    if any(isinstance(v, torch.Tensor) for v in raw.values()):
        return strip_wrappers(dict(raw))  # a bare state dict
    raise CheckpointError(f"no state dict in the file (top-level keys: {', '.join(map(str, raw))})")


def strip_wrappers(sd: dict[str, Any]) -> dict[str, Any]:
    for p in _WRAPPER_PREFIXES:
        if sd and all(k.startswith(p) for k in sd):
            sd = {k[len(p) :]: v for k, v in sd.items()}
    return sd


def find_value(obj: Any, names: tuple[str, ...], depth: int = 0) -> Any:
    """The first value under one of ``names`` in nested dicts (a loose search through foreign configs)."""
    if depth > 4 or not isinstance(obj, Mapping):
        return None
    for n in names:
        if n in obj and not isinstance(obj[n], Mapping):
            return obj[n]
    for v in obj.values():
        found = find_value(v, names, depth + 1)
        if found is not None:
            return found
    return None


def variant_hint(cfg: Any) -> str | None:
    """``spidr``/``dinosr`` if a foreign config names it (``variant``, ``_name``, ``model_type``...)."""
    value = find_value(cfg, ("variant", "model_type", "_name", "arch", "model_name", "name"))
    if isinstance(value, str):
        v = value.lower()
        for name in ("dinosr", "spidr"):
            if name in v:
                return name
    return None


def pick_variant(asked: str | None, hint: str | None, default: str, path: Path) -> str:
    """The variant to build a foreign file as: the one asked for, else the file's hint, else ``default``."""
    if asked is not None and hint is not None and asked != hint:
        warnings.warn(f"{path}: the file says variant {hint!r}, using {asked!r} as asked", stacklevel=4)
    variant = asked or hint or default
    if variant not in VARIANTS:
        raise CheckpointError(f"variant must be 'spidr' or 'dinosr', got {variant!r}")
    return variant


def listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown
