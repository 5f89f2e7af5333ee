"""K-means units: cluster recovery, seeding, bounded sampling, exact nearest centroid, files, CLI."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

from spidrkit.cli import main
from spidrkit.extraction.features_io import save_features
from spidrkit.extraction.kmeans import (
    KMeansError,
    KMeansModel,
    apply_kmeans,
    fit_kmeans,
    kmeans_plusplus,
    resolve_backend,
    sample_frames,
)
from spidrkit.extraction.units import read_units
from spidrkit.io import read_sidecar, write_sidecar

HAS_FAISS = importlib.util.find_spec("faiss") is not None
BACKENDS = [
    pytest.param("faiss", marks=pytest.mark.skipif(not HAS_FAISS, reason="faiss-cpu not installed")),
    "sklearn",
]


def blobs(n_files=12, frames=150, k=8, dim=16, spread=0.05, seed=0):
    """``k`` well-separated Gaussian blobs split over utterances: (centres, {utt: frames}, {utt: labels})."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * 5
    feats, labels = {}, {}
    for i in range(n_files):
        lab = torch.randint(k, (frames,), generator=g)
        feats[f"spk{i % 3}/utt{i}"] = centres[lab] + spread * torch.randn(frames, dim, generator=g)
        labels[f"spk{i % 3}/utt{i}"] = lab
    return centres, feats, labels


@pytest.mark.parametrize("backend", BACKENDS)
def test_recovers_separated_blobs(backend):
    centres, feats, labels = blobs()
    model = fit_kmeans(feats, k=8, backend=backend, progress=False)
    assert model.centroids.shape == (8, 16) and model.info["backend"] == backend
    # every true centre has exactly one centroid within 0.1, and it is a different one for each
    dist = torch.cdist(centres, model.centroids)
    nearest = dist.argmin(1)
    assert sorted(nearest.tolist()) == list(range(8))
    assert dist.min(1).values.max() < 0.1
    # every frame of true cluster j gets the unit nearest[j]: the clustering is the truth, up to renaming
    for utt, x in feats.items():
        assert torch.equal(model.predict(x), nearest[labels[utt]])
    # inertia: 12*150 frames of 16 dims with variance 0.05^2 -> about 1800 * 16 * 0.0025 = 72
    assert model.info["fitted_frames"] == 1800 == model.info["total_frames"]
    assert model.info["inertia"] == pytest.approx(72, rel=0.1)
    assert model.info["inertia_per_frame"] == pytest.approx(model.info["inertia"] / 1800)


@pytest.mark.skipif(not HAS_FAISS, reason="faiss-cpu not installed")
def test_backends_agree_from_the_same_seeding():
    # overlapping clusters, so Lloyd has real work to do; both start from the same k-means++ seeding
    _, feats, _ = blobs(n_files=4, frames=200, k=5, dim=4, spread=2.0, seed=3)
    a = fit_kmeans(feats, k=5, backend="faiss", niter=100, progress=False)
    b = fit_kmeans(feats, k=5, backend="sklearn", niter=100, progress=False)
    assert torch.allclose(a.centroids, b.centroids, atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_centroids(backend):
    _, feats, _ = blobs(n_files=6, frames=100, k=6, dim=8, spread=1.5, seed=1)
    a = fit_kmeans(feats, k=6, max_frames=300, seed=7, backend=backend, progress=False)
    b = fit_kmeans(feats, k=6, max_frames=300, seed=7, backend=backend, progress=False)
    c = fit_kmeans(feats, k=6, max_frames=300, seed=8, backend=backend, progress=False)
    assert torch.equal(a.centroids, b.centroids)
    assert not torch.allclose(a.centroids, c.centroids)  # another seed: another sample of 300 frames


def test_max_frames_bounds_the_sample():
    # 3 files of constant rows (value = file number, second column = frame number): which frames were kept
    lengths = [1000, 3000, 6000]
    feats = [torch.stack([torch.full((n,), float(i)), torch.arange(n, dtype=torch.float32)], 1)
             for i, n in enumerate(lengths)]
    x, total = sample_frames(feats, max_frames=2000, seed=0, progress=False)
    assert total == 10_000 and x.shape == (2000, 2) and x.dtype == np.float32
    assert len({(a, b) for a, b in x.tolist()}) == 2000, "2000 distinct frames of the data"
    # uniform over the corpus: each file contributes in proportion to its length (binomial, 4 sigma)
    counts = np.bincount(x[:, 0].astype(int), minlength=3)
    for count, n in zip(counts, lengths):
        p = n / 10_000
        assert abs(count - 2000 * p) < 4 * np.sqrt(2000 * p * (1 - p) * (1 - 2000 / 10_000))
    # and within the long file, early and late frames alike (not the first 2000 frames of the corpus)
    late = x[(x[:, 0] == 2) & (x[:, 1] >= 3000)]
    assert abs(len(late) - 600) < 4 * np.sqrt(600)
    # fewer frames than the bound: all of them, in order; None: all of them
    x_all, total = sample_frames(feats, max_frames=50_000, seed=0, progress=False)
    assert total == 10_000 and np.array_equal(x_all, torch.cat(feats).numpy())
    assert sample_frames(feats, max_frames=None, progress=False)[0].shape == (10_000, 2)
    model = fit_kmeans(feats, k=3, max_frames=500, backend="sklearn", progress=False)
    info = model.info
    assert (info["fitted_frames"], info["total_frames"], info["max_frames"]) == (500, 10_000, 500)


def test_kmeans_plusplus_picks_distinct_data_frames():
    centres, feats, _ = blobs(k=8, seed=2)
    x = torch.cat(list(feats.values()))
    init = kmeans_plusplus(x, 8, torch.Generator().manual_seed(0))
    # with blobs this far apart, D^2 sampling puts one seed in each blob
    assert sorted(torch.cdist(init, centres).argmin(1).tolist()) == list(range(8))
    assert all(bool((x == c).all(1).any()) for c in init), "seeds are frames of the data"


def test_predict_is_the_brute_force_nearest_centroid():
    g = torch.Generator().manual_seed(0)
    centroids, x = torch.randn(37, 16, generator=g), torch.randn(1001, 16, generator=g) * 2 + 0.5
    model = KMeansModel(centroids)
    brute = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
    expected = brute.argmin(1)
    for batch_size in (None, 100, 5000):
        labels = model.predict(x, batch_size=batch_size)
        assert labels.dtype == torch.long and labels.shape == (1001,)
        assert torch.equal(labels, expected)
    xh = x.half()  # float16 features (as saved with dtype=float16) are computed in float32
    assert torch.equal(model.predict(xh), ((xh.float()[:, None] - centroids[None]) ** 2).sum(-1).argmin(1))
    assert torch.equal(model.predict(x.numpy()), expected)
    assert model.inertia(x) == pytest.approx(float(brute.min(1).values.sum()), rel=1e-5)
    assert model.predict(torch.empty(0, 16)).shape == (0,)
    with pytest.raises(KMeansError, match=r"\(T, 16\)"):
        model.predict(torch.zeros(3, 8))


def test_save_load_round_trip(tmp_path):
    _, feats, _ = blobs(n_files=3, frames=50, k=4, dim=6)
    model = fit_kmeans(feats, k=4, seed=5, backend="sklearn", progress=False, layer=6, model="spidr")
    path = model.save(tmp_path / "C")
    assert path == tmp_path / "C.npy"
    # portable: a plain float32 .npy, no pickle; the sidecar is plain JSON
    raw = np.load(path, allow_pickle=False)
    assert raw.dtype == np.float32 and np.array_equal(raw, model.centroids.numpy())
    side = json.loads((tmp_path / "C.npy.json").read_text())
    assert (side["k"], side["dim"], side["layer"], side["model"], side["seed"]) == (4, 6, 6, "spidr", 5)
    assert (side["backend"], side["fitted_frames"]) == ("sklearn", 150)
    for name in ("C", "C.npy"):
        back = KMeansModel.load(tmp_path / name)
        assert torch.equal(back.centroids, model.centroids)
        assert back.info["inertia"] == pytest.approx(model.info["inertia"])
        assert "created" not in back.info  # the writer's own stamp is not carried over on re-save
    # re-saving a loaded model keeps its info
    KMeansModel.load(path).save(tmp_path / "D.npy")
    assert read_sidecar(tmp_path / "D.npy")["fitted_frames"] == 150
    # a sidecar that contradicts the array is caught
    write_sidecar(path, k=5, dim=6)
    with pytest.raises(KMeansError, match="k=5"):
        KMeansModel.load(path)
    with pytest.raises(KMeansError, match="no centroids"):
        KMeansModel.load(tmp_path / "missing")


def test_fit_and_apply_on_a_features_folder(tmp_path):
    centres, feats, labels = blobs(n_files=5, frames=60, k=4, dim=8)
    folder = tmp_path / "feats" / "layer_06"
    for i, (utt, x) in enumerate(feats.items()):
        save_features(folder, utt, x, fmt="npy" if i % 2 else "pt")
    write_sidecar(folder, model="spidr", layer=6, checkpoint="ckpt.pt")
    model = fit_kmeans(folder, k=4, seed=0, backend="sklearn", progress=False)
    assert (model.info["layer"], model.info["model"]) == (6, "spidr")
    assert model.info["features"]["checkpoint"] == "ckpt.pt"
    # the same frames in the same (sorted) order from memory: the same centroids
    in_memory = fit_kmeans(dict(sorted(feats.items())), k=4, seed=0, backend="sklearn", progress=False)
    assert torch.allclose(model.centroids, in_memory.centroids)
    units = apply_kmeans(folder, model, progress=False)
    assert list(units) == sorted(feats)
    nearest = torch.cdist(centres, model.centroids).argmin(1)
    for utt in feats:
        assert torch.equal(units[utt], nearest[labels[utt]])
    # centroids of another layer: warned about
    other = KMeansModel(model.centroids, {"layer": 12})
    with pytest.warns(UserWarning, match="layer=6"):
        apply_kmeans(folder, other, progress=False)
    with pytest.raises(KMeansError, match="dimension 8, the centroids have 3"):
        apply_kmeans(folder, KMeansModel(torch.zeros(4, 3)), progress=False)


def test_fit_errors(tmp_path):
    _, feats, _ = blobs(n_files=1, frames=5, k=2, dim=3)
    with pytest.raises(KMeansError, match="only 5 frames"):
        fit_kmeans(feats, k=8, progress=False)
    with pytest.raises(KMeansError, match="dimension 4"):
        fit_kmeans([torch.zeros(5, 3), torch.zeros(5, 4)], k=2, progress=False)
    with pytest.raises(KMeansError, match="backend"):
        fit_kmeans(feats, k=2, backend="cuml", progress=False)
    with pytest.raises(KMeansError, match="k must be"):
        fit_kmeans(feats, k=0, progress=False)
    with pytest.raises(KMeansError, match="no feature files"):
        fit_kmeans(tmp_path, k=2, progress=False)


def test_cli_fit_then_apply(tmp_path, capsys):
    centres, feats, labels = blobs(n_files=4, frames=80, k=4, dim=8)
    folder = tmp_path / "feats"
    for utt, x in feats.items():
        save_features(folder, utt, x)
    write_sidecar(folder, model="spidr", layer=6)
    c = tmp_path / "km" / "C"
    assert main(["kmeans", "fit", str(folder), "-k", "4", "--max-frames", "200", "--seed", "3",
                 "--backend", "sklearn", "-o", str(c), "--quiet"]) == 0
    side = read_sidecar(tmp_path / "km" / "C.npy")
    assert (side["k"], side["fitted_frames"], side["total_frames"], side["layer"]) == (4, 200, 320, 6)
    out = tmp_path / "units.txt"
    apply = ["kmeans", "apply", str(folder), "--centroids", str(c), "-o", str(out), "--dedup", "--quiet"]
    assert main(apply) == 0
    model = KMeansModel.load(c)
    nearest = torch.cdist(centres, model.centroids).argmin(1)
    back = read_units(out)
    assert list(back) == sorted(feats)
    for utt in feats:
        assert back[utt].durations is not None
        assert back[utt].frames() == nearest[labels[utt]].tolist()
    side = read_sidecar(out)
    assert (side["k"], side["layer"], side["model"], side["dedup"]) == (4, 6, "spidr", True)
    assert len(side["centroids_sha256"]) == 16
    # bad input: a clean error, exit status 2
    assert main(["kmeans", "apply", str(tmp_path / "nope"), "--centroids", str(c), "-o", str(out), "--force"]) == 2
    assert "no features folder" in capsys.readouterr().err


def test_backend_choice(monkeypatch):
    assert resolve_backend("sklearn") == "sklearn"
    assert resolve_backend("auto") == ("faiss" if HAS_FAISS else "sklearn")
    monkeypatch.setitem(sys.modules, "faiss", None)  # faiss not installed: auto falls back, faiss is an error
    assert resolve_backend("auto") == "sklearn"
    with pytest.raises(KMeansError, match=r"faiss-cpu \(not installed\): pip install 'spidrkit\[faiss\]'"):
        resolve_backend("faiss")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spread", [0.05, 2.0])  # scikit-learn stops after 4 iterations (one call) / 17 (two)
def test_iterations_in_several_calls_equal_one_call_of_all(backend, spread, capsys, monkeypatch):
    """_lloyd calls the backend several times (so a bar counts iterations): the centroids, and for scikit-learn
    the iterations its early stop runs, are those of one call of ``niter`` iterations, bit for bit."""
    from sklearn.cluster import KMeans

    from spidrkit import progress
    from spidrkit.extraction.kmeans import _lloyd

    monkeypatch.setattr(progress, "LOG_PROGRESS_SECONDS", 3600.0)  # the first and last line of each bar
    _, feats, _ = blobs(n_files=4, frames=200, k=6, dim=4, spread=spread, seed=3)
    x = torch.cat(list(feats.values())).numpy()
    x[:50] = x[0]  # repeated frames: a duplicated seed leaves a centroid empty, which the backends re-seed
    init = kmeans_plusplus(torch.from_numpy(x), 6, torch.Generator().manual_seed(0)).numpy()
    init[1] = init[0]
    got = _lloyd(x, init, 40, 0, backend, True)
    if backend == "faiss":
        import faiss

        km = faiss.Kmeans(4, 6, niter=40, seed=0, max_points_per_centroid=len(x) // 6 + 1, min_points_per_centroid=1)
        km.train(x, init_centroids=init)
        want, iterations = np.asarray(km.centroids), 40
    else:
        km = KMeans(n_clusters=6, init=init, n_init=1, max_iter=40, random_state=0).fit(x)
        want, iterations = km.cluster_centers_, km.n_iter_
    assert np.array_equal(got, want.astype(np.float32))
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" [")[0] for line in lines] == [f"k-means iterations ({backend}): 0/40 iteration",
                                                       f"k-means iterations ({backend}): {iterations}/40 iteration"]
    assert backend == "faiss" or iterations == {0.05: 4, 2.0: 17}[spread]  # within a call of 10, across calls
