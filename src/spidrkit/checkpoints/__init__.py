"""All weight I/O: reading any supported checkpoint without running its code, the released / fairseq /
spidrkit formats, provenance, writing spidrkit files, and pretraining-run checkpoints.

- :func:`load` (``Loaded(model, info)``) and :func:`load_model` (the model alone) read released SpidR/DinoSR
  files, original fairseq DinoSR checkpoints, spidrkit files and run folders (``docs/formats.md``);
- :func:`convert` rewrites any of them as a self-describing spidrkit ``.pt`` / ``.safetensors`` file;
- :mod:`spidrkit.checkpoints.run`: the checkpoints of a pretraining run (atomic, pruned, resumable);
- :class:`CheckpointError`: the one error of all of the above.
"""

from spidrkit.checkpoints.errors import CheckpointError
from spidrkit.checkpoints.formats import (
    CheckpointInfo,
    Loaded,
    build_model,
    convert,
    load,
    load_checkpoint,
    load_model,
    model_info,
    read_checkpoint,
    resolve_model,
    save_spidrkit,
    weights_sha256,
)

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "Loaded",
    "build_model",
    "convert",
    "load",
    "load_checkpoint",
    "load_model",
    "model_info",
    "read_checkpoint",
    "resolve_model",
    "save_spidrkit",
    "weights_sha256",
]
