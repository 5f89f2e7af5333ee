"""``spidrkit config``: print a resolved config as TOML, or (``--diff OTHER``) where it differs from another."""

from __future__ import annotations

import argparse

from spidrkit.config import PRESETS, load_config


def add_config_arguments(parser: argparse.ArgumentParser, positional: bool = True) -> None:
    """The config arguments shared by every command that builds a model from a config."""
    if positional:
        parser.add_argument("config", help=f"preset name ({', '.join(PRESETS)}) or a TOML file")
    parser.add_argument("--variant", choices=["spidr", "dinosr"], default=None, help="model variant")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable), e.g. --set optim.lr=1e-4",
    )


def config_from_args(args: argparse.Namespace):
    return load_config(args.config, args.overrides, variant=args.variant)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--diff", metavar="OTHER", default=None,
        help="print only the keys where the config differs from OTHER (a preset name or a TOML file, built "
             "with the same --variant but without the --set overrides), one line per key: "
             "KEY  OTHER's value  this config's value",
    )
    parser.epilog = "example: spidrkit config tiny --set optim.lr=1e-4 --diff base"


def diff_lines(this: dict, other: dict, this_name: str, other_name: str) -> list[str]:
    """One aligned line per key (``section.key``) whose value differs, under a header naming both configs."""
    rows = []
    for section, values in this.items():
        if not isinstance(values, dict):
            if values != other.get(section):
                rows.append((section, repr(other.get(section)), repr(values)))
            continue
        for key, value in values.items():
            old = (other.get(section) or {}).get(key)
            if old != value:
                rows.append((f"{section}.{key}", _show(old), _show(value)))
    if not rows:
        return [f"# {this_name} and {other_name} are the same config"]
    header = ("key", other_name, this_name)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(2)]
    lines = [f"# {len(rows)} keys differ"]
    for r in [header, *rows]:
        lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}".rstrip())
    return lines


def _show(v) -> str:
    return repr(tuple(v)) if isinstance(v, list) else repr(v)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.diff is None:
        print(cfg.to_toml(), end="")
        return 0
    other = load_config(args.diff, variant=args.variant)
    name = args.config if not args.variant else f"{args.config} ({args.variant})"
    other_name = args.diff if not args.variant else f"{args.diff} ({args.variant})"
    print("\n".join(diff_lines(cfg.to_dict(), other.to_dict(), name, other_name)))
    return 0
