"""Where this process runs: rank and world size, the device, seeding, reductions over ranks, stage timing (how
progress is shown lives in :mod:`spidrkit.progress`).

One process per device. The rank and world size come, in this order, from what the caller passes, from
an initialised ``torch.distributed`` process group, from torchrun's variables (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), or from SLURM's (``SLURM_PROCID``, ``SLURM_NTASKS``,
``SLURM_LOCALID``; the first host of ``SLURM_JOB_NODELIST`` is the master, the port is derived from
``SLURM_JOB_ID`` unless ``MASTER_PORT`` is set). A single SLURM task (an interactive ``salloc`` shell) is
one process. Joining a process group lives in :mod:`spidrkit.training.distributed`, the SLURM launcher in
:mod:`spidrkit.training.slurm`.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from spidrkit.errors import InputError

DEFAULT_PORT = 29500
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class LaunchError(InputError):
    """The process environment (ranks, devices, launcher variables) is wrong; the message says what to fix."""


# ------------------------------------------------------------------------------------- rank and world
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
    return prefix + ranges.split(",")[0].split("-")[0]


def detect_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """The process's place from torchrun's or SLURM's variables (torchrun wins); one process otherwise."""
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


def process_group_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> tuple[int, int]:
    """(rank, world size) of the current process group; (0, 1) without one."""
    if process_group_active():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def resolve_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: as given, else the process group's, else the launcher's variables
    (:func:`detect_env`), else ``(0, 1)``."""
    if rank is None and world_size is None:
        if process_group_active():
            return world()
        env = detect_env()
        rank, world_size = env.rank, env.world_size
    rank = 0 if rank is None else int(rank)
    world_size = 1 if world_size is None else int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise LaunchError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return rank, world_size


# ---------------------------------------------------------------------------------------------- device
def default_device_name() -> str:
    """What ``auto`` means, everywhere (the CLI's ``--device`` default included): ``cuda`` when a GPU is
    visible, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def select_device(name: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """The device to run on.

    ``auto``/``None``: this process's GPU when CUDA is available, else the CPU. ``cpu``. ``cuda``: this
    process's GPU (``local_rank``, else ``LOCAL_RANK``/``SLURM_LOCALID``, else 0); ``cuda:N``: that GPU.
    Asking for CUDA without a visible GPU, or for a GPU the node does not have, is a :class:`LaunchError`.
    """
    name = "auto" if name is None else name
    if isinstance(name, str) and name not in ("auto", "cpu") and not name.startswith("cuda"):
        raise LaunchError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if name == "auto":
        name = default_device_name()
    device = torch.device(name)
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise LaunchError(f"device must be the CPU or a CUDA GPU, got {device}")
    if not torch.cuda.is_available():
        raise LaunchError("CUDA was asked for but no CUDA device is visible (use device 'cpu')")
    index = device.index
    if index is None:
        if local_rank is None:
            local = os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID"))
            local_rank = int(local) if local and local.isdigit() else 0
        index = local_rank
    count = torch.cuda.device_count()
    if index >= count:
        raise LaunchError(f"GPU {index} asked for, but this node has {count}")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def parse_dtype(value: str | torch.dtype, allowed: tuple[str, ...] = ("float32", "float16")) -> str:
    """The name (``float32``...) of a dtype given by name or as a ``torch.dtype``, one of ``allowed``."""
    names = {v: k for k, v in DTYPES.items()}
    name = names.get(value, value) if isinstance(value, torch.dtype) else value
    if name not in allowed:
        raise ValueError(f"dtype must be one of {', '.join(allowed)}, got {value!r}")
    return name


# ---------------------------------------------------------------------------------- seeds, reductions
def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The process's RNG states as tensors and lists (``weights_only``-loadable)."""
    py = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {
            "key": np_state["state"]["key"].tolist(),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np.asarray(n["key"], dtype=np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(state["torch"].cpu())
    if device is not None and device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over the ranks, in place (nothing without a process group of more than one)."""
    if process_group_active() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_dict(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sum every tensor of ``tensors`` over the ranks in one collective (flatten, reduce, unflatten);
    returns new tensors of the same shapes (float, on the tensors' device)."""
    keys = list(tensors)
    if not keys:
        return {}
    flat = all_reduce_sum(torch.cat([tensors[k].float().reshape(-1) for k in keys]))
    out, offset = {}, 0
    for k in keys:
        n = tensors[k].numel()
        out[k] = flat[offset : offset + n].view(tensors[k].shape)
        offset += n
    return out


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def gather_objects(obj: object) -> list[object]:
    """Every rank's ``obj``, in rank order, on every rank (a list of one without a process group)."""
    _, size = world()
    if size == 1:
        return [obj]
    out: list[object] = [None] * size
    dist.all_gather_object(out, obj)
    return out


# --------------------------------------------------------------------------------------------- timing
@dataclass
class Stopwatch:
    """Wall-clock seconds per named stage; a stage timed twice adds up. ``with watch("extract"): ...``"""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    def rounded(self, digits: int = 2) -> dict[str, float]:
        return {k: round(v, digits) for k, v in self.seconds.items()}
