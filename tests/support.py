"""Helpers shared by several test modules (no tests here; the fixtures built from them are in conftest.py).

Test modules import from here, never from one another: the small model configurations, the synthetic
corpora (triphone items, harmonic 'syllables'), the training tests' config helper, and ``built_once``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from spidrkit.checkpoints.run import list_checkpoints
from spidrkit.checkpoints.run import read_run_checkpoint as load_checkpoint
from spidrkit.config import SAMPLE_RATE as SR
from spidrkit.config import load_config
from spidrkit.data.corpora.manifest import ManifestEntry

# ------------------------------------------------------------------------------------------- small models
# narrower than the tiny preset (the downsampler dominates CPU time), same structure: 6 layers, width 64
MICRO = ["model.conv_dim=32", "model.dim=64", "model.num_layers=6", "model.num_heads=2", "model.ffn_dim=128"]

# a 3-layer, 64-wide SpidR: codebooks on layers 2 and 3 (small enough for a layer sweep in seconds)
SWEEP_MODEL = ["model.conv_dim=32", "model.dim=64", "model.num_layers=3", "model.num_heads=2", "model.ffn_dim=128",
               "model.pos_conv_groups=4", "model.num_codebooks=2", "model.codebook_size=32"]


def small_model(seed: int = 1, overrides: tuple[str, ...] = ()):
    """The :data:`SWEEP_MODEL` SpidR drawn with ``seed``, in eval mode."""
    from spidrkit.models.spidr import SpidR

    cfg = load_config("tiny", [*SWEEP_MODEL, *overrides])
    torch.manual_seed(seed)
    return SpidR(cfg.model).eval()


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op thread count set to ``n`` inside the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------- shared folders
@contextlib.contextmanager
def built_once(tmp_path_factory, name: str):
    """A folder shared by the pytest-xdist workers of this session, and a lock: the expensive fixtures are
    built by the first worker that needs them and read by the others."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with open(shared / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield shared / name
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------- triphone items
PHONES = ["AA", "IY", "S", "T", "M", "L"]
CONTEXTS = [("B", "D"), ("K", "G"), ("P", "N"), ("F", "V")]
SPEAKERS = ["spk1", "spk2"]
RATE = 50  # the frame rate of the triphone items
ITEM_FRAMES = 4  # every item spans 4 frames at 50 Hz (80 ms)
INSTANCES = 8


def triphone_corpus(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """An item file and the phone id of every 50 Hz frame of every utterance.

    One utterance per (speaker, instance); items are laid end to end with one frame of gap.
    """
    rows, frame_phones = [], {}
    for spk in SPEAKERS:
        for inst in range(INSTANCES):
            utt = f"{spk}-{inst}"
            phones = []
            for ctx in CONTEXTS:
                for p, phone in enumerate(PHONES):
                    start = len(phones) + 1
                    phones += [-1] + [p] * ITEM_FRAMES
                    onset, offset = start / RATE, (start + ITEM_FRAMES) / RATE
                    rows.append(f"{utt} {onset:.2f} {offset:.2f} {phone} {ctx[0]} {ctx[1]} {spk}")
            frame_phones[utt] = np.asarray([*phones, -1])
    item = root / "triphones.item"
    item.write_text("#file onset offset #phone prev-phone next-phone speaker\n" + "\n".join(rows) + "\n")
    return item, frame_phones


def one_hot(phones: np.ndarray) -> torch.Tensor:
    """One-hot features of frame phone ids (-1, silence, gets its own dimension)."""
    x = torch.zeros(len(phones), len(PHONES) + 1)
    x[torch.arange(len(phones)), torch.as_tensor(phones) + 1] = 1.0
    return x


# ------------------------------------------------------------------------------------------- training runs
# a 2-layer, 64-wide SpidR with 16-codeword codebooks, batches of 2 one-second files
TRAIN_SMALL = [
    "model.conv_dim=32", "model.dim=64", "model.num_layers=2", "model.num_heads=2", "model.ffn_dim=128",
    "model.num_codebooks=2", "model.codebook_size=16", "data.num_workers=0", "data.max_batch_samples=32000",
    "optim.warmup_steps=20", "teacher.timescale=100",
]
# Dropout and layer drop on: the restored RNG states matter. 16 files, 2 per batch: 8 batches an epoch,
# so 12 steps cross an epoch boundary.
RESUME = ["model.dropout=0.1", "model.layerdrop=0.2", "train.log_every=1", "train.checkpoint_every=4",
          "train.keep_checkpoints=2"]


def syllable_corpus(root: Path, n_files: int = 16, seconds: float = 1.0, seed: int = 0) -> list[ManifestEntry]:
    """Files made of a few repeated synthetic 'syllables' (harmonic tones with fixed spectra, 80-200 ms)."""
    rng = np.random.default_rng(seed)
    inventory = [(rng.uniform(100, 250), rng.uniform(0, 1, 6)) for _ in range(6)]
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    n = int(seconds * SR)
    for i in range(n_files):
        x = np.zeros(n)
        pos = 0
        while pos < n:
            f0, weights = inventory[rng.integers(len(inventory))]
            dur = int(rng.integers(1280, 3200))
            t = np.arange(dur) / SR
            seg = sum(w * np.sin(2 * np.pi * f0 * (h + 1) * t) for h, w in enumerate(weights)) * np.hanning(dur)
            x[pos : pos + dur] = seg[: n - pos]
            pos += dur
        x += 0.01 * rng.standard_normal(n)
        path = root / f"s{i:03d}.wav"
        sf.write(path, (0.5 * x / np.abs(x).max()).astype(np.float32), SR)
        entries.append(ManifestEntry(f"s{i:03d}", str(path), n))
    return entries


def train_config(manifest: Path, *overrides: str):
    """The :data:`TRAIN_SMALL` config training on ``manifest``, with ``overrides`` last."""
    return load_config("tiny", [*TRAIN_SMALL, f"data.train_manifest={manifest}", *overrides])


def final_model(run_dir: Path) -> dict[str, torch.Tensor]:
    """The weights of the run's newest checkpoint."""
    return load_checkpoint(list_checkpoints(run_dir)[-1][1])["model"]


# ------------------------------------------------------------------ spoken-LM benchmarks (test_slm, test_submission)
LEXICAL = """id,filename,word,phones,correct,frequency,voice,length
1,w1a,cat,k a t,1,10,A,3
1,n1a,cag,k a g,0,0,A,3
1,w1b,cat,k a t,1,10,B,3
1,n1b,cag,k a g,0,0,B,3
2,w2a,zyx,z y x,1,0,A,3
2,n2a,zyv,z y v,0,0,A,3
2,w2b,zyx,z y x,1,0,B,3
2,n2b,zyv,z y v,0,0,B,3
3,w3a,the,d e,1,150,A,2
3,n3a,thu,d u,0,0,A,2
4,w4a,dog,d o g,1,5,A,3
4,n4a,dob,d o b,0,0,A,3
4,w4b,dog,d o g,1,5,B,3
4,n4b,dob,d o b,0,0,B,3
4,w4c,dog,d o g,1,5,C,3
4,n4c,dob,d o b,0,0,C,3
5,w5a,sun,s u n,1,1,A,3
5,n5a,sul,s u l,0,0,A,3
"""
SYNTACTIC = """id,filename,voice,type,subtype,correct,transcription
s1,g1a,A,agreement,a1,1,the dogs bark
s1,u1a,A,agreement,a1,0,the dogs barks
s1,g1b,B,agreement,a1,1,the dogs bark
s1,u1b,B,agreement,a1,0,the dogs barks
s2,g2a,A,agreement,a2,1,a cat runs
s2,u2a,A,agreement,a2,0,a cat run
s3,g3a,A,order,o1,1,she saw it
s3,u3a,A,order,o1,0,saw she it
s3,g3b,B,order,o1,1,she saw it
s3,u3b,B,order,o1,0,saw she it
"""

def write_split(folder: Path, gold: str | None, names, audio=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if gold is not None:
        (folder / "gold.csv").write_text(gold)
    for i, name in enumerate(names):
        path = folder / f"{name}.wav"
        if audio is None:
            path.write_bytes(b"")  # the readers only check that it exists
        else:
            sf.write(path, audio(i), 16000)
    return folder


def names_of(gold: str) -> list[str]:
    return [line.split(",")[1] for line in gold.strip().splitlines()[1:]]


def audio(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    return (0.1 * rng.standard_normal(4000 + 800 * (i % 3))).astype(np.float32)


def tiny_opt(vocab, context: int = 64, seed: int = 0):
    """A 2-layer, 16-wide OPT causal LM over ``vocab`` (seeded, eval mode)."""
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(seed)
    cfg = OPTConfig(vocab_size=vocab.size, hidden_size=16, ffn_dim=32, num_hidden_layers=2, num_attention_heads=2,
                    max_position_embeddings=context, word_embed_proj_dim=16, pad_token_id=0, bos_token_id=1,
                    eos_token_id=2, dropout=0.0, attention_dropout=0.0)
    return OPTForCausalLM(cfg).eval()
