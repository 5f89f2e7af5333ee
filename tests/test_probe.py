"""Linear probes: exact on features that are the answer, at chance on noise, bootstrap intervals, the
frame pairing, the speaker probe, and the probe of a model on a corpus (with the CLI)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spidrkit.evaluation.metrics.probe import (
    ProbeSet,
    bootstrap_ci,
    collapse,
    edit_distance,
    pair_frames,
    phone_probe,
    probe_row,
    smooth,
    speaker_probe,
    speaker_split,
)

RATE = 50  # model frames per second; labels are at 100 Hz
PHONES = ["SIL", "AA", "B", "K", "S", "IY", "N", "T"]


def fake_labels(n_utts: int, seed: int, prefix: str = "u") -> dict[str, list[str]]:
    """100 Hz label sequences of runs of 2-12 frames (runs of at least two label frames, so that every
    phone of a run is seen by a 50 Hz frame centre)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n_utts):
        seq: list[str] = []
        while len(seq) < 200:
            seq += [PHONES[rng.integers(len(PHONES))]] * int(rng.integers(2, 13))
        out[f"{prefix}{i:03d}"] = seq
    return out


def one_hot_at_model_rate(labels: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Features of the model's frames (T = labels // 2) that are the one-hot of the label at their centre."""
    feats = {}
    for u, lab in labels.items():
        t = len(lab) // 2
        x = np.zeros((t, len(PHONES)), dtype=np.float32)
        x[np.arange(t), [PHONES.index(lab[2 * i + 1]) for i in range(t)]] = 1.0
        feats[u] = x
    return feats


def test_pairing_is_the_centre_label():
    labels = {"a": ["SIL", "AA", "AA", "B", "B", "K", "S"]}
    feats = {"a": np.arange(3, dtype=np.float32)[:, None]}
    paired = pair_frames(feats, labels, frame_rate=RATE)
    np.testing.assert_array_equal(paired["a"][0][:, 0], [0, 1, 2])
    assert list(paired["a"][1]) == ["AA", "B", "K"]  # label frames 1, 3, 5


def test_edit_distance_and_collapse():
    assert collapse(np.array(["a", "a", "b", "b", "a"])) == ["a", "b", "a"]
    # smoothing: a one-frame flicker between equal neighbours goes, a two-frame run stays, edges stay
    assert smooth(np.array(list("aabaacccbbc"))).tolist() == list("aaaaacccbbc")
    assert smooth(np.array(list("abc"))).tolist() == list("abc")
    assert collapse(smooth(np.array(list("xaabaaxx")))) == ["x", "a", "x"]
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], [1, 2]) == 2
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0


def test_one_hot_phone_features_are_exact():
    train_l, test_l = fake_labels(30, 1), fake_labels(10, 2, prefix="h")
    train = pair_frames(one_hot_at_model_rate(train_l), train_l, frame_rate=RATE)
    test = pair_frames(one_hot_at_model_rate(test_l), test_l, frame_rate=RATE)
    row = phone_probe(train, test, n_boot=200)
    assert row["probe_acc"] == 100.0
    assert row["probe_per"] == 0.0
    assert row["probe_acc_ci"] == [100.0, 100.0]
    assert row["probe_per_ci"] == [0.0, 0.0]
    assert row["probe_phones"] == len(PHONES)
    assert row["probe_test_utterances"] == 10


def test_random_features_are_at_chance():
    """Features independent of the labels: whatever the classifier learnt, its test predictions are
    independent of the test labels, so its expected accuracy is sum_k P(pred = k) p(k) <= max_k p(k) (the
    chance level: always answering the most frequent phone). With n independent test frames (labels drawn
    i.i.d.), the accuracy's standard deviation is at most sqrt(q (1 - q) / n) with q <= max p <= 0.5: the
    bound is chance + 4 of those."""
    rng = np.random.default_rng(0)
    p = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.05, 0.05, 0.05])

    def utts(n, prefix):
        return {f"{prefix}{i}": (rng.standard_normal((100, 16)).astype(np.float32),
                                 np.array(PHONES)[rng.choice(len(PHONES), 100, p=p)]) for i in range(n)}

    test = utts(40, "h")
    row = phone_probe(utts(60, "t"), test, n_boot=200)
    gold = np.concatenate([y for _, y in test.values()])
    chance = 100.0 * max(np.mean(gold == ph) for ph in PHONES)
    assert row["probe_chance"] == pytest.approx(chance)
    q = chance / 100
    assert q <= 0.5
    assert row["probe_acc"] <= chance + 400.0 * math.sqrt(q * (1 - q) / gold.size)
    assert row["probe_per"] > 50.0  # the collapsed predictions are far from the gold phone sequence


def test_bootstrap_interval_contains_the_estimate_and_shrinks():
    rng = np.random.default_rng(3)
    widths = []
    for n in (10, 100, 1000):
        den = rng.integers(50, 150, n)
        num = rng.binomial(den, 0.6)
        lo, hi = bootstrap_ci(num, den, seed=0)
        assert lo <= 100.0 * num.sum() / den.sum() <= hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    assert bootstrap_ci([1, 2], [4, 4], seed=5) == bootstrap_ci([1, 2], [4, 4], seed=5)  # seeded


def test_speaker_probe_on_one_hot_speakers_is_exact():
    speakers = ["awb", "slt", "rms"]
    speaker_of = {f"{s}_{i}": s for s in speakers for i in range(6)}
    frames = {u: np.tile(np.eye(3, dtype=np.float32)[speakers.index(s)], (50, 1)) for u, s in speaker_of.items()}
    row = speaker_probe(frames, speaker_of, n_boot=100)
    assert row["speaker_acc"] == 100.0
    assert row["speaker_acc_ci"] == [100.0, 100.0]
    assert row["speakers"] == 3
    assert row["speaker_chance"] == pytest.approx(100.0 / 3)
    train, test = speaker_split(list(speaker_of), speaker_of, seed=0)
    assert not set(train) & set(test)
    assert sorted({speaker_of[u] for u in test}) == sorted({speaker_of[u] for u in train}) == sorted(speakers)
    assert len(test) == 3  # round(0.2 * 6) = 1 utterance per speaker


def test_probe_row_combines_both_probes():
    train_l, test_l = fake_labels(12, 4), fake_labels(4, 5, prefix="h")
    speaker_of = {u: ("a" if i % 2 else "b") for i, u in enumerate([*train_l, *test_l])}
    pset = ProbeSet([], [], {**train_l, **test_l}, speaker_of, "train", "heldout")
    row = probe_row(one_hot_at_model_rate(train_l), one_hot_at_model_rate(test_l), pset, frame_rate=RATE,
                    n_boot=50)
    assert row["probe_acc"] == 100.0 and row["probe_per"] == 0.0
    assert {"speaker_acc", "speaker_acc_ci", "speaker_chance"} <= set(row)
