"""The one error of weight I/O."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A file that is not a checkpoint spidrkit can load, whose weights do not fit the model, or that does
    not fit the run that wants to resume from it; the message names the file and what to do."""
