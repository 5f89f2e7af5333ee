import re
import warnings
from dataclasses import fields, replace

import pytest

from spidrkit.cli import main as cli_main
from spidrkit.config import (
    SECTIONS,
    VARIANTS,
    Config,
    ConfigError,
    ModelConfig,
    TeacherConfig,
    config_from_dict,
    from_dict,
    load_config,
    validate,
    variant_of,
    with_variant,
)
from spidrkit.config.validation import CROSS_RULES, RULES, Free
from spidrkit.training.resume import config_changes


def test_base_preset_is_table5():
    cfg = load_config("base")
    m, o, t, d = cfg.model, cfg.optim, cfg.teacher, cfg.data
    assert (m.conv_dim, m.conv_kernels, m.conv_strides) == (512, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))
    assert (m.dim, m.num_layers, m.num_heads, m.ffn_dim) == (768, 12, 12, 3072)
    assert (m.pos_conv_layers, m.pos_conv_kernel, m.pos_conv_groups, m.pos_conv_layer_kernel) == (5, 95, 16, 19)
    assert (m.dropout, m.attention_dropout, m.activation_dropout, m.layerdrop) == (0.1, 0.1, 0.0, 0.05)
    assert (m.num_codebooks, m.codebook_size, m.codebook_decay, m.heads) == (8, 256, 0.9, "per_layer")
    assert m.target_layers == (5, 6, 7, 8, 9, 10, 11, 12)
    assert (o.lr, o.betas, o.weight_decay, o.eps, o.clip_norm) == (5e-4, (0.9, 0.95), 0.01, 1e-6, 10.0)
    assert (o.warmup_steps, o.hold_steps, o.decay_steps, o.freeze_feature_step) == (12000, 188000, 200000, 200000)
    assert (t.schedule, t.beta0, t.timescale) == ("exponential", 0.999, 10000.0)
    assert (d.num_buckets, d.max_batch_samples, d.min_samples, d.max_samples) == (1000, 3_800_000, 2000, 320_000)
    assert cfg.masking.prob == 0.8 and cfg.masking.length == 10
    assert cfg.train.max_steps == 400_000 and cfg.train.precision == "bf16"


def test_tiny_preset_is_small():
    m = load_config("tiny").model
    assert m.dim <= 256 and m.num_layers <= 6


def test_variants_set_two_switches():
    d = load_config("base", variant="dinosr")
    assert (d.variant, d.model.heads, d.teacher.schedule) == ("dinosr", "last_layer", "linear")
    # the two ablations are one line each
    a = load_config("base", ["model.heads=last_layer"])
    assert (a.model.heads, a.teacher.schedule) == ("last_layer", "exponential")
    b = load_config("base", ["teacher.schedule=linear"])
    assert (b.model.heads, b.teacher.schedule) == ("per_layer", "linear")


def test_overrides_types_and_errors():
    cfg = load_config("tiny", ["optim.lr=1e-3", "model.num_layers=4", "data.train_manifest=/x/train.csv",
                               "optim.betas=[0.8, 0.9]", "train.compile=true"])
    assert cfg.optim.lr == 1e-3 and cfg.model.num_layers == 4 and cfg.data.train_manifest == "/x/train.csv"
    assert cfg.optim.betas == (0.8, 0.9) and cfg.train.compile is True
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_config("tiny", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="model.num_layers"):
        load_config("tiny", ["model.num_layers=abc"])
    with pytest.raises(ConfigError, match="train.compile"):
        load_config("tiny", ["train.compile=1"])
    with pytest.raises(ConfigError, match="unknown section 'modle'"):
        load_config("tiny", ["modle.dim=3"])
    with pytest.raises(ConfigError, match="model.heads"):
        load_config("tiny", ["model.heads=everywhere"])
    with pytest.raises(ConfigError, match="num_codebooks"):
        load_config("tiny", ["model.num_codebooks=9"])


def test_toml_file_round_trip(tmp_path):
    cfg = load_config("tiny", ["optim.lr=2e-4"], variant="dinosr")
    p = tmp_path / "run.toml"
    p.write_text(cfg.to_toml())
    assert load_config(p) == cfg
    assert config_from_dict(cfg.to_dict()) == cfg
    q = tmp_path / "child.toml"
    q.write_text('preset = "tiny"\nvariant = "dinosr"\n[optim]\nlr = 3e-4\n')
    c = load_config(q)
    assert c.optim.lr == 3e-4 and c.model.dim == load_config("tiny").model.dim and c.model.heads == "last_layer"
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\ndim = 'wide'\n")
    with pytest.raises(ConfigError, match="model.dim"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no config file"):
        load_config(tmp_path / "missing.toml")


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        Config().model.dim = 3


# ------------------------------------------------------------------------------------- derived variant
def test_variant_is_derived_from_the_two_switches():
    assert load_config("tiny").variant == "spidr"
    assert load_config("tiny", variant="dinosr").variant == "dinosr"
    assert load_config("tiny", ["variant=dinosr"]).variant == "dinosr"
    heads = load_config("tiny", ["model.heads=last_layer"])
    assert (heads.variant, heads.model.heads, heads.teacher.schedule) == (
        "dinosr-exponential-teacher", "last_layer", "exponential")
    assert load_config("tiny", ["teacher.schedule=linear"]).variant == "spidr-linear-teacher"
    # overrides apply in order after the variant: the variant follows the switches
    assert load_config("tiny", ["variant=dinosr", "teacher.schedule=exponential"]).variant == (
        "dinosr-exponential-teacher")
    assert [variant_of(h, s) for h, s in VARIANTS.values()] == list(VARIANTS)
    cfg = load_config("tiny")
    with pytest.raises(AttributeError):
        cfg.variant = "dinosr"
    with pytest.raises(TypeError):
        replace(cfg, variant="dinosr")
    assert with_variant(cfg, "dinosr") == load_config("tiny", variant="dinosr")
    with pytest.raises(ConfigError, match="variant: expected one of spidr, dinosr, got 'hubert'"):
        load_config("tiny", variant="hubert")


def test_stored_variant_must_agree_with_the_switches(tmp_path):
    ablation = load_config("tiny", ["model.heads=last_layer"])
    d = ablation.to_dict()
    assert d["variant"] == "dinosr-exponential-teacher"
    p = tmp_path / "ablation.toml"
    p.write_text(ablation.to_toml())
    assert p.read_text().startswith('variant = "dinosr-exponential-teacher"\n')
    assert load_config(p) == ablation and config_from_dict(d) == ablation
    # a file whose variant contradicts its own switches is an error that names the key
    bad = tmp_path / "bad.toml"
    bad.write_text('preset = "tiny"\nvariant = "dinosr"\n[teacher]\nschedule = "exponential"\n')
    with pytest.raises(ConfigError, match=r"variant: 'dinosr' contradicts model.heads = 'last_layer' and "
                                          r"teacher.schedule = 'exponential', which make 'dinosr-exponential-teacher'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="variant: 'spidr' contradicts"):
        from_dict({**d, "variant": "spidr"})
    with pytest.raises(ConfigError, match="variant: expected one of spidr, dinosr, got 'hubert'"):
        from_dict({"variant": "hubert"})
    # a stored config (checkpoint) consistent with its switches reads silently; an old one whose label
    # went stale (ablations used to keep "spidr") reads by its switches, with a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert config_from_dict(load_config("tiny", variant="dinosr").to_dict()).variant == "dinosr"
    with pytest.warns(UserWarning, match="variant 'spidr' contradicts its switches .* the stored label is ignored"):
        old = config_from_dict({**d, "variant": "spidr"})
    assert old == ablation and old.variant == "dinosr-exponential-teacher"


def test_resume_treats_a_variant_change_as_fatal():
    cfg = load_config("tiny")
    saved = load_config("tiny", ["teacher.schedule=linear"]).to_dict()
    fatal, harmless = config_changes(saved, cfg)
    assert fatal == ["variant: 'spidr-linear-teacher' -> 'spidr'", "teacher.schedule: 'linear' -> 'exponential'"]
    assert harmless == []
    # the saved variant is derived from the saved switches, not read from a (stale) stored label
    assert config_changes({**cfg.to_dict(), "variant": "dinosr"}, cfg) == ([], [])


# ------------------------------------------------------------------------------ validation: every rule
# (overrides on the tiny preset, the exact message). One case per field that can refuse a value...
FIELD_CASES = [
    (["model.conv_dim=0"], "model.conv_dim: must be an integer >= 1, got 0"),
    (["model.conv_kernels=[10,3,3,3,3,2,0]"],
     "model.conv_kernels: must be a list of 1 or more items, each an integer >= 1, got (10, 3, 3, 3, 3, 2, 0)"),
    (["model.conv_strides=[]"], "model.conv_strides: must be a list of 1 or more items, each an integer >= 1, got ()"),
    (["model.dim=0"], "model.dim: must be an integer >= 1, got 0"),
    (["model.num_layers=0"], "model.num_layers: must be an integer >= 1, got 0"),
    (["model.num_heads=0"], "model.num_heads: must be an integer >= 1, got 0"),
    (["model.ffn_dim=-4"], "model.ffn_dim: must be an integer >= 1, got -4"),
    (["model.pos_conv_layers=0"], "model.pos_conv_layers: must be an integer >= 1, got 0"),
    (["model.pos_conv_kernel=0"], "model.pos_conv_kernel: must be an integer >= 1, got 0"),
    (["model.pos_conv_groups=0"], "model.pos_conv_groups: must be an integer >= 1, got 0"),
    (["model.dropout=1"], "model.dropout: must be a finite number in [0, 1), got 1.0"),
    (["model.attention_dropout=-0.1"], "model.attention_dropout: must be a finite number in [0, 1), got -0.1"),
    (["model.activation_dropout=nan"], "model.activation_dropout: must be a finite number in [0, 1), got nan"),
    (["model.projection_dropout=inf"], "model.projection_dropout: must be a finite number in [0, 1), got inf"),
    (["model.layerdrop=1.5"], "model.layerdrop: must be a finite number in [0, 1), got 1.5"),
    (["model.num_codebooks=0"], "model.num_codebooks: must be an integer >= 1, got 0"),
    (["model.codebook_size=0"], "model.codebook_size: must be an integer >= 2, got 0"),
    (["model.codebook_decay=1"], "model.codebook_decay: must be a finite number in (0, 1), got 1.0"),
    (["model.frontend=mel"], "model.frontend: must be one of 'cnn', 'logmel', 'logmel_cmvn', got 'mel'"),
    (["model.n_mels=0"], "model.n_mels: must be an integer >= 1, got 0"),
    (["model.codebook_init=kmeans"], "model.codebook_init: must be one of 'random', 'data', got 'kmeans'"),
    (["model.codebook_decay_warmup=-1"], "model.codebook_decay_warmup: must be an integer >= 0, got -1"),
    (["model.codebook_decay_start=1"], "model.codebook_decay_start: must be a finite number in [0, 1), got 1.0"),
    (["model.heads=everywhere"], "model.heads: must be one of 'per_layer', 'last_layer', got 'everywhere'"),
    (["model.init=xavier"], "model.init: must be one of 'normal', 'release', got 'xavier'"),
    (["model.teacher_init=zero"], "model.teacher_init: must be one of 'copy', 'independent', got 'zero'"),
    (["model.projection_dropout_scope=teacher"],
     "model.projection_dropout_scope: must be one of 'student_and_teacher', 'student', got 'teacher'"),
    (["teacher.schedule=cosine"], "teacher.schedule: must be one of 'exponential', 'linear', got 'cosine'"),
    (["teacher.beta0=2"], "teacher.beta0: must be a finite number in [0, 1), got 2.0"),
    (["teacher.timescale=0"], "teacher.timescale: must be a finite number > 0, got 0.0"),
    (["teacher.beta_end=1.5"], "teacher.beta_end: must be a finite number in [0, 1], got 1.5"),
    (["teacher.ramp_steps=-1"], "teacher.ramp_steps: must be an integer >= 0, got -1"),
    (["teacher.freeze_step=-1"], "teacher.freeze_step: must be an integer >= 0, got -1"),
    (["teacher.freeze_threshold=0"], "teacher.freeze_threshold: must be a finite number in (0, 1), got 0.0"),
    (["teacher.decay_offset=2"], "teacher.decay_offset: must be an integer in [0, 1], got 2"),
    (["masking.prob=1.5"], "masking.prob: must be a finite number in [0, 1], got 1.5"),
    (["masking.length=0"], "masking.length: must be an integer >= 1, got 0"),
    (["masking.min_masks=-1"], "masking.min_masks: must be an integer >= 0, got -1"),
    (["optim.lr=nan"], "optim.lr: must be a finite number > 0, got nan"),
    (["optim.lr=-1"], "optim.lr: must be a finite number > 0, got -1.0"),
    (["optim.betas=[0.9, 1.0]"],
     "optim.betas: must be a list of 2 or more items, each a finite number in [0, 1), got (0.9, 1.0)"),
    (["optim.weight_decay=-0.01"], "optim.weight_decay: must be a finite number >= 0, got -0.01"),
    (["optim.eps=0"], "optim.eps: must be a finite number > 0, got 0.0"),
    (["optim.clip_norm=0"], "optim.clip_norm: must be a finite number > 0, got 0.0"),
    (["optim.warmup_steps=-1"], "optim.warmup_steps: must be an integer >= 0, got -1"),
    (["optim.hold_steps=-1"], "optim.hold_steps: must be an integer >= 0, got -1"),
    (["optim.decay_steps=-1"], "optim.decay_steps: must be an integer >= 0, got -1"),
    (["optim.init_lr_scale=2"], "optim.init_lr_scale: must be a finite number in [0, 1], got 2.0"),
    (["optim.final_lr_scale=0"], "optim.final_lr_scale: must be a finite number in (0, 1], got 0.0"),
    (["optim.freeze_feature_step=-1"], "optim.freeze_feature_step: must be an integer >= 0, got -1"),
    (["optim.weight_decay_scope=biases"], "optim.weight_decay_scope: must be one of 'matrices', 'all', got 'biases'"),
    (["data.sample_rate=8000"],
     "data.sample_rate: must be 16000 (every spidrkit model reads 16 kHz audio, spidrkit.config.SAMPLE_RATE; audio "
     "at other rates is resampled when read: leave data.sample_rate at 16000), got 8000"),
    (["data.num_buckets=0"], "data.num_buckets: must be an integer >= 1, got 0"),
    (["data.max_batch_samples=0"], "data.max_batch_samples: must be an integer >= 1, got 0"),
    (["data.min_samples=-1"], "data.min_samples: must be an integer >= 0, got -1"),
    (["data.max_samples=0"], "data.max_samples: must be an integer >= 1, got 0"),
    (["data.num_workers=-1"], "data.num_workers: must be an integer >= 0, got -1"),
    (["data.voice_perturb=pitch"], "data.voice_perturb: must be one of 'none', 'vtlp', 'praat', got 'pitch'"),
    (["data.voice_warp=[0.1, 1.1]"], "data.voice_warp: must be a list of 2 or more items, each a finite number "
                                      "in [0.5, 2], got (0.1, 1.1)"),
    (["data.voice_eq=30"], "data.voice_eq: must be a finite number in [0, 24], got 30.0"),
    (["train.max_steps=0"], "train.max_steps: must be an integer >= 1, got 0"),
    (["train.max_minutes=inf"], "train.max_minutes: must be a finite number >= 0, got inf"),
    (["train.precision=fp16"], "train.precision: must be one of 'bf16', 'fp32', got 'fp16'"),
    (["train.seed=-1"], "train.seed: must be an integer in [0, 9223372036854775807], got -1"),
    (["train.device=tpu"], "train.device: must be one of 'auto', 'cpu', 'cuda', got 'tpu'"),
    (["train.grad_accum=0"], "train.grad_accum: must be an integer >= 1, got 0"),
    (["train.log_every=0"], "train.log_every: must be an integer >= 1, got 0"),
    (["train.checkpoint_every=0"], "train.checkpoint_every: must be an integer >= 1, got 0"),
    (["train.keep_checkpoints=0"], "train.keep_checkpoints: must be an integer >= 1, got 0"),
    (["train.valid_every=-1"], "train.valid_every: must be an integer >= 0, got -1"),
    (["train.valid_batches=-1"], "train.valid_batches: must be an integer >= 0, got -1"),
    (["train.max_nonfinite=-1"], "train.max_nonfinite: must be an integer >= 0, got -1"),
    (["train.collapse_perplexity=nan"], "train.collapse_perplexity: must be a finite number >= 0, got nan"),
    (["train.codebook_update=never"],
     "train.codebook_update: must be one of 'per_step', 'per_micro_batch', got 'never'"),
    (["train.report_to=mlflow"], "train.report_to: must be one of 'none', 'tensorboard', 'wandb', got 'mlflow'"),
    (["train.milestone_minutes=[2, 0]"],
     "train.milestone_minutes: must be a list of 0 or more items, each a finite number > 0, got (2.0, 0.0)"),
    (["train.milestone_steps=[-5]"],
     "train.milestone_steps: must be a list of 0 or more items, each an integer >= 1, got (-5,)"),
]
# ... and one per rule between fields (tiny: dim 256, 4 heads, 6 layers, pos conv 95 over 5 layers).
CROSS_CASES = {
    "conv_lengths": (["model.conv_strides=[5,2]"],
                     "model.conv_strides: must have as many items as model.conv_kernels (7, one per conv layer), "
                     "got 2"),
    "stride_le_kernel": (["model.conv_strides=[5,2,2,2,2,2,3]"],
                         "model.conv_strides: each stride must be <= its kernel (model.conv_kernels), else samples "
                         "are skipped; layer 6 has stride 3 > kernel 2"),
    "frame_rate": (["model.conv_kernels=[10,3,3,3,3,3,3]", "model.conv_strides=[5,2,2,2,2,2,3]"],
                   "model.conv_strides: their product (the frame stride, 480 samples) must divide the sample rate "
                   "16000 so that the frame rate is a whole number of frames per second"),
    "dim_by_heads": (["model.num_heads=5"], "model.num_heads: must divide model.dim (256), got 5"),
    "dim_by_groups": (["model.pos_conv_groups=3"], "model.pos_conv_groups: must divide model.dim (256), got 3"),
    "codebooks_le_layers": (["model.num_codebooks=7"], "model.num_codebooks: must be in [1, model.num_layers=6] "
                                                        "(one codebook per target layer), got 7"),
    "pos_kernel_by_layers": (["model.pos_conv_kernel=96"], "model.pos_conv_kernel: must be a multiple of "
                             "model.pos_conv_layers (5): it is the total kernel over the layers, got 96"),
    "pos_kernel_odd": (["model.pos_conv_kernel=100"], "model.pos_conv_kernel: model.pos_conv_kernel / "
                       "model.pos_conv_layers (each layer's kernel) must be odd, got 100 / 5 = 20"),
    "linear_ramp_up": (["teacher.schedule=linear", "teacher.beta_end=0.9"],
                       "teacher.beta_end: must be >= teacher.beta0 (0.99) with the linear schedule (the decay ramps "
                       "up), got 0.9"),
    "min_le_max_samples": (["data.min_samples=90000"],
                           "data.min_samples: must be <= data.max_samples (80000), got 90000"),
    "batch_holds_min": (["data.max_batch_samples=1000"],
                        "data.max_batch_samples: must be >= data.min_samples (2000), got 1000"),
    "warp_range": (["data.voice_warp=[1.2, 0.9]"],
                   "data.voice_warp: must be a range [low, high] with low <= high, got [1.2, 0.9]"),
    "vtlp_needs_logmel": (["data.voice_perturb=vtlp"], "data.voice_perturb: 'vtlp' warps the log mel filterbank, "
                          "so it needs model.frontend = 'logmel' or 'logmel_cmvn' (use 'praat' with the "
                          "convolutional front end)"),
    "min_samples_one_frame": (["data.min_samples=100"], "data.min_samples: must be >= 400, the samples the "
                              "downsampler (model.conv_kernels, model.conv_strides) needs for one frame, got 100"),
}
ALL_CASES = FIELD_CASES + list(CROSS_CASES.values())


@pytest.mark.parametrize(("overrides", "message"), ALL_CASES, ids=[" ".join(o) for o, _ in ALL_CASES])
def test_every_rule_refuses_with_a_message_naming_the_key(overrides, message, capsys):
    with pytest.raises(ConfigError) as caught:
        load_config("tiny", overrides)
    assert str(caught.value) == message
    # the CLI: exit 2, one line naming the key
    assert cli_main(["config", "tiny", *[x for o in overrides for x in ("--set", o)]]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"spidrkit config: error: {message}\n"
    assert err.count("\n") == 1 and message.split(":")[0] in err and "Traceback" not in err


def test_every_field_has_a_rule_and_every_rule_a_case():
    sections = {name: getattr(Config(), name) for name in SECTIONS}
    for section, obj in sections.items():
        assert [f.name for f in fields(obj)] == list(RULES[section]), section
    refusing = {f"{s}.{k}" for s, rules in RULES.items() for k, rule in rules.items() if not isinstance(rule, Free)}
    assert {message.split(":")[0] for _, message in FIELD_CASES} == refusing
    assert set(CROSS_CASES) == {rule.name for rule in CROSS_RULES}
    # the free fields are the strings and switches whose type is all there is to check
    assert refusing | {"data.train_manifest", "data.valid_manifest", "data.standardize", "train.compile"} == {
        f"{s}.{f.name}" for s, obj in sections.items() for f in fields(obj)}


def test_sections_check_themselves_and_the_presets_pass():
    with pytest.raises(ConfigError, match=r"^teacher.timescale: must be a finite number > 0, got 0$"):
        TeacherConfig(timescale=0)
    with pytest.raises(ConfigError, match=r"^model.num_heads: must divide model.dim \(768\), got 5$"):
        ModelConfig(num_heads=5)
    for preset in ("base", "base_release", "tiny"):
        for variant in VARIANTS:
            validate(load_config(preset, variant=variant))
    # the smallest legitimate values pass: no warm-up, no validation, no limit, min_samples = one frame
    cfg = load_config("tiny", ["optim.warmup_steps=0", "train.valid_every=0", "train.max_minutes=0",
                               "data.min_samples=400", "teacher.ramp_steps=0", "masking.min_masks=0",
                               "train.max_nonfinite=0", "optim.init_lr_scale=0", "model.num_codebooks=6"])
    assert cfg.data.min_samples == 400 and cfg.model.num_codebooks == 6


# ------------------------------------------------------------------------------ base_release and variant tables
RELEASE_DIFF = [
    "# 8 keys differ",
    "key                             base                   base_release",
    "model.layerdrop                 0.05                   0.0",
    "model.init                      'normal'               'release'",
    "model.teacher_init              'copy'                 'independent'",
    "model.projection_dropout_scope  'student_and_teacher'  'student'",
    "teacher.timescale               10000.0                20000.0",
    "teacher.decay_offset            0                      1",
    "optim.weight_decay_scope        'matrices'             'all'",
    "train.codebook_update           'per_step'             'per_micro_batch'",
]


def test_base_release_differs_from_base_in_the_release_choices_only(capsys):
    assert cli_main(["config", "base_release", "--diff", "base"]) == 0
    assert capsys.readouterr().out.splitlines() == RELEASE_DIFF
    # the paper's defaults are the dataclass defaults: base keeps today's behaviour
    assert load_config("base").to_dict() == Config().to_dict()
    # DinoSR: the release's DinoSRConfig has layer drop 0.05 (its SpidRConfig 0), from the preset's [dinosr] table
    assert cli_main(["config", "base_release", "--diff", "base", "--variant", "dinosr"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["# 7 keys differ",
                       "key                             base (dinosr)          base_release (dinosr)"]
    assert not any(line.startswith("model.layerdrop") for line in out)
    assert cli_main(["config", "base", "--diff", "base"]) == 0
    assert capsys.readouterr().out == "# base and base are the same config\n"


def test_variant_tables_apply_whenever_the_variant_is_chosen(tmp_path):
    assert load_config("base_release").model.layerdrop == 0.0
    for cfg in (load_config("base_release", variant="dinosr"), load_config("base_release", ["variant=dinosr"]),
                load_config("base_release", ["variant=dinosr"], variant="spidr")):
        assert (cfg.variant, cfg.model.layerdrop, cfg.teacher.timescale) == ("dinosr", 0.05, 20000.0)
    # --set still wins over the table, and --set variant= over --variant
    assert load_config("base_release", ["model.layerdrop=0.1"], variant="dinosr").model.layerdrop == 0.1
    assert load_config("base_release", ["variant=spidr"], variant="dinosr").model.layerdrop == 0.0
    # a file built on the preset: its variant selects the table, its own keys win
    child = tmp_path / "child.toml"
    child.write_text('preset = "base_release"\nvariant = "dinosr"\n[optim]\nlr = 1e-4\n')
    cfg = load_config(child)
    assert (cfg.variant, cfg.model.layerdrop, cfg.optim.lr, cfg.model.init) == ("dinosr", 0.05, 1e-4, "release")
    child.write_text('preset = "base_release"\nvariant = "dinosr"\n[model]\nlayerdrop = 0.2\n')
    assert load_config(child).model.layerdrop == 0.2
    # a table of its own, checked even when its variant is not chosen
    own = tmp_path / "own.toml"
    own.write_text('preset = "tiny"\n[dinosr.teacher]\nbeta0 = 0.995\n')
    assert load_config(own).teacher.beta0 == 0.99 and load_config(own, variant="dinosr").teacher.beta0 == 0.995
    own.write_text('preset = "tiny"\n[dinosr.modle]\nlayerdrop = 0.1\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(own))}: unknown section 'modle'; "
                       r"did you mean 'model'\?; known sections: "):
        load_config(own)
    own.write_text('preset = "tiny"\ndinosr = 3\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(own))}: \[dinosr\] must be a table of sections "
                                          r"\(e.g. \[dinosr.model\]\), got 3$"):
        load_config(own)


def test_a_checkpoint_without_the_new_keys_resumes_as_the_defaults():
    cfg = load_config("tiny")
    saved = cfg.to_dict()
    for section, key in [("model", "init"), ("model", "teacher_init"), ("model", "projection_dropout_scope"),
                         ("teacher", "decay_offset"), ("optim", "weight_decay_scope"), ("train", "codebook_update"),
                         ("model", "codebook_init"), ("model", "codebook_decay_warmup"),
                         ("model", "codebook_decay_start"), ("model", "frontend"), ("model", "n_mels")]:
        del saved[section][key]
    assert config_changes(saved, cfg) == ([], [])
    release = load_config("tiny", ["model.init=release"])
    assert config_changes(saved, release) == (["model.init: 'normal' -> 'release'"], [])
