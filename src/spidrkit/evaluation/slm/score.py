"""Zero-shot spoken language modelling scores: units of every benchmark audio, their LM log-likelihoods,
the ZeroSpeech 2021 rules, a report and the ZeroSpeech submission files.

:func:`evaluate_slm` reads a benchmark (:mod:`~spidrkit.evaluation.slm.bench`), extracts the units of its
audio with an encoder (:mod:`~spidrkit.evaluation.slm.units`, in memory: codebook predictions of a layer,
k-means units of a layer's features or of MFCC, or the gold phones of the split's alignments), scores them
under a unit LM (:func:`spidrkit.lm.scoring.score`: token-normalised log-likelihood by default, the sum on request),
applies the rules (:mod:`~spidrkit.evaluation.slm.rules`) to the splits that have a gold file, and writes
(:mod:`~spidrkit.evaluation.slm.report`) the scores of every audio ``OUT/scores/<task>/<split>.txt``,
``OUT/report.json``, ``OUT/report.md``, ``OUT/tables/*.csv``, the ZeroSpeech 2021 submission folder
``OUT/submission/`` (checked against the validator's rules) and ``OUT/report.html``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from spidrkit.config.validation import with_overrides
from spidrkit.evaluation.slm.bench import Split, benchmark_record, read_benchmark
from spidrkit.evaluation.slm.rules import DEFAULT_BOOTSTRAP, pair_scores, summarize
from spidrkit.evaluation.slm.units import (  # noqa: F401  (parse_units, SlmUnitsError: this module's API too)
    SlmUnitsError,
    UnitSpec,
    check_units,
    extract_units,
    files_bar,
    parse_units,
    phone_units_of,
)
from spidrkit.lm.scoring import DEFAULT_BATCH_TOKENS, score
from spidrkit.lm.vocab import UnitVocab


@dataclass(frozen=True)
class ScoringOptions:
    """How :func:`evaluate_slm` scores: token-``normalize``d log-likelihoods, LM batches of ``batch_tokens``,
    ``n_bootstrap`` resamples (``seed``), ``inputs`` (what produced the encoder and LM, for the report), a
    progress line; ``splits``: ``read_benchmark(benchmark)`` when the caller has read it already;
    ``units_cache``: a dict the caller keeps across calls, so LMs (seeds) over the same units and encoder
    extract them once."""

    normalize: bool = True
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    n_bootstrap: int = DEFAULT_BOOTSTRAP
    seed: int = 0
    inputs: dict[str, Any] | None = None
    progress: bool = True
    splits: list[Split] | None = None
    units_cache: dict | None = None


def _score_split(split: Split, encoder: Any, spec: UnitSpec, lm: Any, vocab: UnitVocab,
                 opts: ScoringOptions) -> tuple[dict[str, float], dict[str, float]]:
    items, progress, cache = split.items, opts.progress, opts.units_cache
    name = f"{split.task}/{split.split}"
    t0 = time.perf_counter()
    key = (split.task, split.split, spec.describe(), id(encoder))
    if cache is not None and key in cache:
        units = cache[key]
    elif spec.kind == "phones":
        units = phone_units_of(split.folder, split.split, [it.filename for it in items])
    else:
        with files_bar(len(items), f"{name} units", progress) as tell:
            units = extract_units(encoder, spec, [it.path for it in items], [str(it.path) for it in items], tell)
    if cache is not None:
        cache[key] = units
    t1 = time.perf_counter()
    with files_bar(len(items), f"{name} LM scores", progress) as tell:
        values = score(lm, vocab, units, normalize=opts.normalize, batch_tokens=opts.batch_tokens,
                       names=[str(it.path) for it in items], progress=tell)
    t2 = time.perf_counter()
    if progress:
        print(f"{name}: {len(items)} files: units {t1 - t0:.1f} s, LM {t2 - t1:.1f} s",
              file=sys.stderr)
    return dict(zip((it.filename for it in items), values)), {"units_s": t1 - t0, "lm_s": t2 - t1,
                                                              "files": len(items)}


def evaluate_slm(benchmark: str | os.PathLike, encoder: Any, units: UnitSpec, lm: Any, vocab: UnitVocab,
                 output: str | os.PathLike, options: ScoringOptions | None = None, **changes: Any) -> dict[str, Any]:
    """Score every split of ``benchmark`` (see the module doc); returns the report's dictionary.

    ``encoder``: ``None`` for ``phones``, a :class:`~spidrkit.encoders.mfcc.SignalEncoder`, or a
    SpidR-interface model in eval mode (``spidrkit.checkpoints.load(...).model``); ``lm``: a
    ``transformers`` causal LM over ``vocab``'s tokens; ``options``: a :class:`ScoringOptions` and/or its fields as
    keywords.
    """
    opts = with_overrides(ScoringOptions, options, changes, "evaluate_slm")
    normalize, n_bootstrap, seed = opts.normalize, opts.n_bootstrap, opts.seed
    from spidrkit.evaluation.slm.report import write_outputs

    splits = read_benchmark(benchmark) if opts.splits is None else opts.splits
    check_units(units, encoder, vocab)
    lm.eval()
    results: dict[str, Any] = {}
    scores: dict[tuple[str, str], dict[str, float]] = {}
    timing: dict[str, Any] = {}
    for split in splits:
        key = f"{split.task}/{split.split}"
        scores[split.task, split.split], timing[key] = _score_split(split, encoder, units, lm, vocab, opts)
        if split.gold:
            pairs = pair_scores(split, scores[split.task, split.split])
            results[key] = summarize(pairs, n_bootstrap, seed)
    report = {
        "command": "spidrkit evaluate slm",
        **benchmark_record(benchmark, splits),
        "inputs": {**(opts.inputs or {}), "units": units.describe()},
        "scoring": {"normalize": normalize, "bootstrap": n_bootstrap, "seed": seed,
                    "tokens": "bos + de-duplicated units + eos" if vocab.dedup else "bos + units + eos",
                    "counted": "units and eos (bos given)", "vocab": {"k": vocab.k, "dedup": vocab.dedup}},
        "results": results,
        "timing": timing,
    }
    report.update(write_outputs(output, splits, scores, report))
    return report
