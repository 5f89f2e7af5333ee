"""``spidrkit evaluate slm`` and ``slm-compare``: their arguments and actions (``spidrkit.cli.evaluate``
registers them).

    spidrkit evaluate slm BENCHMARK [--model MODEL|mfcc|random:PRESET] --units phones|codebook:L|kmeans:FILE --lm RUN
                          [--layers N] [--unnormalized] [-o OUT] [--bootstrap 1000] [--seed 0]
    spidrkit evaluate slm-compare BENCHMARK ROWS.json [--sweep REPORT.json] [-o OUT] [--bootstrap 1000]

``ROWS.json``: a list of ``{"label", "units", "lm", "encoder", "layer", "seed", "report"}`` objects
(:class:`spidrkit.evaluation.slm.compare.CompareRow`; rows sharing a label are LM seeds).
"""

from __future__ import annotations

import argparse
from typing import Any

from spidrkit.cli.flags import add_device, add_output, one_layer, show_progress
from spidrkit.evaluation.slm.rules import DEFAULT_BOOTSTRAP
from spidrkit.lm.scoring import DEFAULT_BATCH_TOKENS


def add_unit_source(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--units`` and ``--layers``: the source of the units (:func:`~spidrkit.evaluation.slm.units.
    parse_units`, :func:`~spidrkit.evaluation.slm.units.load_encoder`), for ``evaluate slm`` and ``lm units``."""
    from spidrkit.cli.flags import add_layers, add_model, add_units
    from spidrkit.extraction.unit_spec import KINDS

    add_model(p, help="the units' encoder: a checkpoint, published model or Hub repo id (OWNER/NAME[@REVISION]), "
              "'mfcc' (MFCC features, with kmeans:FILE), or random:PRESET (RANDOM weights, for tests); not "
              "needed with --units phones")
    add_units(p, KINDS, "gold phones of SPLIT_phones.txt (topline; silences dropped, 39 ARPAbet phones), codebook "
              "predictions of layer L, or k-means centroids (their sidecar names the layer)", required=True)
    add_layers(p, "the one layer of --units codebook, or of kmeans:FILE when its sidecar does not say it",
               single=True)


def add_slm_parser(sub: Any) -> Any:
    """The ``slm`` and ``slm-compare`` parsers; returns ``slm``'s (the CLI adds the model options to it)."""
    p = sub.add_parser(
        "slm", help="sWUGGY, sBLIMP and spoken StoryCloze scores of a unit LM (ZeroSpeech 2021 rules)",
        description="Units of every benchmark audio, their log-likelihood under a unit LM, the ZeroSpeech 2021 "
        "rules (1 / 0.5 on a tie / 0 per pair and voice, mean over voices then pairs), bootstrap 95 % intervals; "
        "writes OUT/scores/<task>/<split>.txt, OUT/report.json, OUT/report.md, OUT/tables/*.csv, OUT/report.html "
        "and the ZeroSpeech 2021 submission folder OUT/submission/ (meta.yaml, lexical/, syntactic/).",
        epilog="example: spidrkit evaluate slm slm_bench/ --model runs/tiny --units codebook:6 --lm runs/lm -o slm/")
    p.add_argument("benchmark", metavar="BENCHMARK",
                   help="folder with lexical/, syntactic/, storycloze/ ({dev,test}/*.wav + gold.csv) or sSC/, tSC/")
    add_unit_source(p)
    p.add_argument("--lm", required=True, metavar="RUN",
                   help="unit LM run folder (spidrkit lm train), its model folder, or a Hugging Face Hub repo id "
                   "holding one (OWNER/NAME[@REVISION])")
    p.add_argument("--unnormalized", action="store_true",
                   help="sum of the token log-probabilities (default: divided by the number of predicted tokens)")
    add_output(p, "OUT", "output folder", default="slm_eval")
    p.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, metavar="N",
                   help=f"bootstrap resamples over pair ids (default: {DEFAULT_BOOTSTRAP})")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument("--batch-tokens", type=int, default=DEFAULT_BATCH_TOKENS, metavar="N",
                   help=f"padded LM tokens per batch (default: {DEFAULT_BATCH_TOKENS})")
    add_device(p)

    c = sub.add_parser(
        "slm-compare", help="several unit LMs (phones, MFCC, SpidR units, seeds) in one sLM table + ABX scatter",
        description="Scores every row of ROWS.json (a list of {label, units, lm, encoder, layer, seed} or {label, "
        "report}) with `evaluate slm` into OUT/rows/, then writes OUT/report.md + report.json (sWUGGY all / "
        "in-vocab, sBLIMP, tSC; bootstrap 95 % intervals, mean and standard deviation over rows sharing a label) "
        "and, with --sweep, OUT/slm_vs_abx.png (ABX and PNMI of each unit source vs its sLM scores).",
        epilog="example: spidrkit evaluate slm-compare slm_bench/ rows.json --sweep sweep/report.json -o compare/")
    c.add_argument("benchmark", metavar="BENCHMARK", help="the sLM benchmark folder")
    c.add_argument("rows", metavar="ROWS.json", help="the LMs to compare")
    c.add_argument("--sweep", default=None, metavar="REPORT.json", help="a sweep's report.json (ABX, PNMI)")
    add_output(c, "OUT", "output folder", default="slm_compare")
    c.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, metavar="N", help="bootstrap resamples")
    add_device(c)
    return p


def load_unit_lm(run: str) -> tuple[Any, Any, dict]:
    """The unit LM of a run folder (its ``best/`` model), a model folder or a Hub repo, ``(model, vocab, info)``."""
    from pathlib import Path

    from spidrkit.lm import load_lm
    from spidrkit.lm.model import LMError

    folder = Path(run).expanduser()
    if (folder / "last").is_dir() and not (folder / "best").is_dir() and not (folder / "config.json").is_file():
        raise LMError(f"{folder}: that run had no validation data, so it has no best/ model; score its last model "
                      f"with --lm {folder / 'last'}")
    return load_lm(run, which="best")


def run_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spidrkit.evaluation.slm.compare import (
        CompareError,
        format_cell,
        read_rows,
        read_sweep,
        score_rows,
        write_comparison,
    )

    rows = read_rows(args.rows)
    sweep = read_sweep(args.sweep) if args.sweep else None  # read before the hours of scoring
    try:  # every row is checked (fields, files, benchmark, settings) before any scoring
        scored = score_rows(args.benchmark, rows, args.output, n_bootstrap=args.bootstrap, device=args.device)
        report = write_comparison(args.output, scored, sweep=sweep)
    except CompareError as e:
        raise CompareError(f"{args.rows}: {e}") from None
    for label, row in report["table"].items():
        print(f"{label:24s} " + "  ".join(f"{m} {format_cell(c)}" for m, c in row.items()))
    print(f"-> {Path(args.output) / 'report.md'}")
    return 0


def run_slm(args: argparse.Namespace) -> int:
    if args.action == "slm-compare":
        return run_compare(args)
    from spidrkit.evaluation.slm.bench import read_benchmark
    from spidrkit.evaluation.slm.score import evaluate_slm
    from spidrkit.evaluation.slm.units import load_encoder, parse_units

    splits = read_benchmark(args.benchmark)  # layout errors before any model is loaded
    units = parse_units(args.units, one_layer(args.layers), args.model)
    lm, vocab, lm_info = load_unit_lm(args.lm)
    encoder, model_id = load_encoder(args.model, units, args.device, variant=getattr(args, "variant", None),
                                     normalization=getattr(args, "normalization", "auto"))
    report = evaluate_slm(
        args.benchmark, encoder, units, lm.to(args.device), vocab, args.output,
        normalize=not args.unnormalized, batch_tokens=args.batch_tokens, n_bootstrap=args.bootstrap, seed=args.seed,
        inputs={"encoder": model_id, "encoder_path": str(args.model), "lm": str(args.lm),
                "lm_info": lm_info}, progress=show_progress(args), splits=splits)
    for key, groups in report["results"].items():
        for name, cell in groups.items():
            low, high = cell["ci95"]
            print(f"{key:24s} {name:28s} {cell['score']:6.2f}  [{low:6.2f}, {high:6.2f}]  {cell['pairs']} pair ids")
    if not report["results"]:
        print("no split with a gold.csv: submission files only")
    outputs, submission = report["outputs"], report["submission"]
    print(f"-> {outputs['report_html']}, {outputs['report_md']}, {outputs['meta_yaml']}")
    held = ", ".join(submission["splits"]) or "no lexical or syntactic split"
    print(f"ZeroSpeech 2021 submission ({held}); check it with: {submission['validate']}")
    return 0
