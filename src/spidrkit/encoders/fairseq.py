"""Original fairseq HuBERT and wav2vec 2.0 checkpoints as ``transformers`` models (``HubertModel``,
``Wav2Vec2Model``), from a checkpoint dict read without running its code
(:func:`spidrkit.checkpoints.reading.read_checkpoint`).

Key mapping (fairseq -> transformers), ``i`` a conv layer, ``j`` a transformer block:

- ``feature_extractor.conv_layers.i.0.weight`` (``.bias``) -> ``feature_extractor.conv_layers.i.conv.*``;
- ``feature_extractor.conv_layers.0.2.*`` (group norm, layer 0 only) and ``...conv_layers.i.2.1.*``
  (layer norm) -> ``feature_extractor.conv_layers.i.layer_norm.*``;
- ``layer_norm`` -> ``feature_projection.layer_norm``; ``post_extract_proj`` -> ``feature_projection.projection``;
- ``encoder.pos_conv.0.weight_g`` / ``weight_v`` (weight norm) ->
  ``encoder.pos_conv_embed.conv.parametrizations.weight.original0`` / ``original1``; ``.bias`` -> ``conv.bias``;
- ``encoder.layers.j.self_attn.{q,k,v,out}_proj`` -> ``encoder.layers.j.attention.{q,k,v,out}_proj``;
- ``encoder.layers.j.self_attn_layer_norm`` -> ``encoder.layers.j.layer_norm``;
- ``encoder.layers.j.fc1`` / ``fc2`` -> ``encoder.layers.j.feed_forward.intermediate_dense`` / ``output_dense``;
- ``encoder.layers.j.final_layer_norm``, ``encoder.layer_norm``: the same names; ``mask_emb`` ->
  ``masked_spec_embed``.

Dropped (pretraining heads): HuBERT ``label_embs_concat``, ``final_proj``; wav2vec 2.0 ``quantizer``,
``project_q``, ``final_proj``. The architecture comes from the file's ``cfg["model"]`` (or the older
``args`` namespace): ``encoder_attention_heads``, ``activation_fn``, ``conv_feature_layers`` (parsed
without ``eval``), ``conv_pos_groups``, ``layer_norm_first`` (pre-LN, the Large models); the sizes
(``encoder_layers``, ``encoder_embed_dim``, ``encoder_ffn_embed_dim``, ``conv_pos``), the conv bias and
the extractor's norm (``extractor_mode``: ``default`` = group norm, ``layer_norm``) from the weights
themselves; the input normalisation from ``cfg["task"]["normalize"]``. Without a config the Base
defaults fill in the rest (12 heads at width 768, 16 at 1024, the 20 ms conv layout).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from spidrkit.encoders.hf import EncoderError, HFEncoder, model_class
from spidrkit.lazy import require

FAIRSEQ_FAMILIES = {"hubert": "hubert", "wav2vec2": "wav2vec2", "wav2vec": "wav2vec2"}
DROPPED = ("label_embs_concat", "final_proj.", "quantizer.", "project_q.", "project_inp.", "target_glu.")
_RULES = [
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.(weight|bias)", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"encoder\.pos_conv\.0\.weight_g", "encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"encoder\.pos_conv\.0\.weight_v", "encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"encoder\.pos_conv\.0\.bias", "encoder.pos_conv_embed.conv.bias"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)", r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"mask_emb", "masked_spec_embed"),
]
_COMPILED = [(re.compile(a), b) for a, b in _RULES]


def fairseq_sections(raw: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """(model, task) settings of a fairseq checkpoint: ``cfg["model"]``/``cfg["task"]`` (a plain dict in
    fairseq >= 0.10), else the flat ``args`` namespace (an inert stand-in keeping its pickled state)."""
    cfg = raw.get("cfg")
    if isinstance(cfg, Mapping):
        model, task = cfg.get("model"), cfg.get("task")
        return (model if isinstance(model, Mapping) else {}), (task if isinstance(task, Mapping) else {})
    args = raw.get("args")
    state = args if isinstance(args, Mapping) else getattr(args, "__dict__", {}).get("_state")
    state = state if isinstance(state, Mapping) else {}
    return state, state


def fairseq_family(raw: Mapping[str, Any], sd: Mapping[str, Any]) -> str | None:
    """``hubert`` / ``wav2vec2`` for an original fairseq checkpoint of either, else ``None`` (DinoSR and
    every other file go their usual way)."""
    model, _ = fairseq_sections(raw)
    name = model.get("_name") or model.get("arch")
    if isinstance(name, str):
        return FAIRSEQ_FAMILIES.get(name.split("_")[0].lower())
    if any(k.startswith(("_codebook", "heads.")) for k in sd):
        return None
    if "label_embs_concat" in sd:
        return "hubert"
    if "quantizer.vars" in sd or "project_q.weight" in sd:
        return "wav2vec2"
    return None


def conv_layers(text: str) -> list[tuple[int, int, int]]:
    """fairseq's ``conv_feature_layers`` (``"[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"``), parsed
    without ``eval``: literals, ``+`` and ``*`` only."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise ValueError(f"unsupported expression {ast.dump(node)[:60]}")

    try:
        layers = ev(ast.parse(text, mode="eval").body)
        return [(int(c), int(k), int(s)) for c, k, s in layers]
    except (SyntaxError, ValueError, TypeError) as e:
        raise EncoderError(f"cannot parse conv_feature_layers {text!r}: {e}") from e


def _rename(sd: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    out, unknown = {}, []
    for key, value in sd.items():
        if key.startswith(DROPPED) or not isinstance(value, torch.Tensor):
            continue
        new = next((rx.sub(rep, key) for rx, rep in _COMPILED if rx.fullmatch(key)), None)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value.float()
    if unknown:
        raise EncoderError(f"{path}: fairseq keys with no place in a transformers encoder: "
                           f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}")
    return out


def _heads_default(dim: int, path: Path) -> int:
    heads = {768: 12, 1024: 16, 1280: 16}.get(dim)
    if heads is None:
        raise EncoderError(f"{path}: no cfg gives encoder_attention_heads for width {dim}; re-save the checkpoint "
                           "with its fairseq cfg")
    return heads


def hf_config(family: str, model: Mapping[str, Any], sd: Mapping[str, torch.Tensor], path: Path) -> Any:
    """The ``transformers`` config of a fairseq HuBERT/wav2vec 2.0 (its ``cfg`` first, shapes second)."""
    transformers = require("transformers", "a fairseq HuBERT / wav2vec 2.0 checkpoint")

    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.layers\.(\d+)\.", k))}
    if "post_extract_proj.weight" not in sd or not blocks:
        raise EncoderError(f"{path}: not a fairseq HuBERT/wav2vec 2.0 encoder (no post_extract_proj or layers)")
    dim, conv_out = sd["post_extract_proj.weight"].shape
    if "conv_feature_layers" in model:
        convs = conv_layers(str(model["conv_feature_layers"]))
    else:
        n = len({k.split(".")[2] for k in sd if k.startswith("feature_extractor.conv_layers.")})
        convs = [(conv_out, 10, 5), *[(conv_out, 3, 2)] * (n - 3), (conv_out, 2, 2), (conv_out, 2, 2)]
    group = "feature_extractor.conv_layers.0.2.weight" in sd
    pos = sd["encoder.pos_conv.0.weight_v"]
    kwargs = dict(
        hidden_size=int(dim), num_hidden_layers=max(blocks) + 1,
        num_attention_heads=int(model.get("encoder_attention_heads") or _heads_default(int(dim), path)),
        intermediate_size=int(sd["encoder.layers.0.fc1.weight"].shape[0]),
        hidden_act=str(model.get("activation_fn", "gelu")),
        feat_extract_norm="group" if group else "layer",
        do_stable_layer_norm=bool(model.get("layer_norm_first", not group)),
        conv_dim=[c for c, _, _ in convs], conv_kernel=[k for _, k, _ in convs], conv_stride=[s for _, _, s in convs],
        conv_bias="feature_extractor.conv_layers.0.0.bias" in sd,
        num_conv_pos_embeddings=int(pos.shape[-1]),
        num_conv_pos_embedding_groups=int(model.get("conv_pos_groups") or dim // pos.shape[1]),
        layer_norm_eps=1e-5, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0,
    )
    if family == "hubert":
        return transformers.HubertConfig(feat_proj_layer_norm="layer_norm.weight" in sd, **kwargs)
    return transformers.Wav2Vec2Config(**kwargs)


def load_fairseq_encoder(raw: Mapping[str, Any], sd: Mapping[str, Any], path: str | Path,
                         normalization: str = "auto") -> HFEncoder:
    """The :class:`HFEncoder` of an original fairseq HuBERT / wav2vec 2.0 checkpoint (see the module doc).
    ``normalization="auto"`` takes the file's ``task.normalize`` when it has one (how it was trained)."""
    path = Path(path)
    family = fairseq_family(raw, sd)
    if family is None:
        raise EncoderError(f"{path}: not a fairseq HuBERT or wav2vec 2.0 checkpoint")
    model_cfg, task_cfg = fairseq_sections(raw)
    config = hf_config(family, model_cfg, sd, path)
    model = model_class(family)(config)
    weights = _rename(sd, path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights and k != "masked_spec_embed"]
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
             for k, v in weights.items() if k in expected and v.shape != expected[k].shape]
    if missing or wrong:
        raise EncoderError(f"{path}: the fairseq weights do not fit the {family} architecture of its cfg: "
                           f"missing {', '.join(missing[:8]) or 'none'}; wrong shapes {', '.join(wrong[:8]) or 'none'}")
    model.load_state_dict({k: v for k, v in weights.items() if k in expected}, strict=False)
    if normalization == "auto" and isinstance(task_cfg.get("normalize"), bool):
        normalization = "standardize" if task_cfg["normalize"] else "raw"
    return HFEncoder(model, normalization)
