"""The authors' release (PyPI ``spidr`` 0.2.0) as a test oracle, for the parity tests.

It is installed apart, with ``--no-deps`` (``make test`` does it: ``pip install --no-deps spidr==0.2.0``),
used only here and never imported by spidrkit. Without it the parity tests are skipped, unless
``SPIDRKIT_REQUIRE_ORACLE=1`` (CI sets it), which turns a missing oracle into a failure.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

VERSION = "0.2.0"
REQUIRED = os.environ.get("SPIDRKIT_REQUIRE_ORACLE") == "1"


def reference(module: str = "spidr") -> ModuleType:
    """The reference's ``module`` (e.g. ``spidr.models.spidr``); skips (or fails, when required) without it."""
    try:
        top = importlib.import_module("spidr")
        found = importlib.import_module(module)
    except ImportError as e:
        message = (f"the reference package spidr=={VERSION} is not installed ({e}): "
                   f"pip install --no-deps spidr=={VERSION}")
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    from importlib.metadata import version

    if version("spidr") != VERSION:
        pytest.fail(f"the parity tests are written against spidr=={VERSION}, found {version('spidr')}")
    del top
    return found
