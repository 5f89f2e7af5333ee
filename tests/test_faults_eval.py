"""Bad evaluation inputs: features of mixed widths, an item file without items, and ABX
scores that rest on a handful of cells: exit 2 with one line naming the input, or the counts and a warning."""

from __future__ import annotations

import json

import pytest
import torch

from spidrkit.cli import main
from spidrkit.evaluation.metrics.abx import MIN_ABX_CELLS, abx_both, abx_score
from spidrkit.extraction.features_io import save_features
from support import RATE, one_hot


@pytest.fixture(scope="module")
def data(triphones, tmp_path_factory):
    """The triphone corpus (conftest.triphones: 2 speakers, 6 phones in 4 contexts), its one-hot features as a
    folder, and an item file keeping the phones AA and IY in one context (4 cells per speaker condition)."""
    root = tmp_path_factory.mktemp("faults_eval")
    item, frame_phones = triphones
    feats = root / "features"
    for utt, phones in frame_phones.items():
        save_features(feats, utt, one_hot(phones))
    lines = item.read_text().splitlines()
    few = root / "few.item"
    few.write_text("\n".join([lines[0], *(x for x in lines[1:] if x.split()[4] == "B" and x.split()[3] in
                                          ("AA", "IY"))]) + "\n")
    return {"item": item, "few": few, "features": feats, "phones": frame_phones, "root": root}


def run_cli(args, capsys) -> tuple[int, str, str]:
    code = main(["evaluate", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_features_of_mixed_dimensions_name_a_file_of_each(data, tmp_path, capsys):
    import shutil

    feats = shutil.copytree(data["features"], tmp_path / "features")
    save_features(feats, "spk2-3", torch.zeros(len(data["phones"]["spk2-3"]), 3))
    code, out, err = run_cli(["abx", feats, data["item"], "-o", tmp_path / "abx.json"], capsys)
    assert code == 2 and out == ""
    assert err == (f"spidrkit evaluate: error: features of mixed dimensions: {feats / 'spk1-0.pt'} has 7, "
                   f"{feats / 'spk2-3.pt'} has 3; extract every file with one model and layer\n")
    assert not (tmp_path / "abx.json").exists() and list(tmp_path.glob("*.tmp*")) == []


def test_an_item_file_without_items_is_named(data, tmp_path, capsys):
    header_only = tmp_path / "header.item"
    header_only.write_text(data["item"].read_text().splitlines()[0] + "\n")
    code, out, err = run_cli(["abx", data["features"], header_only, "-o", tmp_path / "abx.json"], capsys)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err == (f"spidrkit evaluate: error: the item file {header_only} has no items (only a header?): give an "
                   "item file with one line per phone instance (#file onset offset #phone prev-phone next-phone "
                   "speaker)\n")
    assert not (tmp_path / "abx.json").exists()
    empty = tmp_path / "empty.item"
    empty.write_text("")
    code, _, err = run_cli(["abx", data["features"], empty], capsys)
    assert code == 2 and str(empty) in err and len(err.splitlines()) == 1


def test_scores_come_with_their_cells_and_triplets(data):
    feats = {utt: one_hot(p) for utt, p in data["phones"].items()}
    within = abx_score(feats, data["item"], speaker="within", frequency=RATE, progress=False)
    across = abx_score(feats, data["item"], speaker="across", frequency=RATE, progress=False)
    assert (within.error, within.cells, within.triplets) == (0.0, 240, 107520)
    assert (across.error, across.cells, across.triplets) == (0.0, 240, 122880)
    row = abx_both(feats, data["item"], frame_rate=RATE, with_counts=True)
    assert row == {"abx_within": 0.0, "abx_within_cells": 240, "abx_within_triplets": 107520,
                   "abx_across": 0.0, "abx_across_cells": 240, "abx_across_triplets": 122880}


def test_a_score_on_few_cells_is_reported_with_its_counts_and_a_warning(data, tmp_path, capsys):
    out = tmp_path / "abx.json"
    code, printed, err = run_cli(["abx", data["features"], data["few"], "-o", out], capsys)
    assert code == 0
    assert printed.splitlines()[:3] == [
        "     abx_within  abx_within_cells  abx_within_triplets  abx_across  abx_across_cells  abx_across_triplets",
        "---  ----------  ----------------  -------------------  ----------  ----------------  -------------------",
        "abx        0.00                 4                 1792        0.00                 4                 2048",
    ]
    warnings = [f"ABX {s} speaker rests on 4 cells ({n} triplets), fewer than {MIN_ABX_CELLS}: the error rate is not "
                "reliable; evaluate on more items" for s, n in (("within", 1792), ("across", 2048))]
    assert err == "".join(f"spidrkit evaluate abx: warning: {w}\n" for w in warnings)
    results = json.loads(out.read_text())["results"]
    assert results["abx_within_cells"] == 4 and results["abx_across_triplets"] == 2048
    assert results["min_cells"] == 50 and results["warnings"] == warnings
    first = out.read_bytes()
    assert run_cli(["abx", data["features"], data["few"], "-o", out], capsys)[0] == 0
    assert json.loads(out.read_bytes())["results"] == json.loads(first)["results"]

    # enough cells: no warning
    code, _, err = run_cli(["abx", data["features"], data["item"]], capsys)
    assert code == 0 and err == ""
