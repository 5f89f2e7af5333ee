"""Spoken language modelling on discrete units: vocabularies, unit language models (``transformers``
causal LMs), their training and scoring (``docs/design.md``, "Unit language models")."""
