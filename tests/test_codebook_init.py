"""Opt-in codebook designs for long memories: data initialisation and the decay warm-up (models/codebook.py)."""

from __future__ import annotations

import copy

import pytest
import torch

from spidrkit.config import load_config
from spidrkit.models.codebook import Codebook, decay_at, instance_norm
from spidrkit.models.masking import sample_mask
from spidrkit.models.spidr import SpidR
from spidrkit.training.step import MicroBatch, Stepper

SMALL = [
    "model.conv_dim=32", "model.dim=64", "model.num_layers=2", "model.num_heads=2", "model.ffn_dim=128",
    "model.num_codebooks=2", "model.codebook_size=16", "model.dropout=0.0", "model.layerdrop=0.0",
]


def test_decay_warmup_by_hand():
    """start 0.5 (memory 2 steps) -> 0.9 (memory 10) over 4 steps: memory 2 + 8 s / 4."""
    args = (0.9, 0.5, 4)
    assert decay_at(0, *args) == 0.5
    assert decay_at(1, *args) == pytest.approx(1 - 1 / 4)  # memory 4
    assert decay_at(2, *args) == pytest.approx(5 / 6)  # memory 6
    assert decay_at(4, *args) == pytest.approx(0.9) and decay_at(1000, *args) == pytest.approx(0.9)
    assert decay_at(7, 0.9997, 0.5, 0) == 0.9997  # no warm-up: the configured decay itself
    t = decay_at(torch.tensor([2]), *args)
    assert t.dtype == torch.float32 and float(t) == pytest.approx(5 / 6)
    # one EMA step with tau = 5/6: n = 5/6 * 1 + 1/6 * 3 = 4/3, s = 5/6 * s0 + 1/6 * sums
    cb = Codebook(2, 1)
    s0 = cb.codebook.clone()
    cb.update(torch.tensor([[6.0], [0.0]]), torch.tensor([3.0, 0.0]), decay_at(2, *args))
    assert cb.counts.tolist() == pytest.approx([4 / 3, 1.0])
    assert float(cb.codebook[0, 0]) == pytest.approx(5 / 6 * float(s0[0, 0]) + 1.0)
    assert float(cb.codebook[1, 0]) == float(s0[1, 0])  # not chosen: unchanged


def test_model_uses_the_warmup_decay_of_its_step():
    cfg = load_config("tiny", [*SMALL, "model.codebook_decay=0.9997", "model.codebook_decay_warmup=100",
                               "model.codebook_decay_start=0.9"])
    model = SpidR(cfg.model)
    model.current_step.fill_(40)  # memory 10 + (3333.33 - 10) * 0.4 = 1339.33 steps
    tau = 1 - 1 / (10 + (1 / 0.0003 - 10) * 0.4)
    sums, counts = torch.randn(2, 16, 64), torch.randint(0, 3, (2, 16)).float()
    ref = copy.deepcopy(model.codebooks[0])
    model.update_codebooks(sums, counts)
    ref.update(sums[0], counts[0], tau)
    assert torch.allclose(model.codebooks[0].codebook, ref.codebook, rtol=1e-6, atol=1e-7)
    assert torch.allclose(model.codebooks[0].counts, ref.counts, rtol=1e-6)


def test_init_from_draws_distinct_rows():
    cb = Codebook(8, 3)
    z = torch.randn(20, 3)
    idx = cb.init_from(z, torch.Generator().manual_seed(1))
    assert len(set(idx.tolist())) == 8 and torch.equal(cb.codewords, z[idx]) and cb.counts.tolist() == [1.0] * 8
    few = Codebook(8, 3)
    idx = few.init_from(z[:5], torch.Generator().manual_seed(1))
    assert set(idx[:5].tolist()) == set(range(5))  # every row used once, then drawn again
    with pytest.raises(ValueError, match="no frame"):
        few.init_from(z[:0], torch.Generator())


def _normalised_masked_targets(model: SpidR, wav: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """The first batch's normalised teacher targets, computed independently of init_codebooks."""
    with torch.no_grad():
        feats = model.feature_projection(model.feature_extractor(wav), dropout=False)
        _, reps = model.teacher(feats)
    return [instance_norm(reps[la - 1]).flatten(0, 1)[mask.flatten()] for la in model.target_layers]


def test_data_init_puts_every_codeword_on_a_first_batch_target(monkeypatch):
    cfg = load_config("tiny", [*SMALL, "model.codebook_init=data", "train.precision=fp32"])
    torch.manual_seed(0)
    model = SpidR(cfg.model)
    stepper = Stepper(model, cfg, torch.device("cpu"))
    L = 16000
    mask = sample_mask(2, model.num_frames(L), rng=0)
    wav = torch.randn(2, L, generator=torch.Generator().manual_seed(3))
    assert int(mask.sum()) >= 16
    targets = _normalised_masked_targets(model, wav, mask)
    seen = {"calls": 0}
    real = model.init_codebooks

    def spy(batches, generator):
        out = real(batches, generator)
        seen["codewords"] = [cb.codewords.clone() for cb in model.codebooks]
        seen["calls"] += 1
        return out

    monkeypatch.setattr(model, "init_codebooks", spy)
    stepper.step([MicroBatch(wav, mask)])
    for k, cw in enumerate(seen["codewords"]):
        match = (cw[:, None, :] == targets[k][None, :, :]).all(-1)  # (V, N): exact equality
        assert match.any(1).all()  # every codeword is one of the targets
        assert len({int(i) for i in match.float().argmax(1)}) == 16  # and all of them distinct
    stepper.step([MicroBatch(wav, mask)])  # later steps do not draw again
    assert seen["calls"] == 1 and stepper.step_count == 2


def test_default_random_init_never_reads_the_data(monkeypatch):
    cfg = load_config("tiny", SMALL)
    torch.manual_seed(0)
    model = SpidR(cfg.model)
    monkeypatch.setattr(model, "init_codebooks", lambda *a: pytest.fail("drew codewords from the data"))
    stepper = Stepper(model, cfg, torch.device("cpu"))
    stepper.step([MicroBatch(torch.randn(2, 8000), sample_mask(2, model.num_frames(8000), rng=0))])
