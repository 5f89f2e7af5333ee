"""Joining and leaving the process group of a pretraining run, agreeing on a stop, requeueing under SLURM.

One process per device; where each process stands (rank, world size, rendezvous address) comes from
torchrun's or SLURM's variables (:func:`spidrkit.runtime.detect_env`). The backend is nccl on GPUs and
gloo on CPUs. Submitting a run to SLURM lives in :mod:`spidrkit.training.slurm`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from spidrkit.runtime import DistEnv, LaunchError, detect_env, process_group_active, world


def init_distributed(device: torch.device, env: DistEnv | None = None, timeout_min: float = 30.0) -> DistEnv:
    """Join the process group when the world has more than one process (nccl on GPU, gloo on CPU).

    Does nothing for a single process or when a group already exists (the caller then owns it).
    """
    env = env or detect_env()
    if not env.distributed or process_group_active():
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
    """Leave the process group, if there is one."""
    if process_group_active():
        dist.destroy_process_group()


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
