"""What spidrkit knows of phones, in one place: the labels that are not speech (:data:`SILENCES`), ARPAbet
without stress (:func:`base_phone`), and the phone classes in the order the figures show them (vowels, stops,
fricatives, nasals, approximants). The synthesisers' own phone sets and their maps to ARPAbet stay with the
engines (:mod:`spidrkit.data.synth.flite`, :mod:`spidrkit.data.synth.engines`)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

# Labels of silence, pauses and noise in the alignments spidrkit reads (MFA, ZeroSpeech, flite, festival): never
# an ABX item, a frame label of a unit LM's phone stream, or a t-SNE point.
SILENCES = frozenset({"SIL", "sil", "pau", "SPN", "spn", "sp", "SP", "<sil>", "<SIL>", "NSN", "nsn", ""})

# ARPAbet (stress digits removed) by phone class. Affricates (CH, JH) are grouped with the fricatives.
PHONE_CLASSES: dict[str, tuple[str, ...]] = {
    "vowels": ("AA", "AE", "AH", "AO", "AW", "AX", "AXR", "AY", "EH", "ER", "EY", "IH", "IX", "IY", "OW",
               "OY", "UH", "UW", "UX"),
    "stops": ("B", "D", "G", "K", "P", "T", "DX", "Q"),
    "fricatives": ("CH", "JH", "DH", "F", "HH", "S", "SH", "TH", "V", "Z", "ZH"),
    "nasals": ("M", "N", "NG", "EM", "EN", "ENG", "NX"),
    "approximants": ("L", "R", "W", "Y", "EL"),
}
OTHER_CLASS = "other"
CLASS_ORDER: tuple[str, ...] = (*PHONE_CLASSES, OTHER_CLASS)
CLASS_COLOURS = dict(zip(CLASS_ORDER, ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple",
                                       "tab:gray")))
_CLASS_OF = {p: c for c, phones in PHONE_CLASSES.items() for p in phones}


def base_phone(phone: str) -> str:
    """ARPAbet phone without its stress digit, upper case: ``ah0 -> AH``."""
    return re.sub(r"\d+$", "", str(phone).strip().upper())


def phone_class(phone: str) -> str:
    """Class of an ARPAbet phone (stress ignored): vowels, stops, fricatives, nasals, approximants, other."""
    return _CLASS_OF.get(base_phone(phone), OTHER_CLASS)


def phone_order(phones: Sequence[str], counts: Sequence[float] | None = None) -> list[int]:
    """Indices of ``phones`` grouped by class (:data:`CLASS_ORDER`), most frequent first within a class."""
    counts = np.ones(len(phones)) if counts is None else np.asarray(counts)
    return sorted(range(len(phones)),
                  key=lambda j: (CLASS_ORDER.index(phone_class(phones[j])), -counts[j], phones[j]))
