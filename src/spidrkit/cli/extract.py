"""``spidrkit extract``: features or units of one or more layers for every file of a manifest or folder."""

from __future__ import annotations

import argparse

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
    parser.add_argument(
        "--model", required=True,
        help="checkpoint (released, fairseq DinoSR, spidrkit .pt/.safetensors or model directory), a published "
        "model (spidr_base, dinosr_base_reproduced, dinosr_base_original: downloaded once, verified), a Hugging "
        "Face Hub repo id (OWNER/NAME[@REVISION]: a pushed spidrkit model or a transformers encoder), or "
        "random:PRESET_OR_TOML (RANDOM weights, for testing only)",
    )
    add_model_options(parser)
    parser.add_argument("--layer", dest="layers", type=int, action="append", metavar="N",
                        help="1-based layer (repeatable; several go to OUT/layer_NN/); default 6")
    parser.add_argument("--units", default=None, metavar="codebook|kmeans:FILE",
                        help="write units (OUT/units.txt) instead of features: codebook predictions or k-means")
    parser.add_argument("--units-format", choices=["txt", "jsonl"], default=None,
                        help="units file: units.txt or units.jsonl (default: txt, or jsonl when a file id holds "
                        "whitespace)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--format", dest="fmt", choices=["pt", "npy"], default="pt", help="feature file format")
    parser.add_argument("--float16", action="store_true", help="store features as float16")
    parser.add_argument("--dedup", action="store_true", help="collapse repeated units (durations kept)")
    parser.add_argument("--batch-seconds", type=float, default=DEFAULT_BATCH_SECONDS,
                        help="padded audio per batch, in seconds (default %(default)s)")
    parser.add_argument("--window-seconds", type=float, default=DEFAULT_WINDOW_SECONDS,
                        help="longer files are processed in windows of this length (default %(default)s)")
    parser.add_argument("--context-seconds", type=float, default=DEFAULT_CONTEXT_SECONDS,
                        help="overlap on each side of a window (default %(default)s)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="auto: bf16 autocast on CUDA, fp32 on CPU")
    parser.add_argument("--num-workers", type=int, default=None, help="audio-decoding threads")
    parser.add_argument("--overwrite", action="store_true", help="re-extract files whose outputs exist")
    parser.add_argument("--skip-bad", action="store_true",
                        help="list files that cannot be decoded in OUT/skipped.tsv and extract the others "
                        "(default: stop at the first one)")
    parser.add_argument("--force", action="store_true",
                        help="break the lock of another extraction into the same folder (if it is gone)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from spidrkit.extraction.extract import extract
    from spidrkit.io import check_output_dir

    check_output_dir(args.output, "-o")
    extensions = parse_extensions(args.ext)
    summary = extract(
        model_source(args.model, args), args.inputs, args.output, layers=args.layers or [6], units=args.units,
        fmt=args.fmt,
        dtype="float16" if args.float16 else "float32", batch_seconds=args.batch_seconds, device=args.device,
        precision=args.precision, window_seconds=args.window_seconds, context_seconds=args.context_seconds,
        dedup=args.dedup, num_workers=args.num_workers, overwrite=args.overwrite,
        progress=not args.quiet, units_format=args.units_format, skip_bad=args.skip_bad, force=args.force,
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
