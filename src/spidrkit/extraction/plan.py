"""What extraction computes, and in which groups: windows of long files, batches by length, shards by rank.

Everything here is pure arithmetic on lengths and the encoder's geometry (``docs/design.md``, "Encoders"):
the samples per frame (``sample_rate / frame_rate``) and the shortest input that gives one frame
(``min_samples``, the downsampler's receptive field). No audio is read and no model is run.

- **Batches** (:func:`pack`, the one batching rule): longest first, as many as fit ``len * longest <=
  budget`` samples of padded audio, each at least ``min_fill`` times as long as its batch's longest
  (bounded padding: on a CPU, padding is computed for nothing and no parallelism repays it). It groups the
  files :func:`~spidrkit.extraction.extract.extract` loads together (:func:`plan_batches`) and the model
  inputs (whole files and windows) :func:`~spidrkit.extraction.compute.compute` runs together.
- **Windows** (:func:`plan_windows`): a file longer than a window is cut into windows that overlap by a
  context on each side, starting on frame boundaries; only each window's centre is kept.
- **Shards** (:func:`shard`): every ``world_size``-th file of the length-sorted list.
"""

from __future__ import annotations

from collections.abc import Sequence

from spidrkit.data.corpora.manifest import ManifestEntry
from spidrkit.errors import InputError
from spidrkit.models.interface import SpeechEncoder

DEFAULT_BATCH_SECONDS = 120.0
# Files up to a minute are processed whole: LibriSpeech/Libri-Light segments (<= 35 s) are never windowed,
# so evaluations see exactly the whole-utterance features. Longer files: 40 s cores with 10 s each side.
DEFAULT_WINDOW_SECONDS = 60.0
DEFAULT_CONTEXT_SECONDS = 10.0
MIN_FILL = 0.8  # a batch holds inputs at least 80% as long as its longest: at most 20% padding

Window = tuple[int, int, int, int]  # (start, end) samples of the model input, (core_start, core_end) frames


class ExtractionError(InputError):
    """Extraction asked of inputs, layers or an output folder that cannot give it."""


def frame_stride(model: SpeechEncoder) -> int:
    """Input samples per output frame (320 at 16 kHz and 50 Hz)."""
    stride = model.sample_rate / model.frame_rate
    if stride != int(stride):
        raise ExtractionError(f"a frame must be a whole number of samples, got {stride:g}")
    return int(stride)


def whole_frames(seconds: float, model: SpeechEncoder) -> int:
    """``seconds`` in samples, rounded to a whole number of frames."""
    stride = frame_stride(model)
    return round(seconds * model.sample_rate / stride) * stride


def plan_windows(num_samples: int, model: SpeechEncoder, window_samples: int, context_samples: int) -> list[Window]:
    """Cut a file of ``num_samples`` into model inputs: ``(start, end, core_start, core_end)`` per window.

    Files up to ``window_samples`` are one piece. Longer files: consecutive cores of
    ``window - 2 * context`` samples (whole frames), each extended by ``context`` on both sides where the
    file allows; ``start`` is a multiple of the frame stride, so window frame ``f`` is file frame
    ``start / stride + f``, and ``end`` covers exactly the last frame needed.
    """
    stride = frame_stride(model)
    total = int(model.num_frames(num_samples))
    if num_samples <= window_samples or total == 0:
        return [(0, num_samples, 0, total)]
    ctx = context_samples // stride
    core = window_samples // stride - 2 * ctx
    if core < 1:
        rate = model.sample_rate
        raise ExtractionError(
            f"window ({window_samples / rate:g} s) must be longer than twice the context ({context_samples / rate:g} s)"
        )
    out = []
    for a in range(0, total, core):
        b = min(a + core, total)
        first, last = max(0, a - ctx), min(total, b + ctx)  # frames the window computes
        out.append((first * stride, min(num_samples, (last - 1) * stride + model.min_samples), a, b))
    return out


def pack(
    lengths: Sequence[int], budget_samples: int, min_fill: float = MIN_FILL, alone_above: int | None = None
) -> list[list[int]]:
    """The one batching rule: indices of ``lengths`` grouped longest first (ties in the given order), so
    that ``len(group) * longest <= budget_samples`` (a longer one is alone) and every length of a group is
    at least ``min_fill`` times its longest. Lengths above ``alone_above`` are alone."""
    groups: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        n = lengths[i]
        if alone_above is not None and n > alone_above:
            groups.append([i])
            continue
        longest = lengths[current[0]] if current else n
        if current and ((len(current) + 1) * longest > budget_samples or n < min_fill * longest):
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


def plan_batches(
    entries: Sequence[ManifestEntry], budget_samples: int, window_samples: int, min_fill: float = MIN_FILL
) -> list[list[ManifestEntry]]:
    """The files to load and run together (:func:`pack` on their lengths, ties by file id). A file longer
    than a window is alone (its windows are batched together instead)."""
    ordered = sorted(entries, key=lambda e: (-e.num_samples, e.fileid))
    groups = pack([e.num_samples for e in ordered], budget_samples, min_fill, alone_above=window_samples)
    return [[ordered[i] for i in group] for group in groups]


def shard(entries: Sequence[ManifestEntry], rank: int, world_size: int) -> list[ManifestEntry]:
    """This rank's files: every ``world_size``-th of the list sorted by (length, file id), so every rank
    gets a similar amount of audio and the split does not depend on the input order."""
    ordered = sorted(entries, key=lambda e: (e.num_samples, e.fileid))
    return ordered[rank::world_size]
