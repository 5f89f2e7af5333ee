"""Experiment tracking: ``--report-to none|tensorboard|wandb`` (``train.report_to`` in a config), one home for
pretraining, unit LM training and the layer sweep (docs/formats.md, "Tracking").

- ``none`` (the default): nothing beyond ``metrics.jsonl`` and the reports;
- ``tensorboard``: event files under ``FOLDER/tensorboard`` (``tensorboard --logdir FOLDER``);
- ``wandb``: a Weights & Biases run whose files go under ``FOLDER/wandb``; ``WANDB_MODE=offline`` needs no
  account (``wandb sync`` uploads it later), ``WANDB_PROJECT`` names the project (default ``spidrkit``).

The packages are optional (the ``tracking`` extra) and imported only when asked for; a missing one is an
:class:`TrackingUnavailable` (exit 2) naming the extra. A metrics record becomes scalars named
``SPLIT/KEY`` (``train/loss``, ``valid/loss``; per-layer lists ``train/codebook_ppl/layer_05``) at its
step, so the tracker's numbers are the ``metrics.jsonl`` numbers; the config is logged as hyper-parameters.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spidrkit.errors import InputError

REPORT_TO = ("none", "tensorboard", "wandb")
EXTRA = "tracking"
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
REPORT_TO_HELP = ("also log scalars and the config to tensorboard (RUN_DIR/tensorboard) or wandb (RUN_DIR/wandb; "
                  "WANDB_MODE=offline needs no account); sets train.report_to (default: the config's, none)")
_NOT_SCALARS = ("step", "split", "layers", "epoch", "format_version")


class TrackingUnavailable(InputError):
    """``--report-to`` names a tracker whose package is not installed (exit 2)."""


def check_report_to(kind: str) -> str:
    """``kind`` when it is a tracker whose package is installed; else :class:`TrackingUnavailable` naming the fix."""
    if kind not in REPORT_TO:
        raise TrackingUnavailable(f"--report-to: expected one of {', '.join(REPORT_TO)}, got {kind!r}")
    package = _PACKAGES.get(kind)
    if package is not None and importlib.util.find_spec(package) is None:
        raise TrackingUnavailable(f"--report-to {kind}: the {package} package is not installed; install it with pip "
                                  f"install 'spidrkit[{EXTRA}]' (or pip install {package}), or use --report-to none")
    return kind


def report_to_override(kind: str | None) -> list[str]:
    """The ``--set`` override of a ``--report-to`` option (none when it is not given)."""
    return [] if kind is None else [f"train.report_to={kind}"]


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"section.key": value}``; lists and tuples become strings, ``None`` an empty one
    (hyper-parameters are numbers, strings or booleans)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_config(value, name + "."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            out[name] = "" if value is None else str(list(value) if isinstance(value, tuple) else value)
    return out


def record_scalars(record: dict[str, Any], layers: Sequence[int] | None = None) -> dict[str, float | int]:
    """The scalars of a metrics record: ``SPLIT/KEY`` (a ``valid_`` prefix of a valid record's keys dropped),
    per-layer lists as ``SPLIT/KEY/layer_LL`` (``record["layers"]`` or ``layers``, else 1, 2, ...); ``None``,
    booleans and text are left out."""
    split = record.get("split", "train")
    layers = record.get("layers") or layers
    out: dict[str, float | int] = {}
    for key, value in record.items():
        if key in _NOT_SCALARS:
            continue
        name = f"{split}/{key.removeprefix(split + '_')}"
        if isinstance(value, list):
            for layer, v in zip(layers or range(1, len(value) + 1), value):
                if _is_number(v):
                    out[f"{name}/layer_{layer:02d}"] = v
        elif _is_number(value):
            out[name] = value
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class Tracker:
    """``--report-to none``: logs nothing; the interface of the others."""

    kind = "none"

    def log_scalars(self, scalars: dict[str, float | int], step: int) -> None:
        """Scalars at a step."""

    def log_config(self, config: dict[str, Any]) -> None:
        """A nested config (sections of keys) as the run's hyper-parameters."""

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A table; its first column is the step of its numeric columns' scalars (the layer of a sweep)."""

    def close(self) -> None:
        """Flush and close."""

    def log_record(self, record: dict[str, Any], layers: Sequence[int] | None = None) -> None:
        """A metrics record (:func:`record_scalars`) at its step."""
        scalars = record_scalars(record, layers)
        if scalars:
            self.log_scalars(scalars, int(record["step"]))


class TensorBoardTracker(Tracker):
    """Event files under ``FOLDER/tensorboard``; ``purge_step`` drops events of later steps left by a run
    that is resumed from an earlier checkpoint."""

    kind = "tensorboard"

    def __init__(self, folder: Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(folder / "tensorboard"), purge_step=purge_step)

    def log_scalars(self, scalars: dict[str, float | int], step: int) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def log_config(self, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        flat = flat_config(config)
        for summary in hparams(flat, {}):
            self.writer.file_writer.add_summary(summary)
        self.writer.add_text("config", "\n".join(f"    {k} = {v!r}" for k, v in flat.items()))
        self.writer.flush()

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        for row in rows:
            scalars = {f"{name}/{c}": float(v) for c, v in zip(columns[1:], row[1:]) if _is_number(v)}
            for tag, value in scalars.items():
                self.writer.add_scalar(tag, value, int(row[0]))
        lines = ["| " + " | ".join(map(str, columns)) + " |", "|" + " --- |" * len(columns)]
        lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
        self.writer.add_text(name, "\n".join(lines))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker(Tracker):
    """A Weights & Biases run with its files under ``FOLDER/wandb``, named after the folder; ``job`` is its
    job type (``pretrain``, ``lm-train``, ``sweep``), the folder's name its group."""

    kind = "wandb"

    def __init__(self, folder: Path, job: str) -> None:
        import wandb

        self.wandb = wandb
        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(dir=str(folder), project=os.environ.get("WANDB_PROJECT", "spidrkit"),
                              name=folder.resolve().name, group=folder.resolve().name, job_type=job)

    def log_scalars(self, scalars: dict[str, float | int], step: int) -> None:
        self.run.log(dict(scalars), step=step)

    def log_config(self, config: dict[str, Any]) -> None:
        self.run.config.update(flat_config(config), allow_val_change=True)

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.run.log({name: self.wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def close(self) -> None:
        self.run.finish()


def open_tracker(kind: str, folder: str | os.PathLike, *, job: str, config: dict[str, Any] | None = None,
                 purge_step: int | None = None) -> Tracker:
    """The tracker ``kind`` (one of :data:`REPORT_TO`) writing under ``folder``, with ``config`` logged as its
    hyper-parameters. Raises :class:`TrackingUnavailable` when its package is missing."""
    check_report_to(kind)
    folder = Path(folder)
    if kind == "tensorboard":
        tracker: Tracker = TensorBoardTracker(folder, purge_step)
    elif kind == "wandb":
        tracker = WandbTracker(folder, job)
    else:
        return Tracker()
    if config:
        tracker.log_config(config)
    return tracker
