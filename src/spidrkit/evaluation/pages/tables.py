"""Every table of a report as a CSV file: ``tables/NAME.csv`` beside ``report.md`` (``docs/formats.md``, "Reports").

``NAME`` is the slug of the heading the table sits under (``## Metrics by layer`` -> ``metrics_by_layer``;
``table`` before any heading), with ``_2``, ``_3``... when a heading holds several tables or two headings
give the same slug. A CSV holds the header row and the body rows as the report shows them, inline marks
dropped (``**7.50**`` -> ``7.50``, ``*mfcc*`` -> ``mfcc``): the rounded values of the report, its
``report.json`` keeps them unrounded. ``tables/spidrkit.json`` (the folder's sidecar) maps each file to its
heading. CSV files of an earlier version of the report that the new one no longer has are removed.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

from spidrkit.evaluation.pages.markdown import Block, Heading, Table, parse, plain
from spidrkit.io import write_sidecar, write_text_atomic

TABLES_DIR = "tables"


def slug(text: str) -> str:
    """A file name from a heading: lower case, runs of other characters than letters and digits as ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", plain(text).lower()).strip("_") or "table"


def named_tables(blocks: list[Block]) -> dict[str, tuple[str, Table]]:
    """``{name: (heading, table)}`` for every table of ``blocks``, in order (names: see the module doc)."""
    out: dict[str, tuple[str, Table]] = {}
    heading = ""
    for block in blocks:
        if isinstance(block, Heading):
            heading = plain(block.text)
        elif isinstance(block, Table):
            base = slug(heading) if heading else "table"
            name, n = base, 1
            while name in out:
                n += 1
                name = f"{base}_{n}"
            out[name] = (heading, block)
    return out


def csv_text(table: Table) -> str:
    """The CSV of one table (RFC 4180 quoting, ``\\n`` line ends), its cells without inline marks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([plain(c) for c in table.header])
    writer.writerows([plain(c) for c in row] for row in table.rows)
    return buffer.getvalue()


def write_tables(report_md: str | os.PathLike) -> dict[str, Path]:
    """Write ``tables/NAME.csv`` for every table of ``report_md`` (beside it) and the folder's sidecar;
    returns ``{name: path}``. A report without tables gets no folder (an earlier one's CSV files go)."""
    md = Path(report_md)
    tables = named_tables(parse(md.read_text(encoding="utf-8")))
    folder = md.parent / TABLES_DIR
    written = {name: write_text_atomic(folder / f"{name}.csv", csv_text(table))
               for name, (_, table) in tables.items()}
    if folder.is_dir():
        for stale in folder.glob("*.csv"):
            if stale.stem not in tables:
                stale.unlink()
    if written:
        write_sidecar(folder, report_md=os.path.relpath(md, folder),
                      tables={f"{name}.csv": heading for name, (heading, _) in tables.items()})
    elif folder.is_dir():
        (folder / "spidrkit.json").unlink(missing_ok=True)
        if not any(folder.iterdir()):
            folder.rmdir()
    return written
