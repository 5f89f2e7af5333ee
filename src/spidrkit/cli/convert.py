"""``spidrkit convert``: any supported checkpoint -> a self-describing spidrkit file (.pt or .safetensors) or
a model directory (``OUTDIR/``: ``config.json`` + ``model.safetensors``)."""

from __future__ import annotations

import argparse

from spidrkit.cli.flags import add_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input", metavar="IN", help="released SpidR/DinoSR file, fairseq DinoSR checkpoint, spidrkit file or model "
        "directory, or a published model's name (spidr_base, dinosr_base_reproduced, dinosr_base_original)"
    )
    add_output(parser, "OUT", "output: a folder (ending with '/', or existing) gets config.json + model.safetensors; "
               "a file .safetensors, else a torch .pt file", required=True, positional=True)
    parser.add_argument("--variant", choices=["spidr", "dinosr"], default=None,
                        help="model variant, for files that do not say it (released files: default spidr)")
    parser.add_argument("--config", default=None, metavar="PRESET_OR_TOML",
                        help="config for what the weights cannot tell (conv strides, heads) of a foreign file")
    parser.add_argument("--teacher", action="store_true",
                        help="write the EMA teacher's encoder in the student's place, so that commands read the "
                        "teacher's features (a training checkpoint, or a file that keeps the teacher; default: "
                        "the trained student's)")
    parser.add_argument("--force", action="store_true", help="replace an existing output")
    parser.epilog = "example: spidrkit convert spidr_base -o models/spidr_base/"


def run(args: argparse.Namespace) -> int:
    from spidrkit.checkpoints import convert, load_checkpoint

    path = convert(args.input, args.output, variant=args.variant, config=args.config, force=args.force,
                   teacher=args.teacher)
    cfg, sd, info = load_checkpoint(path)
    m = cfg.model
    params = sum(v.numel() for k, v in sd.items() if v.is_floating_point() and not k.startswith("codebooks."))
    print(
        f"wrote {path}{'/' if path.is_dir() else ''}: {cfg.variant}, {m.num_layers} layers x {m.dim} "
        f"({m.num_heads} heads), {m.num_codebooks} codebooks of {m.codebook_size}, {params / 1e6:.1f}M parameters"
        + (f", step {info.step}" if info.step is not None else "")
        + (", the teacher's encoder as the student" if args.teacher else "")
    )
    return 0
