"""ABX through fastabx on a synthetic triphone corpus: one-hot phone features -> 0 %, noise -> 50 %."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spidrkit.evaluation.metrics.abx import FeatureDir, abx, abx_units, units_as_indices
from support import PHONES, RATE, one_hot


@pytest.mark.parametrize("speaker", ["within", "across"])
def test_one_hot_phone_features_are_perfect(triphones, speaker):
    item, frame_phones = triphones
    feats = {utt: one_hot(p) for utt, p in frame_phones.items()}
    assert abx(feats, item, speaker=speaker, frequency=RATE, progress=False, device="cpu") == 0.0


def test_posteriors_with_kl_symmetric(triphones):
    item, frame_phones = triphones
    feats = {utt: torch.softmax(5 * one_hot(p), dim=1) for utt, p in frame_phones.items()}
    assert abx(feats, item, distance="kl_symmetric", frequency=RATE, progress=False, device="cpu") == 0.0


@pytest.mark.parametrize("speaker", ["within", "across"])
def test_random_features_are_at_chance(triphones, speaker):
    item, frame_phones = triphones
    gen = torch.Generator().manual_seed(0)
    feats = {utt: torch.randn(len(p), 16, generator=gen) for utt, p in frame_phones.items()}
    score = abx(feats, item, speaker=speaker, frequency=RATE, progress=False, device="cpu")
    assert 47.0 <= score <= 53.0


def test_folder_equals_mapping_and_units_equal_one_hot(triphones, tmp_path):
    """Features read from DIR/<fileid>.pt score like the same mapping; units score like one-hot angular."""
    item, frame_phones = triphones
    rng = np.random.default_rng(1)
    # noisy units: the phone id 70 % of the time, a random unit otherwise -> an error rate strictly in (0, 50)
    units = {
        utt: np.where(rng.random(len(p)) < 0.7, p + 1, rng.integers(0, len(PHONES) + 1, len(p)))
        for utt, p in frame_phones.items()
    }
    one_hot = {utt: torch.nn.functional.one_hot(torch.as_tensor(u), len(PHONES) + 1).float()
               for utt, u in units.items()}
    for utt, x in one_hot.items():
        torch.save(x, tmp_path / f"{utt}.pt")
    assert len(FeatureDir(tmp_path)) == len(units)
    from_dir = abx(tmp_path, item, frequency=RATE, progress=False, device="cpu")
    from_map = abx(one_hot, item, frequency=RATE, progress=False, device="cpu")
    assert from_dir == pytest.approx(from_map, abs=1e-6)
    assert 1.0 < from_map < 40.0

    units_file = tmp_path / "units.txt"
    units_file.write_text("".join(f"{utt} {' '.join(map(str, u))}\n" for utt, u in units.items()))
    assert abx_units(units_file, item, frequency=RATE, progress=False, device="cpu") == from_map
    # one-hot input with the identical distance is reduced to indices first
    assert abx(one_hot, item, distance="identical", frequency=RATE, progress=False, device="cpu") == pytest.approx(
        from_map, abs=1e-4
    )
    assert units_as_indices({"u": [3, 1]})["u"].tolist() == [[3.0], [1.0]]


@pytest.mark.parametrize("speaker", ["within", "across"])
def test_identical_features_tie_everywhere(triphones, speaker):
    """Every frame the same vector: every A/B comparison is a tie, counted 1/2, so ABX is exactly 50 %."""
    item, frame_phones = triphones
    feats = {utt: torch.ones(len(p), 3) for utt, p in frame_phones.items()}
    assert abx(feats, item, speaker=speaker, frequency=RATE, progress=False, device="cpu") == 50.0


def test_frame_rates_go_to_fastabx_exactly():
    """A fractional rate goes to fastabx as exact decimal text, never as a float."""
    from spidrkit.evaluation.metrics.abx import fastabx_frequency

    assert fastabx_frequency(50.0) == 50 and fastabx_frequency(12.5) == "12.5"
    with pytest.raises(ValueError, match="> 0"):
        fastabx_frequency(0)


def test_abx_both_reports_an_empty_condition_as_none(triphones, tmp_path):
    """One speaker only: no across-speaker triplet exists; abx_both says None (with a warning), not an error."""
    from spidrkit.evaluation.metrics.abx import abx_both

    item, frame_phones = triphones
    one = tmp_path / "one_speaker.item"
    lines = item.read_text().splitlines()
    one.write_text("\n".join([lines[0], *(line for line in lines[1:] if line.endswith("spk1"))]) + "\n")
    feats = {utt: one_hot(p) for utt, p in frame_phones.items()}
    with pytest.warns(UserWarning, match="ABX across speaker .*no triplet to score"):
        row = abx_both(feats, one, frame_rate=RATE, device="cpu")
    assert row == {"abx_within": 0.0, "abx_across": None}


def test_bad_inputs(triphones, tmp_path):
    item, frame_phones = triphones
    with pytest.raises(FileNotFoundError):
        abx(tmp_path / "missing", item, frequency=RATE)
    with pytest.raises(FileNotFoundError):
        abx({}, tmp_path / "missing.item", frequency=RATE)
    feats = {utt: torch.rand(len(p), 4) for utt, p in frame_phones.items()}
    with pytest.raises(ValueError, match="probability"):
        abx(feats, item, distance="kl_symmetric", frequency=RATE, progress=False, device="cpu")
    with pytest.raises(ValueError, match="speaker"):
        abx(feats, item, speaker="between", frequency=RATE, progress=False)
