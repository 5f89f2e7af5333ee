"""Reading a checkpoint file without executing any of its code.

Loading never executes pickled code: ``torch.load(weights_only=True)`` only. fairseq checkpoints also
pickle training metadata (``argparse.Namespace``, omegaconf or numpy objects in ``cfg``/``extra_state``);
globals from those few metadata modules are replaced by inert placeholders (:class:`_Inert`) that run no
code of theirs, and any other global (a custom class) makes the load fail with :class:`CheckpointError`.
``.safetensors`` files hold tensors only; their metadata may carry a spidrkit config as JSON
(``docs/formats.md``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from spidrkit.checkpoints.errors import CheckpointError
from spidrkit.checkpoints.native import FORMAT_VERSION

# Modules whose pickled objects are training metadata in fairseq checkpoints; replaced by inert stubs.
_METADATA_MODULES = ("argparse", "omegaconf", "numpy", "fairseq", "hydra", "typing", "pathlib", "enum")


class _Inert:
    """Stands for a pickled metadata object (argparse.Namespace, omegaconf, numpy...): keeps the pickled
    arguments and state as plain data and runs none of the original class's code."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        obj = object.__new__(cls)
        obj.__dict__["_args"] = args
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("_items", {})[key] = value

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("_list", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("_list", []).extend(values)


def _inert_stand_ins(names: list[str]) -> list[tuple[type, str]]:
    """One placeholder class per metadata global, registered under the global's own name."""
    return [(type(name.rsplit(".", 1)[-1], (_Inert,), {}), name) for name in names]


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:
        error = first
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        raise CheckpointError(
            f"{path}: not a checkpoint (neither a torch.save file nor .safetensors): "
            f"torch.load failed with {type(error).__name__}: {error}"
        ) from error
    foreign = [g for g in unsafe if g.split(".", 1)[0] not in _METADATA_MODULES]
    if foreign or not unsafe:
        names = ", ".join(foreign or unsafe) or str(error)
        raise CheckpointError(
            f"{path}: refused: the file pickles Python objects ({names}); spidrkit loads weights only and never "
            "executes code from a checkpoint. Re-save just the tensors, e.g. "
            "torch.save({'model': state_dict}, 'weights.pt'), from an environment you trust."
        ) from error
    with torch.serialization.safe_globals(_inert_stand_ins(unsafe)):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"{path}: cannot read the checkpoint without executing code ({e})") from e


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        tensors = load_file(str(path), device="cpu")
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    out: dict[str, Any] = {"model": tensors}
    if "config" in metadata:
        try:
            out["config"] = json.loads(metadata["config"])
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: the 'config' metadata is not JSON ({e})") from e
    if metadata.get("format"):
        out["format"] = metadata["format"]
        out["version"] = int(metadata.get("version", FORMAT_VERSION))
    if metadata.get("step"):
        out["step"] = int(metadata["step"])
    return out


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw content of a checkpoint file (``.pt``/``.ckpt``... or ``.safetensors``), executing no code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    raw = _read_safetensors(path) if path.suffix == ".safetensors" else _torch_load(path)
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: expected a dict (a state dict or a checkpoint), got {type(raw).__name__}")
    return dict(raw)
