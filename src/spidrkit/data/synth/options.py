"""What a synthetic corpus is asked to be: :class:`CorpusOptions`, every option of
:func:`~spidrkit.data.synth.corpus.synthesize_corpus` and of ``spidrkit data synth``, checked when built, before a
synthesiser is loaded or a file written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spidrkit.config.validation import with_overrides
from spidrkit.data.synth.long import parse_seconds_range
from spidrkit.data.synth.render import DEFAULT_NOISE


@dataclass(frozen=True)
class CorpusOptions:
    """Every option of a synthetic corpus (:mod:`spidrkit.data.synth.corpus` describes the corpus).

    ``voices``: corpus voices (:data:`spidrkit.data.synth.engines.VOICES`) or ``"all"`` (default: every voice
    whose synthesiser is installed; a missing one is a warning); ``heldout_voice``: one of them or several (a
    list or ``"kal16,ked"``), kept out of train/dev and read into the ``heldout`` split; voices without
    alignments read train only; ``hours``: speech in train + dev; ``dev_fraction``: of the sentences;
    ``noise``: the SNR range (dB) of the light background noise, None for none; ``workers``: processes;
    ``sentences``: a sentence list instead of the shipped one; ``utterance_seconds``: (low, high) or
    ``"8-20"`` joins consecutive sentences of one voice into utterances of that length with pauses
    (:mod:`spidrkit.data.synth.long`), None (default) keeps one sentence per utterance."""

    voices: str | Sequence[str] = "all"
    hours: float = 2.0
    seed: int = 0
    heldout_voice: str | Sequence[str] | None = None
    dev_fraction: float = 0.1
    workers: int = 2
    noise: tuple[float, float] | None = DEFAULT_NOISE
    sentences: Sequence[str] | None = None
    progress: bool = True
    utterance_seconds: tuple[float, float] | str | None = None

    def __post_init__(self) -> None:
        snr_range(self.noise)
        parse_seconds_range(self.utterance_seconds)


def snr_range(noise: Sequence[float] | None) -> tuple[float, ...] | None:
    """``noise`` as a (low, high) pair of floats, None for none; ``ValueError`` when it is not such a range."""
    snr = tuple(float(x) for x in noise) if noise else None
    if snr and (len(snr) != 2 or snr[0] > snr[1]):
        raise ValueError(f"noise must be an SNR range (low, high) in dB, got {snr}")
    return snr


def corpus_options(options: CorpusOptions | None = None, **overrides: Any) -> CorpusOptions:
    """``options`` (default: all defaults) with ``overrides`` of its fields (:func:`~spidrkit.config.validation.
    with_overrides`)."""
    return with_overrides(CorpusOptions, options, overrides, "synthesize_corpus")
