"""Reading audio and standardising waveforms: the one place a file (or an in-memory array) becomes model input.

Every model input is a 16 kHz mono float32 waveform standardised per utterance (``docs/method.md``). Files at
another rate are resampled with soxr and multichannel files are averaged to mono; both are legitimate
but worth knowing about, so each kind of conversion is reported once per process (not once per file,
which would flood the log of a run over 100k files). Arrays in memory (:func:`array_audio`) are checked as
decoded files are and resampled by the same :func:`resample`, so they give the samples of their file.
"""

from __future__ import annotations

import os
import threading
import warnings

import numpy as np
import soundfile as sf
import soxr
import torch

from spidrkit.data.corpora.manifest import resampled_length
from spidrkit.errors import InputError
from spidrkit.models.signal import SAMPLE_RATE, standardize, standardize_batch

__all__ = [
    "SAMPLE_RATE",
    "AudioConversionWarning",
    "AudioError",
    "TruncatedAudioWarning",
    "array_audio",
    "load_audio",
    "mono_array",
    "resample",
    "resampled_length",
    "reset_conversion_warnings",
    "standardize",
    "standardize_batch",
]



class AudioError(InputError):
    """A file that cannot be used as audio: unreadable, empty, or with non-finite samples."""


class AudioConversionWarning(UserWarning):
    """A file needed resampling or down-mixing (reported once per kind and process)."""


class TruncatedAudioWarning(UserWarning):
    """A WAV file whose header declares more samples than the file holds (a copy cut short): only the
    samples present are used. Reported for every such file."""


def wav_declared_frames(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(frames the header of a RIFF/WAVE file declares, frames its data chunk really holds)``, from the
    first chunks of the file; ``None`` for anything that is not a plain WAV (or whose header is odd)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 12)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block = 12, 0
    while pos + 8 <= len(head):
        cid, n = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if cid == b"fmt " and pos + 22 <= len(head):
            block = int.from_bytes(head[pos + 20 : pos + 22], "little")  # bytes per frame
        if cid == b"data":
            if block <= 0 or n == 0xFFFFFFFF:  # no format chunk yet, or a streamed file with no length
                return None
            return n // block, max(0, size - pos - 8) // block
        pos += 8 + n + (n & 1)
    return None


def _check_truncated(path: str | os.PathLike) -> None:
    frames = wav_declared_frames(path)
    if frames is not None and frames[1] < frames[0]:
        warnings.warn(
            f"{path}: truncated WAV: the header declares {frames[0]} samples, the file holds {frames[1]}; "
            "only those are used (re-copy the file if it was cut short)", TruncatedAudioWarning, stacklevel=3,
        )


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
    Raises :class:`AudioError` for a missing file, a file that cannot be decoded, has no samples, or holds
    NaN/inf; warns (:class:`TruncatedAudioWarning`) for a WAV file shorter than its header says.
    """
    try:
        data, rate = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile errors, missing files, permission errors: all "unreadable"
        if not os.path.exists(path):
            raise AudioError(f"{path}: cannot read audio: no such file") from None
        if not os.access(path, os.R_OK):
            raise AudioError(f"{path}: cannot read audio: permission denied") from None
        raise AudioError(f"{path}: cannot decode audio ({type(e).__name__}: {' '.join(str(e).split())})") from e
    _check_truncated(path)
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
        x = resample(x, rate, sample_rate, str(path))
    if not np.isfinite(x).all():
        raise AudioError(f"{path}: audio holds NaN or infinite samples")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def resample(x: np.ndarray, rate: int, sample_rate: int, name: str) -> np.ndarray:
    """A 1-D float32 signal at ``rate`` resampled to ``sample_rate`` with soxr (high quality): the one resampling
    of every input, file or array, to exactly the length :func:`resampled_length` predicts (manifests rely on
    it, whatever soxr's rounding). ``name`` (the file, the array) is what an :class:`AudioError` names."""
    if rate == sample_rate:
        return x
    n = resampled_length(x.shape[0], rate, sample_rate)
    if n == 0:
        raise AudioError(f"{name}: empty audio after resampling from {rate} Hz")
    y = soxr.resample(x, rate, sample_rate).astype(np.float32, copy=False)
    if y.shape[0] != n:
        y = np.pad(y, (0, n - y.shape[0])) if y.shape[0] < n else y[:n]
    return y


def mono_array(array: object, name: str) -> np.ndarray:
    """An in-memory waveform (numpy array, torch tensor or list of numbers) as 1-D float32 samples, checked
    as a decoded file is: one channel (a ``(1, N)`` or ``(N, 1)`` array is that channel; more are refused
    rather than guessed), at least one sample, every sample finite. Integer PCM is scaled to [-1, 1) as
    libsndfile reads it (int16 by 2**15, int32 by 2**31), so an int16 array equals its 16-bit WAV file."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    x = np.asarray(array)
    if x.dtype.kind == "i" and x.dtype.itemsize in (2, 4):
        x = x.astype(np.float32) / np.float32(2 ** (8 * x.dtype.itemsize - 1))
    elif x.dtype.kind != "f":
        raise AudioError(f"{name}: samples must be floats or signed 16/32-bit integers, got dtype {x.dtype}")
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise AudioError(f"{name}: expected one mono waveform (1-D), got shape {tuple(x.shape)}: pass one "
                         "channel (e.g. wav[0]) or their mean (wav.mean(0)) for a (channels, samples) array; a "
                         "batch is a list of 1-D waveforms")
    if x.shape[0] == 0:
        raise AudioError(f"{name}: empty audio (0 samples)")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise AudioError(f"{name}: audio holds NaN or infinite samples")
    return x


def array_audio(array: object, rate: int, sample_rate: int = SAMPLE_RATE, name: str = "the array") -> torch.Tensor:
    """An in-memory waveform at ``rate`` as model input at ``sample_rate``: :func:`mono_array`, then
    :func:`resample`, the same samples :func:`load_audio` gives for that audio written to a file."""
    x = resample(mono_array(array, name), int(rate), sample_rate, name)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


