"""Layer sweep: every evaluation of the SpidR paper for one model on one aligned corpus, in one call.

:func:`sweep` runs, on the evaluation splits of a corpus built by :mod:`spidrkit.data.synth` (or laid out
the same way: ``SPLIT.csv``, ``SPLIT.item``, ``SPLIT_words.txt``, ``SPLIT_phones.txt``, ``SPLIT_frames.txt``):

- for every layer (1-based): ABX within and across speaker on triphones (angular distance, fastabx) and
  MAP@R over words (cosine); the best layer is the one with the lowest mean of the two ABX (SPEC §5);
- for every codebook layer (``model.target_layers``): the codebook units (argmax of the head on the
  unmasked input) scored as one-hot units (ABX, ``identical`` distance), against the 100 Hz phone labels
  (PNMI, purities, codebook perplexity, active codewords, bitrate), and optionally the head posteriors
  (ABX with the symmetric KL divergence, prediction perplexity);
- optionally k-means units of every layer: centroids fit on a seeded sample of at most
  ``kmeans_max_frames`` frames of the ``train`` split, applied to the evaluation set, scored as units;
- baselines in the same tables: MFCC, log-mel and Gaussian-noise features, and the same architecture with
  random weights (its whole layer sweep);
- figures: ABX and MAP by layer (Figure 7), P(phone | code) of the best codebook layer (Figure 10), t-SNE
  of phone embeddings of the best layer (Figure 8), perplexities over training from metrics JSONL files
  (Figure 2); and ``report.json`` / ``report.md`` (:func:`spidrkit.evaluation.report.write_report`) whose
  ``info`` says what was evaluated (model, checkpoint hash, layers, k, corpus, splits) and whose
  ``timings_s`` says where the time went.

The evaluation set is the union of ``splits`` (default ``dev`` and ``heldout``: a voice the model never heard, reading
sentences of its own, so across-speaker ABX includes an unseen speaker). Its merged annotation files
are written to ``OUT/eval/`` so that each number can be recomputed with ``spidrkit evaluate abx|map|units``.

Memory: features are computed in memory (no disk round trip), for a group of layers at a time. The group
is as large as ``max_memory_gb`` allows (every layer at once for a small corpus; one layer at a time, the
model re-run per group, for a large one), so memory stays bounded whatever the corpus size. Everything but
ABX reduces the features to small summaries (word and phone means, a k-means sample) as it goes.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import math
import os
import time
import warnings
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from spidrkit.data.manifest import ManifestEntry
from spidrkit.evaluation.word_map import Segment
from spidrkit.io import write_sidecar

# baselines of the sweep; "random" is the model's architecture with random weights, "noise" Gaussian features
SWEEP_BASELINES: dict[str, str] = {
    "mfcc": "MFCC + deltas (39-d), 25 ms windows every 20 ms",
    "log_mel": "log mel spectrogram (80-d), 25 ms windows every 20 ms",
    "noise": "Gaussian noise features of the model's width (chance level)",
    "random": "the same architecture with random weights (seeded), every layer",
}
FEATURE_BASELINES = ("mfcc", "log_mel", "noise")
UNIT_METRICS = ("pnmi", "phone_purity", "cluster_purity", "codebook_perplexity", "active_codewords", "bitrate")
DEFAULT_SPLITS = ("dev", "heldout")
DEFAULT_KMEANS_MAX_FRAMES = 50_000
FRAME_RATE = 50
PLOT_NAMES = {"layers": "layers.png", "phone_given_code": "phone_given_code.png", "tsne": "tsne.png",
              "perplexity": "perplexity.png"}


class SweepError(ValueError):
    """A sweep asked of a corpus, model or options that cannot give it (the message says what to fix)."""


# ------------------------------------------------------------------------------------------- eval set
@dataclass
class EvalSet:
    """The evaluation files of one or more splits and their merged annotations (written to ``root``)."""

    root: Path
    entries: list[ManifestEntry]
    item_file: Path
    words: list[Segment]
    phones: list[Segment]
    frame_labels: dict[str, list[str]]
    num_items: int

    @property
    def seconds(self) -> float:
        return sum(e.num_samples for e in self.entries) / 16000

    @property
    def speakers(self) -> list[str]:
        return sorted({s.speaker for s in self.phones if s.speaker is not None})


def check_fileids(needed: Iterable[str], available: Collection[str], what: str, where: str) -> None:
    """Raise :class:`SweepError` naming a few of the ``needed`` ids missing from ``available``.

    ``what`` names the ids' source (e.g. "the item file"), ``where`` what should hold them ("the features").
    """
    missing = sorted(set(needed) - set(available))
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise SweepError(f"{len(missing)} files of {what} are missing from {where}: {shown} "
                         "(mismatched file ids?)")


def spread(entries: Sequence[ManifestEntry], n: int | None) -> list[ManifestEntry]:
    """At most ``n`` entries, evenly spaced in file-id order (every voice of a split keeps its share)."""
    ordered = sorted(entries, key=lambda e: e.fileid)
    if n is None or n >= len(ordered):
        return ordered
    if n < 1:
        raise SweepError(f"max_files must be >= 1, got {n}")
    return [ordered[i] for i in np.unique(np.linspace(0, len(ordered) - 1, n).round().astype(int))]


def _split_file(corpus: Path, split: str, suffix: str) -> Path:
    path = corpus / f"{split}{suffix}"
    if not path.is_file():
        have = sorted(p.stem for p in corpus.glob("*.csv"))
        raise SweepError(f"{path} not found: the corpus needs {split}.csv, {split}.item, {split}_words.txt, "
                         f"{split}_phones.txt and {split}_frames.txt (splits found: {', '.join(have) or 'none'})")
    return path


def load_eval_set(corpus_dir: str | os.PathLike, splits: Sequence[str], out_dir: str | os.PathLike,
                  max_files: int | None = None) -> EvalSet:
    """Merge the files and annotations of ``splits`` (at most ``max_files`` files per split) and write the
    merged ``eval.item``, ``eval_words.txt``, ``eval_phones.txt`` and ``eval_frames.txt`` into ``out_dir``."""
    from spidrkit.data.alignments import (
        read_frame_labels,
        read_item_file,
        write_alignments,
        write_frame_labels,
        write_item_file,
    )
    from spidrkit.data.manifest import read_manifest
    from spidrkit.evaluation.word_map import read_alignments

    corpus = Path(corpus_dir)
    if not corpus.is_dir():
        raise SweepError(f"no corpus folder at {corpus}")
    if not splits:
        raise SweepError("no evaluation split given")
    entries: list[ManifestEntry] = []
    items, words, phones, frames = [], [], [], {}
    for split in splits:
        all_entries = read_manifest(_split_file(corpus, split, ".csv"))
        chosen = spread(all_entries, max_files)
        keep = {e.fileid for e in chosen}
        clash = keep & {e.fileid for e in entries}
        if clash:
            raise SweepError(f"file ids appear in several splits, e.g. {sorted(clash)[:3]}")
        entries += chosen
        split_items = read_item_file(_split_file(corpus, split, ".item"))
        split_words = read_alignments(_split_file(corpus, split, "_words.txt"))
        split_phones = read_alignments(_split_file(corpus, split, "_phones.txt"))
        split_frames = read_frame_labels(_split_file(corpus, split, "_frames.txt"))
        ids = {e.fileid for e in all_entries}
        check_fileids((it.file for it in split_items), ids, f"{split}.item", f"{split}.csv")
        check_fileids((s.utt for s in split_words), ids, f"{split}_words.txt", f"{split}.csv")
        check_fileids(keep, split_frames, f"{split}.csv", f"{split}_frames.txt")
        items += [it for it in split_items if it.file in keep]
        words += [s for s in split_words if s.utt in keep]
        phones += [s for s in split_phones if s.utt in keep]
        frames.update({u: lab for u, lab in split_frames.items() if u in keep})
    if not items:
        raise SweepError(f"no ABX item in the files chosen from {', '.join(splits)}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    item_file = write_item_file(root / "eval.item", items)
    for name, segments in (("eval_words.txt", words), ("eval_phones.txt", phones)):
        table: dict[str, list] = {}
        speakers: dict[str, str] = {}
        for s in segments:
            table.setdefault(s.utt, []).append((s.onset, s.offset, s.label))
            speakers[s.utt] = s.speaker or "?"
        write_alignments(root / name, table, speakers)
    write_frame_labels(root / "eval_frames.txt", frames)
    write_sidecar(root, kind="evaluation set", corpus=str(corpus.resolve()), splits=list(splits),
                  max_files_per_split=max_files, files=len(entries), items=len(items), words=len(words))
    return EvalSet(root, entries, item_file, words, phones, frames, len(items))


# ------------------------------------------------------------------------------------------- features
def iter_audio(entries: Sequence[ManifestEntry], chunk_seconds: float = 600.0
               ) -> Iterator[list[tuple[ManifestEntry, torch.Tensor]]]:
    """The 16 kHz waveforms of ``entries`` in order, in lists of about ``chunk_seconds`` of audio (so the
    audio held in memory stays bounded)."""
    from spidrkit.data.audio import load_audio

    chunk: list[tuple[ManifestEntry, torch.Tensor]] = []
    seconds = 0.0
    for e in entries:
        wav = load_audio(e.path)
        chunk.append((e, wav))
        seconds += wav.numel() / 16000
        if seconds >= chunk_seconds:
            yield chunk
            chunk, seconds = [], 0.0
    if chunk:
        yield chunk


def model_outputs(model, entries: Sequence[ManifestEntry], layers: Sequence[int], *, units: str | None = None,
                  desc: str = "features", progress: bool = True) -> dict[int, dict[str, torch.Tensor]]:
    """``{layer: {fileid: output}}`` of ``model`` on every file, in memory: features (T, D) float32, or
    ``units="codebook"`` argmax units (T,). Standardisation, batching and windowing of long files are those
    of :func:`spidrkit.extraction.compute.compute` (the same numbers ``spidrkit extract`` writes)."""
    from spidrkit.extraction.compute import compute

    out: dict[int, dict[str, torch.Tensor]] = {layer: {} for layer in layers}
    with tqdm(total=len(entries), desc=desc, unit="file", leave=False, disable=not progress) as bar:
        for chunk in iter_audio(entries):
            results = compute(model, [w for _, w in chunk], list(layers), units=units)
            for (e, _), res in zip(chunk, results):
                for layer, value in res.items():
                    out[layer][e.fileid] = value
            bar.update(len(chunk))
    return out


def codebook_posteriors(model, entries: Sequence[ManifestEntry], layers: Sequence[int], *,
                        progress: bool = True) -> dict[int, dict[str, torch.Tensor]]:
    """``{layer: {fileid: (T, V) head posteriors}}`` on the unmasked input, one whole file at a time."""
    out: dict[int, dict[str, torch.Tensor]] = {layer: {} for layer in layers}
    device = next(model.parameters()).device
    with tqdm(total=len(entries), desc="posteriors", unit="file", leave=False, disable=not progress) as bar:
        for chunk in iter_audio(entries):
            for e, wav in chunk:
                with torch.inference_mode():
                    preds = model.codebook_predictions(wav.to(device), layers=list(layers))
                for layer, p in preds.items():
                    out[layer][e.fileid] = p.probs[0].float().cpu()
            bar.update(len(chunk))
    return out


def baseline_outputs(kind: str, entries: Sequence[ManifestEntry], *, dim: int, seed: int = 0,
                     progress: bool = True) -> dict[str, torch.Tensor]:
    """``{fileid: (T, D)}`` signal-processing (or noise) baseline features at the model's frame rate."""
    from spidrkit.evaluation.baselines import baseline_features, random_baseline

    out = {}
    with tqdm(total=len(entries), desc=kind, unit="file", leave=False, disable=not progress) as bar:
        for chunk in iter_audio(entries):
            for e, wav in chunk:
                if kind == "noise":
                    out[e.fileid] = random_baseline(wav, dim=dim, seed=seed, key=e.fileid)
                else:
                    out[e.fileid] = baseline_features(kind, wav, key=e.fileid, seed=seed)
            bar.update(len(chunk))
    return out


def train_subset(corpus_dir: str | os.PathLike, model, max_frames: int, seed: int = 0,
                 split: str = "train") -> list[ManifestEntry]:
    """Files of ``split`` (seeded shuffle) until they hold ``max_frames`` model frames: the k-means fit set."""
    from spidrkit.data.manifest import read_manifest

    manifest = Path(corpus_dir) / f"{split}.csv"
    if not manifest.is_file():
        raise SweepError(f"k-means units are fit on the {split} split, and {manifest} is not there")
    entries = sorted(read_manifest(manifest), key=lambda e: e.fileid)
    order = np.random.default_rng(seed).permutation(len(entries))
    chosen, frames = [], 0
    for i in order:
        chosen.append(entries[i])
        frames += int(model.num_frames(entries[i].num_samples))
        if frames >= max_frames:
            break
    return chosen


def layer_groups(layers: Sequence[int], bytes_per_layer: int, max_memory_gb: float) -> list[list[int]]:
    """``layers`` cut into consecutive groups whose outputs fit in ``max_memory_gb`` (at least one layer)."""
    per_group = max(1, int(max_memory_gb * 2**30 // max(bytes_per_layer, 1)))
    return [list(layers[i: i + per_group]) for i in range(0, len(layers), per_group)]


# ------------------------------------------------------------------------------------------- metrics
def _empty_errors() -> tuple[type[BaseException], ...]:
    """fastabx's errors for a task with no valid triplet (too few items or speakers): the metric is None."""
    from fastabx.score import EmptyScoreError
    from fastabx.verify import EmptyTaskError

    errors: list[type[BaseException]] = [EmptyScoreError, EmptyTaskError]
    with contextlib.suppress(ImportError):
        from fastabx.cell import NoAcrossError

        errors.append(NoAcrossError)
    return tuple(errors)


def abx_both(features: Mapping[str, torch.Tensor], item_file: str | os.PathLike, *, distance: str = "angular",
             context: str = "within", device: str | None = None,
             speakers: Sequence[str] = ("within", "across")) -> dict[str, float | None]:
    """``{"abx_within": %, "abx_across": %}`` (``context="within"``: triphones) with
    :func:`spidrkit.evaluation.abx.abx`; ``None`` (and a warning) where no triplet can be formed."""
    from spidrkit.evaluation.abx import abx

    out: dict[str, float | None] = {}
    for speaker in speakers:
        try:
            out[f"abx_{speaker}"] = abx(features, item_file, speaker=speaker, context=context, distance=distance,
                                        device=device, progress=False)
        except _empty_errors() as e:
            warnings.warn(f"ABX {speaker} speaker ({distance}): no triplet to score ({type(e).__name__}); "
                          "reported as None", stacklevel=2)
            out[f"abx_{speaker}"] = None
    return out


def word_map_or_none(features: Mapping[str, torch.Tensor], words: Sequence[Segment],
                     device: str | None) -> float | None:
    """MAP@R over words in percent, or ``None`` (with a warning) when no word occurs twice."""
    from spidrkit.evaluation.word_map import word_map

    try:
        return word_map(features, words, device=device, progress=False)
    except ValueError as e:
        if "occur" not in str(e) and "undefined" not in str(e):
            raise
        warnings.warn(f"word MAP: {e}; reported as None", stacklevel=2)
        return None


def unit_row(units: Mapping[str, np.ndarray], evalset: EvalSet, device: str | None) -> tuple[dict, dict]:
    """ABX (one-hot units) and unit quality against the phone labels: (table row, full unit_quality)."""
    from spidrkit.evaluation.abx import units_as_indices
    from spidrkit.evaluation.unit_metrics import unit_quality

    quality = unit_quality(units, evalset.frame_labels)
    row = {**abx_both(units_as_indices(units), evalset.item_file, distance="identical", device=device),
           **{k: quality[k] for k in UNIT_METRICS}}
    return row, quality


def prediction_perplexity(posteriors: Mapping[str, torch.Tensor]) -> float:
    """2^H of the mean predicted distribution over all frames (the training metric, on the eval set)."""
    from spidrkit.evaluation.unit_metrics import entropy_bits

    total = sum(p.double().sum(0) for p in posteriors.values())
    return float(2.0 ** entropy_bits(total.numpy()))


def tsne_per_phone(phones: Sequence[Segment], max_points: int, most: int = 10) -> int:
    """Instances per (speaker, phone) for about ``max_points`` points: ``most`` (the paper's 10) or fewer."""
    from spidrkit.evaluation.plots import base_phone

    groups = {(s.speaker, base_phone(s.label)) for s in phones}
    return max(1, min(most, max_points // max(len(groups), 1)))


def _mean_abx(row: Mapping[str, Any]) -> float:
    vals = [row.get("abx_within"), row.get("abx_across")]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else math.inf


# ------------------------------------------------------------------------------------------- driver
class _Stopwatch:
    """Wall-clock seconds per named stage (stages may be entered several times; times add up)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in self.seconds.items()}


@dataclass
class _ModelSweep:
    """What one model's layer sweep gives."""

    layers: dict[int, dict[str, Any]]
    codebook: dict[str, dict[str, Any]]  # "codebook L5" -> unit metrics
    posteriors: dict[str, dict[str, Any]]  # "posteriors L5" -> ABX (symmetric KL)
    kmeans: dict[str, dict[str, Any]]  # "kmeans100 L5" -> unit metrics
    qualities: dict[int, dict[str, Any]]  # codebook layer -> unit_quality (for the heat map)
    embeddings: dict[int, tuple[torch.Tensor, list[str], list[str]]]  # layer -> phone embeddings (t-SNE)


def _resolve_model(model, device: str):
    from spidrkit.checkpoints import Loaded, resolve_model
    from spidrkit.models.spidr import SpidR

    if isinstance(model, SpidR | Loaded | str | os.PathLike):
        return resolve_model(model, device=device)
    raise SweepError(f"model must be a SpidR, a checkpoint path or a preset name, not {type(model).__name__}")


def _check_layers(layers: Sequence[int] | None, num_layers: int) -> list[int]:
    if layers is None:
        return list(range(1, num_layers + 1))
    layers = sorted(dict.fromkeys(int(x) for x in layers))
    bad = [x for x in layers if not 1 <= x <= num_layers]
    if bad or not layers:
        raise SweepError(f"layers {bad or '[]'} out of range: the model has layers 1..{num_layers} (1-based)")
    return layers


def _sweep_model(model, evalset: EvalSet, layers: list[int], *, name: str, codebook: bool, kmeans_k: int | None,
                 kmeans_entries: Sequence[ManifestEntry], kmeans_max_frames: int, posteriors: bool,
                 embeddings: int | None, max_memory_gb: float, seed: int, device: str | None, watch: _Stopwatch,
                 bar: tqdm, progress: bool, kmeans_dir: Path | None = None, model_info=None) -> _ModelSweep:
    """Every per-layer metric of one model, a group of layers at a time (see the module docstring)."""
    from spidrkit.evaluation.plots import phone_embeddings
    from spidrkit.extraction.kmeans import fit_kmeans
    codebook_layers = set(model.target_layers) & set(layers) if codebook else set()
    model_id = model_info.model_id if kmeans_k else None
    frames = sum(int(model.num_frames(e.num_samples)) for e in evalset.entries)
    per_layer = frames * model.cfg.dim * 4
    if kmeans_k:
        per_layer += kmeans_max_frames * model.cfg.dim * 4
    if posteriors and codebook_layers:
        per_layer += frames * model.cfg.codebook_size * 4
    result = _ModelSweep({}, {}, {}, {}, {}, {})
    groups = layer_groups(layers, per_layer, max_memory_gb)
    bar.total += len(groups)  # one step per model pass
    bar.refresh()
    for group in groups:
        bar.set_postfix_str(f"{name}: features of layers {group}")
        with watch(f"{name}_features"):
            feats = model_outputs(model, evalset.entries, group, desc=f"{name} layers {group}", progress=progress)
        cb_group = [la for la in group if la in codebook_layers]
        cb_units, cb_probs = {}, {}
        if cb_group:
            with watch("codebook_units"):
                cb_units = model_outputs(model, evalset.entries, cb_group, units="codebook",
                                         desc=f"codebook units {cb_group}", progress=progress)
                if posteriors:
                    cb_probs = codebook_posteriors(model, evalset.entries, cb_group, progress=progress)
        train_feats = {}
        if kmeans_k:
            with watch("kmeans_features"):
                train_feats = model_outputs(model, kmeans_entries, group, desc=f"k-means fit set {group}",
                                            progress=progress)
        bar.update(1)
        for layer in group:
            x = feats.pop(layer)
            bar.set_postfix_str(f"{name}: layer {layer} ABX")
            with watch(f"{name}_abx"):
                row = abx_both(x, evalset.item_file, device=device)
            bar.set_postfix_str(f"{name}: layer {layer} MAP")
            with watch(f"{name}_map"):
                row["map"] = word_map_or_none(x, evalset.words, device)
            result.layers[layer] = row
            if embeddings:
                with watch("phone_embeddings"):
                    result.embeddings[layer] = phone_embeddings(x, evalset.phones, per_speaker_and_phone=embeddings,
                                                                seed=seed, progress=False)
            bar.update(1)
            if layer in cb_units:
                bar.set_postfix_str(f"codebook units of layer {layer}")
                with watch("codebook_metrics"):
                    units = {u: v.numpy() for u, v in cb_units.pop(layer).items()}
                    urow, quality = unit_row(units, evalset, device)
                    if layer in cb_probs:
                        probs = cb_probs.pop(layer)
                        urow["prediction_perplexity"] = prediction_perplexity(probs)
                        result.posteriors[f"posteriors L{layer}"] = abx_both(probs, evalset.item_file,
                                                                        distance="kl_symmetric", device=device)
                result.codebook[f"codebook L{layer}"] = urow
                result.qualities[layer] = quality
                bar.update(1)
            if kmeans_k:
                bar.set_postfix_str(f"k-means {kmeans_k} on layer {layer}")
                with watch("kmeans"):
                    km = fit_kmeans(train_feats.pop(layer), k=kmeans_k, max_frames=kmeans_max_frames, seed=seed,
                                    progress=False, layer=layer, model=model_id,
                                    fit_files=len(kmeans_entries))
                    if kmeans_dir is not None:
                        km.save(kmeans_dir / f"kmeans{kmeans_k}_layer{layer:02d}.npy")
                    units = {u: km.predict(v).numpy() for u, v in x.items()}
                    urow, _ = unit_row(units, evalset, device)
                    urow["kmeans_inertia_per_frame"] = km.info["inertia_per_frame"]
                result.kmeans[f"kmeans{kmeans_k} L{layer}"] = urow
                bar.update(1)
            del x
    return result


def _run_layers_of(metrics_file: str | os.PathLike) -> list[int] | None:
    """The ``layers`` a training metrics JSONL names for its per-layer perplexities (first record with it)."""
    path = Path(metrics_file)
    if not path.is_file():
        raise SweepError(f"no metrics file at {path}")
    with open(path) as f:
        for line in f:
            with contextlib.suppress(json.JSONDecodeError):
                record = json.loads(line)
                if isinstance(record, dict) and isinstance(record.get("layers"), list):
                    return [int(x) for x in record["layers"]]
    return None


def plot_runs_perplexity(metrics_jsonl: Sequence[str | os.PathLike], out_path: str | os.PathLike, *,
                         labels: Sequence[str] | None = None, codebook_size: int | None = None,
                         title: str | None = None) -> Path:
    """Figure 2 from one or more training runs' ``metrics.jsonl``; runs are labelled by ``labels`` or by
    their folder name; the layers are those the files name when every run names the same ones."""
    from spidrkit.evaluation.plots import plot_perplexity

    paths = [Path(p) for p in metrics_jsonl]
    if not paths:
        raise SweepError("no metrics file to plot")
    if labels is None:
        labels = [p.parent.name or p.stem for p in paths]
        if len(set(labels)) < len(labels):
            labels = [str(p) for p in paths]
    if len(labels) != len(paths):
        raise SweepError(f"{len(labels)} labels for {len(paths)} metrics files")
    if len(set(labels)) < len(labels):
        raise SweepError(f"run labels must differ: {list(labels)}")
    run_layers = [_run_layers_of(p) for p in paths]
    layers = run_layers[0] if all(r == run_layers[0] for r in run_layers) else None
    return plot_perplexity(dict(zip(labels, paths)), out_path, layers=layers, codebook_size=codebook_size,
                           title=title)


def _threads_like_torch(fn):
    """Run ``fn`` with every OpenMP / BLAS pool (scikit-learn's t-SNE and k-means, faiss, numpy) limited to
    torch's thread count. Each library ships its own OpenMP runtime; left alone, their pools add up to more
    threads than cores (e.g. under ``pytest -n 2``, where each worker runs torch on one thread), and their
    spinning barriers then slow t-SNE or k-means down tens of times. One knob, ``torch.set_num_threads``,
    governs them all."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        # load the runtimes now: threadpoolctl limits only the libraries already loaded
        for name in ("sklearn.manifold", "sklearn.cluster", "faiss"):
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        with threadpool_limits(limits=torch.get_num_threads()):
            return fn(*args, **kwargs)

    return wrapper


@_threads_like_torch
def sweep(
    model,
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    splits: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    kmeans_k: int | None = None,
    kmeans_max_frames: int = DEFAULT_KMEANS_MAX_FRAMES,
    baselines: Sequence[str] = ("mfcc", "random"),
    posteriors: bool = False,
    max_files: int | None = None,
    device: str = "cpu",
    metrics_jsonl: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    run_labels: Sequence[str] | None = None,
    title: str | None = None,
    seed: int = 0,
    max_memory_gb: float = 4.0,
    tsne_points: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate every layer of ``model`` on the ``splits`` of ``corpus_dir``; write the report and figures.

    :param model: a :class:`~spidrkit.models.spidr.SpidR` (moved to ``device``, as ``Module.to`` does), a
        checkpoint path or a preset name (:func:`spidrkit.checkpoints.load_model`).
    :param corpus_dir: an aligned corpus (see the module docstring); ``train`` is needed only for k-means.
    :param out_dir: receives ``report.json``, ``report.md``, the PNG figures, ``eval/`` (the merged
        annotations) and, with ``kmeans_k``, ``kmeans/`` (the centroids of every layer).
    :param splits: the evaluation splits, merged (default: ``dev`` and ``heldout``, or ``dev`` alone, with a
        warning, for a corpus built without a held-out voice).
    :param layers: 1-based layers to evaluate (default: all).
    :param kmeans_k: also fit k-means with this many centroids on every layer (on at most
        ``kmeans_max_frames`` frames of the train split) and score its units.
    :param baselines: any of :data:`SWEEP_BASELINES` (``mfcc``, ``log_mel``, ``noise``, ``random``).
    :param posteriors: also score the codebook heads' posteriors (ABX with the symmetric KL divergence).
    :param max_files: at most this many files per split (evenly spaced in file-id order).
    :param metrics_jsonl: one or more training runs' ``metrics.jsonl`` for the perplexity figure, labelled by
        ``run_labels`` (default: their folder names).
    :param max_memory_gb: bound on the features held in memory at once (see the module docstring).
    :param tsne_points: about this many phone instances in the t-SNE figure (0: no figure); the paper's 10
        per speaker and phone, fewer when that would exceed it (t-SNE time grows quickly with the points).
    :returns: the results as written in ``report.json["results"]`` (``info``, ``layers``, ``baselines``,
        ``units``, ``best_layer``, ``timings_s``...), plus ``outputs``: the paths written.
    """
    from spidrkit import __version__
    from spidrkit.evaluation import plots
    from spidrkit.evaluation.report import best_layer_by_abx, write_report
    from spidrkit.models.spidr import SpidR

    watch = _Stopwatch()
    start = time.perf_counter()
    out = Path(out_dir)
    baselines = list(dict.fromkeys(baselines or ()))
    unknown = [b for b in baselines if b not in SWEEP_BASELINES]
    if unknown:
        raise SweepError(f"unknown baselines {unknown}; choose from {', '.join(SWEEP_BASELINES)}")
    if kmeans_k is not None and (isinstance(kmeans_k, bool) or int(kmeans_k) < 2):
        raise SweepError(f"kmeans_k must be an integer >= 2, got {kmeans_k!r}")
    runs = [] if metrics_jsonl is None else [metrics_jsonl] if isinstance(metrics_jsonl, (str, os.PathLike)) \
        else list(metrics_jsonl)
    for r in runs:
        if not Path(r).is_file():
            raise SweepError(f"no metrics file at {r}")

    with watch("load_model"):
        model, info_model = _resolve_model(model, device)
    layers = _check_layers(layers, model.cfg.num_layers)
    if splits is None:  # the default: dev + heldout, or dev alone for a corpus without a held-out voice
        splits = [s for s in DEFAULT_SPLITS if (Path(corpus_dir) / f"{s}.csv").is_file()] or list(DEFAULT_SPLITS)
        if len(splits) < len(DEFAULT_SPLITS):
            missing = ", ".join(s for s in DEFAULT_SPLITS if s not in splits)
            warnings.warn(f"evaluating on {', '.join(splits)} only: no {missing} split in {corpus_dir}", stacklevel=3)
    with watch("load_corpus"):
        evalset = load_eval_set(corpus_dir, splits, out / "eval", max_files)
        kmeans_entries = train_subset(corpus_dir, model, kmeans_max_frames, seed) if kmeans_k else []
    codebook_layers = [la for la in layers if la in model.target_layers]
    label = {"spidr": "SpidR", "dinosr": "DinoSR"}.get(info_model.variant, info_model.variant)

    # per-layer steps; each model pass adds its own step when the layer groups are known
    steps = 1 + len(layers) + len(codebook_layers) + (len(layers) if kmeans_k else 0) + 1
    steps += len([b for b in baselines if b != "random"]) + (len(layers) if "random" in baselines else 0)
    bar = tqdm(total=steps, desc="sweep", unit="step", disable=not progress)
    try:
        bar.update(1)
        main = _sweep_model(
            model, evalset, layers, name="model", codebook=True, kmeans_k=kmeans_k, kmeans_entries=kmeans_entries,
            kmeans_max_frames=kmeans_max_frames, posteriors=posteriors,
            embeddings=tsne_per_phone(evalset.phones, tsne_points) if tsne_points else None,
            max_memory_gb=max_memory_gb, seed=seed, device=device, watch=watch, bar=bar, progress=progress,
            kmeans_dir=out / "kmeans" if kmeans_k else None, model_info=info_model,
        )
        baseline_rows: dict[str, dict[str, Any]] = {}
        for kind in (b for b in baselines if b in FEATURE_BASELINES):
            bar.set_postfix_str(f"baseline {kind}")
            with watch(f"baseline_{kind}"):
                feats = baseline_outputs(kind, evalset.entries, dim=model.cfg.dim, seed=seed, progress=progress)
                row = abx_both(feats, evalset.item_file, device=device)
                row["map"] = word_map_or_none(feats, evalset.words, device)
                del feats
            baseline_rows[kind] = row
            bar.update(1)
        random_layers: dict[int, dict[str, Any]] = {}
        if "random" in baselines:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                random_model = SpidR(model.cfg).to(next(model.parameters()).device).eval()
            random_layers = _sweep_model(
                random_model, evalset, layers, name="random", codebook=False, kmeans_k=None, kmeans_entries=[],
                kmeans_max_frames=0, posteriors=False, embeddings=None, max_memory_gb=max_memory_gb, seed=seed,
                device=device, watch=watch, bar=bar, progress=progress,
            ).layers
            del random_model
            best_random = min(random_layers, key=lambda la: _mean_abx(random_layers[la]))
            baseline_rows[f"random init (L{best_random})"] = random_layers[best_random]

        best = best_layer_by_abx({str(k): v for k, v in main.layers.items()})
        best_layer = int(best[0]) if best else None
        best_codebook = max(main.qualities, key=lambda la: main.qualities[la]["pnmi"]) if main.qualities else None

        bar.set_postfix_str("figures")
        plot_paths: dict[str, Path] = {}
        with watch("plots"):
            curves = {label: main.layers}
            if random_layers:
                curves["random init"] = random_layers
            plot_paths["layers"] = plots.plot_layer_metrics(
                curves, out / PLOT_NAMES["layers"],
                baselines={k: v for k, v in baseline_rows.items() if k in FEATURE_BASELINES},
                title=title or f"{label}: layer sweep on {', '.join(splits)}",
            )
            if best_codebook is not None:
                plot_paths["phone_given_code"] = plots.plot_phone_given_code(
                    main.qualities[best_codebook], out / PLOT_NAMES["phone_given_code"],
                    title=f"P(phone | code), codebook of layer {best_codebook}",
                )
            if best_layer is not None and best_layer in main.embeddings:
                emb, phones, speakers = main.embeddings[best_layer]
                if len(phones) >= 5:
                    with watch("tsne"):
                        plot_paths["tsne"] = plots.plot_tsne(
                            emb, phones, speakers, out / PLOT_NAMES["tsne"], seed=seed,
                            title=f"t-SNE of phone embeddings, layer {best_layer}",
                        )
            if runs:
                # the maximum V is drawn when the runs are of this model's architecture (same target layers)
                same = all(_run_layers_of(r) == list(model.target_layers) for r in runs)
                plot_paths["perplexity"] = plot_runs_perplexity(
                    runs, out / PLOT_NAMES["perplexity"], labels=run_labels,
                    codebook_size=model.cfg.codebook_size if same else None, title="perplexity over training",
                )
        bar.update(1)
    finally:
        bar.close()

    phone_given_code = None
    if best_codebook is not None:
        q = main.qualities[best_codebook]
        phone_given_code = {"layer": best_codebook, "codes": q["codes"], "phones": q["phones"],
                            "phone_counts": q["phone_counts"], "matrix": np.round(q["phone_given_code"], 5)}
    cfg = model.cfg
    info = {
        **{k: v for k, v in info_model.as_dict().items() if v is not None},
        "architecture": f"{cfg.num_layers} layers of width {cfg.dim}, {cfg.num_codebooks} codebooks of "
                        f"{cfg.codebook_size} on layers {list(model.target_layers)}",
        "layers": layers,
        "codebook_layers": codebook_layers,
        "kmeans_k": kmeans_k,
        "kmeans_fit": (f"{kmeans_max_frames} frames at most, from {len(kmeans_entries)} files of the train split "
                       f"(seed {seed})") if kmeans_k else None,
        "corpus": str(Path(corpus_dir).resolve()),
        "splits": list(splits),
        "eval_files": len(evalset.entries),
        "eval_seconds": round(evalset.seconds, 1),
        "max_files_per_split": max_files,
        "abx_items": evalset.num_items,
        "speakers": evalset.speakers,
        "words": len(evalset.words),
        "baselines": {b: SWEEP_BASELINES[b] for b in baselines},
        "abx": "fastabx, triphones (same context), ZeroSpeech subsampling; angular for features, "
               "one-hot (identical) for units, symmetric KL for posteriors; error rate in %",
        "word_map": "MAP@R over words occurring twice or more, time-averaged features, cosine; in %",
        "frame_rate_hz": FRAME_RATE,
        "device": str(device),
        "seed": seed,
        "spidrkit": __version__,
        "torch": torch.__version__,
    }
    watch.seconds["total"] = time.perf_counter() - start
    results: dict[str, Any] = {
        "info": info,
        "layers": main.layers,
        "baselines": baseline_rows,
        "units": {**main.codebook, **main.posteriors, **main.kmeans},
        "best_layer": best_layer,
        "best_layer_mean_abx": best[1] if best else None,
        "best_codebook_layer": best_codebook,
    }
    if random_layers:
        results["random_init_layers"] = random_layers
    if phone_given_code is not None:
        results["phone_given_code"] = phone_given_code
    results["timings_s"] = watch.rounded()
    report_title = title or f"{label} layer sweep ({info_model.model_id})"
    json_path, md_path = write_report(out, results, list(plot_paths.values()), title=report_title)
    return {**results, "outputs": {"report_json": json_path, "report_md": md_path, "eval": evalset.root,
                                   **plot_paths}}
