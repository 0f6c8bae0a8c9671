"""roomkeeper's core: settings, Redis state, LiveKit, signing, delivery and the arq worker."""

__version__ = "0.1.0"
