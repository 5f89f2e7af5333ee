"""The masking hook of the data loaders: training masks are drawn on the host, keyed by batch position."""

from __future__ import annotations

from dataclasses import dataclass

from spidrkit.config import Config
from spidrkit.data.batches.dataset import Batch, batch_rng
from spidrkit.data.batches.perturb import Hooks, VoicePerturbHook
from spidrkit.models.layers import num_frames
from spidrkit.models.masking import sample_mask


@dataclass(frozen=True)
class MaskHook:
    """Adds ``batch["mask"]`` in the data loader (the host, the workers): masks never cost the device.

    The mask RNG is a function of where the batch is: (seed, stream, epoch, global batch index), with the
    global index ``position * world_size + rank``. Resumed runs thus draw the same masks, and one process
    with ``grad_accum = W`` draws the masks that W processes draw (same batches, same masks).
    """

    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    prob: float
    length: int
    min_masks: int
    seed: int
    rank: int = 0
    world_size: int = 1
    stream: int = 0  # 0: training, 1: validation

    @classmethod
    def from_config(cls, cfg: Config, rank: int = 0, world_size: int = 1, stream: int = 0) -> MaskHook:
        m = cfg.masking
        return cls(
            cfg.model.conv_kernels, cfg.model.conv_strides, m.prob, m.length, m.min_masks, cfg.train.seed,
            rank, world_size, stream,
        )

    def __call__(self, batch: Batch) -> Batch:
        B, L = batch["wav"].shape
        rng = batch_rng(self.seed, self.stream, batch["index"], self.rank, self.world_size)
        T = num_frames(L, self.kernels, self.strides)
        batch["mask"] = sample_mask(B, T, self.prob, self.length, self.min_masks, rng)
        return batch


def train_hooks(cfg: Config, rank: int = 0, world_size: int = 1) -> MaskHook | Hooks:
    """The training loader's hook: masks, then the student's voice perturbation when ``data.voice_perturb``
    asks for it (:mod:`spidrkit.data.batches.perturb`)."""
    masks = MaskHook.from_config(cfg, rank, world_size, 0)
    perturb = VoicePerturbHook.from_config(cfg, rank, world_size)
    return masks if perturb is None else Hooks((masks, perturb))
