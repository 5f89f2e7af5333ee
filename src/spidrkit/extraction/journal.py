"""Units of a sharded, resumable extraction: per-rank journals, merged into one units file at the end.

Each rank appends ``{"utt": ..., "units": [...]}`` lines to its journal
``units.part{r}-of-{n}.partial.jsonl`` (one write per batch), renamed ``.jsonl`` when the rank is done. The
last rank to finish merges every journal and any earlier units file into ``units.txt`` (or ``units.jsonl``
when file ids hold whitespace: :func:`units_filename`), atomically, and deletes the journals; under a
process group, rank 0 merges after a barrier. The merge holds ``units.merge.lock``
(:func:`spidrkit.io.hold_lock`: a lock left by a crashed merge is taken over, a live one is waited for by
the ranks of a sharded run and refused otherwise). A torn last line (a crash or a full disk mid-write) is
not counted and is cut off on resume, so a resumed run redoes that utterance. See ``docs/formats.md``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from spidrkit.errors import LockHeldError
from spidrkit.extraction.units import read_units, write_units
from spidrkit.io import hold_lock
from spidrkit.runtime import barrier, process_group_active

UNITS_NAME = "units.txt"
MERGE_LOCK_NAME = "units.merge.lock"
MERGE_WAIT_SECONDS = 120.0  # how long a finishing rank waits for another rank's merge


def units_filename(fmt: str) -> str:
    """The units file of an extraction folder: ``units.txt`` (text) or ``units.jsonl`` (JSONL)."""
    return UNITS_NAME if fmt == "txt" else "units.jsonl"


def journal_path(folder: Path, rank: int, world_size: int, done: bool) -> Path:
    return folder / f"units.part{rank}-of-{world_size}{'' if done else '.partial'}.jsonl"


def read_journal(path: Path) -> dict[str, list[int]]:
    """Complete lines of a units journal (a torn last line is not counted)."""
    out: dict[str, list[int]] = {}
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                break
            record = json.loads(line)
            out[record["utt"]] = record["units"]
    return out


def journal_line(fileid: str, units: list[int]) -> str:
    return json.dumps({"utt": fileid, "units": units}) + "\n"


class Journal:
    """One rank's journal, appended one batch at a time with unbuffered writes: a write that fails (disk
    full) raises an ``OSError`` naming the journal and leaves at most a torn last line, which
    :func:`open_journal` cuts off on resume."""

    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        try:
            self._f = open(path, "wb" if fresh else "ab", buffering=0)  # noqa: SIM115 (closed by close())
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(path)) from e

    def write_lines(self, lines: list[str]) -> None:
        data = memoryview("".join(lines).encode())
        try:
            while data:
                data = data[self._f.write(data) :]
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(self.path)) from e

    def close(self) -> None:
        self._f.close()


def open_journal(folder: Path, rank: int, world_size: int, fresh: bool = False) -> Journal:
    """This rank's journal for appending: a finished one is reopened, a torn last line is cut off; with
    ``fresh`` (overwrite) it starts empty."""
    partial, done = journal_path(folder, rank, world_size, False), journal_path(folder, rank, world_size, True)
    if fresh:
        done.unlink(missing_ok=True)
        return Journal(partial, fresh=True)
    if done.exists() and not partial.exists():
        os.replace(done, partial)  # a rename, not a write: the journal is reopened as unfinished
    if partial.exists():
        data = partial.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut != len(data):
            with open(partial, "r+b") as f:
                f.truncate(cut)
    return Journal(partial, fresh=False)


def units_done(folder: Path, name: str = UNITS_NAME) -> set[str]:
    """Utterances already in the units file or in any journal of the folder (any rank, any world size)."""
    done: set[str] = set()
    final = folder / name
    if final.is_file():
        done.update(read_units(final))
    for journal in folder.glob("units.part*.jsonl"):
        done.update(read_journal(journal))
    return done


def merge_units(folder: Path, dedup: bool, info: dict[str, Any], name: str = UNITS_NAME, force: bool = False) -> None:
    """Merge the units file and every journal into the units file (atomic), then delete the journals.

    Holds ``units.merge.lock`` meanwhile (:func:`~spidrkit.io.hold_lock`: stale -> taken over, live ->
    :class:`~spidrkit.errors.LockHeldError` unless ``force``). With no journal left (another rank merged
    them already) and the units file present, there is nothing to do."""
    with hold_lock(folder / MERGE_LOCK_NAME, force=force, what=f"the units merge of {folder}"):
        final = folder / name
        journals = sorted(folder.glob("units.part*.jsonl"))
        if not journals and final.is_file():
            return
        merged: dict[str, Any] = dict(read_units(final)) if final.is_file() else {}
        for journal in journals:
            merged.update(read_journal(journal))
        own = {k: v for k, v in info.items() if k not in ("dedup", "format")}  # write_units records these
        write_units(final, merged, dedup=dedup, fmt=info.get("format", "txt"), force=True, **own)  # merged into
        for journal in journals:
            journal.unlink()


def _merge_waiting(folder: Path, dedup: bool, info: dict[str, Any], name: str, force: bool, wait: bool) -> None:
    """:func:`merge_units`; a live lock is another rank of this run merging: with ``wait``, retry until it is
    released (then there is nothing left to merge)."""
    deadline = time.monotonic() + MERGE_WAIT_SECONDS
    while True:
        try:
            return merge_units(folder, dedup, info, name, force)
        except LockHeldError:
            if not wait or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def finish_units(
    folders: dict[int, Path], infos: dict[int, dict], dedup: bool, rank: int, world_size: int,
    name: str = UNITS_NAME, force: bool = False,
) -> None:
    """Mark this rank's journals done, then merge them once every rank of this run is done."""
    for folder in folders.values():
        os.replace(journal_path(folder, rank, world_size, False), journal_path(folder, rank, world_size, True))
    if process_group_active():
        barrier()
        if rank == 0:
            for layer, folder in folders.items():
                merge_units(folder, dedup, infos[layer], name, force)
        barrier()
        return
    for layer, folder in folders.items():
        if all(journal_path(folder, r, world_size, True).exists() for r in range(world_size)):
            _merge_waiting(folder, dedup, infos[layer], name, force, wait=world_size > 1)
