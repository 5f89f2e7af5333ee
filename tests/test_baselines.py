"""MFCC / log-mel baselines: frame count equal to the SpidR downsampler's, filterbank and DCT checks."""

from __future__ import annotations

import math

import pytest
import torch

from spidrkit.config import ModelConfig
from spidrkit.encoders.mfcc import (
    HOP,
    N_FFT,
    WINDOW,
    SignalEncoder,
    baseline_frames,
    dct_matrix,
    deltas,
    hop_length,
    log_mel,
    mfcc,
    mfcc_cmvn,
)
from spidrkit.evaluation.sweep.baselines import extract_baseline, random_baseline
from spidrkit.models.interface import SpeechEncoder
from spidrkit.models.layers import num_frames as downsampler_frames
from spidrkit.models.spectral import hz_to_mel, mel_filterbank


@pytest.mark.parametrize("length", [400, 719, 720, 16000, 16319, 16320, 23456])
def test_frame_count_matches_downsampler(length):
    cfg = ModelConfig()
    expected = (length - 400) // 320 + 1
    assert downsampler_frames(length, cfg.conv_kernels, cfg.conv_strides) == expected
    assert baseline_frames(length) == expected
    wav = torch.randn(length, generator=torch.Generator().manual_seed(length))
    assert mfcc(wav).shape == (expected, 39)
    assert log_mel(wav).shape == (expected, 80)
    assert random_baseline(wav, dim=8).shape == (expected, 8)
    assert baseline_frames(16000) == 49


def test_pure_tone_peaks_in_its_mel_band():
    sr, f0 = 16000, 1000.0
    wav = torch.sin(2 * math.pi * f0 * torch.arange(sr) / sr)
    spec = log_mel(wav)
    # band centres equally spaced in HTK mel between 0 and mel(8000): 82 edges, centres 1..80
    top = 2595 * math.log10(1 + 8000 / 700)
    centres_hz = [700 * (10 ** (top * (k + 1) / 81 / 2595) - 1) for k in range(80)]
    expected = min(range(80), key=lambda k: abs(centres_hz[k] - f0))
    assert hz_to_mel(1000.0).item() == pytest.approx(1000.0, abs=0.1)
    peaks = spec.argmax(dim=1)
    assert (peaks - expected).abs().max().item() <= 1
    assert centres_hz[int(peaks.mode().values)] == pytest.approx(f0, rel=0.05)
    # the tone's band is far above a band an octave and more away
    assert (spec[:, expected] - spec[:, expected - 20]).min() > 5.0


def test_filterbank_dct_and_deltas():
    fb = mel_filterbank(80)
    assert fb.shape == (80, 257)
    assert (fb.sum(dim=1) > 0).all()  # no empty band with a 512-point FFT
    assert fb.max().item() <= 1.0
    d = dct_matrix(40, 40)
    torch.testing.assert_close(d @ d.T, torch.eye(40), atol=1e-5, rtol=0)
    ramp = torch.arange(10.0)[:, None] * torch.tensor([[1.0, -2.0]])
    dr = deltas(ramp)
    torch.testing.assert_close(dr[2:-2], torch.tensor([[1.0, -2.0]]).expand(6, 2))
    # replicated edges: at t=0, (1*(x1 - x0) + 2*(x2 - x0)) / 10 = 0.5 per unit slope
    torch.testing.assert_close(dr[0], torch.tensor([0.5, -1.0]))


def test_mfcc_of_silence_and_errors():
    feats = mfcc(torch.zeros(1600))
    assert torch.isfinite(feats).all()
    torch.testing.assert_close(feats[:, 13:], torch.zeros_like(feats[:, 13:]))  # constant -> null deltas
    with pytest.raises(ValueError, match="shorter"):
        mfcc(torch.zeros(399))
    with pytest.raises(ValueError, match="16000"):
        log_mel(torch.zeros(8000), sample_rate=8000)
    a = random_baseline(torch.zeros(800), key="utt1")
    assert torch.equal(a, random_baseline(torch.zeros(800), key="utt1"))
    assert not torch.equal(a, random_baseline(torch.zeros(800), key="utt2"))


def test_extract_baseline_writes_a_features_folder(tmp_path):
    import soundfile as sf

    from spidrkit.data.corpora.manifest import ManifestEntry, write_manifest
    from spidrkit.extraction.features_io import load_feature_dir
    from spidrkit.io import read_sidecar

    entries = []
    for i, n in enumerate([4000, 6400]):
        path = tmp_path / f"a{i}.wav"
        sf.write(path, (0.1 * torch.randn(n)).numpy(), 16000)
        entries.append(ManifestEntry(f"spk/a{i}", str(path), n))
    manifest = write_manifest(entries, tmp_path / "m.csv")
    out = extract_baseline(manifest, tmp_path / "mfcc", "mfcc", progress=False)
    feats = load_feature_dir(out)
    assert {k: tuple(v.shape) for k, v in feats.items()} == {"spk/a0": (12, 39), "spk/a1": (19, 39)}
    assert read_sidecar(out)["baseline"] == "mfcc"


def _test_signal() -> torch.Tensor:
    """2 s: a chirp in noise, then 0.2 s of digital silence (the 1e-10 power floor), 16 kHz."""
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(32000, dtype=torch.float64) / 16000
    voiced = 0.3 * torch.sin(2 * math.pi * (200 + 300 * t) * t) + 0.05 * torch.randn(32000, generator=gen)
    return torch.cat([voiced, torch.zeros(3200, dtype=torch.float64)]).float()


def test_mfcc_matches_librosa():
    """Our MFCC, deltas and delta-deltas against librosa configured identically.

    librosa gets the same pre-emphasised signal, padded by (512 - 400) / 2 samples on each side so that its
    uncentred 512-point frames hold our 400-sample window at the same place (frame i windows samples
    [320 i, 320 i + 400)); the symmetric Hamming window as an array; HTK mel filters of peak 1
    (``norm=None``); the same natural log with the same 1e-10 floor; orthonormal DCT-II. librosa's lifter
    scales coefficient n by 1 + L/2 sin(pi (n + 1) / L), ours (HTK, Kaldi) by 1 + L/2 sin(pi n / L) (c0
    unchanged), so the HTK lifter is applied to librosa's unliftered coefficients. Tolerance: 1e-3 absolute
    on the raw coefficients, which reach |c| = 145.6 here (c0 of the silent frames): float32 rounding of ours
    against librosa's float64, ~1e-5 relative.
    """
    librosa = pytest.importorskip("librosa")
    import numpy as np
    import scipy.signal

    wav = _test_signal()
    ours = mfcc(wav).double().numpy()
    y = wav.double().numpy()
    emphasised = np.concatenate([y[:1], y[1:] - 0.97 * y[:-1]])
    pad = (N_FFT - WINDOW) // 2
    power = librosa.feature.melspectrogram(
        y=np.pad(emphasised, (pad, pad)), sr=16000, n_fft=N_FFT, hop_length=HOP, win_length=WINDOW,
        window=scipy.signal.get_window("hamming", WINDOW, fftbins=False), center=False, power=2.0,
        n_mels=40, fmin=20.0, fmax=8000.0, htk=True, norm=None,
    )
    ceps = librosa.feature.mfcc(S=np.log(np.maximum(power, 1e-10)), n_mfcc=13, dct_type=2, norm="ortho", lifter=0)
    ceps = ceps * (1 + 11 * np.sin(np.pi * np.arange(13) / 22))[:, None]
    d = librosa.feature.delta(ceps, width=5, order=1, mode="nearest")
    dd = librosa.feature.delta(d, width=5, order=1, mode="nearest")
    ref = np.concatenate([ceps, d, dd]).T
    assert ref.shape == ours.shape == (baseline_frames(35200), 39) == (109, 39)
    assert np.abs(ours - ref)[:, :13].max() < 1e-3
    assert np.abs(ours - ref)[:, 13:].max() < 1e-3
    # the silent frames sit on the floor: c0 = sqrt(40) ln(1e-10), the largest |c| of the signal
    assert ours[-1, 0] == pytest.approx(math.sqrt(40) * math.log(1e-10), abs=1e-3)
    assert np.abs(ref).max() == pytest.approx(-math.sqrt(40) * math.log(1e-10), abs=1e-3)


def test_baselines_follow_the_callers_frame_rate():
    cfg = ModelConfig()
    assert hop_length() == HOP == 320 == 16000 / cfg.frame_rate
    assert hop_length(25.0) == 640
    wav = _test_signal()
    at_50, at_25 = mfcc(wav), mfcc(wav, frame_rate=25.0)
    assert at_25.shape == (baseline_frames(35200, 25.0), 39) == ((35200 - 400) // 640 + 1, 39) == (55, 39)
    # the 25 Hz frames are every other 50 Hz frame (same windows); deltas span other frames and differ
    torch.testing.assert_close(at_25[:, :13], at_50[::2, :13], atol=1e-4, rtol=0)
    assert log_mel(wav, frame_rate=25.0).shape == (55, 80)
    assert random_baseline(wav, dim=4, frame_rate=25.0).shape == (55, 4)
    with pytest.raises(ValueError, match="whole number"):
        mfcc(wav, frame_rate=33.0)


def test_signal_encoder_is_a_speech_encoder_whose_batched_layer_equals_the_features():
    enc = SignalEncoder("mfcc_cmvn")
    assert isinstance(enc, SpeechEncoder) and (enc.num_layers, enc.dim, enc.frame_rate) == (1, 39, 50.0)
    wavs = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([16000, 8000])
    out = enc.layer_outputs(wavs, lengths)[1]
    # 16000 samples: (16000 - 400) // 320 + 1 = 49 frames; 8000: 24, the rest of row 1 zeros
    assert out.shape == (2, 49, 39) and enc.num_frames(8000) == 24
    assert enc.num_frames(lengths).tolist() == [49, 24]
    assert torch.equal(out[0], mfcc_cmvn(wavs[0])) and torch.equal(out[1, :24], mfcc_cmvn(wavs[1, :8000]))
    assert out[1, 24:].abs().sum() == 0
    assert torch.equal(SignalEncoder("log_mel").features(wavs[0]), log_mel(wavs[0]))
    with pytest.raises(ValueError, match="choose from mfcc, mfcc_cmvn, log_mel"):
        SignalEncoder("plp")
