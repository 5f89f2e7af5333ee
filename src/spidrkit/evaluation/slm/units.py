"""The units an sLM is trained and scored on, whatever their source (``docs/design.md``, "Unit sources").

One :class:`UnitSpec` per source, so every LM of a comparison goes through the same scorer:

- ``codebook:L`` -- the codebook predictions of layer ``L`` of a SpidR/DinoSR encoder (``k``: its codebook
  size);
- ``kmeans:FILE`` -- k-means centroids (``spidrkit kmeans fit``) applied to a layer's features (the layer
  from the centroids' sidecar or ``--layers``), or, with the encoder ``mfcc``, to the 39-d MFCC of
  :mod:`spidrkit.encoders.mfcc` (the floor; layer 0);
- ``phones`` -- the gold phones of flite's alignments (the topline, no encoder): a benchmark split's
  ``SPLIT_phones.txt`` (beside ``gold.csv`` or beside the split folder), a corpus's ``SPLIT_phones.txt``
  for the LM's training. One phone per aligned interval, mapped through the fixed inventory
  :data:`PHONE_INVENTORY` (the 39 CMUdict ARPAbet phones, sorted: ``AA`` -> 0 ... ``ZH`` -> 38);
  silences (``SIL``, ``sp``... :data:`spidrkit.data.corpora.alignments.SILENCES`) are dropped, so ``k = 39``.

:func:`corpus_units` / :func:`write_corpus_units` give the units of a corpus split for ``spidrkit lm
train`` (written with :func:`spidrkit.extraction.units.write_units`, the sidecar stating ``k``);
:func:`shuffle_units` is the shuffled-units control (each utterance's units permuted, seeded; encoder units
de-duplicated first, phones as they are).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spidrkit.data.corpora.alignments import read_alignments
from spidrkit.data.corpora.manifest import evenly_spaced_files
from spidrkit.data.corpora.phones import SILENCES
from spidrkit.data.synth.flite import PHONES
from spidrkit.encoders.mfcc import SignalEncoder
from spidrkit.errors import InputError
from spidrkit.extraction.unit_spec import parse_unit_syntax
from spidrkit.lm.vocab import UnitVocab
from spidrkit.lm.vocab import dedup as dedup_units

FILES_PER_CHUNK = 64
MFCC = "mfcc"
PHONE_INVENTORY: tuple[str, ...] = tuple(p for p in PHONES if p not in SILENCES)
PHONE_ID = {p: i for i, p in enumerate(PHONE_INVENTORY)}


class SlmUnitsError(InputError):
    """A units specification that does not fit the encoder or the LM."""


@dataclass
class UnitSpec:
    """Which units: ``codebook`` predictions of ``layer``, ``kmeans`` centroids applied to ``layer`` (0: the
    MFCC), or the gold ``phones``."""

    kind: str
    layer: int
    kmeans: Any = None  # KMeansModel
    k: int | None = None
    source: str = ""

    def describe(self) -> str:
        if self.kind == "phones":
            return "phones"
        if self.kind == "codebook":
            return f"codebook:{self.layer}"
        return f"kmeans:{self.source} ({'MFCC' if self.layer == 0 else f'layer {self.layer}'})"


def parse_units(text: str, layer: int | None = None, encoder: str | None = None) -> UnitSpec:
    """``phones``, ``codebook:L`` or ``kmeans:FILE`` (the layer from the centroids' sidecar, else ``layer``;
    none with ``encoder="mfcc"``)."""
    syntax = parse_unit_syntax(text, error=SlmUnitsError)
    if syntax.kind == "phones":
        return UnitSpec("phones", 0, k=len(PHONE_INVENTORY), source=text)
    if syntax.kind == "codebook":
        if syntax.layer is None and layer is None:
            raise SlmUnitsError(f"--units {text}: name the layer, as in codebook:6 (or pass --layers N)")
        if layer is not None and syntax.layer not in (None, layer):
            raise SlmUnitsError(f"--units {text} names layer {syntax.layer}, --layers {layer}: give one")
        if encoder == MFCC:
            raise SlmUnitsError("--model mfcc has no codebook: use --units kmeans:FILE (centroids fitted on MFCC)")
        return UnitSpec("codebook", syntax.layer or layer, source=text)
    return _kmeans_spec(syntax.path, layer, encoder)


def _kmeans_spec(path: str, layer: int | None, encoder: str | None) -> UnitSpec:
    """``kmeans:FILE``: the centroids, and the layer they were fitted on (their sidecar's, else ``layer``)."""
    from spidrkit.extraction.kmeans import KMeansModel

    km = KMeansModel.load(path)
    fitted = km.info.get("layer")
    if encoder == MFCC:
        if fitted is not None:
            raise SlmUnitsError(f"{path}: the centroids were fitted on layer {fitted} of "
                                f"{km.info.get('model') or 'an encoder'}, not on MFCC: pass that --model")
        return UnitSpec("kmeans", 0, km, km.k, path)
    if km.info.get("model") == MFCC:
        raise SlmUnitsError(f"{path}: the centroids were fitted on MFCC: pass --model mfcc")
    if layer is None and fitted is None:
        raise SlmUnitsError(f"{path}: the centroids' sidecar names no layer; pass --layers N")
    if layer is not None and fitted is not None and int(fitted) != layer:
        raise SlmUnitsError(f"{path}: the centroids were fitted on layer {fitted}, not --layers {layer}")
    return UnitSpec("kmeans", int(layer if layer is not None else fitted), km, km.k, path)


def load_encoder(name: str | None, units: UnitSpec, device: str = "cpu", *, variant: str | None = None,
                 normalization: str = "auto") -> tuple[Any, str]:
    """``(encoder, model id)``: none for ``phones``, :class:`~spidrkit.encoders.mfcc.SignalEncoder` for ``mfcc``, else
    :func:`spidrkit.checkpoints.load` with ``variant`` and ``normalization`` (random weights only on an explicit
    ``random:PRESET``)."""
    if (variant is not None or normalization != "auto") and (units.kind == "phones" or name == MFCC):
        raise SlmUnitsError(f"--variant / --normalization apply to a model encoder, not to "
                            f"{'gold phones' if units.kind == 'phones' else 'mfcc'}: leave them out")
    if units.kind == "phones":
        return None, "gold phones"
    if name is None:
        raise SlmUnitsError(f"--units {units.source} needs --model (a checkpoint, a published model, mfcc, or "
                            "random:PRESET)")
    if name == MFCC:
        return SignalEncoder("mfcc"), MFCC
    from spidrkit.checkpoints import load

    loaded = load(name, device=device, variant=variant, normalization=normalization)
    return loaded.model, loaded.info.model_id


def check_units(spec: UnitSpec, encoder: Any, vocab: UnitVocab) -> None:
    """The layer must exist (a codebook layer for ``codebook``), k-means centroids must have the encoder's
    width, and the units' number must be the LM's ``k``: clear errors, before any extraction."""
    k = spec.k
    if spec.kind == "codebook":
        if not callable(getattr(encoder, "codebook_predictions", None)):
            raise SlmUnitsError("--units codebook:L needs a SpidR/DinoSR encoder (codebook predictions); "
                                "use kmeans:FILE")
        layers = list(getattr(encoder, "target_layers", ()))
        if spec.layer not in layers:
            raise SlmUnitsError(f"--units codebook:{spec.layer}: the encoder has codebooks on layers {layers}")
        k = getattr(getattr(encoder, "cfg", None), "codebook_size", None)
    elif spec.kind == "kmeans":
        if not isinstance(encoder, SignalEncoder) and not 1 <= spec.layer <= encoder.num_layers:
            raise SlmUnitsError(f"{spec.source}: layer {spec.layer} is not one of the encoder's layers "
                                f"1..{encoder.num_layers}")
        if spec.kmeans.dim != encoder.dim:
            raise SlmUnitsError(f"{spec.source}: centroids of width {spec.kmeans.dim}, the encoder's features "
                                f"have {encoder.dim}")
    if k is not None and k != vocab.k:
        raise SlmUnitsError(f"the units {spec.describe()} take {k} values but the LM was trained on k = {vocab.k}")


# ------------------------------------------------------------------------------------------------ phones
def phone_ids(labels: Sequence[str], where: str = "an utterance") -> list[int]:
    """Phone labels -> ids of :data:`PHONE_INVENTORY`, silences dropped (stress digits ignored)."""
    out = []
    for label in labels:
        if label in SILENCES:
            continue
        i = PHONE_ID.get(label.rstrip("012").upper())
        if i is None:
            raise SlmUnitsError(f"{where}: phone {label!r} is not in the inventory ({' '.join(PHONE_INVENTORY)})")
        out.append(i)
    return out


def read_phone_units(path: str | os.PathLike) -> dict[str, list[int]]:
    """``{utt: phone ids}`` of an alignment file (``utt onset offset phone [speaker]``)."""
    return {utt: phone_ids([iv.label for iv in ivs], f"{path}, {utt}") for utt, ivs in read_alignments(path).items()}


def split_phones_file(folder: str | os.PathLike, split: str) -> Path:
    """``SPLIT_phones.txt`` in a split's folder or beside it (the synthetic benchmarks' place)."""
    folder = Path(folder)
    for candidate in (folder / f"{split}_phones.txt", folder.parent / f"{split}_phones.txt"):
        if candidate.is_file():
            return candidate
    raise SlmUnitsError(f"--units phones: no {split}_phones.txt in {folder} or {folder.parent} (the gold phone "
                        "alignments; `spidrkit data synth-slm` writes them)")


def phone_units_of(folder: str | os.PathLike, split: str, names: Sequence[str]) -> list[list[int]]:
    """The gold phone ids of each file ``names`` (wav stems) of a split."""
    path = split_phones_file(folder, split)
    table = read_phone_units(path)
    missing = [n for n in names if n not in table]
    if missing:
        raise SlmUnitsError(f"{path}: no phones of {len(missing)} files, e.g. {missing[0]!r}")
    return [table[n] for n in names]


# ------------------------------------------------------------------------------------- audio -> units
def extract_units(encoder: Any, spec: UnitSpec, paths: Sequence[Path], names: Sequence[str],
                  progress: Callable[[int], None] | None = None) -> list[list[int]]:
    """Frame-level units of every audio (raw, not de-duplicated: the LM's vocabulary does that)."""
    from spidrkit.data.corpora.audio import load_audio
    from spidrkit.extraction.compute import compute, model_device

    mfcc = isinstance(encoder, SignalEncoder)
    kmeans = spec.kmeans.to("cpu" if mfcc else model_device(encoder)) if spec.kmeans is not None else None
    out: list[list[int]] = []
    for start in range(0, len(paths), FILES_PER_CHUNK):
        chunk = range(start, min(start + FILES_PER_CHUNK, len(paths)))
        wavs = [load_audio(paths[i], encoder.sample_rate) for i in chunk]
        if mfcc:
            out += [kmeans.predict(encoder.features(w)).tolist() for w in wavs]
        else:
            res = compute(encoder, wavs, [spec.layer], units=spec.kind, kmeans=kmeans,
                          names=[names[i] for i in chunk])
            out += [r[spec.layer].tolist() for r in res]
        if progress is not None:
            progress(len(out))
    return out


def spread(entries: Sequence[Any], max_files: int | None) -> list[Any]:
    """At most ``max_files`` of ``entries`` (manifest entries or utterance ids), the sweep's selection
    (:func:`~spidrkit.data.corpora.manifest.evenly_spaced_files`)."""
    if max_files is not None and max_files < 1:
        raise SlmUnitsError(f"--max-files {max_files}: give a number of utterances >= 1")
    return evenly_spaced_files(entries, max_files)


def corpus_entries(corpus: str | os.PathLike, split: str, max_files: int | None = None) -> list[Any]:
    """The manifest entries of ``corpus/SPLIT.csv``, at most ``max_files`` of them (:func:`spread`)."""
    from spidrkit.data.corpora.manifest import read_manifest

    return spread(read_manifest(Path(corpus) / f"{split}.csv"), max_files)


@contextlib.contextmanager
def files_bar(total: int, desc: str, enabled: bool = True) -> Iterator[Callable[[int], None] | None]:
    """A progress bar over ``total`` files (:func:`spidrkit.progress.progress_bar`: a line in a log), as the
    ``progress`` callable (files done so far) of :func:`corpus_units`, :func:`write_corpus_units`,
    :func:`fit_corpus_kmeans` and of the LM scoring of ``evaluate slm``; ``None`` when not ``enabled``, so the
    callee knows that nothing is shown (:func:`fit_corpus_kmeans` then shows no k-means bars either)."""
    from spidrkit.progress import progress_bar

    with progress_bar(total, desc, "file", enabled) as bar:

        def tell(done: int) -> None:
            bar.update(done - bar.n)
            if done >= total:  # ended when the last file is done, before whatever the caller does next
                bar.close()

        yield tell if enabled else None


def corpus_units(corpus: str | os.PathLike, split: str, spec: UnitSpec, encoder: Any = None,
                 progress: Callable[[int], None] | None = None, max_files: int | None = None) -> dict[str, list[int]]:
    """``{utt: units}`` of a corpus split: ``corpus/SPLIT_phones.txt`` for ``phones``, else the units of the
    wavs of ``corpus/SPLIT.csv`` (a manifest) by ``encoder``; at most ``max_files`` utterances (:func:`spread`)."""
    corpus = Path(corpus)
    if spec.kind == "phones":
        table = read_phone_units(split_phones_file(corpus, split))
        return {u: table[u] for u in spread(list(table), max_files)}
    entries = corpus_entries(corpus, split, max_files)
    units = extract_units(encoder, spec, [Path(e.path) for e in entries], [e.fileid for e in entries], progress)
    return {e.fileid: u for e, u in zip(entries, units)}


def shuffle_units(units: Mapping[str, Sequence[int]], seed: int = 0, dedup: bool = True) -> dict[str, list[int]]:
    """The shuffled-units control: each utterance's units (de-duplicated first when ``dedup``, as the LM sees
    them) permuted, seeded by ``(seed, utterance id)`` so the result does not depend on the order."""
    out = {}
    for utt, seq in units.items():
        seq = dedup_units(seq) if dedup else [int(u) for u in seq]
        digest = int.from_bytes(hashlib.sha256(f"{seed}:{utt}".encode()).digest()[:8], "little")
        order = np.random.default_rng(digest).permutation(len(seq))
        out[utt] = [seq[i] for i in order]
    return out


@dataclass(frozen=True)
class CorpusSplit:
    """A split of a corpus folder (``CORPUS/SPLIT.csv``, a manifest; ``SPLIT_phones.txt`` for phones), at most
    ``max_files`` of its utterances, evenly spaced."""

    corpus: str | os.PathLike
    split: str = "train"
    max_files: int | None = None


def write_corpus_units(out: str | os.PathLike, source: CorpusSplit, spec: UnitSpec, encoder: Any = None, *,
                       shuffle_seed: int | None = None, model: str = "",
                       progress: Callable[[int], None] | None = None, force: bool = False) -> Path:
    """The units of a corpus split as a units file for ``spidrkit lm train`` (sidecar: ``k``, the source,
    ``shuffled``); ``shuffle_seed``: the shuffled-units control of :func:`shuffle_units`. An existing ``out``
    is replaced only with ``force`` (checked before any unit is computed)."""
    from spidrkit.extraction.units import write_units
    from spidrkit.io import refuse_overwrite

    refuse_overwrite([out], force, "lm units")

    corpus, split, max_files = source.corpus, source.split, source.max_files
    if spec.kind != "phones":
        check_units(spec, encoder, UnitVocab(spec.k or getattr(getattr(encoder, "cfg", None), "codebook_size", 1)))
    units = corpus_units(corpus, split, spec, encoder, progress, max_files)
    if shuffle_seed is not None:
        units = shuffle_units(units, shuffle_seed, dedup=spec.kind != "phones")
    k = spec.k or int(getattr(getattr(encoder, "cfg", None), "codebook_size", 0)) or None
    extra: dict[str, Any] = {"phones": list(PHONE_INVENTORY), "silences": "dropped"} if spec.kind == "phones" else {}
    return write_units(out, units, force=force, k=k, source=spec.describe(), layer=spec.layer or None, model=model,
                       corpus=str(corpus), split=split, shuffled=shuffle_seed is not None,
                       shuffle_seed=shuffle_seed, **extra)


def fit_corpus_kmeans(out: str | os.PathLike, source: CorpusSplit, encoder: Any, layer: int, k: int, *,
                      seed: int = 0, model: str = "", progress: Callable[[int], None] | None = None) -> Path:
    """Fit ``k`` centroids (:func:`spidrkit.extraction.kmeans.fit_kmeans`) on the features of layer ``layer``
    (or on MFCC with ``SignalEncoder("mfcc")``, layer 0) of the wavs of ``source`` (:func:`spread`);
    saved to ``out`` with a sidecar naming the layer, so ``kmeans:OUT`` finds it. ``progress`` gets the number of
    files read so far. An existing ``out`` is REPLACED: its caller decides before the work (``spidrkit kmeans
    fit-corpus`` refuses one without ``--force``; the parameter limit leaves no room for a ``force`` here)."""
    from spidrkit.data.corpora.audio import load_audio
    from spidrkit.extraction.compute import compute
    from spidrkit.extraction.kmeans import fit_kmeans

    entries = corpus_entries(source.corpus, source.split, source.max_files)
    feats = {}
    for start in range(0, len(entries), FILES_PER_CHUNK):
        chunk = entries[start : start + FILES_PER_CHUNK]
        wavs = [load_audio(e.path, encoder.sample_rate) for e in chunk]
        if isinstance(encoder, SignalEncoder):
            feats.update({e.fileid: encoder.features(w) for e, w in zip(chunk, wavs)})
        else:
            res = compute(encoder, wavs, [layer], names=[e.fileid for e in chunk])
            feats.update({e.fileid: r[layer] for e, r in zip(chunk, res)})
        if progress is not None:
            progress(len(feats))
    info = {"model": model or getattr(encoder, "name", ""), "fit_files": len(entries)}
    if not isinstance(encoder, SignalEncoder):
        info["layer"] = layer
    # the k-means++ seeding and Lloyd iterations show their own bars when the files did
    return fit_kmeans(feats, k=k, seed=seed, progress=progress is not None, **info).save(out, force=True)
