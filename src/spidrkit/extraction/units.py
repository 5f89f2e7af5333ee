"""Discrete units on disk: one line per utterance, frame by frame or de-duplicated with durations.

Two formats, chosen by :func:`write_units` (``fmt``) or from the suffix (``.jsonl`` means JSONL):

- text: ``utt u1 u2 u3 ...`` -- the utterance id (no whitespace, may contain ``/``) then one unit per
  frame. De-duplicated (runs collapsed, as the spoken LM expects), every token is ``unit*duration`` with
  the run's length in frames: ``utt 1*2 2*3 3*1 1*1`` for the frames ``1 1 2 2 2 3 1``. One self-contained
  file, so units and durations cannot drift apart, and each line says by itself whether it is
  de-duplicated; the LM-ready units are ``sed -E 's/\\*[0-9]+//g'`` away.
- JSONL: ``{"utt": ..., "units": [...]}`` per line, plus ``"durations": [...]`` when de-duplicated.

:func:`read_units` reads both back, durations included, and :meth:`Units.frames` gives the frame-level
sequence either way. Writes are atomic; the sidecar ``UNITS.txt.json`` says what produced them (k, layer,
model, ...) and whether they are de-duplicated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from spidrkit.errors import InputError
from spidrkit.io import refuse_overwrite, write_lines_atomic, write_sidecar
from spidrkit.text_in import parse_json, read_lines

UNIT_FORMATS = ("txt", "jsonl")

UnitsLike = Sequence[int] | np.ndarray | torch.Tensor


class UnitsError(InputError):
    """A units file or sequence that cannot be read or written as asked."""


class Units(NamedTuple):
    """The units of one utterance; ``durations`` (frames per unit) is ``None`` unless de-duplicated."""

    units: list[int]
    durations: list[int] | None = None

    def frames(self) -> list[int]:
        """The frame-level units: the runs expanded back when de-duplicated, else the units themselves."""
        return self.units if self.durations is None else expand(self.units, self.durations)


def _as_int_array(units: UnitsLike, what: str = "units") -> np.ndarray:
    if isinstance(units, torch.Tensor):
        units = units.detach().cpu().numpy()
    a = np.asarray(units)
    if a.ndim != 1:
        raise UnitsError(f"{what} must be a 1-D sequence, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise UnitsError(f"{what} must be integers, got {a.dtype}")
    return a.astype(np.int64, copy=False)


def deduplicate(units: UnitsLike) -> tuple[list[int], list[int]]:
    """Collapse runs of repeated units: ``[1,1,2,2,2,3,1] -> ([1,2,3,1], [2,3,1,1])`` (unit, frames)."""
    a = _as_int_array(units)
    if a.size == 0:
        return [], []
    starts = np.flatnonzero(np.concatenate(([True], a[1:] != a[:-1])))
    durations = np.diff(np.append(starts, a.size))
    return a[starts].tolist(), durations.tolist()


def expand(units: UnitsLike, durations: UnitsLike) -> list[int]:
    """Undo :func:`deduplicate`: repeat each unit for its duration in frames."""
    u, d = _as_int_array(units), _as_int_array(durations, "durations")
    if u.shape != d.shape:
        raise UnitsError(f"{u.size} units but {d.size} durations")
    if d.size and d.min() < 1:
        raise UnitsError(f"durations must be >= 1 frame, got {int(d.min())}")
    return np.repeat(u, d).tolist()


def units_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The format of a units file: ``fmt`` if given, else JSONL for ``.jsonl``/``.ndjson``, else text."""
    if fmt is None:
        fmt = "jsonl" if Path(path).suffix.lower() in (".jsonl", ".ndjson") else "txt"
    if fmt not in UNIT_FORMATS:
        raise UnitsError(f"unknown units format {fmt!r}; choose from {', '.join(UNIT_FORMATS)}")
    return fmt


def _frames_of(utt: str, value: Units | UnitsLike) -> list[int]:
    if isinstance(value, Units):
        return value.frames()
    return _as_int_array(value, f"units of {utt}").tolist()


def write_units(
    path: str | os.PathLike,
    units: Mapping[str, Units | UnitsLike],
    dedup: bool = False,
    fmt: str | None = None,
    *,
    force: bool = False,
    **info: Any,
) -> Path:
    """Write ``{utt: units}`` to ``path`` atomically, then its sidecar with ``info`` (k, layer, model, ...).

    Values are frame-level sequences (list, array, tensor) or :class:`Units` (expanded first), so
    ``write_units(p, read_units(q))`` converts between formats and de-duplication losslessly. With
    ``dedup`` the runs are collapsed and their durations stored. Utterances are written sorted by id.
    An existing ``path`` is replaced only with ``force`` (:func:`~spidrkit.io.refuse_overwrite`).
    """
    path = Path(path)
    refuse_overwrite([path], force, "write units")
    fmt = units_format(path, fmt)
    lines = []
    for utt in sorted(units):
        if not isinstance(utt, str) or not utt:
            raise UnitsError(f"utterance ids must be non-empty strings, got {utt!r}")
        frames = _frames_of(utt, units[utt])
        u, d = deduplicate(frames) if dedup else (frames, None)
        if fmt == "jsonl":
            record: dict[str, Any] = {"utt": utt, "units": u}
            if d is not None:
                record["durations"] = d
            lines.append(json.dumps(record))
        else:
            if len(utt.split()) != 1 or utt != utt.strip():
                raise UnitsError(f"utterance id {utt!r} contains whitespace: use the JSONL format")
            tokens = map(str, u) if d is None else (f"{x}*{n}" for x, n in zip(u, d))
            lines.append(" ".join([utt, *tokens]))
    write_lines_atomic(path, lines)
    write_sidecar(path, format=fmt, dedup=dedup, num_utterances=len(lines), **info)
    return path


MAX_UNIT = 2**63 - 1  # units and durations are int64 once in numpy
MAX_FRAMES = 10**8  # frames of one utterance (23 days at 50 Hz): durations beyond are not the runs of an utterance


def _checked(units: list[int], durations: list[int] | None, where: str) -> Units:
    """``Units`` once ``units`` are indices in [0, 2**63) and ``durations`` (if any) one per unit, each >= 1
    frame, adding up to at most :data:`MAX_FRAMES`; else a :class:`UnitsError` starting with ``where``."""
    if bad := [u for u in units if not 0 <= u <= MAX_UNIT]:
        raise UnitsError(f"{where}: units are cluster indices, integers in [0, 2**63), got {bad[0]}")
    if durations is None:
        return Units(units)
    if len(durations) != len(units) or any(n < 1 for n in durations):
        raise UnitsError(f"{where}: need one duration >= 1 frame per unit ({len(units)} units, "
                         f"{len(durations)} durations)")
    if sum(durations) > MAX_FRAMES:
        raise UnitsError(f"{where}: the durations add up to {sum(durations)} frames, more than {MAX_FRAMES}: "
                         "not the runs of one utterance")
    return Units(units, durations)


def km_units(line: str, where: str) -> list[int]:
    """The units of one line of a fairseq ``.km`` file (integers separated by spaces)."""
    try:
        units = [int(t) for t in line.split()]
    except ValueError:
        raise UnitsError(f"{where}: a .km line holds integer units only, got {line.strip()[:40]!r}") from None
    return _checked(units, None, where).units


def _parse_text_line(line: str, where: str) -> tuple[str, Units]:
    utt, *tokens = line.split()
    starred = sum("*" in t for t in tokens)
    if starred not in (0, len(tokens)):
        raise UnitsError(f"{where}: mixes 'unit' and 'unit*duration' tokens")
    try:
        if not starred:
            return utt, _checked([int(t) for t in tokens], None, where)
        pairs = [t.split("*") for t in tokens]
        units, durations = [int(u) for u, _ in pairs], [int(n) for _, n in pairs]
    except ValueError as e:
        raise UnitsError(f"{where}: bad unit token ({e})") from e
    return utt, _checked(units, durations, where)


def _int_list(value: object, what: str, where: str) -> list[int]:
    if not isinstance(value, list) or any(type(x) is not int for x in value):
        raise UnitsError(f"{where}: {what} must be a list of integers, got {str(value)[:60]}")
    return value


def _parse_json_line(line: str, where: str) -> tuple[str, Units]:
    record = parse_json(line, where, UnitsError)
    if not isinstance(record, dict) or "utt" not in record or "units" not in record:
        raise UnitsError(f"{where}: expected {{'utt': ..., 'units': [...]}}, got {line.strip()[:60]}")
    utt, durations = record["utt"], record.get("durations")
    if not isinstance(utt, str) or not utt:
        raise UnitsError(f"{where}: 'utt' must be a non-empty string")
    units = _int_list(record["units"], "units", where)
    return utt, _checked(units, None if durations is None else _int_list(durations, "durations", where), where)


def read_units(path: str | os.PathLike, fmt: str | None = None) -> dict[str, Units]:
    """Read a units file (text or JSONL) as ``{utt: Units(units, durations)}``, in file order.

    ``durations`` is ``None`` for frame-level lines; ``.frames()`` gives the frame-level units either way.
    """
    path = Path(path)
    if not path.is_file():
        raise UnitsError(f"no units file at {path}")
    fmt = units_format(path, fmt)
    parse = _parse_json_line if fmt == "jsonl" else _parse_text_line
    out: dict[str, Units] = {}
    for lineno, line in enumerate(read_lines(path, UnitsError), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        utt, units = parse(line, where)
        if utt in out:
            raise UnitsError(f"{where}: utterance {utt!r} appears twice")
        out[utt] = units
    return out
