"""User text in, one way: UTF-8 (a leading BOM skipped), errors that name the file and the line.

Every reader of a user's text file (manifests, alignments, item files, units, ``gold.csv``, configs...)
reads it with :func:`read_text` or :func:`read_lines`, and parses its JSON with :func:`parse_json`, so that
a file saved by a spreadsheet (a BOM), in another encoding, or with JSON nested past Python's limits is an
:class:`~spidrkit.errors.InputError` of the reader's own class: ``FILE:LINE: what is wrong; the fix``
(exit status 2), never an internal error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from spidrkit.errors import InputError

ENCODING = "utf-8-sig"  # UTF-8; a BOM (Excel, Notepad) is skipped, so the first header cell keeps its name


def read_text(path: str | os.PathLike, error: type[InputError] = InputError) -> str:
    """The text of ``path``; a missing file, a folder, or a byte that is not UTF-8 raises ``error`` naming the file
    (and the line and byte)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a file") from None
    try:
        return data.decode(ENCODING)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); save the file as UTF-8") from None


def read_lines(path: str | os.PathLike, error: type[InputError] = InputError) -> list[str]:
    """The lines of ``path`` without their ends (``\\n``, ``\\r\\n`` or ``\\r``, as ``open`` reads them), so that
    line ``i`` of a message is line ``i`` in an editor."""
    text = read_text(path, error).replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def parse_json(text: str | bytes, where: str, error: type[InputError] = InputError) -> Any:
    """``text`` parsed as JSON; malformed JSON, nesting past Python's limit or an integer of more digits than
    Python converts raises ``error`` starting with ``where`` (``FILE:LINE``)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply") from None
    except ValueError as e:  # json.JSONDecodeError, and the integer-digits limit
        raise error(f"{where}: not valid JSON ({e})") from None
