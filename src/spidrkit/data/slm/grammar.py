"""The topic grammar of the synthetic sLM benchmarks (:mod:`spidrkit.data.slm.build`).

Six topics (cooking, farm, school, music, sea, roads), each with its own agents, transitive verbs,
objects, places and adjectives (lexicon words of :mod:`spidrkit.data.synth.lexicon`), and a few verbs shared by
all. One grammar writes the LM's training texts (single sentences and same-topic multi-sentence
utterances), the sBLIMP-style minimal pairs and the tSC-style stories, so the LM has seen every
construction the benchmarks test. Sentences are lower-case words, capitalised, ending in '.'.

Minimal pairs (``type``/``subtype``, grammatical first):

- ``agreement/subject_verb``: "The cook bakes the bread." / "The cook bake the bread." (and plurals)
- ``agreement/determiner_noun``: "... these cakes." / "... these cake." (this, these, numbers)
- ``argument_structure/transitive``: "The cook carried the cake." / "The cook carried."
- ``argument_structure/intransitive``: "The cook smiled in the kitchen." / "The cook smiled the cake in ..."
- ``word_order/adjective_noun``: "... the fresh bread." / "... the bread fresh." (adjacent words swapped)
- ``word_order/determiner_noun``: "The cook ..." / "Cook the ..." (adjacent words swapped)
- ``verb_form/modal``: "The cook can bake the bread." / "The cook can baked the bread."
- ``verb_form/do_support``: "The cook did not bake the bread." / "The cook did not baked the bread."

Licence: CC0 1.0 (public domain dedication), as the corpus sentences.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from spidrkit.data.synth.lexicon import article, plural, third_person


@dataclass(frozen=True)
class Topic:
    name: str
    agents: tuple[str, ...]
    verbs: tuple[tuple[str, str], ...]  # transitive (base, past)
    objects: tuple[str, ...]
    places: tuple[str, ...]
    adjectives: tuple[str, ...]


def _t(name: str, agents: str, verbs: str, objects: str, places: str, adjectives: str) -> Topic:
    return Topic(name, tuple(agents.split()), tuple(tuple(v.split("/")) for v in verbs.split()),
                 tuple(objects.split()), tuple(places.split()), tuple(adjectives.split()))


TOPICS = (
    _t("cooking", "cook baker waiter", "bake/baked slice/sliced boil/boiled fry/fried stir/stirred pour/poured "
       "taste/tasted mix/mixed", "bread cake pie soup rice egg potato onion cheese butter cookie carrot",
       "kitchen bakery restaurant", "sweet fresh delicious salty hot"),
    _t("farm", "farmer shepherd gardener", "feed/fed plant/planted water/watered chase/chased load/loaded "
       "pull/pulled", "cow sheep goat pig horse chicken duck seed bean cart wagon barrel",
       "farm barn field yard", "dirty wooden heavy green"),
    _t("school", "teacher student professor", "write/wrote study/studied explain/explained answer/answered "
       "teach/taught draw/drew check/checked", "book pen pencil paper lesson question map puzzle word "
       "sentence language rule", "school classroom library", "clever careful simple curious useful"),
    _t("music", "singer musician dancer poet", "play/played sing/sang hum/hummed whistle/whistled hear/heard "
       "enjoy/enjoyed", "song guitar piano drum violin trumpet radio", "theatre church stadium",
       "loud beautiful famous lovely"),
    _t("sea", "sailor fisherman captain", "sail/sailed catch/caught tie/tied watch/watched",
       "boat ship rope shark whale dolphin shell", "harbour beach island ocean lake river", "deep blue calm cold"),
    _t("roads", "driver pilot mechanic passenger", "drive/drove park/parked fix/fixed wash/washed "
       "deliver/delivered", "car truck bus train plane bicycle engine wheel ticket",
       "station street road airport garage bridge", "fast slow broken modern expensive"),
)
# verbs every topic uses; all need an object (the argument-structure pairs drop it)
SHARED_VERBS = (("carry", "carried"), ("bring", "brought"), ("find", "found"), ("buy", "bought"),
                ("hold", "held"), ("lift", "lifted"))
INTRANSITIVE = (("smile", "smiled"), ("laugh", "laughed"), ("yawn", "yawned"), ("sneeze", "sneezed"),
                ("cough", "coughed"), ("shiver", "shivered"), ("arrive", "arrived"), ("sleep", "slept"))
MODALS = ("can", "will", "must", "should", "might")
NUMBERS = ("two", "three", "four", "five", "six")
PREPOSITIONS = ("in", "near", "behind", "beside")
SUBTYPES = {
    "agreement": ("subject_verb", "determiner_noun"),
    "argument_structure": ("transitive", "intransitive"),
    "word_order": ("adjective_noun", "determiner_noun"),
    "verb_form": ("modal", "do_support"),
}


def function_words() -> set[str]:
    """The words the grammar writes besides the topics' vocabulary."""
    extra = ["the", "a", "an", "this", "these", "his", "her", "their", "did", "does", "not"]
    verbs = {w for v in (*SHARED_VERBS, *INTRANSITIVE) for w in v}
    return set(extra) | set(MODALS) | set(NUMBERS) | set(PREPOSITIONS) | verbs


def topic_vocabulary() -> set[str]:
    """Every base word of the topics (agents, verbs, objects, places, adjectives)."""
    words: set[str] = set()
    for t in TOPICS:
        words |= {*t.agents, *t.objects, *t.places, *t.adjectives, *(b for b, _ in t.verbs)}
    return words


def sentence(words: list[str]) -> str:
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


class TopicGrammar:
    """Clause builders over one topic; each returns a word list (lower case, no final '.')."""

    def __init__(self, rng: random.Random):
        self.r = rng

    def pick(self, seq):
        return self.r.choice(seq)

    def verb(self, t: Topic) -> tuple[str, str]:
        return self.pick(t.verbs) if self.r.random() < 0.75 else self.pick(SHARED_VERBS)

    def subject(self, t: Topic, plural_: bool = False, adj: bool = False) -> list[str]:
        noun = self.pick(t.agents)
        mods = [self.pick(t.adjectives)] if adj else []
        if plural_:
            return ["the", *mods, plural(noun)]
        return ["the", *mods, noun]

    def object_np(self, t: Topic, kind: str | None = None) -> list[str]:
        noun = self.pick(t.objects)
        adj = [self.pick(t.adjectives)] if self.r.random() < 0.35 else []
        kind = kind or self.pick(["the", "the", "a", "this", "these", "number", "possessive"])
        if kind == "the":
            return ["the", *adj, noun]
        if kind == "a":
            return [article((adj or [noun])[0]), *adj, noun]
        if kind == "this":
            return ["this", *adj, noun]
        if kind == "these":
            return ["these", *adj, plural(noun)]
        if kind == "number":
            return [self.pick(NUMBERS), *adj, plural(noun)]
        return [self.pick(["his", "her", "their"]), *adj, noun]

    def place(self, t: Topic) -> list[str]:
        return [self.pick(PREPOSITIONS), "the", self.pick(t.places)]

    def past(self, t: Topic) -> list[str]:
        out = [*self.subject(t, self.r.random() < 0.25, self.r.random() < 0.2), self.verb(t)[1], *self.object_np(t)]
        return out + (self.place(t) if self.r.random() < 0.3 else [])

    def intransitive(self, t: Topic) -> list[str]:
        return [*self.subject(t, self.r.random() < 0.25), self.pick(INTRANSITIVE)[1], *self.place(t)]

    def present(self, t: Topic, plural_: bool | None = None) -> list[str]:
        plural_ = self.r.random() < 0.5 if plural_ is None else plural_
        base = self.verb(t)[0]
        return [*self.subject(t, plural_), base if plural_ else third_person(base), *self.object_np(t)]

    def modal(self, t: Topic) -> list[str]:
        return [*self.subject(t, self.r.random() < 0.25), self.pick(MODALS), self.verb(t)[0], *self.object_np(t)]

    def negation(self, t: Topic) -> list[str]:
        return [*self.subject(t, self.r.random() < 0.25), "did", "not", self.verb(t)[0], *self.object_np(t)]

    def clause(self, t: Topic) -> list[str]:
        k = self.r.random()
        if k < 0.4:
            return self.past(t)
        if k < 0.55:
            return self.intransitive(t)
        if k < 0.75:
            return self.present(t)
        if k < 0.88:
            return self.modal(t)
        return self.negation(t)

    def utterance(self, t: Topic, n: int) -> str:
        """``n`` sentences of topic ``t``, one text."""
        return " ".join(sentence(self.clause(t)) for _ in range(n))

    # --- the benchmarks ------------------------------------------------------------------------------

    def story(self, t: Topic, n_context: int) -> list[str]:
        """``n_context`` sentences of topic ``t`` (past tense: a narrative)."""
        return [sentence(self.past(t) if self.r.random() < 0.75 else self.intransitive(t)) for _ in range(n_context)]

    def ending(self, t: Topic) -> str:
        return sentence(self.past(t))

    def minimal_pair(self, t: Topic, kind: str, subtype: str) -> tuple[str, str] | None:
        """(grammatical, ungrammatical) sentences of ``kind``/``subtype``, or None when the draw cannot make
        one (e.g. a verb whose forms coincide)."""
        good, bad = getattr(self, f"_{kind}_{subtype}")(t)
        return None if good == bad else (sentence(good), sentence(bad))

    def _agreement_subject_verb(self, t):
        plural_ = self.r.random() < 0.5
        good = self.present(t, plural_)  # the NOUN VERB ...: the verb is word 2
        bad = [*good[:2], third_person(good[2]) if plural_ else self._base_of(t, good[2]), *good[3:]]
        return good, bad

    def _base_of(self, t: Topic, third: str) -> str:
        for base, _ in (*t.verbs, *SHARED_VERBS):
            if third_person(base) == third:
                return base
        return third

    def _agreement_determiner_noun(self, t):
        kind = self.pick(["this", "these", "number"])
        obj = self.object_np(t, kind)
        good = [*self.subject(t), self.verb(t)[1], *obj]
        noun = obj[-1]
        singular = next(o for o in t.objects if plural(o) == noun) if kind != "this" else noun
        bad = [*good[:-1], plural(singular) if kind == "this" else singular]
        return good, bad

    def _argument_structure_transitive(self, t):
        subj, verb = self.subject(t), self.pick(SHARED_VERBS)[1]
        place = self.place(t)
        return [*subj, verb, *self.object_np(t, "the"), *place], [*subj, verb, *place]

    def _argument_structure_intransitive(self, t):
        subj, verb = self.subject(t), self.pick(INTRANSITIVE)[1]
        place = self.place(t)
        return [*subj, verb, *place], [*subj, verb, *self.object_np(t, "the"), *place]

    def _word_order_adjective_noun(self, t):
        obj = ["the", self.pick(t.adjectives), self.pick(t.objects)]
        good = [*self.subject(t), self.verb(t)[1], *obj]
        return good, [*good[:-2], good[-1], good[-2]]

    def _word_order_determiner_noun(self, t):
        good = [*self.subject(t), self.verb(t)[1], *self.object_np(t, "the")]
        return good, [good[1], good[0], *good[2:]]

    def _verb_form_modal(self, t):
        subj, (base, past), modal = self.subject(t), self.verb(t), self.pick(MODALS)
        obj = self.object_np(t)
        return [*subj, modal, base, *obj], [*subj, modal, past, *obj]

    def _verb_form_do_support(self, t):
        subj, (base, past) = self.subject(t), self.verb(t)
        obj = self.object_np(t)
        return [*subj, "did", "not", base, *obj], [*subj, "did", "not", past, *obj]
