"""Length-bucketed batches without padding (``docs/method.md``, the paper's appendix).

Files are sorted by length and cut into ``num_buckets`` buckets of equal count. Each epoch, files are
shuffled within their bucket and batches are filled from one bucket until one more file would exceed
the sample budget; a bucket that runs out before the budget is met is continued with the next one.
Since a batch is cropped to its shortest waveform (capped at ``max_samples``), the cost of a batch is
``batch size x shortest capped length``. The batch order is then shuffled and batches are dealt to
ranks round-robin (rank r takes batches r, r + W, ...), dropping the tail so every rank gets the same
number of batches (that number varies a little between epochs, as the shuffles change how full the
batches are; a training loop counts steps, not epochs). Everything is a function of (seed, epoch), so a run resumed from
:meth:`BucketBatchSampler.state_dict` sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch.utils.data

from spidrkit.config.validation import with_overrides


@dataclass(frozen=True)
class SamplerOptions:
    """How a :class:`BucketBatchSampler` forms and deals its batches, checked when built: the padded-sample
    budget of a batch (``max_batch_samples``, required), ``num_buckets`` length buckets, files shorter than
    ``min_samples`` dropped, crops capped at ``max_samples`` (default: the budget), the shuffles' ``seed``,
    this process's ``rank`` of ``world_size``, and ``shuffle`` (off: one fixed order, for validation)."""

    max_batch_samples: int
    num_buckets: int = 1000
    min_samples: int = 0
    max_samples: int | None = None
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    shuffle: bool = True

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={self.rank}, world_size={self.world_size}")
        if self.max_batch_samples < 1 or self.num_buckets < 1:
            raise ValueError("max_batch_samples and num_buckets must be >= 1")


def sampler_options(options: SamplerOptions | None = None, **overrides: Any) -> SamplerOptions:
    """``options`` with ``overrides`` of its fields (:func:`~spidrkit.config.validation.with_overrides`); without
    ``options``, the fields as keywords (``max_batch_samples`` among them)."""
    if options is None:
        return SamplerOptions(**overrides)
    return with_overrides(SamplerOptions, options, overrides, "BucketBatchSampler")


class BucketBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of manifest indices, bucketed by length, for one rank; resumable.

    ``iter(sampler)`` yields the remaining batches of the current epoch and then moves to the next
    epoch, so it can serve as a DataLoader ``batch_sampler`` (one epoch per pass);
    :meth:`iter_batches` never ends. ``epoch`` and ``position`` (batches of the epoch already handed
    out) are what :meth:`state_dict` stores.

    The crop cap is ``min(max_samples, max_batch_samples)`` so that every batch, even a single long
    file, fits the budget; the dataset must crop with :attr:`crop_cap`.
    """

    def __init__(self, lengths: Sequence[int] | np.ndarray, options: SamplerOptions | None = None,
                 **overrides: Any) -> None:
        opts = sampler_options(options, **overrides)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1:
            raise ValueError("lengths must be a 1-D sequence of sample counts")
        self.max_batch_samples = int(opts.max_batch_samples)
        self.min_samples = int(opts.min_samples)
        self.max_samples = int(opts.max_samples) if opts.max_samples is not None else self.max_batch_samples
        self.crop_cap = min(self.max_samples, self.max_batch_samples)
        self.seed = int(opts.seed)
        self.rank = opts.rank
        self.world_size = opts.world_size
        self.shuffle = opts.shuffle

        kept = np.flatnonzero(self.lengths >= self.min_samples)
        self.num_dropped = len(self.lengths) - len(kept)
        order = kept[np.argsort(self.lengths[kept], kind="stable")]
        self.num_buckets = min(opts.num_buckets, max(len(order), 1))
        self.buckets = np.array_split(order, self.num_buckets)
        self._capped = np.minimum(self.lengths, self.crop_cap)
        self._lengths_digest = hashlib.sha256(self.lengths.tobytes()).hexdigest()[:16]

        self.epoch = 0
        self.position = 0
        self._cache: tuple[int, list[list[int]]] | None = None
        self._counts: dict[int, int] = {}  # epoch -> batches per rank (a few ints, kept for every epoch seen)
        self.num_batches(0)

    # ---------------------------------------------------------------- batches
    def _all_batches(self, epoch: int) -> list[list[int]]:
        """Every batch of ``epoch`` over all ranks, in the epoch's (shuffled) order."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))
        if self.shuffle:
            stream = np.concatenate([rng.permutation(b) for b in self.buckets])
        else:
            stream = np.concatenate(self.buckets)
        batches: list[list[int]] = []
        batch: list[int] = []
        shortest = 0
        budget = self.max_batch_samples
        capped = self._capped
        for i in stream.tolist():
            length = int(capped[i])
            new_shortest = min(shortest, length) if batch else length
            if batch and (len(batch) + 1) * new_shortest > budget:
                batches.append(batch)
                batch, new_shortest = [], length
            batch.append(i)
            shortest = new_shortest
        if batch:
            batches.append(batch)
        if self.shuffle:
            batches = [batches[j] for j in rng.permutation(len(batches)).tolist()]
        return batches

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch``: batches r, r + W, ... of the epoch, tail dropped.

        The number of batches varies a little from epoch to epoch (the shuffles change how full the
        batches are); within an epoch every rank has the same number.
        """
        if self._cache is None or self._cache[0] != epoch:
            every = self._all_batches(epoch)
            n = len(every) // self.world_size
            if n == 0:
                raise ValueError(
                    f"{sum(len(b) for b in self.buckets)} usable files (of {len(self.lengths)}; "
                    f"{self.num_dropped} under min_samples={self.min_samples}) make {len(every)} batches, "
                    f"fewer than the {self.world_size} ranks"
                )
            self._counts[epoch] = n
            self._cache = (epoch, every[: n * self.world_size][self.rank :: self.world_size])
        return self._cache[1]

    def num_batches(self, epoch: int | None = None) -> int:
        """Batches of this rank in ``epoch`` (default: the current epoch)."""
        epoch = self.epoch if epoch is None else epoch
        if epoch not in self._counts:
            self.epoch_batches(epoch)
        return self._counts[epoch]

    def __len__(self) -> int:
        """Batches of this rank in the current epoch."""
        return self.num_batches()

    def _normalise(self) -> None:
        if self.position >= self.num_batches(self.epoch):
            self.epoch += 1
            self.position = 0

    def __iter__(self) -> Iterator[list[int]]:
        """The remaining batches of the current epoch; afterwards the sampler is at the next epoch."""
        self._normalise()
        epoch = self.epoch
        batches = self.epoch_batches(epoch)
        while self.epoch == epoch and self.position < len(batches):
            self.position += 1  # counted as handed out as soon as it is yielded
            yield list(batches[self.position - 1])
        if self.epoch == epoch:
            self._normalise()

    def iter_batches(self) -> Iterator[tuple[int, int, list[int]]]:
        """Forever: ``(epoch, position, indices)`` for each batch, epoch after epoch."""
        while True:
            self._normalise()
            epoch, start = self.epoch, self.position
            for k, batch in enumerate(self):
                yield epoch, start + k, batch

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch (for DataLoader loops that set the epoch themselves)."""
        self.epoch, self.position = int(epoch), 0

    # ---------------------------------------------------------------- state
    def fingerprint(self) -> dict[str, Any]:
        """What must match for a saved position to mean the same batches (the rank is not part of it)."""
        return {
            "seed": self.seed,
            "world_size": self.world_size,
            "num_files": len(self.lengths),
            "lengths_sha256": self._lengths_digest,
            "num_buckets": self.num_buckets,
            "max_batch_samples": self.max_batch_samples,
            "min_samples": self.min_samples,
            "max_samples": self.max_samples,
            "shuffle": self.shuffle,
        }

    def state_dict(self) -> dict[str, Any]:
        """``epoch`` and ``position`` (batches already handed out) plus the :meth:`fingerprint`."""
        self._normalise()
        return {"epoch": self.epoch, "position": self.position, **self.fingerprint()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Resume at ``state``. A different data set or setting cannot resume mid-epoch: with ``strict``
        that is an error naming what changed, otherwise a warning and a fresh start of the next epoch."""
        mine = self.fingerprint()
        changed = [k for k in mine if k in state and state[k] != mine[k]]
        epoch, position = int(state["epoch"]), int(state["position"])
        if changed:
            what = ", ".join(f"{k}: {state[k]!r} -> {mine[k]!r}" for k in changed)
            if strict:
                raise ValueError(f"cannot resume the batch sampler exactly, its settings changed ({what})")
            epoch, position = epoch + (position > 0), 0
            warnings.warn(
                f"batch sampler settings changed ({what}); resuming at the start of epoch {epoch}",
                stacklevel=2,
            )
        if position < 0 or position > self.num_batches(epoch):
            raise ValueError(f"position {position} outside epoch {epoch} of {self.num_batches(epoch)} batches")
        self.epoch, self.position = epoch, position
        self._normalise()
