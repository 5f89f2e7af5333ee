"""Provenance: where a model's weights came from, passed beside the model, never attached to it.

:class:`CheckpointInfo` goes into the sidecar of everything a model produces (``docs/formats.md``);
:class:`Loaded` pairs a model with it; a model built in memory (no file) is identified by a hash of its
weights (:func:`weights_sha256`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from spidrkit.config import Config
from spidrkit.models.spidr import SpidR

SOURCES = ("released", "fairseq", "spidrkit", "transformers", "preset", "in-memory")


@dataclass(frozen=True)
class CheckpointInfo:
    """Where a model's weights came from (goes into every sidecar of what it produces)."""

    source: str  # one of SOURCES
    # Config.variant: "spidr", "dinosr" (or the label of an ablation's switches); for another encoder
    # (source "transformers", or "fairseq" HuBERT / wav2vec 2.0) its family: hubert, wav2vec2, wavlm, data2vec-audio
    variant: str
    path: str | None = None
    sha256: str | None = None  # first 16 hex digits (spidrkit.io.file_sha256, or weights_sha256)
    step: int | None = None
    config: Config | None = None  # the full run config (model + training sections)

    @property
    def model_id(self) -> str:
        """A short identity for sidecars: ``spidr:<sha256>`` (of the file, or of the weights of a model
        built in memory), or ``spidr:random-base`` for a preset."""
        return f"{self.variant}:{self.sha256 or 'random-' + str(self.path)}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "variant": self.variant,
            "checkpoint": self.path,
            "checkpoint_sha256": self.sha256,
            "checkpoint_format": self.source,
            "step": self.step,
        }


class Loaded(NamedTuple):
    """A model and where its weights came from (what :func:`spidrkit.checkpoints.load` returns)."""

    model: SpidR
    info: CheckpointInfo


def weights_sha256(model: torch.nn.Module, length: int = 16) -> str:
    """A hash of a model's weights (names, shapes, dtypes and values): the identity of a model that has
    no file, e.g. one just trained in this process."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        shape = t.shape
        t = t.detach().to("cpu").contiguous().reshape(-1)  # 0-d tensors too; the same bytes for the others
        h.update(f"{name}:{tuple(shape)}:{t.dtype};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:length]


def model_info(model: SpidR | Loaded, provenance: CheckpointInfo | None = None) -> CheckpointInfo:
    """The provenance to record for ``model``: ``provenance`` when given, a :class:`Loaded`'s own, else
    (a model built in memory) its variant and a hash of its weights (source ``"in-memory"``). An encoder
    other than SpidR/DinoSR, which has no variant, is named by its class."""
    if provenance is not None:
        return provenance
    if isinstance(model, Loaded):
        return model.info
    variant = getattr(model, "variant", None) or type(model).__name__.lower()
    return CheckpointInfo("in-memory", variant, None, weights_sha256(model), None, None)
