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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spidrkit import __version__
from spidrkit.checkpoints import Loaded, resolve_model
from spidrkit.evaluation.metrics.abx import abx_both, few_cells_warning, pair_table
from spidrkit.evaluation.metrics.probe import ProbeOptions, ProbeRows, add_probe_columns
from spidrkit.evaluation.metrics.units import UNIT_METRICS
from spidrkit.evaluation.plots import layers as plots
from spidrkit.evaluation.plots.figures import Figure
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
from spidrkit.evaluation.sweep.options import (
    DEFAULT_KMEANS_MAX_FRAMES,
    FEATURE_BASELINES,
    SWEEP_BASELINES,
    SweepOptions,
    sweep_options,
)
from spidrkit.evaluation.sweep.report import best_layer_by_abx, layer_table, sweep_results, write_sweep_report
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
from spidrkit.io import refuse_report_overwrite
from spidrkit.models.interface import SpeechEncoder
from spidrkit.progress import progress_bar
from spidrkit.runtime import Stopwatch
from spidrkit.tracking import open_tracker

__all__ = ["DEFAULT_KMEANS_MAX_FRAMES", "DEFAULT_SPLITS", "FEATURE_BASELINES", "PLOT_NAMES", "SWEEP_BASELINES",
           "UNIT_METRICS", "EvalSet", "SweepError", "SweepResult", "abx_both", "check_fileids", "layer_groups",
           "load_eval_set", "plot_runs_perplexity", "spread", "sweep", "sweep_models"]

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


# ------------------------------------------------------------------------------------------- stages
def _info(prep: _Prepared, opts: SweepOptions) -> dict[str, Any]:
    model, evalset, seed = prep.model, prep.evalset, opts.seed
    cb_layers = list(codebook_layers(model))
    cfg = getattr(model, "cfg", None)
    codebooks = f", {cfg.num_codebooks} codebooks of {cfg.codebook_size} on layers {cb_layers}" if cb_layers else ""
    return {
        **{k: v for k, v in prep.model_info.as_dict().items() if v is not None},
        "architecture": f"{model.num_layers} layers of width {model.dim}{codebooks}",
        "layers": prep.layers,
        "codebook_layers": [la for la in prep.layers if la in cb_layers],
        "kmeans_k": opts.kmeans_k,
        "kmeans_fit": (f"{opts.kmeans_max_frames} frames at most, from {len(prep.kmeans_entries)} files of the "
                       f"train split (seed {seed})") if opts.kmeans_k else None,
        "corpus": str(Path(prep.corpus_dir).resolve()),
        "splits": list(prep.splits),
        "eval_files": len(evalset.entries),
        "eval_seconds": round(evalset.seconds(model.sample_rate), 1),
        "max_files_per_split": opts.max_files,
        "abx_items": evalset.num_items,
        "speakers": evalset.speakers,
        "words": evalset.num_words,
        "baselines": {b: SWEEP_BASELINES[b] for b in prep.baselines},
        "abx": "fastabx, triphones (same context), ZeroSpeech subsampling; angular for features, "
               "one-hot (identical) for units, symmetric KL for posteriors; error rate in %",
        "word_map": "MAP@R over words occurring twice or more, time-averaged features, cosine; in %",
        "frame_rate_hz": int(model.frame_rate) if float(model.frame_rate).is_integer() else float(model.frame_rate),
        "device": str(opts.device),
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
@dataclass
class _Prepared:
    """A sweep resolved before any feature is computed: the model, its layers, the evaluation set."""

    model: Any
    model_info: Any
    corpus_dir: str | os.PathLike
    layers: list[int]
    splits: list[str]
    evalset: EvalSet
    kmeans_entries: list
    label: str
    baselines: list[str]


@dataclass
class _Stages:
    """What the per-layer stages gave: the model's rows, the baselines' rows, the random init's layers."""

    main: ModelSweep
    baseline_rows: dict[str, Any]
    random_layers: dict[int, dict[str, Any]]
    pairs: dict[str, dict[str, float]]
    probe_info: dict[str, Any]
    best: tuple | None = None
    best_layer: int | None = None
    best_codebook: int | None = None


def _prepare(model, corpus_dir: str | os.PathLike, out: Path, opts: SweepOptions, watch: Stopwatch) -> _Prepared:
    baselines = list(dict.fromkeys(opts.baselines or ()))
    with watch("load_model"):
        model, model_info = _resolve_model(model, opts.device)
    if "random" in baselines and getattr(model, "cfg", None) is None:
        raise SweepError(f"the random-weights baseline needs a model built from a config, not a "
                         f"{type(model).__name__}")
    layers = _check_layers(opts.layers, model.num_layers)
    splits = resolve_splits(corpus_dir, opts.splits)
    with watch("load_corpus"):
        evalset = load_eval_set(corpus_dir, splits, out / "eval", opts.max_files)
        kmeans_entries = (train_subset(corpus_dir, model, opts.kmeans_max_frames, opts.seed)
                          if opts.kmeans_k else [])
    label = opts.label or MODEL_LABELS.get(model_info.variant, model_info.variant)
    return _Prepared(model, model_info, corpus_dir, layers, splits, evalset, kmeans_entries, label, baselines)


def _stages(prep: _Prepared, opts: SweepOptions, out: Path, stage: Progress) -> _Stages:
    """The model's layers, the feature floors, the random init's layers, the probes (each a bar step)."""
    model, evalset, layers, seed = prep.model, prep.evalset, prep.layers, opts.seed
    common = {"max_memory_gb": opts.max_memory_gb, "seed": seed, "device": opts.device}
    random_plan = LayerPlan(codebook=False, **common)
    kmeans = KMeansPlan(int(opts.kmeans_k), prep.kmeans_entries, opts.kmeans_max_frames, out / "kmeans",
                        prep.model_info.model_id) if opts.kmeans_k else None
    embeddings = tsne_per_phone(evalset.phones, evalset.speaker_of, opts.tsne_points) if opts.tsne_points else None
    main = sweep_layers(model, evalset, layers, LayerPlan(True, opts.posteriors, kmeans, embeddings, **common),
                        stage, name="model")
    pairs: dict[str, dict[str, float]] = {}
    rows = feature_baselines([b for b in prep.baselines if b in FEATURE_BASELINES], model, evalset, stage,
                             seed=seed, device=opts.device, pairs=pairs)
    random_layers: dict[int, dict[str, Any]] = {}
    if "random" in prep.baselines:
        random_sweep = sweep_layers(random_like(model, seed), evalset, layers, random_plan, stage, name="random")
        random_layers = random_sweep.layers
        best_random = best_layer_by_abx({str(k): v for k, v in random_layers.items()})
        best_random_layer = int(best_random[0]) if best_random else layers[0]
        rows[f"random init (L{best_random_layer})"] = random_layers[best_random_layer]
        pairs[f"random init (L{best_random_layer})"] = random_sweep.voice_pairs.get(best_random_layer, {})
    probe_info = {}
    if opts.probe:
        stage.bar.set_postfix_str("linear probes")
        with stage.watch("probe"):
            probe_info = add_probe_columns(model, prep.corpus_dir, layers, ProbeRows(main.layers, rows, random_layers),
                                           ProbeOptions(max_files=opts.max_files, seed=seed,
                                                        max_memory_gb=opts.max_memory_gb, progress=opts.progress))
    stages = _Stages(main, rows, random_layers, pairs, probe_info)
    stages.best = best_layer_by_abx({str(k): v for k, v in main.layers.items()})
    stages.best_layer = int(stages.best[0]) if stages.best else None
    stages.best_codebook = (max(main.qualities, key=lambda la: main.qualities[la]["pnmi"])
                            if main.qualities else None)
    return stages


def _result(prep: _Prepared, stages: _Stages, opts: SweepOptions, watch: Stopwatch, notes: list[str],
            figures: dict[str, Figure]) -> SweepResult:
    main, best_layer, pairs = stages.main, stages.best_layer, stages.pairs
    info = {**_info(prep, opts), **main.abx_counts, **stages.probe_info}
    if best_layer is not None:
        pairs = {f"L{best_layer} (best)": main.voice_pairs.get(best_layer, {}), **pairs}
    return SweepResult(
        info=info, layers=main.layers, baselines=stages.baseline_rows,
        units={**main.codebook, **main.posteriors, **main.kmeans}, best_layer=best_layer,
        best_layer_mean_abx=stages.best[1] if stages.best else None, best_codebook_layer=stages.best_codebook,
        random_init_layers=stages.random_layers, phone_given_code=_phone_given_code(main, stages.best_codebook),
        voice_pairs=pair_table(pairs, seen_voices(prep.corpus_dir)),
        timings_s=watch.rounded(), figures=figures, eval_dir=prep.evalset.root, notes=notes,
        title=opts.title or f"{prep.label} layer sweep ({prep.model_info.model_id})",
    )


def _bar_steps(prep: _Prepared, opts: SweepOptions) -> int:
    """Progress steps: loading, each layer pass, each floor, the random init's layers, the figures."""
    cb_layers = [la for la in prep.layers if la in codebook_layers(prep.model)]
    steps = 1 + len(prep.layers) + len(cb_layers) + (len(prep.layers) if opts.kmeans_k else 0) + 1
    return steps + len([b for b in prep.baselines if b in FEATURE_BASELINES]) + (
        len(prep.layers) if "random" in prep.baselines else 0)


@threads_like_torch
def sweep(model, corpus_dir: str | os.PathLike, out_dir: str | os.PathLike, options: SweepOptions | None = None,
          *, force: bool = False, **overrides: Any) -> dict[str, Any]:
    """Evaluate every layer of ``model`` on the splits of ``corpus_dir``; write the report, then the figures.

    :param model: a :class:`~spidrkit.models.interface.SpeechEncoder` such as
        :class:`~spidrkit.models.spidr.SpidR` (moved to the device, as ``Module.to`` does), a
        :class:`~spidrkit.checkpoints.Loaded`, a checkpoint path, a published name or ``random:PRESET``; or a
        list of them (a multi-model report, :func:`sweep_models`; ``label`` then a list).
    :param corpus_dir: an aligned corpus (:mod:`~spidrkit.evaluation.sweep.evalset`; ``train`` for k-means, probes).
    :param out_dir: receives ``report.json``, ``report.md``, the PNG figures, ``eval/`` (the merged
        annotations) and, with ``kmeans_k``, ``kmeans/`` (the centroids of every layer). A finished report there
        (``report.html``, written last) is replaced only with ``force``; an unfinished one is completed.
    :param options: a :class:`~spidrkit.evaluation.sweep.options.SweepOptions`, and/or its fields as keywords,
        each checked before the model or the corpus is read: ``splits`` (merged; default ``dev`` and
        ``heldout``, or ``dev`` alone with a warning), ``layers`` (1-based; default all), ``kmeans_k`` (also
        k-means units of every layer, fitted on at most ``kmeans_max_frames`` frames of the train split),
        ``baselines`` (any of :data:`SWEEP_BASELINES`), ``posteriors`` (ABX of the codebook heads' posteriors,
        symmetric KL), ``max_files`` (per split, evenly spaced in file-id order), ``metrics_jsonl`` /
        ``run_labels`` (training logs for the perplexity figure; one too short for a curve gives a note, not
        an error), ``notes`` (sentences for the report), ``max_memory_gb`` (features held at once),
        ``tsne_points`` (phone instances in the t-SNE figure; 0: none), ``probe`` (linear phone and speaker
        probes, :mod:`~spidrkit.evaluation.metrics.probe`), ``label`` (the model's name in tables).
    :returns: the results as written in ``report.json["results"]`` (:func:`~spidrkit.evaluation.sweep.report.
        sweep_results`), plus ``outputs``: the paths written (each figure as a path-like
        :class:`~spidrkit.evaluation.plots.figures.Figure`, which also holds the data it draws).
    """
    opts = sweep_options(options, **overrides)
    if isinstance(model, list | tuple) and not isinstance(model, Loaded):  # (a Loaded is a named tuple)
        return sweep_models(model, corpus_dir, out_dir, dataclasses.replace(opts, label=None), labels=opts.label,
                            force=force)
    watch, out = Stopwatch(), refuse_report_overwrite(out_dir, force, "evaluate sweep")  # before any reading
    with watch("total"):
        prep = _prepare(model, corpus_dir, out, opts, watch)
        bar = progress_bar(_bar_steps(prep, opts), "sweep", "step", opts.progress)
        try:
            bar.update(1)
            stages = _stages(prep, opts, out, Progress(watch, bar, opts.progress))
            cells = [w for w in (few_cells_warning(k[4:-6], n, stages.main.abx_counts[k[:-6] + "_triplets"])
                                 for k, n in stages.main.abx_counts.items() if k.endswith("_cells") and n) if w]
            notes = [*opts.notes, *runs_notes(opts.runs), *cells]
            # the numbers reach disk before any figure is drawn: a figure that fails loses none
            write_sweep_report(out, _result(prep, stages, opts, watch, notes, {}), html=False)
            bar.set_postfix_str("figures")
            with watch("plots"):
                rows = {k: v for k, v in stages.baseline_rows.items() if k in FEATURE_BASELINES}
                inputs = FigureInputs(stages.main, stages.random_layers, rows, prep.label,
                                      opts.title or f"{prep.label}: layer sweep on {', '.join(prep.splits)}",
                                      stages.best_layer, stages.best_codebook, opts.runs, opts.run_labels)
                figures = draw_figures(out, inputs, prep.model, opts.seed, watch)
            bar.update(1)
        finally:
            bar.close()
    result = _result(prep, stages, opts, watch, notes, figures)
    json_path, md_path = write_sweep_report(out, result)
    outputs = {"report_json": json_path, "report_md": md_path, "report_html": md_path.with_suffix(".html"),
               "eval": prep.evalset.root, **result.figures}
    results = sweep_results(result)
    report_layers(results, opts, out)
    return {**results, "outputs": outputs}


def report_layers(results: dict[str, Any], opts: SweepOptions, out: Path) -> None:
    """The per-layer table to ``opts.report_to``'s tracker (``--report-to``) in ``opts.report_dir`` (default: the
    sweep's folder), as ``sweep`` (or ``sweep/LABEL``): a table, and each metric as a scalar by layer."""
    if opts.report_to == "none":
        return
    tracker = open_tracker(opts.report_to, opts.report_dir or out, job="sweep", config={"sweep": results["info"]})
    try:
        tracker.log_table("sweep" + (f"/{opts.label}" if isinstance(opts.label, str) else ""), *layer_table(results))
    finally:
        tracker.close()


def sweep_models(models: Sequence, corpus_dir: str | os.PathLike, out_dir: str | os.PathLike,
                 options: SweepOptions | None = None, *, labels: Sequence[str | None] | None = None,
                 force: bool = False, **overrides: Any) -> dict[str, Any]:
    """Several models side by side (the paper's Figure 7): each of ``models`` (anything :func:`sweep` takes)
    swept with the same ``options`` on the same evaluation set into ``OUT/models/LABEL/`` (its own complete
    single-model report), and ONE report in ``OUT``: ``results`` = ``{"info", "models": {label: that model's
    results + "report" (its report.md, relative)}, "comparison": {"tables": {metric: {layer: {label: value}}},
    "baselines": {metric: {name: value}}}}`` (:func:`~spidrkit.evaluation.sweep.report.compare_models`), a table
    and a figure ``METRIC.png`` per metric, one curve per model against the layer number. ``labels``: one per
    model (``None`` entries, or none at all: from the provenance, e.g. SpidR), made unique. A model without a
    config (e.g. a wrapped ``transformers`` encoder) gets no random-weights baseline. ``force``: as :func:`sweep`'s,
    for ``OUT``'s report (the models' folders below it are its own, replaced as it goes).
    """
    from spidrkit.evaluation.sweep.report import COMPARISON_METRICS, compare_models, render_comparison, write_report

    opts = sweep_options(options, **overrides)
    device, title = opts.device, opts.title
    models = list(models)
    labels = [None] * len(models) if labels is None else [labels] if isinstance(labels, str) else list(labels)
    if not models or len(labels) != len(models):
        raise SweepError(f"{len(models)} models but {len(labels)} labels: give one --label per --model (or none)")
    refuse_report_overwrite(out_dir, force, "evaluate sweep")
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
            kept = [b for b in opts.baselines  # random weights need a config
                    if b != "random" or getattr(model.model, "cfg", None) is not None]
            res = sweep(model, corpus_dir, folder, dataclasses.replace(opts, label=name, baselines=kept, title=None,
                                                                       report_dir=opts.report_dir or out), force=True)
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
