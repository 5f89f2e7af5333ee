"""Schedules as pure functions of the step: teacher EMA decay and the tri-stage learning rate."""

from __future__ import annotations

import math

from spidrkit.config import OptimConfig, TeacherConfig


def teacher_decay(step: int, cfg: TeacherConfig) -> float:
    """The teacher's EMA decay beta at ``step``; 1.0 means frozen (the teacher no longer moves).

    exponential (SpidR): beta_t = 1 - (1 - beta0) exp(-t / T), frozen once 1 - beta_t < threshold.
    linear (DinoSR): beta0 -> beta_end linearly over ``ramp_steps``, then constant; frozen at
    ``freeze_step``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if cfg.schedule == "exponential":
        gap = (1.0 - cfg.beta0) * math.exp(-step / cfg.timescale)
        return 1.0 if gap < cfg.freeze_threshold else 1.0 - gap
    if cfg.schedule == "linear":
        if step >= cfg.freeze_step:
            return 1.0
        if step >= cfg.ramp_steps:
            return cfg.beta_end
        return cfg.beta0 + (cfg.beta_end - cfg.beta0) * step / cfg.ramp_steps
    raise ValueError(f"unknown teacher schedule {cfg.schedule!r}")


def teacher_freeze_step(cfg: TeacherConfig) -> int:
    """First step at which the teacher is frozen."""
    if cfg.schedule == "exponential":
        # (1 - beta0) exp(-t/T) < threshold  <=>  t > T ln((1 - beta0) / threshold)
        t = cfg.timescale * math.log((1.0 - cfg.beta0) / cfg.freeze_threshold)
        step = max(math.floor(t), 0)
        while teacher_decay(step, cfg) < 1.0:
            step += 1
        return step
    return cfg.freeze_step


def learning_rate(step: int, cfg: OptimConfig) -> float:
    """Tri-stage: linear warm-up from lr*init_scale, hold at lr, exponential decay to lr*final_scale."""
    peak = cfg.lr
    if step < cfg.warmup_steps:
        start = peak * cfg.init_lr_scale
        return start + (peak - start) * step / cfg.warmup_steps
    step -= cfg.warmup_steps
    if step < cfg.hold_steps:
        return peak
    step -= cfg.hold_steps
    if step < cfg.decay_steps:
        return peak * math.exp(math.log(cfg.final_lr_scale) * step / cfg.decay_steps)
    return peak * cfg.final_lr_scale
