"""A report's other faces, made from its ``report.md`` (``docs/formats.md``, "Reports"): every table as
``tables/NAME.csv`` (:mod:`~spidrkit.evaluation.pages.tables`) and ``report.html``, one self-contained page
with the figures embedded and sortable tables (:mod:`~spidrkit.evaluation.pages.html`). The sweep, ``evaluate
slm``, ``slm-compare``, the probe and the demo all write theirs with :func:`write_tables` and
:func:`write_html`: the CSV files with the numbers, before the figures are drawn; the page last.
"""

from __future__ import annotations

from spidrkit.evaluation.pages.html import render_html, write_html
from spidrkit.evaluation.pages.tables import write_tables

__all__ = ["render_html", "write_html", "write_tables"]
