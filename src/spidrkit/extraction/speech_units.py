"""Speech -> dense features -> units -> durations, in one call (the streams of textlesslib's SpeechEncoder).

:func:`speech_to_units` returns, for one waveform, a dict with the keys textlesslib uses:

- ``"dense"``: the layer's features, a ``(T, D)`` float32 tensor, one row per frame (never de-duplicated);
- ``"units"``: a ``(N,)`` int64 tensor: the unit of every frame (``N = T``), or of every run of repeated
  units with ``dedup`` (the default, as the spoken LM reads them);
- ``"durations"``: a ``(N,)`` int64 tensor: each unit's length in frames (all ones without ``dedup``), so
  ``durations.sum() == T`` and ``units.repeat_interleave(durations)`` gives the frame-level units.

The numbers are those of :func:`~spidrkit.extract` (the same :func:`~spidrkit.extraction.compute.compute`:
standardisation, windows): the units equal the units file's line for the same file, layer and model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from spidrkit.checkpoints import CheckpointInfo, Loaded, resolve_model
from spidrkit.data.corpora.audio import load_audio
from spidrkit.extraction.compute import compute, parse_units
from spidrkit.extraction.kmeans import KMeansModel
from spidrkit.extraction.plan import ExtractionError
from spidrkit.extraction.units import deduplicate
from spidrkit.models.interface import SpeechEncoder


def _waveform(wav: Any, model: SpeechEncoder, sample_rate: int | None) -> torch.Tensor:
    if isinstance(wav, str | os.PathLike):
        return load_audio(wav, model.sample_rate)
    if sample_rate is not None and sample_rate != model.sample_rate:
        raise ExtractionError(f"the waveform is at {sample_rate} Hz, the model reads {model.sample_rate} Hz: "
                              "resample it first, or pass the audio file's path")
    wav = torch.as_tensor(np.asarray(wav) if not isinstance(wav, torch.Tensor) else wav, dtype=torch.float32)
    if wav.ndim == 2 and 1 in wav.shape:
        wav = wav.reshape(-1)
    if wav.ndim != 1:
        raise ExtractionError(f"expected one mono waveform (1-D), got shape {tuple(wav.shape)}")
    return wav


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


def speech_to_units(
    model: SpeechEncoder | Loaded | str | os.PathLike,
    wav: torch.Tensor | np.ndarray | Sequence[float] | str | os.PathLike,
    layer: int = 6,
    units: str | KMeansModel = "codebook",
    dedup: bool = True,
    sample_rate: int | None = None,
    provenance: CheckpointInfo | None = None,
) -> dict[str, torch.Tensor]:
    """``{"dense": (T, D), "units": (N,), "durations": (N,)}`` of one waveform (see the module doc).

    ``model``: a loaded model, or anything :func:`~spidrkit.load` reads (a path, ``spidr_base``...).
    ``wav``: a mono waveform at the model's rate (``sample_rate``, when given, is checked) or an audio
    file (decoded and resampled). ``layer``: 1-based. ``units``: ``"codebook"`` (the prediction head of
    that layer's codebook), ``"kmeans:PATH"`` or a fitted :class:`KMeansModel`. ``dedup``: collapse runs
    of repeated units (durations count the frames of each run).
    """
    model = resolve_model(model, provenance).model
    if not 1 <= layer <= model.num_layers:
        raise ExtractionError(f"layer {layer} out of range; valid (1-based): 1..{model.num_layers}")
    kind, kmeans = _quantizer(units, model, layer)
    waveform = _waveform(wav, model, sample_rate)
    if waveform.numel() < model.min_samples:
        raise ExtractionError(f"the waveform has {waveform.numel()} samples, fewer than the model's "
                              f"{model.min_samples}-sample receptive field")
    dense = compute(model, [waveform], [layer])[0][layer]
    if kind == "codebook":  # (the heads read the layer inside the model: a second pass)
        frames = compute(model, [waveform], [layer], "codebook")[0][layer]
    else:  # the nearest centroid of each frame, as extraction assigns them
        frames = kmeans.predict(dense).to("cpu", torch.long)
    if dedup:
        u, d = deduplicate(frames)
        return {"dense": dense, "units": torch.tensor(u, dtype=torch.long),
                "durations": torch.tensor(d, dtype=torch.long)}
    return {"dense": dense, "units": frames, "durations": torch.ones_like(frames)}
