"""Audio in memory as input: arrays with their sample rate, lists or dicts of them, a ``datasets.Dataset``.

:func:`~spidrkit.extract` and :func:`~spidrkit.speech_to_units` read, besides files:

- one array (numpy, torch, or a list of numbers for :func:`~spidrkit.speech_to_units`) with ``sample_rate``;
- a list of arrays (file ids ``0``, ``1``, ... zero-padded to one width, so they sort as they came), or a dict
  ``{file id: array}``; ``sample_rate`` is one rate for all or one per array;
- a ``datasets.Dataset`` whose ``audio_column`` (default ``"audio"``) holds, per row, a dict
  ``{"array": samples, "sampling_rate": rate}`` (a decoder object with ``get_all_samples()`` also works);
  the file ids are the ``id_column``'s values, else the zero-padded row numbers. The ``datasets`` package is
  never imported: a Dataset is recognised by its ``column_names`` and ``features``.

Every waveform becomes model input through :func:`~spidrkit.data.corpora.audio.array_audio`: the checks of a
decoded file (one channel, not empty, finite) and the same soxr resampling, so an array gives the features of
the same audio written to a file. Extraction plans by length before loading anything, so
:func:`array_entries` checks every input first (a Dataset row is decoded then and again when its batch runs:
memory holds one batch) and names each entry by a digest of its samples, which is what a resumed extraction
compares.
"""

from __future__ import annotations

import hashlib
import numbers
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from spidrkit.data.corpora.audio import array_audio, load_audio, mono_array
from spidrkit.data.corpora.manifest import ManifestEntry, resampled_length
from spidrkit.extraction.plan import ExtractionError

Rates = int | Sequence[int] | None


@dataclass(frozen=True)
class ArrayInputs:
    """How in-memory inputs are read: their ``sample_rate`` (one for all, or one per array; a Dataset's rows
    carry their own), the Dataset's ``audio_column`` and ``id_column`` (None: row numbers)."""

    sample_rate: Rates = None
    audio_column: str = "audio"
    id_column: str | None = None


def is_dataset(x: object) -> bool:
    """A ``datasets.Dataset`` or ``IterableDataset`` (or anything shaped like one): columns and features."""
    return hasattr(x, "column_names") and hasattr(x, "features")


def is_array(x: object) -> bool:
    return isinstance(x, np.ndarray | torch.Tensor)


def is_memory_input(x: object) -> bool:
    """Whether :func:`array_entries` reads ``x`` (an array, a list or dict of arrays, a Dataset)."""
    if is_array(x) or is_dataset(x):
        return True
    if isinstance(x, Mapping):
        return bool(x) and all(is_array(v) for v in x.values())
    return isinstance(x, list | tuple) and bool(x) and all(is_array(v) for v in x)


def _rate(rate: object, what: str) -> int:
    if rate is None:
        raise ExtractionError(f"{what} has no sample rate: pass sample_rate= (the rate it was recorded or decoded "
                              "at, e.g. sample_rate=16000); it is resampled to the model's rate if it differs")
    if isinstance(rate, np.ndarray | torch.Tensor) and rate.ndim == 0:  # a rate read as numpy (a Dataset's rows)
        rate = rate.item()
    if isinstance(rate, bool) or not isinstance(rate, numbers.Integral | np.integer) or int(rate) <= 0:
        raise ExtractionError(f"{what}: the sample rate must be a positive whole number of Hz, got {rate!r}")
    return int(rate)


def padded_ids(n: int) -> list[str]:
    """``0 .. n-1`` zero-padded to one width (``00 .. 11`` for 12), so the ids sort in their order."""
    return [str(i).zfill(len(str(n - 1))) for i in range(n)]


class _Arrays:
    """Arrays held by the caller: ``(file id, samples, rate)`` per input."""

    def __init__(self, inputs: Any, rates: Rates) -> None:
        if isinstance(inputs, Mapping):
            self.ids, self.items = [str(k) for k in inputs], list(inputs.values())
        else:
            self.items = [inputs] if is_array(inputs) or not isinstance(inputs, list | tuple) else list(inputs)
            self.ids = padded_ids(len(self.items))
        if isinstance(rates, Sequence) and not isinstance(rates, str):
            if len(rates) != len(self.items):
                raise ExtractionError(f"{len(rates)} sample rates for {len(self.items)} arrays: pass one rate for "
                                      "all, or one per array")
            self.rates = list(rates)
        else:
            self.rates = [rates] * len(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def name(self, i: int) -> str:
        return f"array {self.ids[i]}"

    def raw(self, i: int) -> tuple[Any, int]:
        return self.items[i], _rate(self.rates[i], self.name(i))


class _Dataset:
    """A ``datasets.Dataset``'s audio column, read row by row as numpy (never the whole column at once)."""

    def __init__(self, ds: Any, column: str, id_column: str | None) -> None:
        names = list(ds.column_names)
        for what, col in (("audio_column", column), ("id_column", id_column)):
            if col is not None and col not in names:
                raise ExtractionError(f"the dataset has no column {col!r} (its columns: {', '.join(names)}): pass "
                                      f"{what}= naming one")
        keep = [c for c in dict.fromkeys((column, id_column)) if c is not None]
        if hasattr(ds, "select_columns"):
            ds = ds.select_columns(keep)
        self.ds = ds.with_format("numpy") if hasattr(ds, "with_format") else ds
        self.column, self.id_column = column, id_column
        n = len(ds)
        self.ids = [str(v) for v in self.ds[id_column]] if id_column else padded_ids(n)

    def __len__(self) -> int:
        return len(self.ids)

    def name(self, i: int) -> str:
        return f"dataset row {i} ({self.column!r}, id {self.ids[i]})"

    def raw(self, i: int) -> tuple[Any, int]:
        value = self.ds[i][self.column]
        if hasattr(value, "get_all_samples"):  # a decoder object (torchcodec's AudioDecoder)
            samples = value.get_all_samples()
            return samples.data, _rate(samples.sample_rate, self.name(i))
        if not isinstance(value, Mapping) or "array" not in value:
            raise ExtractionError(f"{self.name(i)}: expected an audio dict {{'array': samples, 'sampling_rate': "
                                  f"rate}}, got {type(value).__name__}: pass audio_column= naming the audio column")
        return value["array"], _rate(value.get("sampling_rate"), self.name(i))


Source = _Arrays | _Dataset


def memory_source(inputs: Any, how: ArrayInputs) -> Source:
    """The in-memory inputs ``inputs`` as a source of ``(samples, rate)`` by index; their ids unique."""
    if is_dataset(inputs):
        if not hasattr(inputs, "__len__") or not hasattr(inputs, "__getitem__"):
            raise ExtractionError("a streamed dataset (IterableDataset) has no length and no rows by index: load it "
                                  "without streaming=True, or make a Dataset of the rows you need")
        if how.sample_rate is not None:
            raise ExtractionError("a dataset's rows carry their own sampling_rate: do not pass sample_rate=")
        source: Source = _Dataset(inputs, how.audio_column, how.id_column)
    else:
        source = _Arrays(inputs, how.sample_rate)
    if len(source) == 0:
        raise ExtractionError(f"no audio in the inputs (an empty {type(inputs).__name__})")
    if dup := [i for i, n in Counter(source.ids).items() if n > 1]:
        raise ExtractionError(f"the file id {dup[0]!r} appears more than once in the inputs "
                              f"(id_column={how.id_column!r})")
    return source


def waveform(source: Source, i: int, sample_rate: int) -> torch.Tensor:
    """Input ``i`` of ``source`` as model input at ``sample_rate`` (checked, resampled with soxr); a path among
    arrays (:func:`~spidrkit.speech_to_units` takes them) is decoded by :func:`~spidrkit.load_audio`."""
    if isinstance(source, _Arrays) and isinstance(source.items[i], str | os.PathLike):
        return load_audio(source.items[i], sample_rate)
    samples, rate = source.raw(i)
    return array_audio(samples, rate, sample_rate, source.name(i))


@dataclass(frozen=True)
class ArrayEntry(ManifestEntry):
    """An entry of in-memory audio: ``path`` names it (with a digest of its samples), ``waveform()`` reads it."""

    source: Any = field(default=None, compare=False, repr=False)
    index: int = 0

    def waveform(self, sample_rate: int) -> torch.Tensor:
        return waveform(self.source, self.index, sample_rate)


def array_entries(inputs: Any, sample_rate: int, how: ArrayInputs | None = None) -> list[ArrayEntry]:
    """Entries for extraction of in-memory ``inputs`` (see the module doc), each checked, its length at the
    model's ``sample_rate`` known (planning by length) and its samples digested (resuming compares them)."""
    source = memory_source(inputs, how or ArrayInputs())
    out = []
    for i in range(len(source)):
        samples, rate = source.raw(i)
        x = mono_array(samples, source.name(i))
        digest = hashlib.sha256(x.tobytes() + f"@{rate}".encode()).hexdigest()[:16]
        out.append(ArrayEntry(source.ids[i], f"<{source.name(i)}, {rate} Hz, sha256 {digest}>",
                              resampled_length(x.shape[0], rate, sample_rate), source=source, index=i))
    return out


def inputs_label(inputs: object, num_files: int) -> str:
    """What a sidecar says the inputs were: the manifest or folder, or what held them in memory."""
    if isinstance(inputs, str | os.PathLike):
        return str(inputs)
    if is_dataset(inputs):
        return f"{num_files} rows of a dataset"
    return f"{num_files} arrays" if is_memory_input(inputs) else f"{num_files} entries"
