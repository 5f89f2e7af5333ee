"""What the synthetic sLM benchmarks hold: every pair, every item (one wav), and the LM's training texts.

Deterministic in (pairs, seed, voices): each task draws from its own generator (``random.Random`` seeded
with ``"SEED:TASK"``), and file names are hashes of (seed, task, split, id, voice, correct). The LM's
texts are drawn after the benchmarks, and a text is dropped when any of its sentences is a benchmark
sentence (a story's sentences, endings and both sentences of a minimal pair included), so no test
sentence, story or non-word occurs in the LM's training data. See :mod:`spidrkit.data.slm.build`.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from dataclasses import dataclass, field

from spidrkit.data.slm.grammar import SUBTYPES, TOPICS, TopicGrammar, function_words, topic_vocabulary
from spidrkit.data.slm.words import NonWordMaker, word_pool
from spidrkit.data.synth.plan import plan_corpus, utterance_seed
from spidrkit.errors import InputError

TASKS = ("lexical", "syntactic", "storycloze")
SPLITS = ("dev", "test")
GOLD_COLUMNS = {
    "lexical": ("id", "filename", "word", "phones", "correct", "frequency", "voice", "length"),
    "syntactic": ("id", "filename", "voice", "type", "subtype", "correct", "transcription"),
    "storycloze": ("id", "filename", "voice", "correct", "topic", "transcription"),
}
PHONE_FREQUENCY_TEXTS = 300  # texts whose phones give the unigram the non-words are matched on
DEFAULT_PAIRS = 250  # pair ids per task in test (dev has a fifth); x 4 voices = 1,000 pairs
ABSENT_SHARE = 0.4  # share of the test (and dev) words drawn from outside the LM's vocabulary
MIN_ABSENT_SHARE = 0.3
LM_POOL = 20000  # texts the LM corpus draws from (about 28 h of speech read once)
LM_DEV_FRACTION = 0.1
_SENTENCE = re.compile(r"[^.]+\.")


@dataclass(frozen=True)
class Item:
    """One wav of a benchmark: one side (``correct`` 1 or 0) of pair ``id`` read by ``voice``."""

    task: str
    split: str
    id: int
    voice: str
    correct: int
    text: str
    filename: str
    seed: int
    fields: tuple[tuple[str, str], ...] = ()  # the task's other gold columns (frequency filled in later)


@dataclass
class SlmPlan:
    items: list[Item]
    lm_pool: list[str]
    pair_counts: dict[str, int]
    nonwords: list[str] = field(default_factory=list)


def sentences_of(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text)]


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def split_sizes(pairs: int) -> dict[str, int]:
    if pairs < 1:
        raise InputError(f"pairs must be >= 1, got {pairs}")
    return {"dev": max(1, pairs // 5), "test": pairs}


def _filename(seed: int, task: str, split: str, pid: int, voice: str, correct: int) -> str:
    return hashlib.sha256(f"{seed}:{task}:{split}:{pid}:{voice}:{correct}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class _Side:
    """One side of a pair: its text and its other gold columns."""

    text: str
    fields: tuple[tuple[str, str], ...] = ()


def _items(seed: int, task: str, split: str, pid: int, voices, good: _Side, bad: _Side) -> list[Item]:
    """The items of pair ``pid``: its ``good`` (correct 1) and ``bad`` (0) side read by every voice."""
    out = []
    for voice in voices:
        for correct, side in ((1, good), (0, bad)):
            name = _filename(seed, task, split, pid, voice, correct)
            out.append(Item(task, split, pid, voice, correct, side.text, name,
                            utterance_seed(seed, f"{task}/{name}"), tuple(side.fields)))
    return out


def _take_word(words: list[str], maker: NonWordMaker) -> tuple[str, str] | None:
    while words:
        w = words.pop()
        nw = maker.make(w)
        if nw is not None:
            return w, nw
    return None


def _lexical(seed: int, sizes: dict[str, int], voices) -> tuple[list[Item], list[str]]:
    rng = random.Random(f"{seed}:lexical")
    pool = word_pool()
    vocab = topic_vocabulary()
    speech = lm_texts(seed + 1, set(), PHONE_FREQUENCY_TEXTS)  # running speech like the LM's (its own draw)
    maker = NonWordMaker(pool, rng, speech)
    known, unknown = [w for w in pool if w in vocab], [w for w in pool if w not in vocab]
    rng.shuffle(known)
    rng.shuffle(unknown)
    items, nonwords = [], []
    for split, n in sizes.items():
        n_absent = -(-n * int(ABSENT_SHARE * 100) // 100)
        for pid in range(n):
            first, second = (unknown, known) if pid < n_absent else (known, unknown)
            pair = _take_word(first, maker) or _take_word(second, maker)
            if pair is None:
                raise InputError(f"pairs={sizes['test']} asks for more words than the vocabulary has; use fewer pairs")
            (w, nw), (_, pw), (_, pn) = pair, maker.pronunciation(pair[0]), maker.pronunciation(pair[1])
            nonwords.append(nw)
            items += _items(seed, "lexical", split, pid, voices,
                            _Side(w, (("word", w), ("phones", " ".join(pw)), ("length", str(len(pw))))),
                            _Side(nw, (("word", nw), ("phones", " ".join(pn)), ("length", str(len(pn))))))
    return items, nonwords


def _syntactic(seed: int, sizes: dict[str, int], voices, seen: set[str]) -> list[Item]:
    rng = random.Random(f"{seed}:syntactic")
    grammar = TopicGrammar(rng)
    kinds = [(k, s) for k, subs in SUBTYPES.items() for s in subs]
    items = []
    for split, n in sizes.items():
        for pid in range(n):
            kind, subtype = kinds[pid % len(kinds)]
            for _ in range(1000):
                pair = grammar.minimal_pair(rng.choice(TOPICS), kind, subtype)
                if pair and not seen.intersection(pair):
                    break
            else:
                raise InputError(f"pairs={sizes['test']}: the grammar ran out of distinct {kind}/{subtype} pairs")
            seen.update(pair)
            fields = (("type", kind), ("subtype", subtype))
            items += _items(seed, "syntactic", split, pid, voices, _Side(pair[0], fields), _Side(pair[1], fields))
    return items


def _storycloze(seed: int, sizes: dict[str, int], voices, seen: set[str]) -> list[Item]:
    rng = random.Random(f"{seed}:storycloze")
    grammar = TopicGrammar(rng)
    items = []
    for split, n in sizes.items():
        for pid in range(n):
            topic = TOPICS[pid % len(TOPICS)]
            other = rng.choice([t for t in TOPICS if t is not topic])
            while True:
                context = grammar.story(topic, rng.choice([2, 3]))
                good, bad = grammar.ending(topic), grammar.ending(other)
                if good not in seen and bad not in seen and good not in context and len(set(context)) == len(context):
                    break
            seen.update([*context, good, bad])
            story = " ".join(context)
            fields = (("topic", topic.name),)
            items += _items(seed, "storycloze", split, pid, voices, _Side(f"{story} {good}", fields),
                            _Side(f"{story} {bad}", fields))
    return items


def lm_texts(seed: int, reserved: set[str], count: int = LM_POOL) -> list[str]:
    """``count`` distinct LM training texts: one sentence (half of them) or 2-3 sentences of one topic;
    no text holds a sentence of ``reserved``."""
    rng = random.Random(f"{seed}:lm")
    grammar = TopicGrammar(rng)
    out: dict[str, None] = {}
    while len(out) < count:
        text = grammar.utterance(rng.choice(TOPICS), rng.choice([1, 1, 2, 3]))
        if not reserved.intersection(sentences_of(text)):
            out[text] = None
    return list(out)


def plan_slm(pairs: int = DEFAULT_PAIRS, seed: int = 0, voices=("awb", "rms", "slt", "kal16")) -> SlmPlan:
    """Every benchmark item (each pair read by every voice) and the LM's text pool."""
    sizes = split_sizes(pairs)
    voices = list(dict.fromkeys(voices))
    lexical, nonwords = _lexical(seed, sizes, voices)
    seen: set[str] = set()
    items = lexical + _syntactic(seed, sizes, voices, seen) + _storycloze(seed, sizes, voices, seen)
    pool = lm_texts(seed, seen)
    assert not set(nonwords) & {w for t in pool for w in words_of(t)} - function_words()
    return SlmPlan(items, pool, sizes, nonwords)


def lm_train_texts(pool: list[str], train_voices, lm_hours: float, seed: int) -> list[str]:
    """The texts of the LM corpus's ``train`` split, as ``synthesize_corpus`` plans them."""
    plans = plan_corpus(pool, tuple(train_voices), lm_hours, seed, None, LM_DEV_FRACTION)
    return [p.text for p in plans if p.split == "train"]


def word_counts(texts) -> Counter:
    return Counter(w for t in texts for w in words_of(t))


def with_frequencies(items: list[Item], counts: Counter) -> list[Item]:
    """Lexical items with ``frequency``: the count of the pair's word in the LM's training texts."""
    words = {(i.split, i.id): dict(i.fields)["word"] for i in items if i.task == "lexical" and i.correct}
    out = []
    for i in items:
        if i.task == "lexical":
            i = Item(**{**i.__dict__, "fields": (*i.fields, ("frequency", str(counts[words[(i.split, i.id)]])))})
        out.append(i)
    return out


def absent_share(items: list[Item], split: str = "test") -> float:
    """Share of the lexical pairs of ``split`` whose word has frequency 0 (not "in-vocab")."""
    freq = {i.id: int(dict(i.fields)["frequency"]) for i in items if i.task == "lexical" and i.split == split}
    return sum(f == 0 for f in freq.values()) / max(1, len(freq))
