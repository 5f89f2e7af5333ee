"""Units in the formats other toolkits read: fairseq ``.km`` label files (HuBERT, GSLM, textlesslib).

:func:`export_km` writes, into one folder (``docs/formats.md``, "fairseq units"):

- ``NAME.tsv``: the fairseq audio manifest: first line the root folder (absolute), then
  ``relative/path<TAB>num_samples`` per utterance (:func:`spidrkit.data.corpora.manifest.write_manifest`);
- ``NAME.km``: one line per utterance, in the order of ``NAME.tsv``: its units separated by single spaces
  (frame by frame, or runs collapsed with ``dedup``; an utterance without frames is an empty line);
- ``dict.km.txt``: the fairseq dictionary, ``u 1`` for every unit ``u`` of ``0..k-1``;
- ``NAME.km.json``: the sidecar (units file, model, layer, k, dedup, frame rate).

The utterances are those of the units file, in the order of the manifest they were extracted from
(utterances that have no units, e.g. shorter than the receptive field, are left out of both files, with a
warning). :func:`read_km` reads a ``.km`` back with the ``.tsv`` beside it, as ``{fileid: Units}``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spidrkit.data.corpora.manifest import ManifestEntry, read_manifest, write_manifest
from spidrkit.extraction.inputs import resolve_inputs
from spidrkit.extraction.units import Units, UnitsError, deduplicate, km_units, read_units
from spidrkit.io import read_sidecar, refuse_overwrite, sidecar_path, write_lines_atomic, write_sidecar
from spidrkit.text_in import read_lines

EXPORT_FORMATS = ("km",)
DICT_NAME = "dict.km.txt"


def _k_of(units: Mapping[str, Units], k: int | None, info: Mapping[str, Any], where: str) -> int:
    k = k if k is not None else info.get("k")
    largest = max((max(u.units) for u in units.values() if u.units), default=-1)
    if not isinstance(k, int) or k < 1:
        raise UnitsError(f"{where}: the number of units k is unknown (no sidecar 'k'): pass k (--k)")
    if largest >= k:
        raise UnitsError(f"{where}: unit {largest} is out of range for k = {k}")
    return k


def export_km(
    units: str | os.PathLike,
    out_dir: str | os.PathLike,
    manifest: str | os.PathLike | list[ManifestEntry] | None = None,
    name: str = "train",
    dedup: bool = False,
    k: int | None = None,
    *,
    force: bool = False,
) -> dict[str, Path]:
    """Write ``NAME.tsv``, ``NAME.km`` and ``dict.km.txt`` (see the module doc) into ``out_dir`` from a
    units file of :func:`~spidrkit.extract` (``units.txt``/``.jsonl``). ``manifest``: the manifest or
    folder the units were extracted from (default: the ``inputs`` its sidecar names); ``k``: default the
    sidecar's. ``dedup`` collapses runs of repeated units (frame-level otherwise). Existing ``NAME.tsv`` /
    ``NAME.km`` are replaced only with ``force`` (``dict.km.txt`` is shared by the splits of one folder).
    Returns the paths."""
    if not name or "/" in name or name != name.strip():
        raise UnitsError(f"the split name must be a plain file name, got {name!r}")
    out = Path(out_dir)
    refuse_overwrite([out / f"{name}.tsv", out / f"{name}.km"], force, "units export")  # before any reading
    units = Path(units)
    table = read_units(units)
    info = read_sidecar(units) if sidecar_path(units).is_file() else {}
    k = _k_of(table, k, info, str(units))
    if manifest is None:
        manifest = info.get("inputs")
        if not isinstance(manifest, str) or not Path(manifest).exists():
            raise UnitsError(f"{units}: pass the manifest or folder the units were extracted from (--manifest); "
                             f"the sidecar names {manifest!r}")
    entries = resolve_inputs(manifest, progress=False)
    by_id = {e.fileid: e for e in entries}
    if extra := [u for u in table if u not in by_id]:
        raise UnitsError(f"{units}: {len(extra)} utterances are not in {manifest} (e.g. {extra[0]!r}): pass the "
                         "manifest they were extracted from")
    kept = [e for e in entries if e.fileid in table]
    if missing := [e.fileid for e in entries if e.fileid not in table]:
        warnings.warn(f"{len(missing)} utterances of the manifest have no units and are left out of {name}.tsv "
                      f"and {name}.km: {', '.join(missing[:5])}", stacklevel=2)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"tsv": out / f"{name}.tsv", "km": out / f"{name}.km", "dict": out / DICT_NAME}
    lines = []
    for e in kept:
        frames = table[e.fileid].frames()
        lines.append(" ".join(map(str, deduplicate(frames)[0] if dedup else frames)))
    write_manifest(kept, paths["tsv"])
    write_lines_atomic(paths["km"], lines)
    write_lines_atomic(paths["dict"], [f"{u} 1" for u in range(k)])
    provenance = {key: info.get(key) for key in ("model", "checkpoint_sha256", "layer", "unit_type", "frame_rate")}
    write_sidecar(paths["km"], format="km", units=str(units.resolve()), k=k, dedup=dedup,
                  num_utterances=len(kept), manifest=paths["tsv"].name, **provenance)
    return paths


def read_km(km: str | os.PathLike, tsv: str | os.PathLike | None = None) -> dict[str, Units]:
    """A ``.km`` file as ``{fileid: Units}``, the ids from the fairseq manifest beside it (``NAME.tsv``,
    or ``tsv``), in its order. Units of a de-duplicated export have no durations (fairseq keeps none)."""
    km = Path(km)
    tsv = Path(tsv) if tsv is not None else km.with_suffix(".tsv")
    if not km.is_file():
        raise UnitsError(f"no .km file at {km}")
    entries = read_manifest(tsv)
    lines = read_lines(km, UnitsError)
    if len(lines) != len(entries):
        raise UnitsError(f"{km}: {len(lines)} lines but {len(entries)} utterances in {tsv}: one line per "
                         "utterance of the manifest, in its order")
    return {e.fileid: Units(km_units(line, f"{km}:{i}")) for i, (e, line) in enumerate(zip(entries, lines), 1)}
