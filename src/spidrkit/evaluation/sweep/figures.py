"""A sweep's figures (stage 4 of :mod:`~spidrkit.evaluation.sweep.run`), drawn after its numbers are on disk:
ABX and MAP by layer (Figure 7), P(phone | code) of the best codebook layer (Figure 10), t-SNE of phone
embeddings of the best layer (Figure 8), perplexities over training from metrics logs (Figure 2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spidrkit.evaluation.plots import layers as plots
from spidrkit.evaluation.plots.figures import Figure
from spidrkit.evaluation.plots.perplexity import perplexity_note, plot_runs_perplexity, run_layers
from spidrkit.evaluation.sweep.features import codebook_layers
from spidrkit.evaluation.sweep.scores import ModelSweep
from spidrkit.runtime import Stopwatch

PLOT_NAMES = {"layers": "layers.png", "phone_given_code": "phone_given_code.png", "tsne": "tsne.png",
              "perplexity": "perplexity.png"}


@dataclass(frozen=True)
class FigureInputs:
    """What the figures draw: the model's sweep (``main``), the random-weights layers, the feature baselines'
    rows (drawn as lines), the choices of the sweep and the training runs' metrics logs."""

    main: ModelSweep
    random_layers: Mapping[int, Mapping[str, Any]]
    feature_baselines: Mapping[str, Mapping[str, Any]]
    label: str
    title: str
    best_layer: int | None
    best_codebook: int | None
    runs: Sequence[Path] = ()
    run_labels: Sequence[str] | None = None


def runs_notes(runs: Sequence[Path]) -> list[str]:
    """The report's notes on training runs too short for a perplexity curve (then no figure is drawn)."""
    return [note for note in map(perplexity_note, runs) if note]


def draw_figures(out: Path, inputs: FigureInputs, model, seed: int, watch: Stopwatch) -> dict[str, Figure]:
    """Every figure of the sweep into ``out`` (:data:`PLOT_NAMES`), by name."""
    figures: dict[str, Figure] = {}
    main = inputs.main
    curves = {inputs.label: main.layers, **({"random init": inputs.random_layers} if inputs.random_layers else {})}
    figures["layers"] = plots.plot_layer_metrics(curves, out / PLOT_NAMES["layers"], title=inputs.title,
                                                 baselines=dict(inputs.feature_baselines))
    if inputs.best_codebook is not None:
        figures["phone_given_code"] = plots.plot_phone_given_code(
            main.qualities[inputs.best_codebook], out / PLOT_NAMES["phone_given_code"],
            title=f"P(phone | code), codebook of layer {inputs.best_codebook}")
    best = inputs.best_layer
    if best is not None and best in main.embeddings:
        emb, phones, speakers = main.embeddings[best]
        if len(phones) >= 5:
            with watch("tsne"):
                figures["tsne"] = plots.plot_tsne(emb, phones, speakers, out / PLOT_NAMES["tsne"], seed=seed,
                                                  title=f"t-SNE of phone embeddings, layer {best}")
    runs = list(inputs.runs)
    if runs and not runs_notes(runs):  # a run too short for a curve: no figure, and the report's notes say why
        # the maximum V is drawn when the runs are of this model's architecture (same codebook layers)
        same = bool(codebook_layers(model)) and all(run_layers(r) == list(codebook_layers(model)) for r in runs)
        figures["perplexity"] = plot_runs_perplexity(
            runs, out / PLOT_NAMES["perplexity"], labels=inputs.run_labels,
            codebook_size=model.cfg.codebook_size if same else None, title="perplexity over training")
    return figures
