"""Reading a checkpoint file without executing any of its code.

Loading never executes pickled code: ``torch.load(weights_only=True)`` only. fairseq checkpoints also
pickle training metadata (``argparse.Namespace``, omegaconf or numpy objects in ``cfg``/``extra_state``);
globals from those few metadata modules are replaced by inert placeholders (:class:`_Inert`) that run no
code of theirs, and any other global (a custom class) makes the load fail with :class:`CheckpointError`.
``.safetensors`` files hold tensors only; their metadata may carry a spidrkit config as JSON
(``docs/formats.md``).
"""

from __future__ import annotations

import os
import pickle
import pickletools
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

from spidrkit.checkpoints.errors import CheckpointError
from spidrkit.checkpoints.native import FORMAT_VERSION, stored_int
from spidrkit.text_in import parse_json

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


class _NoGlobals(pickle.Unpickler):
    """Unpickles plain data only (the small header pickles of a legacy ``torch.save`` file)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"global {module}.{name} in a header pickle")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent id in a header pickle")


def _pickle_globals(f: BinaryIO) -> set[str]:
    """The globals (``module.name``) one pickle names, read statically (:mod:`pickletools`: nothing runs).
    ``STACK_GLOBAL`` takes its names from the two strings pushed last (directly or from the memo)."""
    found: set[str] = set()
    strings: list[str] = []
    memo: dict[int, Any] = {}
    for op, arg, _ in pickletools.genops(f):
        if op.name == "GLOBAL":
            found.add(str(arg).replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            found.add(".".join(strings[-2:]) if len(strings) >= 2 else "?")
        elif isinstance(arg, str) and ("UNICODE" in op.name or "STRING" in op.name):
            strings.append(str(arg))
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(arg)] = strings[-1] if strings else None
        elif op.name == "MEMOIZE":
            memo[len(memo)] = strings[-1] if strings else None
        elif op.name in ("BINGET", "LONG_BINGET", "GET") and isinstance(memo.get(int(arg)), str):
            strings.append(memo[int(arg)])
    return found


def _legacy_globals(path: Path) -> set[str]:
    """The globals of a legacy (pre-zip) ``torch.save`` file: three plain header pickles (magic number,
    protocol, system info), then the pickle of the object. ``ValueError`` if it is not one."""
    with open(path, "rb") as f:
        try:
            magic = _NoGlobals(f).load()
            _NoGlobals(f).load()
            _NoGlobals(f).load()
        except Exception as e:
            raise ValueError(f"not a legacy torch.save file ({type(e).__name__})") from e
        if magic != torch.serialization.MAGIC_NUMBER:
            raise ValueError("not a legacy torch.save file (wrong magic number)")
        return _pickle_globals(f)


def _allowed_globals() -> set[str]:
    """What ``torch.load(weights_only=True)`` accepts, as ``module.name`` (torch's own list when it has one)."""
    try:
        from torch import _weights_only_unpickler as wo

        return set(wo._get_allowed_globals()) | set(wo._get_user_allowed_globals())
    except (ImportError, AttributeError):  # pragma: no cover (a torch without these helpers)
        return set()


def _unsafe_globals(path: Path) -> list[str]:
    """The globals of a ``torch.save`` file (zip or legacy) that a weights-only load refuses; ``ValueError``
    if the file is neither."""
    if zipfile.is_zipfile(path):
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    allowed = _allowed_globals()
    return sorted(g for g in _legacy_globals(path) if g not in allowed and not g.startswith("torch."))


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:
        error = first
    try:
        unsafe = _unsafe_globals(path)
    except Exception:
        unsafe = []
    foreign = [g for g in unsafe if g.split(".", 1)[0] not in _METADATA_MODULES]
    if foreign:
        raise CheckpointError(
            f"{path}: refused: the file pickles Python objects ({', '.join(foreign)}); spidrkit loads weights "
            "only and never executes code from a checkpoint. Re-save just the tensors, e.g. "
            "torch.save({'model': state_dict}, 'weights.pt'), from an environment you trust."
        ) from error
    if not unsafe:
        # (torch's message for a refused pickle advises weights_only=False: never repeat it)
        why = "" if isinstance(error, pickle.UnpicklingError) else f": {error}"
        raise CheckpointError(
            f"{path}: not a checkpoint spidrkit can read (neither a torch.save file nor .safetensors, or a "
            f"truncated or corrupt one): torch.load failed with {type(error).__name__}{why}"
        ) from error
    with torch.serialization.safe_globals(_inert_stand_ins(unsafe)):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            why = "" if isinstance(e, pickle.UnpicklingError) else f" ({e})"
            raise CheckpointError(f"{path}: cannot read the checkpoint without executing code{why}") from e


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
        out["config"] = parse_json(metadata["config"], f"{path}: the 'config' metadata", CheckpointError)
    if metadata.get("format"):
        out["format"] = metadata["format"]
        out["version"] = stored_int(metadata.get("version", FORMAT_VERSION), "version", path)
    if metadata.get("step"):
        out["step"] = stored_int(metadata["step"], "step", path)
    return out


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw content of a checkpoint file (``.pt``/``.ckpt``... or ``.safetensors``), executing no code."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no such file or folder: {path}")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    raw = _read_safetensors(path) if path.suffix == ".safetensors" else _torch_load(path)
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: expected a dict (a state dict or a checkpoint), got {type(raw).__name__}")
    return dict(raw)
