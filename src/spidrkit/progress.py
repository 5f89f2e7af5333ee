"""How spidrkit shows progress: a bar on a terminal, a throttled whole line in a log, nothing when disabled.

Two displays share one rule: when stderr is not a terminal (a cluster log, a pipe, a file), a line when the
display starts, then at most one every :data:`LOG_PROGRESS_SECONDS`, never a ``\\r``-redrawn line.

- :func:`progress_bar`: the bar of every long step that counts items (files, utterances, centroids, bytes):
  ``desc: n/total unit [elapsed<remaining, rate]`` in a log, its last line always written.
- :class:`BudgetProgress`: the bar of a training run (pretraining and unit LM training) against the budget
  that will stop it. A run stops at ``train.max_steps`` or, with ``train.max_minutes``, at the end of its
  time budget, whichever comes first. :func:`budget_view` says which one will, from the steps run so far
  and the time they took: the steps (``step 112/600 [01:00<04:21, 1.87 step/s]``) or the minutes
  (``01:00/24:00 of the 24 min budget, step 112 of ~2688 [<23:00, 1.87 step/s]``: the step is an estimate
  at the rate so far), with the ETA of that stop. Outside a terminal its lines go to the training log.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from tqdm import tqdm

LOG_PROGRESS_SECONDS = 30.0  # at most one progress line this often when stderr is not a terminal (a log)
LOG_BAR_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


class _Throttle:
    """The pace of lines in a log: the first, then at most one every :data:`LOG_PROGRESS_SECONDS` (read at each
    call), and a forced one (a bar's last line)."""

    def __init__(self) -> None:
        self.at: float | None = None

    def due(self, now: float, force: bool = False) -> bool:
        """Whether a line is written at ``now`` (then counted as the last written)."""
        if force or self.at is None or now - self.at >= LOG_PROGRESS_SECONDS:
            self.at = now
            return True
        return False


# ---------------------------------------------------------------------------------- counting bars
class _LogLines:
    """tqdm's output as whole lines: a terminal bar redraws one line with ``\\r``, which a log file would keep
    as one ever longer line; here every redraw is its own line (empty redraws, cursor moves and a repeat of the
    line before dropped: a bar's last update and its close, within a second, give the same line)."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.last = stream, ""

    def write(self, text: str) -> None:
        line = text.replace("\r", "").replace("\x1b[A", "").strip()
        if line and line != self.last:
            self.stream.write(line + "\n")
            self.last = line

    def flush(self) -> None:
        self.stream.flush()


class _LogBar(tqdm):
    """A tqdm bar in a log: whatever asks for a redraw (an update, a postfix, ``refresh``, tqdm's monitor
    thread), a line is written only when the :class:`_Throttle` allows; closing always writes the last one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.throttle, self.closing = _Throttle(), False
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if not self.throttle.due(time.monotonic(), force=self.closing):
            return True
        return super().display(msg, pos)

    def close(self) -> None:
        self.closing = True
        super().close()


def progress_bar(total: int | None, desc: str, unit: str = "file", enabled: bool = True, **options: Any) -> tqdm:
    """The one progress display of spidrkit's long steps that count items. On a terminal (stderr a TTY): a tqdm
    bar. Otherwise (a cluster log, a pipe): ``desc: n/total unit [elapsed<remaining, rate]`` as a whole line
    when the bar starts, at most every :data:`LOG_PROGRESS_SECONDS` while it runs (postfix changes included),
    and when it ends (even with ``leave=False``). ``enabled=False`` (``--quiet``, ``--no-progress``,
    ``progress=False``): nothing. ``options``: more of tqdm's (``iterable``, ``initial``, ``leave``,
    ``unit_scale``...)."""
    stream = sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, file=stream, **options)
    options["leave"] = True  # a log keeps every bar's last line
    return _LogBar(total=total, desc=desc, unit=unit, disable=not enabled, file=_LogLines(stream),
                   mininterval=LOG_PROGRESS_SECONDS, maxinterval=max(LOG_PROGRESS_SECONDS, 1.0),
                   bar_format=LOG_BAR_FORMAT, **options)


# ---------------------------------------------------------------------------------- training bars
@dataclass(frozen=True)
class BudgetView:
    """Where a run stands against the budget that will stop it. ``mode``: ``"steps"`` (``done`` steps of
    ``total``) or ``"minutes"`` (``done`` seconds of a ``total`` seconds budget); ``final_step``: the step it
    will stop at (estimated under a time budget; None before a step has run); ``eta``: seconds to that stop;
    ``rate``: steps per second of this invocation."""

    mode: str
    done: float
    total: float
    step: int
    final_step: int | None
    eta: float | None
    rate: float | None
    seconds: float

    def text(self) -> str:
        """The bar's text (also the log line's)."""
        fmt = tqdm.format_interval
        eta = "?" if self.eta is None else fmt(self.eta)
        rate = "?" if self.rate is None else f"{self.rate:.3g}"
        if self.mode == "steps":
            return f"step {self.step}/{int(self.total)} [{fmt(self.seconds)}<{eta}, {rate} step/s]"
        final = "?" if self.final_step is None else self.final_step
        return (f"{fmt(self.done)}/{fmt(self.total)} of the {self.total / 60:g} min budget, step {self.step} of "
                f"~{final} [<{eta}, {rate} step/s]")


def budget_view(step: int, *, start_step: int, max_steps: int, max_minutes: float, seconds: float) -> BudgetView:
    """The budget that will stop a run at ``step`` (``start_step`` when this invocation began, ``seconds``
    of wall time ago): its time budget when ``max_minutes`` runs out before ``max_steps`` is reached at the
    rate so far (and before any step has run), else its steps."""
    steps_run = step - start_step
    rate = steps_run / seconds if steps_run > 0 and seconds > 0 else None
    steps_eta = (max_steps - step) / rate if rate else None
    if max_minutes > 0:
        budget = 60.0 * max_minutes
        left = max(0.0, budget - seconds)
        if steps_eta is None or left < steps_eta:
            final = None if rate is None else min(max_steps, step + int(rate * left))
            return BudgetView("minutes", min(seconds, budget), budget, step, final, left, rate, seconds)
    return BudgetView("steps", step, max_steps, step, max_steps, steps_eta, rate, seconds)


class _Bar(tqdm):
    """A tqdm bar whose format may use ``{budget}`` (the :class:`BudgetView` text)."""

    budget_text = ""

    @property
    def format_dict(self) -> dict[str, Any]:
        return {**super().format_dict, "budget": self.budget_text}


class BudgetProgress:
    """A training run's progress (see the module's docstring). ``update(step)`` after each step, ``note``
    for the bar's trailing numbers (loss, throughput), ``close`` at the end. ``clock``: the clock of the
    run's time budget, read first now; ``file``: where the bar goes (stderr), a bar only when it is a terminal
    (``isatty``); ``log``: where lines go otherwise (default: ``file``)."""

    def __init__(self, desc: str, *, max_steps: int, max_minutes: float, initial: int, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic, log: Callable[[str], None] | None = None,
                 file: TextIO | None = None) -> None:
        self.desc, self.max_steps, self.max_minutes, self.start_step = desc, max_steps, max_minutes, initial
        self.clock, self.started = clock, clock()
        self.file = file or sys.stderr
        self.terminal = self.file.isatty()
        self.log = log or (lambda line: print(line, file=self.file, flush=True))
        self.lines = enabled and not self.terminal
        self.throttle, self.logged = _Throttle(), ""
        self.drawn_at = -float("inf")
        self.view = budget_view(initial, start_step=initial, max_steps=max_steps, max_minutes=max_minutes, seconds=0.0)
        self.bar = _Bar(total=self.view.total, initial=0, file=self.file, disable=not enabled or not self.terminal,
                        desc=desc, dynamic_ncols=True, mininterval=0.5, delay=1e-9,  # drawn by _show, not before
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {budget}{postfix}")
        self._show()

    def update(self, step: int) -> BudgetView:
        """The run is at ``step``: redraw the bar (at most twice a second) or write the line when due."""
        now = self.clock()
        self.view = budget_view(step, start_step=self.start_step, max_steps=self.max_steps,
                                max_minutes=self.max_minutes, seconds=now - self.started)
        if self.lines and self.throttle.due(now):
            self._log()
        if not self.bar.disable and now - self.drawn_at >= self.bar.mininterval:
            self.drawn_at = now
            self._show()
        return self.view

    def _show(self) -> None:
        if self.bar.disable:
            return
        self.bar.total, self.bar.n = self.view.total, self.view.done
        self.bar.budget_text = self.view.text()
        self.bar.refresh()

    def note(self, **values: str) -> None:
        """Numbers shown after the budget on the bar (``loss=...``)."""
        self.bar.set_postfix(values, refresh=False)

    def _log(self) -> None:
        line = f"{self.desc}: {self.view.text()}"
        if line != self.logged:  # the last update's line is not written again at the close
            self.log(line)
            self.logged = line

    def close(self) -> None:
        """Draw the bar a last time, or (in a log) write the last line: where the run stopped."""
        if self.lines:
            self._log()
        self._show()
        self.bar.close()
