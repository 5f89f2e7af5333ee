"""The ZeroSpeech 2021 submission folder of ``evaluate slm``: the official validator's rules (zerospeech2021
``meta.py``, ``cli/validate.py``, ``lexical.py`` / ``syntactic.py``), held by
``spidrkit.evaluation.slm.submission.validate_submission``: the folder that ``evaluate slm`` writes on a small
generated benchmark passes them, and each rule, broken on a copy of it, is one problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from spidrkit.cli import main
from spidrkit.evaluation.slm.report import write_submission
from spidrkit.evaluation.slm.submission import submitted_splits, validate_submission, validator_options
from support import LEXICAL, SYNTACTIC, audio, names_of, write_split

TEST_NAMES = {"lexical": ["x1", "x2", "x3"], "syntactic": ["y1", "y2"]}


@pytest.fixture(scope="module")
def produced(slm_models, tmp_path_factory) -> tuple[Path, dict, dict]:
    """``evaluate slm`` on lexical and syntactic dev (gold) and test (wavs only): the output folder, its
    report.json and the wav names of each (track, split)."""
    root = tmp_path_factory.mktemp("submission")
    bench = root / "bench"
    write_split(bench / "lexical" / "dev", LEXICAL, names_of(LEXICAL), audio)
    write_split(bench / "syntactic" / "dev", SYNTACTIC, names_of(SYNTACTIC), audio)
    for track, names in TEST_NAMES.items():
        write_split(bench / track / "test", None, names, audio)
    out = root / "out"
    assert main(["evaluate", "slm", str(bench), "--model", str(slm_models["encoder"]), "--units", "codebook:6",
                 "--lm", str(slm_models["lm"]), "-o", str(out), "--bootstrap", "10", "--quiet"]) == 0
    expected = {("lexical", "dev"): set(names_of(LEXICAL)), ("syntactic", "dev"): set(names_of(SYNTACTIC)),
                **{(t, "test"): set(n) for t, n in TEST_NAMES.items()}}
    return out, json.loads((out / "report.json").read_text()), expected


def test_evaluate_slm_writes_a_submission_the_validator_takes(produced):
    out, report, expected = produced
    sub = out / "submission"
    assert validate_submission(sub, expected) == []
    assert validator_options(sub) == ["--no-phonetic", "--no-semantic"]
    assert report["submission"] == {"splits": ["lexical/dev", "lexical/test", "syntactic/dev", "syntactic/test"],
                                    "only_dev": False, "left_out": [],
                                    "validate": f"zerospeech2021-validate DATASET {sub} --no-phonetic --no-semantic"}
    for track, names in TEST_NAMES.items():
        assert [line.split(" ")[0] for line in (sub / track / "test.txt").read_text().splitlines()] == names
    assert not list(out.glob(".submission*"))  # the folder was built beside and moved in place


def _meta(folder: Path, old: str, new: str) -> None:
    path = folder / "meta.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _line(folder: Path, track: str, n: int, new: str) -> None:
    path = folder / track / "dev.txt"
    lines = path.read_text().splitlines()
    lines[n] = new
    path.write_text("\n".join(lines) + "\n")


ROOT = "exactly lexical, meta.yaml, phonetic, semantic, syntactic"
BROKEN = {  # one rule of the validator broken: the problem it gives
    "no visually_grounded": (lambda f: _meta(f, "visually_grounded: false\n", ""),
                             "meta.yaml: the top level lacks visually_grounded"),
    "an unknown key": (lambda f: _meta(f, "gpu_budget:", "extra: 1\ngpu_budget:"),
                       "meta.yaml: the top level has unknown entries extra"),
    "open source without code/": (lambda f: _meta(f, "open_source: false", "open_source: true"),
                                  "(open_source: true needs code/)"),
    "open source, code/ empty": (lambda f: (_meta(f, "open_source: false", "open_source: true"),
                                            (f / "code").mkdir()), "open_source: true but the code folder is empty"),
    "open_source a string": (lambda f: _meta(f, "open_source: false", "open_source: maybe"),
                             "meta.yaml: open_source must be true or false"),
    "an empty author": (lambda f: _meta(f, "author: unknown", 'author: ""'),
                        "meta.yaml: author must be a non-empty string"),
    "gpu_budget a word": (lambda f: _meta(f, "gpu_budget: 0.0", "gpu_budget: lots"),
                          "meta.yaml: gpu_budget must be a number"),
    "phonetic metric": (lambda f: _meta(f, "    metric: cosine\n    frame_shift", "    metric: dtw\n    frame_shift"),
                        "parameters/phonetic/metric must be one of cosine, euclidean, kl, kl_symmetric"),
    "semantic metric": (lambda f: _meta(f, "    metric: cosine\n    pooling", "    metric: nearness\n    pooling"),
                        "parameters/semantic/metric 'nearness' is not a scipy cdist metric"),
    "semantic pooling": (lambda f: _meta(f, "pooling: mean", "pooling: median"),
                         "parameters/semantic/pooling must be one of min, max, mean, sum, last, lastlast, off"),
    "no phonetic/": (lambda f: (f / "phonetic").rmdir(), ROOT),
    "storycloze/ inside": (lambda f: (f / "storycloze").mkdir(), ROOT),
    "a hidden file": (lambda f: (f / ".DS_Store").write_bytes(b""), ROOT),
    "dev and test disagree": (lambda f: (f / "syntactic" / "test.txt").unlink(),
                              "the tracks disagree on the splits (the validator checks all of them with --only-dev or "
                              "none): lexical dev+test, syntactic dev only"),
    "test without dev": (lambda f: (f / "lexical" / "dev.txt").unlink(),
                         "lexical/ holds test.txt; the validator takes dev.txt (--only-dev) or dev.txt, test.txt"),
    "semantic without synthetic": (lambda f: [(f / "semantic" / d).mkdir(parents=True) for d in (
        "dev/librispeech", "test/librispeech", "test/synthetic")], "semantic/dev/ must hold exactly librispeech and "
                                   "synthetic"),
    "a tab": (lambda f: _line(f, "lexical", 0, "w1a\t-1.5"), "line 1: not '<filename> <score>': 'w1a\\t-1.5'"),
    "two spaces": (lambda f: _line(f, "lexical", 1, "n1a  -1.5"), "line 2: not '<filename> <score>'"),
    "a word for a score": (lambda f: _line(f, "syntactic", 2, "g1b high"), "line 3: the score 'high' is not a float"),
    "nan": (lambda f: _line(f, "syntactic", 0, "g1a nan"), "line 1: the score nan is not finite"),
    "a name twice": (lambda f: _line(f, "lexical", 1, "w1a -2.0"), "files named twice: w1a"),
}


LINE_CASES = ("a tab", "two spaces", "a word for a score", "a name twice")  # (the names then differ from the wavs')


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_rule_of_the_validator_is_a_problem(produced, tmp_path, case):
    out, _, expected = produced
    folder = shutil.copytree(out / "submission", tmp_path / "submission")
    assert validate_submission(folder, expected) == []
    breaks, problem = BROKEN[case]
    breaks(folder)
    problems = validate_submission(folder, None if case in LINE_CASES else expected)
    assert len(problems) == 1 and problem in problems[0], problems


def test_names_are_those_of_the_dataset_and_valid_variants_pass(produced, tmp_path):
    out, _, expected = produced
    folder = shutil.copytree(out / "submission", tmp_path / "submission")
    _line(folder, "lexical", 0, "zz9 -1.0")
    assert validate_submission(folder) == []  # without the dataset's names, any name is taken
    assert validate_submission(folder, expected) == [f"{folder}/lexical/dev.txt: 1 wavs missing (w1a), 1 unknown (zz9)"]
    folder = shutil.copytree(out / "submission", tmp_path / "again")
    _meta(folder, "open_source: false", "open_source: true")
    (folder / "code").mkdir()
    (folder / "code" / "README").write_text("spidrkit\n")
    _meta(folder, "    metric: cosine\n    pooling", "    metric: cityblock\n    pooling")
    (folder / "meta.yaml").write_text((folder / "meta.yaml").read_text().replace("  ", "\t"))  # tabs read as spaces
    assert validate_submission(folder, expected) == []


def test_the_submitted_splits_are_those_the_validator_checks_together():
    both = [("lexical", "dev"), ("lexical", "test"), ("syntactic", "dev"), ("syntactic", "test"), ("storycloze", "dev")]
    assert submitted_splits(both) == (both[:4], False)
    assert submitted_splits([("lexical", "dev"), ("lexical", "test"), ("syntactic", "dev")]) == (
        [("lexical", "dev"), ("syntactic", "dev")], True)
    assert submitted_splits([("lexical", "test"), ("syntactic", "dev")]) == ([("syntactic", "dev")], True)
    assert submitted_splits([("storycloze", "sSC"), ("storycloze", "tSC")]) == ([], True)
    assert validator_options({"lexical": {"dev.txt"}}) == ["--only-dev", "--no-phonetic", "--no-syntactic",
                                                          "--no-semantic"]


def test_a_submission_the_validator_would_refuse_is_a_defect_and_replaces_nothing(produced, slm_models, tmp_path,
                                                                                   monkeypatch, capsys):
    out, _, _ = produced
    folder = shutil.copytree(out / "submission", tmp_path / "submission")
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(RuntimeError, match=r"would fail its validator \(a defect of spidrkit\): .*line 1: the "
                                           r"score nan is not finite"):
        write_submission(folder, {("lexical", "dev"): ["w1a nan"]}, (folder / "meta.yaml").read_text())
    assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission"]  # the folder built beside is gone
    # through the CLI: an internal error (exit 70) naming the problem, the numbers on disk before it
    import spidrkit.evaluation.slm.report as report_mod

    monkeypatch.setattr(report_mod, "validate_submission", lambda folder, expected=None: ["a planted problem"])
    o = tmp_path / "o"
    code = main(["evaluate", "slm", str(out.parent / "bench" / "syntactic"), "--model", str(slm_models["encoder"]),
                 "--units", "codebook:6", "--lm", str(slm_models["lm"]), "-o", str(o), "--bootstrap", "10", "--quiet"])
    err = capsys.readouterr().err
    assert code == 70 and "a planted problem" in err and "Traceback" not in err
    assert list(json.loads((o / "report.json").read_text())["results"]) == ["syntactic/dev"]
    assert (o / "tables" / "sblimp_syntactic_dev.csv").is_file() and (o / "scores" / "syntactic" / "test.txt").is_file()
    assert not (o / "submission").exists() and not (o / "report.html").exists()
