"""Spoken language modelling on discrete units: vocabularies, unit language models (``transformers``
causal LMs), their training and scoring (``docs/design.md``, "Unit language models").

- :mod:`~spidrkit.lm.vocab`: the token vocabulary (:class:`UnitVocab`: pad, bos, eos, de-duplication);
- :mod:`~spidrkit.lm.config`: the LM's config (:class:`LMConfig`, presets ``opt125m`` and ``tiny``,
  :func:`load_lm_config`);
- :mod:`~spidrkit.lm.data`: unit files in (``extract``'s text/JSONL, fairseq ``.km``), batches out;
- :mod:`~spidrkit.lm.model`: the OPT model, its folders, :func:`load_lm`;
- :mod:`~spidrkit.lm.identity`: a run folder's identity (its inputs' digests), :func:`start_anew`
  (``--fresh``), the refusal of validation data that is also training data;
- :mod:`~spidrkit.lm.trainer`: :func:`train` (``spidrkit lm train``).

The names below are imported on first use (``transformers`` is heavy).
"""

from __future__ import annotations

from spidrkit.lazy import lazy_exports

_LAZY = {
    "UnitVocab": "spidrkit.lm.vocab",
    "LMConfig": "spidrkit.lm.config",
    "load_lm_config": "spidrkit.lm.config",
    "LM_PRESETS": "spidrkit.lm.config",
    "load_lm": "spidrkit.lm.model",
    "LMError": "spidrkit.lm.model",
    "train": "spidrkit.lm.trainer",
    "start_anew": "spidrkit.lm.identity",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
