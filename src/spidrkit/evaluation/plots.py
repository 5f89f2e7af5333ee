"""Figures of the evaluation, in the style of the SpidR paper (PNG, matplotlib Agg backend, no display).

- :func:`plot_layer_metrics`: ABX within / across and word MAP by layer, baselines as dashed lines (Fig. 7).
- :func:`plot_phone_given_code`: P(phone | code) heat map, codes sorted by their most likely phone, phones
  grouped by class (Fig. 10).
- :func:`plot_tsne`: t-SNE of phone embeddings coloured by phone class and by speaker (Fig. 8), from
  :func:`phone_embeddings`.
- :func:`plot_perplexity`: codebook and prediction perplexity during training, one line per layer, several
  runs overlaid (Fig. 2), from the training metrics JSONL.

Every function writes one PNG atomically (temporary file, then ``os.replace``) of a fixed pixel size
(``figsize * dpi``, no tight bounding box) and returns its path.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

DPI = 100
# ARPAbet (stress digits removed) by phone class, in the order the heat map shows them.
# Affricates (CH, JH) are grouped with the fricatives.
PHONE_CLASSES: dict[str, tuple[str, ...]] = {
    "vowels": ("AA", "AE", "AH", "AO", "AW", "AX", "AXR", "AY", "EH", "ER", "EY", "IH", "IX", "IY", "OW",
               "OY", "UH", "UW", "UX"),
    "stops": ("B", "D", "G", "K", "P", "T", "DX", "Q"),
    "fricatives": ("CH", "JH", "DH", "F", "HH", "S", "SH", "TH", "V", "Z", "ZH"),
    "nasals": ("M", "N", "NG", "EM", "EN", "ENG", "NX"),
    "approximants": ("L", "R", "W", "Y", "EL"),
}
OTHER_CLASS = "other"
CLASS_ORDER: tuple[str, ...] = (*PHONE_CLASSES, OTHER_CLASS)
_CLASS_OF = {p: c for c, phones in PHONE_CLASSES.items() for p in phones}
_CLASS_COLOURS = dict(zip(CLASS_ORDER, ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple",
                                         "tab:gray")))


def base_phone(phone: str) -> str:
    """ARPAbet phone without its stress digit, upper case: ``ah0 -> AH``."""
    return re.sub(r"\d+$", "", str(phone).strip().upper())


def phone_class(phone: str) -> str:
    """Class of an ARPAbet phone (stress ignored): vowels, stops, fricatives, nasals, approximants, other."""
    return _CLASS_OF.get(base_phone(phone), OTHER_CLASS)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG atomically and close it."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=DPI, format="png")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        _pyplot().close(fig)
    return out


# --------------------------------------------------------------------------- layer sweeps (Figure 7)
ABX_KEYS = {"abx_within": "within", "abx_across": "across"}


def plot_layer_metrics(
    layer_results: Mapping[str, Mapping[int | str, Mapping[str, float]]],
    out_path: str | os.PathLike,
    *,
    baselines: Mapping[str, Mapping[str, float]] | None = None,
    title: str | None = None,
    figsize: tuple[float, float] = (11.0, 4.0),
) -> Path:
    """ABX (left: within solid, across dotted) and word MAP (right) by layer, one colour per model.

    ``layer_results``: ``{model: {layer (1-based): {"abx_within": %, "abx_across": %, "map": %}}}``; any
    metric may be missing. ``baselines``: ``{name: {metric: %}}``, drawn as horizontal dashed lines.
    """
    if not layer_results:
        raise ValueError("no layer results to plot")
    plt = _pyplot()
    fig, (ax_abx, ax_map) = plt.subplots(1, 2, figsize=figsize)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (model, by_layer) in enumerate(layer_results.items()):
        colour = colours[i % len(colours)]
        layers = sorted(by_layer, key=int)
        for key, style in (("abx_within", "-o"), ("abx_across", ":s")):
            xs = [int(k) for k in layers if by_layer[k].get(key) is not None]
            if xs:
                ax_abx.plot(xs, [by_layer[k][key] for k in layers if by_layer[k].get(key) is not None], style,
                            color=colour, label=f"{model} {ABX_KEYS[key]}", markersize=4)
        xs = [int(k) for k in layers if by_layer[k].get("map") is not None]
        if xs:
            ax_map.plot(xs, [by_layer[k]["map"] for k in layers if by_layer[k].get("map") is not None], "-o",
                        color=colour, label=model, markersize=4)
    grays = ("0.35", "0.55", "0.7", "0.2")
    for j, (name, metrics) in enumerate((baselines or {}).items()):
        colour = grays[j % len(grays)]
        for key in ABX_KEYS:
            if metrics.get(key) is not None:
                ax_abx.axhline(metrics[key], ls="--", color=colour, lw=1.2 if key == "abx_within" else 0.8,
                               label=f"{name} {ABX_KEYS[key]}")
        if metrics.get("map") is not None:
            ax_map.axhline(metrics["map"], ls="--", color=colour, lw=1.2, label=name)
    for ax, ylabel in ((ax_abx, "ABX error rate (%) ↓"), (ax_map, "MAP over words (%) ↑")):
        ax.set_xlabel("layer")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out_path)


# --------------------------------------------------------------------------- P(phone | code) (Figure 10)
def _merged_by_phone(quality: Mapping[str, Any]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """P(phone | code) with stress variants summed (AH0 + AH1 -> AH), and phone frequencies."""
    matrix = np.asarray(quality["phone_given_code"], dtype=np.float64)
    phones = [base_phone(p) for p in quality["phones"]]
    counts = np.asarray(quality.get("phone_counts", np.ones(len(phones))), dtype=np.float64)
    names = sorted(set(phones))
    merged = np.zeros((matrix.shape[0], len(names)))
    merged_counts = np.zeros(len(names))
    for j, p in enumerate(phones):
        merged[:, names.index(p)] += matrix[:, j]
        merged_counts[names.index(p)] += counts[j]
    return merged, names, merged_counts


def phone_order(phones: Sequence[str], counts: Sequence[float] | None = None) -> list[int]:
    """Indices of ``phones`` grouped by class (:data:`CLASS_ORDER`), most frequent first within a class."""
    counts = np.ones(len(phones)) if counts is None else np.asarray(counts)
    return sorted(range(len(phones)),
                  key=lambda j: (CLASS_ORDER.index(phone_class(phones[j])), -counts[j], phones[j]))


def plot_phone_given_code(
    quality: Mapping[str, Any],
    out_path: str | os.PathLike,
    *,
    title: str | None = None,
    figsize: tuple[float, float] = (12.0, 6.0),
) -> Path:
    """Heat map of P(phone | code) from :func:`spidrkit.evaluation.unit_metrics.unit_quality`'s output.

    Rows: phones (stress merged) grouped by class, most frequent first within a class. Columns: the active
    codes, sorted by their most likely phone (in row order), then by decreasing probability of that phone,
    so a good codebook shows a staircase along the diagonal.
    """
    matrix, phones, counts = _merged_by_phone(quality)
    if matrix.size == 0:
        raise ValueError("empty P(phone | code) matrix")
    rows = phone_order(phones, counts)
    matrix = matrix[:, rows]
    phones = [phones[j] for j in rows]
    best = matrix.argmax(axis=1)
    cols = sorted(range(matrix.shape[0]), key=lambda c: (best[c], -matrix[c, best[c]]))
    image = matrix[cols].T  # (phones, codes)

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    im = ax.imshow(image, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_yticks(range(len(phones)), phones, fontsize=max(4, min(8, 400 // max(len(phones), 1))))
    ax.set_xlabel(f"code (sorted by most likely phone; {matrix.shape[0]} active codes)")
    ax.set_ylabel("phone")
    ax.set_xticks([])
    classes = [phone_class(p) for p in phones]
    start = 0
    for i in range(1, len(classes) + 1):
        if i == len(classes) or classes[i] != classes[start]:
            if i < len(classes):
                ax.axhline(i - 0.5, color="white", lw=1.0)
            ax.text(1.01, 1 - (start + i) / 2 / len(classes), classes[start], transform=ax.transAxes,
                    va="center", ha="left", fontsize=8, color=_CLASS_COLOURS[classes[start]])
            start = i
    fig.colorbar(im, ax=ax, label="P(phone | code)", pad=0.13)
    ax.set_title(title or "P(phone | code)")
    fig.tight_layout()
    return _save(fig, out_path)


# --------------------------------------------------------------------------- t-SNE (Figure 8)
def phone_embeddings(
    features,
    phone_alignments,
    *,
    per_speaker_and_phone: int = 10,
    frame_rate: int = 50,
    ignore: Sequence[str] = ("SIL", "SP", "SPN", "<SIL>", "NSN"),
    seed: int = 0,
    progress: bool = True,
) -> tuple[torch.Tensor, list[str], list[str]]:
    """Mean feature of sampled phone instances, as in the paper: for each speaker, at most
    ``per_speaker_and_phone`` random instances of each phone, averaged over their frames.

    ``phone_alignments``: a file of ``utt onset offset phone speaker`` lines or a list of
    :class:`~spidrkit.evaluation.word_map.Segment`. Returns ``(embeddings (N, D), phones, speakers)``.
    """
    from spidrkit.evaluation.word_map import read_alignments, segment_embeddings

    segments = read_alignments(phone_alignments) if isinstance(phone_alignments, (str, os.PathLike)) \
        else list(phone_alignments)
    skip = {base_phone(p) for p in ignore}
    groups: dict[tuple[str, str], list[int]] = {}
    for i, s in enumerate(segments):
        if base_phone(s.label) not in skip:
            groups.setdefault((s.speaker or "?", base_phone(s.label)), []).append(i)
    rng = np.random.default_rng(seed)
    chosen = sorted(
        int(i) for idx in groups.values()
        for i in (rng.choice(idx, per_speaker_and_phone, replace=False) if len(idx) > per_speaker_and_phone
                  else idx)
    )
    if not chosen:
        raise ValueError("no phone segment to embed")
    picked = [segments[i] for i in chosen]
    emb = segment_embeddings(features, picked, frame_rate=frame_rate, progress=progress)
    return emb, [base_phone(s.label) for s in picked], [s.speaker or "?" for s in picked]


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
) -> Path:
    """2-D t-SNE (scikit-learn, cosine metric) of phone embeddings, coloured by phone class (left) and
    speaker (right). Subsample to a few thousand points first (see :func:`phone_embeddings`): Barnes-Hut
    t-SNE on 15 000 points takes minutes on CPU."""
    from sklearn.manifold import TSNE

    x = np.asarray(embeddings.detach().cpu() if isinstance(embeddings, torch.Tensor) else embeddings,
                   dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != len(phones) or x.shape[0] != len(speakers):
        raise ValueError(f"need embeddings (N, D) with N phones and speakers, got {x.shape}, "
                         f"{len(phones)}, {len(speakers)}")
    if x.shape[0] < 5:
        raise ValueError(f"t-SNE needs at least 5 points, got {x.shape[0]}")
    perplexity = min(perplexity, (x.shape[0] - 1) / 3)
    # Barnes-Hut is ~10x faster than exact t-SNE already at 900 points (2 s vs 21 s on 2 CPU cores); exact
    # only for a handful of points, where it costs nothing
    method = "exact" if x.shape[0] <= 200 else "barnes_hut"
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, metric="cosine",
              method=method).fit_transform(x)

    plt = _pyplot()
    fig, (ax_cls, ax_spk) = plt.subplots(1, 2, figsize=figsize)
    classes = np.array([phone_class(p) for p in phones])
    for c in CLASS_ORDER:
        m = classes == c
        if m.any():
            ax_cls.scatter(xy[m, 0], xy[m, 1], s=4, color=_CLASS_COLOURS[c], label=c, alpha=0.7)
    ax_cls.legend(fontsize=7, markerscale=3)
    ax_cls.set_title("by phone class")
    spk = np.array([str(s) for s in speakers])
    names = sorted(set(spk))
    cmap = plt.get_cmap("tab20" if len(names) <= 20 else "hsv", max(len(names), 1))
    for i, name in enumerate(names):
        m = spk == name
        ax_spk.scatter(xy[m, 0], xy[m, 1], s=4, color=cmap(i), label=name, alpha=0.7)
    if len(names) <= 20:
        ax_spk.legend(fontsize=6, markerscale=3, ncol=2)
    ax_spk.set_title(f"by speaker ({len(names)})")
    for ax in (ax_cls, ax_spk):
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out_path)


# --------------------------------------------------------------------------- perplexities (Figure 2)
PPL_KEYS = {"codebook_ppl": "codebook perplexity", "prediction_ppl": "prediction perplexity"}


def read_perplexities(source: str | os.PathLike | Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Steps and per-layer perplexities from a training metrics JSONL (or its records).

    Records without ``step`` or without any perplexity key (e.g. validation lines) are skipped, and so is
    an unreadable last line (a run killed while writing). Returns ``{"step": (N,), "codebook_ppl":
    (N, K), "prediction_ppl": (N, K)}`` for the keys present.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no metrics file at {path}")
        lines = path.read_text().splitlines()
        records = []
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if lineno < len(lines):
                    raise ValueError(f"{path}:{lineno}: not JSON") from None
                warnings.warn(f"{path}: incomplete last line skipped", stacklevel=2)
    else:
        records = list(source)
    out: dict[str, list] = {"step": []}
    keys = [k for k in PPL_KEYS if any(k in r for r in records)]
    for k in keys:
        out[k] = []
    for r in records:
        if "step" not in r or not all(k in r for k in keys):
            continue
        out["step"].append(r["step"])
        for k in keys:
            out[k].append(np.atleast_1d(np.asarray(r[k], dtype=np.float64)))
    if not out["step"] or not keys:
        raise ValueError("no record with a step and a perplexity (codebook_ppl, prediction_ppl)")
    result = {"step": np.asarray(out["step"])}
    for k in keys:
        widths = {len(v) for v in out[k]}
        if len(widths) != 1:
            raise ValueError(f"{k}: the number of layers changes during the run ({sorted(widths)})")
        result[k] = np.stack(out[k])
    return result


def plot_perplexity(
    runs: Mapping[str, str | os.PathLike | Sequence[Mapping[str, Any]]],
    out_path: str | os.PathLike,
    *,
    layers: Sequence[int] | None = None,
    codebook_size: int | None = None,
    title: str | None = None,
    figsize: tuple[float, float] = (11.0, 4.0),
) -> Path:
    """Codebook (left) and prediction (right) perplexity over training: one colour per layer, one line
    style per run (e.g. ``{"SpidR": "runs/spidr/metrics.jsonl", "DinoSR": ...}``).

    ``layers`` names the 1-based layer of each entry of the per-layer lists (default: 1..K, i.e. the
    codebook index); ``codebook_size`` draws the maximum perplexity V as a dotted line.
    """
    if not runs:
        raise ValueError("no run to plot")
    data = {name: read_perplexities(src) for name, src in runs.items()}
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter
    fig, axes = plt.subplots(1, 2, figsize=figsize, sharex=True)
    styles = ("-", "--", ":", "-.")
    num_layers = max(v.shape[1] for d in data.values() for k, v in d.items() if k != "step")
    names = list(layers) if layers is not None else list(range(1, num_layers + 1))
    if len(names) < num_layers:
        raise ValueError(f"{len(names)} layer names for {num_layers} per-layer values")
    cmap = plt.get_cmap("viridis", max(num_layers, 2))
    for ax, key in zip(axes, PPL_KEYS):
        for r, (_run, d) in enumerate(data.items()):
            if key not in d:
                continue
            for k in range(d[key].shape[1]):
                ax.plot(d["step"], d[key][:, k], styles[r % len(styles)], color=cmap(k), lw=1.2,
                        label=f"layer {names[k]}" if r == 0 else None)
        if codebook_size:
            ax.axhline(codebook_size, color="0.5", ls=":", lw=1.0)
        ax.set_yscale("log", base=2)  # perplexities span 1 (collapse) .. V: a collapse must stay readable
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("step")
        ax.set_ylabel(PPL_KEYS[key])
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    if len(data) > 1:
        from matplotlib.lines import Line2D

        handles += [Line2D([], [], color="black", ls=styles[r % len(styles)]) for r in range(len(data))]
        labels += list(data)
    axes[1].legend(handles, labels, fontsize=7, ncol=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out_path)
