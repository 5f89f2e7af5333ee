"""One optimisation step of SpidR / DinoSR pretraining, with data parallelism and gradient accumulation.

``Stepper.step(micro_batches)`` does, in order (the training step of docs/method.md):
  1. forward + backward of every micro-batch, the loss normalised by the masked frames of ALL
     micro-batches of ALL ranks (so 2 ranks x 1 batch == 1 rank x 2 micro-batches);
  2. all-reduce of the codebook statistics and metrics, gradient clipping;
  3. when the loss and the gradient norm are finite: codebook EMA update, AdamW step with the learning
     rate of the schedule, teacher EMA with the decay of the schedule (after the optimiser step; the
     decay of step ``t + teacher.decay_offset``, 1 for the release, which counts the step first).
     With ``train.codebook_update = "per_micro_batch"`` (the release) the codebooks move instead right
     after each micro-batch's forward, from its statistics all-reduced over the ranks (statistics that
     are not finite move nothing); the step's own finiteness is not known yet then.
     ``optim.weight_decay_scope``: ``matrices`` exempts the 1-d parameters from weight decay, ``all``
     (the release) decays every parameter.
     A non-finite step changes no weight and no codebook and is counted (``consecutive_nonfinite``,
     ``total_nonfinite``); the step counter still advances. On CUDA, where the decision stays on the
     device, the teacher still takes its EMA step towards the (unchanged) student.
Nothing in it waits on the device: metrics stay tensors until the caller logs them.
:func:`compile_model` compiles the model region by region for these steps (``train.compile``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from spidrkit.config import Config
from spidrkit.models.schedules import learning_rate, teacher_decay
from spidrkit.models.spidr import SpidR, step_perplexities
from spidrkit.runtime import all_reduce_dict, all_reduce_sum, world


@dataclass
class MicroBatch:
    wav: torch.Tensor  # (B, L) standardised, equal length
    mask: torch.Tensor  # (B, T) bool
    student_wav: torch.Tensor | None = None  # (B, L) the student's perturbed copy (data.voice_perturb = praat)
    warp: torch.Tensor | None = None  # (B,) VTLP factors of the student's filterbank (data.voice_perturb = vtlp)


def compile_model(model: SpidR, recompile_limit: int = 64) -> None:
    """Regional ``torch.compile``: each Transformer block and downsampler layer is compiled on its own (in
    place, so state-dict names do not change), with dynamic shapes from the start. (The positional
    convolution, under 1 % of the FLOPs, stays eager: its grouped convolutions recompile per length.)

    All blocks share their compiled graphs and the model is never traced whole: layer drop only skips
    calls, and new batch sizes and lengths reuse the dynamic graphs. A few variants per region remain
    (training with gradients, the no-grad teacher, evaluation; the kernel size of each downsampler layer;
    batches of one), more than dynamo's default of 8 per function, hence the higher ``recompile_limit``.
    """
    import torch._dynamo

    conf = torch._dynamo.config
    name = "recompile_limit" if hasattr(conf, "recompile_limit") else "cache_size_limit"
    setattr(conf, name, max(getattr(conf, name), recompile_limit))
    for enc in (model.student, model.teacher):
        for block in enc.layers:
            block.compile(dynamic=True)
    for layer in getattr(model.feature_extractor, "conv_layers", ()):  # none in the log-mel front end
        layer.compile(dynamic=True)


def _step_metrics(red: dict[str, torch.Tensor], loss_value: torch.Tensor, grad_norm: torch.Tensor,
                  finite: torch.Tensor, lr: float, beta: float) -> dict[str, torch.Tensor]:
    """What a step reports, as tensors (nothing waits on the device): from the reduced statistics ``red``."""
    cb_ppl, pred_ppl = step_perplexities(red)
    per_layer_ce = red["ce_sum"] / red["num_masked"].clamp_min(1.0)
    return {
        "loss": loss_value,
        "loss_per_layer": per_layer_ce,
        "accuracy": red["correct"] / red["num_masked"].clamp_min(1.0),
        "codebook_ppl": cb_ppl,
        "prediction_ppl": pred_ppl,
        "grad_norm": grad_norm,
        "masked_fraction": red["num_masked"] / red["frames"].clamp_min(1.0),
        "finite": finite,
        "lr": torch.tensor(lr, dtype=torch.float64),
        "teacher_decay": torch.tensor(beta, dtype=torch.float64),
    }


class Stepper:
    """Owns the optimiser and the DDP wrapper of a SpidR model; ``step`` runs one training step."""

    def __init__(self, model: SpidR, cfg: Config, device: torch.device, step: int = 0) -> None:
        self.model = model
        self.cfg = cfg
        self.device = device
        self.step_count = step
        self.rank, self.world_size = world()
        self.autocast_dtype = torch.bfloat16 if cfg.train.precision == "bf16" else None
        if self.autocast_dtype is not None and device.type == "cpu":
            self.autocast_dtype = None  # bf16 on CPUs without bf16 units is 10-25x slower (docs/fidelity.md)
        self.capturable = device.type == "cuda"
        self.features_frozen = step >= cfg.optim.freeze_feature_step
        if self.features_frozen:
            model.feature_extractor.requires_grad_(False)
            model.feature_projection.requires_grad_(False)
        self._lr = torch.tensor(learning_rate(step, cfg.optim), device=device) if self.capturable else None
        self.optimizer = self._make_optimizer()
        self.ddp = self._wrap()
        self.consecutive_nonfinite = torch.zeros((), device=device)
        self.total_nonfinite = torch.zeros((), device=device)

    # --------------------------------------------------------------- set-up
    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg.optim
        params = self.model.trainable_parameters(include_features=not self.features_frozen)
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay}, {"params": no_decay}]
        self._set_weight_decay(groups)
        kwargs = dict(betas=o.betas, eps=o.eps, foreach=True)
        if self.capturable:
            return torch.optim.AdamW(groups, lr=self._lr, capturable=True, **kwargs)
        return torch.optim.AdamW(groups, lr=learning_rate(self.step_count, o), **kwargs)

    def _set_weight_decay(self, groups: list[dict]) -> None:
        """The matrices' group decays; the 1-d parameters' group only with ``optim.weight_decay_scope = "all"``
        (set again after a resume, so that the config, not the checkpoint, decides)."""
        o = self.cfg.optim
        groups[0]["weight_decay"] = o.weight_decay
        groups[1]["weight_decay"] = o.weight_decay if o.weight_decay_scope == "all" else 0.0

    def _wrap(self) -> nn.Module:
        if self.world_size == 1:
            return self.model
        return DDP(
            self.model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            broadcast_buffers=False,  # codebooks are kept identical by all-reducing their statistics
            find_unused_parameters=self.model.cfg.layerdrop > 0,
        )

    def freeze_features(self) -> None:
        """Freeze the downsampler and projection: they leave the optimiser (state dropped) and DDP."""
        if self.features_frozen:
            return
        self.features_frozen = True
        self.model.feature_extractor.requires_grad_(False)
        self.model.feature_projection.requires_grad_(False)
        old = self.optimizer
        self.optimizer = self._make_optimizer()
        keep = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        for p, s in old.state.items():
            if id(p) in keep:
                self.optimizer.state[p] = s
        if isinstance(self.ddp, DDP):
            self.ddp = self._wrap()

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # --------------------------------------------------------------- step
    def step(self, micro_batches: list[MicroBatch]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        if self.step_count >= cfg.optim.freeze_feature_step:
            self.freeze_features()
        self.model.train()
        K = self.model.cfg.num_codebooks
        # Global masked-frame count, summed over micro-batches and ranks on the device (no host sync).
        masks = [mb.mask.to(self.device, non_blocking=True) for mb in micro_batches]
        local_masked = torch.stack([m.sum() for m in masks]).sum().float()
        if self.step_count == 0 and self.model.cfg.codebook_init == "data":
            self._init_codebooks(micro_batches, masks)
        total_masked = all_reduce_sum(local_masked.clone()).clamp_min(1.0)
        scale = self.world_size / (K * total_masked)  # DDP averages gradients over ranks

        per_micro_batch = cfg.train.codebook_update == "per_micro_batch"
        acc = self._forward_backward(micro_batches, masks, scale, per_micro_batch)
        red = all_reduce_dict(acc)  # one all-reduce for the codebook statistics and the metrics

        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip_norm, foreach=True)
        loss_value = red["ce_sum"].sum() / (K * red["num_masked"].clamp_min(1.0))
        finite = torch.isfinite(loss_value) & torch.isfinite(grad_norm)

        if not per_micro_batch:  # a non-finite step contributes no statistics (zero counts: no codeword moves)
            self._update_codebooks(red, finite)
        lr = learning_rate(self.step_count, cfg.optim)
        self._optimizer_step(params, finite, lr)

        beta = teacher_decay(self.step_count + cfg.teacher.decay_offset, cfg.teacher)
        if self.capturable or bool(finite):
            self.model.update_teacher(beta)
        self.step_count += 1
        self.model.current_step.fill_(self.step_count)
        return _step_metrics(red, loss_value, grad_norm, finite, lr, beta)

    def _forward_backward(self, micro_batches: list[MicroBatch], masks: list[torch.Tensor], scale: torch.Tensor,
                          per_micro_batch: bool) -> dict[str, torch.Tensor]:
        """Forward and backward of each micro-batch (gradients all-reduced by DDP after the last one only), the
        loss scaled by ``scale``; returns this rank's summed statistics and metrics (``frames`` among them). With
        ``per_micro_batch`` the codebooks move after each forward, from its statistics all-reduced over ranks."""
        acc: dict[str, torch.Tensor] = {
            "frames": torch.tensor(float(sum(m.numel() for m in masks))).to(self.device, non_blocking=True)
        }
        for i, (mb, mask) in enumerate(zip(micro_batches, masks)):
            wav = mb.wav.to(self.device, non_blocking=True)
            perturbed = {k: v.to(self.device, non_blocking=True) for k, v in
                         (("student_wav", mb.student_wav), ("warp", mb.warp)) if v is not None}
            last = i == len(micro_batches) - 1
            sync = contextlib.nullcontext() if last or not isinstance(self.ddp, DDP) else self.ddp.no_sync()
            with sync:
                with self.autocast():
                    out = self.ddp(wav, mask, freeze_features=self.features_frozen, **perturbed)
                loss = out["ce_sum"].sum() * scale
                loss.backward()
            if per_micro_batch:
                self._update_codebooks(all_reduce_dict({"sums": out["sums"], "counts": out["counts"]}), None)
            for k in ("ce_sum", "num_masked", "sums", "counts", "correct", "prob_sum"):
                v = out[k].detach().float()
                acc[k] = acc[k] + v if k in acc else v
        return acc

    def _optimizer_step(self, params: list[torch.Tensor], finite: torch.Tensor, lr: float) -> None:
        """The AdamW step at ``lr``, skipped when not ``finite`` (on CUDA, on the device: zero gradients and a zero
        learning rate), then the gradients cleared and the non-finite counters updated."""
        if self.capturable:
            for p in params:
                p.grad.copy_(torch.where(finite, p.grad, torch.zeros_like(p.grad)))
            self._lr.copy_(finite.float() * lr)
            self.optimizer.step()
        else:
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            if bool(finite):  # a CPU tensor: no device synchronisation
                self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.consecutive_nonfinite = (self.consecutive_nonfinite + 1) * (~finite).float()
        self.total_nonfinite = self.total_nonfinite + (~finite).float()

    def _init_codebooks(self, micro_batches: list[MicroBatch], masks: list[torch.Tensor]) -> None:
        """``model.codebook_init = "data"``: the codewords drawn from this first step's teacher targets
        (generator seeded with ``train.seed``) on rank 0 and broadcast, so every rank has the same."""
        generator = torch.Generator().manual_seed(self.cfg.train.seed)
        with torch.no_grad(), self.autocast():
            self.model.init_codebooks([(mb.wav.to(self.device), m) for mb, m in zip(micro_batches, masks)],
                                      generator)
        if self.world_size > 1:
            import torch.distributed as dist

            for cb in self.model.codebooks:
                dist.broadcast(cb.codebook, 0)
                dist.broadcast(cb.counts, 0)

    def _update_codebooks(self, stats: dict[str, torch.Tensor], finite: torch.Tensor | None) -> None:
        """EMA of the codebooks from reduced statistics; nothing moves unless ``finite`` (None: unless the
        statistics themselves are finite). The decision stays on the device."""
        sums, counts = stats["sums"].float(), stats["counts"].float()
        if finite is None:
            finite = torch.isfinite(sums).all() & torch.isfinite(counts).all()
        self.model.update_codebooks(torch.where(finite, sums, 0.0), torch.where(finite, counts, 0.0))

    # --------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "step": self.step_count,
                "features_frozen": self.features_frozen,
                "total_nonfinite": float(self.total_nonfinite),
                "consecutive_nonfinite": float(self.consecutive_nonfinite)}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        if state.get("features_frozen") and not self.features_frozen:
            self.freeze_features()
        self.optimizer.load_state_dict(state["optimizer"])
        self._set_weight_decay(self.optimizer.param_groups)
        if self.capturable:
            for g in self.optimizer.param_groups:
                g["lr"] = self._lr
        self.total_nonfinite.fill_(float(state.get("total_nonfinite", 0.0)))
        self.consecutive_nonfinite.fill_(float(state.get("consecutive_nonfinite", 0.0)))
