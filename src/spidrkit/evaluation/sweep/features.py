"""The feature stage of a sweep: what a model (or a baseline) outputs on the evaluation files, in memory.

Features need only the :class:`~spidrkit.models.interface.SpeechEncoder` interface (``layer_outputs``,
``num_frames``, ``frame_rate``, ``num_layers``, ``dim``) and go through extraction's batched compute, so
the sweep scores exactly the numbers ``spidrkit extract`` writes. Codebook units and posteriors exist only
for models with codebooks (SpidR, DinoSR): :func:`codebook_layers` says which layers have one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from spidrkit.data.corpora.audio import load_audio
from spidrkit.data.corpora.manifest import ManifestEntry
from spidrkit.evaluation.sweep.baselines import baseline_features, random_baseline
from spidrkit.evaluation.sweep.errors import SweepError
from spidrkit.extraction.compute import compute
from spidrkit.progress import progress_bar

CHUNK_SECONDS = 600.0


def codebook_layers(model) -> tuple[int, ...]:
    """The 1-based layers with a codebook (and a prediction head) of ``model``; none for a plain encoder."""
    if not callable(getattr(model, "codebook_predictions", None)):
        return ()
    return tuple(getattr(model, "target_layers", ()))


def iter_audio(entries: Sequence[ManifestEntry], sample_rate: int, chunk_seconds: float = CHUNK_SECONDS
               ) -> Iterator[list[tuple[ManifestEntry, torch.Tensor]]]:
    """The waveforms of ``entries`` at ``sample_rate`` in order, in lists of about ``chunk_seconds`` of audio
    (so the audio held in memory stays bounded)."""
    chunk: list[tuple[ManifestEntry, torch.Tensor]] = []
    seconds = 0.0
    for e in entries:
        wav = load_audio(e.path, sample_rate)
        chunk.append((e, wav))
        seconds += wav.numel() / sample_rate
        if seconds >= chunk_seconds:
            yield chunk
            chunk, seconds = [], 0.0
    if chunk:
        yield chunk


def model_outputs(model, entries: Sequence[ManifestEntry], layers: Sequence[int], *, units: str | None = None,
                  desc: str = "features", progress: bool = True) -> dict[int, dict[str, torch.Tensor]]:
    """``{layer: {fileid: output}}`` of ``model`` on every file, in memory: features (T, D) float32, or
    ``units="codebook"`` argmax units (T,). Standardisation, batching and windowing of long files are those
    of extraction's ``compute`` (the same numbers ``spidrkit extract`` writes)."""
    out: dict[int, dict[str, torch.Tensor]] = {layer: {} for layer in layers}
    with progress_bar(len(entries), desc, "file", progress, leave=False) as bar:
        for chunk in iter_audio(entries, model.sample_rate):
            results = compute(model, [w for _, w in chunk], list(layers), units=units)
            for (e, _), res in zip(chunk, results):
                for layer, value in res.items():
                    out[layer][e.fileid] = value
            bar.update(len(chunk))
    return out


def codebook_posteriors(model, entries: Sequence[ManifestEntry], layers: Sequence[int], *,
                        progress: bool = True) -> dict[int, dict[str, torch.Tensor]]:
    """``{layer: {fileid: (T, V) head posteriors}}`` on the unmasked input, one whole file at a time."""
    out: dict[int, dict[str, torch.Tensor]] = {layer: {} for layer in layers}
    device = next(model.parameters()).device
    with progress_bar(len(entries), "posteriors", "file", progress, leave=False) as bar:
        for chunk in iter_audio(entries, model.sample_rate):
            for e, wav in chunk:
                with torch.inference_mode():
                    preds = model.codebook_predictions(wav.to(device), layers=list(layers))
                for layer, p in preds.items():
                    out[layer][e.fileid] = p.probs[0].float().cpu()
            bar.update(len(chunk))
    return out


def baseline_outputs(kind: str, entries: Sequence[ManifestEntry], model, *, seed: int = 0,
                     progress: bool = True) -> dict[str, torch.Tensor]:
    """``{fileid: (T, D)}`` signal-processing (``mfcc``, ``log_mel``) or Gaussian ``noise`` features (of the
    model's width) of :mod:`spidrkit.evaluation.sweep.baselines`, frame for frame with ``model``'s outputs: a
    baseline whose frames are not the model's is refused (:class:`SweepError`)."""
    out = {}
    with progress_bar(len(entries), kind, "file", progress, leave=False) as bar:
        for chunk in iter_audio(entries, model.sample_rate):
            for e, wav in chunk:
                if kind == "noise":
                    x = random_baseline(wav, dim=model.dim, seed=seed, key=e.fileid, frame_rate=model.frame_rate)
                else:
                    x = baseline_features(kind, wav, key=e.fileid, seed=seed, frame_rate=model.frame_rate)
                expected = int(model.num_frames(wav.numel()))
                if x.shape[0] != expected:
                    raise SweepError(f"the {kind} baseline gives {x.shape[0]} frames for {e.fileid} where the model "
                                     f"gives {expected} (at {model.frame_rate:g} Hz): its frames are not the "
                                     "model's; drop this baseline")
                out[e.fileid] = x
            bar.update(len(chunk))
    return out


def random_like(model, seed: int):
    """The architecture of ``model`` with random weights (seeded), on its device, in eval mode (an encoder
    with its own ``random_like``, e.g. :class:`~spidrkit.encoders.HFEncoder`, makes it itself)."""
    if callable(getattr(model, "random_like", None)):
        return model.random_like(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = type(model)(model.cfg)
    return fresh.to(next(model.parameters()).device).eval()


def layer_groups(layers: Sequence[int], bytes_per_layer: int, max_memory_gb: float) -> list[list[int]]:
    """``layers`` cut into consecutive groups whose outputs fit in ``max_memory_gb`` (at least one layer)."""
    per_group = max(1, int(max_memory_gb * 2**30 // max(bytes_per_layer, 1)))
    return [list(layers[i: i + per_group]) for i in range(0, len(layers), per_group)]
