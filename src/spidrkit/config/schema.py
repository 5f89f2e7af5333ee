"""The config schema: one frozen dataclass per section, and the variant derived from two switches.

SpidR and DinoSR differ in two switches (``docs/method.md``): which layer each prediction head reads
(``model.heads``: ``per_layer`` or ``last_layer``) and how the teacher's EMA decay moves
(``teacher.schedule``: ``exponential`` or ``linear``). The variant is never stored apart from them:
:attr:`Config.variant` is computed from the pair (:func:`variant_of`):

- ``("per_layer", "exponential")`` -> ``"spidr"``; ``("last_layer", "linear")`` -> ``"dinosr"``;
- a mixed pair (an ablation) is named after its heads, plus the schedule that differs:
  ``"spidr-linear-teacher"`` (per-layer heads, linear schedule) and ``"dinosr-exponential-teacher"``
  (last-layer heads, exponential schedule). The labels are safe in file names (run folders).

:func:`with_variant` sets both switches of a named variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from spidrkit.config.errors import ConfigError
from spidrkit.config.validation import SAMPLE_RATE, check_section, validate
from spidrkit.config.writing import to_dict, to_toml

VARIANTS = {
    # variant -> (model.heads, teacher.schedule)
    "spidr": ("per_layer", "exponential"),
    "dinosr": ("last_layer", "linear"),
}
_HEAD_NAMES = {heads: name for name, (heads, _) in VARIANTS.items()}


def variant_of(heads: str, schedule: str) -> str:
    """The variant a pair of switches makes (see the module docstring for the labels of mixed pairs)."""
    for name, switches in VARIANTS.items():
        if switches == (heads, schedule):
            return name
    return f"{_HEAD_NAMES.get(heads, f'{heads}-heads')}-{schedule}-teacher"


@dataclass(frozen=True)
class ModelConfig:
    # Downsampler (Table 5): 7 convs, no bias, LayerNorm over channels, GELU. Total stride 320.
    conv_dim: int = 512
    conv_kernels: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_strides: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    # opt-in fixed front end for small budgets (docs/method.md#front-end): "logmel" replaces the convolutions
    # by a log mel spectrum of n_mels bands on the same frames, "logmel_cmvn" normalises each band to mean 0
    # and variance 1 over each utterance; the default "cnn" is the paper's
    frontend: str = "cnn"
    n_mels: int = 80
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
    # opt-in designs for long codebook memories (docs/method.md#codebook-update); the defaults are the paper's
    codebook_init: str = "random"  # or "data": codewords drawn from the first step's teacher targets
    codebook_decay_warmup: int = 0  # steps over which tau ramps up from codebook_decay_start (0: no ramp)
    codebook_decay_start: float = 0.5  # tau at step 0 of the ramp (unused without a warm-up)
    heads: str = "per_layer"  # "per_layer" (SpidR) or "last_layer" (DinoSR)
    # Choices where the paper is silent and the release differs (docs/fidelity.md; base_release sets them)
    init: str = "normal"  # "normal": N(0, 0.02) for every Linear of the blocks and heads; "release"
    teacher_init: str = "copy"  # "copy" of the student, or "independent": block weights drawn again
    projection_dropout_scope: str = "student_and_teacher"  # or "student": the teacher reads the projection

    def __post_init__(self) -> None:
        check_section("model", self)

    @property
    def frontend_dim(self) -> int:
        """Width of the front end's frames: ``conv_dim`` for the convolutions, ``n_mels`` for log mel."""
        return self.conv_dim if self.frontend == "cnn" else self.n_mels

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
    decay_offset: int = 0  # the EMA after step t (0-based) uses beta_{t + offset}; the release: 1

    def __post_init__(self) -> None:
        check_section("teacher", self)


@dataclass(frozen=True)
class MaskingConfig:
    prob: float = 0.8  # expected share of frames that start a span, times the span length
    length: int = 10
    min_masks: int = 2

    def __post_init__(self) -> None:
        check_section("masking", self)


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
    weight_decay_scope: str = "matrices"  # "matrices" (1-d parameters exempt) or "all" (the release)

    def __post_init__(self) -> None:
        check_section("optim", self)


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
    # opt-in perturbation of the student's input only (docs/method.md#voice-perturbation): "vtlp" warps the
    # log mel filterbank by a per-utterance factor in voice_warp; "praat" shifts formants and pitch in the
    # data workers (praat-parselmouth); the teacher always reads the clean utterance
    voice_perturb: str = "none"
    voice_warp: tuple[float, float] = (0.85, 1.18)
    voice_eq: float = 0.0  # dB: a random 10-band equaliser of the student's input, gains in [-voice_eq, voice_eq]

    def __post_init__(self) -> None:
        check_section("data", self)


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
    codebook_update: str = "per_step"  # "per_step" (summed statistics) or "per_micro_batch" (the release)
    milestone_minutes: tuple[float, ...] = ()  # keep a checkpoint when the training time passes each (RUN/milestones)
    milestone_steps: tuple[int, ...] = ()  # ... and at each of these steps
    report_to: str = "none"  # "none", "tensorboard" or "wandb" (spidrkit.tracking; --report-to)

    def __post_init__(self) -> None:
        check_section("train", self)


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def variant(self) -> str:
        """``spidr``, ``dinosr``, or the label of a mixed pair: derived from ``model.heads`` and
        ``teacher.schedule`` (:func:`variant_of`), never stored apart."""
        return variant_of(self.model.heads, self.teacher.schedule)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_toml(self) -> str:
        return to_toml(self)


SECTIONS = {f.name: f.type for f in fields(Config)}


def with_variant(cfg: Config, variant: str) -> Config:
    """Set the two switches that separate SpidR from DinoSR (heads and teacher schedule)."""
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ConfigError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    heads, schedule = VARIANTS[variant]
    return replace(cfg, model=replace(cfg.model, heads=heads), teacher=replace(cfg.teacher, schedule=schedule))
