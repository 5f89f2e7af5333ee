"""The audio extraction reads: entries from a manifest, a folder, a list, or audio in memory
(:mod:`spidrkit.extraction.arrays`), decoded batch by batch."""

from __future__ import annotations

import os
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from spidrkit.data.corpora.audio import SAMPLE_RATE, AudioError, load_audio
from spidrkit.data.corpora.manifest import (
    AUDIO_EXTENSIONS,
    ManifestEntry,
    no_audio_message,
    read_manifest,
    scan_audio_dir,
)
from spidrkit.extraction.arrays import ArrayEntry, ArrayInputs, array_entries, is_memory_input
from spidrkit.extraction.plan import ExtractionError

Decoded = list[tuple[ManifestEntry, torch.Tensor]]
Bad = list[tuple[ManifestEntry, str]]  # (entry, reason) of files that cannot be decoded


def resolve_inputs(
    inputs: str | os.PathLike | Sequence[ManifestEntry] | object, progress: bool = True,
    extensions: Sequence[str] = AUDIO_EXTENSIONS, model_rate: int = SAMPLE_RATE, arrays: ArrayInputs | None = None,
) -> list[ManifestEntry]:
    """Entries from a manifest file, a folder of audio with one of ``extensions`` (scanned), a list, or audio in
    memory read as ``arrays`` says (:func:`~spidrkit.extraction.arrays.array_entries`, lengths at ``model_rate``)."""
    if is_memory_input(inputs):
        return array_entries(inputs, model_rate, arrays)
    if arrays is not None and arrays.sample_rate is not None:
        raise ExtractionError("sample_rate is for audio in memory (arrays, a dataset): files carry their own rate")
    if isinstance(inputs, str | os.PathLike):
        path = Path(inputs)
        if path.is_dir():
            scan = scan_audio_dir(path, tuple(extensions), progress=progress)
            if not scan.entries and not scan.failures:
                raise ExtractionError(no_audio_message(path, extensions, "--ext"))
            if scan.failures:
                shown = "; ".join(f"{p}: {why}" for p, why in scan.failures[:5])
                warnings.warn(f"{len(scan.failures)} files under {path} cannot be used: {shown}", stacklevel=3)
            entries = scan.entries
        elif path.is_file():
            entries = read_manifest(path)
        else:
            raise ExtractionError(f"no manifest or folder at {path}")
    else:
        entries = list(inputs)
        if not all(isinstance(e, ManifestEntry) for e in entries):
            raise ExtractionError("inputs must be a manifest path, a folder, a list of ManifestEntry, or audio in "
                                  "memory (an array, a list or dict of arrays, a datasets.Dataset)")
        ids = [e.fileid for e in entries]
        if len(set(ids)) != len(ids):
            raise ExtractionError("the same file id appears more than once in the inputs")
    if not entries:
        raise ExtractionError(f"no audio files in {inputs}")
    return entries


def load_batch(batch: list[ManifestEntry], sample_rate: int, skip_bad: bool = False) -> tuple[Decoded, Bad]:
    """The waveforms of one batch at ``sample_rate``, and the files that cannot be decoded: with
    ``skip_bad`` they are returned with their reason, else the first one is an ExtractionError."""
    out, bad = [], []
    for e in batch:
        try:
            out.append((e, e.waveform(sample_rate) if isinstance(e, ArrayEntry) else load_audio(e.path, sample_rate)))
        except AudioError as err:
            if skip_bad:
                bad.append((e, str(err)))
                continue
            raise ExtractionError(
                f"{e.fileid}: {err} (fix or remove it from the inputs and resume, or pass --skip-bad "
                "(skip_bad=True) to list the bad files in OUT/skipped.tsv and extract the others)"
            ) from err
    return out, bad


def load_batches(
    batches: list[list[ManifestEntry]], sample_rate: int, num_workers: int, skip_bad: bool = False
) -> Iterator[tuple[Decoded, Bad]]:
    """Decoded batches in order. With workers, up to ``2 * num_workers`` batches are decoded ahead on
    threads (libsndfile and soxr release the GIL), which needs no fork/spawn and no ``__main__`` guard."""
    if num_workers <= 0:
        for batch in batches:
            yield load_batch(batch, sample_rate, skip_bad)
        return
    with ThreadPoolExecutor(num_workers, thread_name_prefix="spidrkit-audio") as pool:
        ahead: deque = deque()
        todo = iter(batches)
        for batch in todo:
            ahead.append(pool.submit(load_batch, batch, sample_rate, skip_bad))
            if len(ahead) >= 2 * num_workers:
                break
        while ahead:
            result = ahead.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                ahead.append(pool.submit(load_batch, nxt, sample_rate, skip_bad))
            yield result
