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

Alignments are those of :mod:`spidrkit.data.corpora.alignments` (``{utt: [Interval]}``, or a file of
``utt onset offset word [speaker]`` lines). Frame times need the features' frame rate, the model's
``frame_rate``. Too few repeated words raises :class:`NoRepeatedWordError`; :func:`word_map_or_none` is the
sweep's adapter, which reports that case as ``None``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from spidrkit.data.corpora.alignments import Interval, as_alignments, iter_intervals, read_alignments
from spidrkit.evaluation.metrics.abx import FeatureSource, load_features
from spidrkit.progress import progress_bar

WordSource = str | os.PathLike | Mapping[str, Sequence[Interval]]


class NoRepeatedWordError(ValueError):
    """No word (class) occurs often enough for MAP@R to be defined."""


def read_words(words: WordSource) -> dict[str, list[Interval]]:
    """Word (or phone) alignments from a file or a mapping ``{utt: [(onset, offset, label)]}``."""
    return read_alignments(words) if isinstance(words, (str, os.PathLike)) else as_alignments(words)


def frame_span(onset: float, offset: float, frame_rate: float, num_frames: int) -> tuple[int, int]:
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
    alignments: Mapping[str, Sequence[Interval]],
    *,
    frame_rate: float,
    progress: bool = True,
) -> torch.Tensor:
    """Mean feature over the frames of each interval: a float32 tensor (number of intervals, D), in the
    order of :func:`~spidrkit.data.corpora.alignments.iter_intervals` (utterance by utterance)."""
    feats = load_features(features)
    missing = [u for u, ivs in alignments.items() if ivs and u not in feats]
    if missing:
        raise KeyError(f"{len(missing)} utterances of the alignments have no features, e.g. {missing[:3]}")
    out: torch.Tensor | None = None
    i = 0
    total = sum(len(ivs) for ivs in alignments.values())
    for utt, intervals in progress_bar(len(alignments), "pooling segments", "utterance", progress,
                                         iterable=alignments.items()):
        if not intervals:
            continue
        x = feats[utt]
        if x.ndim != 2:
            raise ValueError(f"{utt}: features must have shape (T, D), got {tuple(x.shape)}")
        x = x.float()
        if out is None:
            out = torch.empty(total, x.shape[1])
        for iv in intervals:
            start, end = frame_span(iv.onset, iv.offset, frame_rate, x.shape[0])
            out[i] = x[start:end].mean(dim=0)
            i += 1
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
        raise NoRepeatedWordError("no class has two items or more: MAP@R is undefined")
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
    word_alignments: WordSource,
    min_occurrences: int = 2,
    *,
    frame_rate: float,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> float:
    """MAP@R over words in percent (higher is better) of features (folder or ``{utt: (T, D)}``) at
    ``frame_rate`` Hz.

    ``word_alignments`` is a file of ``utt onset offset word [speaker]`` lines or ``{utt: [Interval]}``.
    Words with fewer than ``min_occurrences`` occurrences are dropped first; :class:`NoRepeatedWordError`
    when none is left.
    """
    if min_occurrences < 2:
        raise ValueError("min_occurrences must be >= 2 (a word needs another occurrence to be retrieved)")
    words = read_words(word_alignments)
    counts = Counter(iv.label for _, iv in iter_intervals(words))
    kept = {utt: [iv for iv in ivs if counts[iv.label] >= min_occurrences] for utt, ivs in words.items()}
    kept = {utt: ivs for utt, ivs in kept.items() if ivs}
    if not kept:
        raise NoRepeatedWordError(f"no word occurs {min_occurrences} times or more in the alignments")
    embeddings = segment_embeddings(features, kept, frame_rate=frame_rate, progress=progress)
    return map_at_r(embeddings, [iv.label for _, iv in iter_intervals(kept)], device=device)


def word_map_or_none(features: FeatureSource, words: WordSource, *, frame_rate: float,
                     device: str | torch.device | None = None) -> float | None:
    """:func:`word_map` in percent, or ``None`` (with a warning) when no word occurs twice."""
    try:
        return word_map(features, words, frame_rate=frame_rate, device=device, progress=False)
    except NoRepeatedWordError as e:
        warnings.warn(f"word MAP: {e}; reported as None", stacklevel=2)
        return None
