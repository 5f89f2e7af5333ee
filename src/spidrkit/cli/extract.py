"""``spidrkit extract``: features or units of one or more layers for every file of a manifest or folder."""

from __future__ import annotations

import argparse

from spidrkit.cli.flags import add_device, add_layers, add_model, add_output, add_units, show_progress
from spidrkit.cli.model_args import add_model_options, model_source
from spidrkit.data.corpora.manifest import AUDIO_EXTENSIONS, parse_extensions
from spidrkit.extraction.extract import (
    DEFAULT_BATCH_SECONDS,
    DEFAULT_CONTEXT_SECONDS,
    DEFAULT_WINDOW_SECONDS,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", metavar="MANIFEST_OR_DIR", help="a manifest (.csv/.tsv/.jsonl) or a folder of audio")
    parser.add_argument("--ext", default=",".join(AUDIO_EXTENSIONS),
                        help="audio extensions of a folder input, comma-separated (default: %(default)s; mp3 and "
                        "ogg need a libsndfile that reads them)")
    add_model(parser, required=True)
    add_model_options(parser)
    add_layers(parser, "1-based layers, comma-separated; several go to OUT/layer_NN/ (default: 6, or L of "
               "--units codebook:L)")
    add_units(parser, ("codebook", "kmeans"), "write units (OUT/units.txt) instead of features: the codebook "
              "predictions of the layer (codebook:L names it), or the nearest k-means centroid")
    parser.add_argument("--units-format", choices=["txt", "jsonl"], default=None,
                        help="units file: units.txt or units.jsonl (default: txt, or jsonl when a file id holds "
                        "whitespace)")
    add_output(parser, "DIR", "output folder", required=True)
    parser.add_argument("--format", dest="fmt", choices=["pt", "npy"], default="pt", help="feature file format")
    parser.add_argument("--float16", action="store_true", help="store features as float16")
    parser.add_argument("--dedup", action="store_true", help="collapse repeated units (durations kept)")
    parser.add_argument("--batch-seconds", type=float, default=DEFAULT_BATCH_SECONDS,
                        help="padded audio per batch, in seconds (default %(default)s)")
    parser.add_argument("--window-seconds", type=float, default=DEFAULT_WINDOW_SECONDS,
                        help="longer files are processed in windows of this length (default %(default)s)")
    parser.add_argument("--context-seconds", type=float, default=DEFAULT_CONTEXT_SECONDS,
                        help="overlap on each side of a window (default %(default)s)")
    add_device(parser)
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="auto: bf16 autocast on CUDA, fp32 on CPU")
    parser.add_argument("--num-workers", type=int, default=None, help="audio-decoding threads")
    parser.add_argument("--overwrite", action="store_true", help="re-extract files whose outputs exist")
    parser.add_argument("--skip-bad", action="store_true",
                        help="list files that cannot be decoded in OUT/skipped.tsv and extract the others "
                        "(default: stop at the first one)")
    parser.add_argument("--force", action="store_true",
                        help="break the lock of another extraction into the same folder (if it is gone)")
    parser.epilog = "example: spidrkit extract corpus/dev.csv --model runs/tiny --layers 4,6 -o features/"


def units_and_layers(units: str | None, layers: list[int] | None) -> tuple[str | None, list[int]]:
    """``--units codebook:L`` is ``--units codebook`` of layer ``L`` (as in ``evaluate slm``); the layers
    default to 6."""
    from spidrkit.cli import UserError
    from spidrkit.extraction.unit_spec import parse_unit_syntax

    syntax = parse_unit_syntax(units, error=UserError) if units else None
    if syntax is None or syntax.layer is None:
        return units, layers or [6]
    if layers not in (None, [syntax.layer]):
        raise UserError(f"--units {units} names layer {syntax.layer}, --layers {','.join(map(str, layers))}: "
                        "give one")
    return "codebook", [syntax.layer]


def run(args: argparse.Namespace) -> int:
    from spidrkit.extraction.extract import extract
    from spidrkit.io import check_output_dir

    check_output_dir(args.output, "-o")
    extensions = parse_extensions(args.ext)
    units, layers = units_and_layers(args.units, args.layers)
    summary = extract(
        model_source(args.model, args), args.inputs, args.output, layers=layers, units=units,
        fmt=args.fmt,
        dtype="float16" if args.float16 else "float32", batch_seconds=args.batch_seconds, device=args.device,
        precision=args.precision, window_seconds=args.window_seconds, context_seconds=args.context_seconds,
        dedup=args.dedup, num_workers=args.num_workers, overwrite=args.overwrite,
        progress=show_progress(args), units_format=args.units_format, skip_bad=args.skip_bad, force=args.force,
        extensions=extensions or ("wav", "flac"),
    )
    shard = f" (rank {summary.rank} of {summary.world_size})" if summary.world_size > 1 else ""
    written = [f"layer {la}: {p}" for la, p in summary.outputs.items()]
    pending = [f"layer {la}: {p}" for la, p in summary.pending.items()]
    bad = f", {len(summary.bad)} bad files skipped (see {args.output}/skipped.tsv)" if summary.bad else ""
    print(
        f"extracted {summary.files} files{shard}, {summary.skipped} already done{bad}; "
        f"{summary.audio_seconds:.1f} s of audio in {summary.wall_seconds:.1f} s "
        f"({summary.speed:.1f}x real time)"
        + (f" -> {', '.join(written)}" if written else "")
        + (f"; written when every rank is done: {', '.join(pending)}" if pending else "")
    )
    return 0
