"""Extraction speed of a ``transformers`` HuBERT BASE (through spidrkit's wrapper) vs spidrkit's SpidR BASE.

Both models have random weights (speed does not depend on them: HuBERT is built from ``HubertConfig()``,
the published BASE geometry, locally; nothing is downloaded), run in float32 on the same synthetic audio
(a few files of about 10 s) through extraction's batched ``compute``, up to the same layer (the same
forward work: 7 conv layers, 12 blocks of width 768). The two are run alternately ``--repeats`` times and
the best run of each is kept, so load from other processes does not decide the comparison. Reported:
audio-seconds per second of each and their ratio (target: HuBERT >= 90 % of SpidR), by wall-clock time
and by the process's CPU time (which a machine shared with other jobs disturbs less; with ``--threads 1``
it is the work itself).

    python benchmarks/encoders.py                       # 4 files of ~10 s, layer 12, CPU
    python benchmarks/encoders.py --files 2 --repeats 2 --layer 6
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from spidrkit.config import SAMPLE_RATE, load_config
from spidrkit.encoders import HFEncoder
from spidrkit.extraction.compute import compute
from spidrkit.models.spidr import SpidR


def audio(files: int, seconds: float, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lengths = [int((seconds + float(torch.empty(1).uniform_(-0.5, 0.5, generator=gen))) * SAMPLE_RATE)
               for _ in range(files)]
    return [0.1 * torch.randn(n, generator=gen) for n in lengths]


def hubert_base() -> HFEncoder:
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    return HFEncoder(HubertModel(HubertConfig())).eval()


def spidr_base() -> SpidR:
    torch.manual_seed(0)
    return SpidR(load_config("base").model).eval()


def timed(model, wavs: list[torch.Tensor], layer: int, device: torch.device) -> tuple[float, float]:
    """(wall, CPU) seconds of one extraction of ``wavs``."""
    start, cpu = time.perf_counter(), time.process_time()
    compute(model, [w.to(device) for w in wavs], [layer])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--layer", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    wavs = audio(args.files, args.seconds)
    total = sum(w.numel() for w in wavs) / SAMPLE_RATE
    models = {"transformers HuBERT BASE": hubert_base().to(device), "spidrkit SpidR BASE": spidr_base().to(device)}
    for name, m in models.items():
        params = sum(p.numel() for p in m.parameters())
        print(f"{name}: {params / 1e6:.1f} M parameters, input {m.input_normalization}")
        timed(m, wavs[:1], args.layer, device)  # warm-up
    wall = {name: float("inf") for name in models}
    cpu = dict(wall)
    for _ in range(args.repeats):
        for name, m in models.items():
            w, c = timed(m, wavs, args.layer, device)
            wall[name], cpu[name] = min(wall[name], w), min(cpu[name], c)
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {args.device}, "
          f"float32, {args.files} files, {total:.1f} s of audio, layer {args.layer}, best of {args.repeats}")
    for name in models:
        print(f"  {name:26s} wall {wall[name]:7.2f} s = {total / wall[name]:6.2f} audio-s/s   "
              f"CPU {cpu[name]:7.2f} s = {total / cpu[name]:6.2f} audio-s/CPU-s")
    hub, spidr = "transformers HuBERT BASE", "spidrkit SpidR BASE"
    print(f"  HuBERT / SpidR (target >= 90 %): {100 * wall[spidr] / wall[hub]:.1f} % by wall time, "
          f"{100 * cpu[spidr] / cpu[hub]:.1f} % by CPU time")


if __name__ == "__main__":
    main()
