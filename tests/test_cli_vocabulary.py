"""One flag vocabulary (README.md, "Commands"): every subcommand's parser, walked recursively, spells the shared
flags one way with one default; the old spellings still work, hidden, with one warning line; every
subcommand has a description and an example; "did you mean" for commands, actions and config keys."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import soundfile as sf
import torch

from spidrkit.cli import COMMANDS, GROUPS, UserError, build_parser, main
from spidrkit.cli.flags import GLOBAL_FLAGS, Deprecated, resolve_device, show_progress, take_global_flags, walk_parsers

# shared flag -> (its option strings, its dest, its default; ANY: the command's own)
ANY = object()
SHARED = {
    "--model": (("--model",), "model", None),
    "--output": (("-o", "--output"), "output", ANY),
    "--layers": (("--layers",), "layers", None),
    "--device": (("--device",), "device", "auto"),
    "--units": (("--units",), "units", None),
    "--quiet": (("--quiet",), "quiet", False),
    "--no-progress": (("--no-progress",), "no_progress", False),
    "--debug": (("--debug",), "debug", False),
}
OLD = {"--encoder": "--model", "--out": "-o/--output", "--run-dir": "-o/--output", "--layer": "--layers"}


def all_parsers():
    """``(prog, parser, is_leaf)`` of every command and action."""
    return [entry for name in COMMANDS for entry in walk_parsers(build_parser(name))]


PARSERS = all_parsers()
LEAVES = [(prog, p) for prog, p, leaf in PARSERS if leaf]


def visible(parser):
    return [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS]


def test_the_walk_reaches_every_action_of_every_command():
    progs = {prog for prog, _ in LEAVES}
    assert {"spidrkit evaluate budget", "spidrkit evaluate slm", "spidrkit kmeans fit-corpus", "spidrkit lm units",
            "spidrkit data synth", "spidrkit units export", "spidrkit extract", "spidrkit demo"} <= progs
    assert len(progs) == len(LEAVES) == 28


@pytest.mark.parametrize(("prog", "parser"), LEAVES, ids=[p for p, _ in LEAVES])
def test_shared_flags_have_one_spelling_and_one_default(prog, parser):
    for action in visible(parser):
        for flag, (spelling, dest, default) in SHARED.items():
            if flag in action.option_strings or action.dest == dest:
                assert tuple(action.option_strings) == spelling, f"{prog}: {action.option_strings} for {flag}"
                assert action.dest == dest
                assert default is ANY or action.default == default, f"{prog} {flag}: default {action.default!r}"
        assert not set(action.option_strings) & set(OLD), f"{prog}: old spelling {action.option_strings} shown"
    flags = {s for a in visible(parser) for s in a.option_strings}
    assert set(GLOBAL_FLAGS) <= flags, f"{prog}: missing global flags"
    layers = [a for a in visible(parser) if a.dest == "layers"]
    assert all(a.type.__name__ == "layer_list" for a in layers)
    units = [a for a in visible(parser) if a.dest == "units"]
    assert all(a.type is not None and a.type.__name__ == "units" for a in units), f"{prog}: --units not the grammar"


@pytest.mark.parametrize(("prog", "parser"), LEAVES, ids=[p for p, _ in LEAVES])
def test_old_spellings_are_hidden_aliases(prog, parser):
    for action in parser._actions:
        old = set(action.option_strings) & set(OLD)
        if old:
            assert isinstance(action, Deprecated) and action.help == argparse.SUPPRESS
            assert action.dest == SHARED[OLD[old.pop()].split("/")[-1]][1]
    text = parser.format_help()
    assert not any(f"{o} " in text or f"{o}," in text for o in ("--encoder", "--run-dir", "--out ", "--layer "))


@pytest.mark.parametrize(("prog", "parser", "leaf"), PARSERS, ids=[p for p, _, _ in PARSERS])
def test_every_subcommand_has_a_description_an_example_and_help_that_renders(prog, parser, leaf):
    assert parser.description and len(parser.description) > 20, f"{prog}: no description"
    text = parser.format_help()
    assert "%%" not in text and "%(" not in text and f"usage: {prog}" in " ".join(text.split())
    formatter = parser._get_formatter()
    for action in visible(parser):  # every default shown, by the help text or by the formatter
        if action.default not in (None, False, [], argparse.SUPPRESS):
            assert "default" in formatter._get_help_string(action).lower(), f"{prog} {action.option_strings}"
    if leaf:
        examples = [line for line in (parser.epilog or "").splitlines() if line.startswith("example: ")]
        assert len(examples) == 1 and examples[0].startswith(f"example: {prog}"), f"{prog}: {examples}"
        assert examples[0] in text  # one line, not wrapped


def test_help_shows_defaults():
    text = " ".join(build_parser("kmeans").format_help().split())
    sub = dict((p, x) for p, x, _ in walk_parsers(build_parser("kmeans")))["spidrkit kmeans fit"]
    assert "(default: auto)" in " ".join(sub.format_help().split()) and "ACTION" in text
    extract = " ".join(build_parser("extract").format_help().split())
    assert "feature file format (default: pt)" in extract and "(default: auto)" in extract


def test_top_help_is_grouped_and_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    placed = [c for names in GROUPS.values() for c in names]
    assert sorted(placed) == sorted(COMMANDS)  # every command in exactly one group
    for group, names in GROUPS.items():
        section = out.split(f"\n{group}:\n", 1)[1].split("\n\n", 1)[0]
        assert [line.split()[0] for line in section.splitlines()] == list(names)
    assert "global options" in out and "--no-progress" in out and "example: spidrkit demo" in out


# ------------------------------------------------------------------------------------------- aliases
def parse(argv):
    return build_parser(argv[0]).parse_args(argv[1:])


ALIASES = [
    (["evaluate", "slm", "B", "--units", "phones", "--lm", "L", "--encoder", "M"],
     ["evaluate", "slm", "B", "--units", "phones", "--lm", "L", "--model", "M"], "--encoder", "--model"),
    (["lm", "units", "C", "--units", "phones", "-o", "u.txt", "--encoder", "mfcc"],
     ["lm", "units", "C", "--units", "phones", "-o", "u.txt", "--model", "mfcc"], "--encoder", "--model"),
    (["kmeans", "fit-corpus", "C", "--encoder", "M", "--layers", "6", "-o", "c"],
     ["kmeans", "fit-corpus", "C", "--model", "M", "--layers", "6", "-o", "c"], "--encoder", "--model"),
    (["evaluate", "sweep", "--encoder", "a", "--encoder", "b", "--corpus", "C", "-o", "s"],
     ["evaluate", "sweep", "--model", "a", "--model", "b", "--corpus", "C", "-o", "s"], "--encoder", "--model"),
    (["demo", "--out", "d"], ["demo", "-o", "d"], "--out", "-o/--output"),
    (["pretrain", "tiny", "--run-dir", "r"], ["pretrain", "tiny", "--output", "r"], "--run-dir", "-o/--output"),
    (["lm", "train", "u.txt", "--run-dir", "r"], ["lm", "train", "u.txt", "-o", "r"], "--run-dir", "-o/--output"),
    (["extract", "in", "--model", "m", "-o", "o", "--layer", "2", "--layer", "3"],
     ["extract", "in", "--model", "m", "-o", "o", "--layers", "2,3"], "--layer", "--layers"),
    (["kmeans", "fit-corpus", "C", "--model", "M", "--layer", "6", "-o", "c"],
     ["kmeans", "fit-corpus", "C", "--model", "M", "--layers", "6", "-o", "c"], "--layer", "--layers"),
    (["evaluate", "slm", "B", "--units", "kmeans:c.npy", "--lm", "L", "--layer", "4"],
     ["evaluate", "slm", "B", "--units", "kmeans:c.npy", "--lm", "L", "--layers", "4"], "--layer", "--layers"),
]


@pytest.mark.parametrize(("old", "new", "flag", "use"), ALIASES, ids=[f"{a[0]} {f}" for a, _, f, _ in ALIASES])
def test_an_old_spelling_works_and_warns_once(old, new, flag, use, capsys):
    assert vars(parse(new)) == vars(parse(old))
    err = capsys.readouterr().err
    assert err == f"spidrkit: warning: {flag} is deprecated: use {use}\n"  # one line, even when repeated


def test_a_positional_output_still_works_silently(capsys):
    assert parse(["convert", "spidr_base", "m/"]).output == "m/" == parse(["convert", "spidr_base", "-o", "m/"]).output
    assert str(parse(["data", "synth", "corpus"]).output) == "corpus"
    assert capsys.readouterr().err == ""
    with pytest.raises(SystemExit):
        parse(["convert", "spidr_base", "a/", "-o", "b/"])
    assert "the output is given twice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["convert", "spidr_base"])
    assert "required: -o/--output" in capsys.readouterr().err


def test_abx_reads_a_units_file_without_the_old_flag(capsys):
    args = parse(["evaluate", "abx", "u.txt", "x.item", "--units"])
    assert args.units_flag is True
    assert capsys.readouterr().err == ("spidrkit: warning: evaluate abx --units is deprecated: a FEATURES file is "
                                       "read as a units file\n")


def test_a_required_output_under_its_old_spelling_passes_the_required_check():
    assert parse(["lm", "train", "u.txt", "--run-dir", "r"]).output == "r"
    with pytest.raises(SystemExit):
        parse(["lm", "train", "u.txt"])


# ------------------------------------------------------------------------------------------ globals
def test_global_flags_anywhere_on_the_line():
    argv, given = take_global_flags(["--quiet", "kmeans", "fit", "F", "--no-progress", "--", "--debug"])
    assert argv == ["kmeans", "fit", "F", "--", "--debug"]
    assert given == {"--quiet": True, "--no-progress": True, "--debug": False}
    assert show_progress(argparse.Namespace(quiet=False, no_progress=False))
    assert not show_progress(argparse.Namespace(quiet=True, no_progress=False))
    assert not show_progress(argparse.Namespace(quiet=False, no_progress=True))


def _features(folder, n=3):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        torch.save(torch.from_numpy(rng.standard_normal((40, 8)).astype(np.float32)), folder / f"u{i}.pt")
    return folder


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_silences_informational_lines_before_or_after_the_command(tmp_path, capsys, where):
    feats = _features(tmp_path / "f")
    cmd = ["kmeans", "fit", str(feats), "-k", "4", "--backend", "sklearn", "--no-progress"]
    assert main([*cmd, "-o", str(tmp_path / "loud")]) == 0
    loud = capsys.readouterr().err
    assert loud.startswith("k=4 dim=8 on 120 of 120 frames") and loud.count("\n") == 1
    quiet = ["--quiet", *cmd] if where == "before" else [*cmd, "--quiet"]
    assert main([*quiet, "-o", str(tmp_path / "quiet")]) == 0
    assert capsys.readouterr().err == ""
    assert np.array_equal(np.load(tmp_path / "loud.npy"), np.load(tmp_path / "quiet.npy"))


def test_device_auto_is_one_rule(monkeypatch):
    for available, name in ((False, "cpu"), (True, "cuda")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda a=available: a)
        args = argparse.Namespace(device="auto")
        resolve_device(args)
        assert args.device == name
    args = argparse.Namespace(device="cpu")
    resolve_device(args)
    assert args.device == "cpu"
    assert parse(["evaluate", "abx", "f", "i"]).device == parse(["extract", "i", "--model", "m", "-o", "o"]).device


# ------------------------------------------------------------------------------------------- --units
def test_units_grammar_is_checked_at_parse_time(capsys):
    with pytest.raises(SystemExit) as done:
        parse(["extract", "in", "--model", "m", "-o", "o", "--units", "phones"])
    assert done.value.code == 2
    assert "--units must be codebook or codebook:L (a layer), kmeans:FILE (centroids); got 'phones'" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["lm", "units", "C", "-o", "u", "--units", "codebook:0"])
    assert "--units codebook:L takes a layer number >= 1, got 'codebook:0'" in capsys.readouterr().err


def test_extract_units_codebook_of_a_layer_is_that_layers_codebook(tmp_path, capsys):
    from spidrkit.cli.extract import units_and_layers

    assert units_and_layers("codebook:6", None) == ("codebook", [6])
    assert units_and_layers("codebook:6", [6]) == ("codebook", [6])
    assert units_and_layers("codebook", None) == ("codebook", [6])
    assert units_and_layers(None, [2, 3]) == (None, [2, 3])
    with pytest.raises(UserError, match="--units codebook:6 names layer 6, --layers 4: give one"):
        units_and_layers("codebook:6", [4])
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    for name in ("a", "b"):
        sf.write(wavs / f"{name}.wav", np.random.default_rng(len(name) + ord(name)).standard_normal(16000) * 0.1,
                 16000)
    base = ["extract", str(wavs), "--model", "random:tiny", "--quiet", "--device", "cpu"]
    assert main([*base, "--units", "codebook:5", "-o", str(tmp_path / "a")]) == 0
    assert main([*base, "--units", "codebook", "--layers", "5", "-o", str(tmp_path / "b")]) == 0
    a, b = (tmp_path / "a" / "units.txt").read_text(), (tmp_path / "b" / "units.txt").read_text()
    assert a == b and len(a.splitlines()) == 2


# ---------------------------------------------------------------------------------------- did you mean
@pytest.mark.parametrize(("argv", "hint"), [
    (["evalute"], "did you mean 'evaluate'?"),
    (["evaluate", "swep"], "did you mean 'sweep'?"),
    (["kmeans", "fit_corpus"], "did you mean 'fit-corpus'?"),
])
def test_did_you_mean_for_commands_and_actions(argv, hint, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2 and hint in capsys.readouterr().err


@pytest.mark.parametrize(("override", "line"), [
    ("optim.lrr=1", "spidrkit config: error: unknown key 'optim.lrr'; did you mean 'optim.lr'?; known keys in "
     "[optim]: "),
    ("optm.lr=1", "spidrkit config: error: unknown section 'optm'; did you mean 'optim'?; known sections: "),
    ("train.zzz=1", "spidrkit config: error: unknown key 'train.zzz'; known keys in [train]: "),
])
def test_did_you_mean_for_config_keys(override, line, capsys):
    assert main(["config", "tiny", "--set", override]) == 2
    assert capsys.readouterr().err.startswith(line)


def test_did_you_mean_for_unit_lm_config_sections():
    from spidrkit.config import ConfigError
    from spidrkit.lm.config import load_lm_config

    with pytest.raises(ConfigError, match=r"unknown section 'trian'; did you mean 'train'\?"):
        load_lm_config("tiny", ["trian.max_steps=5"])
    with pytest.raises(ConfigError, match=r"unknown key 'train.max_step'; did you mean 'train.max_steps'\?"):
        load_lm_config("tiny", ["train.max_step=5"])
