"""The codebook update alone, with a fixed teacher: how many codewords stay alive against the frames per update.

    python experiments/codebook_ema.py --corpus runs/demo/corpus [--frontend logmel] [--frames 270 1080 6000]

The targets are the instance-normalised outputs of one layer of a ``tiny`` SpidR with RANDOM weights (its
teacher, frozen: the targets never drift) on the train split of ``--corpus``. For each number of frames per
update B and each codebook initialisation (``random``: the paper's; ``data``: ``model.codebook_init = "data"``,
codewords drawn from the first batch), the EMA update of the model (:class:`spidrkit.models.codebook.Codebook`,
decay ``--decay``) runs ``--updates`` times on B frames drawn at random; the perplexity and the active
codewords over a fixed set of 10,000 frames are printed after 1, 10, 100 and the last update. It isolates the
codebook's own dynamics from the teacher's (``docs/method.md#codebook-update``): the demo's steps update each
codebook from ~270 masked frames, the paper's from ~6,000 per GPU. Results: docs/cpu_study.md#what-the-runs-show
(finding 4) and docs/method.md#codebook-update.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def perplexity(labels: torch.Tensor, size: int) -> tuple[float, int]:
    counts = torch.bincount(labels, minlength=size).float()
    p = counts[counts > 0] / counts.sum()
    return float(2 ** -(p * p.log2()).sum()), int((counts > 0).sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", required=True, type=Path)
    p.add_argument("--frontend", default="logmel", choices=("cnn", "logmel"))
    p.add_argument("--layer", type=int, default=6)
    p.add_argument("--files", type=int, default=400)
    p.add_argument("--frames", type=int, nargs="+", default=[270, 1080, 6000])
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--decay", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from spidrkit.config import load_config
    from spidrkit.data.corpora.audio import load_audio
    from spidrkit.data.corpora.manifest import read_manifest
    from spidrkit.models.codebook import Codebook, instance_norm
    from spidrkit.models.signal import standardize
    from spidrkit.models.spidr import SpidR

    torch.manual_seed(args.seed)
    model = SpidR(load_config("tiny", [f"model.frontend={args.frontend}"]).model).eval()
    size = model.cfg.codebook_size
    rows = read_manifest(args.corpus / "train.csv")[: args.files]
    frames = []
    with torch.no_grad():
        for r in rows:
            wav = standardize(load_audio(r.path, model.sample_rate))[None]
            _, reps = model.teacher(model.feature_projection(model.feature_extractor(wav), dropout=False))
            frames.append(instance_norm(reps[args.layer - 1])[0])
    z = torch.cat(frames)
    n = z.shape[0]
    fixed = z[torch.randperm(n, generator=torch.Generator().manual_seed(args.seed))[:10_000]]
    print(f"{n} frames of layer {args.layer} ({args.frontend} front end, random weights), {args.files} files; "
          f"fixed set {fixed.shape[0]} frames; decay {args.decay}")
    print("| frames per update | init | " + " | ".join(f"after {u}" for u in (1, 10, 100, args.updates)) + " |")
    print("|---|---|" + "---|" * 4)
    for b in args.frames:
        for init in ("random", "data"):
            torch.manual_seed(args.seed + 1)
            gen = torch.Generator().manual_seed(args.seed + 2)
            cb = Codebook(size, z.shape[1], args.decay)
            if init == "data":
                cb.init_from(z[torch.randint(n, (b,), generator=gen)], gen)
            cells = []
            for step in range(1, args.updates + 1):
                batch = z[torch.randint(n, (b,), generator=gen)]
                cb.update(*cb.statistics(batch, cb.assign(batch)))
                if step in (1, 10, 100, args.updates):
                    ppl, active = perplexity(cb.assign(fixed), size)
                    cells.append(f"{ppl:.1f} ({active})")
            print(f"| {b} | {init} | " + " | ".join(cells) + " |", flush=True)
    print("cells: perplexity over the fixed set (active codewords)")


if __name__ == "__main__":
    main()
