"""All weight I/O: reading any supported checkpoint without running its code, the released / fairseq /
spidrkit formats, provenance, writing spidrkit files, and pretraining-run checkpoints.

- :func:`load` (``Loaded(model, info)``) and :func:`load_model` (the model alone) read released SpidR/DinoSR
  files, original fairseq DinoSR checkpoints, spidrkit files and run folders (``docs/formats.md``);
- :func:`convert` rewrites any of them as a self-describing spidrkit ``.pt`` / ``.safetensors`` file or
  model directory (``config.json`` + ``model.safetensors``);
- :func:`fetch_weights`: the published checkpoints by name (:data:`NAMED_WEIGHTS`), cached and verified;
- :func:`push`: a model as a Hugging Face Hub repo (model folder + model card); :func:`load` reads it back by
  repo id (``docs/hub.md``);
- :mod:`spidrkit.checkpoints.run`: the checkpoints of a pretraining run (atomic, pruned, resumable);
- :class:`CheckpointError`: the one error of all of the above.

Modules: :mod:`~.reading` (files in, no code run), :mod:`~.contents` (state dict and hints of a raw
checkpoint), :mod:`~.released` (architecture from shapes), :mod:`~.fairseq` (original DinoSR, bias
folding), :mod:`~.native` (spidrkit files and model directories in and out), :mod:`~.named` (published
weights: download, cache, hashes), :mod:`~.provenance` (:class:`CheckpointInfo`,
:class:`Loaded`, weight hashes), :mod:`~.loading` (the entry points), :mod:`~.run` (run checkpoints),
:mod:`~.publish` and :mod:`~.card` (``spidrkit push`` and its model card).
"""

from spidrkit.checkpoints.errors import CheckpointError
from spidrkit.checkpoints.fairseq import fairseq_to_spidrkit, fuse_fairseq_attention
from spidrkit.checkpoints.loading import (
    RANDOM_PREFIX,
    build_model,
    convert,
    load,
    load_checkpoint,
    load_model,
    resolve_model,
)
from spidrkit.checkpoints.named import NAMED_WEIGHTS, WeightsUnavailableError, cache_dir, fetch_weights
from spidrkit.checkpoints.native import is_model_dir, save_model_dir, save_spidrkit
from spidrkit.checkpoints.provenance import CheckpointInfo, Loaded, model_info, weights_sha256
from spidrkit.checkpoints.publish import Pushed, push
from spidrkit.checkpoints.reading import read_checkpoint
from spidrkit.checkpoints.released import infer_model_config

__all__ = [
    "NAMED_WEIGHTS",
    "RANDOM_PREFIX",
    "CheckpointError",
    "CheckpointInfo",
    "Loaded",
    "Pushed",
    "WeightsUnavailableError",
    "build_model",
    "cache_dir",
    "convert",
    "fairseq_to_spidrkit",
    "fetch_weights",
    "fuse_fairseq_attention",
    "infer_model_config",
    "is_model_dir",
    "load",
    "load_checkpoint",
    "load_model",
    "model_info",
    "push",
    "read_checkpoint",
    "resolve_model",
    "save_model_dir",
    "save_spidrkit",
    "weights_sha256",
]
