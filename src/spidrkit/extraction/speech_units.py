"""Speech -> dense features -> units -> durations, in one call (the streams of textlesslib's SpeechEncoder).

:func:`speech_to_units` returns, for one waveform, a dict with the keys textlesslib uses:

- ``"dense"``: the layer's features, a ``(T, D)`` float32 tensor, one row per frame (never de-duplicated);
- ``"units"``: a ``(N,)`` int64 tensor: the unit of every frame (``N = T``), or of every run of repeated
  units with ``dedup`` (the default, as the spoken LM reads them);
- ``"durations"``: a ``(N,)`` int64 tensor: each unit's length in frames (all ones without ``dedup``), so
  ``durations.sum() == T`` and ``units.repeat_interleave(durations)`` gives the frame-level units.

A batch (a list of waveforms or paths, or a ``datasets.Dataset``'s audio column) gives a list of such dicts,
computed together (batched by length: equal to one at a time, to float rounding). Waveforms in memory come
with their ``sample_rate`` and are resampled with soxr (:mod:`spidrkit.extraction.arrays`).

The numbers are those of :func:`~spidrkit.extract` (the same :func:`~spidrkit.extraction.compute.compute`:
standardisation, windows): the units equal the units file's line for the same file, layer and model.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from spidrkit.checkpoints import CheckpointInfo, Loaded, resolve_model
from spidrkit.extraction.arrays import ArrayInputs, is_dataset, memory_source, waveform
from spidrkit.extraction.compute import compute, parse_units
from spidrkit.extraction.kmeans import KMeansModel
from spidrkit.extraction.plan import ExtractionError
from spidrkit.extraction.units import deduplicate
from spidrkit.models.interface import SpeechEncoder

Waveform = torch.Tensor | np.ndarray | Sequence[float] | str | os.PathLike


def is_batch(wav: object) -> bool:
    """A list/tuple of waveforms or paths (not one waveform given as a list of numbers), or a Dataset."""
    if is_dataset(wav):
        return True
    return isinstance(wav, list | tuple) and bool(wav) and not isinstance(wav[0], numbers.Real)


def _waveforms(wav: Any, model: SpeechEncoder, how: ArrayInputs) -> tuple[list[torch.Tensor], list[str]]:
    """The model inputs of ``wav`` (one, or a batch) at the model's rate, and their names for errors."""
    source = memory_source(wav if is_batch(wav) else [wav], how)
    names = [source.name(i) for i in range(len(source))]
    wavs = [waveform(source, i, model.sample_rate) for i in range(len(source))]
    for name, w in zip(names, wavs):
        if w.numel() < model.min_samples:
            raise ExtractionError(f"{name}: the waveform has {w.numel()} samples at {model.sample_rate} Hz, fewer "
                                  f"than the model's {model.min_samples}-sample receptive field")
    return wavs, names


def _quantizer(units: str | KMeansModel, model: SpeechEncoder, layer: int) -> tuple[str, KMeansModel | None]:
    if isinstance(units, KMeansModel):
        kmeans = units
    else:
        kind, path = parse_units(units)
        if kind is None:
            raise ExtractionError("units must be 'codebook', 'kmeans:PATH' or a KMeansModel, got None")
        if kind == "codebook":
            if not hasattr(model, "codebook_predictions") or layer not in model.target_layers:
                raise ExtractionError(f"codebook units need a SpidR/DinoSR model and a codebook layer, not layer "
                                      f"{layer} of a {type(model).__name__}")
            return "codebook", None
        kmeans = KMeansModel.load(path)
    if kmeans.dim != model.dim:
        raise ExtractionError(f"the centroids have dimension {kmeans.dim}, the model's features {model.dim}")
    return "kmeans", kmeans.to("cpu")


def _streams(dense: torch.Tensor, frames: torch.Tensor, dedup: bool) -> dict[str, torch.Tensor]:
    if dedup:
        u, d = deduplicate(frames)
        return {"dense": dense, "units": torch.tensor(u, dtype=torch.long),
                "durations": torch.tensor(d, dtype=torch.long)}
    return {"dense": dense, "units": frames, "durations": torch.ones_like(frames)}


def speech_to_units(
    model: SpeechEncoder | Loaded | str | os.PathLike,
    wav: Waveform | Sequence[Waveform] | Any,
    layer: int = 6,
    units: str | KMeansModel = "codebook",
    dedup: bool = True,
    sample_rate: int | Sequence[int] | None = None,
    provenance: CheckpointInfo | None = None,
    audio_column: str = "audio",
) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
    """``{"dense": (T, D), "units": (N,), "durations": (N,)}`` of one waveform, or a list of them for a batch
    (see the module doc).

    ``model``: a loaded model, or anything :func:`~spidrkit.load` reads (a path, ``spidr_base``...).
    ``wav``: a mono waveform (numpy, torch, a list of numbers) at ``sample_rate`` (required; resampled with
    soxr to the model's rate if it differs), an audio file, a list of those (``sample_rate``: one for all or
    one per waveform), or a ``datasets.Dataset`` whose ``audio_column`` holds ``{"array", "sampling_rate"}``
    rows. ``layer``: 1-based. ``units``: ``"codebook"`` (the prediction head of that layer's codebook),
    ``"kmeans:PATH"`` or a fitted :class:`KMeansModel`. ``dedup``: collapse runs of repeated units
    (durations count the frames of each run).
    """
    model = resolve_model(model, provenance).model
    if not 1 <= layer <= model.num_layers:
        raise ExtractionError(f"layer {layer} out of range; valid (1-based): 1..{model.num_layers}")
    kind, kmeans = _quantizer(units, model, layer)
    wavs, names = _waveforms(wav, model, ArrayInputs(sample_rate, audio_column))
    dense = [out[layer] for out in compute(model, wavs, [layer], names=names)]
    if kind == "codebook":  # (the heads read the layer inside the model: a second pass)
        frames = [out[layer] for out in compute(model, wavs, [layer], "codebook", names=names)]
    else:  # the nearest centroid of each frame, as extraction assigns them
        frames = [kmeans.predict(d).to("cpu", torch.long) for d in dense]
    results = [_streams(d, f, dedup) for d, f in zip(dense, frames)]
    return results if is_batch(wav) else results[0]
