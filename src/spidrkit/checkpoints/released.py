"""The released SpidR/DinoSR layout: the architecture read from the tensor shapes.

A released file's ``"model"`` entry is the full state dict with spidrkit's module names
(``mask_embedding``, ``student.layers.0.attention.qkv.weight``..., ``docs/formats.md``), or the file is a
bare state dict. The shapes tell the widths, depths, kernels, pos-conv layers/kernel/groups, and the
number and size of the codebooks. Two things cannot be read from shapes: the number of attention heads
(taken as ``dim // 64``, as in every released model) and the conv strides (taken from the config, i.e. the
paper's (5, 2, 2, 2, 2, 2, 2), when the kernels match it). Pass ``config=`` for a model that differs.
Released files do not say whether they hold SpidR or DinoSR: ``variant=`` says it (default ``"spidr"``),
unless a ``"config"``/``"cfg"`` entry of the file names it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from spidrkit.checkpoints.contents import find_value, pick_variant, variant_hint
from spidrkit.checkpoints.errors import CheckpointError
from spidrkit.config import Config, ConfigError, with_variant


def _count(sd: Mapping[str, Any], pattern: str) -> int:
    rx = re.compile(pattern)
    idx = {int(m.group(1)) for k in sd if (m := rx.fullmatch(k))}
    if idx and idx != set(range(len(idx))):
        raise CheckpointError(f"layers matching {pattern!r} are not numbered 0..{len(idx) - 1}: {sorted(idx)}")
    return len(idx)


def _shape(sd: Mapping[str, Any], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"the state dict has no {key!r}, needed to infer the architecture")
    return tuple(sd[key].shape)


# the architecture values the weights determine (a config= that says otherwise contradicts the weights)
WEIGHT_FIELDS = ("conv_dim", "conv_kernels", "dim", "num_layers", "ffn_dim", "pos_conv_layers", "pos_conv_kernel",
                 "pos_conv_groups", "num_codebooks", "codebook_size")


def contradictions(config: dict[str, Any], found: dict[str, Any], where: str) -> list[str]:
    """``model.KEY = <config's> in the config, <found> in the WHERE`` for every key on which they differ."""
    return [
        f"model.{k} = {_plain(config[k])} in the config, {_plain(v)} in the {where}"
        for k, v in found.items()
        if v is not None and _plain(config[k]) != _plain(v)
    ]


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple | list) else v


def refuse_contradictions(path: Path | str, problems: list[str]) -> None:
    if problems:
        raise CheckpointError(
            f"{path}: the config contradicts the checkpoint: {'; '.join(problems)}. Pass a config that "
            "agrees with the weights (it only needs to supply what they cannot tell: conv strides, heads), "
            "or no config"
        )


def infer_model_config(
    sd: Mapping[str, torch.Tensor],
    base: Config,
    num_heads: int | None = None,
    strides: tuple[int, ...] | None = None,
    path: Path | str | None = None,
) -> Config:
    """The config of a released-layout state dict: every size that shapes tell, the rest from ``base``.

    ``num_heads``: from the caller (a foreign config) or ``dim // 64``. ``strides``: from the caller, else
    ``base``'s when the kernels match ``base``'s (they cannot be read from weights). ``path``: ``base`` is
    a config the user gave (``config=``), named in errors: any value of :data:`WEIGHT_FIELDS` where it
    says otherwise than the weights is a :class:`CheckpointError` naming the key and both values.
    """
    n_conv = _count(sd, r"feature_extractor\.conv_layers\.(\d+)\.conv\.weight")
    if n_conv == 0:
        raise CheckpointError("no downsampler weights (feature_extractor.conv_layers.*.conv.weight)")
    conv_shapes = [_shape(sd, f"feature_extractor.conv_layers.{i}.conv.weight") for i in range(n_conv)]
    dim = _shape(sd, "mask_embedding")[0]
    pos = _shape(sd, "student.pos_conv_embed.convs.0.weight")
    n_pos = _count(sd, r"student\.pos_conv_embed\.convs\.(\d+)\.weight")
    found = {
        "conv_dim": conv_shapes[0][0],
        "conv_kernels": tuple(s[2] for s in conv_shapes),
        "dim": dim,
        "num_layers": _count(sd, r"student\.layers\.(\d+)\.attention\.qkv\.weight"),
        "ffn_dim": _shape(sd, "student.layers.0.feed_forward.intermediate_dense.weight")[0],
        "pos_conv_layers": n_pos,
        "pos_conv_kernel": pos[2] * n_pos,
        "pos_conv_groups": dim // pos[1],
        "num_codebooks": _count(sd, r"heads\.(\d+)\.0\.weight"),
        "codebook_size": _shape(sd, "heads.0.0.weight")[0],
    }
    m = base.model
    if path is not None:
        refuse_contradictions(path, contradictions(vars(m), found, "weights"))
    kernels = found["conv_kernels"]
    if strides is None:
        if kernels != tuple(m.conv_kernels):
            raise CheckpointError(
                f"the downsampler kernels {kernels} differ from the config's {tuple(m.conv_kernels)}: the strides "
                "cannot be read from the weights; pass config= (a preset or TOML file) with the right strides"
            )
        strides = tuple(m.conv_strides)
    if num_heads is None:
        if dim % 64:
            raise CheckpointError(f"dim {dim} is not a multiple of 64: pass config= with model.num_heads")
        num_heads = dim // 64
    try:
        return replace(base, model=replace(m, **found, conv_strides=tuple(strides), num_heads=num_heads))
    except ConfigError as e:
        raise CheckpointError(f"the weights imply an invalid model: {e}") from e


def released_config(
    raw: Mapping[str, Any], sd: Mapping[str, torch.Tensor], variant: str | None, base: Config | None, path: Path
) -> Config:
    """The config of a released file: ``variant`` or the file's hint (default spidr), heads from ``base``
    or a foreign config entry, every size from the shapes."""
    foreign = raw.get("config", raw.get("cfg"))
    chosen = pick_variant(variant, variant_hint(foreign), "spidr", path)
    heads = base.model.num_heads if base is not None else find_value(foreign, ("num_heads", "encoder_attention_heads"))
    heads = heads if isinstance(heads, int) else None
    return infer_model_config(sd, with_variant(base or Config(), chosen), heads, None, path if base else None)
