"""``spidrkit kmeans``: fit k-means centroids on extracted features, or apply them to get units.

    spidrkit kmeans fit FEATURES_DIR -k 256 [--max-frames N] [--seed S] [--backend faiss|sklearn] -o C.npy
    spidrkit kmeans apply FEATURES_DIR --centroids C.npy -o UNITS.txt [--dedup] [--format txt|jsonl]
    spidrkit kmeans fit-corpus CORPUS [--split train] --model MODEL|mfcc [--layers N] -k 256 [--max-files N] -o C
"""

from __future__ import annotations

import argparse

from spidrkit.cli import UserError
from spidrkit.cli.flags import add_device, add_layers, add_model, add_output, note, one_layer, show_progress
from spidrkit.cli.model_args import add_model_options
from spidrkit.extraction.features_io import FeatureError
from spidrkit.extraction.kmeans import (
    BACKENDS,
    DEFAULT_MAX_FRAMES,
    KMeansError,
    KMeansModel,
    apply_kmeans,
    centroids_path,
    find_centroids,
    fit_kmeans,
)
from spidrkit.extraction.units import UNIT_FORMATS, UnitsError, write_units
from spidrkit.io import file_sha256, refuse_overwrite


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    fit = sub.add_parser(
        "fit", help="fit centroids on a features folder",
        description="Fit k centroids on a seeded uniform sample of the frames (k-means++ seeding, then "
        "Lloyd iterations). Writes CENTROIDS.npy (float32 (k, D)) and its sidecar CENTROIDS.npy.json.",
        epilog="example: spidrkit kmeans fit features/layer_06 -k 100 -o centroids.npy",
    )
    fit.add_argument("features", metavar="FEATURES_DIR", help="features folder of one layer (OUT/layer_06)")
    fit.add_argument("-k", "--k", type=int, default=256, help="number of centroids (default: 256)")
    fit.add_argument(
        "--max-frames", type=int, default=DEFAULT_MAX_FRAMES, metavar="N",
        help=f"fit on a seeded uniform sample of at most N frames, 0: all (default: {DEFAULT_MAX_FRAMES})",
    )
    fit.add_argument("--seed", type=int, default=0, help="seed of the sampling and the k-means++ init")
    fit.add_argument("--niter", type=int, default=50, help="Lloyd iterations (default: 50)")
    fit.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="auto: faiss if installed, else scikit-learn"
    )
    add_output(fit, "CENTROIDS", "centroids file (.npy added)", required=True)

    apply = sub.add_parser(
        "apply", help="map every frame to its nearest centroid: a units file",
        description="Write one line per utterance, 'utt u1 u2 ...' (text) or {'utt', 'units'} (JSONL); with "
        "--dedup runs are collapsed and their lengths kept ('u*frames' tokens, or a 'durations' list).",
        epilog="example: spidrkit kmeans apply features/layer_06 --centroids centroids.npy -o units.txt",
    )
    apply.add_argument("features", metavar="FEATURES_DIR", help="features folder (same layer as the fit)")
    apply.add_argument("--centroids", required=True, help="centroids written by `spidrkit kmeans fit`")
    add_output(apply, "UNITS", "units file (.txt or .jsonl)", required=True)
    apply.add_argument("--dedup", action="store_true", help="collapse runs, keeping durations (unit*frames)")
    apply.add_argument("--format", choices=UNIT_FORMATS, default=None, help="default: from the suffix")

    corpus = sub.add_parser(
        "fit-corpus", help="fit centroids on a corpus split's layer features or MFCC (the sLM units' k-means)",
        description="Fit k centroids on the features of one layer of an encoder (or on the 39-d MFCC, the sLM "
        "floor) of the audio of CORPUS/SPLIT.csv, without writing the features; the sidecar names the layer, so "
        "`--units kmeans:C` of `spidrkit lm units` and `evaluate slm` finds it.",
        epilog="example: spidrkit kmeans fit-corpus corpus/ --model runs/tiny --layers 6 -k 100 -o centroids.npy")
    corpus.add_argument("corpus", metavar="CORPUS", help="a folder with SPLIT.csv (a manifest)")
    corpus.add_argument("--split", default="train", help="the split (default: train)")
    add_model(corpus, required=True, help="a checkpoint, published model or Hub repo id (OWNER/NAME[@REVISION]), "
              "'mfcc', or random:PRESET (RANDOM weights, for tests)")
    add_layers(corpus, "the one layer to cluster (1-based; not with mfcc)", single=True)
    corpus.add_argument("-k", "--k", type=int, default=256, help="number of centroids (default: 256)")
    corpus.add_argument("--max-files", type=int, default=None, metavar="N",
                        help="fit on N utterances, evenly spaced (default: all)")
    corpus.add_argument("--seed", type=int, default=0, help="seed of the sampling and the k-means++ init")
    add_device(corpus)
    add_output(corpus, "CENTROIDS", "centroids file (.npy added)", required=True)
    add_model_options(corpus)
    for p in (fit, apply, corpus):
        p.add_argument("--force", action="store_true", help="replace an existing -o file")


def _fit(args: argparse.Namespace) -> int:
    model = fit_kmeans(
        args.features, k=args.k, max_frames=args.max_frames or None, seed=args.seed,
        backend=args.backend, niter=args.niter, progress=show_progress(args),
    )
    path = model.save(args.output, force=args.force)
    i = model.info
    note(args, f"k={model.k} dim={model.dim} on {i['fitted_frames']} of {i['total_frames']} frames "
         f"({i['backend']}, seed {i['seed']}): inertia/frame {i['inertia_per_frame']:.4g} -> {path}")
    return 0


def _apply(args: argparse.Namespace) -> int:
    centroids = find_centroids(args.centroids)
    model = KMeansModel.load(centroids)
    units = apply_kmeans(args.features, model, progress=show_progress(args))
    path = write_units(
        args.output, units, dedup=args.dedup, fmt=args.format, force=args.force,
        k=model.k, layer=model.info.get("layer"), model=model.info.get("model"),
        centroids=str(centroids), centroids_sha256=file_sha256(centroids), features=str(args.features),
    )
    note(args, f"{len(units)} utterances, k={model.k} -> {path}")
    return 0


def _fit_corpus(args: argparse.Namespace) -> int:
    from spidrkit.evaluation.slm.units import (
        MFCC,
        CorpusSplit,
        UnitSpec,
        corpus_entries,
        files_bar,
        fit_corpus_kmeans,
        load_encoder,
    )

    layer = one_layer(args.layers)
    if args.model == MFCC and layer is not None:
        raise UserError("--model mfcc has no layers: leave out --layers")
    if args.model != MFCC and layer is None:
        raise UserError(f"--model {args.model}: give the layer to cluster, --layers N")
    total = len(corpus_entries(args.corpus, args.split, args.max_files))  # before any model is loaded
    layer = layer or 0  # 0: the MFCC
    encoder, model_id = load_encoder(args.model, UnitSpec("kmeans", layer), args.device, variant=args.variant,
                                     normalization=args.normalization)
    if args.model != MFCC and not 1 <= layer <= encoder.num_layers:
        raise UserError(f"--layers {layer}: the encoder has layers 1..{encoder.num_layers}")
    with files_bar(total, "features", enabled=show_progress(args)) as bar:
        path = fit_corpus_kmeans(args.output, CorpusSplit(args.corpus, args.split, args.max_files), encoder, layer,
                                 args.k, seed=args.seed, model=model_id, progress=bar)
    model = KMeansModel.load(path)
    where = "MFCC" if layer == 0 else f"layer {layer}"
    note(args, f"k={model.k} dim={model.dim} on {where} of {total} files -> {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    actions = {"fit": _fit, "apply": _apply, "fit-corpus": _fit_corpus}
    final = args.output if args.action == "apply" else centroids_path(args.output)
    # before any feature is read (the API's writers check again when they write: force=args.force)
    refuse_overwrite([final], args.force, f"kmeans {args.action}")
    try:
        return actions[args.action](args)
    except (FeatureError, KMeansError, UnitsError) as e:
        raise UserError(str(e)) from e
