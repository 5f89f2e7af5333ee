"""``transformers`` encoders from a local model directory or the Hugging Face Hub.

A model directory holds ``config.json`` (``model_type`` one of :data:`~spidrkit.encoders.hf.FAMILIES`) and
its weights (``model.safetensors``, ``pytorch_model.bin`` or a sharded index); a fine-tuned model's
directory (``HubertForCTC``...) loads too: its encoder weights are taken, its head ignored. Every encoder
weight must be in the files: a directory that would leave weights at their random init is refused. A Hub
repo (:func:`hub_directory`) is fetched into the Hugging Face cache by :mod:`spidrkit.hub`, then loaded as a
local directory. ``preprocessor_config.json`` is read only for ``normalization="preprocessor"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spidrkit.encoders.hf import FAMILIES, EncoderError, HFEncoder, model_class
from spidrkit.errors import InputError
from spidrkit.hub import HubRef, commit_of, snapshot
from spidrkit.text_in import parse_json, read_text

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
_OPTIONAL_KEYS = ("masked_spec_embed",)  # used only when masking in training


def _read_json(path: Path) -> Any:
    try:
        return parse_json(read_text(path), str(path))
    except (OSError, InputError):
        return None


def declared_model_type(folder: Path) -> str | None:
    """The ``model_type`` string of ``folder/config.json`` (a ``transformers`` model folder), whatever it is."""
    data = _read_json(Path(folder) / "config.json")
    kind = data.get("model_type") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else None


def hf_model_type(folder: Path) -> str | None:
    """The ``model_type`` of ``folder/config.json`` when it is a family spidrkit wraps, else ``None``."""
    kind = declared_model_type(folder)
    return kind if kind in FAMILIES else None


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


def hub_directory(ref: HubRef) -> Path:
    """The local snapshot of a Hub model repo (configs and weights: a spidrkit model directory, a ``transformers``
    model), fetched into the Hugging Face cache when needed (:func:`spidrkit.hub.snapshot`): safetensors when the
    repo has them, else the ``pytorch_model.bin`` of a ``transformers`` model."""
    folder = snapshot(ref, ["*.json", "model*.safetensors"])
    if weights_file(folder) is None and hf_model_type(folder) is not None:
        folder = snapshot(HubRef(ref.repo_id, commit_of(folder)), ["*.json", "pytorch_model*.bin"])
    return folder
