"""Validation during pretraining: loss, accuracy and perplexities on held-out batches.

The model runs in eval mode (no dropout) on the validation loader's batches, with the masks of the
validation stream of :class:`spidrkit.training.masks.MaskHook`, so every validation of a run sees the same
inputs. The sums of all ranks are reduced in one collective (:func:`spidrkit.runtime.all_reduce_dict`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

import torch

from spidrkit.data.batches.dataset import Batch
from spidrkit.io import json_safe
from spidrkit.models.spidr import SpidR, step_perplexities
from spidrkit.runtime import all_reduce_dict

SUMMED = ("ce_sum", "num_masked", "counts", "correct", "prob_sum")  # the model outputs added over batches


@torch.no_grad()
def validation_totals(
    model: SpidR,
    batches: Iterable[Batch | None],
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
) -> dict[str, torch.Tensor]:
    """The model's statistics summed over ``batches`` and over the ranks (dropout off meanwhile)."""
    K, V = model.cfg.num_codebooks, model.cfg.codebook_size
    acc = {
        "ce_sum": torch.zeros(K, device=device),
        "num_masked": torch.zeros((), device=device),
        "counts": torch.zeros(K, V, device=device),
        "correct": torch.zeros(K, device=device),
        "prob_sum": torch.zeros(K, V, device=device),
        "frames": torch.zeros((), device=device),
        "batches": torch.zeros((), device=device),
    }
    model.eval()
    try:
        for batch in batches:
            if batch is None or not batch["fileids"]:
                continue
            wav = batch["wav"].to(device, non_blocking=True)
            mask = batch["mask"].to(device, non_blocking=True)
            with autocast():
                out = model(wav, mask)
            for k in SUMMED:
                acc[k] += out[k].float()
            acc["frames"] += mask.numel()
            acc["batches"] += 1
    finally:
        model.train()
    return all_reduce_dict(acc)


def validation_record(totals: dict[str, torch.Tensor], step: int, layers: tuple[int, ...],
                      elapsed: float) -> dict[str, Any]:
    """The ``"split": "valid"`` metrics record of :func:`validation_totals`' sums, as JSON values."""
    K = totals["ce_sum"].numel()
    n = totals["num_masked"].clamp_min(1.0)
    cb_ppl, pred_ppl = step_perplexities(totals)
    record = {
        "split": "valid",
        "step": step,
        "layers": list(layers),
        "valid_loss": totals["ce_sum"].sum() / (K * n),
        "valid_loss_per_layer": totals["ce_sum"] / n,
        "valid_accuracy": totals["correct"] / n,
        "valid_codebook_ppl": cb_ppl,
        "valid_prediction_ppl": pred_ppl,
        "valid_masked_fraction": totals["num_masked"] / totals["frames"].clamp_min(1.0),
        "valid_batches": int(totals["batches"].item()),
        "elapsed": elapsed,
    }
    return json_safe(record)
