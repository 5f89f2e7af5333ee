"""The one harness of the micro-benchmarks: timing with warm-up and repeats, and one JSON row format.

Every script of ``benchmarks/`` times with :func:`timed` (or :func:`interleaved`, :class:`Laps`) and reports
rows made by :func:`row`, one JSON object per line: on stdout, or with ``--out FILE`` in FILE and a Markdown
table of the same rows on stdout. A row holds

========================  ==================================================================================
``benchmark``             the script (``train_step``, ``extract``...)
``case``                  what was timed (a config, a mode, a model), unique within one run of the script
``device``                where it ran (``cpu``, ``cuda``...)
``torch``                 ``torch.__version__``
``threads``               torch's CPU threads
``repeats``, ``warmup``   timed runs, and the untimed runs before them
``seconds_median``        median wall-clock seconds of the timed runs
``seconds_iqr``           their interquartile range (0 with one run)
``seconds_min``           the fastest run (best of N: what load from other processes disturbs least)
========================  ==================================================================================

plus the benchmark's own metrics (audio-s/s, MFU, tokens/s...): any other key with a JSON scalar value.
``python benchmarks/harness.py ROWS.jsonl...`` prints the rows of files as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIELDS: dict[str, type | tuple[type, ...]] = {
    "benchmark": str, "case": str, "device": str, "torch": str, "threads": int, "repeats": int, "warmup": int,
    "seconds_median": (int, float), "seconds_iqr": (int, float), "seconds_min": (int, float),
}
SCALARS = (str, int, float, bool, type(None))


# --------------------------------------------------------------------------------------------- timing
def sync(device: Any = "cpu") -> None:
    """Wait for the GPU's queued work when ``device`` is a CUDA device (a name or a ``torch.device``)."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Wall-clock and process CPU seconds of each timed run, the wall seconds of the warm-up runs, and how
    many warm-up runs went untimed (:class:`Laps`: the first)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    warmup_wall: list[float] = field(default_factory=list)
    untimed: int = 0

    @property
    def first(self) -> float:
        """The first measured run's seconds, warm-up included (compilation, allocator, caches)."""
        return (self.warmup_wall or self.wall)[0]

    @property
    def warmup(self) -> int:
        return len(self.warmup_wall) + self.untimed

    def stats(self) -> dict[str, float]:
        if not self.wall:
            raise ValueError("no timed run")
        iqr = 0.0
        if len(self.wall) > 1:
            q1, _, q3 = statistics.quantiles(self.wall, n=4, method="inclusive")
            iqr = q3 - q1
        return {"seconds_median": statistics.median(self.wall), "seconds_iqr": iqr, "seconds_min": min(self.wall)}


def _run_once(fn: Callable[[], Any], device: Any) -> tuple[float, float]:
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def timed(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1, device: Any = "cpu") -> Timing:
    """Call ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed; on a CUDA ``device`` the GPU is
    synchronised before and after each call, so a run's time is its work, not its launch."""
    return interleaved({"": fn}, repeats, warmup, device)[""]


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int = 3, warmup: int = 0,
                device: Any = "cpu") -> dict[str, Timing]:
    """Time several callables in turn, one run of each per round (A B A B...): a drift of the machine's load
    falls on all of them alike, where A A B B would give it to one."""
    out = {name: Timing() for name in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            wall, cpu = _run_once(fn, device)
            if i < warmup:
                out[name].warmup_wall.append(wall)
            else:
                out[name].wall.append(wall)
                out[name].cpu.append(cpu)
    return out


class Laps:
    """Times work that calls back after each unit of work (a training loop's ``callback``): each call ends a
    lap. The first unit has no start to measure from, so it is always a warm-up run, untimed."""

    def __init__(self, device: Any = "cpu") -> None:
        self.device, self.marks = device, []

    def __call__(self, *_: Any) -> None:
        sync(self.device)
        self.marks.append((time.perf_counter(), time.process_time()))

    def timing(self, warmup: int = 1) -> Timing:
        """The units after the first ``warmup`` (at least 1, the untimed first) as the timed runs."""
        if warmup < 1:
            raise ValueError("the first unit of work is untimed: warmup must be at least 1")
        laps = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(self.marks, self.marks[1:])]
        timed_laps = laps[warmup - 1:]
        return Timing(wall=[w for w, _ in timed_laps], cpu=[c for _, c in timed_laps],
                      warmup_wall=[w for w, _ in laps[: warmup - 1]], untimed=1)


# --------------------------------------------------------------------------------------------- rows
def row(benchmark: str, case: str, device: Any, timing: Timing, **metrics: Any) -> dict[str, Any]:
    """One row of the format above (checked): the timing's statistics and the benchmark's ``metrics``."""
    import torch

    out = {"benchmark": benchmark, "case": case, "device": str(device), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "repeats": len(timing.wall), "warmup": timing.warmup,
           **timing.stats()}
    clash = sorted(set(metrics) & set(out))
    if clash:
        raise ValueError(f"metric names {clash} are fields of the row format")
    out.update(metrics)
    check_row(out)
    return out


def check_row(r: dict[str, Any]) -> None:
    """Raise ValueError unless ``r`` follows the row format (every field, of its type; scalar metrics)."""
    for name, kind in FIELDS.items():
        if name not in r:
            raise ValueError(f"row without {name!r}: {r}")
        if not isinstance(r[name], kind) or isinstance(r[name], bool):
            raise ValueError(f"row field {name!r} is {r[name]!r}, not {kind}")
    for name, value in r.items():
        if name not in FIELDS and not isinstance(value, SCALARS):
            raise ValueError(f"row metric {name!r} is a {type(value).__name__}, not a JSON scalar")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file, each checked."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    for r in rows:
        check_row(r)
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value).replace("|", "\\|")


def markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str | tuple[str, str]] | None = None) -> str:
    """A Markdown table of ``rows``: ``columns`` are keys or (header, key) pairs; by default the case, device,
    median, IQR and repeats, then every metric in order of appearance."""
    if columns is None:
        metrics = dict.fromkeys(k for r in rows for k in r if k not in FIELDS)
        columns = ["case", "device", "seconds_median", "seconds_iqr", "repeats", *metrics]
    pairs = [c if isinstance(c, tuple) else (c, c) for c in columns]
    lines = ["| " + " | ".join(h for h, _ in pairs) + " |", "|" + "---|" * len(pairs)]
    lines += ["| " + " | ".join(_cell(r.get(k)) for _, k in pairs) + " |" for r in rows]
    return "\n".join(lines)


class Rows:
    """Where a benchmark's rows go as they come: JSON lines on stdout, or in ``out`` (truncated first) with
    a Markdown table of them on stdout at :meth:`close`."""

    def __init__(self, out: str | Path | None = None) -> None:
        self.out, self.rows = (Path(out) if out else None), []
        if self.out is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.out.write_text("")

    def add(self, r: dict[str, Any]) -> None:
        check_row(r)
        self.rows.append(r)
        line = json.dumps(r)
        if self.out is None:
            print(line, flush=True)
        else:
            with open(self.out, "a") as f:
                f.write(line + "\n")

    def close(self, columns: Sequence[str | tuple[str, str]] | None = None) -> None:
        if self.out is not None:
            print(markdown(self.rows, columns))
            print(f"rows: {self.out}", file=sys.stderr)


def add_out_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="write the JSON rows to FILE and print a Markdown table (default: JSON rows on stdout)")


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Print benchmark rows (JSON lines) as a Markdown table.")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--columns", default=None, help="comma-separated keys (default: case, device, timing, metrics)")
    args = p.parse_args(None if argv is None else list(argv))
    rows = [r for f in args.files for r in read_rows(f)]
    print(markdown(rows, args.columns.split(",") if args.columns else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
