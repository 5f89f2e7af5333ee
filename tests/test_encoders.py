"""Other encoders: transformers HuBERT / wav2vec 2.0 / WavLM / data2vec-audio behind the SpeechEncoder
interface, their model directories, Hub names (offline) and fairseq checkpoints, extraction and the sweep.
Every model is a tiny random config built here: nothing is downloaded."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import soundfile as sf
import torch
import transformers as T

import spidrkit
from spidrkit.checkpoints import CheckpointError
from spidrkit.cli import main as cli_main
from spidrkit.data.corpora.manifest import ManifestEntry, write_manifest
from spidrkit.encoders import EncoderError, HFEncoder, input_normalization_of
from spidrkit.extraction.features_io import iter_feature_files, load_features
from spidrkit.io import file_sha256, read_sidecar
from spidrkit.models.interface import SpeechEncoder
from spidrkit.models.signal import standardize_batch

SMALL = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=48,
             conv_dim=(16, 16, 16), conv_kernel=(10, 3, 2), conv_stride=(5, 2, 2),
             num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4)
# (family, config class, model class, extra settings, expected input normalisation)
FAMILIES = {
    "hubert-base": (T.HubertConfig, T.HubertModel, dict(feat_extract_norm="group"), "raw"),
    "hubert-large": (T.HubertConfig, T.HubertModel, dict(feat_extract_norm="layer", do_stable_layer_norm=True),
                     "standardize"),
    "wav2vec2-base": (T.Wav2Vec2Config, T.Wav2Vec2Model, dict(feat_extract_norm="group"), "raw"),
    "wav2vec2-large": (T.Wav2Vec2Config, T.Wav2Vec2Model,
                       dict(feat_extract_norm="layer", do_stable_layer_norm=True), "standardize"),
    "wavlm-base": (T.WavLMConfig, T.WavLMModel, dict(feat_extract_norm="group", num_buckets=16), "raw"),
    "wavlm-large": (T.WavLMConfig, T.WavLMModel,
                    dict(feat_extract_norm="layer", do_stable_layer_norm=True, num_buckets=16), "standardize"),
    "data2vec-audio": (T.Data2VecAudioConfig, T.Data2VecAudioModel, dict(num_conv_pos_embeddings=5), "standardize"),
}
LENGTHS = [3000, 1700, 3000, 2222]  # two of equal length (one batch of a group-norm model), two others


def tiny(name: str, seed: int = 0, **extra) -> torch.nn.Module:
    config_cls, model_cls, settings, _ = FAMILIES[name]
    torch.manual_seed(seed)
    return model_cls(config_cls(**{**SMALL, **settings, **extra})).eval()


def batch(lengths=LENGTHS, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    wav = torch.zeros(len(lengths), max(lengths))
    for b, n in enumerate(lengths):
        wav[b, :n] = 0.1 * torch.randn(n, generator=gen) + 0.02
    return wav, torch.tensor(lengths)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_layers_are_the_models_hidden_states_and_batched_equals_unbatched(name):
    model = tiny(name)
    enc = HFEncoder(model)
    assert isinstance(enc, SpeechEncoder)
    assert enc.input_normalization == FAMILIES[name][3]
    assert (enc.num_layers, enc.dim, enc.sample_rate, enc.frame_rate, enc.min_samples) == (3, 32, 16000, 800, 30)
    wav, lengths = batch()
    with torch.inference_mode():
        out = enc.layer_outputs(wav, lengths, layers=[1, 3])
        assert out[1].shape == (4, enc.num_frames(max(LENGTHS)), 32)
        for b, n in enumerate(LENGTHS):
            x = wav[b, :n]
            x = standardize_batch(x[None]) if enc.input_normalization == "standardize" else x[None]
            own = model(x, output_hidden_states=True).hidden_states
            one = enc.layer_outputs(wav[b, :n], layers=[1, 3])
            t = enc.num_frames(n)
            assert t == int(model._get_feat_extract_output_lengths(torch.tensor(n)))
            for layer in (1, 3):
                torch.testing.assert_close(one[layer][0], own[layer][0], atol=1e-5, rtol=0)
                assert (out[layer][b, :t] - one[layer][0]).abs().max() <= 1e-4
                assert bool((out[layer][b, t:] == 0).all())


def test_geometry_of_the_published_conv_layout():
    """The paper's 50 Hz, 400-sample receptive field; frames computed as transformers computes them."""
    model = T.HubertModel(T.HubertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=16, conv_dim=(8,) * 7))
    enc = HFEncoder(model)
    assert (enc.frame_rate, enc.min_samples, enc.num_frames(399), enc.num_frames(400), enc.num_frames(16000)) == (
        50.0, 400, 0, 1, 49)
    n = torch.arange(0, 5000, 37)
    assert torch.equal(enc.num_frames(n), model._get_feat_extract_output_lengths(n).clamp(min=0))


def test_input_normalization_per_family_and_when_asked():
    base, large = T.WavLMConfig(feat_extract_norm="group"), T.WavLMConfig(feat_extract_norm="layer")
    assert (input_normalization_of(base), input_normalization_of(large)) == ("raw", "standardize")
    assert input_normalization_of(T.Data2VecAudioConfig()) == "standardize"
    assert input_normalization_of(base, "standardize") == "standardize"
    # a preprocessor config is honoured only when asked
    assert input_normalization_of(base, "preprocessor", {"do_normalize": True}) == "standardize"
    assert input_normalization_of(large, "preprocessor", {"do_normalize": False}) == "raw"
    with pytest.raises(EncoderError, match="needs a preprocessor_config.json with a boolean do_normalize"):
        input_normalization_of(base, "preprocessor", None)
    with pytest.raises(EncoderError, match="normalization must be one of auto, raw, standardize, preprocessor"):
        input_normalization_of(base, "peak")
    with pytest.raises(EncoderError, match=r"layers \[4\] out of range: the hubert model has layers 1..3"):
        HFEncoder(tiny("hubert-base")).layer_outputs(torch.zeros(800), layers=[4])


def test_model_directory_loads_with_provenance(tmp_path):
    model = tiny("wavlm-large")
    model.save_pretrained(tmp_path / "wavlm")
    (tmp_path / "wavlm" / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))
    enc, info = spidrkit.load(tmp_path / "wavlm")
    assert (info.source, info.variant, info.path) == ("transformers", "wavlm", str((tmp_path / "wavlm").resolve()))
    assert info.sha256 == file_sha256(tmp_path / "wavlm" / "model.safetensors")
    assert enc.input_normalization == "standardize"
    assert spidrkit.load_model(tmp_path / "wavlm", normalization="preprocessor").input_normalization == "raw"
    wav = batch()[0][0]
    with torch.inference_mode():
        assert torch.equal(enc.layer_outputs(wav)[2], HFEncoder(model).layer_outputs(wav)[2])
    (tmp_path / "wavlm" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="config.json but no weights"):
        spidrkit.load(tmp_path / "wavlm")
    with pytest.raises(CheckpointError, match="variant/config apply to SpidR/DinoSR checkpoints only"):
        model.save_pretrained(tmp_path / "again")
        spidrkit.load(tmp_path / "again", variant="spidr")


def test_a_hub_name_offline_and_not_cached_is_one_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError) as err:
        spidrkit.load("spidrkit-tests/no-such-encoder")
    assert str(err.value) == (
        f"spidrkit-tests/no-such-encoder: not in the Hugging Face cache ({tmp_path / 'hub'}) and HF_HUB_OFFLINE is "
        "set: unset it to download, or pass a local path")
    assert not (tmp_path / "hub").exists() or not any((tmp_path / "hub").rglob("*.safetensors"))
    # a missing checkpoint file is still that, not a Hub name
    with pytest.raises(CheckpointError) as err:
        spidrkit.load(tmp_path / "runs" / "x.pt")
    assert str(err.value) == f"no such file or folder: {tmp_path / 'runs' / 'x.pt'}"


# ------------------------------------------------------------------------------------ fairseq checkpoints
def fairseq_layout(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The INVERSE mapping (transformers -> fairseq names), written independently of spidrkit's."""
    out = {}
    for k, v in model.state_dict().items():
        f = k.replace("masked_spec_embed", "mask_emb")
        f = f.replace("feature_projection.projection.", "post_extract_proj.")
        f = f.replace("feature_projection.layer_norm.", "layer_norm.")
        f = f.replace("encoder.pos_conv_embed.conv.parametrizations.weight.original0", "encoder.pos_conv.0.weight_g")
        f = f.replace("encoder.pos_conv_embed.conv.parametrizations.weight.original1", "encoder.pos_conv.0.weight_v")
        f = f.replace("encoder.pos_conv_embed.conv.bias", "encoder.pos_conv.0.bias")
        f = f.replace(".attention.", ".self_attn.").replace(".feed_forward.intermediate_dense.", ".fc1.")
        f = f.replace(".feed_forward.output_dense.", ".fc2.")
        if f.startswith("encoder.layers.") and ".layer_norm." in f:
            f = f.replace(".layer_norm.", ".self_attn_layer_norm.")
        if f.startswith("feature_extractor."):
            i = int(f.split(".")[2])
            norm = ".2." if model.config.feat_extract_norm == "group" else ".2.1."
            f = f.replace(f"conv_layers.{i}.conv.", f"conv_layers.{i}.0.").replace(f"conv_layers.{i}.layer_norm.",
                                                                                  f"conv_layers.{i}{norm}")
        out[f] = v.clone()
    return out


def model_cfg(model, name: str) -> dict:
    c = model.config
    layers = " + ".join(f"[({d}, {k}, {s})]" for d, k, s in zip(c.conv_dim, c.conv_kernel, c.conv_stride))
    return {"_name": name, "encoder_layers": c.num_hidden_layers, "encoder_embed_dim": c.hidden_size,
            "encoder_ffn_embed_dim": c.intermediate_size, "encoder_attention_heads": c.num_attention_heads,
            "activation_fn": "gelu", "extractor_mode": "default" if c.feat_extract_norm == "group" else "layer_norm",
            "conv_feature_layers": layers, "conv_bias": False, "conv_pos": c.num_conv_pos_embeddings,
            "conv_pos_groups": c.num_conv_pos_embedding_groups, "layer_norm_first": c.do_stable_layer_norm}


def test_fairseq_hubert_and_wav2vec2_map_exactly(tmp_path):
    hubert, w2v = tiny("hubert-base", seed=1), tiny("wav2vec2-large", seed=2)
    sd = fairseq_layout(hubert)
    sd.update({"label_embs_concat": torch.randn(504, 8), "final_proj.weight": torch.randn(8, 32),
               "final_proj.bias": torch.zeros(8)})  # pretraining heads: dropped
    torch.save({"cfg": {"model": model_cfg(hubert, "hubert"), "task": {"normalize": False}}, "model": sd},
               tmp_path / "hubert.pt")
    sd = fairseq_layout(w2v)
    sd.update({"quantizer.vars": torch.randn(1, 8, 4), "project_q.weight": torch.randn(4, 4)})
    args = argparse.Namespace(arch="wav2vec2", normalize=True, **{k: v for k, v in model_cfg(w2v, "x").items()
                                                                  if k != "_name"})
    torch.save({"args": args, "cfg": None, "model": sd}, tmp_path / "w2v.pt")  # the older layout: an args namespace
    wav = batch([2600, 1900])
    for path, model, family, norm in ((tmp_path / "hubert.pt", hubert, "hubert", "raw"),
                                      (tmp_path / "w2v.pt", w2v, "wav2vec2", "standardize")):
        enc, info = spidrkit.load(path)
        assert (info.source, info.variant, enc.input_normalization) == ("fairseq", family, norm)
        assert type(enc.model) is type(model)
        with torch.inference_mode():
            got, want = enc.layer_outputs(*wav), HFEncoder(model).layer_outputs(*wav)
        assert all(torch.equal(got[la], want[la]) for la in (1, 2, 3))


def test_fairseq_file_with_unknown_keys_is_refused(tmp_path):
    model = tiny("hubert-base")
    sd = {**fairseq_layout(model), "encoder.layers.0.adapter.weight": torch.zeros(2)}
    torch.save({"cfg": {"model": model_cfg(model, "hubert")}, "model": sd}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="fairseq keys with no place in a transformers encoder: "
                                              "encoder.layers.0.adapter.weight"):
        spidrkit.load(tmp_path / "odd.pt")


def test_random_like_is_the_same_architecture_reseeded():
    enc = HFEncoder(tiny("wavlm-base"), normalization="standardize")
    a, b, c = enc.random_like(3), enc.random_like(3), enc.random_like(4)
    assert type(a.model) is T.WavLMModel and a.input_normalization == "standardize"
    assert a.model.config.to_dict() == enc.model.config.to_dict()
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.feature_projection.projection.weight"],
                           sc["model.feature_projection.projection.weight"])


# ------------------------------------------------------------------------------------- the pipeline
def base_layout_hubert(folder):
    """A tiny HuBERT with the published 50 Hz conv layout, saved as a model directory."""
    torch.manual_seed(0)
    model = T.HubertModel(T.HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=48, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=4)).eval()
    model.save_pretrained(folder)
    return model


def test_extract_cli_writes_the_wrappers_features(tmp_path):
    model = base_layout_hubert(tmp_path / "hubert")
    rng = np.random.default_rng(0)
    entries = []
    for i, n in enumerate([4800, 9000, 4800, 7000]):
        sf.write(tmp_path / f"u{i}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
        entries.append(ManifestEntry(f"u{i}", str(tmp_path / f"u{i}.wav"), n))
    manifest = write_manifest(entries, tmp_path / "m.csv")
    assert cli_main(["extract", str(manifest), "--model", str(tmp_path / "hubert"), "--layers", "2",
                     "-o", str(tmp_path / "f"), "--quiet"]) == 0
    feats = {fid: load_features(p) for fid, p in iter_feature_files(tmp_path / "f")}
    enc = HFEncoder(model)
    for e in entries:
        wav = torch.from_numpy(sf.read(e.path, dtype="float32")[0])
        with torch.inference_mode():
            torch.testing.assert_close(feats[e.fileid], enc.layer_outputs(wav, layers=[2])[2][0], atol=1e-5, rtol=0)
    side = read_sidecar(tmp_path / "f")
    assert (side["variant"], side["checkpoint_format"], side["frame_rate"]) == ("hubert", "transformers", 50.0)
    assert cli_main(["extract", str(manifest), "--model", str(tmp_path / "hubert"), "--layers", "2",
                     "--units", "codebook", "-o", str(tmp_path / "u"), "--quiet"]) == 2
    # --normalization: the same model reading standardised audio gives the standardised wrapper's features
    assert cli_main(["extract", str(manifest), "--model", str(tmp_path / "hubert"), "--layers", "2",
                     "--normalization", "standardize", "-o", str(tmp_path / "s"), "--quiet"]) == 0
    standardized = {fid: load_features(p) for fid, p in iter_feature_files(tmp_path / "s")}
    enc = HFEncoder(model, normalization="standardize")
    wav = torch.from_numpy(sf.read(entries[1].path, dtype="float32")[0])
    with torch.inference_mode():
        expected = enc.layer_outputs(wav, layers=[2])[2][0]
    torch.testing.assert_close(standardized["u1"], expected, atol=1e-5, rtol=0)
    assert (standardized["u1"] - feats["u1"]).abs().max() > 1e-3  # the input normalisation did change
    # SpidR reads standardised audio only: another normalisation is a user error, not silently ignored
    assert cli_main(["extract", str(manifest), "--model", "random:tiny", "--normalization", "raw",
                     "-o", str(tmp_path / "r"), "--quiet"]) == 2


@pytest.mark.slow
@pytest.mark.needs_flite
def test_sweep_cli_evaluates_a_hubert_directory(speech_corpus, tmp_path):
    base_layout_hubert(tmp_path / "hubert")
    out = tmp_path / "sweep"
    assert cli_main(["evaluate", "sweep", "--model", str(tmp_path / "hubert"), "--corpus", str(speech_corpus), "-o",
                     str(out), "--baselines", "mfcc,random", "--kmeans", "8", "--max-files", "6",
                     "--quiet"]) == 0
    res = json.loads((out / "report.json").read_text())["results"]
    assert list(res["layers"]) == ["1", "2"]
    assert set(res["baselines"]) == {"mfcc", *[k for k in res["baselines"] if k.startswith("random init (L")]}
    assert len(res["baselines"]) == 2
    assert not any(k.startswith("codebook") for k in res["units"]) and any(k.startswith("kmeans") for k in res["units"])
    assert (out / "report.md").is_file()
