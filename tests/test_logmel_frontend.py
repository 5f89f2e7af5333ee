"""The opt-in log-mel front end (model.frontend = "logmel", models/spectral.py)."""

from __future__ import annotations

import math

import pytest
import torch

from spidrkit.checkpoints import load_model
from spidrkit.checkpoints.native import save_spidrkit
from spidrkit.config import ConfigError, load_config
from spidrkit.encoders.mfcc import log_mel
from spidrkit.models.flops import step_flops
from spidrkit.models.masking import sample_mask
from spidrkit.models.spectral import LogMelFrontEnd, mel_filterbank, power_spectrum
from spidrkit.models.spidr import SpidR
from spidrkit.training.step import MicroBatch, Stepper

SMALL = [
    "model.frontend=logmel", "model.n_mels=40", "model.dim=64", "model.num_layers=2", "model.num_heads=2",
    "model.ffn_dim=128", "model.num_codebooks=2", "model.codebook_size=16", "model.dropout=0.0",
]


def test_one_frame_by_hand():
    """A 1 kHz sine: frame 0's power spectrum is |sum_n w[n] sin(2 pi f n / sr) e^{-2 pi i k n / N}|^2 on the
    400 samples the downsampler's frame 0 reads; the log mel frame is the log of its filterbank product."""
    cfg = load_config("tiny", SMALL).model
    sr, n = 16000, torch.arange(1000, dtype=torch.float64)
    wav = torch.sin(2 * math.pi * 1000.0 * n / sr)
    w = torch.hann_window(400, periodic=False, dtype=torch.float64)
    k = torch.arange(257, dtype=torch.float64)[:, None]
    ang = -2 * math.pi * k * (torch.arange(400, dtype=torch.float64) + 56)[None] / 512  # 56 = (512 - 400) / 2
    x = (w * wav[:400])[None]
    power = (x * torch.cos(ang)).sum(1) ** 2 + (x * torch.sin(ang)).sum(1) ** 2
    expected = torch.log(torch.clamp(power.float() @ mel_filterbank(40).T, min=1e-6))
    got = LogMelFrontEnd(cfg)(wav.float()[None])
    assert got.shape == (1, SpidR(cfg).num_frames(1000), 40) == (1, 2, 40)
    assert torch.allclose(got[0, 0], expected, atol=2e-3, rtol=1e-4)
    assert int(got[0, 0].argmax()) == int(expected.argmax())  # the band of 1 kHz


@pytest.mark.parametrize("length", [400, 719, 720, 16000, 23456])
def test_frames_equal_the_downsampler_and_the_baseline(length):
    cfg = load_config("tiny", ["model.frontend=logmel"]).model
    wav = torch.randn(length, generator=torch.Generator().manual_seed(length))
    got = LogMelFrontEnd(cfg)(wav[None])[0]
    assert got.shape == (SpidR(cfg).num_frames(length), 80)
    assert torch.allclose(got, torch.clamp(log_mel(wav), min=math.log(1e-6)), atol=1e-5)


def test_batched_equals_unbatched_on_valid_frames():
    cfg = load_config("tiny", SMALL).model
    fe = LogMelFrontEnd(cfg)
    a, b = torch.randn(8000), torch.randn(5000)
    batch = torch.zeros(2, 8000)
    batch[0], batch[1, :5000] = a, b
    out = fe(batch)
    assert torch.allclose(out[0], fe(a[None])[0], atol=1e-6)
    nb = SpidR(cfg).num_frames(5000)
    assert torch.allclose(out[1, :nb], fe(b[None])[0], atol=1e-6)
    assert torch.equal(power_spectrum(a, fe.window, fe.hop), power_spectrum(a[None], fe.window, fe.hop)[0])


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.frontend"):
        load_config("tiny", ["model.frontend=mel"])
    with pytest.raises(ConfigError, match="model.n_mels"):
        load_config("tiny", ["model.frontend=logmel", "model.n_mels=0"])


def test_model_trains_and_loads_back(tmp_path):
    cfg = load_config("tiny", [*SMALL, "train.precision=fp32"])
    torch.manual_seed(0)
    model = SpidR(cfg.model)
    assert list(model.feature_extractor.parameters()) == []  # fixed: nothing to learn in the front end
    assert model.feature_projection.projection.in_features == 40
    assert step_flops(cfg.model, 1, 16000)["downsampler"] == 0.0
    before = model.feature_projection.projection.weight.detach().clone()
    stepper = Stepper(model, cfg, torch.device("cpu"))
    wav = torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    stepper.step([MicroBatch(wav, sample_mask(2, model.num_frames(16000), rng=0))])
    assert not torch.equal(before, model.feature_projection.projection.weight)  # the projection learns
    path = save_spidrkit(tmp_path / "m.pt", cfg, model.state_dict())
    back = load_model(path)
    assert back.cfg.frontend == "logmel" and isinstance(back.feature_extractor, LogMelFrontEnd)
    model.eval()
    x = torch.randn(12000, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(model.layer_outputs(x, layers=[2])[2], back.layer_outputs(x, layers=[2])[2], atol=1e-6)
