"""The pretraining loop: exact resume (stop, SIGTERM, time budget), bad files, learning, non-finite steps,
metrics and validation, checkpoints, the CLI, and the benchmark's FLOP count."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from spidrkit.checkpoints.run import (
    CheckpointError,
    list_checkpoints,
    prune_checkpoints,
    save_checkpoint,
)
from spidrkit.checkpoints.run import read_run_checkpoint as load_checkpoint
from spidrkit.cli import main as cli_main
from spidrkit.config import SAMPLE_RATE as SR
from spidrkit.config import load_config
from spidrkit.data.batches.dataset import read_skipped
from spidrkit.data.corpora.manifest import ManifestEntry, write_manifest
from spidrkit.io import METRICS_VERSION, read_metrics
from spidrkit.models.flops import step_flops
from spidrkit.models.masking import sample_mask
from spidrkit.models.schedules import learning_rate, teacher_decay
from spidrkit.models.spidr import SpidR
from spidrkit.runtime import rng_state, set_rng_state
from spidrkit.training.logging import MetricsLog
from spidrkit.training.loop import MaskHook, Trainer, TrainingDiverged, pretrain
from spidrkit.training.resume import config_changes
from spidrkit.training.step import MicroBatch, Stepper
from support import RESUME, TRAIN_SMALL, final_model, syllable_corpus, train_config

pytestmark = pytest.mark.usefixtures("one_thread")


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir, "train")}


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


# ------------------------------------------------------------------------------------------- resume
def assert_same_run(run_dir: Path, reference: Path) -> None:
    ref, got = losses(reference), losses(run_dir)
    assert sorted(ref) == sorted(got) == list(range(1, 13))  # no step logged twice after a resume
    assert max(abs(got[s] - ref[s]) for s in ref) <= 1e-6
    assert max_diff(final_model(run_dir), final_model(reference)) <= 1e-6


def test_resume_after_stop_and_after_sigterm_matches_uninterrupted_run(syllables, reference_run, tmp_path):
    over = RESUME
    # keep_checkpoints=2: the checkpoints of steps 8 and 12 remain
    assert [s for s, _ in list_checkpoints(reference_run)] == [8, 12]

    # (1) a run stopped at step 6 by max_steps, then the same run dir with max_steps = 12
    first = pretrain(train_config(syllables, *over, "train.max_steps=6"), tmp_path / "b", progress=False)
    assert first["step"] == 6 and first["checkpoint"].endswith("step_00000006.pt")
    second = pretrain(train_config(syllables, *over, "train.max_steps=12"), tmp_path / "b", progress=False)
    assert second["step"] == 12

    # (2) SIGTERM during step 5: the run finishes the step, checkpoints and stops; then it resumes
    def sigterm_at_5(trainer, step):
        if step == 5:
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)  # ours
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    cfg = train_config(syllables, *over, "train.max_steps=12")
    stopped = Trainer(cfg, tmp_path / "c", progress=False, on_step=sigterm_at_5).run()
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored
    assert (stopped["status"], stopped["signal"], stopped["step"]) == ("preempted", "SIGTERM", 5)
    assert [s for s, _ in list_checkpoints(tmp_path / "c")] == [4, 5]
    resumed = pretrain(cfg, tmp_path / "c", progress=False)
    assert resumed["status"] == "completed" and resumed["step"] == 12

    assert_same_run(tmp_path / "b", reference_run)
    assert_same_run(tmp_path / "c", reference_run)

    # Running the finished command again does nothing; a changed model cannot resume; --fresh refuses.
    again = pretrain(cfg, tmp_path / "b", progress=False)
    assert again["step"] == 12 and len(losses(tmp_path / "b")) == 12
    with pytest.raises(CheckpointError, match="model.dim"):
        pretrain(train_config(syllables, *over, "model.dim=32"), tmp_path / "b", progress=False)
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        pretrain(cfg, tmp_path / "b", resume=False, progress=False)


RUN_UNTIL_KILLED = """
import sys, time, torch
from pathlib import Path
from spidrkit.config import load_config
from spidrkit.training.loop import Trainer
torch.set_num_threads(1)
ready = Path(sys.argv[3])
def slow_after_3(trainer, step):  # time for the test to send the signal; numerics untouched
    if step >= 3:
        ready.touch()
        time.sleep(0.2)
out = Trainer(load_config(sys.argv[1]), sys.argv[2], progress=False, on_step=slow_after_3).run()
print(out["status"], out["step"], out["signal"])
"""


def test_sigterm_to_the_process_group_of_a_run_with_loader_workers(syllables, reference_run, tmp_path):
    # As SLURM does on pre-emption: SIGTERM to every process of the run, data-loader workers included.
    cfg = train_config(syllables, *RESUME, "train.max_steps=12", "data.num_workers=1")
    (tmp_path / "run.toml").write_text(cfg.to_toml())
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_UNTIL_KILLED, str(tmp_path / "run.toml"), str(tmp_path / "run"), str(ready)],
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    status, step, sig = out.split()[-3:]
    assert (status, sig) == ("preempted", "SIGTERM") and 3 <= int(step) < 12
    assert list_checkpoints(tmp_path / "run")[-1][0] == int(step)
    assert "exited unexpectedly" not in err and "killed by signal" not in err
    # resumed here without workers (no fork from the multi-threaded test process): same batches
    resumed = pretrain(train_config(syllables, *RESUME, "train.max_steps=12"), tmp_path / "run", progress=False)
    assert resumed["step"] == 12
    assert_same_run(tmp_path / "run", reference_run)


def test_time_budget_stops_with_a_checkpoint(syllables, tmp_path):
    cfg = train_config(syllables, "train.max_steps=50", "train.max_minutes=1e-9", "train.checkpoint_every=100")
    out = pretrain(cfg, tmp_path, progress=False)
    assert (out["status"], out["step"]) == ("time_budget", 1)
    ckpt = load_checkpoint(out["checkpoint"])
    assert ckpt["step"] == 1 and ckpt["data"][0]["position"] == 1
    assert json.loads((tmp_path / "spidrkit.json").read_text())["status"] == "time_budget"


def test_milestones_survive_pruning_and_resume(syllables, tmp_path, caplog):
    from spidrkit.checkpoints.run import list_milestones

    keep = ["train.checkpoint_every=1", "train.keep_checkpoints=1", "train.log_every=2"]
    out = pretrain(train_config(syllables, *keep, "train.max_steps=5", "train.milestone_steps=[2, 4]",
                          "train.milestone_minutes=[1e-9, 1e-8]"), tmp_path, progress=False)
    assert out["step"] == 5 and [s for s, _ in list_checkpoints(tmp_path)] == [5]  # the rotation kept one
    # one minutes milestone a step: 1e-9 min at step 1, 1e-8 at step 2, with the step milestones 2 and 4
    names = ["minutes_1e-09_step_00000001.pt", "minutes_1e-08_step_00000002.pt", "steps_2_step_00000002.pt",
             "steps_4_step_00000004.pt"]
    found = list_milestones(tmp_path)
    assert [p.name for *_, p in found] == names
    assert [(k, v, s) for k, v, s, _ in found] == [("minutes", 1e-9, 1), ("minutes", 1e-8, 2), ("steps", 2.0, 2),
                                                   ("steps", 4.0, 4)]
    for _, _, step, path in found:
        ckpt = load_checkpoint(path)
        assert ckpt["step"] == step and ckpt["elapsed"] > 0
    records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r.get("split") == "milestone"]
    assert [(r["step"], r["milestone"], r["target"], r["path"]) for r in records] == [
        (s, k, v, f"milestones/{p.name}") for k, v, s, p in found]
    assert all(r["minutes"] * 60 == pytest.approx(r["wall_seconds"]) for r in records)
    stamps = {p.name: p.stat().st_mtime_ns for *_, p in found}

    # resume: the saved ones are not rewritten, 1e-7 min was passed before (skipped), step 7 is new
    with caplog.at_level(logging.WARNING, logger="spidrkit.training"):
        pretrain(train_config(syllables, *keep, "train.max_steps=8", "train.milestone_steps=[2, 4, 7]",
                        "train.milestone_minutes=[1e-9, 1e-8, 1e-7]"), tmp_path, progress=False)
    again = list_milestones(tmp_path)
    assert [p.name for *_, p in again] == [*names, "steps_7_step_00000007.pt"]
    assert {p.name: p.stat().st_mtime_ns for *_, p in again if p.name in stamps} == stamps
    assert "milestones [1e-07] min were passed before this invocation" in caplog.text
    assert [s for s, _ in list_checkpoints(tmp_path)] == [8]


@pytest.mark.skipif(not os.environ.get("SPIDRKIT_TEST_COMPILE"),
                    reason="torch.compile on CPU takes minutes when its cache is cold; SPIDRKIT_TEST_COMPILE=1 runs it")
def test_compiled_steps_match_eager_steps(syllables, tmp_path):
    # no dropout: compiled code draws its random numbers differently; layer drop (host RNG) stays on
    over = ["model.dropout=0.0", "model.attention_dropout=0.0", "model.layerdrop=0.2", "train.log_every=1",
            "train.max_steps=4"]
    pretrain(train_config(syllables, *over), tmp_path / "eager", progress=False)
    out = pretrain(train_config(syllables, *over, "train.compile=true"), tmp_path / "compiled", progress=False)
    assert out["step"] == 4
    ref, got = losses(tmp_path / "eager"), losses(tmp_path / "compiled")
    assert sorted(got) == [1, 2, 3, 4] and max(abs(got[s] - ref[s]) for s in got) <= 1e-4
    assert max_diff(final_model(tmp_path / "compiled"), final_model(tmp_path / "eager")) <= 1e-3


# ------------------------------------------------------------------------------------------- data
@pytest.mark.filterwarnings("ignore::spidrkit.data.corpora.audio.AudioConversionWarning")
def test_corrupt_and_empty_files_are_skipped_and_stereo_44k_is_used(tmp_path):
    entries = syllable_corpus(tmp_path / "audio", n_files=5)
    corrupt = tmp_path / "audio" / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    empty = tmp_path / "audio" / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    stereo = tmp_path / "audio" / "stereo44.wav"
    t = np.arange(44100) / 44100
    sf.write(stereo, np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], 1).astype(np.float32),
             44100)
    # manifest lengths as the header scan would have given them (the broken files claim a second)
    entries += [ManifestEntry("corrupt", str(corrupt), SR), ManifestEntry("empty", str(empty), SR),
                ManifestEntry("stereo44", str(stereo), SR)]
    manifest = write_manifest(entries, tmp_path / "train.csv")
    seen: set[str] = set()

    class Recording(Trainer):
        def micro_batches(self, batches):
            for b in batches:
                seen.update(b["fileids"])
            return super().micro_batches(batches)

    cfg = train_config(manifest, "train.max_steps=6")  # 8 files, about 2 per batch: every file is loaded
    out = Recording(cfg, tmp_path / "run", progress=False).run()
    assert out["status"] == "completed" and out["step"] == 6
    assert {row[0] for row in read_skipped(tmp_path / "run")} == {"corrupt", "empty"}
    assert "stereo44" in seen
    assert seen.isdisjoint({"corrupt", "empty"})


# ------------------------------------------------------------------------------------------- learning
@pytest.mark.slow
def test_loss_falls_over_100_steps(syllables, tmp_path):
    # (the loss of this seed levels off from step 70: 0.66 of the first at steps 80-100, 0.64 at 180-200)
    cfg = train_config(syllables, "train.max_steps=100", "train.log_every=10", "train.checkpoint_every=1000")
    out = pretrain(cfg, tmp_path, progress=False)
    recs = read_metrics(tmp_path, "train")
    assert [r["step"] for r in recs] == list(range(10, 101, 10))
    first, last = recs[0]["loss"], np.mean([r["loss"] for r in recs[-3:]])
    assert first > 0.97 * math.log(16)  # near-uniform predictions over 16 codewords at the start
    assert last < 0.75 * first
    assert min(min(r["codebook_ppl"]) for r in recs[-3:]) > 2.0  # not a codebook collapse
    assert out["skipped_steps"] == 0


# ------------------------------------------------------------------------------------------- non-finite
def tiny_stepper(**over):
    cfg = load_config("tiny", [*TRAIN_SMALL, "model.dropout=0.0", *[f"{k}={v}" for k, v in over.items()]])
    torch.manual_seed(0)
    model = SpidR(cfg.model)
    return model, Stepper(model, cfg, torch.device("cpu"))


def test_nonfinite_input_skips_the_step_and_counts_it():
    model, stepper = tiny_stepper()
    L = 8000
    mask = sample_mask(2, model.num_frames(L), rng=0)
    wav = torch.randn(2, L)
    assert bool(stepper.step([MicroBatch(wav, mask)])["finite"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adam = {k: v.clone() for k, v in stepper.optimizer.state[model.mask_embedding].items()}
    bad = wav.clone()
    bad[0, 100] = float("nan")
    out = stepper.step([MicroBatch(bad, mask)])
    assert not bool(out["finite"]) and math.isnan(out["loss"].item())
    after = model.state_dict()
    changed = [k for k in before if k != "current_step" and not torch.equal(before[k], after[k])]
    assert changed == []  # student, teacher, heads and codebooks all unchanged
    assert all(torch.equal(adam[k], v) for k, v in stepper.optimizer.state[model.mask_embedding].items())
    assert (stepper.consecutive_nonfinite.item(), stepper.total_nonfinite.item()) == (1.0, 1.0)
    assert after["current_step"].item() == 2
    stepper.step([MicroBatch(wav, mask)])
    assert (stepper.consecutive_nonfinite.item(), stepper.total_nonfinite.item()) == (0.0, 1.0)
    assert not torch.equal(before["student.layers.0.attention.qkv.weight"],
                           model.state_dict()["student.layers.0.attention.qkv.weight"])


def test_too_many_nonfinite_steps_stop_the_run_naming_the_last_good_checkpoint(syllables, tmp_path):
    class Poisoned(Trainer):
        def micro_batches(self, batches):
            mbs = super().micro_batches(batches)
            if self.stepper.step_count >= 2:  # steps 3, 4, ... see NaN input
                mbs = [MicroBatch(torch.full_like(mb.wav, float("nan")), mb.mask) for mb in mbs]
            return mbs

    cfg = train_config(syllables, "train.max_steps=20", "train.log_every=1", "train.checkpoint_every=2",
                 "train.max_nonfinite=2")
    with pytest.raises(TrainingDiverged, match=r"2 non-finite losses in a row up to step 4.*step_00000002\.pt"):
        Poisoned(cfg, tmp_path, progress=False).run()
    recs = read_metrics(tmp_path, "train")
    assert [r["skipped_steps"] for r in recs] == [0, 0, 1, 2]
    assert recs[2]["loss"] is None  # no finite step in that interval
    assert json.loads((tmp_path / "spidrkit.json").read_text())["status"] == "diverged"


# ------------------------------------------------------------------------------------------- metrics
def test_metrics_validation_and_collapse_warning(syllables, tmp_path, caplog):
    over = ["train.max_steps=6", "train.log_every=2", "train.valid_every=3", "train.valid_batches=3",
            "model.dropout=0.1", "train.collapse_perplexity=100", f"data.valid_manifest={syllables}"]
    cfg = train_config(syllables, *over)
    trainer = Trainer(cfg, tmp_path, progress=False)
    with caplog.at_level(logging.WARNING, logger="spidrkit.training"):
        out = trainer.run()
    assert "codebook perplexity below 100.00" in caplog.text
    train = read_metrics(tmp_path, "train")
    valid = read_metrics(tmp_path, "valid")
    assert [r["step"] for r in train] == [2, 4, 6] and [r["step"] for r in valid] == [3, 6]
    for r in train:
        # the schedules' values of the step's last optimiser step (0-based step - 1), exactly
        assert r["lr"] == learning_rate(r["step"] - 1, cfg.optim)
        assert r["teacher_decay"] == teacher_decay(r["step"] - 1, cfg.teacher)
        assert r["layers"] == [1, 2] and len(r["codebook_ppl"]) == len(r["accuracy"]) == 2
        assert 0.3 < r["masked_fraction"] < 0.8 and r["audio_seconds_per_second"] > 0
        assert min(r["prediction_ppl"]) >= 1.0 and max(r["prediction_ppl"]) <= 16.0
    assert {**out["valid"], "format_version": METRICS_VERSION} == valid[-1] and valid[-1]["valid_batches"] == 3

    # Validation is deterministic: eval mode (no dropout) and the same masks each time.
    again = trainer.validate(6)
    assert again["valid_loss"] == pytest.approx(valid[-1]["valid_loss"], abs=1e-7)
    # its masked fraction is that of the validation batches' masks
    masks = [b["mask"] for b in trainer.valid_loader]
    expected = sum(m.sum().item() for m in masks) / sum(m.numel() for m in masks)
    assert again["valid_masked_fraction"] == pytest.approx(expected, abs=1e-6)


def test_metrics_log_keeps_old_records_and_drops_a_torn_line_and_later_steps(tmp_path):
    # A log written before records carried format_version, its last line cut by a crash.
    old = [{"split": "train", "step": 2, "loss": 2.5}, {"split": "valid", "step": 3, "valid_loss": 2.25},
           {"split": "train", "step": 4, "loss": 2.0}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in old) + '{"split": "train", "st')
    assert read_metrics(tmp_path) == [{**r, "format_version": 0} for r in old]
    assert [r["step"] for r in read_metrics(tmp_path, "train")] == [2, 4]
    assert read_metrics(path, "valid") == [{**old[1], "format_version": 0}]

    log = MetricsLog(tmp_path)
    log.truncate_after(3)  # resuming from step 3: step 4 and the torn line go; old records stay version 0
    log.write({"split": "train", "step": 4, "loss": float("nan"), "loss_per_layer": torch.tensor([1.5, 0.25])})
    new = {"format_version": METRICS_VERSION, "split": "train", "step": 4, "loss": None, "loss_per_layer": [1.5, 0.25]}
    assert read_metrics(tmp_path) == [{**old[0], "format_version": 0}, {**old[1], "format_version": 0}, new]
    assert json.loads(path.read_text().splitlines()[-1]) == new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]  # no temporary file left
    MetricsLog(tmp_path, enabled=False).truncate_after(0)  # other ranks never touch the log
    assert len(read_metrics(tmp_path)) == 3


def test_mask_hook_is_a_function_of_the_global_batch_index():
    cfg = load_config("tiny")
    batch = {"wav": torch.zeros(3, SR), "index": (2, 5)}
    a = MaskHook.from_config(cfg)(dict(batch))["mask"]
    assert a.shape == (3, 49) and torch.equal(a, MaskHook.from_config(cfg)(dict(batch))["mask"])
    assert (a.sum(1) == a.sum(1)[0]).all()  # same count in every row
    # rank 1 of 2 at position 5 is global batch 11: what one process sees at position 11
    r1 = MaskHook.from_config(cfg, rank=1, world_size=2)(dict(batch))["mask"]
    single = MaskHook.from_config(cfg)({"wav": torch.zeros(3, SR), "index": (2, 11)})["mask"]
    assert torch.equal(r1, single) and not torch.equal(r1, a)
    valid = MaskHook.from_config(cfg, stream=1)(dict(batch))["mask"]
    assert not torch.equal(valid, a)


# ------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_files_rng_and_config_changes(tmp_path):
    for step in (10, 20, 30, 40):
        save_checkpoint(tmp_path / "checkpoints" / f"step_{step:08d}.pt", {"model": {"w": torch.full((2,), step)}})
    (tmp_path / "checkpoints" / ".step_00000050.pt.tmp999999999").write_bytes(b"partial")
    prune_checkpoints(tmp_path, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [30, 40]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000030.pt", "step_00000040.pt"]
    assert load_checkpoint(tmp_path / "checkpoints" / "step_00000040.pt")["model"]["w"].tolist() == [40, 40]
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")

    # RNG states survive a weights_only round trip through a file
    state = rng_state()
    save_checkpoint(tmp_path / "rng.pt", {"model": {}, "rng": state})
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws

    cfg = load_config("tiny")
    saved = load_config("tiny", ["train.max_steps=10", "model.dim=128"]).to_dict()
    fatal, harmless = config_changes(saved, cfg)
    assert fatal == ["model.dim: 128 -> 256"] and harmless == ["train.max_steps: 10 -> 6000"]


# ------------------------------------------------------------------------------------------- CLI
def test_cli_pretrain_runs_resumes_and_reports_errors(syllables, tmp_path, capsys):
    args = ["pretrain", "tiny", *[x for s in TRAIN_SMALL for x in ("--set", s)],
            "--set", f"data.train_manifest={syllables}", "--set", "train.max_steps=2",
            "-o", str(tmp_path / "run"), "--no-progress", "--quiet"]
    assert cli_main(args) == 0
    assert "completed at step 2/2" in capsys.readouterr().err
    assert (tmp_path / "run" / "config.toml").read_text() == train_config(syllables, "train.max_steps=2").to_toml()
    side = json.loads((tmp_path / "run" / "spidrkit.json").read_text())
    assert side["status"] == "completed" and side["step"] == 2 and side["checkpoint"].endswith("step_00000002.pt")
    assert cli_main(args) == 0  # resumes: nothing left to do
    assert len(read_metrics(tmp_path / "run", "train")) == 1
    assert cli_main([*args[:-2], "--set", "model.heads=sideways"]) == 2
    assert "model.heads" in capsys.readouterr().err
    assert cli_main(["pretrain", "tiny", "-o", str(tmp_path / "x")]) == 2  # no manifest


# ------------------------------------------------------------------------------------------- benchmark
def test_step_flops_match_the_reference_count_for_base():
    f = step_flops(load_config("base").model, batch=2, samples=4 * SR)
    per_second = {k: v / 8 / 1e9 for k, v in f.items() if k != "frames"}
    # the reference count: ~52 GFLOP per audio-second (student forward ~14.2, backward ~28.4, teacher ~9.2),
    # downsampler ~4.9
    assert f["frames"] == 199
    assert per_second["total"] == pytest.approx(52, rel=0.02)
    assert per_second["student_fwd"] == pytest.approx(14.2, rel=0.02)
    assert per_second["student_bwd"] == pytest.approx(28.4, rel=0.02)
    assert per_second["teacher_fwd"] == pytest.approx(9.2, rel=0.02)
    assert per_second["downsampler"] == pytest.approx(4.9, rel=0.01)
    # one block's matmuls at T frames, by hand: qkv + out proj + attention (QK^T, AV) + FFN
    m = load_config("tiny").model
    T = 49
    block = 2 * T * 256 * 768 + 2 * T * 256 * 256 + 4 * T * T * 256 + 4 * T * 256 * 1024
    g = step_flops(m, 1, SR)
    h = step_flops(dataclasses.replace(m, num_layers=m.num_layers + 1), 1, SR)
    assert h["teacher_fwd"] - g["teacher_fwd"] == block
    assert h["student_fwd"] - g["student_fwd"] == block


# ------------------------------------------------------------------------------------------- release choices
def test_weight_decay_scope_and_teacher_decay_offset():
    model, stepper = tiny_stepper(**{"optim.weight_decay": 0.1})
    assert [g["weight_decay"] for g in stepper.optimizer.param_groups] == [0.1, 0.0]
    assert all(p.dim() >= 2 for p in stepper.optimizer.param_groups[0]["params"])
    assert model.mask_embedding in stepper.optimizer.param_groups[1]["params"]
    state = stepper.state_dict()
    # the config decides after a resume (the checkpoint's groups are the same parameters)
    model2, release = tiny_stepper(**{"optim.weight_decay": 0.1, "optim.weight_decay_scope": "all",
                                      "teacher.decay_offset": 1})
    release.load_state_dict(state)
    assert [g["weight_decay"] for g in release.optimizer.param_groups] == [0.1, 0.1]
    L = 8000
    mask = sample_mask(2, model2.num_frames(L), rng=0)
    out = release.step([MicroBatch(torch.randn(2, L), mask)])
    cfg = release.cfg.teacher
    assert float(out["teacher_decay"]) == 1 - (1 - cfg.beta0) * math.exp(-1 / cfg.timescale)


def test_codebook_update_per_micro_batch():
    """One micro-batch: the same as per step. Two: the second micro-batch's targets use the codebooks the
    first one moved (the release), so the codebooks end elsewhere than from the summed statistics."""
    L = 8000
    g = torch.Generator().manual_seed(0)
    mbs = [MicroBatch(torch.randn(2, L, generator=g), sample_mask(2, 24, rng=i)) for i in range(2)]
    ends = {}
    for mode in ("per_step", "per_micro_batch"):
        for n in (1, 2):
            model, stepper = tiny_stepper(**{"train.codebook_update": mode})
            assert model.num_frames(L) == 24
            stepper.step(mbs[:n])
            ends[mode, n] = torch.stack([cb.codebook for cb in model.codebooks])
    assert torch.equal(ends["per_step", 1], ends["per_micro_batch", 1])
    assert not torch.allclose(ends["per_step", 2], ends["per_micro_batch", 2])
