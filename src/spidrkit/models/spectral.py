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

__all__ = ["LogMelFrontEnd", "fft_size", "hz_to_mel", "mel_filterbank", "mel_to_hz", "normalise_bands",
           "power_spectrum", "vtlp_warp"]

VTLP_BOUNDARY_HZ = 4800.0  # below it frequencies scale by the warp factor; above, a line maps Nyquist to itself


def fft_size(window: int) -> int:
    """The smallest power of two >= ``window`` (512 for a 400-sample window)."""
    return 1 << (int(window) - 1).bit_length()


def hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    """HTK mel scale."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m: torch.Tensor | float) -> torch.Tensor:
    return 700.0 * (10.0 ** (torch.as_tensor(m, dtype=torch.float64) / 2595.0) - 1.0)


def vtlp_warp(freqs: torch.Tensor, alpha: torch.Tensor, nyquist: float,
              boundary: float = VTLP_BOUNDARY_HZ) -> torch.Tensor:
    """Vocal tract length perturbation (Jaitly & Hinton, 2013) of frequencies ``freqs`` (..., N) in Hz by
    factors ``alpha`` (..., 1): ``alpha f`` up to ``boundary min(alpha, 1) / alpha``, then the straight line
    to ``(nyquist, nyquist)``; continuous, increasing, 0 and Nyquist fixed."""
    alpha = alpha.to(freqs.dtype)
    f_hi = boundary * torch.clamp(alpha, max=1.0) / alpha
    high = nyquist - (nyquist - alpha * f_hi) / (nyquist - f_hi) * (nyquist - freqs)
    return torch.where(freqs <= f_hi, alpha * freqs, high)


def mel_filterbank(n_mels: int, *, n_fft: int = 512, sample_rate: int = SAMPLE_RATE,
                   f_min: float = 0.0, f_max: float | None = None, warp: torch.Tensor | None = None) -> torch.Tensor:
    """Triangular filters (n_mels, n_fft // 2 + 1), centres equally spaced on the mel scale, peak 1.

    ``warp`` (B,): one filterbank (B, n_mels, n_fft // 2 + 1) per factor, every filter edge moved by
    :func:`vtlp_warp` (a factor above 1 moves the filters up, so formants land in lower bands, as from a
    longer vocal tract)."""
    f_max = sample_rate / 2 if f_max is None else f_max
    device = warp.device if isinstance(warp, torch.Tensor) else None  # built where the factors are: no copy
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2)).to(device)
    if warp is not None:
        edges = vtlp_warp(edges, torch.as_tensor(warp, dtype=torch.float64, device=device).reshape(-1, 1),
                          sample_rate / 2)
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64, device=device) * sample_rate / n_fft
    lo, centre, hi = edges[..., :-2, None], edges[..., 1:-1, None], edges[..., 2:, None]
    rising = (freqs - lo) / (centre - lo)
    falling = (hi - freqs) / (hi - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


def normalise_bands(x: torch.Tensor, valid: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Each band of each utterance to mean 0 and variance 1 over its frames (B, T, D); ``valid`` (B, T) marks
    the frames of a padded batch that count (the others are set to 0), so a padded batch gives each
    utterance what it gives alone."""
    w = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device) if valid is None else valid.to(x.dtype)
    n = w.sum(1, keepdim=True).clamp(min=1.0).unsqueeze(-1)
    mean = (x * w.unsqueeze(-1)).sum(1, keepdim=True) / n
    var = (((x - mean) ** 2) * w.unsqueeze(-1)).sum(1, keepdim=True) / n
    return (x - mean) * torch.rsqrt(var + eps) * w.unsqueeze(-1)


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
    """The opt-in front ends ``model.frontend = "logmel"`` / ``"logmel_cmvn"``: standardised waveform (B, L) ->
    log mel spectrum (B, T, n_mels) on the downsampler's frames, fixed (no parameters), in place of the
    convolutions.

    Hann window over the downsampler's receptive field, one frame per model frame (``num_frames`` is
    unchanged), ``model.n_mels`` bands over 0 - 8 kHz, natural log of the power floored at 1e-6 (a
    standardised waveform has unit variance, so the floor lies ~80 dB below speech). ``logmel_cmvn`` then
    normalises each band over the utterance (:func:`normalise_bands`). ``warp`` (B,): VTLP factors, one
    warped filterbank per utterance (the student's input under ``data.voice_perturb = "vtlp"``).
    """

    FLOOR = 1e-6

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        window = receptive_field(cfg.conv_kernels, cfg.conv_strides)
        self.hop = cfg.frame_stride
        self.cmvn = cfg.frontend == "logmel_cmvn"
        self.n_mels, self.n_fft, self.sample_rate = cfg.n_mels, fft_size(window), cfg.sample_rate
        self.register_buffer("window", torch.hann_window(window, periodic=False), persistent=False)
        fbank = mel_filterbank(cfg.n_mels, n_fft=self.n_fft, sample_rate=cfg.sample_rate)
        self.register_buffer("fbank", fbank.T.contiguous(), persistent=False)

    def power(self, wav: torch.Tensor) -> torch.Tensor:
        """|STFT|^2 (B, T, n_fft // 2 + 1) on the model's frames."""
        with torch.autocast(wav.device.type, enabled=False):
            return power_spectrum(wav.float(), self.window, self.hop)

    def log_mel(self, spec: torch.Tensor, valid: torch.Tensor | None = None,
                warp: torch.Tensor | None = None) -> torch.Tensor:
        """Log mel bands of a power spectrum (B, T, F), VTLP-warped by ``warp`` (B,) when given."""
        with torch.autocast(spec.device.type, enabled=False):
            if warp is None:
                mel = spec @ self.fbank
            else:
                fb = mel_filterbank(self.n_mels, n_fft=self.n_fft, sample_rate=self.sample_rate, warp=warp)
                mel = torch.bmm(spec, fb.transpose(1, 2))
            out = torch.log(torch.clamp(mel, min=self.FLOOR))
            return normalise_bands(out, valid) if self.cmvn else out

    def forward(self, wav: torch.Tensor, valid: torch.Tensor | None = None,
                warp: torch.Tensor | None = None) -> torch.Tensor:
        return self.log_mel(self.power(wav), valid, warp)
