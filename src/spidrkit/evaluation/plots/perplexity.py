"""Codebook and prediction perplexity over training (the SpidR paper's Figure 2), from training runs'
metrics logs (read with :func:`spidrkit.io.read_metrics`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spidrkit.evaluation.plots.figures import Figure, Panel, Series, pyplot, save_figure
from spidrkit.evaluation.sweep.errors import SweepError
from spidrkit.io import read_metrics

PPL_KEYS = {"codebook_ppl": "codebook perplexity", "prediction_ppl": "prediction perplexity"}
LINE_STYLES = ("-", "--", ":", "-.")


def _records(source: str | os.PathLike | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if not isinstance(source, (str, os.PathLike)):
        return list(source)
    if not Path(source).is_file():
        raise FileNotFoundError(f"no metrics file at {source}")
    return read_metrics(source)


def read_perplexities(source: str | os.PathLike | Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Steps and per-layer perplexities from a training metrics JSONL (or its records).

    Records without ``step`` or without any perplexity key (e.g. validation lines) are skipped, and so is
    an unreadable last line (a run killed while writing). Returns ``{"step": (N,), "codebook_ppl":
    (N, K), "prediction_ppl": (N, K)}`` for the keys present.
    """
    records = _records(source)
    keys = [k for k in PPL_KEYS if any(k in r for r in records)]
    kept = [r for r in records if "step" in r and keys and all(k in r for k in keys)]
    if not kept:
        raise ValueError("no record with a step and a perplexity (codebook_ppl, prediction_ppl)")
    result = {"step": np.asarray([r["step"] for r in kept])}
    for k in keys:
        values = [np.atleast_1d(np.asarray(r[k], dtype=np.float64)) for r in kept]
        widths = {len(v) for v in values}
        if len(widths) != 1:
            raise ValueError(f"{k}: the number of layers changes during the run ({sorted(widths)})")
        result[k] = np.stack(values)
    return result


def perplexity_records(source: str | os.PathLike) -> int:
    """How many records of a metrics log (missing: none) hold a step and a perplexity: the points of its
    curve."""
    records = read_metrics(source) if Path(source).is_file() else []
    return sum(1 for r in records if "step" in r and any(k in r for k in PPL_KEYS))


def perplexity_note(source: str | os.PathLike) -> str | None:
    """Why a training run's metrics log cannot give a perplexity curve (missing, empty, or a single record:
    a run that ended before its second logging step), as a sentence for a report; ``None`` when it can."""
    path = Path(source)
    if not path.is_file():
        return f"no perplexity figure: the run wrote no metrics log ({path}): it ended before its first logging step"
    n = perplexity_records(path)
    if n >= 2:
        return None
    return (f"no perplexity figure: {path} holds {n} record{'' if n == 1 else 's'} with a perplexity and a curve "
            "needs 2: the run was too short (train longer, or log more often with train.log_every)")


def run_layers(metrics_file: str | os.PathLike) -> list[int] | None:
    """The ``layers`` a training metrics log names for its per-layer perplexities (first record with it)."""
    for record in _records(metrics_file):
        if isinstance(record.get("layers"), list):
            return [int(x) for x in record["layers"]]
    return None


def perplexity_panels(data: Mapping[str, Mapping[str, np.ndarray]], layers: Sequence[int] | None = None,
                      codebook_size: int | None = None) -> list[Panel]:
    """The data of Figure 2: one panel per perplexity, one series ``"RUN layer L"`` per run and layer, the
    maximum ``"V"`` as a line when ``codebook_size`` is given."""
    num_layers = max(v.shape[1] for d in data.values() for k, v in d.items() if k != "step")
    names = list(layers) if layers is not None else list(range(1, num_layers + 1))
    if len(names) < num_layers:
        raise ValueError(f"{len(names)} layer names for {num_layers} per-layer values")
    panels = []
    for key, label in PPL_KEYS.items():
        panel = Panel(None, "step", label, hlines={"V": float(codebook_size)} if codebook_size else {})
        for run, d in data.items():
            if key in d:
                steps = tuple(float(s) for s in d["step"])
                panel.series += [Series(f"{run} layer {names[k]}", steps, tuple(d[key][:, k].tolist()))
                                 for k in range(d[key].shape[1])]
        panels.append(panel)
    return panels


def plot_perplexity(
    runs: Mapping[str, str | os.PathLike | Sequence[Mapping[str, Any]]],
    out_path: str | os.PathLike,
    *,
    layers: Sequence[int] | None = None,
    codebook_size: int | None = None,
    title: str | None = None,
    figsize: tuple[float, float] = (11.0, 4.0),
) -> Figure:
    """Codebook (left) and prediction (right) perplexity over training: one colour per layer, one line
    style per run (e.g. ``{"SpidR": "runs/spidr/metrics.jsonl", "DinoSR": ...}``).

    ``layers`` names the 1-based layer of each entry of the per-layer lists (default: 1..K, i.e. the
    codebook index); ``codebook_size`` draws the maximum perplexity V as a dotted line.
    """
    if not runs:
        raise ValueError("no run to plot")
    data = {name: read_perplexities(src) for name, src in runs.items()}
    panels = perplexity_panels(data, layers, codebook_size)
    plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(1, 2, figsize=figsize, sharex=True)
    num_layers = max(v.shape[1] for d in data.values() for k, v in d.items() if k != "step")
    cmap = plt.get_cmap("viridis", max(num_layers, 2))
    for ax, panel in zip(axes, panels):
        for r, run in enumerate(data):
            mine = [s for s in panel.series if s.label.startswith(f"{run} layer ")]
            for k, s in enumerate(mine):
                ax.plot(s.x, s.y, LINE_STYLES[r % len(LINE_STYLES)], color=cmap(k), lw=1.2,
                        label=s.label[len(run) + 1:] if r == 0 else None)
        for y in panel.hlines.values():
            ax.axhline(y, color="0.5", ls=":", lw=1.0)
        ax.set_yscale("log", base=2)  # perplexities span 1 (collapse) .. V: a collapse must stay readable
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    if len(data) > 1:
        handles += [Line2D([], [], color="black", ls=LINE_STYLES[r % len(LINE_STYLES)]) for r in range(len(data))]
        labels += list(data)
    axes[1].legend(handles, labels, fontsize=7, ncol=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return Figure(save_figure(fig, out_path), title, panels)


def plot_runs_perplexity(metrics_jsonl: Sequence[str | os.PathLike], out_path: str | os.PathLike, *,
                         labels: Sequence[str] | None = None, codebook_size: int | None = None,
                         title: str | None = None) -> Figure:
    """Figure 2 from one or more training runs' ``metrics.jsonl``; runs are labelled by ``labels`` or by
    their folder name; the layers are those the files name when every run names the same ones."""
    paths = [Path(p) for p in metrics_jsonl]
    if not paths:
        raise SweepError("no metrics file to plot")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SweepError(f"no metrics file at {missing[0]}")
    if labels is None:
        labels = [p.parent.name or p.stem for p in paths]
        if len(set(labels)) < len(labels):
            labels = [str(p) for p in paths]
    if len(labels) != len(paths):
        raise SweepError(f"{len(labels)} labels for {len(paths)} metrics files")
    if len(set(labels)) < len(labels):
        raise SweepError(f"run labels must differ: {list(labels)}")
    layers_of = [run_layers(p) for p in paths]
    layers = layers_of[0] if all(r == layers_of[0] for r in layers_of) else None
    return plot_perplexity(dict(zip(labels, paths)), out_path, layers=layers, codebook_size=codebook_size,
                           title=title)
