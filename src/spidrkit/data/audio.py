"""Reading audio and standardising waveforms: the one place a file becomes model input.

Every model input is a 16 kHz mono float32 waveform standardised per utterance (SPEC §1). Files at
another rate are resampled with soxr and multichannel files are averaged to mono; both are legitimate
but worth knowing about, so each kind of conversion is reported once per process (not once per file,
which would flood the log of a run over 100k files).
"""

from __future__ import annotations

import os
import threading
import warnings

import numpy as np
import soundfile as sf
import soxr
import torch

from spidrkit.data.manifest import resampled_length

__all__ = [
    "SAMPLE_RATE",
    "AudioConversionWarning",
    "AudioError",
    "load_audio",
    "resampled_length",
    "reset_conversion_warnings",
    "standardize",
    "standardize_batch",
]

SAMPLE_RATE = 16000


class AudioError(Exception):
    """A file that cannot be used as audio: unreadable, empty, or with non-finite samples."""


class AudioConversionWarning(UserWarning):
    """A file needed resampling or down-mixing (reported once per kind and process)."""


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(kind: str, message: str) -> None:
    with _warned_lock:
        if kind in _warned:
            return
        _warned.add(kind)
    warnings.warn(message, AudioConversionWarning, stacklevel=3)


def reset_conversion_warnings() -> None:
    """Forget which conversions were reported (so the next one warns again); for tests and new runs."""
    with _warned_lock:
        _warned.clear()


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Decode ``path`` into a 1-D float32 tensor at ``sample_rate``, mono.

    Multichannel audio is averaged over channels; other rates are resampled with soxr (high quality).
    Raises :class:`AudioError` for a file that cannot be decoded, has no samples, or holds NaN/inf.
    """
    try:
        data, rate = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile errors, missing files, permission errors: all "unreadable"
        raise AudioError(f"{path}: cannot decode audio ({type(e).__name__}: {e})") from e
    if data.shape[0] == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    if data.shape[1] > 1:
        _warn_once(
            "downmix",
            f"{path}: {data.shape[1]} channels averaged to mono; "
            "other multichannel files will be down-mixed the same way without a further warning",
        )
        x = data.mean(axis=1, dtype=np.float32)
    else:
        x = data[:, 0]
    if rate != sample_rate:
        _warn_once(
            "resample",
            f"{path}: resampled from {rate} Hz to {sample_rate} Hz with soxr; "
            "other files at another rate will be resampled without a further warning",
        )
        n = resampled_length(x.shape[0], rate, sample_rate)
        x = soxr.resample(x, rate, sample_rate).astype(np.float32, copy=False)
        if x.shape[0] != n:  # keep the length manifests predicted, whatever soxr's rounding
            x = np.pad(x, (0, n - x.shape[0])) if x.shape[0] < n else x[:n]
        if n == 0:
            raise AudioError(f"{path}: empty audio after resampling from {rate} Hz")
    if not np.isfinite(x).all():
        raise AudioError(f"{path}: audio holds NaN or infinite samples")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def standardize(wav: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean 0, variance 1 over the whole utterance: ``(x - mean) / sqrt(var + eps)``, biased variance.

    This is layer normalisation over the samples (fairseq's ``normalize=True``). Statistics are computed
    in float64 so long utterances lose no precision; the result has the input's dtype.
    """
    if wav.dim() != 1:
        raise ValueError(f"standardize expects a 1-D waveform, got shape {tuple(wav.shape)}")
    return standardize_batch(wav[None], None, eps)[0]


def standardize_batch(wav: torch.Tensor, lengths: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Standardise each row of ``wav`` (B, L) over its first ``lengths[b]`` samples; padding stays 0.

    With ``lengths=None`` every sample is valid. A row of length 0 comes back as zeros.
    """
    if wav.dim() != 2:
        raise ValueError(f"standardize_batch expects (batch, samples), got shape {tuple(wav.shape)}")
    x = wav.to(torch.float64)
    if lengths is None:
        var, mean = torch.var_mean(x, dim=1, correction=0, keepdim=True)
        return ((x - mean) / torch.sqrt(var + eps)).to(wav.dtype)
    lengths = torch.as_tensor(lengths, device=wav.device)
    if lengths.shape != (wav.shape[0],):
        raise ValueError(f"lengths must have shape ({wav.shape[0]},), got {tuple(lengths.shape)}")
    valid = torch.arange(wav.shape[1], device=wav.device)[None, :] < lengths[:, None]
    n = lengths.clamp(min=1).to(torch.float64)[:, None]
    mean = (x * valid).sum(dim=1, keepdim=True) / n
    centred = (x - mean) * valid
    var = centred.square().sum(dim=1, keepdim=True) / n
    return (centred / torch.sqrt(var + eps)).to(wav.dtype)
