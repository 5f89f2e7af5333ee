"""Every subcommand's --help renders: no literal '%%', a description, exit 0."""

import contextlib
import io

import pytest

from spidrkit.cli import COMMANDS, main

SUBCOMMANDS = {"data": ["synth", "synth-slm", "voices", "librispeech", "librilight", "folder"],
               "evaluate": ["abx", "units", "map", "sweep", "probe", "slm", "slm-compare"]}


@pytest.mark.parametrize("argv", [[c] for c in COMMANDS] + [[c, s] for c, subs in SUBCOMMANDS.items() for s in subs],
                         ids=lambda a: " ".join(a))
def test_help_renders_without_literal_percent_signs(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    text = out.getvalue()
    assert "%%" not in text and "usage: spidrkit" in text
