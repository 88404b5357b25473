"""Where bundled resources live (models, demo input). Light: no torch, no numpy."""

from __future__ import annotations

import os
import sys
from pathlib import Path

META_FILE = "model.json"

#: The model the window opens and every command uses when none is given (one definition:
#: import it from here).
DEFAULT_MODEL = "MSD_musicnn"
#: The bundled MIDI model (MIDI files, the piano roll, ``midi-classify`` ...).
DEFAULT_MIDI_MODEL = "midi_style_lstm"


def resources_dir() -> Path:
    """The folder of bundled resources: ``$MUSICLENS_RESOURCES``; in a frozen app bundle
    (PyInstaller) its ``resources/`` (under ``sys._MEIPASS``, else next to the executable);
    otherwise the repo's ``resources/``."""
    env = os.environ.get("MUSICLENS_RESOURCES")
    if env:
        return Path(env)
    if getattr(sys, "frozen", False):
        here = Path(sys.executable).resolve().parent
        for base in (getattr(sys, "_MEIPASS", None), here, here / "_internal"):
            if base and (Path(base) / "resources").is_dir():
                return Path(base) / "resources"
        return here / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def bundled_models_dir() -> Path:
    return resources_dir() / "models"


def available() -> list[str]:
    """Names of the bundled models (folders under ``resources/models`` with a model.json)."""
    root = bundled_models_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / META_FILE).is_file())


def model_input(folder: Path) -> str:
    """What a model folder's model reads: ``"audio"`` (default), ``"midi"`` or ``"waveform"``."""
    import json

    try:
        return str(json.loads((folder / META_FILE).read_text()).get("input", "audio"))
    except (OSError, ValueError, AttributeError):
        return "audio"


def available_for(kind: str) -> list[str]:
    """Bundled models whose input is ``kind`` (``"audio"``, ``"midi"`` or ``"waveform"``)."""
    return [name for name in available() if model_input(bundled_models_dir() / name) == kind]


def demo_recording() -> Path:
    """The bundled demo recording (see resources/demo/README.md)."""
    return resources_dir() / "demo" / "demo.ogg"
