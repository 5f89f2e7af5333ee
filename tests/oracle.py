"""The authors' release (PyPI ``spidr`` 0.2.0) as a test oracle, for the parity tests.

It is installed apart, with ``--no-deps`` (``make test`` does it: ``pip install --no-deps spidr==0.2.0``),
used only here and never imported by spidrkit. Without it the parity tests are skipped, unless
``SPIDRKIT_REQUIRE_ORACLE=1`` (CI sets it), which turns a missing oracle into a failure.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest
import torch

from spidrkit.models.masking import sample_mask
from spidrkit.training.step import MicroBatch, Stepper

VERSION = "0.2.0"
REQUIRED = os.environ.get("SPIDRKIT_REQUIRE_ORACLE") == "1"


def reference(module: str = "spidr") -> ModuleType:
    """The reference's ``module`` (e.g. ``spidr.models.spidr``); skips (or fails, when required) without it."""
    try:
        top = importlib.import_module("spidr")
        found = importlib.import_module(module)
    except ImportError as e:
        message = (f"the reference package spidr=={VERSION} is not installed ({e}): "
                   f"pip install --no-deps spidr=={VERSION}")
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    from importlib.metadata import version

    if version("spidr") != VERSION:
        pytest.fail(f"the parity tests are written against spidr=={VERSION}, found {version('spidr')}")
    del top
    return found


# --- the reference's model and training step, driven as its train.py drives them ------------------------


def reference_config(cfg):
    """The reference's SpidRConfig / DinoSRConfig with the values of our config."""
    rc = reference("spidr.config")
    m, t = cfg.model, cfg.teacher
    values = dict(
        extractor_conv_layer_config=[(m.conv_dim, k, s) for k, s in zip(m.conv_kernels, m.conv_strides)],
        encoder_embed_dim=m.dim, encoder_projection_dropout=m.projection_dropout,
        encoder_pos_conv_kernel=m.pos_conv_kernel, encoder_pos_conv_groups=m.pos_conv_groups,
        encoder_pos_conv_depth=m.pos_conv_layers, encoder_num_layers=m.num_layers, encoder_num_heads=m.num_heads,
        encoder_attention_dropout=m.attention_dropout, encoder_ff_interm_features=m.ffn_dim,
        encoder_ff_interm_dropout=m.activation_dropout, encoder_dropout=m.dropout, encoder_layer_drop=m.layerdrop,
        codebook_size=m.codebook_size, codebook_decay=m.codebook_decay, num_codebooks=m.num_codebooks,
        ema_start_decay=t.beta0, ema_final_decay=t.beta_end, ema_final_step=t.ramp_steps, freeze_step=t.freeze_step,
    )
    if cfg.variant == "spidr":
        return rc.SpidRConfig(**values, ema_timescale=t.timescale, ema_threshold=t.freeze_threshold)
    return rc.DinoSRConfig(**values)


def reference_model(cfg):
    if cfg.variant == "spidr":
        return reference("spidr.models.spidr").SpidR(reference_config(cfg))
    return reference("spidr.models.dinosr").DinoSR(reference_config(cfg))


def batches(num_steps: int, micro: int = 1, batch: int = 3, samples: int = 16000):
    """``num_steps`` lists of ``micro`` (standardised waveform, mask) pairs; the same count per row."""
    g = torch.Generator().manual_seed(1)
    out = []
    for step in range(num_steps):
        mbs = []
        for j in range(micro):
            wav = torch.randn(batch, samples, generator=g)
            wav = (wav - wav.mean(1, keepdim=True)) / wav.std(1, keepdim=True)
            mbs.append((wav, sample_mask(batch, 49, prob=0.65, length=10, rng=100 * step + j)))
        out.append(mbs)
    return out


def run_reference(ref, cfg, steps, seeds=None) -> list[float]:
    """The reference's train-loop body (spidr/train.py), world size 1, fp32; gradient accumulation as its
    forward would do it (codebooks updated in each micro-batch's forward, one optimiser step)."""
    rc, ro = reference("spidr.config"), reference("spidr.optimizer")
    o = cfg.optim
    ocfg = rc.OptimizerConfig(lr=o.lr, betas=o.betas, weight_decay=o.weight_decay, eps=o.eps, max_norm=o.clip_norm,
                              dtype="float32", warmup_steps=0, scheduler="constant", max_steps=10**6)
    optimizer, scaler, scheduler = ro.build_optimizer(ref, ocfg)
    ref.train()
    losses = []
    for step, mbs in enumerate(steps, start=1):
        num_frames = sum(int(mask.sum()) for _, mask in mbs)
        total = 0.0
        if seeds is not None:
            torch.manual_seed(seeds[step - 1])
        for wav, mask in mbs:
            index = mask.nonzero()[:, 1].view(mask.shape[0], -1)
            loss, _ = ref(wav, mask_indices=index)
            loss = loss.sum() / num_frames
            scaler.scale(loss).backward()
            total += float(loss.detach())
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(ref.parameters(), ocfg.max_norm)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        ref.update_ema(step)
        losses.append(total)
    return losses


def run_ours(model, cfg, steps, seeds=None) -> list[float]:
    stepper = Stepper(model, cfg, torch.device("cpu"))
    losses = []
    for i, mbs in enumerate(steps):
        if seeds is not None:
            torch.manual_seed(seeds[i])
        out = stepper.step([MicroBatch(wav, mask) for wav, mask in mbs])
        assert bool(out["finite"])
        losses.append(float(out["loss"]))
    return losses


# --- long trajectories on speech: spidrkit, the release, and the release moved by 1e-7 ---------------------
TRAJECTORY = ["model.conv_dim=64", "model.dim=128", "model.num_layers=4", "model.num_heads=4", "model.ffn_dim=256",
              "model.num_codebooks=3", "model.codebook_size=64", "model.dropout=0", "model.attention_dropout=0",
              "model.layerdrop=0", "optim.lr=5e-4", "optim.warmup_steps=0", "optim.hold_steps=1000000",
              "train.precision=fp32"]


def speech_batches(wavs: list[torch.Tensor], num_steps: int, seed: int, batch: int = 4, samples: int = 16000):
    """``num_steps`` single-micro-batch steps of standardised crops of ``samples`` samples (1 s by default) of
    ``wavs`` in a seeded order, with masks over the frames the release's downsampler gives them."""
    import numpy as np

    from spidrkit.config.schema import ModelConfig
    from spidrkit.models.layers import num_frames

    frames = num_frames(samples, ModelConfig.conv_kernels, ModelConfig.conv_strides)
    rng = np.random.default_rng(seed)
    long = [w for w in wavs if len(w) > samples]
    steps = []
    for s in range(num_steps):
        rows = []
        for _ in range(batch):
            w = long[int(rng.integers(len(long)))]
            o = int(rng.integers(0, len(w) - samples))
            x = w[o : o + samples]
            rows.append((x - x.mean()) / x.std())
        mask = sample_mask(batch, frames, prob=0.65, length=10, rng=1000 * seed + s)
        steps.append([(torch.stack(rows), mask)])
    return steps


def trajectories(cfg, steps, control_scale: float = 1e-7, init_seed: int = 0):
    """(spidrkit, release, release with every weight moved by ``control_scale`` relative) losses per step, and
    the three final state dicts, from one random initialisation."""
    from spidrkit.models.spidr import SpidR

    torch.manual_seed(init_seed)
    ours = SpidR(cfg.model)
    init = ours.state_dict()
    ref, ctl = reference_model(cfg), reference_model(cfg)
    ref.load_state_dict(init)
    g = torch.Generator().manual_seed(init_seed + 1)
    ctl.load_state_dict({k: v * (1 + control_scale * torch.randn(v.shape, generator=g)) if v.is_floating_point()
                         else v for k, v in init.items()})
    losses = (run_ours(ours, cfg, steps), run_reference(ref, cfg, steps), run_reference(ctl, cfg, steps))
    return losses, (ours.state_dict(), ref.state_dict(), ctl.state_dict())
