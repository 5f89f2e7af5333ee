"""One comparison of unit LMs: the phone topline, MFCC k-means, SpidR codebook / k-means units, the
shuffled-units control... each scored by the same scorer, in one table, with the paper's scatter of a unit
source's ABX / PNMI against its sLM scores (``docs/design.md``, "Comparing unit LMs").

Python API (the demo and ``experiments/slm.py`` call it; CLI ``spidrkit evaluate slm-compare BENCHMARK
ROWS.json [--sweep REPORT.json] -o OUT``):

- :class:`CompareRow` (``label``, ``units``, ``lm``, ``encoder``, ``layer``, ``seed``; or ``report``: an
  ``evaluate slm`` report.json already written); rows that share a label are the LM seeds of one unit source;
- :func:`score_rows` scores every row on a benchmark (:func:`spidrkit.evaluation.slm.score.evaluate_slm`, one
  folder ``OUT/rows/NN_label/`` per row, skipped when its report.json exists: resumable);
- :func:`comparison_table` -> ``{label: {metric: cell}}``; metrics :data:`METRICS` (sWUGGY all /
  in-vocab, sBLIMP, tSC of the ``test`` split, else ``dev``); one run: ``score`` and its bootstrap
  ``ci95``; several: ``score`` = the mean over seeds, ``std`` (sample standard deviation, n - 1), ``min``,
  ``max``, each seed's ``scores`` and ``ci95s``;
- :func:`voice_metrics`: sWUGGY all and sBLIMP of each voice that the reports score alone (``voice/NAME``), the
  columns of the report's "By voice" table (``report.json["by_voice"]``, cells as above);
- :func:`scatter_points` -> one point per label with ``abx_within``, ``abx_across``, ``pnmi`` read from a
  sweep's ``report.json`` (``results.layers[L]``, ``results.baselines[name]``, ``results.units[row]``; see
  :func:`sweep_keys`) and the label's mean sLM scores; :func:`plot_scatter` draws them;
- :func:`write_comparison` writes ``OUT/report.json``, ``OUT/report.md``, ``OUT/tables/*.csv``, then
  ``OUT/slm_vs_abx.png`` and ``OUT/report.html``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spidrkit.errors import InputError
from spidrkit.evaluation.pages import write_html, write_tables
from spidrkit.evaluation.plots.figures import Figure, Panel, Series, pyplot, save_figure
from spidrkit.evaluation.slm.rules import DEFAULT_BOOTSTRAP, MIN_PAIRS
from spidrkit.io import json_safe, write_json_atomic, write_text_atomic
from spidrkit.text_in import parse_json, read_text

METRICS = {"swuggy_all": ("lexical", "all", "sWUGGY all"),
           "swuggy_in_vocab": ("lexical", "in_vocab", "sWUGGY in-vocab"),
           "sblimp": ("syntactic", "all", "sBLIMP"), "tsc": ("storycloze", "all", "tSC")}
SPLIT_ORDER = ("test", "dev")
SCATTER_X = {"abx_across": "ABX across speakers (%)", "pnmi": "PNMI"}
SCATTER_Y = ("swuggy_all", "sblimp")


@dataclass
class CompareRow:
    """One LM to score: ``units`` (``phones``, ``codebook:L``, ``kmeans:FILE``) of ``encoder`` (a checkpoint,
    ``mfcc``, ``random:PRESET``; none for phones) under the LM run ``lm``; or an existing ``report``."""

    label: str
    units: str = ""
    lm: str = ""
    encoder: str | None = None
    layer: int | None = None
    seed: int | None = None
    report: str | None = None


class CompareError(InputError):
    """A row of a comparison that cannot be scored or compared: a missing field or file, a report of another
    benchmark, or seeds of one label scored with other settings."""


SETTINGS = ("normalize", "bootstrap")  # scoring settings that must agree between the seeds of one label


def _name(i: int, row: CompareRow) -> str:
    return f"row {i} ({row.label!r})"


def check_row(i: int, row: CompareRow) -> None:
    """One row's fields and files (``report``, else ``units`` and ``lm``): :class:`CompareError` naming the row."""
    from spidrkit.evaluation.slm.units import parse_units
    from spidrkit.hub import hub_ref

    if row.report:
        if not Path(row.report).is_file():
            raise CompareError(f"{_name(i, row)}: report {row.report}: no such file (an `evaluate slm` report.json)")
        return
    for field in ("units", "lm"):
        if not getattr(row, field):
            raise CompareError(f"{_name(i, row)}: no {field!r} (give units and lm, or report: an existing report.json)")
    if not Path(row.lm).exists() and hub_ref(str(row.lm)) is None:
        raise CompareError(f"{_name(i, row)}: lm {row.lm}: no such folder (a `spidrkit lm train` run folder)")
    try:
        parse_units(row.units, row.layer, row.encoder)
    except InputError as e:
        raise CompareError(f"{_name(i, row)}: {e}") from None


def _read_report(i: int, row: CompareRow, path: Path) -> dict:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CompareError(f"{_name(i, row)}: {path}: not an `evaluate slm` report.json ({e})") from None
    if not isinstance(report, dict):
        raise CompareError(f"{_name(i, row)}: {path}: not an `evaluate slm` report.json (not a JSON object)")
    return report


def _benchmark_of(report: Mapping[str, Any]) -> tuple[Any, Any]:
    splits = report.get("splits")
    signature = (tuple(sorted((s.get("task"), s.get("split"), s.get("files")) for s in splits))
                 if isinstance(splits, list) else None)
    return report.get("benchmark_id"), signature


def _same_benchmark(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    (id_a, sig_a), (id_b, sig_b) = _benchmark_of(a), _benchmark_of(b)
    if id_a and id_b:
        return id_a == id_b
    return sig_a is None or sig_b is None or sig_a == sig_b


def check_comparable(entries: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
    """``(name, label, report)`` entries (a report, or what a row will record once scored): every one of one
    benchmark (``benchmark_id``, else its splits), and the seeds of one label scored alike (:data:`SETTINGS`);
    else one :class:`CompareError` naming the two entries and what differs."""
    first: tuple[str, Mapping[str, Any]] | None = None
    by_label: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for name, label, report in entries:
        if first is None and any(_benchmark_of(report)):
            first = (name, report)
        elif first is not None and not _same_benchmark(first[1], report):
            raise CompareError(f"{name} was scored on benchmark {report.get('benchmark')}, {first[0]} on "
                               f"{first[1].get('benchmark')} (other files or gold): compare scores of one benchmark")
        scoring = report.get("scoring") or {}
        if label not in by_label:
            by_label[label] = (name, scoring)
            continue
        other_name, other = by_label[label]
        for key in SETTINGS:
            if key in scoring and key in other and scoring[key] != other[key]:
                raise CompareError(f"{name} and {other_name} share the label {label!r} but were scored with "
                                   f"{key}={scoring[key]} and {key}={other[key]}: give them different labels or "
                                   "score them alike")


def check_rows(benchmark: str | os.PathLike, rows: Sequence[CompareRow], out_dir: str | os.PathLike, *,
               n_bootstrap: int = DEFAULT_BOOTSTRAP) -> None:
    """Every row before any scoring (:func:`check_row`, then :func:`check_comparable` of the reports written and
    of what the rows to score will record: ``benchmark`` scored with ``n_bootstrap`` resamples, normalised)."""
    from spidrkit.evaluation.slm.bench import benchmark_record, read_benchmark

    if not rows:
        raise CompareError("no rows to compare (a JSON list of {label, units, lm, encoder, layer, seed, report})")
    pending, entries = [], []
    for i, row in enumerate(rows):
        check_row(i, row)
        path = Path(row.report) if row.report else _row_folder(out_dir, i, row) / "report.json"
        if path.is_file():
            entries.append((f"{_name(i, row)} ({path})", row.label, _read_report(i, row, path)))
        else:
            pending.append((i, row))
    if pending or Path(benchmark).is_dir():
        bench = {**benchmark_record(benchmark, read_benchmark(benchmark)),
                 "scoring": {"normalize": True, "bootstrap": n_bootstrap}}
        entries.insert(0, (f"BENCHMARK {benchmark}", "", {k: v for k, v in bench.items() if k != "scoring"}))
        entries += [(_name(i, row), row.label, bench) for i, row in pending]
    check_comparable(entries)
ROW_FIELDS = {"label": str, "units": str, "lm": str, "encoder": str | None, "layer": int | None, "seed": int | None,
              "report": str | None}


def read_rows(path: str | os.PathLike) -> list[CompareRow]:
    """The rows of a ``ROWS.json`` file: a JSON list of objects with the fields of :class:`CompareRow` (``label``
    required), each of its type; anything else is an :class:`InputError` naming the file and the row."""
    data = parse_json(read_text(path), str(path))
    fix = "expected a JSON list of {label, units, lm, encoder, layer, seed, report} objects"
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: {fix}")
    for i, row in enumerate(data, 1):
        bad = [k for k, v in row.items() if k not in ROW_FIELDS or isinstance(v, bool)
               or not isinstance(v, ROW_FIELDS[k])] if isinstance(row, dict) else ["(not an object)"]
        if bad or "label" not in row:
            raise InputError(f"{path}: row {i}: {', '.join(map(str, bad)) or 'no label'}; {fix} (strings; "
                             "layer and seed integers; null where unused)")
    return [CompareRow(**row) for row in data]


def read_sweep(path: str | os.PathLike) -> dict[str, Any]:
    """A sweep's ``report.json`` (a JSON object; its ``results`` are looked up by :func:`scatter_points`)."""
    data = parse_json(read_text(path), str(path))
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a sweep report (a JSON object with 'results'); pass a sweep's report.json")
    return data


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "row"


def _row_folder(out_dir: str | os.PathLike, i: int, row: CompareRow) -> Path:
    return Path(out_dir) / "rows" / f"{i:02d}_{_slug(row.label)}"


def score_rows(benchmark: str | os.PathLike, rows: Sequence[CompareRow], out_dir: str | os.PathLike, *,
               n_bootstrap: int = 1000, device: str = "cpu", progress: bool = False) -> list[tuple[CompareRow, dict]]:
    """``(row, evaluate-slm report)`` of every row, scored into ``OUT/rows/NN_label/`` (kept when done)."""
    from spidrkit.evaluation.slm.bench import read_benchmark
    from spidrkit.evaluation.slm.score import evaluate_slm
    from spidrkit.evaluation.slm.units import load_encoder, parse_units
    from spidrkit.lm import load_lm

    check_rows(benchmark, rows, out_dir, n_bootstrap=n_bootstrap)
    splits = None  # read when a row needs scoring
    encoders: dict[tuple[str | None, str], tuple[Any, str]] = {}
    out: list[tuple[CompareRow, dict]] = []
    cache: dict = {}  # units of a (split, source, encoder), shared by the LM seeds
    for i, row in enumerate(rows):
        folder = _row_folder(out_dir, i, row)
        path = Path(row.report) if row.report else folder / "report.json"
        if not path.is_file():
            splits = read_benchmark(benchmark) if splits is None else splits
            spec = parse_units(row.units, row.layer, row.encoder)
            key = (row.encoder, spec.kind)
            if key not in encoders:
                encoders[key] = load_encoder(row.encoder, spec, device)
            encoder, model_id = encoders[key]
            only_last = (Path(row.lm) / "last").is_dir() and not (Path(row.lm) / "best").is_dir()
            lm, vocab, info = load_lm(row.lm, "last" if only_last else "best", device)  # (or a Hub repo)
            inputs = {"encoder": model_id, "lm": str(row.lm), "lm_info": info, "label": row.label, "seed": row.seed}
            evaluate_slm(benchmark, encoder, spec, lm, vocab, folder, n_bootstrap=n_bootstrap, progress=progress,
                         splits=splits, units_cache=cache, inputs=inputs)
        out.append((row, json.loads(path.read_text())))
    return out


def headline(report: Mapping[str, Any], metrics: Mapping[str, tuple[str, str, str]] = METRICS
             ) -> dict[str, dict[str, Any]]:
    """``{metric: {"score", "ci95", "pairs", "split"}}`` of an ``evaluate slm`` report (test split first)."""
    results = report.get("results") or {}
    cells = {}
    for metric, (task, group, _) in metrics.items():
        for split in SPLIT_ORDER:
            cell = (results.get(f"{task}/{split}") or {}).get(group)
            if cell is not None:
                cells[metric] = {**cell, "split": split}
                break
    return cells


def comparison_table(scored: Sequence[tuple[str, Mapping[str, Any]]],
                     metrics: Mapping[str, tuple[str, str, str]] = METRICS) -> dict[str, dict[str, dict[str, Any]]]:
    """``{label: {metric: cell}}`` from ``(label, report)`` pairs, labels in first-seen order (module doc)."""
    runs: dict[str, list[dict[str, dict[str, Any]]]] = {}
    for label, report in scored:
        runs.setdefault(label, []).append(headline(report, metrics))
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for label, heads in runs.items():
        row = {}
        for metric in metrics:
            cells = [h[metric] for h in heads if metric in h]
            if not cells:
                continue
            scores = [float(c["score"]) for c in cells]
            if len(cells) == 1:
                row[metric] = {"score": scores[0], "ci95": list(cells[0]["ci95"]), "pairs": cells[0]["pairs"],
                               "runs": 1}
            else:
                row[metric] = {"score": float(np.mean(scores)), "std": float(np.std(scores, ddof=1)),
                               "min": min(scores), "max": max(scores), "scores": scores,
                               "ci95s": [list(c["ci95"]) for c in cells], "pairs": cells[0]["pairs"],
                               "runs": len(cells)}
        table[label] = row
    return table


VOICE_METRICS = ("swuggy_all", "sblimp")  # the metrics split by voice (the reports' ``voice/NAME`` groups)


def voice_metrics(reports: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, str, str]]:
    """``{"swuggy_all/VOICE": (task, "voice/VOICE", "sWUGGY all, VOICE"), ...}``: every voice that a report
    scores on its own (a benchmark read by two voices or more), voices sorted, sWUGGY's first."""
    out = {}
    for metric in VOICE_METRICS:
        task, _, name = METRICS[metric]
        voices = {g.removeprefix("voice/") for r in reports for key, groups in (r.get("results") or {}).items()
                  if key.partition("/")[0] == task for g in groups if g.startswith("voice/")}
        out |= {f"{metric}/{v}": (task, f"voice/{v}", f"{name}, {v}") for v in sorted(voices)}
    return out


def format_cell(cell: Mapping[str, Any] | None) -> str:
    """``71.90 [68.10, 75.20]`` (one run: its bootstrap 95 % interval) or ``71.90 ± 1.20 (3 seeds)``; a group
    of fewer than :data:`MIN_PAIRS` pair ids is no score: ``too few pairs (4)``."""
    if cell is None:
        return "–"
    if cell.get("pairs") is not None and cell["pairs"] < MIN_PAIRS:
        return f"too few pairs ({cell['pairs']})"
    if cell["runs"] == 1:
        low, high = cell["ci95"]
        return f"{cell['score']:.2f} [{low:.2f}, {high:.2f}]"
    return f"{cell['score']:.2f} ± {cell['std']:.2f} ({cell['runs']} seeds)"


def sweep_keys(row: CompareRow) -> tuple[str | None, str | None]:
    """Where a row's ABX and PNMI are in a sweep's results: ``("layers/6", "units/codebook L6")``,
    ``("layers/6", "units/kmeans*L6")`` (any k), ``("baselines/mfcc", "units/*mfcc*")``; ``None`` for phones."""
    kind, _, rest = row.units.partition(":")
    if row.encoder == "mfcc":
        return "baselines/mfcc", "units/*mfcc*"
    if kind == "codebook":
        return f"layers/{int(rest)}", f"units/codebook L{int(rest)}"
    if kind == "kmeans":
        layer = row.layer
        if layer is None:
            from spidrkit.extraction.kmeans import KMeansModel

            layer = KMeansModel.load(rest).info.get("layer")
        return (f"layers/{layer}", f"units/kmeans* L{layer}") if layer is not None else (None, None)
    return None, None


def _lookup(results: Mapping[str, Any], key: str | None, metric: str) -> float | None:
    if key is None:
        return None
    section, _, name = key.partition("/")
    rows = _mapping(results.get(section))
    if "*" in name:
        pattern = re.compile("^" + ".*".join(map(re.escape, name.split("*"))) + "$")
        name = next((n for n in rows if pattern.match(str(n))), "")
    row = _mapping(rows.get(name) or (rows.get(int(name)) if str(name).isdigit() else None))  # JSON or int keys
    value = row.get(metric)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _mapping(value: Any) -> Mapping[Any, Any]:
    """``value`` if it is a mapping, else empty (a sweep report whose results are not laid out as expected)."""
    return value if isinstance(value, Mapping) else {}


def scatter_points(rows: Sequence[CompareRow], table: Mapping[str, Mapping[str, Mapping[str, Any]]],
                   sweep: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One point per label that the sweep measured: its ABX (within, across), PNMI and mean sLM scores.
    ``sweep``: a sweep's ``report.json`` (its ``results``) or the results themselves."""
    results = _mapping(sweep.get("results", sweep))
    points, seen = [], set()
    for row in rows:
        if row.label in seen:
            continue
        seen.add(row.label)
        abx_key, pnmi_key = sweep_keys(row)
        point = {"label": row.label, "abx_within": _lookup(results, abx_key, "abx_within"),
                 "abx_across": _lookup(results, abx_key, "abx_across"), "pnmi": _lookup(results, pnmi_key, "pnmi"),
                 **{m: c["score"] for m, c in table.get(row.label, {}).items()}}
        if point["abx_across"] is not None or point["pnmi"] is not None:
            points.append(point)
    return points


def plot_scatter(points: Sequence[Mapping[str, Any]], out_path: str | os.PathLike, title: str | None = None) -> Figure:
    """ABX across (left column) and PNMI (right) against sWUGGY all (top) and sBLIMP (bottom), one labelled
    point per unit source (``docs/design.md``: the paper's view of unit quality vs sLM scores)."""
    plt = pyplot()
    fig, axes = plt.subplots(len(SCATTER_Y), len(SCATTER_X), figsize=(9.0, 7.0), squeeze=False)
    panels = []
    colors = {p["label"]: f"C{i % 10}" for i, p in enumerate(points)}  # one colour per unit source, every panel
    for r, y in enumerate(SCATTER_Y):
        for c, (x, xlabel) in enumerate(SCATTER_X.items()):
            ax = axes[r][c]
            panel = Panel(None, xlabel, f"{METRICS[y][2]} (%)")
            for p in points:
                if p.get(x) is not None and p.get(y) is not None:
                    panel.series.append(Series(p["label"], (float(p[x]),), (float(p[y]),)))
                    ax.scatter([p[x]], [p[y]], s=30, color=colors[p["label"]])
                    ax.annotate(p["label"], (p[x], p[y]), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(panel.ylabel)
            ax.grid(alpha=0.3)
            panels.append(panel)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return Figure(save_figure(fig, out_path), title, panels)


def _table_lines(table: Mapping[str, Mapping[str, Any]], metrics: Mapping[str, tuple[str, str, str]]) -> list[str]:
    lines = ["| units | " + " | ".join(m[2] for m in metrics.values()) + " |", "|---|" + "---|" * len(metrics)]
    return lines + [f"| {label} | " + " | ".join(format_cell(row.get(m)) for m in metrics) + " |"
                     for label, row in table.items()]


def render(table: Mapping[str, Mapping[str, Any]], points: Sequence[Mapping[str, Any]], plot: str | None,
           title: str, notes: Sequence[str] = (), by_voice: Mapping[str, Any] | None = None) -> str:
    lines = [f"# {title}", "", *_table_lines(table, METRICS)]
    lines += ["", "Scores in %, ZeroSpeech 2021 rules (test split; dev when a task has no test gold). One run: "
              "[bootstrap 95 % interval over pair ids]; several LM seeds: mean ± sample standard deviation."]
    if by_voice and by_voice["metrics"]:
        lines += ["", "## By voice", "", *_table_lines(by_voice["table"], by_voice["metrics"]), "",
                  "Each pair id scored on one voice alone: a voice the LM's corpus never had against those it had."]
    if points:
        lines += ["", "## Unit quality vs sLM scores", "", "| units | ABX within | ABX across | PNMI | sWUGGY all | "
                  "sBLIMP |", "|---|---|---|---|---|---|"]
        for p in points:
            vals = [p.get(k) for k in ("abx_within", "abx_across", "pnmi", "swuggy_all", "sblimp")]
            lines.append(f"| {p['label']} | " + " | ".join("–" if v is None else f"{v:.3f}" if k == 2 else f"{v:.2f}"
                                                            for k, v in enumerate(vals)) + " |")
        if plot:
            lines += ["", f"![ABX and PNMI vs sLM scores]({plot})"]
    if notes:
        lines += ["", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def write_comparison(out_dir: str | os.PathLike, scored: Sequence[tuple[CompareRow, Mapping[str, Any]]], *,
                     sweep: str | os.PathLike | Mapping[str, Any] | None = None, title: str = "Unit LMs compared",
                     notes: Sequence[str] = (), extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``OUT/report.json``, ``OUT/report.md`` and ``OUT/tables/`` (the numbers, first), then ``OUT/slm_vs_abx.png``
    when ``sweep`` gives points (the report files written again, linking it) and ``OUT/report.html``."""
    check_comparable([(_name(i, row), row.label, rep) for i, (row, rep) in enumerate(scored)])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table([(row.label, rep) for row, rep in scored])
    if sweep is not None and not isinstance(sweep, Mapping):
        sweep = read_sweep(sweep)
    points = scatter_points([r for r, _ in scored], table, sweep) if sweep is not None else []
    metrics = voice_metrics([rep for _, rep in scored])
    by_voice = {"metrics": {m: list(v) for m, v in metrics.items()},
                "table": comparison_table([(row.label, rep) for row, rep in scored], metrics)}
    report = {"title": title, "table": table, "by_voice": by_voice, "scatter": points, "plot": None,
              "notes": list(notes), "rows": [asdict(r) for r, _ in scored], **(extra or {})}

    def write(plot: str | None) -> None:
        report["plot"] = plot
        write_json_atomic(out / "report.json", json_safe(report))
        write_text_atomic(out / "report.md", render(table, points, plot, title, notes, by_voice))
        write_tables(out / "report.md")

    write(None)  # the numbers first: a figure that fails loses none
    if points:
        plot_scatter(points, out / "slm_vs_abx.png", title)
        write("slm_vs_abx.png")
    write_html(out / "report.md")
    return report
