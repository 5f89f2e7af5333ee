"""The bootstrap of every interval spidrkit reports (probe PER, sLM scores, the budget curve's crossing time):
resamples of the units of a measurement (utterances, pair ids, milestones) with replacement, and the
percentile interval of a statistic over them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

LEVEL = 0.95


def resample_indices(size: int, n: int, seed: int = 0) -> np.ndarray:
    """``(n, size)`` indices drawn with replacement from ``range(size)``, one resample per row (seeded)."""
    return np.random.default_rng(seed).integers(0, size, size=(n, size))


def percentile_interval(stats: Sequence[float] | np.ndarray, level: float = LEVEL,
                        method: str = "linear") -> tuple[float, float]:
    """The central ``level`` interval of ``stats`` (numpy's quantile ``method``); ``(nan, nan)`` if empty."""
    stats = np.asarray(stats, dtype=np.float64)
    if stats.size == 0:
        return math.nan, math.nan
    tail = (1 - level) / 2
    low, high = np.quantile(stats, [tail, 1 - tail], method=method)
    return float(low), float(high)
