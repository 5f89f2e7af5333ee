"""Readers of the spoken-LM benchmarks: ZeroSpeech 2021 sWUGGY / sBLIMP, spoken StoryCloze, synthetic tSC.

A benchmark folder holds one or more task folders (``docs/formats.md``, "sLM benchmarks and submissions"):

- ``lexical/{dev,test}/*.wav`` + ``gold.csv`` (``id, filename, word, phones, correct, frequency, voice,
  length``): sWUGGY, a word (``correct`` 1) against a non-word (0) per ``id`` and ``voice``;
- ``syntactic/{dev,test}/*.wav`` + ``gold.csv`` (``id, filename, voice, type, subtype, correct,
  transcription``): sBLIMP, a grammatical (1) against an ungrammatical (0) sentence;
- ``storycloze/{dev,test}/*.wav`` + ``gold.csv`` (``id, filename, voice, correct, topic, transcription``):
  the synthetic topic StoryCloze, a whole story with its true ending (1) against one with an other-topic
  ending (0);
- the published spoken StoryCloze (Hassid et al. 2023): ``sSC/`` and/or ``tSC/`` folders of whole-story
  wavs, two per story, named ``<n>_..._correct.wav`` / ``<n>_..._incorrect.wav`` (``<n>``: the story
  index before the first ``_``); the ending is read from the ``correct`` / ``incorrect`` word of the name.

A split without ``gold.csv`` (the ZeroSpeech test splits) is read from its wavs alone: it is scored for the
submission files but not evaluated. ``BENCHMARK`` may also be one task folder, or one published
``sSC``/``tSC`` folder. Every wav a gold file names must exist; a missing column or wav is one
:class:`BenchmarkError` naming the file.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from spidrkit.errors import InputError
from spidrkit.text_in import read_text

TASKS = ("lexical", "syntactic", "storycloze")
SPLITS = ("dev", "test")
PUBLISHED_STORYCLOZE = ("sSC", "tSC")
COLUMNS = {
    "lexical": ("id", "filename", "word", "phones", "correct", "frequency", "voice", "length"),
    "syntactic": ("id", "filename", "voice", "type", "subtype", "correct", "transcription"),
    "storycloze": ("id", "filename", "voice", "correct", "topic", "transcription"),
}
GOLD = "gold.csv"


class BenchmarkError(InputError):
    """A benchmark folder that does not have the expected layout, columns or files."""


@dataclass
class Item:
    """One audio of a benchmark: ``filename`` is the wav's stem (what a submission line names)."""

    filename: str
    path: Path
    pair: str | None = None  # the pair id (gold.csv ``id``)
    voice: str = ""
    correct: bool | None = None
    attrs: dict[str, str] = field(default_factory=dict)  # the other gold columns


@dataclass
class Split:
    """The items of one task and split; ``gold`` says whether they carry labels (scored vs only submitted)."""

    task: str
    split: str
    folder: Path
    items: list[Item]
    gold: bool


def _read_gold(task: str, folder: Path) -> list[Item]:
    path = folder / GOLD
    reader = csv.DictReader(io.StringIO(read_text(path, BenchmarkError), newline=""))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in COLUMNS[task] if c not in header]
        if missing:
            raise BenchmarkError(f"{path}: no column {', '.join(repr(c) for c in missing)} (a {task} gold.csv has "
                                 f"the columns {', '.join(COLUMNS[task])})")
        if twice := sorted({h for h in header if header.count(h) > 1}):
            raise BenchmarkError(f"{path}:1: the header names {', '.join(map(repr, twice))} more than once")
        items = [_gold_item(task, folder, row, f"{path}, line {reader.line_num}") for row in reader]
    except csv.Error as e:
        raise BenchmarkError(f"{path}, line {reader.line_num}: not CSV ({e})") from None
    if not items:
        raise BenchmarkError(f"{path}: no rows")
    return items


def _gold_item(task: str, folder: Path, row: dict, where: str) -> Item:
    """One row of a gold file (``where``: the file and line, for the messages)."""
    if None in row:
        raise BenchmarkError(f"{where}: more cells than the header's columns (quote a cell that holds a comma)")
    row = {k.strip(): (v or "").strip() for k, v in row.items()}
    if row["correct"] not in ("0", "1"):
        raise BenchmarkError(f"{where}: 'correct' must be 0 or 1, got {row['correct']!r:.40}")
    wav = folder / f"{row['filename']}.wav"
    if not _is_file(wav):
        raise BenchmarkError(f"{where}: no audio {wav} for the file {row['filename']!r:.80}")
    extra = {k: row[k] for k in COLUMNS[task] if k not in ("id", "filename", "voice", "correct")}
    return Item(row["filename"], wav, row["id"], row["voice"], row["correct"] == "1", extra)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system: no such file either
        return False


def _read_wavs(folder: Path) -> list[Item]:
    wavs = sorted(folder.glob("*.wav"))
    if not wavs:
        raise BenchmarkError(f"{folder}: neither {GOLD} nor .wav files")
    return [Item(w.stem, w) for w in wavs]


_STORY = re.compile(r"^(\d+)_")


def read_published_storycloze(folder: Path) -> Split:
    """A published ``sSC`` / ``tSC`` folder: two wavs per story index, ``correct`` vs ``incorrect``."""
    stories: dict[str, list[Path]] = {}
    for wav in sorted(folder.glob("*.wav")):
        m = _STORY.match(wav.stem)
        if m is None:
            raise BenchmarkError(f"{wav}: a spoken StoryCloze file name starts with the story index, '<n>_'")
        stories.setdefault(m.group(1), []).append(wav)
    if not stories:
        raise BenchmarkError(f"{folder}: no .wav files")
    items = []
    for n, wavs in sorted(stories.items(), key=lambda kv: int(kv[0])):
        marks = [set(w.stem.lower().split("_")) & {"correct", "incorrect"} for w in wavs]
        if len(wavs) != 2 or sorted(next(iter(m), "") for m in marks) != ["correct", "incorrect"] \
                or any(len(m) != 1 for m in marks):
            names = ", ".join(w.name for w in wavs)
            raise BenchmarkError(f"{folder}: story {n} has {names}; expected one '{n}_..._correct.wav' and one "
                                 f"'{n}_..._incorrect.wav'")
        items += [Item(w.stem, w, n, "", "correct" in m, {}) for w, m in zip(wavs, marks)]
    return Split("storycloze", folder.name, folder, items, True)


def read_split(task: str, folder: Path) -> Split:
    folder = Path(folder)
    if (folder / GOLD).is_file():
        return Split(task, folder.name, folder, _read_gold(task, folder), True)
    return Split(task, folder.name, folder, _read_wavs(folder), False)


def _task_splits(task: str, folder: Path) -> list[Split]:
    splits = [read_split(task, folder / s) for s in SPLITS if (folder / s).is_dir()]
    if not splits:
        raise BenchmarkError(f"{folder}: no {' or '.join(SPLITS)} folder (a {task} task holds {task}/dev/*.wav "
                             f"and {GOLD})")
    return splits


def read_benchmark(root: str | Path) -> list[Split]:
    """Every task and split under ``root`` (see the module doc), in a fixed order."""
    root = Path(root)
    if not root.is_dir():
        raise BenchmarkError(f"no benchmark folder at {root}")
    if root.name in TASKS and any((root / s).is_dir() for s in SPLITS):
        return _task_splits(root.name, root)
    if root.name in PUBLISHED_STORYCLOZE:
        return [read_published_storycloze(root)]
    out: list[Split] = []
    for task in TASKS:
        if (root / task).is_dir():
            out += _task_splits(task, root / task)
    out += [read_published_storycloze(root / n) for n in PUBLISHED_STORYCLOZE if (root / n).is_dir()]
    if not out:
        raise BenchmarkError(f"{root}: no benchmark task (expected {', '.join(f'{t}/' for t in TASKS)} with "
                             f"dev/ or test/ splits, or the spoken StoryCloze folders sSC/, tSC/)")
    return out


def benchmark_record(root: str | Path, splits: list[Split]) -> dict:
    """What an ``evaluate slm`` report records of its benchmark: the folder as given, ``benchmark_id`` (a hash of
    every split's task, name, audio names and gold.csv bytes: the same benchmark copied elsewhere keeps it) and
    ``splits`` (task, split, files, gold); ``slm-compare`` refuses reports of different benchmarks by them."""
    import hashlib

    digest = hashlib.sha256()
    for s in splits:
        digest.update(f"{s.task}/{s.split}:{len(s.items)}\n".encode())
        digest.update("\n".join(sorted(it.filename for it in s.items)).encode())
        gold = s.folder / GOLD
        if s.gold and gold.is_file():
            digest.update(gold.read_bytes())
    return {"benchmark": str(root), "benchmark_id": digest.hexdigest()[:16],
            "splits": [{"task": s.task, "split": s.split, "files": len(s.items), "gold": s.gold} for s in splits]}
