"""Several encoders side by side in one sweep (issue 15's target): a spidrkit model, a HuBERT-config and a
WavLM-config ``transformers`` model (random weights, tiny dims, built here and saved as model directories
with ``save_pretrained``) and MFCC, every metric (ABX, word MAP, k-means units, the linear phone and speaker
probes) on CPU, in one measured call of ``spidrkit.evaluation.sweep.run.sweep([...])``.

    python benchmarks/compare_encoders.py OUT [--corpus DIR] [--max-files N] [--kmeans K] [--model PATH ...]

``--corpus``: an aligned corpus with a held-out voice (default: ``OUT/corpus``, built with
``spidrkit data synth OUT/corpus --hours 0.3 --heldout-voice kal16`` when absent; flite needed). The
``transformers`` directories are loaded back through ``spidrkit.load`` (layer L = ``hidden_states[L]``);
``--model`` adds any model ``sweep`` accepts.
Prints the wall time, each model's best layers and probe accuracies with their intervals, and whether MFCC
beats the random-weights model.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--max-files", type=int, default=30, help="evaluation files per split")
    parser.add_argument("--kmeans", type=int, default=50)
    parser.add_argument("--model", action="append", default=[], help="more models (paths sweep accepts)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = args.corpus or args.out / "corpus"
    if not (corpus / "heldout.csv").is_file():
        subprocess.run([sys.executable, "-m", "spidrkit.cli", "data", "synth", str(corpus), "--hours", "0.3",
                        "--heldout-voice", "kal16", "--quiet"], check=True)
    torch.manual_seed(0)
    spidr = SpidR(load_config("tiny").model).eval()  # random weights: a trained checkpoint goes in --model
    models = [spidr, build_hf("hubert", args.out / "models" / "hubert"),
              build_hf("wavlm", args.out / "models" / "wavlm"), *args.model]
    labels = ["SpidR tiny (random)", "HuBERT tiny (random)", "WavLM tiny (random)", *[None] * len(args.model)]

    from spidrkit.evaluation.sweep.run import sweep

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sweep(models, corpus, args.out / "report", label=labels, probe=True, kmeans_k=args.kmeans,
                    baselines=("mfcc", "random"), max_files=args.max_files, tsne_points=0, progress=False)
    seconds = time.perf_counter() - start
    info = res["info"]
    print(f"one sweep of {len(models)} models + MFCC + random weights, every metric and the probes: {seconds:.0f} s "
          f"on CPU ({args.threads} threads); {info['eval_files']} eval files ({info['eval_seconds']} s)")
    for label, r in res["models"].items():
        best_probe = max(r["layers"], key=lambda la: r["layers"][la]["probe_acc"])
        row = r["layers"][best_probe]
        print(f"{label}: best layer by mean ABX {r['best_layer']} ({r['best_layer_mean_abx']:.2f} %); phone probe "
              f"best layer {best_probe}: {row['probe_acc']:.2f} % [{row['probe_acc_ci'][0]:.2f}, "
              f"{row['probe_acc_ci'][1]:.2f}], PER {row['probe_per']:.2f} %, speaker {row['speaker_acc']:.2f} %; "
              f"{r['timings_s']['total']:.0f} s")
    for name, value in res["comparison"]["baselines"]["probe_acc"].items():
        print(f"baseline {name}: phone probe {value:.2f} %")
    base = res["comparison"]["baselines"]["probe_acc"]
    randoms = {k: v for k, v in base.items() if "random init" in k}
    if "mfcc" in base and randoms:
        print(f"MFCC above random weights: {all(base['mfcc'] > v for v in randoms.values())}")
    print(f"-> {res['outputs']['report_md']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
