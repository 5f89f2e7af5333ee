import copy
import math

import pytest
import torch
import torch.nn.functional as F

from spidrkit.config import ModelConfig, load_config
from spidrkit.models.codebook import Codebook, instance_norm, perplexity
from spidrkit.models.layers import num_frames
from spidrkit.models.masking import sample_mask
from spidrkit.models.spidr import SpidR, count_parameters, step_perplexities

BASE = load_config("base").model


def small(**kw) -> ModelConfig:
    """Twelve layers and eight heads like BASE, narrow enough for the CPU."""
    d = dict(conv_dim=32, dim=64, num_heads=4, ffn_dim=128, num_layers=12, num_codebooks=8, codebook_size=16,
             dropout=0.0, attention_dropout=0.0, layerdrop=0.0)
    d.update(kw)
    return ModelConfig(**d)


def test_frame_counts():
    assert num_frames(16000, BASE.conv_kernels, BASE.conv_strides) == 49
    m = SpidR(small())
    for L in [400, 401, 719, 720, 1234, 16000, 16319, 16320, 33333]:
        expected = L
        for k, s in zip(BASE.conv_kernels, BASE.conv_strides):
            expected = math.floor((expected - k) / s) + 1
        assert m.num_frames(L) == expected
        assert m.feature_extractor(torch.zeros(1, L)).shape[1] == expected
    assert num_frames(399, BASE.conv_kernels, BASE.conv_strides) == 0
    t = num_frames(torch.tensor([16000, 32000]), BASE.conv_kernels, BASE.conv_strides)
    assert t.tolist() == [49, 99]


def test_base_parameter_counts():
    m = SpidR(BASE)
    assert count_parameters(m) == 183_245_824  # docs/formats.md#released-layout: 183.2M
    assert round(count_parameters(m.student) / 1e6, 1) == 88.5
    assert count_parameters(m.teacher) == count_parameters(m.student)
    assert round(count_parameters(m.feature_extractor) / 1e6, 1) == 4.2
    assert round(count_parameters(m.feature_projection) / 1e6, 1) == 0.4
    assert round(count_parameters(m.heads) / 1e6, 1) == 1.6
    assert all(p.requires_grad is False for p in m.teacher.parameters())


def spec_layout() -> dict[str, tuple[int, ...]]:
    """The released checkpoint layout of docs/formats.md, written out independently of the model code."""
    s: dict[str, tuple[int, ...]] = {"mask_embedding": (768,), "current_step": (1,)}
    conv_shapes = [(512, 1, 10)] + [(512, 512, 3)] * 4 + [(512, 512, 2)] * 2
    for i, shape in enumerate(conv_shapes):
        s[f"feature_extractor.conv_layers.{i}.conv.weight"] = shape
        s[f"feature_extractor.conv_layers.{i}.layer_norm.weight"] = (512,)
        s[f"feature_extractor.conv_layers.{i}.layer_norm.bias"] = (512,)
    s["feature_projection.layer_norm.weight"] = (512,)
    s["feature_projection.layer_norm.bias"] = (512,)
    s["feature_projection.projection.weight"] = (768, 512)
    s["feature_projection.projection.bias"] = (768,)
    for who in ("student", "teacher"):
        for i in range(5):
            s[f"{who}.pos_conv_embed.convs.{i}.weight"] = (768, 48, 19)
            s[f"{who}.pos_conv_embed.convs.{i}.bias"] = (768,)
        s[f"{who}.layer_norm.weight"] = (768,)
        s[f"{who}.layer_norm.bias"] = (768,)
        for i in range(12):
            p = f"{who}.layers.{i}."
            s[p + "attention.qkv.weight"] = (2304, 768)
            s[p + "attention.proj.weight"] = (768, 768)
            s[p + "attention.proj.bias"] = (768,)
            for ln in ("layer_norm", "final_layer_norm"):
                s[p + ln + ".weight"] = (768,)
                s[p + ln + ".bias"] = (768,)
            s[p + "feed_forward.intermediate_dense.weight"] = (3072, 768)
            s[p + "feed_forward.intermediate_dense.bias"] = (3072,)
            s[p + "feed_forward.output_dense.weight"] = (768, 3072)
            s[p + "feed_forward.output_dense.bias"] = (768,)
    for i in range(8):
        s[f"heads.{i}.0.weight"] = (256, 768)
        s[f"heads.{i}.0.bias"] = (256,)
        s[f"codebooks.{i}.codebook"] = (256, 768)
        s[f"codebooks.{i}.counts"] = (256,)
    return s


def test_state_dict_matches_released_layout():
    sd = SpidR(BASE).state_dict()
    got = {k: tuple(v.shape) for k, v in sd.items()}
    assert got == spec_layout()
    assert sd["current_step"].dtype == torch.int64
    assert all(v.dtype == torch.float32 for k, v in sd.items() if k != "current_step")


def test_codebook_update_by_hand():
    cb = Codebook(size=3, dim=2, decay=0.9)
    cb.codebook.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]))
    cb.counts.copy_(torch.tensor([1.0, 2.0, 1.0]))
    z = torch.tensor([[1.0, 1.0], [0.9, 0.1], [0.0, 1.2]])
    labels = cb.assign(z)
    # codewords C = s / n = [[1, 0], [0, 1], [5, 5]]; nearest: z0 -> tie-free check below
    brute = torch.cdist(z, cb.codewords).argmin(1)
    assert labels.tolist() == brute.tolist() == [0, 0, 1]
    sums, counts = cb.statistics(z, labels)
    # z0 + z1 = [1.9, 1.1] in float32 (not exactly representable): equal to rounding
    torch.testing.assert_close(sums, torch.tensor([[1.9, 1.1], [0.0, 1.2], [0.0, 0.0]]), atol=1e-6, rtol=0)
    assert counts.tolist() == [2.0, 1.0, 0.0]
    cb.update(sums, counts)
    s0 = 0.9 * torch.tensor([1.0, 0.0]) + 0.1 * torch.tensor([1.9, 1.1])
    s1 = 0.9 * torch.tensor([0.0, 2.0]) + 0.1 * torch.tensor([0.0, 1.2])
    assert torch.allclose(cb.codebook[0], s0) and torch.allclose(cb.codebook[1], s1)
    assert torch.allclose(cb.counts, torch.tensor([0.9 * 1 + 0.1 * 2, 0.9 * 2 + 0.1 * 1, 1.0]))
    assert cb.codebook[2].tolist() == [5.0, 5.0]  # unchosen codeword unchanged
    assert torch.allclose(cb.codewords[0], s0 / 1.1)


def test_instance_norm_and_perplexity():
    z = torch.randn(2, 50, 4) * 3 + 1
    n = instance_norm(z)
    assert torch.allclose(n.mean(1), torch.zeros(2, 4), atol=1e-5)
    assert torch.allclose(n.var(1, unbiased=False), torch.ones(2, 4), atol=1e-3)
    assert perplexity(torch.full((256,), 1 / 256)).item() == pytest.approx(256, rel=1e-5)
    assert perplexity(torch.tensor([1.0, 0.0, 0.0])).item() == pytest.approx(1.0)
    assert perplexity(torch.tensor([0.5, 0.25, 0.25])).item() == pytest.approx(2 ** 1.5)


def test_teacher_ema_formula_and_pos_conv_copy():
    m = SpidR(small())
    with torch.no_grad():
        for p in m.student.parameters():
            p.add_(torch.randn_like(p))
    before = copy.deepcopy(m.teacher.state_dict())
    m.update_teacher(0.99)
    s = m.student.state_dict()
    for k, t in m.teacher.state_dict().items():
        if k.startswith("pos_conv_embed."):
            assert torch.equal(t, s[k]), k
        else:
            assert torch.allclose(t, 0.99 * before[k] + 0.01 * s[k], atol=1e-6), k
    frozen = copy.deepcopy(m.teacher.state_dict())
    m.update_teacher(1.0)
    assert all(torch.equal(v, frozen[k]) for k, v in m.teacher.state_dict().items())


def test_loss_matches_hand_computation():
    m = SpidR(small(num_layers=4, num_codebooks=2))
    m.train()
    wav = torch.randn(2, 8000)
    T = m.num_frames(8000)
    mask = sample_mask(2, T, rng=0)
    out = m(wav, mask)
    with torch.no_grad():
        feats = m.features(wav)
        _, t_reps = m.teacher(feats)
        x = torch.where(mask[..., None], m.mask_embedding, feats)
        _, s_reps = m.student(x)
    for k, layer in enumerate(m.target_layers):
        z = instance_norm(t_reps[layer - 1])
        labels = torch.cdist(z.flatten(0, 1), m.codebooks[k].codewords).argmin(1).view(2, T)
        logits = m.heads[k](s_reps[layer - 1])
        ce = F.cross_entropy(logits[mask], labels[mask], reduction="sum")
        assert out["ce_sum"][k].item() == pytest.approx(ce.item(), rel=1e-4)
        # codebook statistics come from the masked frames only (as in the reference release)
        assert torch.equal(out["counts"][k], torch.bincount(labels[mask], minlength=16).float())
        sums = torch.zeros(16, 64).index_add_(0, labels[mask], z[mask])
        assert torch.allclose(out["sums"][k], sums, atol=1e-4)
    assert out["num_masked"].item() == mask.sum().item()
    cb, pred = step_perplexities(out)
    assert cb.shape == pred.shape == (2,) and (cb >= 1).all() and (pred <= 16 + 1e-3).all()


@pytest.mark.parametrize("heads", ["per_layer", "last_layer"])
def test_gradient_paths_of_heads(heads):
    """SpidR: head k's loss reaches layers 1..k only; DinoSR: every head reads the last layer."""
    m = SpidR(small(heads=heads))
    m.train()
    wav = torch.randn(1, 6400)
    mask = sample_mask(1, m.num_frames(6400), rng=0)
    out = m(wav, mask)
    for k, layer in enumerate(m.target_layers):
        m.zero_grad(set_to_none=True)
        out["ce_sum"][k].backward(retain_graph=True)
        for j, block in enumerate(m.student.layers, start=1):
            g = block.feed_forward.output_dense.weight.grad
            reached = g is not None and g.abs().sum().item() > 0
            read = layer if heads == "per_layer" else 12
            assert reached == (j <= read), (k, j)
        # DinoSR's heads read the final output, through the last LayerNorm; SpidR's never touch it
        ln = m.student.layers[-1].final_layer_norm.weight
        assert (ln.grad is not None and ln.grad.abs().sum() > 0) == (heads == "last_layer")
        assert m.heads[k][0].weight.grad.abs().sum() > 0
        others = [m.heads[o][0].weight.grad for o in range(8) if o != k]
        assert all(g is None or g.abs().sum() == 0 for g in others)
    assert m.head_input_layers == ((5, 6, 7, 8, 9, 10, 11, 12) if heads == "per_layer" else (12,) * 8)
    assert all(p.grad is None for p in m.teacher.parameters())


def test_layerdrop_skips_the_residual_stream_only_in_training():
    m = SpidR(small(num_layers=4, num_codebooks=2))
    x = torch.randn(1, 30, 64)
    m.eval()
    with torch.no_grad():
        a, _ = m.student(x, layerdrop=0.5)
        b, _ = m.student(x)
        assert torch.equal(a, b)  # eval: nothing dropped
        m.train()
        torch.manual_seed(1)
        outs = {tuple(m.student(x, layerdrop=0.5)[0].flatten()[:4].tolist()) for _ in range(8)}
        # a layer dropped with probability 1 leaves the stream as it was, yet still gives its r
        _, reps4 = m.student(x, num_layers=4, layerdrop=0.999999)
    assert len(outs) > 1  # training: different layers dropped from one call to the next
    assert len(reps4) == 4 and all(r.abs().sum() > 0 for r in reps4)


def test_padding_equals_per_file():
    m = SpidR(small(num_layers=4, num_codebooks=2))
    lengths = [16000, 9000, 12345]
    wavs = [torch.randn(n) * (i + 1) + i for i, n in enumerate(lengths)]
    batch = torch.zeros(3, max(lengths))
    for i, w in enumerate(wavs):
        batch[i, : len(w)] = w
    with torch.no_grad():
        out = m.layer_outputs(batch, torch.tensor(lengths), layers=[2, 4])
        preds = m.codebook_predictions(batch, torch.tensor(lengths))
        for i, w in enumerate(wavs):
            single = m.layer_outputs(w, layers=[2, 4])
            T = m.num_frames(len(w))
            for layer in (2, 4):
                assert single[layer].shape == (1, T, 64)
                assert (out[layer][i, :T] - single[layer][0]).abs().max() < 1e-4
                assert out[layer][i, T:].abs().sum() == 0
            sp = m.codebook_predictions(w)
            for layer, pred in preds.items():
                assert (pred.probs[i, :T] - sp[layer].probs[0]).abs().max() < 1e-4
                assert (pred.units[i, T:] == -1).all()
    assert set(preds) == {3, 4}


def test_layer_outputs_standardises_and_stops_early():
    m = SpidR(small(num_layers=4, num_codebooks=2))
    w = torch.randn(8000)
    with torch.no_grad():
        a = m.layer_outputs(w * 7 + 3, layers=2)
        b = m.layer_outputs(w, layers=[2])
        c = m.layer_outputs((w - w.mean()) / w.std(unbiased=False), layers=[2], standardize=False)
    assert (a[2] - b[2]).abs().max() < 1e-4 and (b[2] - c[2]).abs().max() < 1e-4
    calls = []
    hooks = [blk.register_forward_hook(lambda *_: calls.append(1)) for blk in m.student.layers]
    with torch.no_grad():
        m.layer_outputs(w, layers=[2])
    assert len(calls) == 2
    for h in hooks:
        h.remove()
    with pytest.raises(ValueError, match="out of range"):
        m.layer_outputs(w, layers=[0])
    with pytest.raises(ValueError, match="at least 400"):
        m.layer_outputs(torch.randn(300))


def test_conv_layer_equals_conv1d_layernorm_gelu():
    from spidrkit.models.layers import ConvLayer

    layer = ConvLayer(8, 16, kernel=3, stride=2)
    x = torch.randn(2, 8, 101)
    ref = F.conv1d(x, layer.conv.weight, stride=2)
    ref = F.gelu(F.layer_norm(ref.transpose(1, 2), (16,), layer.layer_norm.weight, layer.layer_norm.bias))
    assert torch.allclose(layer(x.transpose(1, 2)), ref, atol=1e-5)
    assert ref.shape[1] == (101 - 3) // 2 + 1


def test_projection_dropout_scope_decides_what_the_teacher_reads():
    """``student`` (the release): the teacher's targets come from the projection before its dropout."""
    wav = torch.randn(2, 8000)
    for scope in ("student", "student_and_teacher"):
        torch.manual_seed(0)
        model = SpidR(small(projection_dropout=0.5, projection_dropout_scope=scope)).train()
        mask = sample_mask(2, model.num_frames(8000), rng=0)
        out = model(wav, mask)
        clean = model.feature_projection(model.feature_extractor(wav), dropout=False)
        _, sums, counts = model.teacher_targets(clean, weights=mask.float())
        same = torch.equal(out["counts"], counts) and torch.allclose(out["sums"], sums, atol=1e-5)
        assert same == (scope == "student"), scope


def test_release_initialisation_and_independent_teacher():
    torch.manual_seed(0)
    m = SpidR(small(init="release", teacher_init="independent", num_layers=2, num_codebooks=2, dim=256,
                    ffn_dim=512))
    d = 256
    qkv, proj = m.student.layers[0].attention.qkv.weight.detach(), m.student.layers[0].attention.proj
    # Xavier-uniform: bound gain sqrt(6 / (fan_in + fan_out)); std = bound / sqrt(3)
    assert float(qkv.abs().max()) <= math.sqrt(6 / (4 * d)) / math.sqrt(2)
    assert float(proj.weight.detach().abs().max()) <= math.sqrt(6 / (2 * d))
    assert float(proj.bias.detach().abs().max()) == 0
    ffn = m.student.layers[0].feed_forward.intermediate_dense.weight.detach()
    assert abs(float(ffn.std()) - 0.02) < 0.001
    # heads and positional convolutions: PyTorch's defaults (uniform, bound 1 / sqrt(fan_in)), biases too
    head = m.heads[0][0]
    assert float(head.bias.detach().abs().max()) > 0 and float(head.weight.detach().abs().max()) <= 1 / math.sqrt(d)
    conv = m.student.pos_conv_embed.convs[0]
    assert float(conv.bias.detach().abs().max()) > 0
    # the teacher: its blocks' weights drawn again, its norms and positional convolution copied
    assert not torch.equal(m.teacher.layers[1].feed_forward.output_dense.weight, m.student.layers[1].feed_forward
                           .output_dense.weight)
    assert torch.equal(m.teacher.pos_conv_embed.convs[2].weight, m.student.pos_conv_embed.convs[2].weight)
    assert torch.equal(m.teacher.layers[0].layer_norm.weight, m.student.layers[0].layer_norm.weight)
    # the default (normal, copy) draws exactly what it drew before these choices existed: same RNG use
    torch.manual_seed(0)
    a = SpidR(small(num_layers=2, num_codebooks=2)).state_dict()
    torch.manual_seed(0)
    b = SpidR(small(num_layers=2, num_codebooks=2, teacher_init="copy", init="normal")).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a["student." + k[8:]], a[k]) for k in a if k.startswith("teacher."))
