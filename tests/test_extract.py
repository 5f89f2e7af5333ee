"""Extraction: batching, windowing, resuming, sharding, units and sidecars, on a tiny random model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from spidrkit.checkpoints import weights_sha256
from spidrkit.cli import main as cli_main
from spidrkit.data.corpora.audio import load_audio
from spidrkit.data.corpora.manifest import ManifestEntry, write_manifest
from spidrkit.extraction.compute import compute
from spidrkit.extraction.extract import ExtractionError, extract
from spidrkit.extraction.features_io import iter_feature_files, load_features
from spidrkit.extraction.kmeans import KMeansModel
from spidrkit.extraction.plan import pack, plan_batches, plan_windows, shard
from spidrkit.extraction.units import read_units
from spidrkit.io import file_sha256, read_sidecar
from spidrkit.models.spidr import SpidR

DIM = 64  # the width of conftest.micro_model


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Seven short files (0.3-1.6 s, with DC offsets) and their manifest: under a 6 s budget they make
    batches of 3, 1, 1 and 2 files (padded where lengths differ)."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    entries = []
    for i, n in enumerate([4800, 25600, 9000, 24000, 21000, 17000, 5600]):
        x = (0.1 * rng.standard_normal(n) + rng.uniform(-0.05, 0.05)).astype(np.float32)
        folder = root / f"spk{i % 2}"
        folder.mkdir(exist_ok=True)
        sf.write(folder / f"utt{i}.wav", x, 16000)
        entries.append(ManifestEntry(f"spk{i % 2}/utt{i}", str(folder / f"utt{i}.wav"), n))
    manifest = write_manifest(entries, root / "manifest.csv")
    return entries, manifest


def _features(folder) -> dict[str, torch.Tensor]:
    return {fid: load_features(p) for fid, p in iter_feature_files(folder)}


def _assert_same_features(dir_a, dir_b) -> None:
    a, b = _features(dir_a), _features(dir_b)
    assert a.keys() == b.keys()
    for k in a:  # other batches, other float rounding: equal to 1e-5, not bit for bit
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0)


def test_batched_equals_one_file_at_a_time(micro_model, corpus, tmp_path):
    entries, manifest = corpus
    assert [len(b) for b in plan_batches(entries, 6 * 16000, 30 * 16000)] == [3, 1, 1, 2]  # really batched
    summary = extract(micro_model, manifest, tmp_path / "out", layers=[2, 5], batch_seconds=6, progress=False)
    assert (summary.files, summary.skipped) == (7, 0)
    side = read_sidecar(tmp_path / "out" / "layer_05")  # a model without a file: identified by its weights
    identity = (side["layer"], side["checkpoint_format"], side["model"])
    assert identity == (5, "in-memory", f"spidr:{weights_sha256(micro_model)}")
    for layer in (2, 5):
        got = _features(tmp_path / "out" / f"layer_{layer:02d}")
        assert sorted(got) == sorted(e.fileid for e in entries)
        for e in entries:
            ref = micro_model.layer_outputs(load_audio(e.path), layers=[layer])[layer][0]  # standardised inside
            assert got[e.fileid].shape == (micro_model.num_frames(e.num_samples), DIM)
            torch.testing.assert_close(got[e.fileid], ref, atol=1e-4, rtol=0)


def test_one_batching_rule_packs_longest_first_with_bounded_padding():
    lengths = [10, 50, 45, 30, 50, 9]
    assert pack(lengths, 100) == [[1, 4], [2], [3], [0, 5]]  # 30 < 0.8 * 45: not padded to 45
    assert pack(lengths, 100, min_fill=0.0) == [[1, 4], [2, 3], [0, 5]]  # the budget alone: 2 * 45 <= 100
    assert pack(lengths, 100, alone_above=40) == [[1], [4], [2], [3], [0, 5]]
    assert pack([300, 20], 100) == [[0], [1]]  # longer than the budget: alone


def test_windows_tile_the_file_on_frame_boundaries(micro_model):
    n = 20 * 16000 + 777
    total = micro_model.num_frames(n)
    pieces = plan_windows(n, micro_model, 4 * 16000, 16000)
    assert total == 1002 and len(pieces) == 11  # cores of 2 s (100 frames), the last one 2 frames
    cores = [(a, b) for _, _, a, b in pieces]
    assert cores[0][0] == 0 and cores[-1][1] == total
    assert all(cores[i][1] == cores[i + 1][0] for i in range(len(cores) - 1))
    for start, end, a, b in pieces:
        assert start % 320 == 0 and start // 320 <= a
        assert micro_model.num_frames(end - start) == min(total, b + 50) - start // 320  # exactly the frames needed
        assert a - start // 320 == min(a, 50)  # 1 s (50 frames) of context where the file has it
    assert plan_windows(16000, micro_model, 4 * 16000, 16000) == [(0, 16000, 0, 49)]


def test_windowed_equals_whole_file_away_from_edges(micro_model):
    """With attention made local (its output projection zeroed, so only the 45-frame positional
    convolution and the downsampler mix frames), a 1 s context makes windowed extraction equal to
    whole-file extraction: this checks the frame alignment, the stitching and the whole-file
    standardisation (the DC offset changes every second, so per-window statistics would differ)."""
    local = SpidR(micro_model.cfg).eval()
    local.load_state_dict(micro_model.state_dict())
    with torch.no_grad():
        for block in local.student.layers:
            block.attention.proj.weight.zero_()
    g = torch.Generator().manual_seed(1)
    n = 20 * 16000 + 123
    x = 0.1 * torch.randn(n, generator=g) + torch.randn(21, generator=g).repeat_interleave(16000)[:n]
    whole = compute(local, [x], [2, 6], window_seconds=100)[0]
    windowed = compute(local, [x], [2, 6], window_seconds=4, context_seconds=1)[0]
    for layer in (2, 6):
        assert windowed[layer].shape == (local.num_frames(n), DIM)
        torch.testing.assert_close(windowed[layer], whole[layer], atol=1e-3, rtol=0)
    # per-window standardisation would not match: the first window standardised on its own
    alone = local.layer_outputs(x[:48080], layers=[6])[6][0]
    assert (alone[:100] - whole[6][:100]).abs().max() > 1e-2
    # bounded memory: every model input is at most a window (+ one receptive field)
    assert max(end - start for start, end, _, _ in plan_windows(n, local, 4 * 16000, 16000)) <= 4 * 16000 + 80


def _killed_after(monkeypatch, name: str, calls: int) -> None:
    """``spidrkit.extraction.extract.NAME`` raises on its call number ``calls + 1``, as a kill would stop it."""
    import spidrkit.extraction.extract as ex

    real, count = getattr(ex, name), iter(range(10**6))

    def dying(*args, **kwargs):
        if next(count) >= calls:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(ex, name, dying)


def test_resumed_extraction_equals_uninterrupted(micro_model, corpus, tmp_path, monkeypatch):
    entries, manifest = corpus
    full = tmp_path / "full"
    extract(micro_model, manifest, full, layers=[3], progress=False)
    part = tmp_path / "part"
    with monkeypatch.context() as m:
        _killed_after(m, "save_features", 3)  # killed after three files
        with pytest.raises(KeyboardInterrupt):
            extract(micro_model, manifest, part, layers=[3], progress=False)
    first = {p.name: p.stat().st_mtime_ns for p in part.rglob("*.pt")}
    assert len(first) == 3
    summary = extract(micro_model, manifest, part, layers=[3], progress=False)
    assert (summary.files, summary.skipped) == (4, 3)
    assert {p.name: p.stat().st_mtime_ns for p in part.rglob("*.pt") if p.name in first} == first  # not redone
    _assert_same_features(full, part)
    # units: killed after two one-file batches, then a journal line for a third file and a torn one
    u = part / "u"
    with monkeypatch.context() as m:
        _killed_after(m, "compute", 2)
        with pytest.raises(KeyboardInterrupt):
            extract(micro_model, manifest, u, layers=[4], units="codebook", batch_seconds=0.5, progress=False)
    done = [json.loads(line)["utt"] for line in (u / "units.part0-of-1.partial.jsonl").read_text().splitlines()]
    third = next(e for e in entries if e.fileid not in done)
    units = compute(micro_model, [load_audio(third.path)], [4], units="codebook")[0][4].tolist()
    with (u / "units.part0-of-1.partial.jsonl").open("a") as f:
        f.write(json.dumps({"utt": third.fileid, "units": units}) + "\n" + '{"utt": "spk0/utt6", "units": [1, 2')
    summary = extract(micro_model, manifest, u, layers=[4], units="codebook", progress=False)
    assert (len(done), summary.skipped, summary.files) == (2, 3, 4)
    extract(micro_model, manifest, full / "u", layers=[4], units="codebook", progress=False)
    assert read_units(u / "units.txt") == read_units(full / "u" / "units.txt")
    assert not list(u.glob("units.part*"))


def test_two_ranks_write_disjoint_halves_of_one_output(micro_model, corpus, tmp_path, monkeypatch):
    entries, manifest = corpus
    halves = [{e.fileid for e in shard(entries, r, 2)} for r in (0, 1)]
    assert not halves[0] & halves[1] and halves[0] | halves[1] == {e.fileid for e in entries}
    single = tmp_path / "single"
    extract(micro_model, manifest, single, layers=[2], progress=False)
    extract(micro_model, manifest, single / "u", layers=[3, 6], units="codebook", dedup=True, progress=False)
    multi = tmp_path / "multi"
    s0 = extract(micro_model, manifest, multi, layers=[2], rank=0, world_size=2, progress=False)
    s1 = extract(micro_model, manifest, multi, layers=[2], rank=1, world_size=2, progress=False)
    assert (s0.files, s1.files) == (len(halves[0]), len(halves[1]))
    _assert_same_features(single, multi)
    with monkeypatch.context() as env:  # as under torchrun
        for name, value in {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}.items():
            env.setenv(name, value)
        s1 = extract(micro_model, manifest, multi / "u", layers=[3, 6], units="codebook", dedup=True, progress=False)
    assert s1.rank == 1 and s1.files == len(halves[1])
    assert not (multi / "u" / "layer_03" / "units.txt").exists()  # rank 0 is not done yet: no merge
    extract(micro_model, manifest, multi / "u", layers=[3, 6], units="codebook", dedup=True, rank=0, world_size=2,
            progress=False)
    for layer in ("layer_03", "layer_06"):
        merged = read_units(multi / "u" / layer / "units.txt")
        assert merged == read_units(single / "u" / layer / "units.txt") and len(merged) == 7
        assert all(u.durations is not None for u in merged.values())  # de-duplicated


def test_units_are_the_heads_argmax_or_the_nearest_centroid(micro_model, corpus, tmp_path):
    entries, manifest = corpus
    extract(micro_model, manifest, tmp_path / "cb", layers=[4], units="codebook", progress=False)
    units = read_units(tmp_path / "cb" / "units.txt")
    e = entries[1]
    pred = micro_model.codebook_predictions(load_audio(e.path), layers=[4])[4]
    assert units[e.fileid].frames() == pred.units[0].tolist()
    assert read_sidecar(tmp_path / "cb" / "units.txt")["k"] == 256
    # k-means on layer 5: the units are the nearest centroids of the layer's features
    feats = micro_model.layer_outputs(load_audio(e.path), layers=[5])[5][0]
    km = KMeansModel(feats[torch.randperm(len(feats))[:8]].clone(), {"layer": 5})
    km.save(tmp_path / "km.npy")
    extract(micro_model, manifest, tmp_path / "km", layers=[5], units=f"kmeans:{tmp_path / 'km.npy'}", progress=False)
    got = read_units(tmp_path / "km" / "units.txt")[e.fileid].frames()
    dist = torch.cdist(feats, km.centroids)
    assert got == dist.argmin(1).tolist() and len(set(got)) > 1
    side = read_sidecar(tmp_path / "km")
    assert (side["unit_type"], side["k"], side["kmeans_sha256"]) == ("kmeans", 8, file_sha256(tmp_path / "km.npy"))
    with pytest.raises(ExtractionError, match="codebook layers \\[2\\] out of range"):
        extract(micro_model, manifest, tmp_path / "bad", layers=[2], units="codebook", progress=False)


def test_sidecar_says_what_produced_the_features(micro_model, corpus, tmp_path):
    _, manifest = corpus
    ckpt = tmp_path / "model.pt"
    torch.save({"model": micro_model.state_dict()}, ckpt)
    assert cli_main(["extract", str(manifest), "--model", str(ckpt), "--layers", "3", "-o", str(tmp_path / "f"),
                     "--float16", "--format", "npy", "--quiet"]) == 0
    side = read_sidecar(tmp_path / "f")
    expect = {
        "kind": "features", "layer": 3, "layers": [3], "variant": "spidr", "checkpoint": str(ckpt.resolve()),
        "checkpoint_sha256": file_sha256(ckpt), "checkpoint_format": "released", "frame_rate": 50.0,
        "dtype": "float16", "format": "npy", "dim": DIM, "unit_type": None, "num_files": 7,
        "model": f"spidr:{file_sha256(ckpt)}",
    }
    assert {k: side[k] for k in expect} == expect
    assert "whole file" in side["standardize"]
    feats = _features(tmp_path / "f")
    assert len(feats) == 7 and all(x.dtype == torch.float16 for x in feats.values())
    # resuming into it with other settings is refused rather than mixing two runs
    with pytest.raises(ExtractionError, match="dtype: 'float16' there, 'float32' now"):
        extract(str(ckpt), manifest, tmp_path / "f", layers=[3], fmt="npy", progress=False)
    assert cli_main(["extract", str(manifest), "--model", str(ckpt), "--layers", "3", "-o", str(tmp_path / "f"),
                     "--quiet", "--format", "npy"]) == 2


class FrameStats(torch.nn.Module):
    """An encoder that is not SpidR, only the interface: layer L of a frame is (mean, L * max) of its 400
    raw samples (hop 320). Extraction must need nothing else to write its features."""

    sample_rate, frame_rate, num_layers, dim, input_normalization, min_samples = 16000, 50.0, 2, 2, "raw", 400

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))  # weights to put on a device

    def num_frames(self, num_samples):
        return max(0, (int(num_samples) - 400) // 320 + 1)

    def layer_outputs(self, wav, lengths=None, layers=None, standardize=True):
        wav = wav.reshape(-1, wav.shape[-1])
        lengths = torch.full((len(wav),), wav.shape[-1]) if lengths is None else lengths
        frames = wav.unfold(1, 400, 320) * self.scale  # (B, T, 400)
        valid = torch.arange(frames.shape[1])[None] < torch.tensor([self.num_frames(n) for n in lengths])[:, None]
        stats = torch.stack([frames.mean(-1), frames.amax(-1)], -1) * valid[..., None]
        return {layer: stats * torch.tensor([1.0, layer]) for layer in layers}


def test_features_need_only_the_encoder_interface(corpus, tmp_path):
    from spidrkit.checkpoints import CheckpointInfo

    entries, manifest = corpus
    encoder = FrameStats()
    info = CheckpointInfo("in-memory", "framestats", sha256="0123")
    summary = extract(encoder, manifest, tmp_path / "f", layers=[1, 2], batch_seconds=6, provenance=info,
                      progress=False)
    assert (summary.files, summary.too_short) == (7, [])
    side = read_sidecar(tmp_path / "f" / "layer_02")
    assert (side["model"], side["frame_rate"], side["dim"]) == ("framestats:0123", 50.0, 2)
    assert side["standardize"].startswith("none")  # a raw-input encoder gets the waveform as decoded
    got = _features(tmp_path / "f" / "layer_02")
    for e in entries:
        x = load_audio(e.path)
        n = (len(x) - 400) // 320 + 1
        frames = x[: (n - 1) * 320 + 400].unfold(0, 400, 320)
        assert torch.equal(got[e.fileid], torch.stack([frames.mean(-1), 2 * frames.amax(-1)], -1))
    with pytest.raises(ExtractionError, match="codebook units need a SpidR/DinoSR model"):
        extract(encoder, manifest, tmp_path / "u", layers=[1], units="codebook", provenance=info, progress=False)
    # without provenance, an encoder that has no variant is named by its class and the hash of its weights
    extract(encoder, manifest, tmp_path / "g", layers=[1], progress=False)
    assert read_sidecar(tmp_path / "g")["model"] == f"framestats:{weights_sha256(encoder)}"


@pytest.mark.parametrize(("option", "value", "message"), [
    ("window_seconds", float("nan"), r"window_seconds \(--window-seconds\) must be a finite number > 0, got nan"),
    ("window_seconds", float("inf"), r"window_seconds \(--window-seconds\) must be a finite number > 0, got inf"),
    ("context_seconds", -3.0, r"context_seconds \(--context-seconds\) must be a finite number >= 0, got -3.0"),
    ("batch_seconds", 0, r"batch_seconds \(--batch-seconds\) must be a finite number > 0, got 0"),
    ("context_seconds", 30.0, r"window_seconds \(60\) must be more than twice context_seconds \(30\)"),
    ("units", "codebook:6", r"units 'codebook:6': give the layer with layers \(--layers 6\)"),
])
def test_every_option_is_checked_before_the_model_or_the_inputs_are_read(tmp_path, option, value, message):
    # neither the model nor the inputs exist: the option's error comes first
    with pytest.raises(ExtractionError, match=message):
        extract(tmp_path / "no.pt", tmp_path / "no_dir", tmp_path / "out", **{option: value})
    assert not (tmp_path / "out").exists()
    with pytest.raises(TypeError, match="unknown option 'layer'; did you mean 'layers'"):
        extract(tmp_path / "no.pt", tmp_path / "no_dir", tmp_path / "out", layer=3)


def test_the_cli_refuses_a_nan_window_with_one_line_naming_the_flag(tmp_path, capsys):
    from spidrkit.cli import main

    assert main(["extract", str(tmp_path), "--model", "random:tiny", "-o", str(tmp_path / "o"),
                 "--window-seconds", "nan"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("spidrkit extract: error: window_seconds (--window-seconds) must be a finite number > 0, "
                   "got nan")


def test_adding_other_inputs_to_an_extraction_folder_is_refused(tmp_path, capsys):
    """An extraction folder has an identity (its config and the digest of its inputs): `extract a -o F` then
    `extract trunc -o F` is refused naming both inputs, and F keeps the first extraction intact."""
    from spidrkit.cli import main

    a, trunc = tmp_path / "a", tmp_path / "trunc"
    for folder, names in ((a, ("u1", "u2")), (trunc, ("u1",))):
        folder.mkdir()
        for name in names:
            sf.write(folder / f"{name}.wav", np.random.default_rng(0).standard_normal(16000) * 0.1, 16000)
    out = tmp_path / "F"
    cmd = ["extract", "--model", "random:tiny", "--units", "codebook", "--quiet", "-o", str(out)]
    assert main([*cmd[:1], str(a), *cmd[1:]]) == 0
    before = (out / "units.txt").read_text()
    assert main([*cmd[:1], str(trunc), *cmd[1:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"inputs: {a} (2 files) there, {trunc} (1 files) now" in err[0]
    assert (out / "units.txt").read_text() == before and sorted(l.split()[0] for l in before.splitlines()) == [
        "u1", "u2"]
    assert main([*cmd[:1], str(trunc), *cmd[1:], "--overwrite"]) == 0  # the way to start the folder anew
    assert [l.split()[0] for l in (out / "units.txt").read_text().splitlines()] == ["u1"]


@pytest.mark.parametrize(("flags", "message"), [
    (["--window-seconds", "inf"], "window_seconds (--window-seconds) must be a finite number > 0, got inf"),
    (["--window-seconds", "10", "--context-seconds", "-3"],
     "context_seconds (--context-seconds) must be a finite number >= 0, got -3.0"),
])
def test_the_cli_refuses_bad_window_numbers_before_any_work(tmp_path, capsys, flags, message):
    from spidrkit.cli import main

    assert main(["extract", str(tmp_path / "none"), "--model", str(tmp_path / "no.pt"), "-o", str(tmp_path / "o"),
                 *flags]) == 2
    assert capsys.readouterr().err.strip() == f"spidrkit extract: error: {message}"
    assert not (tmp_path / "o").exists()
