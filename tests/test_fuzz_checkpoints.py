"""Fuzzed checkpoint readers: ``.safetensors`` headers (the length prefix, the tensor entries and the metadata
with its stored config), ``torch.save`` files and the ``config.json`` of a model directory: a valid result or
an InputError naming the file, never another exception (``tests/fuzzing.py``)."""

from __future__ import annotations

import io
import json
import struct

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from safetensors.torch import save as save_safetensors

from fuzzing import FUZZ, JSON, JSON_NASTY, TOML_NASTY, Scratch, mutate_npy, mutated_records, mutated_tables, outcome
from spidrkit.checkpoints import load_checkpoint
from spidrkit.checkpoints.native import DIR_CONFIG, DIR_WEIGHTS
from spidrkit.config import Config, load_config

# malformed inputs make readers warn (odd pickle protocols, conversions, stale settings): not the point here
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SCRATCH = Scratch()


def _dumps(value: object) -> str:
    return json.dumps(value, default=str)  # (datetimes of the TOML values as text)


CONFIG = load_config("tiny").to_dict()
CONFIG_DICTS = mutated_tables([CONFIG], TOML_NASTY, ("model", "teacher", "optim", "data", "variant", "x"),
                              ("dim", "num_heads", "conv_kernels", "conv_strides", "codebook_size", "lr", "x"))
TENSOR = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
TENSORS = mutated_records(
    (TENSOR, {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]}),
    st.one_of(st.sampled_from(("F16", "BF16", "F64", "I8", "U8", "BOOL", "F8_E4M3", "X", "", "f32")), JSON_NASTY,
              st.lists(st.integers(-(2**64), 2**64), max_size=3)))
META = {"format": "spidrkit", "version": "1", "config": json.dumps(CONFIG), "step": "10"}
METAS = mutated_records((META, {"format": "pt"}), st.one_of(  # safetensors metadata: text values only
    CONFIG_DICTS.map(_dumps), JSON_NASTY.map(_dumps), st.sampled_from(("x", "", "-1", "1e3", "99" * 40))),
    ("extra",))


def _safetensors(header: dict, data: bytes, length: int | None = None) -> bytes:
    text = _dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


@st.composite
def safetensors_files(draw) -> bytes:
    """A small .safetensors file whose header has a tensor entry or the metadata edited, a wrong length prefix,
    or edited bytes."""
    header = {"w": draw(st.one_of(st.just(TENSOR), TENSORS)), "__metadata__": draw(st.one_of(st.just(META), METAS))}
    if draw(st.integers(0, 3)) == 0:
        header["b"] = draw(TENSORS)
    if draw(st.integers(0, 5)) == 0:
        header["__metadata__"] = draw(JSON_NASTY)
    length = draw(st.one_of(st.none(), st.none(), st.sampled_from((0, 1, 7, 2**63, 2**64 - 1, 10**8))))
    offsets = [t.get("data_offsets") for t in header.values() if isinstance(t, dict)]
    ends = [o[-1] for o in offsets if isinstance(o, list) and o and type(o[-1]) is int and 0 <= o[-1] < 10**6]
    size = draw(st.one_of(st.just(max(ends, default=16)), st.sampled_from((16, 24, 0, 15, 1000))))
    data = _safetensors(header, b"\0" * size, length)
    return draw(mutate_npy(data)) if draw(st.integers(0, 3)) == 0 else data


def _torch_file(blob: object) -> bytes:
    buf = io.BytesIO()
    torch.save(blob, buf)
    return buf.getvalue()


TORCH_BLOBS = st.one_of(
    mutated_records(({"format": "spidrkit", "version": 1, "config": CONFIG, "model": {"w": torch.ones(2)},
                      "step": 3},), st.one_of(CONFIG_DICTS, JSON_NASTY, JSON), ("cfg",)),
    CONFIG_DICTS.map(lambda c: {"format": "spidrkit", "version": 1, "config": c, "model": {}}),
    JSON_NASTY,
)
TORCH_FILES = st.one_of(TORCH_BLOBS.map(_torch_file), TORCH_BLOBS.map(_torch_file).flatmap(mutate_npy))


def _check(result) -> None:
    if result is not None:
        cfg, sd, _ = result
        assert isinstance(cfg, Config) and all(isinstance(v, torch.Tensor) for v in sd.values())


@FUZZ
@given(data=safetensors_files())
@example(data=_safetensors({"w": TENSOR, "__metadata__": {**META, "version": "x"}}, b"\0" * 16))  # was ValueError
@example(data=_safetensors({"w": TENSOR, "__metadata__": {**META, "step": "1.5"}}, b"\0" * 16))  # was ValueError
@example(data=_safetensors({"w": TENSOR, "__metadata__": {**META, "config": "[" * 3000}}, b"\0" * 16))  # Recursion
@example(data=_safetensors({"w": TENSOR, "__metadata__": {**META, "config": "[1]"}}, b"\0" * 16))
def test_safetensors_checkpoint(data):
    path = SCRATCH.write("ckpt.safetensors", data)
    _check(outcome(lambda: load_checkpoint(path), path))


@FUZZ
@given(data=TORCH_FILES)
@example(data=_torch_file({"format": "spidrkit", "version": "x", "config": CONFIG, "model": {}}))  # was ValueError
@example(data=_torch_file({"format": "spidrkit", "version": [1], "config": CONFIG, "model": {}}))  # was TypeError
def test_torch_checkpoint(data):
    path = SCRATCH.write("ckpt.pt", data)
    _check(outcome(lambda: load_checkpoint(path), path))


DIR_CONFIGS = mutated_records(({"format": "spidrkit", "version": 1, "variant": "spidr", "config": CONFIG,
                                "source": {}, "step": 5},), st.one_of(CONFIG_DICTS, JSON_NASTY, JSON), ("model",))
WEIGHTS = save_safetensors({"w": torch.ones(2, 2)}, metadata={"format": "pt"})


@FUZZ
@given(config=st.one_of(DIR_CONFIGS.map(_dumps), st.sampled_from(("[" * 3000, "\udcff", '{"format": "spidrkit"'))))
@example(config=json.dumps({"format": "spidrkit", "version": "x", "config": CONFIG}))  # was ValueError
def test_model_directory(config):
    folder = SCRATCH.root / "model"
    SCRATCH.write(f"model/{DIR_WEIGHTS}", WEIGHTS)
    SCRATCH.write(f"model/{DIR_CONFIG}", config)
    _check(outcome(lambda: load_checkpoint(folder), folder))
