"""The pretraining loop: ``pretrain(cfg, run_dir)`` trains SpidR or DinoSR and can always be resumed.

The run directory holds everything a run needs to go on after a crash, a pre-emption or a time limit
(docs/formats.md):

- ``config.toml``: the resolved config of the last invocation; ``spidrkit.json``: the sidecar (status,
  step, last checkpoint, config);
- ``checkpoints/step_XXXXXXXX.pt``: every ``train.checkpoint_every`` steps and at the end, the last
  ``train.keep_checkpoints`` kept (see :mod:`spidrkit.checkpoints.run`);
- ``metrics.jsonl``: a training record every ``train.log_every`` steps and a validation record every
  ``train.valid_every`` steps (``"split": "train"`` / ``"valid"``); ``tensorboard/`` or ``wandb/`` with
  ``train.report_to`` (:mod:`spidrkit.tracking`);
- ``skipped.tsv``: the audio files that could not be used;
- ``milestones/``: checkpoints kept for good at ``train.milestone_minutes`` / ``train.milestone_steps``
  (:mod:`spidrkit.training.milestones`).

Running the same command again resumes from the latest checkpoint (:mod:`spidrkit.training.resume`), so
the resumed run takes exactly the steps the uninterrupted run would have taken. SIGINT (Ctrl-C), SIGTERM,
SIGUSR1 and SIGUSR2 stop the run cleanly at the end of the current step with a training record and a
checkpoint (see :mod:`spidrkit.training.preemption`); under SLURM, SIGUSR1/SIGUSR2 also requeue the job.
``train.max_minutes`` stops the same way after that much wall time of this invocation. Rank 0 holds
``RUN_DIR/run.lock`` for the whole run, and the sidecar's ``status`` says how the run ended, whatever
ended it (:mod:`spidrkit.training.runfolder`).

The pieces: :mod:`~spidrkit.training.step` (one optimiser step), :mod:`~spidrkit.training.masks` (the
masks, drawn in the data loader), :mod:`~spidrkit.training.validation`, :mod:`~spidrkit.training.logging`
(metrics), :mod:`~spidrkit.training.distributed` (process group, stop vote), :mod:`~spidrkit.training.runfolder`
(lock, end status, finite weights).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from spidrkit.checkpoints.run import FORMAT, checkpoint_path, prune_checkpoints, save_checkpoint
from spidrkit.config import Config
from spidrkit.data.batches.dataset import Batch, make_train_loader, make_valid_loader
from spidrkit.data.corpora.manifest import ManifestError, read_manifest
from spidrkit.io import write_sidecar, write_text_atomic
from spidrkit.models.spidr import SpidR
from spidrkit.progress import BudgetProgress
from spidrkit.runtime import (
    LaunchError,
    Stopwatch,
    all_reduce_sum,
    barrier,
    detect_env,
    gather_objects,
    process_group_active,
    rng_state,
    seed_everything,
    select_device,
    world,
)
from spidrkit.tracking import Tracker, check_report_to, open_tracker
from spidrkit.training.distributed import StopVote, cleanup_distributed, init_distributed, requeue_slurm_job
from spidrkit.training.logging import (
    CollapseMonitor,
    IntervalMeter,
    MetricsLog,
    format_record,
    train_record,
)
from spidrkit.training.masks import MaskHook, train_hooks
from spidrkit.training.milestones import Milestones, write_milestone
from spidrkit.training.preemption import REQUEUE_SIGNALS, StopSignals, loader_batches
from spidrkit.training.resume import (
    check_same_data,
    checkpoint_rng,
    data_identity,
    find_checkpoint,
    restore_data_and_rng,
)
from spidrkit.training.runfolder import (
    TrainingDiverged,
    check_finite_weights,
    check_loss_streak,
    end_status,
    run_lock,
    start_anew_locked,
)
from spidrkit.training.step import MicroBatch, Stepper, compile_model
from spidrkit.training.validation import validation_record, validation_totals

__all__ = ["MaskHook", "Trainer", "TrainingDiverged", "compile_model", "pretrain"]

logger = logging.getLogger("spidrkit.training")


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
        if self.is_main:
            check_report_to(cfg.train.report_to)  # a missing package is said before any work
        self.tracker: Tracker = Tracker()  # the run's (train.report_to) while it runs
        self.data_identity = data_identity(cfg, self.train_entries, self.valid_entries)
        if resume:
            check_same_data(self.run_dir, self.data_identity)
        self.run_dir.mkdir(parents=True, exist_ok=True)

        found = find_checkpoint(self.run_dir, cfg, resume, self.is_main)
        self.resumed_from, ckpt = found if found else (None, None)
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
        self.data_state = restore_data_and_rng(ckpt, cfg.train.seed, self.rank, self.world_size, self.device)
        self.last_checkpoint: Path | None = self.resumed_from

        self.metrics = MetricsLog(self.run_dir, enabled=self.is_main)
        self.metrics.truncate_after(self.start_step)
        self.layers = self.model.target_layers
        self.collapse = CollapseMonitor(cfg.train.collapse_perplexity, self.layers)
        self.last_train: dict[str, Any] = dict(ckpt.get("metrics") or {}) if ckpt else {}
        self.last_valid: dict[str, Any] = {}
        self.milestones = Milestones(self.run_dir, cfg.train.milestone_minutes, cfg.train.milestone_steps,
                                     self.start_step, self.elapsed_before)
        if self.is_main:
            write_text_atomic(self.run_dir / "config.toml", cfg.to_toml())
            self._write_sidecar("running")

    # ------------------------------------------------------------------ data
    def _loaders(self) -> None:
        cfg = self.cfg
        state, strict = self.data_state
        try:
            self.loader = make_train_loader(
                self.train_entries, cfg.data, rank=self.rank, world_size=self.world_size, seed=cfg.train.seed,
                run_dir=self.run_dir, collate_hook=train_hooks(cfg, self.rank, self.world_size), start_state=state,
                strict_resume=strict)
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
        raise ManifestError(
            f"{self.cfg.data.train_manifest}: a whole epoch of batches held no usable file (data.train_manifest); "
            f"the files and why are listed in {self.run_dir / 'skipped.tsv'}: fix them or the manifest")

    def micro_batches(self, batches: list[Batch]) -> list[MicroBatch]:
        return [MicroBatch(b["wav"], b["mask"], b.get("student_wav"), b.get("warp")) for b in batches]

    # ------------------------------------------------------------------ run
    def run(self) -> dict[str, Any]:
        """Train up to ``train.max_steps`` (or a stop); returns the run summary (also in the sidecar). However
        the run ends (an error, a signal outside the loop), the sidecar's status says so."""
        try:
            return self._run()
        except BaseException as e:
            if self.is_main:
                status, sig = end_status(e)
                try:
                    self._write_sidecar(status, stop_signal=sig, error=" ".join(f"{type(e).__name__}: {e}".split()))
                except OSError as side:  # a full disk: the error that stopped the run is the one to report
                    logger.warning("could not update the sidecar: %s", side)
            raise

    def _run(self) -> dict[str, Any]:
        cfg = self.cfg.train
        step = self.stepper.step_count
        if step >= cfg.max_steps:
            logger.info("step %d >= train.max_steps=%d: nothing to do", step, cfg.max_steps)
            return self._finish("completed", step)
        self._start(step)
        status, stop_signal = "completed", None
        with StopSignals() as signals, logging_redirect_tqdm():
            bar = BudgetProgress("pretraining", max_steps=cfg.max_steps, max_minutes=cfg.max_minutes, initial=step,
                                 enabled=self.progress and self.is_main, log=logger.info)
            it = loader_batches(self.loader)
            try:
                while step < cfg.max_steps:
                    step = self._train_step(it, bar)
                    stop = self._after_step(step, bar, signals)
                    if stop is not None:
                        status, stop_signal = stop
                        break
                if status == "completed":
                    if self.valid_loader is not None and step % cfg.valid_every != 0:
                        self.validate(step)
                    if self.saved_at != step:
                        self.save(step)
            finally:
                bar.close()
                it.close()
                self.tracker.close()
                self.tracker = Tracker()
        if status == "preempted" and stop_signal in REQUEUE_SIGNALS and self.is_main and requeue_slurm_job():
            logger.warning("job %s requeued", os.environ.get("SLURM_JOB_ID"))
        barrier()
        return self._finish(status, step, stop_signal)

    def _start(self, step: int) -> None:
        """The loaders, the tracker, the stop votes and the clocks of a run going on from ``step``."""
        self._loaders()
        self.tracker = open_tracker(self.cfg.train.report_to if self.is_main else "none", self.run_dir, job="pretrain",
                                    config=self.cfg.to_dict(), purge_step=step + 1)
        self.meter = IntervalMeter()
        self.stop_vote, self.milestone_vote = StopVote(self.device), StopVote(self.device)
        self.t_start = time.monotonic()
        self.interval_start, self.pauses = time.perf_counter(), Stopwatch()  # pauses: validation and checkpoints
        self.saved_at = self.start_step if self.resumed_from else -1

    def _train_step(self, it: Iterator[Batch], bar: Any) -> int:
        """One optimiser step on the next ``train.grad_accum`` batches; returns the step count."""
        batches = [self._next_batch(it) for _ in range(self.cfg.train.grad_accum)]
        metrics = self.stepper.step(self.micro_batches(batches))
        step = self.stepper.step_count
        self.meter.add(metrics, sum(b["wav"].numel() for b in batches))
        bar.update(step)
        if self.on_step is not None:
            self.on_step(self, step)
        return step

    def _after_step(self, step: int, bar: Any, signals: StopSignals) -> tuple[str, str | None] | None:
        """The records, validation, milestones and checkpoint due at ``step``; ``(status, signal)`` when the run
        stops here (a signal or ``train.max_minutes``, the same answer on every rank), else None."""
        cfg = self.cfg.train
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            self._log(step, bar)
        if self.valid_loader is not None and step % cfg.valid_every == 0:
            with self.pauses("validate"):
                self.validate(step)
        for kind, value in self.milestones.due(step, self.elapsed(), self.milestone_vote):
            with self.pauses("save"):
                write_milestone(self.run_dir, self.metrics, kind, value, self._state(step))
        over_time = cfg.max_minutes > 0 and time.monotonic() - self.t_start > 60 * cfg.max_minutes
        stop = self.stop_vote(signals.received is not None or over_time)  # the same answer on every rank
        if stop and self.meter.steps:  # the end of a run always writes its training record
            self._log(step, bar)
        if stop or step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
            with self.pauses("save"):
                self.save(step)
            self.saved_at = step
        if not stop:
            return None
        stop_signal = signals.received
        return ("time_budget" if over_time and stop_signal is None  # else a signal, maybe another rank's
                else "interrupted" if stop_signal == "SIGINT" else "preempted"), stop_signal

    def elapsed(self) -> float:
        """Training wall time of the run so far, earlier invocations included."""
        return self.elapsed_before + time.monotonic() - self.t_start

    def _log(self, step: int, bar: Any) -> None:
        """The training record of the interval ending at ``step`` (its time less validation and checkpoints);
        then a new interval starts."""
        t, meter = time.perf_counter(), self.meter
        seconds = t - self.interval_start - sum(self.pauses.seconds.values())
        summary = meter.summary()
        counters = torch.stack([self.stepper.consecutive_nonfinite, self.stepper.total_nonfinite]).tolist()
        samples = all_reduce_sum(torch.tensor([float(meter.samples)], device=self.device)).item()
        record = train_record(step, self.loader.epoch, self.layers, summary, meter.last, elapsed=self.elapsed(),
                              audio_per_second=samples / self.cfg.data.sample_rate / max(seconds, 1e-9),
                              skipped_steps=int(counters[1]))
        self.last_train = record
        self.metrics.write(record)
        self.tracker.log_record(record, self.layers)
        if self.is_main:
            loss = math.nan if record["loss"] is None else record["loss"]
            bar.note(loss=f"{loss:.3f}", audio_s_per_s=f"{record['audio_seconds_per_second']:.1f}")
            logger.info(format_record(record))
            self.collapse.check(step, record["codebook_ppl"])
        check_loss_streak(self.run_dir, self.cfg.train.max_nonfinite, step, int(counters[0]))
        meter.reset()
        self.interval_start, self.pauses = t, Stopwatch()

    # ------------------------------------------------------------------ validation
    def validate(self, step: int) -> dict[str, Any]:
        """Loss, accuracy and perplexities on the validation batches (dropout off, training masks)."""
        assert self.valid_loader is not None
        totals = validation_totals(self.model, loader_batches(self.valid_loader), self.device, self.stepper.autocast)
        record = validation_record(totals, step, self.layers, self.elapsed())
        self.last_valid = record
        self.metrics.write(record)
        self.tracker.log_record(record, self.layers)
        if self.is_main:
            logger.info(format_record(record))
        return record

    # ------------------------------------------------------------------ checkpoints
    def _state(self, step: int) -> dict[str, Any] | None:
        """The checkpoint of ``step`` with every rank's data and RNG states (rank 0; ``None`` elsewhere)."""
        data_states, rng_states = gather_objects(self.loader.state_dict()), gather_objects(rng_state(self.device))
        if not self.is_main:
            return None
        model = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        return {"format": FORMAT, "step": step, "model": model, "config": self.cfg.to_dict(),
                "stepper": self.stepper.state_dict(), "data": data_states,
                "rng": checkpoint_rng(rng_states), "world_size": self.world_size, "elapsed": self.elapsed(),
                "metrics": self.last_train}

    def save(self, step: int) -> Path | None:
        """Write the checkpoint of ``step`` (rank 0) with every rank's data and RNG states."""
        consecutive = int(self.stepper.consecutive_nonfinite.item())
        check_loss_streak(self.run_dir, self.cfg.train.max_nonfinite, step, consecutive)
        check_finite_weights(self.model, step, self.run_dir)  # the same weights, the same answer on every rank
        state = self._state(step)
        if state is None:
            return None
        path = save_checkpoint(checkpoint_path(self.run_dir, step), state)
        prune_checkpoints(self.run_dir, self.cfg.train.keep_checkpoints, up_to=step)
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
            "steps_run": step - self.start_step,
            "max_steps": self.cfg.train.max_steps,
            "checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
            "world_size": self.world_size,
            "elapsed": self.elapsed(),
            "skipped_steps": int(self.stepper.total_nonfinite.item()),
            "train": self.last_train,
            "valid": self.last_valid,
        }

    def _write_sidecar(self, status: str, step: int | None = None, stop_signal: str | None = None,
                       **extra: Any) -> None:
        summary = self._summary(status, self.stepper.step_count if step is None else step, stop_signal)
        write_sidecar(self.run_dir, kind="pretraining run", variant=self.cfg.variant,
                      config=self.cfg.to_dict(), data=self.data_identity, **summary, **extra)

    def _finish(self, status: str, step: int, stop_signal: str | None = None) -> dict[str, Any]:
        if self.is_main:
            self._write_sidecar(status, step, stop_signal)
            logger.info("%s at step %d; last checkpoint %s", status, step, self.last_checkpoint)
        return self._summary(status, step, stop_signal)


def pretrain(
    cfg: Config, run_dir: str | os.PathLike, resume: bool = True, progress: bool = True, force: bool = False,
    fresh: bool = False,
) -> dict[str, Any]:
    """Pretrain from ``cfg`` into ``run_dir`` (resuming from its latest checkpoint when there is one; ``fresh``:
    its checkpoints, milestones and metrics are deleted first, once the process group is up and rank 0 holds
    the lock, and every rank waits for that: ``spidrkit pretrain --fresh``).

    Started by torchrun or SLURM (several processes), it joins the process group from the environment
    (see :mod:`spidrkit.training.distributed`). Rank 0 holds ``RUN_DIR/run.lock`` meanwhile: a run folder
    in use by another live process raises :class:`~spidrkit.errors.LockHeldError` unless ``force``.
    Returns the summary: ``status`` ("completed", "time_budget", "preempted" or "interrupted"), ``signal``,
    ``step``, ``steps_run`` (by this call), ``checkpoint``, the last ``train`` and ``valid`` records.
    Raises :class:`TrainingDiverged` after ``train.max_nonfinite`` non-finite losses in a row or on
    non-finite weights at checkpoint time.
    """
    env = detect_env()
    try:
        device = select_device(cfg.train.device, env.local_rank)
    except LaunchError as e:
        raise LaunchError(f"train.device = {cfg.train.device!r}: {e}") from e
    owns_group = env.distributed and not process_group_active()
    init_distributed(device, env)
    try:
        with run_lock(run_dir, device, force=force):
            if fresh:
                start_anew_locked(run_dir)
            return Trainer(cfg, run_dir, device, resume=resume, progress=progress).run()
    finally:
        if owns_group:
            cleanup_distributed()
