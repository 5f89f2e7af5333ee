"""Long utterances for the synthetic corpus (:mod:`spidrkit.data.synth.corpus`, ``utterance_seconds``).

Consecutive sentences of ONE voice in one split (the order of the plan, so the split and speaker rules of
:func:`spidrkit.data.synth.plan.plan_corpus` hold) are joined into utterances whose length is drawn in
``(low, high)`` seconds, separated by pauses of 0.15-0.6 s. Each sentence is rendered exactly as in the
short corpus (:func:`spidrkit.data.synth.render.render_part`, same seed, same samples); a pause continues
the background of the sentence before it: its coloured noise (same spectral exponent) at the same RMS,
plus the 1-LSB dither, never digital zeros. A pause is labelled ``SIL`` and merges with the sentences'
own leading and trailing ``SIL``.

Exact alignments: each sentence starts at a sample offset that is a multiple of 16 samples (1 ms; the
pause absorbs the rounding), so its phone and word times shifted by ``offset / 16000`` stay exact in the
alignment files' 4 decimals. Lengths: an utterance is closed once it reaches its drawn target, or when
the next sentence would take it past ``high`` (when it is already >= ``low``); when ``high - low`` is
shorter than a sentence plus a pause, an utterance can pass ``high``. A stream's last sentences that do
not reach a closing point are left out, so a plan for more hours extends the utterances of one for fewer.
Utterance ids: ``VOICE_{t,d,h}NNNNN`` (train, dev, heldout; NNNNN counts the voice's utterances there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict

import numpy as np

from spidrkit.config import SAMPLE_RATE
from spidrkit.data.corpora.alignments import Interval
from spidrkit.data.synth.flite import SILENCE
from spidrkit.data.synth.plan import UtterancePlan, utterance_seed
from spidrkit.data.synth.render import _merge_silences, pause_samples, render_part

PAUSE_SECONDS = (0.15, 0.6)
ALIGN_SAMPLES = 16  # sentence offsets are whole milliseconds at 16 kHz: exact with 4 decimals


def parse_seconds_range(text: str | tuple[float, float] | None) -> tuple[float, float] | None:
    """``"8-20"`` or ``(8, 20)`` -> (8.0, 20.0); None stays None. Raises ValueError when not 0 < low <= high."""
    if text is None:
        return None
    if isinstance(text, str):
        low, sep, high = text.partition("-")
        try:
            pair = (float(low), float(high if sep else low))
        except ValueError:
            raise ValueError(f"utterance seconds must be LOW-HIGH (e.g. 8-20), got {text!r}") from None
    else:
        pair = tuple(float(x) for x in text)
    if len(pair) != 2 or not 0 < pair[0] <= pair[1]:
        raise ValueError(f"utterance seconds must be a range 0 < LOW <= HIGH (e.g. 8-20), got {text!r}")
    return pair


def streams(plans: list[UtterancePlan]) -> dict[tuple[str, str], list[UtterancePlan]]:
    """The sentences of each (split, voice), in plan order."""
    out: dict[tuple[str, str], list[UtterancePlan]] = {}
    for p in plans:
        out.setdefault((p.split, p.voice), []).append(p)
    return out


def long_id(voice: str, split: str, k: int) -> str:
    return f"{voice}_{split[0]}{k:05d}"


def _shift(intervals, seconds: float) -> list[Interval]:
    return [(round(on + seconds, 4), round(off + seconds, 4), label) for on, off, label in intervals]


def join_parts(parts: list[tuple], pauses: list[np.ndarray]) -> tuple[np.ndarray, list[Interval], list[Interval],
                                                                       list[int]]:
    """Join rendered sentences (samples, phones, words, ...) with pauses between them.

    Returns (samples, phones, words, offsets): sentence i starts at sample ``offsets[i]``; its intervals are
    shifted by ``offsets[i] / 16000`` s, each pause is ``SIL`` from the end of the sentence before it to the
    start of the next, and adjacent ``SIL`` intervals merge."""
    chunks, phones, words, offsets, at = [], [], [], [], 0
    for i, part in enumerate(parts):
        samples, p_phones, p_words = part[0], part[1], part[2]
        if i:
            end = phones[-1][1]
            chunks.append(pauses[i - 1])
            at += len(pauses[i - 1])
            phones.append((end, round(at / SAMPLE_RATE, 4), SILENCE))
        offsets.append(at)
        phones += _shift(p_phones, at / SAMPLE_RATE)
        words += _shift(p_words, at / SAMPLE_RATE)
        chunks.append(samples)
        at += len(samples)
    return np.concatenate(chunks), _merge_silences(phones), words, offsets


def _pause_length(rng: np.random.Generator, at: int) -> int:
    """A pause in PAUSE_SECONDS: drawn up to 15 samples short of the top, lengthened (< 1 ms) so the next
    sentence starts on a whole millisecond."""
    low, high = (s * SAMPLE_RATE for s in PAUSE_SECONDS)
    n = round(rng.uniform(low, high - (ALIGN_SAMPLES - 1)))
    return n + (-(at + n)) % ALIGN_SAMPLES


def join_stream(stream: list[UtterancePlan], seed: int, noise, seconds: tuple[float, float],
                finished: Callable[[str], dict | None]) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield (samples, record) for each long utterance of one (split, voice) stream not yet ``finished``
    (``finished(utt)`` returns the record of a finished one, whose ``parts`` are skipped)."""
    low, high = (round(s * SAMPLE_RATE) for s in seconds)
    pos, k, carried = 0, 0, None
    while pos < len(stream):
        utt = long_id(stream[0].voice, stream[0].split, k)
        done = finished(utt)
        if done is not None:
            pos, k, carried = pos + len(done["parts"]), k + 1, None
            continue
        rng = np.random.default_rng(utterance_seed(seed, utt))
        target = rng.uniform(low, high)
        group = [carried[1] if carried and carried[0] == pos else render_part(stream[pos], noise)]
        pauses: list[np.ndarray] = []
        length, nxt, closed, carried = len(group[0][0]), pos + 1, False, None
        while not closed and nxt < len(stream):
            if length >= target:
                closed = True
                break
            n = _pause_length(rng, length)
            part = render_part(stream[nxt], noise)
            if length + n + len(part[0]) > high and length >= low:
                carried, closed = (nxt, part), True
                break
            prev = group[-1]
            pauses.append(pause_samples(rng, n, prev[4], prev[3].noise_exponent))
            group.append(part)
            length, nxt = length + n + len(part[0]), nxt + 1
        if not (closed or length >= target):
            return  # the stream's tail: no closing point yet (a plan for more hours continues it)
        samples, phones, words, offsets = join_parts(group, pauses)
        members = stream[pos:nxt]
        yield samples, {
            "utt": utt, "split": members[0].split, "voice": members[0].voice, "speaker": members[0].voice,
            "sentence_ids": [p.sentence_id for p in members], "parts": [p.utt for p in members],
            "text": " ".join(p.text for p in members), "seed": utterance_seed(seed, utt),
            "num_samples": len(samples), "offsets": offsets, "target_seconds": target / SAMPLE_RATE,
            "prosody": [asdict(g[3]) for g in group], "noise_rms": [g[4] for g in group],
            "phones": phones, "words": words,
        }
        pos, k = nxt, k + 1
