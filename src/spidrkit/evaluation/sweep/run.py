"""Layer sweep: every evaluation of the SpidR paper for one model on one aligned corpus, in one call.

:func:`sweep` chains typed stages, each in its own module:

1. the evaluation set (:mod:`~spidrkit.evaluation.sweep.evalset`): the union of ``splits`` (default ``dev`` and
   ``heldout``: a voice the model never heard, reading sentences of its own, so across-speaker ABX includes
   an unseen speaker), its merged annotations written to ``OUT/eval/``;
2. per layer (:mod:`~spidrkit.evaluation.sweep.scores`, features from :mod:`~spidrkit.evaluation.sweep.features`): ABX
   within and across speaker on triphones and MAP@R over words; for models with codebooks, the codebook
   units (and optionally the head posteriors) scored as units; optionally k-means units of every layer.
   The best layer is the one with the lowest mean of the two ABX;
3. baselines in the same tables: MFCC, log-mel and Gaussian-noise features, and the same architecture
   with random weights (its whole layer sweep);
4. figures (:mod:`~spidrkit.evaluation.plots.layers`): ABX and MAP by layer (Figure 7), P(phone | code) of the
   best codebook layer (Figure 10), t-SNE of phone embeddings of the best layer (Figure 8), perplexities
   over training from metrics logs (Figure 2);
5. the report (:mod:`~spidrkit.evaluation.sweep.report`): a :class:`~spidrkit.evaluation.sweep.result.SweepResult`
   rendered into ``report.json`` / ``report.md``, whose ``info`` says what was evaluated and whose
   ``timings_s`` says where the time went.

The model is seen through the :class:`~spidrkit.models.interface.SpeechEncoder` interface; every metric
uses its ``frame_rate``. Memory: features are computed in memory, for a group of layers at a time, bounded
by ``max_memory_gb`` whatever the corpus size (see :mod:`~spidrkit.evaluation.sweep.scores`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from spidrkit import __version__
from spidrkit.checkpoints import Loaded, resolve_model
from spidrkit.evaluation.metrics.abx import abx_both, few_cells_warning, pair_table
from spidrkit.evaluation.metrics.probe import add_probe_columns
from spidrkit.evaluation.metrics.units import UNIT_METRICS
from spidrkit.evaluation.plots import layers as plots
from spidrkit.evaluation.plots.perplexity import plot_runs_perplexity
from spidrkit.evaluation.plots.tsne import tsne_per_phone
from spidrkit.evaluation.sweep.errors import SweepError
from spidrkit.evaluation.sweep.evalset import (
    DEFAULT_SPLITS,
    EvalSet,
    check_fileids,
    load_eval_set,
    resolve_splits,
    seen_voices,
    spread,
    train_subset,
)
from spidrkit.evaluation.sweep.features import codebook_layers, layer_groups, random_like
from spidrkit.evaluation.sweep.figures import PLOT_NAMES, FigureInputs, draw_figures, runs_notes
from spidrkit.evaluation.sweep.report import best_layer_by_abx, sweep_results, write_sweep_report
from spidrkit.evaluation.sweep.result import SweepResult
from spidrkit.evaluation.sweep.scores import (
    KMeansPlan,
    LayerPlan,
    ModelSweep,
    Progress,
    feature_baselines,
    sweep_layers,
    threads_like_torch,
)
from spidrkit.models.interface import SpeechEncoder
from spidrkit.runtime import Stopwatch

__all__ = ["DEFAULT_KMEANS_MAX_FRAMES", "DEFAULT_SPLITS", "FEATURE_BASELINES", "PLOT_NAMES", "SWEEP_BASELINES",
           "UNIT_METRICS", "EvalSet", "SweepError", "SweepResult", "abx_both", "check_fileids", "layer_groups",
           "load_eval_set", "plot_runs_perplexity", "spread", "sweep", "sweep_models"]

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
MODEL_LABELS = {"spidr": "SpidR", "dinosr": "DinoSR"}


# ------------------------------------------------------------------------------------------- options
def _resolve_model(model, device: str):
    if isinstance(model, SpeechEncoder | Loaded | str | os.PathLike):
        return resolve_model(model, device=device)
    raise SweepError(f"model must be a speech encoder (SpidR, HuBERT...), a Loaded, a checkpoint or model "
                     f"directory, a published name or random:PRESET, not {type(model).__name__}")


def _check_layers(layers: Sequence[int] | None, num_layers: int) -> list[int]:
    if layers is None:
        return list(range(1, num_layers + 1))
    layers = sorted(dict.fromkeys(int(x) for x in layers))
    bad = [x for x in layers if not 1 <= x <= num_layers]
    if bad or not layers:
        raise SweepError(f"layers {bad or '[]'} out of range: the model has layers 1..{num_layers} (1-based)")
    return layers


def _check_options(baselines: Sequence[str], kmeans_k: int | None,
                   metrics_jsonl: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[Path]:
    """Refuse bad options before any work; the metrics logs as a list."""
    unknown = [b for b in baselines if b not in SWEEP_BASELINES]
    if unknown:
        raise SweepError(f"unknown baselines {unknown}; choose from {', '.join(SWEEP_BASELINES)}")
    if kmeans_k is not None and (isinstance(kmeans_k, bool) or int(kmeans_k) < 2):
        raise SweepError(f"kmeans_k must be an integer >= 2, got {kmeans_k!r}")
    runs = [] if metrics_jsonl is None else [metrics_jsonl] if isinstance(metrics_jsonl, (str, os.PathLike)) \
        else list(metrics_jsonl)
    for r in runs:
        if not Path(r).is_file():
            raise SweepError(f"no metrics file at {r}")
    return [Path(r) for r in runs]


# ------------------------------------------------------------------------------------------- stages
def _info(model, model_info, evalset: EvalSet, *, layers, baselines, kmeans_k, kmeans_max_frames, kmeans_files,
          corpus_dir, splits, max_files, device, seed) -> dict[str, Any]:
    cb_layers = list(codebook_layers(model))
    cfg = getattr(model, "cfg", None)
    codebooks = f", {cfg.num_codebooks} codebooks of {cfg.codebook_size} on layers {cb_layers}" if cb_layers else ""
    return {
        **{k: v for k, v in model_info.as_dict().items() if v is not None},
        "architecture": f"{model.num_layers} layers of width {model.dim}{codebooks}",
        "layers": layers,
        "codebook_layers": [la for la in layers if la in cb_layers],
        "kmeans_k": kmeans_k,
        "kmeans_fit": (f"{kmeans_max_frames} frames at most, from {kmeans_files} files of the train split "
                       f"(seed {seed})") if kmeans_k else None,
        "corpus": str(Path(corpus_dir).resolve()),
        "splits": list(splits),
        "eval_files": len(evalset.entries),
        "eval_seconds": round(evalset.seconds(model.sample_rate), 1),
        "max_files_per_split": max_files,
        "abx_items": evalset.num_items,
        "speakers": evalset.speakers,
        "words": evalset.num_words,
        "baselines": {b: SWEEP_BASELINES[b] for b in baselines},
        "abx": "fastabx, triphones (same context), ZeroSpeech subsampling; angular for features, "
               "one-hot (identical) for units, symmetric KL for posteriors; error rate in %",
        "word_map": "MAP@R over words occurring twice or more, time-averaged features, cosine; in %",
        "frame_rate_hz": int(model.frame_rate) if float(model.frame_rate).is_integer() else float(model.frame_rate),
        "device": str(device),
        "seed": seed,
        "spidrkit": __version__,
        "torch": torch.__version__,
    }


def _phone_given_code(main: ModelSweep, layer: int | None) -> dict[str, Any] | None:
    if layer is None:
        return None
    q = main.qualities[layer]
    return {"layer": layer, "codes": q["codes"], "phones": q["phones"], "phone_counts": q["phone_counts"],
            "matrix": np.round(q["phone_given_code"], 5)}


# ------------------------------------------------------------------------------------------- driver
@threads_like_torch
def sweep(
    model,
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    splits: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    kmeans_k: int | None = None,
    kmeans_max_frames: int = DEFAULT_KMEANS_MAX_FRAMES,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    posteriors: bool = False,
    max_files: int | None = None,
    device: str = "cpu",
    metrics_jsonl: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    run_labels: Sequence[str] | None = None,
    title: str | None = None,
    seed: int = 0,
    max_memory_gb: float = 4.0,
    tsne_points: int = 1000,
    progress: bool = True,
    notes: Sequence[str] = (),
    probe: bool = False,
    label: str | Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """Evaluate every layer of ``model`` on the ``splits`` of ``corpus_dir``; write the report and figures.

    :param model: a :class:`~spidrkit.models.interface.SpeechEncoder` such as
        :class:`~spidrkit.models.spidr.SpidR` (moved to ``device``, as ``Module.to`` does), a
        :class:`~spidrkit.checkpoints.Loaded`, a checkpoint path, a published name or ``random:PRESET``.
    :param corpus_dir: an aligned corpus (see :mod:`~spidrkit.evaluation.sweep.evalset`); ``train`` is needed
        only for k-means.
    :param out_dir: receives ``report.json``, ``report.md``, the PNG figures, ``eval/`` (the merged
        annotations) and, with ``kmeans_k``, ``kmeans/`` (the centroids of every layer).
    :param splits: the evaluation splits, merged (default: ``dev`` and ``heldout``, or ``dev`` alone, with a
        warning, for a corpus built without a held-out voice).
    :param layers: 1-based layers to evaluate (default: all).
    :param kmeans_k: also fit k-means with this many centroids on every layer (on at most
        ``kmeans_max_frames`` frames of the train split) and score its units.
    :param baselines: any of :data:`SWEEP_BASELINES` (``mfcc``, ``log_mel``, ``noise``, ``random``).
    :param posteriors: also score the codebook heads' posteriors (ABX with the symmetric KL divergence).
    :param max_files: at most this many files per split (evenly spaced in file-id order).
    :param metrics_jsonl: one or more training runs' ``metrics.jsonl`` for the perplexity figure, labelled by
        ``run_labels`` (default: their folder names). A log with fewer than 2 perplexity records (a run that
        ended before its second logging step) gives no figure and a note in the report, not an error.
    :param notes: sentences for the report's notes (e.g. why a figure is missing), before the sweep's own
        (a perplexity figure not drawn, ABX on fewer than :data:`MIN_ABX_CELLS` cells).
    :param max_memory_gb: bound on the features held in memory at once.
    :param tsne_points: about this many phone instances in the t-SNE figure (0: no figure); the paper's 10
        per speaker and phone, fewer when that would exceed it (t-SNE time grows quickly with the points).
    :param probe: also the linear phone and speaker probes (:mod:`~spidrkit.evaluation.metrics.probe`) of every layer
        and baseline: columns ``probe_acc``, ``probe_per``, ``speaker_acc`` (intervals ``*_ci`` in the JSON)
        and a panel of the layers figure. Needs the corpus' ``train`` (or ``dev``) and ``heldout`` splits.
    :param label: the model's name in tables and figures (default: from its provenance, e.g. SpidR).
    :param model: also a list of models (a multi-model report, :func:`sweep_models`; ``label`` then a list).
    :returns: the results as written in ``report.json["results"]`` (:func:`~spidrkit.evaluation.sweep.report.
        sweep_results` of the :class:`SweepResult`: ``info``, ``layers``, ``baselines``, ``units``,
        ``best_layer``, ``timings_s``...), plus ``outputs``: the paths written (each figure as a path-like
        :class:`~spidrkit.evaluation.plots.figures.Figure`, which also holds the data it draws).
    """
    if isinstance(model, list | tuple) and not isinstance(model, Loaded):  # (a Loaded is a named tuple)
        return sweep_models(model, corpus_dir, out_dir, labels=label, splits=splits, layers=layers,
                            kmeans_k=kmeans_k, kmeans_max_frames=kmeans_max_frames, baselines=baselines,
                            posteriors=posteriors, max_files=max_files, device=device, metrics_jsonl=metrics_jsonl,
                            run_labels=run_labels, title=title, seed=seed, max_memory_gb=max_memory_gb,
                            tsne_points=tsne_points, progress=progress, notes=notes, probe=probe)
    watch = Stopwatch()
    with watch("total"):
        out = Path(out_dir)
        baselines = list(dict.fromkeys(baselines or ()))
        runs = _check_options(baselines, kmeans_k, metrics_jsonl)
        with watch("load_model"):
            model, model_info = _resolve_model(model, device)
        if "random" in baselines and getattr(model, "cfg", None) is None:
            raise SweepError(f"the random-weights baseline needs a model built from a config, not a "
                             f"{type(model).__name__}")
        layers = _check_layers(layers, model.num_layers)
        splits = resolve_splits(corpus_dir, splits)
        with watch("load_corpus"):
            evalset = load_eval_set(corpus_dir, splits, out / "eval", max_files)
            kmeans_entries = train_subset(corpus_dir, model, kmeans_max_frames, seed) if kmeans_k else []
        label = label or MODEL_LABELS.get(model_info.variant, model_info.variant)
        cb_layers = [la for la in layers if la in codebook_layers(model)]
        feature_kinds = [b for b in baselines if b in FEATURE_BASELINES]

        # per-layer steps; each model pass adds its own step when the layer groups are known
        steps = 1 + len(layers) + len(cb_layers) + (len(layers) if kmeans_k else 0) + 1
        steps += len(feature_kinds) + (len(layers) if "random" in baselines else 0)
        bar = tqdm(total=steps, desc="sweep", unit="step", disable=not progress)
        stage = Progress(watch, bar, progress)
        sweep_options = {"max_memory_gb": max_memory_gb, "seed": seed, "device": device}
        notes = list(notes)
        try:
            bar.update(1)
            kmeans = KMeansPlan(int(kmeans_k), kmeans_entries, kmeans_max_frames, out / "kmeans",
                                model_info.model_id) if kmeans_k else None
            embeddings = tsne_per_phone(evalset.phones, evalset.speaker_of, tsne_points) if tsne_points else None
            main = sweep_layers(model, evalset, layers, LayerPlan(True, posteriors, kmeans, embeddings), stage,
                                name="model", **sweep_options)
            pairs: dict[str, dict[str, float]] = {}
            baseline_rows = feature_baselines(feature_kinds, model, evalset, stage, seed=seed, device=device,
                                               pairs=pairs)
            random_layers: dict[int, dict[str, Any]] = {}
            if "random" in baselines:
                random_sweep = sweep_layers(random_like(model, seed), evalset, layers, LayerPlan(codebook=False),
                                            stage, name="random", **sweep_options)
                random_layers = random_sweep.layers
                best_random = best_layer_by_abx({str(k): v for k, v in random_layers.items()})
                best_random_layer = int(best_random[0]) if best_random else layers[0]
                baseline_rows[f"random init (L{best_random_layer})"] = random_layers[best_random_layer]
                pairs[f"random init (L{best_random_layer})"] = random_sweep.voice_pairs.get(best_random_layer, {})
            probe_info = {}
            if probe:
                bar.set_postfix_str("linear probes")
                with watch("probe"):
                    probe_info = add_probe_columns(model, corpus_dir, layers, rows=main.layers,
                                                   baseline_rows=baseline_rows, random_rows=random_layers,
                                                   max_files=max_files, progress=progress, seed=seed,
                                                   max_memory_gb=max_memory_gb)

            best = best_layer_by_abx({str(k): v for k, v in main.layers.items()})
            best_layer = int(best[0]) if best else None
            best_codebook = max(main.qualities, key=lambda la: main.qualities[la]["pnmi"]) if main.qualities else None
            info = _info(model, model_info, evalset, layers=layers, baselines=baselines, kmeans_k=kmeans_k,
                         kmeans_max_frames=kmeans_max_frames, kmeans_files=len(kmeans_entries),
                         corpus_dir=corpus_dir, splits=splits, max_files=max_files, device=device, seed=seed)
            info.update(main.abx_counts)
            info.update(probe_info)
            if best_layer is not None:
                pairs = {f"L{best_layer} (best)": main.voice_pairs.get(best_layer, {}), **pairs}
            notes += runs_notes(runs)
            notes += [w for w in (few_cells_warning(k[4:-6], n, main.abx_counts[k[:-6] + "_triplets"])
                                  for k, n in main.abx_counts.items() if k.endswith("_cells") and n) if w]
            result = SweepResult(
                info=info, layers=main.layers, baselines=baseline_rows,
                units={**main.codebook, **main.posteriors, **main.kmeans}, best_layer=best_layer,
                best_layer_mean_abx=best[1] if best else None, best_codebook_layer=best_codebook,
                random_init_layers=random_layers, phone_given_code=_phone_given_code(main, best_codebook),
                voice_pairs=pair_table(pairs, seen_voices(corpus_dir)), timings_s=watch.rounded(),
                eval_dir=evalset.root, notes=notes, title=title or f"{label} layer sweep ({model_info.model_id})")
            write_sweep_report(out, result, html=False)  # the numbers first: a figure that fails loses none
            bar.set_postfix_str("figures")
            with watch("plots"):
                inputs = FigureInputs(main, random_layers, {k: v for k, v in baseline_rows.items()
                                                            if k in FEATURE_BASELINES}, label,
                                      title or f"{label}: layer sweep on {', '.join(splits)}", best_layer,
                                      best_codebook, runs, run_labels)
                figures = draw_figures(out, inputs, model, seed, watch)
            bar.update(1)
        finally:
            bar.close()
    result = dataclasses.replace(result, figures=figures, timings_s=watch.rounded())
    json_path, md_path = write_sweep_report(out, result)
    outputs = {"report_json": json_path, "report_md": md_path, "report_html": md_path.with_suffix(".html"),
               "eval": evalset.root, **result.figures}
    return {**sweep_results(result), "outputs": outputs}


def sweep_models(models: Sequence, corpus_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                 labels: Sequence[str | None] | None = None, title: str | None = None,
                 device: str = "cpu", **options) -> dict[str, Any]:
    """Several models side by side (the paper's Figure 7): each of ``models`` (anything :func:`sweep` takes)
    swept with the same ``options`` on the same evaluation set into ``OUT/models/LABEL/`` (its own complete
    single-model report), and ONE report in ``OUT``: ``results`` = ``{"info", "models": {label: that model's
    results + "report" (its report.md, relative)}, "comparison": {"tables": {metric: {layer: {label: value}}},
    "baselines": {metric: {name: value}}}}`` (:func:`~spidrkit.evaluation.sweep.report.compare_models`), a table
    and a figure ``METRIC.png`` per metric, one curve per model against the layer number. ``labels``: one per
    model (``None`` entries, or none at all: from the provenance, e.g. SpidR), made unique. A model without a
    config (e.g. a wrapped ``transformers`` encoder) gets no random-weights baseline.
    """
    from spidrkit.evaluation.sweep.report import COMPARISON_METRICS, compare_models, render_comparison, write_report

    models = list(models)
    labels = [None] * len(models) if labels is None else [labels] if isinstance(labels, str) else list(labels)
    if not models or len(labels) != len(models):
        raise SweepError(f"{len(models)} models but {len(labels)} labels: give one --label per --model (or none)")
    out, watch, loaded, names = Path(out_dir), Stopwatch(), [], []
    for model, label in zip(models, labels):
        model = _resolve_model(model, device)
        name = label or MODEL_LABELS.get(model.info.variant, model.info.variant)
        names.append(name if name not in names else f"{name} {len(names) + 1}")
        loaded.append(model)
    results = {}
    for name, model in zip(names, loaded):
        folder = out / "models" / ("".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model")
        with watch(name):
            kept = [b for b in options.get("baselines", DEFAULT_BASELINES)  # random weights need a config
                    if b != "random" or getattr(model.model, "cfg", None) is not None]
            res = sweep(model, corpus_dir, folder, label=name, device=device, **{**options, "baselines": kept})
        res["report"] = os.path.relpath(res.pop("outputs")["report_md"], out)
        results[name] = res
    comparison = compare_models(results)
    first = results[names[0]]["info"]
    info = {"models": names, **{k: first.get(k) for k in ("corpus", "splits", "eval_files", "eval_seconds",
                                                          "abx_items", "speakers", "words", "probe")
                                if first.get(k) is not None},
            "timings_s": watch.rounded()}
    notes = [f"{n} was evaluated on {results[n]['info'].get('eval_files')} files" for n in names
             if results[n]["info"].get("eval_files") != first.get("eval_files")]
    report = {"info": info, "models": results, "comparison": comparison, **({"notes": notes} if notes else {})}
    title = title or f"{', '.join(names)}: layer sweeps compared"
    write_report(out, report, render=render_comparison, title=title, html=False)  # the numbers, then the figures
    figures = {metric: plots.plot_metric_by_layer(
        metric, table, out / f"{metric}.png", baselines=comparison["baselines"][metric],
        title=f"{COMPARISON_METRICS[metric]} by layer") for metric, table in comparison["tables"].items()}
    json_path, md_path = write_report(out, report, list(figures.values()), render=render_comparison, title=title)
    return {**report, "outputs": {"report_json": json_path, "report_md": md_path,
                                  "report_html": md_path.with_suffix(".html"), **figures}}
