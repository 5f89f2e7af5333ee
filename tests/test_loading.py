"""Checkpoint loading: released layout, fairseq DinoSR names, spidrkit files, safety, convert, torch.hub."""

from __future__ import annotations

import argparse
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from spidrkit.checkpoints import (
    CheckpointError,
    CheckpointInfo,
    Loaded,
    convert,
    load,
    load_checkpoint,
    load_model,
    model_info,
    read_checkpoint,
    resolve_model,
    weights_sha256,
)
from spidrkit.checkpoints.fairseq import fuse_fairseq_attention
from spidrkit.cli import main as cli_main
from spidrkit.config import load_config
from spidrkit.io import file_sha256
from spidrkit.models.spidr import SpidR

REPO = Path(__file__).resolve().parents[1]
# the tiny preset, narrower (building the model dominates these tests); 2 heads = dim // 64 as released
SMALL = ["model.conv_dim=32", "model.dim=128", "model.num_heads=2", "model.ffn_dim=256"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(1)
    cfg = load_config("tiny", SMALL)
    model = SpidR(cfg.model).eval()
    # make teacher and codebooks differ from the student/init, so a mix-up would show
    with torch.no_grad():
        for p in model.teacher.parameters():
            p.add_(0.01 * torch.randn_like(p))
        for cb in model.codebooks:
            cb.counts.uniform_(0.5, 2.0)
    return cfg, model


def _equal_state(a: SpidR, b: SpidR) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ------------------------------------------------------------------------------------ released layout
def test_released_layout_infers_architecture(tiny, tmp_path):
    _, model = tiny
    path = tmp_path / "released.pt"
    torch.save({"model": model.state_dict()}, path)
    loaded, info = load(path)
    m = loaded.cfg
    assert (m.dim, m.num_layers, m.num_heads, m.ffn_dim) == (128, 6, 2, 256)
    assert (m.conv_dim, m.conv_kernels, m.conv_strides) == (32, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))
    assert (m.pos_conv_layers, m.pos_conv_kernel, m.pos_conv_groups) == (5, 95, 16)
    assert (m.num_codebooks, m.codebook_size, m.heads) == (4, 256, "per_layer")
    _equal_state(model, loaded)
    assert (info.source, info.variant, len(info.sha256)) == ("released", "spidr", 16)
    assert not hasattr(loaded, "checkpoint_info")  # provenance travels beside the model, not on it
    # released files do not say the variant: the caller does, or a config entry of the file does
    assert load_model(path, variant="dinosr").cfg.heads == "last_layer"
    torch.save({"model": model.state_dict(), "cfg": {"model": {"_name": "dinosr"}}}, tmp_path / "d.pt")
    assert load(tmp_path / "d.pt").info.variant == "dinosr"
    wav = torch.randn(8000)
    ref = model.layer_outputs(wav, layers=[3])[3]
    assert torch.equal(loaded.layer_outputs(wav, layers=[3])[3], ref)


def test_spidrkit_training_checkpoint_uses_its_config(tmp_path):
    # 8 heads of 16 is not dim // 64: only the stored config can say it
    cfg = load_config("tiny", [*SMALL, "model.num_heads=8"], variant="dinosr")
    model = SpidR(cfg.model)
    path = tmp_path / "step_100.pt"
    torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "step": 100, "optimizer": {"lr": 1e-3}}, path)
    loaded, info = load(path)
    assert loaded.cfg == cfg.model and loaded.cfg.num_heads == 8
    assert (info.source, info.step, info.variant) == ("spidrkit", 100, "dinosr")
    _equal_state(model, loaded)


def test_an_old_checkpoint_whose_training_settings_break_todays_rules_still_loads(tmp_path):
    cfg = load_config("tiny", [*SMALL, "model.num_heads=8"], variant="dinosr")
    model = SpidR(cfg.model)
    stored = cfg.to_dict()
    stored["data"]["min_samples"] = 100  # accepted before the receptive-field rule existed
    torch.save({"model": model.state_dict(), "config": stored, "step": 7}, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="old.pt: its stored training settings are not valid today"):
        loaded, info = load(tmp_path / "old.pt")
    assert loaded.cfg == cfg.model and (info.variant, info.step) == ("dinosr", 7)
    _equal_state(model, loaded)
    stored["model"]["num_heads"] = 7  # the model itself invalid: refused
    torch.save({"model": model.state_dict(), "config": stored}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad.pt: its stored config is invalid: model.num_heads: must divide"):
        load(tmp_path / "bad.pt")


def test_convert_pt_and_safetensors_roundtrip(tiny, tmp_path):
    _, model = tiny
    src = tmp_path / "released.pt"
    torch.save({"model": model.state_dict()}, src)
    for name in ("out.pt", "out.safetensors"):
        out = convert(src, tmp_path / name, variant="dinosr")
        cfg2, _, info = load_checkpoint(out)
        assert info.source == "spidrkit" and cfg2.variant == "dinosr" and cfg2.model.heads == "last_layer"
        _equal_state(model, load_model(out))
    from safetensors import safe_open

    with safe_open(str(tmp_path / "out.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "spidrkit" and json.loads(meta["config"])["model"]["dim"] == 128
    assert read_checkpoint(tmp_path / "out.pt")["version"] == 1
    assert cli_main(["convert", str(src), str(tmp_path / "cli.safetensors")]) == 0
    assert load(tmp_path / "cli.safetensors").info.variant == "spidr"


def test_convert_teacher_puts_the_ema_teacher_in_the_students_place(tiny, tmp_path, capsys):
    _, model = tiny
    src = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict()}, src)
    out = convert(src, tmp_path / "teacher.pt", teacher=True)
    loaded = load_model(out)
    for name, value in model.teacher.state_dict().items():
        assert torch.equal(loaded.student.state_dict()[name], value), name
        assert torch.equal(loaded.teacher.state_dict()[name], value), name
    assert any(not torch.equal(v, loaded.student.state_dict()[k]) for k, v in model.student.state_dict().items())
    # what every command reads: the layer outputs of the student, now the teacher's on the same front end
    wav = torch.randn(1, 8000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, want = model.teacher(model.features(wav), None)
        got = loaded.layer_outputs(wav, standardize=False)
    assert sorted(got) == list(range(1, len(want) + 1))
    assert all(torch.equal(got[i + 1], w) for i, w in enumerate(want))
    assert read_checkpoint(out)["source"]["checkpoint"].endswith("ckpt.pt (teacher)")  # the provenance says so
    assert cli_main(["convert", str(src), str(tmp_path / "cli.pt"), "--teacher"]) == 0
    assert "the teacher's encoder as the student" in capsys.readouterr().out
    _equal_state(loaded, load_model(tmp_path / "cli.pt"))
    student_only = {k: v for k, v in model.state_dict().items() if not k.startswith("teacher.")}
    torch.save({"model": student_only}, tmp_path / "export.pt")
    with pytest.raises(CheckpointError, match=r"export.pt has no teacher weights \(a student-only export\)"):
        convert(tmp_path / "export.pt", tmp_path / "x.pt", teacher=True)
    assert not (tmp_path / "x.pt").exists()


# --------------------------------------------------------------------------------------------- errors
def test_missing_unexpected_and_misshaped_keys_are_listed(tiny, tmp_path):
    _, model = tiny
    sd = dict(model.state_dict())
    del sd["student.layers.2.final_layer_norm.bias"]
    sd["student.layers.2.extra.weight"] = torch.zeros(3)
    sd["heads.1.0.bias"] = torch.zeros(7)
    torch.save({"model": sd}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "bad.pt")
    msg = str(e.value)
    assert "missing keys: student.layers.2.final_layer_norm.bias" in msg
    assert "unexpected keys: student.layers.2.extra.weight" in msg
    assert "heads.1.0.bias (7,) (expected (256,))" in msg
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "nothing.pt")
    assert str(e.value) == f"no such file or folder: {tmp_path / 'nothing.pt'}"


_SIDE_EFFECT: list[str] = []


def _side_effect(path: str) -> str:
    Path(path).write_text("pickled code ran")
    return path


class _Evil:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (_side_effect, (self.path,))


def test_pickled_code_is_refused_and_never_run(tiny, tmp_path):
    _, model = tiny
    marker = tmp_path / "ran.txt"
    torch.save({"model": model.state_dict(), "hook": _Evil(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused.*_side_effect"):
        load_model(tmp_path / "evil.pt")
    assert not marker.exists()


def test_fairseq_metadata_objects_load_inertly(tiny, tmp_path):
    """fairseq pickles argparse/numpy metadata beside the weights: loaded as inert placeholders."""
    _, model = tiny
    blob = {
        "args": argparse.Namespace(arch="x"),
        "extra_state": {"metrics": np.float64(1.5), "arr": np.arange(3)},
        "model": model.state_dict(),
    }
    torch.save(blob, tmp_path / "meta.pt")
    raw = read_checkpoint(tmp_path / "meta.pt")
    assert type(raw["args"]).__name__ == "Namespace" and not isinstance(raw["args"], argparse.Namespace)
    _equal_state(model, load_model(tmp_path / "meta.pt"))


# -------------------------------------------------------------------------------------------- fairseq
def _fairseq_encoder(sd, prefix, cfg, gen, q_bias):
    """One encoder of ``sd`` in fairseq names, with random k/v (and optionally q) biases whose effect is
    compensated in the output bias so that the model stays the same when the biases are folded."""
    D, out = cfg.model.dim, {}
    for i in range(cfg.model.pos_conv_layers):
        for p in ("weight", "bias"):
            out[f"pos_conv.{i}.0.{p}"] = sd[f"{prefix}pos_conv_embed.convs.{i}.{p}"]
    out["layer_norm.weight"], out["layer_norm.bias"] = sd[f"{prefix}layer_norm.weight"], sd[f"{prefix}layer_norm.bias"]
    for i in range(cfg.model.num_layers):
        layer = f"{prefix}layers.{i}."
        q, k, v = sd[layer + "attention.qkv.weight"].chunk(3)
        bq = torch.randn(D, generator=gen) if q_bias else torch.zeros(D)
        bk, bv = torch.randn(D, generator=gen), torch.randn(D, generator=gen)
        w_out = sd[layer + "attention.proj.weight"]
        fs = f"layers.{i}."
        out.update({
            fs + "self_attn.q_proj.weight": q, fs + "self_attn.q_proj.bias": bq,
            fs + "self_attn.k_proj.weight": k, fs + "self_attn.k_proj.bias": bk,
            fs + "self_attn.v_proj.weight": v, fs + "self_attn.v_proj.bias": bv,
            fs + "self_attn.out_proj.weight": w_out,
            fs + "self_attn.out_proj.bias": sd[layer + "attention.proj.bias"] - w_out @ bv,
        })
        for ours, theirs in (("layer_norm", "self_attn_layer_norm"), ("final_layer_norm", "final_layer_norm"),
                             ("feed_forward.intermediate_dense", "fc1"), ("feed_forward.output_dense", "fc2")):
            for p in ("weight", "bias"):
                out[f"{fs}{theirs}.{p}"] = sd[f"{layer}{ours}.{p}"]
    return out


def fairseq_checkpoint(model: SpidR, cfg, q_bias: bool = False, seed: int = 0) -> dict:
    sd, gen = model.state_dict(), torch.Generator().manual_seed(seed)
    fs = {"mask_emb": sd["mask_embedding"]}
    for i in range(len(cfg.model.conv_kernels)):
        fs[f"feature_extractor.conv_layers.{i}.0.weight"] = sd[f"feature_extractor.conv_layers.{i}.conv.weight"]
        for p in ("weight", "bias"):
            fs[f"feature_extractor.conv_layers.{i}.2.1.{p}"] = sd[f"feature_extractor.conv_layers.{i}.layer_norm.{p}"]
    for p in ("weight", "bias"):
        fs[f"layer_norm.{p}"] = sd[f"feature_projection.layer_norm.{p}"]
        fs[f"post_extract_proj.{p}"] = sd[f"feature_projection.projection.{p}"]
    fs.update({"encoder." + k: v for k, v in _fairseq_encoder(sd, "student.", cfg, gen, q_bias).items()})
    fs["_ema"] = _fairseq_encoder(sd, "teacher.", cfg, gen, q_bias)  # fairseq keeps the EMA encoder nested
    for i in range(cfg.model.num_codebooks):
        fs[f"heads.{i}.weight"], fs[f"heads.{i}.bias"] = sd[f"heads.{i}.0.weight"], sd[f"heads.{i}.0.bias"]
        fs[f"_codebook{i}"], fs[f"_codebook_cnts{i}"] = sd[f"codebooks.{i}.codebook"], sd[f"codebooks.{i}.counts"]
    conv = "[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2"
    return {
        "cfg": {"model": {"_name": "dinosr", "encoder_attention_heads": 2, "conv_feature_layers": conv}},
        "model": fs,
        "optimizer_history": [{"num_updates": 1234}],
    }


def test_fairseq_dinosr_mapping_is_exact_for_k_and_v_biases(tiny, tmp_path):
    cfg, model = tiny
    ckpt = fairseq_checkpoint(model, cfg)
    torch.save(ckpt, tmp_path / "dinosr.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no q bias: nothing to warn about
        loaded, info = load(tmp_path / "dinosr.pt")
    assert (info.source, info.variant, info.step) == ("fairseq", "dinosr", 1234)
    assert loaded.cfg.heads == "last_layer"
    D = cfg.model.dim
    fs = ckpt["model"]
    for who, prefix, src in (("student", "encoder.", fs), ("teacher", "", fs["_ema"])):
        qkv = getattr(loaded, who).layers[3].attention.qkv.weight
        assert torch.equal(qkv[:D], src[prefix + "layers.3.self_attn.q_proj.weight"])
        assert torch.equal(qkv[D : 2 * D], src[prefix + "layers.3.self_attn.k_proj.weight"])
        assert torch.equal(qkv[2 * D :], src[prefix + "layers.3.self_attn.v_proj.weight"])
    # biases folded: every weight comes back, output biases to float rounding
    ours, back = model.state_dict(), loaded.state_dict()
    for k in ours:
        if k.endswith("attention.proj.bias"):
            torch.testing.assert_close(back[k], ours[k], atol=1e-5, rtol=0)
        elif k != "current_step":
            assert torch.equal(back[k], ours[k]), k
    wav = torch.randn(6000)
    torch.testing.assert_close(
        loaded.layer_outputs(wav, layers=[6])[6], model.layer_outputs(wav, layers=[6])[6], atol=1e-4, rtol=0
    )


def _fairseq_attention(x, heads, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b):
    """fairseq MultiheadAttention (no dropout, no mask), written out."""
    B, T, D = x.shape
    h = D // heads

    def split(t):
        return t.view(B, T, heads, h).transpose(1, 2)

    q = split(x @ q_w.T + q_b) * h**-0.5
    k, v = split(x @ k_w.T + k_b), split(x @ v_w.T + v_b)
    a = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
    return a.transpose(1, 2).reshape(B, T, D) @ o_w.T + o_b


def test_folded_attention_equals_fairseq_reference():
    torch.manual_seed(3)
    D, H = 32, 4
    w = {n: torch.randn(D, D) / math.sqrt(D) for n in ("q", "k", "v", "o")}
    b = {n: torch.randn(D) for n in ("k", "v", "o")}
    x = torch.randn(2, 7, D)
    ref = _fairseq_attention(x, H, w["q"], torch.zeros(D), w["k"], b["k"], w["v"], b["v"], w["o"], b["o"])
    qkv, bias, dropped = fuse_fairseq_attention(w["q"], w["k"], w["v"], w["o"], b["o"], None, b["k"], b["v"])
    from spidrkit.models.layers import Attention

    attn = Attention(D, H, 0.0).eval()
    with torch.no_grad():
        attn.qkv.weight.copy_(qkv)
        attn.proj.weight.copy_(w["o"])
        attn.proj.bias.copy_(bias)
        torch.testing.assert_close(attn(x), ref, atol=1e-5, rtol=0)
    assert dropped == 0.0
    # the k bias is irrelevant (a constant per softmax row); without folding b_v the output would differ
    no_fold = _fairseq_attention(x, H, w["q"], torch.zeros(D), w["k"], 0 * b["k"], w["v"], b["v"], w["o"], b["o"])
    torch.testing.assert_close(no_fold, ref, atol=1e-5, rtol=0)
    assert (_fairseq_attention(x, H, w["q"], 0, w["k"], 0, w["v"], 0, w["o"], b["o"]) - ref).abs().max() > 0.1


def test_fairseq_q_bias_is_dropped_with_a_warning(tiny, tmp_path):
    cfg, model = tiny
    ckpt = fairseq_checkpoint(model, cfg, q_bias=True)
    fs = ckpt["model"]
    student = max(float(v.norm()) for k, v in fs.items() if k.endswith("q_proj.bias"))
    teacher = max(float(v.norm()) for k, v in fs["_ema"].items() if k.endswith("q_proj.bias"))
    torch.save(ckpt, tmp_path / "dinosr.pt")
    with pytest.warns(UserWarning) as record:
        load_model(tmp_path / "dinosr.pt")
    messages = " | ".join(str(w.message) for w in record)
    assert "student's attention q-projection biases cannot be represented" in messages
    assert f"dropped (largest norm {student:.4g})" in messages and f"(largest norm {teacher:.4g})" in messages
    ckpt["model"]["encoder.layers.0.self_attn.k_proj.weight_g"] = torch.zeros(1)
    torch.save(ckpt, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match=r"no place in a DinoSR model: student.<- layers.0.self_attn.k_proj"):
        load_model(tmp_path / "odd.pt")


# ------------------------------------------------------------------------------------------ torch.hub
def test_torch_hub_entry_points(tiny, tmp_path):
    _, model = tiny
    torch.save({"model": model.state_dict()}, tmp_path / "released.pt")
    hub = torch.hub.load(str(REPO), "dinosr", source="local", checkpoint=str(tmp_path / "released.pt"), trust_repo=True)
    assert hub.cfg.heads == "last_layer"
    _equal_state(model, hub)
    # preset= is the explicit request for random weights (no warning), never combined with weights
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rnd = torch.hub.load(str(REPO), "spidr", source="local", preset="tiny", trust_repo=True)
    assert rnd.cfg.num_layers == 6 and not hasattr(rnd, "checkpoint_info")
    with pytest.raises(CheckpointError, match=r"pass checkpoint= \(weights\) or preset= \(RANDOM weights"):
        torch.hub.load(str(REPO), "spidr", source="local", preset="tiny", checkpoint="x.pt", trust_repo=True)


# ---------------------------------------------------------------------------------------- provenance
def test_resolve_model_from_path_loaded_and_bare_model(tiny, tmp_path):
    _, model = tiny
    path = tmp_path / "released.pt"
    torch.save({"model": model.state_dict()}, path)
    from_path = resolve_model(path, variant="dinosr")
    assert isinstance(from_path, Loaded) and not from_path.model.training
    assert from_path.info.as_dict() == {
        "model": f"dinosr:{file_sha256(path)}", "variant": "dinosr", "checkpoint": str(path.resolve()),
        "checkpoint_sha256": file_sha256(path), "checkpoint_format": "released", "step": 0,
    }
    _equal_state(model, from_path.model)
    # a Loaded is taken as is; provenance= replaces its own
    assert resolve_model(from_path) == from_path
    other = CheckpointInfo("spidrkit", "spidr", "/runs/x/step_5.pt", "0123456789abcdef", 5)
    relabelled = resolve_model(from_path, provenance=other)
    assert relabelled.model is from_path.model and relabelled.info is other
    # a bare model: the provenance given, else an in-memory identity, the hash of its weights
    bare = SpidR(model.cfg).train()
    bare.load_state_dict(model.state_dict())
    given = resolve_model(bare, provenance=other)
    assert given.model is bare and given.info is other and not bare.training
    alone = resolve_model(bare)
    sha = weights_sha256(model)
    assert alone.info == CheckpointInfo("in-memory", "spidr", None, sha, None, None)
    assert alone.info.model_id == f"spidr:{sha}" and len(sha) == 16 and model_info(bare) == alone.info
    with torch.no_grad():
        bare.mask_embedding.add_(1.0)
    assert resolve_model(bare).info.sha256 != sha  # the identity is the weights' own


def test_spidrkit_file_of_an_ablation_keeps_its_switches(tmp_path):
    cfg = load_config("tiny", [*SMALL, "model.heads=last_layer"])
    model = SpidR(cfg.model)
    path = tmp_path / "ablation.pt"
    torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "step": 7}, path)
    loaded, info = load(path)
    assert info.variant == "dinosr-exponential-teacher" and info.config == cfg and loaded.variant == "dinosr"
    # asking for a variant sets both switches
    with pytest.warns(UserWarning, match="the file says variant 'dinosr-exponential-teacher', using 'dinosr'"):
        asked = load(path, variant="dinosr")
    assert asked.info.variant == "dinosr" and asked.info.config.teacher.schedule == "linear"
    # older files kept a stale "spidr" label on ablations: the switches win, with a warning naming the file
    torch.save({"model": model.state_dict(), "config": {**cfg.to_dict(), "variant": "spidr"}, "step": 7}, path)
    stale = re.escape(f"{path}: stored config: variant 'spidr' contradicts its switches")
    with pytest.warns(UserWarning, match=stale):
        assert load(path).info.config == cfg


def test_random_weights_are_one_fixed_draw_and_leave_the_callers_rng_alone():
    """``random:tiny`` is the model drawn after ``torch.manual_seed(0)``, in every call (so every command that
    names it gets the same weights), drawn without moving the caller's generator."""
    from spidrkit.checkpoints import load

    torch.manual_seed(123)
    state = torch.get_rng_state()
    first, second = load("random:tiny").model.state_dict(), load("random:tiny").model.state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(0)
    drawn = SpidR(load_config("tiny").model).state_dict()
    assert first.keys() == second.keys() == drawn.keys()
    assert all(torch.equal(first[k], second[k]) and torch.equal(first[k], drawn[k]) for k in first)
