"""One prepared GPU check (``benchmarks/gpu_check.sh``): at most 5 minutes on one GPU, compile included.

    bash benchmarks/gpu_check.sh            # all checks; without a GPU, the CPU-side ones (and says so)
    bash benchmarks/gpu_check.sh --cpu      # CPU-side checks only, even on a GPU machine
    bash benchmarks/gpu_check.sh --out rows.jsonl   # the table, and its rows as JSON lines (benchmarks/harness.py)

Every check runs in its own process under a time cap (a hang, a crash or an out-of-memory is a row of
the table, not the end of the run), and the caps are cut to what is left of the total budget:

- ``env``: torch, the GPU, its dense bf16 peak (989 TFLOP/s for H100/H200) and a measured matmul peak;
- ``cuda_vs_cpu``: BASE with random weights, a padded batch, fp32 with TF32 off: every layer's output and
  every head's posteriors on CUDA vs CPU, relative error (max |cuda - cpu| / max |cpu|) <= 1e-4;
- ``train_step``: BASE, bf16 autocast + ``torch.compile``, 5 warm-up and 20 timed steps (the warm-up,
  compilation included, reported apart): audio-s/s and MFU = 52 GFLOP x audio-s/s / dense bf16 peak
  (52 GFLOP: the analytic cost of a BASE step per second of audio, ``docs/design.md#performance``),
  also the analytic FLOPs (``models.flops``) against the dense and the measured matmul peak;
- ``capturable``: the training step's CUDA-only path (capturable AdamW, learning rate as a device
  tensor, non-finite steps masked on the device): one step equals the CPU step, a NaN batch moves no
  weight; what the skipped step does to AdamW's moments is reported (emulated on the CPU as well);
- ``extraction``: ~200 synthetic files of 2-35 s, batched (``spidrkit.extract``) vs one file at a time;
- ``small_pretrain``: 1 minute of ``small`` pretraining (4 layers, width 256) on synthetic "speech"
  made of discrete sound units: loss and codebook perplexity at the start and the end;
- ``unit_lm``: the unit language model's tokens/s, once it exists.

On a machine without a GPU, ``train_step``, ``extraction`` and ``small_pretrain`` run reduced on the CPU
(``small`` model, a few steps / files / seconds: the code paths, not the numbers), ``capturable`` runs its
emulation, and ``cuda_vs_cpu`` is skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

BUDGET_S = {True: 290.0, False: 330.0}  # with / without a GPU; process start-up and compilation included
MIN_CAP_S = 10.0
# name -> (cap in seconds on a GPU, cap on the CPU); the CPU caps allow for a loaded shared machine.
CHECKS = {  # in this order; the caps are maxima, cut to what is left of the budget
    "env": (20, 30),
    "unit_lm": (0, 0),  # no process of its own
    "cuda_vs_cpu": (35, 0),  # nothing to run without a GPU
    "capturable": (25, 45),
    "train_step": (150, 75),  # BASE compilation dominates
    "extraction": (45, 75),
    "small_pretrain": (75, 75),  # 60 s of training when the budget allows
}
DENSE_BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # TFLOP/s, dense (no sparsity)
# the analytic cost of a BASE training step per second of audio (docs/design.md#performance): the MFU convention
BASE_GFLOP_PER_AUDIO_S = 52.0


def micro_config():
    """The CPU stand-in for ``small``: the code paths in seconds on a shared CPU, not its numbers."""
    import train_step as ts
    from spidrkit.config import ModelConfig

    cfg = ts.small_config()
    model = ModelConfig(conv_dim=32, dim=64, num_layers=2, num_heads=4, ffn_dim=128, num_codebooks=2,
                        codebook_size=32)
    return replace(cfg, model=model)


def rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def row(status: str, result: str, target: str = "", device: str = "") -> dict:
    return {"status": status, "result": result, "target": target, "device": device}


def dense_peak(gpu_name: str) -> float | None:
    return next((v for k, v in DENSE_BF16_PEAK.items() if k in gpu_name), None)


def no_tf32() -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


# ------------------------------------------------------------------------------------------------ checks
def check_env(cuda: bool) -> dict:
    import torch

    import train_step as ts

    if not cuda:
        peak = ts.matmul_peak(torch.device("cpu"), torch.float32, n=1024, reps=5)
        return row("ok", f"torch {torch.__version__}, no GPU, {torch.get_num_threads()} threads; CPU fp32 "
                   f"matmul {peak / 1e9:.0f} GFLOP/s", device="cpu")
    name = torch.cuda.get_device_name(0)
    measured = ts.matmul_peak(torch.device("cuda"), torch.bfloat16, n=8192, reps=10)
    dense = dense_peak(name)
    share = f" = {100 * measured / dense:.0f} % of the dense peak {dense / 1e12:.0f}" if dense else \
        " (dense peak unknown for this GPU)"
    return row("ok", f"torch {torch.__version__}, {name}; bf16 matmul 8192^3: {measured / 1e12:.0f} TFLOP/s"
               f"{share}", device="cuda")


def base_model(seed: int = 0):
    import torch

    from spidrkit.config import load_config
    from spidrkit.models.spidr import SpidR

    torch.manual_seed(seed)
    return SpidR(load_config("base").model).eval()


def check_cuda_vs_cpu(cuda: bool) -> dict:
    if not cuda:
        return row("skipped", "skipped: no GPU", "rel. error <= 1e-4", "-")
    import torch

    no_tf32()
    model = base_model()
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([64000, 40000])
    wav = torch.randn(2, 64000, generator=g)
    out = {}
    for dev in ("cpu", "cuda"):
        m = model.to(dev)
        with torch.inference_mode():
            feats = m.layer_outputs(wav.to(dev), lengths.to(dev))
            preds = m.codebook_predictions(wav.to(dev), lengths.to(dev))
        out[dev] = {f"layer {k}": v.float().cpu() for k, v in feats.items()}
        out[dev] |= {f"head {k}": p.probs.float().cpu() for k, p in preds.items()}
        out[dev] |= {f"units {k}": p.units.cpu() for k, p in preds.items()}
    worst, where, agree = 0.0, "", []
    for key, ref in out["cpu"].items():
        got = out["cuda"][key]
        if key.startswith("units"):
            agree.append((got == ref).float().mean().item())
            continue
        err = ((got - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()
        if err >= worst:
            worst, where = err, key
    status = "ok" if worst <= 1e-4 else "FAIL"
    return row(status, f"max rel. error {worst:.1e} ({where}); head argmax agreement {100 * min(agree):.2f} %",
               "rel. error <= 1e-4", "cuda fp32 (TF32 off)")


def check_train_step(cuda: bool) -> dict:
    import torch

    import train_step as ts
    from spidrkit.config import SAMPLE_RATE, load_config
    from spidrkit.models.flops import step_flops

    if cuda:
        cfg = load_config("base")
        cfg = replace(cfg, train=replace(cfg.train, precision="bf16", compile=True, device="cuda"))
        device, batch, seconds, warmup, steps, label = torch.device("cuda"), 16, 15.0, 5, 20, "base bf16+compile"
    else:  # the code path only: a micro model, fp32, eager
        cfg = micro_config()
        cfg = replace(cfg, train=replace(cfg.train, precision="fp32", compile=False, device="cpu"))
        device, batch, seconds, warmup, steps, label = torch.device("cpu"), 1, 2.0, 1, 3, "micro fp32 (CPU smoke)"
    t0 = time.perf_counter()
    r = ts.bench_one(cfg, device, batch, seconds, warmup, steps)
    wall = time.perf_counter() - t0
    timing = r["timing"]
    med = timing.stats()["seconds_median"]
    warm_s = wall - sum(timing.wall)  # model build, compilation and the warm-up steps
    asps = batch * seconds / med
    flops = step_flops(cfg.model, batch, int(seconds * SAMPLE_RATE))["total"]
    dtype = torch.bfloat16 if cuda else torch.float32
    measured = ts.matmul_peak(device, dtype, n=8192 if cuda else 1024, reps=10 if cuda else 3)
    dense = dense_peak(torch.cuda.get_device_name(0)) if cuda else None
    parts = [f"{label}, {batch} x {seconds:g} s: {med * 1e3:.0f} ms/step, {rate(asps)} audio-s/s",
             f"build + {warmup} warm-up steps{' incl. compile' if cfg.train.compile else ''} {warm_s:.0f} s "
             f"(first step {timing.first:.1f} s)"]
    if dense:
        mfu = BASE_GFLOP_PER_AUDIO_S * 1e9 * asps / dense
        parts.append(f"MFU {100 * mfu:.1f} % (52 GFLOP x audio-s/s / {dense / 1e12:.0f} TFLOP/s)")
        parts.append(f"analytic {flops / med / 1e12:.0f} TFLOP/s = {100 * flops / med / dense:.1f} % of dense")
    parts.append(f"{100 * flops / med / measured:.1f} % of measured matmul {measured / 1e12:.2f} TFLOP/s")
    parts.append(f"peak memory {r['memory_gib']:.1f} GiB")
    if not cuda:
        return row("ok", "; ".join(parts), "(GPU only: >= 25 % MFU)", "cpu")
    status = "ok" if dense and mfu >= 0.25 else ("FAIL" if dense else "info")
    return row(status, "; ".join(parts), ">= 25 % MFU (~4,700 audio-s/s on H100/H200)", "cuda")


def emulated_skip() -> str:
    """What the CUDA path's skipped step does to AdamW (gradients zeroed on the device, lr 0): emulated
    with a plain AdamW on the CPU."""
    import torch

    p = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=0.01, betas=(0.9, 0.95))
    p.grad = torch.full((4,), 0.5)
    opt.step()
    state = {k: v.clone() if torch.is_tensor(v) else v for k, v in opt.state[p].items()}
    before = p.detach().clone()
    p.grad = torch.zeros(4)
    opt.param_groups[0]["lr"] = 0.0
    opt.step()
    after = opt.state[p]
    moved = not torch.equal(before, p.detach())
    ratio = (after["exp_avg"] / state["exp_avg"]).mean().item()
    ratio_sq = (after["exp_avg_sq"] / state["exp_avg_sq"]).mean().item()
    return (f"a skipped step (CUDA path, emulated): weights {'MOVED' if moved else 'unchanged'}, but AdamW "
            f"exp_avg x{ratio:.2f}, exp_avg_sq x{ratio_sq:.2f}, step {int(state['step'])}->{int(after['step'])} "
            f"(the CPU path and the release's GradScaler skip the optimizer: state untouched)")


def check_capturable(cuda: bool) -> dict:
    note = emulated_skip()
    if not cuda:
        return row("note", note + "; CUDA part skipped: no GPU", "skip = no state change", "cpu")
    import numpy as np
    import torch

    import train_step as ts
    from spidrkit.config import OptimConfig
    from spidrkit.models.masking import sample_mask
    from spidrkit.models.spidr import SpidR
    from spidrkit.training.step import MicroBatch, Stepper

    no_tf32()
    cfg = ts.small_config()
    cfg = replace(cfg, model=replace(cfg.model, dropout=0.0, attention_dropout=0.0, layerdrop=0.0),
                  optim=OptimConfig(warmup_steps=0, lr=1e-3, weight_decay=0.1),
                  train=replace(cfg.train, precision="fp32", compile=False))
    torch.manual_seed(0)
    init = SpidR(cfg.model).state_dict()
    g = torch.Generator().manual_seed(0)
    wav = torch.randn(2, 48000, generator=g)
    wav = (wav - wav.mean(1, keepdim=True)) / wav.std(1, keepdim=True)
    T = SpidR(cfg.model).num_frames(48000)
    masks = [sample_mask(2, T, rng=np.random.default_rng(i)) for i in range(3)]
    runs = {}
    for dev in ("cpu", "cuda"):
        model = SpidR(cfg.model).to(dev)
        model.load_state_dict(init)
        stepper = Stepper(model, cfg, torch.device(dev))
        snaps = [{k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}]
        for i, w in enumerate([wav, torch.full_like(wav, float("nan")), wav]):
            stepper.step([MicroBatch(w, masks[i])])
            snaps.append({k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()})
        runs[dev] = (snaps, stepper.capturable, float(stepper.total_nonfinite))

    def worst(a0: dict, a1: dict, b0: dict, b1: dict) -> float:
        errs = []
        for k in a0:
            if k.startswith("teacher.") or k == "current_step":
                continue
            ref = (b1[k] - b0[k]).norm()
            if ref > 0:
                errs.append(((a1[k] - a0[k]) - (b1[k] - b0[k])).norm().item() / ref.item())
        return max(errs)

    (gs, capturable, skipped), (cs, _, _) = runs["cuda"], runs["cpu"]
    first = worst(gs[0], gs[1], cs[0], cs[1])
    still = all(torch.equal(gs[1][k], gs[2][k]) for k in gs[1] if not k.startswith("teacher.") and k != "current_step")
    after = worst(gs[2], gs[3], cs[2], cs[3])
    ok = capturable and first <= 1e-4 and still and skipped == 1
    return row("ok" if ok else "FAIL",
               f"capturable={capturable}; step 1 vs CPU: max per-tensor |dcuda - dcpu| / |dcpu| {first:.1e}; "
               f"NaN batch: weights and codebooks {'unchanged' if still else 'MOVED'}, counted {skipped:g}; "
               f"next step vs CPU {after:.1e}; {note}",
               "step <= 1e-4 rel.; NaN step moves nothing", "cuda fp32")


def once(fn, device) -> float:
    """Wall seconds of one call of ``fn`` (the GPU synchronised around it)."""
    from harness import timed

    return timed(fn, repeats=1, warmup=0, device=device).stats()["seconds_min"]


def check_extraction(cuda: bool) -> dict:
    import torch

    import extract as ex
    from spidrkit.models.spidr import SpidR

    if cuda:
        model, files, low, high, dev = base_model(), 200, 2.0, 35.0, torch.device("cuda")
    else:
        torch.manual_seed(0)
        model, files, low, high, dev = SpidR(micro_config().model).eval(), 12, 2.0, 6.0, torch.device("cpu")
    model = model.to(dev)
    layer = 6 if model.num_layers >= 6 else model.num_layers
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        entries = ex.make_corpus(tmp, files, low, high)
        make_s = time.perf_counter() - t
        audio = sum(e.num_samples for e in entries) / model.sample_rate
        with torch.inference_mode():
            model.layer_outputs(torch.randn(2 * model.sample_rate, device=dev), layers=[layer])
        single = once(lambda: ex.one_at_a_time(model, entries, tmp / "single", layer, dev), dev)
        batched = once(lambda: ex.batched(model, entries, tmp / "batched", layer, dev, 120.0, "fp32"), dev)
        extra = ""
        if cuda:
            bf16 = once(lambda: ex.batched(model, entries, tmp / "bf16", layer, dev, 120.0, "bf16"), dev)
            extra = f"; batched bf16 {rate(audio / bf16)} audio-s/s ({single / bf16:.1f}x)"
    ratio = single / batched
    text = (f"{files} files, {audio:,.0f} s of audio (written in {make_s:.0f} s): one at a time "
            f"{rate(audio / single)} audio-s/s, batched fp32 {rate(audio / batched)} audio-s/s = {ratio:.1f}x{extra}")
    if not cuda:
        return row("info", "micro model (CPU, reduced): " + text, "(GPU: >= 5x)", "cpu")
    return row("ok" if ratio >= 5 else "FAIL", "base: " + text, "batched >= 5x one at a time", "cuda fp32")


def synthetic_speech(n: int, seconds: float, seed: int = 0):
    """``n`` standardised waveforms of 40 discrete "sounds" (a pitch and two formant-like partials each),
    in segments of 40-200 ms with 5 ms ramps: something with units to discover, made in a second."""
    import numpy as np
    import torch

    sr = 16000
    rng = np.random.default_rng(seed)
    sounds = rng.uniform([90, 300, 900], [250, 900, 2600], size=(40, 3))
    t = np.arange(int(seconds * sr)) / sr
    out = np.zeros((n, t.size), dtype=np.float32)
    for i in range(n):
        pos = 0
        while pos < t.size:
            seg = int(rng.uniform(0.04, 0.2) * sr)
            f0, f1, f2 = sounds[rng.integers(40)]
            tt = t[pos:pos + seg]
            ramp = np.minimum(1.0, np.minimum(np.arange(tt.size), np.arange(tt.size)[::-1]) / 80.0)
            out[i, pos:pos + seg] = ramp * (np.sin(2 * np.pi * f0 * tt) + 0.6 * np.sin(2 * np.pi * f1 * tt)
                                            + 0.3 * np.sin(2 * np.pi * f2 * tt))
            pos += seg
    out += 0.05 * rng.standard_normal(out.shape).astype(np.float32)
    wav = torch.from_numpy(out)
    return (wav - wav.mean(1, keepdim=True)) / wav.std(1, keepdim=True)


def check_small_pretrain(cuda: bool, seconds_left: float) -> dict:
    import numpy as np
    import torch

    import train_step as ts
    from spidrkit.models.masking import sample_mask
    from spidrkit.models.spidr import SpidR
    from spidrkit.training.step import MicroBatch, Stepper

    cfg = ts.small_config() if cuda else micro_config()
    dev = torch.device("cuda" if cuda else "cpu")
    batch, seconds, duration = (8, 8.0, min(60.0, seconds_left)) if cuda else (2, 2.0, min(15.0, seconds_left))
    cfg = replace(cfg, optim=replace(cfg.optim, warmup_steps=100, hold_steps=10**7),
                  train=replace(cfg.train, precision="bf16" if cuda else "fp32", compile=False))
    torch.manual_seed(0)
    model = SpidR(cfg.model).to(dev)
    stepper = Stepper(model, cfg, dev)
    pool = synthetic_speech(64 if cuda else 16, seconds)
    T = model.num_frames(pool.shape[1])
    rng = np.random.default_rng(0)
    logs = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < duration:
        pick = torch.from_numpy(rng.choice(pool.shape[0], batch, replace=False))
        m = cfg.masking
        out = stepper.step([MicroBatch(pool[pick], sample_mask(batch, T, m.prob, m.length, m.min_masks, rng))])
        logs.append(torch.stack([out["loss"].float(), out["codebook_ppl"].float().mean()]))
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    logs = torch.stack(logs).cpu()
    k = max(1, min(20, len(logs) // 5))
    start, end = logs[:k].mean(0).tolist(), logs[-k:].mean(0).tolist()
    finite = bool(torch.isfinite(logs).all())
    text = (f"{len(logs)} steps in {wall:.0f} s ({rate(len(logs) * batch * seconds / wall)} audio-s/s), {batch} x "
            f"{seconds:g} s synthetic units; loss {start[0]:.3f} -> {end[0]:.3f}; codebook perplexity "
            f"{start[1]:.1f} -> {end[1]:.1f} (of {cfg.model.codebook_size}; means of {k} steps)")
    ok = finite and end[0] < start[0]
    if not cuda:
        return row("ok" if finite else "FAIL", "micro model (CPU, reduced): " + text, "(GPU: 1 min, loss falls)",
                   "cpu fp32")
    return row("ok" if ok else "FAIL", text, "finite, loss falls", "cuda bf16")


def check_unit_lm(cuda: bool) -> dict:
    found = [m for m in ("spidrkit.lm", "spidrkit.models.unit_lm", "spidrkit.unit_lm") if _exists(m)]
    if found:
        return row("skipped", f"skipped: {found[0]} exists, but this check has no benchmark for it yet",
                   "tokens/s", "-")
    return row("skipped", "skipped: no unit LM yet", "tokens/s", "-")


def _exists(module: str) -> bool:
    with contextlib.suppress(ImportError, ValueError):
        return importlib.util.find_spec(module) is not None
    return False


# ------------------------------------------------------------------------------------------------ driver
def call_check(name: str, cuda: bool, seconds_left: float) -> dict:
    import torch

    torch.manual_seed(0)
    fn = globals()[f"check_{name}"]
    try:
        return fn(cuda, seconds_left) if name == "small_pretrain" else fn(cuda)
    except CheckTimeout:
        raise
    except Exception as e:  # reported in the table
        traceback.print_exc()
        return row("error", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")


def run_child(name: str, cuda: bool, out: Path, seconds_left: float) -> int:
    out.write_text(json.dumps(call_check(name, cuda, seconds_left)))
    return 0


class CheckTimeout(Exception):
    pass


def run_inline(name: str, cap: float) -> dict:
    """Without a GPU the checks run in this process (one start-up of torch instead of one per check, which
    matters on a loaded shared CPU), each under a SIGALRM cap."""
    def alarm(signum, frame):
        raise CheckTimeout

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(max(1, int(cap)))
    try:
        return call_check(name, False, max(cap - 15, 5))
    except CheckTimeout:
        return row("timeout", f"did not finish within its cap of {cap:.0f} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_all(cuda: bool, budget: float) -> list[dict]:
    deadline = time.monotonic() + budget
    rows = []
    for name, caps in CHECKS.items():
        left = deadline - time.monotonic()
        cap = min(caps[0] if cuda else caps[1], left - 2)
        start = time.monotonic()
        if caps[0 if cuda else 1] == 0:  # answered here, without starting a process
            rows.append({"check": name, "seconds": 0.0} | globals()[f"check_{name}"](cuda))
            continue
        if cap < MIN_CAP_S:
            rows.append({"check": name, "seconds": 0.0} | row("skipped", f"skipped: out of the {budget:.0f} s budget"))
            continue
        print(f"[gpu_check] {name} (cap {cap:.0f} s) ...", file=sys.stderr, flush=True)
        if not cuda:
            rows.append({"check": name} | run_inline(name, cap) | {"seconds": time.monotonic() - start})
            continue
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            out = Path(f.name)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--child-out", str(out),
               "--seconds-left", str(max(cap - 15, 5))] + ([] if cuda else ["--cpu"])
        try:
            proc = subprocess.run(cmd, timeout=cap, capture_output=True, text=True)
            text = out.read_text() if out.stat().st_size else ""
            if text:
                result = json.loads(text)
            else:
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                result = row("error", f"exit {proc.returncode}: {last[:300]}")
            if result["status"] == "error":
                sys.stderr.write(proc.stderr[-3000:])
        except subprocess.TimeoutExpired:
            result = row("timeout", f"did not finish within its cap of {cap:.0f} s")
        finally:
            out.unlink(missing_ok=True)
        rows.append({"check": name, "seconds": time.monotonic() - start} | result)
    return rows


def bench_rows(rows: list[dict]) -> list[dict]:
    """The checks as rows of the benchmarks' format (``benchmarks/harness.py``): one timed run each."""
    import harness

    return [harness.row("gpu_check", r["check"], r.get("device") or "-", harness.Timing(wall=[r["seconds"]]),
                        status=r["status"], result=r["result"], target=r.get("target") or "-") for r in rows]


TABLE = [("check", "case"), ("device", "device"), ("status", "status"), ("s", "seconds_median"),
         ("result", "result"), ("target", "target")]


def print_table(rows: list[dict], cuda: bool, total: float) -> None:
    import torch

    from harness import markdown

    gpu = torch.cuda.get_device_name(0) if cuda else "none (CPU-side checks only)"
    print(f"\n## gpu_check: GPU {gpu}; torch {torch.__version__}; total {total:.0f} s\n")
    print(markdown(bench_rows(rows), TABLE))
    skipped = [r["check"] for r in rows if r["status"] == "skipped"]
    if not cuda:
        print("\nNo GPU: cuda_vs_cpu and the CUDA parts of capturable were skipped; train_step, extraction "
              "and small_pretrain ran reduced on the CPU (code paths, not GPU numbers).")
    if skipped:
        print(f"Skipped: {', '.join(skipped)}.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="CPU-side checks only, even with a GPU")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for all checks (default 290 with a GPU, 330 without)")
    p.add_argument("--out", metavar="FILE", help="also write the checks as JSON rows (benchmarks/harness.py) to FILE")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    p.add_argument("--seconds-left", type=float, default=60.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    import torch

    cuda = torch.cuda.is_available() and not args.cpu
    if args.child:
        return run_child(args.child, cuda, Path(args.child_out), args.seconds_left)
    t = time.monotonic()
    rows = run_all(cuda, args.budget or BUDGET_S[cuda])
    if args.out:
        from harness import Rows

        sink = Rows(args.out)
        for r in bench_rows(rows):
            sink.add(r)
    print_table(rows, cuda, time.monotonic() - t)
    return 0 if all(r["status"] in ("ok", "info", "note", "skipped") for r in rows) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
