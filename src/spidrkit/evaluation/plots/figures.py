"""What every figure of the evaluation is made of: the data it draws (returned to the caller, so tests and
reports can check the numbers, not the pixels) and the one way a figure is written (PNG, matplotlib Agg
backend, no display, atomic, fixed pixel size ``figsize * dpi``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spidrkit.io import atomic_write
from spidrkit.lazy import require

DPI = 100


@dataclass(frozen=True)
class Series:
    """One line (or scatter) of a panel: ``y[i]`` drawn at ``x[i]``."""

    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]


@dataclass
class Panel:
    """One axes of a figure: its labels, its series and its horizontal reference lines (``label -> y``)."""

    title: str | None
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    hlines: dict[str, float] = field(default_factory=dict)

    def get(self, label: str) -> Series:
        """The series called ``label``."""
        for s in self.series:
            if s.label == label:
                return s
        raise KeyError(f"no series {label!r} in panel {self.title or self.ylabel!r}")


@dataclass
class Figure:
    """A figure written to ``path`` and what it shows. ``matrix`` (rows x columns, labelled by ``rows`` and
    ``columns``) is the image of a heat map. A :class:`Figure` is path-like (``os.fspath`` gives ``path``)."""

    path: Path
    title: str | None
    panels: list[Panel]
    matrix: Any = None
    rows: list[str] = field(default_factory=list)
    columns: list[Any] = field(default_factory=list)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)


def pyplot():
    """matplotlib's pyplot on the Agg backend (imported on first use)."""
    matplotlib = require("matplotlib", "a figure")

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG atomically and close it."""
    try:
        with atomic_write(out_path, "wb", suffix=".png") as f:
            fig.savefig(f, dpi=DPI, format="png")
    finally:
        pyplot().close(fig)
    return Path(out_path)
