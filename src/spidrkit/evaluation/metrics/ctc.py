"""Phone recognition with a linear CTC head on frozen features: the phone error rate people read.

SUPERB's phone recognition task, small: a linear layer from a layer's frames (standardised with the training
frames' mean and variance) to the phones plus a blank, trained with the CTC loss (Graves et al., 2006) on the
training voices' utterances against their phone sequences, then decoded greedily (the best label of each frame,
runs collapsed, blanks removed) on the held-out voice. The phone sequence of an utterance is its frame labels
de-duplicated with silences removed (:data:`~spidrkit.data.corpora.phones.SILENCES`), so a layer is asked for the
phones, not for where they start and end. PER = edit distance / gold length, summed over utterances (%), with a
bootstrap 95 % interval over utterances.

The head trains full-batch with Adam (:data:`WARM_STEPS` of frame cross-entropy, which keeps CTC out of the
optimum where a phone is always swallowed by the blank, then :data:`CTC_STEPS` of CTC, learning rate
:data:`CTC_LR`, seeded); then the decoder's insertion penalty, a bonus on the blank's logit, is the one of
:data:`BLANK_BONUSES` that decodes the ``tune_on`` utterances best (the probe holds one training voice aside
for it, so the penalty is tuned on a voice the head did not hear). A few seconds per layer on a CPU for the
probe's ``max_train_frames``. A frame classifier's de-duplicated output counts every one-frame flicker as an
insertion (150-220 % on the demo); this head can say nothing, yet on a voice unlike its training voices it
still inserts, and its PER can exceed 100 % (docs/voices.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from spidrkit.data.corpora.phones import SILENCES

CTC_STEPS = 60  # full-batch Adam steps of the head
CTC_LR = 0.1  # Adam's learning rate
WARM_STEPS = 50  # cross-entropy steps against the frame labels first
BLANK = 0  # the CTC blank's index; phones are 1..V
# added to the blank's logit at decoding; the one that decodes the tuning utterances best is used
BLANK_BONUSES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)

Paired = Mapping[str, tuple[np.ndarray, np.ndarray]]  # utt -> (frames (T, D), frame labels (T,))


def collapse(labels: Sequence[Any] | np.ndarray) -> list[Any]:
    """The sequence with runs of equal labels collapsed (de-duplicated): ``a a b b a -> a b a``."""
    a = np.asarray(labels)
    return a[np.flatnonzero(np.concatenate(([True], a[1:] != a[:-1])))].tolist() if a.size else []


def phone_sequence(labels: Sequence[Any]) -> list[Any]:
    """The phones of an utterance from its frame labels: runs collapsed, silences removed (``SIL a a b -> a b``)."""
    return [x for x in collapse(labels) if x not in SILENCES]


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def greedy_decode(logits: torch.Tensor) -> list[int]:
    """CTC's best path of one utterance (``(T, V + 1)``): the best label per frame, runs collapsed, blanks dropped."""
    best = logits.argmax(-1).tolist()
    return [b for i, b in enumerate(best) if b != BLANK and (i == 0 or b != best[i - 1])]


def _padded(frames: Sequence[np.ndarray], mean: np.ndarray, std: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised frames of several utterances, zero-padded to ``(T_max, N, D)``, with their lengths."""
    lengths = torch.tensor([f.shape[0] for f in frames])
    out = torch.zeros(int(lengths.max()), len(frames), frames[0].shape[1])
    for i, f in enumerate(frames):
        out[: f.shape[0], i] = torch.from_numpy((f - mean) / std)
    return out, lengths


def _frame_targets(frame_labels: Sequence[np.ndarray], index: Mapping[Any, int], t_max: int) -> torch.Tensor:
    """``(T_max, N)`` class of every frame for the warm start: its phone's index, blank for silences, -100
    (ignored) for padding."""
    out = torch.full((t_max, len(frame_labels)), -100, dtype=torch.long)
    for i, labels in enumerate(frame_labels):
        out[: len(labels), i] = torch.tensor([index.get(x, BLANK) for x in labels], dtype=torch.long)
    return out


@dataclass(frozen=True)
class HeadData:
    """What the head trains on: frames of each utterance, their frame labels, and the phone -> index map."""

    frames: Sequence[np.ndarray]
    frame_labels: Sequence[np.ndarray]
    index: Mapping[Any, int]


def train_head(data: HeadData, *, steps: int = CTC_STEPS, lr: float = CTC_LR,
               seed: int = 0) -> tuple[torch.nn.Linear, np.ndarray, np.ndarray]:
    """A linear CTC head (``D -> phones + blank``) fitted on ``data``; returns it with the standardisation (mean,
    std) it expects. It starts where a frame classifier would (:data:`WARM_STEPS` steps of cross-entropy
    against the frame labels, silences as blank), which keeps CTC out of the optimum where a phone is always
    swallowed by the blank, then trains ``steps`` steps of CTC loss against the phone sequences."""
    stacked = np.concatenate(data.frames).astype(np.float32)
    mean, std = stacked.mean(0), stacked.std(0)
    std[std < 1e-8] = 1.0
    x, x_len = _padded(data.frames, mean, std)
    seqs = [[data.index[p] for p in phone_sequence(list(lab))] for lab in data.frame_labels]
    y, y_len = torch.tensor([t for seq in seqs for t in seq], dtype=torch.long), torch.tensor([len(s) for s in seqs])
    frame_y = _frame_targets(data.frame_labels, data.index, x.shape[0])
    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(x.shape[-1], len(data.index) + 1)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * x.shape[-1] ** -0.5)
        head.bias.zero_()
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    for step in range(WARM_STEPS + steps):
        logits = head(x)
        if step < WARM_STEPS:
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), frame_y.flatten(), ignore_index=-100)
        else:
            loss = torch.nn.functional.ctc_loss(logits.log_softmax(-1), y, x_len, y_len, blank=BLANK,
                                                zero_infinity=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head, mean, std


def _decodable(head: torch.nn.Linear, mean: np.ndarray, std: np.ndarray,
               utts: Paired) -> list[tuple[torch.Tensor, list[Any]]]:
    """Per utterance of ``utts`` (sorted): the head's logits (``(T, V + 1)``) and the gold phone sequence."""
    with torch.no_grad():
        return [(head(torch.from_numpy((np.asarray(utts[u][0], dtype=np.float32) - mean) / std)),
                 phone_sequence(list(utts[u][1]))) for u in sorted(utts)]


def _scores(decodable: Sequence[tuple[torch.Tensor, list[Any]]], names: Sequence[Any],
            blank_bonus: float = 0.0) -> tuple[list[int], list[int]]:
    """Per utterance: the edit distance of the greedy decoding (the blank's logit raised by ``blank_bonus``) to
    the gold phone sequence, and that sequence's length."""
    edits, gold = [], []
    for logits, ref in decodable:
        raised = logits.clone()
        raised[:, BLANK] += blank_bonus
        hyp = [names[i] for i in greedy_decode(raised)] if len(logits) else []
        edits.append(edit_distance(hyp, ref))
        gold.append(len(ref))
    return edits, gold


def ctc_phone_recognition(train: Paired, test: Paired, *, tune_on: Sequence[str] = (), steps: int = CTC_STEPS,
                          lr: float = CTC_LR, seed: int = 0) -> dict[str, Any]:
    """Train the head on ``train`` less the ``tune_on`` utterances, choose the blank bonus
    (:data:`BLANK_BONUSES`, the insertion penalty of a decoder) that decodes ``tune_on`` best (the training
    utterances when ``tune_on`` is empty), decode ``test``: per test utterance (sorted), the edit distance to its
    gold phone sequence and that sequence's length (``edits``, ``gold``), the bonus and the phone inventory size.
    The probe passes one training voice as ``tune_on``: the bonus is then tuned on a voice the head did not
    hear, as the test voice is."""
    usable = [u for u in sorted(train) if phone_sequence(list(train[u][1]))]
    tune = [u for u in usable if u in set(tune_on)]
    fit = [u for u in usable if u not in set(tune)]
    if not fit:
        raise ValueError("the CTC head has no training utterance with a phone outside silence")
    vocab = sorted({p for u in usable for p in phone_sequence(list(train[u][1]))})
    data = HeadData([np.asarray(train[u][0], dtype=np.float32) for u in fit],
                    [np.asarray(train[u][1]) for u in fit], {p: i + 1 for i, p in enumerate(vocab)})
    with torch.random.fork_rng():
        head, mean, std = train_head(data, steps=steps, lr=lr, seed=seed)
    names = ["<blank>", *vocab]
    tuning = _decodable(head, mean, std, {u: train[u] for u in (tune or fit)})  # logits once, every bonus
    per = [sum(e) / sum(g) for e, g in (_scores(tuning, names, b) for b in BLANK_BONUSES)]
    bonus = BLANK_BONUSES[int(np.argmin(per))]
    edits, gold = _scores(_decodable(head, mean, std, test), names, bonus)
    return {"edits": edits, "gold": gold, "blank_bonus": bonus, "phones": len(vocab)}
