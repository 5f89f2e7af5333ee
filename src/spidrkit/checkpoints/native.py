"""spidrkit's own checkpoint files: self-describing, rebuilt from the config they store.

Two kinds are read (``docs/formats.md``): training checkpoints (``{"model", "config", "step", ...}``,
:mod:`spidrkit.checkpoints.run`) and converted files, written by :func:`save_spidrkit`: a ``torch.save``
dict ``{"format": "spidrkit", "version": 1, "config", "model", "source"[, "step"]}``, or a
``.safetensors`` file whose metadata holds ``format``, ``version``, the config and the source as JSON
(and ``step``). ``config`` is :meth:`Config.to_dict <spidrkit.config.Config.to_dict>`.

A **model directory** (:func:`save_model_dir`, :func:`read_model_dir`) is the same content as two files,
the layout other toolkits expect: ``config.json`` (``{"format": "spidrkit", "version", "variant",
"config", "source"[, "step"]}``, indented JSON) and ``model.safetensors`` (the weights, no metadata
needed). A Hugging Face model directory has ``model_type`` in its ``config.json`` instead, and no
``"format": "spidrkit"``: :func:`is_model_dir` tells them apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from spidrkit.checkpoints.errors import CheckpointError
from spidrkit.checkpoints.provenance import CheckpointInfo
from spidrkit.config import Config, ConfigError, config_from_dict, with_variant
from spidrkit.io import atomic_write, write_json_atomic
from spidrkit.text_in import parse_json, read_text

FORMAT_VERSION = 1
DIR_CONFIG = "config.json"
DIR_WEIGHTS = "model.safetensors"


def is_spidrkit_config(cfg: Any) -> bool:
    """Whether ``cfg`` looks like a stored :meth:`Config.to_dict` (not a foreign file's config)."""
    return isinstance(cfg, Mapping) and isinstance(cfg.get("model"), Mapping) and "conv_kernels" in cfg["model"]


def _config_of_weights(stored: Mapping[str, Any], path: Path) -> Config:
    """The stored config; when only its training settings break today's rules (an old run, e.g. with a
    ``data.min_samples`` accepted then), the model still loads: its ``model`` and ``teacher`` sections
    with default training settings, and a warning."""
    try:
        return config_from_dict(stored)
    except ConfigError as first:
        try:
            cfg = config_from_dict({k: v for k, v in stored.items() if k in ("variant", "model", "teacher")})
        except ConfigError:
            raise first from None
        warnings.warn(f"{path}: its stored training settings are not valid today ({first}); the model loads "
                      "with default training settings", stacklevel=4)
        return cfg


def stored_int(value: Any, key: str, path: Path) -> int:
    """An integer entry of a file (``version``, ``step``), stored as a number or as text (safetensors metadata)."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # not an integer's text: refused below
            value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise CheckpointError(f"{path}: its {key!r} entry must be an integer, got {str(value)[:40]!r}; the file is "
                              "damaged or was not written by spidrkit")
    return value


def stored_config(raw: Mapping[str, Any], variant: str | None, path: Path) -> Config:
    """The config stored in a spidrkit file (training checkpoint or converted file); ``variant``, when
    given and different, replaces the stored switches (with a warning)."""
    stored = raw.get("config")
    if not is_spidrkit_config(stored):
        raise CheckpointError(f"{path}: a spidrkit file without its 'config' entry")
    version = stored_int(raw.get("version", FORMAT_VERSION), "version", path)
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: spidrkit file version {version} is newer than this spidrkit reads")
    try:
        with warnings.catch_warnings(record=True) as caught:  # (a stale stored variant: say which file)
            warnings.simplefilter("always")
            cfg = _config_of_weights(stored, path)
    except ConfigError as e:
        raise CheckpointError(f"{path}: its stored config is invalid: {e}") from e
    for w in caught:
        message = str(w.message)  # (the stored-settings warning names the file already)
        warnings.warn(message if str(path) in message else f"{path}: {message}", w.category, stacklevel=3)
    if variant is None or variant == cfg.variant:
        return cfg
    try:
        chosen = with_variant(cfg, variant)
    except ConfigError as e:
        raise CheckpointError(f"variant must be 'spidr' or 'dinosr', got {variant!r}") from e
    warnings.warn(f"{path}: the file says variant {cfg.variant!r}, using {variant!r} as asked", stacklevel=3)
    return chosen


def _canonical_header(blob: bytes) -> bytes:
    """A safetensors file with its JSON header's keys sorted: ``safetensors`` writes the header from hash
    maps, whose order changes from one process to the next; sorted, the same weights give the same bytes.
    The header is padded with spaces to a multiple of 8 bytes, as ``safetensors`` does (the offsets of
    the tensors are relative to the end of the header, so they do not change)."""
    n = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + blob[8 + n :]


def _source_of(source: CheckpointInfo | None) -> tuple[dict[str, Any], int | None]:
    origin = {k: v for k, v in (source.as_dict() if source else {}).items() if v is not None}
    return origin, (source.step if source is not None else None)


def save_spidrkit(path: str | os.PathLike, cfg: Config, state_dict: Mapping[str, torch.Tensor],
                  source: CheckpointInfo | None = None) -> Path:
    """Write a self-describing spidrkit file atomically: ``.safetensors`` (weights, config as JSON metadata)
    or anything else as a ``torch.save`` dict ``{"format": "spidrkit", "version", "config", "model"}``."""
    path = Path(path)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    origin, step = _source_of(source)
    with atomic_write(path, "wb") as f:
        if path.suffix == ".safetensors":
            from safetensors.torch import save

            meta = {"format": "spidrkit", "version": str(FORMAT_VERSION), "config": json.dumps(cfg.to_dict()),
                    "source": json.dumps(origin)}
            if step is not None:
                meta["step"] = str(step)
            f.write(_canonical_header(save(sd, metadata=meta)))
        else:
            blob = {"format": "spidrkit", "version": FORMAT_VERSION, "config": cfg.to_dict(), "model": sd,
                    "source": origin}
            if step is not None:
                blob["step"] = step
            torch.save(blob, f)
    return path


def is_model_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a spidrkit model directory: a ``config.json`` saying ``"format": "spidrkit"``."""
    cfg = Path(path) / DIR_CONFIG
    if not cfg.is_file():
        return False
    try:
        data = parse_json(read_text(cfg, CheckpointError), str(cfg), CheckpointError)
    except (OSError, CheckpointError):
        return False
    return isinstance(data, dict) and data.get("format") == "spidrkit"


def save_model_dir(folder: str | os.PathLike, cfg: Config, state_dict: Mapping[str, torch.Tensor],
                   source: CheckpointInfo | None = None) -> Path:
    """Write a spidrkit model directory: ``model.safetensors`` first, then ``config.json`` (each atomic;
    the config, written last, marks a complete directory)."""
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with atomic_write(folder / DIR_WEIGHTS, "wb") as f:
        f.write(_canonical_header(save(sd, metadata={"format": "pt"})))
    origin, step = _source_of(source)
    meta: dict[str, Any] = {"format": "spidrkit", "version": FORMAT_VERSION, "variant": cfg.variant,
                            "config": cfg.to_dict(), "source": origin}
    if step is not None:
        meta["step"] = step
    write_json_atomic(folder / DIR_CONFIG, meta)
    return folder


def read_model_dir(folder: str | os.PathLike) -> dict[str, Any]:
    """The raw content of a model directory, as :func:`~spidrkit.checkpoints.reading.read_checkpoint`
    gives a file's: ``{"format", "version", "config", "model"[, "step"]}``."""
    folder = Path(folder)
    meta = parse_json(read_text(folder / DIR_CONFIG, CheckpointError), str(folder / DIR_CONFIG), CheckpointError)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{folder / DIR_CONFIG}: not a spidrkit model config (a JSON object)")
    weights = folder / DIR_WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{folder}: a spidrkit model directory without its {DIR_WEIGHTS}")
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(weights), device="cpu")
    except Exception as e:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({e})") from e
    return {**{k: v for k, v in meta.items() if k != "model"}, "model": tensors}
