"""Experiment tracking (spidrkit.tracking, ``--report-to``): the TensorBoard events of a pretraining run, of a
unit LM run and of a sweep hold the numbers of metrics.jsonl / report.json, the config is logged as
hyper-parameters, wandb writes an offline run with the same numbers, and a missing package exits 2."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from spidrkit.cli import main
from spidrkit.config import ConfigError, load_config
from spidrkit.extraction.units import write_units
from spidrkit.io import read_metrics
from spidrkit.lm import load_lm_config, train
from spidrkit.tracking import TrackingUnavailable, flat_config, open_tracker, record_scalars
from spidrkit.training.loop import pretrain
from support import train_config

pytestmark = pytest.mark.usefixtures("one_thread")

LM_SMALL = ["model.num_layers=1", "model.dim=32", "model.num_heads=2", "model.ffn_dim=64", "model.context=48",
            "optim.warmup_steps=2", "train.batch_size=8", "lm.valid_fraction=0.1", "train.log_every=2",
            "train.valid_every=3", "train.checkpoint_every=100"]


def events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalars_by_tag(acc) -> dict[str, dict[int, float]]:
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def assert_events_equal_metrics(run_dir: Path) -> int:
    """Every scalar of every metrics.jsonl record is an event of that tag and step with that value (float32),
    and there is no other event; returns the number of scalars compared."""
    expected: dict[str, dict[int, float]] = {}
    for record in read_metrics(run_dir):
        for tag, value in record_scalars(record).items():
            expected.setdefault(tag, {})[record["step"]] = value
    got = scalars_by_tag(events(run_dir / "tensorboard"))
    assert sorted(got) == sorted(expected)
    for tag, by_step in expected.items():
        assert sorted(got[tag]) == sorted(by_step), tag
        for step, value in by_step.items():
            assert got[tag][step] == np.float32(value), (tag, step)
    return sum(map(len, expected.values()))


def hparams_of(acc) -> dict[str, object]:
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}


@pytest.fixture(scope="module")
def units(tmp_path_factory) -> Path:
    rng = random.Random(0)
    utts = {f"u{i:03d}": [(r + j) % 8 for j in range(rng.randrange(10, 30))]
            for i, r in enumerate(rng.randrange(8) for _ in range(120))}
    path = tmp_path_factory.mktemp("units") / "units.txt"
    write_units(path, utts, dedup=True, k=8)
    return path


# ------------------------------------------------------------------------------------------- tensorboard
def test_a_20_step_tiny_pretraining_run_logs_to_tensorboard_what_metrics_jsonl_holds(syllables, tmp_path):
    cfg = train_config(syllables, "train.max_steps=20", "train.log_every=5", "train.valid_every=10",
                       "train.valid_batches=2", f"data.valid_manifest={syllables}", "train.report_to=tensorboard")
    assert pretrain(cfg, tmp_path, progress=False)["step"] == 20
    train_steps = [r["step"] for r in read_metrics(tmp_path, "train")]
    assert train_steps == [5, 10, 15, 20] and [r["step"] for r in read_metrics(tmp_path, "valid")] == [10, 20]
    # losses, lr, per-layer codebook perplexities, throughput: 4 train + 2 valid records, every number of each
    compared = assert_events_equal_metrics(tmp_path)
    got = scalars_by_tag(events(tmp_path / "tensorboard"))
    for tag in ("train/loss", "train/lr", "train/codebook_ppl/layer_01", "train/codebook_ppl/layer_02",
                "train/audio_seconds_per_second", "valid/loss", "valid/codebook_ppl/layer_02"):
        assert tag in got
    assert compared == 4 * len([t for t in got if t.startswith("train/")]) + 2 * len(
        [t for t in got if t.startswith("valid/")])
    hp = hparams_of(events(tmp_path / "tensorboard"))
    assert hp["train.max_steps"] == 20 and hp["model.dim"] == 64 and hp["train.report_to"] == "tensorboard"
    assert hp["data.train_manifest"] == str(syllables)


def test_lm_train_logs_to_tensorboard_what_metrics_jsonl_holds(units, tmp_path):
    run = tmp_path / "run"
    summary = train([units], run, "tiny", [*LM_SMALL, "train.max_steps=6", "train.report_to=tensorboard"],
                    progress=False)
    assert summary["step"] == 6
    assert [r["step"] for r in read_metrics(run, "train")] == [2, 4, 6]
    assert [r["step"] for r in read_metrics(run, "valid")] == [3, 6]
    assert assert_events_equal_metrics(run) == 3 * 4 + 2 * 3  # loss, lr, tokens, tokens_per_s; loss, ppl, tokens
    assert hparams_of(events(run / "tensorboard"))["optim.warmup_steps"] == 2
    # report_to is not part of a run's identity: the finished run resumes with another tracker
    again = train([units], run, "tiny", [*LM_SMALL, "train.max_steps=6", "train.report_to=none"], progress=False)
    assert again["step"] == 6


@pytest.mark.needs_flite
def test_the_sweep_logs_its_layer_table_into_a_run_folder(speech_corpus, small_checkpoint, tmp_path):
    out, run = tmp_path / "sweep", tmp_path / "run"
    code = main(["evaluate", "sweep", "--model", str(small_checkpoint), "--corpus", str(speech_corpus), "-o", str(out),
                 "--layers", "2,3", "--baselines", "none", "--max-files", "8", "--tsne-points", "0", "--quiet",
                 "--report-to", "tensorboard", "--report-run", str(run)])
    assert code == 0 and not (out / "tensorboard").exists()
    layers = json.loads((out / "report.json").read_text())["results"]["layers"]
    got = scalars_by_tag(events(run / "tensorboard"))
    for metric in ("abx_within", "abx_across", "map"):
        assert got[f"sweep/{metric}"] == {int(layer): np.float32(row[metric]) for layer, row in layers.items()}
    assert "sweep/text_summary" in events(run / "tensorboard").Tags()["tensors"]


def test_table_and_config_as_tensorboard_sees_them(tmp_path):
    tracker = open_tracker("tensorboard", tmp_path, job="test", config={"a": {"x": 1, "y": [1, 2], "z": None}})
    tracker.log_table("sweep/demo", ["layer", "abx", "note"], [[1, 12.5, "a"], [2, 10.25, None]])
    tracker.close()
    acc = events(tmp_path / "tensorboard")
    assert scalars_by_tag(acc) == {"sweep/demo/abx": {1: 12.5, 2: 10.25}}
    (text,) = acc.Tensors("sweep/demo/text_summary")
    assert text.tensor_proto.string_val[0].decode().split("\n") == [
        "| layer | abx | note |", "| --- | --- | --- |", "| 1 | 12.5 | a |", "| 2 | 10.25 |  |"]
    assert hparams_of(acc) == {"a.x": 1.0, "a.y": "[1, 2]", "a.z": ""}
    assert flat_config({"a": {"b": (1, 2), "c": True}}) == {"a.b": "[1, 2]", "a.c": True}


def test_record_scalars_name_splits_and_layers():
    record = {"split": "valid", "step": 3, "layers": [4, 6], "valid_loss": 2.5, "valid_codebook_ppl": [3.0, None],
              "best": True, "epoch": 1, "format_version": 1}
    assert record_scalars(record) == {"valid/loss": 2.5, "valid/codebook_ppl/layer_04": 3.0}
    assert record_scalars({"step": 1, "ppl": [1.5, 2.5]}) == {"train/ppl/layer_01": 1.5, "train/ppl/layer_02": 2.5}


# ------------------------------------------------------------------------------------------- wandb
def test_wandb_offline_writes_a_run_with_the_metrics(units, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run = tmp_path / "run"
    train([units], run, "tiny", [*LM_SMALL, "train.max_steps=4", "train.report_to=wandb"], progress=False)
    wandb.teardown()  # the service writes the run file out when it stops, as at the end of a process
    (offline,) = (run / "wandb").glob("offline-run-*")
    (log,) = offline.glob("run-*.wandb")  # the run's records (protobuf): history items are key, then JSON value
    data = log.read_bytes()
    records = read_metrics(run)
    assert len(records) == 4  # train at 2 and 4, valid at 3 and 4
    for record in records:
        for key, value in record_scalars(record).items():
            text = json.dumps(value).encode()
            assert key.encode() + b"\x82\x01" + bytes([len(text)]) + text in data, (key, value)
    for key, value in (("train.max_steps", 4), ("model.dim", 32), ("train.report_to", "wandb")):
        text = json.dumps(value).encode()  # the config, as hyper-parameters
        assert key.encode() + b"\x82\x01" + bytes([len(text)]) + text in data, key
    assert b"lm-train" in data and run.name.encode() in data  # job type, name and group


def test_the_wandb_tracker_calls_as_wandb_takes_them(tmp_path, monkeypatch):
    """The calls the tracker makes, against a stand-in module (the real package is exercised above)."""
    calls = []

    class Run:
        config = type("Config", (), {"update": lambda self, d, allow_val_change: calls.append(("config", d))})()

        def log(self, data, step=None):
            calls.append(("log", data, step))

        def finish(self):
            calls.append(("finish",))

    fake = type(sys)("wandb")
    fake.__spec__ = type(sys)("spec")  # find_spec takes a module with a __spec__ as installed
    fake.init = lambda **kw: calls.append(("init", kw)) or Run()
    fake.Table = lambda columns, data: ("table", columns, data)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    tracker = open_tracker("wandb", tmp_path / "run", job="sweep", config={"train": {"max_steps": 5}})
    tracker.log_record({"split": "train", "step": 5, "loss": 1.5, "layers": [1], "codebook_ppl": [7.0]})
    tracker.log_table("sweep", ["layer", "abx"], [[1, 9.5]])
    tracker.close()
    init = calls[0][1]
    assert (init["dir"], init["name"], init["group"], init["job_type"]) == (str(tmp_path / "run"), "run", "run",
                                                                            "sweep")
    assert calls[1:] == [("config", {"train.max_steps": 5}),
                         ("log", {"train/loss": 1.5, "train/codebook_ppl/layer_01": 7.0}, 5),
                         ("log", {"sweep": ("table", ["layer", "abx"], [[1, 9.5]])}, None), ("finish",)]


# ------------------------------------------------------------------------------------------- errors
def test_a_missing_package_exits_2_naming_the_extra(units, syllables, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    assert main(["lm", "train", str(units), "-o", str(tmp_path / "lm"), "--report-to", "wandb"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--report-to wandb: the wandb package is not installed" in err and "spidrkit[tracking]" in err
    assert "\n" not in err and not (tmp_path / "lm" / "checkpoints").exists()
    assert main(["pretrain", "tiny", "--set", f"data.train_manifest={syllables}", "-o", str(tmp_path / "pt"),
                 "--report-to", "wandb", "--no-progress"]) == 2
    assert "spidrkit[tracking]" in capsys.readouterr().err
    with pytest.raises(TrackingUnavailable, match="spidrkit\\[tracking\\]"):
        from spidrkit.evaluation.sweep.options import SweepOptions

        SweepOptions(report_to="wandb")


def test_report_to_is_checked_when_a_config_is_loaded():
    with pytest.raises(ConfigError, match="train.report_to"):
        load_config("tiny", ["train.report_to=mlflow"])
    with pytest.raises(ConfigError, match="train.report_to"):
        load_lm_config("tiny", ["train.report_to=mlflow"])
    assert load_config("tiny").train.report_to == load_lm_config("tiny").train.report_to == "none"
