"""Extraction speed: audio seconds per wall-clock second, batched (spidrkit) vs one file at a time.

One file at a time is what the reference release's extraction script does: decode a file, run the model,
save its features, next file. ``spidrkit.extract`` sorts the files by length and runs padded batches.
Both include decoding and writing the features; both run in float32 (``--precision bf16`` for CUDA
autocast in the batched run). The two are run alternately ``--repeats`` times and the best run of each
(``seconds_min``) gives the rates, so that load from other processes does not decide the comparison. The
model has random weights (speed does not depend on them) and the audio is synthetic noise: no data, no
download. One row per device and mode (``benchmarks/harness.py``).

    python benchmarks/extract.py                       # BASE, 20 files of 4-12 s, CPU (and CUDA if present)
    python benchmarks/extract.py --config tiny --files 8 --device cpu
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from harness import Rows, add_out_argument, interleaved, row
from spidrkit.config import SAMPLE_RATE, load_config
from spidrkit.data.corpora.audio import load_audio
from spidrkit.data.corpora.manifest import ManifestEntry
from spidrkit.extraction.extract import extract
from spidrkit.extraction.features_io import save_features
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


def batched(model: SpidR, entries: list[ManifestEntry], out: Path, layer: int, device: torch.device,
            batch_seconds: float, precision: str) -> None:
    """spidrkit's way: length-sorted padded batches."""
    extract(model, entries, out, layers=[layer], batch_seconds=batch_seconds, device=device,
            precision=precision, progress=False)


def fresh(folder: Path, prefix: str) -> Callable[[], Path]:
    """A new output folder per call: extraction resumes, so a run into a used folder would skip its files."""
    counter = itertools.count()
    return lambda: folder / f"{prefix}-{next(counter)}"


def device_rows(args: argparse.Namespace, entries: list[ManifestEntry], tmp: Path, name: str) -> list[dict]:
    """Both modes on one device, interleaved (best of N: robust to load from other processes)."""
    device = torch.device(name)
    model = SpidR(load_config(args.config).model).eval().to(device)
    with torch.inference_mode():  # warm-up (kernels, allocator)
        model.layer_outputs(torch.randn(2 * model.sample_rate, device=device), layers=[args.layer])
    single, many = fresh(tmp, f"s-{name}"), fresh(tmp, f"b-{name}")
    timings = interleaved({
        "one file at a time": lambda: one_at_a_time(model, entries, single(), args.layer, device),
        "batched": lambda: batched(model, entries, many(), args.layer, device, args.batch_seconds, args.precision),
    }, repeats=args.repeats, warmup=0, device=device)
    audio = sum(e.num_samples for e in entries) / SAMPLE_RATE
    rows = []
    for mode, timing in timings.items():
        best, cpu = timing.stats()["seconds_min"], min(timing.cpu)
        rows.append(row("extract", f"{args.config} {name} {mode}", name, timing, config=args.config, mode=mode,
                        files=len(entries), audio_seconds=round(audio, 1), audio_s_per_s=audio / best,
                        cpu_seconds_min=cpu, audio_s_per_cpu_s=audio / cpu,
                        precision=args.precision if mode == "batched" else "fp32"))
    return rows


COLUMNS = ["config", "device", "mode", "files", "audio_seconds", ("best wall s", "seconds_min"), "audio_s_per_s",
           ("best CPU s", "cpu_seconds_min"), "audio_s_per_cpu_s", "precision"]


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
    add_out_argument(p)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = Rows(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        entries = make_corpus(Path(tmp), args.files, args.min_seconds, args.max_seconds)
        for name in devices:
            for r in device_rows(args, entries, Path(tmp), name):
                rows.add(r)
    rows.close(COLUMNS)


if __name__ == "__main__":
    main()
