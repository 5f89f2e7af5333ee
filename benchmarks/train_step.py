"""Training-step throughput and model FLOP utilisation (MFU) of SpidR pretraining.

    python benchmarks/train_step.py                                   # base and small, fp32, eager, CPU
    python benchmarks/train_step.py --config base --precision bf16 --compile on off --device cuda
    python benchmarks/train_step.py --config small tiny --steps 10 --batch 2 --seconds 4

For every combination of config x device x precision x compile, it times full training steps
(:class:`spidrkit.training.step.Stepper`: student forward and backward, teacher forward, codebook update,
clipping, AdamW, teacher EMA) on a fixed batch of ``--batch`` waveforms of ``--seconds`` s with training
masks, after ``--warmup`` steps (which include compilation), and reports one row per combination
(``benchmarks/harness.py``: JSON lines, or with ``--out FILE`` a Markdown table too): median step time and
its IQR, audio-seconds per second, the analytic FLOPs of a step and the achieved FLOP/s as a share of a
measured matmul peak on the same device (2048^3 matmul in float32, or bfloat16 for bf16 on a GPU), taken
just before and after each row (the larger of the two: shared machines drift).

The FLOPs are counted analytically (:func:`step_flops`): matmuls and convolutions only, 2 FLOPs per
multiply-add; student forward + backward (twice the forward, less the first convolution's input
gradient) + teacher forward + codebook distances. Element-wise work (norms, GELU, softmax, AdamW) is
not counted, as is usual for MFU.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import resource
import sys
from dataclasses import replace

import numpy as np
import torch

from harness import Rows, add_out_argument, row, timed
from spidrkit.config import SAMPLE_RATE, Config, load_config
from spidrkit.models.flops import step_flops
from spidrkit.models.masking import sample_mask
from spidrkit.models.spidr import SpidR
from spidrkit.training.step import MicroBatch, Stepper, compile_model


def small_config() -> Config:
    """"small": 4 layers, width 256, FFN 1024, a 256-channel downsampler; 4 codebooks of 256."""
    cfg = load_config("base")
    model = replace(cfg.model, num_layers=4, dim=256, num_heads=4, ffn_dim=1024, conv_dim=256, num_codebooks=4)
    return replace(cfg, model=model)


def bench_config(name: str) -> Config:
    return small_config() if name == "small" else load_config(name)


# ------------------------------------------------------------------------------------------- timing
def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """Measured FLOP/s of an n^3 matmul (median of ``reps``), the denominator of MFU."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2.0 * n**3 / timed(lambda: a @ b, repeats=reps, warmup=3, device=device).stats()["seconds_median"]


def bench_one(
    cfg: Config, device: torch.device, batch: int, seconds: float, warmup: int, steps: int, seed: int = 0
) -> dict:
    """Time ``steps`` training steps after ``warmup``: ``{"timing": Timing, "memory_gib": peak memory}``."""
    torch.manual_seed(seed)
    model = SpidR(cfg.model).to(device)
    if cfg.train.compile:
        compile_model(model)
    stepper = Stepper(model, cfg, device)
    L = int(seconds * SAMPLE_RATE)
    wav = torch.randn(batch, L)
    wav = (wav - wav.mean(1, keepdim=True)) / wav.std(1, keepdim=True)
    rng = np.random.default_rng(seed)
    T = model.num_frames(L)
    m = cfg.masking
    masks = iter([sample_mask(batch, T, m.prob, m.length, m.min_masks, rng) for _ in range(warmup + steps)])
    if device.type == "cuda":
        wav = wav.pin_memory()
        torch.cuda.reset_peak_memory_stats(device)
    last = {}
    timing = timed(lambda: last.update(stepper.step([MicroBatch(wav, next(masks))])), steps, warmup, device)
    if not bool(torch.isfinite(last["loss"])):
        raise RuntimeError("the benchmark step gave a non-finite loss")
    memory = (
        torch.cuda.max_memory_allocated(device) / 2**30
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    return {"timing": timing, "memory_gib": memory}


def bench_row(name: str, dev: str, prec: str, comp: str, args: argparse.Namespace) -> dict:
    """One combination, timed, as a row: throughput, FLOPs, MFU against a matmul peak measured beside it."""
    device = torch.device(dev)
    cfg = bench_config(name)
    cfg = replace(cfg, train=replace(cfg.train, precision=prec, compile=comp == "on", device=dev))
    autocast_bf16 = prec == "bf16" and device.type == "cuda"
    dtype = torch.bfloat16 if autocast_bf16 else torch.float32
    with contextlib.suppress(AttributeError):
        torch.backends.cuda.matmul.allow_tf32 = False
    print(f"running {name} {dev} {prec} compile={comp} ...", file=sys.stderr, flush=True)
    # The peak is measured just before and after the row (shared machines drift); the larger is used.
    before = matmul_peak(device, dtype)
    r = bench_one(cfg, device, args.batch, args.seconds, args.warmup, args.steps)
    peak = max(before, matmul_peak(device, dtype))
    med = r["timing"].stats()["seconds_median"]
    flops = step_flops(cfg.model, args.batch, int(args.seconds * SAMPLE_RATE))["total"]
    achieved = flops / med
    label = "bf16 (runs fp32 on CPU)" if prec == "bf16" and not autocast_bf16 else prec
    return row("train_step", f"{name} {dev} {label} compile={comp}", dev, r["timing"], config=name, precision=label,
               compile=comp == "on", batch=args.batch, utterance_seconds=args.seconds,
               audio_s_per_s=args.batch * args.seconds / med, gflop_per_step=flops / 1e9,
               achieved_gflop_per_s=achieved / 1e9, matmul_peak_gflop_per_s=peak / 1e9, mfu=achieved / peak,
               first_step_s=r["timing"].first, peak_memory_gib=r["memory_gib"])


COLUMNS = [("config", "config"), ("device", "device"), ("precision", "precision"), ("compile", "compile"),
           ("median s/step", "seconds_median"), ("IQR s", "seconds_iqr"), ("audio-s/s", "audio_s_per_s"),
           ("GFLOP/step", "gflop_per_step"), ("achieved GFLOP/s", "achieved_gflop_per_s"),
           ("matmul peak GFLOP/s", "matmul_peak_gflop_per_s"), ("MFU", "mfu"), ("first step s", "first_step_s"),
           ("peak memory GiB", "peak_memory_gib")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", nargs="+", default=["base", "small"], help="base, tiny, small or TOML files")
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    p.add_argument("--compile", nargs="+", default=["off"], choices=["off", "on"])
    p.add_argument("--device", nargs="+", default=None, help="cpu and/or cuda (default: cuda if present, else cpu)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    add_out_argument(p)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = Rows(args.out)
    for name, dev, prec, comp in itertools.product(args.config, devices, args.precision, args.compile):
        rows.add(bench_row(name, dev, prec, comp, args))
    rows.close(COLUMNS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
