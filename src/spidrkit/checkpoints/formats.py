"""Checkpoints in: released SpidR/DinoSR files, the original fairseq DinoSR file, spidrkit's own files.

:func:`load_model` reads any of these and returns a :class:`~spidrkit.models.spidr.SpidR` in eval mode;
:func:`convert` rewrites any of them as a self-describing spidrkit file. What is understood:

(a) **Released layout** (SPEC §7): a file whose ``"model"`` entry is the full state dict with our module
    names (``mask_embedding``, ``student.layers.0.attention.qkv.weight``...), or a bare state dict. The
    architecture is read from the tensor shapes: widths, depths, kernels, pos-conv layers/kernel/groups,
    number of codebooks and their size. Two things cannot be read from shapes: the number of attention
    heads (taken as ``dim // 64``, as in every released model) and the conv strides (taken from the
    config, i.e. the paper's (5, 2, 2, 2, 2, 2, 2), when the kernels match it). Pass ``config=`` for a
    model that differs. Released files do not say whether they hold SpidR or DinoSR: ``variant=`` says
    it (default ``"spidr"``), unless a ``"config"``/``"cfg"`` entry of the file names it.
(b) **Original DinoSR checkpoint** (fairseq names: ``mask_emb``, ``feature_extractor.conv_layers.{i}.0``
    (conv) and ``.2.1`` (its LayerNorm), ``layer_norm`` (feature LayerNorm), ``post_extract_proj``,
    ``encoder.pos_conv.{i}.0``, ``encoder.layers.{i}.self_attn.{q,k,v,out}_proj``, ``fc1``, ``fc2``,
    ``self_attn_layer_norm``, ``final_layer_norm``, ``heads.{i}``, ``_codebook{i}``, ``_codebook_cnts{i}``;
    the teacher is the ``"_ema"`` entry of ``"model"``, a dict of the EMA encoder's parameters). fairseq
    has separate q/k/v projections *with biases*; ours is one QKV projection without bias. The rows are
    stacked q, k, v, and the biases are folded where that is exact:

    - the k bias adds ``q_i . b_k`` to every score of query ``i``: a constant per row of the softmax, so
      it changes nothing and is dropped;
    - the v bias adds ``b_v`` to every attended value; the attention weights of a row sum to one, so it
      adds ``W_out b_v`` after the output projection: folded as ``b_out += W_out @ b_v`` (exact);
    - the q bias adds ``b_q . k_j`` to the scores, which varies with the key ``j``: it cannot be folded.
      It is dropped with a warning giving its largest norm; outputs then differ from fairseq's.
(c) **spidrkit files**: training checkpoints (``{"model", "config", "step", ...}``) and converted files
    (``{"format": "spidrkit", "version": 1, "config", "model"}``), rebuilt from their stored config; and
    ``.safetensors`` files whose metadata holds the config as JSON (``"config"``).

Loading never executes pickled code: ``torch.load(weights_only=True)`` only. fairseq checkpoints also
pickle training metadata (``argparse.Namespace``, omegaconf or numpy objects in ``cfg``/``extra_state``);
globals from those few metadata modules are replaced by inert placeholders that run no code of theirs,
and any other global (a custom class) makes the load fail with :class:`CheckpointError`.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch

from spidrkit.checkpoints.errors import CheckpointError
from spidrkit.config import PRESETS, Config, ConfigError, config_from_dict, load_config, with_variant
from spidrkit.io import file_sha256
from spidrkit.models.spidr import SpidR

SOURCES = ("released", "fairseq", "spidrkit", "preset")
FORMAT_VERSION = 1
# Modules whose pickled objects are training metadata in fairseq checkpoints; replaced by inert stubs.
_METADATA_MODULES = ("argparse", "omegaconf", "numpy", "fairseq", "hydra", "typing", "pathlib", "enum")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


@dataclass(frozen=True)
class CheckpointInfo:
    """Where a model's weights came from (goes into every sidecar of what it produces)."""

    source: str  # one of SOURCES
    variant: str  # "spidr" or "dinosr"
    path: str | None = None
    sha256: str | None = None  # first 16 hex digits (provenance.file_sha256)
    step: int | None = None
    config: Config | None = None  # the full run config (model + training sections)

    @property
    def model_id(self) -> str:
        """A short identity for sidecars: ``spidr:<sha256>`` (of the file, or of the weights of a model
        built in memory), or ``spidr:random-base`` for a preset."""
        return f"{self.variant}:{self.sha256 or 'random-' + str(self.path)}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "variant": self.variant,
            "checkpoint": self.path,
            "checkpoint_sha256": self.sha256,
            "checkpoint_format": self.source,
            "step": self.step,
        }


# ---------------------------------------------------------------------------------------------- reading
class _Inert:
    """Stands for a pickled metadata object (argparse.Namespace, omegaconf, numpy...): keeps the pickled
    arguments and state as plain data and runs none of the original class's code."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        obj = object.__new__(cls)
        obj.__dict__["_args"] = args
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("_items", {})[key] = value

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("_list", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("_list", []).extend(values)


def _inert_stand_ins(names: list[str]) -> list[tuple[type, str]]:
    """One placeholder class per metadata global, registered under the global's own name."""
    return [(type(name.rsplit(".", 1)[-1], (_Inert,), {}), name) for name in names]


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:
        error = first
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        raise CheckpointError(
            f"{path}: not a checkpoint (neither a torch.save file nor .safetensors): "
            f"torch.load failed with {type(error).__name__}: {error}"
        ) from error
    foreign = [g for g in unsafe if g.split(".", 1)[0] not in _METADATA_MODULES]
    if foreign or not unsafe:
        names = ", ".join(foreign or unsafe) or str(error)
        raise CheckpointError(
            f"{path}: refused: the file pickles Python objects ({names}); spidrkit loads weights only and never "
            "executes code from a checkpoint. Re-save just the tensors, e.g. "
            "torch.save({'model': state_dict}, 'weights.pt'), from an environment you trust."
        ) from error
    with torch.serialization.safe_globals(_inert_stand_ins(unsafe)):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"{path}: cannot read the checkpoint without executing code ({e})") from e


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        tensors = load_file(str(path), device="cpu")
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    out: dict[str, Any] = {"model": tensors}
    if "config" in metadata:
        try:
            out["config"] = json.loads(metadata["config"])
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: the 'config' metadata is not JSON ({e})") from e
    if metadata.get("format"):
        out["format"] = metadata["format"]
        out["version"] = int(metadata.get("version", FORMAT_VERSION))
    if metadata.get("step"):
        out["step"] = int(metadata["step"])
    return out


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw content of a checkpoint file (``.pt``/``.ckpt``... or ``.safetensors``), executing no code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    raw = _read_safetensors(path) if path.suffix == ".safetensors" else _torch_load(path)
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: expected a dict (a state dict or a checkpoint), got {type(raw).__name__}")
    return dict(raw)


# -------------------------------------------------------------------------------------------- helpers
def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts of tensors -> one level with dotted names (fairseq keeps its teacher as a nested dict)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _strip_wrappers(sd: dict[str, Any]) -> dict[str, Any]:
    for p in _WRAPPER_PREFIXES:
        if sd and all(k.startswith(p) for k in sd):
            sd = {k[len(p) :]: v for k, v in sd.items()}
    return sd


def _find(obj: Any, names: tuple[str, ...], depth: int = 0) -> Any:
    """The first value under one of ``names`` in nested dicts (a loose search through foreign configs)."""
    if depth > 4 or not isinstance(obj, Mapping):
        return None
    for n in names:
        if n in obj and not isinstance(obj[n], Mapping):
            return obj[n]
    for v in obj.values():
        found = _find(v, names, depth + 1)
        if found is not None:
            return found
    return None


def _variant_hint(cfg: Any) -> str | None:
    """``spidr``/``dinosr`` if a foreign config names it (``variant``, ``_name``, ``model_type``...)."""
    value = _find(cfg, ("variant", "model_type", "_name", "arch", "model_name", "name"))
    if isinstance(value, str):
        v = value.lower()
        for name in ("dinosr", "spidr"):
            if name in v:
                return name
    return None


def _safe_eval_layers(text: str) -> list[tuple[int, int, int]]:
    """fairseq's ``conv_feature_layers`` string (``"[(512,10,5)] + [(512,3,2)] * 4 + ..."``) without eval:
    only literals, ``+`` and ``*`` are allowed."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise ValueError(f"unsupported expression {ast.dump(node)}")

    layers = ev(ast.parse(text, mode="eval"))
    if not isinstance(layers, list) or not all(isinstance(x, tuple) and len(x) == 3 for x in layers):
        raise ValueError("expected a list of (dim, kernel, stride)")
    return layers


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


def infer_model_config(
    sd: Mapping[str, torch.Tensor],
    base: Config,
    num_heads: int | None = None,
    strides: tuple[int, ...] | None = None,
) -> Config:
    """The config of a released-layout state dict: every size that shapes tell, the rest from ``base``.

    ``num_heads``: from the caller (a foreign config) or ``dim // 64``. ``strides``: from the caller, else
    ``base``'s when the kernels match ``base``'s (they cannot be read from weights).
    """
    n_conv = _count(sd, r"feature_extractor\.conv_layers\.(\d+)\.conv\.weight")
    if n_conv == 0:
        raise CheckpointError("no downsampler weights (feature_extractor.conv_layers.*.conv.weight)")
    conv_shapes = [_shape(sd, f"feature_extractor.conv_layers.{i}.conv.weight") for i in range(n_conv)]
    kernels = tuple(s[2] for s in conv_shapes)
    dim = _shape(sd, "mask_embedding")[0]
    pos = _shape(sd, "student.pos_conv_embed.convs.0.weight")
    n_pos = _count(sd, r"student\.pos_conv_embed\.convs\.(\d+)\.weight")
    n_heads_cb = _count(sd, r"heads\.(\d+)\.0\.weight")
    m = base.model
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
    model = replace(
        m,
        conv_dim=conv_shapes[0][0],
        conv_kernels=kernels,
        conv_strides=tuple(strides),
        dim=dim,
        num_layers=_count(sd, r"student\.layers\.(\d+)\.attention\.qkv\.weight"),
        num_heads=num_heads,
        ffn_dim=_shape(sd, "student.layers.0.feed_forward.intermediate_dense.weight")[0],
        pos_conv_layers=n_pos,
        pos_conv_kernel=pos[2] * n_pos,
        pos_conv_groups=dim // pos[1],
        num_codebooks=n_heads_cb,
        codebook_size=_shape(sd, "heads.0.0.weight")[0],
    )
    try:
        return replace(base, model=model)
    except ConfigError as e:
        raise CheckpointError(f"the weights imply an invalid model: {e}") from e


# ---------------------------------------------------------------------------------------------- fairseq
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
    heads = _find(cfg, ("encoder_attention_heads",))
    layers = _find(cfg, ("conv_feature_layers",))
    strides = None
    if isinstance(layers, str):
        try:
            strides = tuple(s for _, _, s in _safe_eval_layers(layers))
        except (ValueError, SyntaxError):
            strides = None
    return (heads if isinstance(heads, int) else None), strides


# ------------------------------------------------------------------------------------------- top level
def _as_config(config: Config | str | os.PathLike | None) -> Config | None:
    if config is None or isinstance(config, Config):
        return config
    try:
        return load_config(config)
    except ConfigError as e:
        raise CheckpointError(str(e)) from e


def _is_spidrkit_config(cfg: Any) -> bool:
    return isinstance(cfg, Mapping) and isinstance(cfg.get("model"), Mapping) and "conv_kernels" in cfg["model"]


def _state_dict_of(raw: dict[str, Any]) -> dict[str, Any]:
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(raw.get(key), Mapping):
            return dict(raw[key])
    if any(isinstance(v, torch.Tensor) for v in raw.values()):
        return raw  # a bare state dict
    raise CheckpointError(f"no state dict in the file (top-level keys: {', '.join(map(str, raw))})")


def _pick_variant(asked: str | None, hint: str | None, default: str, path: Path) -> str:
    if asked is not None and hint is not None and asked != hint:
        warnings.warn(f"{path}: the file says variant {hint!r}, using {asked!r} as asked", stacklevel=4)
    variant = asked or hint or default
    if variant not in ("spidr", "dinosr"):
        raise CheckpointError(f"variant must be 'spidr' or 'dinosr', got {variant!r}")
    return variant


def load_checkpoint(
    path: str | os.PathLike,
    variant: str | None = None,
    config: Config | str | os.PathLike | None = None,
) -> tuple[Config, dict[str, torch.Tensor], CheckpointInfo]:
    """Read a checkpoint of any supported kind: its config, a state dict in our layout, and its provenance.

    ``variant`` (``spidr``/``dinosr``) overrides what the file says; ``config`` (a Config, preset name or
    TOML file) supplies what the weights of a foreign file cannot tell (strides, heads, dropouts).
    """
    path = Path(path)
    raw = read_checkpoint(path)
    base = _as_config(config)
    sd = _strip_wrappers(_state_dict_of(raw))
    if raw.get("format") == "spidrkit" or _is_spidrkit_config(raw.get("config")):
        if base is not None:
            warnings.warn(f"{path}: config= is ignored, the file carries its own config", stacklevel=2)
        source, cfg = "spidrkit", _spidrkit_config(raw, variant, path)
    elif is_fairseq_state_dict(sd):
        source, (cfg, sd) = "fairseq", _from_fairseq(raw, sd, variant, base, path)
    else:
        foreign = raw.get("config", raw.get("cfg"))
        chosen = _pick_variant(variant, _variant_hint(foreign), "spidr", path)
        heads = base.model.num_heads if base is not None else _find(foreign, ("num_heads", "encoder_attention_heads"))
        heads = heads if isinstance(heads, int) else None
        source, cfg = "released", infer_model_config(sd, with_variant(base or Config(), chosen), heads, None)
    step = raw.get("step") if isinstance(raw.get("step"), int) else None
    if step is None and isinstance(sd.get("current_step"), torch.Tensor):
        step = int(sd["current_step"].reshape(-1)[0])
    info = CheckpointInfo(source, cfg.variant, str(path.resolve()), file_sha256(path), step, cfg)
    return cfg, sd, info


def _spidrkit_config(raw: Mapping[str, Any], variant: str | None, path: Path) -> Config:
    """The config stored in a spidrkit file (training checkpoint or converted file)."""
    stored = raw.get("config")
    if not _is_spidrkit_config(stored):
        raise CheckpointError(f"{path}: a spidrkit file without its 'config' entry")
    version = int(raw.get("version", FORMAT_VERSION))
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: spidrkit file version {version} is newer than this spidrkit reads")
    try:
        cfg = config_from_dict(stored)
    except ConfigError as e:
        raise CheckpointError(f"{path}: its stored config is invalid: {e}") from e
    chosen = _pick_variant(variant, cfg.variant, cfg.variant, path)
    return cfg if chosen == cfg.variant else with_variant(cfg, chosen)


def _from_fairseq(
    raw: Mapping[str, Any], sd: dict[str, Any], variant: str | None, base: Config | None, path: Path
) -> tuple[Config, dict[str, torch.Tensor]]:
    """Config and renamed state dict of an original DinoSR (fairseq) checkpoint."""
    fs_cfg = raw.get("cfg") or raw.get("args")
    fs_cfg = fs_cfg if isinstance(fs_cfg, Mapping) else None  # an inert stand-in (omegaconf...) says nothing
    chosen = _pick_variant(variant, _variant_hint(fs_cfg), "dinosr", path)
    sd, unexpected, dropped = fairseq_to_spidrkit(sd)
    if unexpected:
        raise CheckpointError(
            f"{path}: fairseq keys with no place in a DinoSR model: {_listing(unexpected)} "
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
        heads, strides = base.model.num_heads, base.model.conv_strides
    cfg = infer_model_config(sd, with_variant(base or Config(), chosen), heads, strides)
    step = raw.get("step") if isinstance(raw.get("step"), int) else _fairseq_step(raw)
    if step is not None:
        sd["current_step"] = torch.tensor([step], dtype=torch.long)
    return cfg, sd


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown


def _floats(sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"state dict entry {k!r} is a {type(v).__name__}, not a tensor")
        out[k] = v.float() if v.is_floating_point() else v
    return out


def build_model(cfg: Config, sd: Mapping[str, torch.Tensor], where: str = "checkpoint") -> SpidR:
    """A SpidR of ``cfg`` holding exactly the weights of ``sd``; :class:`CheckpointError` listing the
    missing, unexpected and wrongly shaped entries otherwise. A missing teacher (a student-only export)
    is copied from the student with a warning; a missing ``current_step`` is set to 0."""
    sd = _floats(sd)
    # (building on the meta device would skip the random init, but its first use imports torch._dynamo,
    # which costs more than initialising a BASE model)
    model = SpidR(cfg.model)
    expected = model.state_dict()
    if not any(k.startswith("teacher.") for k in sd) and any(k.startswith("student.") for k in sd):
        warnings.warn(f"{where}: no teacher weights; the teacher is a copy of the student", stacklevel=3)
        sd.update({"teacher." + k[len("student.") :]: v.clone() for k, v in sd.items() if k.startswith("student.")})
    sd.setdefault("current_step", torch.zeros(1, dtype=torch.long))
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [
        f"{k} {tuple(sd[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listing(unexpected)}")
        if wrong:
            parts.append(f"wrong shapes: {_listing(wrong)}")
        raise CheckpointError(f"{where} does not fit a {cfg.variant} model: " + "; ".join(parts))
    model.load_state_dict({k: sd[k] for k in expected}, strict=True)
    return model.eval()


def _preset_model(name: str, variant: str | None) -> tuple[SpidR, CheckpointInfo]:
    cfg = load_config(name, variant=variant)
    warnings.warn(
        f"\n{'!' * 78}\n!! '{name}' is a preset, not a checkpoint: this model has RANDOM weights.\n"
        f"!! Its features and units mean nothing; pass a checkpoint path for real use.\n{'!' * 78}",
        stacklevel=3,
    )
    model = SpidR(cfg.model).eval()
    return model, CheckpointInfo("preset", cfg.variant, name, None, None, cfg)


class Loaded(NamedTuple):
    """A model and where its weights came from (what :func:`load` returns)."""

    model: SpidR
    info: CheckpointInfo


def load(
    path_or_name: str | os.PathLike,
    device: str | torch.device = "cpu",
    variant: str | None = None,
    config: Config | str | os.PathLike | None = None,
) -> Loaded:
    """A SpidR/DinoSR model in eval mode on ``device`` and its provenance, from any supported checkpoint
    (see the module doc), a training run folder (its latest checkpoint), or a preset name (``base``,
    ``tiny``) or TOML config: a model with random weights, with a loud warning.

    The provenance (:class:`CheckpointInfo`) is returned beside the model, never attached to it: pass it
    on (``provenance=``) to what writes outputs, so their sidecars name the checkpoint.
    """
    p = Path(path_or_name)
    if p.is_dir():  # a training run folder: its latest checkpoint
        from spidrkit.checkpoints.run import latest_checkpoint

        latest = latest_checkpoint(p)
        if latest is None:
            raise CheckpointError(f"{p} is a folder without checkpoints (expected a run dir with checkpoints/)")
        p = latest
    if not p.is_file() and str(path_or_name) in PRESETS:
        model, info = _preset_model(str(path_or_name), variant)
    elif p.suffix == ".toml" and p.is_file():
        model, info = _preset_model(str(p), variant)
    else:
        cfg, sd, info = load_checkpoint(p, variant, config)
        model = build_model(cfg, sd, str(p))
    return Loaded(model.to(device), info)


def load_model(
    path_or_name: str | os.PathLike,
    device: str | torch.device = "cpu",
    variant: str | None = None,
    config: Config | str | os.PathLike | None = None,
) -> SpidR:
    """The model of :func:`load`, without its provenance."""
    return load(path_or_name, device, variant, config).model


def weights_sha256(model: torch.nn.Module, length: int = 16) -> str:
    """A hash of a model's weights (names, shapes, dtypes and values): the identity of a model that has
    no file, e.g. one just trained in this process."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:length]


def model_info(model: SpidR | Loaded, provenance: CheckpointInfo | None = None) -> CheckpointInfo:
    """The provenance to record for ``model``: ``provenance`` when given, a :class:`Loaded`'s own, else
    (a model built in memory) its variant and a hash of its weights (source ``"in-memory"``)."""
    if provenance is not None:
        return provenance
    if isinstance(model, Loaded):
        return model.info
    return CheckpointInfo("in-memory", model.variant, None, weights_sha256(model), None, None)


def resolve_model(
    model: SpidR | Loaded | str | os.PathLike,
    provenance: CheckpointInfo | None = None,
    device: str | torch.device = "cpu",
    variant: str | None = None,
) -> Loaded:
    """What a consumer (extraction, evaluation) was given, as a model on ``device`` and its provenance:
    a path or preset name is loaded, a :class:`Loaded` is taken as is, a bare model gets ``provenance`` or
    an in-memory identity (:func:`model_info`)."""
    if isinstance(model, str | os.PathLike):
        loaded = load(model, "cpu", variant)
    elif isinstance(model, Loaded):
        loaded = model if provenance is None else Loaded(model.model, provenance)
    else:
        loaded = Loaded(model, model_info(model, provenance))
    return Loaded(loaded.model.to(device).eval(), loaded.info)


# -------------------------------------------------------------------------------------------- writing
def save_spidrkit(path: str | os.PathLike, cfg: Config, state_dict: Mapping[str, torch.Tensor],
                  source: CheckpointInfo | None = None) -> Path:
    """Write a self-describing spidrkit file atomically: ``.safetensors`` (weights, config as JSON metadata)
    or anything else as a ``torch.save`` dict ``{"format": "spidrkit", "version", "config", "model"}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    sd = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    origin = {k: v for k, v in (source.as_dict() if source else {}).items() if v is not None}
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            meta = {"format": "spidrkit", "version": str(FORMAT_VERSION), "config": json.dumps(cfg.to_dict()),
                    "source": json.dumps(origin)}
            if source is not None and source.step is not None:
                meta["step"] = str(source.step)
            save_file(sd, str(tmp), metadata=meta)
        else:
            blob = {"format": "spidrkit", "version": FORMAT_VERSION, "config": cfg.to_dict(), "model": sd,
                    "source": origin}
            if source is not None and source.step is not None:
                blob["step"] = source.step
            torch.save(blob, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def convert(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    variant: str | None = None,
    config: Config | str | os.PathLike | None = None,
) -> Path:
    """Rewrite any supported checkpoint as a self-describing spidrkit file (``.pt`` or ``.safetensors``).

    The weights are checked by building the model first, so a file that converts is a file that loads.
    """
    if Path(out_path).resolve() == Path(in_path).resolve():
        raise CheckpointError("convert: the output would overwrite the input; choose another path")
    cfg, sd, info = load_checkpoint(in_path, variant, config)
    model = build_model(cfg, sd, str(in_path))
    return save_spidrkit(out_path, cfg, model.state_dict(), info)


__all__: list[str] = [
    "CheckpointError",
    "CheckpointInfo",
    "Loaded",
    "build_model",
    "convert",
    "fairseq_to_spidrkit",
    "fuse_fairseq_attention",
    "infer_model_config",
    "load",
    "load_checkpoint",
    "load_model",
    "model_info",
    "read_checkpoint",
    "resolve_model",
    "save_spidrkit",
    "weights_sha256",
]
