"""The model's input signal: its sample rate and the per-utterance standardisation (``docs/method.md``).

SpidR, DinoSR and every model of the paper read 16 kHz mono audio; SpidR and DinoSR standardise each
utterance over its own samples (mean 0, variance 1) before the downsampler.
"""

from __future__ import annotations

import torch

from spidrkit.config import SAMPLE_RATE

__all__ = ["SAMPLE_RATE", "standardize", "standardize_batch"]


def standardize(wav: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean 0, variance 1 over the whole utterance: ``(x - mean) / sqrt(var + eps)``, biased variance.

    This is layer normalisation over the samples (fairseq's ``normalize=True``). Statistics are computed
    in float64 so long utterances lose no precision; the result has the input's dtype.
    """
    if wav.dim() != 1:
        raise ValueError(f"standardize expects a 1-D waveform, got shape {tuple(wav.shape)}")
    return standardize_batch(wav[None], None, eps)[0]


def standardize_batch(wav: torch.Tensor, lengths: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Standardise each row of ``wav`` (B, L) over its first ``lengths[b]`` samples; padding stays 0.

    With ``lengths=None`` every sample is valid. A row of length 0 comes back as zeros.
    """
    if wav.dim() != 2:
        raise ValueError(f"standardize_batch expects (batch, samples), got shape {tuple(wav.shape)}")
    x = wav.to(torch.float64)
    if lengths is None:
        var, mean = torch.var_mean(x, dim=1, correction=0, keepdim=True)
        return ((x - mean) / torch.sqrt(var + eps)).to(wav.dtype)
    lengths = torch.as_tensor(lengths, device=wav.device)
    if lengths.shape != (wav.shape[0],):
        raise ValueError(f"lengths must have shape ({wav.shape[0]},), got {tuple(lengths.shape)}")
    valid = torch.arange(wav.shape[1], device=wav.device)[None, :] < lengths[:, None]
    n = lengths.clamp(min=1).to(torch.float64)[:, None]
    mean = (x * valid).sum(dim=1, keepdim=True) / n
    centred = (x - mean) * valid
    var = centred.square().sum(dim=1, keepdim=True) / n
    return (centred / torch.sqrt(var + eps)).to(wav.dtype)
