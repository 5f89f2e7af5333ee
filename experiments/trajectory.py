"""spidrkit against the authors' release over hundreds of training steps on speech, for several data orders.

    python experiments/trajectory.py OUT [--steps 300] [--seeds 0 1 2 3 4] [--corpus DIR]

Training at this size is chaotic (``tests/test_parity_trajectory.py``): single trajectories part ways, so the
question is whether the two implementations give the same *distribution* of trajectories. For each data-order
seed, one random initialisation trains three times on the same speech batches and masks: spidrkit, the
release (PyPI ``spidr`` 0.2.0, the test oracle), and the release with every weight moved by 1e-7 (the chaos
control). Per run: the loss curve, the step of the first collapse (the first step after the initial
descent, > 50, whose loss falls below 0.75 x the median of the 10 before: a codebook collapse shows as a
sudden drop), the mean loss over the last 50 steps and the final codebook perplexities (the teacher's
assignments of a fixed set of speech frames, the smallest over the codebooks). An exact two-sample
permutation test (every split of the 2 x seeds values) on each statistic compares spidrkit with the release,
and the control with the release; ``OUT/trajectory.json``, ``OUT/trajectory.md`` and
``OUT/trajectory.png`` (the loss curves). Results: docs/voices.md#engine (the method: docs/fidelity.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test oracle's driver


def first_collapse(losses: list[float], window: int = 10, drop: float = 0.75, start: int = 50) -> int | None:
    """The first step after the initial descent (``start``) whose loss falls below ``drop`` x the median of
    the ``window`` steps before it."""
    x = np.asarray(losses)
    for t in range(max(window, start), len(x)):
        if x[t] < drop * np.median(x[t - window : t]):
            return t + 1
    return None


def codebook_perplexity(state: dict, cfg, frames: torch.Tensor) -> float:
    """The smallest codebook perplexity of the teacher's assignments of ``frames`` (a batch of waveforms)."""
    from spidrkit.models.spidr import SpidR

    model = SpidR(cfg.model)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        labels = model.teacher_units(frames)
    out = []
    for units in labels.values():
        counts = torch.bincount(units.flatten(), minlength=cfg.model.codebook_size).double()
        p = counts / counts.sum()
        out.append(float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum())))
    return min(out)


def permutation_p(a: list[float], b: list[float]) -> float:
    """Exact two-sided permutation test of the difference of means (every split of the pooled values)."""
    pooled = np.asarray([*a, *b], dtype=float)
    n, observed = len(a), abs(np.mean(a) - np.mean(b))
    hits = total = 0
    for idx in itertools.combinations(range(len(pooled)), n):
        mask = np.zeros(len(pooled), dtype=bool)
        mask[list(idx)] = True
        total += 1
        hits += abs(pooled[mask].mean() - pooled[~mask].mean()) >= observed - 1e-12
    return hits / total


def speech(corpus: Path | None) -> list[torch.Tensor]:
    from spidrkit.data.corpora.audio import load_audio
    from spidrkit.data.corpora.manifest import read_manifest
    from spidrkit.data.synth.corpus import synthesize_corpus

    if corpus is None:
        corpus = synthesize_corpus(Path("runs/trajectory_speech"), voices=("awb", "rms", "slt"), hours=0.05,
                                   seed=5, workers=1, progress=False)
    return [torch.as_tensor(load_audio(e.path)).float() for e in read_manifest(Path(corpus) / "train.csv")]


def main(argv: list[str] | None = None) -> None:
    from oracle import TRAJECTORY, speech_batches, trajectories
    from spidrkit.config import load_config

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--corpus", type=Path, default=None, help="an aligned corpus (default: a small flite one)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_config("base_release", TRAJECTORY, variant="spidr")
    wavs = speech(args.corpus)
    fixed = speech_batches(wavs, 8, seed=10_000)
    frames = torch.cat([mbs[0][0] for mbs in fixed])
    runs: dict[str, list[dict]] = {"spidrkit": [], "release": [], "release moved by 1e-7": []}
    for seed in args.seeds:
        losses, states = trajectories(cfg, speech_batches(wavs, args.steps, seed=seed), init_seed=seed)
        for name, loss, state in zip(runs, losses, states):
            runs[name].append({"seed": seed, "losses": loss, "first_collapse": first_collapse(loss),
                               "final_loss": float(np.mean(loss[-50:])),
                               "min_codebook_ppl": codebook_perplexity(state, cfg, frames)})
            print(f"seed {seed} {name}: collapse at {runs[name][-1]['first_collapse']}, final loss "
                  f"{runs[name][-1]['final_loss']:.4f}, min codebook ppl {runs[name][-1]['min_codebook_ppl']:.2f}")
    stats = ("first_collapse", "final_loss", "min_codebook_ppl")
    tests = {}
    for other in ("spidrkit", "release moved by 1e-7"):
        tests[other] = {s: permutation_p([r[s] if r[s] is not None else args.steps + 1 for r in runs[other]],
                                         [r[s] if r[s] is not None else args.steps + 1 for r in runs["release"]])
                        for s in stats}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "trajectory.json").write_text(json.dumps({"steps": args.steps, "runs": runs, "p": tests}))
    lines = [f"# {args.steps} steps, data orders {args.seeds}", "",
             "| run | " + " | ".join(f"{s} (mean ± sd)" for s in stats) + " | p vs release |",
             "|---|" + "---|" * (len(stats) + 1)]
    for name, rows in runs.items():
        cells = []
        for s in stats:
            v = [r[s] if r[s] is not None else np.nan for r in rows]
            cells.append(f"{np.nanmean(v):.3f} ± {np.nanstd(v, ddof=1):.3f}")
        ps = ", ".join(f"{s} {tests[name][s]:.2f}" for s in stats) if name in tests else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ps} |")
    (args.out / "trajectory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(runs, args.out / "trajectory.png")


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    styles = {"spidrkit": "-", "release": "--", "release moved by 1e-7": ":"}
    for name, rows in runs.items():
        for i, r in enumerate(rows):
            ax.plot(np.arange(1, len(r["losses"]) + 1), r["losses"], styles[name], color=f"C{i}", lw=1,
                    label=name if i == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (mean cross-entropy per masked frame and codebook)")
    ax.set_title("spidrkit vs the release vs the release moved by 1e-7 (colour: data order)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
