"""Phone embeddings and their t-SNE (the SpidR paper's Figure 8): coloured by phone class and by speaker."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from spidrkit.data.corpora.alignments import Interval, iter_intervals, read_alignment_table
from spidrkit.data.corpora.phones import CLASS_COLOURS, CLASS_ORDER, SILENCES, base_phone, phone_class
from spidrkit.evaluation.metrics.abx import FeatureSource
from spidrkit.evaluation.metrics.word_map import read_words, segment_embeddings
from spidrkit.evaluation.plots.figures import Figure, Panel, Series, pyplot, save_figure
from spidrkit.lazy import require

UNKNOWN_SPEAKER = "?"
IGNORED_PHONES = tuple(sorted(SILENCES))


def _groups(phones: Mapping[str, Sequence[Interval]], speakers: Mapping[str, str],
            ignore: Sequence[str] = IGNORED_PHONES) -> dict[tuple[str, str], list[tuple[str, Interval]]]:
    """The phone instances by (speaker, phone without stress), ``ignore``d phones left out."""
    skip = {base_phone(p) for p in ignore}
    groups: dict[tuple[str, str], list[tuple[str, Interval]]] = {}
    for utt, iv in iter_intervals(phones):
        if base_phone(iv.label) not in skip:
            groups.setdefault((speakers.get(utt, UNKNOWN_SPEAKER), base_phone(iv.label)), []).append((utt, iv))
    return groups


def tsne_per_phone(phones: Mapping[str, Sequence[Interval]], speakers: Mapping[str, str], max_points: int,
                   most: int = 10) -> int:
    """Instances per (speaker, phone) for about ``max_points`` points: ``most`` (the paper's 10) or fewer."""
    groups = {(speakers.get(utt), base_phone(iv.label)) for utt, iv in iter_intervals(phones)}
    return max(1, min(most, max_points // max(len(groups), 1)))


def phone_embeddings(
    features: FeatureSource,
    phone_alignments: str | os.PathLike | Mapping[str, Sequence[Interval]],
    speakers: Mapping[str, str] | None = None,
    *,
    frame_rate: float,
    per_speaker_and_phone: int = 10,
    ignore: Sequence[str] = IGNORED_PHONES,
    seed: int = 0,
    progress: bool = True,
) -> tuple[torch.Tensor, list[str], list[str]]:
    """Mean feature of sampled phone instances, as in the paper: for each speaker, at most
    ``per_speaker_and_phone`` random instances of each phone, averaged over their frames.

    ``phone_alignments``: a file of ``utt onset offset phone speaker`` lines (the speakers read from it) or
    ``{utt: [Interval]}`` with ``speakers`` ``{utt: speaker}``. Returns ``(embeddings (N, D), phones,
    speakers)``, the instances in alignment order.
    """
    if isinstance(phone_alignments, (str, os.PathLike)):
        phones, read_speakers = read_alignment_table(phone_alignments)
        speakers = read_speakers if speakers is None else speakers
    else:
        phones = read_words(phone_alignments)
    speakers = speakers or {}
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[Interval]] = {}
    for instances in _groups(phones, speakers, ignore).values():
        if len(instances) > per_speaker_and_phone:
            instances = [instances[i] for i in sorted(rng.choice(len(instances), per_speaker_and_phone,
                                                                 replace=False))]
        for utt, iv in instances:
            chosen.setdefault(utt, []).append(iv)
    picked = {utt: sorted(chosen[utt], key=lambda iv: (iv.onset, iv.offset)) for utt in phones if utt in chosen}
    if not picked:
        raise ValueError("no phone segment to embed")
    emb = segment_embeddings(features, picked, frame_rate=frame_rate, progress=progress)
    instances = list(iter_intervals(picked))
    return emb, [base_phone(iv.label) for _, iv in instances], [speakers.get(u, UNKNOWN_SPEAKER) for u, _ in instances]


def tsne_points(embeddings: torch.Tensor | np.ndarray, *, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """2-D t-SNE (scikit-learn, cosine metric, PCA init) of (N, D) embeddings: (N, 2)."""
    TSNE = require("sklearn.manifold", "a t-SNE map").TSNE

    x = np.asarray(embeddings.detach().cpu() if isinstance(embeddings, torch.Tensor) else embeddings,
                   dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 5:
        raise ValueError(f"t-SNE needs embeddings (N, D) with N >= 5, got {x.shape}")
    # Barnes-Hut is ~10x faster than exact t-SNE already at 900 points (2 s vs 21 s on 2 CPU cores); exact
    # only for a handful of points, where it costs nothing
    method = "exact" if x.shape[0] <= 200 else "barnes_hut"
    return TSNE(n_components=2, perplexity=min(perplexity, (x.shape[0] - 1) / 3), init="pca", random_state=seed,
                metric="cosine", method=method).fit_transform(x)


def _scatter_panel(title: str, xy: np.ndarray, groups: Sequence[str], order: Sequence[str]) -> Panel:
    """One series per group (in ``order``), the points of that group in input order."""
    keys = np.asarray(groups)
    return Panel(title, "", "", [Series(g, tuple(xy[keys == g, 0].tolist()), tuple(xy[keys == g, 1].tolist()))
                                 for g in order if (keys == g).any()])


def plot_tsne(
    embeddings: torch.Tensor | np.ndarray,
    phones: Sequence[str],
    speakers: Sequence[str],
    out_path: str | os.PathLike,
    *,
    perplexity: float = 30.0,
    seed: int = 0,
    title: str | None = None,
    figsize: tuple[float, float] = (12.0, 5.5),
) -> Figure:
    """t-SNE (:func:`tsne_points`) of phone embeddings, coloured by phone class (left panel, one series per
    class) and speaker (right panel, one series per speaker). Subsample to a few thousand points first (see
    :func:`phone_embeddings`): Barnes-Hut t-SNE on 15 000 points takes minutes on CPU."""
    n = len(embeddings)
    if n != len(phones) or n != len(speakers):
        raise ValueError(f"need embeddings (N, D) with N phones and speakers, got {n}, {len(phones)}, "
                         f"{len(speakers)}")
    xy = tsne_points(embeddings, perplexity=perplexity, seed=seed)
    names = sorted({str(s) for s in speakers})
    panels = [_scatter_panel("by phone class", xy, [phone_class(p) for p in phones], CLASS_ORDER),
              _scatter_panel(f"by speaker ({len(names)})", xy, [str(s) for s in speakers], names)]
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=figsize)
    cmap = plt.get_cmap("tab20" if len(names) <= 20 else "hsv", max(len(names), 1))
    for s in panels[0].series:
        axes[0].scatter(s.x, s.y, s=4, color=CLASS_COLOURS[s.label], label=s.label, alpha=0.7)
    for s in panels[1].series:
        axes[1].scatter(s.x, s.y, s=4, color=cmap(names.index(s.label)), label=s.label, alpha=0.7)
    axes[0].legend(fontsize=7, markerscale=3)
    if len(names) <= 20:
        axes[1].legend(fontsize=6, markerscale=3, ncol=2)
    for ax, panel in zip(axes, panels):
        ax.set_title(panel.title)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return Figure(save_figure(fig, out_path), title, panels)
