"""The CTC phone recogniser of the probe (spidrkit.evaluation.metrics.ctc): sequences, decoding, exact cases."""

import numpy as np
import torch

from spidrkit.evaluation.metrics.ctc import (
    BLANK,
    ctc_phone_recognition,
    edit_distance,
    greedy_decode,
    phone_sequence,
)


def test_phone_sequence_collapses_runs_and_drops_silences():
    frames = ["SIL", "SIL", "a", "a", "b", "SIL", "b", "b", "pau", "c", ""]
    assert phone_sequence(frames) == ["a", "b", "b", "c"]  # the two b's are two phones (a pause between)
    assert phone_sequence(["SIL", "sil"]) == []


def test_greedy_decode_is_ctc_best_path():
    best = [BLANK, 1, 1, BLANK, 1, 2, 2, BLANK, 3]
    logits = torch.full((len(best), 4), -5.0)
    logits[torch.arange(len(best)), torch.tensor(best)] = 0.0
    assert greedy_decode(logits) == [1, 1, 2, 3]  # a blank separates the repeated 1


def test_edit_distance_by_hand():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance(["a", "b"], []) == 2


def _utterance(rng, phones, n):
    """Frames one-hot of their phone (index 0 is silence), plus a little noise; 3-7 frames per phone."""
    seq = ["SIL", *rng.choice(phones[1:], n), "SIL"]
    labels = np.array([p for p in seq for _ in range(rng.integers(3, 8))])
    x = np.eye(len(phones))[[phones.index(p) for p in labels]] + rng.normal(0, 0.1, (labels.size, len(phones)))
    return x.astype(np.float32), labels


def test_clean_features_are_recognised_exactly():
    rng = np.random.default_rng(0)
    phones = ["SIL", "a", "b", "c", "d", "e", "f", "g"]
    train = {f"t{i}": _utterance(rng, phones, 10) for i in range(50)}
    test = {f"h{i}": _utterance(rng, phones, 10) for i in range(20)}
    out = ctc_phone_recognition(train, test, seed=0)
    assert out["phones"] == 7
    assert out["gold"] == [len(phone_sequence(list(test[u][1]))) for u in sorted(test)]
    assert sum(out["edits"]) == 0
    # the same utterances with their feature columns shuffled against the labels: nothing to learn
    noise = {u: (rng.permutation(x), y) for u, (x, y) in test.items()}
    assert sum(ctc_phone_recognition(train, noise, seed=0)["edits"]) > 0.5 * sum(out["gold"])


def test_the_decoder_is_tuned_on_the_held_aside_utterances_only():
    """Utterances given as ``tune_on`` are not fitted; the blank bonus is the one that decodes them best. Noisy
    tuning utterances flicker, so a larger bonus (fewer insertions) decodes them best; clean ones need none."""
    rng = np.random.default_rng(1)
    phones = ["SIL", "a", "b", "c", "d", "e", "f", "g"]
    train = {f"t{i}": _utterance(rng, phones, 10) for i in range(40)}
    noisy = {}
    for i in range(15):
        x, y = _utterance(rng, phones, 10)
        noisy[f"n{i}"] = (x + rng.normal(0, 0.45, x.shape).astype(np.float32), y)
    test = {f"h{i}": _utterance(rng, phones, 10) for i in range(5)}
    plain = ctc_phone_recognition(train, test, seed=0)
    tuned = ctc_phone_recognition({**train, **noisy}, test, tune_on=list(noisy), seed=0)
    assert plain["blank_bonus"] == 0.0
    assert tuned["blank_bonus"] > 0.0
    assert tuned["gold"] == plain["gold"]


def test_the_report_ranks_the_pers_and_not_the_decoders_setting():
    from spidrkit.evaluation.sweep.report import metrics_table

    rows = {"1": {"probe_per": 90.0, "probe_frame_per": 150.0, "probe_ctc_blank_bonus": 2.0},
            "2": {"probe_per": 80.0, "probe_frame_per": 160.0, "probe_ctc_blank_bonus": 6.0}}
    table = metrics_table(rows, first="layer")
    assert table[2] == "| 1 | 90.00 | **150.00** | 2.00 |"  # lower PER is better; a bonus is not ranked
    assert table[3] == "| 2 | **80.00** | 160.00 | 6.00 |"
