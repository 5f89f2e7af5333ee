"""Fuzzed readers of configs, logs and JSON inputs: pretraining and unit LM TOML configs, the metrics log
(``metrics.jsonl``, which ``evaluate plot-perplexity`` reads), the rows and sweep report of ``evaluate
slm-compare``, a unit LM run's vocabulary: a valid result or an InputError naming the file, never another
exception (``tests/fuzzing.py``)."""

from __future__ import annotations

import json
import tomllib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fuzzing import (
    BOM,
    FUZZ,
    JSON,
    JSON_NASTY,
    JSON_NASTY_LINES,
    TOML_NASTY,
    Scratch,
    mutated_bytes,
    mutated_records,
    mutated_tables,
    outcome,
    toml_text,
)
from spidrkit.config import Config, load_config
from spidrkit.config.reading import preset_path
from spidrkit.evaluation.slm.compare import CompareRow, read_rows, read_sweep, scatter_points
from spidrkit.io import read_metrics
from spidrkit.lm.config import LMConfig, load_lm_config
from spidrkit.lm.vocab import UnitVocab

# malformed inputs make readers warn (odd pickle protocols, conversions, stale settings): not the point here
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SCRATCH = Scratch()
TINY = preset_path("tiny").read_text()
LM_TINY = preset_path("lm_tiny").read_text()
SEEDS = (TINY, 'preset = "tiny"\nvariant = "dinosr"\n[optim]\nlr = 3e-4\n',
         'preset = "base_release"\n[dinosr.model]\nlayerdrop = 0.1\n[model]\nconv_kernels = [10, 3, 3]\n'
         "conv_strides = [5, 2, 2]\n")
LM_SEEDS = (LM_TINY, 'preset = "tiny"\n[optim]\nbetas = [0.9, 0.98]\n[train]\nseed = 3\n')
CONFIG_DOCS = mutated_tables(
    [tomllib.loads(s) for s in SEEDS], TOML_NASTY,
    ("model", "teacher", "masking", "optim", "data", "train", "dinosr", "spidr", "preset", "variant", "modle"),
    ("dim", "num_heads", "conv_kernels", "conv_strides", "lr", "betas", "beta0", "prob", "seed", "max_samples",
     "min_samples", "voice_warp", "milestone_minutes", "heads", "schedule", "model", "teacher", "layerdrop", "x"),
).map(toml_text)
LM_DOCS = mutated_tables(
    [tomllib.loads(s) for s in LM_SEEDS], TOML_NASTY, ("model", "lm", "optim", "train", "preset", "x"),
    ("dim", "num_heads", "context", "k", "valid_fraction", "batching", "lr", "betas", "schedule", "seed",
     "batch_size", "compile", "x"),
).map(toml_text)


@FUZZ
@given(data=mutated_bytes(SEEDS, CONFIG_DOCS))
@example(data=b'preset = "tiny"\nvariant = [1]\n')  # was TypeError (unhashable variant)
@example(data=b"[model]\ndim = " + b"[" * 3000)  # was RecursionError in tomllib
@example(data=b"[model]\ndim = 256 \xff\n")  # was UnicodeDecodeError
@example(data=BOM + b'preset = "tiny"\n')  # a BOM: was a TOML syntax error
def test_config_file(data):
    path = SCRATCH.write("config.toml", data)
    cfg = outcome(lambda: load_config(path), path)
    assert cfg is None or isinstance(cfg, Config)


@FUZZ
@given(data=mutated_bytes(LM_SEEDS, LM_DOCS))
@example(data=b"[optim]\nbetas = [0.9, " + b"[" * 3000)  # was RecursionError
@example(data=b"preset = " + b"9" * 5000 + b"\n")  # was ValueError (digits limit; found by a 4,000-example run)
def test_lm_config_file(data):
    path = SCRATCH.write("lm.toml", data)
    cfg = outcome(lambda: load_lm_config(path), path)
    assert cfg is None or isinstance(cfg, LMConfig)


METRIC_RECORDS = mutated_records(
    ({"step": 1, "loss": 2.5, "codebook_ppl": [2.0, 3.0], "prediction_ppl": [3.0, 4.0], "split": "train"},
     {"step": 2, "split": "valid", "loss": 2.0, "format_version": 1}),
    st.one_of(JSON_NASTY, JSON), ("lr",))
METRICS = st.lists(st.one_of(METRIC_RECORDS.map(json.dumps), METRIC_RECORDS.map(json.dumps), JSON_NASTY_LINES),
                   min_size=1, max_size=4).map(lambda lines: "".join(x + "\n" for x in lines))
METRIC_SEEDS = ('{"step": 1, "loss": 2.5, "split": "train"}\n{"step": 2, "loss": 2.0, "split": "valid"}\n{"step": 3',)


@FUZZ
@given(data=mutated_bytes(METRIC_SEEDS, METRICS))
@example(data=b'{"step": 1}\n\xff\n{"step": 2}\n')  # was UnicodeDecodeError
@example(data=b"[" * 3000 + b'\n{"step": 2}\n')  # was RecursionError
def test_metrics_log(data):
    path = SCRATCH.write("run/metrics.jsonl", data)
    records = outcome(lambda: read_metrics(path), path)
    assert records is None or all(isinstance(r, dict) and "format_version" in r for r in records)


# --- the other JSON inputs: slm-compare rows and sweep report, an LM run's vocabulary ---------------------------
ROWS = mutated_records(({"label": "a", "units": "codebook:6", "lm": "runs/lm", "encoder": "ckpt.pt"},
                        {"label": "b", "units": "phones", "lm": "runs/lm2", "layer": None, "seed": 1}),
                       st.one_of(JSON_NASTY, JSON), ("report", "extra"))
ROW_FILES = st.one_of(st.lists(st.one_of(ROWS, ROWS, JSON), max_size=3).map(json.dumps), JSON_NASTY_LINES)
SWEEPS = mutated_records(({"results": {"layers": {"6": {"abx_within": 5.0, "abx_across": 7.0}},
                                       "units": {"codebook L6": {"pnmi": 0.4}}}},),
                         st.one_of(JSON_NASTY, JSON), ("layers",))
COMPARED = [CompareRow("a", "codebook:6", "lm", "ckpt.pt"), CompareRow("b", "kmeans:C.npy", "lm", "ckpt.pt", 6),
            CompareRow("c", "codebook:2", "lm", "mfcc")]


@FUZZ
@given(data=ROW_FILES)
@example(data='[{"label": "a", "units": 6}]')  # a number for units: was passed on (AttributeError later)
@example(data="[" * 3000)  # was RecursionError
def test_compare_rows(data):
    path = SCRATCH.write("rows.json", data)
    rows = outcome(lambda: read_rows(path), path)
    assert rows is None or all(isinstance(r, CompareRow) and isinstance(r.label, str) for r in rows)


@FUZZ
@given(data=st.one_of(SWEEPS.map(json.dumps), JSON.map(json.dumps), JSON_NASTY_LINES))
@example(data='{"results": {"layers": [1, 2]}}')  # was AttributeError ('list' object has no attribute 'get')
def test_sweep_report(data):
    path = SCRATCH.write("sweep.json", data)
    points = outcome(lambda: scatter_points(COMPARED, {}, read_sweep(path)), path)
    assert points is None or all(p["abx_across"] is None or isinstance(p["abx_across"], float) for p in points)


VOCABS = mutated_records(({"k": 8, "dedup": True, "pad": 0, "bos": 1, "eos": 2, "offset": 3},), JSON_NASTY)


@FUZZ
@given(data=st.one_of(VOCABS.map(json.dumps), JSON_NASTY_LINES))
@example(data='{"k": "x", "pad": 0, "bos": 1, "eos": 2, "offset": 3}')  # was ValueError
@example(data="[1]")  # was AttributeError
def test_lm_vocabulary(data):
    path = SCRATCH.write("lmrun/vocab.json", data)
    vocab = outcome(lambda: UnitVocab.load(path.parent), path)
    assert vocab is None or (type(vocab.k) is int and vocab.k >= 1)
