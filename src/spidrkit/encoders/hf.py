"""Hugging Face ``transformers`` encoders (HuBERT, wav2vec 2.0, WavLM, data2vec-audio) as a
:class:`~spidrkit.models.interface.SpeechEncoder` (``docs/design.md``, "Encoders").

**Layer L** is ``hidden_states[L]`` of the ``transformers`` model: the output of transformer block L
(after its residual adds and, for post-LN "Base" models, its final layer norm; for pre-LN "Large" models
the encoder's closing layer norm is *not* applied, even to the last layer). SpidR/DinoSR's layer L is
block L's feed-forward output before the residual add: a different tensor of the same block.

**Input normalisation** (``normalization=``):

- ``"auto"`` (default): how the family was pretrained, read from the config. HuBERT, wav2vec 2.0 and
  WavLM with a group-norm feature extractor (``feat_extract_norm == "group"``: every Base model, WavLM
  Base/Base+ included, and the original wav2vec 2.0 Large LS-960) read **raw** audio; those with a
  layer-norm extractor (HuBERT Large/X-Large, wav2vec 2.0 Large LV-60/XLS-R, WavLM Large) were trained on
  **standardised** audio (fairseq ``normalize=True``). data2vec-audio (Base and Large) was pretrained
  with ``normalize=True``: **standardised**.
- ``"raw"`` / ``"standardize"``: as told.
- ``"preprocessor"``: the ``do_normalize`` of the model's ``preprocessor_config.json``. Honoured only when
  asked: some published preprocessor configs disagree with how the model was trained.

**Batching**: a group-norm extractor normalises each channel over the whole (padded) input, so padding
changes every frame; data2vec-audio's positional embedding is a stack of convolutions whose outputs at
padded frames are not zero, so padding reaches the last valid frames. Such models are run on equal-length
groups only (a padded batch is split by length: per-file results equal one-at-a-time ones). HuBERT,
wav2vec 2.0 and WavLM with a layer-norm extractor take a padded batch with an ``attention_mask`` (the
padded frames are zeroed before the single positional conv, exactly as its own zero padding).
Frames past a file's ``num_frames(length)`` are zeros.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from spidrkit.errors import InputError
from spidrkit.lazy import require
from spidrkit.models.signal import SAMPLE_RATE, standardize_batch

# model_type of config.json -> the transformers class of the bare encoder
FAMILIES = {
    "hubert": "HubertModel",
    "wav2vec2": "Wav2Vec2Model",
    "wavlm": "WavLMModel",
    "data2vec-audio": "Data2VecAudioModel",
}
NORMALIZATIONS = ("auto", "raw", "standardize", "preprocessor")


class EncoderError(InputError):
    """A foreign encoder that cannot be built or used as asked (unknown family, bad normalisation...)."""


def model_class(model_type: str) -> type:
    """The ``transformers`` class of the bare encoder of a family (``model_type`` of ``config.json``)."""
    if model_type not in FAMILIES:
        raise EncoderError(f"model_type {model_type!r} is not an encoder spidrkit wraps "
                           f"(expected one of {', '.join(FAMILIES)})")
    transformers = require("transformers", "a HuBERT / wav2vec 2.0 / WavLM / data2vec-audio encoder")
    return getattr(transformers, FAMILIES[model_type])


def is_group_norm(config: Any) -> bool:
    """Whether the feature extractor normalises over the whole input (data2vec-audio's never does)."""
    return config.model_type != "data2vec-audio" and getattr(config, "feat_extract_norm", "layer") == "group"


def input_normalization_of(config: Any, normalization: str = "auto",
                           preprocessor: Mapping[str, Any] | None = None) -> str:
    """``"raw"`` or ``"standardize"`` for a ``transformers`` config (see the module doc)."""
    if normalization not in NORMALIZATIONS:
        raise EncoderError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    if normalization in ("raw", "standardize"):
        return normalization
    if normalization == "preprocessor":
        if not preprocessor or not isinstance(preprocessor.get("do_normalize"), bool):
            raise EncoderError("normalization='preprocessor' needs a preprocessor_config.json with a boolean "
                               "do_normalize beside the model; pass normalization='raw' or 'standardize'")
        return "standardize" if preprocessor["do_normalize"] else "raw"
    if config.model_type == "data2vec-audio":
        return "standardize"
    return "raw" if is_group_norm(config) else "standardize"


class HFEncoder(nn.Module):
    """A ``transformers`` HuBERT / wav2vec 2.0 / WavLM / data2vec-audio model behind the
    :class:`~spidrkit.models.interface.SpeechEncoder` interface (layers 1-based, see the module doc).

    ``model``: the bare encoder (``HubertModel``...); it is put in eval mode. ``cfg`` is its
    ``transformers`` config; ``variant`` (and ``family``) its ``model_type``.
    """

    def __init__(self, model: nn.Module, normalization: str = "auto",
                 preprocessor: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        config = model.config
        model_class(config.model_type)  # refuses other families
        self.model = model.eval()
        self.cfg = config
        self.family = self.variant = config.model_type
        self.input_normalization = input_normalization_of(config, normalization, preprocessor)
        self.sample_rate = SAMPLE_RATE
        self.num_layers = int(config.num_hidden_layers)
        self.dim = int(config.hidden_size)
        self.kernels = tuple(int(k) for k in config.conv_kernel)
        self.strides = tuple(int(s) for s in config.conv_stride)
        self.frame_rate = self.sample_rate / math.prod(self.strides)
        n = 1
        for k, s in zip(reversed(self.kernels), reversed(self.strides)):
            n = (n - 1) * s + k
        self.min_samples = n
        # padding leaks into valid frames through a group norm, and through data2vec-audio's stack of
        # positional convs (their padded outputs are not zero): such models see equal lengths only
        self.equal_length_batches = is_group_norm(config) or config.model_type == "data2vec-audio"

    def extra_repr(self) -> str:
        return (f"family={self.family}, layers={self.num_layers}, dim={self.dim}, "
                f"input_normalization={self.input_normalization}")

    def num_frames(self, num_samples):
        """Output frames of an input of ``num_samples`` (int or tensor), as ``transformers`` computes them:
        ``floor((n - kernel) / stride) + 1`` per conv layer (0 below ``min_samples``)."""
        n = num_samples
        for k, s in zip(self.kernels, self.strides):
            n = (n - k) // s + 1
        return n.clamp(min=0) if isinstance(n, torch.Tensor) else max(int(n), 0)

    def _check_layers(self, layers: int | list[int] | None) -> list[int]:
        if layers is None:
            return list(range(1, self.num_layers + 1))
        layers = [int(x) for x in ([layers] if isinstance(layers, int) else layers)]
        bad = [x for x in layers if not 1 <= x <= self.num_layers]
        if bad or not layers:
            raise EncoderError(f"layers {bad or '[]'} out of range: the {self.family} model has layers "
                               f"1..{self.num_layers} (1-based)")
        return layers

    def _hidden_states(self, wav: torch.Tensor, mask: torch.Tensor | None, layers: list[int]) -> dict:
        """``{layer: hidden_states[layer]}`` of one batch, running the blocks up to the deepest asked."""
        encoder = self.model.encoder
        blocks = encoder.layers
        encoder.layers = blocks[: max(layers)]
        try:
            out = self.model(wav, attention_mask=mask, output_hidden_states=True)
        finally:
            encoder.layers = blocks
        return {layer: out.hidden_states[layer] for layer in layers}

    def layer_outputs(self, wav: torch.Tensor, lengths: torch.Tensor | None = None,
                      layers: int | list[int] | None = None, standardize: bool = True) -> dict[int, torch.Tensor]:
        """``{layer: (B, T, dim)}`` = ``hidden_states[layer]`` for a waveform (L,) or a padded batch (B, L)
        with ``lengths`` (B,); frames past a file's ``num_frames(length)`` are zeros. ``standardize=False``
        says the input already has the model's ``input_normalization``."""
        layers = self._check_layers(layers)
        wav = wav[None] if wav.dim() == 1 else wav
        batch, width = wav.shape
        device = wav.device
        lengths = (torch.full((batch,), width, device=device) if lengths is None
                   else torch.as_tensor(lengths, device=device).long())
        if standardize and self.input_normalization == "standardize":
            wav = standardize_batch(wav, lengths)
        frames = self.num_frames(lengths)
        total = int(self.num_frames(width))
        out = {layer: wav.new_zeros(batch, total, self.dim) for layer in layers}
        if self.equal_length_batches:
            groups = [(lengths == n).nonzero().flatten() for n in torch.unique(lengths).tolist()]
            runs = [(idx, wav[idx, : int(lengths[idx[0]])], None) for idx in groups]
        else:
            full = bool((lengths == width).all())
            mask = None if full else (torch.arange(width, device=device)[None] < lengths[:, None]).long()
            runs = [(torch.arange(batch, device=device), wav, mask)]
        for idx, x, mask in runs:
            if x.shape[1] < self.min_samples:
                continue  # no frame: stays zeros
            for layer, h in self._hidden_states(x, mask, layers).items():
                out[layer][idx, : h.shape[1]] = h.to(out[layer].dtype)
        valid = torch.arange(total, device=device)[None] < frames[:, None]
        return {layer: x.masked_fill(~valid[..., None], 0.0) for layer, x in out.items()}

    def random_like(self, seed: int) -> HFEncoder:
        """The same architecture and input normalisation with random weights (seeded), on this model's
        device, in eval mode: the sweep's random-weights baseline."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = type(self.model)(self.cfg)
        device = next(self.model.parameters()).device
        return HFEncoder(fresh, self.input_normalization).to(device).eval()
