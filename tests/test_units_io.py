"""Feature files and unit files: layout, atomicity, exact round trips, de-duplication."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from spidrkit.extraction.features_io import (
    FeatureError,
    feature_path,
    is_done,
    iter_feature_files,
    layer_dirname,
    load_feature_dir,
    load_features,
    save_features,
)
from spidrkit.extraction.units import Units, UnitsError, deduplicate, expand, read_units, write_units
from spidrkit.io import atomic_write, read_sidecar, write_sidecar

# ---------------------------------------------------------------- features


def test_layer_dirname_is_one_based_and_padded():
    assert layer_dirname(6) == "layer_06"
    assert layer_dirname(1) == "layer_01"
    assert layer_dirname(12) == "layer_12"
    assert layer_dirname(100) == "layer_100"
    for bad in (0, -1, 2.0, True):
        with pytest.raises(FeatureError):
            layer_dirname(bad)


@pytest.mark.parametrize("fmt", ["pt", "npy"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_save_load_round_trip(tmp_path, fmt, dtype):
    x = torch.randn(13, 7, dtype=torch.float64)
    path = save_features(tmp_path, "spk1/ch2/utt-3", x, fmt=fmt, dtype=dtype)
    assert path == tmp_path / "spk1" / "ch2" / f"utt-3.{fmt}"
    y = load_features(path)
    assert y.dtype == dtype and y.shape == (13, 7) and y.is_contiguous()
    assert torch.equal(y, x.to(dtype))
    assert is_done(tmp_path, "spk1/ch2/utt-3", fmt)
    assert not is_done(tmp_path, "spk1/ch2/utt-4", fmt)
    assert not list(tmp_path.rglob(".*")), "no temporary file left behind"


def test_save_of_a_view_stores_only_the_view(tmp_path):
    big = torch.randn(10_000, 64)
    small = save_features(tmp_path, "a", big[:3])
    alone = save_features(tmp_path, "b", big[:3].clone())
    assert abs(small.stat().st_size - alone.stat().st_size) < 100  # not the 2.5 MB storage of `big`
    assert torch.equal(load_features(small), big[:3])
    # a transposed (non-contiguous) view is stored contiguous, with its own values
    t = torch.randn(5, 3)
    assert torch.equal(load_features(save_features(tmp_path, "t", t.T)), t.T)


def test_save_rejects_bad_input(tmp_path):
    with pytest.raises(FeatureError, match=r"\(T, D\)"):
        save_features(tmp_path, "x", torch.zeros(4))
    for bad_id in ("", "/abs", "a/../b", "a//b", ".hidden", "a\\b"):
        with pytest.raises(FeatureError, match="bad file id"):
            save_features(tmp_path, bad_id, torch.zeros(2, 2))
    with pytest.raises(FeatureError, match="format"):
        save_features(tmp_path, "x", torch.zeros(2, 2), fmt="h5")
    with pytest.raises(FeatureError, match="float32 or float16"):
        save_features(tmp_path, "x", torch.zeros(2, 2), dtype=torch.int64)


def test_load_refuses_non_tensor_files(tmp_path):
    torch.save({"features": torch.zeros(2, 2)}, tmp_path / "d.pt")
    with pytest.raises(FeatureError, match=r"\(T, D\) tensor"):
        load_features(tmp_path / "d.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(FeatureError, match="cannot read"):
        load_features(tmp_path / "junk.pt")
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FeatureError, match="cannot read"):  # object arrays would need unpickling
        load_features(tmp_path / "o.npy")


def test_iter_feature_files_sorted_skips_sidecar_and_temporaries(tmp_path):
    ids = ["b", "a/2", "a/10", "c/x/y"]
    for i, fid in enumerate(ids):
        save_features(tmp_path, fid, torch.full((i + 1, 3), float(i)), fmt="npy" if i % 2 else "pt")
    write_sidecar(tmp_path, model="spidr", layer=6)
    (tmp_path / ".b.pt.tmp123").write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("ignored")
    found = list(iter_feature_files(tmp_path))
    assert [f for f, _ in found] == sorted(ids) == ["a/10", "a/2", "b", "c/x/y"]
    assert found[1][1] == feature_path(tmp_path, "a/2", "npy")
    feats = load_feature_dir(tmp_path)
    assert list(feats) == sorted(ids)
    assert [feats[f].shape[0] for f in ids] == [1, 2, 3, 4]
    assert float(feats["c/x/y"][0, 0]) == 3.0


def test_iter_feature_files_errors(tmp_path):
    with pytest.raises(FeatureError, match="no features folder"):
        list(iter_feature_files(tmp_path / "missing"))
    with pytest.raises(FeatureError, match="no feature files"):
        load_feature_dir(tmp_path)
    save_features(tmp_path, "u", torch.zeros(2, 2), fmt="pt")
    save_features(tmp_path, "u", torch.zeros(2, 2), fmt="npy")
    with pytest.raises(FeatureError, match="saved twice"):
        list(iter_feature_files(tmp_path))
    out = tmp_path / "multi"
    for layer in (6, 12):
        save_features(out / layer_dirname(layer), "u", torch.zeros(2, 2))
        write_sidecar(out / layer_dirname(layer), layer=layer)
    with pytest.raises(FeatureError, match="layer_06, layer_12"):
        list(iter_feature_files(out))
    assert [f for f, _ in iter_feature_files(out / "layer_06")] == ["u"]


def test_atomic_write_keeps_old_file_on_crash(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path, "w") as f:
        f.write("half of the new")
        raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


# ---------------------------------------------------------------- de-duplication


def test_deduplicate_hand_example():
    assert deduplicate([1, 1, 2, 2, 2, 3, 1]) == ([1, 2, 3, 1], [2, 3, 1, 1])
    assert expand([1, 2, 3, 1], [2, 3, 1, 1]) == [1, 1, 2, 2, 2, 3, 1]
    assert deduplicate([]) == ([], [])
    assert deduplicate(torch.tensor([5, 5, 5])) == ([5], [3])
    assert deduplicate(np.array([0, 1, 0, 1])) == ([0, 1, 0, 1], [1, 1, 1, 1])


def test_deduplicate_round_trip_random():
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = rng.integers(0, 4, size=rng.integers(1, 200)).tolist()
        u, d = deduplicate(x)
        assert expand(u, d) == x
        assert sum(d) == len(x) and min(d) >= 1
        assert all(a != b for a, b in itertools.pairwise(u)), "no two neighbouring units are equal"


def test_expand_and_deduplicate_errors():
    with pytest.raises(UnitsError, match="3 units but 2 durations"):
        expand([1, 2, 3], [1, 1])
    with pytest.raises(UnitsError, match=">= 1"):
        expand([1, 2], [1, 0])
    with pytest.raises(UnitsError, match="integers"):
        deduplicate([0.5, 1.5])
    with pytest.raises(UnitsError, match="1-D"):
        deduplicate([[1, 2]])


# ---------------------------------------------------------------- unit files

UTTS = {
    "spk1/ch1/utt1": [1, 1, 2, 2, 2, 3, 1],
    "spk2/utt-2": [0, 0, 0],
    "u3": [7],
    "empty": [],
}


def test_text_file_exact_content(tmp_path):
    p = write_units(tmp_path / "u.txt", UTTS)
    assert p.read_text().splitlines() == ["empty", "spk1/ch1/utt1 1 1 2 2 2 3 1", "spk2/utt-2 0 0 0", "u3 7"]
    write_units(tmp_path / "d.txt", UTTS, dedup=True)
    assert (tmp_path / "d.txt").read_text().splitlines() == [
        "empty",
        "spk1/ch1/utt1 1*2 2*3 3*1 1*1",
        "spk2/utt-2 0*3",
        "u3 7*1",
    ]


def test_jsonl_exact_content(tmp_path):
    p = write_units(tmp_path / "u.jsonl", {"a/b": torch.tensor([4, 4, 5])}, dedup=True)
    assert [json.loads(line) for line in p.read_text().splitlines()] == [
        {"utt": "a/b", "units": [4, 5], "durations": [2, 1]}
    ]


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
@pytest.mark.parametrize("dedup", [False, True])
def test_units_round_trip(tmp_path, suffix, dedup):
    path = tmp_path / f"units{suffix}"
    frames = {k: torch.tensor(v, dtype=torch.long) for k, v in UTTS.items()}
    write_units(path, frames, dedup=dedup, k=256, layer=6)
    back = read_units(path)
    assert list(back) == sorted(UTTS)
    for utt, frames in UTTS.items():
        assert back[utt].frames() == frames
        if dedup and frames:  # (an empty text line cannot say whether it was de-duplicated)
            assert (back[utt].units, back[utt].durations) == deduplicate(frames)
        elif not dedup:
            assert back[utt] == Units(frames, None)
    side = read_sidecar(path)
    assert (side["k"], side["layer"], side["dedup"], side["num_utterances"]) == (256, 6, dedup, 4)
    assert side["format"] == suffix[1:]
    # converting: read back, write the other way, read again: same frames
    other = tmp_path / f"other{suffix}"
    write_units(other, back, dedup=not dedup)
    assert {u: s.frames() for u, s in read_units(other).items()} == UTTS


def test_units_format_override_and_whitespace_ids(tmp_path):
    p = write_units(tmp_path / "units.dat", {"a b": [1, 2]}, fmt="jsonl")
    assert read_units(p, fmt="jsonl")["a b"].units == [1, 2]
    with pytest.raises(UnitsError, match="whitespace"):
        write_units(tmp_path / "u.txt", {"a b": [1, 2]})
    with pytest.raises(UnitsError, match="unknown units format"):
        write_units(tmp_path / "u.txt", UTTS, fmt="csv")


def test_read_units_errors(tmp_path):
    cases = {
        "mixed.txt": ("u 1*2 3\n", "mixes"),
        "bad.txt": ("u 1 x\n", "bad unit token"),
        "zero.txt": ("u 1*0\n", ">= 1"),
        "twice.txt": ("u 1\nu 2\n", "twice"),
        "bad.jsonl": ('{"units": [1]}\n', "expected"),
        "len.jsonl": ('{"utt": "u", "units": [1, 2], "durations": [1]}\n', "one duration"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(UnitsError, match=message):
            read_units(tmp_path / name)
    with pytest.raises(UnitsError, match="no units file"):
        read_units(tmp_path / "missing.txt")
    # a foreign file without sidecar, with blank lines, reads fine
    (tmp_path / "plain.txt").write_text("x 3 3 4\n\ny 1\n")
    assert read_units(tmp_path / "plain.txt") == {"x": Units([3, 3, 4]), "y": Units([1])}
