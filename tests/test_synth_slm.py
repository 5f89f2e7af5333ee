"""The synthetic sLM benchmarks: gold.csv columns, pair structure, in-vocab split, no overlap with the
LM's training texts, matched non-words, determinism and resume."""

from __future__ import annotations

import csv
import hashlib
import pickle
import random
from collections import Counter
from pathlib import Path

import pytest

from spidrkit.cli import main
from spidrkit.data.corpora.manifest import read_manifest
from spidrkit.data.slm import words as slm_words
from spidrkit.data.slm.build import synthesize_slm
from spidrkit.data.slm.grammar import SUBTYPES, TOPICS, TopicGrammar
from spidrkit.data.slm.plan import (
    LM_POOL,
    absent_share,
    lm_train_texts,
    plan_slm,
    sentences_of,
    with_frequencies,
    word_counts,
    words_of,
)
from spidrkit.data.slm.words import NonWordMaker, bag_distance, metatheses, phonotactics_ok
from spidrkit.data.synth.flite import ARPABET, SILENCE, Flite
from support import built_once

VOICES = ("slt", "kal16")
HELDOUT = "kal16"
PAIRS = 2
LM_HOURS = 0.004
COLUMNS = {
    "lexical": ["id", "filename", "word", "phones", "correct", "frequency", "voice", "length"],
    "syntactic": ["id", "filename", "voice", "type", "subtype", "correct", "transcription"],
    "storycloze": ["id", "filename", "voice", "correct", "topic", "transcription"],
}


def _gold(root: Path, task: str, split: str) -> tuple[list[str], list[dict]]:
    with open(root / task / split / "gold.csv", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in ("spidrkit.json", ".lock")}


@pytest.fixture(scope="module")
def built(flite, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("slm") / "bench"
    return synthesize_slm(out, pairs=PAIRS, seed=3, workers=1, lm_hours=LM_HOURS, voices=VOICES,
                          heldout_voice=HELDOUT, progress=False)


@pytest.fixture(scope="module")
def default_plan(tmp_path_factory):
    """The default-size plan (no audio) with frequencies from the default LM corpus: about 5 s of CPU,
    spent by the first xdist worker that needs it; the other reads its pickle."""
    with built_once(tmp_path_factory, "default_slm_plan") as folder:
        cached = folder / "plan.pkl"
        if not cached.is_file():
            plan = plan_slm()
            counts = word_counts(lm_train_texts(plan.lm_pool, ("awb", "rms", "slt"), 1.0, 0))
            folder.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(pickle.dumps((plan, with_frequencies(plan.items, counts))))
        return pickle.loads(cached.read_bytes())


# --- the rendered folder ------------------------------------------------------------------------------


@pytest.mark.needs_flite
def test_gold_columns_are_exactly_zerospeech_and_every_row_has_its_wav(built):
    for task, columns in COLUMNS.items():
        for split in ("dev", "test"):
            header, rows = _gold(built, task, split)
            assert header == columns
            wavs = sorted(p.stem for p in (built / task / split).glob("*.wav"))
            assert wavs == sorted(r["filename"] for r in rows)
            assert {r["correct"] for r in rows} == {"0", "1"}


@pytest.mark.needs_flite
def test_each_id_has_both_items_in_every_voice_held_out_one_included(built):
    for task in COLUMNS:
        for split, ids in (("dev", 1), ("test", PAIRS)):
            _, rows = _gold(built, task, split)
            sides = Counter((r["id"], r["voice"], r["correct"]) for r in rows)
            assert sides == Counter({(str(i), v, c): 1 for i in range(ids) for v in VOICES for c in "01"})
            for i in range(ids):  # one word / sentence / story per side, the same in every voice
                key = "word" if task == "lexical" else "transcription"
                for c in "01":
                    assert len({r[key] for r in rows if r["id"] == str(i) and r["correct"] == c}) == 1
    speakers = {e.speaker for e in read_manifest(built / "lm_train" / "train.csv")}
    assert speakers == {"slt"}  # the held-out voice reads no LM text


@pytest.mark.needs_flite
def test_frequency_is_the_count_in_the_lm_training_texts(built):
    text = (built / "lm_train" / "train_text.txt").read_text().splitlines()
    counts = Counter(w for line in text for w in words_of(line.split(" ", 1)[1]))
    _, rows = _gold(built, "lexical", "test")
    words = {r["id"]: r["word"] for r in rows if r["correct"] == "1"}
    for r in rows:
        assert int(r["frequency"]) == counts[words[r["id"]]]
        assert int(r["length"]) == len(r["phones"].split())
    assert sum(counts[w] == 0 for w in words.values()) / len(words) >= 0.3


@pytest.mark.needs_flite
def test_no_benchmark_sentence_story_or_nonword_in_the_lm_corpus(built):
    lm = [line.split(" ", 1)[1] for s in ("train", "dev")
          for line in (built / "lm_train" / f"{s}_text.txt").read_text().splitlines()]
    _assert_disjoint(lm, *_benchmark_texts(built))


def _benchmark_texts(root: Path) -> tuple[list[str], list[str]]:
    texts, nonwords = [], []
    for split in ("dev", "test"):
        texts += [r["transcription"] for t in ("syntactic", "storycloze") for r in _gold(root, t, split)[1]]
        nonwords += [r["word"] for r in _gold(root, "lexical", split)[1] if r["correct"] == "0"]
    return texts, nonwords


def _assert_disjoint(lm_texts, bench_texts, nonwords):
    lm_sentences = {s for t in lm_texts for s in sentences_of(t)}
    lm_words = {w for t in lm_texts for w in words_of(t)}
    assert lm_sentences and bench_texts and nonwords
    assert not set(bench_texts) & set(lm_texts)
    assert not {s for t in bench_texts for s in sentences_of(t)} & lm_sentences
    assert not set(nonwords) & lm_words


@pytest.mark.needs_flite
def test_rebuild_resumes_to_identical_bytes_and_other_settings_are_refused(built, tmp_path):
    before = _digests(built)
    _, rows = _gold(built, "storycloze", "test")
    (built / "storycloze" / "test" / f"{rows[0]['filename']}.wav").unlink()
    (built / "storycloze" / "records" / f"{rows[0]['filename']}.json").unlink()
    (built / "lexical" / "dev" / "gold.csv").unlink()
    synthesize_slm(built, pairs=PAIRS, seed=3, workers=1, lm_hours=LM_HOURS, voices=VOICES,
                   heldout_voice=HELDOUT, progress=False)
    assert _digests(built) == before
    with pytest.raises(ValueError, match="other settings"):
        synthesize_slm(built, pairs=PAIRS, seed=4, workers=1, lm_hours=LM_HOURS, voices=VOICES,
                       heldout_voice=HELDOUT, progress=False)


@pytest.mark.needs_flite
def test_cli_on_a_finished_folder_renders_nothing(built, capsys):
    argv = ["data", "synth-slm", str(built), "--pairs", str(PAIRS), "--seed", "3", "--workers", "1",
            "--lm-hours", str(LM_HOURS), "--voices", *VOICES, "--heldout-voice", HELDOUT, "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "lexical: dev 2 pairs (1 ids)" in out and f"test {PAIRS * len(VOICES)} pairs ({PAIRS} ids)" in out


# --- the plan (no audio) ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.needs_flite
def test_default_size_has_1000_pairs_per_task_and_30_percent_absent_words(default_plan):
    _, items = default_plan
    for task in COLUMNS:
        pairs = {(i.id, i.voice) for i in items if (i.task, i.split) == (task, "test")}
        assert len(pairs) >= 1000
    assert 0.3 <= absent_share(items, "test") < 1.0
    assert 0.3 <= absent_share(items, "dev") < 1.0


@pytest.mark.slow
@pytest.mark.needs_flite
def test_default_plan_does_not_overlap_the_whole_lm_pool(default_plan):
    plan, _ = default_plan
    assert len(plan.lm_pool) == LM_POOL
    texts = [i.text for i in plan.items if i.task != "lexical"]
    nonwords = [dict(i.fields)["word"] for i in plan.items if i.task == "lexical" and not i.correct]
    _assert_disjoint(plan.lm_pool, texts, nonwords)


@pytest.mark.slow
@pytest.mark.needs_flite
def test_nonwords_have_their_words_phone_count_and_differ(default_plan):
    _, items = default_plan
    lexical = [dict(i.fields) | {"id": (i.split, i.id), "correct": i.correct} for i in items if i.task == "lexical"]
    by_id: dict = {}
    for r in lexical:
        by_id.setdefault(r["id"], {})[r["correct"]] = r
    for pair in by_id.values():
        word, nonword = pair[1], pair[0]
        assert word["length"] == nonword["length"] == str(len(word["phones"].split()))
        assert len(nonword["phones"].split()) == len(word["phones"].split()) >= 3
        assert word["phones"] != nonword["phones"] and word["word"] != nonword["word"]
    assert len({p[0]["word"] for p in by_id.values()}) == len(by_id)  # every non-word once


@pytest.mark.slow
@pytest.mark.needs_flite
def test_a_bag_of_phones_model_does_not_tell_words_from_nonwords(default_plan):
    """The shortcut a shuffled-units LM takes: a unigram of running speech (phones of LM-like texts drawn apart
    from those the non-words were matched on) prefers the word in about half of the test pairs (binomial
    noise of 250 pairs: 2 standard errors = 6.3 points). Before the matching it was 57-61 %."""
    import math

    from spidrkit.data.slm.plan import lm_texts
    from spidrkit.data.slm.words import pronounce

    counts = Counter(p for t in lm_texts(7, set(), 300) for p in pronounce(t)[1])
    total = sum(counts.values())

    def unigram(phones: list[str]) -> float:  # summed in one order: an anagram pair is an exact tie
        return sum(math.log((counts[p] + 1) / (total + len(counts))) for p in sorted(phones)) / len(phones)

    _, items = default_plan
    pairs: dict = {}
    for i in items:
        if i.task == "lexical" and i.split == "test":
            pairs.setdefault(i.id, {})[i.correct] = dict(i.fields)["phones"].split()
    wins = [1.0 if unigram(p[1]) > unigram(p[0]) else 0.5 if unigram(p[1]) == unigram(p[0]) else 0.0
            for p in pairs.values()]
    assert len(wins) == 250
    assert abs(sum(wins) / len(wins) - 0.5) <= 2 * math.sqrt(0.25 / len(wins))


def test_bag_distance_and_metatheses_by_hand():
    assert bag_distance(["K", "IH", "CH", "AH", "N"], ["K", "EH", "CH", "IH", "N"]) == 2  # AH vs EH
    assert bag_distance(["T", "EH", "S", "T"], ["S", "T", "EH", "T"]) == 0  # an anagram
    assert bag_distance(["R", "AH", "N"], ["R", "AH", "N", "T"]) == 1
    # garden = g|a|rd|e|n: chunk swaps (0,2) (0,4) (1,3) (2,4), then letter swaps g-r g-d r-d r-n d-n (g-n and a-e
    # repeat chunk swaps)
    assert metatheses("garden") == ["rdagen", "nardeg", "gerdan", "ganerd", "ragden", "dargen", "gadren", "gander",
                                    "garned"]
    assert metatheses("aa") == [] and metatheses("pen") == ["nep"]
    # W, Y, HH only before a vowel, NG only after one (metatheses made "dihe" D AY HH and "treang" T R NG)
    assert [phonotactics_ok(p.split()) for p in ("HH AW S", "S IH NG", "W IH N", "Y EH S")] == [True] * 4
    assert [phonotactics_ok(p.split()) for p in ("D AY HH", "T R NG", "B OW W", "S AY Y", "NG AA")] == [False] * 5


@pytest.mark.needs_flite
def test_an_anagram_is_preferred_to_any_other_candidate():
    """"pen" (P EH N) -> "nep" (N EH P), its first metathesis, whatever the generator: an exact phone bag."""
    for seed in range(3):
        maker = NonWordMaker(["pen", "garden", "kitchen", "window"], random.Random(seed))
        assert maker.make("pen") == "nep" and maker.used == {"nep"}
        assert maker.make("pen") != "nep"  # a non-word is used once


@pytest.mark.slow
@pytest.mark.needs_flite
def test_nonwords_match_their_words_phone_bags(default_plan):
    """Share of test pairs whose non-word is an anagram of its word (pronounced phones): 135 / 250 = 54.0 % at
    the defaults (0.4 % with substitutions alone, SLM_VERSION 2), no pair more than one phone apart (up to 4
    before). The plan is deterministic; the margin (6 points, ~2 binomial standard errors of 250 pairs) leaves
    room for another flite build's letter-to-sound rules, not for a broken bag matching."""
    _, items = default_plan
    pairs: dict = {}
    for i in items:
        if i.task == "lexical" and i.split == "test":
            pairs.setdefault(i.id, {})[i.correct] = dict(i.fields)["phones"].split()
    distances = [bag_distance(p[1], p[0]) for p in pairs.values()]
    assert len(distances) == 250
    assert sum(d == 0 for d in distances) / len(distances) >= 0.48
    assert max(distances) <= 2


@pytest.mark.needs_flite
def test_plan_is_deterministic_for_a_seed():
    a, b, c = plan_slm(3, seed=1), plan_slm(3, seed=1), plan_slm(3, seed=2)
    assert a.items == b.items and a.lm_pool == b.lm_pool
    assert [i.text for i in a.items] != [i.text for i in c.items]


@pytest.mark.needs_flite
def test_plan_is_the_one_the_renderings_phones_give(monkeypatch):
    """The non-word search reads pronunciations without rendering (``Flite.phones``): the same plan, byte for
    byte, as with the segments and words of kal16's renderings (~1,900 words and candidates pronounced)."""
    fast = plan_slm(10, seed=5, voices=("slt", "kal16"))

    def rendered(text):
        r = Flite.instance().synthesize(text, slm_words.PROBE_VOICE)
        return len(r.words), tuple(ARPABET[p] for p, _ in r.segments if ARPABET[p] != SILENCE)

    monkeypatch.setattr(slm_words, "pronounce", rendered)
    assert pickle.dumps(plan_slm(10, seed=5, voices=("slt", "kal16"))) == pickle.dumps(fast)
    assert len(fast.nonwords) == 12


def test_every_minimal_pair_type_differs_and_topics_have_their_own_words():
    g = TopicGrammar(random.Random(0))
    assert len(SUBTYPES) >= 4 and all(len(s) >= 2 for s in SUBTYPES.values())
    for kind, subs in SUBTYPES.items():
        for sub in subs:
            pairs = [g.minimal_pair(t, kind, sub) for t in TOPICS for _ in range(5)]
            assert sum(p is not None for p in pairs) >= 20
            assert all(p[0] != p[1] for p in pairs if p)
    for a in TOPICS:
        for b in TOPICS:
            if a is not b:
                assert not set(a.objects) & set(b.objects) and not set(a.agents) & set(b.agents)


# --- the phone topline end to end ---------------------------------------------------------------------


@pytest.mark.needs_flite
def test_phone_lm_trains_on_the_lm_corpus_phones_and_scores_every_task(built, tmp_path):
    """corpus phones -> units file (39 ids, silences dropped) -> lm train -> evaluate slm --units phones."""
    from spidrkit.data.corpora.alignments import read_alignments
    from spidrkit.evaluation.slm.score import evaluate_slm
    from spidrkit.evaluation.slm.units import PHONE_INVENTORY, CorpusSplit, parse_units, write_corpus_units
    from spidrkit.extraction.units import read_units
    from spidrkit.io import read_sidecar
    from spidrkit.lm import load_lm, train

    spec = parse_units("phones")
    path = write_corpus_units(tmp_path / "phones.txt", CorpusSplit(built / "lm_train", "train"), spec)
    aligned = read_alignments(built / "lm_train" / "train_phones.txt")
    phones = {u: [iv.label for iv in ivs if iv.label != "SIL"] for u, ivs in aligned.items()}
    units = read_units(path)
    assert len(PHONE_INVENTORY) == 39 and read_sidecar(path)["k"] == 39
    assert {u: [PHONE_INVENTORY[i] for i in x.frames()] for u, x in units.items()} == phones
    n_phones, n_utts = sum(map(len, phones.values())), len(phones)
    summary = train([path], tmp_path / "lm", "tiny", ["model.num_layers=1", "model.dim=32", "model.num_heads=2",
                                                      "model.ffn_dim=64", "lm.dedup=false", "train.max_steps=3",
                                                      "train.batch_size=4"], progress=False)
    assert summary["step"] == 3
    info = read_sidecar(tmp_path / "lm")
    assert info["train_tokens"] + info["valid_tokens"] == n_phones + 2 * n_utts  # bos + phones + eos each
    lm, vocab, _ = load_lm(tmp_path / "lm", "last")
    report = evaluate_slm(built, None, spec, lm, vocab, tmp_path / "eval", n_bootstrap=20, progress=False)
    _, lexical = _gold(built, "lexical", "test")
    assert report["inputs"]["units"] == "phones"
    assert report["results"]["lexical/test"]["all"]["pairs"] == len({r["id"] for r in lexical})  # pair ids
    assert set(report["results"]) == {f"{t}/{s}" for t in COLUMNS for s in ("dev", "test")}


def _slm_benchmark():
    """experiments/slm.py as a module (the experiments are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("slm_benchmark", Path(__file__).parents[1] / "experiments" / "slm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_sources_runs_the_phone_topline_and_the_shuffled_control_only(capsys):
    from argparse import Namespace

    bench = _slm_benchmark()
    args = Namespace(sources=["phones"], seeds=3, shuffled_of="phones", layer=None, codebook_layer=None, sweep=None,
                     pairs=250, lm_hours=1.0, k=256, score_utts=1000)
    assert bench.choose_layers(args) == (None, None)  # no --layer or --sweep needed without a SpidR source
    assert bench.unit_sources(args) == ["phones"]
    assert bench.unit_sources(Namespace(sources=["phones"], shuffled_of="mfcc")) == ["phones", "mfcc"]
    assert bench.lm_runs(args) == [("phones", 0), ("phones", 1), ("phones", 2), ("shuffled", 0), ("shuffled", 1),
                                   ("shuffled", 2)]
    bench.plan(args, (None, None))
    assert "units (phones; " in capsys.readouterr().out.replace("\n", " ")
    table = {"phones (topline)": {"swuggy_all": {"score": 91.0}, "sblimp": {"score": 74.0}},
             "shuffled phones": {"swuggy_all": {"score": 53.0}}}
    checks = bench.check_targets(table, args)  # the SpidR > MFCC targets are not this run's
    assert {k: c["ok"] for k, c in checks.items()} == {"topline_swuggy>=90": True, "topline_sblimp>=75": False,
                                                      "shuffled_swuggy_50+-3": True}
    everything = Namespace(**{**vars(args), "sources": list(bench.SOURCES), "layer": 6})
    assert len(bench.lm_runs(everything)) == 5 * 3 and bench.choose_layers(everything) == (6, 6)
    assert set(bench.check_targets(table, everything)) == {*checks, "spidr_kmeans>mfcc_swuggy",
                                                           "spidr_codebook>mfcc_swuggy"}


def test_benchmark_topline_ceiling_splits_all_into_in_vocab_and_oov_pairs():
    bench = _slm_benchmark()
    # 100 pair ids at 70 %, 60 of them in-vocab at 80 %: the 40 OOV ids score (7000 - 4800) / 40 = 55 %, and a
    # perfect in-vocab score would give (60 * 100 + 40 * 55) / 100 = 82 % on all
    table = {"phones (topline)": {"swuggy_all": {"score": 70.0, "pairs": 100},
                                  "swuggy_in_vocab": {"score": 80.0, "pairs": 60}}}
    ceiling = bench.topline_ceiling(table)
    assert ceiling["oov_share"] == pytest.approx(0.4) and ceiling["oov_score"] == pytest.approx(55.0)
    assert ceiling["all_if_in_vocab_perfect"] == pytest.approx(82.0)
    assert bench.topline_ceiling({"MFCC k-means": table["phones (topline)"]}) is None  # no topline row
    everything_known = {"phones (topline)": {"swuggy_all": {"score": 80.0, "pairs": 60},
                                             "swuggy_in_vocab": {"score": 80.0, "pairs": 60}}}
    assert bench.topline_ceiling(everything_known) is None  # no OOV pair: nothing caps "all"


@pytest.mark.needs_flite
def test_benchmark_sources_phones_makes_the_phone_and_shuffled_units_without_an_encoder(built, tmp_path):
    from argparse import Namespace

    from spidrkit.extraction.units import read_units

    bench = _slm_benchmark()
    args = Namespace(sources=["phones"], shuffled_of="phones", checkpoint="no/such/checkpoint.pt", k=256,
                     kmeans_files=None)
    units = bench.make_units(args, tmp_path, built, (None, None))  # loads no checkpoint, fits no k-means
    assert units["units"] == {"phones": "phones"} and units["sources"] == ["phones"]
    assert sorted(units["files"]) == ["phones_dev", "phones_train", "shuffled_dev", "shuffled_train"]
    phones, shuffled = read_units(units["files"]["phones_train"]), read_units(units["files"]["shuffled_train"])
    assert phones.keys() == shuffled.keys()
    assert all(sorted(phones[u].frames()) == sorted(shuffled[u].frames()) for u in phones)  # the same bags
    assert any(list(phones[u].frames()) != list(shuffled[u].frames()) for u in phones)  # in another order
    assert not list(tmp_path.glob("units/*.npy"))


@pytest.mark.needs_flite
def test_benchmark_unit_quality_reads_each_sources_dev_units_against_the_lm_corpus_phones(built, tmp_path):
    """The quality stage scores the units the LMs read (the LM corpus's dev split) against its frame labels:
    units that are the phones themselves (every other 100 Hz label: 50 Hz) get the PNMI of their pairs with the
    100 Hz labels computed by hand (each unit frame with its two label frames), units that ignore the phones (one
    value per utterance) a PNMI of 0; each point carries its label's scores. (This small LM corpus has too few
    ABX cells for a score: ABX is None, as the unit metrics report it.)"""
    import math
    from argparse import Namespace
    from collections import Counter

    from spidrkit.data.corpora.alignments import read_frame_labels
    from spidrkit.extraction.units import write_units

    bench = _slm_benchmark()
    labels = read_frame_labels(built / "lm_train" / "dev_frames.txt")
    ids = {p: i for i, p in enumerate(sorted({p for seq in labels.values() for p in seq}))}
    files = {"mfcc_dev": write_units(tmp_path / "phones.txt", {u: [ids[p] for p in seq[::2]]
                                                               for u, seq in labels.items()}, k=len(ids)),
             "kmeans_dev": write_units(tmp_path / "flat.txt", {u: [i % 2] * (len(seq) // 2)
                                                              for i, (u, seq) in enumerate(labels.items())}, k=2)}
    table = {label: {"swuggy_all": {"score": s}, "sblimp": {"score": s + 1}}
             for label, s in (("MFCC k-means", 60.0), ("SpidR k-means", 40.0))}
    args = Namespace(sources=["phones", "mfcc", "kmeans"], out=str(tmp_path / "out"))
    quality = bench.unit_quality_points(args, built, {"files": files}, {"table": table})
    phones, flat = quality["points"]  # the phone source has no encoder units: no point
    assert (phones["label"], flat["label"]) == ("MFCC k-means", "SpidR k-means")
    pairs = [(seq[2 * (t // 2)], seq[t]) for seq in labels.values() for t in range(len(seq))]

    def entropy(counts: Counter) -> float:
        return -sum(c / len(pairs) * math.log2(c / len(pairs)) for c in counts.values())

    h_phone, h_unit = entropy(Counter(p for _, p in pairs)), entropy(Counter(u for u, _ in pairs))
    assert phones["pnmi"] == pytest.approx((h_phone + h_unit - entropy(Counter(pairs))) / h_phone, abs=1e-9)
    assert 0.8 < phones["pnmi"] < 1 and flat["pnmi"] == pytest.approx(0.0, abs=1e-9)
    assert (phones["swuggy_all"], phones["sblimp"], flat["swuggy_all"]) == (60.0, 61.0, 40.0)
    assert Path(quality["plot"]).is_file()
