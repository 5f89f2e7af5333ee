"""The CPU study (docs/cpu_study.md): ``tiny`` SpidR variants (arms) x seeds under one budget, tabulated.

    python experiments/cpu_study.py OUT --corpus short=runs/demo/corpus --corpus long=runs/long/corpus \\
        --minutes 15 --seeds 0 1 2 --threads 1 --parallel 2 [--arms baseline,long] [--plan]

Each arm is a corpus choice (``short`` / ``long``: folders built by ``spidrkit data synth``, the long one with
``--utterance-seconds``) and a list of ``--set`` overrides of the ``tiny`` preset (:data:`ARMS`). Each run
(arm, seed) trains for ``--minutes`` of wall time with ``--threads`` threads into ``OUT/runs/ARM/seedS`` (the
same command resumes it), then evaluates its last checkpoint on the dev and heldout splits of ``--eval-corpus``
(the same speech for every arm; :mod:`spidrkit.evaluation.runs.budget`,
:mod:`spidrkit.evaluation.runs.diagnostics`): across/within-speaker ABX of the layer chosen on dev (reported on
dev + heldout), the fixed-set codebook and prediction perplexity and the NMI of the teacher units with phone
vs position per codebook layer, and the per-batch perplexities of ``metrics.jsonl`` over time; it writes
``result.json`` beside the run, and a run with a ``result.json`` is never rerun. ``--parallel`` runs go at
once. The tables (mean and spread over seeds) go to ``OUT/study.md`` and ``OUT/study.json``, the per-batch
perplexity curves of every arm to ``OUT/perplexity_ARM.png``. ``--table-only`` tabulates what has finished
and lists the runs that have not; ``--steps-of 0`` gives every other seed the steps seed 0 reached (time
budgets are unfair on a loaded machine); ``--plan`` prints arms x seeds x minutes and the wall time the study
needs, and stops. An arm naming config fields that this checkout lacks (the opt-in
codebook options of another change) fails alone: its ``log.txt`` says why and, with no ``result.json``, a
rerun once they exist runs it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def scaled_schedules(factor: float) -> list[str]:
    """The tiny preset's step schedules (learning rate, teacher) divided by ``factor``: an arm whose updates
    each cost ``factor`` times the baseline's (more frames per update) gets the same schedule per unit of
    compute, so the comparison is of the batch, not of a slower schedule. A ``factor`` below 1 stretches the
    schedules for a longer run."""
    from spidrkit.config import load_config

    o, t = (cfg := load_config("tiny")).optim, cfg.teacher
    steps = {"optim.warmup_steps": o.warmup_steps, "optim.hold_steps": o.hold_steps,
             "optim.decay_steps": o.decay_steps, "teacher.ramp_steps": t.ramp_steps,
             "teacher.freeze_step": t.freeze_step}
    return [*(f"{k}={round(v / factor)}" for k, v in steps.items()), f"teacher.timescale={t.timescale / factor}"]


SCALED_2, SCALED_4 = scaled_schedules(2), scaled_schedules(4)
# a 90-minute run: the log mel model takes 140-180 steps a minute on one thread beside another run, so the tiny
# preset's 6,000-step schedules (learning rate, teacher) are stretched to 16,000 steps
LONG_RUN = [*scaled_schedules(6000 / 16000), "train.max_steps=16000"]
LOGMEL_DATA = ["model.frontend=logmel", "model.codebook_init=data"]  # the demo's departures (DEMO_OVERRIDES)
CMVN_DATA = ["model.frontend=logmel_cmvn", "model.codebook_init=data"]  # + per-utterance band normalisation
VOICE_STEPS = ["train.max_steps=3000"]  # the voices arms compare at equal steps, whatever the machine's load
# arm -> (corpus key, overrides of the tiny preset)
ARMS: dict[str, tuple[str, list[str]]] = {
    "baseline": ("short", []),
    "logmel": ("short", ["model.frontend=logmel"]),  # the opt-in fixed front end (docs/method.md#front-end)
    "logmel_long": ("long", ["model.frontend=logmel"]),
    # the paper's teacher (beta0 0.999, T 10000): targets stay near those of the random network, which on log
    # mel frames are already phonetic (measured: random weights 21 % ABX across), as in BEST-RQ
    # codewords drawn from the first batch's targets: every codeword starts on the data (docs/method.md#codebook-update)
    "logmel_data_init": ("short", LOGMEL_DATA),
    # the 90-minute runs, SpidR vs DinoSR (the paper's Figure 2) on the demo's config: --minutes 90
    # (docs/cpu_study.md#90-minutes-spidr-and-dinosr-on-the-demos-config)
    "logmel_data_init_90": ("short", [*LOGMEL_DATA, *LONG_RUN]),
    "dinosr_logmel_data_init_90": ("short", ["variant=dinosr", *LOGMEL_DATA, *LONG_RUN]),
    # teacher initialisation, crop length and width on the demo's config (the paper's front end sits at chance, so
    # they show nothing there: docs/cpu_study.md#what-the-runs-show, findings 1 and 8)
    "logmel_data_init_teacher_independent": ("short", [*LOGMEL_DATA, "model.teacher_init=independent"]),
    "logmel_data_init_crop_2s": ("short", [*LOGMEL_DATA, "data.max_samples=32000"]),
    "logmel_data_init_width_384": ("short", [*LOGMEL_DATA, "model.dim=384", "model.ffn_dim=1536"]),
    "logmel_paper_teacher": ("short", ["model.frontend=logmel", "teacher.beta0=0.999", "teacher.timescale=10000"]),
    "logmel_long_crop_10s": ("long", ["model.frontend=logmel", "data.max_samples=160000",
                                      "data.max_batch_samples=320000"]),
    # the voices study (docs/voices.md): the demo's config for 3,000 steps on the flite-only corpus (3 training
    # voices, the control) or the many-voice one (10 voices of 4 engines), then the voice-independence options.
    # Corpus keys: flite = `data synth --voices awb rms slt kal16 ked --heldout-voice kal16,ked`, many = `data
    # synth --heldout-voice kal16,ked` (every voice); both have the same dev and heldout splits.
    "voices_flite3": ("flite", [*LOGMEL_DATA, *VOICE_STEPS]),
    "voices_many": ("many", [*LOGMEL_DATA, *VOICE_STEPS]),
    "voices_flite3_vtlp": ("flite", [*LOGMEL_DATA, *VOICE_STEPS, "data.voice_perturb=vtlp"]),
    "voices_many_vtlp": ("many", [*LOGMEL_DATA, *VOICE_STEPS, "data.voice_perturb=vtlp"]),
    "voices_many_cmvn": ("many", [*CMVN_DATA, *VOICE_STEPS]),
    "voices_flite3_cmvn": ("flite", [*CMVN_DATA, *VOICE_STEPS]),  # separates "more voices" from "CMVN"
    "voices_many_vtlp_cmvn": ("many", [*CMVN_DATA, *VOICE_STEPS, "data.voice_perturb=vtlp"]),
    "voices_many_praat": ("many", [*LOGMEL_DATA, *VOICE_STEPS, "data.voice_perturb=praat"]),
    # the best combinations: band normalisation with either perturbation (the equaliser is not combined with it:
    # a gain constant over the utterance in each band is what the normalisation removes)
    "voices_many_praat_cmvn": ("many", [*CMVN_DATA, *VOICE_STEPS, "data.voice_perturb=praat"]),
    # the winner (band normalisation, every voice: the demo's config) for 90 minutes: one niced thread beside
    # another run takes ~125 steps a minute, so the schedules are stretched to 12,000 steps
    "voices_many_cmvn_90": ("many", [*CMVN_DATA, *scaled_schedules(0.5), "train.max_steps=12000"]),
    # the best combination (band normalisation + VTLP: the demo's config since 2026-12-06) on the same 12,000 steps
    "voices_many_vtlp_cmvn_90": ("many", [*CMVN_DATA, *scaled_schedules(0.5), "train.max_steps=12000",
                                          "data.voice_perturb=vtlp"]),
    # the demo's configuration since its second version (DEMO_OVERRIDES + DEMO_SCHEDULE): the same schedule stopped at
    # 2,500 steps, where the 12,000-step runs were below random weights with both held-out voices (docs/voices.md 13-14)
    "voices_many_vtlp_cmvn_2500": ("many", [*CMVN_DATA, *scaled_schedules(0.5), "train.max_steps=2500",
                                            "data.voice_perturb=vtlp"]),
    "long_utterances": ("long", []),
    "teacher_independent": ("short", ["model.teacher_init=independent"]),
    "teacher_linear": ("short", ["teacher.schedule=linear"]),  # DinoSR's linear decay schedule, SpidR heads
    "crop_2s": ("short", ["data.max_samples=32000"]),
    "long_crop_10s": ("long", ["data.max_samples=160000", "data.max_batch_samples=320000"]),
    "width_384": ("short", ["model.dim=384", "model.ffn_dim=1536"]),
    "accum_4": ("short", ["train.grad_accum=4", *SCALED_4]),
    "batch_2x": ("short", ["data.max_batch_samples=320000", *SCALED_2]),
    "decay_0.99_accum_4": ("short", ["train.grad_accum=4", "model.codebook_decay=0.99", *SCALED_4]),
    "decay_0.999_data_init_warmup": ("short", ["train.grad_accum=4", "model.codebook_decay=0.999",
                                               "model.codebook_init=data", "model.codebook_decay_warmup=125",
                                               *SCALED_4]),
}
EVAL_MINUTES = 1.5  # measured evaluation time of one run (tiny, 60 files a split, 10k fixed frames, 1 thread)
MAX_FILES = 60


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--corpus", action="append", default=[], metavar="KEY=DIR", help="short=DIR, long=DIR")
    p.add_argument("--eval-corpus", default="short", metavar="KEY",
                   help="the corpus every arm is evaluated on (its dev and heldout splits; default: short)")
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--minutes", type=float, default=15.0, help="training wall time per run")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--parallel", type=int, default=2, help="runs at once")
    p.add_argument("--max-files", type=int, default=MAX_FILES, help="evaluation files per split")
    p.add_argument("--milestones", default="", metavar="M1,M2,...",
                   help="milestone minutes of every run (e.g. 2,5,10,20,45): a budget curve per run, with the "
                        "fitted time at which it would cross MFCC (OUT/runs/ARM/seedS/budget/)")
    p.add_argument("--steps-of", type=int, default=None, metavar="SEED",
                   help="train each run for the steps that seed SEED of its arm reached (its result.json) instead "
                   "of --minutes (capped at 3x --minutes): seeds stay comparable when the machine's load varies")
    p.add_argument("--table-only", action="store_true",
                   help="tabulate the finished runs of these arms x seeds, list the others as not run, train nothing")
    p.add_argument("--plan", action="store_true", help="print the plan and its wall time, run nothing")
    p.add_argument("--one", nargs=2, metavar=("ARM", "SEED"), help=argparse.SUPPRESS)  # a worker process
    args = p.parse_args(argv)
    args.corpora = dict(c.split("=", 1) for c in args.corpus)
    args.arm_list = [a for a in args.arms.split(",") if a]
    unknown = [a for a in args.arm_list if a not in ARMS]
    if unknown:
        p.error(f"unknown arms {unknown}; choose from {', '.join(ARMS)}")
    return args


def runs(args) -> list[tuple[str, int]]:
    return [(arm, seed) for arm in args.arm_list for seed in args.seeds]


def plan(args) -> str:
    n = len(runs(args))
    waves = math.ceil(n / max(args.parallel, 1))
    evals = EVAL_MINUTES * (1 + 0.5 * len([m for m in args.milestones.split(",") if m]))  # + a curve point each
    wall = waves * (args.minutes + evals)
    lines = [f"{len(args.arm_list)} arms x {len(args.seeds)} seeds = {n} runs of {args.minutes:g} min "
             f"(+ ~{evals:.1f} min evaluation), {args.parallel} at once with {args.threads} thread(s) each: "
             f"{waves} waves, ~{wall:.0f} min ({wall / 60:.1f} h) of wall time"]
    for arm in args.arm_list:
        key, over = ARMS[arm]
        lines.append(f"  {arm:32s} corpus={key:6s} {' '.join(over) or '(tiny preset)'}")
    return "\n".join(lines)


def run_dir(args, arm: str, seed: int) -> Path:
    return args.out / "runs" / arm / f"seed{seed}"


def run_one(args, arm: str, seed: int) -> None:
    """Train and evaluate one (arm, seed) in this process; writes ``result.json``."""
    import torch

    from spidrkit.checkpoints import load_model
    from spidrkit.checkpoints.run import latest_checkpoint
    from spidrkit.config import load_config
    from spidrkit.evaluation.plots.perplexity import read_perplexities
    from spidrkit.evaluation.runs.budget import evaluate_point
    from spidrkit.evaluation.runs.diagnostics import diagnose
    from spidrkit.evaluation.sweep.evalset import load_eval_set
    from spidrkit.io import json_safe, write_json_atomic
    from spidrkit.training.loop import pretrain

    torch.set_num_threads(args.threads)
    key, over = ARMS[arm]
    corpus = Path(args.corpora[key])
    folder = run_dir(args, arm, seed)
    budget = [f"train.max_minutes={args.minutes}"]
    ref = run_dir(args, arm, args.steps_of) / "result.json" if args.steps_of not in (None, seed) else None
    if ref is not None and ref.is_file():
        budget = [f"train.max_steps={json.loads(ref.read_text())['step']}", f"train.max_minutes={3 * args.minutes}"]
    cfg = load_config("tiny", [f"data.train_manifest={corpus / 'train.csv'}",
                               f"data.valid_manifest={corpus / 'dev.csv'}", *budget,
                               f"train.seed={seed}", "train.device=cpu",
                               f"train.milestone_minutes=[{args.milestones}]", "data.num_workers=0", *over])
    t0 = time.perf_counter()
    summary = pretrain(cfg, folder, resume=True, progress=False)
    train_s = time.perf_counter() - t0
    model = load_model(latest_checkpoint(folder))
    # every arm is evaluated on the same speech (--eval-corpus), whatever corpus it trained on
    evaluation = Path(args.corpora[args.eval_corpus])
    sets = (load_eval_set(evaluation, ["dev"], folder / "eval_dev", args.max_files),
            load_eval_set(evaluation, ["dev", "heldout"], folder / "eval", args.max_files))
    t0 = time.perf_counter()
    point = evaluate_point(model, sets, evaluation, list(range(1, model.num_layers + 1)),
                           speakers=("within", "across"))
    point["diagnostics"] = diagnose(model, evaluation, "dev")  # with the head predictions
    ppl = read_perplexities(folder / "metrics.jsonl") if (folder / "metrics.jsonl").is_file() else {}
    crossing = None
    if args.milestones:
        from spidrkit.evaluation.runs.budget import budget_curve

        crossing = budget_curve(folder, evaluation, folder / "budget", max_files=args.max_files,
                                speakers=("within", "across"), force=True)["crossing"]  # the arm's own; cached
    write_json_atomic(folder / "result.json", json_safe({
        "arm": arm, "seed": seed, "corpus": str(corpus), "eval_corpus": str(evaluation), "overrides": over,
        "step": summary["step"], "budget": budget,
        "status": summary["status"], "train_seconds": train_s, "eval_seconds": time.perf_counter() - t0,
        **point, "per_batch": {k: np.asarray(v).tolist() for k, v in ppl.items()}, "crossing": crossing}))


def launch(args, arm: str, seed: int) -> str:
    folder = run_dir(args, arm, seed)
    if (folder / "result.json").is_file():
        return f"{arm} seed {seed}: done before"
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, __file__, str(args.out), "--one", arm, str(seed), "--minutes", str(args.minutes),
           "--threads", str(args.threads), "--max-files", str(args.max_files), "--milestones", args.milestones,
           "--eval-corpus", args.eval_corpus,
           *(["--steps-of", str(args.steps_of)] if args.steps_of is not None else []),
           *[x for c in args.corpus for x in ("--corpus", c)]]
    with open(folder / "log.txt", "a") as log:
        rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    return f"{arm} seed {seed}: {'ok' if rc == 0 else f'FAILED (exit {rc}, see {folder / 'log.txt'})'}"


def _stats(values: list[float | None]) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    return f"{np.mean(v):.2f}" + (f" ± {np.std(v, ddof=1):.2f}" if len(v) > 1 else "")


def crossings(results: dict[str, list[dict]]) -> list[str]:
    """One line per run with a budget curve: the fitted time at which its ABX would reach MFCC's."""
    out = []
    for arm, rows in results.items():
        for r in rows:
            c = r.get("crossing")
            if c:
                fmt = lambda x: "never" if x is None else f"{x:.3g}"  # noqa: E731 (JSON: infinite as null)
                out.append(f"- {arm} seed {r['seed']}: trend crosses MFCC at {fmt(c['minutes'])} min "
                           f"(95 % bootstrap interval {fmt(c['low'])}-{fmt(c['high'])} min)")
    return out


def tabulate(args) -> dict:
    """``OUT/study.json`` / ``study.md`` and the perplexity figures from every finished run."""
    from spidrkit.evaluation.plots.perplexity import plot_runs_perplexity
    from spidrkit.io import write_json_atomic, write_text_atomic

    results: dict[str, list[dict]] = {}
    missing = []
    for arm, seed in runs(args):
        path = run_dir(args, arm, seed) / "result.json"
        if path.is_file():
            results.setdefault(arm, []).append(json.loads(path.read_text()))
        else:
            missing.append(f"{arm} seed {seed}")
    cut = [f"Not run (cut, or failed: see its log.txt): {', '.join(missing)}.", ""] if missing else []
    lines = ["# CPU study", "", plan(args), "", *cut, *crossings(results), "",
             "| arm | seeds | steps | layer | ABX across (%) | ABX within (%) | min fixed-set cb ppl | "
             "NMI phone | NMI position |", "|---|---|---|---|---|---|---|---|---|"]
    for arm, rows in results.items():
        diag = [r["diagnostics"]["layers"] for r in rows]
        nmi_p = [float(np.mean([v["nmi_phone"] for v in d.values()])) for d in diag]
        nmi_q = [float(np.mean([v["nmi_position"] for v in d.values()])) for d in diag]
        lines.append(f"| {arm} | {len(rows)} | {_stats([r['step'] for r in rows])} | "
                     f"{','.join(str(r['layer']) for r in rows)} | {_stats([r.get('abx_across') for r in rows])} | "
                     f"{_stats([r.get('abx_within') for r in rows])} | "
                     f"{_stats([r['diagnostics']['min_codebook_ppl'] for r in rows])} | {_stats(nmi_p)} | "
                     f"{_stats(nmi_q)} |")
    lines += ["", "NMI: mean over the codebook layers of the teacher units, I/sqrt(H H); position: distance to the "
              "nearest utterance edge, 0.1 s bins capped at 1 s. Per layer (fixed set, codebook / prediction "
              "perplexity, NMI phone / position):", ""]
    for arm, rows in results.items():
        for r in rows:
            cells = ", ".join(f"L{la} {v['codebook_ppl']:.1f}/{v.get('prediction_ppl', float('nan')):.1f} "
                              f"{v['nmi_phone']:.3f}/{v['nmi_position']:.3f}"
                              for la, v in r["diagnostics"]["layers"].items())
            lines.append(f"- {arm} seed {r['seed']}: {cells}")
        metrics = [run_dir(args, arm, r["seed"]) / "metrics.jsonl" for r in rows]
        metrics = [m for m in metrics if m.is_file()]
        if metrics:
            try:
                plot_runs_perplexity(metrics, args.out / f"perplexity_{arm}.png",
                                     labels=[f"seed {r['seed']}" for r in rows][: len(metrics)],
                                     title=f"{arm}: per-batch perplexity")
            except ValueError as e:  # a run too short for a curve
                lines.append(f"  (no perplexity figure for {arm}: {e})")
    write_json_atomic(args.out / "study.json", {"plan": plan(args), "results": results})
    write_text_atomic(args.out / "study.md", "\n".join(lines) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plan:
        print(plan(args))
        return 0
    if args.one:
        run_one(args, args.one[0], int(args.one[1]))
        return 0
    needed = {ARMS[a][0] for a in args.arm_list} - set(args.corpora)
    if needed:
        print(f"cpu_study: error: no corpus given for {sorted(needed)} (--corpus KEY=DIR)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    if args.table_only:
        tabulate(args)
        print(f"tables: {args.out / 'study.md'}")
        return 0
    print(plan(args), flush=True)
    with ThreadPoolExecutor(max_workers=max(args.parallel, 1)) as pool:
        for line in pool.map(lambda r: launch(args, *r), runs(args)):
            print(line, flush=True)
    tabulate(args)
    print(f"tables: {args.out / 'study.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
