"""torch.hub entry points for a local clone of spidrkit (nothing is ever downloaded).

    model = torch.hub.load("path/to/spidrkit", "spidr", source="local", checkpoint="spidr_base.pt")
    model = torch.hub.load("path/to/spidrkit", "dinosr", source="local", checkpoint="dinosr.pt")
    model = torch.hub.load("path/to/spidrkit", "spidr", source="local", preset="tiny")  # random weights

``checkpoint`` may be any file :func:`spidrkit.load_model` reads (released, fairseq DinoSR, spidrkit).
Without one, the model is built from ``preset`` with random weights (and a loud warning).
"""

from __future__ import annotations

import os
import sys

dependencies = ["torch"]

try:
    import spidrkit  # noqa: F401  -- installed (pip install -e .)
except ImportError:  # a plain clone: use its src/ folder
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))


def _load(variant: str, checkpoint: str | None, preset: str, device: str, **kwargs):
    from spidrkit.checkpoints import load_model

    return load_model(checkpoint if checkpoint is not None else preset, device=device, variant=variant, **kwargs)


def spidr(checkpoint: str | None = None, preset: str = "base", device: str = "cpu", **kwargs):
    """SpidR (heads read their own layers). ``checkpoint``: a local file; else random weights of ``preset``."""
    return _load("spidr", checkpoint, preset, device, **kwargs)


def dinosr(checkpoint: str | None = None, preset: str = "base", device: str = "cpu", **kwargs):
    """DinoSR (all heads read the last layer). ``checkpoint``: a local file; else random weights of ``preset``."""
    return _load("dinosr", checkpoint, preset, device, **kwargs)
