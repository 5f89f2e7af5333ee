"""Honest progress (spidrkit.progress): the bar counts the budget that will stop the run, minutes or steps,
with a true ETA (a fake clock); outside a terminal, a line every 30 s and the last one instead; both trainers
use it."""

from __future__ import annotations

import io
import logging

import pytest

from spidrkit.progress import LOG_PROGRESS_SECONDS, BudgetProgress, budget_view
from spidrkit.training.loop import pretrain
from support import train_config

pytestmark = pytest.mark.usefixtures("one_thread")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_time_budget_that_stops_first_is_counted_in_minutes():
    # the demo's case: 112 steps in the first minute of a 24-minute budget, max_steps 6000
    v = budget_view(112, start_step=0, max_steps=6000, max_minutes=24, seconds=60.0)
    assert (v.mode, v.done, v.total, v.eta) == ("minutes", 60.0, 1440.0, 1380.0)
    assert v.final_step == 112 + int(112 / 60 * 1380) == 2688
    assert v.text() == "01:00/24:00 of the 24 min budget, step 112 of ~2688 [<23:00, 1.87 step/s]"
    # a resumed run: the rate is this invocation's steps over its time
    v = budget_view(1100, start_step=1000, max_steps=6000, max_minutes=10, seconds=50.0)
    assert (v.mode, v.final_step, v.eta) == ("minutes", 1100 + 2 * 550, 550.0)
    # before any step: the time budget, no estimate yet
    v = budget_view(0, start_step=0, max_steps=6000, max_minutes=24, seconds=0.0)
    assert (v.mode, v.total, v.final_step, v.eta) == ("minutes", 1440.0, None, 1440.0)
    assert v.text() == "00:00/24:00 of the 24 min budget, step 0 of ~? [<24:00, ? step/s]"


def test_steps_that_stop_first_are_counted_in_steps():
    v = budget_view(112, start_step=0, max_steps=600, max_minutes=24, seconds=60.0)  # 600 steps in ~5 min
    assert (v.mode, v.done, v.total, v.final_step) == ("steps", 112, 600, 600)
    assert v.eta == pytest.approx((600 - 112) * 60 / 112)
    assert v.text() == "step 112/600 [01:00<04:21, 1.87 step/s]"
    v = budget_view(112, start_step=0, max_steps=6000, max_minutes=0, seconds=60.0)  # no time budget
    assert (v.mode, v.total, round(v.eta)) == ("steps", 6000, round(5888 * 60 / 112))


def test_the_bar_shows_the_budget_with_a_fake_clock():
    clock, out = Clock(), Terminal()
    bar = BudgetProgress("pretraining", max_steps=6000, max_minutes=24, initial=0, clock=clock, file=out)
    assert (bar.bar.total, bar.bar.n) == (1440.0, 0.0)
    clock.now += 60
    bar.update(112)
    assert (bar.bar.total, bar.bar.n) == (1440.0, 60.0)  # time, not 112/6000
    bar.note(loss="3.210")
    clock.now += 0.1  # within the redraw interval: not drawn again
    bar.update(113)
    assert bar.bar.budget_text.endswith("step 112 of ~2688 [<23:00, 1.87 step/s]")
    bar.close()
    shown = out.getvalue().split("\r")[-1]
    assert shown.startswith("pretraining:   4%|") and "01:00/24:00 of the 24 min budget, step 113 of ~" in shown
    assert shown.rstrip().endswith("step/s], loss=3.210") and "/6000" not in out.getvalue()

    clock, out = Clock(), Terminal()
    bar = BudgetProgress("lm train", max_steps=200, max_minutes=0, initial=50, clock=clock, file=out)
    clock.now += 30
    bar.update(80)
    assert (bar.bar.total, bar.bar.n) == (200, 80)
    bar.close()
    assert "lm train:  40%|" in out.getvalue() and "step 80/200 [00:30<02:00, 1 step/s]" in out.getvalue()


def test_outside_a_terminal_a_line_every_30_seconds():
    clock, lines, out = Clock(), [], io.StringIO()
    bar = BudgetProgress("lm train", max_steps=1000, max_minutes=0, initial=0, clock=clock, log=lines.append, file=out)
    for step in range(1, 101):  # a step a second for 100 s
        clock.now += 1
        bar.update(step)
    bar.close()
    assert out.getvalue() == ""  # no bar
    assert lines == ["lm train: step 1/1000 [00:01<16:39, 1 step/s]", "lm train: step 31/1000 [00:31<16:09, 1 step/s]",
                     "lm train: step 61/1000 [01:01<15:39, 1 step/s]", "lm train: step 91/1000 [01:31<15:09, 1 step/s]",
                     "lm train: step 100/1000 [01:40<15:00, 1 step/s]"]  # the close: where the run stopped
    assert LOG_PROGRESS_SECONDS == 30
    quiet = BudgetProgress("x", max_steps=10, max_minutes=0, initial=0, enabled=False, clock=clock, log=lines.append,
                           file=Terminal())
    quiet.update(5)
    quiet.close()
    assert len(lines) == 5 and quiet.bar.disable
    once: list[str] = []  # a close right after a written line does not write it again
    bar = BudgetProgress("x", max_steps=10, max_minutes=0, initial=0, clock=clock, log=once.append, file=io.StringIO())
    clock.now += 1
    bar.update(1)
    bar.close()
    assert once == ["x: step 1/10 [00:01<00:09, 1 step/s]"]


def test_pretraining_writes_progress_lines_to_its_log(syllables, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="spidrkit.training"):
        pretrain(train_config(syllables, "train.max_steps=3", "train.log_every=3"), tmp_path, progress=True)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("pretraining: ")]
    assert lines and lines[0].startswith("pretraining: step 1/3 [")  # stderr is not a terminal under pytest
