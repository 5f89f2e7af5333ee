"""Run configuration: frozen dataclasses, read from TOML, with ``section.key=value`` overrides.

A config is built from a preset (``base``: the paper's Table 5; ``tiny``: a CPU-sized model) or a
TOML file, then from a variant (``spidr`` or ``dinosr``), then from ``--set`` overrides, in that
order. Unknown keys and values of the wrong type are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

PRESETS = ("base", "tiny")
SAMPLE_RATE = 16000  # Hz: the input rate of every model in spidrkit (the paper's, LibriSpeech's)
VARIANTS = {
    # variant -> (model.heads, teacher.schedule)
    "spidr": ("per_layer", "exponential"),
    "dinosr": ("last_layer", "linear"),
}


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the key."""


@dataclass(frozen=True)
class ModelConfig:
    # Downsampler (Table 5): 7 convs, no bias, LayerNorm over channels, GELU. Total stride 320.
    conv_dim: int = 512
    conv_kernels: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_strides: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    # Encoder
    dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_dim: int = 3072
    pos_conv_layers: int = 5
    pos_conv_kernel: int = 95  # total over the layers: each layer has kernel 95 / 5 = 19
    pos_conv_groups: int = 16
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    projection_dropout: float = 0.0
    layerdrop: float = 0.05  # Table 5; the reference release's SpidR config uses 0.0
    # Objective
    num_codebooks: int = 8  # K: one per target layer, the last K layers
    codebook_size: int = 256  # V
    codebook_decay: float = 0.9  # tau
    heads: str = "per_layer"  # "per_layer" (SpidR) or "last_layer" (DinoSR)

    @property
    def pos_conv_layer_kernel(self) -> int:
        return self.pos_conv_kernel // self.pos_conv_layers

    @property
    def target_layers(self) -> tuple[int, ...]:
        """1-based encoder layers whose teacher outputs give the targets (the last K)."""
        return tuple(range(self.num_layers - self.num_codebooks + 1, self.num_layers + 1))

    @property
    def sample_rate(self) -> int:
        """Input samples per second."""
        return SAMPLE_RATE

    @property
    def frame_rate(self) -> float:
        """Output frames per second: the sample rate over the downsampler's total stride (50 Hz for BASE)."""
        return self.sample_rate / self.frame_stride

    @property
    def frame_stride(self) -> int:
        s = 1
        for x in self.conv_strides:
            s *= x
        return s


@dataclass(frozen=True)
class TeacherConfig:
    schedule: str = "exponential"  # "exponential" (SpidR) or "linear" (DinoSR)
    beta0: float = 0.999
    timescale: float = 10000.0  # exponential: T (the release's default is 20000)
    beta_end: float = 0.9999  # linear: final decay
    ramp_steps: int = 30000  # linear: steps to go from beta0 to beta_end
    freeze_step: int = 200000  # linear: teacher frozen from this step on
    freeze_threshold: float = 1e-7  # exponential: frozen once 1 - beta < this


@dataclass(frozen=True)
class MaskingConfig:
    prob: float = 0.8  # expected share of frames that start a span, times the span length
    length: int = 10
    min_masks: int = 2


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.01
    eps: float = 1e-6
    clip_norm: float = 10.0
    warmup_steps: int = 12000
    hold_steps: int = 188000
    decay_steps: int = 200000
    init_lr_scale: float = 0.01  # warm-up starts at lr * init_lr_scale (5e-6)
    final_lr_scale: float = 0.01  # decay ends at lr * final_lr_scale (5e-6)
    freeze_feature_step: int = 200000  # downsampler + projection frozen from this step on


@dataclass(frozen=True)
class DataConfig:
    train_manifest: str = ""
    valid_manifest: str = ""
    sample_rate: int = SAMPLE_RATE
    num_buckets: int = 1000
    max_batch_samples: int = 3_800_000  # per process
    min_samples: int = 2000
    max_samples: int = 320_000
    standardize: bool = True
    num_workers: int = 4


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 400_000
    max_minutes: float = 0.0  # stop (and checkpoint) after this wall time; 0 = no limit
    precision: str = "bf16"  # "bf16" or "fp32"; bf16 is autocast, and falls back to fp32 on CPU
    compile: bool = False
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda"
    grad_accum: int = 1
    log_every: int = 100
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    valid_every: int = 5000
    valid_batches: int = 50
    max_nonfinite: int = 20  # consecutive non-finite losses before the run stops
    collapse_perplexity: float = 2.0  # warn when a layer's codebook perplexity falls below this


@dataclass(frozen=True)
class Config:
    variant: str = "spidr"
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_toml(self) -> str:
        return to_toml(self)


SECTIONS = {f.name: f.type for f in fields(Config) if f.name != "variant"}


def _resolve_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert one value to the annotated type; errors name the key."""
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{key}: unsupported type {tp}")
    raise ConfigError(f"{key}: unsupported type {tp}")


def _build_section(cls: type, values: dict[str, Any], section: str, base: Any) -> Any:
    hints = _resolve_types(cls)
    known = {f.name for f in fields(cls)}
    changes = {}
    for k, v in values.items():
        if k not in known:
            raise ConfigError(
                f"unknown key '{section}.{k}'; known keys in [{section}]: {', '.join(sorted(known))}"
            )
        changes[k] = _coerce(v, hints[k], f"{section}.{k}")
    return replace(base, **changes)


def from_dict(data: dict[str, Any], base: Config | None = None) -> Config:
    """Apply a nested dict (as read from TOML) on top of ``base`` (defaults: the ``base`` preset)."""
    base = base or Config()
    changes: dict[str, Any] = {}
    for section, values in data.items():
        if section == "variant":
            if not isinstance(values, str):
                raise ConfigError(f"variant: expected a string, got {values!r}")
            changes["variant"] = values
            continue
        if section not in SECTIONS:
            raise ConfigError(
                f"unknown section '{section}'; known sections: variant, {', '.join(SECTIONS)}"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table of keys, got {values!r}")
        cls = _resolve_types(Config)[section]
        changes[section] = _build_section(cls, values, section, getattr(base, section))
    try:
        return replace(base, **changes)
    except ConfigError:
        raise


def parse_override(text: str) -> tuple[str, Any]:
    """``section.key=value`` -> (``section.key``, value parsed as a TOML value, else a string)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare strings: --set data.train_manifest=/path/train.csv
    return key, value


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    nested: dict[str, Any] = {}
    for text in overrides:
        key, value = parse_override(text)
        if key == "variant":
            nested["variant"] = value
            continue
        parts = key.split(".")
        if len(parts) != 2:
            raise ConfigError(f"override key {key!r} must be section.key (e.g. optim.lr)")
        nested.setdefault(parts[0], {})[parts[1]] = value
    variant = nested.pop("variant", None)
    if variant is not None:
        cfg = with_variant(cfg, variant)
    return from_dict(nested, cfg)


def with_variant(cfg: Config, variant: str) -> Config:
    """Set the two switches that separate SpidR from DinoSR (heads and teacher schedule)."""
    if variant not in VARIANTS:
        raise ConfigError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    heads, schedule = VARIANTS[variant]
    return replace(
        cfg,
        variant=variant,
        model=replace(cfg.model, heads=heads),
        teacher=replace(cfg.teacher, schedule=schedule),
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e


def preset_path(name: str) -> Path:
    return Path(str(resources.files("spidrkit") / "configs" / f"{name}.toml"))


def load_config(
    source: str | Path = "base",
    overrides: list[str] | tuple[str, ...] = (),
    variant: str | None = None,
) -> Config:
    """Build a config from a preset name or TOML path, a variant, then ``section.key=value`` overrides.

    A TOML file may start with ``preset = "tiny"`` to build on a preset; a variant given in the file
    (``variant = "dinosr"``) sets the heads and the teacher schedule before the file's own keys.
    """
    if isinstance(source, str) and source in PRESETS:
        data = _read_toml(preset_path(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"no config file {path} (presets: {', '.join(PRESETS)})")
        data = _read_toml(path)
    cfg = _from_file_data(data)
    if variant is not None:
        cfg = with_variant(cfg, variant)
    return apply_overrides(cfg, list(overrides))


def _from_file_data(data: dict[str, Any]) -> Config:
    data = dict(data)
    parent = data.pop("preset", None)
    if parent is not None:
        if parent not in PRESETS:
            raise ConfigError(f"preset: expected one of {', '.join(PRESETS)}, got {parent!r}")
        cfg = _from_file_data(_read_toml(preset_path(parent)))
    else:
        cfg = Config()
    file_variant = data.pop("variant", None)
    if file_variant is not None:
        cfg = with_variant(cfg, file_variant)
    return from_dict(data, cfg)


def validate(cfg: Config) -> None:
    m = cfg.model
    if m.heads not in ("per_layer", "last_layer"):
        raise ConfigError(f"model.heads: expected 'per_layer' or 'last_layer', got {m.heads!r}")
    if cfg.teacher.schedule not in ("exponential", "linear"):
        raise ConfigError(
            f"teacher.schedule: expected 'exponential' or 'linear', got {cfg.teacher.schedule!r}"
        )
    if cfg.variant not in VARIANTS:
        raise ConfigError(f"variant: expected one of {', '.join(VARIANTS)}, got {cfg.variant!r}")
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


def to_dict(cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = {k: (list(x) if isinstance(x, tuple) else x) for k, x in dataclasses.asdict(v).items()}
        else:
            out[f.name] = v
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(cfg: Config) -> str:
    d = to_dict(cfg)
    lines = [f"variant = {_toml_value(d.pop('variant'))}"]
    for section, values in d.items():
        lines.append(f"\n[{section}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
    return "\n".join(lines) + "\n"


def config_from_dict(d: dict[str, Any]) -> Config:
    """Inverse of :func:`to_dict` (used to restore the config stored in a checkpoint)."""
    d = dict(d)
    variant = d.pop("variant", "spidr")
    cfg = from_dict(d, Config())
    return replace(cfg, variant=variant)
