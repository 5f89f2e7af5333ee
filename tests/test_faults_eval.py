"""Bad evaluation inputs: features of mixed widths, an item file without items, and ABX
scores that rest on a handful of cells: exit 2 with one line naming the input, or the counts and a warning."""

from __future__ import annotations

import json

import pytest
import torch

from spidrkit.cli import main
from spidrkit.evaluation.metrics.abx import MIN_ABX_CELLS, ABXInputError, abx_both, abx_score
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
    assert err == (f"spidrkit evaluate abx: error: features of mixed dimensions: {feats / 'spk1-0.pt'} has 7, "
                   f"{feats / 'spk2-3.pt'} has 3; extract every file with one model and layer\n")
    assert not (tmp_path / "abx.json").exists() and list(tmp_path.glob("*.tmp*")) == []


def test_an_item_file_without_items_is_named(data, tmp_path, capsys):
    header_only = tmp_path / "header.item"
    header_only.write_text(data["item"].read_text().splitlines()[0] + "\n")
    code, out, err = run_cli(["abx", data["features"], header_only, "-o", tmp_path / "abx.json"], capsys)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err == (f"spidrkit evaluate abx: error: the item file {header_only} has no items (only a header?): give an "
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
    assert run_cli(["abx", data["features"], data["few"], "-o", out], capsys)[0] == 2  # no overwrite without --force
    assert run_cli(["abx", data["features"], data["few"], "-o", out, "--force"], capsys)[0] == 0
    assert json.loads(out.read_bytes())["results"] == json.loads(first)["results"]

    # enough cells: no warning
    code, _, err = run_cli(["abx", data["features"], data["item"]], capsys)
    assert code == 0 and err == ""


def _item_with(data, tmp_path, onset: str, offset: str) -> tuple:
    """The item file with its first item's times replaced (line 2), and that item's file id."""
    lines = data["item"].read_text().splitlines()
    fields = lines[1].split()
    fields[1:3] = [onset, offset]
    path = tmp_path / "bad.item"
    path.write_text("\n".join([lines[0], " ".join(fields), *lines[2:]]) + "\n")
    return path, fields[0]


def test_an_item_past_the_audio_is_named_by_its_line_before_fastabx(data, tmp_path, capsys):
    n = len(data["phones"]["spk1-0"])
    item, utt = _item_with(data, tmp_path, f"{n / RATE + 0.5:.2f}", f"{n / RATE + 0.6:.2f}")
    assert utt == "spk1-0"
    code, out, err = run_cli(["abx", data["features"], item, "-o", tmp_path / "abx.json"], capsys)
    assert code == 2 and out == ""
    assert err == (f"spidrkit evaluate abx: error: {item}:2: the item {n / RATE + 0.5:.2f}-{n / RATE + 0.6:.2f} s of "
                   f"{utt} ends past its features ({n} frames, {n / RATE:.3f} s at {RATE:g} Hz): its times are past "
                   "the audio, or the model drops the audio's last frame; fix or drop the item\n")
    assert not (tmp_path / "abx.json").exists()
    with pytest.raises(ABXInputError, match=rf"^{item}:2: the item .* ends past its features \({n} frames"):
        abx_score({u: one_hot(p) for u, p in data["phones"].items()}, item, frequency=RATE, progress=False)


@pytest.mark.parametrize(("onset", "offset", "cli", "api"), [
    ("-0.10", "0.20", "onset/offset must be finite times in seconds >= 0, got -0.1 0.2",
     "the item has a negative onset (-0.10)"),
    ("0.40", "0.20", "offset 0.2 before onset 0.4", "the item ends before it starts (onset 0.40 > offset 0.20)"),
])
def test_a_negative_onset_or_an_onset_after_the_offset_is_named_by_its_line(data, tmp_path, capsys, onset, offset,
                                                                           cli, api):
    item, _ = _item_with(data, tmp_path, onset, offset)
    code, printed, err = run_cli(["abx", data["features"], item], capsys)
    assert code == 2 and printed == "" and err == f"spidrkit evaluate abx: error: {item}:2: {cli}\n"
    with pytest.raises(ABXInputError) as e:  # the Python API, which hands the item file to fastabx
        abx_score({u: one_hot(p) for u, p in data["phones"].items()}, item, frequency=RATE, progress=False)
    assert str(e.value).startswith(f"{item}:2: {api}; ")
