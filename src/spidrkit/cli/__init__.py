"""The ``spidrkit`` command: one entry point, one module per subcommand, imported on demand.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("spidrkit.cli.demo", "from nothing to a report: corpus, pretraining, extraction, evaluation"),
    "pretrain": ("spidrkit.cli.pretrain", "pretrain SpidR or DinoSR from a config"),
    "manifest": ("spidrkit.cli.manifest", "write a manifest (CSV/TSV/JSONL) from a folder of audio"),
    "data": ("spidrkit.cli.data", "build the aligned synthetic corpus; read LibriSpeech/Libri-Light/ZeroSpeech"),
    "extract": ("spidrkit.cli.extract", "extract features or units from audio with a model"),
    "convert": ("spidrkit.cli.convert", "convert a checkpoint (released, fairseq, spidrkit) to a spidrkit file"),
    "kmeans": ("spidrkit.cli.kmeans", "fit or apply k-means on extracted features"),
    "evaluate": ("spidrkit.cli.evaluate", "ABX, PNMI, word MAP, layer sweeps and plots"),
    "config": ("spidrkit.cli.config", "print a resolved config (preset or file, variant, overrides) as TOML"),
}


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spidrkit",
        description="SpidR / DinoSR speech models: pretrain, load, extract, evaluate.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {k:<10} {h}" for k, (_, h) in COMMANDS.items()),
    )
    p.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="see below")
    p.add_argument("--version", action="version", version=_version())
    return p


def _version() -> str:
    from spidrkit import __version__

    return f"spidrkit {__version__}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    if argv[0] == "--version":
        print(_version())
        return 0
    if argv[0] not in COMMANDS:
        top.error(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
    name = argv[0]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"spidrkit {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserError as e:
        print(f"spidrkit {name}: error: {e}", file=sys.stderr)
        return 2


class UserError(Exception):
    """An error in what the user asked for: printed without a traceback, exit status 2."""


if __name__ == "__main__":
    sys.exit(main())
