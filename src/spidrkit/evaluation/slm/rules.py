"""The ZeroSpeech 2021 scoring rules for paired likelihood tasks (sWUGGY, sBLIMP, StoryCloze).

Given a score per audio (a log-likelihood: higher = more probable), within a pair id and a voice the right
item (``correct`` 1: the word, the grammatical sentence, the true ending) is compared with the wrong one:
1 when the right one scores higher, 0.5 on a tie, 0 otherwise (with several wrong items, the mean over
them). These are averaged over the voices of the pair id, then over pair ids (every id weighs the same,
whatever its number of voices). Breakdowns:

- sWUGGY (``lexical``): ``all`` pairs; ``in_vocab``: pairs whose word has ``frequency >= 1``; and the
  ZeroSpeech 2021 frequency bands of the word, half-open intervals of its count: ``oov`` [0, 1),
  ``1-5`` [1, 5), ``6-20`` [5, 20), ``21-100`` [20, 100), ``>100`` [100, inf) (the ZeroSpeech labels,
  with its intervals: a word seen 5 times falls in ``6-20``);
- sBLIMP (``syntactic``): by ``type`` and by ``type/subtype``;
- StoryCloze (``storycloze``): ``all``, and by ``topic`` when the gold names one;
- every task read by two voices or more: ``voice/NAME``, the pair ids that voice reads, each scored on that
  voice alone (how units hold across voices: a voice the unit LM never heard against the ones it did).

Every score comes with a bootstrap 95 % interval over pair ids (:func:`bootstrap`: pair ids drawn with
replacement, a seeded generator, the 2.5 and 97.5 percentiles of the resampled means).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from spidrkit.evaluation.metrics.bootstrap import percentile_interval, resample_indices
from spidrkit.evaluation.slm.bench import BenchmarkError, Split

BANDS = (("oov", 0.0, 1.0), ("1-5", 1.0, 5.0), ("6-20", 5.0, 20.0), ("21-100", 20.0, 100.0),
         (">100", 100.0, math.inf))
DEFAULT_BOOTSTRAP = 1000


@dataclass
class PairScore:
    """One pair id: its breakdown keys and its score on each voice that reads it."""

    pair: str
    groups: tuple[str, ...]
    by_voice: dict[str, float]

    @property
    def score(self) -> float:
        """The mean over its voices."""
        return float(np.mean(list(self.by_voice.values())))

    @property
    def voices(self) -> int:
        return len(self.by_voice)


def compare(right: float, wrong: float) -> float:
    """1 if the right item wins, 0.5 on a tie, 0 otherwise."""
    return 1.0 if right > wrong else 0.5 if right == wrong else 0.0


def frequency_band(frequency: float) -> str:
    for name, low, high in BANDS:
        if low <= frequency < high:
            return name
    raise ValueError(f"frequency {frequency} is negative")


def _groups(split: Split, attrs: Mapping[str, str], where: str) -> tuple[str, ...]:
    if split.task == "lexical":
        text = attrs.get("frequency", "")
        try:
            freq = float(text)
        except ValueError:
            raise BenchmarkError(f"{where}: the word's 'frequency' must be a number, got {text!r}") from None
        if freq < 0 or math.isnan(freq):
            raise BenchmarkError(f"{where}: the word's 'frequency' must be >= 0, got {text!r}")
        return ("in_vocab",) * (freq >= 1) + (f"band/{frequency_band(freq)}",)
    if split.task == "syntactic":
        return (f"type/{attrs['type']}", f"subtype/{attrs['type']}/{attrs['subtype']}")
    return (f"topic/{attrs['topic']}",) if attrs.get("topic") else ()


def pair_scores(split: Split, scores: Mapping[str, float]) -> list[PairScore]:
    """The voice-averaged score of every pair id of a gold split, in the order ids first appear."""
    cells: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    attrs: dict[str, Mapping[str, str]] = {}
    for it in split.items:
        if it.filename not in scores:
            raise BenchmarkError(f"{split.folder}: no score for {it.filename}")
        right, wrong = cells.setdefault(it.pair, {}).setdefault(it.voice, ([], []))
        (right if it.correct else wrong).append(scores[it.filename])
        if it.correct:
            attrs.setdefault(it.pair, it.attrs)
    out = []
    for pair, voices in cells.items():
        per_voice = {}
        for voice, (right, wrong) in voices.items():
            if len(right) != 1 or not wrong:
                raise BenchmarkError(f"{split.folder / 'gold.csv'}: pair id {pair!r}, voice {voice!r} has "
                                     f"{len(right)} right and {len(wrong)} wrong items (expected 1 and >= 1)")
            per_voice[voice] = sum(compare(right[0], w) for w in wrong) / len(wrong)
        where = f"{split.folder / 'gold.csv'}: pair id {pair!r}"
        out.append(PairScore(pair, _groups(split, attrs[pair], where), per_voice))
    return out


MIN_PAIRS = 10  # pair ids under which a group's score and interval mean nothing: reports say "too few pairs"


def bootstrap(values: Sequence[float], n: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """The 95 % percentile interval of the mean of ``values`` over ``n`` resamples (``(nan, nan)`` if empty)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0 or n < 1:
        return math.nan, math.nan
    return percentile_interval(x[resample_indices(x.size, n, seed)].mean(axis=1))


def summarize(pairs: Sequence[PairScore], n_bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> dict:
    """``{"all": cell, group: cell, ...}`` with ``cell = {"score": %, "ci95": [%, %], "pairs": n}``; scores are
    percentages (100 x the mean pair score). sWUGGY's bands come in the fixed ZeroSpeech order, the voices last."""
    groups: dict[str, list[float]] = {"all": [p.score for p in pairs]}
    for p in pairs:
        for g in p.groups:
            groups.setdefault(g, []).append(p.score)
    if len({v for p in pairs for v in p.by_voice}) >= 2:
        for p in pairs:
            for voice, value in p.by_voice.items():
                groups.setdefault(f"voice/{voice}", []).append(value)
    order = ["all", "in_vocab", *(f"band/{b[0]}" for b in BANDS)]
    names = [g for g in order if g in groups] + sorted(g for g in groups if g not in order)
    out = {}
    for name in names:
        values = groups[name]
        low, high = bootstrap(values, n_bootstrap, seed)
        out[name] = {"score": 100.0 * float(np.mean(values)), "ci95": [100.0 * low, 100.0 * high],
                     "pairs": len(values)}
    return out
