"""ABX through fastabx on a synthetic triphone corpus: one-hot phone features -> 0 %, noise -> 50 %."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spidrkit.evaluation.metrics.abx import FeatureDir, abx, abx_units, units_as_indices

PHONES = ["AA", "IY", "S", "T", "M", "L"]
CONTEXTS = [("B", "D"), ("K", "G"), ("P", "N"), ("F", "V")]
SPEAKERS = ["spk1", "spk2"]
RATE = 50
ITEM_FRAMES = 4  # every item spans 4 frames at 50 Hz (80 ms)
INSTANCES = 8


def _corpus(tmp_path):
    """An item file and the phone id of every 50 Hz frame of every utterance.

    One utterance per (speaker, instance); items are laid end to end with one frame of gap.
    """
    rows, frame_phones = [], {}
    for spk in SPEAKERS:
        for inst in range(INSTANCES):
            utt = f"{spk}-{inst}"
            phones = []
            for ctx in CONTEXTS:
                for p, phone in enumerate(PHONES):
                    start = len(phones) + 1
                    phones += [-1] + [p] * ITEM_FRAMES
                    onset, offset = start / RATE, (start + ITEM_FRAMES) / RATE
                    rows.append(f"{utt} {onset:.2f} {offset:.2f} {phone} {ctx[0]} {ctx[1]} {spk}")
            frame_phones[utt] = np.asarray([*phones, -1])
    item = tmp_path / "triphones.item"
    item.write_text("#file onset offset #phone prev-phone next-phone speaker\n" + "\n".join(rows) + "\n")
    return item, frame_phones


def _one_hot(phones: np.ndarray) -> torch.Tensor:
    x = torch.zeros(len(phones), len(PHONES) + 1)
    x[torch.arange(len(phones)), torch.as_tensor(phones) + 1] = 1.0  # silence gets its own dimension
    return x


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _corpus(tmp_path_factory.mktemp("abx"))


@pytest.mark.parametrize("speaker", ["within", "across"])
def test_one_hot_phone_features_are_perfect(corpus, speaker):
    item, frame_phones = corpus
    feats = {utt: _one_hot(p) for utt, p in frame_phones.items()}
    assert abx(feats, item, speaker=speaker, frequency=RATE, progress=False, device="cpu") == 0.0


def test_posteriors_with_kl_symmetric(corpus):
    item, frame_phones = corpus
    feats = {utt: torch.softmax(5 * _one_hot(p), dim=1) for utt, p in frame_phones.items()}
    assert abx(feats, item, distance="kl_symmetric", frequency=RATE, progress=False, device="cpu") == 0.0


@pytest.mark.parametrize("speaker", ["within", "across"])
def test_random_features_are_at_chance(corpus, speaker):
    item, frame_phones = corpus
    gen = torch.Generator().manual_seed(0)
    feats = {utt: torch.randn(len(p), 16, generator=gen) for utt, p in frame_phones.items()}
    score = abx(feats, item, speaker=speaker, frequency=RATE, progress=False, device="cpu")
    assert 47.0 <= score <= 53.0


def test_folder_equals_mapping_and_units_equal_one_hot(corpus, tmp_path):
    """Features read from DIR/<fileid>.pt score like the same mapping; units score like one-hot angular."""
    item, frame_phones = corpus
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
def test_identical_features_tie_everywhere(corpus, speaker):
    """Every frame the same vector: every A/B comparison is a tie, counted 1/2, so ABX is exactly 50 %."""
    item, frame_phones = corpus
    feats = {utt: torch.ones(len(p), 3) for utt, p in frame_phones.items()}
    assert abx(feats, item, speaker=speaker, frequency=RATE, progress=False, device="cpu") == 50.0


def test_frame_rates_go_to_fastabx_exactly():
    """A fractional rate goes to fastabx as exact decimal text, never as a float."""
    from spidrkit.evaluation.metrics.abx import fastabx_frequency

    assert fastabx_frequency(50.0) == 50 and fastabx_frequency(12.5) == "12.5"
    with pytest.raises(ValueError, match="> 0"):
        fastabx_frequency(0)


def test_abx_both_reports_an_empty_condition_as_none(tmp_path):
    """One speaker only: no across-speaker triplet exists; abx_both says None (with a warning), not an error."""
    from spidrkit.evaluation.metrics.abx import abx_both

    item, frame_phones = _corpus(tmp_path)
    one = tmp_path / "one_speaker.item"
    lines = item.read_text().splitlines()
    one.write_text("\n".join([lines[0], *(line for line in lines[1:] if line.endswith("spk1"))]) + "\n")
    feats = {utt: _one_hot(p) for utt, p in frame_phones.items()}
    with pytest.warns(UserWarning, match="ABX across speaker .*no triplet to score"):
        row = abx_both(feats, one, frame_rate=RATE, device="cpu")
    assert row == {"abx_within": 0.0, "abx_across": None}


def test_bad_inputs(corpus, tmp_path):
    item, frame_phones = corpus
    with pytest.raises(FileNotFoundError):
        abx(tmp_path / "missing", item, frequency=RATE)
    with pytest.raises(FileNotFoundError):
        abx({}, tmp_path / "missing.item", frequency=RATE)
    feats = {utt: torch.rand(len(p), 4) for utt, p in frame_phones.items()}
    with pytest.raises(ValueError, match="probability"):
        abx(feats, item, distance="kl_symmetric", frequency=RATE, progress=False, device="cpu")
    with pytest.raises(ValueError, match="speaker"):
        abx(feats, item, speaker="between", frequency=RATE, progress=False)
