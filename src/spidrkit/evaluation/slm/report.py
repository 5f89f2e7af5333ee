"""The outputs of ``spidrkit evaluate slm``: the ZeroSpeech submission files, ``report.json``, ``report.md``.

Submission (ZeroSpeech 2021 layout, ``docs/formats.md``): ``OUT/submission/<task>/<split>.txt`` with one
``<filename> <score>`` line per audio of the split (``filename``: the wav's stem; ``score``: its
log-likelihood, ``repr`` of the float so that ties survive), for every split read, with or without gold,
and ``OUT/submission/meta.yaml`` with the fields ZeroSpeech 2021 validates (author, affiliation,
description, open_source, train_set, gpu_budget, parameters; the placeholders are to be edited before an
upload). The published spoken StoryCloze sets are written as ``storycloze/sSC.txt`` / ``tSC.txt``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spidrkit.evaluation.slm.bench import Split
from spidrkit.evaluation.slm.rules import MIN_PAIRS
from spidrkit.io import write_json_atomic, write_lines_atomic, write_text_atomic

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
        "open_source: true",
        "train_set: unknown  # edit before submitting",
        "gpu_budget: 0.0",
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
                  Mapping[str, float]], report: Mapping[str, Any]) -> dict[str, str]:
    """Write the submission, ``report.json`` and ``report.md`` under ``output``; returns their paths."""
    out = Path(output)
    sub = out / "submission"
    written: dict[str, str] = {}
    for split in splits:
        values = scores[split.task, split.split]
        path = sub / split.task / f"{split.split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_lines_atomic(path, (f"{it.filename} {values[it.filename]!r}" for it in split.items))
        written[f"submission/{split.task}/{split.split}"] = str(path)
    written["meta_yaml"] = str(write_text_atomic(sub / "meta.yaml", meta_yaml(report)))
    written["report_json"] = str(out / "report.json")
    written["report_md"] = str(out / "report.md")
    write_json_atomic(out / "report.json", {**report, "outputs": written})
    write_text_atomic(out / "report.md", markdown(report))
    return written
