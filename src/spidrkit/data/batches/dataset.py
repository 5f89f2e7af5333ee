"""Training and validation batches: load, standardise, crop to the shortest waveform, never pad.

A batch is described by ``(epoch, position, indices)`` (from :class:`~spidrkit.data.batches.sampler.
BucketBatchSampler`); :class:`BatchDataset` turns one description into one batch, so the DataLoader runs
with ``batch_size=None`` and workers build whole batches. Each waveform is standardised over the whole
utterance BEFORE cropping (``docs/method.md``), then every waveform is cropped to the batch's shortest one (capped
at ``max_samples``) at a random offset drawn from an RNG seeded by (seed, epoch, position, rank): the
crops do not depend on worker scheduling and are the same after a resume.

A bad file (unreadable, empty, too short once decoded, or anything else that fails while loading) is
dropped from its batch, logged once per process, and listed in ``RUN_DIR/skipped.tsv``; a run never
dies on one file. A batch whose files are all bad comes back empty (``len(batch["fileids"]) == 0``,
``wav`` of shape (0, 0)) and still carries its ``index`` so the position keeps advancing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from spidrkit.config import SAMPLE_RATE, DataConfig
from spidrkit.config.validation import with_overrides
from spidrkit.data.batches.sampler import BucketBatchSampler
from spidrkit.data.corpora.audio import AudioError, load_audio, standardize
from spidrkit.data.corpora.manifest import ManifestEntry, evenly_spaced
from spidrkit.io import temp_path

logger = logging.getLogger(__name__)

SKIPPED_NAME = "skipped.tsv"
SKIPPED_HEADER = "fileid\tpath\treason\n"

Batch = dict[str, Any]
CollateHook = Callable[[Batch], Batch]


class SkipLog:
    """Appends ``fileid<TAB>path<TAB>reason`` lines to ``run_dir/skipped.tsv`` (one per file and process).

    Lines are written with single ``O_APPEND`` writes, so worker processes and ranks can share the file.
    A file already listed (by an earlier process: a resumed run or a rerun) is logged but not listed twice.
    Without a ``run_dir`` files are only logged.
    """

    def __init__(self, run_dir: str | os.PathLike | None) -> None:
        self.path = Path(run_dir) / SKIPPED_NAME if run_dir is not None else None
        self._seen: set[str] = set()
        self._listed = {row[0] for row in read_skipped(run_dir)} if run_dir is not None else set()
        if self.path is not None and not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_path(self.path)
            tmp.write_text(SKIPPED_HEADER)
            try:
                os.link(tmp, self.path)  # atomic create-with-header; another rank may have won the race
            except FileExistsError:
                pass
            finally:
                tmp.unlink()

    def record(self, fileid: str, path: str, reason: str) -> None:
        if fileid in self._seen:
            return
        self._seen.add(fileid)
        logger.warning("skipping %s (%s): %s", fileid, path, reason)
        if self.path is None or fileid in self._listed:
            return
        line = "\t".join(" ".join(str(x).split()) for x in (fileid, path, reason)) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def read_skipped(run_dir: str | os.PathLike) -> list[tuple[str, str, str]]:
    """The ``(fileid, path, reason)`` rows of ``run_dir/skipped.tsv`` (empty if there is none)."""
    path = Path(run_dir) / SKIPPED_NAME
    if not path.is_file():
        return []
    rows = [tuple(line.split("\t", 2)) for line in path.read_text().splitlines()[1:] if line]
    return [r for r in rows if len(r) == 3]  # type: ignore[misc]


class AudioDataset(torch.utils.data.Dataset):
    """Item ``i``: the waveform of ``entries[i]`` at ``sample_rate``, standardised if asked.

    Raises :class:`AudioError` for a bad file, including one shorter than ``min_samples`` once decoded.
    """

    def __init__(
        self,
        entries: Sequence[ManifestEntry],
        sample_rate: int = SAMPLE_RATE,
        standardize: bool = True,
        min_samples: int = 0,
    ) -> None:
        self.entries = list(entries)
        self.sample_rate = sample_rate
        self.standardize = standardize
        self.min_samples = min_samples

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> torch.Tensor:
        e = self.entries[i]
        wav = load_audio(e.path, self.sample_rate)
        if wav.shape[0] < self.min_samples:
            raise AudioError(f"{e.path}: {wav.shape[0]} samples once decoded, under min_samples={self.min_samples}")
        return standardize(wav) if self.standardize else wav


def crop_batch(
    wavs: Sequence[torch.Tensor], max_samples: int, rng: np.random.Generator | None = None
) -> tuple[torch.Tensor, list[int]]:
    """Crop every 1-D waveform to the shortest one (at most ``max_samples``) and stack them: (B, L).

    Offsets are drawn uniformly from ``rng`` (every offset in ``[0, len - L]`` equally likely), or are
    centred when ``rng`` is None. Returns the batch and the offsets.
    """
    if not wavs:
        return torch.zeros(0, 0), []
    size = min(min(int(w.shape[0]) for w in wavs), max_samples)
    offsets = [
        int(rng.integers(0, w.shape[0] - size + 1)) if rng is not None else (w.shape[0] - size) // 2 for w in wavs
    ]
    return torch.stack([w[o : o + size] for w, o in zip(wavs, offsets)]), offsets


def crop_rng(seed: int, epoch: int, position: int, rank: int) -> np.random.Generator:
    """The crop RNG of one batch: a function of where the batch is, not of what ran before it."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, position, rank]))


def batch_rng(seed: int, stream: int, index: tuple[int, int], rank: int, world_size: int) -> np.random.Generator:
    """The RNG of one batch's draws in a ``stream`` (0: training masks, 1: validation masks, 2: voice
    perturbation): keyed by (seed, stream, epoch, global batch index ``position * world_size + rank``), so a
    resumed run draws the same and one process with ``grad_accum = W`` draws what W processes draw."""
    epoch, position = index
    key = [seed, stream, int(epoch), int(position) * world_size + rank]
    return np.random.default_rng(np.random.SeedSequence(key))


def _identity(x: Any) -> Any:
    return x


class BatchDataset(torch.utils.data.Dataset):
    """Item ``(epoch, position, indices)``: the batch dict of those manifest indices.

    ``{"wav": (B, L) float32, "fileids": [...], "index": (epoch, position), "offsets": [...],
    "skipped": [(fileid, reason), ...]}``; ``collate_hook`` (run in the worker, so it must be picklable
    when workers are spawned) may add keys, e.g. masks, to a non-empty batch.
    """

    def __init__(
        self,
        audio: AudioDataset,
        max_samples: int,
        seed: int = 0,
        rank: int = 0,
        random_crop: bool = True,
        skip_log: SkipLog | None = None,
        collate_hook: CollateHook | None = None,
    ) -> None:
        self.audio = audio
        self.max_samples = max_samples
        self.seed = seed
        self.rank = rank
        self.random_crop = random_crop
        self.skip_log = skip_log or SkipLog(None)
        self.collate_hook = collate_hook

    def __getitem__(self, key: tuple[int, int, Sequence[int]]) -> Batch:
        epoch, position, indices = key
        wavs, fileids, skipped = [], [], []
        for i in indices:
            entry = self.audio.entries[i]
            try:
                wavs.append(self.audio[i])
                fileids.append(entry.fileid)
            except Exception as e:  # one bad file must never end a run
                reason = str(e) if isinstance(e, AudioError) else f"{type(e).__name__}: {e}"
                self.skip_log.record(entry.fileid, entry.path, reason)
                skipped.append((entry.fileid, reason))
        rng = crop_rng(self.seed, epoch, position, self.rank) if self.random_crop else None
        wav, offsets = crop_batch(wavs, self.max_samples, rng)
        batch = {
            "wav": wav,
            "fileids": fileids,
            "index": (epoch, position),
            "offsets": offsets,
            "skipped": skipped,
        }
        if fileids and self.collate_hook is not None:
            batch = self.collate_hook(batch)
        return batch


def _data_loader(
    dataset: BatchDataset,
    keys: torch.utils.data.Sampler | Sequence,
    num_workers: int,
    pin_memory: bool | None,
    persistent: bool,
) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        sampler=keys,
        collate_fn=_identity,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=persistent and num_workers > 0,
    )


def _delivered(batch: Batch) -> Batch:
    batch["index"] = tuple(batch["index"])  # pin_memory turns tuples into lists
    batch["skipped"] = [tuple(s) for s in batch["skipped"]]
    return batch


class _ForeverKeys(torch.utils.data.Sampler):
    def __init__(self, sampler: BucketBatchSampler) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int, list[int]]]:
        return self.sampler.iter_batches()


class TrainLoader:
    """Batches forever, epoch after epoch; :meth:`state_dict` is the position after the last batch
    delivered to the caller (workers may have prepared more), so checkpoints resume exactly.

    Each ``iter()`` starts at that position, which makes ``for batch in loader`` after a ``break`` go on
    where it stopped.
    """

    def __init__(
        self,
        sampler: BucketBatchSampler,
        dataset: BatchDataset,
        num_workers: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        self.sampler = sampler
        self.dataset = dataset
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.epoch, self.position = sampler.epoch, sampler.position

    @property
    def batches_per_epoch(self) -> int:
        """Batches of the current epoch (it varies a little between epochs)."""
        return self.sampler.num_batches(self.epoch)

    def __iter__(self) -> Iterator[Batch]:
        self.sampler.epoch, self.sampler.position = self.epoch, self.position
        loader = _data_loader(self.dataset, _ForeverKeys(self.sampler), self.num_workers, self.pin_memory, True)
        for batch in loader:
            batch = _delivered(batch)
            epoch, position = batch["index"]
            self.epoch, self.position = epoch, position + 1
            if self.position >= self.sampler.num_batches(epoch):
                self.epoch, self.position = epoch + 1, 0
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, **self.sampler.fingerprint()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        self.sampler.load_state_dict(state, strict=strict)
        self.epoch, self.position = self.sampler.epoch, self.sampler.position


class ValidLoader:
    """One fixed pass over held-out batches: no shuffling, centred crops, the same batches every pass.

    Batches are formed in length order like the training batches; with ``max_batches`` an evenly spaced
    subset of them is kept so that short and long files are both represented.
    """

    def __init__(
        self,
        sampler: BucketBatchSampler,
        dataset: BatchDataset,
        max_batches: int | None = None,
        num_workers: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        batches = sampler.epoch_batches(0)
        picks = evenly_spaced(range(len(batches)), max_batches)
        self.keys = [(0, p, batches[p]) for p in picks]
        self.dataset = dataset
        self.num_workers = num_workers
        self.pin_memory = pin_memory

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[Batch]:
        for batch in _data_loader(self.dataset, self.keys, self.num_workers, self.pin_memory, False):
            yield _delivered(batch)


def _sampler(entries: Sequence[ManifestEntry], cfg: DataConfig, **kw: Any) -> BucketBatchSampler:
    if not entries:
        raise ValueError("the manifest lists no files")
    return BucketBatchSampler(
        [e.num_samples for e in entries],
        max_batch_samples=cfg.max_batch_samples,
        num_buckets=cfg.num_buckets,
        min_samples=cfg.min_samples,
        max_samples=cfg.max_samples,
        **kw,
    )


@dataclass(frozen=True)
class TrainLoaderOptions:
    """Where one process's training batches come from (:func:`make_train_loader`): its ``rank`` of
    ``world_size``, the shuffles' and crops' ``seed``, ``run_dir`` (for ``skipped.tsv``), a ``collate_hook``,
    ``start_state`` (a :meth:`TrainLoader.state_dict` to resume from; ``strict_resume``: a changed data set is
    an error, not a fresh epoch) and ``pin_memory`` (default: when CUDA is available)."""

    rank: int = 0
    world_size: int = 1
    seed: int = 0
    run_dir: str | os.PathLike | None = None
    collate_hook: CollateHook | None = None
    start_state: dict[str, Any] | None = None
    pin_memory: bool | None = None
    strict_resume: bool = True


def make_train_loader(entries: Sequence[ManifestEntry], cfg_data: DataConfig,
                      options: TrainLoaderOptions | None = None, **overrides: Any) -> TrainLoader:
    """The training batches of ``rank`` out of ``world_size``, forever, resumable from ``start_state``
    (a :meth:`TrainLoader.state_dict`). Bad files are listed in ``run_dir/skipped.tsv``. ``options``: a
    :class:`TrainLoaderOptions`, and/or its fields as keywords."""
    o = with_overrides(TrainLoaderOptions, options, overrides, "make_train_loader")
    sampler = _sampler(entries, cfg_data, seed=o.seed, rank=o.rank, world_size=o.world_size, shuffle=True)
    if o.start_state is not None:
        sampler.load_state_dict(o.start_state, strict=o.strict_resume)
    audio = AudioDataset(entries, cfg_data.sample_rate, cfg_data.standardize, cfg_data.min_samples)
    dataset = BatchDataset(
        audio,
        sampler.crop_cap,
        seed=o.seed,
        rank=o.rank,
        random_crop=True,
        skip_log=SkipLog(o.run_dir),
        collate_hook=o.collate_hook,
    )
    return TrainLoader(sampler, dataset, cfg_data.num_workers, o.pin_memory)


def make_valid_loader(
    entries: Sequence[ManifestEntry],
    cfg_data: DataConfig,
    rank: int = 0,
    world_size: int = 1,
    run_dir: str | os.PathLike | None = None,
    collate_hook: CollateHook | None = None,
    max_batches: int | None = None,
    *,
    pin_memory: bool | None = None,
) -> ValidLoader:
    """Deterministic validation batches of a held-out manifest (same budget and crop cap as training)."""
    sampler = _sampler(entries, cfg_data, rank=rank, world_size=world_size, shuffle=False)
    audio = AudioDataset(entries, cfg_data.sample_rate, cfg_data.standardize, cfg_data.min_samples)
    dataset = BatchDataset(
        audio,
        sampler.crop_cap,
        rank=rank,
        random_crop=False,
        skip_log=SkipLog(run_dir),
        collate_hook=collate_hook,
    )
    return ValidLoader(sampler, dataset, max_batches, cfg_data.num_workers, pin_memory)
