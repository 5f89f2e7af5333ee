"""Encoders other than spidrkit's own SpidR/DinoSR, behind the
:class:`~spidrkit.models.interface.SpeechEncoder` interface (``docs/design.md``, "Encoders").

- :mod:`~.hf`: :class:`HFEncoder`, a ``transformers`` HuBERT / wav2vec 2.0 / WavLM / data2vec-audio model
  (layer L = ``hidden_states[L]``; input normalisation per family; equal-length batches for group-norm
  feature extractors);
- :mod:`~.pretrained`: such a model from a local model directory or a Hugging Face Hub repo;
- :mod:`~.fairseq`: original fairseq HuBERT / wav2vec 2.0 checkpoints mapped to the same classes.

``transformers`` is imported only when a model is built.
"""

from spidrkit.encoders.fairseq import fairseq_family, load_fairseq_encoder
from spidrkit.encoders.hf import FAMILIES, NORMALIZATIONS, EncoderError, HFEncoder, input_normalization_of
from spidrkit.encoders.pretrained import hf_model_type, hub_directory, load_directory

__all__ = [
    "FAMILIES",
    "NORMALIZATIONS",
    "EncoderError",
    "HFEncoder",
    "fairseq_family",
    "hf_model_type",
    "hub_directory",
    "input_normalization_of",
    "load_directory",
    "load_fairseq_encoder",
]
