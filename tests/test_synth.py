"""The flite corpus builder: exact alignments, splits, determinism, resume, derived evaluation files."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spidrkit.data.corpora.alignments import (
    frame_labels,
    read_alignment_table,
    read_frame_labels,
    read_item_file,
    triphone_items,
)
from spidrkit.data.corpora.manifest import read_manifest
from spidrkit.data.synth import corpus as synth
from spidrkit.data.synth import plan as synth_plan
from spidrkit.data.synth import render as synth_render
from spidrkit.data.synth.flite import PHONES, Flite, FliteError
from spidrkit.data.synth.sentences import RESOURCE, generate_sentences, load_sentences, write_sentence_file

HELDOUT = "kal16"
VOICES = ("awb", "rms", "slt", "kal16")


@pytest.fixture(scope="module")
def corpus(flite, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    # ~40 s of speech in train + dev from 3 voices, built by 2 worker processes
    return synth.synthesize_corpus(out, voices=VOICES, hours=0.011, seed=3, heldout_voice=HELDOUT, workers=2,
                                   progress=False)


def _words_of(text: str) -> list[str]:
    return re.sub(r"[^\w\s]", " ", text.lower()).split()


# --- sentences (no flite needed) -----------------------------------------------------------------------


def test_shipped_sentences_are_the_generator_output(tmp_path):
    from importlib import resources

    shipped = resources.files("spidrkit").joinpath("resources", RESOURCE).read_bytes()
    assert write_sentence_file(tmp_path / "s.txt").read_bytes() == shipped
    assert len(shipped) < 1_000_000
    sentences = load_sentences()
    assert len(sentences) == len(set(sentences)) == 6000
    assert b"CC0" in shipped.split(b"\n", 3)[2]
    vocabulary = {w for s in sentences for w in _words_of(s)}
    assert len(vocabulary) > 1000
    assert all(4 <= len(_words_of(s)) <= 16 for s in sentences)
    assert generate_sentences(50, seed=1) == generate_sentences(50, seed=1) != generate_sentences(50, seed=2)


def test_plan_splits_by_sentence_and_grows_as_a_prefix():
    sentences = load_sentences()
    small = synth_plan.plan_corpus(sentences, VOICES, hours=0.2, seed=0, heldout_voice=HELDOUT, dev_fraction=0.1)
    big = synth_plan.plan_corpus(sentences, VOICES, hours=0.4, seed=0, heldout_voice=HELDOUT, dev_fraction=0.1)
    assert set(small) <= set(big)  # growing the corpus keeps every planned utterance as it was
    by_split = {s: [p for p in big if p.split == s] for s in ("train", "dev", "heldout")}
    train_ids = {p.sentence_id for p in by_split["train"]}
    dev_ids = {p.sentence_id for p in by_split["dev"]}
    held_ids = {p.sentence_id for p in by_split["heldout"]}
    assert not train_ids & dev_ids and not held_ids & (train_ids | dev_ids)  # no sentence in two splits
    assert {p.voice for p in by_split["heldout"]} == {HELDOUT}
    assert HELDOUT not in {p.voice for p in by_split["train"] + by_split["dev"]}
    counts = np.bincount([["awb", "rms", "slt"].index(p.voice) for p in by_split["train"]])
    assert counts.max() - counts.min() <= 1  # the seen voices take turns
    est = {s: sum(synth_plan.estimated_seconds(p.text, p.voice) for p in ps) for s, ps in by_split.items()}
    assert 0.4 * 3600 <= est["train"] + est["dev"] <= 0.4 * 3600 + 20
    assert est["dev"] / (est["train"] + est["dev"]) == pytest.approx(0.1, abs=0.01)
    longest = max(synth_plan.estimated_seconds(p.text, HELDOUT) for p in by_split["heldout"])
    assert est["dev"] <= est["heldout"] < est["dev"] + longest  # the held-out voice reads as much as dev
    with pytest.raises(ValueError, match="held-out voice"):
        synth_plan.plan_corpus(sentences, ("awb", "slt"), hours=0.1, heldout_voice="rms")


# --- flite renderings ------------------------------------------------------------------------------------


@pytest.mark.needs_flite
def test_same_sentence_two_voices_same_phones_and_words():
    text = "The quiet boy will measure the treasure, and Maria read a book."
    plans = [synth_plan.UtterancePlan(f"{v}_x", "train", v, 0, text, 11) for v in VOICES]
    rendered = [synth_render.render_utterance(p) for p in plans]
    phone_seqs = [[label for _, _, label in phones] for _, phones, _, _ in rendered]
    assert all(seq == phone_seqs[0] for seq in phone_seqs)
    assert "ZH" in phone_seqs[0] and phone_seqs[0][0] == phone_seqs[0][-1] == "SIL"
    for _, _, words, _ in rendered:
        assert [w for _, _, w in words] == _words_of(text)  # 'read' keeps its spelling (flite says 'red')


@pytest.mark.needs_flite
def test_phones_without_rendering_are_those_of_the_rendering():
    from spidrkit.data.slm.words import metatheses, word_pool

    phrases = ["The apple and the dog.", "She read it, then 123 apples.", "Dr. Smith's cat's hats",
               "The quiet boy will measure the treasure."]
    words = word_pool()[::3]  # 218 words and as many non-words (metatheses: letter-to-sound rules)
    texts = {"kal16": [*phrases, *words, *(metatheses(w)[0] for w in words if metatheses(w))]}
    texts |= {v: [*phrases, *words[:6], *(metatheses(w)[-1] for w in words[:6])] for v in ("awb", "rms", "slt", "kal")}
    f = Flite.instance()
    for voice, voice_texts in texts.items():
        for text in voice_texts:
            r = f.synthesize(text, voice)
            assert f.phones(text, voice) == ([p for p, _ in r.segments], r.words), (voice, text)
    assert len(texts["kal16"]) > 400
    # the post-lexical rules ran: 'the' is 'dh iy' before a vowel, 'dh ax' before a consonant
    assert " ".join(f.phones("the apple the dog", "kal16")[0]) == "pau dh iy ae p ax l dh ax d ao g pau"
    assert f.phones("", "kal16") == (["pau"], [])  # no words: no error (synthesize finds no audio)


@pytest.mark.needs_flite
def test_renderings_differ_with_the_seed_and_repeat_with_it():
    plan = synth_plan.UtterancePlan("slt_x", "train", "slt", 0, "Seven brown dogs ran across the old bridge.", 1)
    a, phones_a, _, pros_a = synth_render.render_utterance(plan)
    b, phones_b, _, pros_b = synth_render.render_utterance(replace(plan, seed=2))
    a2, phones_a2, _, _ = synth_render.render_utterance(plan)
    assert np.array_equal(a, a2) and phones_a == phones_a2
    assert abs(len(a) - len(b)) > 0.02 * 16000  # different speaking rate and speed factor
    assert pros_a.duration_stretch != pros_b.duration_stretch and pros_a.f0_shift != pros_b.f0_shift
    durations_a = np.diff([on for on, _, _ in phones_a])
    durations_b = np.diff([on for on, _, _ in phones_b])
    assert not np.allclose(durations_a, durations_b, atol=1e-3)
    # the expected overall length follows the drawn prosody: flite's length * stretch / speed
    base = Flite.instance().synthesize(plan.text, "slt", 1.0, 1.0, seed=1)
    base_seconds = base.segments[-1][1]
    for x, p in ((a, pros_a), (b, pros_b)):
        assert len(x) / 16000 == pytest.approx(base_seconds * p.duration_stretch / p.speed, rel=0.06)
    assert np.count_nonzero(a == 0) < 0.01 * len(a)  # dithered: no digital silence


@pytest.mark.needs_flite
def test_unknown_voice_is_a_clear_error():
    with pytest.raises(FliteError, match="unknown flite voice"):
        Flite.instance().load_voice("nosuchvoice")


def test_missing_flite_says_how_to_install(monkeypatch, capsys, tmp_path):
    from spidrkit.cli import main
    from spidrkit.data.synth import flite

    def fail(stem):
        raise flite.FliteError(f"cannot load lib{stem} (not found)")

    monkeypatch.setattr(flite.Flite, "_instance", None)
    monkeypatch.setattr(flite, "_load", fail)
    monkeypatch.setattr(flite.shutil, "which", lambda name: None)
    assert main(["data", "synth", str(tmp_path / "c"), "--hours", "0.001", "--quiet"]) == 2
    assert "sudo apt-get install flite" in capsys.readouterr().err


# --- the corpus on disk ----------------------------------------------------------------------------------


@pytest.mark.needs_flite
def test_corpus_alignments_are_exact_and_complete(corpus):
    for split in ("train", "dev", "heldout"):
        entries = {e.fileid: e for e in read_manifest(corpus / f"{split}.csv")}
        phones, speakers = read_alignment_table(corpus / f"{split}_phones.txt")
        words, _ = read_alignment_table(corpus / f"{split}_words.txt")
        texts = dict(line.split(" ", 1) for line in (corpus / f"{split}_text.txt").read_text().splitlines())
        assert set(phones) == set(entries) == set(words) == set(texts)
        for utt, iv in phones.items():
            e = entries[utt]
            info = sf.info(e.path)
            assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", e.num_samples)
            assert speakers[utt] == e.speaker == utt.split("_")[0]
            assert iv[0][0] == 0.0
            assert all(iv[k][1] == iv[k + 1][0] for k in range(len(iv) - 1))  # contiguous
            assert all(off > on for on, off, _ in iv)
            assert abs(iv[-1][1] - e.num_samples / 16000) <= 0.01
            assert {label for _, _, label in iv} <= set(PHONES)
            assert iv[0][2] == iv[-1][2] == "SIL"
            assert [w for _, _, w in words[utt]] == _words_of(texts[utt])
            bounds = {round(x, 4) for on, off, _ in iv for x in (on, off)}
            assert all(on in bounds and off in bounds for on, off, _ in words[utt])
    assert (corpus / "phones.txt").read_text().split() == list(PHONES)
    assert len(PHONES) == 40  # 39 ARPAbet phones + SIL


@pytest.mark.needs_flite
def test_silences_are_quiet_and_speech_is_not(corpus):
    """The alignment sits on the audio: pauses are >= 20 dB below the speech of the same file."""
    phones, _ = read_alignment_table(corpus / "train_phones.txt")
    for utt, iv in phones.items():
        x, sr = sf.read(corpus / "wav" / "train" / f"{utt}.wav")
        assert np.count_nonzero(x == 0) < 0.01 * len(x)  # dithered: no digital silence
        sil = np.concatenate([x[int((a + 0.02) * sr) : int((b - 0.02) * sr)] for a, b, p in iv if p == "SIL"])
        speech = np.concatenate([x[int(a * sr) : int(b * sr)] for a, b, p in iv if p != "SIL"])
        assert 10 * np.log10(np.mean(speech**2) / np.mean(sil**2)) > 20


@pytest.mark.needs_flite
def test_splits_speakers_and_sidecar(corpus):
    sidecar = json.loads((corpus / "spidrkit.json").read_text())
    splits = sidecar["splits"]
    assert splits["heldout"]["speakers"] == [HELDOUT]
    assert splits["train"]["speakers"] == ["awb", "rms", "slt"]
    sentence_ids = {}
    for split in ("train", "dev", "heldout"):
        texts = (corpus / f"{split}_text.txt").read_text().splitlines()
        sentence_ids[split] = {line.split(" ", 1)[1] for line in texts}
        assert splits[split]["utterances"] == len(texts)
        seconds = sum(e.num_samples for e in read_manifest(corpus / f"{split}.csv")) / 16000
        assert splits[split]["hours"] == pytest.approx(seconds / 3600, abs=1e-4)
    assert not sentence_ids["train"] & sentence_ids["dev"]
    assert not sentence_ids["heldout"] & (sentence_ids["train"] | sentence_ids["dev"])
    assert 0.011 * 3600 * 0.7 < (splits["train"]["hours"] + splits["dev"]["hours"]) * 3600 < 0.011 * 3600 * 1.5


@pytest.mark.needs_flite
def test_item_file_parses_with_fastabx_and_items_lie_inside_files(corpus):
    import fastabx
    import torch
    from fastabx.dataset import read_labels

    for split in ("dev", "heldout"):
        item = corpus / f"{split}.item"
        labels = read_labels(item, "#file", "onset", "offset")
        assert labels.columns == ["#file", "onset", "offset", "#phone", "prev-phone", "next-phone", "speaker"]
        phones, speakers = read_alignment_table(corpus / f"{split}_phones.txt")
        items = read_item_file(item)
        assert len(items) == len(labels) == len(triphone_items(phones, speakers))
        expected = sum(1 for iv in phones.values() for on, off, p in iv[1:-1] if p != "SIL" and off - on >= 0.03)
        assert len(items) == expected > 20
        lengths = {e.fileid: e.num_samples / 16000 for e in read_manifest(corpus / f"{split}.csv")}
        for it in items:
            assert 0 < it.onset < it.offset <= lengths[it.file]
            assert it.phone != "SIL" and it.offset - it.onset >= 0.03
            k = [round(on, 4) for on, _, _ in phones[it.file]].index(it.onset)
            assert (phones[it.file][k - 1][2], phones[it.file][k + 1][2]) == (it.prev, it.next)

        def features(path):  # 100 Hz features as long as the file: fastabx refuses items outside them
            return torch.zeros(sf.info(str(path)).frames // 160, 4)

        dataset = fastabx.Dataset.from_item(item, corpus / "wav" / split, 100, feature_maker=features,
                                            extension=".wav", progress=False)
        assert len(dataset.labels) == len(items)


@pytest.mark.needs_flite
def test_frame_labels_file(corpus):
    frames = read_frame_labels(corpus / "dev_frames.txt")
    phones, _ = read_alignment_table(corpus / "dev_phones.txt")
    entries = {e.fileid: e for e in read_manifest(corpus / "dev.csv")}
    assert set(frames) == set(phones)
    for utt, labels in frames.items():
        assert len(labels) == entries[utt].num_samples // 160
        for i in range(0, len(labels), 7):
            t = (i + 0.5) / 100
            assert labels[i] == next(p for on, off, p in phones[utt] if on <= t < off)


def test_frame_labels_take_the_phone_at_each_frame_centre():
    iv = [(0.0, 0.025, "A"), (0.025, 0.05, "B"), (0.05, 0.061, "C")]
    assert frame_labels(iv, 7) == ["A", "A", "B", "B", "B", "C", "SIL"]
    assert frame_labels(iv) == ["A", "A", "B", "B", "B", "C"]
    assert frame_labels(iv, 3, rate=50) == ["A", "B", "C"]


@pytest.mark.needs_flite
def test_worker_processes_render_what_one_process_renders(corpus):
    """Byte-identical audio whatever the process: the C library's rand() is re-seeded per utterance."""
    record = json.loads(next(iter(sorted((corpus / "records").glob("rms_*.json")))).read_text())
    plan = synth_plan.UtterancePlan(**{k: record[k] for k in ("utt", "split", "voice", "sentence_id", "text", "seed")})
    samples, phones, _, _ = synth_render.render_utterance(plan)
    on_disk, _ = sf.read(corpus / "wav" / plan.split / f"{plan.utt}.wav", dtype="int16")
    assert np.array_equal(samples, on_disk)
    assert [list(p) for p in phones] == record["phones"]


@pytest.mark.needs_flite
def test_resume_after_interruption_gives_the_same_corpus(tmp_path, monkeypatch):
    kwargs = dict(voices=("slt", "kal16"), hours=0.004, seed=5, workers=1, progress=False)
    whole = synth.synthesize_corpus(tmp_path / "whole", **kwargs)

    calls = []
    real = synth.render_utterance

    def flaky(plan, noise=synth.DEFAULT_NOISE):
        calls.append(plan.utt)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(plan, noise)

    monkeypatch.setattr(synth, "render_utterance", flaky)
    with pytest.raises(KeyboardInterrupt):
        synth.synthesize_corpus(tmp_path / "resumed", **kwargs)
    assert len(list((tmp_path / "resumed" / "records").glob("*_*.json"))) == 3
    assert not (tmp_path / "resumed" / "train.csv").exists()
    calls.clear()
    resumed = synth.synthesize_corpus(tmp_path / "resumed", **kwargs)
    n_utts = len(list((whole / "records").glob("*_*.json")))
    assert len(calls) == n_utts - 3  # the finished utterances were not redone

    def files(root):
        paths = [p for p in root.rglob("*") if p.is_file() and p.name != "spidrkit.json"]
        return {p.relative_to(root): p.read_bytes() for p in paths}

    a, b = files(whole), files(resumed)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    assert not [p for p in resumed.rglob(".*tmp*")]  # no temporary file left behind

    calls.clear()
    stale = resumed / "wav" / "train" / ".slt_00001.wav.tmp999"  # left by a killed run
    stale.write_bytes(b"half a file")
    synth.synthesize_corpus(resumed, **kwargs)  # finished: nothing is redone
    assert calls == [] and not stale.exists()

    import json
    import socket

    from spidrkit.errors import LockHeldError

    lock = resumed / "records" / ".lock"  # another build, alive on this host, holds the folder
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid(), "started": "now"}))
    with pytest.raises(LockHeldError, match=f"the corpus {resumed} is in use by pid {os.getppid()}"):
        synth.synthesize_corpus(resumed, **kwargs)
    assert lock.exists()  # a live holder's lock is left alone
    lock.unlink()
    with pytest.raises(ValueError, match="other settings"):
        synth.synthesize_corpus(resumed, **{**kwargs, "seed": 6})
