"""The checks every config passes when it is built: a table of rules, one per field of every section
(:data:`RULES`), and the rules between fields (:data:`CROSS_RULES`). Errors name the key and what it
may be: ``optim.lr: must be a finite number > 0, got nan``.

Each section checks its own fields and its own cross-field rules when it is built (``__post_init__``);
:class:`~spidrkit.config.Config` then checks the rules that span sections (:func:`validate`). The meaning of
each field, which its bounds follow, is in ``docs/method.md`` (the choices where the authors' release differs
from the paper: ``docs/fidelity.md``); ``tests/test_config.py`` asserts that
every field has a rule and that every rule refuses what it should.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spidrkit.config.errors import ConfigError
from spidrkit.tracking import REPORT_TO

SAMPLE_RATE = 16000  # Hz: the input rate of every model in spidrkit (the paper's, LibriSpeech's)
HEADS = ("per_layer", "last_layer")
SCHEDULES = ("exponential", "linear")
MAX_SEED = 2**63 - 1


# ------------------------------------------------------------------------------------- rules of one field
@dataclass(frozen=True)
class Number:
    """A finite number in a range (``lo``/``hi`` excluded when ``*_open``)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def ok(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def text(self) -> str:
        if self.lo is not None and self.hi is not None:
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            return f"a finite number in {left}{self.lo:g}, {self.hi:g}{right}"
        if self.lo is not None:
            return f"a finite number {'>' if self.lo_open else '>='} {self.lo:g}"
        return "a finite number"


@dataclass(frozen=True)
class Integer:
    lo: int
    hi: int | None = None

    def ok(self, v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= self.lo and (self.hi is None or v <= self.hi)

    def text(self) -> str:
        return f"an integer in [{self.lo}, {self.hi}]" if self.hi is not None else f"an integer >= {self.lo}"


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]
    why: str = ""

    def ok(self, v: Any) -> bool:
        return v in self.values and type(v) in {type(x) for x in self.values}

    def text(self) -> str:
        if len(self.values) == 1:
            return f"{self.values[0]!r}{self.why}"
        return "one of " + ", ".join(repr(x) for x in self.values) + self.why


@dataclass(frozen=True)
class Each:
    """A list whose every item follows ``item`` (at least ``min_len`` items)."""

    item: Number | Integer
    min_len: int = 1

    def ok(self, v: Any) -> bool:
        return isinstance(v, tuple | list) and len(v) >= self.min_len and all(self.item.ok(x) for x in v)

    def text(self) -> str:
        return f"a list of {self.min_len} or more items, each {self.item.text()}"


@dataclass(frozen=True)
class Free:
    """Any value of the field's type (the type itself is checked when read: strings, true/false)."""

    def ok(self, v: Any) -> bool:
        return True

    def text(self) -> str:
        return "any value"


Rule = Number | Integer | Choice | Each | Free
STEPS = Integer(0)  # a step count or step number; 0 = none / from the start
POSITIVE = Integer(1)
PROBABILITY = Number(0.0, 1.0, hi_open=True)  # dropouts, decays: 1 would never change / drop everything
UNIT_OPEN = Number(0.0, 1.0, lo_open=True, hi_open=True)

RULES: dict[str, dict[str, Rule]] = {
    "model": {
        "conv_dim": POSITIVE,
        "conv_kernels": Each(POSITIVE),
        "conv_strides": Each(POSITIVE),
        "frontend": Choice(("cnn", "logmel", "logmel_cmvn")),
        "n_mels": POSITIVE,
        "dim": POSITIVE,
        "num_layers": POSITIVE,
        "num_heads": POSITIVE,
        "ffn_dim": POSITIVE,
        "pos_conv_layers": POSITIVE,
        "pos_conv_kernel": POSITIVE,
        "pos_conv_groups": POSITIVE,
        "dropout": PROBABILITY,
        "attention_dropout": PROBABILITY,
        "activation_dropout": PROBABILITY,
        "projection_dropout": PROBABILITY,
        "layerdrop": PROBABILITY,
        "num_codebooks": POSITIVE,
        "codebook_size": Integer(2),  # one codeword would make every target the same
        "codebook_decay": UNIT_OPEN,
        "codebook_init": Choice(("random", "data")),
        "codebook_decay_warmup": STEPS,
        "codebook_decay_start": PROBABILITY,
        "heads": Choice(HEADS),
        "init": Choice(("normal", "release")),
        "teacher_init": Choice(("copy", "independent")),
        "projection_dropout_scope": Choice(("student_and_teacher", "student")),
    },
    "teacher": {
        "schedule": Choice(SCHEDULES),
        "beta0": PROBABILITY,  # 1 (or more, once clamped) would freeze the teacher from the start
        "timescale": Number(0.0, lo_open=True),
        "beta_end": Number(0.0, 1.0),  # 1: frozen at the end of the ramp
        "ramp_steps": STEPS,
        "freeze_step": STEPS,
        "freeze_threshold": UNIT_OPEN,  # 0 would never freeze (and the freeze step would never be found)
        "decay_offset": Integer(0, 1),  # 0: beta of the steps done; 1: of the steps done after this one
    },
    "masking": {
        "prob": Number(0.0, 1.0),
        "length": POSITIVE,
        "min_masks": STEPS,
    },
    "optim": {
        "lr": Number(0.0, lo_open=True),
        "betas": Each(PROBABILITY, 2),
        "weight_decay": Number(0.0),
        "eps": Number(0.0, lo_open=True),
        "clip_norm": Number(0.0, lo_open=True),
        "warmup_steps": STEPS,
        "hold_steps": STEPS,
        "decay_steps": STEPS,
        "init_lr_scale": Number(0.0, 1.0),
        "final_lr_scale": Number(0.0, 1.0, lo_open=True),  # the decay is exponential: log(scale)
        "freeze_feature_step": STEPS,
        "weight_decay_scope": Choice(("matrices", "all")),
    },
    "data": {
        "train_manifest": Free(),
        "valid_manifest": Free(),
        "sample_rate": Choice(
            (SAMPLE_RATE,),
            " (every spidrkit model reads 16 kHz audio, spidrkit.config.SAMPLE_RATE; audio at other rates "
            "is resampled when read: leave data.sample_rate at 16000)",
        ),
        "num_buckets": POSITIVE,
        "max_batch_samples": POSITIVE,
        "min_samples": STEPS,
        "max_samples": POSITIVE,
        "standardize": Free(),
        "num_workers": STEPS,
        "voice_perturb": Choice(("none", "vtlp", "praat")),
        "voice_warp": Each(Number(0.5, 2.0), 2),
        "voice_eq": Number(0.0, 24.0),
    },
    "train": {
        "max_steps": POSITIVE,
        "max_minutes": Number(0.0),  # 0 = no limit
        "precision": Choice(("bf16", "fp32")),
        "compile": Free(),
        "seed": Integer(0, MAX_SEED),
        "device": Choice(("auto", "cpu", "cuda")),
        "grad_accum": POSITIVE,
        "log_every": POSITIVE,
        "checkpoint_every": POSITIVE,
        "keep_checkpoints": POSITIVE,
        "valid_every": STEPS,  # 0 = no validation
        "valid_batches": STEPS,  # 0 = the whole validation set
        "max_nonfinite": STEPS,  # 0 = never stop on non-finite losses
        "collapse_perplexity": Number(0.0),  # 0 = never warn
        "codebook_update": Choice(("per_step", "per_micro_batch")),
        "milestone_minutes": Each(Number(0.0, lo_open=True), 0),  # empty = no milestone
        "milestone_steps": Each(POSITIVE, 0),
        "report_to": Choice(REPORT_TO),
    },
}


# -------------------------------------------------------------------------------- rules between fields
def receptive_field(kernels: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """Samples the downsampler needs for one frame."""
    rf = 1
    for k, s in zip(reversed(kernels), reversed(strides)):
        rf = (rf - 1) * s + k
    return rf


def _frame_stride(m: Any) -> int:
    return math.prod(m.conv_strides)


@dataclass(frozen=True)
class CrossRule:
    name: str
    section: str  # the section whose object ``check`` reads ("" = the whole config)
    check: Callable[[Any], str | None]  # the message when the rule is broken


def _stride_vs_kernel(m: Any) -> str | None:
    bad = [i for i, (k, s) in enumerate(zip(m.conv_kernels, m.conv_strides)) if s > k]
    if bad:
        return (f"model.conv_strides: each stride must be <= its kernel (model.conv_kernels), else samples are "
                f"skipped; layer {bad[0]} has stride {m.conv_strides[bad[0]]} > kernel {m.conv_kernels[bad[0]]}")
    return None


CROSS_RULES: tuple[CrossRule, ...] = (
    CrossRule("conv_lengths", "model", lambda m: None if len(m.conv_kernels) == len(m.conv_strides) else (
        f"model.conv_strides: must have as many items as model.conv_kernels ({len(m.conv_kernels)}, one per "
        f"conv layer), got {len(m.conv_strides)}")),
    CrossRule("stride_le_kernel", "model", _stride_vs_kernel),
    CrossRule("frame_rate", "model", lambda m: None if SAMPLE_RATE % _frame_stride(m) == 0 else (
        f"model.conv_strides: their product (the frame stride, {_frame_stride(m)} samples) must divide the "
        f"sample rate {SAMPLE_RATE} so that the frame rate is a whole number of frames per second")),
    CrossRule("dim_by_heads", "model", lambda m: None if m.dim % m.num_heads == 0 else (
        f"model.num_heads: must divide model.dim ({m.dim}), got {m.num_heads}")),
    CrossRule("dim_by_groups", "model", lambda m: None if m.dim % m.pos_conv_groups == 0 else (
        f"model.pos_conv_groups: must divide model.dim ({m.dim}), got {m.pos_conv_groups}")),
    CrossRule("codebooks_le_layers", "model", lambda m: None if m.num_codebooks <= m.num_layers else (
        f"model.num_codebooks: must be in [1, model.num_layers={m.num_layers}] (one codebook per target "
        f"layer), got {m.num_codebooks}")),
    CrossRule("pos_kernel_by_layers", "model", lambda m: None if m.pos_conv_kernel % m.pos_conv_layers == 0 else (
        f"model.pos_conv_kernel: must be a multiple of model.pos_conv_layers ({m.pos_conv_layers}): it is "
        f"the total kernel over the layers, got {m.pos_conv_kernel}")),
    CrossRule("pos_kernel_odd", "model", lambda m: None if m.pos_conv_layer_kernel % 2 else (
        f"model.pos_conv_kernel: model.pos_conv_kernel / model.pos_conv_layers (each layer's kernel) must be "
        f"odd, got {m.pos_conv_kernel} / {m.pos_conv_layers} = {m.pos_conv_layer_kernel}")),
    CrossRule("linear_ramp_up", "teacher", lambda t: None if t.schedule != "linear" or t.beta0 <= t.beta_end else (
        f"teacher.beta_end: must be >= teacher.beta0 ({t.beta0:g}) with the linear schedule (the decay ramps "
        f"up), got {t.beta_end:g}")),
    CrossRule("min_le_max_samples", "data", lambda d: None if d.min_samples <= d.max_samples else (
        f"data.min_samples: must be <= data.max_samples ({d.max_samples}), got {d.min_samples}")),
    CrossRule("batch_holds_min", "data", lambda d: None if d.max_batch_samples >= d.min_samples else (
        f"data.max_batch_samples: must be >= data.min_samples ({d.min_samples}), got {d.max_batch_samples}")),
    CrossRule("warp_range", "data", lambda d: None if len(d.voice_warp) == 2 and d.voice_warp[0] <= d.voice_warp[1]
              else (
        f"data.voice_warp: must be a range [low, high] with low <= high, got {list(d.voice_warp)}")),
    CrossRule("vtlp_needs_logmel", "", lambda c: None if c.data.voice_perturb != "vtlp" or c.model.frontend != "cnn"
              else ("data.voice_perturb: 'vtlp' warps the log mel filterbank, so it needs model.frontend = "
                    "'logmel' or 'logmel_cmvn' (use 'praat' with the convolutional front end)")),
    CrossRule("min_samples_one_frame", "", lambda c: None if c.data.min_samples >= (
        rf := receptive_field(c.model.conv_kernels, c.model.conv_strides)) else (
        f"data.min_samples: must be >= {rf}, the samples the downsampler (model.conv_kernels, "
        f"model.conv_strides) needs for one frame, got {c.data.min_samples}")),
)


def check_section(section: str, obj: Any, rules: dict[str, dict[str, Rule]] | None = None,
                  cross_rules: tuple[CrossRule, ...] | None = None) -> None:
    """Every field rule, then every cross rule, of one section; :class:`ConfigError` for the first broken.
    ``rules``/``cross_rules``: another config's tables (the unit LM's), else this config's."""
    section_rules = (RULES if rules is None else rules)[section]
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        rule = section_rules[f.name]
        if not rule.ok(value):
            raise ConfigError(f"{section}.{f.name}: must be {rule.text()}, got {value!r}")
    for cross in CROSS_RULES if cross_rules is None else cross_rules:
        if cross.section == section and (message := cross.check(obj)):
            raise ConfigError(message)


def validate(cfg: Any) -> None:
    """Raise :class:`ConfigError` naming the key of the first wrong value of ``cfg`` (a ``Config``; not
    imported here, since the schema calls this from ``Config.__post_init__``)."""
    for f in dataclasses.fields(cfg):
        check_section(f.name, getattr(cfg, f.name))
    for cross in CROSS_RULES:
        if not cross.section and (message := cross.check(cfg)):
            raise ConfigError(message)


def with_overrides[T](cls: type[T], options: T | None, overrides: dict[str, Any], caller: str) -> T:
    """``options`` (default: ``cls()``) with ``overrides`` of its fields: the keyword form of a parameter object
    (``extract(..., layers=[6])``); an unknown name is a ``TypeError`` that suggests the closest field."""
    from spidrkit.errors import did_you_mean

    fields = [f.name for f in dataclasses.fields(cls)]
    for name in overrides:
        if name not in fields:
            hint = did_you_mean(name, fields) or f"; options: {', '.join(fields)}"
            raise TypeError(f"{caller}() got an unknown option {name!r}{hint}")
    return dataclasses.replace(options or cls(), **overrides)
