"""torch.hub entry points for a local clone of spidrkit.

    model = torch.hub.load("path/to/spidrkit", "spidr", source="local")                  # spidr_base weights
    model = torch.hub.load("path/to/spidrkit", "dinosr", source="local", checkpoint="dinosr_base_original")
    model = torch.hub.load("path/to/spidrkit", "spidr", source="local", checkpoint="spidr_base.pt")
    model = torch.hub.load("path/to/spidrkit", "spidr", source="local", preset="tiny")  # RANDOM weights

``checkpoint`` may be anything :func:`spidrkit.load_model` reads: a local file (released, fairseq DinoSR,
spidrkit), a model directory, or a published model's name (downloaded once into spidrkit's cache and
verified). Without one, the published Base weights of the variant are used (``spidr_base``,
``dinosr_base_reproduced``). ``preset`` is the explicit request for a model of that config with random
weights (``random:PRESET`` of :func:`spidrkit.load_model`); it cannot be combined with ``checkpoint``.
"""

from __future__ import annotations

import os
import sys

dependencies = ["torch"]

try:
    import spidrkit  # noqa: F401  -- installed (pip install -e .)
except ImportError:  # a plain clone: use its src/ folder
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

_DEFAULT = {"spidr": "spidr_base", "dinosr": "dinosr_base_reproduced"}


def _load(variant: str, checkpoint: str | None, preset: str | None, device: str, **kwargs):
    from spidrkit.checkpoints import RANDOM_PREFIX, CheckpointError, load_model

    if checkpoint is not None and preset is not None:
        raise CheckpointError("pass checkpoint= (weights) or preset= (RANDOM weights of a config), not both")
    source = RANDOM_PREFIX + preset if preset is not None else checkpoint or _DEFAULT[variant]
    return load_model(source, device=device, variant=variant, **kwargs)


def spidr(checkpoint: str | None = None, preset: str | None = None, device: str = "cpu", **kwargs):
    """SpidR (heads read their own layers). ``checkpoint``: a file or published name (default spidr_base);
    ``preset``: random weights of that config instead."""
    return _load("spidr", checkpoint, preset, device, **kwargs)


def dinosr(checkpoint: str | None = None, preset: str | None = None, device: str = "cpu", **kwargs):
    """DinoSR (all heads read the last layer). ``checkpoint``: a file or published name (default
    dinosr_base_reproduced); ``preset``: random weights of that config instead."""
    return _load("dinosr", checkpoint, preset, device, **kwargs)
