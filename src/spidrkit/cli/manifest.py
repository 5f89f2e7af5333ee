"""``spidrkit manifest DIR -o FILE``: the same command as ``spidrkit data folder`` (its original name, kept).

Lists the audio of a folder, with lengths, as a manifest: CSV, fairseq TSV or JSONL by FILE's suffix.
Lengths come from the file headers (counted at 16 kHz: files at another rate get the length they will have
once resampled), read on a thread pool so that 100k files take seconds. Unreadable and empty files are
reported, listed in ``FILE.skipped.tsv`` and left out. Python API:
:func:`spidrkit.data.corpora.readers.folder_corpus`.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spidrkit.cli.data import add_folder_arguments

    add_folder_arguments(parser)
    parser.description = (f"{parser.description}. " if parser.description else "") + __doc__.split("\n\n")[1]
    parser.epilog = "example: spidrkit manifest wavs/ -o wavs.csv"


def run(args: argparse.Namespace) -> int:
    from spidrkit.cli.data import run as data_run

    args.action = "folder"
    return data_run(args)
