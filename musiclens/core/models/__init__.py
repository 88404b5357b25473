"""Model families and the registry that finds every model the same way.

The registry's names are imported on first use, so that light modules of this package
(:mod:`~musiclens.core.models.architectures`) import without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from musiclens.core.models.registry import LayerInfo, LoadedModel, available, load, save

__all__ = ["LayerInfo", "LoadedModel", "available", "load", "save"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from musiclens.core.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
