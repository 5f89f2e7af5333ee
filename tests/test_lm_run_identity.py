"""A unit LM run folder's identity and its refusals (lm/identity.py, lm/config.py's bounds, cli/lm.py,
cli/slm.py): a run resumes only with its own config and inputs, --fresh starts it anew, validation data
that is also training data is refused, memory-sized config values are refused naming the key, and a run
without validation data is scored with `--lm RUN/last`. Each refusal exits 2 with one stderr line and
leaves the run folder as it was."""

from __future__ import annotations

import hashlib
import json
import random
import shutil

import pytest

from spidrkit.cli import main
from spidrkit.errors import Terminated
from spidrkit.extraction.units import write_units
from spidrkit.io import file_sha256, read_metrics, read_sidecar
from spidrkit.lm import load_lm, train
from spidrkit.lm.model import LMError
from support import LEXICAL, names_of, write_split

K = 8
SMALL = ["model.num_layers=1", "model.dim=16", "model.num_heads=2", "model.ffn_dim=32", "model.context=32",
         "optim.warmup_steps=2", "train.batch_size=4", "lm.valid_fraction=0.1", "train.max_steps=6",
         "train.checkpoint_every=2", "train.valid_every=2", "train.log_every=2"]
SETS = [a for s in SMALL for a in ("--set", s)]

pytestmark = pytest.mark.usefixtures("one_thread")


def _units(path, prefix, n=40, seed=0):
    rng = random.Random(seed)
    write_units(path, {f"{prefix}{i:03d}": [rng.randrange(K) for _ in range(12)] for i in range(n)}, dedup=False, k=K)
    return path


def _state(run_dir):
    """Every file of the run folder and its contents' digest (what a refusal must leave as it was)."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _cli(*args):
    return main(["lm", "train", *map(str, args), "--no-progress", *SETS])


def _err(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _stop_at(step):
    def callback(s):
        if s == step:
            raise Terminated  # what SIGTERM raises in the main thread

    return callback


def test_resume_with_other_units_is_refused_and_fresh_starts_anew(tmp_path, capsys):
    u, other, v = _units(tmp_path / "U.txt", "u"), _units(tmp_path / "OTHER.txt", "o", seed=1), \
        _units(tmp_path / "V.txt", "v", seed=2)
    run = tmp_path / "R"
    with pytest.raises(Terminated):
        train([u], run, "tiny", SMALL, progress=False, callback=_stop_at(3))
    before = _state(run)
    assert "checkpoints/step_00000003.pt" in before
    du, do, dv = file_sha256(u), file_sha256(other), file_sha256(v)
    fix = f"use another run folder, or --fresh to start {run} anew"
    assert _cli(other, "-o", run) == 2
    assert _err(capsys) == (f"spidrkit lm: error: {run} was trained on {u} (sha256 {du}), not {other} "
                            f"(sha256 {do}): {fix}")
    assert _cli(u, "-o", run, "--valid", v) == 2
    assert _err(capsys) == (f"spidrkit lm: error: {run} was validated on a held-out lm.valid_fraction of its training "
                            f"utterances, not {v} (sha256 {dv}): {fix}")
    assert _cli(u, "-o", run, "--set", "optim.lr=1e-3") == 2
    assert _err(capsys) == (f"spidrkit lm: error: {run} holds a run with another config (optim.lr = 0.002 there, "
                            f"0.001 now); resume with the same config, use another run folder, or --fresh to start "
                            f"{run} anew")
    assert _state(run) == before  # nothing lost, nothing written
    moved = shutil.copy(u, tmp_path / "moved.txt")  # the same contents elsewhere: the same run, resumed
    assert _cli(moved, "-o", run) == 0
    capsys.readouterr()
    assert read_sidecar(run)["resumed_from"] == 3 and load_lm(run, "last")[2]["step"] == 6
    assert _cli(other, "-o", run, "--fresh", "--valid", v) == 0
    side = read_sidecar(run)
    assert (side["units"], side["units_sha256"], side["valid_units"], side["valid_units_sha256"]) == (
        [str(other)], [do], [str(v)], [dv])
    assert (side["resumed_from"], side["train_utterances"], side["valid_utterances"]) == (0, 40, 40)
    assert [r["step"] for r in read_metrics(run, "valid")] == [2, 4, 6]  # the old run's records are gone
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000004.pt", "step_00000006.pt"]


def test_validation_data_that_is_training_data_is_refused(tmp_path, capsys):
    u = _units(tmp_path / "U.txt", "u")
    copy = shutil.copy(u, tmp_path / "copy.txt")
    run = tmp_path / "R"
    assert _cli(u, u, "-o", run) == 2
    assert _err(capsys) == f"spidrkit lm: error: {u}: given twice as training units (the same file as {u}); " \
        "give each units file once"
    assert _cli(u, copy, "-o", run) == 2
    assert _err(capsys) == f"spidrkit lm: error: {copy}: given twice as training units (the same contents as {u}); " \
        "give each units file once"
    for valid, how in [(u, "the same file"), (copy, "the same contents")]:
        assert _cli(u, "-o", run, "--valid", valid) == 2
        assert _err(capsys) == (f"spidrkit lm: error: {valid}: the --valid units are also training units ({how} as "
                                f"{u}), so best/ would be chosen on training data; validate on another file, or omit "
                                "--valid to hold out lm.valid_fraction of the utterances")
    rng = random.Random(5)  # other units, but two utterance ids of U.txt among them
    write_units(tmp_path / "V.txt", {i: [rng.randrange(K) for _ in range(9)] for i in ("u007", "u003", "x1")},
                dedup=False, k=K)
    assert _cli(u, "-o", run, "--valid", tmp_path / "V.txt") == 2
    assert _err(capsys) == (f"spidrkit lm: error: {tmp_path / 'V.txt'}: 2 validation utterance(s) are also "
                            "training utterances (e.g. 'u003'), so best/ would be chosen on training data; validate "
                            "on utterances the LM does not train on")
    assert not run.exists() or _state(run) == {}


@pytest.mark.parametrize(("override", "message"), [
    ("train.batch_size=1000000000000", "train.batch_size: must be an integer in [1, 65536], got 1000000000000"),
    ("model.context=1000000", "model.context: must be an integer in [2, 131072], got 1000000"),
    ("model.dim=100000", "model.dim: must be an integer in [1, 32768], got 100000"),
    ("model.num_layers=1000", "model.num_layers: must be an integer in [1, 256], got 1000"),
    ("lm.k=10000000", "lm.k: must be an integer in [0, 1048576], got 10000000"),
    ("train.max_steps=100000000", "train.max_steps: must be an integer in [1, 99999999], got 100000000"),
    ("train.keep_checkpoints=5000", "train.keep_checkpoints: must be an integer in [1, 1000], got 5000"),
    ("train.batch_size=65536", "train.batch_size: train.batch_size x model.context (tokens per micro-batch) must be "
     "<= 16777216, got 65536 x 2048; lower train.batch_size and raise train.grad_accum"),
])
def test_memory_sized_config_values_are_refused_naming_the_key(tmp_path, capsys, override, message):
    u = _units(tmp_path / "U.txt", "u")
    assert main(["lm", "train", str(u), "-o", str(tmp_path / "R"), "--config", "opt125m",
                 "--set", override]) == 2
    assert _err(capsys) == f"spidrkit lm: error: {message}"
    assert not (tmp_path / "R").exists()


def test_a_run_without_validation_data_is_scored_as_run_last(tmp_path, capsys):
    u = _units(tmp_path / "U.txt", "u")
    run = tmp_path / "R"
    train([u], run, "tiny", [*SMALL, "lm.valid_fraction=0", "train.max_steps=2"], progress=False)
    assert (run / "last").is_dir() and not (run / "best").exists()
    bench = tmp_path / "bench"
    write_split(bench / "lexical" / "dev", LEXICAL, names_of(LEXICAL))
    assert main(["evaluate", "slm", str(bench), "--units", "phones", "--lm", str(run), "-o", str(tmp_path / "o")]) == 2
    err = _err(capsys)
    assert err == (f"spidrkit evaluate slm: error: {run}: that run had no validation data, so it has no best/ model; "
                   f"score its last model with --lm {run / 'last'}")
    assert "which=" not in err
    with pytest.raises(LMError) as e:  # the Python API names the folder to load, not a CLI option
        load_lm(run)
    assert str(e.value) == (f"{run / 'best'}: no unit LM model folder here (that run had no validation data, so no "
                            f"best/ model: its last model is {run / 'last'})")
    assert load_lm(run / "last")[2]["step"] == 2
    assert json.loads((run / "last" / "spidrkit.json").read_text())["kind"] == "unit-lm"
