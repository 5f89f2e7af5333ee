"""The checks every :class:`~spidrkit.config.Config` passes when it is built; errors name the key."""

from __future__ import annotations

from typing import Any

from spidrkit.config.errors import ConfigError

HEADS = ("per_layer", "last_layer")
SCHEDULES = ("exponential", "linear")


def validate(cfg: Any) -> None:
    """Raise :class:`ConfigError` naming the key of the first wrong value of ``cfg`` (a ``Config``; not
    imported here, since the schema calls this from ``Config.__post_init__``)."""
    m = cfg.model
    if m.heads not in HEADS:
        raise ConfigError(f"model.heads: expected 'per_layer' or 'last_layer', got {m.heads!r}")
    if cfg.teacher.schedule not in SCHEDULES:
        raise ConfigError(
            f"teacher.schedule: expected 'exponential' or 'linear', got {cfg.teacher.schedule!r}"
        )
    if len(m.conv_kernels) != len(m.conv_strides):
        raise ConfigError("model.conv_kernels and model.conv_strides must have the same length")
    if m.dim % m.num_heads:
        raise ConfigError(f"model.dim ({m.dim}) must be divisible by model.num_heads ({m.num_heads})")
    if m.dim % m.pos_conv_groups:
        raise ConfigError(f"model.dim ({m.dim}) must be divisible by model.pos_conv_groups")
    if not 1 <= m.num_codebooks <= m.num_layers:
        raise ConfigError(f"model.num_codebooks must be in [1, model.num_layers={m.num_layers}]")
    if m.pos_conv_layer_kernel % 2 == 0:
        raise ConfigError("model.pos_conv_kernel / model.pos_conv_layers must be odd")
    for name in ("dropout", "attention_dropout", "activation_dropout", "projection_dropout", "layerdrop"):
        if not 0.0 <= getattr(m, name) < 1.0:
            raise ConfigError(f"model.{name} must be in [0, 1)")
    if not 0.0 < m.codebook_decay < 1.0:
        raise ConfigError("model.codebook_decay must be in (0, 1)")
    if cfg.train.precision not in ("bf16", "fp32"):
        raise ConfigError(f"train.precision: expected 'bf16' or 'fp32', got {cfg.train.precision!r}")
    if cfg.train.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"train.device: expected 'auto', 'cpu' or 'cuda', got {cfg.train.device!r}")
    for name in ("max_steps", "log_every", "checkpoint_every", "keep_checkpoints", "grad_accum"):
        if getattr(cfg.train, name) < 1:
            raise ConfigError(f"train.{name} must be >= 1")
    if cfg.data.min_samples > cfg.data.max_samples:
        raise ConfigError("data.min_samples must be <= data.max_samples")
    if cfg.data.max_batch_samples < cfg.data.min_samples:
        raise ConfigError("data.max_batch_samples must be >= data.min_samples")
    if cfg.masking.length < 1 or not 0.0 <= cfg.masking.prob <= 1.0:
        raise ConfigError("masking.length must be >= 1 and masking.prob in [0, 1]")
