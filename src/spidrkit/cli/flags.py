"""The flags every subcommand shares, each with one spelling, one default and one meaning (README, "Commands"):
``--model``, ``-o/--output``, ``--layers``, ``--device``, ``--units`` and the global ``--quiet``,
``--no-progress`` and ``--debug``; old spellings (``--encoder``, ``--out``, ``--run-dir``, ``--layer``) are
hidden aliases that still work for one release and print one warning line. Also the parser class of the
CLI (help with defaults, "did you mean" for a mistyped choice) and :func:`walk_parsers`, which visits
every subcommand's parser (the vocabulary test walks them all)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from spidrkit.errors import InputError, did_you_mean

DEFAULT_DEVICE = "auto"
DEVICE_HELP = "auto (cuda when a GPU is visible, else cpu), cpu, cuda or cuda:N"
GLOBAL_FLAGS = {"--quiet": "no informational lines on stderr (errors and warnings still shown; implies --no-progress)",
                "--no-progress": "no progress bars",
                "--debug": "show the traceback of an error"}
EXAMPLE = "example:"


def deprecation_line(old: str, new: str) -> str:
    return f"spidrkit: warning: {old} is deprecated: use {new}"


# ------------------------------------------------------------------------------------------ parser
class HelpFormatter(argparse.HelpFormatter):
    """Help that shows every default, keeps pre-formatted blocks (with line breaks, e.g. examples) as written
    and wraps the other paragraphs."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = "%(default)" in text or "default" in text.lower()
        if (shown or not action.option_strings or action.default in (None, False, [], argparse.SUPPRESS)
                or text == argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = re.split(r"\n\s*\n", text.strip("\n"))
        out = [block if "\n" in block or block.startswith(EXAMPLE) else super()._fill_text(block, width, indent)
               for block in blocks]
        return "\n\n".join(out)


class Parser(argparse.ArgumentParser):
    """The parser of every ``spidrkit`` command and action: :class:`HelpFormatter`, "did you mean" on a
    mistyped choice, and the late checks of :func:`add_output` (an option required under one of several
    spellings)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.late_checks: list[Callable[[Parser, argparse.Namespace], None]] = []

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        for check in self.late_checks:
            check(self, namespace)
        return namespace, extras

    def error(self, message: str):
        found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if found:
            choices = re.findall(r"'([^']*)'", found.group(2))
            message += did_you_mean(found.group(1), choices)
        super().error(message)


def walk_parsers(parser: argparse.ArgumentParser, prog: str = "") -> Iterator[tuple[str, argparse.ArgumentParser,
                                                                                     bool]]:
    """``(name, parser, is_leaf)`` of ``parser`` and every parser below it (subcommands' actions)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    yield prog or parser.prog, parser, not subs
    seen: set[int] = set()
    for action in subs:
        for name, child in action.choices.items():
            if id(child) not in seen:
                seen.add(id(child))
                yield from walk_parsers(child, f"{prog or parser.prog} {name}")


def add_global_flags(parser: argparse.ArgumentParser) -> None:
    """``--quiet``, ``--no-progress`` and ``--debug`` in a group of their own (``spidrkit.cli.main`` takes
    them from anywhere on the line, before or after the subcommand)."""
    group = parser.add_argument_group("global options (anywhere on the line)")
    for flag, text in GLOBAL_FLAGS.items():
        group.add_argument(flag, action="store_true", help=text)


def take_global_flags(argv: list[str]) -> tuple[list[str], dict[str, bool]]:
    """``argv`` without the global flags (those before a ``--``), and which were given."""
    end = argv.index("--") if "--" in argv else len(argv)
    given = {flag: flag in argv[:end] for flag in GLOBAL_FLAGS}
    return [a for i, a in enumerate(argv) if i >= end or a not in GLOBAL_FLAGS], given


def show_progress(args: argparse.Namespace) -> bool:
    """Bars unless ``--no-progress`` or ``--quiet``."""
    return not (getattr(args, "quiet", False) or getattr(args, "no_progress", False))


def note(args: argparse.Namespace, text: str) -> None:
    """An informational line on stderr, unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(text, file=sys.stderr)


# --------------------------------------------------------------------------------------- deprecated
class Deprecated(argparse.Action):
    """A hidden old spelling: does what the new one does (``mode``: store, append, extend or store_true) and
    prints one warning line (once per command line)."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", mode: str = "store",
                 advice: str | None = None, **kwargs: Any) -> None:
        kwargs["help"] = argparse.SUPPRESS
        if mode == "store_true":
            kwargs["nargs"] = 0
        super().__init__(option_strings, dest, **kwargs)
        self.new, self.mode, self.advice = new, mode, advice

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        warned = parser.__dict__.setdefault("warned", set())
        if option_string not in warned:
            warned.add(option_string)
            print(self.advice or deprecation_line(option_string, self.new), file=sys.stderr)
        if self.mode == "store_true":
            setattr(namespace, self.dest, True)
        elif self.mode in ("append", "extend"):
            items = list(getattr(namespace, self.dest, None) or [])
            items.extend(values if self.mode == "extend" else [values])
            setattr(namespace, self.dest, items)
        else:
            setattr(namespace, self.dest, values)


# ---------------------------------------------------------------------------------------- the flags
MODEL_HELP = ("a checkpoint (released, fairseq DinoSR, spidrkit .pt/.safetensors or model folder), a published "
              "model (spidr_base, dinosr_base_reproduced, dinosr_base_original: downloaded once, verified), a "
              "Hugging Face Hub repo id (OWNER/NAME[@REVISION]: a pushed spidrkit model or a transformers "
              "encoder), or random:PRESET_OR_TOML (RANDOM weights, for testing only)")


def add_model(parser: Parser, required: bool = False, help: str = MODEL_HELP, repeat: bool = False) -> None:
    """``--model MODEL`` (``repeat``: one per model, in order); ``--encoder`` is its old spelling."""
    parser.add_argument("--model", metavar="MODEL", default=None, action="append" if repeat else "store",
                        help=f"{help} (required)" if required else help)
    parser.add_argument("--encoder", dest="model", action=Deprecated, new="--model",
                        mode="append" if repeat else "store")
    if required:
        parser.late_checks.append(_required("model", "--model"))


def _required(dest: str, flag: str) -> Callable[[Parser, argparse.Namespace], None]:
    """A check that ``dest`` was given under any of its spellings (argparse's ``required`` knows only one)."""
    def check(p: Parser, args: argparse.Namespace) -> None:
        if getattr(args, dest, None) is None:
            p.error(f"the following arguments are required: {flag}")

    return check


def add_output(parser: Parser, metavar: str, help: str, *, required: bool = False, default: str | None = None,
               old: Sequence[str] = (), positional: bool = False, type: Callable[[str], Any] | None = None) -> None:
    """``-o/--output PATH``; ``old`` spellings are hidden aliases; ``positional``: a trailing positional
    ``OUT`` (the command's former form) still works, hidden. Required-ness is checked after parsing, so any
    spelling satisfies it."""
    parser.add_argument("-o", "--output", default=default, metavar=metavar, type=type,
                        help=f"{help} (required)" if required else help)
    for flag in old:
        parser.add_argument(flag, dest="output", action=Deprecated, new="-o/--output", type=type)
    if positional:
        parser.add_argument("output_positional", nargs="?", default=None, metavar=metavar, type=type,
                            help=argparse.SUPPRESS)

    def check(p: Parser, args: argparse.Namespace) -> None:
        late = getattr(args, "output_positional", None) if positional else None
        if late is not None:
            if args.output is not None and args.output != late:
                p.error(f"the output is given twice ({late} and -o {args.output}): give -o OUT alone")
            args.output = late
        if positional:
            del args.output_positional

    parser.late_checks.append(check)
    if required:
        parser.late_checks.append(_required("output", "-o/--output"))


def add_layers(parser: argparse.ArgumentParser, help: str, single: bool = False) -> None:
    """``--layers 1,2,3`` (1-based; one number works); ``--layer N`` is its old spelling (repeatable)."""
    from spidrkit.cli.arg_types import layer_list

    parser.add_argument("--layers", type=layer_list, default=None, metavar="N" if single else "1,2,...",
                        help=help)
    parser.add_argument("--layer", dest="layers", type=layer_list, action=Deprecated, new="--layers",
                        mode="extend")


def one_layer(layers: list[int] | None) -> int | None:
    """The layer of a command that takes one (``--layers N``), or ``None``."""
    if layers is not None and len(layers) != 1:
        raise InputError(f"--layers {','.join(map(str, layers))}: this command takes one layer, e.g. --layers 6")
    return None if layers is None else layers[0]


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device``, default ``auto`` (:func:`spidrkit.runtime.default_device_name`)."""
    parser.add_argument("--device", default=DEFAULT_DEVICE, metavar="DEVICE", help=f"{DEVICE_HELP} (default: auto)")


def resolve_device(args: argparse.Namespace) -> None:
    """``--device auto`` -> ``cuda`` or ``cpu``, by the one rule of :func:`spidrkit.runtime.default_device_name`."""
    if getattr(args, "device", None) == DEFAULT_DEVICE:
        from spidrkit.runtime import default_device_name

        args.device = default_device_name()


def units_type(accepted: Sequence[str]) -> Callable[[str], str]:
    """An argparse type checking a ``--units`` text by the one grammar
    (:func:`spidrkit.extraction.unit_spec.parse_unit_syntax`); the text itself is kept."""
    from spidrkit.extraction.unit_spec import parse_unit_syntax

    def units(text: str) -> str:
        try:
            parse_unit_syntax(text, tuple(accepted))
        except InputError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text

    return units


def add_units(parser: argparse.ArgumentParser, accepted: Sequence[str], help: str, required: bool = False) -> None:
    """``--units`` of the grammar ``codebook``, ``codebook:L``, ``kmeans:FILE``, ``phones`` (those ``accepted``)."""
    from spidrkit.extraction.unit_spec import FORMS

    parser.add_argument("--units", type=units_type(accepted), default=None, required=required,
                        metavar="|".join(FORMS[k].split(" (")[0].replace(" or ", "|") for k in accepted), help=help)
