"""Argument types shared by the subcommands: comma-separated layers and names, parsed one way."""

from __future__ import annotations

import argparse


def layer_list(text: str) -> list[int]:
    """``"1,2, 3"`` -> ``[1, 2, 3]``: at least one layer, each a 1-based number."""
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one layer")
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected layer numbers >= 1 (1-based), got {text!r}")
    return values


def name_list(text: str) -> list[str]:
    """``"dev, heldout"`` -> ``["dev", "heldout"]``."""
    return [x for x in text.replace(" ", "").split(",") if x]
