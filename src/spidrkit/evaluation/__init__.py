"""Evaluation of features and units, mirroring ``spidrkit evaluate``.

- ``spidrkit.evaluation.metrics.abx.abx``, :func:`abx_units`: ABX phone discriminability within / across speaker
  (fastabx);
- :func:`unit_quality`, :func:`bitrate`: PNMI, purities, codebook perplexity, bitrate of discrete units;
- ``spidrkit.evaluation.metrics.word_map.word_map``, :func:`map_at_r`: MAP@R over words;
- :func:`mfcc`, :func:`log_mel`, :func:`random_baseline`, :func:`extract_baseline`: baselines at the model's
  frame rate;
- :func:`plot_layer_metrics`, :func:`plot_phone_given_code`, :func:`phone_embeddings`, :func:`plot_tsne`,
  :func:`plot_perplexity`, :func:`plot_runs_perplexity`: the paper's figures, each returning a :class:`Figure`
  (its path and the data drawn);
- :func:`write_report`, :func:`write_sweep_report`: ``report.json`` + ``report.md``, then every table as
  ``tables/NAME.csv`` and ``report.html`` (``spidrkit.evaluation.pages``);
- ``spidrkit.evaluation.sweep.run.sweep`` (also ``spidrkit.sweep``): all of the above for every layer of a model on
  an aligned corpus, in stages: :func:`load_eval_set` (:class:`EvalSet`), the features
  (``spidrkit.evaluation.sweep.features``), the per-layer metrics (:func:`sweep_layers`), a :class:`SweepResult`.

Every metric takes the frame rate of its features (the model's ``frame_rate``).

Names are imported on first use, so importing one metric does not load matplotlib or fastabx. The functions
named like their module (``abx``, ``word_map``, ``sweep``) are not re-exported here: a package attribute
cannot be both the module and the function without breaking ``import spidrkit.evaluation.metrics.abx as m``.
"""

from __future__ import annotations

from spidrkit.lazy import lazy_exports

_LAZY = {
    "abx_units": "spidrkit.evaluation.metrics.abx",
    "abx_both": "spidrkit.evaluation.metrics.abx",
    "abx_score": "spidrkit.evaluation.metrics.abx",
    "ABXScore": "spidrkit.evaluation.metrics.abx",
    "MIN_ABX_CELLS": "spidrkit.evaluation.metrics.abx",
    "unit_quality": "spidrkit.evaluation.metrics.units",
    "unit_row": "spidrkit.evaluation.metrics.units",
    "bitrate": "spidrkit.evaluation.metrics.units",
    "map_at_r": "spidrkit.evaluation.metrics.word_map",
    "word_map_or_none": "spidrkit.evaluation.metrics.word_map",
    "NoRepeatedWordError": "spidrkit.evaluation.metrics.word_map",
    "mfcc": "spidrkit.encoders.mfcc",
    "log_mel": "spidrkit.encoders.mfcc",
    "random_baseline": "spidrkit.evaluation.sweep.baselines",
    "extract_baseline": "spidrkit.evaluation.sweep.baselines",
    "plot_layer_metrics": "spidrkit.evaluation.plots.layers",
    "plot_phone_given_code": "spidrkit.evaluation.plots.layers",
    "phone_embeddings": "spidrkit.evaluation.plots.tsne",
    "plot_tsne": "spidrkit.evaluation.plots.tsne",
    "plot_perplexity": "spidrkit.evaluation.plots.perplexity",
    "plot_runs_perplexity": "spidrkit.evaluation.plots.perplexity",
    "read_perplexities": "spidrkit.evaluation.plots.perplexity",
    "Figure": "spidrkit.evaluation.plots.figures",
    "write_report": "spidrkit.evaluation.sweep.report",
    "write_sweep_report": "spidrkit.evaluation.sweep.report",
    "EvalSet": "spidrkit.evaluation.sweep.evalset",
    "load_eval_set": "spidrkit.evaluation.sweep.evalset",
    "sweep_layers": "spidrkit.evaluation.sweep.scores",
    "SweepResult": "spidrkit.evaluation.sweep.result",
    "SweepError": "spidrkit.evaluation.sweep.errors",
}

__all__ = list(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
