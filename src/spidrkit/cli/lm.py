"""``spidrkit lm``: unit language models.

    spidrkit lm units CORPUS [--split train] --units phones|codebook:L|kmeans:FILE [--model MODEL|mfcc]
                      [--layers N] [--shuffle SEED] [--max-files N] -o UNITS.txt
    spidrkit lm train UNITS... [--config opt125m|tiny|FILE.toml] [--set section.key=value ...] -o RUN_DIR
                      [--valid UNITS ...] [--fresh] [--force] [--report-to none|tensorboard|wandb]
    torchrun --nproc-per-node 8 $(which spidrkit) lm train UNITS --config opt125m -o RUN_DIR

UNITS: unit files as `spidrkit extract` or `spidrkit lm units` write them (units.txt, units.jsonl) or
fairseq .km files. `lm units` gives a corpus split's units from any source the sLM scorer reads: gold
phones (the topline), MFCC k-means (the floor: centroids from `spidrkit kmeans fit-corpus`), an encoder's
codebook or k-means units, or any of them shuffled within each utterance (the control).
Run `lm train` again to resume: a run folder resumes only with the config and the units (training and
validation files' contents) it was started with; --fresh deletes its checkpoints, best/, last/ and
metrics and starts it anew. Validation units that are also training units are refused.
Exit status: 0 when done; 2 for an error in the config or the units (or a resume with other ones); 3
when the training loss became NaN or infinite; 74 for an I/O error; 75 when another live process holds
RUN_DIR/run.lock (--force breaks it); 130 / 143 after Ctrl-C / SIGTERM, once the
checkpoint of the last completed step is written.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from spidrkit.cli.flags import add_device, add_output, note, one_layer, show_progress
from spidrkit.cli.model_args import add_model_options
from spidrkit.io import read_sidecar, refuse_overwrite
from spidrkit.tracking import REPORT_TO, REPORT_TO_HELP, report_to_override


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = __doc__.split("\n\n", 1)[1]
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("train", help="train (or resume) a unit LM",
                       description="Train a unit language model (OPT) on units files; run it again to resume "
                       "(the run folder resumes only with the config and units it was started with).",
                       epilog="example: spidrkit lm train units/train.txt --config tiny -o runs/lm")
    p.add_argument("units", nargs="+", metavar="UNITS", help="training units files (.txt, .jsonl, .km)")
    p.add_argument("--config", default="tiny", help="preset (opt125m: the paper's; tiny: CPU-sized) or a TOML "
                   "file (default: tiny)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (repeatable), e.g. --set train.max_steps=500")
    add_output(p, "RUN_DIR", "the run folder (an existing run is resumed)", required=True, old=("--run-dir",))
    p.add_argument("--valid", nargs="+", default=None, metavar="UNITS",
                   help="validation units files (default: a seeded lm.valid_fraction of the utterances)")
    p.add_argument("--fresh", action="store_true", help="start the run folder anew: delete its checkpoints, best/, "
                   "last/ and metrics first (a run resumes only with its own config and units)")
    p.add_argument("--force", action="store_true", help="break the run folder's lock (RUN_DIR/run.lock)")
    p.add_argument("--report-to", choices=REPORT_TO, default=None, help=REPORT_TO_HELP)
    add_units_parser(sub)


def add_units_parser(sub: Any) -> None:
    """``lm units``: a corpus split's units for ``lm train``
    (:func:`spidrkit.evaluation.slm.units.write_corpus_units`)."""
    from spidrkit.cli.slm import add_unit_source

    p = sub.add_parser(
        "units", help="a corpus split's units for `lm train`: gold phones, MFCC or encoder k-means, codebook",
        description="Write the units of CORPUS/SPLIT.csv's audio (or CORPUS/SPLIT_phones.txt's gold phones) as a "
        "units file with a sidecar giving k and the source, as `spidrkit evaluate slm` reads the same source. Train a "
        "phone LM with --set lm.dedup=false (phones as they are; encoder units are de-duplicated by the LM).",
        epilog="example: spidrkit lm units corpus/ --model runs/tiny --units codebook:6 -o units/train.txt")
    p.add_argument("corpus", metavar="CORPUS", help="a folder with SPLIT.csv (a manifest; `spidrkit data synth`, "
                   "`data synth-slm`'s lm_train/) and, for phones, SPLIT_phones.txt")
    p.add_argument("--split", default="train", help="the split (default: train)")
    add_unit_source(p)
    p.add_argument("--shuffle", type=int, default=None, metavar="SEED",
                   help="the shuffled-units control: each utterance's units permuted, seeded (encoder units "
                   "de-duplicated first)")
    p.add_argument("--max-files", type=int, default=None, metavar="N", help="at most N utterances, evenly spaced")
    add_device(p)
    add_output(p, "UNITS", "units file (.txt or .jsonl)", required=True)
    p.add_argument("--force", action="store_true", help="replace an existing -o file")
    add_model_options(p)


def _units(args: argparse.Namespace) -> int:
    from spidrkit.evaluation.slm.units import (
        CorpusSplit,
        corpus_entries,
        files_bar,
        load_encoder,
        parse_units,
        write_corpus_units,
    )

    refuse_overwrite([args.output], args.force, "lm units")
    spec = parse_units(args.units, one_layer(args.layers), args.model)
    # the manifest (and --max-files) before any model is loaded; gold phones need neither
    total = 0 if spec.kind == "phones" else len(corpus_entries(args.corpus, args.split, args.max_files))
    encoder, model_id = load_encoder(args.model, spec, args.device, variant=args.variant,
                                     normalization=args.normalization)
    with files_bar(total, "units", enabled=total > 0 and show_progress(args)) as bar:
        path = write_corpus_units(args.output, CorpusSplit(args.corpus, args.split, args.max_files), spec, encoder,
                                  shuffle_seed=args.shuffle, model=model_id, progress=bar, force=args.force)
    info = read_sidecar(path)
    note(args, f"{spec.describe()}{' shuffled' if args.shuffle is not None else ''}, k={info.get('k')} -> {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "units":
        return _units(args)
    from spidrkit.io import check_output_dir
    from spidrkit.lm.identity import start_anew
    from spidrkit.lm.trainer import train

    check_output_dir(args.output, "-o")
    if args.fresh:
        start_anew(args.output, force=args.force)
    overrides = args.overrides + report_to_override(args.report_to)
    summary = train(args.units, args.output, args.config, overrides, args.valid,
                    progress=show_progress(args), force=args.force)
    print(json.dumps(summary))
    return 0
