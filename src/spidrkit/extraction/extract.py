"""Features and units out: run a model over a corpus, one output file per utterance and layer.

:func:`extract` reads a manifest (CSV/TSV/JSONL), a folder of audio or a list of entries and writes, for
every requested 1-based layer, either the layer's features (``OUT/<fileid>.pt``, or ``OUT/layer_06/...``
when several layers are asked at once) or discrete units (``OUT/units.txt``, ``utt u1 u2 ...``):

- ``units="codebook"``: the argmax of the prediction head of that layer's codebook, on the unmasked input;
- ``units="kmeans:PATH"``: the nearest centroid of a k-means model (``spidrkit kmeans``) fitted on that layer.

How it is done, and why:

- **Standardisation** (SPEC §1) is done here, over the whole file, so no caller can forget it.
- **Batching**: files are sorted by length and packed into batches of at most ``batch_seconds`` of padded
  audio, each file at least 80% as long as its batch's longest (bounded padding); the model's padding
  mask makes the result equal one-file-at-a-time (to float rounding).
- **Long files** (longer than ``window_seconds``) are cut into windows that overlap by ``context_seconds``
  on each side; only each window's centre is kept. The whole file is standardised *before* windowing
  (per-window statistics would shift every window differently). Windows start on a frame boundary (a
  multiple of the 320-sample stride), so window frames are whole-file frames: the downsampler's output is
  identical, and the centre frames differ from whole-file extraction only through what attention sees
  beyond the context (nothing, for a model whose attention is local within ``context_seconds``).
  Memory stays bounded by the window, whatever the file length.
- **Precision**: bf16 autocast on CUDA, float32 on CPU (``precision="auto"``).
- **Sharding**: with ``rank``/``world_size`` (or the ``RANK``/``WORLD_SIZE`` variables of torchrun, or
  SLURM's ``SLURM_PROCID``/``SLURM_NTASKS``) each process takes every ``world_size``-th file of the
  length-sorted list and writes its own files: no process group is needed. Units go through a per-rank
  journal (``units.part{r}-of-{n}.partial.jsonl``, renamed ``.jsonl`` when the rank is done); the last
  rank to finish merges the journals into ``units.txt`` (under torchrun with a process group: rank 0,
  after a barrier).
- **Resuming**: files whose outputs exist are skipped (feature files are written atomically, so existing
  means complete; journal lines are flushed per batch and a torn last line is dropped).
- **Provenance**: each output folder has a sidecar ``spidrkit.json`` (model, checkpoint hash, layer,
  standardisation, units and k, frame rate, dtype); resuming into a folder written with other settings
  is refused rather than mixing two runs.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from spidrkit.checkpoints import CheckpointInfo, Loaded, resolve_model
from spidrkit.data.manifest import ManifestEntry, read_manifest, scan_audio_dir
from spidrkit.extraction.features_io import is_done, layer_dirname, save_features
from spidrkit.io import file_sha256, read_sidecar, sidecar_path, write_sidecar
from spidrkit.models.layers import receptive_field
from spidrkit.models.spidr import SpidR

SAMPLE_RATE = 16000
DEFAULT_BATCH_SECONDS = 120.0
# Files up to a minute are processed whole: LibriSpeech/Libri-Light segments (<= 35 s) are never windowed,
# so evaluations see exactly the whole-utterance features. Longer files: 40 s cores with 10 s each side.
DEFAULT_WINDOW_SECONDS = 60.0
DEFAULT_CONTEXT_SECONDS = 10.0
MIN_FILL = 0.8  # a batch holds files at least 80% as long as its longest: at most 20% padding
UNITS_NAME = "units.txt"
STANDARDIZATION = "per utterance, over the whole file: mean 0, variance 1 (before any windowing)"
# sidecar keys that must agree for a resumed run to add to existing outputs
_RESUME_KEYS = ("model", "kind", "layer", "unit_type", "k", "dtype", "format", "frame_rate")


class ExtractionError(ValueError):
    """Extraction asked of inputs, layers or an output folder that cannot give it."""


@dataclass
class ExtractionSummary:
    """What one call of :func:`extract` did (in this process)."""

    files: int = 0  # extracted now
    skipped: int = 0  # already done (resumed)
    too_short: list[str] = field(default_factory=list)  # shorter than the model's receptive field
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    outputs: dict[int, Path] = field(default_factory=dict)  # layer -> features folder or units file
    rank: int = 0
    world_size: int = 1

    @property
    def speed(self) -> float:
        """Audio seconds per wall-clock second."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


# ------------------------------------------------------------------------------------------ planning
def plan_windows(
    num_samples: int, model: SpidR, window_samples: int, context_samples: int
) -> list[tuple[int, int, int, int]]:
    """Cut a file of ``num_samples`` into model inputs: ``(start, end, core_start, core_end)`` per window.

    Files up to ``window_samples`` are one piece. Longer files: consecutive cores of
    ``window - 2 * context`` samples (whole frames), each extended by ``context`` on both sides where the
    file allows; ``start`` is a multiple of the frame stride, so window frame ``f`` is file frame
    ``start / stride + f``, and ``end`` covers exactly the last frame needed.
    """
    stride = model.cfg.frame_stride
    total = int(model.num_frames(num_samples))
    if num_samples <= window_samples or total == 0:
        return [(0, num_samples, 0, total)]
    rf = receptive_field(model.cfg.conv_kernels, model.cfg.conv_strides)
    ctx = context_samples // stride
    core = window_samples // stride - 2 * ctx
    if core < 1:
        raise ExtractionError(
            f"window ({window_samples / SAMPLE_RATE:g} s) must be longer than twice the context "
            f"({context_samples / SAMPLE_RATE:g} s)"
        )
    out = []
    for a in range(0, total, core):
        b = min(a + core, total)
        first, last = max(0, a - ctx), min(total, b + ctx)  # frames the window computes
        out.append((first * stride, min(num_samples, (last - 1) * stride + rf), a, b))
    return out


def plan_batches(
    entries: Sequence[ManifestEntry], budget_samples: int, window_samples: int, min_fill: float = MIN_FILL
) -> list[list[ManifestEntry]]:
    """Longest first, packed so that ``len(batch) * longest <= budget`` and every file of a batch is at
    least ``min_fill`` times as long as its longest (padding is computed for nothing, and on a CPU that
    cost is not repaid by any parallelism). A file longer than a window is alone (its windows are batched
    together instead)."""
    batches: list[list[ManifestEntry]] = []
    current: list[ManifestEntry] = []
    for e in sorted(entries, key=lambda e: (-e.num_samples, e.fileid)):
        if e.num_samples > window_samples:
            batches.append([e])
            continue
        if current and (
            (len(current) + 1) * current[0].num_samples > budget_samples
            or e.num_samples < min_fill * current[0].num_samples
        ):
            batches.append(current)
            current = []
        current.append(e)
    if current:
        batches.append(current)
    return batches


def shard(entries: Sequence[ManifestEntry], rank: int, world_size: int) -> list[ManifestEntry]:
    """This rank's files: every ``world_size``-th of the list sorted by (length, file id), so every rank
    gets a similar amount of audio and the split does not depend on the input order."""
    ordered = sorted(entries, key=lambda e: (e.num_samples, e.fileid))
    return ordered[rank::world_size]


def resolve_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: given, else torch.distributed's, else torchrun's ``RANK``/``WORLD_SIZE``,
    else SLURM's ``SLURM_PROCID``/``SLURM_NTASKS``, else ``(0, 1)``."""
    if rank is None and world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        for r, w in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
            if r in os.environ and w in os.environ:
                rank, world_size = int(os.environ[r]), int(os.environ[w])
                break
    rank = 0 if rank is None else int(rank)
    world_size = 1 if world_size is None else int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ExtractionError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return rank, world_size


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``: CUDA if available, else CPU. Plain ``cuda`` under torchrun/SLURM: this process's GPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ExtractionError("device 'cuda' asked, but no CUDA device is available")
        if device.index is None:
            local = os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID"))
            device = torch.device("cuda", int(local) % torch.cuda.device_count() if local else 0)
    return device


def resolve_inputs(inputs: str | os.PathLike | Sequence[ManifestEntry], progress: bool = True) -> list[ManifestEntry]:
    """Entries from a manifest file, a folder of audio (scanned), or a list of entries."""
    if isinstance(inputs, str | os.PathLike):
        path = Path(inputs)
        if path.is_dir():
            scan = scan_audio_dir(path, progress=progress)
            if scan.failures:
                shown = "; ".join(f"{p}: {why}" for p, why in scan.failures[:5])
                warnings.warn(f"{len(scan.failures)} files under {path} cannot be used: {shown}", stacklevel=3)
            entries = scan.entries
        elif path.is_file():
            entries = read_manifest(path)
        else:
            raise ExtractionError(f"no manifest or folder at {path}")
    else:
        entries = list(inputs)
        if not all(isinstance(e, ManifestEntry) for e in entries):
            raise ExtractionError("inputs must be a manifest path, a folder, or a list of ManifestEntry")
        ids = [e.fileid for e in entries]
        if len(set(ids)) != len(ids):
            raise ExtractionError("the same file id appears more than once in the inputs")
    if not entries:
        raise ExtractionError(f"no audio files in {inputs}")
    return entries


# ------------------------------------------------------------------------------------------- compute
@dataclass
class _Task:
    """What to compute: features of ``layers``, or their units (codebook argmax or k-means)."""

    layers: list[int]
    units: str | None = None  # None, "codebook", "kmeans"
    kmeans: Any = None  # KMeansModel on the compute device
    bf16: bool = False


def parse_units(units: str | None) -> tuple[str | None, str | None]:
    """``None`` | ``"codebook"`` | ``"kmeans:PATH"`` -> (kind, path)."""
    if units is None or units == "":
        return None, None
    if units == "codebook":
        return "codebook", None
    if units.startswith("kmeans:") and len(units) > len("kmeans:"):
        return "kmeans", units[len("kmeans:") :]
    raise ExtractionError(f"units must be 'codebook' or 'kmeans:PATH', got {units!r}")


def _forward(model: SpidR, wav: torch.Tensor, lengths: torch.Tensor, task: _Task) -> dict[int, torch.Tensor]:
    """One padded batch of standardised segments -> {layer: (B, T, D) float32 features or (B, T) units}."""
    ctx = torch.autocast(wav.device.type, dtype=torch.bfloat16, enabled=task.bf16)
    with torch.inference_mode(), ctx:
        if task.units == "codebook":
            preds = model.codebook_predictions(wav, lengths, task.layers, standardize=False)
            return {layer: p.units for layer, p in preds.items()}
        reps = model.layer_outputs(wav, lengths, task.layers, standardize=False)
    return {layer: r.float() for layer, r in reps.items()}


def compute(
    model: SpidR,
    wavs: Sequence[torch.Tensor],
    layers: Sequence[int],
    units: str | None = None,
    kmeans: Any = None,
    batch_seconds: float = DEFAULT_BATCH_SECONDS,
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    bf16: bool = False,
    out_dtype: torch.dtype = torch.float32,
) -> list[dict[int, torch.Tensor]]:
    """The outputs of raw 16 kHz waveforms (not yet standardised), in memory, on the CPU.

    Returns, per waveform, ``{layer: (T, D) features}`` (``units=None``) or ``{layer: (T,) LongTensor}``
    (``units="codebook"``, or ``"kmeans"`` with ``kmeans`` a fitted :class:`KMeansModel`). Each waveform
    is standardised whole, cut into windows when longer than ``window_seconds``, and the pieces of all
    waveforms are batched by length under ``batch_seconds`` of padded audio.
    """
    from spidrkit.data.audio import standardize

    task = _Task(list(layers), units, kmeans, bf16)
    device = next(model.parameters()).device
    window = _whole_frames(window_seconds, model)
    context = _whole_frames(context_seconds, model)
    budget = max(1, int(batch_seconds * SAMPLE_RATE))
    stride = model.cfg.frame_stride
    std = [standardize(torch.as_tensor(w, dtype=torch.float32).reshape(-1)) for w in wavs]
    outputs: list[dict[int, torch.Tensor]] = []
    pieces: list[tuple[int, tuple[int, int, int, int]]] = []
    for i, w in enumerate(std):
        total = int(model.num_frames(w.numel()))
        if units is None:
            outputs.append({layer: torch.empty(total, model.cfg.dim, dtype=out_dtype) for layer in layers})
        else:
            outputs.append({layer: torch.empty(total, dtype=torch.long) for layer in layers})
        pieces.extend((i, seg) for seg in plan_windows(w.numel(), model, window, context))
    pieces.sort(key=lambda p: -(p[1][1] - p[1][0]))
    j = 0
    while j < len(pieces):
        longest = pieces[j][1][1] - pieces[j][1][0]
        n = max(1, min(len(pieces) - j, budget // max(longest, 1)))
        group = pieces[j : j + n]
        j += n
        wav = torch.zeros(len(group), longest)
        lengths = torch.tensor([end - start for _, (start, end, _, _) in group])
        for b, (i, (start, end, _, _)) in enumerate(group):
            wav[b, : end - start] = std[i][start:end]
        result = _forward(model, wav.to(device), lengths.to(device), task)
        for layer, batch in result.items():
            for b, (i, (start, _, a, z)) in enumerate(group):
                first = start // stride
                piece = batch[b, a - first : z - first]
                if units == "kmeans":
                    piece = kmeans.predict(piece)
                outputs[i][layer][a:z] = piece.to("cpu")
    return outputs


def _whole_frames(seconds: float, model: SpidR) -> int:
    stride = model.cfg.frame_stride
    return round(seconds * SAMPLE_RATE / stride) * stride


# ------------------------------------------------------------------------------------- audio loading
def _load_batch(batch: list[ManifestEntry]) -> list[tuple[ManifestEntry, torch.Tensor]]:
    from spidrkit.data.audio import AudioError, load_audio

    out = []
    for e in batch:
        try:
            out.append((e, load_audio(e.path, SAMPLE_RATE)))
        except AudioError as err:
            raise ExtractionError(f"{e.fileid}: {err} (fix or remove it from the inputs, then resume)") from err
    return out


def _load_batches(
    batches: list[list[ManifestEntry]], num_workers: int
) -> Iterator[list[tuple[ManifestEntry, torch.Tensor]]]:
    """Decoded batches in order. With workers, up to ``2 * num_workers`` batches are decoded ahead on
    threads (libsndfile and soxr release the GIL), which needs no fork/spawn and no ``__main__`` guard."""
    if num_workers <= 0:
        yield from map(_load_batch, batches)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(num_workers, thread_name_prefix="spidrkit-audio") as pool:
        ahead: deque = deque()
        todo = iter(batches)
        for batch in todo:
            ahead.append(pool.submit(_load_batch, batch))
            if len(ahead) >= 2 * num_workers:
                break
        while ahead:
            result = ahead.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                ahead.append(pool.submit(_load_batch, nxt))
            yield result


# ------------------------------------------------------------------------------------ units journals
def _journal(folder: Path, rank: int, world_size: int, done: bool) -> Path:
    return folder / f"units.part{rank}-of-{world_size}{'' if done else '.partial'}.jsonl"


def _read_journal(path: Path) -> dict[str, list[int]]:
    """Complete lines of a units journal (a torn last line, from a crash or a writer still at work, is not
    counted)."""
    out: dict[str, list[int]] = {}
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                break
            record = json.loads(line)
            out[record["utt"]] = record["units"]
    return out


def _open_journal(folder: Path, rank: int, world_size: int, fresh: bool = False):
    """This rank's journal for appending: a finished one is reopened, a torn last line is cut off; with
    ``fresh`` (overwrite) it starts empty."""
    partial, done = _journal(folder, rank, world_size, False), _journal(folder, rank, world_size, True)
    if fresh:
        done.unlink(missing_ok=True)
        return open(partial, "w")
    if done.exists() and not partial.exists():
        os.replace(done, partial)
    if partial.exists():
        data = partial.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut != len(data):
            with open(partial, "r+b") as f:
                f.truncate(cut)
    return open(partial, "a")


def _units_done(folder: Path) -> set[str]:
    """Utterances already in ``units.txt`` or in any journal of the folder (any rank, any world size)."""
    from spidrkit.extraction.units import read_units

    done: set[str] = set()
    final = folder / UNITS_NAME
    if final.is_file():
        done.update(read_units(final))
    for journal in folder.glob("units.part*.jsonl"):
        done.update(_read_journal(journal))
    return done


def _merge_units(folder: Path, dedup: bool, info: dict[str, Any]) -> bool:
    """Merge ``units.txt`` and every journal into ``units.txt`` (atomic), then delete the journals.

    A lock file keeps two finishing ranks from merging at once; returns False if another holds it."""
    from spidrkit.extraction.units import read_units, write_units

    lock = folder / "units.merge.lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        warnings.warn(
            f"{lock} exists: another process is merging the units (or one crashed while merging: "
            "delete the lock and run again to merge)", stacklevel=3,
        )
        return False
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        final = folder / UNITS_NAME
        merged: dict[str, Any] = dict(read_units(final)) if final.is_file() else {}
        journals = sorted(folder.glob("units.part*.jsonl"))
        for journal in journals:
            merged.update(_read_journal(journal))
        own = {k: v for k, v in info.items() if k not in ("dedup", "format")}  # write_units records these
        write_units(final, merged, dedup=dedup, fmt="txt", **own)
        for journal in journals:
            journal.unlink()
    finally:
        lock.unlink(missing_ok=True)
    return True


# ------------------------------------------------------------------------------------------ sidecars
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


def _check_layers(model: SpidR, layers: int | Sequence[int], kind: str | None) -> list[int]:
    layers = [layers] if isinstance(layers, int) else list(layers)
    if not layers or len(set(layers)) != len(layers):
        raise ExtractionError(f"layers must be distinct 1-based layer numbers, got {layers}")
    allowed = list(model.target_layers) if kind == "codebook" else list(range(1, model.cfg.num_layers + 1))
    if bad := [x for x in layers if x not in allowed]:
        what = "codebook layers" if kind == "codebook" else "layers"
        raise ExtractionError(f"{what} {bad} out of range; valid (1-based): {allowed}")
    return layers


def _dtype_name(dtype: torch.dtype | str) -> str:
    names = {torch.float32: "float32", torch.float16: "float16", "float32": "float32", "float16": "float16"}
    if dtype not in names:
        raise ExtractionError(f"dtype must be float32 or float16, got {dtype!r}")
    return names[dtype]


def _use_bf16(precision: str, device: torch.device) -> bool:
    if precision not in ("auto", "bf16", "fp32"):
        raise ExtractionError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    if precision == "bf16" and device.type != "cuda":
        warnings.warn("bf16 autocast is only used on CUDA; running in float32 on the CPU", stacklevel=3)
        return False
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def _load_kmeans(path: str, model: SpidR, layers: list[int]):
    """The centroids for ``kmeans:PATH`` units, checked against the model and the layer, and their
    provenance for the sidecar."""
    from spidrkit.extraction.kmeans import KMeansModel

    if len(layers) != 1:
        raise ExtractionError("k-means units need exactly one layer (the one the centroids were fit on)")
    kmeans = KMeansModel.load(path)
    if kmeans.dim != model.cfg.dim:
        raise ExtractionError(f"the centroids have dimension {kmeans.dim}, the model's features {model.cfg.dim}")
    fit_layer = kmeans.info.get("layer")
    if fit_layer is not None and fit_layer != layers[0]:
        warnings.warn(f"the centroids were fit on layer {fit_layer}, applied to layer {layers[0]}", stacklevel=3)
    return kmeans, {"kmeans": str(Path(path).resolve()), "kmeans_sha256": file_sha256(path)}


# ------------------------------------------------------------------------------------------- extract
def extract(
    model: SpidR | Loaded | str | os.PathLike,
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
) -> ExtractionSummary:
    """Extract features (``units=None``) or units of ``layers`` (1-based) for every file of ``inputs``.

    ``model``: a loaded model, or a checkpoint path / preset name for :func:`~spidrkit.load_model` (with
    ``variant``). ``inputs``: a manifest, a folder of audio, or a list of :class:`ManifestEntry`.
    ``units``: ``"codebook"`` or ``"kmeans:PATH"``; ``dedup`` collapses repeated units (with durations).
    ``fmt``/``dtype``: feature files as ``.pt`` or ``.npy``, float32 or float16. ``precision``: ``auto``
    (bf16 autocast on CUDA, fp32 on CPU), ``bf16`` or ``fp32``. ``rank``/``world_size``: this process's
    shard (default: from torchrun or SLURM variables). ``num_workers``: audio-decoding threads (default
    0 on CPU, 4 on CUDA). Files already extracted are skipped unless ``overwrite``. See the module doc.
    """
    start_time = time.perf_counter()
    rank, world_size = resolve_rank(rank, world_size)
    dev = resolve_device(device)
    model, info = resolve_model(model, provenance, dev, variant)
    kind, kmeans_path = parse_units(units)
    layers = _check_layers(model, layers, kind)
    if fmt not in ("pt", "npy"):
        raise ExtractionError(f"format must be 'pt' or 'npy', got {fmt!r}")
    dtype_name = _dtype_name(dtype)
    bf16 = _use_bf16(precision, dev)
    if window_seconds <= 2 * context_seconds:
        raise ExtractionError("window_seconds must be more than twice context_seconds")
    kmeans, k, unit_info = None, None, {}
    if kind == "codebook":
        k = model.cfg.codebook_size
    elif kind == "kmeans":
        kmeans, unit_info = _load_kmeans(kmeans_path, model, layers)
        k, kmeans = kmeans.k, kmeans.to(dev)

    entries = resolve_inputs(inputs, progress=progress and rank == 0)
    out_dir = Path(out_dir)
    folders = {layer: out_dir if len(layers) == 1 else out_dir / layer_dirname(layer) for layer in layers}
    base_info = {
        **info.as_dict(),
        "kind": "units" if kind else "features",
        "layers": layers,
        "standardize": STANDARDIZATION,
        "unit_type": kind,
        "k": k,
        **unit_info,
        "dedup": dedup if kind else None,
        "frame_rate": SAMPLE_RATE / model.cfg.frame_stride,
        "sample_rate": SAMPLE_RATE,
        "dim": model.cfg.dim if kind is None else None,
        "dtype": dtype_name if kind is None else None,
        "format": fmt if kind is None else "txt",
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
        done = set() if overwrite else set.intersection(*(_units_done(f) for f in folders.values()))
        todo = [e for e in mine if e.fileid not in done]
    summary = ExtractionSummary(skipped=len(mine) - len(todo), rank=rank, world_size=world_size)
    summary.outputs = {la: (f / UNITS_NAME if kind else f) for la, f in folders.items()}

    budget = max(1, int(batch_seconds * SAMPLE_RATE))
    window = _whole_frames(window_seconds, model)
    context = _whole_frames(context_seconds, model)
    need = receptive_field(model.cfg.conv_kernels, model.cfg.conv_strides)
    workers = num_workers if num_workers is not None else (4 if dev.type == "cuda" else 0)
    if kind and overwrite and rank == 0:
        for f in folders.values():
            (f / UNITS_NAME).unlink(missing_ok=True)  # replaced, not merged with, by this run's units
    journals = {la: _open_journal(f, rank, world_size, overwrite) for la, f in folders.items()} if kind else {}
    bar = tqdm(total=len(mine), initial=summary.skipped, unit="file", desc=f"extracting (rank {rank})",
               disable=not progress or rank != 0)
    try:
        for batch in _load_batches(plan_batches(todo, budget, window), workers):
            usable = []
            for e, wav in batch:
                if wav.numel() < need:
                    summary.too_short.append(e.fileid)
                else:
                    usable.append((e, wav))
            results = compute(
                model, [w for _, w in usable], layers, kind, kmeans, batch_seconds, window / SAMPLE_RATE,
                context / SAMPLE_RATE, bf16, torch.float16 if dtype_name == "float16" else torch.float32,
            ) if usable else []
            for (e, wav), out in zip(usable, results):
                for layer, value in out.items():
                    if kind is None:
                        save_features(folders[layer], e.fileid, value, fmt, dtype_name)
                    else:
                        journals[layer].write(json.dumps({"utt": e.fileid, "units": value.tolist()}) + "\n")
                summary.audio_seconds += wav.numel() / SAMPLE_RATE
                summary.files += 1
            for j in journals.values():
                j.flush()
            bar.update(len(batch))
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
    if kind:
        _finish_units(folders, infos, dedup, rank, world_size)
    summary.wall_seconds = time.perf_counter() - start_time
    return summary


def _finish_units(folders: dict[int, Path], infos: dict[int, dict], dedup: bool, rank: int, world_size: int) -> None:
    """Mark this rank's journals done, then merge them once every rank of this run is done."""
    for folder in folders.values():
        partial, done = _journal(folder, rank, world_size, False), _journal(folder, rank, world_size, True)
        os.replace(partial, done)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed:
        torch.distributed.barrier()
        if rank == 0:
            for layer, folder in folders.items():
                _merge_units(folder, dedup, infos[layer])
        torch.distributed.barrier()
        return
    for layer, folder in folders.items():
        if all(_journal(folder, r, world_size, True).exists() for r in range(world_size)):
            _merge_units(folder, dedup, infos[layer])
