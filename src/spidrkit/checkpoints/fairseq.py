"""The original DinoSR checkpoint (fairseq): key mapping, attention fusion with bias folding, arch parsing.

fairseq names: ``mask_emb``, ``feature_extractor.conv_layers.{i}.0`` (conv) and ``.2.1`` (its LayerNorm),
``layer_norm`` (feature LayerNorm), ``post_extract_proj``, ``encoder.pos_conv.{i}.0``,
``encoder.layers.{i}.self_attn.{q,k,v,out}_proj``, ``fc1``, ``fc2``, ``self_attn_layer_norm``,
``final_layer_norm``, ``heads.{i}``, ``_codebook{i}``, ``_codebook_cnts{i}``; the teacher is the ``"_ema"``
entry of ``"model"``, a dict of the EMA encoder's parameters (``docs/formats.md``). The number of heads
and the conv strides come from the file's ``cfg`` (``encoder_attention_heads``, ``conv_feature_layers``,
parsed without ``eval``), the rest from the shapes (:func:`~spidrkit.checkpoints.released.infer_model_config`).

fairseq has separate q/k/v projections *with biases*; ours is one QKV projection without bias. The rows
are stacked q, k, v, and the biases are folded where that is exact:

- the k bias adds ``q_i . b_k`` to every score of query ``i``: a constant per row of the softmax, so it
  changes nothing and is dropped;
- the v bias adds ``b_v`` to every attended value; the attention weights of a row sum to one, so it adds
  ``W_out b_v`` after the output projection: folded as ``b_out += W_out @ b_v`` (exact);
- the q bias adds ``b_q . k_j`` to the scores, which varies with the key ``j``: it cannot be folded. It
  is dropped with a warning giving its largest norm; outputs then differ from fairseq's.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from spidrkit.checkpoints.contents import find_value, listing, pick_variant, variant_hint
from spidrkit.checkpoints.errors import CheckpointError
from spidrkit.checkpoints.released import contradictions, infer_model_config, refuse_contradictions
from spidrkit.config import Config, with_variant
from spidrkit.encoders.fairseq import conv_layers


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts of tensors -> one level with dotted names (fairseq keeps its teacher as a nested dict)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


_FAIRSEQ_TOP = [
    (r"mask_emb", r"mask_embedding"),
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.weight", r"feature_extractor.conv_layers.\1.conv.weight"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"heads\.(\d+)\.(weight|bias)", r"heads.\1.0.\2"),
    (r"_codebook(\d+)", r"codebooks.\1.codebook"),
    (r"_codebook_cnts(\d+)", r"codebooks.\1.counts"),
]
_FAIRSEQ_ENCODER = [
    (r"pos_conv\.(\d+)\.0\.(weight|bias)", r"pos_conv_embed.convs.\1.\2"),
    (r"layer_norm\.(weight|bias)", r"layer_norm.\1"),
    (r"layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"layers.\1.attention.proj.\2"),
    (r"layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"layers.\1.layer_norm.\2"),
    (r"layers\.(\d+)\.fc1\.(weight|bias)", r"layers.\1.feed_forward.intermediate_dense.\2"),
    (r"layers\.(\d+)\.fc2\.(weight|bias)", r"layers.\1.feed_forward.output_dense.\2"),
    (r"layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"layers.\1.final_layer_norm.\2"),
]
_QKV = re.compile(r"layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)")


def is_fairseq_state_dict(sd: Mapping[str, Any]) -> bool:
    return "mask_emb" in sd or "post_extract_proj.weight" in sd or any(k.startswith("encoder.layers.") for k in sd)


def fuse_fairseq_attention(
    q_w: torch.Tensor,
    k_w: torch.Tensor,
    v_w: torch.Tensor,
    out_w: torch.Tensor,
    out_b: torch.Tensor,
    q_b: torch.Tensor | None = None,
    k_b: torch.Tensor | None = None,
    v_b: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """fairseq's q/k/v/out projections -> our bias-free QKV weight, the output bias with ``b_v`` folded in,
    and the norm of the q bias that had to be dropped (see the module docstring for why this is exact
    for ``b_k`` and ``b_v``)."""
    qkv = torch.cat([q_w, k_w, v_w], dim=0)
    bias = out_b.clone()
    if v_b is not None:
        bias = bias + (out_w.double() @ v_b.double()).to(bias.dtype)
    dropped = float(q_b.norm()) if q_b is not None else 0.0
    del k_b  # softmax-invariant: adds the same value to every score of a query
    return qkv, bias, dropped


def _map_fairseq_encoder(enc: Mapping[str, Any], prefix: str, out: dict, unexpected: list) -> float:
    """Map one fairseq encoder (names relative to it) into ``out`` under ``prefix``; returns the largest
    dropped q-bias norm."""
    attn: dict[int, dict[str, Any]] = {}
    for key, value in enc.items():
        if m := _QKV.fullmatch(key):
            attn.setdefault(int(m.group(1)), {})[f"{m.group(2)}_{'w' if m.group(3) == 'weight' else 'b'}"] = value
            continue
        if m := re.fullmatch(r"layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", key):
            attn.setdefault(int(m.group(1)), {})[f"out_{'w' if m.group(2) == 'weight' else 'b'}"] = value
            continue
        for pattern, target in _FAIRSEQ_ENCODER:
            if re.fullmatch(pattern, key):
                out[prefix + re.sub(pattern, target, key)] = value
                break
        else:
            if not key.endswith("version"):  # fairseq bookkeeping, not a weight
                unexpected.append(f"{prefix}<- {key}")
    worst = 0.0
    for i, parts in sorted(attn.items()):
        need = ("q_w", "k_w", "v_w", "out_w", "out_b")
        if missing := [n for n in need if n not in parts]:
            unexpected.extend(f"{prefix}layers.{i}.self_attn.{n} (incomplete: lacks {missing})" for n in parts)
            continue
        qkv, bias, dropped = fuse_fairseq_attention(
            *(parts[n] for n in need), parts.get("q_b"), parts.get("k_b"), parts.get("v_b")
        )
        out[f"{prefix}layers.{i}.attention.qkv.weight"] = qkv
        out[f"{prefix}layers.{i}.attention.proj.weight"] = parts["out_w"]
        out[f"{prefix}layers.{i}.attention.proj.bias"] = bias
        worst = max(worst, dropped)
    return worst


def fairseq_to_spidrkit(sd: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], list[str], dict[str, float]]:
    """Rename an original DinoSR (fairseq) state dict to our layout.

    Returns the mapped state dict, the keys that have no place in our model (for the error message), and
    the largest dropped q-bias norm of the student and of the teacher.
    """
    out: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    student: dict[str, Any] = {}
    teacher: dict[str, Any] = {}
    for key, value in sd.items():
        if key == "_ema" and isinstance(value, Mapping):
            teacher.update(_flatten(value))
        elif key.startswith("_ema."):
            teacher[key[len("_ema.") :]] = value
        elif key.startswith("encoder."):
            student[key[len("encoder.") :]] = value
        elif key.startswith("_pre_encoder_"):
            # copies of the downsampler kept for a teacher whose feature extractor was not frozen
            warnings.warn(f"ignoring {key}: spidrkit's teacher shares the student's downsampler", stacklevel=3)
        else:
            for pattern, target in _FAIRSEQ_TOP:
                if re.fullmatch(pattern, key):
                    out[re.sub(pattern, target, key)] = value
                    break
            else:
                if not key.endswith("version"):
                    unexpected.append(key)
    dropped = {"student": _map_fairseq_encoder(student, "student.", out, unexpected)}
    if teacher:
        dropped["teacher"] = _map_fairseq_encoder(teacher, "teacher.", out, unexpected)
    return out, unexpected, dropped


def _fairseq_step(raw: Mapping[str, Any]) -> int | None:
    history = raw.get("optimizer_history")
    if isinstance(history, list) and history and isinstance(history[-1], Mapping):
        n = history[-1].get("num_updates")
        return int(n) if isinstance(n, int) else None
    return None


def _fairseq_arch(cfg: Any) -> tuple[int | None, tuple[int, ...] | None]:
    heads = find_value(cfg, ("encoder_attention_heads",))
    layers = find_value(cfg, ("conv_feature_layers",))
    strides = None
    if isinstance(layers, str):
        try:
            strides = tuple(s for _, _, s in conv_layers(layers))
        except ValueError:  # EncoderError: not a literal list of (dim, kernel, stride)
            strides = None
    return (heads if isinstance(heads, int) else None), strides


def from_fairseq(
    raw: Mapping[str, Any], sd: dict[str, Any], variant: str | None, base: Config | None, path: Path
) -> tuple[Config, dict[str, torch.Tensor]]:
    """Config and renamed state dict of an original DinoSR (fairseq) checkpoint."""
    fs_cfg = raw.get("cfg") or raw.get("args")
    fs_cfg = fs_cfg if isinstance(fs_cfg, Mapping) else None  # an inert stand-in (omegaconf...) says nothing
    chosen = pick_variant(variant, variant_hint(fs_cfg), "dinosr", path)
    sd, unexpected, dropped = fairseq_to_spidrkit(sd)
    if unexpected:
        raise CheckpointError(
            f"{path}: fairseq keys with no place in a DinoSR model: {listing(unexpected)} "
            "(conv biases, group-norm extractors and weight-normalised positional convs are not supported)"
        )
    for who, norm in dropped.items():
        if norm > 0:
            warnings.warn(
                f"{path}: the {who}'s attention q-projection biases cannot be represented (spidrkit's QKV "
                f"projection has no bias) and were dropped (largest norm {norm:.4g}); k biases are "
                "irrelevant and v biases were folded into the output bias exactly. Outputs will differ "
                "slightly from fairseq's.",
                stacklevel=3,
            )
    heads, strides = _fairseq_arch(fs_cfg)
    if base is not None:
        told = {"num_heads": heads, "conv_strides": strides}
        refuse_contradictions(path, contradictions(vars(base.model), told, "file's own cfg"))
        heads, strides = base.model.num_heads, base.model.conv_strides
    cfg = infer_model_config(sd, with_variant(base or Config(), chosen), heads, strides, path if base else None)
    step = raw.get("step") if isinstance(raw.get("step"), int) else _fairseq_step(raw)
    if step is not None:
        sd["current_step"] = torch.tensor([step], dtype=torch.long)
    return cfg, sd
