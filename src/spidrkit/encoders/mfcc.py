"""Signal-processing features as encoders: MFCC (39-d), MFCC + CMVN and log mel (80-d), at the model's frame
rate, behind :class:`~spidrkit.models.interface.SpeechEncoder` (one "layer", layer 1) so that every command
that reads an encoder can read them (the MFCC units of ``lm units --model mfcc``), and the sweep's floors
(:mod:`spidrkit.evaluation.sweep.baselines`).

Frame alignment with the model: the SpidR downsampler (kernels 10, 3x4, 2x2; strides 5, 2x6) has a receptive
field of 400 samples and a hop of 320 samples at 16 kHz, so its frame ``i`` covers samples ``[320 i, 320 i +
400)`` and an utterance of ``L`` samples gives ``floor((L - 400) / 320) + 1`` frames. The baselines use the
same windows (25 ms window, one hop per model frame, no centring, no padding of the signal), so their frame
``i`` sees the same audio as the model's frame ``i`` and the frame counts are equal: baseline features drop
into every evaluator (ABX, MAP, PNMI) with the model's timing. The hop comes from the caller's
``frame_rate`` (the model's geometry, ``model.frame_rate``); by default it is that of the default model
configuration (50 Hz, hop 320).

Each 400-sample frame is windowed (symmetric Hamming for MFCC, Hann for log-mel) and zero-padded to a
512-point FFT (31.25 Hz bins, fine enough that every one of the 80 mel bands gets at least one bin). Mel
scale: HTK, ``mel(f) = 2595 log10(1 + f / 700)``, triangular filters of peak 1 (no area normalisation).
MFCC: pre-emphasis 0.97, 40 mel bands (20 Hz - 8 kHz), natural log of the power floored at 1e-10,
orthonormal DCT-II, 13 coefficients (c0 included), cepstral liftering 22 in the HTK / Kaldi convention
(coefficient ``n`` scaled by ``1 + 11 sin(pi n / 22)``, so c0 is unchanged), then deltas and delta-deltas
(regression over +-2 frames, edges replicated; the delta-deltas are deltas of the deltas): ``[c, d, dd]``
(39-d). These equal librosa's (``htk=True``, ``norm=None``, ``center=False``, ``dct_type=2``,
``norm="ortho"``, ``delta(mode="nearest")``) to float32 precision, except librosa's lifter, which scales
coefficient ``n`` by ``1 + 11 sin(pi (n + 1) / 22)``. No dithering, so the features are deterministic.
"""

from __future__ import annotations

import math

import torch

from spidrkit.config import SAMPLE_RATE, ModelConfig
from spidrkit.models.layers import receptive_field
from spidrkit.models.spectral import fft_size, mel_filterbank, normalise_bands, power_spectrum

SIGNAL_FEATURES = ("mfcc", "mfcc_cmvn", "log_mel")

_DEFAULT_MODEL = ModelConfig()
FRAME_RATE = _DEFAULT_MODEL.frame_rate  # 50 Hz: the default model's
WINDOW = receptive_field(_DEFAULT_MODEL.conv_kernels, _DEFAULT_MODEL.conv_strides)  # 400 samples, 25 ms
HOP = _DEFAULT_MODEL.frame_stride  # 320 samples, 20 ms
N_FFT = fft_size(WINDOW)  # 512

def hop_length(frame_rate: float | None = None) -> int:
    """Samples between frames at ``frame_rate`` Hz (default: the default model's); must be a whole number."""
    if frame_rate is None:
        return HOP
    hop = SAMPLE_RATE / frame_rate
    if frame_rate <= 0 or hop != round(hop) or hop < 1:
        raise ValueError(f"frame rate {frame_rate} Hz is not a whole number of samples at {SAMPLE_RATE} Hz")
    return round(hop)


def baseline_frames(num_samples: int, frame_rate: float | None = None) -> int:
    """Frames of every baseline (and of the model's downsampler) for ``num_samples`` samples at 16 kHz."""
    if num_samples < WINDOW:
        return 0
    return (num_samples - WINDOW) // hop_length(frame_rate) + 1


def dct_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """Orthonormal DCT-II as a (n_out, n_in) matrix: ``c = D @ x`` gives the first ``n_out`` coefficients."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    d = torch.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    d[0] /= math.sqrt(2.0)
    return d.float()


def deltas(x: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Regression deltas over time of (T, D) features: sum_n n (x[t+n] - x[t-n]) / (2 sum_n n^2), edges
    replicated (HTK / Kaldi)."""
    if x.shape[0] == 0:
        return x.clone()
    padded = torch.cat([x[:1].expand(width, -1), x, x[-1:].expand(width, -1)])
    t = x.shape[0]
    num = sum(n * (padded[width + n: width + n + t] - padded[width - n: width - n + t]) for n in range(1, width + 1))
    return num / (2 * sum(n * n for n in range(1, width + 1)))


def check_wav(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"baselines expect {SAMPLE_RATE} Hz audio, got {sample_rate} Hz (resample first)")
    wav = torch.as_tensor(wav)
    if wav.ndim != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {tuple(wav.shape)}")
    if wav.shape[0] < WINDOW:
        raise ValueError(f"waveform of {wav.shape[0]} samples is shorter than one {WINDOW}-sample frame")
    return wav.float()


def log_mel(wav: torch.Tensor, sample_rate: int = SAMPLE_RATE, n_mels: int = 80,
            frame_rate: float | None = None) -> torch.Tensor:
    """Log mel spectrogram (T, n_mels) at ``frame_rate`` (default 50 Hz): Hann window, 0 - 8 kHz, natural
    log floored at 1e-10."""
    wav = check_wav(wav, sample_rate)
    spec = power_spectrum(wav, torch.hann_window(WINDOW, periodic=False), hop_length(frame_rate))
    return torch.log(torch.clamp(spec @ mel_filterbank(n_mels).T, min=1e-10))


def mfcc(wav: torch.Tensor, sample_rate: int = SAMPLE_RATE, n_mfcc: int = 13, n_mels: int = 40,
         lifter: float = 22.0, frame_rate: float | None = None) -> torch.Tensor:
    """MFCC + deltas + delta-deltas (T, 3 * n_mfcc) = (T, 39) at ``frame_rate`` (default 50 Hz; see the
    module docstring)."""
    wav = check_wav(wav, sample_rate)
    emphasised = torch.cat([wav[:1], wav[1:] - 0.97 * wav[:-1]])
    spec = power_spectrum(emphasised, torch.hamming_window(WINDOW, periodic=False), hop_length(frame_rate))
    fbank = torch.log(torch.clamp(spec @ mel_filterbank(n_mels, f_min=20.0).T, min=1e-10))
    ceps = fbank @ dct_matrix(n_mfcc, n_mels).T
    if lifter > 0:
        ceps = ceps * (1.0 + lifter / 2.0 * torch.sin(math.pi * torch.arange(n_mfcc) / lifter))
    d = deltas(ceps)
    return torch.cat([ceps, d, deltas(d)], dim=1)


def mfcc_cmvn(wav: torch.Tensor, sample_rate: int = SAMPLE_RATE, frame_rate: float | None = None) -> torch.Tensor:
    """:func:`mfcc` with each of its 39 dimensions normalised to mean 0, variance 1 over the utterance (cepstral
    mean and variance normalisation): the floor that removes the voice's average spectrum."""
    return normalise_bands(mfcc(wav, sample_rate, frame_rate=frame_rate)[None])[0]


class SignalEncoder:
    """``mfcc``, ``mfcc_cmvn`` or ``log_mel`` as a :class:`~spidrkit.models.interface.SpeechEncoder` with one
    layer (layer 1: the features), no weights, the model's frame geometry (``frame_rate``, default 50 Hz)."""

    sample_rate = SAMPLE_RATE
    num_layers = 1
    input_normalization = "raw"
    min_samples = WINDOW

    def __init__(self, kind: str = "mfcc", frame_rate: float | None = None) -> None:
        if kind not in SIGNAL_FEATURES:
            raise ValueError(f"unknown signal features {kind!r}; choose from {', '.join(SIGNAL_FEATURES)}")
        self.name, self.kind, self._frame_rate = kind, kind, frame_rate
        self.frame_rate = SAMPLE_RATE / hop_length(frame_rate)
        self.dim = 80 if kind == "log_mel" else 39

    def num_frames(self, num_samples):
        if isinstance(num_samples, torch.Tensor):
            return torch.where(num_samples < WINDOW, 0, (num_samples - WINDOW) // hop_length(self._frame_rate) + 1)
        return baseline_frames(int(num_samples), self._frame_rate)

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """(T, dim) features of one 16 kHz waveform (L,)."""
        fn = {"mfcc": mfcc, "mfcc_cmvn": mfcc_cmvn, "log_mel": log_mel}[self.kind]
        return fn(wav, frame_rate=self._frame_rate)

    def layer_outputs(self, wav: torch.Tensor, lengths: torch.Tensor | None = None,
                      layers: int | list[int] | None = None, standardize: bool = True) -> dict[int, torch.Tensor]:
        """``{1: (B, T, dim)}``, frames past each file's ``num_frames(length)`` zero (see the interface)."""
        wav = wav[None] if wav.ndim == 1 else wav
        lengths = torch.full((wav.shape[0],), wav.shape[1]) if lengths is None else lengths
        frames = [self.features(w[: int(n)].float().cpu()) for w, n in zip(wav, lengths)]
        out = torch.zeros(len(frames), max(f.shape[0] for f in frames), self.dim)
        for i, f in enumerate(frames):
            out[i, : f.shape[0]] = f
        return {1: out.to(wav.device)}

    def to(self, device) -> SignalEncoder:
        return self

    def eval(self) -> SignalEncoder:
        return self
