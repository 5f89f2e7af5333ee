"""Span masking (the wav2vec 2.0 procedure with DinoSR's parameters; docs/method.md#masking).

Each row draws ``int(prob * n / length + U(0, 1))`` span starts (at least ``min_masks``) without
replacement among the first ``n - length`` frames; each start masks ``length`` frames (spans may
overlap). Every row then keeps the same number of masked frames: rows with more are subsampled, without
replacement, to the smallest count in the batch. With prob 0.8 and length 10 this masks about 54 % of
the frames of a 13.5 s utterance (675 frames), as the reference sampler does.
"""

from __future__ import annotations

import numpy as np
import torch


def sample_mask(
    batch_size: int,
    num_frames: int,
    prob: float = 0.8,
    length: int = 10,
    min_masks: int = 2,
    rng: np.random.Generator | int | None = None,
) -> torch.Tensor:
    """Boolean mask (batch_size, num_frames); True marks a masked frame. Same count in every row.

    ``rng`` is a numpy Generator or a seed: the function is deterministic given it, and runs on the
    host (in the data loader), so the training step never waits on it.
    """
    if num_frames < 1 or batch_size < 1:
        raise ValueError(f"need at least one row and one frame, got ({batch_size}, {num_frames})")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    span = min(length, num_frames)
    starts_range = max(num_frames - span, 1)
    rows: list[np.ndarray] = []
    for _ in range(batch_size):
        num_spans = int(prob * num_frames / span + rng.random())
        num_spans = min(max(num_spans, min_masks), starts_range)
        starts = rng.choice(starts_range, num_spans, replace=False)
        idx = (starts[:, None] + np.arange(span)[None, :]).reshape(-1)
        rows.append(np.unique(idx[idx < num_frames]))
    keep = min(len(r) for r in rows)
    mask = np.zeros((batch_size, num_frames), dtype=bool)
    for i, r in enumerate(rows):
        if len(r) > keep:
            r = rng.choice(r, keep, replace=False)
        mask[i, r] = True
    return torch.from_numpy(mask)


def masked_indices(mask: torch.Tensor) -> list[torch.Tensor]:
    """The masked frame indices of each row, sorted."""
    return [row.nonzero().squeeze(1) for row in mask]
