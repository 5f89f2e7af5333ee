"""The needs_flite rule (tests/flite_requirement.py): without flite a test is skipped, or fails where
SPIDRKIT_REQUIRE_FLITE=1 (CI sets it in .ci/run): a CI machine without flite cannot pass by skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import flite_requirement
from flite_requirement import ENV, MISSING, require_flite

TESTS = Path(__file__).resolve().parent

# a plugin that makes flite's library unloadable in the process that loads it (-p hide_flite)
HIDE_FLITE = """
import spidrkit.data.synth.flite as flite

def _missing(stem):
    raise flite.FliteError(f"cannot load lib{stem} (hidden by the test)")

flite._load = _missing
flite.Flite._instance = None
"""
MARKED = """
import pytest

@pytest.mark.needs_flite
def test_needs_flite():
    pass

def test_plain():
    pass
"""


def test_present_flite_runs_the_test_either_way():
    assert require_flite(lambda: True, {}) is None
    assert require_flite(lambda: True, {ENV: "1"}) is None


def test_missing_flite_skips_unless_required():
    for environ in ({}, {ENV: "0"}, {ENV: ""}):
        with pytest.raises(pytest.skip.Exception, match="flite is not installed"):
            require_flite(lambda: False, environ)
    with pytest.raises(pytest.fail.Exception, match=f"{ENV}=1 requires it"):
        require_flite(lambda: False, {ENV: "1"})


def test_the_suite_registers_the_marker_and_its_hook(request):
    assert any(line.startswith("needs_flite:") for line in request.config.getini("markers"))
    hooks = request.config.pluginmanager.hook.pytest_runtest_setup.get_hookimpls()
    assert any(h.function is flite_requirement.pytest_runtest_setup for h in hooks)


def _run_without_flite(tmp_path: Path, required: bool) -> subprocess.CompletedProcess:
    """pytest on a needs_flite test and a plain one, in a process where flite cannot load."""
    (tmp_path / "hide_flite.py").write_text(HIDE_FLITE)
    (tmp_path / "test_marked.py").write_text(MARKED)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    needs_flite: needs flite\n")
    env = {k: v for k, v in os.environ.items() if k not in (ENV, "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(tmp_path), env.get("PYTHONPATH", "")])
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # the installed plugins take seconds to load and are not needed
    if required:
        env[ENV] = "1"
    args = ["-m", "pytest", "-q", "-rse", "-p", "no:cacheprovider", "-p", "hide_flite", "-p", "flite_requirement",
            "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), str(tmp_path / "test_marked.py")]
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_without_flite_a_marked_test_is_skipped(tmp_path):
    run = _run_without_flite(tmp_path, required=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 1 skipped" in run.stdout and MISSING in run.stdout


def test_without_flite_a_marked_test_fails_where_required(tmp_path):
    run = _run_without_flite(tmp_path, required=True)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 passed, 1 error" in run.stdout and f"{ENV}=1 requires it" in run.stdout
