"""Extraction speed: audio seconds per wall-clock second, batched (spidrkit) vs one file at a time.

One file at a time is what the reference release's extraction script does: decode a file, run the model,
save its features, next file. ``spidrkit.extract`` sorts the files by length and runs padded batches.
Both include decoding and writing the features; both run in float32 (``--precision bf16`` for CUDA
autocast in the batched run). The two are run alternately ``--repeats`` times and the best run of each
is reported, so that load from other processes does not decide the comparison. The model has random
weights (speed does not depend on them) and the audio is synthetic noise: no data, no download.

    python benchmarks/extract.py                       # BASE, 20 files of 4-12 s, CPU (and CUDA if present)
    python benchmarks/extract.py --config tiny --files 8 --device cpu
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from spidrkit.config import SAMPLE_RATE, load_config
from spidrkit.data.corpora.audio import load_audio
from spidrkit.data.corpora.manifest import ManifestEntry
from spidrkit.extraction.extract import extract
from spidrkit.extraction.features_io import save_features
from spidrkit.io import write_json_atomic
from spidrkit.models.spidr import SpidR


def make_corpus(folder: Path, files: int, low: float, high: float, seed: int = 0) -> list[ManifestEntry]:
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(files):
        n = int(rng.uniform(low, high) * SAMPLE_RATE)
        path = folder / f"utt{i:03d}.wav"
        sf.write(path, (0.1 * rng.standard_normal(n)).astype(np.float32), SAMPLE_RATE)
        entries.append(ManifestEntry(f"utt{i:03d}", str(path), n))
    return entries


def one_at_a_time(model: SpidR, entries: list[ManifestEntry], out: Path, layer: int, device: torch.device) -> None:
    """The reference's way: decode, forward, save, one file after the other."""
    with torch.inference_mode():
        for e in entries:
            wav = load_audio(e.path).to(device)
            feats = model.layer_outputs(wav, layers=[layer])[layer][0]
            save_features(out, e.fileid, feats)
    if device.type == "cuda":
        torch.cuda.synchronize()


def batched(model: SpidR, entries: list[ManifestEntry], out: Path, layer: int, device: torch.device,
            batch_seconds: float, precision: str) -> None:
    """spidrkit's way: length-sorted padded batches."""
    extract(model, entries, out, layers=[layer], batch_seconds=batch_seconds, device=device,
            precision=precision, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``fn(*args)``. On a shared machine the CPU time is
    the steadier measure of the work done; the wall time is what a user waits."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def run(args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(0)
    cfg = load_config(args.config)
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        entries = make_corpus(tmp, args.files, args.min_seconds, args.max_seconds)
        audio = sum(e.num_samples for e in entries) / SAMPLE_RATE
        for name in devices:
            device = torch.device(name)
            model = SpidR(cfg.model).eval().to(device)
            with torch.inference_mode():  # warm-up (kernels, allocator)
                model.layer_outputs(torch.randn(2 * model.sample_rate, device=device), layers=[args.layer])
            runs_single, runs_batched = [], []
            for rep in range(args.repeats):  # interleaved, best of N: robust to load from other processes
                runs_single.append(timed(one_at_a_time, model, entries, tmp / f"s-{name}-{rep}", args.layer, device))
                runs_batched.append(timed(batched, model, entries, tmp / f"b-{name}-{rep}", args.layer, device,
                                          args.batch_seconds, args.precision))
            for mode, runs in (("one file at a time", runs_single), ("batched", runs_batched)):
                secs = min(w for w, _ in runs)
                cpu = min(c for _, c in runs)
                results.append({
                    "config": args.config, "device": name, "mode": mode, "files": len(entries),
                    "audio_seconds": round(audio, 1), "wall_seconds": round(secs, 2),
                    "audio_seconds_per_second": round(audio / secs, 2),
                    "cpu_seconds": round(cpu, 2), "audio_seconds_per_cpu_second": round(audio / cpu, 2),
                    "precision": args.precision if mode == "batched" else "fp32",
                    "wall_runs_s": [round(w, 2) for w, _ in runs],
                })
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="base", help="preset or TOML (default: base)")
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--min-seconds", type=float, default=4.0)
    p.add_argument("--max-seconds", type=float, default=12.0)
    p.add_argument("--layer", type=int, default=6)
    p.add_argument("--batch-seconds", type=float, default=120.0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cpu, and cuda when present)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="for the batched run")
    p.add_argument("--repeats", type=int, default=2, help="runs per mode, interleaved; the best is reported")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run(args)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    print(f"{'config':<8}{'device':<8}{'mode':<20}{'files':>6}{'audio s':>9}{'wall s':>8}{'audio s/s':>10}"
          f"{'CPU s':>8}{'audio s/CPU s':>14}")
    for r in results:
        print(f"{r['config']:<8}{r['device']:<8}{r['mode']:<20}{r['files']:>6}{r['audio_seconds']:>9}"
              f"{r['wall_seconds']:>8}{r['audio_seconds_per_second']:>10}{r['cpu_seconds']:>8}"
              f"{r['audio_seconds_per_cpu_second']:>14}")
    if args.json:
        write_json_atomic(args.json, results)


if __name__ == "__main__":
    main()
