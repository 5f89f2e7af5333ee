"""Units that hold across voices: the student's voice perturbation (VTLP, Praat), the per-utterance band
normalisation of the log mel front end, and the many-voice corpus (engines, plan, held-out voices)."""

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from spidrkit.config import ConfigError, load_config
from spidrkit.data.batches.perturb import EQ_CENTRES, PITCH_RATIO, VoicePerturbHook, _ratio, eq_gain_db, equalize
from spidrkit.data.synth import engines
from spidrkit.data.synth.plan import plan_corpus
from spidrkit.models.spectral import mel_filterbank, normalise_bands, vtlp_warp
from spidrkit.models.spidr import SpidR
from spidrkit.training.masks import train_hooks

NYQ = 8000.0


# --- VTLP ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("alpha", "f", "want"), [
    (1.0, 3000.0, 3000.0),
    (1.1, 1000.0, 1100.0),                       # below the boundary 4800 / 1.1: scaled
    (1.1, 8000.0, 8000.0),                       # Nyquist stays
    (0.9, 4800.0, 4320.0),                       # the boundary for alpha < 1 is 4800 itself
    (0.9, 6400.0, 8000 - (8000 - 4320) / (8000 - 4800) * 1600),  # on the line to (8000, 8000): 6160
    (1.1, 4800 / 1.1, 4800.0),                   # continuous at the boundary
])
def test_vtlp_warp_against_hand_values(alpha, f, want):
    got = vtlp_warp(torch.tensor([f], dtype=torch.float64), torch.tensor([[alpha]], dtype=torch.float64), NYQ)
    assert float(got[0, 0]) == pytest.approx(want, abs=1e-9)


def test_warped_filterbank_of_factor_one_is_the_filterbank_and_others_move_it():
    plain = mel_filterbank(40)
    fb = mel_filterbank(40, warp=torch.tensor([1.0, 1.15, 0.87]))
    assert fb.shape == (3, *plain.shape)
    torch.testing.assert_close(fb[0], plain)
    centre = lambda b: (b * torch.arange(b.shape[-1])).sum(-1) / b.sum(-1)  # noqa: E731
    assert (centre(fb[1])[:10] > centre(plain)[:10]).all()  # alpha > 1 moves the low filters up
    assert (centre(fb[2])[:10] < centre(plain)[:10]).all()


# --- band normalisation -----------------------------------------------------------------------------------
def test_normalise_bands_against_hand_computation_and_padding():
    x = torch.tensor([[[1.0, 10.0], [3.0, 10.0], [5.0, 40.0]]])
    valid = torch.tensor([[True, True, False]])
    out = normalise_bands(x, valid, eps=1e-5)
    # band 0 over the 2 valid frames: mean 2, variance 1; band 1 is constant there: 0; the padding frame: 0
    assert out[0, :2, 0].tolist() == pytest.approx([-1 / math.sqrt(1 + 1e-5), 1 / math.sqrt(1 + 1e-5)])
    assert out[0, :2, 1].tolist() == [0.0, 0.0]
    assert out[0, 2].tolist() == [0.0, 0.0]
    full = normalise_bands(x)
    assert full[0, :, 0].tolist() == pytest.approx([-math.sqrt(1.5), 0.0, math.sqrt(1.5)], abs=1e-4)


def test_cmvn_front_end_padded_batch_equals_each_utterance_alone():
    model = SpidR(load_config("tiny", ["model.frontend=logmel_cmvn"]).model).eval()
    wav = torch.randn(2, 24000)
    lengths = torch.tensor([24000, 15000])
    batched = model.layer_outputs(wav, layers=[1, 6], lengths=lengths)
    for layer in (1, 6):
        alone = model.layer_outputs(wav[1:, :15000], layers=[layer])[layer][0]
        torch.testing.assert_close(batched[layer][1, : alone.shape[0]], alone, atol=1e-5, rtol=1e-5)


# --- the teacher reads the clean input, the student the perturbed one ----------------------------------
def _model_and_batch(frontend="logmel"):
    cfg = load_config("tiny", [f"model.frontend={frontend}", "model.dropout=0", "model.attention_dropout=0"])
    model = SpidR(cfg.model).train()
    wav = torch.randn(3, 16000)
    mask = torch.zeros(3, model.num_frames(16000), dtype=torch.bool)
    mask[:, 5:25] = True
    return model, wav, mask


@pytest.mark.parametrize("frontend", ["logmel", "logmel_cmvn"])
def test_vtlp_changes_the_student_only(frontend):
    model, wav, mask = _model_and_batch(frontend)
    clean = model(wav, mask)
    same = model(wav, mask, warp=torch.ones(3))
    warped = model(wav, mask, warp=torch.tensor([0.87, 1.0, 1.16]))
    for k in clean:
        torch.testing.assert_close(same[k], clean[k])  # factor 1: the unwarped model, frame for frame
    for k in ("sums", "counts"):  # the teacher's targets and the codebook statistics: from the clean input
        torch.testing.assert_close(warped[k], clean[k])
    assert not torch.allclose(warped["ce_sum"], clean["ce_sum"])


def test_a_perturbed_waveform_changes_the_student_only_and_stays_aligned():
    model, wav, mask = _model_and_batch("cnn")
    clean = model(wav, mask)
    same = model(wav, mask, student_wav=wav.clone())
    other = model(wav, mask, student_wav=wav.flip(-1))
    for k in clean:
        torch.testing.assert_close(same[k], clean[k])
    for k in ("sums", "counts"):
        torch.testing.assert_close(other[k], clean[k])
    assert not torch.allclose(other["ce_sum"], clean["ce_sum"])
    with pytest.raises(ValueError, match="must match"):
        model(wav, mask, student_wav=wav[:, :-10])


def test_vtlp_is_refused_with_the_convolutional_front_end():
    with pytest.raises(ConfigError, match="data.voice_perturb"):
        load_config("tiny", ["data.voice_perturb=vtlp"])
    with pytest.raises(ConfigError, match="data.voice_warp"):
        load_config("tiny", ["model.frontend=logmel", "data.voice_perturb=vtlp", "data.voice_warp=[1.2, 0.9]"])


def test_vtlp_hook_draws_per_batch_position_within_the_range():
    cfg = load_config("tiny", ["model.frontend=logmel", "data.voice_perturb=vtlp"])
    hook = train_hooks(cfg)
    batch = lambda pos: {"wav": torch.zeros(64, 8000), "index": (0, pos), "fileids": ["x"] * 64}  # noqa: E731
    a, b, again = hook(batch(1))["warp"], hook(batch(2))["warp"], hook(batch(1))["warp"]
    assert torch.equal(a, again) and not torch.equal(a, b)
    assert float(a.min()) >= 0.85 and float(a.max()) <= 1.18
    assert "mask" in hook(batch(1))  # the masks are still drawn


def _pitch(x: np.ndarray) -> float:
    import parselmouth
    from parselmouth.praat import call

    return call(parselmouth.Sound(x, 16000).to_pitch(), "Get quantile", 0.0, 0.0, 0.5, "Hertz")


def test_praat_hook_moves_the_pitch_by_its_drawn_ratio_and_keeps_shape_and_level():
    pytest.importorskip("parselmouth")
    t = np.arange(24000) / 16000
    # a pulse train at 120 Hz through a resonance: voiced speech enough for Praat's pitch tracker
    pulses = (np.sin(2 * np.pi * 120 * t) > 0.99).astype(float)
    x = np.convolve(pulses, np.exp(-np.arange(200) / 20) * np.sin(2 * np.pi * 700 * np.arange(200) / 16000))[:24000]
    x = (x - x.mean()) / x.std()
    wav = torch.from_numpy(np.stack([x, x])).float()
    cfg = load_config("tiny", ["data.voice_perturb=praat"])
    hook = VoicePerturbHook.from_config(cfg)
    out = hook({"wav": wav, "index": (0, 7), "fileids": ["a", "b"]})["student_wav"]
    assert out.shape == wav.shape
    assert out.mean(1).abs().max() < 1e-4 and (out.std(1) - 1).abs().max() < 1e-3
    rng = hook.rng({"index": (0, 7)})
    _ratio(rng, (1.0, 1.4))  # the formant ratio is drawn first
    ratio = _ratio(rng, PITCH_RATIO)
    assert _pitch(out[0].double().numpy()) / _pitch(x) == pytest.approx(ratio, rel=0.05)


# --- the random equaliser -----------------------------------------------------------------------------------
def test_equaliser_gain_curve_against_hand_values():
    gains = np.array([-6.0, 0, 3, 0, 0, 0, 0, 0, 12.0, 4.0])
    f = np.array([10.0, EQ_CENTRES[0], EQ_CENTRES[2], np.sqrt(EQ_CENTRES[2] * EQ_CENTRES[3]), EQ_CENTRES[8],
                  7900.0])
    # below the first band and above the last: flat; between two centres, halfway in log frequency: the mean
    np.testing.assert_allclose(eq_gain_db(f, gains), [-6.0, -6.0, 3.0, 1.5, 12.0, 4.0])


def test_equaliser_scales_each_band_by_its_gain():
    n = 16000  # one second: every whole-hertz sine is periodic in the window, so its rfft bin is exact
    t = np.arange(n) / 16000
    f1, f2 = round(EQ_CENTRES[3]), round(EQ_CENTRES[7])
    x = torch.from_numpy(np.sin(2 * np.pi * f1 * t) + np.sin(2 * np.pi * f2 * t))
    gains = np.zeros(10)
    gains[3], gains[7] = 6.0, -12.0
    spec = np.abs(np.fft.rfft(equalize(x, gains).numpy()))
    want = 10 ** (eq_gain_db(np.array([f1, f2], dtype=float), gains) / 20) * n / 2
    np.testing.assert_allclose(spec[[f1, f2]], want, rtol=1e-9)


def test_equaliser_hook_changes_the_student_only_keeps_level_and_redraws_alike():
    cfg = load_config("tiny", ["model.frontend=logmel", "data.voice_eq=12"])
    hook = train_hooks(cfg)
    wav = torch.randn(2, 8000)
    batch = lambda pos: {"wav": wav.clone(), "index": (0, pos), "fileids": ["a", "b"]}  # noqa: E731
    out, again, other = hook(batch(3)), hook(batch(3)), hook(batch(4))
    assert torch.equal(out["wav"], wav)  # the teacher reads the clean utterance
    assert out["student_wav"].shape == wav.shape and "warp" not in out
    assert torch.equal(out["student_wav"], again["student_wav"]) and not torch.equal(out["student_wav"],
                                                                                       other["student_wav"])
    torch.testing.assert_close(out["student_wav"].mean(1), wav.mean(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["student_wav"].std(1, unbiased=False), wav.std(1, unbiased=False))
    both = train_hooks(load_config("tiny", ["model.frontend=logmel", "data.voice_perturb=vtlp", "data.voice_eq=6"]))
    assert {"warp", "student_wav", "mask"} <= set(both(batch(3)))
    assert VoicePerturbHook.from_config(load_config("tiny")) is None
    with pytest.raises(ConfigError, match="data.voice_eq"):
        load_config("tiny", ["data.voice_eq=-1"])


def test_vtlp_reads_the_equalised_waveform_for_the_student_only():
    model, wav, mask = _model_and_batch("logmel")
    clean = model(wav, mask)
    warp = torch.tensor([0.87, 1.0, 1.16])
    warped = model(wav, mask, warp=warp)
    same = model(wav, mask, warp=warp, student_wav=wav.clone())
    both = model(wav, mask, warp=warp, student_wav=wav.flip(-1))
    for k in clean:
        torch.testing.assert_close(same[k], warped[k])  # the clean waveform as the student's: VTLP alone
    for k in ("sums", "counts"):
        torch.testing.assert_close(both[k], clean[k])
    assert not torch.allclose(both["ce_sum"], warped["ce_sum"])


# --- the corpus's voices ------------------------------------------------------------------------------------
SENTENCES = [f"the cat number {w} sat on the mat" for w in
             ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")] * 3


def test_plan_voices_without_alignments_read_train_only_and_several_voices_are_held_out():
    voices = ("awb", "slt", "joe", "espeak-us-m1", "kal16", "ked")
    plans = plan_corpus(SENTENCES, voices, hours=0.05, seed=1, heldout_voice="kal16,ked", dev_fraction=0.2)
    by_split = {s: {p.voice for p in plans if p.split == s} for s in ("train", "dev", "heldout")}
    assert by_split == {"train": {"awb", "slt", "joe", "espeak-us-m1"}, "dev": {"awb", "slt"},
                        "heldout": {"kal16", "ked"}}
    sentences = {s: {p.sentence_id for p in plans if p.split == s} for s in by_split}
    assert not sentences["heldout"] & (sentences["train"] | sentences["dev"])
    with pytest.raises(ValueError, match="no alignments"):
        plan_corpus(SENTENCES, voices, hours=0.05, heldout_voice="joe")
    with pytest.raises(ValueError, match="dev split needs"):
        plan_corpus(SENTENCES, ("joe", "kal16"), hours=0.05, heldout_voice="kal16")


def test_duplicates_are_not_offered_and_mbrola_is_never_used():
    assert not set(engines.DUPLICATES.values()) - set(engines.VOICES)  # each duplicate names a kept voice
    assert all("mb-" not in v.ident and "mbrola" not in v.ident for v in engines.VOICES.values())


needs_festival = pytest.mark.skipif(engines.missing("festival") is not None, reason="festival is not installed")


@needs_festival
def test_festival_gives_contiguous_segments_and_words():
    r = engines.synthesize("ked", "the cat sat on the mat", 1.1, 1.05)
    assert r.sample_rate == 16000 and len(r.samples) > 8000
    ends = [e for _, e in r.segments]
    assert ends == sorted(ends) and r.segments[0][0] == "pau"
    assert [w for w, _, _ in r.words] == ["the", "cat", "sat", "on", "the", "mat"]
    assert all(p in engines.PHONE_MAP for p, _ in r.segments)
    assert abs(ends[-1] - len(r.samples) / r.sample_rate) < 0.05


@pytest.mark.skipif(engines.missing("piper") is not None or not Path("/proc/self/task").is_dir(),
                    reason="piper is not installed, or no /proc to count threads")
def test_piper_leaves_no_thread_behind_to_draw_from_flites_generator():
    """onnxruntime's default session keeps a pool of worker threads whose idle loop calls the C library's
    rand(), which flite's voices draw from: flite renderings made after a piper voice in the same process
    differed between runs. The piper session runs on the caller's thread and leaves none."""
    def threads():
        return len(list(Path("/proc/self/task").iterdir()))

    before = threads()
    voice = engines._piper_voice.__wrapped__("en_US-joe-medium")  # not the cached one: a session made here
    options = voice.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert len(engines.synthesize("joe", "the cat sat on the mat", 1.0, 1.0).samples) > 8000
    assert threads() == before


@pytest.mark.needs_flite
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_a_corpus_with_training_only_voices_lists_their_audio_but_no_alignments(tmp_path):
    from spidrkit.data.corpora.manifest import read_manifest
    from spidrkit.data.synth.corpus import synthesize_corpus

    out = synthesize_corpus(tmp_path / "c", voices=("slt", "espeak-us-f2", "kal16"), hours=0.01, seed=4,
                            heldout_voice="kal16", workers=1, progress=False)
    train = {e.fileid: e.speaker for e in read_manifest(out / "train.csv")}
    aligned = {line.split()[0] for line in (out / "train_phones.txt").read_text().splitlines()}
    assert set(train.values()) == {"slt", "espeak-us-f2"}
    assert aligned == {u for u, s in train.items() if s == "slt"}
    dev = {e.speaker for e in read_manifest(out / "dev.csv")}
    assert dev == {"slt"}


# --- ABX by voice pair --------------------------------------------------------------------------------------
def test_abx_by_voice_pair_against_features_that_swap_phones_for_one_voice(tmp_path):
    from spidrkit.evaluation.metrics.abx import abx_both, pair_groups

    # three voices saying the phones A and B in the context x_y, 4 times each; voice s3 says A with B's features
    code = {"A": torch.tensor([1.0, 0.0, 0.0]), "B": torch.tensor([0.0, 1.0, 0.0])}
    lines, feats = ["#file onset offset #phone prev-phone next-phone speaker"], {}
    for speaker in ("s1", "s2", "s3"):
        for i in range(4):
            for phone in ("A", "B"):
                fileid = f"{speaker}_{phone}{i}"
                said = {"A": "B", "B": "A"}[phone] if speaker == "s3" else phone
                feats[fileid] = code[said].repeat(10, 1) + 0.01 * torch.randn(10, 3)
                lines.append(f"{fileid} 0.02 0.08 {phone} x y {speaker}")
    item = tmp_path / "t.item"
    item.write_text("\n".join(lines) + "\n")
    row = abx_both(feats, item, frame_rate=100, speakers=("across",), with_pairs=True)
    pairs = row["abx_across_pairs"]
    assert pairs == pytest.approx({"s1|s2": 0.0, "s1|s3": 100.0, "s2|s3": 100.0})
    assert row["abx_across"] == pytest.approx(200 / 3)  # the pooled score: each X speaker's cells alike
    assert pair_groups(pairs, seen=["s1", "s2"]) == pytest.approx({"training voices": 0.0,
                                                                   "with held-out s3": 100.0})


@pytest.mark.skipif(engines.missing("festival") is not None or not engines.festival_has("kal_diphone"),
                    reason="festival's kal_diphone is not installed (apt-get install festvox-kallpc16k)")
def test_the_profile_finds_the_duplicate_speaker_and_keeps_distinct_ones_apart():
    pytest.importorskip("parselmouth")
    kal16, kal_festival = engines.voice_profile("flite", "kal16"), engines.voice_profile("festival", "kal_diphone")
    ked, slt = engines.voice_profile("festival", "ked_diphone"), engines.voice_profile("flite", "slt")
    # one diphone database under two engines (other pitch and rate models): one speaker
    assert engines.profile_distance(kal16, kal_festival) < engines.SAME_SPEAKER_DISTANCE
    assert abs(math.log(kal16["f0"] / kal_festival["f0"])) > 0.1  # though their prosody differs
    for other in (ked, slt):  # another speaker, of the same engine or not
        assert engines.profile_distance(kal16, other) > engines.SAME_SPEAKER_DISTANCE
