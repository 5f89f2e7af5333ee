"""The one error of weight I/O."""

from __future__ import annotations

from spidrkit.errors import InputError


class CheckpointError(InputError):
    """A file that is not a checkpoint spidrkit can load, whose weights do not fit the model, or that does
    not fit the run that wants to resume from it; the message names the file and what to do."""
