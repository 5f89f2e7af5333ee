"""spidrkit: SpidR and DinoSR self-supervised speech models, end to end."""

__version__ = "0.1.0"
