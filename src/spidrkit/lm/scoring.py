"""Log-likelihoods of unit sequences under a causal unit LM (a ``transformers`` model such as OPT).

:func:`score` encodes each utterance with the LM's :class:`~spidrkit.lm.vocab.UnitVocab` (``bos``, the
de-duplicated units as tokens, ``eos``) and sums ``log p(token | tokens before it)`` over the predicted
tokens: the ``n`` units and ``eos``; ``bos`` is given, never predicted. The token-normalised score (the
default, as in the paper) divides that sum by ``n + 1``; ``normalize=False`` returns the sum.

Sequences are sorted by length and batched under a budget of padded tokens (``batch_tokens``), padded on
the right with ``pad`` and an attention mask: padded positions are neither attended to nor counted, so a
batched score equals the sequence's score alone (to float rounding; a test checks 1e-5). Log-softmax is
taken in float32 whatever the model's dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from spidrkit.errors import InputError
from spidrkit.lm.vocab import PAD, UnitVocab

DEFAULT_BATCH_TOKENS = 16384


class ScoringError(InputError):
    """A sequence the LM cannot score (longer than its context)."""


def _context(model: Any) -> int | None:
    config = getattr(model, "config", None)
    n = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return int(n) if n else None


def _batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped by length (longest first) so that ``len(group) * longest <= batch_tokens`` (a sequence
    longer than the budget is a batch alone)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= batch_tokens:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _device(model: Any) -> torch.device:
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


@torch.inference_mode()
def token_log_probs(model: Any, batch: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, T-1)`` float32 ``log p(batch[:, t] | batch[:, :t])`` for ``t >= 1``, zero where ``mask`` is 0."""
    logits = model(input_ids=batch, attention_mask=mask).logits[:, :-1].float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, batch[:, 1:].unsqueeze(-1)).squeeze(-1)
    return torch.where(mask[:, 1:].bool(), logp, torch.zeros_like(logp))  # where, not *: 0 * -inf is nan


def score(
    model: Any,
    vocab: UnitVocab,
    sequences: Sequence[Sequence[int]],
    *,
    normalize: bool = True,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    names: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[float]:
    """The log-likelihood of each unit sequence under ``model`` (see the module doc), in input order.

    ``names[i]`` names sequence ``i`` in errors (units outside the vocabulary, longer than the LM's context);
    ``progress`` is told, after each batch, how many sequences are scored so far.
    """
    if batch_tokens < 1:
        raise ScoringError(f"batch_tokens must be >= 1, got {batch_tokens}")
    where = [names[i] if names is not None else f"sequence {i}" for i in range(len(sequences))]
    tokens = [vocab.encode(seq, where=where[i]) for i, seq in enumerate(sequences)]
    limit = _context(model)
    for i, t in enumerate(tokens):
        if limit is not None and len(t) > limit:
            raise ScoringError(f"{where[i]}: {len(t)} tokens (bos + {len(t) - 2} units + eos) exceed the LM's "
                               f"context of {limit}; use a shorter audio or an LM with a longer context")
    device = _device(model)
    out, done = [0.0] * len(tokens), 0
    for group in _batches([len(t) for t in tokens], batch_tokens):
        width = len(tokens[group[0]])
        batch = torch.full((len(group), width), PAD, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for b, i in enumerate(group):
            batch[b, : len(tokens[i])] = torch.tensor(tokens[i])
            mask[b, : len(tokens[i])] = 1
        sums = token_log_probs(model, batch.to(device), mask.to(device)).sum(-1).double().cpu()
        for b, i in enumerate(group):
            predicted = len(tokens[i]) - 1  # the units and eos
            out[i] = float(sums[b]) / predicted if normalize else float(sums[b])
        done += len(group)
        if progress is not None:
            progress(done)
    return out
