"""The ZeroSpeech 2021 submission folder: the rules its official validator (``zerospeech2021-validate``)
applies, checked by :func:`validate_submission`, and the choice of what ``evaluate slm`` puts in it
(``docs/formats.md``, "sLM benchmarks and submissions").

The validator's rules, as read in its sources (``zerospeech2021/meta.py``, ``cli/validate.py``,
``lexical.py``, ``syntactic.py``); this module is our own statement of them:

- the root holds exactly ``meta.yaml``, ``phonetic``, ``lexical``, ``syntactic``, ``semantic`` and, when
  ``meta.yaml`` says ``open_source: true``, ``code`` (a folder that is not empty); any other entry, hidden
  ones included, is refused;
- ``meta.yaml`` is YAML (tabs read as spaces) holding exactly ``author``, ``affiliation``, ``description``,
  ``train_set`` (non-empty strings), ``open_source``, ``visually_grounded`` (booleans), ``gpu_budget`` (a
  number) and ``parameters`` with exactly ``phonetic`` (``metric`` one of ``cosine``, ``euclidean``, ``kl``,
  ``kl_symmetric``; ``frame_shift`` a number) and ``semantic`` (``metric`` a distance of
  ``scipy.spatial.distance.cdist``; ``pooling`` one of ``min``, ``max``, ``mean``, ``sum``, ``last``,
  ``lastlast``, ``off``);
- a track the validator checks must hold its dev files, and its test files unless it runs with
  ``--only-dev`` (one switch for every track): ``lexical`` and ``syntactic`` exactly ``dev.txt`` (and
  ``test.txt``), ``phonetic`` exactly ``dev-clean``, ``dev-other`` (and ``test-clean``, ``test-other``),
  ``semantic`` exactly ``dev`` (and ``test``), each with exactly ``librispeech`` and ``synthetic``. An empty
  track folder is a track skipped (``--no-lexical``...), so the tracks that hold files must agree on the
  splits: :func:`validator_options` gives the switches a folder needs;
- a ``lexical`` / ``syntactic`` file has one ``<filename> <score>`` line per wav of the split (exactly two
  fields separated by one space, the score a float, no file named twice); the validator compares the names
  with the dataset's wavs, which :func:`validate_submission` does when given ``expected``.

Beyond the validator: a score that is not finite (NaN, infinity) is a problem too. The phonetic and
semantic files (features) are not checked: ``evaluate slm`` never writes them.
"""

from __future__ import annotations

import collections
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spidrkit.lazy import require

TRACK_FILES = {  # track -> (its dev entries, its test entries)
    "phonetic": (("dev-clean", "dev-other"), ("test-clean", "test-other")),
    "lexical": (("dev.txt",), ("test.txt",)),
    "syntactic": (("dev.txt",), ("test.txt",)),
    "semantic": (("dev",), ("test",)),
}
SCORED_TRACKS = ("lexical", "syntactic")  # the tracks of one score per wav: what evaluate slm submits
ROOT = ("meta.yaml", *TRACK_FILES)
META_STRINGS = ("author", "affiliation", "description", "train_set")
META_BOOLS = ("open_source", "visually_grounded")
PHONETIC_METRICS = ("cosine", "euclidean", "kl", "kl_symmetric")
POOLINGS = ("min", "max", "mean", "sum", "last", "lastlast", "off")


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def _keys(table: Any, expected: Sequence[str], where: str) -> list[str]:
    if not isinstance(table, Mapping):
        return [f"meta.yaml: {where} must be a mapping, not {type(table).__name__}"]
    missing, extra = sorted(set(expected) - set(table)), sorted(set(table) - set(expected))
    return ([f"meta.yaml: {where} lacks {', '.join(missing)}"] if missing else []) + \
        ([f"meta.yaml: {where} has unknown entries {', '.join(map(str, extra))}"] if extra else [])


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number)  # as the validator: a boolean is a number too


def _scipy_metric(metric: str) -> bool:
    import numpy as np

    cdist = require("scipy.spatial.distance", "checking a submission's semantic metric").cdist

    try:
        cdist(np.ones((3, 2)), np.ones((3, 2)), metric)
    except Exception:  # any failure: scipy does not take the metric
        return False
    return True


def meta_problems(meta: Any) -> list[str]:
    """The problems of a parsed ``meta.yaml`` (empty when valid)."""
    problems = _keys(meta, (*META_STRINGS, *META_BOOLS, "gpu_budget", "parameters"), "the top level")
    if problems and not isinstance(meta, Mapping):
        return problems
    problems += [f"meta.yaml: {k} must be a non-empty string" for k in META_STRINGS
                 if k in meta and not (isinstance(meta[k], str) and meta[k])]
    problems += [f"meta.yaml: {k} must be true or false" for k in META_BOOLS
                 if k in meta and not isinstance(meta[k], bool)]
    if "gpu_budget" in meta and not _is_number(meta["gpu_budget"]):
        problems.append("meta.yaml: gpu_budget must be a number")
    params = meta.get("parameters")
    if params is None:
        return problems
    problems += _keys(params, ("phonetic", "semantic"), "parameters")
    if not isinstance(params, Mapping):
        return problems
    phonetic, semantic = params.get("phonetic"), params.get("semantic")
    if phonetic is not None:
        problems += _keys(phonetic, ("metric", "frame_shift"), "parameters/phonetic")
        if isinstance(phonetic, Mapping) and "metric" in phonetic and phonetic["metric"] not in PHONETIC_METRICS:
            problems.append(f"meta.yaml: parameters/phonetic/metric must be one of {', '.join(PHONETIC_METRICS)}")
        if isinstance(phonetic, Mapping) and "frame_shift" in phonetic and not _is_number(phonetic["frame_shift"]):
            problems.append("meta.yaml: parameters/phonetic/frame_shift must be a number")
    if semantic is not None:
        problems += _keys(semantic, ("metric", "pooling"), "parameters/semantic")
        if isinstance(semantic, Mapping) and "pooling" in semantic and semantic["pooling"] not in POOLINGS:
            problems.append(f"meta.yaml: parameters/semantic/pooling must be one of {', '.join(POOLINGS)}")
        metric = semantic.get("metric") if isinstance(semantic, Mapping) else None
        if isinstance(semantic, Mapping) and "metric" in semantic and not (
                isinstance(metric, str) and metric and _scipy_metric(metric)):
            problems.append(f"meta.yaml: parameters/semantic/metric {metric!r} is not a scipy cdist metric")
    return problems


def read_meta(folder: Path) -> tuple[Any, list[str]]:
    """``meta.yaml`` of a submission, parsed as the validator does, and the problems met reading it."""
    yaml = require("yaml", "reading a submission's meta.yaml")

    path = folder / "meta.yaml"
    if not path.is_file():
        return None, ["no meta.yaml file"]
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8").replace("\t", " "))
    except yaml.YAMLError as e:
        return None, [f"meta.yaml is not YAML: {e}"]
    return meta, ([] if meta and isinstance(meta, Mapping) else ["meta.yaml is empty or not a mapping"])


def score_file_problems(path: Path, expected: set[str] | None = None) -> list[str]:
    """The problems of one ``lexical`` / ``syntactic`` file (``expected``: the wav names it must list)."""
    names: list[str] = []
    problems: list[str] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            fields = line.strip().split(" ")
            if len(fields) != 2:
                problems.append(f"{path}, line {n}: not '<filename> <score>': {line.strip()!r}")
                continue
            try:
                value = float(fields[1])
            except ValueError:
                problems.append(f"{path}, line {n}: the score {fields[1]!r} is not a float")
                continue
            if not math.isfinite(value):
                problems.append(f"{path}, line {n}: the score {fields[1]} is not finite")
            names.append(fields[0])
    twice = sorted(name for name, k in collections.Counter(names).items() if k > 1)
    if twice:
        problems.append(f"{path}: files named twice: {', '.join(twice[:5])}")
    if not names and not problems:
        problems.append(f"{path}: no lines")
    if expected is not None and set(names) != expected:
        missing, extra = sorted(expected - set(names)), sorted(set(names) - expected)
        problems.append(f"{path}: {len(missing)} wavs missing ({', '.join(missing[:3])}), {len(extra)} unknown "
                        f"({', '.join(extra[:3])})")
    return problems


def _track_problems(folder: Path, track: str) -> tuple[list[str], bool | None]:
    """The problems of a track folder's entries and whether it holds the test files (``None``: empty)."""
    path = folder / track
    if not path.is_dir():
        return [f"{track} is not a folder"], None
    found = _entries(path)
    if not found:
        return [], None
    dev, test = TRACK_FILES[track]
    if found not in (set(dev), set(dev) | set(test)):
        return [f"{track}/ holds {', '.join(sorted(found))}; the validator takes {', '.join(dev)} (--only-dev) or "
                f"{', '.join((*dev, *test))}"], None
    problems = []
    if track == "semantic":
        problems = [f"semantic/{s}/ must hold exactly librispeech and synthetic" for s in sorted(found)
                    if _entries(path / s) != {"librispeech", "synthetic"}]
    return problems, found != set(dev)


def validate_submission(folder: str | os.PathLike,
                        expected: Mapping[tuple[str, str], set[str]] | None = None) -> list[str]:
    """The problems that ``zerospeech2021-validate`` (run with :func:`validator_options`) finds in a
    submission folder, as sentences; empty when it is valid (the rules: the module doc). ``expected``:
    ``{(track, split): wav names}`` of the dataset, to compare the files' names with."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"no submission folder at {folder}"]
    meta, problems = read_meta(folder)
    if not problems:
        problems = meta_problems(meta)
    open_source = isinstance(meta, Mapping) and meta.get("open_source") is True
    wanted = {*ROOT, *(["code"] if open_source else [])}
    found = _entries(folder)
    if found != wanted:
        problems.append(f"the root holds {', '.join(sorted(found))}; the validator takes exactly "
                        f"{', '.join(sorted(wanted))}" + (" (open_source: true needs code/)" if open_source else ""))
    if open_source and (folder / "code").is_dir() and not _entries(folder / "code"):
        problems.append("open_source: true but the code folder is empty")
    with_test: dict[str, bool] = {}
    for track in TRACK_FILES:
        if track not in found:
            continue
        track_problems, test = _track_problems(folder, track)
        problems += track_problems
        if test is not None:
            with_test[track] = test
    if len(set(with_test.values())) > 1:
        problems.append("the tracks disagree on the splits (the validator checks all of them with --only-dev or "
                        "none): " + ", ".join(f"{t} {'dev+test' if v else 'dev only'}" for t, v in with_test.items()))
    for track in SCORED_TRACKS:
        for path in sorted((folder / track).glob("*.txt")) if track in with_test else ():
            problems += score_file_problems(path, (expected or {}).get((track, path.stem)))
    return problems


def validator_options(folder: str | os.PathLike | Mapping[str, set[str]]) -> list[str]:
    """The switches of ``zerospeech2021-validate DATASET FOLDER`` for a valid submission folder: the empty
    tracks skipped (``--no-phonetic``...), ``--only-dev`` when no track holds test files. ``folder``: the
    folder, or what its tracks hold (``{track: entries}``, a track not named being empty)."""
    if isinstance(folder, Mapping):
        held = {track: set(folder.get(track, ())) for track in TRACK_FILES}
    else:
        held = {track: _entries(Path(folder) / track) for track in TRACK_FILES}
    options = [f"--no-{track}" for track, found in held.items() if not found]
    if not any(set(TRACK_FILES[t][1]) & found for t, found in held.items()):
        options.insert(0, "--only-dev")
    return options


def submitted_splits(read: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str]], bool]:
    """Which of the ``(task, split)`` scored go in the submission, and whether it is dev only: the dev and
    test splits of the lexical and syntactic tasks when every one of them read has both, else their dev
    splits alone (the validator checks every track on the same splits). The others (StoryCloze, a test split
    without its dev or beside a track without test) are written beside the submission only."""
    tracks: dict[str, set[str]] = {}
    for task, split in read:
        if task in SCORED_TRACKS:
            tracks.setdefault(task, set()).add(split)
    both = bool(tracks) and all({"dev", "test"} <= splits for splits in tracks.values())
    keep = {"dev", "test"} if both else {"dev"}
    return [(t, s) for t, s in read if t in SCORED_TRACKS and s in keep], not both
