"""Quality of discrete units against phone labels: PNMI, purities, codebook usage, bitrate, P(phone | code).

Units come at the model's frame rate ``unit_rate`` (50 Hz for every model of the paper: one per 20 ms),
phone labels at 100 Hz (one per 10 ms frame of the forced alignment); the label rate must be a whole
multiple ``r`` of the unit rate. The rate mismatch is handled explicitly by :func:`pair_units_with_labels`:

- ``pairing="both"`` (default): unit frame ``i`` covers the label frames ``r i .. r i + r - 1`` and is
  paired with each (the units are upsampled by repetition to the label rate). This is how HuBERT's
  teacher-quality script measures PNMI, and it uses every labelled frame.
- ``pairing="center"``: unit frame ``i`` is paired with the single label frame that contains its centre,
  ``r i + r // 2`` (at 50 Hz: the centre ``(i + 0.5) * 20 ms`` of the fastabx slicing convention, and
  ``i * 20 ms + 12.5 ms`` of the SpidR downsampler's 25 ms window, both fall in label frame ``2i + 1``).

The label sequence is usually one or two 10 ms frames longer than ``r`` times the unit sequence (the
downsampler drops the last incomplete window): both are trimmed to the shorter one; a larger mismatch than
``max_mismatch_s`` is an error, since it means a wrong rate or mismatched files.

:func:`unit_row` is the sweep's adapter: the ABX of one-hot units and these metrics, as one table row.

Metric definitions (``y`` = phone, ``z`` = code, probabilities from the paired frame counts):

- PNMI = I(y; z) / H(y)  (Hsu et al. 2021), in [0, 1].
- phone purity = sum_z max_y p(y, z): accuracy of predicting the phone from the code.
- cluster purity = sum_y max_z p(y, z): accuracy of predicting the code from the phone.
- active codewords: number of distinct codes over all unit frames.
- codebook perplexity = 2^H(p_z), with p_z the code distribution over all unit frames (bits).
- bitrate (Nguyen et al. 2022, ZeroSpeech 2021): units de-duplicated per utterance (runs collapsed), then
  (number of de-duplicated tokens / total duration in s) * entropy (bits) of the de-duplicated token
  distribution.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from spidrkit.data.corpora.alignments import LABEL_RATE
from spidrkit.evaluation.metrics.abx import abx_both
from spidrkit.evaluation.metrics.discrete import UnitSource, frame_units, units_as_indices
from spidrkit.extraction.units import deduplicate

Pairing = Literal["both", "center"]
# the scalar metrics of a table row
UNIT_METRICS = ("pnmi", "phone_purity", "cluster_purity", "codebook_perplexity", "active_codewords", "bitrate")


def entropy_bits(counts: np.ndarray) -> float:
    """Entropy in bits of the distribution given by (non-negative) counts."""
    counts = np.asarray(counts, dtype=np.float64).ravel()
    total = counts.sum()
    if total <= 0:
        raise ValueError("entropy of an empty distribution")
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def pair_units_with_labels(
    units: Mapping[str, Sequence[int] | np.ndarray],
    labels: Mapping[str, Sequence[Any] | np.ndarray],
    *,
    unit_rate: float,
    pairing: Pairing = "both",
    label_rate: float = LABEL_RATE,
    max_mismatch_s: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Align units and frame labels utterance by utterance (see the module docstring for the convention).

    Returns ``(codes, phone_labels, utterances)``: two flat arrays of the same length, one entry per
    paired frame, and the utterances used (those present in both mappings).
    """
    ratio = round(label_rate / unit_rate)
    if ratio < 1 or abs(ratio * unit_rate - label_rate) > 1e-6 * label_rate:
        raise ValueError(f"label rate {label_rate:g} Hz must be a multiple of the unit rate {unit_rate:g} Hz")
    if pairing not in ("both", "center"):
        raise ValueError(f"pairing must be 'both' or 'center', not {pairing!r}")
    common = [u for u in units if u in labels]
    if not common:
        raise ValueError("no utterance has both units and phone labels (check the utterance ids)")
    if len(common) < len(units):
        warnings.warn(
            f"{len(units) - len(common)} of {len(units)} utterances have no phone labels; they are skipped",
            stacklevel=2,
        )
    max_mismatch = round(max_mismatch_s * label_rate)
    codes_out, labels_out = [], []
    for utt in common:
        u = np.asarray(units[utt])
        lab = np.asarray(labels[utt])
        if u.ndim != 1 or lab.ndim != 1:
            raise ValueError(f"{utt}: units and labels must be 1-D sequences")
        if abs(lab.shape[0] - ratio * u.shape[0]) > max_mismatch:
            raise ValueError(
                f"{utt}: {u.shape[0]} units at {unit_rate:g} Hz ({u.shape[0] / unit_rate:.3f} s) but "
                f"{lab.shape[0]} labels at {label_rate:g} Hz ({lab.shape[0] / label_rate:.3f} s): "
                f"more than {max_mismatch_s} s apart; wrong rate or mismatched files?"
            )
        if pairing == "both":
            up = np.repeat(u, ratio)
            n = min(up.shape[0], lab.shape[0])
            codes_out.append(up[:n])
            labels_out.append(lab[:n])
        else:
            idx = ratio * np.arange(u.shape[0]) + ratio // 2
            keep = idx < lab.shape[0]
            codes_out.append(u[keep])
            labels_out.append(lab[idx[keep]])
    return np.concatenate(codes_out), np.concatenate(labels_out), common


def unit_quality(
    units: UnitSource,
    labels: Mapping[str, Sequence[Any] | np.ndarray],
    *,
    unit_rate: float,
    pairing: Pairing = "both",
    label_rate: float = LABEL_RATE,
    ignore_labels: Collection[Any] = (),
    max_mismatch_s: float = 0.05,
) -> dict[str, Any]:
    """All unit-quality metrics of ``units`` (utt -> int array at ``unit_rate``, or a units file) against
    ``labels`` (utt -> phone label array at ``label_rate``).

    ``ignore_labels`` drops the paired frames with those labels (e.g. ``{"SIL"}``) from the phone metrics
    only; codebook usage and bitrate always use every unit frame. The default keeps everything, as HuBERT
    and the SpidR paper do.

    Returns a dict with floats ``pnmi``, ``phone_purity``, ``cluster_purity``, ``codebook_perplexity``,
    ``bitrate`` (bits/s), ints ``active_codewords``, ``num_frames`` (paired frames), ``num_utterances``,
    and for the heat map ``phone_given_code`` (array (num codes, num phones), rows sum to 1), ``codes``
    (the code of each row), ``phones`` (the label of each column, str) and ``phone_counts``.
    """
    units = frame_units(units)
    codes, phones, used = pair_units_with_labels(
        units, labels, pairing=pairing, unit_rate=unit_rate, label_rate=label_rate,
        max_mismatch_s=max_mismatch_s,
    )
    if ignore_labels:
        keep = ~np.isin(phones, list(ignore_labels))
        codes, phones = codes[keep], phones[keep]
    if codes.size == 0:
        raise ValueError("no paired frame left to evaluate")
    code_ids, z = np.unique(codes, return_inverse=True)
    phone_ids, y = np.unique(phones, return_inverse=True)
    joint = np.bincount(z * phone_ids.size + y, minlength=code_ids.size * phone_ids.size)
    joint = joint.reshape(code_ids.size, phone_ids.size).astype(np.float64)
    pnmi = _pnmi(joint)

    all_units = np.concatenate([np.asarray(units[u]).ravel() for u in used])
    _, unit_counts = np.unique(all_units, return_counts=True)
    p_joint = joint / joint.sum()
    return {
        "pnmi": pnmi,
        "phone_purity": float(p_joint.max(axis=1).sum()),
        "cluster_purity": float(p_joint.max(axis=0).sum()),
        "active_codewords": int(unit_counts.size),
        "codebook_perplexity": float(2.0 ** entropy_bits(unit_counts)),
        "bitrate": bitrate({u: units[u] for u in used}, frame_rate=unit_rate),
        "num_frames": int(codes.size),
        "num_utterances": len(used),
        "phone_given_code": joint / joint.sum(axis=1, keepdims=True),
        "codes": [int(c) for c in code_ids],
        "phones": [str(p) for p in phone_ids],
        "phone_counts": [int(c) for c in joint.sum(axis=0)],
    }


def _pnmi(joint: np.ndarray) -> float:
    """I(y; z) / H(y) from the (codes, phones) count matrix."""
    h_y = entropy_bits(joint.sum(axis=0))
    if h_y == 0:
        raise ValueError("PNMI is undefined when every frame has the same phone label")
    # I(y; z) = H(y) + H(z) - H(y, z)
    mutual = h_y + entropy_bits(joint.sum(axis=1)) - entropy_bits(joint)
    return float(mutual / h_y)


def bitrate(units: UnitSource, *, frame_rate: float) -> float:
    """Bits per second of de-duplicated units (Nguyen et al. 2022).

    ``(sum of de-duplicated lengths / total duration) * H(de-duplicated token distribution)``, the duration
    being the number of unit frames divided by ``frame_rate``.
    """
    units = frame_units(units)
    deduped = [np.asarray(deduplicate(np.asarray(u))[0], dtype=np.int64) for u in units.values()]
    num_frames = sum(len(u) for u in units.values())
    if num_frames == 0:
        raise ValueError("bitrate of empty units")
    tokens = np.concatenate(deduped)
    _, counts = np.unique(tokens, return_counts=True)
    duration = num_frames / frame_rate
    return float(tokens.size / duration * entropy_bits(counts))


def unit_row(units: Mapping[str, np.ndarray], labels: Mapping[str, Sequence[Any]], item_file: str | os.PathLike,
             *, frame_rate: float, device: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """ABX of one-hot units (``identical`` distance) and their quality against the phone ``labels``:
    ``(table row, the full unit_quality)``."""
    quality = unit_quality(units, labels, unit_rate=frame_rate)
    row = {**abx_both(units_as_indices(units), item_file, frame_rate=frame_rate, distance="identical",
                      device=device),
           **{k: quality[k] for k in UNIT_METRICS}}
    return row, quality


def prediction_perplexity(posteriors: Mapping[str, torch.Tensor]) -> float:
    """2^H of the mean predicted distribution over all frames (the training metric, on the eval set)."""
    total = sum(p.double().sum(0) for p in posteriors.values())
    return float(2.0 ** entropy_bits(total.numpy()))
