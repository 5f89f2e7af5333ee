"""Evaluation report: ``report.json`` (everything, machine-readable) and ``report.md`` (tables and plots).

``results`` is a dict; these keys get tables in the Markdown, anything else is listed as it is:

- ``"layers"``: ``{layer (1-based): {metric: value}}`` -- one row per layer, the best layer of each metric
  in bold (lower is better for ABX, higher for MAP, PNMI and purities; other columns are not ranked), and
  the best layer by mean ABX (within, across) named below the table, as the paper selects layers;
- ``"baselines"``: ``{name: {metric: value}}`` -- extra rows of the same table, in italics, not ranked;
- ``"units"``: ``{name: {metric: value}}`` -- discrete-unit quality (e.g. from
  :func:`spidrkit.evaluation.metrics.units.unit_quality`), one row per unit source, best in bold;
- ``"info"``: ``{key: value}`` -- model, checkpoint, data, shown first as a list.

Arrays (e.g. ``phone_given_code``) are kept in the JSON and left out of the Markdown tables. Percentages
are shown with 2 decimals, fractions (PNMI, purities) with 3. Both files are written atomically.

A sweep's :class:`~spidrkit.evaluation.sweep.result.SweepResult` is rendered by :func:`sweep_results` (the
``results`` of ``report.json``) and :func:`write_sweep_report`.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spidrkit.evaluation.sweep.result import SweepResult
from spidrkit.io import json_safe, write_json_atomic, write_sidecar, write_text_atomic

LOWER_IS_BETTER_PREFIXES = ("abx", "probe_per", "probe_frame_per")
HIGHER_IS_BETTER = frozenset({"map", "pnmi", "phone_purity", "cluster_purity", "probe_acc"})
# the multi-model report: one table (and one figure) per metric, in this order, when measured
COMPARISON_METRICS = {"abx_within": "ABX within speaker (%)", "abx_across": "ABX across speakers (%)",
                      "map": "word MAP (%)", "probe_acc": "phone probe accuracy (%)",
                      "probe_per": "phone probe PER (%)", "speaker_acc": "speaker probe accuracy (%)"}
FRACTION_KEYS = frozenset({"pnmi", "phone_purity", "cluster_purity"})
TABLE_KEYS = ("info", "layers", "baselines", "units", "notes", "voice_pairs")


def _direction(metric: str) -> int:
    """+1 if higher is better, -1 if lower is better, 0 if the metric is not ranked."""
    if metric.startswith(LOWER_IS_BETTER_PREFIXES):
        return -1
    return 1 if metric in HIGHER_IS_BETTER else 0


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _fmt(metric: str, v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, (bool, str)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return "–"
        return f"{v:.3f}" if metric in FRACTION_KEYS else f"{v:.2f}"
    return str(v)


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Scalar metrics present in any row, in first-seen order."""
    cols: list[str] = []
    for row in rows:
        for k, v in row.items():
            if k not in cols and (_is_scalar(v) or v is None):
                cols.append(k)
    return cols


def _best(rows: Mapping[str, Mapping[str, Any]], metric: str) -> set[str]:
    """Names of the rows holding the best value of ``metric`` (ties all win)."""
    sign = _direction(metric)
    values = {name: float(r[metric]) for name, r in rows.items()
              if _is_scalar(r.get(metric)) and math.isfinite(float(r[metric]))}
    if not sign or len(values) < 2:
        return set()
    best = max(sign * v for v in values.values())
    return {name for name, v in values.items() if sign * v == best}


def metrics_table(rows: Mapping[str, Mapping[str, Any]], *, first: str = "",
                  extra: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """Markdown table of ``rows`` (name -> metrics), best of each ranked column in bold; ``extra`` rows
    (e.g. baselines) follow in italics, unranked."""
    extra = extra or {}
    cols = _columns([*rows.values(), *extra.values()])
    best = {c: _best(rows, c) for c in cols}
    lines = ["| " + " | ".join([first, *cols]) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, r in rows.items():
        cells = [f"**{_fmt(c, r.get(c))}**" if name in best[c] else _fmt(c, r.get(c)) for c in cols]
        lines.append("| " + " | ".join([str(name), *cells]) + " |")
    for name, r in extra.items():
        lines.append("| " + " | ".join([f"*{name}*", *(_fmt(c, r.get(c)) for c in cols)]) + " |")
    return lines


def best_layer_by_abx(layers: Mapping[str, Mapping[str, Any]]) -> tuple[str, float] | None:
    """The layer with the lowest mean of its ABX metrics (the paper's layer choice), and that mean."""
    means = {}
    for name, r in layers.items():
        abx = [float(v) for k, v in r.items() if k.startswith("abx") and _is_scalar(v)]
        if abx:
            means[name] = sum(abx) / len(abx)
    if not means:
        return None
    name = min(means, key=means.get)
    return name, means[name]


def voice_pair_lines(pairs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The "ABX across speakers by voice pair" section: one row per model row (best layer, random init,
    baselines), one column per group of pairs (both voices heard in training, or one held out), then each
    pair."""
    if not pairs:
        return []
    groups = list(dict.fromkeys(g for r in pairs.values() for g in r.get("groups", {})))
    names = list(dict.fromkeys(p for r in pairs.values() for p in r.get("pairs", {})))
    rows = {name: {**r.get("groups", {}), **r.get("pairs", {})} for name, r in pairs.items()}
    out = ["## ABX across speakers by voice pair", "",
           "Error rate (%) of the triplets whose A/B and X voices are the pair, both directions averaged; the "
           "groups say whether the model heard both voices in training or one is held out (another voice, or "
           "another engine's).", "", "| | " + " | ".join([*groups, *(n.replace("|", "–") for n in names)]) + " |",
           "|---|" + "---|" * (len(groups) + len(names))]
    for name, r in rows.items():
        out.append(f"| {name} | " + " | ".join(_fmt("abx", r.get(c)) for c in [*groups, *names]) + " |")
    return [*out, ""]


def render_markdown(results: Mapping[str, Any], plots: Sequence[str], title: str) -> str:
    """The Markdown text of a report (``plots`` are paths relative to the report)."""
    out = [f"# {title}", ""]
    info = results.get("info") or {}
    for k, v in info.items():
        out.append(f"- **{k}**: {v}")
    if info:
        out.append("")
    if results.get("notes"):
        out += ["## Notes", "", *(f"- {note}" for note in results["notes"]), ""]
    layers = {str(k): v for k, v in (results.get("layers") or {}).items()}
    if layers:
        layers = dict(sorted(layers.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else math.inf))
        out += ["## Metrics by layer", ""]
        out += metrics_table(layers, first="layer", extra=results.get("baselines"))
        best = best_layer_by_abx(layers)
        if best:
            out += ["", f"Best layer by mean ABX: **{best[0]}** ({best[1]:.2f} %)."]
        out.append("")
    elif results.get("baselines"):
        out += ["## Baselines", "", *metrics_table({}, first="", extra=results["baselines"]), ""]
    if results.get("units"):
        out += ["## Discrete units", "", *metrics_table(results["units"], first="units"), ""]
    out += voice_pair_lines(results.get("voice_pairs") or {})
    others = {k: v for k, v in results.items() if k not in TABLE_KEYS}
    if others:
        out += ["## Other results", "", "| name | value |", "|---|---|"]
        for k, v in others.items():
            shown = _fmt(k, v) if (_is_scalar(v) or v is None or isinstance(v, str)) else "(see report.json)"
            out.append(f"| {k} | {shown} |")
        out.append("")
    if plots:
        out += ["## Figures", ""]
        for p in plots:
            out += [f"![{Path(p).stem}]({Path(p).as_posix()})", ""]
    return "\n".join(out).rstrip() + "\n"


def write_report(
    out_dir: str | os.PathLike,
    results: Mapping[str, Any],
    plots: Sequence[str | os.PathLike] = (),
    title: str = "spidrkit evaluation",
    render=None,
    html: bool = True,
) -> tuple[Path, Path]:
    """Write ``out_dir/report.json`` and ``out_dir/report.md`` (plots linked relative to ``out_dir``; the
    Markdown by ``render(results, plots, title)``, default :func:`render_markdown`), then every table as
    ``out_dir/tables/NAME.csv`` and, with ``html``, ``out_dir/report.html`` (:mod:`spidrkit.evaluation.pages`).

    Returns the JSON and Markdown paths. The Markdown's sidecar records what produced it.
    """
    from spidrkit.evaluation.pages import write_html, write_tables

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    missing = [str(p) for p in plots if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"plots not found: {', '.join(missing)}")
    rel = [os.path.relpath(Path(p).resolve(), out.resolve()) for p in plots]
    json_path, md_path = out / "report.json", out / "report.md"
    write_json_atomic(json_path, {
        "title": title,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "results": json_safe(results),
        "plots": rel,
    })
    write_text_atomic(md_path, (render or render_markdown)(results, rel, title))
    write_sidecar(md_path, report_json=json_path.name, title=title)
    write_tables(md_path)
    if html:
        write_html(md_path)
    return json_path, md_path


def sweep_results(result: SweepResult) -> dict[str, Any]:
    """The ``results`` of a sweep's ``report.json`` (and of :func:`spidrkit.evaluation.sweep.run.sweep`)."""
    out: dict[str, Any] = {
        "info": result.info,
        "layers": result.layers,
        "baselines": result.baselines,
        "units": result.units,
        "best_layer": result.best_layer,
        "best_layer_mean_abx": result.best_layer_mean_abx,
        "best_codebook_layer": result.best_codebook_layer,
    }
    if result.random_init_layers:
        out["random_init_layers"] = result.random_init_layers
    if result.phone_given_code is not None:
        out["phone_given_code"] = result.phone_given_code
    if result.notes:
        out["notes"] = list(result.notes)
    if result.voice_pairs:
        out["voice_pairs"] = result.voice_pairs
    out["timings_s"] = result.timings_s
    return out


def layer_table(results: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The per-layer table of a sweep's ``results`` as (columns, rows): ``layer``, then every scalar metric."""
    layers = results.get("layers") or {}
    columns = _columns(list(layers.values()))
    rows = [[int(layer), *(_plain(row.get(c)) for c in columns)] for layer, row in layers.items()]
    return ["layer", *columns], rows


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def write_sweep_report(out_dir: str | os.PathLike, result: SweepResult, html: bool = True) -> tuple[Path, Path]:
    """``report.json``, ``report.md``, ``tables/`` and (with ``html``) ``report.html`` of a sweep, its figures
    linked."""
    return write_report(out_dir, sweep_results(result), [f.path for f in result.figures.values()], title=result.title,
                        html=html)


# ------------------------------------------------------------------------------------------- several models
def compare_models(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The comparison tables of a multi-model report from each model's sweep ``results`` (by label):
    ``{"tables": {metric: {layer: {model: value}}}, "baselines": {metric: {name: value}}}`` for each metric
    of :data:`COMPARISON_METRICS` measured. Baselines: the signal-processing / noise rows of the first model
    that has them (the same evaluation set and frame rate for all), and each model's random-weights row,
    named ``"MODEL random init (Lk)"``."""
    tables: dict[str, dict[int, dict[str, float]]] = {}
    lines: dict[str, dict[str, float]] = {}
    for metric in COMPARISON_METRICS:
        table: dict[int, dict[str, float]] = {}
        for label, res in results.items():
            for layer, row in (res.get("layers") or {}).items():
                if _is_scalar(row.get(metric)):
                    table.setdefault(int(layer), {})[label] = float(row[metric])
        if not table:
            continue
        tables[metric] = dict(sorted(table.items()))
        base: dict[str, float] = {}
        for label, res in results.items():
            for name, row in (res.get("baselines") or {}).items():
                if _is_scalar(row.get(metric)):
                    base.setdefault(f"{label} {name}" if name.startswith("random init") else name, float(row[metric]))
        lines[metric] = base
    return {"tables": tables, "baselines": lines}


def render_comparison(results: Mapping[str, Any], plots: Sequence[str], title: str) -> str:
    """The Markdown of a multi-model report: info, each model's best layer and report, then per metric a
    table (rows: layers; columns: models, then baselines in italics, the same value on every row) and its
    figure."""
    out = [f"# {title}", "", *(f"- **{k}**: {v}" for k, v in (results.get("info") or {}).items()), ""]
    if results.get("notes"):
        out += ["## Notes", "", *(f"- {note}" for note in results["notes"]), ""]
    out += ["## Models", "", "| model | layers | best layer (mean ABX) | report |", "|---|---|---|---|"]
    for label, res in results["models"].items():
        best = res.get("best_layer")
        abx = res.get("best_layer_mean_abx")
        shown = f"{best} ({abx:.2f} %)" if best is not None and abx is not None else "–"
        out.append(f"| {label} | {len(res.get('layers') or {})} | {shown} | [{res['report']}]({res['report']}) |")
    out.append("")
    comparison = results["comparison"]
    figures = {Path(p).stem: p for p in plots}
    for metric, table in comparison["tables"].items():
        base = comparison["baselines"].get(metric, {})
        rows = {str(layer): {**vals} for layer, vals in table.items()}
        lines = metrics_table(rows, first="layer")
        lines[0] = lines[0].rstrip(" |") + "".join(f" | *{n}*" for n in base) + " |"
        lines[1] += "---|" * len(base)
        lines[2:] = [line + "".join(f" {_fmt(metric, v)} |" for v in base.values()) for line in lines[2:]]
        out += [f"## {COMPARISON_METRICS[metric]}", "", *lines, ""]
        if metric in figures:
            out += [f"![{metric}]({Path(figures[metric]).as_posix()})", ""]
    return "\n".join(out).rstrip() + "\n"


# ------------------------------------------------------------------------------------------- console
def text_table(rows: Mapping[str, Mapping[str, Any]], first: str = "") -> list[str]:
    """``{name: {metric: value}}`` as aligned plain-text lines (the Markdown table without its marks)."""
    lines = metrics_table(rows, first=first)
    cells = [[c.strip().strip("*") for c in line.strip("|").split("|")] for i, line in enumerate(lines) if i != 1]
    widths = [max(len(r[j]) for r in cells) for j in range(len(cells[0]))]
    out = []
    for i, r in enumerate(cells):
        out.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def summary_text(results: Mapping[str, Any]) -> str:
    """What ``spidrkit evaluate sweep`` / ``probe`` print: the tables of a sweep, of a multi-model sweep (one
    per metric) or of a probe, the best layers, the notes and the report written."""
    out: list[str] = []
    if "comparison" in results:
        comparison = results["comparison"]
        for metric, table in comparison["tables"].items():
            rows = {str(la): {**row, **comparison["baselines"][metric]} for la, row in table.items()}
            out += ["", COMPARISON_METRICS[metric], *text_table(rows, first="layer")]
        out += [""] + [f"{label}: best layer by mean ABX {res['best_layer']}, report {res['report']}"
                       for label, res in results["models"].items()]
    elif "units" in results:  # one model's sweep
        for key, first in (("layers", "layer"), ("baselines", "baseline"), ("units", "units")):
            out += ["", *text_table(results[key], first=first)] if results[key] else []
        best, abx = results["best_layer"], results["best_layer_mean_abx"]
        out += ["", f"best layer by mean ABX: {best} ({abx:.2f} %)" if best is not None else "no ABX could be computed"]
    else:  # a probe
        keys = ("probe_acc", "probe_per", "speaker_acc", "probe_chance")
        for key, first in (("layers", "layer"), ("baselines", "baseline")):
            rows = {str(k): {m: r[m] for m in keys} for k, r in results[key].items()}
            out += ["", *text_table(rows, first=first)] if rows else []
        best = results["layers"][results["best_layer"]]
        lo, hi = best["probe_acc_ci"]
        out += ["", f"best layer by phone accuracy: {results['best_layer']} ({best['probe_acc']:.2f} %, 95 % CI "
                f"{lo:.2f}-{hi:.2f})"]
    out += [f"note: {note}" for note in results.get("notes", ())]
    if results.get("outputs"):
        out.append(f"-> {results['outputs']['report_md']}")
    return "\n".join(out).lstrip("\n")
