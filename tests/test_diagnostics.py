"""Fixed-set diagnostics: perplexity of unit histograms, NMI, position bins (hand-computed), and the model's
teacher and head units over a fixed set of frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from sklearn.metrics import normalized_mutual_info_score

from spidrkit.config import load_config
from spidrkit.data.corpora.alignments import write_frame_labels
from spidrkit.data.corpora.manifest import ManifestEntry, write_manifest
from spidrkit.evaluation.runs.diagnostics import diagnose, frame_phones, nmi, position_bins, unit_perplexity
from spidrkit.models.codebook import instance_norm
from spidrkit.models.spidr import SpidR


def test_unit_perplexity_is_exp_of_the_histogram_entropy():
    assert unit_perplexity(np.array([0, 0, 1, 1])) == pytest.approx(2.0)
    assert unit_perplexity(np.array([3, 3, 3, -1])) == pytest.approx(1.0)  # -1 (padding) ignored
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))  # nats
    assert unit_perplexity(np.array([5, 5, 5, 2])) == pytest.approx(math.exp(h))
    assert unit_perplexity(np.arange(256)) == pytest.approx(256.0)


def test_nmi_by_hand():
    assert nmi([0, 0, 1, 1], ["x", "x", "y", "y"]) == pytest.approx(1.0)
    assert nmi([0, 1, 0, 1], [0, 0, 1, 1]) == pytest.approx(0.0)
    assert nmi([4, 4, 4, 4], [0, 1, 0, 1]) == 0.0
    # joint (a, b): (0,0) x2, (1,0), (1,1): H(a) = 1, H(b) = H(.75, .25), H(a, b) = H(.5, .25, .25) = 1.5 bits
    h_b = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    expected = (1 + h_b - 1.5) / math.sqrt(1 * h_b)
    assert nmi([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(expected) == pytest.approx(0.345592, abs=1e-6)
    a, b = np.random.default_rng(0).integers(0, 7, 500), np.random.default_rng(1).integers(0, 5, 500)
    assert nmi(a, b) == pytest.approx(normalized_mutual_info_score(a, b, average_method="geometric"))
    with pytest.raises(ValueError, match="equal length"):
        nmi([0, 1], [0])


def test_position_bins_and_frame_phones_by_hand():
    # 25 frames at 10 Hz (2.5 s): centres 0.05 ... 2.45 s, distance to the nearer edge in 0.1 s bins, cap 10
    assert position_bins(25, 10.0).tolist() == [*range(10), 10, 10, 10, 10, 10, *range(9, -1, -1)]
    # 50 Hz: frame 0 centred at 10 ms (bin 0), frame 5 at 110 ms (bin 1); a 1 s file never reaches bin 5
    bins = position_bins(50, 50.0)
    assert bins[[0, 4, 5, 24, 25, 49]].tolist() == [0, 0, 1, 4, 4, 0] and bins.max() == 4
    # model frames at 50 Hz read the 100 Hz label at their centre: frame i -> label 2i + 1
    assert frame_phones(["a", "a", "b", "b", "c", "c"], 4, 50.0).tolist() == ["a", "b", "c", None]


def test_diagnose_counts_the_teacher_and_head_units_of_a_fixed_set(tmp_path):
    torch.manual_seed(0)
    cfg = load_config("tiny", ["model.num_layers=2", "model.num_codebooks=2", "model.codebook_size=16",
                               "model.dim=64", "model.num_heads=2", "model.ffn_dim=128", "model.conv_dim=32"]).model
    model = SpidR(cfg).eval()
    rng = np.random.default_rng(0)
    entries, labels = [], {}
    for i, seconds in enumerate((1.0, 1.0, 0.6)):
        n = int(16000 * seconds)
        path = tmp_path / f"u{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
        entries.append(ManifestEntry(f"u{i}", str(path), n))
        labels[f"u{i}"] = [("sil", "a", "b")[(j // 20) % 3] for j in range(int(100 * seconds))]
    write_manifest(entries, tmp_path / "dev.csv")
    write_frame_labels(tmp_path / "dev_frames.txt", labels)

    out = diagnose(model, tmp_path, "dev", min_frames=60)  # 49 frames a second: u0 + u1 reach 60
    assert (out["files"], out["frames"]) == (2, 98)
    # the teacher's units by hand: nearest codeword of the instance-normalised teacher layer output
    teacher, phones = {la: [] for la in model.target_layers}, []
    for i in (0, 1):
        wav = torch.from_numpy(sf.read(tmp_path / f"u{i}.wav", dtype="float32")[0])[None]
        wav = (wav - wav.mean()) / wav.std(unbiased=False)
        with torch.no_grad():
            _, reps = model.teacher(model.features(wav))
        for k, la in enumerate(model.target_layers):
            teacher[la].append(model.codebooks[k].assign(instance_norm(reps[la - 1])[0]).numpy())
        phones.append(frame_phones(labels[f"u{i}"], 49, 50.0))
    phone = np.concatenate(phones).astype(str)
    position = np.concatenate([position_bins(49, 50.0)] * 2)
    for la in model.target_layers:
        t = np.concatenate(teacher[la])
        row = out["layers"][la]
        assert row["codebook_ppl"] == pytest.approx(unit_perplexity(t))
        assert row["active_codewords"] == len(set(t.tolist()))
        assert row["nmi_phone"] == pytest.approx(nmi(t, phone))
        assert row["nmi_position"] == pytest.approx(nmi(t, position))
        assert 1.0 <= row["prediction_ppl"] <= 16.0
    assert out["min_codebook_ppl"] == min(r["codebook_ppl"] for r in out["layers"].values())
