"""Model families and the registry that finds every model the same way."""

from musiclens.core.models.registry import LayerInfo, LoadedModel, available, load, save

__all__ = ["LayerInfo", "LoadedModel", "available", "load", "save"]
