"""Online codebooks that follow the teacher by EMA (docs/method.md#codebook-update).

A codebook stores the EMA of the sums of the vectors assigned to each codeword (``codebook``, s)
and of their counts (``counts``, n); the codewords are C = s / n. Only chosen codewords move:
    s_v <- tau s_v + (1 - tau) sum_{i -> v} z_i,    n_v <- tau n_v + (1 - tau) count_v.

Opt-in, for long memories (tau near 1; the defaults keep the paper's method): ``init_from`` puts every
codeword on a frame of the data (``model.codebook_init = "data"``), and :func:`decay_at` ramps tau up
over ``model.codebook_decay_warmup`` steps, linearly in the memory length 1 / (1 - tau).
"""

from __future__ import annotations

import torch
from torch import nn


class Codebook(nn.Module):
    def __init__(self, size: int, dim: int, decay: float = 0.9) -> None:
        super().__init__()
        self.decay = decay
        # random codewords, each dimension standardised across the codebook
        init = torch.randn(size, dim)
        init = (init - init.mean(0)) / init.std(0, unbiased=False).clamp_min(1e-5)
        self.register_buffer("codebook", init)
        self.register_buffer("counts", torch.ones(size))

    @property
    def codewords(self) -> torch.Tensor:
        return self.codebook / self.counts.unsqueeze(1)

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codeword (euclidean) for each row of z (N, D); float32, no autocast."""
        with torch.autocast(z.device.type, enabled=False):
            c = self.codewords.float()
            z = z.float()
            # ||z - c||^2 = ||z||^2 - 2 z.c + ||c||^2 ; ||z||^2 does not change the argmin
            dist = (c * c).sum(1).unsqueeze(0) - 2.0 * (z @ c.t())
            return dist.argmin(dim=1)

    def statistics(
        self, z: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-codeword sums (V, D) and counts (V,) of the assigned vectors, float32.

        ``weights`` (N,) of 0/1 selects the rows that count (the masked frames in training), keeping
        shapes static instead of gathering a variable number of rows."""
        z = z.float()
        if weights is not None:
            z = z * weights.unsqueeze(1)
        sums = torch.zeros_like(self.codebook, dtype=torch.float32).index_add_(0, labels, z)
        counts = torch.bincount(labels, weights=weights, minlength=self.codebook.shape[0]).float()
        return sums, counts

    @torch.no_grad()
    def init_from(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Codewords := distinct rows of ``z`` (N, D) drawn with ``generator`` (a CPU generator), counts 1.
        With fewer rows than codewords every row is used and the rest are drawn again (duplicates).
        Returns the indices of the chosen rows."""
        size, n = self.codebook.shape[0], z.shape[0]
        if n == 0:
            raise ValueError("no frame to initialise the codebook from")
        idx = torch.randperm(n, generator=generator)[:size]
        if n < size:
            idx = torch.cat([idx, torch.randint(n, (size - n,), generator=generator)])
        self.codebook.copy_(z.float()[idx.to(z.device)].to(self.codebook))
        self.counts.fill_(1.0)
        return idx

    @torch.no_grad()
    def update(self, sums: torch.Tensor, counts: torch.Tensor, decay: float | torch.Tensor | None = None) -> None:
        """EMA step on chosen codewords only (counts > 0); sums/counts already reduced across ranks.
        ``decay``: this step's tau (:func:`decay_at`), ``self.decay`` when None."""
        tau = self.decay if decay is None else decay
        chosen = counts > 0
        self.codebook.copy_(torch.where(chosen.unsqueeze(1), tau * self.codebook + (1 - tau) * sums, self.codebook))
        self.counts.copy_(torch.where(chosen, tau * self.counts + (1 - tau) * counts, self.counts))


def decay_at(step: int | torch.Tensor, decay: float, start: float, warmup: int) -> float | torch.Tensor:
    """tau at ``step`` with a warm-up: the memory m = 1 / (1 - tau) grows linearly from 1 / (1 - start) at
    step 0 to 1 / (1 - decay) at step ``warmup``; ``decay`` from then on (and always when warmup is 0).
    A tensor ``step`` (the model's step counter) gives a float32 tensor on its device, without a host sync."""
    if warmup <= 0:
        return decay
    m0, m1 = 1.0 / (1.0 - start), 1.0 / (1.0 - decay)
    if isinstance(step, torch.Tensor):
        frac = step.double().clamp(max=warmup).squeeze() / warmup
        return (1.0 - 1.0 / (m0 + (m1 - m0) * frac)).float()
    frac = min(step, warmup) / warmup
    return 1.0 - 1.0 / (m0 + (m1 - m0) * frac)


def instance_norm(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Normalise each channel over time, per utterance: z (B, T, D), float32."""
    z = z.float()
    mean = z.mean(dim=1, keepdim=True)
    var = z.var(dim=1, unbiased=False, keepdim=True)
    return (z - mean) * torch.rsqrt(var + eps)


def perplexity(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """2^H(p) in bits for a probability vector (or a batch of them along ``dim``)."""
    p = p.float()
    h = -(p * torch.log2(p.clamp_min(1e-12))).sum(dim)
    return torch.exp2(h)
