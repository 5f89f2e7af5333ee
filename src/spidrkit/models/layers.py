"""Building blocks: the convolutional downsampler, the projection, the positional convolution and the
post-LN Transformer encoder. Module and parameter names follow the released checkpoint layout (docs/formats.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spidrkit.config import ModelConfig


def num_frames(num_samples, kernels: Sequence[int], strides: Sequence[int]):
    """Frames the downsampler gives for ``num_samples`` samples: floor((L - k) / s) + 1 per layer.

    Works on ints and on integer tensors (elementwise). Too-short inputs give 0 (never negative).
    """
    if isinstance(num_samples, torch.Tensor):
        n = num_samples.long()
        for k, s in zip(kernels, strides):
            n = torch.div(n - k, s, rounding_mode="floor") + 1
            n = n.clamp(min=0)
        return n
    n = int(num_samples)
    for k, s in zip(kernels, strides):
        n = max((n - k) // s + 1, 0)
    return n


def receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Samples needed for one frame (400 for BASE)."""
    field, jump = 1, 1
    for k, s in zip(kernels, strides):
        field += (k - 1) * jump
        jump *= s
    return field


class ConvLayer(nn.Module):
    """Conv1d (no bias) -> LayerNorm over channels (affine) -> exact GELU, on channels-last frames.

    The convolution is computed as unfold + one matrix product on (B, T, C) activations, so the LayerNorm
    over channels needs no transposes (about 1.3-2x faster than Conv1d + transposes on a CPU, and a
    plain GEMM on a GPU). The weight keeps Conv1d's layout (out, in, kernel) and name.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride, bias=False)
        self.layer_norm = nn.LayerNorm(out_channels)
        nn.init.kaiming_normal_(self.conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T', C')
        u = x.unfold(1, self.kernel, self.stride)  # (B, T', C, k): a view
        w = self.conv.weight
        x = u.reshape(u.shape[0], u.shape[1], -1) @ w.reshape(w.shape[0], -1).t()
        return F.gelu(self.layer_norm(x))


class FeatureExtractor(nn.Module):
    """The downsampler: 16 kHz waveform (B, L) -> frames (B, T, conv_dim) at 50 Hz (BASE)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        chans = [1] + [cfg.conv_dim] * len(cfg.conv_kernels)
        self.conv_layers = nn.ModuleList(
            ConvLayer(chans[i], chans[i + 1], k, s)
            for i, (k, s) in enumerate(zip(cfg.conv_kernels, cfg.conv_strides))
        )

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = wav.unsqueeze(-1)
        for layer in self.conv_layers:
            x = layer(x)
        return x


class FeatureProjection(nn.Module):
    """LayerNorm(conv_dim) -> Linear(conv_dim, dim) -> dropout (``dropout=False``: the output before it);
    ``n_mels`` in place of ``conv_dim`` with the log-mel front end."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(cfg.frontend_dim)
        self.projection = nn.Linear(cfg.frontend_dim, cfg.dim)
        self.dropout = nn.Dropout(cfg.projection_dropout)

    def forward(self, x: torch.Tensor, dropout: bool = True) -> torch.Tensor:
        x = self.projection(self.layer_norm(x))
        return self.dropout(x) if dropout else x


class PositionalConv(nn.Module):
    """Stacked grouped convolutions (data2vec 2.0 style); padded frames are zeroed before each conv."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        k = cfg.pos_conv_layer_kernel
        self.convs = nn.ModuleList(
            nn.Conv1d(cfg.dim, cfg.dim, k, padding=k // 2, groups=cfg.pos_conv_groups)
            for _ in range(cfg.pos_conv_layers)
        )
        self.init_weights(cfg.init, k, cfg.dim)

    def init_weights(self, scheme: str, kernel: int, dim: int) -> None:
        """``normal``: N(0, sqrt(4 / (kernel dim))), biases 0; ``release``: PyTorch's Conv1d defaults."""
        std = math.sqrt(4.0 / (kernel * dim))
        for conv in self.convs:
            if scheme == "release":
                conv.reset_parameters()
                continue
            nn.init.normal_(conv.weight, mean=0.0, std=std)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, T, D); padding_mask: (B, T) True on padded frames
        keep = None if padding_mask is None else (~padding_mask).unsqueeze(1).to(x.dtype)
        x = x.transpose(1, 2)
        for conv in self.convs:
            if keep is not None:
                x = x * keep
            x = conv(x)
            x = F.layer_norm(x.transpose(1, 2), (x.shape[1],)).transpose(1, 2)
            x = F.gelu(x)
        return x.transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one fused QKV projection (no bias) and scaled_dot_product_attention."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(out.transpose(1, 2).reshape(B, T, D))


class FeedForward(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, activation_dropout: float) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, ffn_dim)
        self.output_dense = nn.Linear(ffn_dim, dim)
        self.dropout = nn.Dropout(activation_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_dense(self.dropout(F.gelu(self.intermediate_dense(x))))


class Block(nn.Module):
    """Post-LN block. Returns (x, r): r, the FFN output before the residual add, is the layer's
    representation used for targets, prediction heads and features."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attention = Attention(cfg.dim, cfg.num_heads, cfg.attention_dropout)
        self.layer_norm = nn.LayerNorm(cfg.dim)
        self.feed_forward = FeedForward(cfg.dim, cfg.ffn_dim, cfg.activation_dropout)
        self.final_layer_norm = nn.LayerNorm(cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None):
        x = self.layer_norm(x + self.dropout(self.attention(x, attn_mask)))
        r = self.feed_forward(x)
        x = self.final_layer_norm(x + self.dropout(r))
        return x, r


class Encoder(nn.Module):
    """Positional convolution (added) -> LayerNorm -> dropout -> post-LN blocks."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.pos_conv_embed = PositionalConv(cfg)
        self.layer_norm = nn.LayerNorm(cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))

    def init_blocks(self, scheme: str) -> None:
        """Draw the blocks' linear weights (LayerNorms untouched). ``normal``: every Linear N(0, 0.02),
        biases 0. ``release``: fused Q/K/V Xavier-uniform with gain 1/sqrt(2), output projection
        Xavier-uniform with bias 0, feed-forward N(0, 0.02) with biases 0."""
        for m in self.layers.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if scheme == "release":
            for block in self.layers:
                nn.init.xavier_uniform_(block.attention.qkv.weight, gain=1 / math.sqrt(2))
                nn.init.xavier_uniform_(block.attention.proj.weight)

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        num_layers: int | None = None,
        layerdrop: float = 0.0,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns (the output of the last layer run, the representations r of layers 1..num_layers).

        Layer drop (training only) is decided on the device, without host synchronisation: a dropped
        layer is still computed, its representation r still returned, but the residual stream skips it.
        """
        x = x + self.pos_conv_embed(x, padding_mask)
        x = self.dropout(self.layer_norm(x))
        attn_mask = None
        if padding_mask is not None:
            attn_mask = (~padding_mask)[:, None, None, :]  # (B, 1, 1, T): True = may attend
        layers = self.layers[: num_layers or len(self.layers)]
        drop = torch.rand(len(layers), device=x.device) < layerdrop if layerdrop > 0 and self.training else None
        reps: list[torch.Tensor] = []
        for i, layer in enumerate(layers):
            out, r = layer(x, attn_mask)
            x = out if drop is None else torch.where(drop[i], x, out)
            reps.append(r)
        return x, reps
