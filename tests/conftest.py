"""Fixtures shared by several test modules: the one-thread setting, the flite requirement, the small
synthetic corpora (flite speech, harmonic syllables, triphone items), a micro model, the sweep tests'
checkpoint and the training tests' 12-step reference run. Helpers that are not fixtures are in support.py."""

import os
from pathlib import Path

import pytest
import torch

from flite_requirement import pytest_runtest_setup, require_flite  # noqa: F401  (the needs_flite marker's hook)
from support import (
    MICRO,
    RESUME,
    SWEEP_MODEL,
    built_once,
    small_model,
    syllable_corpus,
    torch_threads,
    train_config,
    triphone_corpus,
)

# Two cores: keep each test process to one intra-op thread when running under xdist.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One intra-op thread during the test, also outside xdist (small models on a shared 2-core machine: faster
    and deterministic); a module takes it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def one_thread_module():
    """``one_thread`` for a whole module, its module-scoped fixtures included (``pytestmark =
    pytest.mark.usefixtures("one_thread_module")``): outside xdist, two threads on a busy 2-core machine made
    test_sweep's probed sweep 10 times slower (117 s instead of 11 s)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def flite() -> None:
    """For fixtures that synthesize speech: skips without flite, fails where SPIDRKIT_REQUIRE_FLITE=1."""
    require_flite()


# ------------------------------------------------------------------------------------------- corpora
@pytest.fixture(scope="session")
def speech_corpus(flite, tmp_path_factory) -> Path:
    """~2 minutes of flite speech: train + dev from awb and slt, kal16 held out (reads the dev sentences).
    Built once per session by the first xdist worker that needs it."""
    from spidrkit.data.synth.corpus import synthesize_corpus

    with built_once(tmp_path_factory, "sweep_corpus") as root:
        if not (root / "done").is_file():
            synthesize_corpus(root, voices=("awb", "slt", "kal16"), hours=0.025, seed=2, heldout_voice="kal16",
                              dev_fraction=0.35, workers=2, progress=False)
            (root / "done").touch()
    return root


@pytest.fixture(scope="module")
def syllables(tmp_path_factory) -> Path:
    """The manifest of 16 one-second files of synthetic syllables (support.syllable_corpus)."""
    root = tmp_path_factory.mktemp("corpus")
    from spidrkit.data.corpora.manifest import write_manifest

    return write_manifest(syllable_corpus(root), root / "train.csv")


@pytest.fixture(scope="module")
def triphones(tmp_path_factory):
    """The triphone item file and every utterance's frame phone ids (support.triphone_corpus)."""
    return triphone_corpus(tmp_path_factory.mktemp("abx"))


# ------------------------------------------------------------------------------------------- models and runs
@pytest.fixture(scope="module")
def micro_model():
    """The support.MICRO SpidR (6 layers, width 64) drawn with seed 0, in eval mode."""
    from spidrkit.config import load_config
    from spidrkit.models.spidr import SpidR

    torch.manual_seed(0)
    return SpidR(load_config("tiny", MICRO).model).eval()


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """support.small_model() saved as a spidrkit checkpoint (the sweep tests' model)."""
    from spidrkit.checkpoints import save_spidrkit
    from spidrkit.config import load_config

    with built_once(tmp_path_factory, "sweep_ckpt") as root:
        path = root / "small.pt"
        if not path.is_file():
            save_spidrkit(path, load_config("tiny", SWEEP_MODEL), small_model().state_dict())
    return path


@pytest.fixture(scope="module")
def reference_run(syllables, tmp_path_factory) -> Path:
    """12 uninterrupted training steps (support.RESUME: dropout, layer drop, a checkpoint every 4 steps)."""
    from spidrkit.training.loop import pretrain

    run_dir = tmp_path_factory.mktemp("reference")
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        full = pretrain(train_config(syllables, *RESUME, "train.max_steps=12"), run_dir, progress=False)
    assert full["status"] == "completed" and full["step"] == 12
    return run_dir


@pytest.fixture(scope="module")
def slm_models(tmp_path_factory):
    """A tiny SpidR checkpoint (codebooks of 16), a unit LM run folder with its best/ model, centroids of
    layer 6 (the spoken-LM tests)."""
    from spidrkit.checkpoints import save_spidrkit
    from spidrkit.config import load_config
    from spidrkit.extraction.kmeans import KMeansModel
    from spidrkit.lm.vocab import UnitVocab
    from spidrkit.models.spidr import SpidR
    from support import tiny_opt

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    cfg = load_config("tiny", [*MICRO, "model.codebook_size=16"])
    encoder = save_spidrkit(root / "spidr.pt", cfg, SpidR(cfg.model).state_dict())
    vocab = UnitVocab(16)
    run = root / "lm"
    tiny_opt(vocab, context=256, seed=2).save_pretrained(run / "best")  # a unit LM run folder's best/ model
    vocab.save(run / "best")
    centroids = KMeansModel(torch.randn(16, 64), {"layer": 6}).save(root / "C.npy")
    return {"encoder": encoder, "lm": run, "centroids": centroids}
