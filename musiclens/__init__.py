"""MusicLens: see, hear and edit what neural networks do with music."""

__version__ = "0.1.0"
