"""MFCC / log-mel baselines: frame count equal to the SpidR downsampler's, filterbank and DCT checks."""

from __future__ import annotations

import math

import pytest
import torch

from spidrkit.config import ModelConfig
from spidrkit.evaluation.baselines import (
    dct_matrix,
    deltas,
    extract_baseline,
    hz_to_mel,
    log_mel,
    mel_filterbank,
    mfcc,
    num_frames,
    random_baseline,
)
from spidrkit.models.layers import num_frames as downsampler_frames


@pytest.mark.parametrize("length", [400, 719, 720, 16000, 16319, 16320, 23456])
def test_frame_count_matches_downsampler(length):
    cfg = ModelConfig()
    expected = (length - 400) // 320 + 1
    assert downsampler_frames(length, cfg.conv_kernels, cfg.conv_strides) == expected
    assert num_frames(length) == expected
    wav = torch.randn(length, generator=torch.Generator().manual_seed(length))
    assert mfcc(wav).shape == (expected, 39)
    assert log_mel(wav).shape == (expected, 80)
    assert random_baseline(wav, dim=8).shape == (expected, 8)
    assert num_frames(16000) == 49


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

    from spidrkit.data.manifest import ManifestEntry, write_manifest
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
