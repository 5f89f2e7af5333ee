"""The one error of configuration."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the key."""
