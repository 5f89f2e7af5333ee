"""The interface every speech encoder of the pipeline implements (``docs/design.md``, "Encoders").

Extraction, evaluation and the unit language model see a model only through :class:`SpeechEncoder`:
SpidR and DinoSR (:class:`spidrkit.models.spidr.SpidR`) implement it, and so will wrappers of other
encoders (HuBERT, wav2vec 2.0, WavLM, data2vec). Layers are 1-based everywhere. What "layer L" means
differs by family and each implementation documents it: for SpidR/DinoSR it is block L's feed-forward
output before the residual add (what the paper probes); for a ``transformers`` model it is
``hidden_states[L]``, the output of block L.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

INPUT_NORMALIZATIONS = ("standardize", "raw")


@runtime_checkable
class SpeechEncoder(Protocol):
    """A model that turns waveforms into frame-level representations, layer by layer.

    - ``sample_rate``: the input rate in Hz (16000 for every model of the paper);
    - ``frame_rate``: output frames per second (50 for every model of the paper);
    - ``num_layers``: the transformer layers, numbered 1..num_layers; ``dim``: their width;
    - ``input_normalization``: ``"standardize"`` (each utterance to mean 0, variance 1, which
      :meth:`layer_outputs` does itself unless told the input already is) or ``"raw"`` (as read);
    - ``num_frames(num_samples)``: output frames of an input of that length (int or tensor);
    - ``min_samples``: the shortest input that gives one frame.
    """

    sample_rate: int
    frame_rate: float
    num_layers: int
    dim: int
    input_normalization: str
    min_samples: int

    def num_frames(self, num_samples): ...

    def layer_outputs(self, wav: torch.Tensor, lengths: torch.Tensor | None = None,
                      layers: int | list[int] | None = None, standardize: bool = True) -> dict[int, torch.Tensor]:
        """``{layer: (B, T, dim)}`` for a waveform (L,) or a padded batch (B, L) with ``lengths`` (B,);
        frames past a file's ``num_frames(length)`` are zeros. ``standardize=False`` says the caller has
        already applied ``input_normalization``."""
        ...
