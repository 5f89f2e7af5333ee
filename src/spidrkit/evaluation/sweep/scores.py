"""The per-layer stage of a sweep: every metric of every layer of one model, a group of layers at a time.

For each layer: ABX within / across speaker (angular) and word MAP of its features, and optionally the
phone embeddings of the t-SNE figure. For each codebook layer (models with codebooks only): the codebook
units scored as units (ABX, PNMI...) and optionally the head posteriors (ABX with the symmetric KL
divergence, prediction perplexity). Optionally k-means units of every layer, fit on a sample of the train
split. Memory: the features of a group of layers are held at once, the group as large as
``max_memory_gb`` allows (the model is re-run per group); everything but ABX reduces them to small summaries.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spidrkit.data.corpora.manifest import ManifestEntry
from spidrkit.evaluation.metrics.abx import abx_both
from spidrkit.evaluation.metrics.units import prediction_perplexity, unit_row
from spidrkit.evaluation.metrics.word_map import word_map_or_none
from spidrkit.evaluation.plots.tsne import phone_embeddings
from spidrkit.evaluation.sweep.evalset import EvalSet
from spidrkit.evaluation.sweep.features import (
    baseline_outputs,
    codebook_layers,
    codebook_posteriors,
    layer_groups,
    model_outputs,
)
from spidrkit.extraction.kmeans import fit_kmeans
from spidrkit.lazy import require
from spidrkit.runtime import Stopwatch

BYTES_PER_VALUE = 4  # float32 features


def threads_like_torch(fn):
    """Run ``fn`` with every OpenMP / BLAS pool (scikit-learn's t-SNE, k-means and the probes' logistic
    regressions, faiss, numpy) limited to torch's thread count. Each library ships its own OpenMP runtime;
    left alone, their pools add up to more threads than cores (e.g. under ``pytest -n 2``, where each worker
    runs torch on one thread), and their
    spinning barriers then slow t-SNE or k-means down tens of times. One knob, ``torch.set_num_threads``,
    governs them all."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        threadpool_limits = require("threadpoolctl", "an evaluation").threadpool_limits

        # load the runtimes now: threadpoolctl limits only the libraries already loaded
        for name in ("sklearn.manifold", "sklearn.cluster", "sklearn.linear_model", "faiss"):
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        with threadpool_limits(limits=torch.get_num_threads()):
            return fn(*args, **kwargs)

    return wrapper


@dataclass
class KMeansPlan:
    """k-means units of every layer: ``k`` centroids fit on ``entries`` (at most ``max_frames`` frames)."""

    k: int
    entries: Sequence[ManifestEntry]
    max_frames: int
    out_dir: Path | None = None
    model_id: str | None = None


@dataclass
class LayerPlan:
    """What to compute for each layer besides ABX and word MAP."""

    codebook: bool = True  # codebook units of the codebook layers (when the model has codebooks)
    posteriors: bool = False  # and their posteriors
    kmeans: KMeansPlan | None = None
    embeddings: int | None = None  # phone instances per speaker and phone for the t-SNE (None: none)
    max_memory_gb: float = 4.0  # features held in memory at once
    seed: int = 0  # of k-means and the t-SNE's sample
    device: str | None = None  # where ABX, MAP and k-means run


@dataclass
class Progress:
    """The sweep's shared timing and progress bar."""

    watch: Stopwatch
    bar: Any  # a spidrkit.progress.progress_bar
    show: bool = True  # per-pass progress bars


@dataclass
class ModelSweep:
    """What one model's layer sweep gives."""

    layers: dict[int, dict[str, Any]] = field(default_factory=dict)
    codebook: dict[str, dict[str, Any]] = field(default_factory=dict)  # "codebook L5" -> unit metrics
    posteriors: dict[str, dict[str, Any]] = field(default_factory=dict)  # "posteriors L5" -> ABX (sym. KL)
    kmeans: dict[str, dict[str, Any]] = field(default_factory=dict)  # "kmeans100 L5" -> unit metrics
    qualities: dict[int, dict[str, Any]] = field(default_factory=dict)  # codebook layer -> unit_quality
    embeddings: dict[int, tuple[torch.Tensor, list[str], list[str]]] = field(default_factory=dict)  # t-SNE
    abx_counts: dict[str, int] = field(default_factory=dict)  # "abx_within_cells"... of the features' ABX
    voice_pairs: dict[int, dict[str, float]] = field(default_factory=dict)  # layer -> across ABX per voice pair


def bytes_per_layer(model, evalset: EvalSet, plan: LayerPlan, with_codebooks: bool) -> int:
    """Memory held per layer of a group: its features, its k-means sample and its posteriors."""
    frames = sum(int(model.num_frames(e.num_samples)) for e in evalset.entries)
    total = frames * model.dim * BYTES_PER_VALUE
    if plan.kmeans:
        total += plan.kmeans.max_frames * model.dim * BYTES_PER_VALUE
    if plan.posteriors and with_codebooks:
        total += frames * model.cfg.codebook_size * BYTES_PER_VALUE
    return total


def sweep_layers(model, evalset: EvalSet, layers: Sequence[int], plan: LayerPlan, progress: Progress, *,
                 name: str) -> ModelSweep:
    """Every per-layer metric of ``model`` (see the module docstring); ``name`` prefixes the timings."""
    with_codebooks = set(codebook_layers(model)) & set(layers) if plan.codebook else set()
    result = ModelSweep()
    groups = layer_groups(layers, bytes_per_layer(model, evalset, plan, bool(with_codebooks)), plan.max_memory_gb)
    progress.bar.total += len(groups)  # one step per model pass
    progress.bar.refresh()
    for group in groups:
        outputs = _group_outputs(model, evalset, group, with_codebooks, plan, progress, name)
        progress.bar.update(1)
        for layer in group:
            _layer_rows(result, model, layer, outputs, evalset, plan, progress, name)
    return result


@dataclass
class _GroupOutputs:
    """One model pass over a group of layers: features, codebook units and posteriors, k-means fit features."""

    feats: dict
    cb_units: dict
    cb_probs: dict
    train_feats: dict


def _group_outputs(model, evalset: EvalSet, group: list[int], with_codebooks: set[int], plan: LayerPlan,
                   progress: Progress, name: str) -> _GroupOutputs:
    watch, show = progress.watch, progress.show
    progress.bar.set_postfix_str(f"{name}: features of layers {group}")
    with watch(f"{name}_features"):
        feats = model_outputs(model, evalset.entries, group, desc=f"{name} layers {group}", progress=show)
    cb_group = [la for la in group if la in with_codebooks]
    cb_units, cb_probs, train_feats = {}, {}, {}
    if cb_group:
        with watch("codebook_units"):
            cb_units = model_outputs(model, evalset.entries, cb_group, units="codebook",
                                     desc=f"codebook units {cb_group}", progress=show)
            if plan.posteriors:
                cb_probs = codebook_posteriors(model, evalset.entries, cb_group, progress=show)
    if plan.kmeans:
        with watch("kmeans_features"):
            train_feats = model_outputs(model, plan.kmeans.entries, group, desc=f"k-means fit set {group}",
                                        progress=show)
    return _GroupOutputs(feats, cb_units, cb_probs, train_feats)


def _layer_rows(result: ModelSweep, model, layer: int, outputs: _GroupOutputs, evalset: EvalSet, plan: LayerPlan,
                progress: Progress, name: str) -> None:
    """ABX, MAP (and embeddings, codebook and k-means rows) of one layer into ``result``."""
    watch, bar, rate, device, km = progress.watch, progress.bar, model.frame_rate, plan.device, plan.kmeans
    x = outputs.feats.pop(layer)
    bar.set_postfix_str(f"{name}: layer {layer} ABX")
    with watch(f"{name}_abx"):
        row = abx_both(x, evalset.item_file, frame_rate=rate, device=device, with_counts=True, with_pairs=True)
        counts = {k: row.pop(k) for k in list(row) if k.endswith(("_cells", "_triplets"))}
        result.voice_pairs[layer] = row.pop("abx_across_pairs", {})
        result.abx_counts = result.abx_counts or counts  # the same items for every layer
    bar.set_postfix_str(f"{name}: layer {layer} MAP")
    with watch(f"{name}_map"):
        row["map"] = word_map_or_none(x, evalset.words, frame_rate=rate, device=device)
    result.layers[layer] = row
    if plan.embeddings:
        with watch("phone_embeddings"):
            result.embeddings[layer] = phone_embeddings(
                x, evalset.phones, evalset.speaker_of, frame_rate=rate,
                per_speaker_and_phone=plan.embeddings, seed=plan.seed, progress=False)
    bar.update(1)
    if layer in outputs.cb_units:
        bar.set_postfix_str(f"codebook units of layer {layer}")
        with watch("codebook_metrics"):
            _codebook_rows(result, layer, outputs.cb_units.pop(layer), outputs.cb_probs.pop(layer, None), evalset,
                           rate=rate, device=device)
        bar.update(1)
    if km:
        bar.set_postfix_str(f"k-means {km.k} on layer {layer}")
        with watch("kmeans"):
            result.kmeans[f"kmeans{km.k} L{layer}"] = _kmeans_row(
                km, layer, outputs.train_feats.pop(layer), x, evalset, rate=rate, seed=plan.seed, device=device)
        bar.update(1)


def _codebook_rows(result: ModelSweep, layer: int, units: dict[str, torch.Tensor], probs: dict | None,
                   evalset: EvalSet, *, rate: float, device: str | None) -> None:
    """The codebook units of ``layer`` as units (and its posteriors, when computed) into ``result``."""
    row, quality = unit_row({u: v.numpy() for u, v in units.items()}, evalset.frame_labels, evalset.item_file,
                            frame_rate=rate, device=device)
    if probs is not None:
        row["prediction_perplexity"] = prediction_perplexity(probs)
        result.posteriors[f"posteriors L{layer}"] = abx_both(probs, evalset.item_file, frame_rate=rate,
                                                             distance="kl_symmetric", device=device)
    result.codebook[f"codebook L{layer}"] = row
    result.qualities[layer] = quality


def _kmeans_row(km: KMeansPlan, layer: int, fit_set: dict[str, torch.Tensor], feats: dict[str, torch.Tensor],
                evalset: EvalSet, *, rate: float, seed: int, device: str | None) -> dict[str, Any]:
    """Fit k-means on ``fit_set`` (saved under ``km.out_dir``), score its units of ``feats``."""
    fitted = fit_kmeans(fit_set, k=km.k, max_frames=km.max_frames, seed=seed, progress=False, layer=layer,
                        model=km.model_id, fit_files=len(km.entries))
    if km.out_dir is not None:
        fitted.save(km.out_dir / f"kmeans{km.k}_layer{layer:02d}.npy", force=True)  # the sweep's own folder
    units = {u: fitted.predict(v).numpy() for u, v in feats.items()}
    row, _ = unit_row(units, evalset.frame_labels, evalset.item_file, frame_rate=rate, device=device)
    row["kmeans_inertia_per_frame"] = fitted.info["inertia_per_frame"]
    return row


def feature_baselines(kinds: Sequence[str], model, evalset: EvalSet, progress: Progress, *, seed: int,
                       device: str | None, pairs: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """ABX and word MAP of each signal-processing / noise baseline, at the model's frame rate; the across
    ABX of each voice pair goes to ``pairs``."""
    rows: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        progress.bar.set_postfix_str(f"baseline {kind}")
        with progress.watch(f"baseline_{kind}"):
            feats = baseline_outputs(kind, evalset.entries, model, seed=seed, progress=progress.show)
            row = abx_both(feats, evalset.item_file, frame_rate=model.frame_rate, device=device, with_pairs=True)
            pairs[kind] = row.pop("abx_across_pairs", {})
            row["map"] = word_map_or_none(feats, evalset.words, frame_rate=model.frame_rate, device=device)
        rows[kind] = row
        progress.bar.update(1)
    return rows
