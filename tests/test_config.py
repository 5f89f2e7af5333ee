import warnings
from dataclasses import replace

import pytest

from spidrkit.config import (
    VARIANTS,
    Config,
    ConfigError,
    config_from_dict,
    from_dict,
    load_config,
    variant_of,
    with_variant,
)
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
