"""The outputs of ``spidrkit evaluate slm``: the scores of every audio, ``report.json``, ``report.md``,
``tables/*.csv``, the ZeroSpeech 2021 submission folder and ``report.html`` (``docs/formats.md``, "sLM
benchmarks and submissions"), in that order: the numbers reach the disk first.

- ``OUT/scores/<task>/<split>.txt``: one ``<filename> <score>`` line per audio of every split read, with or
  without gold (``filename``: the wav's stem; ``score``: its log-likelihood, ``repr`` of the float so that
  ties survive); the published spoken StoryCloze sets as ``scores/storycloze/sSC.txt`` / ``tSC.txt``;
- ``OUT/submission/``: a folder that the ZeroSpeech 2021 validator takes (checked by
  :func:`~spidrkit.evaluation.slm.submission.validate_submission` before it replaces the previous one, a
  problem being a defect of spidrkit): ``meta.yaml`` (every field the validator requires; the placeholders
  are to be edited before an upload), the ``lexical`` and ``syntactic`` files that the validator can check
  together (:func:`~spidrkit.evaluation.slm.submission.submitted_splits`), empty ``phonetic/`` and
  ``semantic/`` (tracks skipped). StoryCloze is no ZeroSpeech 2021 track: its scores stay in ``scores/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spidrkit.evaluation.pages import write_html, write_tables
from spidrkit.evaluation.slm.bench import Split
from spidrkit.evaluation.slm.rules import MIN_PAIRS
from spidrkit.evaluation.slm.submission import TRACK_FILES, submitted_splits, validate_submission, validator_options
from spidrkit.io import fsync_dir, write_json_atomic, write_lines_atomic, write_sidecar, write_text_atomic

TASK_NAMES = {"lexical": "sWUGGY", "syntactic": "sBLIMP", "storycloze": "StoryCloze"}


def meta_yaml(report: Mapping[str, Any]) -> str:
    """ZeroSpeech 2021's ``meta.yaml``: the phonetic / semantic parameters are unused placeholders (this
    submission holds the lexical and syntactic tracks)."""
    inputs = report.get("inputs", {})
    norm = "token-normalised" if report["scoring"]["normalize"] else "summed"
    description = (f"spidrkit: {inputs.get('units', '?')} units of {inputs.get('encoder', '?')}, unit LM "
                   f"{inputs.get('lm', '?')}, {norm} log-likelihood")
    return "\n".join([
        "author: unknown  # edit before submitting",
        "affiliation: unknown  # edit before submitting",
        f"description: {_quote(description)}",
        "open_source: false  # true needs a code/ folder (not empty) beside this file",
        "train_set: unknown  # edit before submitting",
        "visually_grounded: false",
        "gpu_budget: 0.0  # GPU hours of training: edit before submitting",
        "parameters:",
        "  phonetic:",
        "    metric: cosine",
        "    frame_shift: 0.02",
        "  semantic:",
        "    metric: cosine",
        "    pooling: mean",
        "",
    ])


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def markdown(report: Mapping[str, Any]) -> str:
    norm = "token-normalised" if report["scoring"]["normalize"] else "unnormalised (summed)"
    lines = ["# Spoken language modelling scores", "",
             f"Benchmark `{report['benchmark']}`; units {report['inputs'].get('units')}; "
             f"LM `{report['inputs'].get('lm', '?')}`; {norm} log-likelihood "
             f"({report['scoring']['tokens']}; counted: {report['scoring']['counted']}). Scores in %, "
             f"95 % bootstrap intervals over pair ids ({report['scoring']['bootstrap']} resamples, seed "
             f"{report['scoring']['seed']}); ZeroSpeech 2021 rules (1 / 0.5 on a tie / 0, mean over voices, "
             "then over pairs).", ""]
    for key, groups in report["results"].items():
        task = key.split("/", 1)[0]
        lines += [f"## {TASK_NAMES.get(task, task)} ({key})", "", "| group | score | 95 % CI | pair ids |",
                  "|---|---:|---:|---:|"]
        for name, cell in groups.items():
            low, high = cell["ci95"]
            if cell["pairs"] < MIN_PAIRS:
                lines.append(f"| {name} | too few pairs | – | {cell['pairs']} |")
                continue
            lines.append(f"| {name} | {cell['score']:.2f} | {low:.2f} - {high:.2f} | {cell['pairs']} |")
        lines.append("")
    unscored = [f"{s['task']}/{s['split']}" for s in report["splits"] if not s["gold"]]
    if unscored:
        lines += [f"Without gold (submission files only): {', '.join(unscored)}.", ""]
    return "\n".join(lines)


def write_outputs(output: str | os.PathLike, splits: Sequence[Split], scores: Mapping[tuple[str, str],
                  Mapping[str, float]], report: Mapping[str, Any]) -> dict[str, Any]:
    """Write the scores, ``report.json``, ``report.md``, ``tables/``, the submission and ``report.html`` under
    ``output`` (the module doc). Returns what ``report.json`` adds to ``report``: ``outputs`` (the paths) and
    ``submission`` (its ``splits``, ``only_dev``, the splits ``left_out`` of it, the validator's command line
    ``validate``)."""
    out = Path(output)
    written: dict[str, str] = {}
    lines = {(s.task, s.split): [f"{it.filename} {scores[s.task, s.split][it.filename]!r}" for it in s.items]
             for s in splits}
    for (task, split), text in lines.items():
        written[f"scores/{task}/{split}"] = str(write_lines_atomic(out / "scores" / task / f"{split}.txt", text))
    write_sidecar(out / "scores", inputs=dict(report.get("inputs", {})), scoring=dict(report["scoring"]))
    chosen, only_dev = submitted_splits(list(lines))
    sub = out / "submission"
    written.update({f"submission/{t}/{s}": str(sub / t / f"{s}.txt") for t, s in chosen})
    held = {t: {f"{s}.txt" for tt, s in chosen if tt == t} for t, _ in chosen}
    options = " ".join(validator_options(held))
    written.update(submission=str(sub), meta_yaml=str(sub / "meta.yaml"), report_json=str(out / "report.json"),
                   report_md=str(out / "report.md"), report_html=str(out / "report.html"))
    submission = {"splits": [f"{t}/{s}" for t, s in chosen], "only_dev": only_dev,
                  "left_out": [f"{t}/{s}" for t, s in lines if (t, s) not in chosen],
                  "validate": f"zerospeech2021-validate DATASET {sub} {options}".rstrip()}
    write_json_atomic(out / "report.json", {**report, "outputs": written, "submission": submission})
    write_text_atomic(out / "report.md", markdown(report))
    write_tables(out / "report.md")
    expected = {(s.task, s.split): {it.filename for it in s.items} for s in splits}
    write_submission(sub, {k: lines[k] for k in chosen}, meta_yaml(report), expected)
    write_html(out / "report.md")
    return {"outputs": written, "submission": submission}


def write_submission(folder: Path, files: Mapping[tuple[str, str], Sequence[str]], meta: str,
                     expected: Mapping[tuple[str, str], set[str]] | None = None) -> Path:
    """The submission folder, built beside ``folder``, checked, then put in place of the previous one (the
    folder is written whole: nothing of an earlier run stays). ``files``: ``{(track, split): lines}``. A
    problem that the validator would find is a defect of spidrkit: ``RuntimeError``, nothing replaced."""
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for track in TRACK_FILES:
            (tmp / track).mkdir(parents=True)
        for (track, split), text in files.items():
            write_lines_atomic(tmp / track / f"{split}.txt", text)
        write_text_atomic(tmp / "meta.yaml", meta)
        problems = validate_submission(tmp, expected)
        if problems:
            raise RuntimeError("the ZeroSpeech 2021 submission written would fail its validator (a defect of "
                               "spidrkit): " + "; ".join(problems))
        old = folder.with_name(f".{folder.name}.old{os.getpid()}")
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        fsync_dir(folder.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
