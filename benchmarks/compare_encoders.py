"""Several encoders side by side in one sweep (docs/design.md#encoders): a spidrkit model, a HuBERT-config and a
WavLM-config ``transformers`` model (random weights, tiny dims, built here and saved as model directories
with ``save_pretrained``) and MFCC, every metric (ABX, word MAP, k-means units, the linear phone and speaker
probes) on CPU, in one measured call of ``spidrkit.evaluation.sweep.run.sweep([...])``.

    python benchmarks/compare_encoders.py DIR [--corpus DIR] [--max-files N] [--kmeans K] [--model PATH ...]

``--corpus``: an aligned corpus with a held-out voice (default: ``DIR/corpus``, built with
``spidrkit data synth -o DIR/corpus --hours 0.3 --heldout-voice kal16`` when absent; flite needed). The
``transformers`` directories are loaded back through ``spidrkit.load`` (layer L = ``hidden_states[L]``);
``--model`` adds any model ``sweep`` accepts.
Rows (``benchmarks/harness.py``): the sweep's wall time (one run) with the baselines' phone probes, then each
model's own time in it with its best layers and probe accuracies (intervals included); on stderr, whether
MFCC beats the random-weights model.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import warnings
from pathlib import Path

import torch

from harness import Rows, Timing, add_out_argument, row, timed
from spidrkit.config import load_config
from spidrkit.models.spidr import SpidR

TINY = {"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 128,
        "conv_dim": (32,) * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}


def build_hf(kind: str, folder: Path):
    """A tiny random ``kind`` model saved with ``save_pretrained`` into ``folder``, loaded back through
    ``spidrkit.load`` (an :class:`~spidrkit.encoders.HFEncoder` and its provenance)."""
    from transformers import HubertConfig, HubertModel, WavLMConfig, WavLMModel

    from spidrkit.checkpoints import load

    config_cls, model_cls = {"hubert": (HubertConfig, HubertModel), "wavlm": (WavLMConfig, WavLMModel)}[kind]
    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        model_cls(config_cls(**TINY)).save_pretrained(folder)
    return load(folder)


def model_rows(res: dict) -> list[dict]:
    """A row per model: its share of the sweep's time, its best layers and probes."""
    rows = []
    for label, r in res["models"].items():
        best = max(r["layers"], key=lambda la: r["layers"][la]["probe_acc"])
        layer = r["layers"][best]
        rows.append(row("compare_encoders", label, "cpu", Timing(wall=[r["timings_s"]["total"]]),
                        best_layer_abx=r["best_layer"], best_layer_mean_abx=r["best_layer_mean_abx"],
                        best_layer_probe=best, probe_acc=layer["probe_acc"], probe_acc_low=layer["probe_acc_ci"][0],
                        probe_acc_high=layer["probe_acc_ci"][1], probe_per=layer["probe_per"],
                        speaker_acc=layer["speaker_acc"]))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, metavar="DIR", help="models, corpus (when built here) and report")
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--max-files", type=int, default=30, help="evaluation files per split")
    parser.add_argument("--kmeans", type=int, default=50)
    parser.add_argument("--model", action="append", default=[], help="more models (paths sweep accepts)")
    parser.add_argument("--threads", type=int, default=2)
    add_out_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = args.corpus or args.folder / "corpus"
    if not (corpus / "heldout.csv").is_file():
        subprocess.run([sys.executable, "-m", "spidrkit.cli", "data", "synth", "-o", str(corpus), "--hours", "0.3",
                        "--heldout-voice", "kal16", "--quiet"], check=True)
    torch.manual_seed(0)
    spidr = SpidR(load_config("tiny").model).eval()  # random weights: a trained checkpoint goes in --model
    models = [spidr, build_hf("hubert", args.folder / "models" / "hubert"),
              build_hf("wavlm", args.folder / "models" / "wavlm"), *args.model]
    labels = ["SpidR tiny (random)", "HuBERT tiny (random)", "WavLM tiny (random)", *[None] * len(args.model)]

    from spidrkit.evaluation.sweep.run import sweep

    res = {}

    def one_sweep() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res.update(sweep(models, corpus, args.folder / "report", label=labels, probe=True, kmeans_k=args.kmeans,
                             baselines=("mfcc", "random"), max_files=args.max_files, tsne_points=0, progress=False,
                             force=True))  # the benchmark's own folder, measured again each run

    timing = timed(one_sweep, repeats=1, warmup=0)
    rows = Rows(args.out)
    info, base = res["info"], res["comparison"]["baselines"]["probe_acc"]
    rows.add(row("compare_encoders", f"one sweep of {len(models)} models + MFCC + random weights", "cpu", timing,
                 models=len(models), eval_files=info["eval_files"], eval_seconds=info["eval_seconds"],
                 report=str(res["outputs"]["report_md"]), **{f"probe_acc {k}": v for k, v in base.items()}))
    for r in model_rows(res):
        rows.add(r)
    rows.close()
    randoms = {k: v for k, v in base.items() if "random init" in k}
    if "mfcc" in base and randoms:
        print(f"MFCC above random weights: {all(base['mfcc'] > v for v in randoms.values())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
