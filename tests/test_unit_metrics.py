"""Unit-quality metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spidrkit.evaluation.metrics.units import bitrate, frame_units, pair_units_with_labels, unit_quality
from spidrkit.extraction.units import write_units

RATE = 50
# 5 units at 50 Hz, 11 labels at 100 Hz (one more than 2 x 5: trimmed)
UNITS = {"u": np.array([0, 0, 0, 0, 1])}
LABELS = {"u": np.array(list("aaaabbccccc"))}
# pairing "both": code 0 <-> a a a a b b c c, code 1 <-> c c  (10 frames)


def _h(*p: float) -> float:
    return -sum(x * math.log2(x) for x in p if x > 0)


def test_hand_example_both():
    q = unit_quality(UNITS, LABELS, unit_rate=RATE)
    assert q["num_frames"] == 10
    assert q["phone_purity"] == pytest.approx((4 + 2) / 10)  # max phone per code
    assert q["cluster_purity"] == pytest.approx((4 + 2 + 2) / 10)  # max code per phone
    h_y = _h(0.4, 0.2, 0.4)
    h_y_given_z = 0.8 * _h(0.5, 0.25, 0.25) + 0.2 * 0.0
    assert q["pnmi"] == pytest.approx((h_y - h_y_given_z) / h_y)
    assert q["pnmi"] == pytest.approx(0.2115265, abs=1e-6)
    assert q["phones"] == ["a", "b", "c"] and q["codes"] == [0, 1]
    np.testing.assert_allclose(q["phone_given_code"], [[0.5, 0.25, 0.25], [0.0, 0.0, 1.0]])
    assert q["phone_counts"] == [4, 2, 4]
    assert q["active_codewords"] == 2
    assert q["codebook_perplexity"] == pytest.approx(2 ** _h(0.8, 0.2))
    assert q["bitrate"] == pytest.approx(2 / 0.1 * 1.0)  # tokens [0, 1] in 0.1 s, 1 bit each


def test_hand_example_center():
    codes, labels, _ = pair_units_with_labels(UNITS, LABELS, unit_rate=RATE, pairing="center")
    # unit i <-> label frame 2i + 1
    assert codes.tolist() == [0, 0, 0, 0, 1]
    assert labels.tolist() == ["a", "a", "b", "c", "c"]
    q = unit_quality(UNITS, LABELS, unit_rate=RATE, pairing="center")
    assert q["phone_purity"] == pytest.approx((2 + 1) / 5)
    assert q["cluster_purity"] == pytest.approx((2 + 1 + 1) / 5)


def test_ignore_labels():
    q = unit_quality(UNITS, LABELS, unit_rate=RATE, ignore_labels={"b"})
    # code 0 <-> a a a a c c, code 1 <-> c c
    assert q["num_frames"] == 8
    assert q["phone_purity"] == pytest.approx((4 + 2) / 8)
    assert q["phones"] == ["a", "c"]
    assert q["active_codewords"] == 2  # codebook statistics keep every unit frame


def test_perplexity_and_bitrate_by_hand():
    units = {"x": [0, 0, 0, 0, 1], "y": [2, 2, 1, 1]}
    # de-duplicated: [0, 1] + [2, 1] -> counts {0: 1, 1: 2, 2: 1}, H = 1.5 bits; 9 frames = 0.18 s
    assert bitrate(units, frame_rate=RATE) == pytest.approx(4 / 0.18 * 1.5)
    labels = {"x": ["p"] * 10, "y": ["p"] * 4 + ["q"] * 4}
    q = unit_quality(units, labels, unit_rate=RATE)
    assert q["codebook_perplexity"] == pytest.approx(2 ** _h(4 / 9, 3 / 9, 2 / 9))
    assert q["active_codewords"] == 3


def test_units_equal_to_phones_give_pnmi_one():
    rng = np.random.default_rng(0)
    phones = [f"P{i}" for i in range(30)]
    units, labels = {}, {}
    for u in range(20):
        seq = rng.integers(0, 30, 200)
        units[f"utt{u}"] = (seq * 7 + 3) % 30  # a relabelling of the phones
        labels[f"utt{u}"] = np.array([phones[i] for i in np.repeat(seq, 2)] + ["P0"])
    q = unit_quality(units, labels, unit_rate=RATE)
    assert q["pnmi"] == pytest.approx(1.0)
    assert q["phone_purity"] == pytest.approx(1.0) and q["cluster_purity"] == pytest.approx(1.0)
    assert q["codebook_perplexity"] <= 30


def test_random_units_give_pnmi_near_zero():
    rng = np.random.default_rng(0)
    units = {f"utt{u}": rng.integers(0, 50, 1000) for u in range(50)}
    labels = {f"utt{u}": rng.integers(0, 40, 2001) for u in range(50)}
    q = unit_quality(units, labels, unit_rate=RATE)
    assert 0.0 <= q["pnmi"] < 0.05
    assert q["active_codewords"] == 50
    assert q["codebook_perplexity"] == pytest.approx(50, rel=0.01)
    # iid uniform units: H ~ log2(50) and a run collapses with probability 1/50
    assert q["bitrate"] == pytest.approx(50 * (1 - 1 / 50) * math.log2(50), rel=0.01)


def test_errors_and_reading(tmp_path):
    with pytest.raises(ValueError, match="apart"):
        unit_quality({"u": [0] * 10}, {"u": ["a"] * 40}, unit_rate=RATE)
    with pytest.raises(ValueError, match="no utterance"):
        unit_quality({"u": [0]}, {"v": ["a", "b"]}, unit_rate=RATE)
    with pytest.warns(UserWarning, match="1 of 2"):
        unit_quality({**UNITS, "other": [1, 2]}, LABELS, unit_rate=RATE)
    with pytest.raises(ValueError, match="same phone"):
        unit_quality(UNITS, {"u": ["a"] * 10}, unit_rate=RATE)
    with pytest.raises(ValueError, match="integer"):
        frame_units({"u": [0.5, 1.0]})


def test_units_files_frame_level_and_deduplicated(tmp_path):
    """A units file, frame-level or de-duplicated with durations, gives the same metrics as the mapping."""
    units = {"x": [0, 0, 0, 0, 1], "y": [2, 2, 1, 1]}
    labels = {"x": ["p"] * 10, "y": ["p"] * 4 + ["q"] * 4}
    ref = unit_quality(units, labels, unit_rate=RATE)
    for dedup in (False, True):
        path = write_units(tmp_path / f"units{int(dedup)}.txt", units, dedup=dedup)
        assert {k: v.tolist() for k, v in frame_units(path).items()} == units
        q = unit_quality(path, labels, unit_rate=RATE)
        assert q["pnmi"] == pytest.approx(ref["pnmi"]) and q["bitrate"] == pytest.approx(ref["bitrate"])


def test_units_at_another_frame_rate():
    """At 25 Hz each unit covers 4 label frames of 10 ms: the same units pair with twice the labels."""
    units = {"u": np.array([0, 1])}
    labels = {"u": np.array(list("aaabbbbc"))}
    # code 0 <-> a a a b, code 1 <-> b b b c
    codes, phones, _ = pair_units_with_labels(units, labels, unit_rate=25)
    assert codes.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and phones.tolist() == list("aaabbbbc")
    centre, _, _ = pair_units_with_labels(units, labels, unit_rate=25, pairing="center")
    assert centre.tolist() == [0, 1]
    q = unit_quality(units, labels, unit_rate=25)
    assert q["phone_purity"] == pytest.approx((3 + 3) / 8)
    assert q["bitrate"] == pytest.approx(2 / (2 / 25) * 1.0)  # tokens [0, 1] in 80 ms, 1 bit each
    with pytest.raises(ValueError, match="multiple of the unit rate 30 Hz"):
        pair_units_with_labels(units, labels, unit_rate=30)


def test_unit_row_is_abx_of_units_and_their_quality(tmp_path):
    """The sweep's row: ABX of the units as one-hot (identical distance) and the scalar unit metrics."""
    from spidrkit.evaluation.metrics.abx import abx_units
    from spidrkit.evaluation.metrics.units import UNIT_METRICS, unit_row

    item = tmp_path / "x.item"
    rows = [f"{utt} {0.02 + 0.1 * k:.2f} {0.08 + 0.1 * k:.2f} {ph} a b s{utt[-1]}"
            for utt in ("u1", "u2") for k, ph in enumerate("pqpqpq")]
    item.write_text("#file onset offset #phone prev-phone next-phone speaker\n" + "\n".join(rows) + "\n")
    units = {utt: np.repeat([0, 1, 0, 1, 0, 1], 5) for utt in ("u1", "u2")}
    labels = {utt: list(np.repeat(list("pqpqpq"), 10)) for utt in ("u1", "u2")}
    row, quality = unit_row(units, labels, item, frame_rate=RATE)
    ref = unit_quality(units, labels, unit_rate=RATE)
    assert {k: quality[k] for k in UNIT_METRICS} == {k: ref[k] for k in UNIT_METRICS}
    assert {k: row[k] for k in UNIT_METRICS} == {k: quality[k] for k in UNIT_METRICS}
    assert row["abx_within"] == abx_units(units, item, frequency=RATE, progress=False) == 0.0
    assert row["abx_across"] == abx_units(units, item, speaker="across", frequency=RATE, progress=False) == 0.0
    assert quality["pnmi"] == 1.0 and quality["active_codewords"] == 2
