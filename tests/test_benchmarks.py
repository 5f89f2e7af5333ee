"""The layout of the scripts beside the tests (benchmarks/README.md): the micro-benchmarks of ``benchmarks/`` share
one harness and one JSON row format; the studies live in ``experiments/``, the fault test in ``system/``."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.name != "harness.py")


@pytest.fixture(scope="module")
def harness():
    """benchmarks/harness.py as the scripts import it: a sibling module, by name."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import harness
    finally:
        sys.path.remove(str(BENCHMARKS))
    return harness


def imports_of(path: Path) -> list[ast.Import | ast.ImportFrom]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Import | ast.ImportFrom)]


def test_a_timed_trivial_function_gives_a_row_of_the_format(harness):
    calls = []
    timing = harness.timed(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and len(timing.wall) == len(timing.cpu) == 4 and len(timing.warmup_wall) == 2
    r = harness.row("trivial", "append", "cpu", timing, items=len(calls), note="ok", ratio=None)
    assert json.loads(json.dumps(r)) == r
    assert set(harness.FIELDS) <= set(r) and r["repeats"] == 4 and r["warmup"] == 2
    assert 0 <= r["seconds_min"] <= r["seconds_median"] and r["seconds_iqr"] >= 0
    assert r["items"] == 6 and r["benchmark"] == "trivial" and r["case"] == "append"


def test_interleaved_runs_in_turns_and_laps_time_the_units_after_the_first(harness):
    order = []
    timings = harness.interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                                  repeats=2, warmup=1)
    assert order == ["a", "b"] * 3 and all(len(t.wall) == 2 and t.warmup == 1 for t in timings.values())
    laps = harness.Laps()
    for _ in range(5):  # five units of work, each ending with a call back
        laps()
    timing = laps.timing(warmup=2)
    assert len(timing.wall) == 3 and timing.warmup == 2
    with pytest.raises(ValueError, match="at least 1"):
        laps.timing(warmup=0)


def test_rows_outside_the_format_are_refused(harness):
    good = harness.row("b", "c", "cpu", harness.Timing(wall=[1.0, 2.0, 4.0]))
    assert good["seconds_median"] == 2.0 and good["seconds_min"] == 1.0 and good["seconds_iqr"] == 1.5
    for broken in ({k: v for k, v in good.items() if k != "case"}, {**good, "repeats": "3"},
                   {**good, "series": [1, 2]}):
        with pytest.raises(ValueError):
            harness.check_row(broken)
    with pytest.raises(ValueError, match="fields of the row format"):
        harness.row("b", "c", "cpu", harness.Timing(wall=[1.0]), torch="2")


def test_rows_go_to_a_file_and_back_as_a_table(harness, tmp_path, capsys):
    out = tmp_path / "rows.jsonl"
    rows = harness.Rows(out)
    rows.add(harness.row("b", "x | y", "cpu", harness.Timing(wall=[0.5]), audio_s_per_s=12.345678))
    rows.close()
    table = capsys.readouterr().out
    assert "| case | device | seconds_median" in table and "x \\| y" in table and "12.35" in table
    assert harness.read_rows(out)[0]["audio_s_per_s"] == 12.345678
    assert harness.main([str(out), "--columns", "case,audio_s_per_s"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "| case | audio_s_per_s |"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_micro_benchmark_uses_the_harness_and_no_timer_of_its_own(script):
    tree = ast.parse(script.read_text())
    modules = {n.module for n in imports_of(script) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in imports_of(script) if isinstance(n, ast.Import) for a in n.names}
    assert "harness" in modules, f"{script.name} does not import benchmarks/harness.py"
    own = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name in ("timed", "_sync")]
    assert not own, f"{script.name} defines {own}: use the harness's"
    assert "spec_from_file_location" not in script.read_text(), "import sibling scripts by name"


def test_the_scripts_use_the_public_api_and_the_folders_hold_what_they_should():
    scripts = [*SCRIPTS, *(ROOT / "experiments").glob("*.py"), *(ROOT / "system").glob("*.py")]
    for script in scripts:
        private = [f"{n.module}.{a.name}" for n in imports_of(script) if isinstance(n, ast.ImportFrom)
                   and (n.module or "").startswith("spidrkit") for a in n.names if a.name.startswith("_")]
        assert not private, f"{script.relative_to(ROOT)} imports private names {private}"
    assert {p.name for p in (ROOT / "experiments").glob("*.py")} >= {"cpu_study.py", "slm.py", "trajectory.py"}
    assert (ROOT / "system" / "faults.py").is_file() and not (BENCHMARKS / "faults.py").exists()
    assert "--out" in (BENCHMARKS / "ab_train_step.sh").read_text()  # reads the JSON rows, not a Markdown column


def test_the_voices_study_traces_a_group_to_its_pairs():
    """experiments/voices_study.py's pair table: the model minus its own random initialisation, mean ± sample
    s.d. over seeds, then each distinct random initialisation and MFCC once."""
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import voices_study
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    rand, mfcc = {"a|b": 20.0, "a|c": 10.0}, {"a|b": 9.0, "a|c": 8.0}
    seeds = [{"pairs": {"model": {"a|b": m1, "a|c": m2}, "random": rand, "mfcc": mfcc}}
             for m1, m2 in ((23.0, 9.0), (25.0, 7.0))]
    table = voices_study.tabulate_pairs({"arm": seeds, "other": seeds[:1]}).splitlines()
    assert table[0] == "| model - random init | a–b | a–c |"
    # a|b: 3 and 5 -> 4.00 ± 1.41 (sqrt(2)); a|c: -1 and -3 -> -2.00 ± 1.41; one seed: no s.d.
    assert table[2] == "| arm (2) | 4.00 ± 1.41 | -2.00 ± 1.41 |"
    assert table[3] == "| other (1) | 3.00 | -1.00 |"
    assert table[4:] == ["| *arm, random init* | 20.00 | 10.00 |", "| *mfcc* | 9.00 | 8.00 |"]
