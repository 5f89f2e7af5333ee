"""Milestone checkpoints: a checkpoint kept for good when the training time passes each of
``train.milestone_minutes`` (and at each of ``train.milestone_steps``), for budget curves
(:mod:`spidrkit.evaluation.runs.budget`).

The clock is the run's training wall time (:meth:`Trainer.elapsed`: the clock of ``train.max_minutes``, plus
the time of earlier invocations, so a resumed run goes on counting). A milestone is written at the end of the
first step at which the clock reaches it, under ``RUN_DIR/milestones/`` (atomic; never pruned; see
:func:`spidrkit.checkpoints.run.milestone_path`), with a ``"split": "milestone"`` record in ``metrics.jsonl``:
``{"step", "milestone": "minutes" | "steps", "target", "minutes", "wall_seconds", "path"}``. A milestone already
on disk is never rewritten (a resumed run skips it), and a minutes milestone that an earlier invocation passed
without writing it (e.g. added to the config on resume) is skipped with a warning rather than written late
under a wrong label. Several ranks agree on the step through a vote, one minutes milestone a step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spidrkit.checkpoints.run import list_milestones, milestone_path, save_checkpoint
from spidrkit.training.logging import MetricsLog

logger = logging.getLogger("spidrkit.training")


class Milestones:
    """The milestones still to write for one invocation of a run."""

    def __init__(self, run_dir: Path, minutes: tuple[float, ...], steps: tuple[int, ...], start_step: int,
                 elapsed_before: float) -> None:
        saved = {(kind, value) for kind, value, _, _ in list_milestones(run_dir)}
        passed = [m for m in minutes if ("minutes", float(m)) not in saved and 60.0 * m <= elapsed_before]
        if passed:
            logger.warning("milestones %s min were passed before this invocation (%.1f min of training) without "
                           "a checkpoint: skipped", passed, elapsed_before / 60)
        self.minutes = sorted({float(m) for m in minutes} - {v for k, v in saved if k == "minutes"} - set(passed))
        self.steps = sorted({int(s) for s in steps if s > start_step} - {int(v) for k, v in saved if k == "steps"})

    def __bool__(self) -> bool:
        return bool(self.minutes or self.steps)

    def due(self, step: int, elapsed: float, vote: Callable[[bool], bool]) -> list[tuple[str, float]]:
        """The milestones to write at ``step`` (popped): the step milestone of ``step`` and the first minutes
        milestone once ``elapsed`` (seconds) reaches it on any rank (``vote``: the same answer everywhere)."""
        due: list[tuple[str, float]] = []
        if self.minutes and vote(elapsed >= 60.0 * self.minutes[0]):
            due.append(("minutes", self.minutes.pop(0)))
        if self.steps and self.steps[0] <= step:
            due.append(("steps", float(self.steps.pop(0))))
        return due


def write_milestone(run_dir: Path, metrics: MetricsLog, kind: str, value: float, state: dict[str, Any] | None
                    ) -> Path | None:
    """Write the milestone ``kind`` ("minutes" / "steps") ``value`` from a checkpoint ``state`` (rank 0; other
    ranks pass ``None``) and its metrics record."""
    if state is None:
        return None
    step = int(state["step"])
    path = save_checkpoint(milestone_path(run_dir, kind, value, step), state)
    metrics.write({"split": "milestone", "step": step, "milestone": kind, "target": value,
                   "minutes": state["elapsed"] / 60, "wall_seconds": state["elapsed"],
                   "path": str(path.relative_to(run_dir))})
    logger.info("step %d: milestone %s %g: %s", step, kind, value, path)
    return path
