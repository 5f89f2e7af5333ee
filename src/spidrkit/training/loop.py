"""The pretraining loop: ``pretrain(cfg, run_dir)`` trains SpidR or DinoSR and can always be resumed.

The run directory holds everything a run needs to go on after a crash, a pre-emption or a time limit:

- ``config.toml``: the resolved config of the last invocation; ``spidrkit.json``: the sidecar (status,
  step, last checkpoint, config);
- ``checkpoints/step_XXXXXXXX.pt``: every ``train.checkpoint_every`` steps and at the end, the last
  ``train.keep_checkpoints`` kept (see :mod:`spidrkit.checkpoints.run`);
- ``metrics.jsonl``: a training record every ``train.log_every`` steps and a validation record every
  ``train.valid_every`` steps (``"split": "train"`` / ``"valid"``); ``tensorboard/`` when installed;
- ``skipped.tsv``: the audio files that could not be used.

Running the same command again resumes from the latest checkpoint: model, optimiser, codebooks, batch
sampler position, masks and RNG states, so the resumed run takes exactly the steps the uninterrupted run
would have taken. SIGTERM, SIGUSR1 and SIGUSR2 stop the run cleanly at the end of the current step with
a checkpoint (exit status 0); under SLURM, SIGUSR1/SIGUSR2 (sent before the time limit, e.g. with
``--signal=USR1@120``) also requeue the job. ``train.max_minutes`` stops the same way after that much
wall time of this invocation.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.contrib.logging import logging_redirect_tqdm

from spidrkit.checkpoints.run import (
    FORMAT,
    CheckpointError,
    checkpoint_path,
    list_checkpoints,
    load_latest,
    prune_checkpoints,
    save_checkpoint,
)
from spidrkit.config import Config
from spidrkit.data.dataset import Batch, make_train_loader, make_valid_loader
from spidrkit.data.manifest import ManifestError, read_manifest
from spidrkit.io import write_sidecar
from spidrkit.models.layers import num_frames
from spidrkit.models.masking import sample_mask
from spidrkit.models.spidr import SpidR, step_perplexities
from spidrkit.runtime import rng_state, set_rng_state
from spidrkit.training.distributed import (
    StopVote,
    barrier,
    cleanup_distributed,
    detect_env,
    gather_objects,
    init_distributed,
    requeue_slurm_job,
    select_device,
    world,
)
from spidrkit.training.logging import (
    CollapseMonitor,
    IntervalMeter,
    MetricsLog,
    TensorBoard,
    format_record,
    json_value,
    progress_bar,
)
from spidrkit.training.resume import config_changes
from spidrkit.training.step import MicroBatch, Stepper, all_reduce_sum

logger = logging.getLogger("spidrkit.training")

STOP_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")
REQUEUE_SIGNALS = ("SIGUSR1", "SIGUSR2")  # time-limit warnings: the job should come back


class TrainingDiverged(RuntimeError):
    """Too many non-finite losses in a row; the message names the last good checkpoint."""


# ------------------------------------------------------------------------------------------- masks
@dataclass(frozen=True)
class MaskHook:
    """Adds ``batch["mask"]`` in the data loader (the host, the workers): masks never cost the device.

    The mask RNG is a function of where the batch is: (seed, stream, epoch, global batch index), with the
    global index ``position * world_size + rank``. Resumed runs thus draw the same masks, and one process
    with ``grad_accum = W`` draws the masks that W processes draw (same batches, same masks).
    """

    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    prob: float
    length: int
    min_masks: int
    seed: int
    rank: int = 0
    world_size: int = 1
    stream: int = 0  # 0: training, 1: validation

    @classmethod
    def from_config(cls, cfg: Config, rank: int = 0, world_size: int = 1, stream: int = 0) -> MaskHook:
        m = cfg.masking
        return cls(
            cfg.model.conv_kernels, cfg.model.conv_strides, m.prob, m.length, m.min_masks, cfg.train.seed,
            rank, world_size, stream,
        )

    def __call__(self, batch: Batch) -> Batch:
        B, L = batch["wav"].shape
        epoch, position = batch["index"]
        key = [self.seed, self.stream, int(epoch), int(position) * self.world_size + self.rank]
        rng = np.random.default_rng(np.random.SeedSequence(key))
        T = num_frames(L, self.kernels, self.strides)
        batch["mask"] = sample_mask(B, T, self.prob, self.length, self.min_masks, rng)
        return batch


# ------------------------------------------------------------------------------------------- signals
class StopSignals:
    """Context manager: SIGTERM/SIGUSR1/SIGUSR2 set ``received`` instead of killing the process.

    Handlers are installed only from the main thread and restored on exit.
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:  # a forked child that inherited the handler: not its business
            return
        name = signal.Signals(signum).name
        if self.received is None:
            logger.warning("%s received: stopping with a checkpoint at the end of this step", name)
        self.received = name

    def __enter__(self) -> StopSignals:
        self._pid = os.getpid()
        if threading.current_thread() is threading.main_thread():
            for name in STOP_SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


# ------------------------------------------------------------------------------------------- model
def compile_model(model: SpidR, recompile_limit: int = 64) -> None:
    """Regional ``torch.compile``: each Transformer block and downsampler layer is compiled on its own (in
    place, so state-dict names do not change), with dynamic shapes from the start. (The positional
    convolution, under 1 % of the FLOPs, stays eager: its grouped convolutions recompile per length.)

    All blocks share their compiled graphs and the model is never traced whole: layer drop only skips
    calls, and new batch sizes and lengths reuse the dynamic graphs. A few variants per region remain
    (training with gradients, the no-grad teacher, evaluation; the kernel size of each downsampler layer;
    batches of one), more than dynamo's default of 8 per function, hence the higher ``recompile_limit``.
    """
    import torch._dynamo

    conf = torch._dynamo.config
    name = "recompile_limit" if hasattr(conf, "recompile_limit") else "cache_size_limit"
    setattr(conf, name, max(getattr(conf, name), recompile_limit))
    for enc in (model.student, model.teacher):
        for block in enc.layers:
            block.compile(dynamic=True)
    for layer in model.feature_extractor.conv_layers:
        layer.compile(dynamic=True)


@contextlib.contextmanager
def signals_blocked(names: tuple[str, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Block these signals in the calling thread (and in processes forked meanwhile, which inherit it)."""
    sigs = {getattr(signal, n) for n in names if hasattr(signal, n)}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def loader_batches(loader: Iterable[Batch]) -> Iterator[Batch]:
    """Iterate over a data loader without disturbing the training process's RNG or signals.

    - Every fetch runs on a copy of the CPU RNG: a DataLoader draws its base seed from the global RNG when
      it starts, so a resumed run (whose loader starts at the resume step) would otherwise draw dropout
      masks shifted against the uninterrupted run. (The data's own randomness, crops and masks, is keyed
      by the batch position and never drawn from the global RNG.)
    - The first fetch, which forks the worker processes, runs with the stop signals blocked: the workers
      inherit that mask, so the SIGTERM that SLURM sends to every process of a job does not kill them
      under the main process while it finishes its step and writes the checkpoint. (They still exit when
      the loader shuts them down or the main process dies.)
    """
    it = iter(loader)
    first = True
    while True:
        with torch.random.fork_rng(devices=[]), signals_blocked() if first else contextlib.nullcontext():
            try:
                item = next(it)
            except StopIteration:
                return
        first = False
        yield item


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------- trainer
class Trainer:
    """One process of a pretraining run (the process group, if any, is already set up).

    ``on_step(trainer, step)`` is called after every optimiser step (tests use it to send signals).
    """

    def __init__(
        self,
        cfg: Config,
        run_dir: str | os.PathLike,
        device: torch.device | str = "cpu",
        resume: bool = True,
        progress: bool = True,
        on_step: Callable[[Trainer, int], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = torch.device(device)
        self.progress = progress
        self.on_step = on_step
        self.rank, self.world_size = world()
        self.is_main = self.rank == 0
        if not cfg.data.train_manifest:
            raise ValueError("data.train_manifest is not set (--set data.train_manifest=PATH)")
        self.train_entries = read_manifest(cfg.data.train_manifest)
        self.valid_entries = read_manifest(cfg.data.valid_manifest) if cfg.data.valid_manifest else []
        self.run_dir.mkdir(parents=True, exist_ok=True)

        ckpt = self._find_checkpoint(resume)
        self.start_step = int(ckpt["step"]) if ckpt else 0
        self.elapsed_before = float(ckpt.get("elapsed", 0.0)) if ckpt else 0.0
        self.t_start = time.monotonic()

        seed_everything(cfg.train.seed)  # the same initial weights on every rank
        self.model = SpidR(cfg.model)
        if ckpt:
            self.model.load_state_dict(ckpt["model"])
        self.model.to(self.device)
        if cfg.train.compile:
            compile_model(self.model)
        self.stepper = Stepper(self.model, cfg, self.device, step=self.start_step)
        if ckpt:
            self.stepper.load_state_dict(ckpt["stepper"])
        self.data_state = self._restore_data_and_rng(ckpt)
        self.last_checkpoint: Path | None = self.resumed_from

        self.metrics = MetricsLog(self.run_dir, enabled=self.is_main)
        self.metrics.truncate_after(self.start_step)
        self.layers = self.model.target_layers
        self.collapse = CollapseMonitor(cfg.train.collapse_perplexity, self.layers)
        self.last_train: dict[str, Any] = dict(ckpt.get("metrics") or {}) if ckpt else {}
        self.last_valid: dict[str, Any] = {}
        if self.is_main:
            tmp = self.run_dir / f".config.toml.tmp{os.getpid()}"
            tmp.write_text(cfg.to_toml())
            os.replace(tmp, self.run_dir / "config.toml")
            self._write_sidecar("running")

    # ------------------------------------------------------------------ resume
    def _find_checkpoint(self, resume: bool) -> dict[str, Any] | None:
        self.resumed_from = None
        if not list_checkpoints(self.run_dir):
            return None
        if not resume:
            raise CheckpointError(
                f"{self.run_dir} already holds checkpoints (up to {list_checkpoints(self.run_dir)[-1][1].name}); "
                "resume from them or choose another run directory"
            )
        found = load_latest(self.run_dir)
        if found is None:
            raise CheckpointError(f"no readable checkpoint in {self.run_dir / 'checkpoints'}")
        path, ckpt = found
        if ckpt.get("format") != FORMAT:
            raise CheckpointError(f"{path}: format {ckpt.get('format')!r}, expected {FORMAT!r}")
        fatal, harmless = config_changes(ckpt["config"], self.cfg)
        if fatal:
            raise CheckpointError(
                f"{path} was trained with another model; cannot resume with: " + "; ".join(fatal)
            )
        if harmless and self.is_main:
            logger.warning("resuming with changed settings: %s", "; ".join(harmless))
        self.resumed_from = path
        if self.is_main:
            logger.info("resuming from %s (step %d)", path, ckpt["step"])
        return ckpt

    def _restore_data_and_rng(self, ckpt: dict[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
        """Restore this rank's RNG states; returns its batch-sampler state and whether it resumes exactly."""
        seed = self.cfg.train.seed
        if ckpt is None:
            seed_everything(seed + 1000 * self.rank)  # dropout differs across ranks
            return None, True
        if int(ckpt.get("world_size", 1)) == self.world_size:
            set_rng_state(ckpt["rng"][self.rank], self.device)
            return ckpt["data"][self.rank], True
        logger.warning(
            "the checkpoint was written by %s processes, this run has %s: the data order restarts at the "
            "next epoch and the RNGs are re-seeded", ckpt.get("world_size"), self.world_size,
        )
        seed_everything(seed + 1000 * self.rank + 7919 * self.start_step)
        return ckpt["data"][0], False

    # ------------------------------------------------------------------ data
    def _loaders(self) -> None:
        cfg = self.cfg
        state, strict = self.data_state
        try:
            self.loader = make_train_loader(
                self.train_entries, cfg.data, self.rank, self.world_size, cfg.train.seed, self.run_dir,
                collate_hook=MaskHook.from_config(cfg, self.rank, self.world_size, 0),
                start_state=state, strict_resume=strict,
            )
        except ValueError as e:  # no usable file, too few batches, a changed data set under a resume
            raise ManifestError(f"{cfg.data.train_manifest}: {e}") from e
        self.valid_loader = None
        if self.valid_entries and cfg.train.valid_every > 0:
            try:
                self.valid_loader = make_valid_loader(
                    self.valid_entries, cfg.data, self.rank, self.world_size, self.run_dir,
                    collate_hook=MaskHook.from_config(cfg, self.rank, self.world_size, 1),
                    max_batches=cfg.train.valid_batches or None,
                )
            except ValueError as e:
                raise ManifestError(f"{cfg.data.valid_manifest}: {e}") from e

    def _next_batch(self, it: Iterator[Batch]) -> Batch:
        """The next batch with at least one usable file (all-bad batches are passed over)."""
        for _ in range(max(self.loader.batches_per_epoch, 1) + 1):
            batch = next(it)
            if batch is not None and len(batch["fileids"]) > 0:
                return batch
        raise RuntimeError(f"a whole epoch of batches held no usable file; see {self.run_dir / 'skipped.tsv'}")

    def micro_batches(self, batches: list[Batch]) -> list[MicroBatch]:
        return [MicroBatch(b["wav"], b["mask"]) for b in batches]

    # ------------------------------------------------------------------ run
    def run(self) -> dict[str, Any]:
        """Train up to ``train.max_steps`` (or a stop); returns the run summary (also in the sidecar)."""
        cfg = self.cfg.train
        step = self.stepper.step_count
        if step >= cfg.max_steps:
            logger.info("step %d >= train.max_steps=%d: nothing to do", step, cfg.max_steps)
            return self._finish("completed", step)
        self._loaders()
        self.tensorboard = TensorBoard(self.run_dir, enabled=self.is_main, purge_step=step + 1)
        meter = IntervalMeter()
        vote = StopVote(self.device)
        self.t_start = time.monotonic()
        interval_start, paused = self.t_start, 0.0
        saved_at = self.start_step if self.resumed_from else -1
        status, stop_signal = "completed", None
        with StopSignals() as signals, logging_redirect_tqdm():
            bar = progress_bar(cfg.max_steps, step, self.progress and self.is_main)
            it = loader_batches(self.loader)
            try:
                while step < cfg.max_steps:
                    batches = [self._next_batch(it) for _ in range(cfg.grad_accum)]
                    metrics = self.stepper.step(self.micro_batches(batches))
                    step = self.stepper.step_count
                    meter.add(metrics, sum(b["wav"].numel() for b in batches))
                    bar.update(1)
                    if self.on_step is not None:
                        self.on_step(self, step)

                    if step % cfg.log_every == 0 or step == cfg.max_steps:
                        t = time.monotonic()
                        self._log(step, meter, t - interval_start - paused, bar)
                        meter.reset()
                        interval_start, paused = t, 0.0
                    if self.valid_loader is not None and step % cfg.valid_every == 0:
                        paused += self._timed(self.validate, step)

                    over_time = cfg.max_minutes > 0 and time.monotonic() - self.t_start > 60 * cfg.max_minutes
                    stop = vote(signals.received is not None or over_time)  # the same answer on every rank
                    if stop or step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                        paused += self._timed(self.save, step)
                        saved_at = step
                    if stop:
                        stop_signal = signals.received
                        status = "time_budget" if over_time and stop_signal is None else "preempted"
                        break
                if status == "completed":
                    if self.valid_loader is not None and step % cfg.valid_every != 0:
                        self.validate(step)
                    if saved_at != step:
                        self.save(step)
            except TrainingDiverged:
                if self.is_main:
                    self._write_sidecar("diverged", step)
                raise
            finally:
                bar.close()
                it.close()
                self.tensorboard.close()
        if status == "preempted" and stop_signal in REQUEUE_SIGNALS and self.is_main and requeue_slurm_job():
            logger.warning("job %s requeued", os.environ.get("SLURM_JOB_ID"))
        barrier()
        return self._finish(status, step, stop_signal)

    @staticmethod
    def _timed(fn: Callable[[int], Any], step: int) -> float:
        t = time.monotonic()
        fn(step)
        return time.monotonic() - t

    def elapsed(self) -> float:
        """Training wall time of the run so far, earlier invocations included."""
        return self.elapsed_before + time.monotonic() - self.t_start

    def _log(self, step: int, meter: IntervalMeter, seconds: float, bar: Any) -> None:
        summary = meter.summary()
        counters = torch.stack([self.stepper.consecutive_nonfinite, self.stepper.total_nonfinite]).tolist()
        samples = all_reduce_sum(torch.tensor([float(meter.samples)], device=self.device)).item()
        last = meter.last
        record = {
            "split": "train",
            "step": step,
            "epoch": self.loader.epoch,
            "layers": list(self.layers),
            "loss": summary["loss"],
            "loss_per_layer": summary["loss_per_layer"],
            "accuracy": summary["accuracy"],
            "codebook_ppl": summary["codebook_ppl"],
            "prediction_ppl": summary["prediction_ppl"],
            "grad_norm": summary["grad_norm"],
            "masked_fraction": summary["masked_fraction"],
            "lr": float(last["lr"]),
            "teacher_decay": float(last["teacher_decay"]),
            "audio_seconds_per_second": samples / self.cfg.data.sample_rate / max(seconds, 1e-9),
            "skipped_steps": int(counters[1]),
            "elapsed": self.elapsed(),
        }
        self.last_train = record
        self.metrics.write(record)
        self.tensorboard.write(record, self.layers)
        if self.is_main:
            loss = math.nan if record["loss"] is None else record["loss"]
            bar.set_postfix(loss=f"{loss:.3f}",
                            audio_s_per_s=f"{record['audio_seconds_per_second']:.1f}", refresh=False)
            logger.info(format_record(record))
            self.collapse.check(step, record["codebook_ppl"])
        self._check_nonfinite(step, int(counters[0]))

    def _check_nonfinite(self, step: int, consecutive: int) -> None:
        limit = self.cfg.train.max_nonfinite
        if limit <= 0 or consecutive < limit:
            return
        good = [(s, p) for s, p in list_checkpoints(self.run_dir) if s <= step - consecutive]
        where = f"{good[-1][1]} (step {good[-1][0]})" if good else "none (the run diverged before its first checkpoint)"
        raise TrainingDiverged(
            f"{consecutive} non-finite losses in a row up to step {step} (train.max_nonfinite={limit}); "
            f"stopping. The last good checkpoint is {where}. Lower optim.lr or use train.precision='fp32', "
            "then resume from it (move newer checkpoints away)."
        )

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self, step: int) -> dict[str, Any]:
        """Loss, accuracy and perplexities on the validation batches (dropout off, training masks)."""
        assert self.valid_loader is not None
        K, V = self.model.cfg.num_codebooks, self.model.cfg.codebook_size
        acc = {
            "ce_sum": torch.zeros(K, device=self.device),
            "num_masked": torch.zeros((), device=self.device),
            "counts": torch.zeros(K, V, device=self.device),
            "correct": torch.zeros(K, device=self.device),
            "prob_sum": torch.zeros(K, V, device=self.device),
            "frames": torch.zeros((), device=self.device),
            "batches": torch.zeros((), device=self.device),
        }
        self.model.eval()
        try:
            for batch in loader_batches(self.valid_loader):
                if batch is None or not batch["fileids"]:
                    continue
                wav = batch["wav"].to(self.device, non_blocking=True)
                mask = batch["mask"].to(self.device, non_blocking=True)
                with self.stepper.autocast():
                    out = self.model(wav, mask)
                for k in ("ce_sum", "num_masked", "counts", "correct", "prob_sum"):
                    acc[k] += out[k].float()
                acc["frames"] += mask.numel()
                acc["batches"] += 1
        finally:
            self.model.train()
        keys = list(acc)
        flat = all_reduce_sum(torch.cat([acc[k].reshape(-1) for k in keys]))
        red, offset = {}, 0
        for k in keys:
            red[k] = flat[offset : offset + acc[k].numel()].view_as(acc[k])
            offset += acc[k].numel()
        n = red["num_masked"].clamp_min(1.0)
        cb_ppl, pred_ppl = step_perplexities(red)
        record = {
            "split": "valid",
            "step": step,
            "layers": list(self.layers),
            "valid_loss": red["ce_sum"].sum() / (K * n),
            "valid_loss_per_layer": red["ce_sum"] / n,
            "valid_accuracy": red["correct"] / n,
            "valid_codebook_ppl": cb_ppl,
            "valid_prediction_ppl": pred_ppl,
            "valid_masked_fraction": red["num_masked"] / red["frames"].clamp_min(1.0),
            "valid_batches": int(red["batches"].item()),
            "elapsed": self.elapsed(),
        }
        record = json_value(record)
        self.last_valid = record
        self.metrics.write(record)
        self.tensorboard.write(record, self.layers)
        if self.is_main:
            logger.info(format_record(record))
        return record

    # ------------------------------------------------------------------ checkpoints
    def save(self, step: int) -> Path | None:
        """Write the checkpoint of ``step`` (rank 0) with every rank's data and RNG states."""
        consecutive = int(self.stepper.consecutive_nonfinite.item())
        self._check_nonfinite(step, consecutive)
        data_states = gather_objects(self.loader.state_dict())
        rng_states = gather_objects(rng_state(self.device))
        if not self.is_main:
            return None
        state = {
            "format": FORMAT,
            "step": step,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "config": self.cfg.to_dict(),
            "stepper": self.stepper.state_dict(),
            "data": data_states,
            "rng": [{k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in r.items()} for r in rng_states],
            "world_size": self.world_size,
            "elapsed": self.elapsed(),
            "metrics": self.last_train,
        }
        path = save_checkpoint(checkpoint_path(self.run_dir, step), state)
        prune_checkpoints(self.run_dir, self.cfg.train.keep_checkpoints)
        self.last_checkpoint = path
        self._write_sidecar("running", step)
        logger.info("step %d: checkpoint %s", step, path)
        return path

    # ------------------------------------------------------------------ summary
    def _summary(self, status: str, step: int, stop_signal: str | None = None) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "status": status,
            "signal": stop_signal,
            "step": step,
            "max_steps": self.cfg.train.max_steps,
            "checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
            "world_size": self.world_size,
            "elapsed": self.elapsed(),
            "skipped_steps": int(self.stepper.total_nonfinite.item()),
            "train": self.last_train,
            "valid": self.last_valid,
        }

    def _write_sidecar(self, status: str, step: int | None = None, stop_signal: str | None = None) -> None:
        summary = self._summary(status, self.stepper.step_count if step is None else step, stop_signal)
        write_sidecar(self.run_dir, kind="pretraining run", variant=self.cfg.variant,
                      config=self.cfg.to_dict(), **summary)

    def _finish(self, status: str, step: int, stop_signal: str | None = None) -> dict[str, Any]:
        if self.is_main:
            self._write_sidecar(status, step, stop_signal)
            logger.info("%s at step %d; last checkpoint %s", status, step, self.last_checkpoint)
        return self._summary(status, step, stop_signal)


def pretrain(
    cfg: Config, run_dir: str | os.PathLike, resume: bool = True, progress: bool = True
) -> dict[str, Any]:
    """Pretrain from ``cfg`` into ``run_dir`` (resuming from its latest checkpoint when there is one).

    Started by torchrun or SLURM (several processes), it joins the process group from the environment
    (see :mod:`spidrkit.training.distributed`). Returns the summary: ``status`` ("completed",
    "time_budget" or "preempted"), ``step``, ``checkpoint``, the last ``train`` and ``valid`` records.
    Raises :class:`TrainingDiverged` after ``train.max_nonfinite`` non-finite losses in a row.
    """
    env = detect_env()
    device = select_device(cfg.train.device, env.local_rank)
    owns_group = env.distributed and not (dist.is_available() and dist.is_initialized())
    init_distributed(device, env)
    try:
        return Trainer(cfg, run_dir, device, resume=resume, progress=progress).run()
    finally:
        if owns_group:
            cleanup_distributed()
