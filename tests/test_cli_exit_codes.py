"""The CLI's exit codes end to end (README, "Exit codes"): each class of failure gives its code and one stderr
line without a traceback; ``--debug`` shows the traceback; SIGINT gives 130 and SIGTERM 143.

The in-process cases replace the ``run`` of a cheap command module (``spidrkit config``) by a stub raising
the failure; a real command is run for a user error and an I/O error, and a subprocess for SIGTERM."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import spidrkit.cli.config as config_cmd
from spidrkit.cli import main
from spidrkit.errors import (
    EXIT_INTERRUPTED,
    EXIT_IO,
    EXIT_SOFTWARE,
    EXIT_TEMPFAIL,
    EXIT_TERMINATED,
    EXIT_USAGE,
    InputError,
    LockHeldError,
    TemporaryError,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")


def stub(monkeypatch, error: BaseException) -> None:
    def run(args):
        raise error

    monkeypatch.setattr(config_cmd, "run", run)


def run_cli(argv, capsys) -> tuple[int, str, str]:
    code = main(list(map(str, argv)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("error", "code", "line"), [
    (InputError("config key optim.lr: must be > 0, got -1"), EXIT_USAGE,
     "spidrkit config: error: config key optim.lr: must be > 0, got -1"),
    (OSError(errno.ENOSPC, "No space left on device", "/runs/a/checkpoint_000010.pt"), EXIT_IO,
     "spidrkit config: I/O error: /runs/a/checkpoint_000010.pt: No space left on device (nothing partial was left "
     "under a final name; free space or fix access, then rerun)"),
    (TemporaryError("peer gone"), EXIT_TEMPFAIL, "spidrkit config: try again later: peer gone"),
    (LockHeldError("/runs/a/run.lock is held by pid 12 on host h since 2026-01-01; add --force to break it"),
     EXIT_TEMPFAIL, "spidrkit config: try again later: /runs/a/run.lock is held by pid 12 on host h since "
     "2026-01-01; add --force to break it"),
    (ZeroDivisionError("division by zero"), EXIT_SOFTWARE,
     "spidrkit config: internal error: ZeroDivisionError: division by zero (rerun with --debug for the traceback)"),
    (KeyboardInterrupt(), EXIT_INTERRUPTED, "spidrkit config: interrupted"),
])
def test_each_class_has_its_code_and_one_line(monkeypatch, capsys, error, code, line):
    stub(monkeypatch, error)
    got, out, err = run_cli(["config", "tiny"], capsys)
    assert (got, out, err) == (code, "", line + "\n")


def test_a_multi_line_message_is_printed_on_one_line(monkeypatch, capsys):
    stub(monkeypatch, InputError("a bad value\n  in   the config"))
    expected = (EXIT_USAGE, "", "spidrkit config: error: a bad value in the config\n")
    assert run_cli(["config", "tiny"], capsys) == expected


@pytest.mark.parametrize("error", [InputError("bad"), OSError(errno.EIO, "I/O error", "/x"), RuntimeError("bug")])
def test_debug_shows_the_traceback(monkeypatch, capsys, error):
    stub(monkeypatch, error)
    with pytest.raises(type(error)):
        main(["config", "tiny", "--debug"])
    with pytest.raises(type(error)):
        main(["--debug", "config", "tiny"])


def test_real_commands(tmp_path, capsys):
    """A user error and an I/O error from a real command (``evaluate plot-perplexity``, ``config``)."""
    missing = tmp_path / "none" / "metrics.jsonl"
    code, out, err = run_cli(["evaluate", "plot-perplexity", missing, "-o", tmp_path / "p.png"], capsys)
    assert code == EXIT_USAGE and out == "" and err == (f"spidrkit evaluate plot-perplexity: error: no metrics file "
                                                        f"at {missing}\n")
    assert not (tmp_path / "p.png").exists()

    blocker = tmp_path / "file"
    blocker.write_text("")
    metrics = tmp_path / "run" / "metrics.jsonl"
    metrics.parent.mkdir()
    metrics.write_text("".join(f'{{"step": {s}, "codebook_ppl": [2.0], "prediction_ppl": [3.0]}}\n' for s in (1, 2)))
    code, out, err = run_cli(["evaluate", "plot-perplexity", metrics, "-o", blocker / "p.png"], capsys)
    assert code == EXIT_IO and out == "" and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"spidrkit evaluate plot-perplexity: I/O error: {blocker}")


STUB = """
import sys, time
import spidrkit.cli.config as c
def run(args):
    print("ready", flush=True)
    try:
        time.sleep(60)
    finally:
        print("cleaned up", flush=True)
c.run = run
from spidrkit.cli import main
sys.exit(main(["config", "tiny"]))
"""


@pytest.mark.parametrize(("signum", "code", "line"), [
    (signal.SIGTERM, EXIT_TERMINATED, "spidrkit config: terminated"),
    (signal.SIGINT, EXIT_INTERRUPTED, "spidrkit config: interrupted"),
])
def test_signals_in_a_subprocess(signum, code, line):
    """A long command signalled: its ``finally`` blocks run and it exits 143 (SIGTERM) or 130 (SIGINT)."""
    proc = subprocess.Popen([sys.executable, "-c", STUB], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": SRC})
    try:
        assert proc.stdout.readline() == "ready\n"
        time.sleep(0.1)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code and out == "cleaned up\n" and err == line + "\n"
