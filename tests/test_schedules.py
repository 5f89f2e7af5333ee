import math

import pytest

from spidrkit.config import OptimConfig, TeacherConfig
from spidrkit.models.schedules import learning_rate, teacher_decay, teacher_freeze_step


@pytest.mark.parametrize("step", [0, 1000, 10000, 30000, 50000])
def test_exponential_teacher_schedule(step):
    cfg = TeacherConfig()
    assert teacher_decay(step, cfg) == pytest.approx(1 - 0.001 * math.exp(-step / 10000), abs=1e-15)


def test_exponential_teacher_freezes_when_gap_below_1e7():
    cfg = TeacherConfig()
    t = teacher_freeze_step(cfg)
    assert t == math.floor(10000 * math.log(1e-3 / 1e-7)) + 1 == 92104
    assert teacher_decay(t, cfg) == 1.0 and teacher_decay(t + 5000, cfg) == 1.0
    assert 1 - teacher_decay(t - 1, cfg) == pytest.approx(1e-3 * math.exp(-(t - 1) / 1e4))  # still >= 1e-7
    assert teacher_freeze_step(TeacherConfig(timescale=20000.0)) == 184207  # the release's default T


@pytest.mark.parametrize(
    "step,expected",
    [(0, 0.999), (1000, 0.999 + 0.0009 * 1000 / 30000), (10000, 0.999 + 0.0009 / 3), (30000, 0.9999),
     (100000, 0.9999), (199999, 0.9999), (200000, 1.0), (300000, 1.0)],
)
def test_linear_teacher_schedule(step, expected):
    cfg = TeacherConfig(schedule="linear")
    assert teacher_decay(step, cfg) == pytest.approx(expected, abs=1e-12)
    assert teacher_freeze_step(cfg) == 200000


@pytest.mark.parametrize(
    "step,expected",
    [(0, 5e-6), (6000, 5e-6 + (5e-4 - 5e-6) / 2), (12000, 5e-4), (100000, 5e-4), (199999, 5e-4),
     (200000, 5e-4), (300000, 5e-4 * math.exp(math.log(0.01) / 2)), (400000, 5e-6), (500000, 5e-6)],
)
def test_tri_stage_learning_rate(step, expected):
    assert learning_rate(step, OptimConfig()) == pytest.approx(expected, rel=1e-9)
