"""Training throughput of the unit LM: tokens/s of ``tiny`` on the CPU; ``opt125m`` tokens/s and MFU in bf16
with torch.compile on a GPU.

    python benchmarks/lm_train.py                          # tiny on the CPU (+ opt125m when a GPU is present)
    python benchmarks/lm_train.py --configs tiny opt125m --steps 20 --warmup 5 --threads 2

Each row times ``--steps`` full optimiser updates of the trainer (:class:`spidrkit.lm.trainer._Run`: every
micro-batch's forward and backward, clipping, AdamW) after ``--warmup`` updates (compilation included),
on a synthetic corpus of 256 units (utterances of 100-400 de-duplicated units, LibriSpeech-like at 50 Hz),
batched as the preset says (tiny: padded rows; opt125m: packed rows of 2048 tokens, 16 x 4 per update).
tokens/s counts predicted tokens (padding excluded). MFU: model FLOPs per predicted token, 6 N (N: the
parameters of the matmuls, the tied output projection included, the position table not) plus the
attention's 12 L d T (T: the context), over the device's bf16 dense peak (a measured 8192^3 bfloat16
matmul, and the nominal datasheet figure when the device is known).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from spidrkit.extraction.units import write_units
from spidrkit.lm.config import load_lm_config
from spidrkit.lm.data import IGNORE
from spidrkit.lm.trainer import _Run

NOMINAL_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, SXM


def corpus(folder: Path, utterances: int, k: int = 256, seed: int = 0) -> Path:
    rng = random.Random(seed)
    utts = {f"u{i:06d}": [rng.randrange(k) for _ in range(rng.randrange(100, 400))] for i in range(utterances)}
    return write_units(folder / "units.txt", utts, k=k)


def flops_per_token(run: _Run) -> float:
    m = run.cfg.model
    n = sum(p.numel() for name, p in run.raw.named_parameters() if p.ndim >= 2 and "embed_positions" not in name)
    return 6.0 * n + 12.0 * m.num_layers * m.dim * m.context


def matmul_peak(device: torch.device, n: int = 8192, reps: int = 20) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def bench(name: str, steps: int, warmup: int, overrides: list[str]) -> dict:
    cfg = load_lm_config(name, [f"train.max_steps={steps + warmup}", *overrides])
    with tempfile.TemporaryDirectory() as tmp:
        units = corpus(Path(tmp), 3000 if name == "opt125m" else 400)
        run = _Run(cfg, Path(tmp) / "run", [units], None, progress=False, callback=None)
        times, tokens = [], 0
        for i in range(warmup + steps):
            if run.device.type == "cuda":
                torch.cuda.synchronize(run.device)
            start = time.perf_counter()
            run._update()
            if run.device.type == "cuda":
                torch.cuda.synchronize(run.device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
                first = (run.step - 1) * cfg.train.grad_accum
                tokens += sum(int((run.batcher[first + a]["labels"][:, 1:] != IGNORE).sum())
                              for a in range(cfg.train.grad_accum))
    total = sum(times)
    row = {"config": name, "device": str(run.device), "bf16": run.bf16, "compile": cfg.train.compile and
           run.device.type == "cuda", "step_s": statistics.median(times), "tokens_per_step": tokens / steps,
           "tokens_per_s": tokens / total, "flops_per_token": flops_per_token(run)}
    if run.device.type == "cuda":
        measured = matmul_peak(run.device)
        gpu = torch.cuda.get_device_name(run.device)
        nominal = next((v for k, v in NOMINAL_BF16.items() if k in gpu), None)
        achieved = row["tokens_per_s"] * row["flops_per_token"]
        row.update(gpu=gpu, tflops=achieved / 1e12, mfu_measured_peak=achieved / measured,
                   mfu_nominal_peak=achieved / nominal if nominal else None)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=None, help="presets (default: tiny, and opt125m on a GPU)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = args.configs or ["tiny", "opt125m"]
    if "opt125m" in configs and not torch.cuda.is_available():
        print("opt125m: skipped (no GPU: its tokens/s and MFU in bf16 with compile need one)", file=sys.stderr)
        configs = [c for c in configs if c != "opt125m"]
    print("| config | device | bf16 | compile | step (s) | tokens/step | tokens/s | TFLOP/s | MFU (measured / "
          "nominal peak) |\n|---|---|---|---|---|---|---|---|---|")
    for name in configs:
        device = ["train.device=cpu"] if name == "tiny" else []
        r = bench(name, args.steps, args.warmup, [*device, *args.overrides])
        mfu = (f"{r['mfu_measured_peak']:.1%} / " + (f"{r['mfu_nominal_peak']:.1%}" if r["mfu_nominal_peak"]
               else "n/a")) if "tflops" in r else "-"
        print(f"| {name} | {r.get('gpu', r['device'])} | {r['bf16']} | {r['compile']} | {r['step_s']:.3f} | "
              f"{r['tokens_per_step']:.0f} | {r['tokens_per_s']:,.0f} | {r.get('tflops', 0):.1f} | {mfu} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
