"""Bucketed batches (``docs/method.md``) and the training/validation loaders built on them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from spidrkit.config import DataConfig
from spidrkit.data.batches.dataset import (
    AudioDataset,
    BatchDataset,
    crop_batch,
    make_train_loader,
    make_valid_loader,
    read_skipped,
)
from spidrkit.data.batches.sampler import BucketBatchSampler
from spidrkit.data.corpora.audio import load_audio, reset_conversion_warnings, standardize
from spidrkit.data.corpora.manifest import ManifestEntry

BUDGET = 100_000
KW = dict(max_batch_samples=BUDGET, num_buckets=10, min_samples=2000, max_samples=30_000)


@pytest.fixture(scope="module")
def lengths() -> np.ndarray:
    return np.random.default_rng(0).integers(500, 50_000, 400)


def _cost(batch, lengths, cap=30_000):
    return len(batch) * min(min(int(lengths[i]), cap) for i in batch)


# ---------------------------------------------------------------------------------------------- sampler
def test_hand_computed_batches():
    # one bucket, no shuffle: 3000 x 4 files = 12000 fits; a 5th file would cost 5 x 3000 > 12000.
    # The 10000-sample file is capped at max_samples=8000 and goes alone (cost 8000).
    s = BucketBatchSampler(
        [5000, 10000, 3000, 6000, 4000, 1000],
        max_batch_samples=12000,
        num_buckets=1,
        min_samples=2000,
        max_samples=8000,
        shuffle=False,
    )
    assert s.epoch_batches(0) == [[2, 4, 0, 3], [1]]
    assert s.num_dropped == 1 and s.crop_cap == 8000


def test_buckets_are_equal_count_length_quantiles(lengths):
    s = BucketBatchSampler(lengths, **KW)
    kept = int((lengths >= 2000).sum())
    sizes = [len(b) for b in s.buckets]
    assert sum(sizes) == kept and max(sizes) - min(sizes) <= 1 and len(sizes) == 10
    for a, b in zip(s.buckets, s.buckets[1:]):
        assert lengths[a].max() <= lengths[b].min()


def test_every_file_once_per_epoch_within_budget(lengths):
    s = BucketBatchSampler(lengths, seed=3, **KW)
    valid = set(np.flatnonzero(lengths >= 2000).tolist())
    for epoch in range(3):
        n = len(s)  # this epoch's count; it varies a little between epochs
        batches = list(s)  # one epoch, as a DataLoader batch_sampler would use it
        assert len(batches) == n == s.num_batches(epoch)
        flat = [i for b in batches for i in b]
        assert len(flat) == len(set(flat)) and set(flat) == valid
        assert all(_cost(b, lengths) <= BUDGET for b in batches)
        assert s.epoch == epoch + 1 and s.position == 0
    # batches are nearly full: on average over 85 % of the budget is used
    costs = [_cost(b, lengths) for b in s.epoch_batches(0)]
    assert np.mean(costs) > 0.85 * BUDGET


def test_batches_span_consecutive_buckets_only(lengths):
    s = BucketBatchSampler(lengths, seed=1, **KW)
    bucket_of = {i: k for k, b in enumerate(s.buckets) for i in b.tolist()}
    for batch in s.epoch_batches(0):
        ks = sorted({bucket_of[i] for i in batch})
        assert ks == list(range(ks[0], ks[-1] + 1))


def test_seeds_and_epochs(lengths):
    a, b, c = (BucketBatchSampler(lengths, seed=s, **KW) for s in (7, 7, 8))
    assert a.epoch_batches(0) == b.epoch_batches(0)
    assert a.epoch_batches(0) != c.epoch_batches(0)
    assert a.epoch_batches(0) != a.epoch_batches(1)


def test_ranks_are_disjoint_and_equal(lengths):
    world = 3
    ranks = [BucketBatchSampler(lengths, seed=5, rank=r, world_size=world, **KW) for r in range(world)]
    n = len(ranks[0])
    assert all(len(r) == n for r in ranks)
    everything = BucketBatchSampler(lengths, seed=5, **KW).epoch_batches(0)
    assert n == len(everything) // world
    per_rank = [set(i for b in r.epoch_batches(0) for i in b) for r in ranks]
    for x in range(world):
        for y in range(x + 1, world):
            assert not per_rank[x] & per_rank[y]
        assert ranks[x].epoch_batches(0) == everything[x : n * world : world]
    union = set().union(*per_rank)
    dropped = {i for b in everything[n * world :] for i in b}
    assert union | dropped == set(np.flatnonzero(lengths >= 2000).tolist()) and not union & dropped


def test_resume_gives_the_same_remaining_batches(lengths):
    ref = BucketBatchSampler(lengths, seed=11, rank=1, world_size=2, **KW)
    stream = ref.iter_batches()
    k = len(ref) + 4  # past an epoch boundary
    head = [next(stream) for _ in range(k)]
    state = ref.state_dict()
    assert head[-1][:2] == (1, 3) and (state["epoch"], state["position"]) == (1, 4)
    tail = [next(stream) for _ in range(2 * len(ref))]
    resumed = BucketBatchSampler(lengths, seed=11, rank=1, world_size=2, **KW)
    resumed.load_state_dict(state)
    again = resumed.iter_batches()
    assert [next(again) for _ in range(len(tail))] == tail
    # state at the very end of an epoch points at the next epoch's start
    fresh = BucketBatchSampler(lengths, seed=11, rank=1, world_size=2, **KW)
    list(fresh)
    assert (fresh.state_dict()["epoch"], fresh.state_dict()["position"]) == (1, 0)


def test_resume_refuses_changed_data(lengths):
    s = BucketBatchSampler(lengths, seed=2, **KW)
    state = {**s.state_dict(), "position": 3}
    other = BucketBatchSampler(lengths[:-1], seed=2, **KW)
    with pytest.raises(ValueError, match="num_files"):
        other.load_state_dict(state)
    with pytest.warns(UserWarning, match="start of epoch 1"):
        other.load_state_dict(state, strict=False)
    assert (other.epoch, other.position) == (1, 0)
    with pytest.raises(ValueError, match="make 91 batches, fewer than the 500 ranks"):
        BucketBatchSampler(lengths, world_size=500, **KW)


# ---------------------------------------------------------------------------------------------- loaders
def test_crop_batch_takes_the_shortest_at_the_drawn_offsets():
    wavs = [torch.arange(n, dtype=torch.float32) for n in (5000, 3000, 4000)]
    out, offsets = crop_batch(wavs, 8000, np.random.default_rng(0))
    assert out.shape == (3, 3000) and offsets[1] == 0
    for w, o, row in zip(wavs, offsets, out):
        assert 0 <= o <= len(w) - 3000 and torch.equal(row, w[o : o + 3000])
    out, offsets = crop_batch(wavs, 2000, None)  # capped, centred
    assert out.shape == (3, 2000) and offsets == [1500, 500, 1000]
    many = [crop_batch([torch.zeros(10), torch.zeros(4)], 8, np.random.default_rng(s))[1][0] for s in range(400)]
    assert set(many) == set(range(7))  # every offset in [0, 10 - 4] is drawn


def _write_corpus(root, rng, n_good=12):
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(n_good):
        n = int(rng.integers(2500, 9000))
        sf.write(root / f"g{i}.wav", (rng.standard_normal(n) * 0.1 + 0.05).astype(np.float32), 16000)
        entries.append(ManifestEntry(f"g{i}", str(root / f"g{i}.wav"), n))
    (root / "bad.wav").write_bytes(b"garbage" * 100)
    sf.write(root / "empty.wav", np.zeros(0, np.int16), 16000)
    st = (rng.standard_normal((13230, 2)) * 0.1).astype(np.float32)  # 0.3 s at 44.1 kHz, stereo
    sf.write(root / "st.wav", st, 44100)
    entries += [
        ManifestEntry("bad", str(root / "bad.wav"), 5000),  # the manifest says fine; decoding says not
        ManifestEntry("empty", str(root / "empty.wav"), 3000),
        ManifestEntry("st", str(root / "st.wav"), 4800),
    ]
    return entries


CFG = DataConfig(num_buckets=3, max_batch_samples=20_000, min_samples=2000, max_samples=6000, num_workers=0)


def test_train_loader_skips_bad_files_and_crops_standardised_audio(tmp_path):
    reset_conversion_warnings()
    entries = _write_corpus(tmp_path / "c", np.random.default_rng(1))
    loader = make_train_loader(entries, CFG, seed=4, run_dir=tmp_path / "run", pin_memory=False)
    seen, it = [], iter(loader)
    with pytest.warns(UserWarning):  # the stereo 44.1 kHz file: down-mixed and resampled
        for _ in range(loader.batches_per_epoch):
            batch = next(it)
            seen += batch["fileids"]
            if not batch["fileids"]:
                assert batch["wav"].shape == (0, 0)
                continue
            full = [
                standardize(load_audio(entries[[e.fileid for e in entries].index(f)].path)) for f in batch["fileids"]
            ]
            size = min(min(len(w) for w in full), 6000)
            assert batch["wav"].shape == (len(full), size) and batch["wav"].dtype == torch.float32
            for w, o, row in zip(full, batch["offsets"], batch["wav"]):
                assert torch.equal(row, w[o : o + size])  # standardised over the whole file, then cropped
    assert (loader.epoch, loader.position) == (1, 0)
    assert sorted(seen) == sorted([f"g{i}" for i in range(12)] + ["st"])
    rows = read_skipped(tmp_path / "run")
    assert sorted(r[0] for r in rows) == ["bad", "empty"]
    reasons = dict((r[0], r[2]) for r in rows)
    assert "cannot decode" in reasons["bad"] and "empty" in reasons["empty"]
    assert (tmp_path / "run" / "skipped.tsv").read_text().startswith("fileid\tpath\treason\n")
    # a second epoch lists nothing twice
    for _ in range(loader.batches_per_epoch):
        next(it)
    assert len(read_skipped(tmp_path / "run")) == 2


def test_all_bad_batch_is_empty_and_keeps_its_index(tmp_path):
    entries = _write_corpus(tmp_path / "c", np.random.default_rng(2), n_good=0)
    ds = BatchDataset(AudioDataset(entries[:2]), 6000)
    batch = ds[(3, 5, [0, 1])]
    assert batch["fileids"] == [] and batch["wav"].shape == (0, 0) and batch["index"] == (3, 5)
    assert [s[0] for s in batch["skipped"]] == ["bad", "empty"]


def test_short_decoded_file_is_skipped(tmp_path):
    sf.write(tmp_path / "short.wav", np.zeros(1500, np.float32), 16000)
    ds = BatchDataset(AudioDataset([ManifestEntry("short", str(tmp_path / "short.wav"), 9999)], min_samples=2000), 6000)
    assert ds[(0, 0, [0])]["skipped"][0][1].endswith("under min_samples=2000")


def _batches(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def _count_hook(batch):  # module level: worker processes must be able to import it
    batch["n"] = batch["wav"].shape[0]
    return batch


def test_train_loader_resumes_exactly_and_workers_do_not_change_batches(tmp_path):
    entries = _write_corpus(tmp_path / "c", np.random.default_rng(3), n_good=16)[:16]
    cfg = dataclasses.replace(CFG, max_batch_samples=10_000)

    ref = make_train_loader(entries, cfg, seed=9, run_dir=tmp_path / "r", pin_memory=False)
    k, m = ref.batches_per_epoch - 1, ref.batches_per_epoch + 2
    head = _batches(ref, k)
    state = ref.state_dict()
    assert (state["epoch"], state["position"]) == (0, k)
    tail = _batches(ref, m)  # iter() again goes on where the first stopped
    assert tail[0]["index"] == (0, k) and tail[1]["index"] == (1, 0)
    assert head[-1]["index"] == (0, k - 1)
    resumed = make_train_loader(
        entries,
        dataclasses.replace(cfg, num_workers=2),
        seed=9,
        run_dir=tmp_path / "r",
        collate_hook=_count_hook,
        start_state=state,
        pin_memory=False,
    )
    again = _batches(resumed, m)
    for a, b in zip(tail, again):
        assert a["index"] == b["index"] and a["fileids"] == b["fileids"] and a["offsets"] == b["offsets"]
        assert torch.equal(a["wav"], b["wav"]) and b["n"] == len(b["fileids"])


def test_valid_loader_is_fixed(tmp_path):
    entries = _write_corpus(tmp_path / "c", np.random.default_rng(4), n_good=10)[:10]
    cfg = dataclasses.replace(CFG, max_batch_samples=8000)
    loader = make_valid_loader(entries, cfg)
    one, two = list(loader), list(loader)
    assert len(one) == len(loader) >= 3
    assert [b["fileids"] for b in one] == [b["fileids"] for b in two]
    assert all(torch.equal(a["wav"], b["wav"]) for a, b in zip(one, two))
    lengths = {e.fileid: e.num_samples for e in entries}
    for b in one:  # centred crops
        size = b["wav"].shape[1]
        assert b["offsets"] == [(lengths[f] - size) // 2 for f in b["fileids"]]
    # ascending length order, and a subset spread over it
    firsts = [min(lengths[f] for f in b["fileids"]) for b in one]
    assert firsts == sorted(firsts)
    sub = make_valid_loader(entries, cfg, max_batches=2)
    assert [b["index"][1] for b in sub] == [0, len(loader) - 1]
