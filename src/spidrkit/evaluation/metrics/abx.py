"""ABX phone discriminability (within / across speaker, triphones), computed with fastabx.

fastabx (Poli et al. 2025) is the implementation the SpidR paper uses: it fixes the Libri-Light slicing bug,
so the numbers are comparable with the paper's tables. This module only adds what spidrkit needs on top:

- features from a folder (``DIR/<fileid>.pt``, a float tensor (T, D) per utterance, as written by the
  extraction step) or from an in-memory mapping ``{fileid: tensor}``;
- discrete units (a units text file ``utt u1 u2 ...``), scored as one-hot vectors;
- the result in percent (error rate, chance level 50 %).

Frame convention (fastabx's, used for every frame stream in spidrkit): frame ``i`` is centred at
``(i + 0.5) / frequency`` seconds, and an item ``[onset, offset]`` keeps the frames whose centre lies inside
it. ``frequency`` is the frame rate of the features, the model's ``frame_rate`` (for SpidR BASE, frame ``i``
covers ``[i * 20 ms, i * 20 ms + 25 ms]``: the 2.5 ms offset of its centre is below the 10 ms resolution of
the alignments and is ignored, as in the paper).

:func:`abx_both` is the adapter the sweep and the CLI use: within and across speaker at once, ``None`` (and a
warning) for a condition without any triplet to score. fastabx's typed errors for that case are caught there
and only there.

A score rests on the cells fastabx forms (one per (A phone, B phone, context, speaker) combination) and on
the triplets in them: :func:`abx_score` returns both counts with the error rate, and :func:`abx_both` warns
when fewer than :data:`MIN_ABX_CELLS` cells were scored (a handful of triplets gives 0 or 100 % by chance).

The item file has the ZeroSpeech columns ``#file onset offset #phone prev-phone next-phone speaker``
(``.item``: space separated; ``.csv`` and ``.jsonl`` are accepted too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from spidrkit.config.validation import with_overrides
from spidrkit.errors import InputError
from spidrkit.evaluation.metrics.discrete import UnitSource, frame_units, units_as_indices
from spidrkit.extraction.features_io import iter_feature_files
from spidrkit.extraction.features_io import load_features as read_feature_file
from spidrkit.lazy import require

Speaker = Literal["within", "across"]
Context = Literal["within", "any"]
Distance = Literal["angular", "kl_symmetric", "identical", "euclidean"]
FeatureSource = str | os.PathLike | Mapping[str, torch.Tensor]

# Below this many scored cells an ABX error rate is reported with a warning: with the ZeroSpeech subsampling
# (<= 10 items per group) 50 cells hold a few hundred triplets at least, while a handful of cells can give
# 0 % or 100 % by chance. The ZeroSpeech / LibriSpeech dev sets give tens of thousands of cells.
MIN_ABX_CELLS = 50
ITEM_COLUMNS = ("#file", "onset", "offset", "#phone", "prev-phone", "next-phone", "speaker")


class ABXInputError(InputError):
    """Features or an item file that ABX cannot score (mixed feature widths, an item file without items)."""


@dataclass(frozen=True)
class ABXScore:
    """An ABX error rate in percent and what it rests on: the scored cells and their triplets."""

    error: float
    cells: int
    triplets: int
    pairs: dict[str, float] | None = None  # across speakers: the error of each voice pair "a|b" (sorted)


@dataclass(frozen=True)
class ABXOptions:
    """How :func:`abx_score` scores, checked when built.

    ``speaker``: ``"within"`` (A, B, X from one speaker) or ``"across"`` (X from another speaker). ``context``:
    ``"within"`` (triphones: A, B, X share prev/next phones) or ``"any"``. ``distance``: ``"angular"`` for
    features, ``"kl_symmetric"`` for posteriors, ``"identical"`` for discrete units (features of shape (T, 1)
    holding unit indices, or one-hot (T, V)). ``max_size_group``, ``max_x_across``, ``seed``: the ZeroSpeech
    subsampling (10 and 5 in the original code). ``device``: fastabx's (None: its default)."""

    speaker: Speaker = "within"
    context: Context = "within"
    distance: Distance = "angular"
    max_size_group: int | None = 10
    max_x_across: int | None = 5
    seed: int = 0
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.speaker not in ("within", "across"):
            raise ValueError(f"speaker must be 'within' or 'across', not {self.speaker!r}")
        if self.context not in ("within", "any"):
            raise ValueError(f"context must be 'within' or 'any', not {self.context!r}")


class FeatureDir(Mapping[str, torch.Tensor]):
    """Read-only mapping ``fileid -> (T, D) tensor`` over a features folder; each file is loaded on access.

    The folder layout and the file ids are those of :mod:`spidrkit.extraction.features_io` (``.pt`` or
    ``.npy`` files, ``/`` in ids for subfolders, the sidecar skipped). Nothing is held in memory, so a whole
    corpus can be walked one utterance at a time.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"no features folder at {self.root}")
        self._paths = dict(iter_feature_files(self.root))
        if not self._paths:
            raise FileNotFoundError(f"no feature files (.pt or .npy) in {self.root}")

    def __getitem__(self, fileid: str) -> torch.Tensor:
        return read_feature_file(self._paths[fileid])

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, fileid: str) -> Path:
        """The file holding the features of ``fileid``."""
        return self._paths[fileid]


def load_features(source: FeatureSource) -> Mapping[str, torch.Tensor]:
    """A features mapping from a folder (lazy :class:`FeatureDir`) or an existing mapping (returned as is)."""
    if isinstance(source, Mapping):
        return source
    return FeatureDir(source)


def check_features(x: object, name: str) -> torch.Tensor:
    """Raise a clear error unless ``x`` is a non-empty 2-D (T, D) tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor (T, D), got {type(x).__name__}")
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty tensor of shape (T, D), got {tuple(x.shape)}")
    return x


def _feature_transform(distance: Distance) -> Callable[[torch.Tensor, str], torch.Tensor]:
    """What to do to each features tensor before fastabx sees it, for the chosen distance."""

    def as_indices(x: torch.Tensor, name: str) -> torch.Tensor:
        x = check_features(x, name)
        return x if x.shape[1] == 1 else x.argmax(dim=1, keepdim=True).float()

    def as_posteriors(x: torch.Tensor, name: str) -> torch.Tensor:
        x = check_features(x, name).float()
        if (x < 0).any() or not torch.allclose(x.sum(dim=1), torch.ones_like(x[:, 0]), atol=1e-3):
            raise ValueError(f"{name}: the kl_symmetric distance needs probability distributions (rows >= 0 "
                             "summing to 1), e.g. the softmax of a prediction head")
        return x

    def as_float(x: torch.Tensor, name: str) -> torch.Tensor:
        return check_features(x, name).float()

    if distance == "identical":
        return as_indices
    if distance == "kl_symmetric":
        return as_posteriors
    if distance in ("angular", "euclidean"):
        return as_float
    raise ValueError(f"unknown distance {distance!r}; use angular, kl_symmetric, identical or euclidean")


def fastabx_frequency(frame_rate: float) -> int | str:
    """A frame rate as fastabx takes it: an int, or the decimal text of a fractional rate (never a float)."""
    rate = float(frame_rate)
    if rate <= 0:
        raise ValueError(f"the frame rate must be > 0, got {frame_rate}")
    return int(rate) if rate.is_integer() else repr(rate)


def check_item_file(item_file: Path) -> None:
    """Refuse a missing item file, or one without items (a header alone, or nothing)."""
    if not item_file.is_file():
        raise FileNotFoundError(f"no item file at {item_file}")
    with open(item_file, "rb") as f:
        lines = [line for _, line in zip(range(2), (x for x in f if x.strip()))]
    if len(lines) < (1 if item_file.suffix == ".jsonl" else 2):
        raise ABXInputError(f"the item file {item_file} has no items (only a header?): give an item file with one "
                            "line per phone instance (#file onset offset #phone prev-phone next-phone speaker)")


def read_abx_labels(item_file: str | os.PathLike):
    """The items of an item file as fastabx reads them (a polars DataFrame, onset and offset as decimals),
    checked: the ZeroSpeech columns, one item at least, times that are numbers with onset <= offset. A file
    that fastabx cannot parse is an :class:`ABXInputError` naming it."""
    require("fastabx", "ABX")
    import polars as pl
    from fastabx.dataset import read_labels

    item_file = Path(item_file)
    check_item_file(item_file)
    fix = f"an item file has the columns {' '.join(ITEM_COLUMNS)}, one item a line"
    try:
        labels = read_labels(item_file, "#file", "onset", "offset")
    except Exception as e:  # polars' parse errors, fastabx's own; the file is the cause
        raise ABXInputError(f"{item_file}: not an item file fastabx reads ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:200]}); {fix}") from None
    if missing := [c for c in ITEM_COLUMNS if c not in labels.columns]:
        raise ABXInputError(f"{item_file}: no column {', '.join(missing)}; {fix}")
    if not labels.height:
        raise ABXInputError(f"{item_file}: no item; {fix}")
    bad = labels.with_row_index("line", 2).filter(  # line 1 is the header
        pl.any_horizontal(pl.col(*ITEM_COLUMNS).is_null()) | (pl.col("onset") < 0)
        | (pl.col("onset") > pl.col("offset")))
    if bad.height:
        row = bad.row(0, named=True)
        what = ("is incomplete" if any(row[c] is None for c in ITEM_COLUMNS) else
                f"has a negative onset ({row['onset']})" if row["onset"] < 0 else
                f"ends before it starts (onset {row['onset']} > offset {row['offset']})")
        raise ABXInputError(f"{item_file}:{row['line']}: the item {what}; {fix}, onset and offset in seconds, "
                            "0 <= onset <= offset")
    return labels


def _item_spans(labels, frequency: int | str) -> dict[str, list[tuple[int, Any, Any, int, int]]]:
    """``{file: [(line, onset, offset, first frame, end frame)]}``: the frames fastabx slices for each item."""
    from fastabx.dataset import item_frontiers

    start, end = item_frontiers(frequency, "onset", "offset")[:2]
    spans: dict[str, list[tuple[int, Any, Any, int, int]]] = {}
    for file, line, onset, offset, first, last in labels.with_row_index("line", 2).with_columns(start, end).select(
            "#file", "line", "onset", "offset", "start", "end").iter_rows():
        spans.setdefault(file, []).append((line, onset, offset, first, last))
    return spans


def check_item_frames(item_file: Path, spans: list[tuple[int, Any, Any, int, int]], fileid: str, frames: int,
                      frequency: float) -> None:
    """An item of ``fileid`` whose frames reach past its ``frames`` features is an :class:`ABXInputError`
    naming the item file and line, before fastabx slices it."""
    for line, onset, offset, first, last in spans:
        if first < 0 or last > frames:
            raise ABXInputError(
                f"{item_file}:{line}: the item {onset}-{offset} s of {fileid} ends past its features ({frames} "
                f"frames, {frames / frequency:.3f} s at {frequency:g} Hz): its times are past the audio, or the "
                "model drops the audio's last frame; fix or drop the item")


def _dataset(features: FeatureSource, item_file: Path, frequency: float, distance: Distance,
             device: str | None, progress: bool):
    """A fastabx Dataset holding the item frames of ``features`` (a folder or a mapping)."""
    require("fastabx", "ABX")
    from fastabx import Dataset, InMemoryAccessor
    from fastabx.dataset import load_data_from_item
    from fastabx.utils import resolve_device

    transform = _feature_transform(distance)
    feats = load_features(features)
    labels = read_abx_labels(item_file)
    spans = _item_spans(labels, fastabx_frequency(frequency))
    resolved = resolve_device(device)
    first: dict[str, tuple[str, int]] = {}

    def load(fileid: str) -> torch.Tensor:
        x = transform(feats[fileid], fileid)
        check_item_frames(item_file, spans.get(fileid, []), fileid, int(x.shape[0]), float(frequency))
        width = int(x.shape[1])
        seen = first.setdefault("width", (fileid, width))
        if seen[1] != width:
            name = feats.path if isinstance(feats, FeatureDir) else str
            raise ABXInputError(f"features of mixed dimensions: {name(seen[0])} has {seen[1]}, {name(fileid)} has "
                                f"{width}; extract every file with one model and layer")
        return x

    # fastabx's own loader, fed with file ids instead of paths: same slicing and checks as Dataset.from_item,
    # for folders (.pt and .npy) and in-memory mappings alike
    indices, data = load_data_from_item(
        {fileid: fileid for fileid in feats}, labels, fastabx_frequency(frequency), load,
        "#file", "onset", "offset", resolved, progress=progress,
    )
    return Dataset(labels=labels, accessor=InMemoryAccessor(indices, data, resolved))


def abx(features: FeatureSource, item_file: str | os.PathLike, **kwargs) -> float:
    """ABX error rate in percent (0 = perfect, 50 = chance): :func:`abx_score` without the counts."""
    return abx_score(features, item_file, **kwargs).error


def abx_score(features: FeatureSource, item_file: str | os.PathLike, options: ABXOptions | None = None, *,
              frequency: float, **overrides: Any) -> ABXScore:
    """ABX error rate in percent (0 = perfect, 50 = chance), as in ZeroSpeech 2021 / the SpidR paper, with
    the number of cells scored (those with at least one triplet) and of triplets in them.

    :param features: a folder of ``<fileid>.pt`` tensors (T, D) or a mapping ``{fileid: tensor}``.
    :param item_file: ZeroSpeech item file (``#file onset offset #phone prev-phone next-phone speaker``).
    :param options: an :class:`ABXOptions` (speaker, context, distance, subsampling, device, progress), and/or
        its fields as keywords (``speaker="across", distance="identical"``).
    :param frequency: frame rate of the features in Hz (the model's ``frame_rate``).
    """
    require("fastabx", "ABX")
    from fastabx import Score, Subsampler, Task

    o = with_overrides(ABXOptions, options, overrides, "abx_score")
    speaker, context, distance = o.speaker, o.context, o.distance
    item_file = Path(item_file)
    check_item_file(item_file)
    triphone = ["prev-phone", "next-phone"] if context == "within" else []
    if speaker == "within":
        by, across = [*triphone, "speaker"], None
    else:
        by, across = triphone or None, ["speaker"]
    dataset = _dataset(features, item_file, frequency, distance, o.device, o.progress)
    subsampler = Subsampler(o.max_size_group, o.max_x_across if speaker == "across" else None, o.seed)
    task = Task(dataset, on="#phone", by=by, across=across, subsampler=subsampler)
    score = Score(task, distance, progress=o.progress)
    levels = ([("next-phone", "prev-phone")] if context == "within" else []) + ["speaker"]
    error = 100.0 * score.collapse(levels=levels)
    scored = score.cells.filter(score.cells["size"] > 0)
    pairs = voice_pairs(scored) if speaker == "across" else None
    return ABXScore(error, len(scored), int(scored["size"].sum()), pairs)


def voice_pairs(cells) -> dict[str, float]:
    """Across-speaker ABX (%) of each pair of voices ``"a|b"`` (sorted names) from fastabx's scored cells:
    collapsed as the whole score is (contexts, then phone pairs) within each (A/B speaker, X speaker), then
    the two directions of a pair averaged."""
    import polars as pl

    phones = ["speaker", "speaker_x", "#phone", "#phone_b"]
    directed = (cells.group_by(phones).agg(pl.col("score").mean())
                .group_by(["speaker", "speaker_x"]).agg(pl.col("score").mean()))
    both: dict[str, list[float]] = {}
    for a, x, score in directed.iter_rows():
        both.setdefault("|".join(sorted((str(a), str(x)))), []).append(100.0 * float(score))
    return {k: sum(v) / len(v) for k, v in sorted(both.items())}


def pair_table(rows: Mapping[str, Mapping[str, float]], seen: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{row: {"groups": pair_groups(pairs, seen), "pairs": pairs}}`` for each row with pairs."""
    return {name: {"groups": pair_groups(p, seen), "pairs": dict(p)} for name, p in rows.items() if p}


def pair_groups(pairs: Mapping[str, float], seen: Sequence[str]) -> dict[str, float]:
    """Voice pairs grouped by what they test: ``"training voices"`` (both voices heard in training),
    ``"with held-out V"`` (a training voice and the held-out voice V), ``"held-out voices"`` (neither heard);
    the mean error of each group's pairs."""
    groups: dict[str, list[float]] = {}
    for pair, error in pairs.items():
        a, b = pair.split("|")
        unseen = [v for v in (a, b) if v not in seen]
        name = ("training voices" if not unseen else f"with held-out {unseen[0]}" if len(unseen) == 1
                else "held-out voices")
        groups.setdefault(name, []).append(error)
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}


def abx_units(
    units: UnitSource,
    item_file: str | os.PathLike,
    *,
    speaker: Speaker = "within",
    context: Context = "within",
    frequency: float,
    **kwargs,
) -> float:
    """ABX error rate in percent on discrete units: a units file (text or JSONL, frame-level or
    de-duplicated with durations, see :mod:`spidrkit.extraction.units`) or ``{utt: int sequence}``.

    The units are compared as one-hot vectors (see :func:`units_as_indices`): the distance between two
    frames is 0 if they carry the same unit and 1 otherwise, aligned with DTW. Other keyword arguments go
    to :func:`abx`.
    """
    return abx(units_as_indices(frame_units(units)), item_file, speaker=speaker, context=context, distance="identical",
               frequency=frequency, **kwargs)


def empty_task_errors() -> tuple[type[BaseException], ...]:
    """fastabx's errors for a task without any valid triplet (too few items or speakers)."""
    require("fastabx", "ABX")
    from fastabx.score import EmptyScoreError
    from fastabx.verify import EmptyTaskError

    errors: list[type[BaseException]] = [EmptyScoreError, EmptyTaskError]
    with contextlib.suppress(ImportError):  # not in every fastabx release
        from fastabx.cell import NoAcrossError

        errors.append(NoAcrossError)
    return tuple(errors)


def few_cells_warning(speaker: str, cells: int, triplets: int) -> str | None:
    """The warning for an ABX score on fewer than :data:`MIN_ABX_CELLS` cells; ``None`` when there are enough."""
    if cells >= MIN_ABX_CELLS:
        return None
    return (f"ABX {speaker} speaker rests on {cells} cell{'s' * (cells != 1)} ({triplets} triplet"
            f"{'s' * (triplets != 1)}), fewer than {MIN_ABX_CELLS}: "
            "the error rate is not reliable; evaluate on more items")


def abx_both(features: FeatureSource, item_file: str | os.PathLike, options: ABXOptions | None = None, *,
             frame_rate: float, speakers: Sequence[Speaker] = ("within", "across"), with_counts: bool = False,
             with_pairs: bool = False, **overrides: Any) -> dict[str, Any]:
    """``{"abx_within": %, "abx_across": %}`` of :func:`abx_score` (``context="within"``: triphones) at
    ``frame_rate``, one score per speaker condition of ``speakers``; ``options`` and the keywords are
    :class:`ABXOptions` fields (``distance``, ``context``, ``device``, ...; no progress bars unless asked), the
    ``speaker`` aside. ``None`` (and a warning) for a condition where no triplet can be formed. A score on fewer
    than :data:`MIN_ABX_CELLS` cells is kept, with a warning. ``with_counts`` adds ``abx_within_cells``,
    ``abx_within_triplets`` (and the same for across): what each score rests on (0 for a condition without
    triplets). ``with_pairs`` adds ``abx_across_pairs``: :func:`voice_pairs` (empty without triplets)."""
    if "speaker" in overrides:
        raise TypeError("abx_both() scores each condition of speakers=(...); it takes no speaker")
    o = with_overrides(ABXOptions, options or ABXOptions(progress=False), overrides, "abx_both")
    out: dict[str, Any] = {}
    for speaker in speakers:
        key = f"abx_{speaker}"
        try:
            s = abx_score(features, item_file, dataclasses.replace(o, speaker=speaker), frequency=frame_rate)
        except empty_task_errors() as e:
            warnings.warn(f"ABX {speaker} speaker ({o.distance}): no triplet to score ({type(e).__name__}); "
                          "reported as None", stacklevel=2)
            s = ABXScore(None, 0, 0)  # type: ignore[arg-type]
        else:
            few = few_cells_warning(speaker, s.cells, s.triplets)
            if few:
                warnings.warn(few, stacklevel=2)
        out[key] = s.error
        if with_counts:
            out[f"{key}_cells"], out[f"{key}_triplets"] = s.cells, s.triplets
        if with_pairs and speaker == "across":
            out["abx_across_pairs"] = s.pairs or {}
    return out
