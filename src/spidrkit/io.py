"""Files out and in, one way each: atomic writes, JSON values, sidecars, and the metrics log format.

- **Atomic writes** (:func:`atomic_write` and the helpers built on it): the data goes to a hidden
  temporary file beside the target (``.NAME.tmpPID``), is flushed (and fsynced on request), then renamed
  over the target, so a reader or a crash never sees half a file. On any error the temporary file is
  removed and the target is left as it was.
- **JSON values** (:func:`json_safe`): tensors, numpy scalars and arrays, paths and dataclasses become
  plain JSON; NaN and infinities become ``null`` (strict JSON).
- **Sidecars**: every output says what produced it (model, checkpoint hash, 1-based layers, units k). A
  folder's sidecar is ``DIR/spidrkit.json``, a file's is ``FILE.json`` beside it; each carries
  ``sidecar_version`` (files written before it existed read as version 0).
- **No silent overwrite** (:func:`refuse_overwrite`): a command's final output that already exists is
  replaced only with ``--force``.
- **Locks** (:func:`hold_lock`): an output that one process at a time may write (a run folder, a units
  merge) is guarded by a lock file recording the holder's host, pid and start time. A lock whose process
  is gone (same host, pid not running) is stale and taken over; a live one raises
  :class:`~spidrkit.errors.LockHeldError` naming the holder, unless ``force`` breaks it.
- **Metrics log** (``metrics.jsonl``): one JSON object per line, each with ``format_version``
  (:data:`METRICS_VERSION`; older records without it read as version 0). :func:`read_metrics` is its one
  reader: it skips blank lines and a torn line (a crash mid-write) and raises on anything else broken.

See ``docs/formats.md`` for every file spidrkit writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import socket
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from spidrkit.errors import InputError, LockHeldError
from spidrkit.text_in import parse_json, read_text

SIDECAR_NAME = "spidrkit.json"
SIDECAR_VERSION = 1
METRICS_NAME = "metrics.jsonl"
METRICS_VERSION = 1
TMP_MARK = ".tmp"


class MetricsFormatError(InputError):
    """A metrics log line that is neither JSON nor a torn last line."""


class OutputPathError(InputError):
    """An output folder argument that cannot be one: an existing file, below a file, or where spidrkit may not
    write."""


def check_output_dir(path: str | os.PathLike, flag: str = "-o") -> Path:
    """``path`` as a folder a command may write, checked BEFORE any work (``flag``: the argument, for the
    message): an existing file, a file among its parents or a folder without write access is one
    :class:`OutputPathError` saying which."""
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{flag} {path}: is a file, not a folder; give a folder path")
    parent = out
    while not parent.exists():
        if parent.parent == parent:
            return out
        parent = parent.parent
    if parent != out and not parent.is_dir():
        raise OutputPathError(f"{flag} {path}: {parent} is a file, not a folder; give a path below a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{flag} {path}: no write access to {parent}; fix its access or give another folder")
    return out


class OutputExistsError(InputError):
    """A final output that exists and would be replaced, without ``--force``."""


def refuse_overwrite(paths: Iterable[str | os.PathLike], force: bool, command: str,
                     alternative: str = "choose another output", error: type[InputError] = OutputExistsError) -> None:
    """Nothing existing is replaced without ``--force``: the first of ``paths`` (the final files a command is
    about to write) that exists is one ``error`` (``COMMAND: PATH exists; pass --force to replace it (or
    ALTERNATIVE)``), unless ``force``. Called before any work."""
    if force:
        return
    for p in paths:
        if Path(p).exists() or Path(p).is_symlink():
            raise error(f"{command}: {p} exists; pass --force to replace it (or {alternative})")


REPORT_LAST_FILE = "report.html"  # a report folder's last file: it says the folder is finished
BUDGET_LAST_FILE = "budget.png"  # the same of a budget curve's folder (spidrkit.evaluation.runs.budget)


def refuse_report_overwrite(out_dir: str | os.PathLike, force: bool, command: str,
                            last: str = REPORT_LAST_FILE) -> Path:
    """:func:`refuse_overwrite` for a report folder: it counts as existing once its ``last`` file does (written
    after the numbers), so a run stopped before it (a full disk, a signal) is finished by a rerun without
    ``force``. Returns the folder as a ``Path``."""
    refuse_overwrite([Path(out_dir) / last], force, command)
    return Path(out_dir)


class SidecarError(InputError):
    """A sidecar that is not a JSON object."""


# --------------------------------------------------------------------------------------- atomic writes
def temp_path(path: str | os.PathLike) -> Path:
    """The hidden temporary name :func:`atomic_write` uses for ``path`` in this process."""
    path = Path(path)
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def is_stale_temp(path: str | os.PathLike) -> bool:
    """Whether a temporary file of :func:`atomic_write` was left by a process that no longer runs (or by
    this one: writes are synchronous, so one of ours that is still there is a leftover too)."""
    pid = Path(path).name.rsplit(TMP_MARK, 1)[-1].split(".", 1)[0]
    if not pid.isdigit() or int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_stale_temps(folder: str | os.PathLike, pattern: str = "**/.*" + TMP_MARK + "*") -> list[Path]:
    """Delete the temporary files of :func:`atomic_write` under ``folder`` whose writer is gone (a process
    killed mid-write); returns what went. Live writers' files are left alone."""
    gone = [p for p in Path(folder).glob(pattern) if p.is_file() and is_stale_temp(p)]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


class _WriteRecorder:
    """A file proxy that remembers the first ``OSError`` of ``write``: a writer that turns it into an error
    of its own (``torch.save`` reports a full disk as "unexpected pos ...") still fails as an OSError."""

    def __init__(self, f: IO) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename in it) to disk, where the system allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, fsync: bool = True,
                 suffix: str = "") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path``, on error it is removed.

    ``fsync``: the file's bytes, then the folder's entry, reach the disk before and after the rename, so a
    crash or a power loss never leaves a final name on partial data. ``suffix``: appended to the temporary
    name, for writers that choose the format by extension (matplotlib). An ``OSError`` of a write (disk
    full) is raised as such, with the final path as its ``filename``, whatever the writer made of it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path).with_name(temp_path(path).name + suffix)
    recorder = None
    try:
        with open(tmp, mode) as f:
            recorder = _WriteRecorder(f)
            yield recorder
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
    except Exception as e:
        if recorder is not None and recorder.error is not None:
            raise OSError(recorder.error.errno, recorder.error.strerror, str(path)) from e
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)


def write_lines_atomic(path: str | os.PathLike, lines: Iterable[str]) -> Path:
    """Text lines, each ended by a newline."""
    with atomic_write(path, "w") as f:
        for line in lines:
            f.write(line + "\n")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """``data`` as indented strict JSON (through :func:`json_safe`)."""
    return write_text_atomic(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


# ---------------------------------------------------------------------------------------- JSON values
def json_safe(x: Any) -> Any:
    """``x`` as plain JSON values: tensors and numpy values as numbers or lists, NaN and infinities as
    ``None``, paths as strings, dataclasses and mappings as dicts with string keys, sets as sorted lists."""
    if x is None or isinstance(x, bool | str | int):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return json_safe(dataclasses.asdict(x))
    if isinstance(x, Mapping):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, set | frozenset):
        return [json_safe(v) for v in sorted(x, key=str)]
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if hasattr(x, "tolist") and callable(x.tolist):  # torch tensors, numpy arrays and scalars
        if hasattr(x, "detach"):
            x = x.detach().cpu()
        return json_safe(x.tolist())
    if hasattr(x, "item") and callable(x.item):
        return json_safe(x.item())
    return str(x)


# ----------------------------------------------------------------------------------------------- locks
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(path: str | os.PathLike) -> dict[str, Any] | None:
    """The holder recorded in a lock file (``host``, ``pid``, ``started``, ``command``), ``{}`` for an
    unreadable one, ``None`` when there is no lock."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return holder if isinstance(holder, dict) else {}


def lock_is_stale(holder: dict[str, Any]) -> bool:
    """Whether the process that wrote ``holder`` is gone: it ran on this host and its pid no longer runs.
    (A lock of another host is never judged stale from here; an unreadable one, torn by a crash while it
    was written, is.)"""
    if not holder:
        return True
    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid)


@contextlib.contextmanager
def hold_lock(path: str | os.PathLike, *, force: bool = False, what: str = "this output") -> Iterator[Path]:
    """Hold the lock file ``path`` for the duration of the block (created exclusively, removed after).

    A stale lock (:func:`lock_is_stale`) is taken over with a warning; a live one raises
    :class:`~spidrkit.errors.LockHeldError` naming its holder and the way out, unless ``force``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                         "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                         "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""})
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_lock(path)
            if holder is None:
                continue  # released meanwhile: try again
            if not (force or lock_is_stale(holder)):
                raise LockHeldError(
                    f"{path}: {what} is in use by pid {holder.get('pid')} on {holder.get('host')} since "
                    f"{holder.get('started')} ({holder.get('command')!r}); wait for it to finish, or if that "
                    "process is gone, rerun with --force") from None
            warnings.warn(f"{path}: taking over the lock of pid {holder.get('pid')} on {holder.get('host')} "
                          f"({'forced' if force else 'that process is gone'})", stacklevel=3)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(record + "\n")
        break
    else:
        raise LockHeldError(f"{path}: could not take the lock of {what} (contended); run again")
    try:
        yield path
    finally:
        if (read_lock(path) or {}).get("pid") == os.getpid():
            path.unlink(missing_ok=True)


# -------------------------------------------------------------------------------------------- sidecars
def clear_state(folder: str | os.PathLike, names: Iterable[str], *, lock: str, what: str, force: bool = False) -> None:
    """Delete the entries ``names`` (files or folders) of a run folder under its lock ``folder/lock``, in
    order, so that the next run starts at step 0 (``--fresh``: a run folder started anew; ``force`` breaks a
    live lock, as the run's own ``--force`` does). A folder that does not exist is left alone."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    with hold_lock(folder / lock, force=force, what=what):
        remove_entries(folder, names)


def remove_entries(folder: str | os.PathLike, names: Iterable[str]) -> None:
    """Delete the entries ``names`` (files or folders) of ``folder``, in order, missing ones skipped: the part of
    :func:`clear_state` for a caller that holds the folder's lock already."""
    import shutil

    for name in names:
        target = Path(folder) / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)


def file_sha256(path: str | os.PathLike, length: int = 16) -> str:
    """First ``length`` hex digits of the file's SHA-256 (the 'checkpoint hash' of sidecars)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def sidecar_path(output: str | os.PathLike) -> Path:
    """A folder's sidecar is ``DIR/spidrkit.json``; a file's is ``FILE.json`` beside it."""
    p = Path(output)
    return p / SIDECAR_NAME if p.is_dir() else p.with_name(p.name + ".json")


def write_sidecar(output: str | os.PathLike, **info: Any) -> Path:
    """Write the sidecar of ``output`` atomically, with the producer's details and the format version."""
    from spidrkit import __version__

    record = {
        "sidecar_version": SIDECAR_VERSION,
        "producer": f"spidrkit {__version__}",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
        "python": platform.python_version(),
        **info,
    }
    path = sidecar_path(output)
    write_json_atomic(path, record)
    return path


def read_sidecar(output: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of ``output``; one written before sidecars were versioned reads as version 0. One that is
    not a JSON object is a :class:`SidecarError` naming it."""
    path = sidecar_path(output)
    if not path.is_file():
        raise FileNotFoundError(f"no sidecar {path} next to {output}")
    record = parse_json(read_text(path, SidecarError), str(path), SidecarError)
    if not isinstance(record, dict):
        raise SidecarError(f"{path}: a sidecar is a JSON object (remove the file, or write the output again)")
    record.setdefault("sidecar_version", 0)
    return record


# ----------------------------------------------------------------------------------------- metrics log
def metrics_path(run_or_file: str | os.PathLike) -> Path:
    """``RUN_DIR/metrics.jsonl`` for a run folder, the path itself for a file."""
    p = Path(run_or_file)
    return p / METRICS_NAME if p.is_dir() else p


def metrics_line(record: Mapping[str, Any]) -> str:
    """One record as a metrics log line (with its format version), newline included."""
    return json.dumps(json_safe({"format_version": METRICS_VERSION, **record}), allow_nan=False) + "\n"


def read_metrics(run_or_file: str | os.PathLike, split: str | None = None) -> list[dict[str, Any]]:
    """The records of a metrics log (a run folder or the file), oldest first; of one ``split`` (``train``,
    ``valid``...) or all. A missing file has no records. Blank lines and a torn *last* line (a crash
    while writing) are skipped; any other line that is not a JSON object raises
    :class:`MetricsFormatError` naming the file and line. Records of version 0 (no ``format_version``)
    read the same."""
    path = metrics_path(run_or_file)
    if not path.is_file():
        return []
    lines = read_text(path, MetricsFormatError).splitlines()
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = parse_json(line, f"{path}:{i}", MetricsFormatError)
        except MetricsFormatError:
            if i == len(lines):
                break  # torn by a crash while writing
            raise
        if not isinstance(record, dict):
            raise MetricsFormatError(f"{path}:{i}: not a JSON object")
        record.setdefault("format_version", 0)
        if split is None or record.get("split", "train") == split:
            out.append(record)
    return out
