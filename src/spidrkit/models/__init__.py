"""SpidR / DinoSR models, masking and schedules."""

from spidrkit.models.layers import num_frames, receptive_field
from spidrkit.models.masking import sample_mask
from spidrkit.models.schedules import learning_rate, teacher_decay
from spidrkit.models.spidr import CodebookPrediction, SpidR

__all__ = [
    "CodebookPrediction",
    "SpidR",
    "learning_rate",
    "num_frames",
    "receptive_field",
    "sample_mask",
    "teacher_decay",
]
