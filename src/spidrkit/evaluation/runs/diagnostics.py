"""What a SpidR / DinoSR model's codebooks encode, over a FIXED evaluation set (docs/cpu_study.md).

:func:`diagnose` runs the model on the first files (file-id order) of one split of an aligned corpus
(``SPLIT.csv`` and ``SPLIT_frames.txt``, the layout of :mod:`spidrkit.data.synth.corpus`) until they hold
``min_frames`` model frames (default 10,000: enough for all 256 codewords to show, where a training batch of
a few hundred masked frames caps the per-batch perplexity), and returns per codebook layer:

- ``codebook_ppl``: the teacher-codebook perplexity, exp of the entropy of the histogram of the teacher's
  units (the nearest codeword of the layer's instance-normalised teacher output: the training target,
  :meth:`~spidrkit.models.spidr.SpidR.teacher_targets`, on the unmasked input);
- ``prediction_ppl``: the same for the student head's argmax units
  (:meth:`~spidrkit.models.spidr.SpidR.codebook_predictions`);
- ``active_codewords`` / ``active_predictions``: the distinct units of each;
- ``nmi_phone`` / ``nmi_position`` (teacher units) and ``pred_nmi_phone`` / ``pred_nmi_position`` (head
  units): normalised mutual information of the units with the phone label of each frame (its centre, from
  the 100 Hz frame labels) and with its position, the distance of the frame centre to the nearest utterance
  edge in 0.1 s bins capped at 1 s (:func:`position_bins`). NMI = I(a; b) / sqrt(H(a) H(b)) (the geometric
  normalisation, :func:`nmi`), silences included.

Each file is processed alone (no padding: the instance normalisation of the targets sees only its frames).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spidrkit.data.corpora.alignments import LABEL_RATE, read_frame_labels
from spidrkit.data.corpora.audio import load_audio
from spidrkit.data.corpora.manifest import ManifestEntry, read_manifest
from spidrkit.evaluation.metrics.units import entropy_bits
from spidrkit.evaluation.sweep.errors import SweepError

DEFAULT_MIN_FRAMES = 10_000
POSITION_BIN_S = 0.1
POSITION_CAP_S = 1.0


def counts_perplexity(counts: np.ndarray) -> float:
    """exp(H) of the distribution given by ``counts`` (= 2^H in bits): 1 for one unit, V for V equal ones."""
    return float(2.0 ** entropy_bits(counts))


def unit_perplexity(units: np.ndarray, size: int | None = None) -> float:
    """Perplexity of the histogram of integer ``units`` (negative entries, padding, ignored)."""
    units = np.asarray(units).ravel()
    return counts_perplexity(np.bincount(units[units >= 0], minlength=size or 0))


def nmi(a: Sequence[Any] | np.ndarray, b: Sequence[Any] | np.ndarray) -> float:
    """Normalised mutual information I(a; b) / sqrt(H(a) H(b)) of two label sequences of equal length (any
    hashable labels); 0 when either is constant (no information to share)."""
    _, ia = np.unique(np.asarray(a), return_inverse=True)
    _, ib = np.unique(np.asarray(b), return_inverse=True)
    if ia.shape != ib.shape or ia.size == 0:
        raise ValueError(f"nmi needs two non-empty sequences of equal length, got {ia.size} and {ib.size}")
    joint = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(joint, (ia.ravel(), ib.ravel()), 1)
    h_a, h_b = entropy_bits(joint.sum(1)), entropy_bits(joint.sum(0))
    if h_a == 0 or h_b == 0:
        return 0.0
    mutual = h_a + h_b - entropy_bits(joint)
    return float(max(mutual, 0.0) / np.sqrt(h_a * h_b))


def position_bins(num_frames: int, frame_rate: float, bin_s: float = POSITION_BIN_S,
                  cap_s: float = POSITION_CAP_S) -> np.ndarray:
    """Per frame ``i`` of an utterance of ``num_frames``: the distance of its centre ``(i + 0.5) / rate`` to the
    nearer utterance edge (0 or ``num_frames / rate``), as ``floor(distance / bin_s)``, capped at
    ``cap_s / bin_s`` (10: one bin for everything 1 s or more from both edges)."""
    centre = (np.arange(num_frames) + 0.5) / frame_rate
    distance = np.minimum(centre, num_frames / frame_rate - centre)
    top = round(cap_s / bin_s)
    return np.minimum(np.floor(distance / bin_s + 1e-9).astype(int), top)


def frame_phones(labels: Sequence[str], num_frames: int, frame_rate: float,
                 label_rate: float = LABEL_RATE) -> np.ndarray:
    """The label at the centre of each model frame (``None`` past the end of the labels)."""
    idx = np.floor((np.arange(num_frames) + 0.5) / frame_rate * label_rate).astype(int)
    return np.asarray([labels[i] if i < len(labels) else None for i in idx], dtype=object)


def fixed_set(corpus_dir: str | os.PathLike, model, split: str = "dev", min_frames: int = DEFAULT_MIN_FRAMES
              ) -> tuple[list[ManifestEntry], dict[str, list[str]]]:
    """The first files of ``split`` in file-id order holding ``min_frames`` model frames (all of them if the
    split is smaller) and their 100 Hz frame labels."""
    corpus = Path(corpus_dir)
    manifest, frames_file = corpus / f"{split}.csv", corpus / f"{split}_frames.txt"
    for path in (manifest, frames_file):
        if not path.is_file():
            raise SweepError(f"{path} not found: the diagnostics need {split}.csv and {split}_frames.txt "
                             "(an aligned corpus, e.g. from spidrkit data synth)")
    labels = read_frame_labels(frames_file)
    chosen, frames = [], 0
    for e in sorted(read_manifest(manifest), key=lambda e: e.fileid):
        if e.fileid in labels:
            chosen.append(e)
            frames += int(model.num_frames(e.num_samples))
        if frames >= min_frames:
            break
    if not chosen:
        raise SweepError(f"no file of {manifest} has frame labels in {frames_file}")
    return chosen, {e.fileid: labels[e.fileid] for e in chosen}


@torch.inference_mode()
def model_units(model, wav: torch.Tensor, predictions: bool = True
                ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Teacher units and head argmax units ``{layer: (T,)}`` of one waveform, per codebook layer (no head units,
    and no student pass, without ``predictions``)."""
    device = next(model.parameters()).device
    wav = wav.to(device)
    preds = model.codebook_predictions(wav) if predictions else {}
    teacher = model.teacher_units(wav)
    return ({la: units[0].cpu().numpy() for la, units in teacher.items()},
            {la: preds[la].units[0].cpu().numpy() for la in teacher if la in preds})


def diagnose(model, corpus_dir: str | os.PathLike, split: str = "dev", min_frames: int = DEFAULT_MIN_FRAMES,
             predictions: bool = True) -> dict[str, Any]:
    """The fixed-set diagnostics of ``model`` (a :class:`~spidrkit.models.spidr.SpidR`) on ``split`` (see the
    module docstring): ``{"split", "files", "frames", "nmi": ..., "layers": {layer: {...}}, "min_codebook_ppl"}``.
    Without ``predictions`` the student is not run: the ``prediction_ppl`` / ``pred_*`` entries are absent
    (half the time: what the budget curve needs)."""
    entries, labels = fixed_set(corpus_dir, model, split, min_frames)
    layers = list(model.target_layers)
    teacher: dict[int, list[np.ndarray]] = {la: [] for la in layers}
    heads: dict[int, list[np.ndarray]] = {la: [] for la in layers}
    phones, positions = [], []
    for e in entries:
        t_units, h_units = model_units(model, load_audio(e.path, model.sample_rate), predictions)
        n = len(t_units[layers[0]])
        phones.append(frame_phones(labels[e.fileid], n, model.frame_rate))
        positions.append(position_bins(n, model.frame_rate))
        for la in layers:
            teacher[la].append(t_units[la])
            heads[la] += [h_units[la]] if predictions else []
    phone = np.concatenate(phones)
    keep = np.asarray([p is not None for p in phone])
    phone, position = phone[keep].astype(str), np.concatenate(positions)[keep]
    size = model.cfg.codebook_size
    rows: dict[int, dict[str, float]] = {}
    for la in layers:
        t = np.concatenate(teacher[la])
        rows[la] = {"codebook_ppl": unit_perplexity(t, size), "active_codewords": len(np.unique(t)),
                    "nmi_phone": nmi(t[keep], phone), "nmi_position": nmi(t[keep], position)}
        if predictions:
            h = np.concatenate(heads[la])
            rows[la].update({"prediction_ppl": unit_perplexity(h, size), "active_predictions": len(np.unique(h)),
                             "pred_nmi_phone": nmi(h[keep], phone), "pred_nmi_position": nmi(h[keep], position)})
    return {"split": split, "files": len(entries), "frames": int(sum(len(p) for p in positions)),
            "codebook_size": size, "nmi": "I(a;b)/sqrt(H(a)H(b)); position: distance to the nearest utterance "
            f"edge in {POSITION_BIN_S:g} s bins capped at {POSITION_CAP_S:g} s",
            "layers": rows, "min_codebook_ppl": min(r["codebook_ppl"] for r in rows.values())}
