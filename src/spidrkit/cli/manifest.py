"""``spidrkit manifest DIR -o FILE``: list the audio of a folder, with lengths, as a training manifest.

The format follows FILE's suffix (.csv, .tsv as fairseq, .jsonl). Lengths come from the file headers
(at 16 kHz: files at another rate get the length they will have once resampled), read on a thread pool
so that 100k files take seconds. Unreadable and empty files are reported, listed in
``FILE.skipped.tsv`` and left out. Python API: :func:`spidrkit.data.corpora.manifest.scan_audio_dir`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from spidrkit.cli import UserError
from spidrkit.config import SAMPLE_RATE

MAX_REPORTED = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, metavar="DIR", help="folder searched recursively for audio")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="FILE",
        help="manifest to write: .csv, .tsv (fairseq) or .jsonl",
    )
    parser.add_argument(
        "--ext",
        default="wav,flac",
        help="comma-separated audio extensions, case-insensitive (default: wav,flac)",
    )
    parser.add_argument(
        "--speaker-from-dir",
        type=int,
        default=None,
        metavar="N",
        help="take the speaker from the N-th folder below DIR (1 = top level, as LibriSpeech)",
    )
    parser.add_argument(
        "--sample-rate",
        type=int,
        default=SAMPLE_RATE,
        help="rate the lengths are counted at (default: %(default)s, the model's)",
    )
    parser.add_argument(
        "--threads", type=int, default=min(32, (os.cpu_count() or 1) * 4), help="threads reading headers"
    )
    parser.add_argument("--absolute", action="store_true", help="write absolute paths (CSV, JSONL)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from spidrkit.data.corpora.manifest import manifest_format, no_audio_message, scan_audio_dir, write_manifest
    from spidrkit.io import write_sidecar, write_text_atomic

    extensions = tuple(x.strip().lower().lstrip(".") for x in args.ext.split(",") if x.strip())
    if not extensions:
        raise UserError("--ext lists no extension")
    manifest_format(args.output)
    entries, failures = scan_audio_dir(
        args.dir, extensions, args.sample_rate, args.speaker_from_dir, args.threads, not args.quiet
    )
    for path, reason in failures[:MAX_REPORTED]:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if len(failures) > MAX_REPORTED:
        print(f"... and {len(failures) - MAX_REPORTED} more skipped files", file=sys.stderr)
    skipped_path = args.output.with_name(args.output.name + ".skipped.tsv")
    if failures:
        write_text_atomic(skipped_path, "path\treason\n" + "".join(f"{p}\t{r}\n" for p, r in failures))
    if not entries and not failures:
        raise UserError(no_audio_message(args.dir, extensions, "--ext"))
    if not entries:
        raise UserError(f"no usable audio ({', '.join(extensions)}) under {args.dir}: every file was skipped, "
                        f"see {skipped_path}")
    write_manifest(entries, args.output, relative=not args.absolute)
    total = sum(e.num_samples for e in entries)
    write_sidecar(
        args.output,
        kind="manifest",
        root=str(args.dir.resolve()),
        extensions=list(extensions),
        sample_rate=args.sample_rate,
        num_files=len(entries),
        num_skipped=len(failures),
        total_samples=total,
        speaker_from_dir=args.speaker_from_dir,
    )
    hours = total / args.sample_rate / 3600
    print(
        f"wrote {args.output}: {len(entries)} files, {hours:.2f} h"
        + (f"; {len(failures)} skipped, listed in {skipped_path}" if failures else "")
    )
    return 0
