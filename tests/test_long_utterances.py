"""Long utterances of the flite corpus (spidrkit.data.synth.long): exact joined alignments, noise pauses,
lengths in range, split rules, and the default corpus unchanged."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spidrkit.data.corpora.alignments import read_alignment_table, read_item_file
from spidrkit.data.corpora.manifest import read_manifest
from spidrkit.data.synth import corpus as synth
from spidrkit.data.synth import long as synth_long
from spidrkit.data.synth.plan import plan_corpus
from spidrkit.data.synth.render import render_part
from spidrkit.data.synth.sentences import load_sentences

LONG = dict(voices=("awb", "slt", "kal16"), hours=0.03, seed=3, heldout_voice="kal16", workers=1, progress=False)
RANGE = (5.0, 12.0)  # wider than the longest sentence + a pause: lengths are guaranteed in range


@pytest.fixture(scope="module")
def long_corpus(flite, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("long") / "corpus"
    return synth.synthesize_corpus(out, utterance_seconds=RANGE, dev_fraction=0.3, **LONG)


def test_join_parts_shifts_by_exact_sample_offsets():
    """Hand-made parts: A (1000 samples) + pause (2600) + B (800). B starts at sample 3600 = 0.225 s."""
    a = (np.full(1000, 7, np.int16), [(0.0, 0.02, "SIL"), (0.02, 0.05, "AA"), (0.05, 0.0625, "SIL")],
         [(0.02, 0.05, "a")])
    b = (np.full(800, -3, np.int16), [(0.0, 0.01, "SIL"), (0.01, 0.04, "B"), (0.04, 0.05, "SIL")],
         [(0.01, 0.04, "b")])
    pause = np.full(2600, 1, np.int16)
    samples, phones, words, offsets = synth_long.join_parts([a, b], [pause])
    assert offsets == [0, 3600]
    assert np.array_equal(samples, np.concatenate([a[0], pause, b[0]]))
    # A's trailing SIL, the pause and B's leading SIL merge into one SIL from 0.05 to 0.225 + 0.01
    assert phones == [(0.0, 0.02, "SIL"), (0.02, 0.05, "AA"), (0.05, 0.235, "SIL"), (0.235, 0.265, "B"),
                      (0.265, 0.275, "SIL")]
    assert words == [(0.02, 0.05, "a"), (0.235, 0.265, "b")]


def test_seconds_range_parsing():
    assert synth_long.parse_seconds_range("8-20") == (8.0, 20.0)
    assert synth_long.parse_seconds_range((8, 20)) == (8.0, 20.0)
    assert synth_long.parse_seconds_range(None) is None
    for bad in ("20-8", "eight", "0-5", (3,)):
        with pytest.raises(ValueError, match="utterance seconds"):
            synth_long.parse_seconds_range(bad)


def _pause_tolerance(level_lsb: float, n: int) -> float:
    """6 sigma of the mean square of x = S + D + Q over n samples: S the scaled noise (mean square exactly
    level^2), D the N(0, 1) dither, Q the rounding error (uniform, variance 1/12). Var of the mean: the
    cross terms 2SD and 2SQ give 4 level^2 (1 + 1/12) / n, (D + Q)^2 gives about 2 (1 + 1/12)^2 / n."""
    return 6 * math.sqrt((4 * level_lsb**2 * (1 + 1 / 12) + 2 * (1 + 1 / 12) ** 2) / n)


def assert_same_samples(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Equal 16-bit samples, or a message that says how they differ (how many, where, by how much)."""
    assert len(got) == len(want), f"{what}: {len(got)} samples, expected {len(want)}"
    diff = np.nonzero(got != want)[0]
    assert not len(diff), (f"{what}: {len(diff)} of {len(want)} samples differ, the first at {diff[0]}, by up to "
                           f"{int(np.abs(got.astype(np.int32) - want.astype(np.int32)).max())}")


@pytest.mark.needs_flite
def test_joined_utterances_are_their_sentences_shifted_with_noise_pauses(long_corpus):
    plans = {p.utt: p for p in plan_corpus(load_sentences(), LONG["voices"], LONG["hours"], LONG["seed"],
                                            LONG["heldout_voice"], 0.3)}
    records = [json.loads(p.read_text()) for p in sorted((long_corpus / "records").glob("*_*.json"))]
    assert {r["split"] for r in records} == {"train", "dev", "heldout"}
    pauses_checked = 0
    for r in records:
        x, sr = sf.read(long_corpus / "wav" / r["split"] / f"{r['utt']}.wav", dtype="int16")
        assert sr == 16000 and len(x) == r["num_samples"]
        assert RANGE[0] <= len(x) / sr <= RANGE[1]
        parts = [render_part(plans[u], synth.DEFAULT_NOISE) for u in r["parts"]]
        assert {plans[u].voice for u in r["parts"]} == {r["speaker"]}
        pause_audio = [x[r["offsets"][i] + len(p[0]) : r["offsets"][i + 1]] for i, p in enumerate(parts[:-1])]
        expected = synth_long.join_parts(parts, pause_audio)
        assert_same_samples(expected[0], x, f"{r['utt']} ({r['speaker']}, parts {r['parts']})")
        assert expected[3] == r["offsets"]
        assert [tuple(iv) for iv in r["phones"]] == expected[1]
        assert [tuple(iv) for iv in r["words"]] == expected[2]
        assert all(o % 16 == 0 for o in r["offsets"])
        for i, pause in enumerate(pause_audio):
            assert 0.15 <= len(pause) / sr <= 0.6
            assert np.count_nonzero(pause) > 0.3 * len(pause)  # never digital silence
            level = r["noise_rms"][i] * 32767  # the background level of the sentence before the pause
            mean_square = float(np.mean(pause.astype(np.float64) ** 2))
            assert abs(mean_square - (level**2 + 1 + 1 / 12)) <= _pause_tolerance(level, len(pause))
            pauses_checked += 1
    assert pauses_checked >= 5


@pytest.mark.needs_flite
def test_long_corpus_files_splits_and_speakers(long_corpus):
    texts = {}
    for split in ("train", "dev", "heldout"):
        entries = {e.fileid: e for e in read_manifest(long_corpus / f"{split}.csv")}
        phones, speakers = read_alignment_table(long_corpus / f"{split}_phones.txt")
        assert set(phones) == set(entries)
        for utt, iv in phones.items():
            assert speakers[utt] == entries[utt].speaker == utt.split("_")[0]
            assert utt.split("_")[1][0] == split[0]
            assert iv[0][0] == 0.0 and all(iv[k][1] == iv[k + 1][0] for k in range(len(iv) - 1))
            assert abs(iv[-1][1] - entries[utt].num_samples / 16000) <= 1e-4
            assert not any(a[2] == b[2] == "SIL" for a, b in itertools.pairwise(iv))  # pauses merged
        items = read_item_file(long_corpus / f"{split}.item")
        assert items and all(it.phone != "SIL" for it in items)
        records = [json.loads((long_corpus / "records" / f"{u}.json").read_text()) for u in entries]
        texts[split] = {s for r in records for s in r["sentence_ids"]}
    assert not texts["train"] & texts["dev"] and not texts["heldout"] & (texts["train"] | texts["dev"])
    sidecar = json.loads((long_corpus / "spidrkit.json").read_text())
    assert sidecar["splits"]["heldout"]["speakers"] == ["kal16"]
    assert sidecar["settings"]["utterance_seconds"] == list(RANGE)


@pytest.mark.needs_flite
def test_long_build_resumes_and_grows_as_a_prefix(long_corpus, tmp_path):
    """A plan for fewer hours gives the first utterances of a plan for more, byte for byte."""
    small = synth.synthesize_corpus(tmp_path / "small", utterance_seconds=RANGE, dev_fraction=0.3,
                                    **{**LONG, "hours": 0.015})
    wavs = list((small / "wav").rglob("*.wav"))
    assert 2 <= len(wavs) < len(list((long_corpus / "wav").rglob("*.wav")))
    for wav in wavs:
        other = long_corpus / wav.relative_to(small)
        assert_same_samples(sf.read(wav, dtype="int16")[0], sf.read(other, dtype="int16")[0], wav.name)
        assert wav.read_bytes() == other.read_bytes()
    with pytest.raises(ValueError, match="other settings"):
        synth.synthesize_corpus(small, dev_fraction=0.3, **{**LONG, "hours": 0.015})


def _corpus_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file() and q.name != "spidrkit.json"):
        h.update(f"{p.relative_to(root).as_posix()}\n".encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


@pytest.mark.needs_flite
def test_default_corpus_is_byte_identical_to_the_single_sentence_builder(tmp_path):
    """Digest of every file (wavs, records, manifests, alignments, items, frames) of this corpus as built
    before long utterances existed (commit 2732826)."""
    kwargs = dict(voices=("awb", "slt", "kal16"), hours=0.01, seed=3, heldout_voice="kal16", workers=1,
                  progress=False)
    off = synth.synthesize_corpus(tmp_path / "off", **kwargs)
    assert _corpus_digest(off) == "3b24c98f1b7a993ced2b551fe6ba3c15e87eaac487b27c8a143f848baa452359"
    explicit = synth.synthesize_corpus(tmp_path / "none", utterance_seconds=None, **kwargs)
    assert _corpus_digest(explicit) == _corpus_digest(off)


@pytest.mark.needs_flite
def test_interrupted_long_build_resumes_to_the_same_bytes(long_corpus, tmp_path, monkeypatch):
    calls, interrupt = [], [True]
    real = synth_long.render_part

    def flaky(plan, noise=synth.DEFAULT_NOISE):
        calls.append(plan.utt)
        if interrupt[0] and len(calls) == 12:
            raise KeyboardInterrupt
        return real(plan, noise)

    monkeypatch.setattr(synth_long, "render_part", flaky)
    with pytest.raises(KeyboardInterrupt):
        synth.synthesize_corpus(tmp_path / "c", utterance_seconds=RANGE, dev_fraction=0.3, **LONG)
    finished = {p.stem for p in (tmp_path / "c" / "records").glob("*_*.json")}
    assert finished and not (tmp_path / "c" / "train.csv").exists()
    calls.clear()
    interrupt[0] = False
    resumed = synth.synthesize_corpus(tmp_path / "c", utterance_seconds=RANGE, dev_fraction=0.3, **LONG)
    done_parts = {u for f in finished for u in json.loads((resumed / "records" / f"{f}.json").read_text())["parts"]}
    assert not done_parts & set(calls)  # the finished utterances' sentences were not rendered again
    assert _corpus_digest(resumed) == _corpus_digest(long_corpus)


@pytest.mark.needs_flite
def test_cli_option(tmp_path, capsys):
    from spidrkit.cli import main as cli_main

    out = tmp_path / "c"
    base = ["data", "synth", str(out), "--voices", "slt", "--hours", "0.006", "--workers", "1", "--quiet"]
    assert cli_main([*base, "--utterance-seconds", "9-4"]) == 2
    assert "utterance seconds must be a range 0 < LOW <= HIGH" in capsys.readouterr().err
    assert cli_main([*base, "--utterance-seconds", "4-9"]) == 0
    sidecar = json.loads((out / "spidrkit.json").read_text())
    assert sidecar["settings"]["utterance_seconds"] == [4.0, 9.0]
    lengths = [e.num_samples / 16000 for e in read_manifest(out / "train.csv")]
    assert lengths and all(4.0 <= s <= 9.0 for s in lengths)
