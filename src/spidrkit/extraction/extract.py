"""Features and units out: run a model over a corpus, one output file per utterance and layer.

:func:`extract` reads a manifest (CSV/TSV/JSONL), a folder of audio or a list of entries and writes, for
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
from tqdm.auto import tqdm

from spidrkit.checkpoints import CheckpointInfo, Loaded, resolve_model
from spidrkit.data.batches.dataset import SkipLog
from spidrkit.data.corpora.manifest import AUDIO_EXTENSIONS, ManifestEntry
from spidrkit.extraction.compute import compute, parse_units
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
from spidrkit.runtime import LaunchError, parse_dtype, resolve_rank, select_device

__all__ = [
    "DEFAULT_BATCH_SECONDS", "DEFAULT_CONTEXT_SECONDS", "DEFAULT_WINDOW_SECONDS", "STANDARDIZATION", "UNITS_NAME",
    "ExtractionError", "ExtractionSummary", "extract",
]

STANDARDIZATION = "per utterance, over the whole file: mean 0, variance 1 (before any windowing)"
RAW_INPUT = "none: the encoder reads the waveform as decoded"
LOCK_NAME = "extract.lock"
UNIT_FILE_FORMATS = ("txt", "jsonl")
# sidecar keys that must agree for a resumed run to add to existing outputs
_RESUME_KEYS = ("model", "kind", "layer", "unit_type", "k", "dtype", "format", "frame_rate")


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
        shown = ", ".join(f"{k}: {old.get(k)!r} there, {info.get(k)!r} now" for k in diff)
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
def extract(
    model: SpeechEncoder | Loaded | str | os.PathLike,
    inputs: str | os.PathLike | Sequence[ManifestEntry],
    out_dir: str | os.PathLike,
    layers: int | Sequence[int] = (6,),
    units: str | None = None,
    fmt: str = "pt",
    dtype: torch.dtype | str = torch.float32,
    batch_seconds: float = DEFAULT_BATCH_SECONDS,
    device: str | torch.device | None = None,
    precision: str = "auto",
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    dedup: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
    variant: str | None = None,
    num_workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    provenance: CheckpointInfo | None = None,
    units_format: str | None = None,
    skip_bad: bool = False,
    force: bool = False,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
) -> ExtractionSummary:
    """Extract features (``units=None``) or units of ``layers`` (1-based) for every file of ``inputs``.

    ``model``: a loaded model, or a checkpoint path, published name or ``random:PRESET`` for
    :func:`~spidrkit.load_model` (with ``variant``). ``inputs``: a manifest, a folder of audio, or a list of
    :class:`ManifestEntry`.
    ``units``: ``"codebook"`` or ``"kmeans:PATH"``; ``dedup`` collapses repeated units (with durations).
    ``fmt``/``dtype``: feature files as ``.pt`` or ``.npy``, float32 or float16. ``precision``: ``auto``
    (bf16 autocast on CUDA, fp32 on CPU), ``bf16`` or ``fp32``. ``rank``/``world_size``: this process's
    shard (default: from torchrun or SLURM variables). ``num_workers``: audio-decoding threads (default
    0 on CPU, 4 on CUDA). Files already extracted are skipped unless ``overwrite``. ``units_format``:
    ``"txt"``, ``"jsonl"`` or ``None`` (text unless a file id holds whitespace). ``skip_bad``: list the
    files that cannot be decoded in ``OUT/skipped.tsv`` and extract the others (else the first one is an
    error). ``force``: break the lock of another extraction into ``out_dir``. ``extensions``: those of a
    folder's audio. See the module doc.
    """
    start_time = time.perf_counter()
    rank, world_size, dev = _where(rank, world_size, device)
    model, info = resolve_model(model, provenance, dev, variant)
    kind, kmeans_path = parse_units(units)
    layers = _check_layers(model, layers, kind)
    if fmt not in ("pt", "npy"):
        raise ExtractionError(f"format must be 'pt' or 'npy', got {fmt!r}")
    dtype_name = _check_dtype(dtype)
    bf16 = _use_bf16(precision, dev)
    if window_seconds <= 2 * context_seconds:
        raise ExtractionError("window_seconds must be more than twice context_seconds")
    kmeans, k, unit_info = None, None, {}
    if kind == "codebook":
        k = model.cfg.codebook_size
    elif kind == "kmeans":
        kmeans, unit_info = _load_kmeans(kmeans_path, model, layers, info.as_dict().get("model"))
        k, kmeans = kmeans.k, kmeans.to(dev)

    entries = resolve_inputs(inputs, progress=progress and rank == 0, extensions=extensions)
    unit_fmt = _units_format(entries, units_format) if kind else None
    units_name = units_filename(unit_fmt) if kind else UNITS_NAME
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = (hold_lock(out_dir / LOCK_NAME, force=force, what=f"the extraction folder {out_dir}") if rank == 0
            else contextlib.nullcontext())
    with lock:  # one writer per folder (and per units merge): a second extraction into it is refused
        if rank == 0:
            remove_stale_temps(out_dir)  # left by a writer killed mid-write
        folders = {layer: out_dir if len(layers) == 1 else out_dir / layer_dirname(layer) for layer in layers}
        base_info = {
            **info.as_dict(),
            "kind": "units" if kind else "features",
            "layers": layers,
            "standardize": STANDARDIZATION if model.input_normalization == "standardize" else RAW_INPUT,
            "unit_type": kind,
            "k": k,
            **unit_info,
            "dedup": dedup if kind else None,
            "frame_rate": model.frame_rate,
            "sample_rate": model.sample_rate,
            "dim": model.dim if kind is None else None,
            "dtype": dtype_name if kind is None else None,
            "format": fmt if kind is None else unit_fmt,
            "precision": "bf16" if bf16 else "fp32",
            "window_seconds": window_seconds,
            "context_seconds": context_seconds,
            "inputs": str(inputs) if isinstance(inputs, str | os.PathLike) else f"{len(entries)} entries",
            "num_files": len(entries),
            "world_size": world_size,
        }
        infos = {layer: {**base_info, "layer": layer} for layer in layers}
        for layer, folder in folders.items():
            folder.mkdir(parents=True, exist_ok=True)
            if not overwrite:
                _check_resumable(folder, infos[layer])
            if rank == 0:
                write_sidecar(folder, **infos[layer])

        mine = shard(entries, rank, world_size)
        if kind is None:
            todo = [e for e in mine if overwrite or not all(is_done(folders[la], e.fileid, fmt) for la in layers)]
        else:
            done = set() if overwrite else set.intersection(*(units_done(f, units_name) for f in folders.values()))
            todo = [e for e in mine if e.fileid not in done]
        summary = ExtractionSummary(skipped=len(mine) - len(todo), rank=rank, world_size=world_size)

        rate = model.sample_rate
        budget = max(1, int(batch_seconds * rate))
        window = whole_frames(window_seconds, model)
        context = whole_frames(context_seconds, model)
        need = model.min_samples
        workers = num_workers if num_workers is not None else (4 if dev.type == "cuda" else 0)
        if kind and overwrite and rank == 0:
            for f in folders.values():
                (f / units_name).unlink(missing_ok=True)  # replaced, not merged with, by this run's units
        journals = {la: open_journal(f, rank, world_size, overwrite) for la, f in folders.items()} if kind else {}
        skip_log = SkipLog(out_dir) if skip_bad else None
        bar = tqdm(total=len(mine), initial=summary.skipped, unit="file", desc=f"extracting (rank {rank})",
                   disable=not progress or rank != 0)
        try:
            for batch, bad in load_batches(plan_batches(todo, budget, window), rate, workers, skip_bad):
                for e, reason in bad:
                    skip_log.record(e.fileid, e.path, reason)
                    summary.bad.append(e.fileid)
                usable = []
                for e, wav in batch:
                    if wav.numel() < need:
                        summary.too_short.append(e.fileid)
                    else:
                        usable.append((e, wav))
                results = compute(
                    model, [w for _, w in usable], layers, kind, kmeans, batch_seconds, window / rate, context / rate,
                    bf16, torch.float16 if dtype_name == "float16" else torch.float32, [e.fileid for e, _ in usable],
                ) if usable else []
                lines: dict[int, list[str]] = {la: [] for la in journals}
                for (e, wav), out in zip(usable, results):
                    for layer, value in out.items():
                        if kind is None:
                            save_features(folders[layer], e.fileid, value, fmt, dtype_name)
                        else:
                            lines[layer].append(journal_line(e.fileid, value.tolist()))
                    summary.audio_seconds += wav.numel() / rate
                    summary.files += 1
                for layer, j in journals.items():
                    j.write_lines(lines[layer])
                bar.update(len(batch) + len(bad))
                bar.set_postfix(speed=f"{summary.audio_seconds / (time.perf_counter() - start_time):.1f}x")
        finally:
            bar.close()
            for j in journals.values():
                j.close()
        if summary.too_short:
            warnings.warn(
                f"{len(summary.too_short)} files are shorter than the model's {need}-sample receptive field and "
                f"have no output: {', '.join(summary.too_short[:5])}", stacklevel=2,
            )
        if summary.bad:
            warnings.warn(f"{len(summary.bad)} files cannot be decoded and have no output; they are listed in "
                          f"{skip_log.path}: {', '.join(summary.bad[:5])}", stacklevel=2)
            if len(summary.bad) == len(mine) and world_size == 1:
                raise ExtractionError(f"no file of {base_info['inputs']} can be decoded: each one is listed, with "
                                      f"the reason, in {skip_log.path}")
        if kind:
            finish_units(folders, infos, dedup, rank, world_size, units_name, force)
        for layer, folder in folders.items():  # claim only what exists: the last rank writes the units
            if kind is None or (folder / units_name).is_file():
                summary.outputs[layer] = folder / units_name if kind else folder
            else:
                summary.pending[layer] = folder / units_name
        summary.wall_seconds = time.perf_counter() - start_time
        return summary
