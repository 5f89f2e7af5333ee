"""Spoken LM evaluation: unit LM scoring (hand-computed, batched = unbatched), the ZeroSpeech 2021 rules on a
hand-made gold with known scores, the benchmark readers and their errors, and ``spidrkit evaluate slm`` end to
end on a tiny generated set (tiny random SpidR, tiny random OPT)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from spidrkit.cli import main
from spidrkit.evaluation.slm.bench import BenchmarkError, read_benchmark
from spidrkit.evaluation.slm.rules import bootstrap, frequency_band, pair_scores, summarize
from spidrkit.evaluation.slm.score import SlmUnitsError, parse_units
from spidrkit.evaluation.slm.submission import validate_submission
from spidrkit.extraction.kmeans import KMeansModel
from spidrkit.lm.scoring import ScoringError, score
from spidrkit.lm.vocab import UnitVocab
from support import LEXICAL, SYNTACTIC, audio, names_of, tiny_opt, write_split

LN2 = math.log(2.0)


# ------------------------------------------------------------------------------------------------ scoring
class Bigram(torch.nn.Module):
    """A causal LM with known logits: log P(next | previous token) from a fixed table."""

    def __init__(self, probs: list[list[float]], context: int = 32):
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(probs).log())
        self.config = SimpleNamespace(max_position_embeddings=context)

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.table[input_ids])


# tokens: pad 0, bos 1, eos 2, unit 0 -> 3, unit 1 -> 4
BIGRAM = [
    [0.2, 0.2, 0.2, 0.2, 0.2],  # after pad
    [0.0, 0.0, 0.25, 0.5, 0.25],  # after bos
    [0.2, 0.2, 0.2, 0.2, 0.2],  # after eos
    [0.0, 0.0, 0.5, 0.25, 0.25],  # after unit 0
    [0.0, 0.0, 0.125, 0.375, 0.5],  # after unit 1
]


def test_score_of_a_known_lm_normalised_and_summed():
    lm, vocab = Bigram(BIGRAM), UnitVocab(2)
    seqs = [[0, 0, 1], [1], []]  # -> bos u0 u1 eos, bos u1 eos, bos eos
    summed = score(lm, vocab, seqs, normalize=False)
    normalised = score(lm, vocab, seqs)
    # ln .5 + ln .25 + ln .125 ; ln .25 + ln .125 ; ln .25
    assert summed == pytest.approx([-6 * LN2, -5 * LN2, -2 * LN2], abs=1e-6)
    assert normalised == pytest.approx([-2 * LN2, -2.5 * LN2, -2 * LN2], abs=1e-6)  # / 3, / 2, / 1
    # without de-duplication the repeated unit is a token: + ln P(u0 | u0) = ln .25, 4 predicted tokens
    assert score(lm, UnitVocab(2, dedup=False), [[0, 0, 1]], normalize=False) == pytest.approx([-8 * LN2], abs=1e-6)


def test_score_matches_a_hand_log_softmax_of_the_model_logits():
    vocab = UnitVocab(5)
    lm = tiny_opt(vocab)
    units = [4, 4, 0, 3, 1, 1, 2]
    tokens = vocab.encode(units)  # bos 7 3 6 4 5 eos: 6 predicted tokens
    with torch.no_grad():
        logits = lm(input_ids=torch.tensor([tokens])).logits[0].double().tolist()
    terms = []
    for t in range(1, len(tokens)):
        row = logits[t - 1]
        top = max(row)
        terms.append(row[tokens[t]] - top - math.log(sum(math.exp(v - top) for v in row)))
    assert len(terms) == 6
    assert score(lm, vocab, [units], normalize=False)[0] == pytest.approx(sum(terms), abs=1e-5)
    assert score(lm, vocab, [units])[0] == pytest.approx(sum(terms) / 6, abs=1e-6)


def test_batched_scores_equal_unbatched():
    vocab = UnitVocab(7)
    lm = tiny_opt(vocab, seed=1)
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 7, size=int(n)).tolist() for n in rng.integers(0, 40, size=13)]
    for normalize in (True, False):
        batched = score(lm, vocab, seqs, normalize=normalize, batch_tokens=10_000)
        alone = score(lm, vocab, seqs, normalize=normalize, batch_tokens=1)
        assert max(abs(a - b) for a, b in zip(batched, alone)) <= 1e-5


def test_a_sequence_longer_than_the_context_is_one_clear_error():
    with pytest.raises(ScoringError, match=r"^utt7: 12 tokens \(bos \+ 10 units \+ eos\) exceed the LM's context of 8"):
        score(Bigram(BIGRAM, context=8), UnitVocab(2, dedup=False), [[0, 1] * 5], names=["utt7"])


# ------------------------------------------------------------------------------------------------ rules
LEXICAL_SCORES = {  # per voice: id 1: win, tie -> .75; id 2: lose, win -> .5; id 3: tie -> .5;
    "w1a": -1.0, "n1a": -2.0, "w1b": -3.0, "n1b": -3.0,  # id 4: win, lose, win -> 2/3; id 5: lose -> 0
    "w2a": -5.0, "n2a": -1.0, "w2b": -1.0, "n2b": -2.0,
    "w3a": -4.0, "n3a": -4.0,
    "w4a": -1.0, "n4a": -1.5, "w4b": -2.0, "n4b": -1.0, "w4c": -0.5, "n4c": -0.6,
    "w5a": -9.0, "n5a": -8.0,
}
SYNTACTIC_SCORES = {"g1a": -1.0, "u1a": -2.0, "g1b": -2.0, "u1b": -1.0, "g2a": -1.0, "u2a": -3.0,
                    "g3a": -2.0, "u3a": -2.0, "g3b": -1.0, "u3b": -2.5}  # s1 .5, s2 1, s3 .75
STORYCLOZE = """id,filename,voice,correct,topic,transcription
t1,t1t,A,1,sea,the boat sails. the fish swim.
t1,t1f,A,0,sea,the boat sails. the cow moos.
t2,t2t,A,1,farm,the cow moos. the hen lays.
t2,t2f,A,0,farm,the cow moos. the fish swim.
t3,t3t,A,1,sea,the wave rolls. the gull cries.
t3,t3f,A,0,sea,the wave rolls. the hen lays.
"""
STORYCLOZE_SCORES = {"t1t": -1.0, "t1f": -2.0, "t2t": -3.0, "t2f": -2.0, "t3t": -1.0, "t3f": -1.0}


@pytest.fixture
def bench(tmp_path):
    root = tmp_path / "bench"
    write_split(root / "lexical" / "dev", LEXICAL, names_of(LEXICAL))
    write_split(root / "lexical" / "test", None, ["x1", "x2"])
    write_split(root / "syntactic" / "dev", SYNTACTIC, names_of(SYNTACTIC))
    write_split(root / "storycloze" / "dev", STORYCLOZE, names_of(STORYCLOZE))
    return root


def cells(summary):
    return {name: (round(c["score"], 4), c["pairs"]) for name, c in summary.items()}


def test_lexical_rules_ties_voices_in_vocab_and_bands(bench):
    splits = {f"{s.task}/{s.split}": s for s in read_benchmark(bench)}
    assert list(splits) == ["lexical/dev", "lexical/test", "syntactic/dev", "storycloze/dev"]
    assert [s.gold for s in splits.values()] == [True, False, True, True]
    pairs = pair_scores(splits["lexical/dev"], LEXICAL_SCORES)
    assert [(p.pair, round(p.score, 4), p.voices) for p in pairs] == [
        ("1", 0.75, 2), ("2", 0.5, 2), ("3", 0.5, 1), ("4", 0.6667, 3), ("5", 0.0, 1)]
    summary = summarize(pairs, n_bootstrap=200, seed=0)
    assert cells(summary) == {
        "all": (48.3333, 5), "in_vocab": (47.9167, 4), "band/oov": (50.0, 1), "band/1-5": (0.0, 1),
        "band/6-20": (70.8333, 2), "band/>100": (50.0, 1),
        # by voice, each pair id on that voice alone: A reads ids 1-5 (1, 0, .5, 1, 0), B ids 1, 2, 4 (.5, 1, 0), C id 4
        "voice/A": (50.0, 5), "voice/B": (50.0, 3), "voice/C": (100.0, 1)}
    assert list(summary) == ["all", "in_vocab", "band/oov", "band/1-5", "band/6-20", "band/>100", "voice/A",
                             "voice/B", "voice/C"]
    assert [p.by_voice for p in pairs] == [{"A": 1.0, "B": 0.5}, {"A": 0.0, "B": 1.0}, {"A": 0.5},
                                           {"A": 1.0, "B": 0.0, "C": 1.0}, {"A": 0.0}]


def test_syntactic_by_type_subtype_and_voice_and_storycloze_by_topic(bench):
    splits = {f"{s.task}/{s.split}": s for s in read_benchmark(bench)}
    syn = summarize(pair_scores(splits["syntactic/dev"], SYNTACTIC_SCORES), n_bootstrap=200)
    assert cells(syn) == {"all": (75.0, 3), "subtype/agreement/a1": (50.0, 1), "subtype/agreement/a2": (100.0, 1),
                          "subtype/order/o1": (75.0, 1), "type/agreement": (75.0, 2), "type/order": (75.0, 1),
                          "voice/A": (83.3333, 3), "voice/B": (50.0, 2)}  # A: s1 1, s2 1, s3 .5; B: s1 0, s3 1
    tsc = summarize(pair_scores(splits["storycloze/dev"], STORYCLOZE_SCORES), n_bootstrap=200)
    assert cells(tsc) == {"all": (50.0, 3), "topic/farm": (0.0, 1), "topic/sea": (75.0, 2)}  # one voice: no split


def test_frequency_bands_are_zerospeech_half_open_intervals():
    assert [frequency_band(f) for f in (0, 0.5, 1, 4, 5, 19, 20, 99, 100, 1e6)] == [
        "oov", "oov", "1-5", "1-5", "6-20", "6-20", "21-100", "21-100", ">100", ">100"]


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    values = [0.0, 1.0, 0.5, 1.0, 1.0, 0.0, 0.75, 1.0]
    low, high = bootstrap(values, 500, seed=3)
    assert (low, high) == bootstrap(values, 500, seed=3)
    assert low < float(np.mean(values)) < high
    assert bootstrap([0.25], 100) == (0.25, 0.25)


def test_a_pair_without_its_wrong_item_is_an_error(tmp_path):
    gold = LEXICAL.replace("5,n5a,sul,s u l,0,0,A,3\n", "")
    split = read_benchmark(write_split(tmp_path / "lexical" / "dev", gold, names_of(gold)).parent)[0]
    with pytest.raises(BenchmarkError, match=r"pair id '5', voice 'A' has 1 right and 0 wrong items"):
        pair_scores(split, LEXICAL_SCORES)


# ------------------------------------------------------------------------------------------------ readers
def test_missing_column_and_missing_wav_are_clear_errors(tmp_path):
    no_voice = "\n".join(",".join(c for j, c in enumerate(line.split(",")) if j != 6)
                         for line in LEXICAL.strip().splitlines()) + "\n"
    folder = write_split(tmp_path / "a" / "lexical" / "dev", no_voice, names_of(LEXICAL))
    with pytest.raises(BenchmarkError) as e:
        read_benchmark(tmp_path / "a")
    assert str(e.value) == (f"{folder / 'gold.csv'}: no column 'voice' (a lexical gold.csv has the columns id, "
                            "filename, word, phones, correct, frequency, voice, length)")
    folder = write_split(tmp_path / "b" / "syntactic" / "dev", SYNTACTIC, names_of(SYNTACTIC)[:-1])
    with pytest.raises(BenchmarkError) as e:
        read_benchmark(tmp_path / "b")
    assert str(e.value) == f"{folder / 'gold.csv'}, line 11: no audio {folder / 'u3b.wav'} for the file 'u3b'"
    with pytest.raises(BenchmarkError, match="no benchmark task"):
        read_benchmark(tmp_path)


def test_published_spoken_storycloze_layout(tmp_path):
    folder = write_split(tmp_path / "tSC", None, ["0_correct", "0_incorrect", "1_story_incorrect",
                                                  "1_story_correct", "10_correct", "10_incorrect"])
    (split,) = read_benchmark(folder)
    assert (split.task, split.split, split.gold) == ("storycloze", "tSC", True)
    assert [(it.pair, it.filename, it.correct) for it in split.items] == [
        ("0", "0_correct", True), ("0", "0_incorrect", False), ("1", "1_story_correct", True),
        ("1", "1_story_incorrect", False), ("10", "10_correct", True), ("10", "10_incorrect", False)]
    scores = {"0_correct": -1.0, "0_incorrect": -2.0, "1_story_correct": -2.0, "1_story_incorrect": -1.0,
              "10_correct": -1.0, "10_incorrect": -1.0}
    assert cells(summarize(pair_scores(split, scores), 100)) == {"all": (50.0, 3)}
    (folder / "10_incorrect.wav").unlink()
    with pytest.raises(BenchmarkError, match="story 10 has 10_correct.wav; expected one '10_..._correct.wav'"):
        read_benchmark(folder)


# ------------------------------------------------------------------------------------------------ end to end
def test_evaluate_slm_end_to_end(slm_models, tmp_path, capsys, monkeypatch):
    bench = tmp_path / "bench"
    lexical = LEXICAL
    write_split(bench / "lexical" / "dev", lexical, names_of(lexical), audio)
    write_split(bench / "lexical" / "test", None, ["x1", "x2"], audio)
    write_split(bench / "syntactic" / "dev", SYNTACTIC, names_of(SYNTACTIC), audio)
    write_split(bench / "storycloze" / "dev", STORYCLOZE, names_of(STORYCLOZE), audio)
    out = tmp_path / "out"
    argv = ["evaluate", "slm", str(bench), "--model", str(slm_models["encoder"]), "--units", "codebook:6", "--lm",
            str(slm_models["lm"]), "-o", str(out), "--bootstrap", "100", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "lexical/dev" in printed and "in_vocab" in printed
    report = json.loads((out / "report.json").read_text())
    assert list(report["results"]) == ["lexical/dev", "syntactic/dev", "storycloze/dev"]
    assert report["scoring"]["normalize"] is True and report["inputs"]["units"] == "codebook:6"
    sub, scores_dir = out / "submission", out / "scores"
    lines = (sub / "lexical" / "dev.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == names_of(lexical)
    assert (scores_dir / "lexical" / "dev.txt").read_text() == (sub / "lexical" / "dev.txt").read_text()
    assert [line.split()[0] for line in (scores_dir / "lexical" / "test.txt").read_text().splitlines()] == ["x1", "x2"]
    assert [line.split()[0] for line in (scores_dir / "storycloze" / "dev.txt").read_text().splitlines()] == \
        names_of(STORYCLOZE)
    # the submission: syntactic has no test split, so the validator checks dev only (lexical/test.txt stays in
    # scores/); StoryCloze is no ZeroSpeech 2021 track; the phonetic and semantic tracks are empty (skipped)
    assert sorted(p.name for p in sub.iterdir()) == ["lexical", "meta.yaml", "phonetic", "semantic", "syntactic"]
    assert [sorted(p.name for p in (sub / t).iterdir()) for t in ("lexical", "syntactic", "phonetic", "semantic")] \
        == [["dev.txt"], ["dev.txt"], [], []]
    assert report["submission"] == {
        "splits": ["lexical/dev", "syntactic/dev"], "only_dev": True, "left_out": ["lexical/test", "storycloze/dev"],
        "validate": f"zerospeech2021-validate DATASET {sub} --only-dev --no-phonetic --no-semantic"}
    assert f"check it with: {report['submission']['validate']}" in printed
    assert validate_submission(sub, {("lexical", "dev"): set(names_of(lexical)),
                                     ("syntactic", "dev"): set(names_of(SYNTACTIC))}) == []
    meta = yaml.safe_load((sub / "meta.yaml").read_text())
    assert set(meta) == {"author", "affiliation", "description", "open_source", "train_set", "visually_grounded",
                         "gpu_budget", "parameters"}
    assert meta["open_source"] is False and meta["visually_grounded"] is False
    # the report is the rules applied to the submitted scores
    scores = {name: float(value) for name, value in (line.split() for line in lines)}
    split = read_benchmark(bench / "lexical")[0]
    assert report["results"]["lexical/dev"] == json.loads(json.dumps(summarize(pair_scores(split, scores), 100)))
    assert "## sWUGGY (lexical/dev)" in (out / "report.md").read_text()

    # k-means units, summed log-likelihoods: every file's score is its normalised one times its predicted tokens
    out2 = tmp_path / "out2"
    argv2 = [*argv[:5], "--units", f"kmeans:{slm_models['centroids']}", "--lm", str(slm_models["lm"]), "-o", str(out2),
             "--unnormalized", "--quiet"]
    assert main(argv2) == 0
    assert json.loads((out2 / "report.json").read_text())["scoring"]["normalize"] is False
    summed = dict(line.split() for line in (out2 / "submission" / "syntactic" / "dev.txt").read_text().splitlines())
    assert all(float(v) < 0 for v in summed.values()) and len(summed) == 10


def test_evaluate_slm_layout_error_exits_2_before_loading_models(tmp_path, capsys):
    write_split(tmp_path / "lexical" / "dev", LEXICAL.replace("frequency", "freq"), names_of(LEXICAL))
    code = main(["evaluate", "slm", str(tmp_path), "--model", "nowhere.pt", "--units", "codebook:6", "--lm",
                 "nowhere"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("spidrkit evaluate slm: error: ") and "no column 'frequency'" in err
    assert len(err.splitlines()) == 1


def test_units_specification(slm_models, tmp_path):
    assert parse_units("codebook:6").layer == 6
    spec = parse_units(f"kmeans:{slm_models['centroids']}")
    assert (spec.kind, spec.layer, spec.k) == ("kmeans", 6, 16)
    with pytest.raises(SlmUnitsError, match="fitted on layer 6, not --layers 4"):
        parse_units(f"kmeans:{slm_models['centroids']}", layer=4)
    bare = KMeansModel(torch.randn(4, 64)).save(tmp_path / "bare.npy")
    with pytest.raises(SlmUnitsError, match="names no layer; pass --layers N"):
        parse_units(f"kmeans:{bare}")
    assert parse_units(f"kmeans:{bare}", layer=3).layer == 3
    with pytest.raises(SlmUnitsError, match="name the layer, as in codebook:6"):
        parse_units("codebook")
    assert parse_units("codebook", layer=4).layer == 4
    for bad in ("codebook:0", "codebook:x", "kmeans:", "phones:3", "bpe"):
        with pytest.raises(SlmUnitsError, match="--units"):
            parse_units(bad)


def test_units_that_do_not_fit_the_encoder_or_the_lm_are_refused(slm_models):
    from spidrkit.checkpoints import load
    from spidrkit.evaluation.slm.score import UnitSpec, check_units

    encoder = load(slm_models["encoder"]).model
    check_units(parse_units("codebook:6"), encoder, UnitVocab(16))
    with pytest.raises(SlmUnitsError, match=r"^--units codebook:1: the encoder has codebooks on layers \[3, 4, 5, 6\]"):
        check_units(parse_units("codebook:1"), encoder, UnitVocab(16))
    with pytest.raises(SlmUnitsError, match=r"^the units codebook:6 take 16 values but the LM was trained on k = 8$"):
        check_units(parse_units("codebook:6"), encoder, UnitVocab(8))
    with pytest.raises(SlmUnitsError, match=r"^C.npy: layer 7 is not one of the encoder's layers 1..6$"):
        check_units(UnitSpec("kmeans", 7, KMeansModel(torch.randn(16, 64)), 16, "C.npy"), encoder, UnitVocab(16))
    with pytest.raises(SlmUnitsError, match=r"^C.npy: centroids of width 32, the encoder's features have 64$"):
        check_units(UnitSpec("kmeans", 6, KMeansModel(torch.randn(16, 32)), 16, "C.npy"), encoder, UnitVocab(16))


def test_mfcc_kmeans_units_score_through_the_same_scorer(slm_models, tmp_path, capsys):
    """--encoder mfcc --units kmeans:FILE: each file's score is the LM's score of the nearest centroids of its
    39-d MFCC; --units without an encoder, or a bare preset name as encoder, are clear errors (exit 2)."""
    from spidrkit.data.corpora.audio import load_audio
    from spidrkit.encoders.mfcc import mfcc
    from spidrkit.lm import load_lm

    bench = tmp_path / "bench"
    write_split(bench / "syntactic" / "dev", SYNTACTIC, names_of(SYNTACTIC), audio)
    km = KMeansModel(torch.randn(16, 39) * 5, {"model": "mfcc"})
    path = km.save(tmp_path / "M.npy")
    out = tmp_path / "out"
    base = ["evaluate", "slm", str(bench), "--lm", str(slm_models["lm"]), "-o", str(out), "--bootstrap", "10",
            "--quiet"]
    assert main([*base, "--model", "mfcc", "--units", f"kmeans:{path}"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["inputs"]["encoder"] == "mfcc" and report["inputs"]["units"] == f"kmeans:{path} (MFCC)"
    lm, vocab, _ = load_lm(slm_models["lm"])
    names = names_of(SYNTACTIC)
    units = [km.predict(mfcc(load_audio(bench / "syntactic" / "dev" / f"{n}.wav"))).tolist() for n in names]
    expected = score(lm, vocab, units)
    got = dict(line.split() for line in (out / "submission" / "syntactic" / "dev.txt").read_text().splitlines())
    assert [float(got[n]) for n in names] == pytest.approx(expected, abs=1e-5)
    capsys.readouterr()
    assert main([*base, "--units", "codebook:6", "--force"]) == 2
    assert "needs --model" in capsys.readouterr().err
    assert main([*base, "--model", "tiny", "--units", "codebook:6", "--force"]) == 2
    assert "'random:tiny' for a model with RANDOM weights" in capsys.readouterr().err


def test_model_options_reach_the_encoder(slm_models, tmp_path, capsys):
    """--normalization / --variant of `evaluate slm` go to the encoder's loader: standardize is what a SpidR
    encoder reads anyway (same scores), raw is refused for it, and neither applies to mfcc (exit 2 each)."""
    bench = tmp_path / "bench"
    write_split(bench / "syntactic" / "dev", SYNTACTIC, names_of(SYNTACTIC), audio)
    base = ["evaluate", "slm", str(bench), "--lm", str(slm_models["lm"]), "--units", "codebook:6", "--bootstrap", "10",
            "--quiet", "--model", str(slm_models["encoder"])]
    assert main([*base, "-o", str(tmp_path / "a")]) == 0
    assert main([*base, "-o", str(tmp_path / "b"), "--normalization", "standardize"]) == 0
    a, b = ((tmp_path / x / "submission" / "syntactic" / "dev.txt").read_text() for x in "ab")
    assert a == b and len(a.splitlines()) == 10
    capsys.readouterr()
    assert main([*base, "-o", str(tmp_path / "c"), "--normalization", "raw"]) == 2
    assert "normalization='raw' applies to HuBERT" in capsys.readouterr().err
    km = KMeansModel(torch.randn(16, 39), {"model": "mfcc"}).save(tmp_path / "M.npy")
    assert main([*base[:-1], "mfcc", "--units", f"kmeans:{km}", "-o", str(tmp_path / "d"), "--normalization",
                 "raw"]) == 2
    assert "apply to a model encoder, not to mfcc" in capsys.readouterr().err
