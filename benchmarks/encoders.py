"""Extraction speed of a ``transformers`` HuBERT BASE (through spidrkit's wrapper) vs spidrkit's SpidR BASE.

Both models have random weights (speed does not depend on them: HuBERT is built from ``HubertConfig()``,
the published BASE geometry, locally; nothing is downloaded), run in float32 on the same synthetic audio
(a few files of about 10 s) through extraction's batched ``compute``, up to the same layer (the same
forward work: 7 conv layers, 12 blocks of width 768). The two are run alternately ``--repeats`` times and
the best run of each is kept, so load from other processes does not decide the comparison. Reported,
one row per model (``benchmarks/harness.py``): audio-seconds per second of each and, on HuBERT's row, its
speed as a share of SpidR's (target: >= 90 %), by wall-clock time and by the process's CPU time (which a
machine shared with other jobs disturbs less; with ``--threads 1`` it is the work itself).

    python benchmarks/encoders.py                       # 4 files of ~10 s, layer 12, CPU
    python benchmarks/encoders.py --files 2 --repeats 2 --layer 6
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from harness import Rows, add_out_argument, interleaved, row, timed
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


def extraction(model, wavs: list[torch.Tensor], layer: int, device: torch.device) -> Callable[[], None]:
    """One extraction of ``wavs`` up to ``layer``, as a call to time."""
    moved = [w.to(device) for w in wavs]
    return lambda: compute(model, moved, [layer])


HUBERT, SPIDR = "transformers HuBERT BASE", "spidrkit SpidR BASE"


def measure(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Both models, alternately ``--repeats`` times after a warm-up on one file: a row each; the HuBERT row
    carries its speed as a share of SpidR's (target >= 90 %), by wall and by CPU time of the best runs."""
    wavs = audio(args.files, args.seconds)
    total = sum(w.numel() for w in wavs) / SAMPLE_RATE
    models = {HUBERT: hubert_base().to(device), SPIDR: spidr_base().to(device)}
    for m in models.values():
        timed(extraction(m, wavs[:1], args.layer, device), repeats=1, warmup=0, device=device)  # warm-up
    timings = interleaved({name: extraction(m, wavs, args.layer, device) for name, m in models.items()},
                          repeats=args.repeats, warmup=0, device=device)
    best = {name: (t.stats()["seconds_min"], min(t.cpu)) for name, t in timings.items()}
    rows = []
    for name, m in models.items():
        wall, cpu = best[name]
        share = {}
        if name == HUBERT:
            share = {"share_of_spidr_wall": best[SPIDR][0] / wall, "share_of_spidr_cpu": best[SPIDR][1] / cpu}
        parameters = sum(p.numel() for p in m.parameters())
        rows.append(row("encoders", name, device, timings[name], parameters_m=parameters / 1e6,
                        input_normalization=m.input_normalization, files=args.files, audio_seconds=round(total, 1),
                        layer=args.layer, audio_s_per_s=total / wall, cpu_seconds_min=cpu,
                        audio_s_per_cpu_s=total / cpu, **share))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--layer", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    add_out_argument(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = Rows(args.out)
    for r in measure(args, torch.device(args.device)):
        rows.add(r)
    rows.close(["case", "parameters_m", "input_normalization", ("best wall s", "seconds_min"), "audio_s_per_s",
                ("best CPU s", "cpu_seconds_min"), "audio_s_per_cpu_s", "share_of_spidr_wall", "share_of_spidr_cpu"])


if __name__ == "__main__":
    main()
