"""Reading audio and standardising waveforms: the one place a file becomes model input.

Every model input is a 16 kHz mono float32 waveform standardised per utterance (``docs/method.md``). Files at
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
from spidrkit.errors import InputError
from spidrkit.models.signal import SAMPLE_RATE, standardize, standardize_batch

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



class AudioError(InputError):
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


