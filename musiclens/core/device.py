"""Which torch device a model runs on: ``"auto"`` (the GPU when there is one), ``"cpu"``, ``"cuda"``.

Every place that loads a model or trains one asks :func:`resolve_device`, so the CLI's
``--device``, the training config and the window read the word the same way.

Importing this module does not import torch (the window reads :data:`DEVICE_CHOICES` while
it starts); the functions do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from musiclens.core.errors import ParameterError

if TYPE_CHECKING:
    import torch

#: The words users may give (``"cuda:1"`` etc. are accepted too).
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")
DEFAULT_DEVICE = "auto"


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def cuda_problem() -> str | None:
    """None when a CUDA GPU can be used, else why not, e.g. ``"no GPU is available (torch
    2.13.0 has no CUDA support)"`` (the CLI's and the window's message)."""
    if cuda_available():
        return None
    import torch

    why = "has no CUDA support" if torch.version.cuda is None else "sees no CUDA device"
    return f"no GPU is available (torch {torch.__version__} {why})"


def resolve_device(device: str | torch.device | None = DEFAULT_DEVICE) -> torch.device:
    """``"auto"`` (or None) -> cuda when a GPU is available, else cpu; ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` or a ``torch.device`` -> that device.

    Raises :class:`~musiclens.core.errors.ParameterError` (a ``MusicLensError``) for an unknown
    word, and when a GPU is asked for on a machine without one.
    """
    import torch

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
        problem = cuda_problem()
        if problem is not None:
            raise ParameterError(f"device {str(device)!r} asked for, but {problem}; use --device auto or cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ParameterError(f"device {str(dev)!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return dev


def describe(device: str | torch.device) -> str:
    """A short human name for a device, e.g. ``"cpu"`` or ``"cuda:0 (NVIDIA H200)"``."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and cuda_available():
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(dev)
