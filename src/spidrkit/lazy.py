"""Imports deferred to first use: the names a package exports, and the optional packages of the extras.

**Exported names** (one rule for every package).

``__getattr__, __dir__ = lazy_exports(__name__, {"name": "spidrkit.module", ...})`` in a package's
``__init__``: ``package.name`` imports ``spidrkit.module`` on first access, caches the value in the package's
namespace, and an unknown name raises the usual ``AttributeError``. Keeps ``import spidrkit`` free of torch's
heavier neighbours (matplotlib, fastabx, transformers) until a name that needs them is used.

**Optional packages.** The core install (``pip install spidrkit``) holds only what loading a model, ``extract``
and ``pretrain`` import; the rest comes with an extra (``pip install 'spidrkit[eval]'``; README, "Install").
Code that needs such a package imports it inside the function, through :func:`require`, which raises
:class:`MissingExtra` (exit 2) naming the extra to install when the package is missing. :data:`EXTRAS` maps each
optional package to its distribution and extra (tests/test_lean_install.py checks it against pyproject.toml).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from spidrkit.errors import InputError

# top-level import name -> (distribution, the extra that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "transformers": ("transformers", "hf"),
    "huggingface_hub": ("huggingface_hub", "hf"),
    "fastabx": ("fastabx", "eval"),
    "polars": ("polars", "eval"),
    "sklearn": ("scikit-learn", "eval"),
    "matplotlib": ("matplotlib", "eval"),
    "scipy": ("scipy", "eval"),
    "yaml": ("pyyaml", "eval"),
    "threadpoolctl": ("threadpoolctl", "eval"),
    "tensorboard": ("tensorboard", "tracking"),
    "wandb": ("wandb", "tracking"),
    "submitit": ("submitit", "slurm"),
    "faiss": ("faiss-cpu", "faiss"),
    "parselmouth": ("praat-parselmouth", "voices"),
    "piper": ("piper-tts", "voices"),
}


def lazy_exports(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, exporting each name from the module (full dotted path) it
    maps to."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*names, *vars(sys.modules[package])})

    return __getattr__, __dir__


class MissingExtra(InputError):
    """An optional package that a feature needs is not installed; the message names the extra that brings it."""


def install_hint(module: str, extra: str | None = None) -> str:
    """``"DISTRIBUTION (not installed): pip install 'spidrkit[EXTRA]'"`` for the optional package ``module``
    (``extra`` instead of the package's own one, e.g. ``lm`` for ``transformers``)."""
    dist, own = EXTRAS[module.partition(".")[0]]
    return f"{dist} (not installed): pip install 'spidrkit[{extra or own}]'"


def require(module: str, purpose: str, extra: str | None = None) -> ModuleType:
    """The optional package (or submodule) ``module``, imported; :class:`MissingExtra` when it is not installed:
    ``"PURPOSE needs DISTRIBUTION (not installed): pip install 'spidrkit[EXTRA]'"``. A missing package that
    ``module`` itself imports is that package's defect, and raised as is."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] != module.partition(".")[0]:
            raise
        raise MissingExtra(f"{purpose} needs {install_hint(module, extra)}") from None
