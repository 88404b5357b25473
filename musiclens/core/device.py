"""Which torch device a model runs on: ``"auto"`` (the GPU when there is one), ``"cpu"``, ``"cuda"``.

Every place that loads a model or trains one asks :func:`resolve_device`, so the CLI's
``--device``, the training config and the window read the word the same way.
"""

from __future__ import annotations

import torch

from musiclens.core.errors import ParameterError

#: The words users may give (``"cuda:1"`` etc. are accepted too).
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")
DEFAULT_DEVICE = "auto"


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def resolve_device(device: str | torch.device | None = DEFAULT_DEVICE) -> torch.device:
    """``"auto"`` (or None) -> cuda when a GPU is available, else cpu; ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` or a ``torch.device`` -> that device.

    Raises :class:`~musiclens.core.errors.ParameterError` (a ``MusicLensError``) for an unknown
    word, and when a GPU is asked for on a machine without one.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device is None or str(device).strip().lower() == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    else:
        try:
            dev = torch.device(str(device).strip().lower())
        except (RuntimeError, ValueError):
            raise ParameterError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if dev.type not in ("cpu", "cuda"):
        raise ParameterError(f"device {str(dev)!r} is not supported; use auto, cpu or cuda")
    if dev.type == "cuda":
        if not cuda_available():
            raise ParameterError(
                f"device {str(device)!r} asked for, but no GPU is available (torch {torch.__version__} "
                f"{'has no CUDA support' if torch.version.cuda is None else 'sees no CUDA device'}); "
                "use --device auto or cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ParameterError(f"device {str(dev)!r}: this machine has "
                                 f"{torch.cuda.device_count()} GPU(s)")
    return dev


def describe(device: str | torch.device) -> str:
    """A short human name for a device, e.g. ``"cpu"`` or ``"cuda:0 (NVIDIA H200)"``."""
    dev = torch.device(device)
    if dev.type == "cuda" and cuda_available():
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(dev)
