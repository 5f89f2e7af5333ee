"""The options that say how a ``--model`` is loaded, shared by every command that takes one:
``--variant`` (released SpidR/DinoSR files that do not say which they are) and ``--normalization`` (the input
normalisation of a ``transformers`` / fairseq encoder: ``auto`` follows the family, see
:mod:`spidrkit.encoders.hf`)."""

from __future__ import annotations

import argparse
from typing import Any

NORMALIZATION_CHOICES = ("auto", "raw", "standardize", "preprocessor")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--variant`` and ``--normalization``."""
    parser.add_argument("--variant", choices=("spidr", "dinosr"), default=None,
                        help="model variant, for released files that do not say it (default: spidr)")
    parser.add_argument("--normalization", choices=NORMALIZATION_CHOICES, default="auto",
                        help="input normalisation of a HuBERT / wav2vec 2.0 / WavLM / data2vec encoder: auto (raw "
                        "audio for group-norm Base models, standardised for layer-norm Large models and "
                        "data2vec), raw, standardize, or preprocessor (its preprocessor_config.json) "
                        "(default: auto; SpidR/DinoSR always read standardised audio)")


def model_source(source: str, args: argparse.Namespace, device: str | None = "cpu") -> Any:
    """``source`` as given when the options keep their defaults (the consumer loads it), else loaded with them."""
    if args.variant is None and args.normalization == "auto":
        return source
    from spidrkit.checkpoints import load

    return load(source, device=device or "cpu", variant=args.variant, normalization=args.normalization)
