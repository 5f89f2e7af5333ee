"""Training a unit LM: ``spidrkit lm train UNITS... --config opt125m|tiny -o RUN_DIR`` and :func:`train`.

The run folder (``docs/formats.md``, "Unit LM run folder"): ``config.toml``, ``vocab.json``,
``metrics.jsonl``, ``spidrkit.json`` (the run's sidecar), ``run.lock`` while it runs,
``checkpoints/step_XXXXXXXX.pt`` (the training state: weights, AdamW, RNG, counters), and the model folders
``best/`` (lowest validation loss) and ``last/`` that :func:`spidrkit.lm.load_lm` reads. Run the same
command again to resume: the newest checkpoint is loaded and the run continues exactly as if it had not
stopped (batches are a function of the step, RNG states are restored, metrics after the checkpoint are
dropped). Ctrl-C or SIGTERM writes a checkpoint of the last completed step before the run stops.
``train.report_to`` (``--report-to``) also sends the records to TensorBoard or wandb (:mod:`spidrkit.tracking`).

One process per device; under ``torchrun`` each process joins the process group (nccl on GPUs, gloo on
CPUs, with ``torch.distributed`` directly: the pretraining engine's helper lives in a layer above),
reads its own share of every step's micro-batches, and gradients are averaged by DDP.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from spidrkit.config.errors import ConfigError
from spidrkit.errors import Diverged, Terminated
from spidrkit.io import (
    atomic_write,
    hold_lock,
    metrics_line,
    read_metrics,
    remove_stale_temps,
    write_lines_atomic,
    write_sidecar,
    write_text_atomic,
)
from spidrkit.lm.config import LMConfig, LMOptimConfig, load_lm_config
from spidrkit.lm.data import IGNORE, Batcher, choose_k, encode_corpus, read_corpus, split_valid, valid_batches
from spidrkit.lm.identity import RunInputs, check_disjoint, check_same_run, run_inputs
from spidrkit.lm.model import build_model, save_model_dir
from spidrkit.lm.vocab import UnitVocab, VocabError
from spidrkit.progress import BudgetProgress
from spidrkit.runtime import (
    all_reduce_dict,
    detect_env,
    process_group_active,
    rng_state,
    seed_everything,
    select_device,
    set_rng_state,
)
from spidrkit.tracking import Tracker, check_report_to, open_tracker

CHECKPOINTS = "checkpoints"


class LMDiverged(Diverged):
    """The training loss became NaN or infinite (``spidrkit lm train`` exits 3; the newest checkpoint
    is intact)."""


def lr_at(o: LMOptimConfig, step: int, max_steps: int) -> float:
    """The learning rate of update ``step`` (0-based): linear warm-up to ``o.lr`` over ``o.warmup_steps``,
    then constant, or a linear / cosine decay to ``o.final_lr_scale * o.lr`` at ``max_steps``."""
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    t = min(1.0, (step - o.warmup_steps) / max(1, max_steps - o.warmup_steps))
    shape = 1.0 - t if o.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * t))
    return o.lr * (o.final_lr_scale + (1.0 - o.final_lr_scale) * shape)


def _first_difference(a: LMConfig, b: LMConfig) -> str:
    for section, values in a.to_dict().items():
        for key, value in values.items():
            if b.to_dict()[section][key] != value:
                return f"{section}.{key} = {value!r} there, {b.to_dict()[section][key]!r} now"
    return ""


def _checkpoint_paths(run_dir: Path) -> list[Path]:
    return sorted((run_dir / CHECKPOINTS).glob("step_*.pt"))


def _join_process_group(device: torch.device) -> int:
    """(world size) after joining torchrun's process group, if this process is one of several."""
    env = detect_env()
    if env.distributed and not process_group_active():
        for name, value in (("MASTER_ADDR", env.master_addr), ("MASTER_PORT", str(env.master_port))):
            os.environ.setdefault(name, value)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=env.rank,
                                world_size=env.world_size)
    return env.world_size


def _optimizer(model: torch.nn.Module, o: LMOptimConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices only (not on biases, LayerNorms)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=o.lr, betas=o.betas, eps=o.eps)


def _sum_loss(model: Any, batch: dict[str, torch.Tensor], device: torch.device, bf16: bool) -> torch.Tensor:
    """Summed next-token cross-entropy of a batch (labels -100 on padding, the first token never predicted)."""
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten(),
                           ignore_index=IGNORE, reduction="sum")


@torch.no_grad()
def evaluate(model: Any, batches: Sequence[dict[str, torch.Tensor]], device: torch.device, bf16: bool,
             rank: int = 0, world_size: int = 1) -> tuple[float, int]:
    """(mean loss per predicted token, predicted tokens) of ``batches``, shared over the ranks."""
    was = model.training
    model.eval()
    total = torch.zeros(2, device=device)
    for b in batches[rank::world_size]:
        total[0] += _sum_loss(model, b, device, bf16)
        total[1] += int((b["labels"][:, 1:] != IGNORE).sum())
    model.train(was)
    total = all_reduce_dict({"t": total})["t"]
    return float(total[0] / total[1].clamp(min=1)), int(total[1])


class _Run:
    """The state of one training process; :meth:`loop` runs it."""

    def __init__(self, cfg: LMConfig, run_dir: Path, inputs: RunInputs, progress: bool,
                 callback: Callable[[int], None] | None) -> None:
        self.cfg, self.run_dir, self.progress, self.callback = cfg, run_dir, progress, callback
        t = cfg.train
        self.device = select_device(t.device, detect_env().local_rank)
        self.world = _join_process_group(self.device)
        self.rank = dist.get_rank() if process_group_active() else 0
        self.bf16 = t.precision == "bf16" or (t.precision == "auto" and self.device.type == "cuda")
        train_corpus, stated = read_corpus(inputs.units)
        if inputs.valid_units:
            valid_corpus, stated_v = read_corpus(inputs.valid_units)
            check_disjoint([u for u, _ in train_corpus], [u for u, _ in valid_corpus], inputs.valid_units)
            stated = stated if stated_v is None else stated_v if stated is None or stated == stated_v else -1
            if stated == -1:
                raise VocabError("the training and validation units files were made with different k")
        else:
            train_corpus, valid_corpus = split_valid(train_corpus, cfg.lm.valid_fraction, t.seed)
        self.vocab = UnitVocab(choose_k(cfg.lm.k, stated, [train_corpus, valid_corpus]), cfg.lm.dedup)
        train_seqs = encode_corpus(train_corpus, self.vocab)
        valid_seqs = encode_corpus(valid_corpus, self.vocab)
        self.batcher = Batcher(train_seqs, t.batch_size, cfg.model.context, cfg.lm.batching, t.seed)
        self.valid = valid_batches(valid_seqs, t.batch_size, cfg.model.context)
        if t.valid_batches:
            self.valid = self.valid[: t.valid_batches]
        self.data_info = {**inputs.sidecar(), "k": self.vocab.k, "dedup": self.vocab.dedup,
                          "train_utterances": len(train_corpus), "valid_utterances": len(valid_corpus),
                          "train_tokens": sum(map(len, train_seqs)), "valid_tokens": sum(map(len, valid_seqs))}
        seed_everything(t.seed)
        self.raw = build_model(cfg.model, self.vocab).to(self.device)
        self.optimizer = _optimizer(self.raw, cfg.optim)
        self.step, self.best_loss, self.best_step, self.valid_step = 0, math.inf, 0, 0
        self.window_loss, self.window_tokens, self.tokens_seen = 0.0, 0, 0
        self.rng = rng_state(self.device)
        self.tracker: Tracker = Tracker()  # train.report_to's while the loop runs
        self._resume()
        self.ddp = None
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.raw, device_ids=ids)
        self.model = self.ddp or self.raw
        if t.compile and self.device.type == "cuda":
            self.model = torch.compile(self.model)

    # ------------------------------------------------------------------------------------- state on disk
    def _resume(self) -> None:
        paths = _checkpoint_paths(self.run_dir)
        if not paths:
            return
        state = torch.load(paths[-1], map_location="cpu", weights_only=True)
        self.raw.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for name in ("step", "best_loss", "best_step", "valid_step", "window_loss", "window_tokens", "tokens_seen"):
            setattr(self, name, state[name])
        self.rng = state["rng"]
        set_rng_state(self.rng, self.device)

    def _write_checkpoint(self) -> None:
        if self.rank != 0:
            return
        state = {"format": 1, "model": self.raw.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "rng": self.rng, "config": self.cfg.to_dict(), "k": self.vocab.k, "best_loss": self.best_loss,
                 "window_loss": float(self.window_loss),
                 **{n: getattr(self, n) for n in ("step", "best_step", "valid_step", "window_tokens", "tokens_seen")}}
        with atomic_write(self.run_dir / CHECKPOINTS / f"step_{self.step:08d}.pt") as f:
            torch.save(state, f)
        for old in _checkpoint_paths(self.run_dir)[: -self.cfg.train.keep_checkpoints]:
            old.unlink(missing_ok=True)
        save_model_dir(self.raw, self.vocab, self.run_dir / "last", step=self.step, **self._best_info())

    def _best_info(self) -> dict[str, Any]:
        return {"best_step": self.best_step, "best_valid_loss": self.best_loss if self.best_step else None}

    def _log(self, record: dict[str, Any]) -> None:
        if self.rank == 0:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(metrics_line(record))
        self.tracker.log_record(record)

    # ----------------------------------------------------------------------------------------- the loop
    def _validate(self) -> None:
        self.valid_step = self.step
        if not self.valid:
            return
        loss, tokens = evaluate(self.model, self.valid, self.device, self.bf16, self.rank, self.world)
        best = loss < self.best_loss
        if best:
            self.best_loss, self.best_step = loss, self.step
            if self.rank == 0:
                save_model_dir(self.raw, self.vocab, self.run_dir / "best", step=self.step, valid_loss=loss,
                               **self._best_info())
        self._log({"split": "valid", "step": self.step, "loss": loss, "perplexity": math.exp(min(loss, 700.0)),
                   "tokens": tokens, "best": best})

    def _update(self) -> None:
        t = self.cfg.train
        first = (self.step * t.grad_accum) * self.world  # micro-batch first + a * world + rank
        mine = [first + a * self.world + self.rank for a in range(t.grad_accum)]
        batches = [self.batcher[i] for i in mine]
        tokens = sum(self.batcher.predicted_tokens(i) for i in mine)
        # the update's mean is over the predicted tokens of every rank (DDP averages the ranks' gradients)
        everyone = sum(self.batcher.predicted_tokens(first + i) for i in range(t.grad_accum * self.world))
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.cfg.optim, self.step, t.max_steps)
        total = torch.zeros((), device=self.device)
        for a, b in enumerate(batches):
            sync = self.ddp is None or a == len(batches) - 1
            with contextlib.nullcontext() if sync else self.ddp.no_sync():
                loss = _sum_loss(self.model, b, self.device, self.bf16)
                (loss * (self.world / everyone)).backward()
            total += loss.detach()
        if self.cfg.optim.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.raw.parameters(), self.cfg.optim.clip_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.rng = rng_state(self.device)
        self.window_loss += float(total) if self.device.type == "cpu" else total  # type: ignore[assignment]
        self.window_tokens += tokens

    def _log_train(self, started: float) -> None:
        sums = all_reduce_dict({"loss": torch.as_tensor(self.window_loss, dtype=torch.float64, device=self.device),
                                "tokens": torch.tensor(float(self.window_tokens), device=self.device)})
        tokens = int(sums["tokens"])
        self.tokens_seen += tokens
        elapsed = max(time.perf_counter() - started, 1e-9)
        loss = float(sums["loss"]) / max(tokens, 1)
        if not math.isfinite(loss):
            raise LMDiverged(f"{self.run_dir}: the training loss is {loss} at update {self.step}; lower optim.lr "
                             "or raise optim.warmup_steps and train again in a new run folder")
        self._log({"split": "train", "step": self.step, "loss": loss,
                   "lr": lr_at(self.cfg.optim, self.step - 1, self.cfg.train.max_steps), "tokens": self.tokens_seen,
                   "tokens_per_s": tokens / elapsed})
        self.bar.note(loss=f"{loss:.3f}", tokens_per_s=f"{tokens / elapsed:.0f}")
        self.window_loss, self.window_tokens = 0.0, 0

    def loop(self) -> dict[str, Any]:
        t = self.cfg.train
        self.tracker = open_tracker(t.report_to if self.rank == 0 else "none", self.run_dir, job="lm-train",
                                    config=self.cfg.to_dict(), purge_step=self.step + 1)
        bar = self.bar = BudgetProgress("lm train", max_steps=t.max_steps, max_minutes=t.max_minutes,
                                        initial=self.step, enabled=self.progress and self.rank == 0,
                                        clock=time.perf_counter)
        started = deadline = time.perf_counter()
        deadline += 60.0 * t.max_minutes if t.max_minutes > 0 else math.inf
        try:
            while True:
                end = self.step == t.max_steps or self._over_time(deadline)
                if self.window_tokens and (self.step % t.log_every == 0 or end):
                    self._log_train(started)
                    started = time.perf_counter()
                paused = time.perf_counter()  # validation and checkpoints do not count in tokens/s
                if self.step > self.valid_step and (end or (t.valid_every and self.step % t.valid_every == 0)):
                    self._validate()
                if end or (self.step and self.step % t.checkpoint_every == 0):
                    self._write_checkpoint()
                started += time.perf_counter() - paused
                if end:
                    break
                self._update()
                bar.update(self.step)
                if self.callback is not None:
                    self.callback(self.step)
        except (KeyboardInterrupt, Terminated):
            self._write_checkpoint()  # the last completed step: weights, AdamW and RNG as they were after it
            raise
        finally:
            bar.close()
            self.tracker.close()
        return {"run_dir": str(self.run_dir), "step": self.step, "best_step": self.best_step,
                "best_valid_loss": self.best_loss if self.best_step else None,
                "stopped": "max_steps" if self.step == t.max_steps else "max_minutes"}

    def _over_time(self, deadline: float) -> bool:
        """``train.max_minutes`` spent (rank 0's clock decides for every rank)."""
        if deadline == math.inf:
            return False
        late = torch.tensor(float(self.rank == 0 and time.perf_counter() >= deadline), device=self.device)
        return bool(all_reduce_dict({"late": late})["late"] > 0)


def train(units: Sequence[str | os.PathLike], run_dir: str | os.PathLike, config: str | os.PathLike | LMConfig = "tiny",
          overrides: Sequence[str] = (), valid: Sequence[str | os.PathLike] | None = None, *, progress: bool = True,
          force: bool = False, callback: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train (or resume) a unit LM on ``units`` in ``run_dir``; returns ``{step, best_step, best_valid_loss,
    run_dir}``. ``config``: a preset name (``opt125m``, ``tiny``), a TOML file or an :class:`LMConfig`, then
    ``overrides`` (``section.key=value``). ``valid``: validation units files (default: a seeded
    ``lm.valid_fraction`` of the utterances). ``callback(step)`` runs after every update (progress, tests).
    A resumed run must have the same config as the run folder's ``config.toml`` and the same inputs (the
    training and validation units files' contents, the sidecar's digests): :func:`spidrkit.lm.start_anew`
    (``--fresh``) empties a run folder to train it anew. Validation data that is also training data is
    refused (:class:`~spidrkit.lm.identity.LeakedValidation`)."""
    cfg = config if isinstance(config, LMConfig) else load_lm_config(config, list(overrides))
    run_dir = Path(run_dir)
    inputs = run_inputs(units, valid)
    check_report_to(cfg.train.report_to)
    if (run_dir / "config.toml").is_file() and _checkpoint_paths(run_dir):
        stored = load_lm_config(run_dir / "config.toml")
        # the tracker is no part of a run's identity: a run resumes with another
        stored = replace(stored, train=replace(stored.train, report_to=cfg.train.report_to))
        if stored != cfg:
            raise ConfigError(f"{run_dir} holds a run with another config ({_first_difference(stored, cfg)}); "
                              f"resume with the same config, use another run folder, or --fresh to start {run_dir} "
                              "anew")
        check_same_run(run_dir, inputs)
    main = detect_env().rank == 0
    with hold_lock(run_dir / "run.lock", force=force, what="this unit LM run") if main else contextlib.nullcontext():
        if main and (run_dir / CHECKPOINTS).is_dir():
            remove_stale_temps(run_dir / CHECKPOINTS)  # a checkpoint write killed midway (kill -9, power loss)
        run = _Run(cfg, run_dir, inputs, progress, callback)
        if run.rank == 0:
            write_text_atomic(run_dir / "config.toml", cfg.to_toml())
            run.vocab.save(run_dir)
            kept = [r for r in read_metrics(run_dir) if r.get("step", 0) <= run.step] if run.step else []
            write_lines_atomic(run_dir / "metrics.jsonl", [metrics_line(r).rstrip("\n") for r in kept])
            parameters = sum(p.numel() for p in run.raw.parameters())
            write_sidecar(run_dir, kind="unit-lm-run", parameters=parameters, world_size=run.world,
                          device=str(run.device), bf16=run.bf16, resumed_from=run.step, **run.data_info)
        summary = run.loop()
    return summary
