"""Processes, devices and launchers: plain ``torch.distributed`` started by torchrun or SLURM.

One process per device. The rank and world size come from the environment:

- torchrun: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``;
- SLURM (``srun``, or ``--slurm`` through submitit): ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``;
  the first host of ``SLURM_JOB_NODELIST`` is the master, the port is derived from ``SLURM_JOB_ID``
  unless ``MASTER_PORT`` is set.

The backend is nccl on GPUs and gloo on CPUs. ``--slurm nodes=2,gpus=8`` submits the run with submitit
(an optional dependency, imported only then).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

DEFAULT_PORT = 29500


class LaunchError(RuntimeError):
    """The distributed environment or the SLURM request is wrong; the message says what to fix."""


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: its global and local rank, the world size, the rendezvous address."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = DEFAULT_PORT
    launcher: str = "none"  # "none", "torchrun" or "slurm"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[003-004,010],cpu1`` -> ``gpu003``, ``a-[1-2]`` -> ``a-1``."""
    nodelist = nodelist.strip()
    if not nodelist:
        raise LaunchError("SLURM_JOB_NODELIST is empty")
    m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist)
    if m is None:
        raise LaunchError(f"cannot read the SLURM node list {nodelist!r}")
    prefix, ranges = m.group(1), m.group(2)
    if ranges is None:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def detect_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """The process's place from torchrun's or SLURM's variables (torchrun wins); one process otherwise.

    Under SLURM a single task (``SLURM_NTASKS=1``, e.g. an interactive ``salloc`` shell) is one process.
    """
    env = os.environ if environ is None else environ

    def integer(name: str) -> int:
        try:
            return int(env[name])
        except ValueError as e:
            raise LaunchError(f"{name}={env[name]!r} is not an integer") from e

    port = integer("MASTER_PORT") if "MASTER_PORT" in env else None
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world = integer("RANK"), integer("WORLD_SIZE")
        local = integer("LOCAL_RANK") if "LOCAL_RANK" in env else rank
        if world > 1 and "MASTER_ADDR" not in env:
            raise LaunchError("RANK and WORLD_SIZE are set but MASTER_ADDR is not (start with torchrun)")
        out = DistEnv(rank, world, local, env.get("MASTER_ADDR", "127.0.0.1"), port or DEFAULT_PORT, "torchrun")
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env and integer("SLURM_NTASKS") > 1:
        rank, world = integer("SLURM_PROCID"), integer("SLURM_NTASKS")
        local = integer("SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
        addr = env.get("MASTER_ADDR") or first_host(env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST", "")))
        if port is None:
            job = env.get("SLURM_JOB_ID", "0")
            port = 20000 + int(job) % 20000 if job.isdigit() else DEFAULT_PORT
        out = DistEnv(rank, world, local, addr, port, "slurm")
    else:
        return DistEnv()
    if not 0 <= out.rank < out.world_size:
        raise LaunchError(f"rank {out.rank} outside a world of {out.world_size} processes")
    return out


def select_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: the process's GPU when CUDA is available, else the CPU. ``cuda`` without a GPU is an error."""
    if name not in ("auto", "cpu", "cuda"):
        raise LaunchError(f"device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise LaunchError("train.device = 'cuda' but no CUDA device is visible (set train.device = 'cpu')")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise LaunchError(f"local rank {local_rank} needs GPU {local_rank}, but this node has {count}")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_distributed(device: torch.device, env: DistEnv | None = None, timeout_min: float = 30.0) -> DistEnv:
    """Join the process group when the world has more than one process (nccl on GPU, gloo on CPU).

    Does nothing for a single process or when a group already exists (the caller then owns it).
    """
    env = env or detect_env()
    if not env.distributed or (dist.is_available() and dist.is_initialized()):
        return env
    if not dist.is_available():
        raise LaunchError("this PyTorch build has no torch.distributed")
    os.environ.setdefault("MASTER_ADDR", env.master_addr)
    os.environ.setdefault("MASTER_PORT", str(env.master_port))
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(
        backend, rank=env.rank, world_size=env.world_size, timeout=timedelta(minutes=timeout_min), **kwargs
    )
    return env


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world() -> tuple[int, int]:
    """(rank, world size) of the current process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (a list of one without a process group)."""
    _, size = world()
    if size == 1:
        return [obj]
    out: list[Any] = [None] * size
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


class StopVote:
    """Ranks agree on stopping (pre-emption signal, time budget) without a host sync per step.

    Each step every rank contributes its local wish; the MAX over ranks decides. On CUDA the result is
    copied to pinned host memory asynchronously and read one step later, so the CPU never waits for the
    step it just launched (all ranks read the same step's value, hence stop at the same step). On a
    single process the local wish decides at once.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.size = world()[1]
        self._pending: tuple[torch.Tensor, Any] | None = None

    def __call__(self, local: bool) -> bool:
        if self.size == 1:
            return local
        flag = torch.tensor([1.0 if local else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if self.device.type != "cuda":
            return bool(flag.item())
        host = torch.empty(1, pin_memory=True)
        host.copy_(flag, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        previous, self._pending = self._pending, (host, event)
        if previous is None:
            return False
        previous[1].synchronize()
        return bool(previous[0].item())


def requeue_slurm_job() -> bool:
    """Ask SLURM to requeue this job (rank 0, after the checkpoint is written). True when it worked."""
    job = os.environ.get("SLURM_JOB_ID")
    scontrol = shutil.which("scontrol")
    if not job or scontrol is None:
        return False
    result = subprocess.run([scontrol, "requeue", job], capture_output=True, text=True, check=False)
    return result.returncode == 0


# ---------------------------------------------------------------------------------------------- SLURM
SLURM_KEYS = {
    "nodes": int,
    "gpus": int,  # per node; one task per GPU
    "cpus": int,  # per task
    "time": int,  # minutes
    "partition": str,
    "account": str,
    "qos": str,
    "constraint": str,
    "mem": str,  # per node, e.g. 400G
    "signal_delay": int,  # seconds before the time limit at which SLURM sends SIGUSR2
}


def parse_slurm_spec(text: str) -> dict[str, Any]:
    """``nodes=2,gpus=8,partition=gpu,time=1440`` -> a dict; unknown keys and bad values are errors."""
    spec: dict[str, Any] = {"nodes": 1, "gpus": 1, "cpus": 10, "time": 1440, "signal_delay": 120}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise LaunchError(f"--slurm: expected key=value, got {part!r} (keys: {', '.join(SLURM_KEYS)})")
        key, value = (s.strip() for s in part.split("=", 1))
        if key not in SLURM_KEYS:
            raise LaunchError(f"--slurm: unknown key {key!r} (keys: {', '.join(SLURM_KEYS)})")
        try:
            spec[key] = SLURM_KEYS[key](value)
        except ValueError as e:
            raise LaunchError(f"--slurm: {key}={value!r} is not an integer") from e
    for key in ("nodes", "gpus", "cpus", "time"):
        if spec[key] < 1:
            raise LaunchError(f"--slurm: {key} must be >= 1")
    return spec


def submit_slurm(cfg_dict: dict[str, Any], run_dir: str | os.PathLike, spec: dict[str, Any], job_name: str):
    """Submit the run to SLURM with submitit: ``nodes`` x ``gpus`` tasks, one per GPU. Returns the job.

    Every task calls :func:`spidrkit.training.loop.pretrain` on the same run dir; a requeued job (time
    limit: SLURM sends SIGUSR2 ``signal_delay`` s before, the run checkpoints and requeues itself) resumes
    from the latest checkpoint.
    """
    try:
        import submitit
    except ImportError as e:
        raise LaunchError("--slurm needs submitit: pip install 'spidrkit[slurm]'") from e
    folder = Path(run_dir) / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster="slurm")
    extra: dict[str, Any] = {}
    for key in ("partition", "account", "qos", "constraint", "mem"):
        if key in spec:
            extra[f"slurm_{key}"] = spec[key]
    executor.update_parameters(
        name=job_name,
        nodes=spec["nodes"],
        tasks_per_node=spec["gpus"],
        gpus_per_node=spec["gpus"],
        cpus_per_task=spec["cpus"],
        timeout_min=spec["time"],
        slurm_signal_delay_s=spec["signal_delay"],
        **extra,
    )
    return executor.submit(_slurm_task, cfg_dict, str(run_dir))


def _slurm_task(cfg_dict: dict[str, Any], run_dir: str) -> dict[str, Any]:
    from spidrkit.config import config_from_dict
    from spidrkit.training.loop import pretrain

    return pretrain(config_from_dict(cfg_dict), run_dir, resume=True, progress=False)
