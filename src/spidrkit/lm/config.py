"""The unit LM's config: frozen dataclasses, presets from TOML, ``section.key=value`` overrides.

Built with the machinery of :mod:`spidrkit.config` (its TOML reader, its typed section builder, its
override parser and its rule classes), so errors read the same: ``optim.lr: must be a finite number > 0,
got -1.0``. Presets live in ``spidrkit/configs/lm_<name>.toml``: ``opt125m`` (the paper's recipe) and
``tiny`` (a CPU-sized LM). A TOML file may start with ``preset = "tiny"`` to build on a preset.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from spidrkit.config.errors import ConfigError
from spidrkit.config.reading import build_section, naming_file, nest_overrides, preset_path, read_source, read_toml
from spidrkit.config.validation import MAX_SEED, Choice, CrossRule, Free, Integer, Number, Rule, check_section
from spidrkit.config.writing import toml_sections
from spidrkit.errors import did_you_mean
from spidrkit.tracking import REPORT_TO

LM_PRESETS = ("opt125m", "tiny")
PROBABILITY = Number(0.0, 1.0, hi_open=True)


@dataclass(frozen=True)
class LMModelConfig:
    """The OPT decoder (``transformers.OPTConfig``): OPT-125M's dimensions by default."""

    num_layers: int = 12
    dim: int = 768
    num_heads: int = 12
    ffn_dim: int = 3072
    context: int = 2048  # tokens per sequence (OPT's max_position_embeddings)
    dropout: float = 0.1
    attention_dropout: float = 0.0

    def __post_init__(self) -> None:
        check_section("model", self, LM_RULES, LM_CROSS_RULES)


@dataclass(frozen=True)
class LMDataConfig:
    """The units: their number ``k`` (0 = from the units file's sidecar, else max unit + 1), de-duplication,
    the held-out fraction of utterances when no ``--valid`` file is given, how sequences fill a batch."""

    k: int = 0
    dedup: bool = True
    valid_fraction: float = 0.01
    batching: str = "pad"  # "pad": one utterance per row; "pack": utterances concatenated, rows cut at context

    def __post_init__(self) -> None:
        check_section("lm", self, LM_RULES, LM_CROSS_RULES)


@dataclass(frozen=True)
class LMOptimConfig:
    """AdamW, linear warm-up then a decay to ``final_lr_scale * lr`` at ``train.max_steps``, gradient
    clipping: OPT-125M's published values by default (docs/design.md, "Unit language models")."""

    lr: float = 6e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    warmup_steps: int = 2000
    schedule: str = "linear"  # "linear", "cosine" or "constant" after the warm-up
    final_lr_scale: float = 0.1

    def __post_init__(self) -> None:
        check_section("optim", self, LM_RULES, LM_CROSS_RULES)


@dataclass(frozen=True)
class LMTrainConfig:
    batch_size: int = 16  # sequences per micro-batch and process
    grad_accum: int = 4
    max_steps: int = 100_000
    max_minutes: float = 0.0  # stop (validate, checkpoint) after this wall time of one invocation; 0 = no limit
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # "auto": bf16 autocast on a GPU, fp32 on the CPU
    compile: bool = True  # torch.compile, on a GPU only
    log_every: int = 100
    valid_every: int = 1000  # 0 = validate only at the end
    valid_batches: int = 0  # 0 = the whole validation set
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    report_to: str = "none"  # "none", "tensorboard" or "wandb" (spidrkit.tracking; --report-to)

    def __post_init__(self) -> None:
        check_section("train", self, LM_RULES, LM_CROSS_RULES)


# Memory-sized maxima: a value past one of them cannot be trained (it would ask for more memory than any
# machine has, or break the run folder's layout) and is refused with its key before any tensor is made.
MAX_LAYERS = 256  # decoders with the most layers published have about 100-130
MAX_DIM = 32_768  # the widest published decoders use 12k-18k; one 32k x 32k matrix is already 4 GiB in fp32
MAX_HEADS = 1024  # a head of 32 dims at MAX_DIM
MAX_FFN = 4 * MAX_DIM  # OPT's ratio (ffn_dim = 4 x dim) at MAX_DIM
MAX_CONTEXT = 131_072  # tokens per sequence: 128k positions; OPT-125M uses 2048, a 50 Hz utterance of 40 s is 2000
MAX_K = 1 << 20  # units: a million embeddings; speech unit inventories are 50-2048, codebooks at most 65536
MAX_BATCH = 65_536  # sequences per micro-batch and process: 64k rows of even 2 tokens fill no GPU; OPT used 16
MAX_ACCUM = 65_536  # micro-batches per update: a larger update is a batch no one trains with, and takes as long
MAX_STEPS = 99_999_999  # checkpoint names hold 8 digits (checkpoints/step_XXXXXXXX.pt): they sort as they count
MAX_CHECKPOINTS = 1000  # each is the whole training state (weights + AdamW: 3x the model): 1000 fill any disk
MAX_MINUTES = 525_600.0  # a year of wall time
# tokens per micro-batch (train.batch_size x model.context): the logits alone are tokens x (k + 4) floats in
# fp32, 2^24 tokens are 64 GiB per thousand units, more than one GPU holds; OPT-125M's recipe: 16 x 2048 = 2^15
MAX_BATCH_TOKENS = 1 << 24
STEPS = Integer(0, MAX_STEPS)

LM_RULES: dict[str, dict[str, Rule]] = {
    "model": {"num_layers": Integer(1, MAX_LAYERS), "dim": Integer(1, MAX_DIM), "num_heads": Integer(1, MAX_HEADS),
              "ffn_dim": Integer(1, MAX_FFN), "context": Integer(2, MAX_CONTEXT), "dropout": PROBABILITY,
              "attention_dropout": PROBABILITY},
    "lm": {"k": Integer(0, MAX_K), "dedup": Free(), "valid_fraction": PROBABILITY,
           "batching": Choice(("pad", "pack"))},
    "optim": {"lr": Number(0.0, lo_open=True), "betas": Free(), "eps": Number(0.0, lo_open=True),
              "weight_decay": Number(0.0), "clip_norm": Number(0.0), "warmup_steps": STEPS,
              "schedule": Choice(("linear", "cosine", "constant")), "final_lr_scale": Number(0.0, 1.0)},
    "train": {"batch_size": Integer(1, MAX_BATCH), "grad_accum": Integer(1, MAX_ACCUM),
              "max_steps": Integer(1, MAX_STEPS), "max_minutes": Number(0.0, MAX_MINUTES),
              "seed": Integer(0, MAX_SEED), "device": Choice(("auto", "cpu", "cuda")),
              "precision": Choice(("auto", "bf16", "fp32")), "compile": Free(), "log_every": Integer(1, MAX_STEPS),
              "valid_every": STEPS, "valid_batches": Integer(0, MAX_STEPS * MAX_ACCUM),
              "checkpoint_every": Integer(1, MAX_STEPS), "keep_checkpoints": Integer(1, MAX_CHECKPOINTS),
              "report_to": Choice(REPORT_TO)},
}
LM_CROSS_RULES: tuple[CrossRule, ...] = (
    CrossRule("lm_dim_by_heads", "model", lambda m: None if m.dim % m.num_heads == 0 else (
        f"model.num_heads: must divide model.dim ({m.dim}), got {m.num_heads}")),
    CrossRule("lm_betas", "optim", lambda o: None if all(PROBABILITY.ok(b) for b in o.betas) else (
        f"optim.betas: must be two numbers in [0, 1), got {list(o.betas)}")),
    CrossRule("lm_batch_tokens", "", lambda c: None if c.train.batch_size * c.model.context <= MAX_BATCH_TOKENS else (
        f"train.batch_size: train.batch_size x model.context (tokens per micro-batch) must be <= "
        f"{MAX_BATCH_TOKENS}, got {c.train.batch_size} x {c.model.context}; lower train.batch_size and raise "
        f"train.grad_accum")),
)


@dataclass(frozen=True)
class LMConfig:
    model: LMModelConfig = field(default_factory=LMModelConfig)
    lm: LMDataConfig = field(default_factory=LMDataConfig)
    optim: LMOptimConfig = field(default_factory=LMOptimConfig)
    train: LMTrainConfig = field(default_factory=LMTrainConfig)

    def __post_init__(self) -> None:
        for cross in LM_CROSS_RULES:
            if not cross.section and (message := cross.check(self)):
                raise ConfigError(message)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {f.name: {k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in dataclasses.asdict(getattr(self, f.name)).items()}
                for f in dataclasses.fields(self)}

    def to_toml(self) -> str:
        return toml_sections(self.to_dict())


LM_SECTIONS = tuple(f.name for f in dataclasses.fields(LMConfig))


def lm_config_from_dict(data: dict[str, Any], base: LMConfig | None = None) -> LMConfig:
    """``data`` (sections of keys, as read from TOML) on top of ``base`` (defaults: OPT-125M's)."""
    cfg = base or LMConfig()
    hints = typing.get_type_hints(LMConfig)
    changes = {}
    for section, values in data.items():
        if section not in LM_SECTIONS:
            raise ConfigError(f"unknown section '{section}'{did_you_mean(section, LM_SECTIONS)}; known sections of "
                              "a unit LM config: "
                              f"{', '.join(LM_SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table of keys, got {values!r}")
        changes[section] = build_section(hints[section], values, section, getattr(cfg, section))
    return replace(cfg, **changes)


def _from_file(data: dict[str, Any]) -> LMConfig:
    data = dict(data)
    parent = data.pop("preset", None)
    if parent is not None and parent not in LM_PRESETS:
        raise ConfigError(f"preset: expected one of {', '.join(LM_PRESETS)}, got {parent!r}")
    base = _from_file(read_toml(preset_path(f"lm_{parent}"))) if parent else LMConfig()
    return lm_config_from_dict(data, base)


def load_lm_config(source: str | Path = "opt125m", overrides: list[str] | tuple[str, ...] = ()) -> LMConfig:
    """A preset name (``opt125m``, ``tiny``) or a TOML file, then ``section.key=value`` overrides."""
    data = read_source(source, LM_PRESETS, prefix="lm_", what="unit LM config")
    nested, _ = nest_overrides(overrides)
    with naming_file(source, LM_PRESETS):
        cfg = _from_file(data)
    return lm_config_from_dict(nested, cfg)
