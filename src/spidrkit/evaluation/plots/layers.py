"""Figures of the evaluation, in the style of the SpidR paper.

- :func:`plot_layer_metrics`: ABX within / across, word MAP (and the phone probe's accuracy) by layer,
  baselines as dashed lines (Fig. 7); :func:`plot_metric_by_layer`: one metric of several models.
- :func:`plot_phone_given_code`: P(phone | code) heat map, codes sorted by their most likely phone, phones
  grouped by class (Fig. 10).
- :func:`~spidrkit.evaluation.plots.tsne.plot_tsne`: t-SNE of phone embeddings (Fig. 8).
- :func:`~spidrkit.evaluation.plots.perplexity.plot_perplexity`: perplexities over training (Fig. 2).

Every function writes one PNG (:func:`spidrkit.evaluation.plots.figures.save_figure`) and returns a
:class:`~spidrkit.evaluation.plots.figures.Figure`: its path and the data it draws.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from spidrkit.data.corpora.phones import CLASS_COLOURS, CLASS_ORDER, base_phone, phone_class, phone_order
from spidrkit.evaluation.plots.figures import Figure, Panel, Series, pyplot, save_figure
from spidrkit.evaluation.plots.perplexity import plot_perplexity, plot_runs_perplexity, read_perplexities
from spidrkit.evaluation.plots.tsne import phone_embeddings, plot_tsne

__all__ = ["CLASS_ORDER", "Figure", "base_phone", "phone_class", "phone_embeddings", "phone_order",
           "plot_budget_curve", "plot_layer_metrics",
           "plot_metric_by_layer", "plot_perplexity", "plot_phone_given_code", "plot_runs_perplexity", "plot_tsne",
           "read_perplexities"]

ABX_KEYS = {"abx_within": "within", "abx_across": "across"}
ABX_LABEL = "ABX error rate (%) ↓"
MAP_LABEL = "MAP over words (%) ↑"
PROBE_LABEL = "phone probe accuracy (%) ↑"
# the panels with one series per model, right of the ABX panel: metric -> y label (probe only when measured)
SINGLE_PANELS = {"map": MAP_LABEL, "probe_acc": PROBE_LABEL}
# the multi-model report: one figure per metric
METRIC_LABELS = {"abx_within": "ABX within speaker (%) ↓", "abx_across": "ABX across speakers (%) ↓",
                 "map": MAP_LABEL, "probe_acc": PROBE_LABEL, "probe_per": "phone probe PER (%) ↓",
                 "speaker_acc": "speaker probe accuracy (%)"}


# --------------------------------------------------------------------------- layer sweeps (Figure 7)
def _layer_series(label: str, by_layer: Mapping[Any, Mapping[str, float]], key: str) -> Series | None:
    """The layers (ascending) where ``key`` has a value, and the values."""
    layers = [k for k in sorted(by_layer, key=int) if by_layer[k].get(key) is not None]
    if not layers:
        return None
    return Series(label, tuple(int(k) for k in layers), tuple(float(by_layer[k][key]) for k in layers))


def layer_panels(layer_results: Mapping[str, Mapping[Any, Mapping[str, float]]],
                 baselines: Mapping[str, Mapping[str, float]] | None = None) -> tuple[Panel, ...]:
    """The data of Figure 7: the ABX panel (series ``"MODEL within"`` / ``"MODEL across"``, baselines as
    ``"NAME within"`` / ``"NAME across"`` lines), the MAP panel (series ``"MODEL"``, lines ``"NAME"``) and,
    when any layer has a phone probe accuracy, the probe panel (as the MAP panel)."""
    abx = Panel(None, "layer", ABX_LABEL)
    singles = {key: Panel(None, "layer", label) for key, label in SINGLE_PANELS.items()}
    for model, by_layer in layer_results.items():
        abx.series += [s for key, name in ABX_KEYS.items() if (s := _layer_series(f"{model} {name}", by_layer, key))]
        for key, panel in singles.items():
            if s := _layer_series(model, by_layer, key):
                panel.series.append(s)
    for name, metrics in (baselines or {}).items():
        abx.hlines.update({f"{name} {ABX_KEYS[k]}": float(metrics[k]) for k in ABX_KEYS if metrics.get(k) is not None})
        for key, panel in singles.items():
            if metrics.get(key) is not None:
                panel.hlines[name] = float(metrics[key])
    return abx, singles["map"], *(p for key, p in singles.items() if key != "map" and (p.series or p.hlines))


def _finish_axes(fig, axes, panels, title: str | None) -> None:
    for ax, panel in zip(axes, panels):
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()


def plot_layer_metrics(
    layer_results: Mapping[str, Mapping[int | str, Mapping[str, float]]],
    out_path: str | os.PathLike,
    *,
    baselines: Mapping[str, Mapping[str, float]] | None = None,
    title: str | None = None,
    figsize: tuple[float, float] = (11.0, 4.0),
) -> Figure:
    """ABX (left: within solid, across dotted), word MAP and, when measured, the phone probe accuracy by layer,
    one colour per model (a third panel widens the figure by half).

    ``layer_results``: ``{model: {layer (1-based): {"abx_within": %, "abx_across": %, "map": %, ...}}}``;
    any metric may be missing. ``baselines``: ``{name: {metric: %}}``, drawn as horizontal dashed lines.
    """
    if not layer_results:
        raise ValueError("no layer results to plot")
    panels = layer_panels(layer_results, baselines)
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(figsize[0] * len(panels) / 2, figsize[1]))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    abx_series = {s.label: s for s in panels[0].series}
    for i, model in enumerate(layer_results):
        colour = colours[i % len(colours)]
        for name, style in (("within", "-o"), ("across", ":s")):
            if s := abx_series.get(f"{model} {name}"):
                axes[0].plot(s.x, s.y, style, color=colour, label=s.label, markersize=4)
        for ax, panel in zip(axes[1:], panels[1:]):
            if s := {s.label: s for s in panel.series}.get(model):
                ax.plot(s.x, s.y, "-o", color=colour, label=s.label, markersize=4)
    grays = ("0.35", "0.55", "0.7", "0.2")
    for j, name in enumerate(baselines or {}):
        colour = grays[j % len(grays)]
        for which, width in (("within", 1.2), ("across", 0.8)):
            if (y := panels[0].hlines.get(f"{name} {which}")) is not None:
                axes[0].axhline(y, ls="--", color=colour, lw=width, label=f"{name} {which}")
        for ax, panel in zip(axes[1:], panels[1:]):
            if (y := panel.hlines.get(name)) is not None:
                ax.axhline(y, ls="--", color=colour, lw=1.2, label=name)
    _finish_axes(fig, axes, panels, title)
    return Figure(save_figure(fig, out_path), title, list(panels))


def plot_metric_by_layer(
    metric: str,
    by_layer: Mapping[int | str, Mapping[str, float]],
    out_path: str | os.PathLike,
    *,
    baselines: Mapping[str, float] | None = None,
    title: str | None = None,
    figsize: tuple[float, float] = (6.0, 4.0),
) -> Figure:
    """One metric of several models (the multi-model report, Figure 7 layout): ``by_layer`` is
    ``{layer: {model: value}}``; one curve per model against the layer number (models of different depths
    side by side), ``baselines`` (``{name: value}``) as dashed lines. The panel's series are named by model,
    its lines by baseline."""
    models = list(dict.fromkeys(m for row in by_layer.values() for m in row))
    if not models:
        raise ValueError(f"no value of {metric} to plot")
    panel = Panel(title, "layer", METRIC_LABELS.get(metric, metric))
    panel.series = [s for m in models if (s := _layer_series(m, {la: {"v": r.get(m)} for la, r in by_layer.items()},
                                                             "v"))]
    panel.hlines = {name: float(v) for name, v in (baselines or {}).items() if v is not None}
    plt = pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    for s in panel.series:
        ax.plot(s.x, s.y, "-o", label=s.label, markersize=4)
    grays = ("0.35", "0.55", "0.7", "0.2")
    for j, (name, y) in enumerate(panel.hlines.items()):
        ax.axhline(y, ls="--", color=grays[j % len(grays)], lw=1.2, label=name)
    _finish_axes(fig, [ax], [panel], title)
    return Figure(save_figure(fig, out_path), title, [panel])


# --------------------------------------------------------------------------- P(phone | code) (Figure 10)
def _merged_by_phone(quality: Mapping[str, Any]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """P(phone | code) with stress variants summed (AH0 + AH1 -> AH), and phone frequencies."""
    matrix = np.asarray(quality["phone_given_code"], dtype=np.float64)
    phones = [base_phone(p) for p in quality["phones"]]
    counts = np.asarray(quality.get("phone_counts", np.ones(len(phones))), dtype=np.float64)
    names = sorted(set(phones))
    merged = np.zeros((matrix.shape[0], len(names)))
    merged_counts = np.zeros(len(names))
    for j, p in enumerate(phones):
        merged[:, names.index(p)] += matrix[:, j]
        merged_counts[names.index(p)] += counts[j]
    return merged, names, merged_counts


def phone_given_code_image(quality: Mapping[str, Any]) -> tuple[np.ndarray, list[str], list[Any]]:
    """The heat map of Figure 10: ``(image (phones, codes), phones, codes)``. Phones (stress merged) grouped
    by class, most frequent first within a class; codes sorted by their most likely phone (in row order),
    then by decreasing probability of that phone, so a good codebook shows a staircase."""
    matrix, phones, counts = _merged_by_phone(quality)
    if matrix.size == 0:
        raise ValueError("empty P(phone | code) matrix")
    rows = phone_order(phones, counts)
    matrix = matrix[:, rows]
    best = matrix.argmax(axis=1)
    cols = sorted(range(matrix.shape[0]), key=lambda c: (best[c], -matrix[c, best[c]]))
    codes = list(quality.get("codes", range(matrix.shape[0])))
    return matrix[cols].T, [phones[j] for j in rows], [codes[c] for c in cols]


def plot_phone_given_code(
    quality: Mapping[str, Any],
    out_path: str | os.PathLike,
    *,
    title: str | None = None,
    figsize: tuple[float, float] = (12.0, 6.0),
) -> Figure:
    """Heat map of P(phone | code) from :func:`spidrkit.evaluation.metrics.units.unit_quality`'s output
    (see :func:`phone_given_code_image`); the returned figure's ``matrix`` is the image shown."""
    image, phones, codes = phone_given_code_image(quality)
    title = title or "P(phone | code)"
    xlabel = f"code (sorted by most likely phone; {len(codes)} active codes)"
    plt = pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    im = ax.imshow(image, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_yticks(range(len(phones)), phones, fontsize=max(4, min(8, 400 // max(len(phones), 1))))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("phone")
    ax.set_xticks([])
    classes = [phone_class(p) for p in phones]
    start = 0
    for i in range(1, len(classes) + 1):
        if i == len(classes) or classes[i] != classes[start]:
            if i < len(classes):
                ax.axhline(i - 0.5, color="white", lw=1.0)
            ax.text(1.01, 1 - (start + i) / 2 / len(classes), classes[start], transform=ax.transAxes,
                    va="center", ha="left", fontsize=8, color=CLASS_COLOURS[classes[start]])
            start = i
    fig.colorbar(im, ax=ax, label="P(phone | code)", pad=0.13)
    ax.set_title(title)
    fig.tight_layout()
    return Figure(save_figure(fig, out_path), title, [Panel(title, xlabel, "phone")], image, phones, codes)



# --------------------------------------------------------------------------- budget curve (docs/cpu_study.md)
def plot_budget_curve(points: Mapping[str, tuple[list[float], list[float]]], out_path: str | os.PathLike, *,
                      abx_lines: Mapping[str, float] | None = None, ppl_lines: Mapping[str, float] | None = None,
                      trend: tuple[list[float], list[float]] | None = None, title: str | None = None,
                      figsize: tuple[float, float] = (11.0, 4.0)) -> Figure:
    """Best-layer ABX (left) and the minimum codebook perplexity (right) against training minutes (log axis).

    ``points``: ``{"abx": (minutes, %), "ppl": (minutes, perplexity)}``; ``abx_lines`` / ``ppl_lines``:
    horizontal references (MFCC, random weights); ``trend``: the fitted ABX trend ``(minutes, %)``, dashed.
    """
    panels = [Panel(None, "training time (min)", "best-layer ABX across (%) ↓", hlines=dict(abx_lines or {})),
              Panel(None, "training time (min)", "min codebook perplexity (fixed set) ↑",
                    hlines=dict(ppl_lines or {}))]
    panels[0].series.append(Series("model", tuple(points["abx"][0]), tuple(points["abx"][1])))
    if trend is not None:
        panels[0].series.append(Series("trend", tuple(trend[0]), tuple(trend[1])))
    panels[1].series.append(Series("model", tuple(points["ppl"][0]), tuple(points["ppl"][1])))
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=figsize)
    for ax, panel in zip(axes, panels):
        for s in panel.series:
            ax.plot(s.x, s.y, "--" if s.label == "trend" else "-o", label=s.label, markersize=4)
        for j, (name, y) in enumerate(panel.hlines.items()):
            ax.axhline(y, ls=":", color=("0.3", "0.6", "0.8")[j % 3], label=name)
    _finish_axes(fig, axes, panels, title)
    for ax in axes:
        ax.set_xscale("log")
    return Figure(save_figure(fig, out_path), title, panels)
