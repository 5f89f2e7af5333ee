"""Evaluation of features and units, mirroring ``spidrkit evaluate``.

- ``spidrkit.evaluation.abx.abx``, :func:`abx_units`: ABX phone discriminability within / across speaker
  (fastabx);
- :func:`unit_quality`, :func:`bitrate`: PNMI, purities, codebook perplexity, bitrate of discrete units;
- ``spidrkit.evaluation.word_map.word_map``, :func:`map_at_r`: MAP@R over words;
- :func:`mfcc`, :func:`log_mel`, :func:`random_baseline`, :func:`extract_baseline`: baselines at the model's
  frame rate;
- :func:`plot_layer_metrics`, :func:`plot_phone_given_code`, :func:`phone_embeddings`, :func:`plot_tsne`,
  :func:`plot_perplexity`, :func:`plot_runs_perplexity`: the paper's figures, each returning a :class:`Figure`
  (its path and the data drawn);
- :func:`write_report`, :func:`write_sweep_report`: ``report.json`` + ``report.md``;
- ``spidrkit.evaluation.sweep.sweep`` (also ``spidrkit.sweep``): all of the above for every layer of a model on
  an aligned corpus, in stages: :func:`load_eval_set` (:class:`EvalSet`), the features
  (``spidrkit.evaluation.features``), the per-layer metrics (:func:`sweep_layers`), a :class:`SweepResult`.

Every metric takes the frame rate of its features (the model's ``frame_rate``).

Names are imported on first use, so importing one metric does not load matplotlib or fastabx. The functions
named like their module (``abx``, ``word_map``, ``sweep``) are not re-exported here: a package attribute
cannot be both the module and the function without breaking ``import spidrkit.evaluation.abx as m``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "abx_units": "abx",
    "abx_both": "abx",
    "abx_score": "abx",
    "ABXScore": "abx",
    "MIN_ABX_CELLS": "abx",
    "unit_quality": "unit_metrics",
    "unit_row": "unit_metrics",
    "bitrate": "unit_metrics",
    "map_at_r": "word_map",
    "word_map_or_none": "word_map",
    "NoRepeatedWordError": "word_map",
    "mfcc": "baselines",
    "log_mel": "baselines",
    "random_baseline": "baselines",
    "extract_baseline": "baselines",
    "plot_layer_metrics": "plots",
    "plot_phone_given_code": "plots",
    "phone_embeddings": "tsne",
    "plot_tsne": "tsne",
    "plot_perplexity": "perplexity",
    "plot_runs_perplexity": "perplexity",
    "read_perplexities": "perplexity",
    "Figure": "figures",
    "write_report": "report",
    "write_sweep_report": "report",
    "EvalSet": "evalset",
    "load_eval_set": "evalset",
    "sweep_layers": "layers",
    "SweepResult": "result",
    "SweepError": "errors",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
