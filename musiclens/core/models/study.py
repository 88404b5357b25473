"""The studied architectures, each with its front end, patch length and input shape.

:func:`create` makes an untrained :class:`~musiclens.core.models.registry.LoadedModel` for
an architecture and a list of labels; training fills in the weights, and
:func:`musiclens.core.models.registry.save` writes it as ``weights.safetensors`` +
``model.json`` like every other model.

=============  ==========================================  =========  ===================
arch           front end                                   patch      input (C, F, T)
=============  ==========================================  =========  ===================
vanilla-cnn    log-mel dB, 22.05 kHz, n_fft 2048, hop 512,  3 s        (1, 128, 130)
               128 mels
masked-cnn     same                                        3 s        (1, 128, 130)
gap-cnn        same                                        3 s        (1, 128, 130)
choi-cnn       log-mel dB, 22.05 kHz, n_fft 2048, hop 512,  10 s       (1, 80, 431)
               80 mels
stft-cnn       complex STFT (real, imag), 22.05 kHz,        3 s        (2, 513, 259)
               n_fft 1024, hop 256 (``real_only``: 1 ch.)
musicnn-probe  MusiCNN's log-mel (16 kHz, hop 256, 96 mels)  187 fr.    (1, 96, 187)
               of the pretrained base (transfer learning,
               :mod:`musiclens.core.models.musicnn_probe`)
=============  ==========================================  =========  ===================

The log-mel front ends use ``ref = 1`` and no ``top_db`` clipping, so a patch's input depends
only on its own audio (computing a whole file and cutting frames gives the same values as
computing each patch with its STFT context, which the training loop relies on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from musiclens.core.errors import ParameterError
from musiclens.core.features import FrontEnd, logmel_frontend, musicnn_frontend, stft_frontend
from musiclens.core.models import architectures, registry


def _genre_logmel() -> FrontEnd:
    return logmel_frontend(sample_rate=22050, n_fft=2048, hop=512, n_mels=128, top_db=None)


def _choi_logmel() -> FrontEnd:
    return logmel_frontend(sample_rate=22050, n_fft=2048, hop=512, n_mels=80, top_db=None)


def _stft(real_only: bool = False) -> FrontEnd:
    return stft_frontend(sample_rate=22050, n_fft=1024, hop=256, real_only=real_only)


@dataclass(frozen=True)
class StudyArch:
    """An architecture of the studies: its family, default front end and patch length (what
    it is: :mod:`musiclens.core.models.architectures`)."""

    name: str
    front_end: Callable[[], FrontEnd]
    patch_seconds: float

    def patch_frames(self, fe: FrontEnd, patch_seconds: float | None = None) -> int:
        return fe.seconds_to_frames(self.patch_seconds if patch_seconds is None else float(patch_seconds))


ARCHS: dict[str, StudyArch] = {
    a.name: a
    for a in (
        StudyArch("vanilla-cnn", _genre_logmel, 3.0),
        StudyArch("masked-cnn", _genre_logmel, 3.0),
        StudyArch("gap-cnn", _genre_logmel, 3.0),
        StudyArch("choi-cnn", _choi_logmel, 10.0),
        StudyArch("stft-cnn", _stft, 3.0),
        # 2.98 s -> 187 frames at hop 256 (center=True), MusiCNN's own patch
        StudyArch("musicnn-probe", musicnn_frontend, 2.98),
    )
}


def arch(name: str) -> StudyArch:
    if name not in ARCHS:
        raise ParameterError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHS)}")
    return ARCHS[name]


def create(
    name: str,
    labels: list[str],
    *,
    multilabel: bool = False,
    front_end: FrontEnd | None = None,
    patch_seconds: float | None = None,
    model_name: str | None = None,
    real_only: bool = False,
    **params: Any,
) -> registry.LoadedModel:
    """An untrained model of architecture ``name`` for ``labels``.

    Parameters
    ----------
    labels : class names (>= 2 for single-label, >= 1 for multi-label).
    multilabel : sigmoid outputs (instrument tagging) instead of a softmax.
    front_end : override the architecture's default front end.
    patch_seconds : override the patch length (seconds of audio per network input).
    real_only : stft-cnn only: the real part of the STFT (1 channel) instead of (real, imag).
    params : further builder arguments (e.g. ``dropout``, ``mask_radius_f``).
    """
    spec = arch(name)
    if name == "musicnn-probe":
        _check_labels(labels, multilabel)
        from musiclens.core.models.musicnn_probe import create_probe

        return create_probe(
            list(labels),
            multilabel=multilabel,
            front_end=front_end,
            patch_seconds=patch_seconds,
            model_name=model_name,
            **params,
        )
    _check_labels(labels, multilabel)
    if front_end is None:
        front_end = _stft(real_only) if name == "stft-cnn" else spec.front_end()
    patch_frames = spec.patch_frames(front_end, patch_seconds)
    arch_params = {
        "n_labels": len(labels),
        "in_channels": front_end.channels,
        "n_bins": front_end.n_bins,
        "n_frames": patch_frames,
    } | params
    architecture = {"family": name, "params": arch_params}
    net, layers = registry.build(architecture)
    return registry.LoadedModel(
        name=model_name or name,
        net=net,
        front_end=front_end,
        labels=list(labels),
        patch_frames=patch_frames,
        multilabel=bool(multilabel),
        layers={layer.name: layer for layer in layers},
        architecture=architecture,
        provenance={"arch": name, "description": architectures.get(name).description, "trained": False},
    )


def _check_labels(labels: list[str], multilabel: bool) -> None:
    if not labels:
        raise ParameterError("a model needs at least one label")
    if not multilabel and len(labels) < 2:
        raise ParameterError(f"a single-label model needs at least two classes, got {labels}")
    if len(set(labels)) != len(labels):
        raise ParameterError(f"labels must be unique, got {labels}")


def input_shape(m: registry.LoadedModel) -> tuple[int, int, int]:
    """(C, F, T) of one network input of ``m``."""
    return (m.front_end.channels, m.front_end.n_bins, m.patch_frames)
