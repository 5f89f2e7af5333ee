"""Model outputs of waveforms in memory: standardised whole, windowed when long, batched by length.

:func:`compute` is what :func:`~spidrkit.extraction.extract.extract` writes to disk and what the
evaluation sweep reads in memory, so both see the same numbers. Features need only the encoder interface
(:class:`~spidrkit.models.interface.SpeechEncoder`); codebook units need SpidR's prediction heads
(``codebook_predictions``); k-means units need a fitted :class:`~spidrkit.extraction.kmeans.KMeansModel`.

- **Standardisation** (``docs/method.md``) is done here, over the whole file and before any windowing, for
  encoders whose ``input_normalization`` is ``"standardize"`` (per-window statistics would shift every
  window differently).
- **Windows** start on a frame boundary, so window frames are whole-file frames: the downsampler's output is
  identical, and the centre frames differ from whole-file extraction only through what attention sees
  beyond the context. Memory stays bounded by the window, whatever the file length.
- **Finiteness**: a model with NaN weights gives NaN features; they are refused
  (:class:`NonFiniteFeaturesError`, naming the file and layer) rather than written or turned into units.
  Features are checked on their CPU copy; units are marked ``-1`` on the device where a frame's features
  (or codebook posteriors) are not finite and checked on their CPU copy, so a GPU pays no extra
  synchronisation.
- **Batches**: the pieces (whole files and windows) of all waveforms are grouped by
  :func:`~spidrkit.extraction.plan.pack`; the model's padding mask makes the result equal
  one-piece-at-a-time (to float rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from spidrkit.config.validation import with_overrides
from spidrkit.extraction.plan import (
    DEFAULT_BATCH_SECONDS,
    DEFAULT_CONTEXT_SECONDS,
    DEFAULT_WINDOW_SECONDS,
    ExtractionError,
    frame_stride,
    pack,
    plan_windows,
    whole_frames,
)
from spidrkit.extraction.unit_spec import parse_unit_syntax
from spidrkit.models.interface import SpeechEncoder
from spidrkit.models.signal import standardize

UNIT_KINDS = ("codebook", "kmeans")


class NonFiniteFeaturesError(ExtractionError):
    """The model gave NaN or infinite outputs (its weights are probably NaN)."""


def parse_units(units: str | None) -> tuple[str | None, str | None]:
    """``None`` | ``"codebook"`` | ``"kmeans:PATH"`` -> (kind, path), by the one ``--units`` grammar
    (:mod:`spidrkit.extraction.unit_spec`); ``codebook:L`` is refused here: the caller's layers decide."""
    if units is None or units == "":
        return None, None
    syntax = parse_unit_syntax(units, ("codebook", "kmeans"), ExtractionError)
    if syntax.layer is not None:
        raise ExtractionError(f"units {units!r}: give the layer with layers (--layers {syntax.layer}) and "
                              f"units='codebook'")
    return syntax.kind, syntax.path


@dataclass
class _Task:
    """What to compute: features of ``layers``, or their units (codebook argmax or k-means)."""

    layers: list[int]
    units: str | None = None  # None, "codebook", "kmeans"
    kmeans: Any = None  # KMeansModel on the compute device
    bf16: bool = False


def _forward(model: SpeechEncoder, wav: torch.Tensor, lengths: torch.Tensor, task: _Task) -> dict[int, torch.Tensor]:
    """One padded batch of normalised inputs -> {layer: (B, T, D) float32 features or (B, T) units}."""
    ctx = torch.autocast(wav.device.type, dtype=torch.bfloat16, enabled=task.bf16)
    with torch.inference_mode(), ctx:
        if task.units == "codebook":
            preds = model.codebook_predictions(wav, lengths, task.layers, standardize=False)
            return {layer: _mark_non_finite(p.units, p.probs) for layer, p in preds.items()}
        reps = model.layer_outputs(wav, lengths, task.layers, standardize=False)
    return {layer: r.float() for layer, r in reps.items()}


def _mark_non_finite(units: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``units`` with ``-1`` where the frame's ``values`` (features, posteriors) are not all finite: on the
    device, no synchronisation; the caller checks the CPU copy."""
    return units.masked_fill(~torch.isfinite(values).all(-1), -1)


def _check_finite(out: dict[int, torch.Tensor], units: str | None, name: str) -> None:
    for layer, x in out.items():
        if not (bool(torch.isfinite(x).all()) if units is None else bool((x >= 0).all())):
            raise NonFiniteFeaturesError(
                f"non-finite features (NaN or inf) at layer {layer} for {name}: the model's weights are "
                "probably NaN (check the checkpoint; a diverged training run saves such weights)"
            )


def model_device(model: SpeechEncoder) -> torch.device:
    """Where the model's weights are (the CPU for a model without any)."""
    params = getattr(model, "parameters", None)
    first = next(params(), None) if callable(params) else None
    return first.device if first is not None else torch.device("cpu")


def normalize_input(model: SpeechEncoder, wav: torch.Tensor) -> torch.Tensor:
    """One raw waveform as the model expects it: flattened float32, standardised whole if the encoder asks."""
    wav = torch.as_tensor(wav, dtype=torch.float32).reshape(-1)
    return standardize(wav) if model.input_normalization == "standardize" else wav


@dataclass(frozen=True)
class ComputeOptions:
    """How :func:`compute` runs: batches of at most ``batch_seconds`` of padded audio, waveforms longer than
    ``window_seconds`` cut into windows with ``context_seconds`` of context on each side, ``bf16`` autocast,
    and the ``out_dtype`` of features (units are always int64)."""

    batch_seconds: float = DEFAULT_BATCH_SECONDS
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    context_seconds: float = DEFAULT_CONTEXT_SECONDS
    bf16: bool = False
    out_dtype: torch.dtype = torch.float32


def compute(
    model: SpeechEncoder,
    wavs: Sequence[torch.Tensor],
    layers: Sequence[int],
    units: str | None = None,
    kmeans: Any = None,
    names: Sequence[str] | None = None,
    options: ComputeOptions | None = None,
    **overrides: Any,
) -> list[dict[int, torch.Tensor]]:
    """The outputs of raw waveforms at ``model.sample_rate`` (not yet standardised), in memory, on the CPU.

    Returns, per waveform, ``{layer: (T, D) features}`` (``units=None``) or ``{layer: (T,) LongTensor}``
    (``units="codebook"``, or ``"kmeans"`` with ``kmeans`` a fitted :class:`KMeansModel`). Each waveform
    is standardised whole, cut into windows when longer than ``window_seconds``, and the pieces of all
    waveforms are batched by length under ``batch_seconds`` of padded audio (``options``: a
    :class:`ComputeOptions`, and/or its fields as keywords). Non-finite outputs raise
    :class:`NonFiniteFeaturesError` naming the waveform (``names[i]``, else its index) and the layer.
    """
    o = with_overrides(ComputeOptions, options, overrides, "compute")
    task = _Task(list(layers), units, kmeans, o.bf16)
    device = model_device(model)
    window = whole_frames(o.window_seconds, model)
    context = whole_frames(o.context_seconds, model)
    budget = max(1, int(o.batch_seconds * model.sample_rate))
    stride = frame_stride(model)
    inputs = [normalize_input(model, w) for w in wavs]
    outputs: list[dict[int, torch.Tensor]] = []
    pieces: list[tuple[int, tuple[int, int, int, int]]] = []
    for i, w in enumerate(inputs):
        total = int(model.num_frames(w.numel()))
        shape, dtype = ((total, model.dim), o.out_dtype) if units is None else ((total,), torch.long)
        outputs.append({layer: torch.empty(shape, dtype=dtype) for layer in layers})
        pieces.extend((i, seg) for seg in plan_windows(w.numel(), model, window, context))
    for indices in pack([end - start for _, (start, end, _, _) in pieces], budget):
        group = [pieces[k] for k in indices]
        lengths = torch.tensor([end - start for _, (start, end, _, _) in group])
        wav = torch.zeros(len(group), int(lengths.max()))
        for b, (i, (start, end, _, _)) in enumerate(group):
            wav[b, : end - start] = inputs[i][start:end]
        result = _forward(model, wav.to(device), lengths.to(device), task)
        for layer, batch in result.items():
            for b, (i, (start, _, a, z)) in enumerate(group):
                first = start // stride
                piece = batch[b, a - first : z - first]
                if units == "kmeans":
                    piece = _mark_non_finite(kmeans.predict(piece), piece)
                outputs[i][layer][a:z] = piece.to("cpu")
    for i, out in enumerate(outputs):
        _check_finite(out, units, names[i] if names is not None else f"input {i}")
    return outputs
