"""Discrete units as the evaluators take them: frame-level integer sequences, and their unit indices as
fastabx features. Shared by :mod:`spidrkit.evaluation.metrics.abx` and :mod:`spidrkit.evaluation.metrics.units`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from spidrkit.extraction.units import Units, read_units

UnitSource = str | os.PathLike | Mapping[str, Sequence[int] | np.ndarray | Units]


def frame_units(units: UnitSource) -> dict[str, np.ndarray]:
    """Frame-level units ``{utt: int64 array}`` from a units file (any format of
    :mod:`spidrkit.extraction.units`, de-duplicated lines expanded back) or a mapping of sequences."""
    if isinstance(units, (str, os.PathLike)):
        units = read_units(Path(units))
    out = {}
    for utt, u in units.items():
        a = np.asarray(u.frames() if isinstance(u, Units) else u)
        if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"{utt}: units must be a 1-D integer sequence, got {a.dtype} {a.shape}")
        out[utt] = a.astype(np.int64, copy=False)
    if not out:
        raise ValueError("no utterance in the units")
    return out


def units_as_indices(units: Mapping[str, Sequence[int] | np.ndarray]) -> dict[str, torch.Tensor]:
    """Units ``utt -> int sequence`` as fastabx's discrete features: float tensors (T, 1) of unit indices.

    Comparing these with the ``"identical"`` distance (0 if equal, 1 otherwise) is the ABX on one-hot units:
    the angular distance between two one-hot vectors is 0 or 1/2, a constant factor that changes no ABX
    decision. Storing the index instead of the one-hot vector keeps memory at 1 value per frame.
    """
    return {utt: torch.as_tensor(np.asarray(u), dtype=torch.float32).reshape(-1, 1) for utt, u in units.items()}
