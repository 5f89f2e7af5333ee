"""Time alignments, frame labels and ABX item files: reading and writing the text formats.

In memory an alignment is ``dict[utt, list[Interval]]`` (:data:`Alignments`; an :class:`Interval` is the
named tuple ``(onset, offset, label)``, seconds, sorted by onset), the same for phones and words, with the
speaker of each utterance in a ``dict[utt, speaker]`` beside it. It is the one alignment type of spidrkit:
corpora, the synthesiser and the evaluation (word MAP, phone embeddings) all use it. The formats on disk:

- alignment file: one interval a line, ``utt onset offset label [speaker]``, whitespace separated, times
  in seconds (the ZeroSpeech / Libri-Light layout; '#' lines and a header line are skipped).
- frame labels: one utterance a line, ``utt l1 l2 ...``, label i being the phone at the centre of frame i,
  i.e. at time (i + 0.5) / rate (100 Hz: 10 ms frames). An utterance of N samples at ``sample_rate`` has
  ``N * rate // sample_rate`` frames. Integer labels (the CPC ``converted_aligned_phones.txt`` files) read
  as strings.
- item file (ZeroSpeech / fastabx, space separated, with the header
  ``#file onset offset #phone prev-phone next-phone speaker``): one triphone a line; onset and offset are
  those of the centre phone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from spidrkit.config import SAMPLE_RATE
from spidrkit.data.corpora.phones import SILENCES
from spidrkit.errors import InputError
from spidrkit.io import write_lines_atomic
from spidrkit.text_in import read_lines


class Interval(NamedTuple):
    """One aligned phone or word of an utterance, times in seconds (a plain ``(onset, offset, label)``)."""

    onset: float
    offset: float
    label: str


Alignments = dict[str, list[Interval]]
LABEL_RATE = 100  # frame labels: one per 10 ms

ITEM_HEADER = ("#file", "onset", "offset", "#phone", "prev-phone", "next-phone", "speaker")
TIME_DECIMALS = 4


class AlignmentError(InputError):
    pass


@dataclass(frozen=True)
class Item:
    """One ABX item: a centre phone with its neighbours, in a file, said by a speaker."""

    file: str
    onset: float
    offset: float
    phone: str
    prev: str
    next: str
    speaker: str


def _fmt(t: float) -> str:
    return f"{t:.{TIME_DECIMALS}f}"


def _data_lines(path: Path):
    """(line number, fields) of the non-blank, non-comment lines of a text file."""
    if not path.is_file():
        raise AlignmentError(f"no file at {path}")
    for i, line in enumerate(read_lines(path, AlignmentError), start=1):
        s = line.strip()
        if s and not s.startswith("#"):
            yield i, s.split()


def _checked_times(on: float, off: float, path: Path, line: int) -> tuple[float, float]:
    """``(onset, offset)`` in seconds: finite, onset >= 0 and offset >= onset, else an AlignmentError."""
    if not (math.isfinite(on) and math.isfinite(off)) or on < 0:
        raise AlignmentError(f"{path}:{line}: onset/offset must be finite times in seconds >= 0, got {on} {off}")
    if off < on:
        raise AlignmentError(f"{path}:{line}: offset {off} before onset {on}")
    return on, off


# --- alignment files -----------------------------------------------------------------------------------


def write_alignments(path: str | os.PathLike, alignments: Mapping[str, list[Interval]],
                     speakers: Mapping[str, str] | None = None) -> Path:
    """Write ``utt onset offset label [speaker]`` lines, utterances in the mapping's order, atomically."""

    def lines():
        for utt, intervals in alignments.items():
            spk = f" {speakers[utt]}" if speakers is not None else ""
            for on, off, label in intervals:
                yield f"{utt} {_fmt(on)} {_fmt(off)} {label}{spk}"

    return write_lines_atomic(path, lines())


def read_alignment_table(path: str | os.PathLike) -> tuple[Alignments, dict[str, str]]:
    """Alignments and the speaker of each utterance (when a 5th column gives it) of an alignment file.

    Accepts whitespace- or tab-separated ``utt onset offset label [speaker]`` with an optional header line.
    """
    path = Path(path)
    out: Alignments = {}
    speakers: dict[str, str] = {}
    first = True
    for i, fields in _data_lines(path):
        if len(fields) < 4:
            raise AlignmentError(f"{path}:{i}: expected 'utt onset offset label [speaker]', got {str(fields)[:120]}")
        try:
            on, off = float(fields[1]), float(fields[2])
        except ValueError as e:
            if first:  # a header line such as 'file onset offset phone'
                first = False
                continue
            raise AlignmentError(f"{path}:{i}: onset/offset are not numbers: {str(fields[1:3])[:80]}") from e
        first = False
        on, off = _checked_times(on, off, path, i)
        out.setdefault(fields[0], []).append(Interval(on, off, fields[3]))
        if len(fields) >= 5:
            speakers[fields[0]] = fields[4]
    for intervals in out.values():
        intervals.sort(key=lambda x: x[0])
    return out, speakers


def read_alignments(path: str | os.PathLike) -> Alignments:
    """``{utt: [(onset, offset, label), ...]}`` from an alignment file (see ``read_alignment_table``)."""
    return read_alignment_table(path)[0]


def as_alignments(intervals: Mapping[str, Sequence[tuple[float, float, str]]]) -> Alignments:
    """``intervals`` (tuples or :class:`Interval`) as :data:`Alignments`, each utterance sorted by onset."""
    return {utt: sorted((Interval(*iv) for iv in ivs), key=lambda iv: iv.onset) for utt, ivs in intervals.items()}


def iter_intervals(alignments: Mapping[str, Sequence[Interval]]) -> Iterator[tuple[str, Interval]]:
    """``(utt, interval)`` of every interval, utterance by utterance."""
    for utt, intervals in alignments.items():
        for iv in intervals:
            yield utt, iv


def count_intervals(alignments: Mapping[str, Sequence[Interval]]) -> int:
    return sum(len(ivs) for ivs in alignments.values())


# --- frame labels ----------------------------------------------------------------------------------------


def num_frames(num_samples: int, sample_rate: int = SAMPLE_RATE, rate: int = LABEL_RATE) -> int:
    """Frames of 1/rate s in an utterance of ``num_samples`` samples (whole frames only)."""
    return num_samples * rate // sample_rate


def frame_labels(intervals: list[Interval], n_frames: int | None = None, rate: int = LABEL_RATE,
                 fill: str = "SIL") -> list[str]:
    """The label at the centre of each frame of 1/rate s; ``fill`` where no interval covers it.

    ``n_frames`` defaults to the frames up to the last offset.
    """
    if n_frames is None:
        n_frames = int(max((off for _, off, _ in intervals), default=0.0) * rate)
    labels = [fill] * n_frames
    for on, off, label in intervals:
        # frames whose centre (i + 0.5) / rate lies in [on, off)
        first = max(0, math.ceil(on * rate - 0.5))
        last = min(n_frames, math.ceil(off * rate - 0.5))
        for i in range(first, last):
            labels[i] = label
    return labels


def intervals_from_frames(labels: list[str], rate: int = LABEL_RATE) -> list[Interval]:
    """Runs of equal frame labels as intervals (the inverse of ``frame_labels`` up to 1/rate s)."""
    out: list[Interval] = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            out.append(Interval(start / rate, i / rate, labels[start]))
            start = i
    return out


def write_frame_labels(path: str | os.PathLike, table: Mapping[str, list[str]]) -> Path:
    """One line per utterance: ``utt l1 l2 ...``."""
    return write_lines_atomic(path, (" ".join([utt, *labels]) for utt, labels in table.items()))


def read_frame_labels(path: str | os.PathLike,
                      phone_map: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """``{utt: [label per frame]}``; ``phone_map`` renames labels (e.g. CPC integer ids to phones)."""
    out: dict[str, list[str]] = {}
    path = Path(path)
    for i, fields in _data_lines(path):
        if fields[0] in out:
            raise AlignmentError(f"{path}:{i}: utterance {fields[0]!r} appears twice")
        labels = fields[1:]
        if phone_map is not None:
            try:
                labels = [phone_map[x] for x in labels]
            except KeyError as e:
                raise AlignmentError(f"{path}:{i}: label {e.args[0]!r} missing from the phone map") from None
        out[fields[0]] = labels
    return out


# --- ABX item files ------------------------------------------------------------------------------------


def triphone_items(alignments: Mapping[str, list[Interval]], speakers: Mapping[str, str],
                   min_duration: float = 0.03, silences: Iterable[str] = SILENCES) -> list[Item]:
    """Every phone with a phone on each side in its utterance, silences and phones shorter than
    ``min_duration`` s excluded as centre phones (a silence may be a neighbour)."""
    silences = frozenset(silences)
    items = []
    for utt, intervals in alignments.items():
        for k in range(1, len(intervals) - 1):
            on, off, phone = intervals[k]
            if phone in silences or off - on < min_duration:
                continue
            items.append(Item(utt, on, off, phone, intervals[k - 1][2], intervals[k + 1][2], speakers[utt]))
    return items


def write_item_file(path: str | os.PathLike, items: Iterable[Item]) -> Path:
    """Write a ZeroSpeech/fastabx item file (space separated, with its header); use the ``.item`` suffix."""

    def lines():
        yield " ".join(ITEM_HEADER)
        for it in items:
            yield f"{it.file} {_fmt(it.onset)} {_fmt(it.offset)} {it.phone} {it.prev} {it.next} {it.speaker}"

    return write_lines_atomic(path, lines())


def read_item_file(path: str | os.PathLike) -> list[Item]:
    """The items of a ZeroSpeech/fastabx item file (header line required, as fastabx requires it)."""
    path = Path(path)
    if not path.is_file():
        raise AlignmentError(f"no item file at {path}")
    lines = read_lines(path, AlignmentError)
    header = lines[0].split() if lines else []
    if header[:3] != ["#file", "onset", "offset"] or len(header) < 7:
        raise AlignmentError(f"{path}:1: first line must be '{' '.join(ITEM_HEADER)}', got {str(header)[:120]}")
    items = []
    for i, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 7:
            raise AlignmentError(f"{path}:{i}: expected 7 fields, got {str(fields)[:120]}")
        try:
            on, off = float(fields[1]), float(fields[2])
        except ValueError as e:
            raise AlignmentError(f"{path}:{i}: onset/offset are not numbers: {str(fields[1:3])[:80]}") from e
        on, off = _checked_times(on, off, path, i)
        items.append(Item(fields[0], on, off, fields[3], fields[4], fields[5], fields[6]))
    return items


def alignments_from_items(items: Iterable[Item]) -> tuple[Alignments, dict[str, str]]:
    """The centre phones of items as (sparse) alignments, with each file's speaker."""
    out: Alignments = {}
    speakers: dict[str, str] = {}
    for it in items:
        out.setdefault(it.file, []).append(Interval(it.onset, it.offset, it.phone))
        speakers[it.file] = it.speaker
    for intervals in out.values():
        intervals.sort(key=lambda x: x[0])
    return out, speakers


# --- the evaluation files of a split ---------------------------------------------------------------------


def write_split_annotations(prefix: str | os.PathLike, phones: Mapping[str, list[Interval]],
                            speakers: Mapping[str, str], num_samples: Mapping[str, int],
                            sample_rate: int = SAMPLE_RATE, words: Mapping[str, list[Interval]] | None = None,
                            frame_rate: int = LABEL_RATE, min_duration: float = 0.03) -> dict[str, Path]:
    """Write ``PREFIX_phones.txt``, ``PREFIX_words.txt`` (with ``words``), ``PREFIX.item`` (triphones,
    centre phones >= ``min_duration`` s, silences excluded) and ``PREFIX_frames.txt`` (labels at
    ``frame_rate`` Hz); return their paths by kind."""
    prefix = Path(prefix)
    base = prefix.parent / prefix.name
    paths = {"phones": write_alignments(f"{base}_phones.txt", phones, speakers)}
    if words is not None:
        paths["words"] = write_alignments(f"{base}_words.txt", words, speakers)
    paths["item"] = write_item_file(f"{base}.item", triphone_items(phones, speakers, min_duration))
    frames = {
        utt: frame_labels(iv, num_frames(num_samples[utt], sample_rate, frame_rate), frame_rate)
        for utt, iv in phones.items()
    }
    paths["frames"] = write_frame_labels(f"{base}_frames.txt", frames)
    return paths
