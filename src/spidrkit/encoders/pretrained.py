"""``transformers`` encoders from a local model directory or the Hugging Face Hub.

A model directory holds ``config.json`` (``model_type`` one of :data:`~spidrkit.encoders.hf.FAMILIES`) and
its weights (``model.safetensors``, ``pytorch_model.bin`` or a sharded index); a fine-tuned model's
directory (``HubertForCTC``...) loads too: its encoder weights are taken, its head ignored. Every encoder
weight must be in the files: a directory that would leave weights at their random init is refused. A Hub
name (``owner/name``) is fetched into the Hugging Face cache when the network allows (``HF_HUB_OFFLINE=1``
uses the cache only); otherwise one error says so. ``preprocessor_config.json`` is read only for
``normalization="preprocessor"``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from spidrkit.encoders.hf import FAMILIES, EncoderError, HFEncoder, model_class
from spidrkit.errors import InputError
from spidrkit.text_in import parse_json, read_text

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
_NOT_HUB_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".toml", ".json")
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_OPTIONAL_KEYS = ("masked_spec_embed",)  # used only when masking in training


def _read_json(path: Path) -> Any:
    try:
        return parse_json(read_text(path), str(path))
    except (OSError, InputError):
        return None


def hf_model_type(folder: Path) -> str | None:
    """The ``model_type`` of ``folder/config.json`` when it is a family spidrkit wraps, else ``None``."""
    data = _read_json(Path(folder) / "config.json")
    kind = data.get("model_type") if isinstance(data, dict) else None
    return kind if kind in FAMILIES else None


def looks_like_hub_name(text: str) -> bool:
    """``owner/name`` without a file suffix (a path that does not exist is not taken for a Hub name when it
    names a checkpoint file, e.g. ``runs/x.pt``)."""
    return bool(_HUB_NAME.fullmatch(text)) and not text.lower().endswith(_NOT_HUB_SUFFIXES)


def weights_file(folder: Path) -> Path | None:
    """The weights file (or shard index) of a model directory, the first of :data:`WEIGHT_FILES` present."""
    return next((Path(folder) / f for f in WEIGHT_FILES if (Path(folder) / f).is_file()), None)


def load_directory(folder: str | Path, normalization: str = "auto", where: str | None = None) -> HFEncoder:
    """The :class:`HFEncoder` of a local model directory, reading nothing from the network."""
    folder = Path(folder)
    where = where or str(folder)
    kind = hf_model_type(folder)
    if kind is None:
        raise EncoderError(f"{where}: no config.json with a model_type of {', '.join(FAMILIES)}")
    if weights_file(folder) is None:
        raise EncoderError(f"{where}: config.json but no weights ({' or '.join(WEIGHT_FILES[::2])})")
    try:
        model, info = model_class(kind).from_pretrained(str(folder), local_files_only=True,
                                                        output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise EncoderError(f"{where}: transformers cannot load the {kind} model: {' '.join(str(e).split())}") from e
    missing = [k for k in info.get("missing_keys", ()) if k not in _OPTIONAL_KEYS]
    if missing:
        shown = ", ".join(sorted(missing)[:8]) + (f" (+{len(missing) - 8} more)" if len(missing) > 8 else "")
        raise EncoderError(f"{where}: the weights lack {len(missing)} entries of a {kind} encoder ({shown}); "
                           "they would be random: pass a complete model directory")
    preprocessor = None
    if normalization == "preprocessor":
        preprocessor = _read_json(folder / "preprocessor_config.json")
        if not isinstance(preprocessor, dict):
            raise EncoderError(f"{where}: normalization='preprocessor' but there is no readable "
                               "preprocessor_config.json; pass normalization='raw' or 'standardize'")
    return HFEncoder(model.float(), normalization, preprocessor)


def _snapshot(name: str, patterns: list[str]) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, allow_patterns=patterns))
    except Exception as e:  # offline, unknown repository, gated, HTTP errors: all mean "not reachable here"
        raise EncoderError(f"cannot reach the Hugging Face Hub for {name}: {type(e).__name__}: "
                           f"{' '.join(str(e).split())}; pass a local model directory") from e


def hub_directory(name: str) -> Path:
    """The local snapshot of Hub model ``name`` (configs and weights), fetched into the Hugging Face cache
    when needed: safetensors when the repository has them, else ``pytorch_model.bin``."""
    folder = _snapshot(name, ["*.json", "model*.safetensors"])
    if weights_file(folder) is None:
        folder = _snapshot(name, ["*.json", "pytorch_model*.bin"])
    return folder


def load_hub(name: str, normalization: str = "auto") -> tuple[HFEncoder, Path]:
    """The :class:`HFEncoder` of Hub model ``name`` and its local snapshot directory."""
    folder = hub_directory(name)
    return load_directory(folder, normalization, where=name), folder
