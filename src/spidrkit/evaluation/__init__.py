"""Evaluation of features and units, mirroring ``spidrkit evaluate``.

- ``spidrkit.evaluation.abx.abx``, :func:`abx_units`: ABX phone discriminability within / across speaker
  (fastabx);
- :func:`unit_quality`, :func:`bitrate`: PNMI, purities, codebook perplexity, bitrate of discrete units;
- ``spidrkit.evaluation.word_map.word_map``, :func:`map_at_r`: MAP@R over words;
- :func:`mfcc`, :func:`log_mel`, :func:`random_baseline`, :func:`extract_baseline`: baselines at 50 Hz;
- :func:`plot_layer_metrics`, :func:`plot_phone_given_code`, :func:`phone_embeddings`, :func:`plot_tsne`,
  :func:`plot_perplexity`: the paper's figures;
- :func:`write_report`: ``report.json`` + ``report.md``;
- ``spidrkit.evaluation.sweep.sweep`` (also ``spidrkit.sweep``): all of the above for every layer of a model on
  an aligned corpus.

Names are imported on first use, so importing one metric does not load matplotlib or fastabx. The functions
named like their module (``abx``, ``word_map``, ``sweep``) are not re-exported here: a package attribute
cannot be both the module and the function without breaking ``import spidrkit.evaluation.abx as m``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "abx_units": "abx",
    "unit_quality": "unit_metrics",
    "bitrate": "unit_metrics",
    "map_at_r": "word_map",
    "mfcc": "baselines",
    "log_mel": "baselines",
    "random_baseline": "baselines",
    "extract_baseline": "baselines",
    "plot_layer_metrics": "plots",
    "plot_phone_given_code": "plots",
    "phone_embeddings": "plots",
    "plot_tsne": "plots",
    "plot_perplexity": "plots",
    "write_report": "report",
    "load_eval_set": "sweep",
    "plot_runs_perplexity": "sweep",
    "SweepError": "sweep",
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
