"""Manifests: the list of audio files of a corpus, in CSV, fairseq TSV or JSONL.

- CSV: a header ``fileid,path,num_samples`` (an optional ``speaker`` column may follow), one row a file.
- fairseq TSV: the first line is the root folder, then ``relpath<TAB>num_samples`` per file.
- JSONL: one object per line with the keys ``fileid``, ``path``, ``num_samples`` (``speaker`` optional).

Relative paths are resolved against the manifest's folder (CSV, JSONL) or the root line (TSV).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from spidrkit.config import SAMPLE_RATE
from spidrkit.errors import InputError
from spidrkit.io import atomic_write
from spidrkit.text_in import parse_json, read_lines, read_text

FORMATS = ("csv", "tsv", "jsonl")


@dataclass(frozen=True)
class ManifestEntry:
    fileid: str
    path: str  # absolute once read
    num_samples: int
    speaker: str | None = None


class ManifestError(InputError):
    pass


def entries_sha256(entries: Sequence[ManifestEntry]) -> str:
    """The identity of a list of audio files (an extraction's inputs, a training run's data): a digest of every
    (file id, path) in file-id order."""
    digest = hashlib.sha256()
    for e in sorted(entries, key=lambda e: e.fileid):
        digest.update(f"{e.fileid}\t{e.path}\n".encode())
    return digest.hexdigest()


def evenly_spaced[T](items: Sequence[T], n: int | None) -> list[T]:
    """At most ``n`` of ``items``, evenly spaced in their order, first and last included (the one selection
    rule of every subset: :func:`evenly_spaced_files` over a split's files, validation batches).
    ``n`` of None or at least ``len(items)`` keeps them all; callers refuse ``n < 1`` with their own flag."""
    if n is None or n >= len(items):
        return list(items)
    if n < 1:
        raise ValueError(f"evenly_spaced: n must be >= 1, got {n}")
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))]


def evenly_spaced_files[T](items: Sequence[T], n: int | None) -> list[T]:
    """At most ``n`` of ``items`` (manifest entries, or file ids), evenly spaced in file-id order: the one
    selection rule of every ``--max-files`` over a corpus split (the sweep, the probe, ``lm units``,
    ``kmeans`` of corpus units), so that the same ``N`` picks the same files everywhere whatever order a
    manifest lists them in; a manifest sorted by voice keeps every voice's share."""
    return evenly_spaced(sorted(items, key=_id_of), n)


def _id_of(item: Any) -> str:
    return item if isinstance(item, str) else item.fileid


def manifest_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in ("csv",):
        return "csv"
    if suffix in ("tsv",):
        return "tsv"
    if suffix in ("jsonl", "json", "ndjson"):
        return "jsonl"
    raise ManifestError(f"{path}: unknown manifest format (use .csv, .tsv or .jsonl)")


def fileid_of(relpath: str) -> str:
    """The file id of a path: its relative path without the extension, '/' kept."""
    p = Path(relpath)
    return str(p.with_suffix("")).replace(os.sep, "/")


def read_manifest(path: str | os.PathLike) -> list[ManifestEntry]:
    """The entries of a CSV, fairseq TSV or JSONL manifest (UTF-8, a BOM allowed); a malformed line is a
    :class:`ManifestError` naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"no manifest at {path}")
    read = {"csv": _read_csv, "jsonl": _read_jsonl, "tsv": _read_tsv}[manifest_format(path)]
    entries = read(path, _abs(path).parent)
    seen: set[str] = set()
    for e in entries:
        if e.fileid in seen:
            raise ManifestError(f"{path}: file id {e.fileid!r} appears more than once")
        seen.add(e.fileid)
    return entries


def _read_csv(path: Path, base: Path) -> list[ManifestEntry]:
    reader = csv.DictReader(io.StringIO(read_text(path, ManifestError), newline=""))
    entries = []
    try:
        fields = reader.fieldnames or []
        missing = {"fileid", "path", "num_samples"} - set(fields)
        if missing:
            raise ManifestError(f"{path}: CSV header lacks {', '.join(sorted(missing))}")
        if twice := sorted({f for f in fields if fields.count(f) > 1}):
            raise ManifestError(f"{path}:1: the CSV header names {', '.join(map(repr, twice))} more than once")
        for row in reader:
            if None in row:
                raise ManifestError(f"{path}:{reader.line_num}: more cells than the {len(fields)} columns of the "
                                    "header (quote a cell that holds a comma)")
            entries.append(_entry(row, base, path, reader.line_num))
    except csv.Error as e:
        raise ManifestError(f"{path}:{reader.line_num}: not CSV ({e})") from None
    return entries


def _read_jsonl(path: Path, base: Path) -> list[ManifestEntry]:
    entries = []
    for i, line in enumerate(read_lines(path, ManifestError), start=1):
        if line.strip():
            entries.append(_entry(parse_json(line, f"{path}:{i}", ManifestError), base, path, i))
    return entries


def _read_tsv(path: Path, base: Path) -> list[ManifestEntry]:
    lines = read_lines(path, ManifestError)
    if not lines or not lines[0].strip():
        raise ManifestError(f"{path}: empty TSV manifest (the first line must be the root folder)")
    root = Path(lines[0].strip())
    if not root.is_absolute():
        root = base / root
    entries = []
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0].strip():
            raise ManifestError(f"{path}:{i}: expected 'relpath<TAB>num_samples', got {line!r:.80}")
        n = _num_samples(parts[1], path, i)
        entries.append(ManifestEntry(_fileid(parts[0], path, i), str(_abs(root / parts[0])), n))
    return entries


def _num_samples(value: object, path: Path, line: int) -> int:
    """A count of samples: an integer >= 0 (a JSON number or its text), else a :class:`ManifestError`."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # not digits (or more than Python converts): refused below
            value = int(value)
    if type(value) is not int:
        raise ManifestError(f"{path}:{line}: num_samples {value!r:.40} is not an integer")
    if value < 0:
        raise ManifestError(f"{path}:{line}: num_samples {value} is negative")
    return value


def _fileid(relpath: str, path: Path, line: int) -> str:
    try:
        fileid = fileid_of(relpath)
    except ValueError:  # no file name to take the id from ('', '/', '..')
        fileid = ""
    if fileid in ("", ".", ".."):
        raise ManifestError(f"{path}:{line}: {relpath!r:.80} is not the path of a file")
    return fileid


def _entry(row: object, base: Path, path: Path, line: int) -> ManifestEntry:
    if not isinstance(row, dict):
        raise ManifestError(f"{path}:{line}: bad row {row!r:.80} (expected an object with fileid, path and "
                            "num_samples)")
    if missing := [k for k in ("fileid", "path", "num_samples") if k not in row]:
        raise ManifestError(f"{path}:{line}: bad row {row!r:.80} (no {', '.join(missing)})")
    fileid, file, speaker = (_text(row.get(k)) for k in ("fileid", "path", "speaker"))
    if not fileid or not file or "\0" in file or (speaker is None and row.get("speaker") not in (None, "")):
        raise ManifestError(f"{path}:{line}: bad row {row!r:.80} (fileid and path must be non-empty text, path "
                            "without NUL, speaker text or empty)")
    return ManifestEntry(fileid, str(_abs(base / file)), _num_samples(row["num_samples"], path, line), speaker)


def _text(value: object) -> str | None:
    """A cell as text: a string (empty: None) or an integer (JSON ids such as 19), else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else None


def write_manifest(entries: list[ManifestEntry], path: str | os.PathLike, relative: bool = True) -> Path:
    """Write ``entries`` in the format given by the suffix; paths relative to the manifest if possible."""
    path = Path(path)
    fmt = manifest_format(path)
    base = _abs(path).parent

    def rel(p: str) -> str:
        if not relative:
            return str(_abs(p))
        try:
            return os.path.relpath(_abs(p), base)
        except ValueError:
            return str(_abs(p))

    with_speaker = any(e.speaker for e in entries)
    f = io.StringIO(newline="")  # kept as written: csv ends its rows with CRLF, the other formats with LF
    if fmt == "csv":
        w = csv.writer(f)
        w.writerow(["fileid", "path", "num_samples", *(["speaker"] if with_speaker else [])])
        for e in entries:
            speaker = [e.speaker or ""] if with_speaker else []
            w.writerow([e.fileid, rel(e.path), e.num_samples, *speaker])
    elif fmt == "jsonl":
        for e in entries:
            d = asdict(e)
            d["path"] = rel(e.path)
            if d["speaker"] is None:
                d.pop("speaker")
            f.write(json.dumps(d) + "\n")
    else:
        root = _tsv_root(entries, base)
        f.write(f"{root}\n")
        for e in entries:
            f.write(f"{os.path.relpath(_abs(e.path), root)}\t{e.num_samples}\n")
    with atomic_write(path, "wb") as out:
        out.write(f.getvalue().encode())
    return path


def _abs(p: str | os.PathLike) -> Path:
    """Absolute and normalised, symlinks kept: a symlink farm keeps its own names (and file ids)."""
    return Path(os.path.abspath(p))


def _tsv_root(entries: list[ManifestEntry], default: Path) -> Path:
    """The root line of a TSV manifest: the folder that gives back every file id (a TSV stores no ids,
    they are re-derived from the relative paths), else the files' deepest common folder."""
    if not entries:
        return default
    roots = set()
    for e in entries:
        p = _abs(e.path)
        parts = Path(e.fileid).parts
        stem = p.with_suffix("").parts
        if not parts or stem[-len(parts) :] != parts:
            break
        roots.add(Path(*stem[: -len(parts)]))
    else:
        if len(roots) == 1:
            return roots.pop()
    return Path(os.path.commonpath([str(_abs(e.path).parent) for e in entries]))


AUDIO_EXTENSIONS = ("wav", "flac")  # the default of every command; mp3 and ogg (--ext) need libsndfile >= 1.1


def parse_extensions(text: str, flag: str = "--ext") -> tuple[str, ...]:
    """``"wav, .FLAC"`` -> ``("wav", "flac")``: the audio extensions of a folder, as every command takes them."""
    extensions = tuple(dict.fromkeys(x.strip().lower().lstrip(".") for x in text.split(",") if x.strip()))
    if not extensions:
        raise ManifestError(f"{flag} {text!r} lists no extension; give e.g. {flag} {','.join(AUDIO_EXTENSIONS)}")
    return extensions


class ScanResult(NamedTuple):
    entries: list[ManifestEntry]
    failures: list[tuple[str, str]]  # (path, reason) of files that could not be used


def list_audio_files(root: str | os.PathLike, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Path]:
    """Every file under ``root`` whose extension (case-insensitive) is one of ``extensions``, sorted."""
    exts = {"." + x.lower().lstrip(".") for x in extensions}
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        found.extend(Path(folder) / f for f in files if os.path.splitext(f)[1].lower() in exts)
    return sorted(found)


def no_audio_message(root: str | os.PathLike, extensions: Sequence[str], option: str = "--ext") -> str:
    """Why a folder gave no audio: the extensions looked for, and the commonest other ones found there
    (``.mp3`` files, say), with the option that reads them. Whether libsndfile decodes a format is
    ``soundfile.available_formats()`` (MP3 needs libsndfile >= 1.1)."""
    counts: Counter[str] = Counter()
    for _, _, files in os.walk(root):
        counts.update(os.path.splitext(f)[1].lower().lstrip(".") for f in files)
    wanted = {x.lower().lstrip(".") for x in extensions}
    others = [(x, n) for x, n in counts.most_common() if x and x not in wanted and x not in ("json", "txt")]
    looked = ", ".join(f".{x}" for x in extensions)
    if not others:
        return f"no audio files ({looked}) under {root}"
    shown = ", ".join(f"{n} .{x}" for x, n in others[:3])
    return (f"no audio files with the extensions looked for ({looked}) under {root}, but {shown} files: "
            f"pass {option} {','.join(x for x, _ in others[:1])} to read them")


def resampled_length(num_samples: int, orig_rate: int, target_rate: int = SAMPLE_RATE) -> int:
    """Samples after resampling ``num_samples`` from ``orig_rate`` to ``target_rate``.

    This is soxr's length, round(n * target / orig) with halves rounded up, in exact integer arithmetic;
    manifests use it to predict the length :func:`spidrkit.data.corpora.audio.load_audio` returns without
    decoding the file (``load_audio`` enforces it).
    """
    if orig_rate == target_rate:
        return int(num_samples)
    return (2 * int(num_samples) * target_rate + orig_rate) // (2 * orig_rate)


def scan_audio_dir(
    root: str | os.PathLike,
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS,
    sample_rate: int = SAMPLE_RATE,
    speaker_from_dir: int | None = None,
    num_threads: int = 16,
    progress: bool = True,
) -> ScanResult:
    """Manifest entries of all audio under ``root``, lengths read from the file headers only.

    ``num_samples`` is the length at ``sample_rate`` (the resampled length for files at another rate,
    as :func:`spidrkit.data.corpora.audio.load_audio` will return it). File ids are the paths relative to
    ``root`` without extension. ``speaker_from_dir=N`` takes the speaker from the N-th folder below
    ``root`` (1 = the top level, as in LibriSpeech's ``SPEAKER/CHAPTER/file.flac``). Headers are read on
    ``num_threads`` threads; unreadable and empty files are returned in ``failures``, not raised.
    """
    from spidrkit.progress import progress_bar

    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"no folder {root}")
    paths = list_audio_files(root, extensions)
    if speaker_from_dir is not None:
        if speaker_from_dir < 1:
            raise ManifestError("speaker_from_dir counts folders below the root from 1")
        shallow = [p for p in paths if len(p.relative_to(root).parts) <= speaker_from_dir]
        if shallow:
            raise ManifestError(
                f"{len(shallow)} files (e.g. {shallow[0]}) are not {speaker_from_dir} folder(s) deep, "
                "so they have no speaker folder"
            )

    entries: list[ManifestEntry] = []
    failures: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max(1, num_threads)) as pool:
        results = pool.map(_header_of, paths)
        for p, r in progress_bar(len(paths), f"reading headers under {root}", "file", progress,
                                 iterable=zip(paths, results)):
            if isinstance(r, str):
                failures.append((str(p), r))
                continue
            rel = p.relative_to(root)
            speaker = rel.parts[speaker_from_dir - 1] if speaker_from_dir else None
            n = resampled_length(r[0], r[1], sample_rate)
            entries.append(ManifestEntry(fileid_of(str(rel)), str(_abs(p)), n, speaker))
    return ScanResult(*_first_of_each_id(entries, failures))


def _header_of(p: Path) -> tuple[int, int] | str:
    """``(frames, sample rate)`` from a file's header, or why it cannot be used."""
    import soundfile as sf

    try:
        i = sf.info(str(p))
    except Exception as e:
        return f"unreadable ({type(e).__name__}: {' '.join(str(e).split())})"
    if i.frames <= 0:
        return "empty (0 samples)"
    return i.frames, i.samplerate


def _first_of_each_id(entries: list[ManifestEntry], failures: list[tuple[str, str]]
                      ) -> tuple[list[ManifestEntry], list[tuple[str, str]]]:
    """a.wav and a.flac side by side would share the id "a": the first is kept, the others are failures."""
    first: dict[str, str] = {}
    unique = []
    for e in entries:
        if e.fileid in first:
            failures.append((e.path, f"same file id {e.fileid!r} as {first[e.fileid]}"))
        else:
            first[e.fileid] = e.path
            unique.append(e)
    return unique, failures
