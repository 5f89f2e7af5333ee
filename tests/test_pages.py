"""A report's other faces (``spidrkit.evaluation.pages``): its Markdown read back as blocks, every table as
``tables/NAME.csv``, and ``report.html``, one self-contained page checked in a real headless Chromium (every
figure loaded, nothing fetched, tables sorted by a click on a header)."""

from __future__ import annotations

import base64
import csv
import json

import numpy as np
import pytest

from browser import chromium, click_header, column, load
from spidrkit.evaluation.pages import render_html, write_html, write_tables
from spidrkit.evaluation.pages.markdown import Heading, Image, Items, Paragraph, Table, parse, plain
from spidrkit.evaluation.pages.tables import named_tables, slug
from spidrkit.evaluation.plots.layers import plot_layer_metrics
from spidrkit.evaluation.slm.compare import CompareRow, write_comparison

MD = """# A *title*

- **model**: `spidr` <tiny>
- seed 0

Two lines of
one paragraph with [a link](sub/report.md).

## Metrics by layer

| layer | abx | map |
|---|---:|:---:|
| 1 | **7.50** | 30.00 |
| *mfcc* | 10.95 |

![layers](figs/layers.png)
"""


def test_markdown_blocks_and_inline_marks():
    assert parse(MD) == [
        Heading(1, "A *title*"), Items(("**model**: `spidr` <tiny>", "seed 0")),
        Paragraph("Two lines of one paragraph with [a link](sub/report.md)."), Heading(2, "Metrics by layer"),
        Table(("layer", "abx", "map"), (("1", "**7.50**", "30.00"), ("*mfcc*", "10.95", "")), ("", "right", "center")),
        Image("layers", "figs/layers.png")]
    assert plain("**7.50** and *mfcc*, `code*x*`, [text](a.md), 2 * 3 * 4") == "7.50 and mfcc, code*x*, text, 2 * 3 * 4"
    assert slug("ABX across speakers (%)") == "abx_across_speakers" and slug("**?**") == "table"
    two = parse("| a |\n|---|\n| 1 |\n\n| b |\n|---|\n| 2 |\n\n## A b\n\n| c |\n|---|\n\n## a-B\n\n| d |\n|---|\n")
    assert list(named_tables(two)) == ["table", "table_2", "a_b", "a_b_2"]


def test_the_page_escapes_text_and_embeds_figures(tmp_path):
    (tmp_path / "figs").mkdir()
    png = plot_layer_metrics({"m": {1: {"map": 1.0}, 2: {"map": 2.0}}}, tmp_path / "figs" / "layers.png").path
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "report.html").write_text("")
    page = render_html(MD, tmp_path)
    assert "<title>A title</title>" in page and '<h1 id="a_title">A <em>title</em></h1>' in page
    assert "<li><strong>model</strong>: <code>spidr</code> &lt;tiny&gt;</li>" in page
    assert '<a href="sub/report.html">a link</a>' in page  # the other report's page, which exists
    assert "<td><strong>7.50</strong></td>" in page and "<td><em>mfcc</em></td><td>10.95</td><td></td>" in page
    uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    assert f'<img src="{uri}" alt="layers">' in page
    assert "http" not in page.replace("http-equiv", "") and "<link" not in page  # nothing from elsewhere
    png.unlink()
    page = render_html(MD, tmp_path)
    assert "<img" not in page and '<p class="missing">figure not found: figs/layers.png</p>' in page


def _results():
    return {"info": {"model": "spidr-tiny"},
            "layers": {1: {"abx_within": 9.0, "abx_across": 12.0, "map": np.float32(30.0)},
                       2: {"abx_within": 7.5, "abx_across": 11.0, "map": 35.123},
                       3: {"abx_within": 8.0, "abx_across": 10.0, "map": 33.0}},
            "baselines": {"mfcc": {"abx_within": 10.95, "abx_across": 20.16, "map": 5.0}},
            "units": {"kmeans L2": {"pnmi": 0.6331}, "codebook L2": {"pnmi": 0.6021}}}


@pytest.fixture
def report(tmp_path):
    from spidrkit.evaluation.sweep.report import write_report

    plots = [plot_layer_metrics({"m": {1: {"map": 1.0}, 2: {"map": 2.0}}}, tmp_path / "layers.png"),
             plot_layer_metrics({"m": {1: {"map": 3.0}, 2: {"map": 1.0}}}, tmp_path / "figs" / "other.png")]
    write_report(tmp_path / "rep", _results(), plots, title="Tiny run")
    return tmp_path / "rep"


def test_every_table_as_csv_and_the_page_beside_the_report(report):
    tables = report / "tables"
    assert sorted(p.name for p in tables.iterdir()) == ["discrete_units.csv", "metrics_by_layer.csv",
                                                         "spidrkit.json"]
    rows = list(csv.reader((tables / "metrics_by_layer.csv").open()))
    assert rows == [["layer", "abx_within", "abx_across", "map"], ["1", "9.00", "12.00", "30.00"],
                    ["2", "7.50", "11.00", "35.12"], ["3", "8.00", "10.00", "33.00"],
                    ["mfcc", "10.95", "20.16", "5.00"]]
    assert (tables / "discrete_units.csv").read_text() == "units,pnmi\nkmeans L2,0.633\ncodebook L2,0.602\n"
    sidecar = json.loads((tables / "spidrkit.json").read_text())
    assert sidecar["tables"] == {"metrics_by_layer.csv": "Metrics by layer", "discrete_units.csv": "Discrete units"}
    assert sidecar["report_md"] == "../report.md"
    assert json.loads((report / "report.html.json").read_text())["report_md"] == "report.md"
    assert (report / "report.html").read_text().count('<img src="data:image/png;base64,') == 2
    # a report written again without a table loses that table's CSV
    (report / "report.md").write_text("# Tiny run\n\n## Discrete units\n\n| units |\n|---|\n| x |\n")
    assert list(write_tables(report / "report.md")) == ["discrete_units"]
    assert sorted(p.name for p in (report / "tables").iterdir()) == ["discrete_units.csv", "spidrkit.json"]
    (report / "report.md").write_text("# Tiny run\n")
    assert write_tables(report / "report.md") == {} and not (report / "tables").exists()


def test_the_page_renders_in_chromium_every_figure_loaded_and_tables_sort(report):
    with chromium() as driver:
        state = load(driver, report / "report.html")
        assert state["title"] == "Tiny run" and state["fetched"] == 0
        assert [(alt, complete) for alt, complete, _ in state["images"]] == [("layers", True), ("other", True)]
        assert all(width > 0 for _, _, width in state["images"])  # no broken image
        assert column(driver, 0) == ["1", "2", "3", "mfcc"]
        click_header(driver, 0, 2)  # abx_across, ascending: 10.00 (3), 11.00 (2), 12.00 (1), 20.16 (mfcc)
        assert column(driver, 0) == ["3", "2", "1", "mfcc"]
        click_header(driver, 0, 2)  # again: descending
        assert column(driver, 0) == ["mfcc", "1", "2", "3"]
        click_header(driver, 0, 0)  # layer: numbers first, a row without a number last
        assert column(driver, 0) == ["1", "2", "3", "mfcc"]
        click_header(driver, 1, 0)  # units: text
        assert column(driver, 1) == ["codebook L2", "kmeans L2"]


def _slm_report(score):
    cell = {"score": score, "ci95": [score - 5, score + 5], "pairs": 20}
    return {"results": {"lexical/test": {"all": cell, "in_vocab": cell}, "syntactic/test": {"all": cell}}}


def test_slm_compare_page_and_a_figure_that_fails_loses_no_number(tmp_path, monkeypatch):
    """slm-compare writes report.json, report.md and the CSV before it draws its scatter; the page after it."""
    import spidrkit.evaluation.slm.compare as compare

    sweep = {"layers": {"6": {"abx_within": 8.0, "abx_across": 10.0}}, "baselines": {"mfcc": {"abx_across": 25.0}},
             "units": {"codebook L6": {"pnmi": 0.4}}}
    scored = [(CompareRow("codebook L6", "codebook:6", "lm1", "ckpt"), _slm_report(61.0)),
              (CompareRow("MFCC", "kmeans:M.npy", "lm2", "mfcc"), _slm_report(52.5))]
    out = tmp_path / "ok"
    write_comparison(out, scored, sweep=sweep)
    assert (out / "tables" / "unit_quality_vs_slm_scores.csv").read_text().splitlines()[1:] == [
        "codebook L6,8.00,10.00,0.400,61.00,61.00", "MFCC,–,25.00,–,52.50,52.50"]
    with chromium() as driver:
        state = load(driver, out / "report.html")
        assert [alt for alt, _, _ in state["images"]] == ["ABX and PNMI vs sLM scores"]
        assert state["images"][0][2] > 0 and state["fetched"] == 0
        click_header(driver, 0, 1)  # sWUGGY all: "52.50 [47.50, 57.50]" sorts by its leading number
        assert column(driver, 0) == ["MFCC", "codebook L6"]

    def broken(*args, **kwargs):
        raise RuntimeError("the figure failed")

    monkeypatch.setattr(compare, "plot_scatter", broken)
    out = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="the figure failed"):
        write_comparison(out, scored, sweep=sweep)
    assert json.loads((out / "report.json").read_text())["table"]["MFCC"]["swuggy_all"]["score"] == 52.5
    assert "| MFCC | 52.50 [47.50, 57.50] |" in (out / "report.md").read_text()
    assert (out / "tables" / "unit_quality_vs_slm_scores.csv").is_file() and not (out / "report.html").exists()


def test_write_html_of_any_markdown_file(tmp_path):
    (tmp_path / "notes.md").write_text("# Notes\n\n| a | b |\n|---|---|\n| x | 1 |\n")
    page = write_html(tmp_path / "notes.md")
    assert page == tmp_path / "notes.html" and '<table class="sortable">' in page.read_text()
