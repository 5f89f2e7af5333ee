"""The ``spidrkit`` command: one entry point, one module per subcommand, imported on demand.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from spidrkit.errors import (
    EXIT_DIVERGED,
    EXIT_INTERRUPTED,
    EXIT_IO,
    EXIT_OK,
    EXIT_SOFTWARE,
    EXIT_TEMPFAIL,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Diverged,
    InputError,
    TemporaryError,
    Terminated,
    did_you_mean,
)

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("spidrkit.cli.demo", "from nothing to a report: corpus, pretraining, extraction, evaluation"),
    "pretrain": ("spidrkit.cli.pretrain", "pretrain SpidR or DinoSR from a config"),
    "manifest": ("spidrkit.cli.manifest", "write a manifest (CSV/TSV/JSONL) from a folder of audio"),
    "data": ("spidrkit.cli.data", "build the aligned synthetic corpus; read LibriSpeech/Libri-Light/ZeroSpeech"),
    "extract": ("spidrkit.cli.extract", "extract features or units from audio with a model"),
    "convert": ("spidrkit.cli.convert", "convert a checkpoint (released, fairseq, spidrkit) to a spidrkit file"),
    "push": ("spidrkit.cli.push", "publish a model on the Hugging Face Hub: its model folder and model card"),
    "kmeans": ("spidrkit.cli.kmeans", "fit or apply k-means on extracted features"),
    "units": ("spidrkit.cli.units", "export units for other toolkits (fairseq .km + .tsv + dict.km.txt)"),
    "evaluate": ("spidrkit.cli.evaluate", "ABX, PNMI, word MAP, layer sweeps and plots"),
    "lm": ("spidrkit.cli.lm", "train a unit language model (OPT) on extracted units"),
    "config": ("spidrkit.cli.config", "print a resolved config (preset or file, variant, overrides) as TOML"),
}


# group -> its commands, in the order `spidrkit --help` lists them (a command in none is listed under "other")
GROUPS: dict[str, tuple[str, ...]] = {
    "start here": ("demo",),
    "data": ("data", "manifest"),
    "training": ("pretrain", "config"),
    "extraction": ("extract", "kmeans", "units"),
    "evaluation": ("evaluate",),
    "language models": ("lm",),
    "models": ("convert", "push"),
}


def _grouped_commands() -> str:
    placed = [c for names in GROUPS.values() for c in names]
    groups = {**GROUPS, "other": tuple(c for c in COMMANDS if c not in placed)}
    lines = []
    for group, names in groups.items():
        names = tuple(n for n in names if n in COMMANDS)
        if names:
            lines += [f"{group}:", *(f"  {n:<10} {COMMANDS[n][1]}" for n in names), ""]
    return "\n".join(lines)


def _top_parser():
    from spidrkit.cli.flags import Parser, add_global_flags

    p = Parser(
        prog="spidrkit",
        description="SpidR / DinoSR speech models: pretrain, load, extract, evaluate.",
        epilog=_grouped_commands() + "\nexample: spidrkit demo -o runs/demo    (then: spidrkit COMMAND --help)",
    )
    p.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of the commands below")
    p.add_argument("--version", action="version", version=_version())
    add_global_flags(p)
    return p


def build_parser(name: str):
    """The parser of ``spidrkit NAME`` (with its actions' parsers below it), every shared flag in place."""
    from spidrkit.cli.flags import Parser, add_global_flags, walk_parsers

    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = Parser(prog=f"spidrkit {name}", description=help_text)
    module.add_arguments(parser)
    for _, p, leaf in walk_parsers(parser):
        if leaf:
            add_global_flags(p)
    return parser


def _version() -> str:
    from spidrkit import __version__

    return f"spidrkit {__version__}"


def _error_line(name: str, kind: str, message: object) -> None:
    text = " ".join(str(message).split())  # one line, whatever the message
    print(f"spidrkit {name}: {kind}: {text}", file=sys.stderr)


def _os_error_line(e: OSError) -> str:
    where = f"{e.filename}: " if e.filename else ""
    return (f"{where}{e.strerror or e} (nothing partial was left under a final name; free space or fix access, "
            "then rerun)")


def _warning_text(message: Warning | str, category: type[Warning]) -> str:
    """A warning as the CLI shows it: its message on one line, its category only when it says something
    (not for ``UserWarning`` nor spidrkit's own categories, whose messages are written for users)."""
    text = " ".join(str(message).split())
    if category is UserWarning or category.__module__.split(".")[0] == "spidrkit":
        return text
    return f"{category.__name__}: {text}"


@contextmanager
def one_line_warnings(name: str, debug: bool = False) -> Iterator[None]:
    """While a command runs, each Python warning is ONE stderr line ``spidrkit NAME: warning: MESSAGE`` (no
    source line), the same message once; ``warnings.showwarning`` is restored afterwards. ``debug`` keeps
    Python's format. A recorder already in place (``warnings.catch_warnings(record=True)``, as
    ``pytest.warns`` installs) still receives every warning."""
    if debug:
        yield
        return
    recorder = getattr(warnings, "_showwarnmsg_impl", None)  # log.append under catch_warnings(record=True)
    if getattr(recorder, "__name__", "") == "_showwarnmsg_impl":  # Python's own writer: nobody records
        recorder = None
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if recorder is not None:
            recorder(warnings.WarningMessage(message, category, filename, lineno, file, line))
        text = _warning_text(message, category)
        if text not in shown:
            shown.add(text)
            _error_line(name, "warning", text)

    previous = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def _parse_command(argv: list[str], given: dict[str, bool]) -> tuple[str, Any, argparse.Namespace]:
    """(the name errors are reported under, the command's module, its parsed arguments with the global flags)."""
    from spidrkit.cli.flags import resolve_device

    name = argv[0]
    args = build_parser(name).parse_args(argv[1:])
    args.quiet, args.no_progress, args.debug = given["--quiet"], given["--no-progress"], given["--debug"]
    if args.quiet:
        import logging

        logging.getLogger().setLevel(logging.WARNING)
    resolve_device(args)
    module = importlib.import_module(COMMANDS[name][0])
    if getattr(module, "MESSAGES_NAME_THE_ACTION", False):  # `spidrkit evaluate abx: error: ...`
        name = f"{name} {args.action}"
    return name, module, args


def main(argv: list[str] | None = None) -> int:
    """Run one ``spidrkit`` command; returns its exit status (README, "Exit codes"). ``--debug`` anywhere
    on the line shows the traceback of an error instead of the one-line message."""
    from spidrkit.cli.flags import take_global_flags

    argv, given = take_global_flags(list(sys.argv[1:] if argv is None else argv))
    debug = given["--debug"]
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return EXIT_OK
    if argv[0] == "--version":
        print(_version())
        return EXIT_OK
    if argv[0] not in COMMANDS:
        top.error(f"unknown command {argv[0]!r}{did_you_mean(argv[0], list(COMMANDS))} (choose from "
                  f"{', '.join(COMMANDS)})")
    name, module, args = _parse_command(argv, given)
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with one_line_warnings(name, debug):
            return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"spidrkit {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print(f"spidrkit {name}: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except Exception as e:
        if debug:
            raise
        if isinstance(e, UserError | InputError):
            _error_line(name, "error", e)
            return EXIT_USAGE
        if isinstance(e, Diverged):
            _error_line(name, "diverged", e)
            return EXIT_DIVERGED
        if isinstance(e, TemporaryError):
            _error_line(name, "try again later", e)
            return EXIT_TEMPFAIL
        if isinstance(e, OSError):
            _error_line(name, "I/O error", _os_error_line(e))
            return EXIT_IO
        _error_line(name, "internal error", f"{type(e).__name__}: {e} (rerun with --debug for the traceback)")
        return EXIT_SOFTWARE
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


class UserError(InputError):
    """An error in what the user asked for: printed without a traceback, exit status 2."""


if __name__ == "__main__":
    sys.exit(main())
