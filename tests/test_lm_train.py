"""Unit LM training (lm/config.py, lm/data.py, lm/model.py, lm/trainer.py, cli/lm.py): the loss falls to
the entropy of a learnable pattern, resume is exact, the best checkpoint is the lowest validation loss,
config errors name the key, bad units exit 2."""

from __future__ import annotations

import math
import random
import re

import pytest
import torch

from spidrkit.cli import main
from spidrkit.config import ConfigError
from spidrkit.extraction.units import UnitsError, write_units
from spidrkit.io import read_metrics
from spidrkit.lm import load_lm, load_lm_config, train
from spidrkit.lm import trainer as trainer_module
from spidrkit.lm.data import Batcher, read_corpus
from spidrkit.lm.trainer import lr_at

K, MIN_LEN, MAX_LEN = 8, 10, 30  # utterance: a random start r, then r+1, r+2, ... (mod K), L in [10, 30)
SMALL = ["model.num_layers=1", "model.dim=32", "model.num_heads=2", "model.ffn_dim=64", "model.context=48",
         "optim.warmup_steps=10", "optim.lr=3e-3", "train.batch_size=8", "lm.valid_fraction=0.1"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    rng = random.Random(0)
    utts = {}
    for i in range(300):
        r, n = rng.randrange(K), rng.randrange(MIN_LEN, MAX_LEN)
        utts[f"u{i:04d}"] = [(r + j) % K for j in range(n) for _ in range(rng.randrange(1, 3))]  # runs: dedup
    path = tmp_path_factory.mktemp("units") / "units.txt"
    write_units(path, utts, dedup=True, k=K)
    return path


def pattern_entropy_per_token() -> float:
    """Nats per predicted token of the pattern: the first unit (log K) and the length (log 20) are random,
    everything else is determined; an utterance of L units predicts L + 1 tokens (units and eos)."""
    lengths = range(MIN_LEN, MAX_LEN)
    return (math.log(K) + math.log(len(lengths))) / (sum(n + 1 for n in lengths) / len(lengths))


def test_loss_falls_to_the_pattern_entropy(units, tmp_path):
    summary = train([units], tmp_path / "run", "tiny", [*SMALL, "train.max_steps=120", "train.valid_every=40",
                                                        "train.log_every=20"], progress=False)
    valid = read_metrics(tmp_path / "run", "valid")
    assert [r["step"] for r in valid] == [40, 80, 120]
    assert round(pattern_entropy_per_token(), 4) == 0.2476
    assert valid[-1]["loss"] < 1.5 * pattern_entropy_per_token() < math.log(K) / 4  # a unigram LM: log K
    assert valid[-1]["perplexity"] == pytest.approx(math.exp(valid[-1]["loss"]))
    train_records = read_metrics(tmp_path / "run", "train")
    assert train_records[0]["loss"] > 2 * train_records[-1]["loss"]
    assert all(r["tokens_per_s"] > 0 and r["lr"] > 0 for r in train_records)
    model, vocab, info = load_lm(tmp_path / "run")
    assert (vocab.k, vocab.dedup, info["which"], info["step"]) == (K, True, "best", summary["best_step"])
    assert model.config.num_hidden_layers == 1 and not model.training
    assert load_lm(tmp_path / "run", "last")[2]["step"] == 120
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_00000120.pt"]


def _weights(run_dir):
    return load_lm(run_dir, "last")[0].state_dict()


def _stable(records):
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in records]


def test_resume_after_an_interruption_equals_the_uninterrupted_run(units, tmp_path):
    args = [*SMALL, "train.max_steps=30", "train.valid_every=10", "train.log_every=4", "train.checkpoint_every=8",
            "train.grad_accum=2"]
    train([units], tmp_path / "whole", "tiny", args, progress=False)

    def stop(step):
        if step == 13:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train([units], tmp_path / "cut", "tiny", args, progress=False, callback=stop)
    assert (tmp_path / "cut" / "checkpoints" / "step_00000013.pt").is_file()
    assert not (tmp_path / "cut" / "run.lock").exists()
    train([units], tmp_path / "cut", "tiny", args, progress=False)
    whole, cut = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    assert _stable(read_metrics(tmp_path / "cut")) == _stable(read_metrics(tmp_path / "whole"))
    with pytest.raises(ConfigError, match=r"another config \(optim.lr = 0.003 there, 0.001 now\)"):
        train([units], tmp_path / "cut", "tiny", [*args, "optim.lr=1e-3"], progress=False)


def test_best_is_the_lowest_validation_loss(units, tmp_path, monkeypatch):
    losses = iter([3.0, 1.0, 2.0, 1.5])
    monkeypatch.setattr(trainer_module, "evaluate", lambda *a, **k: (next(losses), 100))
    summary = train([units], tmp_path / "run", "tiny", [*SMALL, "train.max_steps=8", "train.valid_every=2",
                                                        "train.checkpoint_every=4"], progress=False)
    assert [r["best"] for r in read_metrics(tmp_path / "run", "valid")] == [True, True, False, False]
    assert (summary["best_step"], summary["best_valid_loss"]) == (4, 1.0)
    best, _, info = load_lm(tmp_path / "run")
    assert (info["step"], info["valid_loss"]) == (4, 1.0)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "step_00000004.pt", weights_only=True)["model"]
    assert all(torch.equal(v, ckpt[k]) for k, v in best.state_dict().items())


def test_config_presets_and_errors_name_the_key(tmp_path):
    paper = load_lm_config("opt125m")
    assert (paper.model.num_layers, paper.model.dim, paper.model.num_heads, paper.model.ffn_dim,
            paper.model.context) == (12, 768, 12, 3072, 2048)
    assert (paper.train.batch_size, paper.train.grad_accum, paper.train.max_steps) == (16, 4, 100_000)
    assert (paper.optim.lr, paper.optim.betas, paper.optim.weight_decay, paper.optim.warmup_steps) == (
        6e-4, (0.9, 0.95), 0.1, 2000)
    assert lr_at(paper.optim, 999, 100_000) == pytest.approx(3e-4)
    assert lr_at(paper.optim, 100_000, 100_000) == pytest.approx(6e-5)
    assert load_lm_config("tiny", ["train.max_steps=7"]).train.max_steps == 7
    for override, message in [
        ("optim.lr=-1", "optim.lr: must be a finite number > 0, got -1.0"),
        ("model.num_heads=5", "model.num_heads: must divide model.dim (128), got 5"),
        ("lm.batching=stream", "lm.batching: must be one of 'pad', 'pack', got 'stream'"),
        ("lm.colour=1", "unknown key 'lm.colour'; known keys in [lm]: batching, dedup, k, valid_fraction"),
        ("train.compile=3", "train.compile: expected true or false, got 3"),
        ("train.max_minutes=-1", "train.max_minutes: must be a finite number in [0, 525600], got -1.0"),
    ]:
        with pytest.raises(ConfigError) as e:
            load_lm_config("tiny", [override])
        assert str(e.value) == message
    (tmp_path / "my.toml").write_text('preset = "tiny"\n[optim]\nlr = 1e-4\n')
    assert load_lm_config(tmp_path / "my.toml").optim.lr == 1e-4


def test_km_files_and_batches(tmp_path):
    (tmp_path / "a.km").write_text("1 1 2 3\n\n4 4 4\n")
    (tmp_path / "dict.km.txt").write_text("".join(f"{u} 1\n" for u in range(50)))
    corpus, k = read_corpus([tmp_path / "a.km"])
    assert (corpus, k) == ([("a.km:1", [1, 1, 2, 3]), ("a.km:3", [4, 4, 4])], 50)
    (tmp_path / "bad.km").write_text("1 2 x\n")
    with pytest.raises(UnitsError, match=r"bad.km:1: a .km line holds integer units only"):
        read_corpus([tmp_path / "bad.km"])
    seqs = [[1, 5, 6, 2], [1, 7, 2], [1, 3, 4, 5, 6, 7, 8, 9, 10, 2]]
    pad = Batcher(seqs, 2, 8, "pad", seed=0)
    b = pad[0]
    assert b["input_ids"].shape[1] == 8 and torch.equal(b["labels"][b["attention_mask"] == 0],
                                                        torch.full(((b["attention_mask"] == 0).sum(),), -100))
    pack = Batcher(seqs, 1, 8, "pack", seed=0)
    assert pack.per_epoch == 2 and pack[0]["attention_mask"].all()
    assert torch.equal(pad[5]["input_ids"], Batcher(seqs, 2, 8, "pad", seed=0)[5]["input_ids"])
    # an epoch: rows of 4, 3, 8 and 2 tokens (the third utterance cut into windows of 8 and 2), 2 batches of 2 rows
    assert pad.per_epoch == 2
    assert [pad.predicted_tokens(0) + pad.predicted_tokens(1), pad.predicted_tokens(2) + pad.predicted_tokens(3)] \
        == [3 + 2 + 7 + 1] * 2
    for i in range(6):
        assert pad.predicted_tokens(i) == int((pad[i]["labels"][:, 1:] != -100).sum())
        assert pack.predicted_tokens(i) == 7


def test_cli_exit_codes(tmp_path, capsys):
    (tmp_path / "bad.txt").write_text("utt1 1 2 x\n")
    assert main(["lm", "train", str(tmp_path / "bad.txt"), "-o", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"spidrkit lm: error: {tmp_path / 'bad.txt'}:1")
    assert main(["lm", "train", str(tmp_path / "none.txt"), "-o", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == f"spidrkit lm: error: no units file at {tmp_path / 'none.txt'}"
    assert main(["lm", "train", str(tmp_path / "bad.txt"), "-o", str(tmp_path / "r"),
                 "--set", "optim.lr=0"]) == 2
    assert capsys.readouterr().err.strip() == "spidrkit lm: error: optim.lr: must be a finite number > 0, got 0.0"


def test_a_diverged_run_exits_3(units, tmp_path, capsys):
    sets = [*SMALL, "optim.lr=1e30", "optim.warmup_steps=0", "optim.clip_norm=0", "train.max_steps=4",
            "train.log_every=2"]
    args = [a for s in sets for a in ("--set", s)]
    assert main(["lm", "train", str(units), "-o", str(tmp_path / "r"), "--no-progress", *args]) == 3
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"spidrkit lm: diverged: \S+: the training loss is (nan|inf) at update 2; lower optim.lr .*",
                        err)


def test_time_budget_stops_validates_and_checkpoints(units, tmp_path):
    """train.max_minutes ends the run at the first update boundary past the budget, like max_steps would:
    validation, a checkpoint of that step, best/ and last/; a run without a budget reports max_steps."""
    summary = train([units], tmp_path / "run", "tiny", [*SMALL, "train.max_steps=100000", "train.max_minutes=0.0005",
                                                        "train.valid_every=0"], progress=False)
    step = summary["step"]
    assert summary["stopped"] == "max_minutes" and 1 <= step < 100000
    assert [r["step"] for r in read_metrics(tmp_path / "run", "valid")] == [step]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())[-1] == f"step_{step:08d}.pt"
    assert load_lm(tmp_path / "run", "best")[2]["step"] == step
    done = train([units], tmp_path / "run2", "tiny", [*SMALL, "train.max_steps=3"], progress=False)
    assert (done["step"], done["stopped"]) == (3, "max_steps")
