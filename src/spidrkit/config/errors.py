"""The one error of configuration."""

from __future__ import annotations

from spidrkit.errors import InputError


class ConfigError(InputError):
    """A config file or override is wrong; the message names the key."""
