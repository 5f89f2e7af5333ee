"""``spidrkit lm units`` and ``spidrkit kmeans fit-corpus``: a corpus split's LM units from the CLI, for every
source the sLM scorer reads (gold phones, MFCC k-means, an encoder's k-means), against hand computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from spidrkit.cli import main
from spidrkit.extraction.units import read_units
from spidrkit.io import read_sidecar

SR = 16000
# PHONE_INVENTORY is the 39 ARPAbet phones sorted: AA 0, AE 1, AH 2, ..., D 8, DH 9, ..., T 31, ..., ZH 38
PHONES = {
    "u1": [("SIL", 0.0, 0.1), ("DH", 0.1, 0.2), ("AH0", 0.2, 0.3), ("AH1", 0.3, 0.4), ("sp", 0.4, 0.45)],
    "u2": [(p, i / 10, (i + 1) / 10) for i, p in enumerate(["AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D"])],
}
EXPECTED_PHONES = {"u1": [9, 2, 2], "u2": [0, 1, 2, 3, 4, 5, 6, 7, 8]}


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Three utterances of noise and tones with a manifest (train.csv) and gold phones (train_phones.txt)."""
    root = tmp_path / "corpus"
    (root / "wav").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["fileid,path,num_samples,speaker"]
    for i, utt in enumerate(["u1", "u2", "u3"]):
        t = np.arange(int(SR * (0.6 + 0.2 * i))) / SR
        x = 0.3 * np.sin(2 * np.pi * (200 + 300 * i) * t) * (t < 0.3) + 0.05 * rng.standard_normal(len(t))
        sf.write(root / "wav" / f"{utt}.wav", x.astype(np.float32), SR)
        rows.append(f"{utt},wav/{utt}.wav,{len(t)},spk")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    lines = [f"{u} {a:.4f} {b:.4f} {p} spk" for u, ivs in PHONES.items() for p, a, b in ivs]
    (root / "train_phones.txt").write_text("\n".join(lines) + "\n")
    return root


def _units(path: Path) -> dict[str, list[int]]:
    return {u: list(x.frames()) for u, x in read_units(path).items()}


def test_phone_units_are_the_inventory_ids_without_silences_and_shuffle_permutes_each_utterance(corpus, tmp_path):
    out = tmp_path / "phones.txt"
    assert main(["lm", "units", str(corpus), "--units", "phones", "-o", str(out), "--quiet"]) == 0
    assert _units(out) == EXPECTED_PHONES
    info = read_sidecar(out)
    assert (info["k"], info["source"], info["shuffled"], info["split"]) == (39, "phones", False, "train")

    shuffled = [tmp_path / f"shuffled_{i}.txt" for i in range(2)]
    for path in shuffled:
        assert main(["lm", "units", str(corpus), "--units", "phones", "--shuffle", "5", "-o", str(path),
                     "--quiet"]) == 0
    first, second = _units(shuffled[0]), _units(shuffled[1])
    assert first == second  # seeded
    assert {u: sorted(x) for u, x in first.items()} == {u: sorted(x) for u, x in EXPECTED_PHONES.items()}
    assert first["u2"] != EXPECTED_PHONES["u2"]  # nine distinct phones: this seed's order is not the identity
    assert read_sidecar(shuffled[0])["shuffle_seed"] == 5


def test_mfcc_centroids_fitted_on_the_corpus_give_each_frame_its_nearest_centroid(corpus, tmp_path):
    from spidrkit.data.corpora.audio import load_audio
    from spidrkit.encoders.mfcc import mfcc

    centroids = tmp_path / "mfcc4"
    assert main(["kmeans", "fit-corpus", str(corpus), "--model", "mfcc", "-k", "4", "-o", str(centroids),
                 "--quiet"]) == 0
    c = np.load(f"{centroids}.npy")
    info = read_sidecar(f"{centroids}.npy")
    assert c.shape == (4, 39) and info["model"] == "mfcc" and info.get("layer") is None and info["fit_files"] == 3

    out = tmp_path / "mfcc.txt"
    assert main(["lm", "units", str(corpus), "--model", "mfcc", "--units", f"kmeans:{centroids}.npy",
                 "-o", str(out), "--quiet"]) == 0
    expected = {}
    for utt in ("u1", "u2", "u3"):
        feats = np.asarray(mfcc(load_audio(corpus / "wav" / f"{utt}.wav", SR)), dtype=np.float64)
        expected[utt] = ((feats[:, None, :] - c[None].astype(np.float64)) ** 2).sum(-1).argmin(1).tolist()
    assert _units(out) == expected
    assert len(expected["u3"]) == (16000 - 400) // 320 + 1  # 1.0 s: the encoders' frames (window 400, hop 320)
    assert read_sidecar(out)["k"] == 4


def test_encoder_kmeans_units_equal_what_extract_writes(corpus, tmp_path):
    """The same centroids on the same layer: `lm units` and `extract --units kmeans:C` agree frame by frame."""
    centroids = tmp_path / "c8"
    assert main(["kmeans", "fit-corpus", str(corpus), "--model", "random:tiny", "--layers", "2", "-k", "8",
                 "-o", str(centroids), "--quiet"]) == 0
    assert read_sidecar(f"{centroids}.npy")["layer"] == 2
    out = tmp_path / "lm_units.txt"
    assert main(["lm", "units", str(corpus), "--model", "random:tiny", "--units", f"kmeans:{centroids}.npy",
                 "-o", str(out), "--quiet"]) == 0
    assert main(["extract", str(corpus / "train.csv"), "--model", "random:tiny", "--layers", "2", "--units",
                 f"kmeans:{centroids}.npy", "-o", str(tmp_path / "extracted"), "--quiet"]) == 0
    extracted = _units(next((tmp_path / "extracted").rglob("units.txt")))
    assert _units(out) == extracted and set(extracted) == {"u1", "u2", "u3"}
    assert (read_sidecar(out)["layer"], read_sidecar(out)["k"]) == (2, 8)


@pytest.mark.parametrize(("args", "message"), [
    (["lm", "units", "{corpus}", "--units", "kmeans:{mfcc}", "-o", "{out}"], "fitted on MFCC: pass --model mfcc"),
    (["lm", "units", "{corpus}", "--model", "mfcc", "--units", "codebook:3", "-o", "{out}"], "has no codebook"),
    (["lm", "units", "{corpus}", "--split", "dev", "--model", "mfcc", "--units", "kmeans:{mfcc}", "-o", "{out}"],
     "no manifest at"),
    (["lm", "units", "{corpus}", "--units", "phones", "--max-files", "0", "-o", "{out}"], "--max-files 0"),
    (["kmeans", "fit-corpus", "{corpus}", "--model", "mfcc", "--layers", "3", "-o", "{out}"], "leave out --layers"),
    (["kmeans", "fit-corpus", "{corpus}", "--model", "mfcc", "--variant", "spidr", "-o", "{out}"],
     "not to mfcc: leave them out"),
    (["kmeans", "fit-corpus", "{corpus}", "--model", "random:tiny", "--layers", "2", "--max-files", "0", "-o",
      "{out}"], "--max-files 0"),
    (["kmeans", "fit-corpus", "{corpus}", "--model", "random:tiny", "-o", "{out}"], "--layers N"),
    (["kmeans", "fit-corpus", "{corpus}", "--model", "random:tiny", "--layers", "9", "-o", "{out}"],
     "layers 1..6"),
])
def test_bad_inputs_exit_2_with_one_line_naming_the_fix(corpus, tmp_path, capsys, args, message):
    from spidrkit.extraction.kmeans import KMeansModel

    mfcc = KMeansModel(torch.zeros(2, 39), {"model": "mfcc"}).save(tmp_path / "m.npy")
    out = tmp_path / "out.txt"
    argv = [a.format(corpus=corpus, mfcc=mfcc, out=out) for a in args]
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_the_commands_are_documented_in_the_cli_help(capsys):
    with pytest.raises(SystemExit):
        main(["lm", "--help"])
    text = capsys.readouterr().out
    assert "spidrkit lm units CORPUS" in text and "kmeans fit-corpus" in text
