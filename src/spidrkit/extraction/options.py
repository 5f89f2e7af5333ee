"""What one extraction is asked to do: :class:`ExtractOptions`, every option of :func:`spidrkit.extract` and of
``spidrkit extract``, checked when built, before a model is loaded or a file read."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from spidrkit.config.validation import with_overrides
from spidrkit.data.corpora.manifest import AUDIO_EXTENSIONS
from spidrkit.extraction.compute import parse_units
from spidrkit.extraction.plan import (
    DEFAULT_BATCH_SECONDS,
    DEFAULT_CONTEXT_SECONDS,
    DEFAULT_WINDOW_SECONDS,
    ExtractionError,
)

UNIT_FILE_FORMATS = ("txt", "jsonl")


@dataclass(frozen=True)
class ExtractOptions:
    """Every option of an extraction (the module doc of :mod:`spidrkit.extraction.extract` says what each does).

    ``layers``: 1-based. ``units``: ``None`` (features), ``"codebook"`` or ``"kmeans:PATH"``; ``dedup``
    collapses repeated units (with durations). ``fmt``/``dtype``: feature files as ``.pt`` or ``.npy``,
    float32 or float16. ``precision``: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``bf16`` or ``fp32``.
    ``rank``/``world_size``: this process's shard (default: from torchrun or SLURM variables).
    ``num_workers``: audio-decoding threads (default 0 on CPU, 4 on CUDA). ``overwrite``: redo files already
    extracted. ``units_format``: ``"txt"``, ``"jsonl"`` or ``None`` (text unless a file id holds whitespace).
    ``skip_bad``: list undecodable files in ``OUT/skipped.tsv`` and go on. ``force``: break the lock of
    another extraction into the folder. ``extensions``: those of a folder's audio. ``variant``: of a
    checkpoint loaded by path."""

    layers: int | Sequence[int] = (6,)
    units: str | None = None
    fmt: str = "pt"
    dtype: torch.dtype | str = torch.float32
    batch_seconds: float = DEFAULT_BATCH_SECONDS
    device: str | torch.device | None = None
    precision: str = "auto"
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    context_seconds: float = DEFAULT_CONTEXT_SECONDS
    dedup: bool = False
    rank: int | None = None
    world_size: int | None = None
    variant: str | None = None
    num_workers: int | None = None
    overwrite: bool = False
    progress: bool = True
    units_format: str | None = None
    skip_bad: bool = False
    force: bool = False
    extensions: Sequence[str] = AUDIO_EXTENSIONS

    def __post_init__(self) -> None:
        _positive("batch_seconds", self.batch_seconds)
        _positive("window_seconds", self.window_seconds)
        if not (isinstance(self.context_seconds, int | float) and math.isfinite(self.context_seconds)
                and self.context_seconds >= 0):
            raise ExtractionError(f"context_seconds (--context-seconds) must be a finite number >= 0, got "
                                  f"{self.context_seconds!r}")
        if self.window_seconds <= 2 * self.context_seconds:
            raise ExtractionError(f"window_seconds ({self.window_seconds:g}) must be more than twice "
                                  f"context_seconds ({self.context_seconds:g}): --window-seconds / --context-seconds")
        if self.num_workers is not None and self.num_workers < 0:
            raise ExtractionError(f"num_workers (--num-workers) must be >= 0, got {self.num_workers}")
        _one_of("fmt", self.fmt, ("pt", "npy"))
        _one_of("precision", self.precision, ("auto", "bf16", "fp32"))
        if self.units_format is not None:
            _one_of("units_format", self.units_format, UNIT_FILE_FORMATS)
        parse_units(self.units)


def _positive(name: str, value: object) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ExtractionError(f"{name} (--{name.replace('_', '-')}) must be a finite number > 0, got {value!r}")


def _one_of(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ExtractionError(f"{name} must be {' or '.join(repr(a) for a in allowed)}, got {value!r}")


def extract_options(options: ExtractOptions | None = None, **overrides) -> ExtractOptions:
    """``options`` (default: all defaults) with ``overrides`` of its fields (:func:`~spidrkit.config.validation.
    with_overrides`)."""
    return with_overrides(ExtractOptions, options, overrides, "extract")
