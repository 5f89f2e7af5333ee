"""What one layer sweep is asked to do: :class:`SweepOptions`, every option of :func:`spidrkit.sweep` and of
``spidrkit evaluate sweep``, checked when built, before a model or a corpus is read."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from spidrkit.config.validation import with_overrides
from spidrkit.evaluation.sweep.errors import SweepError
from spidrkit.tracking import check_report_to

# baselines of the sweep; "random" is the model's architecture with random weights, "noise" Gaussian features
SWEEP_BASELINES: dict[str, str] = {
    "mfcc": "MFCC + deltas (39-d), 25 ms windows every 20 ms",
    "mfcc_cmvn": "MFCC + deltas with per-utterance mean and variance normalisation (CMVN)",
    "log_mel": "log mel spectrogram (80-d), 25 ms windows every 20 ms",
    "noise": "Gaussian noise features of the model's width (chance level)",
    "random": "the same architecture with random weights (seeded), every layer",
}
FEATURE_BASELINES = ("mfcc", "mfcc_cmvn", "log_mel", "noise")
DEFAULT_BASELINES = ("mfcc", "mfcc_cmvn", "random")  # the floors, and the same model with random weights
DEFAULT_KMEANS_MAX_FRAMES = 50_000


@dataclass(frozen=True)
class SweepOptions:
    """Every option of a sweep (:func:`~spidrkit.evaluation.sweep.run.sweep` says what each does)."""

    splits: Sequence[str] | None = None
    layers: Sequence[int] | None = None
    kmeans_k: int | None = None
    kmeans_max_frames: int = DEFAULT_KMEANS_MAX_FRAMES
    baselines: Sequence[str] = DEFAULT_BASELINES
    posteriors: bool = False
    max_files: int | None = None
    device: str = "cpu"
    metrics_jsonl: str | os.PathLike | Sequence[str | os.PathLike] | None = None
    run_labels: Sequence[str] | None = None
    title: str | None = None
    seed: int = 0
    max_memory_gb: float = 4.0
    tsne_points: int = 1000
    progress: bool = True
    notes: Sequence[str] = ()
    probe: bool = False
    label: str | Sequence[str | None] | None = None
    report_to: str = "none"
    report_dir: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        check_report_to(self.report_to)
        unknown = [b for b in self.baselines or () if b not in SWEEP_BASELINES]
        if unknown:
            raise SweepError(f"unknown baselines {unknown}; choose from {', '.join(SWEEP_BASELINES)}")
        if self.kmeans_k is not None and (isinstance(self.kmeans_k, bool) or int(self.kmeans_k) < 2):
            raise SweepError(f"kmeans_k (--kmeans) must be an integer >= 2, got {self.kmeans_k!r}")
        for name in ("max_files", "kmeans_max_frames"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) < 1):
                raise SweepError(f"{name} (--{name.replace('_', '-')}) must be >= 1, got {value!r}")
        if not (math.isfinite(self.max_memory_gb) and self.max_memory_gb > 0):
            raise SweepError(f"max_memory_gb (--max-memory-gb) must be a finite number > 0, got {self.max_memory_gb}")
        if self.tsne_points < 0:
            raise SweepError(f"tsne_points (--tsne-points) must be >= 0, got {self.tsne_points}")
        for run in self.runs:
            if not run.is_file():
                raise SweepError(f"no metrics file at {run}")

    @property
    def runs(self) -> list[Path]:
        """The training runs' metrics logs, as a list."""
        m = self.metrics_jsonl
        return [] if m is None else [Path(m)] if isinstance(m, str | os.PathLike) else [Path(r) for r in m]


def sweep_options(options: SweepOptions | None = None, **overrides) -> SweepOptions:
    """``options`` (default: all defaults) with ``overrides`` of its fields (:func:`~spidrkit.config.validation.
    with_overrides`)."""
    return with_overrides(SweepOptions, options, overrides, "sweep")
