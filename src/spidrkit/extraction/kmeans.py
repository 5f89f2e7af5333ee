"""K-means units: fit centroids on extracted features, then map every frame to its nearest centroid.

The paper's discrete units (b) are K-means clusters (V = 256, or 50/100/200/500) of one layer's features
(``docs/method.md``). Fitting reads the features folder file by file and keeps a seeded uniform sample of at most
``max_frames`` frames (reservoir sampling), so memory stays bounded whatever the corpus size. Centroids
are seeded with k-means++ (computed here in torch, so both backends start from the same point), then
refined by Lloyd iterations in faiss (fast, multi-threaded) or scikit-learn (the fallback), in several calls
so that a bar (a line in a log: :func:`spidrkit.progress.progress_bar`) counts them.

Centroids are stored portably and load without executing code: ``C.npy`` (float32 ``(k, D)``, read with
``allow_pickle=False``) and its sidecar ``C.npy.json`` (k, dim, layer, model, frames, inertia, seed,
backend, the features' own sidecar).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spidrkit.errors import InputError
from spidrkit.extraction.features_io import iter_feature_files, load_array, load_features
from spidrkit.io import atomic_write, read_sidecar, refuse_overwrite, sidecar_path, write_sidecar
from spidrkit.lazy import install_hint, require
from spidrkit.progress import progress_bar

BACKENDS = ("auto", "faiss", "sklearn")
DEFAULT_MAX_FRAMES = 500_000
INIT_FRAMES_PER_CENTROID = 256
SKLEARN_ITERATIONS_PER_CALL = 10  # the fallback's bar moves every 10 iterations (for 10 % more time)
# keys every sidecar carries about its writer, not about the data: never copied from one sidecar to another
_WRITER_KEYS = ("producer", "created", "command", "python")

FeatureSource = str | os.PathLike | Mapping[str, Any] | Iterable[Any]


class KMeansError(InputError):
    """K-means asked of data or files that cannot give it."""


def _own_info(sidecar: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sidecar.items() if k not in _WRITER_KEYS}


def _features_sidecar(features: FeatureSource) -> dict[str, Any]:
    """The sidecar of a features folder (model, layer, checkpoint...), or ``{}`` for in-memory features."""
    if isinstance(features, (str, os.PathLike)) and sidecar_path(features).is_file():
        return _own_info(read_sidecar(features))
    return {}


def _iter_arrays(features: FeatureSource, progress: bool, desc: str) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, (T, D) tensor)`` from a features folder, a ``{name: tensor}`` mapping or an iterable."""
    if isinstance(features, (str, os.PathLike)):
        files = list(iter_feature_files(features))
        if not files:
            raise KMeansError(f"no feature files (.pt or .npy) in {features}")
        items: Iterable[tuple[str, Any]] = ((fid, path) for fid, path in files)
        total: int | None = len(files)
    elif isinstance(features, (torch.Tensor, np.ndarray)):  # one (T, D) array: a single utterance
        items, total = [("0", features)], 1
    elif isinstance(features, Mapping):
        items, total = features.items(), len(features)
    else:
        items, total = ((str(i), x) for i, x in enumerate(features)), None
    for name, x in progress_bar(total, desc, "file", progress, iterable=items):
        where = x if isinstance(x, Path) else name
        x = load_features(x) if isinstance(x, Path) else torch.as_tensor(x)
        if x.ndim != 2:
            raise KMeansError(f"{where}: features must be (T, D), got shape {tuple(x.shape)}")
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise KMeansError(
                f"{where}: features hold NaN or infinite values (extracted with NaN weights?); "
                "re-extract them with a sound model, or leave this file out"
            )
        yield name, x


def sample_frames(
    features: FeatureSource,
    max_frames: int | None = DEFAULT_MAX_FRAMES,
    seed: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, int]:
    """A seeded uniform sample of at most ``max_frames`` frames over all files, and the total frame count.

    Reservoir sampling (Algorithm R, vectorised per file): reading the files one by one, frame number ``t``
    (0-based, over the whole corpus) replaces a random slot of the reservoir with probability
    ``max_frames / (t + 1)``. Every frame ends up sampled with the same probability and memory holds only
    the reservoir and one file. ``max_frames=None`` keeps every frame. Returns float32 ``(n, D)``.
    """
    if max_frames is not None and max_frames < 1:
        raise KMeansError(f"max_frames must be >= 1 (or None for all frames), got {max_frames}")
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []  # only when max_frames is None
    reservoir: np.ndarray | None = None
    dim, seen = None, 0
    for name, x in _iter_arrays(features, progress, "sampling frames"):
        if dim is None:
            dim = x.shape[1]
        elif x.shape[1] != dim:
            raise KMeansError(f"{name}: features of dimension {x.shape[1]}, the first file had {dim}")
        a = x.detach().to("cpu", torch.float32).numpy()
        if max_frames is None:
            kept.append(a)
        else:
            if reservoir is None:  # np.empty maps pages lazily: a small corpus does not pay for max_frames
                reservoir = np.empty((max_frames, dim), dtype=np.float32)
            fill = min(max(max_frames - seen, 0), len(a))
            reservoir[seen : seen + fill] = a[:fill]
            rest = a[fill:]
            if len(rest):
                t = seen + fill + np.arange(len(rest))
                slot = rng.integers(0, t + 1)
                keep = slot < max_frames
                reservoir[slot[keep]] = rest[keep]  # repeated slots: the later frame wins, as in Algorithm R
        seen += len(a)
    if dim is None:
        raise KMeansError("no features to sample from")
    if max_frames is None:
        return np.concatenate(kept) if kept else np.empty((0, dim), np.float32), seen
    assert reservoir is not None
    return reservoir[: min(seen, max_frames)], seen


def _nearest(x: torch.Tensor, centroids: torch.Tensor, batch_size: int | None = None):
    """Index of the nearest centroid (squared euclidean) of every row of ``x``, and that squared distance.

    ``||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2`` in batches of rows, so memory is ``batch x k`` whatever ``T``.
    """
    k = centroids.shape[0]
    batch_size = batch_size or max(1, (1 << 22) // k)
    c_sq = centroids.pow(2).sum(1)
    labels, dists = [], []
    for chunk in x.split(batch_size):
        d = torch.addmm(c_sq, chunk, centroids.T, alpha=-2.0)  # ||c||^2 - 2 x.c
        best, idx = d.min(1)
        labels.append(idx)
        dists.append((best + chunk.pow(2).sum(1)).clamp_min_(0.0))
    if not labels:
        return torch.empty(0, dtype=torch.long, device=x.device), torch.empty(0, device=x.device)
    return torch.cat(labels), torch.cat(dists)


def kmeans_plusplus(x: torch.Tensor, k: int, generator: torch.Generator, progress: bool = False) -> torch.Tensor:
    """k-means++ seeding: each new centroid is a frame drawn with probability ~ its squared distance to the
    nearest centroid so far (Arthur & Vassilvitskii 2007). ``x`` float32 ``(n, D)``; returns ``(k, D)``.
    ``progress``: a bar over the ``k`` centroids drawn."""
    n = x.shape[0]
    x_sq = x.pow(2).sum(1)
    idx = [int(torch.randint(n, (1,), generator=generator))]
    d2 = (x_sq - 2 * (x @ x[idx[0]]) + x_sq[idx[0]]).clamp_min_(0.0)
    with progress_bar(k, "k-means++ seeding", "centroid", progress, initial=1) as bar:
        for _ in range(1, k):
            cum = d2.double().cumsum(0)
            u = torch.rand(1, generator=generator, dtype=torch.float64) * cum[-1]
            # all frames already on a centroid (fewer distinct frames than k): any frame will do
            i = int(torch.searchsorted(cum, u).clamp_max_(n - 1)) if cum[-1] > 0 else int(
                torch.randint(n, (1,), generator=generator)
            )
            idx.append(i)
            d2 = torch.minimum(d2, (x_sq - 2 * (x @ x[i]) + x_sq[i]).clamp_min_(0.0))
            bar.update(1)
    return x[idx].clone()


def resolve_backend(backend: str = "auto") -> str:
    """``faiss`` when asked or (for ``auto``) when installed, else ``sklearn``."""
    if backend not in BACKENDS:
        raise KMeansError(f"unknown k-means backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend in ("auto", "faiss"):
        try:
            import faiss  # noqa: F401
        except ImportError:
            if backend == "faiss":
                raise KMeansError(f"backend 'faiss' needs {install_hint('faiss')}") from None
            return "sklearn"
        return "faiss"
    return "sklearn"


def _lloyd_steps(x: np.ndarray, centroids: np.ndarray, seed: int, backend: str, n: int) -> tuple[np.ndarray, int]:
    """At most ``n`` Lloyd iterations from ``centroids`` by ``backend`` (every frame to its nearest centroid,
    every centroid to the mean of its frames, an emptied one re-seeded as the backend does): the centroids,
    and the iterations run (fewer than ``n`` when scikit-learn's early stop ended them)."""
    k, dim = centroids.shape
    if backend == "faiss":
        import faiss

        km = faiss.Kmeans(
            dim, k, niter=n, seed=seed, verbose=False,
            max_points_per_centroid=len(x) // k + 1,  # no second subsampling: the sample is already drawn
            min_points_per_centroid=1,
        )
        km.train(x, init_centroids=centroids)
        return np.asarray(km.centroids, dtype=np.float32), n
    KMeans = require("sklearn.cluster", "k-means fitting (backend sklearn)").KMeans
    km = KMeans(n_clusters=k, init=centroids, n_init=1, max_iter=n, random_state=seed).fit(x)
    return km.cluster_centers_.astype(np.float32), int(km.n_iter_)


def _lloyd(x: np.ndarray, init: np.ndarray, niter: int, seed: int, backend: str, progress: bool) -> np.ndarray:
    """``niter`` Lloyd iterations from ``init``, in several backend calls so that a bar counts them: one per
    iteration with faiss (which keeps no state between iterations: its re-seeding of an emptied centroid draws
    from a fixed seed each time), :data:`SKLEARN_ITERATIONS_PER_CALL` with scikit-learn (each of its calls ends
    with one more assignment pass: per iteration it would cost twice the time). The centroids, and scikit-learn's
    early stop, are those of one call of ``niter`` iterations (tests/test_kmeans.py holds both)."""
    per_call = 1 if backend == "faiss" else SKLEARN_ITERATIONS_PER_CALL
    centroids, done = init, 0
    with progress_bar(niter, f"k-means iterations ({backend})", "iteration", progress) as bar:
        while done < niter:
            n = min(per_call, niter - done)
            centroids, ran = _lloyd_steps(x, centroids, seed, backend, n)
            done += ran
            bar.update(ran)
            if ran < n:  # converged
                break
    return centroids


@dataclass
class KMeansModel:
    """Fitted centroids ``(k, D)`` and what produced them (``info``: the sidecar's content)."""

    centroids: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        c = torch.as_tensor(self.centroids)
        if c.ndim != 2 or c.shape[0] < 1:
            raise KMeansError(f"centroids must be (k, D), got shape {tuple(c.shape)}")
        self.centroids = c.detach().float().contiguous()

    @property
    def k(self) -> int:
        return self.centroids.shape[0]

    @property
    def dim(self) -> int:
        return self.centroids.shape[1]

    def to(self, device: str | torch.device) -> KMeansModel:
        """The same model with its centroids on ``device`` (predict then runs there)."""
        return KMeansModel(self.centroids.to(device), dict(self.info))

    def predict(self, x: torch.Tensor | np.ndarray, batch_size: int | None = None) -> torch.Tensor:
        """The unit (nearest centroid, squared euclidean) of every frame of ``x (T, D)``: a LongTensor
        ``(T,)`` on ``x``'s device. Batched, so long utterances fit in memory."""
        x = torch.as_tensor(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise KMeansError(f"expected features (T, {self.dim}), got shape {tuple(x.shape)}")
        labels, _ = _nearest(x.to(self.centroids.device, torch.float32), self.centroids, batch_size)
        return labels.to(x.device)

    def inertia(self, x: torch.Tensor | np.ndarray) -> float:
        """Sum over the frames of ``x`` of the squared distance to their nearest centroid."""
        _, d = _nearest(torch.as_tensor(x).to(self.centroids.device, torch.float32), self.centroids)
        return float(d.double().sum())

    def save(self, path: str | os.PathLike, *, force: bool = False) -> Path:
        """Write ``path`` (``.npy`` added if missing; float32 ``(k, D)``) and its sidecar ``path.json``; an
        existing file is replaced only with ``force``."""
        path = centroids_path(path)
        refuse_overwrite([path], force, "kmeans fit")
        with atomic_write(path, "wb") as f:
            np.save(f, self.centroids.cpu().numpy(), allow_pickle=False)
        write_sidecar(path, **{**self.info, "k": self.k, "dim": self.dim})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> KMeansModel:
        """Read centroids saved by :meth:`save` (the sidecar is optional); no code is executed."""
        path = find_centroids(path)
        try:
            c = load_array(path)
        except OSError as e:
            if e.errno is not None:  # the disk or the permissions, not the content
                raise
            error: Exception = e
        except Exception as e:  # numpy's parse errors; its own advice (to unpickle) is not repeated
            error = e
        else:
            error = None
        if error is not None:
            why = "an archive, e.g. a model checkpoint" if _starts_with(path, b"PK\x03\x04") else (
                f"not a plain numpy array: {type(error).__name__}")
            raise KMeansError(f"{path}: not a centroids file ({why}); pass the C.npy written by `spidrkit kmeans "
                              "fit`") from error
        if c.ndim != 2 or not np.issubdtype(c.dtype, np.floating) or min(c.shape) < 1:
            raise KMeansError(f"{path}: expected float centroids (k, D), k and D >= 1, got {c.dtype} {c.shape}")
        with np.errstate(over="ignore"):
            c = c.astype(np.float32)  # (what the model holds: a float64 beyond float32's range becomes inf)
        if not np.isfinite(c).all():
            raise KMeansError(f"{path}: centroids hold NaN or infinite values (as float32); fit them again")
        info = _own_info(read_sidecar(path)) if sidecar_path(path).is_file() else {}
        for key, n in zip(("k", "dim"), c.shape):
            if info.get(key, n) != n:
                raise KMeansError(f"{path}: sidecar says {key}={info[key]}, the array has shape {c.shape}")
        return cls(torch.from_numpy(c), info)


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as f:
        return f.read(len(magic)) == magic


def centroids_path(path: str | os.PathLike) -> Path:
    """Centroid files end in ``.npy``: ``C`` becomes ``C.npy``."""
    path = Path(path)
    return path if path.suffix == ".npy" else path.with_name(path.name + ".npy")


def find_centroids(path: str | os.PathLike) -> Path:
    """The centroids file named by ``path``: itself, or ``path.npy``; a clear error when neither exists."""
    for candidate in (Path(path), centroids_path(path)):
        if candidate.is_file():
            return candidate
    raise KMeansError(f"no centroids file at {path}")


def fit_kmeans(
    features: FeatureSource,
    k: int = 256,
    max_frames: int | None = DEFAULT_MAX_FRAMES,
    seed: int = 0,
    backend: str = "auto",
    niter: int = 50,
    progress: bool = True,
    **info: Any,
) -> KMeansModel:
    """Fit ``k`` centroids on a features folder, a ``{name: (T, D)}`` mapping or an iterable of ``(T, D)``.

    At most ``max_frames`` frames are used (a seeded uniform sample, see :func:`sample_frames`; ``None``:
    all); k-means++ seeding then ``niter`` Lloyd iterations with ``backend`` (``auto``: faiss if installed,
    else scikit-learn). The same inputs and seed give the same centroids. ``info`` (e.g. ``layer``,
    ``model``) goes to the sidecar, overriding what the features folder's sidecar says.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise KMeansError(f"k must be a positive integer, got {k!r}")
    if niter < 1:
        raise KMeansError(f"niter must be >= 1, got {niter}")
    backend = resolve_backend(backend)
    from_disk = isinstance(features, str | os.PathLike)
    feats_info = _features_sidecar(features)
    x, total = sample_frames(features, max_frames, seed, progress)
    if len(x) < k:
        raise KMeansError(f"only {len(x)} frames to fit k={k} centroids")
    generator = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(np.ascontiguousarray(x))
    # seeding costs n*k*D: on at most 256 frames per centroid (faiss's own training cap) it stays cheap
    subset = xt[torch.randperm(len(xt), generator=generator)[: INIT_FRAMES_PER_CENTROID * k]]
    init = kmeans_plusplus(subset, k, generator, progress).numpy()
    centroids = _lloyd(np.ascontiguousarray(x), init, niter, seed, backend, progress)
    model = KMeansModel(torch.from_numpy(centroids))
    inertia = model.inertia(xt)
    model.info = {
        "k": k,
        "dim": model.dim,
        "layer": feats_info.get("layer"),
        "model": feats_info.get("model"),
        **info,
        "fitted_frames": len(x),
        "total_frames": total,
        "max_frames": max_frames,
        "inertia": inertia,
        "inertia_per_frame": inertia / len(x),
        "seed": seed,
        "backend": backend,
        "niter": niter,
        "features": {"dir": str(Path(features).resolve()), **feats_info} if from_disk else None,
    }
    return model


def warn_if_fit_elsewhere(source: Mapping[str, Any], model: KMeansModel, stacklevel: int = 2) -> None:
    """Warn when the features' provenance (``layer``, ``model``: a features sidecar, or the model and layer
    an extraction runs) differs from the one the centroids were fit on."""
    for key in ("layer", "model"):
        a, b = source.get(key), model.info.get(key)
        if a is not None and b is not None and a != b:
            warnings.warn(f"features have {key}={a!r}, the centroids were fit on {key}={b!r}",
                          stacklevel=stacklevel + 1)


def apply_kmeans(
    features: str | os.PathLike | Mapping[str, Any], model: KMeansModel, progress: bool = True
) -> dict[str, torch.Tensor]:
    """``{fileid: LongTensor (T,)}``: the nearest-centroid unit of every frame of every utterance.

    Warns when the features folder's sidecar names another layer or model than the centroids' sidecar.
    """
    warn_if_fit_elsewhere(_features_sidecar(features), model, stacklevel=3)
    units = {}
    for name, x in _iter_arrays(features, progress, "applying k-means"):
        if x.shape[1] != model.dim:
            raise KMeansError(f"{name}: features of dimension {x.shape[1]}, the centroids have {model.dim}")
        units[name] = model.predict(x).cpu()
    return units
