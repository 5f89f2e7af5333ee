"""Word discriminability: MAP@R over time-averaged word embeddings (SpidR paper, eq. 5).

Each word occurrence of the word alignments becomes one embedding: the mean of the features over its frames
(fastabx frame convention, see :func:`frame_span`). Embeddings are compared with the cosine similarity. For a
query with ``R`` other occurrences of the same word, the ``R`` nearest other embeddings are retrieved and

    MAP@R = (1 / R) * sum_{i=1..R} P(i),  P(i) = precision at i if the i-th retrieval is correct, else 0

(Musgrave et al. 2020). Retrievals beyond rank ``R`` do not count. The score is the mean over all queries
(word occurrences) with ``R >= 1``, in percent.

Words with fewer than ``min_occurrences`` occurrences are removed before anything else: they are neither
queries nor distractors (the annotation files of the paper's MAP list only repeated words).

The k-NN is exact, in torch, by chunks of queries so that memory stays at ``chunk_size x N`` similarities.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from spidrkit.evaluation.abx import FeatureSource, load_features


@dataclass(frozen=True)
class Segment:
    """One aligned unit (word or phone) of an utterance, times in seconds."""

    utt: str
    onset: float
    offset: float
    label: str
    speaker: str | None = None


def read_alignments(path: str | os.PathLike) -> list[Segment]:
    """Read ``utt onset offset label [speaker]`` lines (whitespace separated, times in seconds).

    Blank lines and lines starting with ``#`` (headers) are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no alignment file at {path}")
    segments = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) not in (4, 5):
                raise ValueError(f"{path}:{lineno}: expected 'utt onset offset label [speaker]', got {line!r}")
            try:
                onset, offset = float(fields[1]), float(fields[2])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: onset and offset must be numbers, got {line!r}") from None
            if offset <= onset:
                raise ValueError(f"{path}:{lineno}: offset {offset} is not after onset {onset}")
            segments.append(Segment(fields[0], onset, offset, fields[3], fields[4] if len(fields) == 5 else None))
    return segments


def frame_span(onset: float, offset: float, frame_rate: int, num_frames: int) -> tuple[int, int]:
    """Frames ``[start, end)`` of a segment: those whose centre ``(i + 0.5) / frame_rate`` is inside it.

    Same slicing as fastabx (so ABX and MAP see the same frames). A segment shorter than one frame gets the
    frame containing its midpoint. The span is clipped to the ``num_frames`` available.
    """
    start = math.ceil(onset * frame_rate - 0.5 - 1e-9)
    end = math.floor(offset * frame_rate - 0.5 + 1e-9) + 1
    if end <= start:
        start = int((onset + offset) / 2 * frame_rate)
        end = start + 1
    start, end = max(start, 0), min(end, num_frames)
    if end <= start:
        raise ValueError(f"segment [{onset}, {offset}] s is outside the {num_frames} frames of its features")
    return start, end


def segment_embeddings(
    features: FeatureSource,
    segments: Sequence[Segment],
    *,
    frame_rate: int = 50,
    progress: bool = True,
) -> torch.Tensor:
    """Mean feature over the frames of each segment: a float32 tensor (len(segments), D), in input order."""
    feats = load_features(features)
    by_utt: dict[str, list[int]] = {}
    for i, s in enumerate(segments):
        by_utt.setdefault(s.utt, []).append(i)
    missing = [u for u in by_utt if u not in feats]
    if missing:
        raise KeyError(f"{len(missing)} utterances of the alignments have no features, e.g. {missing[:3]}")
    out: torch.Tensor | None = None
    for utt, indices in tqdm(by_utt.items(), desc="Pooling segments", disable=not progress):
        x = feats[utt]
        if x.ndim != 2:
            raise ValueError(f"{utt}: features must have shape (T, D), got {tuple(x.shape)}")
        x = x.float()
        if out is None:
            out = torch.empty(len(segments), x.shape[1])
        for i in indices:
            start, end = frame_span(segments[i].onset, segments[i].offset, frame_rate, x.shape[0])
            out[i] = x[start:end].mean(dim=0)
    if out is None:
        raise ValueError("no segment to embed")
    return out


def map_at_r(embeddings: torch.Tensor, labels: Sequence[str] | torch.Tensor, *, chunk_size: int = 1024,
             device: str | torch.device | None = None) -> float:
    """MAP@R in percent of ``embeddings`` (N, D) with class ``labels`` (N,), cosine similarity.

    Averaged over the items that have at least one other item of their class; items alone in their class
    still serve as distractors. ``device``: where the similarities are computed (default: CUDA if
    available, else CPU).
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if embeddings.ndim != 2 or embeddings.shape[0] != len(labels):
        raise ValueError(f"need embeddings (N, D) and N labels, got {tuple(embeddings.shape)} and {len(labels)}")
    if isinstance(labels, torch.Tensor):
        _, lab = torch.unique(labels, return_inverse=True)
    else:
        index: dict[str, int] = {}
        lab = torch.tensor([index.setdefault(x, len(index)) for x in labels], dtype=torch.long)
    lab = lab.to(device)
    emb = F.normalize(embeddings.to(device, torch.float32), dim=1)
    num_others = torch.bincount(lab)[lab] - 1
    queries = torch.nonzero(num_others >= 1).squeeze(1)
    if queries.numel() == 0:
        raise ValueError("no class has two items or more: MAP@R is undefined")
    # chunks of queries with similar R: each chunk retrieves only as deep as its own largest R
    queries = queries[torch.argsort(num_others[queries], stable=True)]
    total = torch.zeros((), dtype=torch.float64)
    for chunk in queries.split(chunk_size):
        sims = emb[chunk] @ emb.T
        sims[torch.arange(chunk.numel(), device=device), chunk] = -math.inf  # never retrieve the query itself
        r = num_others[chunk]
        k = int(r.max())
        top = sims.topk(k, dim=1).indices
        ranks = torch.arange(1, k + 1, device=device)
        correct = (lab[top] == lab[chunk].unsqueeze(1)) & (ranks.unsqueeze(0) <= r.unsqueeze(1))
        precision = correct.cumsum(dim=1) / ranks
        total += ((precision * correct).sum(dim=1) / r).double().sum().cpu()
    return float(100.0 * total / queries.numel())


def word_map(
    features: FeatureSource,
    word_alignments: str | os.PathLike | Sequence[Segment],
    min_occurrences: int = 2,
    frame_rate: int = 50,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> float:
    """MAP@R over words in percent (higher is better) of features (folder or ``{utt: (T, D)}``).

    ``word_alignments`` is a file of ``utt onset offset word [speaker]`` lines or a list of
    :class:`Segment`. Words with fewer than ``min_occurrences`` occurrences are dropped first.
    """
    if min_occurrences < 2:
        raise ValueError("min_occurrences must be >= 2 (a word needs another occurrence to be retrieved)")
    segments = read_alignments(word_alignments) if isinstance(word_alignments, (str, os.PathLike)) \
        else list(word_alignments)
    counts = Counter(s.label for s in segments)
    kept = [s for s in segments if counts[s.label] >= min_occurrences]
    if not kept:
        raise ValueError(f"no word occurs {min_occurrences} times or more in the alignments")
    embeddings = segment_embeddings(features, kept, frame_rate=frame_rate, progress=progress)
    return map_at_r(embeddings, [s.label for s in kept], device=device)
