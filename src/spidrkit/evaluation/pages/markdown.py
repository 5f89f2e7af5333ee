"""The Markdown that spidrkit's reports are written in, read back as blocks (``docs/formats.md``, "Reports").

Not a general Markdown reader: it knows what the report writers emit. A line is one of

- a heading, ``#`` to ``######`` then a space (:class:`Heading`);
- an item of a list, ``- text`` (consecutive items make one :class:`Items`);
- a table row, ``| a | b |``: a header row, a delimiter row (``|---|---:|``) and body rows (:class:`Table`);
- a figure alone on its line, ``![alt](path)`` (:class:`Image`);
- text: consecutive text lines make one :class:`Paragraph`; a blank line ends any block.

Inline marks: ``**bold**``, ``*italics*``, `` `code` `` and links ``[text](href)``; :func:`plain` drops them
(the cell text of a CSV), :mod:`spidrkit.evaluation.pages.html` turns them into HTML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)$")
_DELIMITER = re.compile(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?$")
_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]*)\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])")
_CODE = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Items:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Image:
    alt: str
    src: str


@dataclass(frozen=True)
class Table:
    """``header``: the header cells; ``rows``: the body, each padded or cut to the header's width; ``align``:
    ``"left"``, ``"right"``, ``"center"`` or ``""`` per column, from the delimiter row."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: tuple[str, ...] = field(default=())


Block = Heading | Paragraph | Items | Image | Table


def split_row(line: str) -> list[str]:
    """The cells of a table row, stripped (the outer pipes are optional)."""
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") else inner
    return [c.strip() for c in inner.split("|")]


def _alignment(cell: str) -> str:
    cell = cell.strip()
    if cell.startswith(":") and cell.endswith(":"):
        return "center"
    return "right" if cell.endswith(":") else "left" if cell.startswith(":") else ""


def _table(lines: list[str]) -> Table:
    header = split_row(lines[0])
    align = tuple(_alignment(c) for c in split_row(lines[1]))
    width = len(header)
    rows = tuple(tuple((split_row(line) + [""] * width)[:width]) for line in lines[2:])
    return Table(tuple(header), rows, tuple((*align, *[""] * width)[:width]))


def _is_table_start(lines: list[str], i: int) -> bool:
    return (lines[i].lstrip().startswith("|") and i + 1 < len(lines)
            and _DELIMITER.match(lines[i + 1].strip()) is not None)


def parse(text: str) -> list[Block]:
    """The blocks of a report's Markdown, in order (see the module doc)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
        elif (m := _HEADING.match(line)) is not None:
            blocks.append(Heading(len(m.group(1)), m.group(2)))
            i += 1
        elif (m := _IMAGE.match(line)) is not None:
            blocks.append(Image(m.group(1), m.group(2)))
            i += 1
        elif _is_table_start(lines, i):
            j = i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            blocks.append(_table(lines[i:j]))
            i = j
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].strip().startswith("- "):
                items.append(lines[i].strip()[2:])
                i += 1
            blocks.append(Items(tuple(items)))
        else:
            j = i
            while j < len(lines) and lines[j].strip() and not _starts_block(lines, j):
                j += 1
            blocks.append(Paragraph(" ".join(x.strip() for x in lines[i:max(j, i + 1)])))
            i = max(j, i + 1)
    return blocks


def _starts_block(lines: list[str], i: int) -> bool:
    line = lines[i].strip()
    return bool(_HEADING.match(line) or _IMAGE.match(line) or line.startswith("- ") or _is_table_start(lines, i))


def plain(text: str) -> str:
    """``text`` without its inline marks: links keep their text, bold / italics / code their content."""
    text = _LINK.sub(r"\1", text)
    text = _CODE.sub(r"\1", text)
    text = _BOLD.sub(r"\1", text)
    return _ITALIC.sub(r"\1", text)


def inline_patterns() -> dict[str, re.Pattern]:
    """The inline marks' patterns, for the HTML renderer: ``link``, ``code``, ``bold``, ``italic``."""
    return {"link": _LINK, "code": _CODE, "bold": _BOLD, "italic": _ITALIC}
