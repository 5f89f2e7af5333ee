import pytest

from spidrkit.config import Config, ConfigError, config_from_dict, load_config


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
