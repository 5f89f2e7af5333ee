"""What a run reports: metrics JSONL, collapse warnings, the log's lines (the tracker, ``--report-to``, is
:mod:`spidrkit.tracking`'s; the bar :mod:`spidrkit.progress`'s).

The metrics log's format and its one reader are :mod:`spidrkit.io`'s (:func:`spidrkit.io.metrics_line`,
:func:`spidrkit.io.read_metrics`; see docs/formats.md).

Training metrics stay on the device between logging intervals (:class:`IntervalMeter` adds them up
there), so logging costs one host synchronisation per interval, not one per step. A record is the
average over the interval's finite steps; per-layer values are lists in the order of ``layers``
(1-based target layers).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import torch

from spidrkit.io import METRICS_NAME, json_safe, metrics_line, read_metrics, write_lines_atomic

logger = logging.getLogger("spidrkit.training")

# Stepper metrics averaged over the finite steps of an interval.
AVERAGED = ("loss", "loss_per_layer", "accuracy", "codebook_ppl", "prediction_ppl", "grad_norm", "masked_fraction")


class MetricsLog:
    """Appends one JSON object per line to ``RUN_DIR/metrics.jsonl`` (rank 0 only)."""

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_NAME
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after ``step`` (logged after the checkpoint a run resumes from) and a
        torn last line; the records kept keep their format version."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        write_lines_atomic(self.path, (metrics_line(r).rstrip("\n") for r in kept))

    def write(self, record: dict[str, Any]) -> None:
        """Append one record. A failed write (disk full) is cut off again, so the log never keeps half a
        line, and raised as an ``OSError`` naming the log."""
        if not self.enabled:
            return
        line = memoryview(metrics_line(record).encode())
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                try:
                    while line:
                        line = line[os.write(fd, line):]
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, size)
                    raise
            finally:
                os.close(fd)
        except OSError as e:
            raise OSError(e.errno, e.strerror or str(e), str(self.path)) from e


class IntervalMeter:
    """Sums the Stepper's metric tensors over a logging interval, on the device; ``summary`` syncs once."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.finite: torch.Tensor | None = None
        self.steps = 0
        self.samples = 0
        self.last: dict[str, torch.Tensor] = {}

    def add(self, metrics: dict[str, torch.Tensor], samples: int) -> None:
        ok = metrics["finite"]
        for k in AVERAGED:
            v = torch.where(ok, metrics[k].detach().float(), 0.0)
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.finite = self.finite + ok.float() if self.finite is not None else ok.float()
        self.steps += 1
        self.samples += samples
        self.last = metrics

    def summary(self) -> dict[str, Any]:
        """Interval averages over the finite steps (None when there were none), as Python values."""
        if not self.steps:
            return {}
        keys = list(self.sums)
        flat = torch.cat([self.finite.reshape(1)] + [self.sums[k].reshape(-1) for k in keys]).cpu().tolist()
        n, flat = flat[0], flat[1:]
        out: dict[str, Any] = {"finite_steps": int(n)}
        offset = 0
        for k in keys:
            size = self.sums[k].numel()
            vals = [v / n if n else float("nan") for v in flat[offset : offset + size]]
            out[k] = vals if self.sums[k].dim() else vals[0]
            offset += size
        return json_safe(out)


def train_record(step: int, epoch: int, layers: tuple[int, ...], summary: dict[str, Any],
                 last: dict[str, torch.Tensor], *, elapsed: float, audio_per_second: float,
                 skipped_steps: int) -> dict[str, Any]:
    """A training record of the metrics log from an interval's :meth:`IntervalMeter.summary` and the
    metrics of its last step (learning rate, teacher decay)."""
    return {
        "split": "train", "step": step, "epoch": epoch, "layers": list(layers),
        **{k: summary[k] for k in AVERAGED},
        "lr": float(last["lr"]), "teacher_decay": float(last["teacher_decay"]),
        "audio_seconds_per_second": audio_per_second, "skipped_steps": skipped_steps, "elapsed": elapsed,
    }


class CollapseMonitor:
    """Warns when a layer's codebook perplexity falls below ``threshold`` (once per fall, per layer)."""

    def __init__(self, threshold: float, layers: tuple[int, ...]) -> None:
        self.threshold = threshold
        self.layers = layers
        self.collapsed: set[int] = set()

    def check(self, step: int, perplexities: list[float | None]) -> list[int]:
        """The layers below the threshold now; logs a warning for those that were not before."""
        below = [layer for layer, p in zip(self.layers, perplexities) if p is not None and p < self.threshold]
        new = [layer for layer in below if layer not in self.collapsed]
        if new:
            values = ", ".join(
                f"layer {layer}: {p:.2f}" for layer, p in zip(self.layers, perplexities) if layer in new
            )
            logger.warning(
                "step %d: codebook perplexity below %.2f (%s): the codebooks may be collapsing",
                step, self.threshold, values,
            )
        self.collapsed = set(below)
        return below


def format_record(record: dict[str, Any]) -> str:
    """One line for the log: the headline numbers of a train or valid record."""

    def num(v: Any, fmt: str) -> str:
        return "nan" if v is None else format(v, fmt)

    def mean(v: Any) -> float | None:
        vals = [x for x in v or [] if x is not None]
        return sum(vals) / len(vals) if vals else None

    if record.get("split") == "valid":
        return (
            f"step {record['step']} valid: loss {num(record.get('valid_loss'), '.4f')}, codebook ppl "
            f"{num(mean(record.get('valid_codebook_ppl')), '.1f')}, prediction ppl "
            f"{num(mean(record.get('valid_prediction_ppl')), '.1f')}"
        )
    return (
        f"step {record['step']}: loss {num(record.get('loss'), '.4f')}, lr {record['lr']:.3g}, "
        f"codebook ppl {num(mean(record.get('codebook_ppl')), '.1f')}, "
        f"prediction ppl {num(mean(record.get('prediction_ppl')), '.1f')}, "
        f"{num(record.get('audio_seconds_per_second'), '.1f')} audio-s/s, skipped {record['skipped_steps']}"
    )
