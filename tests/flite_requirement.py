"""The ``needs_flite`` marker: a test (or fixture) that needs the flite library is skipped where flite is
missing, and fails instead where ``SPIDRKIT_REQUIRE_FLITE=1`` (CI sets it in .ci/run, as it sets
``SPIDRKIT_REQUIRE_ORACLE=1`` for the parity oracle): a CI machine without flite must not pass by skipping.

conftest.py imports the hook below; the ``flite`` fixture there calls :func:`require_flite` for the fixtures
that synthesize speech.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import pytest

ENV = "SPIDRKIT_REQUIRE_FLITE"
MISSING = "flite is not installed (sudo apt-get install flite; scripts/bootstrap.sh installs it as root)"


def _flite_loads() -> bool:
    from spidrkit.data.synth import flite

    return flite.flite_available()


def require_flite(available: Callable[[], bool] = _flite_loads, environ: Mapping[str, str] = os.environ) -> None:
    """Return when flite loads; otherwise skip the test, or fail it when ``environ[ENV] == "1"``."""
    if available():
        return
    if environ.get(ENV) == "1":
        pytest.fail(f"{MISSING}; {ENV}=1 requires it", pytrace=False)
    pytest.skip(MISSING)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture of a ``@pytest.mark.needs_flite`` test is built."""
    if item.get_closest_marker("needs_flite") is not None:
        require_flite()
