"""``report.html``: a report's Markdown as one self-contained page (``docs/formats.md``, "Reports").

The page holds the same blocks as ``report.md`` (:mod:`spidrkit.evaluation.pages.markdown`): headings, lists,
paragraphs, tables and figures. Figures are embedded as ``data:`` URIs (PNG, JPEG, SVG, GIF), so the page
alone can be mailed or archived; a figure whose file is missing is named in a visible note instead of a
broken image. Style and script are inline, and nothing is loaded from elsewhere. Clicking a table's
header sorts its rows by that column (numbers by value when the column has any: a cell's leading number,
``71.90`` of ``71.90 [68.10, 75.20]``; cells without one, ``–``, last; text otherwise), clicking again
reverses the order. A link to another report's ``report.md`` points to its ``report.html`` when that exists.
"""

from __future__ import annotations

import base64
import html
import os
import re
from pathlib import Path

from spidrkit.evaluation.pages.markdown import Block, Heading, Image, Items, Paragraph, Table, inline_patterns, parse
from spidrkit.evaluation.pages.tables import slug
from spidrkit.io import write_sidecar, write_text_atomic

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml",
        ".gif": "image/gif"}

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fff}
main{max-width:72rem;margin:0 auto;padding:1.5rem 2rem 4rem;line-height:1.45}
h1{font-size:1.7rem;border-bottom:2px solid #ddd;padding-bottom:.3rem}h2{font-size:1.3rem;margin-top:2.2rem}
code{background:#f2f2f4;padding:0 .25rem;border-radius:3px;font-size:.92em}
.scroll{overflow-x:auto;margin:.8rem 0}
table{border-collapse:collapse;font-size:.9rem;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d5d5da;padding:.25rem .55rem;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
th{background:#f2f2f4;cursor:pointer;user-select:none}th:hover{background:#e4e4ea}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tbody tr:nth-child(even){background:#fafafc}
figure{margin:1.2rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.85rem}.missing{color:#a00}
"""

# sort a table by the clicked header's column: numbers by value (cells without a leading number last), else text
SCRIPT = """
(function () {
  function num(cell) {
    var m = cell.textContent.trim().match(/^[-+]?(\\d+\\.?\\d*|\\.\\d+)(e[-+]?\\d+)?/i);
    return m ? parseFloat(m[0]) : null;
  }
  function sortBy(th) {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    var numeric = rows.some(function (r) { return num(r.cells[col]) !== null; });
    rows.sort(function (a, b) {
      if (numeric) {
        var x = num(a.cells[col]), y = num(b.cells[col]);
        if (x === null || y === null) { return (x === null) - (y === null); }
        return dir * (x - y);
      }
      return dir * a.cells[col].textContent.trim().localeCompare(b.cells[col].textContent.trim(), undefined,
                                                                  {numeric: true});
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable th").forEach(function (th) {
    th.title = "sort by this column";
    th.addEventListener("click", function () { sortBy(th); });
  });
})();
"""


def inline(text: str, base: Path | None = None) -> str:
    """One line of Markdown text as HTML: escaped, with its code spans, links, bold and italics."""
    marks = inline_patterns()
    out = []
    for k, part in enumerate(marks["code"].split(text)):  # odd parts: the code spans' contents
        if k % 2:
            out.append(f"<code>{html.escape(part)}</code>")
            continue
        pieces = []
        last = 0
        for m in marks["link"].finditer(part):
            pieces += [_emphasis(part[last:m.start()]), _link(m.group(1), m.group(2), base)]
            last = m.end()
        out.append("".join([*pieces, _emphasis(part[last:])]))
    return "".join(out)


def _emphasis(text: str) -> str:
    marks = inline_patterns()
    text = html.escape(text, quote=False)
    text = marks["bold"].sub(r"<strong>\1</strong>", text)
    return marks["italic"].sub(r"<em>\1</em>", text)


def _link(text: str, href: str, base: Path | None) -> str:
    if base is not None and href.endswith(".md") and "://" not in href:
        page = Path(href).with_suffix(".html")
        href = page.as_posix() if (base / page).is_file() else href
    return f'<a href="{html.escape(href)}">{_emphasis(text)}</a>'


def data_uri(path: Path) -> str | None:
    """The file as a ``data:`` URI, ``None`` when it is missing or not an image type of :data:`MIME`."""
    mime = MIME.get(path.suffix.lower())
    if mime is None or not path.is_file():
        return None
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def table_html(table: Table, base: Path | None = None) -> str:
    head = "".join(f'<th scope="col">{inline(c, base)}</th>' for c in table.header)
    body = "".join("<tr>" + "".join(f"<td>{inline(c, base)}</td>" for c in row) + "</tr>\n" for row in table.rows)
    return (f'<div class="scroll"><table class="sortable">\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}</tbody></table></div>")


def block_html(block: Block, base: Path) -> str:
    """One block as HTML; figures are read from ``base`` (the report's folder)."""
    if isinstance(block, Heading):
        return f'<h{block.level} id="{slug(block.text)}">{inline(block.text, base)}</h{block.level}>'
    if isinstance(block, Paragraph):
        return f"<p>{inline(block.text, base)}</p>"
    if isinstance(block, Items):
        return "<ul>\n" + "".join(f"<li>{inline(item, base)}</li>\n" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        return table_html(block, base)
    if isinstance(block, Image):
        return figure_html(block, base)
    raise TypeError(f"not a block of a report: {block!r}")


def figure_html(image: Image, base: Path) -> str:
    """The figure embedded, or a visible note when its file is missing (never a broken image)."""
    uri = data_uri(base / image.src)
    alt = html.escape(image.alt)
    if uri is None:
        return f'<p class="missing">figure not found: {html.escape(image.src)}</p>'
    return f'<figure><img src="{uri}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'


def render_html(markdown: str, base: str | os.PathLike) -> str:
    """The page of a report's Markdown text; ``base``: the folder its figure and link paths are relative to."""
    blocks = parse(markdown)
    title = next((b.text for b in blocks if isinstance(b, Heading)), "spidrkit report")
    title = re.sub(r"<[^>]+>", "", inline(title))
    body = "\n".join(block_html(b, Path(base)) for b in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{title}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n<script>{SCRIPT}</script>\n"
            "</body>\n</html>\n")


def write_html(report_md: str | os.PathLike) -> Path:
    """``report.html`` beside ``report_md`` (same stem), from its text and the figures it links; returns its path.
    Its sidecar (``report.html.json``) names the Markdown it renders."""
    md = Path(report_md)
    path = md.with_suffix(".html")
    write_text_atomic(path, render_html(md.read_text(encoding="utf-8"), md.parent))
    write_sidecar(path, report_md=md.name)
    return path
