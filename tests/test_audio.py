"""Audio decoding, down-mixing, resampling and standardisation: numbers, not just shapes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from spidrkit.data.corpora.audio import (
    AudioConversionWarning,
    AudioError,
    load_audio,
    resampled_length,
    reset_conversion_warnings,
    standardize,
    standardize_batch,
)


def _pcm16(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-20000, 20000, size=shape).astype(np.int16)


@pytest.fixture(autouse=True)
def _fresh_warnings():
    reset_conversion_warnings()
    yield
    reset_conversion_warnings()


def test_load_mono_16k_is_exact(tmp_path):
    data = _pcm16(np.random.default_rng(0), (3001,))
    sf.write(tmp_path / "a.wav", data, 16000, subtype="PCM_16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no conversion, so no warning
        wav = load_audio(tmp_path / "a.wav")
    assert wav.dtype == torch.float32 and wav.shape == (3001,)
    assert torch.equal(wav, torch.from_numpy(data.astype(np.float32) / 32768))


def test_stereo_downmix_is_the_exact_channel_mean_and_warns_once(tmp_path):
    rng = np.random.default_rng(1)
    data = [_pcm16(rng, (2000, 2)), _pcm16(rng, (1500, 2))]
    for i, d in enumerate(data):
        sf.write(tmp_path / f"s{i}.flac", d, 16000, subtype="PCM_16")
    with pytest.warns(AudioConversionWarning) as record:
        wavs = [load_audio(tmp_path / f"s{i}.flac") for i in range(2)]
    assert len([w for w in record if issubclass(w.category, AudioConversionWarning)]) == 1
    for d, wav in zip(data, wavs):
        f = d.astype(np.float32) / 32768
        expected = (f[:, 0] + f[:, 1]) / 2  # exact in float32 for 16-bit samples
        assert torch.equal(wav, torch.from_numpy(expected))


def test_resample_44k_keeps_length_rule_and_sine_frequency(tmp_path):
    sr, f0, n = 44100, 440.0, 44100 * 2 + 37
    t = np.arange(n) / sr
    sf.write(tmp_path / "sine.wav", 0.5 * np.sin(2 * np.pi * f0 * t), sr, subtype="FLOAT")
    sf.write(tmp_path / "sine2.wav", 0.5 * np.sin(2 * np.pi * f0 * t[:1000]), sr, subtype="FLOAT")
    with pytest.warns(AudioConversionWarning, match="44100 Hz to 16000 Hz") as record:
        wav = load_audio(tmp_path / "sine.wav")
        load_audio(tmp_path / "sine2.wav")
    assert len([w for w in record if issubclass(w.category, AudioConversionWarning)]) == 1
    assert wav.shape == (round(n * 16000 / sr),) == (32013,)
    # frequency: the spectral peak of a 1 s window (1 Hz bins) sits at 440 Hz
    seg = wav[8000:24000].numpy().astype(np.float64)
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    assert int(np.argmax(spectrum)) == 440
    # amplitude kept: RMS of a 0.5 sine is 0.5 / sqrt(2)
    assert float(seg.std()) == pytest.approx(0.5 / np.sqrt(2), rel=2e-3)


@pytest.mark.parametrize("orig", [8000, 22050, 32000, 44100, 48000])
def test_resampled_length_matches_soxr(orig):
    for n in (1, 3, 5, 101, 1001, 12345):
        expected = soxr.resample(np.zeros(n, np.float32), orig, 16000).shape[0]
        assert resampled_length(n, orig, 16000) == expected, (n, orig)
    assert resampled_length(777, 16000, 16000) == 777


def test_bad_files_raise_audio_error(tmp_path):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00not really a wave file" * 10)
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.int16), 16000, subtype="PCM_16")
    sf.write(tmp_path / "nan.wav", np.array([0.1, np.nan, 0.2], np.float32), 16000, subtype="FLOAT")
    for name, match in [
        ("corrupt.wav", "cannot decode"),
        ("empty.wav", "empty"),
        ("missing.wav", "cannot"),
        ("nan.wav", "NaN"),
    ]:
        with pytest.raises(AudioError, match=match):
            load_audio(tmp_path / name)


def test_standardize_formula():
    rng = np.random.default_rng(2)
    x = (3.0 * rng.standard_normal(20000) + 0.7).astype(np.float32)
    y = standardize(torch.from_numpy(x)).double().numpy()
    x64 = x.astype(np.float64)
    var = x64.var()
    np.testing.assert_allclose(y, (x64 - x64.mean()) / np.sqrt(var + 1e-5), rtol=1e-6, atol=1e-6)
    assert abs(y.mean()) < 1e-6
    assert y.var() == pytest.approx(var / (var + 1e-5), abs=1e-6)
    assert abs(y.var() - 1) < 1e-5
    # a silent utterance stays 0 instead of dividing by zero
    assert torch.equal(standardize(torch.zeros(100)), torch.zeros(100))


def test_standardize_batch_uses_valid_samples_and_keeps_padding_zero():
    rng = np.random.default_rng(3)
    wav = torch.from_numpy((5.0 * rng.standard_normal((3, 1000)) - 2.0).astype(np.float32))
    lengths = torch.tensor([1000, 400, 1])
    out = standardize_batch(wav, lengths)
    for b, n in enumerate(lengths.tolist()):
        assert torch.allclose(out[b, :n], standardize(wav[b, :n]), atol=1e-6)
        assert torch.count_nonzero(out[b, n:]) == 0
    valid = out[1, :400].double()
    assert abs(valid.mean().item()) < 1e-6 and abs(valid.var(correction=0).item() - 1) < 1e-5
    assert out[2, 0].item() == 0.0  # a single sample has variance 0: centred to 0
    full = standardize_batch(wav)
    assert torch.allclose(full[1], standardize(wav[1]), atol=1e-6)
    assert torch.allclose(standardize_batch(wav, torch.tensor([1000, 1000, 1000])), full, atol=1e-6)
