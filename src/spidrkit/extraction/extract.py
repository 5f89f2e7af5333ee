"""Features and units out: run a model over a corpus, one output file per utterance and layer.

:func:`extract` reads a manifest (CSV/TSV/JSONL), a folder of audio, a list of entries or audio in memory (arrays
with their sample rate, a ``datasets.Dataset``: :mod:`spidrkit.extraction.arrays`) and writes, for
every requested 1-based layer, either the layer's features (``OUT/<fileid>.pt``, or ``OUT/layer_06/...``
when several layers are asked at once) or discrete units (``OUT/units.txt``, ``utt u1 u2 ...``):

- ``units="codebook"``: the argmax of the prediction head of that layer's codebook, on the unmasked input
  (SpidR/DinoSR only: other encoders have no codebooks);
- ``units="kmeans:PATH"``: the nearest centroid of a k-means model (``spidrkit kmeans``) fitted on that layer.

Features need only the encoder interface (``docs/design.md``, "Encoders"): its geometry and
``layer_outputs``. How it is done, and why:

- **Standardisation, windows, batches**: :mod:`spidrkit.extraction.compute` (standardised over the whole
  file, long files in overlapping windows, inputs batched by length with bounded padding), planned by
  :mod:`spidrkit.extraction.plan`. Files are loaded in the same batches, decoded ahead on threads.
- **Precision**: bf16 autocast on CUDA, float32 on CPU (``precision="auto"``).
- **Sharding**: with ``rank``/``world_size`` (or the ``RANK``/``WORLD_SIZE`` variables of torchrun, or
  SLURM's ``SLURM_PROCID``/``SLURM_NTASKS``: :func:`spidrkit.runtime.resolve_rank`) each process takes
  every ``world_size``-th file of the length-sorted list and writes its own files: no process group is
  needed. Units go through per-rank journals merged at the end (:mod:`spidrkit.extraction.journal`).
- **Resuming**: files whose outputs exist are skipped (feature files are written atomically, so existing
  means complete; journal lines are written per batch and a torn last line is dropped). A full disk or
  another OS error stops with an ``OSError`` naming the path and nothing partial under a final name; the
  same call, once there is space, completes the outputs.
- **One writer per folder**: rank 0 (or the one process of an unsharded run) holds ``OUT/extract.lock``
  (:func:`spidrkit.io.hold_lock`): a second extraction into the same folder raises
  :class:`~spidrkit.errors.LockHeldError`; a lock left by a crash is taken over; ``force`` breaks a live one.
- **Units file**: ``units.txt`` (``utt u1 u2 ...``), or ``units.jsonl`` when a file id holds whitespace,
  which a text line cannot (``units_format``: ``None`` chooses so, before anything is computed).
- **Bad files**: the first file that cannot be decoded stops the run, naming it; with ``skip_bad`` every
  such file is listed in ``OUT/skipped.tsv`` (the format of pretraining's, :class:`~spidrkit.data.batches.dataset.
  SkipLog`) and the others are extracted. Non-finite model outputs (NaN weights) are always an error.
- **Provenance**: each output folder has a sidecar ``spidrkit.json`` (model, checkpoint hash, layer,
  standardisation, units and k, frame rate, dtype); resuming into a folder written with other settings
  is refused rather than mixing two runs. Every file format: ``docs/formats.md``.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spidrkit.checkpoints import CheckpointInfo, Loaded, resolve_model
from spidrkit.data.batches.dataset import SkipLog
from spidrkit.data.corpora.manifest import ManifestEntry, entries_sha256
from spidrkit.extraction.arrays import ArrayInputs, inputs_label
from spidrkit.extraction.compute import ComputeOptions, compute, parse_units
from spidrkit.extraction.features_io import is_done, layer_dirname, save_features
from spidrkit.extraction.inputs import load_batches, resolve_inputs
from spidrkit.extraction.journal import (
    UNITS_NAME,
    finish_units,
    journal_line,
    open_journal,
    units_done,
    units_filename,
)
from spidrkit.extraction.kmeans import KMeansModel, warn_if_fit_elsewhere
from spidrkit.extraction.options import UNIT_FILE_FORMATS, ExtractOptions, extract_options
from spidrkit.extraction.plan import (
    DEFAULT_BATCH_SECONDS,
    DEFAULT_CONTEXT_SECONDS,
    DEFAULT_WINDOW_SECONDS,
    ExtractionError,
    plan_batches,
    shard,
    whole_frames,
)
from spidrkit.io import file_sha256, hold_lock, read_sidecar, remove_stale_temps, sidecar_path, write_sidecar
from spidrkit.models.interface import SpeechEncoder
from spidrkit.progress import progress_bar
from spidrkit.runtime import LaunchError, parse_dtype, resolve_rank, select_device

__all__ = [
    "DEFAULT_BATCH_SECONDS", "DEFAULT_CONTEXT_SECONDS", "DEFAULT_WINDOW_SECONDS", "STANDARDIZATION", "UNITS_NAME",
    "ExtractOptions", "ExtractionError", "ExtractionSummary", "extract",
]

STANDARDIZATION = "per utterance, over the whole file: mean 0, variance 1 (before any windowing)"
RAW_INPUT = "none: the encoder reads the waveform as decoded"
LOCK_NAME = "extract.lock"
# sidecar keys that must agree for a resumed run to add to existing outputs
_RESUME_KEYS = ("model", "kind", "layer", "unit_type", "k", "dtype", "format", "frame_rate", "inputs_sha256")


@dataclass
class ExtractionSummary:
    """What one call of :func:`extract` did (in this process)."""

    files: int = 0  # extracted now
    skipped: int = 0  # already done (resumed)
    too_short: list[str] = field(default_factory=list)  # shorter than the model's receptive field
    bad: list[str] = field(default_factory=list)  # could not be decoded (skip_bad): listed in OUT/skipped.tsv
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    outputs: dict[int, Path] = field(default_factory=dict)  # layer -> features folder or units file (written)
    pending: dict[int, Path] = field(default_factory=dict)  # layer -> units file the last rank will write
    rank: int = 0
    world_size: int = 1

    @property
    def speed(self) -> float:
        """Audio seconds per wall-clock second."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


# ------------------------------------------------------------------------------------------ checks
def _where(
    rank: int | None, world_size: int | None, device: str | torch.device | None
) -> tuple[int, int, torch.device]:
    """This process's shard and device (:mod:`spidrkit.runtime`), as extraction errors."""
    try:
        rank, world_size = resolve_rank(rank, world_size)
        return rank, world_size, select_device(device)
    except LaunchError as e:
        raise ExtractionError(str(e)) from e


def _check_resumable(folder: Path, info: dict[str, Any]) -> None:
    if not sidecar_path(folder).is_file():
        return
    old = read_sidecar(folder)
    diff = [k for k in _RESUME_KEYS if k in old and old.get(k) != info.get(k)]
    if diff:
        shown = ", ".join(f"{k}: {old.get(k)!r} there, {info.get(k)!r} now" if k != "inputs_sha256" else
                          f"inputs: {old.get('inputs')} ({old.get('num_files')} files) there, {info.get('inputs')} "
                          f"({info.get('num_files')} files) now" for k in diff)
        raise ExtractionError(
            f"{folder} holds outputs of another extraction ({shown}); write to another folder, or pass "
            "overwrite=True (--overwrite) to replace them"
        )


def _check_layers(model: SpeechEncoder, layers: int | Sequence[int], kind: str | None) -> list[int]:
    layers = [layers] if isinstance(layers, int) else list(layers)
    if not layers or len(set(layers)) != len(layers):
        raise ExtractionError(f"layers must be distinct 1-based layer numbers, got {layers}")
    if kind == "codebook" and not hasattr(model, "codebook_predictions"):
        raise ExtractionError(f"codebook units need a SpidR/DinoSR model, not a {type(model).__name__}")
    allowed = list(model.target_layers) if kind == "codebook" else list(range(1, model.num_layers + 1))
    if bad := [x for x in layers if x not in allowed]:
        what = "codebook layers" if kind == "codebook" else "layers"
        raise ExtractionError(f"{what} {bad} out of range; valid (1-based): {allowed}")
    return layers


def _check_dtype(dtype: torch.dtype | str) -> str:
    try:
        return parse_dtype(dtype, ("float32", "float16"))
    except ValueError as e:
        raise ExtractionError(str(e)) from e


def _use_bf16(precision: str, device: torch.device) -> bool:
    if precision not in ("auto", "bf16", "fp32"):
        raise ExtractionError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    if precision == "bf16" and device.type != "cuda":
        warnings.warn("bf16 autocast is only used on CUDA; running in float32 on the CPU", stacklevel=3)
        return False
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def _load_kmeans(
    path: str, model: SpeechEncoder, layers: list[int], model_name: str | None
) -> tuple[KMeansModel, dict[str, str]]:
    """The centroids for ``kmeans:PATH`` units, checked against the model and the layer (warned about as
    ``spidrkit kmeans apply`` does), and their provenance for the sidecar."""
    if len(layers) != 1:
        raise ExtractionError("k-means units need exactly one layer (the one the centroids were fit on)")
    kmeans = KMeansModel.load(path)
    if kmeans.dim != model.dim:
        raise ExtractionError(f"the centroids have dimension {kmeans.dim}, the model's features {model.dim}")
    warn_if_fit_elsewhere({"layer": layers[0], "model": model_name}, kmeans, stacklevel=3)
    return kmeans, {"kmeans": str(Path(path).resolve()), "kmeans_sha256": file_sha256(path)}


def _units_format(entries: Sequence[ManifestEntry], fmt: str | None) -> str:
    """The units file's format, chosen before anything is computed: text unless a file id holds whitespace
    (then JSONL, with a warning; an explicit ``"txt"`` is refused)."""
    if fmt is not None and fmt not in UNIT_FILE_FORMATS:
        raise ExtractionError(f"units_format must be 'txt', 'jsonl' or None (auto), got {fmt!r}")
    spaced = next((e.fileid for e in entries if len(e.fileid.split()) != 1 or e.fileid != e.fileid.strip()), None)
    if spaced is None:
        return fmt or "txt"
    if fmt == "txt":
        raise ExtractionError(
            f"file id {spaced!r} contains whitespace, which a units.txt line cannot hold: pass "
            "--units-format jsonl (units_format='jsonl') to write units.jsonl, or rename the files"
        )
    if fmt is None:
        warnings.warn(f"file ids contain whitespace (e.g. {spaced!r}): the units go to units.jsonl "
                      "(a units.txt line cannot hold them)", stacklevel=3)
    return "jsonl"


# ------------------------------------------------------------------------------------------- extract
@dataclass
class _Job:
    """An extraction resolved: the model and where it runs, what it computes (kind, layers, centroids)."""

    model: SpeechEncoder
    info: CheckpointInfo
    rank: int
    world_size: int
    device: torch.device
    kind: str | None
    layers: list[int]
    kmeans: KMeansModel | None = None
    k: int | None = None
    unit_info: dict[str, str] = field(default_factory=dict)
    dtype_name: str = "float32"
    bf16: bool = False


def _prepare(model: SpeechEncoder | Loaded | str | os.PathLike, provenance: CheckpointInfo | None,
             opts: ExtractOptions) -> _Job:
    rank, world_size, dev = _where(opts.rank, opts.world_size, opts.device)
    model, info = resolve_model(model, provenance, dev, opts.variant)
    kind, kmeans_path = parse_units(opts.units)
    job = _Job(model, info, rank, world_size, dev, kind, _check_layers(model, opts.layers, kind),
               dtype_name=_check_dtype(opts.dtype), bf16=_use_bf16(opts.precision, dev))
    if kind == "codebook":
        job.k = model.cfg.codebook_size
    elif kind == "kmeans":
        kmeans, job.unit_info = _load_kmeans(kmeans_path, model, job.layers, info.as_dict().get("model"))
        job.k, job.kmeans = kmeans.k, kmeans.to(dev)
    return job


def _sidecar_info(job: _Job, opts: ExtractOptions, inputs: object, entries: Sequence[ManifestEntry],
                  unit_fmt: str | None) -> dict:
    """What every output folder's sidecar says (its layer added per folder)."""
    features, num_files, inputs_digest = job.kind is None, len(entries), entries_sha256(entries)
    return {
        **job.info.as_dict(), "kind": "features" if features else "units", "layers": job.layers,
        "standardize": STANDARDIZATION if job.model.input_normalization == "standardize" else RAW_INPUT,
        "unit_type": job.kind, "k": job.k, **job.unit_info, "dedup": None if features else opts.dedup,
        "frame_rate": job.model.frame_rate, "sample_rate": job.model.sample_rate,
        "dim": job.model.dim if features else None, "dtype": job.dtype_name if features else None,
        "format": opts.fmt if features else unit_fmt, "precision": "bf16" if job.bf16 else "fp32",
        "window_seconds": opts.window_seconds, "context_seconds": opts.context_seconds,
        "inputs": inputs_label(inputs, num_files),
        "num_files": num_files, "inputs_sha256": inputs_digest, "world_size": job.world_size,
    }


def _open_folders(out_dir: Path, job: _Job, opts: ExtractOptions, base_info: dict) -> tuple[dict, dict]:
    """``({layer: folder}, {layer: sidecar info})``, each folder checked for resuming and given its sidecar."""
    layers = job.layers
    folders = {layer: out_dir if len(layers) == 1 else out_dir / layer_dirname(layer) for layer in layers}
    infos = {layer: {**base_info, "layer": layer} for layer in layers}
    for layer, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        if not opts.overwrite:
            _check_resumable(folder, infos[layer])
        if job.rank == 0:
            write_sidecar(folder, **infos[layer])
    return folders, infos


def _todo(mine: list[ManifestEntry], job: _Job, opts: ExtractOptions, folders: dict, units_name: str) -> list:
    """This rank's files that have no output yet (all of them with ``overwrite``)."""
    if job.kind is None:
        return [e for e in mine
                if opts.overwrite or not all(is_done(folders[la], e.fileid, opts.fmt) for la in job.layers)]
    done = set() if opts.overwrite else set.intersection(*(units_done(f, units_name) for f in folders.values()))
    return [e for e in mine if e.fileid not in done]


@dataclass
class _Writers:
    """Where a batch's outputs go: feature folders, or the units journals (and the skip log)."""

    folders: dict[int, Path]
    journals: dict[int, Any]
    skip_log: SkipLog | None


def _run_batches(job: _Job, opts: ExtractOptions, todo: list, writers: _Writers, summary: ExtractionSummary,
                 bar: Any, start_time: float) -> None:
    """Every batch of ``todo`` computed and written; the bar's speed counts from ``start_time``."""
    model, rate = job.model, job.model.sample_rate
    window, context = whole_frames(opts.window_seconds, model), whole_frames(opts.context_seconds, model)
    budget = max(1, int(opts.batch_seconds * rate))
    workers = opts.num_workers if opts.num_workers is not None else (4 if job.device.type == "cuda" else 0)
    out_dtype = torch.float16 if job.dtype_name == "float16" else torch.float32
    how = ComputeOptions(batch_seconds=opts.batch_seconds, window_seconds=window / rate,
                         context_seconds=context / rate, bf16=job.bf16, out_dtype=out_dtype)
    for batch, bad in load_batches(plan_batches(todo, budget, window), rate, workers, opts.skip_bad):
        for e, reason in bad:
            writers.skip_log.record(e.fileid, e.path, reason)
            summary.bad.append(e.fileid)
        usable = [(e, w) for e, w in batch if w.numel() >= model.min_samples]
        summary.too_short += [e.fileid for e, w in batch if w.numel() < model.min_samples]
        results = compute(model, [w for _, w in usable], job.layers, job.kind, job.kmeans,
                          [e.fileid for e, _ in usable], how) if usable else []
        lines: dict[int, list[str]] = {la: [] for la in writers.journals}
        for (e, wav), out in zip(usable, results):
            for layer, value in out.items():
                if job.kind is None:
                    save_features(writers.folders[layer], e.fileid, value, opts.fmt, job.dtype_name)
                else:
                    lines[layer].append(journal_line(e.fileid, value.tolist()))
            summary.audio_seconds += wav.numel() / rate
            summary.files += 1
        for layer, j in writers.journals.items():
            j.write_lines(lines[layer])
        bar.update(len(batch) + len(bad))
        bar.set_postfix(speed=f"{summary.audio_seconds / (time.perf_counter() - start_time):.1f}x")


def _warn_about_missing(summary: ExtractionSummary, job: _Job, skip_log: SkipLog | None, num_mine: int,
                        inputs_name: str) -> None:
    if summary.too_short:
        warnings.warn(
            f"{len(summary.too_short)} files are shorter than the model's {job.model.min_samples}-sample receptive "
            f"field and have no output: {', '.join(summary.too_short[:5])}", stacklevel=3,
        )
    if summary.bad:
        warnings.warn(f"{len(summary.bad)} files cannot be decoded and have no output; they are listed in "
                      f"{skip_log.path}: {', '.join(summary.bad[:5])}", stacklevel=3)
        if len(summary.bad) == num_mine and job.world_size == 1:
            raise ExtractionError(f"no file of {inputs_name} can be decoded: each one is listed, with "
                                  f"the reason, in {skip_log.path}")


def extract(model: SpeechEncoder | Loaded | str | os.PathLike, inputs: str | os.PathLike | Sequence[ManifestEntry] |
            Any, out_dir: str | os.PathLike, options: ExtractOptions | None = None, *,
            provenance: CheckpointInfo | None = None, sample_rate: int | Sequence[int] | None = None,
            audio_column: str = "audio", id_column: str | None = None, **overrides: Any) -> ExtractionSummary:
    """Extract features or units for every file of ``inputs`` into ``out_dir`` (see the module doc).

    ``model``: a loaded model, or a checkpoint path, published name or ``random:PRESET`` for
    :func:`~spidrkit.load_model`. ``inputs``: a manifest, a folder of audio, a list of :class:`ManifestEntry`,
    or audio in memory (:mod:`spidrkit.extraction.arrays`): an array, a list or dict of arrays at
    ``sample_rate``, a ``datasets.Dataset`` (``audio_column``, ``id_column``). ``options``: an
    :class:`~spidrkit.extraction.options.ExtractOptions`, and/or its fields as keywords (``layers=[6],
    units="codebook", ...``); every option is checked before any work. ``provenance``: the
    :class:`CheckpointInfo` of a model loaded elsewhere.
    """
    opts = extract_options(options, **overrides)
    start_time = time.perf_counter()
    job = _prepare(model, provenance, opts)
    entries = resolve_inputs(inputs, opts.progress and job.rank == 0, opts.extensions, job.model.sample_rate,
                             ArrayInputs(sample_rate, audio_column, id_column))
    unit_fmt = _units_format(entries, opts.units_format) if job.kind else None
    units_name = units_filename(unit_fmt) if job.kind else UNITS_NAME
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = (hold_lock(out_dir / LOCK_NAME, force=opts.force, what=f"the extraction folder {out_dir}")
            if job.rank == 0 else contextlib.nullcontext())
    with lock:  # one writer per folder (and per units merge): a second extraction into it is refused
        if job.rank == 0:
            remove_stale_temps(out_dir)  # left by a writer killed mid-write
        base_info = _sidecar_info(job, opts, inputs, entries, unit_fmt)
        folders, infos = _open_folders(out_dir, job, opts, base_info)
        mine = shard(entries, job.rank, job.world_size)
        todo = _todo(mine, job, opts, folders, units_name)
        summary = ExtractionSummary(skipped=len(mine) - len(todo), rank=job.rank, world_size=job.world_size)
        if job.kind and opts.overwrite and job.rank == 0:
            for f in folders.values():
                (f / units_name).unlink(missing_ok=True)  # replaced, not merged with, by this run's units
        journals = ({la: open_journal(f, job.rank, job.world_size, opts.overwrite) for la, f in folders.items()}
                    if job.kind else {})
        writers = _Writers(folders, journals, SkipLog(out_dir) if opts.skip_bad else None)
        bar = progress_bar(len(mine), f"extracting (rank {job.rank})", "file", opts.progress and job.rank == 0,
                           initial=summary.skipped)
        try:
            _run_batches(job, opts, todo, writers, summary, bar, start_time)
        finally:
            bar.close()
            for j in journals.values():
                j.close()
        _warn_about_missing(summary, job, writers.skip_log, len(mine), base_info["inputs"])
        if job.kind:
            finish_units(folders, infos, opts.dedup, job.rank, job.world_size, units_name, opts.force)
        for layer, folder in folders.items():  # claim only what exists: the last rank writes the units
            if job.kind is None or (folder / units_name).is_file():
                summary.outputs[layer] = folder / units_name if job.kind else folder
            else:
                summary.pending[layer] = folder / units_name
        summary.wall_seconds = time.perf_counter() - start_time
        return summary
