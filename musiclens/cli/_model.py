"""``--model`` and ``--device``, written once for every command that loads a model.

Every such command calls :func:`add_model_argument` when it builds its parser and
:func:`load_model` when it runs, so the default model (:data:`DEFAULT_MODEL`, the window's
too) and the device rule (``auto``: the GPU when there is one) are the same everywhere.
``--trust-code`` allows a model folder whose architecture is the user's own Python code
(``"architecture": {"python": "net.py:Net"}``) to run that code; exported (``.pt2``) and
TorchScript folders, bundled and trained models never need it.
"""

from __future__ import annotations

import argparse

from musiclens.core.device import DEVICE_CHOICES  # torch-free to import
from musiclens.core.resources import DEFAULT_MIDI_MODEL, DEFAULT_MODEL

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_MIDI_MODEL",
    "DEVICE_CHOICES",
    "add_model_argument",
    "add_device_argument",
    "add_trust_code_argument",
    "load_model",
    "trust_code",
]


def add_device_argument(p: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda`` (default auto: the GPU when one is present)."""
    p.add_argument(
        "--device",
        default="auto",
        choices=DEVICE_CHOICES,
        help="where the model runs: auto = the GPU when one is present, else the CPU",
    )


def add_trust_code_argument(p: argparse.ArgumentParser) -> None:
    """``--trust-code``: allow a model folder's own Python code to run."""
    p.add_argument(
        "--trust-code",
        action="store_true",
        help="allow a model folder whose network is defined by its own .py (or a Python module) to run that code",
    )


def trust_code(args: argparse.Namespace) -> bool:
    """Whether ``--trust-code`` was given (False for commands without it)."""
    return bool(getattr(args, "trust_code", False))


def add_model_argument(
    p: argparse.ArgumentParser, *, default: str | None = DEFAULT_MODEL, required: bool = False, help: str | None = None
) -> None:
    """``--model NAME|FOLDER`` (default :data:`DEFAULT_MODEL`), ``--device`` and ``--trust-code``."""
    if help is None:
        help = "bundled model name or model folder"
        if default is not None and not required:
            help += f" (default {default})"
    p.add_argument("--model", default=None if required else default, required=required, help=help)
    add_device_argument(p)
    add_trust_code_argument(p)


def load_model(args: argparse.Namespace, *, kind: str | None = None, default: str | None = None):
    """:func:`registry.load <musiclens.core.models.registry.load>` of ``args.model`` (or
    ``default``) on ``args.device``, running a model folder's own code only with
    ``--trust-code``; ``kind`` (``"audio"``, ``"midi"``) refuses other kinds."""
    from musiclens.core.models import registry

    name = getattr(args, "model", None) or default or (DEFAULT_MIDI_MODEL if kind == "midi" else DEFAULT_MODEL)
    return registry.load(name, device=getattr(args, "device", None) or "auto", kind=kind, trust_code=trust_code(args))
