"""``spidrkit kmeans``: fit k-means centroids on extracted features, or apply them to get units.

    spidrkit kmeans fit FEATURES_DIR -k 256 [--max-frames N] [--seed S] [--backend faiss|sklearn] -o C.npy
    spidrkit kmeans apply FEATURES_DIR --centroids C.npy -o UNITS.txt [--dedup] [--format txt|jsonl]
"""

from __future__ import annotations

import argparse
import sys

from spidrkit.cli import UserError
from spidrkit.extraction.features_io import FeatureError
from spidrkit.extraction.kmeans import (
    BACKENDS,
    DEFAULT_MAX_FRAMES,
    KMeansError,
    KMeansModel,
    apply_kmeans,
    find_centroids,
    fit_kmeans,
)
from spidrkit.extraction.units import UNIT_FORMATS, UnitsError, write_units
from spidrkit.io import file_sha256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    fit = sub.add_parser(
        "fit", help="fit centroids on a features folder",
        description="Fit k centroids on a seeded uniform sample of the frames (k-means++ seeding, then "
        "Lloyd iterations). Writes CENTROIDS.npy (float32 (k, D)) and its sidecar CENTROIDS.npy.json.",
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
    fit.add_argument("-o", "--output", required=True, metavar="CENTROIDS", help="centroids file (.npy added)")
    fit.add_argument("--quiet", action="store_true", help="no progress bars")

    apply = sub.add_parser(
        "apply", help="map every frame to its nearest centroid: a units file",
        description="Write one line per utterance, 'utt u1 u2 ...' (text) or {'utt', 'units'} (JSONL); with "
        "--dedup runs are collapsed and their lengths kept ('u*frames' tokens, or a 'durations' list).",
    )
    apply.add_argument("features", metavar="FEATURES_DIR", help="features folder (same layer as the fit)")
    apply.add_argument("--centroids", required=True, help="centroids written by `spidrkit kmeans fit`")
    apply.add_argument("-o", "--output", required=True, metavar="UNITS", help="units file (.txt or .jsonl)")
    apply.add_argument("--dedup", action="store_true", help="collapse runs, keeping durations (unit*frames)")
    apply.add_argument("--format", choices=UNIT_FORMATS, default=None, help="default: from the suffix")
    apply.add_argument("--quiet", action="store_true", help="no progress bars")


def _fit(args: argparse.Namespace) -> int:
    model = fit_kmeans(
        args.features, k=args.k, max_frames=args.max_frames or None, seed=args.seed,
        backend=args.backend, niter=args.niter, progress=not args.quiet,
    )
    path = model.save(args.output)
    i = model.info
    print(
        f"k={model.k} dim={model.dim} on {i['fitted_frames']} of {i['total_frames']} frames "
        f"({i['backend']}, seed {i['seed']}): inertia/frame {i['inertia_per_frame']:.4g} -> {path}",
        file=sys.stderr,
    )
    return 0


def _apply(args: argparse.Namespace) -> int:
    centroids = find_centroids(args.centroids)
    model = KMeansModel.load(centroids)
    units = apply_kmeans(args.features, model, progress=not args.quiet)
    path = write_units(
        args.output, units, dedup=args.dedup, fmt=args.format,
        k=model.k, layer=model.info.get("layer"), model=model.info.get("model"),
        centroids=str(centroids), centroids_sha256=file_sha256(centroids), features=str(args.features),
    )
    print(f"{len(units)} utterances, k={model.k} -> {path}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return _fit(args) if args.action == "fit" else _apply(args)
    except (FeatureError, KMeansError, UnitsError) as e:
        raise UserError(str(e)) from e
