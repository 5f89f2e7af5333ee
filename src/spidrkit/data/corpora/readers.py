"""Readers for the corpora users bring: LibriSpeech, Libri-Light, ZeroSpeech alignments, any audio folder.

Audio folders become manifest entries with speaker ids (``spidrkit.data.corpora.manifest``; lengths read from the
file headers on a thread pool by ``scan_audio_dir``, counted at 16 kHz), and alignments become the
in-memory structures of ``spidrkit.data.corpora.alignments``.

- LibriSpeech: ``ROOT/SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac``; file id ``SPEAKER-CHAPTER-UTT``
  (the id ZeroSpeech item files use), one manifest per split.
- Libri-Light: ``ROOT/SUBSET/SPEAKER/BOOK/NAME.flac``; file id ``SPEAKER/BOOK/NAME`` (names repeat across
  speakers), one manifest per subset.
- ZeroSpeech 2021 / fastabx: item files, ``file onset offset phone [speaker]`` alignment files, and 10 ms
  frame-label files (``utt l1 l2 ...``, e.g. CPC's ``converted_aligned_phones.txt`` with its phone map).
- Any folder of audio soundfile reads (wav, flac, ogg, mp3), with an optional phone alignment file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from spidrkit.config import SAMPLE_RATE  # manifests count samples at the model's rate
from spidrkit.data.corpora.alignments import (
    AlignmentError,
    Alignments,
    alignments_from_items,
    intervals_from_frames,
    read_alignment_table,
    read_frame_labels,
    read_item_file,
    write_split_annotations,
)
from spidrkit.data.corpora.manifest import (
    AUDIO_EXTENSIONS,
    ManifestEntry,
    ScanResult,
    no_audio_message,
    scan_audio_dir,
    write_manifest,
)
from spidrkit.errors import InputError
from spidrkit.text_in import read_lines

_LIBRISPEECH_NAME = re.compile(r"^(\d+)-(\d+)-(\d+)$")


class CorpusError(InputError):
    pass


# --- LibriSpeech / Libri-Light -------------------------------------------------------------------------


def _is_split(d: Path) -> bool:
    """True when d/SPEAKER/GROUP/ holds .flac files (the LibriSpeech and Libri-Light layouts)."""
    for spk in sorted(d.iterdir()):
        if spk.is_dir():
            for group in sorted(spk.iterdir()):
                if group.is_dir() and any(p.suffix.lower() == ".flac" for p in group.iterdir()):
                    return True
    return False


def split_dirs(root: str | os.PathLike) -> list[Path]:
    """The split folders of a LibriSpeech / Libri-Light root: ``root`` itself when it is one split."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"no folder at {root}")
    if _is_split(root):
        return [root]
    splits = sorted(d for d in root.iterdir() if d.is_dir() and _is_split(d))
    if not splits:
        raise CorpusError(f"{root}: no split folder laid out as SPLIT/SPEAKER/GROUP/*.flac")
    return splits


def _librispeech_ids(split: Path, scan: ScanResult) -> ScanResult:
    """Rename ids SPEAKER/CHAPTER/NAME to NAME, checking the NAME = SPEAKER-CHAPTER-UTT layout."""
    entries = []
    for e in scan.entries:
        parts = Path(e.fileid).parts
        m = _LIBRISPEECH_NAME.match(parts[-1])
        if len(parts) != 3 or not m or m.group(1) != parts[0] or m.group(2) != parts[1]:
            raise CorpusError(f"{e.path}: not at SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac under {split}")
        entries.append(ManifestEntry(parts[-1], e.path, e.num_samples, e.speaker))
    return ScanResult(entries, scan.failures)


def read_librispeech(root: str | os.PathLike, threads: int = 16, progress: bool = True) -> dict[str, ScanResult]:
    """``{split: ScanResult}`` of a LibriSpeech folder (``root`` holds dev-clean, ... or is one split);
    file ids SPEAKER-CHAPTER-UTT, speaker ids from the folders."""
    out = {}
    for split in split_dirs(root):
        scan = scan_audio_dir(split, ("flac",), SAMPLE_RATE, speaker_from_dir=1, num_threads=threads, progress=progress)
        out[split.name] = _librispeech_ids(split, scan)
    return out


def read_librilight(root: str | os.PathLike, threads: int = 16, progress: bool = True) -> dict[str, ScanResult]:
    """``{subset: ScanResult}`` of a Libri-Light folder (small, medium, ... or one subset);
    file ids SPEAKER/BOOK/NAME, speaker ids from the folders."""
    return {
        subset.name: scan_audio_dir(subset, ("flac",), SAMPLE_RATE, speaker_from_dir=1, num_threads=threads,
                                    progress=progress)
        for subset in split_dirs(root)
    }


def write_split_manifests(scans: Mapping[str, ScanResult], out_dir: str | os.PathLike,
                          fmt: str = "csv") -> dict[str, Path]:
    """``OUT_DIR/SPLIT.{fmt}`` for each split with at least one file; returns ``{split: path}``."""
    out_dir = Path(out_dir)
    return {
        split: write_manifest(scan.entries, out_dir / f"{split}.{fmt}")
        for split, scan in scans.items()
        if scan.entries
    }


# --- ZeroSpeech alignments ------------------------------------------------------------------------------


def read_phone_map(path: str | os.PathLike) -> dict[str, str]:
    """A phone map ``id -> phone`` from lines 'phone id' or 'id phone' (e.g. CPC's phones.txt)."""
    out = {}
    for i, line in enumerate(read_lines(path, AlignmentError), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2:
            raise AlignmentError(f"{path}:{i}: expected 'phone id', got {line!r:.80}")
        a, b = fields
        phone, ident = (a, b) if b.lstrip("-").isdigit() else (b, a)
        out[ident] = phone
    return out


def _is_frame_file(path: Path) -> bool:
    """Alignment lines have 4 or 5 fields; frame-label lines have one per 10 ms frame."""
    return any(len(line.split()) > 5 for line in read_lines(path, AlignmentError)[:20])


def read_zerospeech_alignments(path: str | os.PathLike, phone_map: Mapping[str, str] | None = None,
                               rate: int = 100) -> tuple[Alignments, dict[str, str]]:
    """Phone alignments and speakers from a ZeroSpeech / fastabx file, by its kind:

    - ``.item``: the centre phones of the items (sparse intervals) and each file's speaker;
    - a frame-label file (``utt l1 l2 ...`` at ``rate`` Hz; ``phone_map`` maps ids to phones): runs of
      equal labels as intervals, speakers unknown (empty mapping);
    - otherwise an alignment file ``file onset offset phone [speaker]`` (``phone_map`` applied if given).
    """
    path = Path(path)
    if not path.is_file():
        raise AlignmentError(f"no alignment file at {path}")
    if path.suffix == ".item":
        return alignments_from_items(read_item_file(path))
    if _is_frame_file(path):
        frames = read_frame_labels(path, phone_map)
        return {utt: intervals_from_frames(labels, rate) for utt, labels in frames.items()}, {}
    alignments, speakers = read_alignment_table(path)
    if phone_map is not None:
        alignments = {u: [(a, b, phone_map.get(x, x)) for a, b, x in iv] for u, iv in alignments.items()}
    return alignments, speakers


# --- any folder ----------------------------------------------------------------------------------------


@dataclass
class FolderCorpus:
    """What ``folder_corpus`` wrote and found."""

    manifest: Path
    scan: ScanResult
    annotations: dict[str, Path] = field(default_factory=dict)  # kind (phones, item, frames) -> path
    unaligned: list[str] = field(default_factory=list)  # file ids without alignment
    unmatched: list[str] = field(default_factory=list)  # aligned ids without audio


@dataclass(frozen=True)
class FolderScan:
    """How ``folder_corpus`` reads a folder: the audio ``extensions``, the folder level that names the
    speaker (``speaker_from_dir=N``: the N-th folder below the root), the rate lengths are counted at,
    header-reading threads, a progress bar, and whether the manifest's paths are relative to it."""

    extensions: tuple[str, ...] = AUDIO_EXTENSIONS
    speaker_from_dir: int | None = None
    sample_rate: int = SAMPLE_RATE
    threads: int = 16
    progress: bool = True
    relative: bool = True


def folder_corpus(root: str | os.PathLike, manifest: str | os.PathLike, alignments: str | os.PathLike | None = None,
                  phone_map: Mapping[str, str] | None = None, scan: FolderScan = FolderScan()) -> FolderCorpus:
    """Write a manifest of every audio file under ``root`` (file id: relative path without extension)
    and, given a phone ``alignments`` file, the evaluation files beside it (``spidrkit data folder``, also
    ``spidrkit manifest``).

    ``alignments``: an alignment or 10 ms frame-label file (see ``read_zerospeech_alignments``) whose ids
    are the file ids or the file names, labels mapped by ``phone_map``; with it ``STEM_phones.txt``,
    ``STEM.item`` and ``STEM_frames.txt`` are written next to the manifest (STEM: the manifest's path
    without suffix). Unreadable files are left out (``scan.failures``).
    """
    options = scan
    manifest = Path(manifest)
    scan = scan_audio_dir(root, options.extensions, options.sample_rate, speaker_from_dir=options.speaker_from_dir,
                          num_threads=options.threads, progress=options.progress)
    if not scan.entries and not scan.failures:
        raise CorpusError(no_audio_message(root, options.extensions, "--ext"))
    if not scan.entries:
        detail = f", e.g. {scan.failures[0][0]}: {scan.failures[0][1]}"
        raise CorpusError(f"{root}: no usable audio file ({', '.join(options.extensions)}){detail}")
    result = FolderCorpus(write_manifest(scan.entries, manifest, relative=options.relative), scan)
    if alignments is None:
        return result
    if Path(alignments).suffix == ".item":
        raise CorpusError(f"{alignments}: an item file holds centre phones only; give the phone alignment "
                          "(file onset offset phone [speaker]) or a 10 ms frame-label file")
    phones, speakers = read_zerospeech_alignments(alignments, phone_map)
    by_id = {e.fileid: e for e in scan.entries}
    by_name: dict[str, ManifestEntry | None] = {}
    for e in scan.entries:  # a name shared by two files is ambiguous: not matched by name
        name = Path(e.fileid).name
        by_name[name] = None if name in by_name else e
    matched: dict[str, tuple[list, str]] = {}
    for utt, intervals in phones.items():
        entry = by_id.get(utt) or by_name.get(utt)
        if entry is None:
            result.unmatched.append(utt)
        else:
            matched[entry.fileid] = (intervals, speakers.get(utt) or entry.speaker or "unknown")
    if not matched:
        raise CorpusError(f"no id of {alignments} matches an audio file under {root}")
    result.unaligned = sorted(set(by_id) - set(matched))
    result.annotations = write_split_annotations(
        manifest.with_suffix(""),
        phones={u: iv for u, (iv, _) in matched.items()},
        speakers={u: s for u, (_, s) in matched.items()},
        num_samples={u: by_id[u].num_samples for u in matched},
        sample_rate=options.sample_rate,
    )
    return result
