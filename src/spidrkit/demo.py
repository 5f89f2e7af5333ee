"""The main job on a fresh machine: from nothing to a report, on 2 CPU cores.

``run_demo(out_dir, minutes=24)``:
  1. builds a corpus from every installed voice (:func:`demo_voices`), aligned where the engine gives timings,
     with a flite voice and another engine's voice held out of train and dev;
  2. pretrains a ``tiny`` SpidR on it for :data:`DEMO_STEPS` steps (:data:`DEMO_SCHEDULE`) or ``minutes`` of wall
     time, whichever comes first (~11 minutes on 2 cores);
  3. runs the evaluation sweep on dev + held-out speech (:data:`SWEEP_MAX_FILES` files of each; every layer:
     ABX within/across speaker, word MAP, the linear phone and speaker probes; every codebook layer: unit ABX
     and PNMI; k-means units; MFCC and random-weight baselines), with the perplexity curves of the run;
  4. the budget curve (:func:`budget_stage`): the milestone checkpoints of the run (at 1, 2, 4 and 7 of 24
     minutes, scaled with ``minutes``) and the last one against MFCC and random weights, in ``OUT/budget/``;
  5. spoken language modelling (:func:`_slm_stages`): a small synthetic sLM benchmark, the pretrained model's
     units of the corpus's train split, a ``tiny`` unit LM trained for ``slm_minutes``, its sWUGGY /
     sBLIMP / tSC scores;
  6. writes ``OUT/report.md`` (and ``report.json``) with tables and plots, every table as ``OUT/tables/NAME.csv``
     and ``OUT/report.html``, the same report as one page with its figures embedded.
Every stage resumes: running the same command again after an interruption redoes only what is missing, and
again on a finished demo it continues its pretraining where it stopped and writes the evaluation and the report
anew (a checkpoint already evaluated with the same settings, when the pretraining added no step, keeps its sweep:
``OUT/sweep_done.json``). A folder that is not a demo's (files, none of :data:`DEMO_MARKS`) is refused unless
``force`` (``--force``): the demo then writes into it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spidrkit import __version__
from spidrkit.config import ModelConfig, load_config
from spidrkit.config.validation import with_overrides
from spidrkit.data.synth.engines import ALL_VOICES
from spidrkit.errors import InputError, Terminated
from spidrkit.evaluation.pages import write_html, write_tables
from spidrkit.io import file_sha256, json_safe, write_json_atomic, write_text_atomic
from spidrkit.runtime import Stopwatch

logger = logging.getLogger("spidrkit.demo")

# the voices the model hears: every installed voice but the held-out ones (docs/voices.md: with the band
# normalisation below, 10 voices of 4 engines gave 20.5 % across-speaker ABX at 3,000 steps, flite's 3 voices 26.1 %)
TRAIN_VOICES: tuple[str, ...] | str = "all"
# the voices "all" draws from, the held-out ones left out (docs/voices.md)
DEMO_POOL = ALL_VOICES
HELDOUT_VOICE = "kal16"  # a flite voice never heard in training
HELDOUT_ENGINE = "ked"  # festival's: an engine never heard in training, when festival is installed


def demo_voices() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(every voice of the demo corpus, the held-out ones): the training voices (:data:`TRAIN_VOICES`; "all":
    every installed voice but the held-out ones, a missing engine a warning), the held-out flite voice and,
    when festival is installed, the held-out engine's voice (a warning otherwise)."""
    from spidrkit.data.synth.engines import available_voices, missing

    why = missing("festival")
    if why:
        logger.warning("the held-out engine's voice %s is left out (%s)", HELDOUT_ENGINE, why)
    heldout = (HELDOUT_VOICE,) if why else (HELDOUT_VOICE, HELDOUT_ENGINE)
    train = TRAIN_VOICES
    if train == "all":
        found, absent = available_voices([v for v in DEMO_POOL if v not in heldout])
        for voice, reason in absent.items():
            logger.warning("voice %s left out (%s)", voice, reason)
        train = tuple(found)
    return (*train, *heldout), heldout

DEFAULT_MINUTES = 24.0
# minutes of a 24-minute budget, scaled for other budgets: spread over the ~11 minutes that DEMO_STEPS take on 2 cores
MILESTONES = (1.0, 2.0, 4.0, 7.0)
# the budget curve's cheap evaluation: files per split, fixed-set frames (measured: see budget_stage)
BUDGET_MAX_FILES = 60
# the sweep's evaluation files per split (dev, heldout): 150 of ~260 / ~290 at 2 h keep the sweep near its
# share of the demo's 40 minutes (all of them took 11 min on a shared machine; ~9,000 ABX items remain)
SWEEP_MAX_FILES = 150
BUDGET_MIN_FRAMES = 10_000


def budget_words(max_steps: int, minutes: float) -> str:
    """The pretraining budget as the stage line, the report's title and its summary say it."""
    return f"{max_steps} steps or {minutes:g} min"


def milestone_minutes(minutes: float) -> list[float]:
    """The demo's milestones for a ``minutes`` budget: 1, 2, 4, 7 for 24 minutes, in proportion otherwise."""
    return [round(m * minutes / DEFAULT_MINUTES, 4) for m in MILESTONES]


SLM_MINUTES = 4.0  # the LM stage: units of the corpus, then training for the rest (the demo's split: 4 min)
SLM_MIN_TRAIN_MINUTES = 1.0  # the LM trains at least this long, whatever the units took
SLM_FILES = {"train": 1000, "dev": 100}  # utterances of the demo corpus the LM reads (evenly spaced)
SLM_PAIRS = 15  # pair ids per task of the demo's synthetic sLM test split (x 4 voices)
SLM_LM_HOURS = 0.004  # the benchmark's own LM corpus (unused by the demo, whose LM reads the demo corpus)


def corpus_hours(minutes: float) -> float:
    """Speech to synthesise for a pretraining budget: 2 h for the 20-minute default, less for short runs."""
    return round(min(2.0, max(0.1, minutes / 10.0)), 2)


# The demo's departures from the paper, three opt-in config values measured by experiments/cpu_study.py and
# experiments/codebook_ema.py (docs/method.md#front-end, docs/method.md#codebook-update, docs/voices.md): a fixed
# log mel front end in place of the convolutional downsampler, whose random initial frames are at chance on ABX,
# with each band normalised over the utterance, the student reading each utterance through a random vocal-tract
# warp (VTLP; the teacher reads it clean): together the arm that carried phones across voices best; and codewords
# drawn from the first batch, since ~270 masked frames per update leave ~15 of 256 random codewords alive.
# `--set model.frontend=cnn --set model.codebook_init=random --set data.voice_perturb=none` runs the paper's method.
DEMO_OVERRIDES = ("model.frontend=logmel_cmvn", "model.codebook_init=data", "data.voice_perturb=vtlp")
# The demo's schedule (docs/voices.md, findings 13-14): the `tiny` preset's learning-rate and teacher schedules
# stretched to a 12,000-step run (a longer warm-up; a teacher that narrows over 3,000 steps with a 4,000-step
# timescale), stopped at DEMO_STEPS, with the learning rate still at its peak. Past ~2,500 steps the units grow
# voice-bound on the demo's corpus: in the demo on this schedule for 24 minutes, the dev split's across-speaker ABX
# (training voices, sentences not trained on) was 14.5 % at 2,399 steps, 16.5 % at 4,792, 20.7 % at 5,706.
# `--set train.max_steps=N` trains longer.
DEMO_STEPS = 2500
DEMO_SCHEDULE = ("optim.warmup_steps=600", "optim.hold_steps=5400", "optim.decay_steps=6000",
                 "teacher.ramp_steps=3000", "teacher.freeze_step=20000", "teacher.timescale=4000.0",
                 f"train.max_steps={DEMO_STEPS}")


def demo_config(corpus: Path, minutes: float, seed: int, variant: str = "spidr", overrides: tuple[str, ...] = ()):
    """The ``tiny`` configuration (with :data:`DEMO_OVERRIDES` and :data:`DEMO_SCHEDULE`) trained on ``corpus``'s
    train split (validated on dev), on the CPU; ``overrides`` come last (the milestones follow a
    ``train.max_minutes`` among them)."""
    cfg = load_config(
        "tiny",
        [
            *DEMO_OVERRIDES,
            *DEMO_SCHEDULE,
            f"data.train_manifest={corpus / 'train.csv'}",
            f"data.valid_manifest={corpus / 'dev.csv'}",
            f"train.max_minutes={float(minutes)}",
            f"train.seed={seed}",
            "train.device=cpu",
            f"train.milestone_minutes={milestone_minutes(minutes)}",
            *overrides,
        ],
        variant=variant,
    )
    if 0 < cfg.train.max_minutes != minutes:  # `--set train.max_minutes=`: the milestones of that budget
        return demo_config(corpus, cfg.train.max_minutes, seed, variant, overrides)
    return cfg


@contextlib.contextmanager
def _stage(name: str, watch: Stopwatch) -> Iterator[None]:
    """Announce a stage, time it, and say how long it took."""
    print(f"\n==> {name}", flush=True)
    with watch(name):
        yield
    print(f"    {name}: {watch.seconds[name]:.0f} s", flush=True)


@dataclass(frozen=True)
class DemoOptions:
    """Every option of :func:`run_demo` (and of ``spidrkit demo``): the training budget in ``minutes``, the
    corpus's ``hours`` (default: :func:`corpus_hours` of the budget), the ``seed``, the ``variant``, the sweep's
    ``kmeans_k``, corpus ``workers``, config ``overrides`` (``section.key=value``, which win over the options
    above), a progress bar, the unit LM's budget ``slm_minutes`` (0: no sLM stage) and its benchmark's
    ``slm_pairs``."""

    minutes: float = DEFAULT_MINUTES
    hours: float | None = None
    seed: int = 0
    variant: str = "spidr"
    kmeans_k: int = 100
    workers: int = 2
    overrides: tuple[str, ...] = ()
    progress: bool = True
    slm_minutes: float = SLM_MINUTES
    slm_pairs: int = SLM_PAIRS


# what says a folder is a demo's (the first file stage 1 writes, the config of stage 2, the last file): it resumes
DEMO_MARKS = ("corpus/records/settings.json", "config.toml", "demo.json")


def check_demo_folder(out: Path, force: bool = False) -> None:
    """A demo goes into a new or empty folder, or resumes one of its own (one of :data:`DEMO_MARKS`); a folder of
    other files is :class:`~spidrkit.io.OutputExistsError` unless ``force``. Checked before any stage."""
    from spidrkit.io import refuse_overwrite

    if out.is_dir() and any(out.iterdir()) and not any((out / m).is_file() for m in DEMO_MARKS):
        refuse_overwrite([out], force, "demo", "choose a new or empty folder, or a demo's to resume it")


def run_demo(out_dir: str | os.PathLike = "runs/demo", options: DemoOptions | None = None, *, force: bool = False,
             **changes: Any) -> dict[str, Any]:
    """Run the whole demo into ``out_dir``; returns the report's dict (also in ``OUT/report.json``).
    ``options``: a :class:`DemoOptions` and/or its fields as keywords (``run_demo(out, minutes=24)``); ``force``:
    write into a folder that is not a demo's (:func:`check_demo_folder`)."""
    opts = with_overrides(DemoOptions, options, changes, "run_demo")
    out = Path(out_dir)
    check_demo_folder(out, force)
    watch = Stopwatch()
    corpus = out / "corpus"
    # a bad --set fails before any stage runs
    cfg = demo_config(corpus, opts.minutes, opts.seed, opts.variant, opts.overrides)
    # what trains is the config's: a `--set train.max_minutes=` / `train.seed=` / `variant=` wins over the arguments
    minutes, seed, variant = cfg.train.max_minutes, cfg.train.seed, cfg.variant
    if minutes <= 0:
        raise InputError(f"train.max_minutes={minutes:g}: the demo trains for a wall-time budget; set it above 0")
    hours = corpus_hours(minutes) if opts.hours is None else opts.hours
    opts = dataclasses.replace(opts, minutes=minutes, seed=seed, variant=variant, hours=hours)
    run_dir = out / f"pretrain_{variant}"
    out.mkdir(parents=True, exist_ok=True)
    with watch("total"):
        summary, checkpoint, results = _run_stages(out, corpus, run_dir, watch, cfg, opts)
        budget = budget_stage(out, corpus, run_dir, watch)
        slm = _slm_stages(out, corpus, checkpoint, results, watch, opts)
    timings = watch.rounded(1)  # the stages, then "total" (timed last)
    voices, heldout = demo_voices()
    demo_info = {
        "minutes": minutes, "max_steps": cfg.train.max_steps, "hours": hours, "seed": seed, "variant": variant,
        "voices": list(voices),
        "heldout_voices": list(heldout), "checkpoint": str(checkpoint), "training": json_safe(summary),
        "departures": _departures(cfg),
        "timings_s": timings, "budget_crossing": budget.get("crossing"),
    }
    write_json_atomic(out / "demo.json", demo_info)
    _prepend_summary(out / "report.md", demo_info, results)
    _append_slm(out / "report.md", slm)
    write_tables(out / "report.md")  # every table as CSV, then the page with the figures
    write_html(out / "report.md")
    print(f"\nreport: {out / 'report.html'} (and report.md)  ({timings['total'] / 60:.1f} min in all)")
    return {"demo": demo_info, "results": results, "slm": slm}


def _run_stages(out: Path, corpus: Path, run_dir: Path, watch: Stopwatch, cfg, opts: DemoOptions):
    """Corpus, pretraining (``cfg``: :func:`demo_config`), sweep: ``(training summary, checkpoint, sweep results)``."""
    from spidrkit.checkpoints.run import latest_checkpoint
    from spidrkit.data.synth.corpus import synthesize_corpus
    from spidrkit.training.loop import pretrain

    minutes, seed, variant, progress = cfg.train.max_minutes, cfg.train.seed, cfg.variant, opts.progress
    hours, workers = opts.hours, opts.workers

    voices, heldout = demo_voices()
    with _stage(f"1/6 corpus: {hours} h of speech from {', '.join(voices)} ({', '.join(heldout)} held out)", watch):
        synthesize_corpus(corpus, voices=voices, hours=hours, seed=seed, heldout_voice=list(heldout),
                          workers=workers, progress=progress)

    write_text_atomic(out / "config.toml", cfg.to_toml())
    with _stage(f"2/6 pretraining a tiny {variant} for {budget_words(cfg.train.max_steps, minutes)}", watch):
        summary = pretrain(cfg, run_dir, resume=True, progress=progress)
    if summary.get("signal") == "SIGINT":  # stopped by the user: the checkpoint is saved, the demo stops
        raise KeyboardInterrupt  # (the same command resumes)
    if summary.get("signal") == "SIGTERM":
        raise Terminated()
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise RuntimeError(f"pretraining wrote no checkpoint in {run_dir}")
    return summary, checkpoint, _sweep_stage(out, corpus, run_dir, checkpoint, watch, cfg, opts)


def _sweep_stage(out: Path, corpus: Path, run_dir: Path, checkpoint: Path, watch: Stopwatch, cfg,
                 opts: DemoOptions) -> dict[str, Any]:
    """The sweep of ``checkpoint`` into ``out`` (its results), or the finished one of the same checkpoint with
    the same settings, kept (:func:`_kept_sweep`)."""
    from spidrkit.evaluation.plots.perplexity import perplexity_note
    from spidrkit.evaluation.sweep.options import DEFAULT_BASELINES
    from spidrkit.evaluation.sweep.run import sweep

    # a run that ended before its first logging step has no metrics log: the report says so (no figure)
    metrics = run_dir / "metrics.jsonl"
    notes = [] if metrics.is_file() else [perplexity_note(metrics)]
    request = {"checkpoint": str(checkpoint), "corpus": str(corpus), "kmeans_k": opts.kmeans_k,
               "max_files": SWEEP_MAX_FILES, "baselines": list(DEFAULT_BASELINES),
               "metrics": str(metrics) if metrics.is_file() else None, "notes": notes, "spidrkit": __version__,
               "title": f"spidrkit demo: tiny {cfg.variant}, "
                        f"{budget_words(cfg.train.max_steps, cfg.train.max_minutes)} on {os.cpu_count()} CPU cores"}
    with _stage("3/6 evaluation sweep (every layer, baselines, k-means, probes, plots)", watch):
        results = _kept_sweep(out, request)
        if results is None:
            (out / SWEEP_DONE).unlink(missing_ok=True)
            results = sweep(
                checkpoint, corpus, out, splits=("dev", "heldout"), kmeans_k=opts.kmeans_k,
                max_files=SWEEP_MAX_FILES, probe=True, baselines=DEFAULT_BASELINES,
                metrics_jsonl=[metrics] if metrics.is_file() else None, notes=notes, title=request["title"],
                progress=opts.progress, force=True,  # the demo's own report: a sweep of another checkpoint rewrites it
            )
            sha = results.get("info", {}).get("checkpoint_sha256")  # the file's, as the sweep read it
            write_json_atomic(out / SWEEP_DONE, {**request, "sha256": sha})
    return results


# what the finished sweep evaluated (:func:`_kept_sweep`): written after it, removed before a new one starts
SWEEP_DONE = "sweep_done.json"


def _kept_sweep(out: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    """The results of the finished sweep in ``out`` when :data:`SWEEP_DONE` says it evaluated ``request``, the
    checkpoint unchanged (its SHA-256: a rerun whose pretraining added no step), as
    :func:`~spidrkit.evaluation.sweep.run.sweep` returns them, but with the figures as paths; its report files
    written anew from ``report.json`` (the demo's stages edit ``report.md`` after the sweep). None otherwise."""
    from spidrkit.evaluation.sweep.report import write_report

    try:
        done = json.loads((out / SWEEP_DONE).read_text())
        if done != {**request, "sha256": file_sha256(request["checkpoint"])}:
            return None
        stored = json.loads((out / "report.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    plots = [out / p for p in stored["plots"]]
    if not all(p.is_file() for p in plots):  # a figure deleted since: the sweep runs again
        return None
    print(f"    the sweep of {Path(request['checkpoint']).name} is done ({out / SWEEP_DONE}): kept", flush=True)
    json_path, md_path = write_report(out, stored["results"], plots, title=stored["title"])
    results = stored["results"]
    for key in ("layers", "random_init_layers"):  # JSON's string keys back to the layer numbers
        if key in results:
            results[key] = {int(k): v for k, v in results[key].items()}
    return {**results, "outputs": {"report_json": json_path, "report_md": md_path,
                                   "report_html": md_path.with_suffix(".html"), "eval": out / "eval",
                                   **{p.stem: p for p in plots}}}


def budget_stage(out: Path, corpus: Path, run_dir: Path, watch: Stopwatch) -> dict[str, Any]:
    """The budget curve of the run's milestones (:func:`spidrkit.evaluation.runs.budget.budget_curve`) into
    ``OUT/budget/``, its table appended to ``OUT/report.md``. Kept cheap for the demo's 6 minutes of sweep and
    curve: across-speaker ABX only, :data:`BUDGET_MAX_FILES` files per split, the fixed set of
    :data:`BUDGET_MIN_FRAMES` frames (each point is cached: a rerun evaluates only new checkpoints)."""
    from spidrkit.evaluation.runs.budget import budget_curve

    with _stage("4/6 budget curve: milestones against MFCC and random weights", watch):
        result = budget_curve(run_dir, corpus, out / "budget", max_files=BUDGET_MAX_FILES,
                              min_frames=BUDGET_MIN_FRAMES, force=True)  # its points are cached: only new ones
    report = out / "report.md"
    body = report.read_text() if report.exists() else ""
    note = (f"The curve's last point and the sweep's best layer answer two questions about the same checkpoint: "
            f"here each point's layer is chosen on dev across-speaker ABX alone and scored on {BUDGET_MAX_FILES} "
            f"files a split (cheap enough for every milestone); the headline at the top is the sweep's (its layer "
            f"chosen on the mean of within- and across-speaker ABX, {SWEEP_MAX_FILES} files a split).")
    table = (out / "budget" / "budget.md").read_text().replace("# Budget curve", f"## Budget curve\n\n{note}", 1)
    write_text_atomic(report, body + "\n" + table + "\n![budget curve](budget/budget.png)\n")
    return result


def _departures(cfg) -> str:
    """The opt-in departures from the paper that ``cfg`` takes, in words ('' for none): the opt-in model and data
    values that differ from their defaults (the paper's)."""
    m, paper, d = cfg.model, ModelConfig(), cfg.data
    said = [f"{m.frontend} front end" if m.frontend != paper.frontend else "",
            f"codebooks initialised from the {m.codebook_init}" if m.codebook_init != paper.codebook_init else "",
            f"{d.voice_perturb} voice perturbation of the student's input" if d.voice_perturb != "none" else "",
            f"a random {d.voice_eq:g} dB equaliser of the student's input" if d.voice_eq else ""]
    return ", ".join(x for x in said if x)


def _prepend_summary(report: Path, info: dict[str, Any], results: dict[str, Any]) -> None:
    """Put what the demo did (corpus, training, timings) and the headline comparison at the top."""
    train = info["training"] or {}
    last = train.get("train") or {}
    seen = [v for v in info["voices"] if v not in info["heldout_voices"]]
    lines = [
        "# spidrkit demo report",
        "",
        f"- corpus: {info['hours']} h of synthetic speech (train/dev: {', '.join(seen)}; held-out voices: "
        f"{', '.join(info['heldout_voices'])}: another voice of the training engine and another engine's), "
        f"seed {info['seed']}",
        f"- pretraining: tiny {info['variant']} ({info.get('departures') or 'the method of the paper'}), "
        f"{budget_words(info['max_steps'], info['minutes'])}, status {train.get('status')}, "
        f"{train.get('step')} steps, last loss {last.get('loss', float('nan')):.3f}",
        f"- checkpoint: `{info['checkpoint']}`",
        "- time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in info["timings_s"].items()),
    ]
    headline = _headline(results)
    if headline:
        lines += ["", headline]
    body = report.read_text() if report.exists() else ""
    write_text_atomic(report, "\n".join(lines) + "\n\n" + body)


def _headline(results: dict[str, Any]) -> str:
    """One sentence: does the best layer beat MFCC on across-speaker ABX? Empty when either is missing."""
    best = results.get("best_layer")
    layers = results.get("layers") or {}
    row = layers.get(best, layers.get(str(best))) if best is not None else None
    mfcc = (results.get("baselines") or {}).get("mfcc")
    if row is None or mfcc is None or row.get("abx_across") is None or mfcc.get("abx_across") is None:
        return ""
    ours, theirs = row["abx_across"], mfcc["abx_across"]
    verdict = "beats" if ours < theirs else "does not beat"
    return (f"**Best layer {best}: across-speaker ABX {ours:.2f} % vs MFCC {theirs:.2f} %: the pretrained model "
            f"{verdict} MFCC.**")


# ------------------------------------------------------------------------------------------- the sLM stages
def demo_units(out: Path, results: dict[str, Any]) -> tuple[str, int | None]:
    """The demo LM's units: k-means of the best ABX layer (the sweep's centroids, ``OUT/kmeans/``), as the
    paper's first choice; the codebook of the best codebook layer when the sweep fitted no k-means."""
    best = results.get("best_layer")
    fitted = sorted((out / "kmeans").glob(f"kmeans*_layer{int(best):02d}.npy")) if best is not None else []
    if fitted:
        return f"kmeans:{fitted[0]}", int(best)
    layer = results.get("best_codebook_layer")
    if layer is None:
        raise RuntimeError("the sweep chose neither a best layer with k-means centroids nor a codebook layer")
    return f"codebook:{int(layer)}", None


def _slm_stages(out: Path, corpus: Path, checkpoint: Path, results: dict[str, Any], watch: Stopwatch,
                opts: DemoOptions) -> dict[str, Any] | None:
    """sLM: the units of :data:`SLM_FILES` utterances of the corpus and the LM, ``minutes`` for both (the LM
    trains for what the units left, at least :data:`SLM_MIN_TRAIN_MINUTES` or ``minutes``; once: a finished LM is kept),
    then the benchmark and the scores (``OUT/slm/compare/report.{md,json}``, with the ABX/PNMI vs sLM table).
    ``None`` if ``minutes`` (``opts.slm_minutes``) is 0."""
    minutes, pairs, seed, workers, progress = opts.slm_minutes, opts.slm_pairs, opts.seed, opts.workers, opts.progress
    if minutes <= 0:
        return None
    from spidrkit.data.slm.build import synthesize_slm
    from spidrkit.evaluation.slm.compare import CompareRow, score_rows, write_comparison
    from spidrkit.evaluation.slm.units import CorpusSplit, load_encoder, parse_units, write_corpus_units
    from spidrkit.lm import train

    slm = out / "slm"
    units, layer = demo_units(out, results)
    spec = parse_units(units, layer)
    files = {s: slm / f"units_{s}.txt" for s in SLM_FILES}
    done = slm / "lm_done.json"
    with _stage(f"5/6 sLM: {spec.kind} units of {sum(SLM_FILES.values())} utterances, a tiny unit LM "
                f"({minutes:g} min in all)", watch):
        started = time.monotonic()
        if not done.is_file():
            encoder, model_id = load_encoder(str(checkpoint), spec)
            for split, path in files.items():
                if not path.is_file():
                    source = CorpusSplit(corpus, split, SLM_FILES[split])
                    write_corpus_units(path, source, spec, encoder, model=model_id)
            budget = max(min(SLM_MIN_TRAIN_MINUTES, minutes), minutes - (time.monotonic() - started) / 60)
            summary = train([files["train"]], slm / "lm", "tiny", [
                f"train.max_minutes={budget:.3f}", "train.max_steps=1000000", "optim.schedule=constant",
                "model.context=1024", f"train.seed={seed}", "train.device=cpu"], valid=[files["dev"]],
                progress=progress)
            write_json_atomic(done, {**summary, "train_minutes": round(budget, 3)})
    with _stage(f"6/6 sLM: benchmark ({pairs} pairs per task), sWUGGY, sBLIMP, tSC scores", watch):
        bench = synthesize_slm(slm / "bench", pairs=pairs, seed=seed, workers=workers, lm_hours=SLM_LM_HOURS,
                               progress=progress)
        label = f"SpidR codebook L{spec.layer}" if spec.kind == "codebook" else f"SpidR k-means L{spec.layer}"
        scored = score_rows(bench, [CompareRow(label, units, str(slm / "lm"), str(checkpoint), layer, seed)],
                            slm / "compare")
        lm_info = json.loads(done.read_text())
        notes = [f"LM: tiny, {lm_info['train_minutes']:g} min on the CPU ({lm_info['step']} updates), trained on the "
                 f"{label} units of {SLM_FILES['train']} utterances of the demo corpus's train split (in-vocab: "
                 "words of the benchmark's own LM corpus, not the demo corpus)",
                 "MFCC-units LM: left out (no time in the demo's 40-minute split); experiments/slm.py compares "
                 "phones, MFCC, codebook and k-means units"]
        report = write_comparison(slm / "compare", scored, sweep=results, title="Spoken language modelling",
                                  notes=notes, extra={"lm": lm_info})
    return report


def _append_slm(report: Path, slm: dict[str, Any] | None) -> None:
    """The sLM table (and its notes) at the end of the demo report."""
    if slm is None:
        return
    from spidrkit.evaluation.slm.compare import render

    body = render(slm["table"], slm["scatter"], None, "Spoken language modelling", slm["notes"])
    write_text_atomic(report, report.read_text() + "\n#" + body)
