"""Units of a sharded, resumable extraction: per-rank journals, merged into one ``units.txt`` at the end.

Each rank appends ``{"utt": ..., "units": [...]}`` lines to its journal
``units.part{r}-of-{n}.partial.jsonl`` (flushed per batch), renamed ``.jsonl`` when the rank is done. The
last rank to finish merges every journal and any earlier ``units.txt`` into ``units.txt`` (atomic) and
deletes the journals; under a process group, rank 0 merges after a barrier. A torn last line (a crash, or a
writer still at work) is not counted, so a resumed run redoes that utterance. See ``docs/formats.md``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import IO, Any

from spidrkit.extraction.units import read_units, write_units
from spidrkit.runtime import barrier, process_group_active

UNITS_NAME = "units.txt"


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


def open_journal(folder: Path, rank: int, world_size: int, fresh: bool = False) -> IO[str]:
    """This rank's journal for appending: a finished one is reopened, a torn last line is cut off; with
    ``fresh`` (overwrite) it starts empty."""
    partial, done = journal_path(folder, rank, world_size, False), journal_path(folder, rank, world_size, True)
    if fresh:
        done.unlink(missing_ok=True)
        return open(partial, "w")
    if done.exists() and not partial.exists():
        os.replace(done, partial)  # a rename, not a write: the journal is reopened as unfinished
    if partial.exists():
        data = partial.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut != len(data):
            with open(partial, "r+b") as f:
                f.truncate(cut)
    return open(partial, "a")


def units_done(folder: Path) -> set[str]:
    """Utterances already in ``units.txt`` or in any journal of the folder (any rank, any world size)."""
    done: set[str] = set()
    final = folder / UNITS_NAME
    if final.is_file():
        done.update(read_units(final))
    for journal in folder.glob("units.part*.jsonl"):
        done.update(read_journal(journal))
    return done


def merge_units(folder: Path, dedup: bool, info: dict[str, Any]) -> bool:
    """Merge ``units.txt`` and every journal into ``units.txt`` (atomic), then delete the journals.

    A lock file keeps two finishing ranks from merging at once; returns False if another holds it."""
    lock = folder / "units.merge.lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        warnings.warn(
            f"{lock} exists: another process is merging the units (or one crashed while merging: "
            "delete the lock and run again to merge)", stacklevel=3,
        )
        return False
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        final = folder / UNITS_NAME
        merged: dict[str, Any] = dict(read_units(final)) if final.is_file() else {}
        journals = sorted(folder.glob("units.part*.jsonl"))
        for journal in journals:
            merged.update(read_journal(journal))
        own = {k: v for k, v in info.items() if k not in ("dedup", "format")}  # write_units records these
        write_units(final, merged, dedup=dedup, fmt="txt", **own)
        for journal in journals:
            journal.unlink()
    finally:
        lock.unlink(missing_ok=True)
    return True


def finish_units(folders: dict[int, Path], infos: dict[int, dict], dedup: bool, rank: int, world_size: int) -> None:
    """Mark this rank's journals done, then merge them once every rank of this run is done."""
    for folder in folders.values():
        os.replace(journal_path(folder, rank, world_size, False), journal_path(folder, rank, world_size, True))
    if process_group_active():
        barrier()
        if rank == 0:
            for layer, folder in folders.items():
                merge_units(folder, dedup, infos[layer])
        barrier()
        return
    for layer, folder in folders.items():
        if all(journal_path(folder, r, world_size, True).exists() for r in range(world_size)):
            merge_units(folder, dedup, infos[layer])
