"""Submitting a pretraining run to SLURM with submitit (an optional dependency, imported only then).

``spidrkit pretrain ... --slurm nodes=2,gpus=8`` submits ``nodes`` x ``gpus`` tasks, one per GPU; every
task runs :func:`spidrkit.training.loop.pretrain` on the same run directory and joins the process group
from SLURM's variables (:func:`spidrkit.runtime.detect_env`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spidrkit.config import config_from_dict
from spidrkit.lazy import install_hint
from spidrkit.runtime import LaunchError
from spidrkit.training.loop import pretrain

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
        raise LaunchError(f"--slurm needs {install_hint('submitit')}") from e
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
    """What each SLURM task runs: the run, resumed from its latest checkpoint when there is one. A requeued
    job (``SLURM_RESTART_COUNT`` > 0) takes over the run folder's lock of its earlier incarnation, which
    may have been killed on another host (a lock of another host is never judged stale from here)."""
    requeued = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
    return pretrain(config_from_dict(cfg_dict), run_dir, resume=True, progress=False, force=requeued)
