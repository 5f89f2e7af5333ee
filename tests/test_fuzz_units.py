"""Fuzzed readers of units and arrays: units files (text, JSONL), fairseq ``.km`` (with its ``.tsv``, and as the
unit LM reads it), sidecars, k-means centroids (``.npy``) and feature files (``.npy``, ``.pt``): a valid
result or an InputError naming the file, never another exception (``tests/fuzzing.py``)."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from fuzzing import (
    FUZZ,
    JSON,
    JSON_NASTY,
    JSON_NASTY_LINES,
    Scratch,
    mutate_npy,
    mutated_bytes,
    mutated_records,
    outcome,
)
from spidrkit.extraction.features_io import load_features
from spidrkit.extraction.kmeans import KMeansModel
from spidrkit.extraction.unit_exports import read_km
from spidrkit.extraction.units import Units, read_units
from spidrkit.io import read_sidecar
from spidrkit.lm.data import read_corpus

# malformed inputs make readers warn (odd pickle protocols, conversions, stale settings): not the point here
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SCRATCH = Scratch()
MAX_INT64 = 2**63 - 1
TEXT_SEEDS = ("u1 1 2 3 3\nu2 0\nempty\n", "a/b 1*2 2*3 3*1\nc 7*1\n")
JSONL_SEEDS = ('{"utt": "u1", "units": [1, 2, 3]}\n{"utt": "u2", "units": [4, 5], "durations": [2, 1]}\n',)
UNIT_RECORDS = mutated_records(({"utt": "u1", "units": [1, 2, 3]}, {"utt": "u2", "units": [4], "durations": [2]}),
                               st.one_of(JSON_NASTY, JSON_NASTY, JSON), ("extra",))
JSONL_LINES = st.lists(st.one_of(UNIT_RECORDS.map(json.dumps), UNIT_RECORDS.map(json.dumps), JSON_NASTY_LINES),
                       min_size=1, max_size=3).map(lambda lines: "".join(x + "\n" for x in lines))
KM_SEEDS = ("1 2 3\n4 5\n", "0 0 0 1\n\n")
KM_TSV = "/data\na.wav\t16000\nb.wav\t32000\n"
SIDECAR = mutated_records(({"k": 8, "layer": 6, "format": "txt", "sidecar_version": 1},), JSON_NASTY, ("dim",))
SIDECARS = st.one_of(SIDECAR.map(json.dumps), JSON.map(json.dumps), JSON_NASTY_LINES)


def _check_units(table: dict[str, Units] | None) -> None:
    for utt, u in (table or {}).items():
        assert isinstance(utt, str) and utt
        assert all(type(x) is int and 0 <= x <= MAX_INT64 for x in u.units)
        assert u.durations is None or (len(u.durations) == len(u.units)
                                       and all(type(n) is int and 1 <= n <= MAX_INT64 for n in u.durations))


@FUZZ
@given(data=mutated_bytes(TEXT_SEEDS))
@example(data=b"u 1 -2 3\n")  # negative units were accepted
@example(data=b"u 1 " + b"9" * 30 + b"\n")  # units past int64 were accepted
@example(data=b"u 1*" + b"9" * 20 + b"\n")  # durations past int64 were accepted
@example(data=b"u 1 \xff\n")  # was UnicodeDecodeError
def test_units_text(data):
    path = SCRATCH.write("units.txt", data)
    _check_units(outcome(lambda: read_units(path), path))


@FUZZ
@given(data=mutated_bytes(JSONL_SEEDS, JSONL_LINES))
@example(data=b'{"utt": "u", "units": [[1], [2, 3]]}\n')  # ragged: was ValueError from numpy
@example(data=b'{"utt": "u", "units": [' + b"9" * 5000 + b"]}\n")  # was ValueError (digits limit)
@example(data=b'{"utt": "u", "units": [' * 1000 + b"\n")  # was RecursionError
@example(data=b'{"utt": "u", "units": [18446744073709551615]}\n')  # uint64: read as -1
def test_units_jsonl(data):
    path = SCRATCH.write("units.jsonl", data)
    _check_units(outcome(lambda: read_units(path), path))


@FUZZ
@given(data=mutated_bytes(KM_SEEDS))
@example(data=b"1 2\n3 " + b"9" * 5000 + b"\n")  # was ValueError (digits limit) in the unit LM's reader
@example(data=b"1 -2\n3\n")  # negative units were accepted
def test_km(data):
    tsv = SCRATCH.write("train.tsv", KM_TSV)
    km = SCRATCH.write("train.km", data)
    _check_units(outcome(lambda: read_km(km, tsv), km))
    corpus = outcome(lambda: read_corpus([km]), km)
    assert corpus is None or all(all(type(x) is int and 0 <= x <= MAX_INT64 for x in u) for _, u in corpus[0])


@FUZZ
@given(units=mutated_bytes(TEXT_SEEDS), sidecar=SIDECARS)
@example(units=b"u 1*4611686018427387904\n", sidecar="{}")  # 2**62 frames: was MemoryError when expanded
@example(units=b"u 1\n", sidecar="[" * 3000)  # was RecursionError
def test_lm_corpus(units, sidecar):
    """The unit LM's corpus: units expanded to frames, ``k`` from the sidecar."""
    path = SCRATCH.write("lm/units.txt", units)
    side = SCRATCH.write("lm/units.txt.json", sidecar)
    result = outcome(lambda: read_corpus([path]), path, side)
    if result is not None:
        corpus, k = result
        assert k is None or (type(k) is int and k >= 1)
        assert all(all(type(x) is int and x >= 0 for x in u) for _, u in corpus)


@FUZZ
@given(sidecar=SIDECARS)
@example(sidecar="[1, 2]")  # was ValueError
@example(sidecar='{"k": ' * 1000)  # was RecursionError
def test_sidecar(sidecar):
    out = SCRATCH.write("side/units.txt", b"u 1\n")
    side = SCRATCH.write("side/units.txt.json", sidecar)
    record = outcome(lambda: read_sidecar(out), side)
    assert record is None or (isinstance(record, dict) and "sidecar_version" in record)


# --- arrays: centroids and features ----------------------------------------------------------------------------
ARRAYS = st.sampled_from((
    np.arange(12, dtype=np.float32).reshape(4, 3), np.ones((2, 5), np.float64), np.ones((3, 2), np.float16),
    np.zeros((0, 3), np.float32), np.ones(4, np.float32), np.ones((2, 2, 2), np.float32),
    np.array([[np.nan, 1.0], [np.inf, 0.0]], np.float32), np.ones((2, 3), np.int32), np.ones((2, 2), np.complex64),
    np.ones((2, 2), bool), np.array([["a", "b"]]), np.asfortranarray(np.ones((3, 2), np.float32)),
    np.zeros((2,), dtype=[("a", "<f4"), ("b", "<i4")]), np.array([[1.0, None]], dtype=object),
))


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=a.dtype == object)
    return buf.getvalue()


def _other(kind: str) -> bytes:
    buf = io.BytesIO()
    if kind == "npz":
        np.savez(buf, c=np.ones((2, 2), np.float32))
    elif kind == "torch":
        torch.save({"centroids": torch.ones(2, 2)}, buf)
    elif kind == "tensor":
        torch.save(torch.ones(3, 2), buf)
    elif kind == "pickle":
        pickle.dump([1.0, 2.0], buf)
    return buf.getvalue()


ARRAY_FILES = st.one_of(
    ARRAYS.map(_npy), ARRAYS.map(_npy).flatmap(mutate_npy),
    st.sampled_from(("npz", "torch", "tensor", "pickle")).map(_other).flatmap(mutate_npy), st.binary(max_size=200),
)
CENTROID_SIDECARS = st.one_of(st.none(), mutated_records(({"k": 4, "dim": 3, "layer": 6},), JSON_NASTY).map(json.dumps),
                              JSON_NASTY_LINES)


@FUZZ
@given(data=ARRAY_FILES, sidecar=CENTROID_SIDECARS)
@example(data=b"PK\x03\x04" + b"\0" * 40, sidecar=None)  # a broken zip: was zipfile.BadZipFile
@example(data=_npy(np.ones((4, 3), np.float32)).replace(b"(4, 3)", b"(9999999999, 3)"), sidecar=None)
@example(data=_npy(np.ones((4, 3), np.float32)), sidecar="[1]")  # was ValueError from read_sidecar
@example(data=_npy(np.full((2, 5), -1e300)), sidecar=None)  # float64 past float32: loaded as -inf (a 10,000 run)
def test_centroids(data, sidecar):
    path = SCRATCH.write("c/C.npy", data)
    side = path.with_name("C.npy.json")
    side.unlink(missing_ok=True)
    if sidecar is not None:
        side = SCRATCH.write("c/C.npy.json", sidecar)
    model = outcome(lambda: KMeansModel.load(path), path, side)
    if model is not None:
        c = model.centroids
        assert c.ndim == 2 and c.shape[0] >= 1 and c.dtype == torch.float32 and bool(torch.isfinite(c).all())


@FUZZ
@given(data=ARRAY_FILES, suffix=st.sampled_from(("npy", "pt")))
def test_feature_file(data, suffix):
    path = SCRATCH.write(f"f/x.{suffix}", data)
    x = outcome(lambda: load_features(path), path)
    assert x is None or (isinstance(x, torch.Tensor) and x.ndim == 2)
