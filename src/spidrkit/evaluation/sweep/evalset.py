"""The evaluation set of a sweep: the files of one or more splits of an aligned corpus and their merged
annotations (the layout of :mod:`spidrkit.data.synth.corpus`: ``SPLIT.csv``, ``SPLIT.item``, ``SPLIT_words.txt``,
``SPLIT_phones.txt``, ``SPLIT_frames.txt``), and the k-means fit set from the ``train`` split.

The merged annotation files are written to the set's folder (``eval.item``, ``eval_words.txt``,
``eval_phones.txt``, ``eval_frames.txt``) so that each number of a sweep can be recomputed with
``spidrkit evaluate abx|map|units``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spidrkit.data.corpora.alignments import (
    Alignments,
    Item,
    count_intervals,
    read_alignment_table,
    read_frame_labels,
    read_item_file,
    write_alignments,
    write_frame_labels,
    write_item_file,
)
from spidrkit.data.corpora.manifest import ManifestEntry, evenly_spaced_files, read_manifest
from spidrkit.evaluation.sweep.errors import SweepError
from spidrkit.io import write_sidecar

DEFAULT_SPLITS = ("dev", "heldout")
ANNOTATIONS = (".csv", ".item", "_words.txt", "_phones.txt", "_frames.txt")


@dataclass
class EvalSet:
    """The evaluation files of one or more splits and their merged annotations (written to ``root``):
    word and phone alignments (``{utt: [Interval]}``), the speaker of each file, 100 Hz phone labels."""

    root: Path
    entries: list[ManifestEntry]
    item_file: Path
    words: Alignments
    phones: Alignments
    speaker_of: dict[str, str]
    frame_labels: dict[str, list[str]]
    num_items: int

    def seconds(self, sample_rate: int) -> float:
        """Audio duration of the set for audio at ``sample_rate`` (the model's)."""
        return sum(e.num_samples for e in self.entries) / sample_rate

    @property
    def speakers(self) -> list[str]:
        return sorted({self.speaker_of[u] for u in self.phones if u in self.speaker_of})

    @property
    def num_words(self) -> int:
        return count_intervals(self.words)


def check_fileids(needed: Iterable[str], available: Collection[str], what: str, where: str) -> None:
    """Raise :class:`SweepError` naming a few of the ``needed`` ids missing from ``available``.

    ``what`` names the ids' source (e.g. "the item file"), ``where`` what should hold them ("the features").
    """
    missing = sorted(set(needed) - set(available))
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise SweepError(f"{len(missing)} files of {what} are missing from {where}: {shown} "
                         "(mismatched file ids?)")


def spread(entries: Sequence[ManifestEntry], n: int | None) -> list[ManifestEntry]:
    """At most ``n`` entries (:func:`~spidrkit.data.corpora.manifest.evenly_spaced_files`)."""
    if n is not None and n < 1:
        raise SweepError(f"max_files must be >= 1, got {n}")
    return evenly_spaced_files(entries, n)


def resolve_splits(corpus_dir: str | os.PathLike, splits: Sequence[str] | None) -> list[str]:
    """``splits``, or by default ``dev`` and ``heldout`` (``dev`` alone, with a warning, for a corpus built
    without a held-out voice)."""
    if splits is not None:
        return list(splits)
    found = [s for s in DEFAULT_SPLITS if (Path(corpus_dir) / f"{s}.csv").is_file()] or list(DEFAULT_SPLITS)
    if len(found) < len(DEFAULT_SPLITS):
        missing = ", ".join(s for s in DEFAULT_SPLITS if s not in found)
        warnings.warn(f"evaluating on {', '.join(found)} only: no {missing} split in {corpus_dir}", stacklevel=4)
    return found


def _split_file(corpus: Path, split: str, suffix: str) -> Path:
    path = corpus / f"{split}{suffix}"
    if not path.is_file():
        have = sorted(p.stem for p in corpus.glob("*.csv"))
        needed = ", ".join(f"{split}{s}" for s in ANNOTATIONS)
        raise SweepError(f"{path} not found: the corpus needs {needed} (splits found: {', '.join(have) or 'none'})")
    return path


@dataclass
class _Merged:
    entries: list[ManifestEntry]
    items: list[Item]
    words: Alignments
    phones: Alignments
    speakers: dict[str, str]
    frames: dict[str, list[str]]


def _add_split(merged: _Merged, corpus: Path, split: str, max_files: int | None) -> None:
    all_entries = read_manifest(_split_file(corpus, split, ".csv"))
    chosen = spread(all_entries, max_files)
    keep = {e.fileid for e in chosen}
    clash = keep & {e.fileid for e in merged.entries}
    if clash:
        raise SweepError(f"file ids appear in several splits, e.g. {sorted(clash)[:3]}")
    merged.entries += chosen
    items = read_item_file(_split_file(corpus, split, ".item"))
    words, word_speakers = read_alignment_table(_split_file(corpus, split, "_words.txt"))
    phones, phone_speakers = read_alignment_table(_split_file(corpus, split, "_phones.txt"))
    frames = read_frame_labels(_split_file(corpus, split, "_frames.txt"))
    ids = {e.fileid for e in all_entries}
    check_fileids((it.file for it in items), ids, f"{split}.item", f"{split}.csv")
    check_fileids(words, ids, f"{split}_words.txt", f"{split}.csv")
    check_fileids(keep, frames, f"{split}.csv", f"{split}_frames.txt")
    merged.items += [it for it in items if it.file in keep]
    merged.words.update({u: iv for u, iv in words.items() if u in keep})
    merged.phones.update({u: iv for u, iv in phones.items() if u in keep})
    merged.speakers.update({u: s for u, s in {**word_speakers, **phone_speakers}.items() if u in keep})
    merged.frames.update({u: lab for u, lab in frames.items() if u in keep})


def load_eval_set(corpus_dir: str | os.PathLike, splits: Sequence[str], out_dir: str | os.PathLike,
                  max_files: int | None = None) -> EvalSet:
    """Merge the files and annotations of ``splits`` (at most ``max_files`` files per split) and write the
    merged ``eval.item``, ``eval_words.txt``, ``eval_phones.txt`` and ``eval_frames.txt`` into ``out_dir``."""
    corpus = Path(corpus_dir)
    if not corpus.is_dir():
        raise SweepError(f"no corpus folder at {corpus}")
    if not splits:
        raise SweepError("no evaluation split given")
    merged = _Merged([], [], {}, {}, {}, {})
    for split in splits:
        _add_split(merged, corpus, split, max_files)
    if not merged.items:
        raise SweepError(f"no ABX item in the files chosen from {', '.join(splits)}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    item_file = write_item_file(root / "eval.item", merged.items)
    for name, table in (("eval_words.txt", merged.words), ("eval_phones.txt", merged.phones)):
        write_alignments(root / name, table, {u: merged.speakers.get(u, "?") for u in table})
    write_frame_labels(root / "eval_frames.txt", merged.frames)
    write_sidecar(root, kind="evaluation set", corpus=str(corpus.resolve()), splits=list(splits),
                  max_files_per_split=max_files, files=len(merged.entries), items=len(merged.items),
                  words=count_intervals(merged.words))
    return EvalSet(root, merged.entries, item_file, merged.words, merged.phones, merged.speakers, merged.frames,
                   len(merged.items))


def train_subset(corpus_dir: str | os.PathLike, model, max_frames: int, seed: int = 0,
                 split: str = "train") -> list[ManifestEntry]:
    """Files of ``split`` (seeded shuffle) until they hold ``max_frames`` model frames: the k-means fit set."""
    manifest = Path(corpus_dir) / f"{split}.csv"
    if not manifest.is_file():
        raise SweepError(f"k-means units are fit on the {split} split, and {manifest} is not there")
    entries = sorted(read_manifest(manifest), key=lambda e: e.fileid)
    order = np.random.default_rng(seed).permutation(len(entries))
    chosen, frames = [], 0
    for i in order:
        chosen.append(entries[i])
        frames += int(model.num_frames(entries[i].num_samples))
        if frames >= max_frames:
            break
    return chosen


def seen_voices(corpus_dir: str | os.PathLike) -> list[str]:
    """The speakers a model trained on ``corpus_dir`` heard: those of its ``train`` split (else ``dev``)."""
    for split in ("train", "dev"):
        path = Path(corpus_dir) / f"{split}.csv"
        if path.is_file():
            return sorted({e.speaker or "?" for e in read_manifest(path)})
    return []
