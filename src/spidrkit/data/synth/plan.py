"""Which voice reads which sentence into which split of the synthetic corpus (:mod:`spidrkit.data.synth.corpus`).

The plan is deterministic in its arguments, and a plan for more hours extends the plan for fewer, so a
corpus can be grown in place. Each utterance's seed comes from (corpus seed, utterance id) alone.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from spidrkit.data.synth.engines import VOICES

DEFAULT_VOICES = ("awb", "rms", "slt", "kal16")
# seconds of speech per character of text at neutral prosody, measured per voice (for planning only)
_SECONDS_PER_CHAR = {"awb": 0.062, "rms": 0.070, "slt": 0.0635, "kal16": 0.0553, "kal": 0.0553, "ked": 0.060,
                     "joe": 0.062}


@dataclass(frozen=True)
class UtterancePlan:
    utt: str
    split: str
    voice: str
    sentence_id: int
    text: str
    seed: int



def utterance_seed(corpus_seed: int, utt: str) -> int:
    """A 63-bit seed from the corpus seed and the utterance id (independent of the plan's size)."""
    digest = hashlib.sha256(f"{corpus_seed}:{utt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def estimated_seconds(text: str, voice: str) -> float:
    return len(text) * _SECONDS_PER_CHAR.get(voice, 0.065)


def heldout_list(heldout_voice) -> list[str]:
    """The held-out voices: None -> [], "kal16" or "kal16,ked" or a sequence -> a list without repeats."""
    if heldout_voice is None:
        return []
    names = heldout_voice.split(",") if isinstance(heldout_voice, str) else list(heldout_voice)
    return list(dict.fromkeys(n.strip() for n in names if n.strip()))


def _check_voices(voices, heldout: list[str]) -> tuple[list[str], list[str]]:
    """(the training voices, those of them with alignments: the dev split's readers)."""
    voices = list(dict.fromkeys(voices))
    unknown = [v for v in voices if v not in VOICES]
    if unknown:
        raise ValueError(f"unknown voice(s) {', '.join(unknown)}; choose from {', '.join(VOICES)}")
    for v in heldout:
        if v not in voices:
            raise ValueError(f"held-out voice {v!r} is not among the voices {', '.join(voices)}")
        if not VOICES[v].aligned:
            raise ValueError(f"held-out voice {v!r} has no alignments ({VOICES[v].engine}); choose one of "
                             + ", ".join(n for n in voices if VOICES[n].aligned))
    seen = [v for v in voices if v not in heldout]
    if not seen:
        raise ValueError("no voice left for train/dev once the held-out voices are removed")
    aligned = [v for v in seen if VOICES[v].aligned]
    if not aligned:
        raise ValueError("the dev split needs a training voice with alignments (flite's or festival's)")
    return seen, aligned


def plan_corpus(sentences: list[str], voices=DEFAULT_VOICES, hours: float = 2.0, seed: int = 0,
                heldout_voice: str | None = None, dev_fraction: float = 0.1) -> list[UtterancePlan]:
    """Which voice reads which sentence into which split: deterministic in its arguments.

    ``heldout_voice``: one voice, several (a list or ``"kal16,ked"``) or None. Voices without alignments
    (:data:`spidrkit.data.synth.engines.VOICES`) read train only; dev is read by the training voices with alignments.
    Sentences are shuffled with ``seed``; the first ``dev_fraction`` of them can only go to dev, the next
    ``dev_fraction`` only to the held-out voice (when there is one), the rest only to train. Each split takes
    sentences in order until its share of ``hours`` is reached, its voices taking turns (a sentence read
    again in a later pass gets the next voice). The held-out voice reads about as much speech as dev, from
    sentences of its own: an across-speaker ABX triplet never has A and X from one sentence, as on
    LibriSpeech, so features that carry long context get no help from shared text.
    """
    if hours <= 0:
        raise ValueError(f"hours must be > 0, got {hours}")
    if not 0 <= dev_fraction < 1:
        raise ValueError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    heldout = heldout_list(heldout_voice)
    seen, aligned = _check_voices(voices, heldout)
    if heldout and dev_fraction == 0:
        raise ValueError("the held-out split is as long as dev: dev_fraction must be > 0")
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, round(dev_fraction * len(order))) if dev_fraction > 0 else 0
    n_held = n_dev if heldout else 0
    if len(order) - n_dev - n_held < 1:
        raise ValueError(f"{len(sentences)} sentences are too few to split into train, dev and held-out")
    budget = hours * 3600
    plans: list[UtterancePlan] = []

    def fill(split: str, pool: list[int], readers: list[str], seconds: float) -> float:
        total, k = 0.0, 0
        while total < seconds:
            pos, cycle = k % len(pool), k // len(pool)
            sid = pool[pos]
            voice = readers[(pos + cycle) % len(readers)]
            repeat = cycle // len(readers)
            utt = f"{voice}_{sid:05d}" + (f"r{repeat}" if repeat else "")
            plans.append(UtterancePlan(utt, split, voice, sid, sentences[sid], utterance_seed(seed, utt)))
            total += estimated_seconds(sentences[sid], voice)
            k += 1
        return total

    fill("train", order[n_dev + n_held:], seen, (1 - dev_fraction) * budget)
    dev_seconds = fill("dev", order[:n_dev], aligned, dev_fraction * budget)
    if heldout:
        fill("heldout", order[n_dev:n_dev + n_held], heldout, dev_seconds)
    return plans
