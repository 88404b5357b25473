"""Training, as one package (no import cycles; a test imports every module alone):

================  =====================================================================
``archs``         the trainable architectures and their input kind (no torch; the GUI reads it)
``events``        ONE progress type for every trainer (:class:`Progress`), plus
                  :class:`PrepareProgress` and :class:`Finished` around it (no torch)
``data``          datasets by concern: ``scan`` (folders, CSV, stems, MIDI), ``splits``
                  (by track), ``patches`` (patch sets), ``cache`` (the feature cache)
``loop``          the training loop of the audio study models (metrics, checkpoints, resume)
``distributed``   torchrun processes: the process group, DDP, batch shards, gathered metrics
``probe``         the MusiCNN probe (cached frozen features, cross-validated head)
``midi``          MIDI note windows and the LSTM trainer
``entry``         :func:`train` — the one entry point: ``train(data=FOLDER, out=DIR, arch=None)``
================  =====================================================================

Importing this package is cheap; :func:`train`, :class:`TrainConfig` and the event types
are loaded on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["train", "TrainConfig", "Progress", "PrepareProgress", "Finished", "ARCHITECTURES", "DEFAULT_ARCH"]

_LAZY = {
    "train": ("musiclens.core.training.entry", "train"),
    "TrainConfig": ("musiclens.core.training.loop", "TrainConfig"),
    "Progress": ("musiclens.core.training.events", "Progress"),
    "PrepareProgress": ("musiclens.core.training.events", "PrepareProgress"),
    "Finished": ("musiclens.core.training.events", "Finished"),
    "ARCHITECTURES": ("musiclens.core.models.architectures", "ARCHITECTURES"),
    "DEFAULT_ARCH": ("musiclens.core.models.architectures", "DEFAULT_ARCH"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
