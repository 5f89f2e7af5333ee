"""What a sweep gives: :class:`SweepResult`, rendered by :mod:`spidrkit.evaluation.sweep.report`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spidrkit.evaluation.plots.figures import Figure


@dataclass
class SweepResult:
    """The tables, choices and provenance of one sweep.

    ``layers`` / ``random_init_layers``: ``{layer: {metric: value}}``; ``baselines`` and ``units``:
    ``{row name: {metric: value}}``; ``phone_given_code``: the heat map data of the best codebook layer;
    ``figures``: the figures written, by name; ``eval_dir``: the merged annotation files; ``notes``: sentences
    on what the report leaves out or rests on too little (a run too short for a perplexity curve, ABX on few
    cells).
    """

    info: dict[str, Any]
    layers: dict[int, dict[str, Any]]
    baselines: dict[str, dict[str, Any]]
    units: dict[str, dict[str, Any]]
    best_layer: int | None
    best_layer_mean_abx: float | None
    best_codebook_layer: int | None
    random_init_layers: dict[int, dict[str, Any]] = field(default_factory=dict)
    phone_given_code: dict[str, Any] | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    eval_dir: Path | None = None
    notes: list[str] = field(default_factory=list)  # what the reader must know: a figure left out, few cells
    # row (best layer, random init, baselines) -> {"groups": {group: across ABX %}, "pairs": {"a|b": %}}
    voice_pairs: dict[str, dict[str, Any]] = field(default_factory=dict)
    title: str = "spidrkit evaluation"
