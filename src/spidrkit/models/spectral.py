"""Spectral analysis shared by the opt-in log-mel front end and the signal-processing baselines.

Frames are those of the convolutional downsampler (``docs/method.md#front-end``): frame ``i`` windows samples
``[hop i, hop i + window)`` (400 and 320 samples for the default geometry), zero-padded symmetrically to the
smallest power-of-two FFT size. Mel scale: HTK, ``mel(f) = 2595 log10(1 + f / 700)``, triangular filters of
peak 1 (no area normalisation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spidrkit.config import SAMPLE_RATE, ModelConfig
from spidrkit.models.layers import receptive_field

__all__ = ["LogMelFrontEnd", "fft_size", "hz_to_mel", "mel_filterbank", "mel_to_hz", "power_spectrum"]


def fft_size(window: int) -> int:
    """The smallest power of two >= ``window`` (512 for a 400-sample window)."""
    return 1 << (int(window) - 1).bit_length()


def hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    """HTK mel scale."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m: torch.Tensor | float) -> torch.Tensor:
    return 700.0 * (10.0 ** (torch.as_tensor(m, dtype=torch.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, *, n_fft: int = 512, sample_rate: int = SAMPLE_RATE,
                   f_min: float = 0.0, f_max: float | None = None) -> torch.Tensor:
    """Triangular filters (n_mels, n_fft // 2 + 1), centres equally spaced on the mel scale, peak 1."""
    f_max = sample_rate / 2 if f_max is None else f_max
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2))
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    lo, centre, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lo) / (centre - lo)
    falling = (hi - freqs) / (hi - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


def power_spectrum(wav: torch.Tensor, window: torch.Tensor, hop: int) -> torch.Tensor:
    """|STFT|^2 of ``len(window)``-sample frames every ``hop`` samples: (..., T, n_fft // 2 + 1) for a
    waveform (L,) or a batch (B, L).

    ``torch.stft`` centres a shorter window inside its ``n_fft`` frame, so the signal is padded by
    ``(n_fft - window) / 2`` zeros on each side: frame ``i`` then windows exactly samples ``[hop i, hop i +
    window)``.
    """
    n_fft = fft_size(window.shape[0])
    pad = (n_fft - window.shape[0]) // 2
    spec = torch.stft(F.pad(wav, (pad, pad)), n_fft=n_fft, hop_length=hop, win_length=window.shape[0],
                      window=window, center=False, return_complex=True)
    return spec.abs().pow(2).transpose(-1, -2)


class LogMelFrontEnd(nn.Module):
    """The opt-in front end ``model.frontend = "logmel"``: standardised waveform (B, L) -> log mel spectrum
    (B, T, n_mels) on the downsampler's frames, fixed (no parameters), in place of the convolutions.

    Hann window over the downsampler's receptive field, one frame per model frame (``num_frames`` is
    unchanged), ``model.n_mels`` bands over 0 - 8 kHz, natural log of the power floored at 1e-6 (a
    standardised waveform has unit variance, so the floor lies ~80 dB below speech).
    """

    FLOOR = 1e-6

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        window = receptive_field(cfg.conv_kernels, cfg.conv_strides)
        self.hop = cfg.frame_stride
        self.register_buffer("window", torch.hann_window(window, periodic=False), persistent=False)
        fbank = mel_filterbank(cfg.n_mels, n_fft=fft_size(window), sample_rate=cfg.sample_rate)
        self.register_buffer("fbank", fbank.T.contiguous(), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        with torch.autocast(wav.device.type, enabled=False):
            spec = power_spectrum(wav.float(), self.window, self.hop)
            return torch.log(torch.clamp(spec @ self.fbank, min=self.FLOOR))
