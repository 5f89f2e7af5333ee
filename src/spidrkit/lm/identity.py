"""A unit LM run folder's identity, and the checks that keep validation data out of training.

A run folder is one run: its config (``config.toml``) and the digests of its inputs (the training units
files' contents, and the validation set: the ``--valid`` files' contents, or, without them, the held-out
``lm.valid_fraction`` of the utterances drawn with ``train.seed``, both config keys). The run's sidecar
records the inputs (``units``, ``units_sha256``, ``valid_units``, ``valid_units_sha256``); resuming with
other inputs is refused (:class:`RunMismatch`), and ``spidrkit lm train --fresh`` (:func:`start_anew`)
starts the folder anew. Validation data that is also training data (a file given twice, a ``--valid`` file
among the training files, utterance ids in both) is refused (:class:`LeakedValidation`): ``best/`` would be
chosen on data the LM trained on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spidrkit.errors import InputError
from spidrkit.extraction.units import UnitsError
from spidrkit.io import clear_state, file_sha256, read_sidecar

FRESH_HINT = "use another run folder, or --fresh to start {run} anew"
HELD_OUT = "a held-out lm.valid_fraction of its training utterances"


class RunMismatch(InputError):
    """A run folder resumed with other inputs than it was trained on."""


class LeakedValidation(InputError):
    """Validation data that is also training data."""


@dataclass(frozen=True)
class RunInputs:
    """The training and validation units files of a run, as given, with their contents' SHA-256 (16 digits)."""

    units: tuple[str, ...]
    units_sha256: tuple[str, ...]
    valid_units: tuple[str, ...]
    valid_units_sha256: tuple[str, ...]

    def sidecar(self) -> dict[str, Any]:
        return {"units": list(self.units), "units_sha256": list(self.units_sha256),
                "valid_units": list(self.valid_units), "valid_units_sha256": list(self.valid_units_sha256)}


def _digests(paths: Sequence[str | os.PathLike]) -> tuple[str, ...]:
    for p in paths:
        if not Path(p).is_file():
            raise UnitsError(f"no units file at {p}")
    return tuple(file_sha256(p) for p in paths)


def _same(a: str, da: str, b: str, db: str) -> str | None:
    """How two units files are the same ('the same file', 'the same contents'), or None."""
    if Path(a).resolve() == Path(b).resolve():
        return "the same file"
    return "the same contents" if da == db else None


def run_inputs(units: Sequence[str | os.PathLike], valid: Sequence[str | os.PathLike] | None) -> RunInputs:
    """The inputs of a run, refused (:class:`LeakedValidation`) when a training file is given twice or a
    validation file is also a training file (same path or same contents)."""
    names, vnames = tuple(map(str, units)), tuple(map(str, valid or ()))
    digests, vdigests = _digests(names), _digests(vnames)
    for i, (b, db) in enumerate(zip(names, digests)):
        for a, da in zip(names[:i], digests[:i]):
            if how := _same(a, da, b, db):
                raise LeakedValidation(f"{b}: given twice as training units ({how} as {a}); give each units "
                                       "file once")
    for v, dv in zip(vnames, vdigests):
        for u, du in zip(names, digests):
            if how := _same(u, du, v, dv):
                raise LeakedValidation(f"{v}: the --valid units are also training units ({how} as {u}), so best/ "
                                       "would be chosen on training data; validate on another file, or omit "
                                       "--valid to hold out lm.valid_fraction of the utterances")
    return RunInputs(names, digests, vnames, vdigests)


def check_disjoint(train_ids: Sequence[str], valid_ids: Sequence[str], valid: Sequence[str]) -> None:
    """:class:`LeakedValidation` when utterance ids of the validation files are also training ids."""
    shared = set(train_ids).intersection(valid_ids)
    if shared:
        example = min(shared)
        raise LeakedValidation(f"{', '.join(valid)}: {len(shared)} validation utterance(s) are also training "
                               f"utterances (e.g. {example!r}), so best/ would be chosen on training data; "
                               "validate on utterances the LM does not train on")


def _named(paths: Sequence[str], digests: Sequence[str]) -> str:
    if not paths:
        return HELD_OUT
    return ", ".join(f"{p} (sha256 {d})" for p, d in zip(paths, digests))


def check_same_run(run_dir: Path, now: RunInputs) -> None:
    """:class:`RunMismatch` when ``run_dir``'s sidecar records other training or validation inputs than
    ``now`` (a sidecar without digests, from an older spidrkit, is not checked)."""
    try:
        stored = read_sidecar(run_dir)
    except (FileNotFoundError, ValueError):
        return
    if "units_sha256" not in stored:
        return
    fix = FRESH_HINT.format(run=run_dir)
    if tuple(stored["units_sha256"]) != now.units_sha256:
        raise RunMismatch(f"{run_dir} was trained on {_named(stored['units'], stored['units_sha256'])}, not "
                          f"{_named(now.units, now.units_sha256)}: {fix}")
    if tuple(stored.get("valid_units_sha256", ())) != now.valid_units_sha256:
        raise RunMismatch(f"{run_dir} was validated on "
                          f"{_named(stored.get('valid_units', []), stored.get('valid_units_sha256', []))}, not "
                          f"{_named(now.valid_units, now.valid_units_sha256)}: {fix}")


RUN_STATE = ("checkpoints", "best", "last", ".best.tmp", ".last.tmp", ".best.old", ".last.old", "metrics.jsonl")


def start_anew(run_dir: str | os.PathLike, *, force: bool = False) -> None:
    """Delete a unit LM run folder's training state (checkpoints first, then ``best/``, ``last/`` and the
    metrics), under its lock, so that the next :func:`~spidrkit.lm.train` starts at step 0 whatever the run
    was (``spidrkit lm train --fresh``). ``force`` breaks the folder's lock, as ``train``'s does."""
    clear_state(run_dir, RUN_STATE, lock="run.lock", what="this unit LM run", force=force)
