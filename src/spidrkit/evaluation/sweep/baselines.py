"""The sweep's floors at the model's frame rate: MFCC (39-d), MFCC + CMVN, log-mel (80-d) (their features live
in :mod:`spidrkit.encoders.mfcc`, whose docstring says how they are computed) and random features.

Every baseline's frame ``i`` sees the same audio as the model's frame ``i``: they drop into every evaluator.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

import torch

from spidrkit.config import SAMPLE_RATE
from spidrkit.data.corpora.audio import load_audio
from spidrkit.data.corpora.manifest import read_manifest
from spidrkit.encoders.mfcc import WINDOW, baseline_frames, check_wav, hop_length, log_mel, mfcc, mfcc_cmvn
from spidrkit.extraction.features_io import is_done, save_features
from spidrkit.io import file_sha256, write_sidecar
from spidrkit.progress import progress_bar

Baseline = Literal["mfcc", "mfcc_cmvn", "log_mel", "random"]
BASELINES: tuple[str, ...] = ("mfcc", "mfcc_cmvn", "log_mel", "random")


def random_baseline(wav: torch.Tensor, dim: int = 768, seed: int = 0, sample_rate: int = SAMPLE_RATE,
                    key: str = "", frame_rate: float | None = None) -> torch.Tensor:
    """Gaussian noise features (T, dim) with the model's frame count: the chance-level reference.

    Deterministic given ``seed`` and ``key`` (e.g. the file id), whatever the order files are processed in.
    """
    wav = check_wav(wav, sample_rate)
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
    return torch.randn(baseline_frames(wav.shape[0], frame_rate), dim, generator=gen)


def baseline_features(kind: Baseline, wav: torch.Tensor, *, key: str = "", seed: int = 0,
                      frame_rate: float | None = None) -> torch.Tensor:
    """The ``kind`` baseline ("mfcc", "mfcc_cmvn", "log_mel" or "random") of a 16 kHz waveform, at ``frame_rate`` (the
    model's ``frame_rate``; default 50 Hz)."""
    if kind == "mfcc":
        return mfcc(wav, frame_rate=frame_rate)
    if kind == "mfcc_cmvn":
        return mfcc_cmvn(wav, frame_rate=frame_rate)
    if kind == "log_mel":
        return log_mel(wav, frame_rate=frame_rate)
    if kind == "random":
        return random_baseline(wav, key=key, seed=seed, frame_rate=frame_rate)
    raise ValueError(f"unknown baseline {kind!r}; choose from {', '.join(BASELINES)}")


def extract_baseline(manifest: str | os.PathLike, out_dir: str | os.PathLike, kind: Baseline, *,
                     seed: int = 0, overwrite: bool = False, progress: bool = True,
                     frame_rate: float | None = None) -> Path:
    """Write the ``kind`` baseline of every file of a manifest as ``OUT/<fileid>.pt`` (+ sidecar).

    The folder is then used like a model layer's features (ABX, MAP, k-means). Files already present are
    kept unless ``overwrite`` (each file is written atomically, so a present file is complete): an
    interrupted run resumes where it stopped.
    """
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}; choose from {', '.join(BASELINES)}")
    entries = read_manifest(manifest)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for entry in progress_bar(len(entries), f"{kind} features", "file", progress, iterable=entries):
        if not overwrite and is_done(out, entry.fileid):
            continue
        wav = load_audio(entry.path)
        save_features(out, entry.fileid, baseline_features(kind, wav, key=entry.fileid, seed=seed,
                                                           frame_rate=frame_rate))
    hop = hop_length(frame_rate)
    rate = SAMPLE_RATE // hop if SAMPLE_RATE % hop == 0 else SAMPLE_RATE / hop
    write_sidecar(out, model=f"baseline:{kind}", baseline=kind, frame_rate=rate, window=WINDOW, hop=hop,
                  seed=seed if kind == "random" else None,
                  manifest=str(Path(manifest).resolve()), manifest_sha256=file_sha256(manifest),
                  num_files=len(entries))
    return out
