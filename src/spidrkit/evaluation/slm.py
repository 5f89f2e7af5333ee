"""Zero-shot spoken language modelling scores: units of every benchmark audio, their LM log-likelihoods,
the ZeroSpeech 2021 rules, a report and the ZeroSpeech submission files.

:func:`evaluate_slm` reads a benchmark (:mod:`~spidrkit.evaluation.slm_bench`), extracts the units of its
audio with an encoder (:func:`spidrkit.extraction.compute.compute`, in memory: codebook predictions of a
layer, or k-means units of a layer's features), scores them under a unit LM
(:func:`spidrkit.lm.scoring.score`: token-normalised log-likelihood by default, the sum on request),
applies the rules (:mod:`~spidrkit.evaluation.slm_rules`) to the splits that have a gold file, and writes
(:mod:`~spidrkit.evaluation.slm_report`) ``OUT/report.json``, ``OUT/report.md`` and the submission
``OUT/submission/{lexical,syntactic,storycloze}/<split>.txt`` + ``OUT/submission/meta.yaml``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spidrkit.errors import InputError
from spidrkit.evaluation.slm_bench import Split, read_benchmark
from spidrkit.evaluation.slm_rules import DEFAULT_BOOTSTRAP, pair_scores, summarize
from spidrkit.lm.scoring import DEFAULT_BATCH_TOKENS, score
from spidrkit.lm.vocab import UnitVocab

FILES_PER_CHUNK = 64


class SlmUnitsError(InputError):
    """A units specification that does not fit the encoder or the LM."""


@dataclass
class UnitSpec:
    """Which units: ``codebook`` predictions of ``layer``, or ``kmeans`` centroids applied to ``layer``."""

    kind: str
    layer: int
    kmeans: Any = None  # KMeansModel
    k: int | None = None
    source: str = ""

    def describe(self) -> str:
        return f"codebook:{self.layer}" if self.kind == "codebook" else f"kmeans:{self.source} (layer {self.layer})"


def parse_units(text: str, layer: int | None = None) -> UnitSpec:
    """``codebook:L`` or ``kmeans:FILE`` (the layer from the centroids' sidecar, else ``layer``)."""
    kind, _, rest = text.partition(":")
    if kind == "codebook" and rest:
        try:
            return UnitSpec("codebook", int(rest), source=text)
        except ValueError:
            raise SlmUnitsError(f"--units codebook:L takes a layer number, got {text!r}") from None
    if kind == "kmeans" and rest:
        from spidrkit.extraction.kmeans import KMeansModel

        km = KMeansModel.load(rest)
        fitted = km.info.get("layer")
        if layer is None and fitted is None:
            raise SlmUnitsError(f"{rest}: the centroids' sidecar names no layer; pass --layer N")
        if layer is not None and fitted is not None and int(fitted) != layer:
            raise SlmUnitsError(f"{rest}: the centroids were fitted on layer {fitted}, not --layer {layer}")
        return UnitSpec("kmeans", int(layer if layer is not None else fitted), km, km.k, rest)
    raise SlmUnitsError(f"--units must be codebook:L (a layer) or kmeans:FILE (centroids), got {text!r}")


def check_units(spec: UnitSpec, encoder: Any, vocab: UnitVocab) -> None:
    """The layer must exist (a codebook layer for ``codebook``), k-means centroids must have the encoder's
    width, and the units' number must be the LM's ``k``: clear errors, before any extraction."""
    k = spec.k
    if spec.kind == "codebook":
        if not callable(getattr(encoder, "codebook_predictions", None)):
            raise SlmUnitsError("--units codebook:L needs a SpidR/DinoSR encoder (codebook predictions); "
                                "use kmeans:FILE")
        layers = list(getattr(encoder, "target_layers", ()))
        if spec.layer not in layers:
            raise SlmUnitsError(f"--units codebook:{spec.layer}: the encoder has codebooks on layers {layers}")
        k = getattr(getattr(encoder, "cfg", None), "codebook_size", None)
    else:
        if not 1 <= spec.layer <= encoder.num_layers:
            raise SlmUnitsError(f"{spec.source}: layer {spec.layer} is not one of the encoder's layers "
                                f"1..{encoder.num_layers}")
        if spec.kmeans.dim != encoder.dim:
            raise SlmUnitsError(f"{spec.source}: centroids of width {spec.kmeans.dim}, the encoder's features "
                                f"have {encoder.dim}")
    if k is not None and k != vocab.k:
        raise SlmUnitsError(f"the units {spec.describe()} take {k} values but the LM was trained on k = {vocab.k}")


def extract_units(encoder: Any, spec: UnitSpec, paths: Sequence[Path], names: Sequence[str],
                  progress: Callable[[int], None] | None = None) -> list[list[int]]:
    """Frame-level units of every audio (raw, not de-duplicated: the LM's vocabulary does that)."""
    from spidrkit.data.audio import load_audio
    from spidrkit.extraction.compute import compute, model_device

    kmeans = spec.kmeans.to(model_device(encoder)) if spec.kmeans is not None else None
    out: list[list[int]] = []
    for start in range(0, len(paths), FILES_PER_CHUNK):
        chunk = range(start, min(start + FILES_PER_CHUNK, len(paths)))
        wavs = [load_audio(paths[i], encoder.sample_rate) for i in chunk]
        res = compute(encoder, wavs, [spec.layer], units=spec.kind, kmeans=kmeans, names=[names[i] for i in chunk])
        out += [r[spec.layer].tolist() for r in res]
        if progress is not None:
            progress(len(out))
    return out


def _score_split(split: Split, encoder: Any, spec: UnitSpec, lm: Any, vocab: UnitVocab, normalize: bool,
                 batch_tokens: int, progress: bool) -> tuple[dict[str, float], dict[str, float]]:
    items = split.items
    t0 = time.perf_counter()

    def tell(done: int) -> None:
        if progress:
            print(f"\r{split.task}/{split.split}: units of {done}/{len(items)} files", end="", file=sys.stderr)

    units = extract_units(encoder, spec, [it.path for it in items], [str(it.path) for it in items], tell)
    t1 = time.perf_counter()
    values = score(lm, vocab, units, normalize=normalize, batch_tokens=batch_tokens,
                   names=[str(it.path) for it in items])
    t2 = time.perf_counter()
    if progress:
        print(f"\r{split.task}/{split.split}: {len(items)} files: units {t1 - t0:.1f} s, LM {t2 - t1:.1f} s",
              file=sys.stderr)
    return dict(zip((it.filename for it in items), values)), {"units_s": t1 - t0, "lm_s": t2 - t1,
                                                              "files": len(items)}


def evaluate_slm(
    benchmark: str | os.PathLike,
    encoder: Any,
    units: UnitSpec,
    lm: Any,
    vocab: UnitVocab,
    output: str | os.PathLike,
    *,
    normalize: bool = True,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    inputs: dict[str, Any] | None = None,
    progress: bool = True,
    splits: list[Split] | None = None,
) -> dict[str, Any]:
    """Score every split of ``benchmark`` (see the module doc); returns the report's dictionary.

    ``encoder``: a SpidR-interface model in eval mode (``spidrkit.checkpoints.load(...).model``); ``lm``: a
    ``transformers`` causal LM over ``vocab``'s tokens; ``inputs``: what produced them, for the report;
    ``splits``: ``read_benchmark(benchmark)`` when the caller has read it already.
    """
    from spidrkit.evaluation.slm_report import write_outputs

    splits = read_benchmark(benchmark) if splits is None else splits
    check_units(units, encoder, vocab)
    lm.eval()
    results: dict[str, Any] = {}
    scores: dict[tuple[str, str], dict[str, float]] = {}
    timing: dict[str, Any] = {}
    for split in splits:
        key = f"{split.task}/{split.split}"
        scores[split.task, split.split], timing[key] = _score_split(
            split, encoder, units, lm, vocab, normalize, batch_tokens, progress)
        if split.gold:
            pairs = pair_scores(split, scores[split.task, split.split])
            results[key] = summarize(pairs, n_bootstrap, seed)
    report = {
        "command": "spidrkit evaluate slm",
        "benchmark": str(benchmark),
        "inputs": {**(inputs or {}), "units": units.describe()},
        "scoring": {"normalize": normalize, "bootstrap": n_bootstrap, "seed": seed,
                    "tokens": "bos + de-duplicated units + eos" if vocab.dedup else "bos + units + eos",
                    "counted": "units and eos (bos given)", "vocab": {"k": vocab.k, "dedup": vocab.dedup}},
        "splits": [{"task": s.task, "split": s.split, "files": len(s.items), "gold": s.gold} for s in splits],
        "results": results,
        "timing": timing,
    }
    report["outputs"] = write_outputs(output, splits, scores, report)
    return report
