"""The voices study (docs/voices.md): every finished run of ``experiments/cpu_study.py``'s ``voices_*`` arms,
swept on one evaluation corpus, with its across-speaker ABX split by voice pair.

    python experiments/voices_study.py STUDY_OUT --corpus CORPUS [--arms voices_flite3,voices_many,...]
        [--max-files 150]

For each ``STUDY_OUT/runs/ARM/seedS`` with a ``result.json`` (training done), the last checkpoint is swept
(``spidrkit evaluate sweep``: every layer, baselines MFCC, MFCC + CMVN and the same model's random
initialisation, on ``CORPUS``'s dev + heldout splits) into ``STUDY_OUT/sweeps/ARM/seedS`` (kept: a rerun only
tabulates). The table, ``STUDY_OUT/voices.md`` and ``voices.json``, gives per run the steps, the best layer and
its across-speaker ABX by group of voice pairs (both voices heard in training; a training voice and the
held-out voice; a training voice and the held-out engine's voice), beside the same groups for its random
initialisation, MFCC and MFCC + CMVN; then the mean ± s.d. over seeds per arm; then, by voice pair, the best
layer's across-speaker ABX minus its random initialisation's (where a group's miss comes from).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def sweep_run(run: Path, corpus: Path, out: Path, max_files: int) -> dict:
    """The sweep's ``report.json`` results of the run's last checkpoint (computed once)."""
    report = out / "report.json"
    if not report.is_file():
        from spidrkit.checkpoints.run import latest_checkpoint
        from spidrkit.evaluation.sweep.run import sweep

        sweep(latest_checkpoint(run), corpus, out, splits=("dev", "heldout"), max_files=max_files,
              baselines=("mfcc", "mfcc_cmvn", "random"), progress=False)
    return json.loads(report.read_text())["results"]


def row_of(results: dict, result: dict) -> dict:
    """One run's line: steps, best layer, and the groups of each row (best layer, random init, floors)."""
    pairs = results.get("voice_pairs", {})
    rows, by_pair = {}, {}
    for name, r in pairs.items():
        key = ("model" if name.endswith("(best)") else "random" if name.startswith("random")
               else name)
        rows[key], by_pair[key] = r["groups"], r.get("pairs", {})
    best = results.get("best_layer")
    layer = (results.get("layers") or {}).get(str(best), {})
    return {"step": result.get("step"), "best_layer": best, "abx_across": layer.get("abx_across"),
            "abx_within": layer.get("abx_within"), "groups": rows, "pairs": by_pair}


def _stat(values: list) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    return f"{np.mean(v):.2f}" + (f" ± {np.std(v, ddof=1):.2f}" if len(v) > 1 else "")


def tabulate(lines: dict[str, list[dict]]) -> str:
    """Per arm: the model's groups (mean ± s.d. over seeds) and its random initialisation's; then the floors
    (MFCC, MFCC + CMVN: the same speech for every arm)."""
    groups = sorted({g for rows in lines.values() for r in rows for g in r["groups"].get("model", {})})
    head = ["arm", "runs", "steps", "best layer", "ABX across", "ABX within", *groups]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cells(rows: list[dict], who: str) -> list[str]:
        return [_stat([r["groups"].get(who, {}).get(g) for r in rows]) for g in groups]

    for arm, rows in lines.items():
        out.append("| " + " | ".join([arm, str(len(rows)), _stat([r["step"] for r in rows]),
                                      " ".join(str(r["best_layer"]) for r in rows),
                                      _stat([r["abx_across"] for r in rows]), _stat([r["abx_within"] for r in rows]),
                                      *cells(rows, "model")]) + " |")
        out.append("| " + " | ".join([f"*{arm}, random init*", str(len(rows)), "0", "", "", "",
                                      *cells(rows, "random")]) + " |")
    first = next(iter(lines.values()), [])
    for floor in ("mfcc", "mfcc_cmvn"):
        if first and floor in first[0]["groups"]:
            out.append("| " + " | ".join([f"*{floor}*", "", "", "", "", "", *cells(first[:1], floor)]) + " |")
    return "\n".join(out) + "\n"


def tabulate_pairs(lines: dict[str, list[dict]]) -> str:
    """Per arm and voice pair: the model's across-speaker ABX minus its own random initialisation's (mean ±
    s.d. over seeds; negative: training helped that pair), then the random initialisation's and MFCC's own
    values, so that a group's miss can be traced to the pairs that make it."""
    pairs = sorted({p for rows in lines.values() for r in rows for p in r.get("pairs", {}).get("model", {})})
    head = [p.replace("|", "–") for p in pairs]  # a | would split the Markdown cell
    out = ["| model - random init | " + " | ".join(head) + " |", "|" + "---|" * (len(pairs) + 1)]
    for arm, rows in lines.items():
        deltas = [[r["pairs"]["model"][p] - r["pairs"]["random"][p] for r in rows
                   if p in r.get("pairs", {}).get("model", {}) and p in r["pairs"].get("random", {})] for p in pairs]
        out.append(f"| {arm} ({len(rows)}) | " + " | ".join(_stat(d) for d in deltas) + " |")
    shown: list[dict] = []
    for arm, rows in lines.items():  # the values themselves: each distinct random initialisation, then MFCC
        for label, values in ((f"*{arm}, random init*", rows[0].get("pairs", {}).get("random")),
                              ("*mfcc*", rows[0].get("pairs", {}).get("mfcc"))):
            if values and values not in shown:
                shown.append(values)
                out.append(f"| {label} | " + " | ".join(_stat([values.get(p)]) for p in pairs) + " |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="the cpu_study.py output folder")
    p.add_argument("--corpus", type=Path, required=True, help="the evaluation corpus (dev + heldout)")
    p.add_argument("--arms", default="", help="comma-separated arms (default: every voices_* arm found)")
    p.add_argument("--max-files", type=int, default=150, help="files per split (default: 150, as the demo)")
    args = p.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a] or sorted(
        d.name for d in (args.out / "runs").iterdir() if d.name.startswith("voices_"))
    lines: dict[str, list[dict]] = {}
    for arm in arms:
        for run in sorted((args.out / "runs" / arm).glob("seed*")):
            if not (run / "result.json").is_file():
                print(f"{arm} {run.name}: not finished")
                continue
            results = sweep_run(run, args.corpus, args.out / "sweeps" / arm / run.name, args.max_files)
            row = row_of(results, json.loads((run / "result.json").read_text()))
            lines.setdefault(arm, []).append({"seed": run.name, **row})
            print(f"{arm} {run.name}: {json.dumps(row['groups'].get('model'))}")
    (args.out / "voices.json").write_text(json.dumps(lines, indent=1))
    text = tabulate(lines) + "\nBy voice pair:\n\n" + tabulate_pairs(lines)
    (args.out / "voices.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
