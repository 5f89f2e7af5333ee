"""Faults around a pretraining run folder: its lock, damaged checkpoints, a run that ends
before its first logging step, a full disk, Ctrl-C and SIGTERM, non-finite weights. Each case checks the
exit status, the one stderr line, what is left in the folder and that a rerun ends where an
uninterrupted run ends, bit for bit."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import torch

from spidrkit.checkpoints.run import list_checkpoints, prune_checkpoints, save_checkpoint
from spidrkit.checkpoints.run import read_run_checkpoint as load_checkpoint
from spidrkit.cli import main as cli_main
from spidrkit.errors import EXIT_INTERRUPTED, EXIT_IO, EXIT_TEMPFAIL, EXIT_TERMINATED
from spidrkit.io import read_metrics
from spidrkit.training.logging import MetricsLog
from spidrkit.training.loop import Trainer, pretrain
from spidrkit.training.runfolder import LOCK_NAME, NonFiniteWeights
from support import RESUME, final_model, train_config

# one intra-op thread, as in the training tests (their corpus and 12-step reference run are conftest fixtures)
pytestmark = pytest.mark.usefixtures("one_thread")


def sidecar(run_dir: Path) -> dict:
    return json.loads((run_dir / "spidrkit.json").read_text())


def assert_equal_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


def cli_args(cfg_file: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["pretrain", str(cfg_file), "-o", str(run_dir), "--no-progress", "--quiet", *extra]


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("spidrkit pretrain:")]


def temp_files(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.rglob("*") if ".tmp" in p.name]


# ----------------------------------------------------------------------------------------- case 3: lock
def test_a_live_lock_refuses_a_second_run_force_breaks_it_a_stale_one_is_taken_over(syllables, tmp_path, capsys):
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text(train_config(syllables, "train.max_steps=1").to_toml())
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock = run_dir / LOCK_NAME
    holder = {"host": socket.gethostname(), "pid": os.getppid(), "started": "2026-01-01T00:00:00+00:00",
              "command": "spidrkit pretrain other.toml"}
    lock.write_text(json.dumps(holder) + "\n")

    assert cli_main(cli_args(cfg_file, run_dir)) == EXIT_TEMPFAIL
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith("spidrkit pretrain: try again later: ")
    assert str(lock) in line and f"pid {os.getppid()}" in line and "--force" in line
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME]  # nothing written, the lock untouched
    assert json.loads(lock.read_text()) == holder

    with pytest.warns(UserWarning, match=r"run\.lock: taking over the lock of pid \d+ on .*\(forced\)"):
        assert cli_main(cli_args(cfg_file, run_dir, "--force")) == 0
    assert not lock.exists() and sidecar(run_dir)["status"] == "completed"

    # a stale lock (its process is gone) is taken over with a warning, no --force needed
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock.write_text(json.dumps({**holder, "pid": dead.pid}) + "\n")
    with pytest.warns(UserWarning, match=r"taking over the lock of pid \d+ on .*\(that process is gone\)"):
        out = pretrain(train_config(syllables, "train.max_steps=2"), run_dir, progress=False)
    assert (out["step"], out["steps_run"]) == (2, 1) and not lock.exists()


# -------------------------------------------------------------------------------- case 4: rotation
def test_rotation_never_counts_a_damaged_checkpoint(tmp_path):
    for step in (4, 8, 12):
        save_checkpoint(tmp_path / "checkpoints" / f"step_{step:08d}.pt", {"model": {"w": torch.full((2,), step)}})
    newest = tmp_path / "checkpoints" / "step_00000012.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    prune_checkpoints(tmp_path, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 8]
    assert (tmp_path / "checkpoints" / "step_00000012.pt.corrupt").is_file()


def test_resume_past_a_corrupt_newest_checkpoint_keeps_the_two_newest_good_ones(syllables, reference_run, tmp_path):
    run_dir = tmp_path / "run"
    pretrain(train_config(syllables, *RESUME, "train.max_steps=12"), run_dir, progress=False)
    assert [s for s, _ in list_checkpoints(run_dir)] == [8, 12]
    damaged = run_dir / "checkpoints" / "step_00000012.pt"
    damaged.write_bytes(b"\0" * 1000)

    out = pretrain(train_config(syllables, *RESUME, "train.max_steps=10"), run_dir, progress=False)  # resumes at 8
    assert (out["status"], out["step"], out["steps_run"]) == ("completed", 10, 2)
    assert [s for s, _ in list_checkpoints(run_dir)] == [8, 10]  # the damaged one set aside, not counted
    assert (run_dir / "checkpoints" / "step_00000012.pt.corrupt").read_bytes() == b"\0" * 1000
    out = pretrain(train_config(syllables, *RESUME, "train.max_steps=12"), run_dir, progress=False)
    assert [s for s, _ in list_checkpoints(run_dir)] == [10, 12]
    assert_equal_weights(final_model(run_dir), final_model(reference_run))


# ---------------------------------------------------------------------- case 5: a run shorter than log_every
def test_a_run_stopped_before_its_first_logging_step_writes_its_final_record(syllables, tmp_path, capsys):
    cfg = train_config(syllables, "train.max_steps=50", "train.log_every=50", "train.max_minutes=1e-9")
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text(cfg.to_toml())
    assert cli_main(cli_args(cfg_file, tmp_path / "run")) == 0
    assert "time_budget at step 1/50 (1 steps run); checkpoint" in capsys.readouterr().err
    (record,) = read_metrics(tmp_path / "run", "train")
    assert record["step"] == 1 and record["loss"] > 0
    side = sidecar(tmp_path / "run")
    assert (side["status"], side["step"], side["steps_run"]) == ("time_budget", 1, 1)
    record.pop("format_version")
    assert side["train"] == record and load_checkpoint(side["checkpoint"])["metrics"] == record


# ------------------------------------------------------------------------------- case 6: full disk
def test_metrics_write_on_a_full_disk_leaves_no_torn_line(tmp_path, monkeypatch):
    log = MetricsLog(tmp_path)
    log.write({"split": "train", "step": 1})
    before = log.path.read_bytes()
    real_write = os.write

    def half_then_enospc(fd, data):
        if len(data) > 4:
            return real_write(fd, bytes(data[:4]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_enospc)
    with pytest.raises(OSError) as e:
        log.write({"split": "train", "step": 2})
    monkeypatch.undo()
    assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(log.path))
    assert log.path.read_bytes() == before


def test_full_disk_at_a_checkpoint_exits_74_and_a_rerun_matches_the_uninterrupted_run(
        syllables, reference_run, tmp_path, monkeypatch, capsys):
    cfg = train_config(syllables, *RESUME, "train.max_steps=12")
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text(cfg.to_toml())
    run_dir = tmp_path / "run"

    def stop_at_4(trainer, step):
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    assert Trainer(cfg, run_dir, progress=False, on_step=stop_at_4).run()["step"] == 4
    first = run_dir / "checkpoints" / "step_00000004.pt"
    kept = first.read_bytes()

    # (1) a real file-size limit (EFBIG; Python ignores SIGXFSZ): the checkpoint of step 8 does not fit
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(kept) // 2, hard))
    try:
        code = cli_main(cli_args(cfg_file, run_dir))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert code == EXIT_IO
    (line,) = error_lines(capsys.readouterr().err)
    target = run_dir / "checkpoints" / "step_00000008.pt"
    assert line == (f"spidrkit pretrain: I/O error: {target}: File too large (nothing partial was left under a "
                    "final name; free space or fix access, then rerun)")
    assert [s for s, _ in list_checkpoints(run_dir)] == [4] and first.read_bytes() == kept
    assert temp_files(run_dir) == []
    side = sidecar(run_dir)
    assert side["status"] == "failed" and str(target) in side["error"] and side["step"] == 8

    # (2) ENOSPC from the writer itself (torch.save), in process
    def enospc_save(state, f):
        f.write(b"PK\3\4 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("spidrkit.checkpoints.run.torch.save", enospc_save)
    assert cli_main(cli_args(cfg_file, run_dir)) == EXIT_IO
    (line,) = error_lines(capsys.readouterr().err)
    assert f"I/O error: {target}: No space left on device" in line
    assert [s for s, _ in list_checkpoints(run_dir)] == [4] and temp_files(run_dir) == []
    monkeypatch.undo()

    # space back: the same command resumes from step 4 and ends where the uninterrupted run ends
    assert cli_main(cli_args(cfg_file, run_dir)) == 0
    assert sorted(r["step"] for r in read_metrics(run_dir, "train")) == list(range(1, 13))
    assert_equal_weights(final_model(run_dir), final_model(reference_run))
    assert sidecar(run_dir)["status"] == "completed"


@pytest.mark.parametrize("name", ["config.toml", "spidrkit.json"])
def test_full_disk_on_the_config_or_the_sidecar_exits_74_naming_it(name, syllables, tmp_path, monkeypatch, capsys):
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text(train_config(syllables, "train.max_steps=1").to_toml())
    run_dir = tmp_path / "run"
    fsync = os.fsync

    def enospc_for_name(fd):  # as a full disk (or NFS quota) reports itself at the flush
        if name in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return fsync(fd)

    monkeypatch.setattr(os, "fsync", enospc_for_name)
    assert cli_main(cli_args(cfg_file, run_dir)) == EXIT_IO
    monkeypatch.undo()
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith(f"spidrkit pretrain: I/O error: {run_dir / name}: No space left on device (nothing partial")
    assert not (run_dir / name).exists() and temp_files(run_dir) == [] and not (run_dir / LOCK_NAME).exists()
    assert cli_main(cli_args(cfg_file, run_dir)) == 0  # space back
    assert sidecar(run_dir)["status"] == "completed"


# ----------------------------------------------------------------------------- case 12: Ctrl-C, SIGTERM
@pytest.mark.parametrize(("sig", "code", "status"), [(signal.SIGINT, EXIT_INTERRUPTED, "interrupted"),
                                                    (signal.SIGTERM, EXIT_TERMINATED, "preempted")])
def test_sigint_and_sigterm_save_a_checkpoint_exit_130_and_143_and_the_run_resumes(
        sig, code, status, syllables, reference_run, tmp_path, monkeypatch, capsys):
    cfg = train_config(syllables, *RESUME, "train.max_steps=12", "train.log_every=50")
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text(cfg.to_toml())
    run_dir = tmp_path / "run"
    micro_batches = Trainer.micro_batches

    def signal_during_step_4(self, batches):  # as Ctrl-C or kill would, while the step runs
        if self.stepper.step_count == 3:
            assert signal.getsignal(sig) not in (signal.SIG_DFL, signal.SIG_IGN, signal.default_int_handler)
            os.kill(os.getpid(), sig)
        return micro_batches(self, batches)

    monkeypatch.setattr(Trainer, "micro_batches", signal_during_step_4)
    previous = signal.getsignal(sig)
    assert cli_main(cli_args(cfg_file, run_dir)) == code
    assert signal.getsignal(sig) is previous
    monkeypatch.undo()
    (line,) = error_lines(capsys.readouterr().err)
    checkpoint = run_dir / "checkpoints" / "step_00000004.pt"
    assert line == (f"spidrkit pretrain: {status} ({sig.name}) at step 4/12 (4 steps run); checkpoint {checkpoint}; "
                    f"run dir {run_dir}; run the same command again to resume")
    assert [s for s, _ in list_checkpoints(run_dir)] == [4]
    side = sidecar(run_dir)
    assert (side["status"], side["signal"], side["step"], side["checkpoint"]) == (status, sig.name, 4, str(checkpoint))
    assert [r["step"] for r in read_metrics(run_dir, "train")] == [4]  # the final record, although log_every=50
    assert not (run_dir / LOCK_NAME).exists()
    out = pretrain(cfg, run_dir, progress=False)
    assert (out["status"], out["step"], out["steps_run"]) == ("completed", 12, 8)
    assert_equal_weights(final_model(run_dir), final_model(reference_run))


# ------------------------------------------------------------------------- case 8: non-finite weights
def test_nonfinite_weights_are_never_written_to_a_checkpoint(syllables, tmp_path):
    def poison_at_3(trainer, step):
        if step == 3:
            with torch.no_grad():
                next(trainer.model.parameters()).view(-1)[0] = float("nan")

    cfg = train_config(syllables, "train.max_steps=12", "train.checkpoint_every=2")
    with pytest.raises(NonFiniteWeights, match=r"^step 4: .*non-finite .*step_00000002\.pt \(step 2\)"):
        Trainer(cfg, tmp_path, progress=False, on_step=poison_at_3).run()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2] and temp_files(tmp_path) == []
    assert sidecar(tmp_path)["status"] == "diverged"


# ------------------------------------------------------------------------------ an all-bad manifest
def test_a_manifest_of_unusable_files_exits_2_naming_it(tmp_path, capsys):
    from spidrkit.data.corpora.manifest import ManifestEntry, write_manifest

    bad = []
    for i in range(4):
        (tmp_path / f"b{i}.wav").write_bytes(b"not audio at all" * 100)
        bad.append(ManifestEntry(f"b{i}", str(tmp_path / f"b{i}.wav"), 16000))
    manifest = write_manifest(bad, tmp_path / "bad.csv")
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text(train_config(manifest, "train.max_steps=2").to_toml())
    assert cli_main(cli_args(cfg_file, tmp_path / "run")) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith(f"spidrkit pretrain: error: {manifest}: a whole epoch of batches held no usable file")
    assert str(tmp_path / "run" / "skipped.tsv") in line
    assert sorted(r.split("\t")[0] for r in (tmp_path / "run" / "skipped.tsv").read_text().splitlines()[1:]) == [
        "b0", "b1", "b2", "b3"]


# -------------------------------------- a run folder's data identity (docs/formats.md, "Run folder")
def test_resuming_on_other_data_is_refused_and_fresh_starts_anew(syllables, tmp_path, capsys):
    """A pretraining run folder has an identity (its config and the digest of its manifests' rows): resuming it
    on another training or validation manifest exits 2 naming both, and leaves the run as it was; --fresh
    starts it anew on the new data."""
    from spidrkit.data.corpora.manifest import entries_sha256, read_manifest, write_manifest

    entries = read_manifest(syllables)
    other = write_manifest(entries[:8], tmp_path / "other.csv")
    run_dir = tmp_path / "run"
    base = ["--set", "train.max_steps=2", "--set", "train.checkpoint_every=2", "--set", "train.valid_every=0"]
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text(train_config(syllables).to_toml())
    assert cli_main(cli_args(cfg_file, run_dir, *base)) == 0
    before = sidecar(run_dir)
    assert before["data"] == {"train_manifest": str(syllables), "train_files": 16,
                              "train_sha256": entries_sha256(entries), "valid_manifest": "", "valid_files": 0,
                              "valid_sha256": ""}
    capsys.readouterr()
    more = [*base[:1], "train.max_steps=4", *base[2:]]
    assert cli_main(cli_args(cfg_file, run_dir, *more, "--set", f"data.train_manifest={other}")) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"spidrkit pretrain: error: {run_dir} was trained on {syllables} (16 files, rows sha256 "
        f"{entries_sha256(entries)[:16]}), not {other} (8 files, rows sha256 {entries_sha256(entries[:8])[:16]}): "
        f"use another --run-dir, or --fresh to start {run_dir} anew"]
    assert sidecar(run_dir) == before and [s for s, _ in list_checkpoints(run_dir)] == [2]
    assert cli_main(cli_args(cfg_file, run_dir, *more, "--set", f"data.valid_manifest={other}")) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"spidrkit pretrain: error: {run_dir} was validated on no validation data, not {other} (8 files, rows "
        f"sha256 {entries_sha256(entries[:8])[:16]}): use another --run-dir, or --fresh to start {run_dir} anew"]
    assert cli_main(cli_args(cfg_file, run_dir, *more)) == 0  # the same data resumes
    assert sidecar(run_dir)["step"] == 4
    assert cli_main(cli_args(cfg_file, run_dir, *base, "--set", f"data.train_manifest={other}", "--fresh")) == 0
    after = sidecar(run_dir)
    assert after["step"] == 2 and after["data"]["train_files"] == 8
    assert [s for s, _ in list_checkpoints(run_dir)] == [2] and len(read_metrics(run_dir, "train")) >= 1
