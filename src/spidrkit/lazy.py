"""Names a package exports without importing their modules until first use (one rule for every package).

``__getattr__, __dir__ = lazy_exports(__name__, {"name": "spidrkit.module", ...})`` in a package's
``__init__``: ``package.name`` imports ``spidrkit.module`` on first access, caches the value in the package's
namespace, and an unknown name raises the usual ``AttributeError``. Keeps ``import spidrkit`` free of torch's
heavier neighbours (matplotlib, fastabx, transformers) until a name that needs them is used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


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
