"""``spidrkit config``: print a resolved config as TOML."""

from __future__ import annotations

import argparse

from spidrkit.config import load_config


def add_config_arguments(parser: argparse.ArgumentParser, positional: bool = True) -> None:
    """The config arguments shared by every command that builds a model from a config."""
    if positional:
        parser.add_argument("config", help="preset name (base, tiny) or a TOML file")
    parser.add_argument("--variant", choices=["spidr", "dinosr"], default=None, help="model variant")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable), e.g. --set optim.lr=1e-4",
    )


def config_from_args(args: argparse.Namespace):
    return load_config(args.config, args.overrides, variant=args.variant)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    print(config_from_args(args).to_toml(), end="")
    return 0
