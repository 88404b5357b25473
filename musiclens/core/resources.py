"""Where bundled resources live (models, demo input). Light: no torch, no numpy."""

from __future__ import annotations

import os
from pathlib import Path

META_FILE = "model.json"


def resources_dir() -> Path:
    """The folder of bundled resources (``$MUSICLENS_RESOURCES`` or the repo's ``resources/``)."""
    env = os.environ.get("MUSICLENS_RESOURCES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "resources"


def bundled_models_dir() -> Path:
    return resources_dir() / "models"


def available() -> list[str]:
    """Names of the bundled models (folders under ``resources/models`` with a model.json)."""
    root = bundled_models_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / META_FILE).is_file())


def demo_recording() -> Path:
    """The bundled demo recording (see resources/demo/README.md)."""
    return resources_dir() / "demo" / "demo.ogg"
