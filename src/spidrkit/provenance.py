"""Sidecars: every output on disk says what produced it (model, checkpoint hash, 1-based layers, k)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

SIDECAR_NAME = "spidrkit.json"


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
    """Write the sidecar of ``output`` atomically, with the producer's details added."""
    from spidrkit import __version__

    record = {
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
    path = sidecar_path(output)
    if not path.is_file():
        raise FileNotFoundError(f"no sidecar {path} next to {output}")
    return json.loads(path.read_text())


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)
