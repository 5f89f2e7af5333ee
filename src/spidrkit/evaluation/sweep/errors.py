"""The evaluation's own error (metric functions raise ``ValueError`` and their typed subclasses)."""

from __future__ import annotations

from spidrkit.errors import InputError


class SweepError(InputError):
    """A sweep asked of a corpus, model or options that cannot give it (the message says what to fix)."""
