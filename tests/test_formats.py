"""Formats others read: model directories, fairseq .km/.tsv/dict.km.txt, and dense -> units -> durations."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from spidrkit.checkpoints import CheckpointError, convert, is_model_dir, load, load_checkpoint
from spidrkit.cli import main as cli_main
from spidrkit.config import load_config
from spidrkit.data.corpora.audio import load_audio
from spidrkit.data.corpora.manifest import ManifestEntry, write_manifest
from spidrkit.extraction.extract import extract
from spidrkit.extraction.kmeans import KMeansModel
from spidrkit.extraction.plan import ExtractionError
from spidrkit.extraction.speech_units import speech_to_units
from spidrkit.extraction.unit_exports import export_km, read_km
from spidrkit.extraction.units import Units, UnitsError, expand, read_units, write_units
from spidrkit.io import file_sha256
from support import MICRO


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    entries = []
    for i, n in enumerate([8000, 20000, 12000]):
        (root / "a").mkdir(exist_ok=True)
        sf.write(root / "a" / f"u{i}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
        entries.append(ManifestEntry(f"a/u{i}", str(root / "a" / f"u{i}.wav"), n))
    return entries, write_manifest(entries, root / "manifest.csv")


# ---------------------------------------------------------------------------------------- model directory
def test_model_directory_round_trip(micro_model, tmp_path, capsys):
    cfg = load_config("tiny", MICRO)
    torch.save({"model": micro_model.state_dict(), "config": cfg.to_dict(), "step": 12}, tmp_path / "run.pt")
    assert cli_main(["convert", str(tmp_path / "run.pt"), str(tmp_path / "dir") + "/"]) == 0
    folder = tmp_path / "dir"
    assert capsys.readouterr().out.startswith(f"wrote {folder}/: spidr, 6 layers x 64 (2 heads), 4 codebooks of 256")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((folder / "config.json").read_text())
    assert meta == {"format": "spidrkit", "version": 1, "variant": "spidr", "config": json.loads(json.dumps(
        cfg.to_dict())), "source": {"model": f"spidr:{file_sha256(tmp_path / 'run.pt')}", "variant": "spidr",
        "checkpoint": str((tmp_path / "run.pt").resolve()), "checkpoint_sha256": file_sha256(tmp_path / "run.pt"),
        "checkpoint_format": "spidrkit", "step": 12}, "step": 12}
    loaded, info = load(folder)
    assert (info.source, info.step, info.path, info.config) == ("spidrkit", 12, str(folder.resolve()), cfg)
    assert info.sha256 == file_sha256(folder / "model.safetensors")
    for k, v in micro_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # the same weights give the same bytes; a directory converts back to a file
    with pytest.raises(CheckpointError, match="pass --force"):  # an existing model folder is not replaced silently
        convert(tmp_path / "run.pt", folder)
    convert(tmp_path / "run.pt", folder, force=True)  # an existing directory is written as one
    assert file_sha256(folder / "model.safetensors") == info.sha256
    back = convert(folder, tmp_path / "back.safetensors")
    assert load_checkpoint(back)[2].step == 12
    # a Hugging Face directory (model_type, no "format": "spidrkit") is not ours; a torn one is an error
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "hubert", "hidden_size": 32}))
    assert is_model_dir(folder) and not is_model_dir(hf)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="a spidrkit model directory without its model.safetensors"):
        load(folder)


# -------------------------------------------------------------------------------------------- fairseq .km
def test_km_export_exact_contents(tmp_path, corpus, capsys):
    _, manifest = corpus
    units = write_units(tmp_path / "units.txt", {"a/u2": [3, 3, 1], "a/u0": [0, 0, 0, 2, 2]}, dedup=True,
                        k=4, layer=5, inputs=str(manifest))
    with pytest.warns(UserWarning, match=r"1 utterances of the manifest have no units and are left out of "
                      r"train.tsv and train.km: a/u1"):
        paths = export_km(units, tmp_path / "km")
    root = str(manifest.parent)
    assert paths["tsv"].read_text() == f"{root}\na/u0.wav\t8000\na/u2.wav\t12000\n"
    assert paths["km"].read_text() == "0 0 0 2 2\n3 3 1\n"
    assert paths["dict"].read_text() == "0 1\n1 1\n2 1\n3 1\n"
    assert read_km(paths["km"]) == {"a/u0": Units([0, 0, 0, 2, 2]), "a/u2": Units([3, 3, 1])}
    side = json.loads((tmp_path / "km" / "train.km.json").read_text())
    assert {k: side[k] for k in ("format", "k", "dedup", "num_utterances", "manifest", "layer")} == {
        "format": "km", "k": 4, "dedup": False, "num_utterances": 2, "manifest": "train.tsv", "layer": 5}
    # de-duplicated, another split name, through the CLI; k given when the sidecar has none
    (tmp_path / "units.txt.json").unlink()
    with pytest.raises(UnitsError, match="the number of units k is unknown"):
        export_km(units, tmp_path / "km", manifest, force=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli_main(["units", "export", str(units), "--manifest", str(manifest), "--k", "5", "--dedup",
                         "--name", "dev", "-o", str(tmp_path / "km")]) == 0
    assert capsys.readouterr().out == (f"wrote {tmp_path}/km/dev.tsv, {tmp_path}/km/dev.km (2 utterances) and "
                                       f"{tmp_path}/km/dict.km.txt\n")
    assert (tmp_path / "km" / "dev.km").read_text() == "0 2\n3 1\n"
    assert (tmp_path / "km" / "dict.km.txt").read_text() == "0 1\n1 1\n2 1\n3 1\n4 1\n"
    assert cli_main(["units", "export", str(units), "--k", "3", "-o", str(tmp_path / "x")]) == 2  # unit 3 >= k
    stray = write_units(tmp_path / "stray.txt", {"zz": [1]}, k=2)
    with pytest.raises(UnitsError, match=r"1 utterances are not in .* \(e.g. 'zz'\)"):
        export_km(stray, tmp_path / "y", manifest)


# ------------------------------------------------------------------------------- dense -> units -> durations
def test_speech_to_units_matches_extract(micro_model, corpus, tmp_path):
    entries, manifest = corpus
    extract(micro_model, manifest, tmp_path / "cb", layers=[5], units="codebook", progress=False)
    torch.manual_seed(3)
    kmeans = KMeansModel(torch.randn(7, 64))
    kpath = kmeans.save(tmp_path / "c.npy")
    extract(micro_model, manifest, tmp_path / "km", layers=[4], units=f"kmeans:{kpath}", progress=False)
    by_codebook, by_kmeans = read_units(tmp_path / "cb" / "units.txt"), read_units(tmp_path / "km" / "units.txt")
    for e in entries:
        wav = load_audio(e.path)
        frames = int(micro_model.num_frames(wav.numel()))
        out = speech_to_units(micro_model, wav, layer=5, units="codebook", dedup=False, sample_rate=16000)
        assert sorted(out) == ["dense", "durations", "units"]
        assert out["dense"].shape == (frames, 64) and out["units"].dtype == torch.long
        assert out["units"].tolist() == by_codebook[e.fileid].frames() and out["durations"].tolist() == [1] * frames
        dd = speech_to_units(micro_model, e.path, layer=5)  # a path; dedup by default
        assert int(dd["durations"].sum()) == frames == dd["dense"].shape[0]
        assert expand(dd["units"], dd["durations"]) == by_codebook[e.fileid].frames()
        assert torch.equal(dd["dense"], out["dense"])
        assert all(a != b for a, b in zip(dd["units"].tolist(), dd["units"].tolist()[1:]))
        km = speech_to_units(micro_model, wav.numpy(), layer=4, units=f"kmeans:{kpath}", sample_rate=16000)
        assert expand(km["units"], km["durations"]) == by_kmeans[e.fileid].frames()
        assert torch.equal(speech_to_units(micro_model, wav, layer=4, units=kmeans, sample_rate=16000)["units"],
                           km["units"])
    with pytest.raises(ExtractionError, match=r"array 0 has no sample rate: pass sample_rate= \(the rate"):
        speech_to_units(micro_model, wav)
    with pytest.raises(ExtractionError, match="codebook units need a SpidR/DinoSR model and a codebook layer, not "
                       "layer 2 of a SpidR"):
        speech_to_units(micro_model, wav, layer=2, sample_rate=16000)
    with pytest.raises(ExtractionError, match="layer 7 out of range; valid"):
        speech_to_units(micro_model, wav, layer=7, sample_rate=16000)
