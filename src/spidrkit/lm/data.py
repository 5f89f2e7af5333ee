"""The unit LM's data: unit files in, token sequences and batches out.

Unit files: what ``spidrkit extract`` writes (``units.txt``: ``utt u1 u2 ...``, ``units.jsonl``; read with
:func:`spidrkit.extraction.units.read_units`, frame-level or de-duplicated with durations alike) and
fairseq ``.km`` (one line of units per utterance, no id: utterance ``FILE:LINE``). ``k``: ``lm.k`` when
set, else the ``k`` of the files' sidecars (``UNITS.json``; for ``.km``, the entries of ``dict.km.txt``
beside it), else the largest unit + 1 with a warning.

Batches (:class:`Batcher`) are a pure function of ``(seed, micro-batch index)``: the order of an epoch is a
permutation seeded by ``(seed, epoch)``, so a resumed run reads exactly the batches the uninterrupted run
would have read, with no loader state in the checkpoint. ``pad``: one utterance per row (an utterance
longer than ``context`` tokens is cut into windows of ``context``), rows padded with ``pad = 0`` to the
longest of the batch (a multiple of 8, at most ``context``), the attention mask 0 and the labels -100 on
padding. ``pack``: the epoch's utterances (each ``bos ... eos``) concatenated and cut into rows of exactly
``context`` tokens; attention spans utterance boundaries (fairseq's LM recipe), there is no padding.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from spidrkit.extraction.units import UnitsError, km_units, read_units
from spidrkit.io import read_sidecar
from spidrkit.lm.vocab import PAD, UnitVocab
from spidrkit.text_in import read_lines

IGNORE = -100
Corpus = list[tuple[str, list[int]]]  # (utterance id, frame-level units)


def _read_km(path: Path) -> Corpus:
    return [(f"{path.name}:{i}", km_units(line, f"{path}:{i}"))
            for i, line in enumerate(read_lines(path, UnitsError), 1) if line.strip()]


def _k_of_file(path: Path) -> int | None:
    """The ``k`` recorded beside a units file: its sidecar's ``k``, or the entries of a fairseq dict."""
    if path.suffix == ".km":
        d = path.with_name("dict.km.txt")
        k = sum(1 for line in read_lines(d, UnitsError) if line.strip()) if d.is_file() else None
    else:
        try:
            k = read_sidecar(path).get("k")
        except (FileNotFoundError, ValueError):  # no sidecar, or not one spidrkit wrote (SidecarError)
            return None
    return k if isinstance(k, int) and not isinstance(k, bool) and k >= 1 else None


def read_corpus(paths: Sequence[str | os.PathLike]) -> tuple[Corpus, int | None]:
    """The utterances of every file, in order, and the ``k`` their sidecars agree on (``None`` if none says).
    Files that state different ``k`` are a :class:`UnitsError`."""
    corpus: Corpus = []
    ks: dict[int, Path] = {}
    for p in map(Path, paths):
        if not p.is_file():
            raise UnitsError(f"no units file at {p}")
        if p.suffix == ".km":
            corpus += _read_km(p)
        else:
            corpus += [(utt, u.frames()) for utt, u in read_units(p).items()]
        if (k := _k_of_file(p)) is not None:
            ks.setdefault(k, p)
    if len(ks) > 1:
        raise UnitsError("the units files were made with different k: "
                         + ", ".join(f"{p} k={k}" for k, p in ks.items()) + " (train on units of one k-means)")
    return corpus, next(iter(ks), None)


def choose_k(configured: int, stated: int | None, corpora: Sequence[Corpus]) -> int:
    """``lm.k`` if set, else the files' ``k``, else the largest unit + 1 (with a warning)."""
    if configured:
        return configured
    if stated is not None:
        return stated
    top = max((max(u) for corpus in corpora for _, u in corpus if u), default=0)
    warnings.warn(f"no k in the units files' sidecars: using the largest unit + 1 = {top + 1} "
                  "(set lm.k=K to fix it)", stacklevel=2)
    return top + 1


def split_valid(corpus: Corpus, fraction: float, seed: int) -> tuple[Corpus, Corpus]:
    """(train, valid): a seeded ``fraction`` of the utterances held out (at least one when ``fraction > 0``
    and there are two or more), the rest in file order."""
    if fraction <= 0 or len(corpus) < 2:
        return corpus, []
    n = min(len(corpus) - 1, max(1, round(fraction * len(corpus))))
    held = set(np.random.default_rng([seed, 7]).permutation(len(corpus))[:n].tolist())
    return [c for i, c in enumerate(corpus) if i not in held], [c for i, c in enumerate(corpus) if i in held]


def encode_corpus(corpus: Corpus, vocab: UnitVocab) -> list[list[int]]:
    return [vocab.encode(units, where=utt) for utt, units in corpus]


def _windows(seq: list[int], context: int) -> list[list[int]]:
    return [seq[i : i + context] for i in range(0, len(seq), context) if len(seq[i : i + context]) > 1]


def pad_batch(rows: Sequence[Sequence[int]], context: int) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and ``labels`` (-100 on padding) of rows padded with ``pad``."""
    width = min(context, -(-max(len(r) for r in rows) // 8) * 8)
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, IGNORE)}


class Batcher:
    """Micro-batches of ``batch_size`` rows over endless epochs; :meth:`__getitem__` by global index."""

    def __init__(self, sequences: list[list[int]], batch_size: int, context: int, mode: str, seed: int) -> None:
        if not sequences:
            raise UnitsError("no training utterances (the units files are empty, or all were held out)")
        self.sequences, self.batch_size, self.context, self.mode, self.seed = (
            sequences, batch_size, context, mode, seed)
        self._epoch: tuple[int, list[list[list[int]]]] | None = None
        self.per_epoch = len(self._rows(0)) // batch_size or 1

    def _rows(self, epoch: int) -> list[list[int]]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.sequences)).tolist()
        if self.mode == "pack":
            stream = [t for i in order for t in self.sequences[i]]
            rows = [stream[i : i + self.context] for i in range(0, len(stream), self.context)]
            return rows[:-1] if len(rows) > 1 and len(rows[-1]) < self.context else rows
        return [w for i in order for w in _windows(self.sequences[i], self.context)]

    def _epoch_batches(self, epoch: int) -> list[list[list[int]]]:
        if self._epoch is None or self._epoch[0] != epoch:
            rows = self._rows(epoch)
            if len(rows) < self.batch_size:  # a corpus smaller than one batch: every row, every batch
                rows = (rows * (self.batch_size // len(rows) + 1))[: self.batch_size]
            batches = [rows[i : i + self.batch_size] for i in range(0, self.per_epoch * self.batch_size,
                                                                      self.batch_size)]
            self._epoch = (epoch, batches)
        return self._epoch[1]

    def _rows_of(self, index: int) -> list[list[int]]:
        epoch, within = divmod(index, self.per_epoch)
        return self._epoch_batches(epoch)[within]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return pad_batch(self._rows_of(index), self.context)

    def predicted_tokens(self, index: int) -> int:
        """The tokens micro-batch ``index`` predicts (every token of a row but its first), without building it:
        each rank counts those of every rank, so an update is normalised over all of them with no exchange."""
        return sum(len(r) - 1 for r in self._rows_of(index))


def valid_batches(sequences: list[list[int]], batch_size: int, context: int) -> list[dict[str, torch.Tensor]]:
    """The validation set in file order, one utterance (window) per row, whatever the training batching."""
    rows = [w for s in sequences for w in _windows(s, context)]
    return [pad_batch(rows[i : i + batch_size], context) for i in range(0, len(rows), batch_size)]
