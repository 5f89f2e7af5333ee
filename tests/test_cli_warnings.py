"""Python warnings under the CLI: one line each (``spidrkit COMMAND: warning: MESSAGE``), the same message once,
Python's format with ``--debug``; ``warnings.showwarning`` is restored and ``pytest.warns`` still records."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import spidrkit.cli.config as config_cmd
from spidrkit.cli import main
from spidrkit.data.corpora.audio import AudioConversionWarning, reset_conversion_warnings

SRC = str(Path(__file__).resolve().parents[1] / "src")

STUB = """
import sys, warnings
import spidrkit.cli.config as c
from spidrkit.data.corpora.audio import AudioConversionWarning
from spidrkit.errors import InputError
def run(args):
    for _ in range(3):
        warnings.warn("x.wav: resampled from 8000 Hz", AudioConversionWarning, stacklevel=2)
    warnings.warn("an old\\n  option", FutureWarning, stacklevel=2)
    raise InputError("bad value")
c.run = run
before = warnings.showwarning
from spidrkit.cli import main
code = main(["config", "tiny", *sys.argv[1:]])
print(warnings.showwarning is before, flush=True)
sys.exit(code)
"""


def run_stub(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", STUB, *flags], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": SRC, "PYTHONWARNINGS": ""})


def test_warnings_are_one_line_each_once_then_the_error():
    proc = run_stub()
    assert proc.returncode == 2 and proc.stdout == "True\n"
    assert proc.stderr == ("spidrkit config: warning: x.wav: resampled from 8000 Hz\n"
                           "spidrkit config: warning: FutureWarning: an old option\n"
                           "spidrkit config: error: bad value\n")


def test_debug_keeps_pythons_format():
    proc = subprocess.run([sys.executable, "-c", STUB.replace('raise InputError("bad value")', "return 0"), "--debug"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": SRC})
    lines = proc.stderr.splitlines()
    assert proc.returncode == 0 and proc.stdout == "True\n"
    assert re.fullmatch(r"\S+\.py:\d+: AudioConversionWarning: x\.wav: resampled from 8000 Hz", lines[0])
    assert lines[1].startswith("  ")  # the source line
    assert "FutureWarning: an old" in proc.stderr and "spidrkit config: warning" not in proc.stderr


def test_pytest_warns_still_records_and_showwarning_is_restored(monkeypatch, capsys):
    def run(args):
        warnings.warn("a note", UserWarning, stacklevel=2)
        warnings.warn("a note", UserWarning, stacklevel=2)
        return 0

    monkeypatch.setattr(config_cmd, "run", run)
    before = warnings.showwarning
    with pytest.warns(UserWarning, match="a note") as record:
        assert main(["config", "tiny"]) == 0
    assert warnings.showwarning is before and [str(w.message) for w in record] == ["a note"] * 2
    assert capsys.readouterr().err == "spidrkit config: warning: a note\n"


def test_a_real_command_at_another_sample_rate(tmp_path, capsys):
    """``extract`` on 8 kHz files: the resampling warning is one line, once, before the summary."""
    audio = tmp_path / "audio"
    audio.mkdir()
    for name in ("a", "b"):
        sf.write(audio / f"{name}.wav", np.full(8000, 0.1, dtype="float32"), 8000)
    reset_conversion_warnings()
    with pytest.warns(AudioConversionWarning):
        code = main(["extract", str(audio), "--model", "random:tiny", "-o", str(tmp_path / "F"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0 and err == (f"spidrkit extract: warning: {audio / 'a.wav'}: resampled from 8000 Hz to 16000 Hz "
                                 "with soxr; other files at another rate will be resampled without a further warning\n")
