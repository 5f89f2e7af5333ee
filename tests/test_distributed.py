"""Data parallelism: 2 gloo processes equal 1 process with 2 micro-batches; the run folder's lock across
ranks; launcher environments."""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.multiprocessing as mp

from spidrkit.config import SAMPLE_RATE as SR
from spidrkit.config import config_from_dict, load_config
from spidrkit.data.corpora.manifest import ManifestEntry, write_manifest
from spidrkit.errors import LockHeldError
from spidrkit.io import read_metrics
from spidrkit.runtime import DistEnv, LaunchError, detect_env, first_host, seed_everything, select_device
from spidrkit.training.distributed import StopVote, cleanup_distributed, init_distributed
from spidrkit.training.loop import Trainer, pretrain
from spidrkit.training.runfolder import LOCK_NAME, run_lock
from spidrkit.training.slurm import parse_slurm_spec, submit_slurm

STEPS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(fn, *args) -> None:
    """``fn(rank, 2, port, *args)`` in 2 fresh processes, as torchrun starts them, forked from a server that has
    imported torch, the trainers and this module once (spawned ranks import them each, ~6 s a test)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__, "torch._dynamo", "spidrkit.lm.trainer",
                                "transformers.models.opt.modeling_opt"])
    mp.start_processes(fn, args=(2, free_port(), *args), nprocs=2, join=True, start_method="forkserver")


def _rank_main(rank: int, world: int, port: int, cfg_dict: dict, run_dir: str, out: str) -> None:
    """One training process: joins the gloo group from torchrun-style variables, trains, saves its model."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    env = detect_env()
    assert (env.rank, env.world_size, env.launcher) == (rank, world, "torchrun")
    device = torch.device("cpu")
    init_distributed(device, env)
    try:
        # The run folder is locked by a live process (the test's): no rank gets past the lock, none hangs.
        try:
            pretrain(config_from_dict(cfg_dict), run_dir, progress=False)
            raise AssertionError("a locked run folder was trained in")
        except LockHeldError as e:
            assert ("in use by pid" if rank == 0 else "rank 0 could not take the lock") in str(e)
        assert sorted(p.name for p in Path(run_dir).iterdir()) == [LOCK_NAME]
        torch.distributed.barrier()  # every rank has looked before rank 0 rewrites the lock (through a temp file)
        with run_lock(run_dir, device, force=True):  # rank 0 breaks it; every rank waits for that
            holder = json.loads((Path(run_dir) / LOCK_NAME).read_text())["pid"]
            assert holder == os.getpid() if rank == 0 else holder not in (os.getpid(), os.getppid())
            trainer = Trainer(config_from_dict(cfg_dict), run_dir, device, progress=False)
            summary = trainer.run()
        assert summary["world_size"] == world and summary["step"] == STEPS
        torch.save(trainer.model.state_dict(), Path(out) / f"rank{rank}.pt")
    finally:
        cleanup_distributed()


def _noise_manifest(tmp_path: Path, n: int) -> Path:
    """``n`` half-second files of seeded noise (equal lengths: crops are the identity) and their manifest."""
    rng = np.random.default_rng(0)
    entries = []
    for i in range(n):
        path = tmp_path / "audio" / f"n{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, (0.3 * rng.standard_normal(8000)).astype(np.float32), SR)
        entries.append(ManifestEntry(f"n{i}", str(path), 8000))
    return write_manifest(entries, tmp_path / "train.csv")


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_two_gloo_processes_equal_one_process_with_two_micro_batches(tmp_path):
    # Equal-length files (crops are then the identity), 2 per batch, 4 batches an epoch: rank r of 2 takes
    # batches r, r + 2, ...; one process with grad_accum = 2 takes batches 2s and 2s + 1 at step s, with the
    # same masks (keyed by the global batch index). Dropout off: the two set-ups then compute the same step.
    manifest = _noise_manifest(tmp_path, 8)
    over = ["model.conv_dim=32", "model.dim=64", "model.num_layers=2", "model.num_heads=2", "model.ffn_dim=128",
            "model.num_codebooks=2", "model.codebook_size=16", "model.dropout=0.0", "model.attention_dropout=0.0",
            "model.layerdrop=0.0", "data.num_workers=0", "data.max_batch_samples=16000", "optim.warmup_steps=1",
            f"train.max_steps={STEPS}", "train.log_every=1", "train.device=cpu", f"data.train_manifest={manifest}"]
    cfg = load_config("tiny", over)
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "ddp").mkdir()
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": "2026-01-01T00:00:00+00:00", "command": ""}
    (tmp_path / "ddp" / LOCK_NAME).write_text(json.dumps(holder))
    start_ranks(_rank_main, cfg.to_dict(), str(tmp_path / "ddp"), str(out))
    assert not (tmp_path / "ddp" / LOCK_NAME).exists()
    rank0 = torch.load(out / "rank0.pt", weights_only=True)
    rank1 = torch.load(out / "rank1.pt", weights_only=True)
    for k in rank0:  # student, teacher, heads and codebooks: bit for bit the same on both ranks
        assert torch.equal(rank0[k], rank1[k]), k

    single_cfg = load_config("tiny", [*over, "train.grad_accum=2"])
    single = Trainer(single_cfg, tmp_path / "single", progress=False)
    single.run()
    ref = single.model.state_dict()
    key = "student.layers.0.feed_forward.output_dense.weight"
    assert not torch.equal(ref[key], _initial(cfg)[key])  # the weights moved: the comparison is not vacuous
    diffs = {k: (rank0[k].double() - ref[k].double()).abs().max().item() for k in ref if k != "current_step"}
    assert max(diffs.values()) <= 1e-5, max(diffs.items(), key=lambda kv: kv[1])
    assert rank0["current_step"].item() == ref["current_step"].item() == STEPS
    for k in ("codebooks.0.codebook", "codebooks.1.counts", "teacher.layers.1.attention.qkv.weight"):
        assert diffs[k] <= 1e-5
    # The logged losses and gradient norms (rank 0 writes the DDP run's metrics) agree as well; AdamW is
    # blind to the scale of the gradient, the norm is not: it checks the normalisation over ranks.
    ddp, one = read_metrics(tmp_path / "ddp", "train"), read_metrics(tmp_path / "single", "train")
    assert len(ddp) == len(one) == STEPS
    assert np.allclose([r["loss"] for r in ddp], [r["loss"] for r in one], atol=1e-5)
    assert np.allclose([r["grad_norm"] for r in ddp], [r["grad_norm"] for r in one], rtol=1e-4)
    assert np.allclose([r["codebook_ppl"] for r in ddp], [r["codebook_ppl"] for r in one], rtol=1e-5)


def _initial(cfg):
    from spidrkit.models.spidr import SpidR

    seed_everything(cfg.train.seed)
    return SpidR(cfg.model).state_dict()


# ------------------------------------------------------------------------------------------- launchers
def test_detect_env_from_torchrun_and_slurm_variables():
    assert detect_env({}) == DistEnv()
    tr = detect_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "n1", "MASTER_PORT": "1234"})
    assert tr == DistEnv(3, 8, 1, "n1", 1234, "torchrun")
    slurm = {"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123456",
             "SLURM_JOB_NODELIST": "gpu[007-008]"}
    assert detect_env(slurm) == DistEnv(9, 16, 1, "gpu007", 20000 + 123456 % 20000, "slurm")
    assert detect_env({**slurm, "MASTER_PORT": "4000"}).master_port == 4000
    assert detect_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == DistEnv()  # one task: one process
    with pytest.raises(LaunchError, match="MASTER_ADDR"):
        detect_env({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(LaunchError, match="not an integer"):
        detect_env({"RANK": "x", "WORLD_SIZE": "2", "MASTER_ADDR": "a"})
    with pytest.raises(LaunchError, match="outside"):
        detect_env({"RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "a"})


@pytest.mark.parametrize(
    "nodelist, host",
    [("node1", "node1"), ("gpu[003-004,010],cpu1", "gpu003"), ("a-[1-2]", "a-1"), ("x[09]", "x09"),
     ("n1,n2", "n1")],
)
def test_first_host_of_a_slurm_node_list(nodelist, host):
    assert first_host(nodelist) == host


def test_slurm_spec_and_submitit_requirement(tmp_path):
    spec = parse_slurm_spec("nodes=2,gpus=8,partition=gpu,time=600")
    assert (spec["nodes"], spec["gpus"], spec["partition"], spec["time"], spec["cpus"]) == (2, 8, "gpu", 600, 10)
    with pytest.raises(LaunchError, match="unknown key 'gpu'"):
        parse_slurm_spec("gpu=8")
    with pytest.raises(LaunchError, match="not an integer"):
        parse_slurm_spec("nodes=two")
    with pytest.raises(LaunchError, match="nodes must be >= 1"):
        parse_slurm_spec("nodes=0")
    if importlib.util.find_spec("submitit") is None:
        with pytest.raises(LaunchError, match=r"pip install 'spidrkit\[slurm\]'"):
            submit_slurm({}, tmp_path, spec, "job")


def test_single_process_helpers_need_no_group():
    assert init_distributed(torch.device("cpu"), DistEnv()) == DistEnv()
    vote = StopVote(torch.device("cpu"))
    assert vote(False) is False and vote(True) is True


def test_train_device_values_map_to_devices(tmp_path):
    assert select_device("cpu", 0) == torch.device("cpu")
    if torch.cuda.is_available():
        assert select_device("auto", 0) == select_device("cuda", 0) == torch.device("cuda", 0)
        return
    assert select_device("auto", 0) == torch.device("cpu")
    with pytest.raises(LaunchError, match=r"train.device = 'cuda': CUDA was asked for but no CUDA device"):
        pretrain(load_config("tiny", ["train.device=cuda"]), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------- the unit LM
LM_STEPS = 4
LM_SMALL = ["model.num_layers=1", "model.dim=32", "model.num_heads=2", "model.ffn_dim=64", "model.context=48",
            "model.dropout=0.0", "optim.warmup_steps=1", "train.batch_size=3", f"train.max_steps={LM_STEPS}",
            "train.log_every=1", "train.valid_every=2", "train.device=cpu"]


def _lm_rank_main(rank: int, world: int, port: int, units: str, valid: str, run_dir: str) -> None:
    """One unit-LM training process under torchrun-style variables (the trainer joins the gloo group)."""
    from spidrkit.lm import train as train_lm

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        summary = train_lm([units], run_dir, "tiny", LM_SMALL, valid=[valid], progress=False)
        assert summary["step"] == LM_STEPS
    finally:
        cleanup_distributed()


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_two_gloo_unit_lm_processes_equal_one_process_with_two_micro_batches(tmp_path):
    """Utterances of unequal lengths (padded rows: the two ranks predict different numbers of tokens): rank r of
    2 takes micro-batch 2s + r at update s, one process with grad_accum = 2 takes 2s and 2s + 1. The update
    normalises by the predicted tokens of all ranks, so both set-ups compute the same weights and losses."""
    from spidrkit.extraction.units import write_units
    from spidrkit.lm import load_lm
    from spidrkit.lm import train as train_lm

    rng = np.random.default_rng(0)
    utts = {f"u{i:03d}": rng.integers(0, 8, int(rng.integers(3, 40))).tolist() for i in range(30)}
    units = write_units(tmp_path / "units.txt", utts, k=8)
    valid = write_units(tmp_path / "valid.txt", {"v0": [1, 2, 3, 4], "v1": [5, 6, 7, 0, 1, 2]}, k=8)
    start_ranks(_lm_rank_main, str(units), str(valid), str(tmp_path / "ddp"))
    train_lm([units], tmp_path / "one", "tiny", [*LM_SMALL, "train.grad_accum=2"], valid=[valid], progress=False)

    ddp, one = load_lm(tmp_path / "ddp", "last")[0].state_dict(), load_lm(tmp_path / "one", "last")[0].state_dict()
    diffs = {k: (ddp[k].double() - one[k].double()).abs().max().item() for k in one}
    assert max(diffs.values()) <= 1e-5, max(diffs.items(), key=lambda kv: kv[1])
    a, b = read_metrics(tmp_path / "ddp", "train"), read_metrics(tmp_path / "one", "train")
    assert len(a) == len(b) == LM_STEPS
    assert np.allclose([r["loss"] for r in a], [r["loss"] for r in b], atol=1e-5)
    assert [r["tokens"] for r in a] == [r["tokens"] for r in b]
    va, vb = read_metrics(tmp_path / "ddp", "valid"), read_metrics(tmp_path / "one", "valid")
    assert [r["step"] for r in va] == [r["step"] for r in vb] and np.allclose(
        [r["loss"] for r in va], [r["loss"] for r in vb], atol=1e-5)


def _fresh_rank_main(rank: int, world: int, port: int, cfg_dict: dict, run_dir: str, out: str) -> None:
    """One process of ``pretrain --fresh`` under torchrun-style variables: pretrain joins the group itself."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    summary = pretrain(config_from_dict(cfg_dict), run_dir, progress=False, fresh=True)
    (Path(out) / f"rank{rank}.json").write_text(json.dumps({k: summary[k] for k in ("step", "steps_run")}))


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_fresh_under_two_processes_starts_every_rank_at_step_0(tmp_path):
    """``pretrain --fresh`` deletes once the process group is up (rank 0, under the lock) and no rank builds its
    trainer before that: both ranks start at step 0 on a folder that holds a later checkpoint."""
    manifest = _noise_manifest(tmp_path, 4)
    over = ["model.conv_dim=32", "model.dim=64", "model.num_layers=2", "model.num_heads=2", "model.ffn_dim=128",
            "model.num_codebooks=2", "model.codebook_size=16", "data.num_workers=0", "data.max_batch_samples=16000",
            "optim.warmup_steps=1", "train.log_every=1", "train.device=cpu", f"data.train_manifest={manifest}"]
    run_dir, out = tmp_path / "run", tmp_path / "out"
    out.mkdir()
    first = pretrain(load_config("tiny", [*over, "train.max_steps=3"]), run_dir, progress=False)
    assert first["step"] == 3 and list((run_dir / "checkpoints").iterdir())
    cfg = load_config("tiny", [*over, "train.max_steps=2"])  # resumed, the step-3 checkpoint would end it at once
    start_ranks(_fresh_rank_main, cfg.to_dict(), str(run_dir), str(out))
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks == [{"step": 2, "steps_run": 2}] * 2
    assert [r["step"] for r in read_metrics(run_dir, "train")] == [1, 2]  # the old run's log went with it
