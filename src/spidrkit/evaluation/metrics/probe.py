"""Linear probes per layer: how much phone (and how much speaker) a layer's frames carry, linearly.

Phone probe: an L2-regularised multinomial logistic regression (scikit-learn, ``C`` = :data:`PROBE_C`) on
standardised frames (mean / variance of the training frames), trained on the frames of the training voices
(the corpus' ``train`` split, else ``dev``) and scored on the held-out voice (``heldout``): a voice, and
sentences, the probe never saw. Labels are the phones of ``SPLIT_frames.txt`` (39 ARPAbet phones + ``SIL``
for a flite corpus), at 100 Hz; each model frame ``i`` is paired with the label frame holding its centre
(``pairing="center"`` of :func:`~spidrkit.evaluation.metrics.units.pair_units_with_labels`, the one home of
that convention). Scores, in %:

- ``probe_acc``: frame accuracy over every paired test frame;
- ``probe_per``: phone error rate of phone recognition (:mod:`~spidrkit.evaluation.metrics.ctc`: a linear CTC
  head trained on the training frames of all training voices but one against their phone sequences, silences
  left out; its decoder's blank bonus tuned on that one voice (``probe_per_tuned_on``), decoded greedily on the
  held-out voice; SUPERB's phone recognition, small): edit distance over gold phones, so insertions can take it
  above 100 % on a voice unlike the training ones;
- ``probe_frame_per``: the frame classifier's PER: per utterance, the predicted and the gold frame sequences (at
  the model's frame rate) are each smoothed alike (each frame takes the majority label of itself and its two
  neighbours, a tie keeps its own) and de-duplicated; the edit distance between them summed over utterances and
  divided by the summed de-duplicated gold lengths. Every flicker of a frame classifier counts as insertions, so
  this reads 140-220 % on the demo: kept in the JSON for comparison with earlier reports, not tabled;
- ``*_ci``: bootstrap 95 % intervals (percentiles 2.5 / 97.5 of :data:`BOOTSTRAP` resamples of the test
  utterances with replacement, seeded), the statistic recomputed as a ratio of sums on each resample;
- ``probe_chance``: the accuracy of always answering the most frequent test phone, the ceiling of any
  predictor that ignores its input.

Speaker probe: the same classifier on the speaker of each frame, on the training voices only (their files
split by utterance: :data:`SPEAKER_TEST_FRACTION` of each speaker's utterances held out, seeded):
``speaker_acc`` with its interval and ``speaker_chance``. High speaker accuracy at a layer means the layer
carries the speaker, which a content representation should shed.

Cost is bounded whatever the corpus: at most ``max_train_frames`` (:data:`MAX_TRAIN_FRAMES`) training frames
per layer, drawn (seeded) from enough training files to hold them; the solver (lbfgs) runs at most
:data:`MAX_ITER` iterations, in thread pools limited to torch's thread count. Features come from
:mod:`~spidrkit.evaluation.sweep.features` (any :class:`~spidrkit.models.interface.SpeechEncoder`, MFCC, the model
with random weights).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spidrkit.data.corpora.alignments import read_frame_labels
from spidrkit.data.corpora.manifest import ManifestEntry, read_manifest
from spidrkit.evaluation.metrics.bootstrap import percentile_interval, resample_indices
from spidrkit.evaluation.metrics.ctc import CTC_STEPS, WARM_STEPS, collapse, ctc_phone_recognition, edit_distance
from spidrkit.evaluation.metrics.units import pair_units_with_labels
from spidrkit.evaluation.sweep.errors import SweepError
from spidrkit.evaluation.sweep.evalset import spread, train_subset
from spidrkit.evaluation.sweep.features import baseline_outputs, layer_groups, model_outputs
from spidrkit.evaluation.sweep.scores import threads_like_torch
from spidrkit.lazy import require

PROBE_C = 1.0  # inverse L2 strength of scikit-learn's LogisticRegression, on standardised features
MAX_TRAIN_FRAMES = 20_000  # training frames per layer (and per probe), at most
MAX_ITER = 200  # lbfgs iterations, at most
BOOTSTRAP = 1000  # resamples of the test utterances
SPEAKER_TEST_FRACTION = 0.2  # of each training voice's utterances, for the speaker probe's test
PROBE_METRICS = ("probe_acc", "probe_per", "speaker_acc")  # the table columns (with "_ci" intervals in JSON)

Paired = dict[str, tuple[np.ndarray, np.ndarray]]  # utt -> (frames (T, D), labels (T,))


# ------------------------------------------------------------------------------------------- data
@dataclass
class ProbeSet:
    """Training files (the training voices), test files (the held-out voice), the 100 Hz labels of both and
    the speaker of every file."""

    train: list[ManifestEntry]
    test: list[ManifestEntry]
    labels: dict[str, list[str]]
    speaker_of: dict[str, str]
    train_split: str
    test_split: str


def _check_phone_classes(corpus: Path, split: str, classes: set[str]) -> None:
    """A phone probe of fewer than 2 classes scores 100 % whatever the features: :class:`SweepError` instead."""
    if len(classes) < 2:
        shown = f" ({', '.join(sorted(classes))})" if classes else ""
        raise SweepError(f"{corpus / (split + '_frames.txt')}: the probe's {split} files have {len(classes)} phone "
                         f"class{'' if len(classes) == 1 else 'es'}{shown}; a phone probe needs 2 or more "
                         "(give a corpus of several phones)")


def load_probe_set(corpus_dir: str | os.PathLike, model, *, train_split: str | None = None,
                   test_split: str = "heldout", max_train_frames: int = MAX_TRAIN_FRAMES,
                   max_files: int | None = None, seed: int = 0) -> ProbeSet:
    """The probe's files of ``corpus_dir``: training files (seeded) holding about ``max_train_frames`` model
    frames plus the speaker probe's share, from ``train_split`` (default ``train``, else ``dev``); the
    ``test_split`` files (at most ``max_files``, evenly spaced)."""
    corpus = Path(corpus_dir)
    if train_split is None:
        train_split = "train" if (corpus / "train.csv").is_file() else "dev"
    for split in (train_split, test_split):
        for suffix in (".csv", "_frames.txt"):
            if not (corpus / f"{split}{suffix}").is_file():
                raise SweepError(f"the probe needs {corpus / (split + suffix)} (training voices in "
                                 f"{train_split}, the held-out voice in {test_split}); build the corpus with "
                                 "spidrkit data synth --heldout-voice VOICE")
    if int(max_train_frames) < 10:
        raise SweepError(f"max_train_frames must be >= 10, got {max_train_frames}")
    want = int(max_train_frames / (1 - SPEAKER_TEST_FRACTION)) + 1
    train = train_subset(corpus, model, want, seed, split=train_split)
    test = spread(read_manifest(corpus / f"{test_split}.csv"), max_files)
    labels = {**read_frame_labels(corpus / f"{train_split}_frames.txt"),
              **read_frame_labels(corpus / f"{test_split}_frames.txt")}
    for split, entries in ((train_split, train), (test_split, test)):
        _check_phone_classes(corpus, split, {p for e in entries for p in labels.get(e.fileid, ())})
    speaker_of = {e.fileid: e.speaker or "?" for e in (*train, *test)}
    return ProbeSet(train, test, labels, speaker_of, train_split, test_split)


def pair_frames(feats: Mapping[str, torch.Tensor | np.ndarray], labels: Mapping[str, Sequence[str]], *,
                frame_rate: float) -> Paired:
    """``{utt: (frames, labels)}``: each model frame with the 100 Hz label at its centre (pairing ``center``
    of :func:`~spidrkit.evaluation.metrics.units.pair_units_with_labels`, given the frames' row numbers as
    units); utterances without labels are left out."""
    utts = [u for u in feats if u in labels]
    if not utts:
        raise SweepError("no utterance has both features and frame labels (mismatched file ids?)")
    arrays = {u: np.asarray(feats[u], dtype=np.float32) for u in utts}
    starts = np.cumsum([0] + [arrays[u].shape[0] for u in utts])
    rows = {u: starts[i] + np.arange(arrays[u].shape[0]) for i, u in enumerate(utts)}
    try:
        index, lab, used = pair_units_with_labels(rows, {u: labels[u] for u in utts}, unit_rate=frame_rate,
                                                  pairing="center")
    except ValueError as e:
        raise SweepError(f"probe: {e}") from e
    stacked = np.concatenate([arrays[u] for u in utts])
    which = np.searchsorted(starts, index, side="right") - 1
    return {u: (stacked[index[which == i]], lab[which == i]) for i, u in enumerate(utts) if u in set(used)}


# ------------------------------------------------------------------------------------------- statistics
def smooth(labels: np.ndarray) -> np.ndarray:
    """Each frame's label becomes the majority of itself and its two neighbours (a tie keeps its own):
    ``a a b a a -> a a a a a``; runs of two or more frames stay."""
    a = np.asarray(labels)
    if a.size < 3:
        return a
    out = a.copy()
    both = (a[:-2] == a[2:]) & (a[1:-1] != a[:-2])  # the two neighbours agree and the centre differs
    out[1:-1][both] = a[:-2][both]
    return out


def bootstrap_ci(num: Sequence[float], den: Sequence[float], *, n_boot: int = BOOTSTRAP, seed: int = 0,
                 scale: float = 100.0) -> list[float]:
    """95 % percentile interval of ``scale * sum(num) / sum(den)`` over resamples of the units (utterances)
    with replacement."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if num.size == 0:
        raise ValueError("bootstrap of no utterance")
    idx = resample_indices(num.size, n_boot, seed)
    return list(percentile_interval(scale * num[idx].sum(1) / np.maximum(den[idx].sum(1), 1e-12)))


def _fit_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: Sequence[np.ndarray], *, C: float,
                 max_frames: int, seed: int) -> list[np.ndarray]:
    """Standardise on (at most ``max_frames``, seeded) training frames, fit the logistic regression,
    predict each array of ``test_x``."""
    require("sklearn", "a linear probe")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if train_x.shape[0] > max_frames:
        keep = np.sort(np.random.default_rng(seed).choice(train_x.shape[0], max_frames, replace=False))
        train_x, train_y = train_x[keep], train_y[keep]
    mean = train_x.mean(0)
    std = train_x.std(0)
    std[std < 1e-8] = 1.0
    classes = np.unique(train_y)
    if classes.size < 2:
        return [np.full(x.shape[0], classes[0]) for x in test_x]
    clf = LogisticRegression(C=C, max_iter=MAX_ITER, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit((train_x - mean) / std, train_y)
    return [clf.predict((x - mean) / std) if x.shape[0] else x[:0, 0].astype(train_y.dtype) for x in test_x]


def _stack(paired: Paired, utts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([paired[u][0] for u in utts]), np.concatenate([paired[u][1] for u in utts])


def phone_probe(train: Paired, test: Paired, *, C: float = PROBE_C, max_train_frames: int = MAX_TRAIN_FRAMES,
                n_boot: int = BOOTSTRAP, seed: int = 0, tune_on: Sequence[str] = ()) -> dict[str, Any]:
    """Fit on ``train``, score on ``test`` (``{utt: (frames, labels)}``): ``probe_acc``, ``probe_per`` (the CTC
    head's, its decoder tuned on the ``tune_on`` utterances of ``train``), ``probe_frame_per`` (%) with ``_ci``
    intervals, ``probe_chance`` (%), and the frame / utterance / phone counts."""
    test_utts = sorted(test)
    x, y = _stack(train, sorted(train))
    preds = _fit_predict(x, y, [test[u][0] for u in test_utts], C=C, max_frames=max_train_frames, seed=seed)
    correct, frames, edits, gold_len = [], [], [], []
    for u, pred in zip(test_utts, preds):
        gold = test[u][1]
        correct.append(int((pred == gold).sum()))
        frames.append(gold.size)
        g = collapse(smooth(gold))
        edits.append(edit_distance(collapse(smooth(pred)), g))
        gold_len.append(len(g))
    all_gold = np.concatenate([test[u][1] for u in test_utts])
    _, counts = np.unique(all_gold, return_counts=True)
    ctc = ctc_phone_recognition(train, test, tune_on=tune_on, seed=seed)
    return {
        "probe_acc": 100.0 * sum(correct) / sum(frames),
        "probe_acc_ci": bootstrap_ci(correct, frames, n_boot=n_boot, seed=seed),
        "probe_per": 100.0 * sum(ctc["edits"]) / max(sum(ctc["gold"]), 1),
        "probe_per_ci": bootstrap_ci(ctc["edits"], ctc["gold"], n_boot=n_boot, seed=seed),
        "probe_ctc_blank_bonus": ctc["blank_bonus"],
        "probe_frame_per": 100.0 * sum(edits) / sum(gold_len),
        "probe_frame_per_ci": bootstrap_ci(edits, gold_len, n_boot=n_boot, seed=seed),
        "probe_chance": 100.0 * counts.max() / counts.sum(),
        "probe_train_frames": min(int(y.size), int(max_train_frames)),
        "probe_test_frames": int(sum(frames)),
        "probe_test_utterances": len(test_utts),
        "probe_phones": int(np.unique(y).size),
    }


def speaker_split(utts: Sequence[str], speaker_of: Mapping[str, str], seed: int = 0) -> tuple[list[str], list[str]]:
    """Each speaker's utterances cut (seeded) into training and test (:data:`SPEAKER_TEST_FRACTION`, at
    least one each when the speaker has two or more)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for spk in sorted({speaker_of[u] for u in utts}):
        mine = sorted(u for u in utts if speaker_of[u] == spk)
        order = [mine[i] for i in rng.permutation(len(mine))]
        n_test = min(len(mine) - 1, max(1, round(SPEAKER_TEST_FRACTION * len(mine))))
        test += order[:n_test]
        train += order[n_test:]
    return sorted(train), sorted(test)


def speaker_probe(frames: Mapping[str, np.ndarray], speaker_of: Mapping[str, str], *, C: float = PROBE_C,
                  max_train_frames: int = MAX_TRAIN_FRAMES, n_boot: int = BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """Frame-level speaker identification among the speakers of ``frames`` (``{utt: (T, D)}``), split by
    utterance (:func:`speaker_split`): ``speaker_acc`` (%) with its ``_ci``, ``speaker_chance`` (%)."""
    train_u, test_u = speaker_split(list(frames), speaker_of, seed)
    if not test_u or not train_u:
        raise SweepError("the speaker probe needs two utterances or more of the training voices")
    spk = {u: np.full(len(frames[u]), speaker_of[u]) for u in frames}
    x = np.concatenate([np.asarray(frames[u], dtype=np.float32) for u in train_u])
    y = np.concatenate([spk[u] for u in train_u])
    preds = _fit_predict(x, y, [np.asarray(frames[u], dtype=np.float32) for u in test_u], C=C,
                         max_frames=max_train_frames, seed=seed)
    correct = [int((p == spk[u]).sum()) for u, p in zip(test_u, preds)]
    sizes = [spk[u].size for u in test_u]
    _, counts = np.unique(np.concatenate([spk[u] for u in test_u]), return_counts=True)
    return {"speaker_acc": 100.0 * sum(correct) / sum(sizes),
            "speaker_acc_ci": bootstrap_ci(correct, sizes, n_boot=n_boot, seed=seed),
            "speaker_chance": 100.0 * counts.max() / counts.sum(),
            "speakers": int(np.unique(y).size)}


def probe_row(train_feats: Mapping[str, Any], test_feats: Mapping[str, Any], pset: ProbeSet, *, frame_rate: float,
              C: float = PROBE_C, max_train_frames: int = MAX_TRAIN_FRAMES, n_boot: int = BOOTSTRAP,
              seed: int = 0) -> dict[str, Any]:
    """The phone and speaker probes of one layer (or baseline): features of the training and test files."""
    options = {"C": C, "max_train_frames": max_train_frames, "n_boot": n_boot, "seed": seed}
    train = pair_frames(train_feats, pset.labels, frame_rate=frame_rate)
    voices = sorted({pset.speaker_of.get(u, "?") for u in train})
    tune_voice = voices[-1] if len(voices) > 1 else None  # the CTC decoder is tuned on a voice its head did not hear
    tune_on = [u for u in train if pset.speaker_of.get(u, "?") == tune_voice]
    row = phone_probe(train, pair_frames(test_feats, pset.labels, frame_rate=frame_rate), tune_on=tune_on, **options)
    row["probe_per_tuned_on"] = tune_voice
    return {**row, **speaker_probe({u: np.asarray(v) for u, v in train_feats.items()}, pset.speaker_of, **options)}


# ------------------------------------------------------------------------------------------- per model
def probe_layers(model, pset: ProbeSet, layers: Sequence[int], *, max_memory_gb: float = 4.0,
                 progress: bool = False, **options) -> dict[int, dict[str, Any]]:
    """``{layer: probe row}`` of ``model`` (any SpeechEncoder), a group of layers per model pass."""
    entries = [*pset.train, *pset.test]
    frames = sum(int(model.num_frames(e.num_samples)) for e in entries)
    train_ids = {e.fileid for e in pset.train}
    rows = {}
    for group in layer_groups(layers, frames * model.dim * 4, max_memory_gb):
        feats = model_outputs(model, entries, group, desc=f"probe layers {group}", progress=progress)
        for layer in group:
            x = feats.pop(layer)
            rows[layer] = probe_row({u: v for u, v in x.items() if u in train_ids},
                                    {u: v for u, v in x.items() if u not in train_ids}, pset,
                                    frame_rate=model.frame_rate, **options)
    return rows


def probe_baseline(kind: str, model, pset: ProbeSet, *, progress: bool = False, **options) -> dict[str, Any]:
    """The probe row of a signal-processing (``mfcc``, ``log_mel``) or ``noise`` baseline at ``model``'s
    frame rate."""
    x = baseline_outputs(kind, [*pset.train, *pset.test], model, seed=options.get("seed", 0), progress=progress)
    train_ids = {e.fileid for e in pset.train}
    return probe_row({u: v for u, v in x.items() if u in train_ids},
                     {u: v for u, v in x.items() if u not in train_ids}, pset, frame_rate=model.frame_rate,
                     **options)


def probe_info(pset: ProbeSet, *, C: float, max_train_frames: int, n_boot: int, seed: int) -> dict[str, Any]:
    """What the probe columns rest on (for a report's ``info``)."""
    return {"probe": f"logistic regression (L2, C={C:g}, lbfgs <= {MAX_ITER} iterations) on standardised frames; "
                     f"phones: trained on {len(pset.train)} files of {pset.train_split} (<= {max_train_frames} "
                     f"frames), scored on {len(pset.test)} files of {pset.test_split}; speakers: the "
                     f"{pset.train_split} files split by utterance ({SPEAKER_TEST_FRACTION:g} held out); "
                     f"accuracy in %; PER in % from phone recognition by a linear CTC head (warm start "
                     f"{WARM_STEPS} + {CTC_STEPS} Adam steps, its blank bonus tuned on one training voice held "
                     f"aside); bootstrap 95 % intervals ({n_boot} resamples of utterances, seed {seed})"}


# ------------------------------------------------------------------------------------------- driver
PROBE_BASELINES = ("mfcc", "log_mel", "noise", "random")


@dataclass(frozen=True)
class ProbeOptions:
    """Every option of :func:`probe` (and of the sweep's probe columns), checked when built: the 1-based
    ``layers`` (default all), the ``baselines`` (``mfcc``, ``log_mel``, ``noise``: rows; ``random``: the
    architecture with random weights, every layer), the splits (``train_split`` default ``train``, else
    ``dev``), at most ``max_files`` test files and ``max_train_frames`` training frames, the regularisation
    ``C``, ``n_boot`` bootstrap resamples, the ``seed``, the ``device`` and memory bound, a progress bar."""

    layers: Sequence[int] | None = None
    baselines: Sequence[str] = ("mfcc", "random")
    train_split: str | None = None
    test_split: str = "heldout"
    max_files: int | None = None
    max_train_frames: int = MAX_TRAIN_FRAMES
    C: float = PROBE_C
    n_boot: int = BOOTSTRAP
    seed: int = 0
    device: str = "cpu"
    max_memory_gb: float = 4.0
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = [b for b in self.baselines if b not in PROBE_BASELINES]
        if unknown:
            raise SweepError(f"unknown probe baselines {unknown}; choose from {', '.join(PROBE_BASELINES)}")
        for name in ("max_files", "max_train_frames", "n_boot"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise SweepError(f"{name} (--{name.replace('_', '-')}) must be >= 1, got {value!r}")
        if not self.C > 0:
            raise SweepError(f"C must be > 0, got {self.C!r}")

    @property
    def fit(self) -> dict[str, Any]:
        """The options every probe fit takes."""
        return {"C": self.C, "max_train_frames": self.max_train_frames, "n_boot": self.n_boot, "seed": self.seed}


def _probe_layers_of(model, options: ProbeOptions) -> list[int]:
    layers = options.layers
    layers = list(range(1, model.num_layers + 1)) if layers is None else sorted(set(int(x) for x in layers))
    if not layers or not all(1 <= la <= model.num_layers for la in layers):
        raise SweepError(f"layers {layers} out of range: the model has layers 1..{model.num_layers} (1-based)")
    if "random" in options.baselines and getattr(model, "cfg", None) is None:
        raise SweepError(f"the random-weights baseline needs a model built from a config, not a "
                         f"{type(model).__name__}; drop it (baselines)")
    return layers


@threads_like_torch
def probe(model, corpus_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
          options: ProbeOptions | None = None, *, force: bool = False, **overrides: Any) -> dict[str, Any]:
    """Phone and speaker probes of every layer of ``model`` (a SpeechEncoder, a ``Loaded``, a checkpoint path
    or a name :func:`spidrkit.checkpoints.load` accepts) on ``corpus_dir`` (see the module docstring), and of
    the baselines; ``options``: a :class:`ProbeOptions` and/or its fields as keywords. With ``out_dir``:
    ``report.json`` + ``report.md``; a finished report there (``report.html``) is replaced only with ``force``,
    checked before any work.

    Returns ``{"info", "layers": {layer: row}, "baselines": {name: row}, "best_layer"}`` (the layer of
    highest phone accuracy), plus ``random_init_layers`` with ``random``.
    """
    from spidrkit import __version__
    from spidrkit.checkpoints import resolve_model
    from spidrkit.config.validation import with_overrides
    from spidrkit.evaluation.sweep.features import random_like
    from spidrkit.evaluation.sweep.report import write_report
    from spidrkit.io import refuse_report_overwrite

    opts = with_overrides(ProbeOptions, options, overrides, "probe")
    if out_dir is not None:
        refuse_report_overwrite(out_dir, force, "evaluate probe")
    model, model_info = resolve_model(model, device=opts.device)
    layers = _probe_layers_of(model, opts)
    pset = load_probe_set(corpus_dir, model, train_split=opts.train_split, test_split=opts.test_split,
                          max_train_frames=opts.max_train_frames, max_files=opts.max_files, seed=opts.seed)
    rows = probe_layers(model, pset, layers, max_memory_gb=opts.max_memory_gb, progress=opts.progress, **opts.fit)
    base = {k: probe_baseline(k, model, pset, progress=opts.progress, **opts.fit)
            for k in opts.baselines if k != "random"}
    results: dict[str, Any] = {
        "info": {**{k: v for k, v in model_info.as_dict().items() if v is not None},
                 "corpus": str(Path(corpus_dir).resolve()), "layers": layers,
                 **probe_info(pset, **opts.fit), "frame_rate_hz": model.frame_rate, "spidrkit": __version__},
        "layers": rows, "baselines": base, "best_layer": max(rows, key=lambda la: rows[la]["probe_acc"])}
    if "random" in opts.baselines:
        rand = probe_layers(random_like(model, opts.seed), pset, layers, max_memory_gb=opts.max_memory_gb,
                            progress=opts.progress, **opts.fit)
        best = max(rand, key=lambda la: rand[la]["probe_acc"])
        base[f"random init (L{best})"] = rand[best]
        results["random_init_layers"] = rand
    if out_dir is not None:
        json_path, md_path = write_report(out_dir, results, title=f"linear probes: {model_info.model_id}")
        results["outputs"] = {"report_json": json_path, "report_md": md_path,
                              "report_html": md_path.with_suffix(".html")}
    return results


@dataclass
class ProbeRows:
    """The sweep's rows that receive probe columns (in place): its layers', its signal-processing / noise
    baselines' (named ``mfcc``, ``log_mel``, ``noise``) and its random-weights layers' (when given)."""

    layers: dict[int, dict]
    baselines: dict[str, dict]
    random_layers: dict[int, dict]


def add_probe_columns(model, corpus_dir: str | os.PathLike, layers: Sequence[int], rows: ProbeRows,
                      options: ProbeOptions) -> dict[str, Any]:
    """The sweep's probe columns, added in place to ``rows``; returns the ``info`` entry that says what they
    rest on (only ``max_files``, ``seed``, ``max_memory_gb`` and ``progress`` of ``options`` are read: the fit
    uses the defaults)."""
    from spidrkit.evaluation.sweep.features import random_like

    fit = ProbeOptions(seed=options.seed).fit
    pset = load_probe_set(corpus_dir, model, max_files=options.max_files, seed=options.seed,
                          max_train_frames=MAX_TRAIN_FRAMES)
    common = {"max_memory_gb": options.max_memory_gb, "progress": options.progress, **fit}
    for layer, row in probe_layers(model, pset, layers, **common).items():
        rows.layers[layer].update(row)
    for kind in [k for k in rows.baselines if k in ("mfcc", "log_mel", "noise")]:
        rows.baselines[kind].update(probe_baseline(kind, model, pset, progress=options.progress, **fit))
    if rows.random_layers:
        for layer, row in probe_layers(random_like(model, options.seed), pset, list(rows.random_layers),
                                       **common).items():
            rows.random_layers[layer].update(row)  # the baseline row "random init (Lk)" is one of these dicts
    return probe_info(pset, **fit)
