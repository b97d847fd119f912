"""Streaming incident detection and incident management: the domain core."""

__version__ = "0.1.0"
