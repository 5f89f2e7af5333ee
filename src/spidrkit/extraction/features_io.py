"""Feature files on disk: one file per utterance, ready for fastabx, k-means and the evaluators.

Layout of a features folder ``DIR``:

- ``DIR/<fileid>.pt`` -- ``torch.save`` of a contiguous CPU tensor ``(T, D)``, float32 or float16 (what
  fastabx reads), or ``DIR/<fileid>.npy`` -- the same array saved by ``numpy.save``;
- a file id may contain ``/`` (``spk/chapter/utt``): it becomes subfolders;
- ``DIR/spidrkit.json`` is the sidecar (:func:`spidrkit.io.write_sidecar`) naming the model,
  checkpoint and 1-based layer that produced the features;
- several layers extracted at once go to ``OUT/layer_06/...`` (:func:`layer_dirname`), one features folder
  (with its own sidecar) per layer.

Every file is written atomically (:func:`spidrkit.io.atomic_write`), so a file that exists is
complete: :func:`is_done` is all a resumable extraction needs. Loading never executes code
(``torch.load(weights_only=True)``, ``numpy.load(allow_pickle=False)``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from spidrkit.errors import InputError
from spidrkit.io import SIDECAR_NAME, atomic_write

FEATURE_FORMATS = ("pt", "npy")
_DTYPES = {"float32": torch.float32, "float16": torch.float16}
_LAYER_DIR = re.compile(r"layer_\d+")


class FeatureError(InputError):
    """A features folder or file that cannot be used as asked."""


def layer_dirname(layer: int) -> str:
    """The subfolder of one layer when several are extracted at once: ``layer_06`` for layer 6 (1-based)."""
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 1:
        raise FeatureError(f"layers are 1-based integers, got {layer!r}")
    return f"layer_{layer:02d}"


def _check_fileid(fileid: str) -> str:
    parts = fileid.split("/")
    if not fileid or fileid.startswith("/") or "\\" in fileid or any(p in ("", ".", "..") for p in parts):
        raise FeatureError(f"bad file id {fileid!r}: use a relative path with '/' separators, no '..'")
    if any(p.startswith(".") for p in parts):
        raise FeatureError(f"bad file id {fileid!r}: no part may start with '.' (hidden files are skipped)")
    return fileid


def _check_format(fmt: str) -> str:
    if fmt not in FEATURE_FORMATS:
        raise FeatureError(f"unknown feature format {fmt!r}; choose from {', '.join(FEATURE_FORMATS)}")
    return fmt


def feature_path(dir: str | os.PathLike, fileid: str, fmt: str = "pt") -> Path:
    """Where the features of ``fileid`` live in ``dir``: ``dir/<fileid>.<fmt>``."""
    return Path(dir) / f"{_check_fileid(fileid)}.{_check_format(fmt)}"


def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise FeatureError(f"unknown feature dtype {dtype!r}; choose from {', '.join(_DTYPES)}")
        return _DTYPES[dtype]
    if dtype not in _DTYPES.values():
        raise FeatureError(f"features are stored as float32 or float16, not {dtype}")
    return dtype


def save_features(
    dir: str | os.PathLike,
    fileid: str,
    features: torch.Tensor | np.ndarray,
    fmt: str = "pt",
    dtype: torch.dtype | str = torch.float32,
) -> Path:
    """Save the ``(T, D)`` features of one utterance atomically as ``dir/<fileid>.<fmt>``; return the path.

    The tensor is detached, moved to the CPU, cast to ``dtype`` and made contiguous; a view of a larger
    tensor is copied first, so the file holds only these ``T * D`` values (``torch.save`` would otherwise
    store the whole underlying storage).
    """
    path = feature_path(dir, fileid, fmt)
    dtype = _as_dtype(dtype)
    x = torch.as_tensor(features).detach()
    if x.ndim != 2:
        raise FeatureError(f"{fileid}: features must be (T, D), got shape {tuple(x.shape)}")
    x = x.to("cpu", dtype).contiguous()
    if x.untyped_storage().nbytes() != x.numel() * x.element_size() or x.storage_offset() != 0:
        x = x.clone()
    with atomic_write(path, "wb") as f:
        if fmt == "pt":
            torch.save(x, f)
        else:
            np.save(f, x.numpy(), allow_pickle=False)
    return path


def is_done(dir: str | os.PathLike, fileid: str, fmt: str = "pt") -> bool:
    """Whether ``fileid`` was already extracted into ``dir`` (files are atomic: existing means complete)."""
    return feature_path(dir, fileid, fmt).is_file()


def load_array(path: str | os.PathLike) -> np.ndarray:
    """The plain array of an ``.npy`` file, executing no code (no pickles) and allocating no more than the file
    holds: the file is memory-mapped first, so a header that claims a larger shape fails instead of allocating
    it. Any parse failure (numpy's ValueError, EOFError, a tokenizer error of the header, a broken zip...) is
    raised as is for the caller to name the file; an archive (``.npz``, a torch zip) is a ``ValueError``."""
    a = np.load(path, mmap_mode="r", allow_pickle=False)
    if not isinstance(a, np.ndarray):  # a .npz or a zip (a torch .pt file) loads as an archive
        a.close()
        raise ValueError("an archive (.npz or a zip such as a torch checkpoint), not an .npy array")
    return np.array(a)


def load_features(path: str | os.PathLike) -> torch.Tensor:
    """Load one feature file (``.pt`` or ``.npy``) as a ``(T, D)`` CPU tensor, executing no code."""
    path = Path(path)
    suffix = path.suffix.lstrip(".")
    try:
        if suffix == "pt":
            x = torch.load(path, map_location="cpu", weights_only=True)
        elif suffix == "npy":
            x = torch.from_numpy(load_array(path))
        else:
            raise FeatureError(f"{path}: not a feature file (expected .pt or .npy)")
    except FileNotFoundError:
        raise
    except FeatureError:
        raise
    except Exception as e:  # a corrupt or foreign file: say which one
        raise FeatureError(f"{path}: cannot read features ({e})") from e
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise FeatureError(f"{path}: expected a (T, D) tensor, got {shape}")
    return x


def iter_feature_files(dir: str | os.PathLike) -> Iterator[tuple[str, Path]]:
    """Yield ``(fileid, path)`` for every feature file under ``dir``, sorted by file id.

    Hidden files (unfinished temporary files) and the sidecar are skipped. A folder holding several layers
    (``layer_06/``... each with its own sidecar) is refused with a message saying to pick one, and a file
    id saved both as ``.pt`` and ``.npy`` is an error rather than a silent choice.
    """
    root = Path(dir)
    if not root.is_dir():
        raise FeatureError(f"no features folder at {root}")
    layers = sorted(
        p.name for p in root.iterdir() if _LAYER_DIR.fullmatch(p.name) and (p / SIDECAR_NAME).is_file()
    )
    if layers:
        raise FeatureError(f"{root} holds several layers ({', '.join(layers)}): pass one of these folders")
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            _, dot, suffix = name.rpartition(".")
            if name.startswith(".") or not dot or suffix not in FEATURE_FORMATS:
                continue
            path = Path(dirpath) / name
            fileid = path.relative_to(root).with_suffix("").as_posix()
            if fileid in found:
                raise FeatureError(f"{root}: {fileid} is saved twice ({found[fileid].name} and {name})")
            found[fileid] = path
    yield from sorted(found.items())


def load_feature_dir(dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All the features of a folder in memory: ``{fileid: (T, D) tensor}``, sorted by file id."""
    out = {fileid: load_features(path) for fileid, path in iter_feature_files(dir)}
    if not out:
        raise FeatureError(f"no feature files (.pt or .npy) in {dir}")
    return out
