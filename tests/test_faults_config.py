"""Faults of configs and checkpoints : hostile pickles in both torch.save formats, a config that
contradicts the weights, a full disk during ``convert``. Each: the exit code, one stderr line naming the
file, nothing left under the final name, and a rerun that writes the same bytes."""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spidrkit.checkpoints import CheckpointError, convert, load, load_model
from spidrkit.cli import main as cli_main
from spidrkit.config import load_config
from spidrkit.io import temp_path
from spidrkit.models.spidr import SpidR

SRC = Path(__file__).resolve().parents[1] / "src"
SMALL = ["model.conv_dim=32", "model.dim=128", "model.num_heads=2", "model.ffn_dim=256"]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A small model saved in the released layout (no config in the file)."""
    torch.manual_seed(0)
    model = SpidR(load_config("tiny", SMALL).model).eval()
    path = tmp_path_factory.mktemp("released") / "released.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


def _one_error_line(capsys) -> str:
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.rstrip("\n")


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------- case 11: hostile pickles
class _Hostile:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file if anything ran it


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_hostile_pickle_is_refused_in_both_formats_and_never_runs(legacy, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "hook": _Hostile(str(marker))}, evil,
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match=r"refused: the file pickles Python objects \(_io.open\)"):
        load_model(evil)
    assert cli_main(["convert", str(evil), str(tmp_path / "out.pt")]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"spidrkit convert: error: {evil}: refused: the file pickles Python objects (")
    assert "weights_only" not in line and "likely succeed" not in line
    assert not marker.exists()
    assert _left(tmp_path) == ["evil.pt"]


def test_legacy_files_load_and_corrupt_ones_never_repeat_torchs_advice(released, tmp_path, capsys):
    # a legacy-format file of weights (and inert fairseq-style metadata) still loads
    raw = torch.load(released, weights_only=True)
    legacy = tmp_path / "legacy.pt"
    torch.save({**raw, "args": argparse.Namespace(lr=1e-3)}, legacy, _use_new_zipfile_serialization=False)
    assert load(legacy).model.cfg.dim == 128
    # random bytes: torch's message would say weights_only=False "will likely succeed"
    junk = tmp_path / "junk.pt"
    junk.write_bytes(bytes(range(256)) * 8)
    assert cli_main(["convert", str(junk), str(tmp_path / "out.pt")]) == 2
    assert _one_error_line(capsys) == (
        f"spidrkit convert: error: {junk}: not a checkpoint spidrkit can read (neither a torch.save file nor "
        ".safetensors, or a truncated or corrupt one): torch.load failed with UnpicklingError")


# ------------------------------------------------------------------------- case 9: config contradicts weights
def test_a_config_that_contradicts_the_weights_is_an_error(released, tmp_path, capsys):
    out = tmp_path / "out.pt"
    assert cli_main(["convert", str(released), str(out), "--config", "tiny"]) == 2
    assert _one_error_line(capsys) == (
        f"spidrkit convert: error: {released}: the config contradicts the checkpoint: model.conv_dim = 128 in "
        "the config, 32 in the weights; model.dim = 256 in the config, 128 in the weights; model.ffn_dim = 1024 "
        "in the config, 256 in the weights. Pass a config that agrees with the weights (it only needs to supply "
        "what they cannot tell: conv strides, heads), or no config")
    assert not out.exists()
    # a config that supplies only what weights cannot tell (heads, consistent with the width) keeps working
    agreeing = tmp_path / "agreeing.toml"
    agreeing.write_text('preset = "tiny"\n[model]\nconv_dim = 32\ndim = 128\nffn_dim = 256\nnum_heads = 4\n')
    assert cli_main(["convert", str(released), str(out), "--config", str(agreeing)]) == 0
    assert load(out).model.cfg.num_heads == 4
    capsys.readouterr()
    # a spidrkit file carries its own config: a config that contradicts it is an error too
    assert cli_main(["convert", str(out), str(tmp_path / "again.pt"), "--config", "tiny"]) == 2
    line = _one_error_line(capsys)
    assert "model.dim = 256 in the config, 128 in the file's own config" in line
    assert "model.num_heads = 4 in the config, 4" not in line
    with pytest.raises(CheckpointError, match="model.num_heads = 2 in the config, 4 in the file's own config"):
        convert(out, tmp_path / "again.pt", config=load_config("tiny", [*SMALL]))


# --------------------------------------------------------------------------------- case 6: disk full in convert
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_convert_on_a_full_disk_exits_74_and_a_rerun_writes_the_same_bytes(released, suffix, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / f"model{suffix}"
    convert(released, out)  # the bytes of a convert that never failed
    reference = out.read_bytes()
    out.unlink()

    def limit():  # a file-size limit: the write fails with EFBIG (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    proc = subprocess.run([sys.executable, "-m", "spidrkit.cli", "convert", str(released), str(out)],
                          env={**os.environ, "PYTHONPATH": str(SRC)}, preexec_fn=limit,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 74, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"spidrkit convert: I/O error: {out}: ")
    assert _left(folder) == [] and not temp_path(out).exists()
    assert cli_main(["convert", str(released), str(out)]) == 0
    assert out.read_bytes() == reference
    assert _left(folder) == [out.name]


# ---------------------------------------------------------------- an existing output is never replaced silently
def test_convert_refuses_to_replace_an_existing_output_without_force(released, tmp_path, capsys):
    precious = tmp_path / "x.pt"
    precious.write_text("precious")
    assert cli_main(["convert", str(released), str(precious), "--config", str(_agreeing(tmp_path))]) == 2
    assert _one_error_line(capsys) == (f"spidrkit convert: error: convert: {precious} exists; pass --force to "
                                       "replace it (or choose another output)")
    assert precious.read_text() == "precious"
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_text("precious too")
    assert cli_main(["convert", str(released), f"{folder}/", "--config", str(_agreeing(tmp_path))]) == 2
    assert (folder / "model.safetensors").read_text() == "precious too"
    capsys.readouterr()
    assert cli_main(["convert", str(released), str(precious), "--config", str(_agreeing(tmp_path)), "--force"]) == 0
    assert load(precious).model.cfg.num_heads == 4


def _agreeing(tmp_path):
    path = tmp_path / "agreeing.toml"
    path.write_text('preset = "tiny"\n[model]\nconv_dim = 32\ndim = 128\nffn_dim = 256\nnum_heads = 4\n')
    return path
