"""Words and matched non-words of the sWUGGY-style benchmark (:mod:`spidrkit.data.slm.build`).

A non-word is built from its word by spelling edits, as Wuggy swaps sub-syllabic segments. A chunk is a run
of consonant letters or of vowel letters; the edits of a spelling (:meth:`NonWordMaker._edits`) are

- its metatheses (:func:`metatheses`): two chunks of one kind swapped ("garden" -> "nardeg", Wuggy's swap of
  two syllables' onsets), then two consonant letters or two vowel letters swapped ("test" -> "stet");
- :data:`_SUBSTITUTIONS` random substitutions: one chunk swapped for a chunk of the same kind and position
  (word-initial, medial, final) taken from another word of the pool ("kitchen" -> "kotchen").

A candidate's pronunciation is flite's (letter-to-sound rules for unknown words; the voices share one
lexicon), those the ``kal16`` voice speaks at neutral prosody (read from flite's text analysis without
rendering: :meth:`spidrkit.data.synth.flite.Flite.phones`), and a candidate passes only when it

- is pronounced as one word with exactly as many phones as the word (``length``), and differently;
- is no word of the vocabulary (any inflected form), and no homophone of one (same phone string);
- has W, Y and HH only before a vowel and NG only after one (:func:`phonotactics_ok`: English phonotactics;
  the diphone voices have no other W/Y diphones, no HH-pause, no R-NG).

The search runs :data:`_ROUNDS` rounds: the edits of the word, then the edits of the :data:`_BEAM` one-word
candidates of the round whose phone bags are nearest the word's; it stops at the first passing anagram. Of
the passing candidates, those with the smallest **bag distance** to the word (:func:`bag_distance`: size of the
multiset symmetric difference of the pronounced phones; 0 for an anagram) are kept, and among them the one
whose mean phone log-frequency in running speech (:meth:`NonWordMaker.unigram`: phone counts of ``speech``,
texts like the LM's) is closest to the word's, taken alternately above and below the word's when candidates
on that side exist (anagrams tie).

Why (measured on the default set, 250 test pairs x 4 voices; ``experiments/slm.py --sources phones``, tiny
LMs): with one random chunk substitution and no matching, flite's letter-to-sound rules give non-words full
vowels where the lexicon has schwas, so a unigram model of the LM corpus told the word from its non-word in
57 % of the test pairs and an LM trained on shuffled phones scored 60 % on sWUGGY instead of chance. Unigram
matching alone (SLM_VERSION 2): unigram 53.8 %, 0.4 % of the pairs anagrams (mean bag distance 2.8 phones).
Bag matching (SLM_VERSION 3): 54.0 % of the test pairs anagrams, the others one phone apart (mean 0.92), the
unigram 49.8 %. Shuffled-phones LMs at the benchmark's default budget (3000 steps; best checkpoint at step 250):
50.7 +/- 2.0 % over 3 seeds (48.8, 52.8, 50.4), the same LMs 53.1 +/- 0.8 % on the SLM_VERSION 2 set; on the
anagram pairs alone 46.7-51.9 %. The phone topline (same budget) 74.0 %, 72.0 % on version 2: matched bags
leave the phone order to tell words from non-words. One shuffled LM moves by ~4 points with its budget alone
(an 800-step one: 57.2 % on version 2, 56.8 % on version 3, 61.5 % on its anagram pairs, which no bag model
can prefer), so the 50 +/- 3 % target is read on the mean over seeds.

flite's lexicon cannot be queried through the wrapper, so a non-word may now and then be a rare English
word outside the vocabulary (metathesis makes that likelier: "teacher" -> "cheater"); it never occurs in the
LM's training texts (a test checks it).

Phones are the corpus's ARPAbet set (:data:`spidrkit.data.synth.flite.PHONES`) without ``SIL``.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from itertools import combinations

from spidrkit.data.synth.flite import ARPABET, SILENCE, Flite
from spidrkit.data.synth.lexicon import (
    ABSTRACT,
    ADJECTIVES,
    ANIMALS,
    INTRANSITIVE,
    PEOPLE,
    PLACES,
    THINGS,
    TRANSITIVE,
    plural,
    third_person,
)

PROBE_VOICE = "kal16"
MIN_PHONES = 3
_CHUNK = re.compile(r"[aeiouy]+|[^aeiouy]+")
_SUBSTITUTIONS = 40  # random chunk substitutions per spelling and round
_ROUNDS = 3  # edits of the word, then edits of the closest one-word candidates
_BEAM = 3  # the candidates of a round whose edits the next round tries
_VOWELS = frozenset(["AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"])


def phonotactics_ok(phones) -> bool:
    """English phonotactics flite's diphone voices need: W, Y and HH only before a vowel, NG only after one
    (the voices have no W/Y diphones elsewhere, no HH-pause or R-NG; metathesis can make such strings)."""
    return all((p not in ("W", "Y", "HH") or (i + 1 < len(phones) and phones[i + 1] in _VOWELS))
               and (p != "NG" or (i > 0 and phones[i - 1] in _VOWELS)) for i, p in enumerate(phones))


def bag_distance(a, b) -> int:
    """Size of the multiset symmetric difference of two phone sequences (0: anagrams)."""
    ca, cb = Counter(a), Counter(b)
    return sum(((ca - cb) + (cb - ca)).values())


def metatheses(spelling: str) -> list[str]:
    """``spelling`` with two chunks of one kind swapped (Wuggy's metathesis), then with two consonant letters or
    two vowel letters swapped, each in index order, without repeats and without ``spelling`` itself."""
    chunks = _chunks(spelling)
    out = [_swapped([c[2] for c in chunks], i, j) for i, j in combinations(range(len(chunks)), 2)
           if chunks[i][0] == chunks[j][0]]
    vowel = [c in "aeiouy" for c in spelling]
    out += [_swapped(list(spelling), i, j) for i, j in combinations(range(len(spelling)), 2) if vowel[i] == vowel[j]]
    return [c for c in dict.fromkeys(out) if c != spelling]


def _swapped(parts: list[str], i: int, j: int) -> str:
    parts = list(parts)
    parts[i], parts[j] = parts[j], parts[i]
    return "".join(parts)


def pronounce(text: str) -> tuple[int, tuple[str, ...]]:
    """(number of words flite reads, ARPAbet phones without pauses) of ``text`` at neutral prosody: those of
    its rendering with ``kal16``, read without rendering it (:meth:`Flite.phones`)."""
    segments, words = Flite.instance().phones(text, PROBE_VOICE)
    phones = tuple(ARPABET.get(p, p) for p in segments)
    return len(words), tuple(p for p in phones if p != SILENCE)


def word_pool() -> list[str]:
    """Candidate words: the lexicon's nouns, adjectives and verb bases (letters only), sorted."""
    verbs = [b for b, _ in (*TRANSITIVE, *INTRANSITIVE)]
    words = {w for w in (*PEOPLE, *ANIMALS, *THINGS, *PLACES, *ABSTRACT, *ADJECTIVES, *verbs) if w.isalpha()}
    return sorted(words)


def real_forms(words) -> set[str]:
    """``words`` with their plural, third-person and past forms (what a non-word must not be)."""
    forms = set(words)
    forms |= {plural(w) for w in words} | {third_person(w) for w in words}
    forms |= {w for v in (*TRANSITIVE, *INTRANSITIVE) for w in v}
    return forms


def _chunks(word: str) -> list[tuple[str, str, str]]:
    """(kind C/V, position initial/medial/final, letters) of each chunk of ``word``."""
    parts = _CHUNK.findall(word)
    out = []
    for i, p in enumerate(parts):
        pos = "initial" if i == 0 else "final" if i == len(parts) - 1 else "medial"
        out.append(("V" if p[0] in "aeiouy" else "C", pos, p))
    return out


def chunk_inventory(words) -> dict[tuple[str, str], list[str]]:
    """The spelling chunks of ``words`` by (kind, position), each list sorted and without repeats."""
    inv: dict[tuple[str, str], set[str]] = {}
    for w in words:
        for kind, pos, letters in _chunks(w):
            inv.setdefault((kind, pos), set()).add(letters)
    return {k: sorted(v) for k, v in inv.items()}


class NonWordMaker:
    """Matched non-words for the words of a pool (deterministic for the generator's state)."""

    def __init__(self, pool: list[str], rng: random.Random, speech: list[str] = ()):
        self.r = rng
        self.inventory = chunk_inventory(pool)
        self.forbidden = real_forms(pool)
        self.cache: dict[str, tuple[int, tuple[str, ...]]] = {}
        self.used: set[str] = set()
        self.above = False  # the side of the word's unigram score the next non-word is taken from
        self.homophones = {self.pronunciation(w)[1] for w in pool}
        counts = {p: 1 for p in ARPABET.values() if p != SILENCE}  # add-one smoothing
        for text in speech or pool:  # running speech when given, else the pool's words
            for p in pronounce(text)[1]:
                counts[p] = counts.get(p, 1) + 1
        total = sum(counts.values())
        self.log_frequency = {p: math.log(c / total) for p, c in counts.items()}

    def unigram(self, phones) -> float:
        """Mean log-frequency of ``phones`` under the running speech's phone frequencies (the shortcut a
        bag-of-phones model would take)."""
        return sum(self.log_frequency.get(p, 0.0) for p in phones) / max(len(phones), 1)

    def pronunciation(self, text: str) -> tuple[int, tuple[str, ...]]:
        if text not in self.cache:
            self.cache[text] = pronounce(text)
        return self.cache[text]

    def _substitution(self, spelling: str) -> str:
        """``spelling`` with one chunk swapped for a chunk of the same kind and position from the pool."""
        chunks = _chunks(spelling)
        i = self.r.randrange(len(chunks))
        kind, pos, _ = chunks[i]
        choice = self.r.choice(self.inventory.get((kind, pos)) or [chunks[i][2]])
        return "".join(choice if j == i else c[2] for j, c in enumerate(chunks))

    def _edits(self, spelling: str) -> list[str]:
        """Every metathesis of ``spelling``, then :data:`_SUBSTITUTIONS` random chunk substitutions."""
        return [*metatheses(spelling), *(self._substitution(spelling) for _ in range(_SUBSTITUTIONS))]

    def make(self, word: str) -> str | None:
        """A non-word matched to ``word``, or None when no candidate passes within a fixed number of edits."""
        n_words, phones = self.pronunciation(word)
        if n_words != 1 or len(phones) < MIN_PHONES:
            return None
        passing: dict[str, tuple[int, float]] = {}  # candidate -> (bag distance, unigram difference)
        seen, frontier = {word}, [word]
        for _ in range(_ROUNDS):
            reached: dict[str, int] = {}  # this round's one-word candidates -> bag distance (the next frontier)
            for candidate in (c for base in frontier for c in self._edits(base)):
                if candidate in seen or candidate in self.forbidden or candidate in self.used:
                    continue
                seen.add(candidate)
                n, p = self.pronunciation(candidate)
                if n != 1:
                    continue
                reached[candidate] = bag_distance(p, phones)
                if len(p) == len(phones) and p != phones and p not in self.homophones and phonotactics_ok(p):
                    passing[candidate] = (reached[candidate], self.unigram(p) - self.unigram(phones))
                    if reached[candidate] == 0:
                        break  # an anagram: nothing scores better
            if any(d == 0 for d, _ in passing.values()):
                break
            frontier = sorted(reached, key=reached.get)[:_BEAM]  # the stable sort keeps it deterministic
        if not passing:
            return None
        nearest = min(d for d, _ in passing.values())
        close = {c: u for c, (d, u) in passing.items() if d == nearest}
        if nearest:  # alternately above and below the word's unigram, so it favours the word in half the pairs
            self.above = not self.above
            close = {c: u for c, u in close.items() if (u >= 0) == self.above} or close
        best = min(close, key=lambda c: abs(close[c]))  # the first of equals: deterministic
        self.used.add(best)
        return best
