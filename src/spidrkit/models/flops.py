"""The arithmetic cost of a training step, counted from the architecture (``docs/design.md#performance``).

Matmul and convolution FLOPs only (2 per multiply-add): what model-FLOP utilisation (MFU) is measured
against. The student runs forward and backward (twice the forward, less the first convolution: the
waveform needs no gradient), the teacher forward only, on unmasked input, up to its codebooks.
"""

from __future__ import annotations

from spidrkit.config import ModelConfig


def step_flops(m: ModelConfig, batch: int, samples: int) -> dict[str, float]:
    """Analytic matmul/conv FLOPs of one training step on ``batch`` waveforms of ``samples`` samples."""
    n, cin, convs, first = samples, 1, 0.0, 0.0
    for i, (k, s) in enumerate(zip(m.conv_kernels, m.conv_strides)):
        n = (n - k) // s + 1
        f = 2.0 * cin * m.conv_dim * k * n * batch
        convs += f
        first = f if i == 0 else first
        cin = m.conv_dim
    if m.frontend != "cnn":  # a fixed spectrum: no learnt convolutions (its FFTs are not counted)
        convs = first = 0.0
    T, D, F, V, K = n, m.dim, m.ffn_dim, m.codebook_size, m.num_codebooks
    proj = 2.0 * m.frontend_dim * D * T * batch
    pos = m.pos_conv_layers * 2.0 * (D // m.pos_conv_groups) * D * m.pos_conv_layer_kernel * T * batch
    block = (2.0 * T * D * 3 * D + 2.0 * T * D * D + 4.0 * T * T * D + 4.0 * T * D * F) * batch
    encoder = pos + m.num_layers * block
    heads = K * 2.0 * T * D * V * batch
    codebooks = K * 2.0 * T * D * V * batch
    student_fwd = convs + proj + encoder + heads
    student_bwd = 2.0 * student_fwd - first  # the waveform needs no gradient
    teacher_fwd = encoder + codebooks
    return {
        "frames": float(T),
        "downsampler": convs,
        "student_fwd": student_fwd,
        "student_bwd": student_bwd,
        "teacher_fwd": teacher_fwd,
        "total": student_fwd + student_bwd + teacher_fwd,
    }
