"""``spidrkit evaluate``: ABX, unit quality (PNMI...), word MAP, the whole layer sweep, perplexity plots.

    spidrkit evaluate abx FEATURES|UNITS ITEM [--speaker within|across|both] [--distance angular|kl_symmetric]
                                        [--context within|any] [-o OUT.json]  (with its cells and
                          triplets; below 50 cells, a warning: the number is not reliable)
    spidrkit evaluate units UNITS LABELS [--pairing both|center] [--ignore SIL] [--plot PNG] [-o OUT.json]
    spidrkit evaluate map FEATURES WORDS [--min-occurrences 2] [-o OUT.json]
    spidrkit evaluate sweep --model M [--model M2 ...] [--label NAME ...] --corpus DIR -o OUT [--layers 1,2,...]
                            [--kmeans K] [--probe] [--baselines mfcc,mfcc_cmvn,random] [--metrics RUN/metrics.jsonl ...]
                            [--max-files N]   (several --model: one report comparing them, see docs/formats.md)
    spidrkit evaluate probe --model M --corpus DIR [--layers 1,2,...] [--baselines mfcc,random] [-o OUT]
    spidrkit evaluate plot-perplexity RUN1/metrics.jsonl [RUN2/metrics.jsonl] -o PNG [--labels spidr,dinosr]
    spidrkit evaluate slm BENCHMARK --model MODEL --units codebook:L|kmeans:FILE --lm RUN [--unnormalized] [-o OUT]
    spidrkit evaluate budget RUN --corpus DIR -o OUT [--layers 1,2,...]

FEATURES is a folder of ``<fileid>.pt``/``.npy`` tensors (T, D) (``spidrkit extract``); UNITS a units file
(``spidrkit extract --units`` or ``spidrkit kmeans apply``); ITEM a ZeroSpeech item file; LABELS phone labels
at 100 Hz (``utt l1 l2 ...``, e.g. ``dev_frames.txt`` of ``spidrkit data synth``); WORDS a word alignment
(``utt onset offset word [speaker]``). The frame rate of FEATURES / UNITS is ``--frame-rate``, else the one
their sidecar records (``spidrkit extract`` writes it), else that of the default model configuration (50 Hz).
Results are printed as a table; ``-o`` also writes them as JSON, with the inputs that produced them. The
Python API is :mod:`spidrkit.evaluation`.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spidrkit.cli import UserError
from spidrkit.cli.arg_types import name_list
from spidrkit.cli.flags import Deprecated, add_device, add_layers, add_model, add_output, show_progress
from spidrkit.cli.model_args import add_model_options, model_source
from spidrkit.io import BUDGET_LAST_FILE, REPORT_LAST_FILE
from spidrkit.tracking import REPORT_TO

DISTANCES = ("angular", "kl_symmetric", "identical")
MESSAGES_NAME_THE_ACTION = True  # its actions are separate tools: errors say `spidrkit evaluate abx: error: ...`


# ------------------------------------------------------------------------------------------- parser
def _add_frame_rate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frame-rate", type=float, default=None, metavar="HZ",
                   help="frames per second of the inputs (default: from their sidecar, else the default model's)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spidrkit.cli.budget import add_budget_parser
    from spidrkit.cli.slm import add_slm_parser

    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for add in (_add_abx, _add_units, _add_map, _add_sweep, _add_probe, _add_plot_perplexity, add_budget_parser):
        add(sub)
    add_model_options(add_slm_parser(sub))
    for p in sub.choices.values():
        p.add_argument("--force", action="store_true", help="replace an existing output (-o, --plot)")


def _add_abx(sub) -> None:
    p = sub.add_parser("abx", help="ABX error rate (%%) of features or units on an item file",
                       description="ABX phone discriminability (fastabx, triphones): within and/or across speaker, "
                       "of a features folder or of a units file (one-hot units, identical distance).",
                       epilog="example: spidrkit evaluate abx features/layer_06 corpus/dev.item -o abx.json")
    p.add_argument("features", metavar="FEATURES", help="features folder, or a units file")
    p.add_argument("item", metavar="ITEM", help="ZeroSpeech item file (#file onset offset #phone ...)")
    p.add_argument("--speaker", choices=("within", "across", "both"), default="both", help="default: both")
    p.add_argument("--context", choices=("within", "any"), default="within",
                   help="within: A, B, X share their neighbours (triphones, default); any: no constraint")
    p.add_argument("--distance", choices=DISTANCES, default=None,
                   help="angular for features (default), kl_symmetric for posteriors, identical for units")
    p.add_argument("--units", dest="units_flag", action=Deprecated, mode="store_true",
                   advice="spidrkit: warning: evaluate abx --units is deprecated: a FEATURES file is read as a "
                   "units file")
    add_device(p)
    _add_frame_rate(p)
    add_output(p, "JSON", "also write the results as JSON")


def _add_units(sub) -> None:
    p = sub.add_parser("units", help="PNMI, purities, perplexity and bitrate of units against phone labels",
                       description="Quality of units against 100 Hz phone labels (see "
                       "spidrkit.evaluation.metrics.units for the pairing convention).",
                       epilog="example: spidrkit evaluate units features/units.txt corpus/dev_frames.txt --ignore SIL")
    p.add_argument("units", metavar="UNITS", help="units file (text or JSONL, frame-level or de-duplicated)")
    p.add_argument("labels", metavar="LABELS", help="frame labels at 100 Hz: 'utt l1 l2 ...' per line")
    p.add_argument("--pairing", choices=("both", "center"), default="both",
                   help="both: each unit frame with its two label frames (default); center: with the middle one")
    p.add_argument("--ignore", type=name_list, default=[], metavar="L1,L2",
                   help="labels left out of the phone metrics, e.g. SIL (default: none, as in the paper)")
    p.add_argument("--plot", metavar="PNG", help="also draw the P(phone | code) heat map")
    _add_frame_rate(p)
    add_output(p, "JSON", "also write the results as JSON")


def _add_map(sub) -> None:
    p = sub.add_parser("map", help="MAP@R over words (%%) of features",
                       description="Word discriminability: time-averaged features of every word occurrence, "
                       "cosine similarity, MAP@R (SpidR paper, eq. 5).",
                       epilog="example: spidrkit evaluate map features/layer_06 corpus/dev_words.txt")
    p.add_argument("features", metavar="FEATURES", help="features folder")
    p.add_argument("words", metavar="WORDS", help="word alignment: 'utt onset offset word [speaker]' per line")
    p.add_argument("--min-occurrences", type=int, default=2, help="drop rarer words first (default: 2)")
    add_device(p)
    _add_frame_rate(p)
    add_output(p, "JSON", "also write the results as JSON")


def _add_sweep(sub) -> None:
    from spidrkit.evaluation.sweep.evalset import DEFAULT_SPLITS
    from spidrkit.evaluation.sweep.options import (
        DEFAULT_BASELINES,
        DEFAULT_KMEANS_MAX_FRAMES,
        SWEEP_BASELINES,
    )

    p = sub.add_parser("sweep", help="every metric of every layer, baselines, figures and a report",
                       description="Layer sweep on an aligned corpus (spidrkit data synth layout): ABX within/"
                       "across and word MAP per layer, codebook (and k-means) units, baselines, figures; writes "
                       "OUT/report.json and OUT/report.md.",
                       epilog="example: spidrkit evaluate sweep --model runs/tiny --corpus corpus/ -o sweep/ "
                       "--kmeans 100")
    add_model(p, required=True, repeat=True,
              help="checkpoint or model directory, a published model (spidr_base, ...), a Hub repo id "
              "(OWNER/NAME[@REVISION]), or random:PRESET_OR_TOML (RANDOM weights, for testing only); repeat it "
              "to compare several models")
    p.add_argument("--label", action="append", default=None, metavar="NAME",
                   help="name of each --model in tables and figures, in order (default: from its provenance)")
    add_model_options(p)
    p.add_argument("--corpus", required=True, metavar="DIR", help="corpus folder (SPLIT.csv, SPLIT.item, ...)")
    add_output(p, "OUT", "output folder", required=True)
    p.add_argument("--probe", action="store_true",
                   help="also the linear phone and speaker probes of every layer (needs train and heldout splits)")
    p.add_argument("--splits", type=name_list, default=None, metavar="S1,S2",
                   help=f"evaluation splits, merged (default: {','.join(DEFAULT_SPLITS)}, or dev alone when the "
                   "corpus has no held-out voice)")
    add_layers(p, "1-based layers, comma-separated (default: all)")
    p.add_argument("--kmeans", type=int, default=None, metavar="K", help="also k-means units with K centroids")
    p.add_argument("--kmeans-max-frames", type=int, default=DEFAULT_KMEANS_MAX_FRAMES, metavar="N",
                   help=f"k-means fit sample from the train split (default: {DEFAULT_KMEANS_MAX_FRAMES})")
    p.add_argument("--baselines", type=name_list, default=list(DEFAULT_BASELINES), metavar="B1,B2",
                   help=f"any of {','.join(SWEEP_BASELINES)}, or 'none' (default: mfcc,mfcc_cmvn,random)")
    p.add_argument("--posteriors", action="store_true", help="also ABX of the codebook posteriors (symmetric KL)")
    p.add_argument("--metrics", nargs="+", default=None, metavar="METRICS_JSONL",
                   help="training runs' metrics.jsonl for the perplexity figure")
    p.add_argument("--labels", type=name_list, default=None, metavar="L1,L2", help="names of the --metrics runs")
    p.add_argument("--max-files", type=int, default=None, metavar="N", help="at most N files per split")
    p.add_argument("--title", default=None, help="report title")
    p.add_argument("--seed", type=int, default=0, help="seed of k-means, the random model, subsampling")
    p.add_argument("--max-memory-gb", type=float, default=4.0, help="features held in memory at once")
    p.add_argument("--tsne-points", type=int, default=1000, help="phone instances in the t-SNE figure (0: none)")
    add_device(p)
    p.add_argument("--report-to", choices=REPORT_TO, default="none", help="also log the per-layer table to "
                   "tensorboard or wandb, in --report-run (a training run's folder) or else -o")
    p.add_argument("--report-run", default=None, metavar="RUN_DIR", help="the run folder whose tracker gets the table")


def _add_probe(sub) -> None:
    p = sub.add_parser("probe", help="linear phone and speaker probes of every layer",
                       description="Per layer, a logistic regression on the frames: phones (trained on the "
                       "training voices, scored on the held-out voice: accuracy and PER with bootstrap 95 % "
                       "intervals) and speakers (the training voices, split by utterance). See "
                       "spidrkit.evaluation.metrics.probe.",
                       epilog="example: spidrkit evaluate probe --model runs/tiny --corpus corpus/ --layers 4,6 "
                       "-o probe/")
    add_model(p, required=True)
    add_model_options(p)
    p.add_argument("--corpus", required=True, metavar="DIR", help="corpus folder (train or dev, and heldout)")
    add_output(p, "OUT", "also write OUT/report.json and report.md")
    add_layers(p, "1-based layers, comma-separated (default: all)")
    p.add_argument("--baselines", type=name_list, default=["mfcc", "random"], metavar="B1,B2",
                   help="any of mfcc,log_mel,noise,random, or 'none' (default: mfcc,random)")
    p.add_argument("--max-files", type=int, default=None, metavar="N", help="at most N test files")
    p.add_argument("--max-train-frames", type=int, default=None, metavar="N",
                   help="training frames per layer, at most (default: 20000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsampling, bootstrap and random model")
    add_device(p)


def _add_plot_perplexity(sub) -> None:
    p = sub.add_parser("plot-perplexity", help="codebook and prediction perplexity over training (Figure 2)",
                       description="One line per layer, one line style per run.",
                       epilog="example: spidrkit evaluate plot-perplexity runs/spidr/metrics.jsonl "
                       "runs/dinosr/metrics.jsonl -o perplexity.png")
    p.add_argument("runs", nargs="+", metavar="METRICS_JSONL", help="metrics.jsonl of one or more training runs")
    add_output(p, "PNG", "output image", required=True)
    p.add_argument("--labels", type=name_list, default=None, metavar="L1,L2",
                   help="run names (default: the runs' folder names)")
    p.add_argument("--codebook-size", type=int, default=None, metavar="V", help="draw the maximum V")
    p.add_argument("--title", default=None, help="figure title")


# ------------------------------------------------------------------------------------------- output
def print_table(rows: Mapping[str, Mapping[str, Any]], first: str = "") -> None:
    """Print ``{name: {metric: value}}`` as an aligned table (the report's Markdown table, plain)."""
    from spidrkit.evaluation.sweep.report import text_table

    print("\n".join(text_table(rows, first=first)))


def _write_json(path: str | os.PathLike | None, command: str, inputs: Mapping[str, Any], results: Any) -> None:
    """``-o``: the results with what produced them (inputs, their hashes, the tool version)."""
    if not path:
        return
    from spidrkit import __version__
    from spidrkit.io import file_sha256, json_safe, write_json_atomic

    described = {}
    for key, value in inputs.items():
        p = Path(value) if isinstance(value, (str, os.PathLike)) else None
        described[key] = str(value)
        if p is not None and p.is_file():
            described[f"{key}_sha256"] = file_sha256(p)
    write_json_atomic(path, {"command": f"spidrkit evaluate {command}", "producer": f"spidrkit {__version__}",
                             "inputs": described, "results": json_safe(results)})
    print(f"-> {path}")


def _need_file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"no {what} at {p}")
    return p


def _feature_folder(path: str):
    from spidrkit.evaluation.metrics.abx import FeatureDir

    p = Path(path)
    if p.is_file():
        raise UserError(f"{p} is a file; FEATURES must be a folder of <fileid>.pt/.npy tensors "
                        "(a units file goes to evaluate abx or evaluate units)")
    try:
        return FeatureDir(p)
    except FileNotFoundError as e:
        raise UserError(str(e)) from e


def _frame_rate(args: argparse.Namespace, source: str) -> float:
    """``--frame-rate``, else the ``frame_rate`` the sidecar of ``source`` (or of its folder) records, else the
    default model configuration's."""
    from spidrkit.config import ModelConfig
    from spidrkit.io import read_sidecar, sidecar_path

    if args.frame_rate is not None:
        if args.frame_rate <= 0:
            raise UserError(f"--frame-rate must be > 0, got {args.frame_rate:g}")
        return args.frame_rate
    path = Path(source)
    for owner in (path, path.parent) if path.is_file() else (path,):
        if not sidecar_path(owner).is_file():
            continue
        try:
            rate = read_sidecar(owner).get("frame_rate")
        except ValueError as e:
            raise UserError(f"{sidecar_path(owner)}: {e}") from e
        if rate:
            return float(rate)
    return ModelConfig().frame_rate


def _read_units(path: str) -> dict:
    from spidrkit.evaluation.metrics.discrete import frame_units

    p = _need_file(path, "units file")
    try:
        return frame_units(p)
    except ValueError as e:  # a UnitsError too
        raise UserError(f"{p}: {e}") from e


# ------------------------------------------------------------------------------------------- actions
def _abx(args: argparse.Namespace) -> int:
    from spidrkit.data.corpora.alignments import read_item_file
    from spidrkit.evaluation.metrics.abx import MIN_ABX_CELLS, abx_both, units_as_indices
    from spidrkit.evaluation.sweep.evalset import check_fileids

    item = _need_file(args.item, "item file")
    files = {it.file for it in read_item_file(item)}
    units = args.units_flag or Path(args.features).is_file()
    if units:
        if args.distance not in (None, "identical"):
            raise UserError("a units file is compared with the identical distance (one-hot units); drop --distance")
        features, distance, source = units_as_indices(_read_units(args.features)), "identical", "the units file"
    else:
        features, distance, source = _feature_folder(args.features), args.distance or "angular", "the features"
    check_fileids(files, features, f"the item file {item.name}", f"{source} {args.features}")
    speakers = ("within", "across") if args.speaker == "both" else (args.speaker,)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            results = abx_both(features, item, frame_rate=_frame_rate(args, args.features), distance=distance,
                               context=args.context, device=args.device, speakers=speakers, with_counts=True)
        except ValueError as e:
            raise UserError(str(e)) from e
    notes = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)))
    print_table({"abx": results}, first="")
    for note in notes:
        print(f"spidrkit evaluate abx: warning: {note}", file=sys.stderr)
    _write_json(args.output, "abx", {"features": args.features, "item": item}, {
        **results, "distance": distance, "context": args.context, "units": bool(units),
        "min_cells": MIN_ABX_CELLS, "warnings": notes})
    return 0


def _units(args: argparse.Namespace) -> int:
    from spidrkit.data.corpora.alignments import read_frame_labels
    from spidrkit.evaluation.metrics.units import UNIT_METRICS, unit_quality

    units = _read_units(args.units)
    labels = read_frame_labels(_need_file(args.labels, "frame labels file"))
    # utterances without labels are skipped with a warning (unit_quality); none in common is an error
    try:
        quality = unit_quality(units, labels, unit_rate=_frame_rate(args, args.units), pairing=args.pairing,
                               ignore_labels=args.ignore)
    except ValueError as e:
        raise UserError(str(e)) from e
    scalars = {k: quality[k] for k in (*UNIT_METRICS, "num_frames", "num_utterances")}
    print_table({"units": scalars})
    if args.plot:
        from spidrkit.evaluation.plots.layers import plot_phone_given_code

        figure = plot_phone_given_code(quality, args.plot, title=f"P(phone | code): {Path(args.units).name}")
        print(f"-> {figure.path}")
    _write_json(args.output, "units", {"units": args.units, "labels": args.labels},
                {**quality, "pairing": args.pairing, "ignore_labels": args.ignore})
    return 0


def _map(args: argparse.Namespace) -> int:
    from spidrkit.data.corpora.alignments import count_intervals, read_alignments
    from spidrkit.evaluation.metrics.word_map import word_map
    from spidrkit.evaluation.sweep.evalset import check_fileids

    features = _feature_folder(args.features)
    try:
        words = read_alignments(_need_file(args.words, "word alignment"))
    except ValueError as e:
        raise UserError(str(e)) from e
    check_fileids(words, features, f"the word alignment {args.words}", f"the features {args.features}")
    try:
        value = word_map(features, words, min_occurrences=args.min_occurrences,
                         frame_rate=_frame_rate(args, args.features), device=args.device, progress=False)
    except ValueError as e:
        raise UserError(str(e)) from e
    results = {"map": value, "words": count_intervals(words)}
    print_table({"word MAP": results})
    _write_json(args.output, "map", {"features": args.features, "words": args.words},
                {**results, "min_occurrences": args.min_occurrences})
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from spidrkit.evaluation.sweep.options import SweepOptions
    from spidrkit.evaluation.sweep.run import sweep

    if args.label is not None and len(args.label) != len(args.model):
        raise UserError(f"{len(args.model)} --model but {len(args.label)} --label: give one --label per --model")
    options = SweepOptions(  # every option checked here, before a model or the corpus is read
        splits=args.splits, layers=args.layers, kmeans_k=args.kmeans, kmeans_max_frames=args.kmeans_max_frames,
        baselines=[] if args.baselines == ["none"] else args.baselines, posteriors=args.posteriors,
        max_files=args.max_files, device=args.device, metrics_jsonl=args.metrics, run_labels=args.labels,
        title=args.title, seed=args.seed, max_memory_gb=args.max_memory_gb, tsne_points=args.tsne_points,
        progress=show_progress(args), probe=args.probe, report_to=args.report_to, report_dir=args.report_run,
        label=args.label if len(args.model) > 1 else (args.label or [None])[0])
    models = [model_source(m, args, args.device) for m in args.model]
    results = sweep(models if len(models) > 1 else models[0], args.corpus, args.output, options, force=args.force)
    from spidrkit.evaluation.sweep.report import summary_text

    print(summary_text(results))
    return 0


def _probe(args: argparse.Namespace) -> int:
    from spidrkit.evaluation.metrics.probe import MAX_TRAIN_FRAMES, ProbeOptions, probe

    options = ProbeOptions(  # checked before the model is read
        layers=args.layers, baselines=[] if args.baselines == ["none"] else args.baselines, max_files=args.max_files,
        max_train_frames=args.max_train_frames or MAX_TRAIN_FRAMES, seed=args.seed, device=args.device,
        progress=show_progress(args))
    results = probe(model_source(args.model, args, args.device), args.corpus, args.output, options,
                    force=args.force)

    from spidrkit.evaluation.sweep.report import summary_text

    print(summary_text(results))
    return 0


def _plot_perplexity(args: argparse.Namespace) -> int:
    from spidrkit.evaluation.plots.perplexity import plot_runs_perplexity

    for r in args.runs:
        _need_file(r, "metrics file")
    try:
        figure = plot_runs_perplexity(args.runs, args.output, labels=args.labels, codebook_size=args.codebook_size,
                                      title=args.title)
    except ValueError as e:  # a file that is not a training metrics JSONL
        raise UserError(str(e)) from e
    print(f"-> {figure.path}")
    return 0


def _slm(args: argparse.Namespace) -> int:
    from spidrkit.cli.slm import run_slm

    return run_slm(args)


def _budget(args: argparse.Namespace) -> int:
    from spidrkit.cli.budget import run_budget

    return run_budget(args)


ACTIONS = {"abx": _abx, "units": _units, "map": _map, "sweep": _sweep, "probe": _probe,
           "plot-perplexity": _plot_perplexity, "slm": _slm, "slm-compare": _slm, "budget": _budget}


# actions whose -o is a folder: the file each writes last, which says a run is finished (a run stopped by a full
# disk or a signal has written its numbers before it, and is finished by a rerun without --force); checked here
# before any model is read, and again by the API's sweep(), probe() and budget_curve() (force=args.force)
OUTPUT_FOLDERS = {"sweep": REPORT_LAST_FILE, "probe": REPORT_LAST_FILE, "slm": REPORT_LAST_FILE,
                  "slm-compare": REPORT_LAST_FILE, "budget": BUDGET_LAST_FILE}


def _final_outputs(args: argparse.Namespace) -> list[Path]:
    """The finished outputs an action would replace: a folder's last file, or the files given to -o / --plot."""
    if args.action in OUTPUT_FOLDERS:
        return [] if args.output is None else [Path(args.output) / OUTPUT_FOLDERS[args.action]]
    return [Path(p) for p in (args.output, getattr(args, "plot", None)) if p]


def run(args: argparse.Namespace) -> int:
    # typed errors of the library (SweepError, CheckpointError...) are InputErrors: cli.main prints them, exit 2
    from spidrkit.io import check_output_dir, refuse_overwrite

    if args.action in OUTPUT_FOLDERS and args.output is not None:
        check_output_dir(args.output, "-o")  # before any model, corpus or benchmark is read
    refuse_overwrite(_final_outputs(args), args.force, f"evaluate {args.action}")
    return ACTIONS[args.action](args)
