"""Training throughput of the unit LM: tokens/s of ``tiny`` on the CPU; ``opt125m`` tokens/s and MFU in bf16
with torch.compile on a GPU.

    python benchmarks/lm_train.py                          # tiny on the CPU (+ opt125m when a GPU is present)
    python benchmarks/lm_train.py --configs tiny opt125m --steps 20 --warmup 5 --threads 2

Each row times ``--steps`` full optimiser updates of the trainer (``spidrkit.lm.train``, the public entry
point: every micro-batch's forward and backward, clipping, AdamW; a lap per update through its ``callback``)
after ``--warmup`` updates (compilation included), on a synthetic corpus of 256 units (utterances of 100-400
de-duplicated units, LibriSpeech-like at 50 Hz), batched as the preset says (tiny: padded rows; opt125m:
packed rows of 2048 tokens, 16 x 4 per update). Logging every update, validation and checkpoints only at the
end (outside the laps). tokens/s counts predicted tokens (padding excluded; from the run's metrics). MFU:
model FLOPs per predicted token, 6 N (N: the parameters of the matmuls, the tied output projection included,
the position table not) plus the attention's 12 L d T (T: the context), over the device's bf16 dense peak (a
measured 8192^3 bfloat16 matmul, and the nominal datasheet figure when the device is known). One row per
config (``benchmarks/harness.py``).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import torch

from harness import Laps, Rows, add_out_argument, row, timed
from spidrkit.extraction.units import write_units
from spidrkit.io import read_metrics, read_sidecar
from spidrkit.lm import LMConfig, load_lm, load_lm_config, train

NOMINAL_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, SXM


def corpus(folder: Path, utterances: int, k: int = 256, seed: int = 0) -> Path:
    rng = random.Random(seed)
    utts = {f"u{i:06d}": [rng.randrange(k) for _ in range(rng.randrange(100, 400))] for i in range(utterances)}
    return write_units(folder / "units.txt", utts, k=k)


def flops_per_token(cfg: LMConfig, model: torch.nn.Module) -> float:
    m = cfg.model
    n = sum(p.numel() for name, p in model.named_parameters() if p.ndim >= 2 and "embed_positions" not in name)
    return 6.0 * n + 12.0 * m.num_layers * m.dim * m.context


def matmul_peak(device: torch.device, n: int = 8192, reps: int = 20) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    timing = timed(lambda: a @ b, repeats=reps, warmup=3, device=device)
    return 2 * n**3 / timing.stats()["seconds_median"]


def tokens_between(run: Path, first: int, last: int) -> int:
    """Predicted tokens of updates ``first + 1 .. last`` (the run logs its running total every update)."""
    seen = {r["step"]: r["tokens"] for r in read_metrics(run, "train")}
    return seen[last] - seen.get(first, 0)


def bench(name: str, steps: int, warmup: int, overrides: list[str]) -> dict:
    total = steps + warmup
    cfg = load_lm_config(name, [f"train.max_steps={total}", "train.log_every=1", "train.valid_every=0",
                                "train.valid_batches=1", f"train.checkpoint_every={total}", *overrides])
    with tempfile.TemporaryDirectory() as tmp:
        units = corpus(Path(tmp), 3000 if name == "opt125m" else 400)
        run = Path(tmp) / "run"
        device = "cuda" if torch.cuda.is_available() and cfg.train.device != "cpu" else "cpu"
        laps = Laps(device)  # a lap per update (the first update untimed)
        train([units], run, cfg, progress=False, callback=laps)
        timing = laps.timing(warmup)
        tokens = tokens_between(run, warmup, total)
        info = read_sidecar(run)
        model, _, _ = load_lm(run, "last")
        per_token = flops_per_token(cfg, model)
    metrics = {"config": name, "bf16": info["bf16"], "compile": cfg.train.compile and info["device"].startswith("cuda"),
               "tokens_per_step": tokens / steps, "tokens_per_s": tokens / sum(timing.wall),
               "flops_per_token": per_token}
    if info["device"].startswith("cuda"):
        measured = matmul_peak(torch.device(info["device"]))
        gpu = torch.cuda.get_device_name(torch.device(info["device"]))
        nominal = next((v for k, v in NOMINAL_BF16.items() if k in gpu), None)
        achieved = metrics["tokens_per_s"] * per_token
        metrics.update(gpu=gpu, tflops=achieved / 1e12, mfu_measured_peak=achieved / measured,
                       mfu_nominal_peak=achieved / nominal if nominal else None)
    return row("lm_train", name, info["device"], timing, **metrics)


COLUMNS = ["config", "device", "bf16", "compile", ("step s", "seconds_median"), "tokens_per_step", "tokens_per_s",
           "tflops", "mfu_measured_peak", "mfu_nominal_peak"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=None, help="presets (default: tiny, and opt125m on a GPU)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5, help="updates before the timed ones (at least 1)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    add_out_argument(p)
    args = p.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        p.error("--warmup and --steps must be at least 1 (the first update starts the clock)")
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = args.configs or ["tiny", "opt125m"]
    if "opt125m" in configs and not torch.cuda.is_available():
        print("opt125m: skipped (no GPU: its tokens/s and MFU in bf16 with compile need one)", file=sys.stderr)
        configs = [c for c in configs if c != "opt125m"]
    rows = Rows(args.out)
    for name in configs:
        device = ["train.device=cpu"] if name == "tiny" else []
        rows.add(bench(name, args.steps, args.warmup, [*device, *args.overrides]))
    rows.close(COLUMNS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
