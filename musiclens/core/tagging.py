"""Tagging with patch-based models (MusiCNN and friends): patches, taggrams, layer outputs.

MusiCNN's extractor cuts the front-end output into patches of ``patch_frames`` (187 frames
= 3 s at 16 kHz / hop 256) with hop = ``patch_frames`` (no overlap) and drops the trailing
partial patch; the *taggram* is the per-patch sigmoid probabilities ``(P, n_labels)`` and
the top tags are ranked by their mean over patches (musicnn's ``top_tags``).

Everything here is headless (numpy + torch) and shape-documented; the CLI commands
``tag`` and ``activations`` are thin wrappers around :func:`tag_file` and
:func:`layer_outputs` / :func:`dense_matrix`.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from musiclens.core.errors import ParameterError
from musiclens.core.models.inputs import NoteSpec
from musiclens.core.models.registry import LoadedModel
from musiclens.core.progress import Progress


# ----------------------------------------------------------------------------- patching
def frames_to_patches(x: torch.Tensor, *, length: int, hop: int | None = None) -> torch.Tensor:
    """Cut the frame axis of a front-end output into patches.

    Parameters
    ----------
    x : (C, F, T) or (1, C, F, T) front-end output.
    length : patch length in frames (187 for MusiCNN).
    hop : frames between patch starts; defaults to ``length`` (no overlap).

    Returns
    -------
    (P, C, F, length) with ``P = 1 + (T - length) // hop``; the trailing partial patch is
    dropped. Raises :class:`ParameterError` when ``T < length``.
    """
    from musiclens.core.audio import patch_starts

    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ParameterError(f"expected one item, got a batch of {x.shape[0]}")
        x = x[0]
    if x.dim() != 3:
        raise ParameterError(f"expected (C, F, T) frames, got shape {tuple(x.shape)}")
    hop = length if hop is None else int(hop)
    starts = patch_starts(int(x.shape[-1]), int(length), hop)
    if not starts:
        raise ParameterError(
            f"the input has {x.shape[-1]} frames, fewer than one patch of {length} frames; use a longer recording"
        )
    return torch.stack([x[..., s : s + length] for s in starts])


def audio_to_patches(model: LoadedModel, audio: np.ndarray | torch.Tensor, *, hop: int | None = None) -> torch.Tensor:
    """Mono audio ``(samples,)`` at the model's sample rate -> patches (P, C, F, L); a raw-
    waveform model's patches are samples (P, 1, patch_samples) (``hop`` in samples)."""
    y = model.tensor(np.asarray(audio, dtype=np.float32))
    if y.dim() != 1:
        raise ParameterError(f"expected mono audio (samples,), got shape {tuple(y.shape)}")
    if model.kind == "waveform":
        if y.shape[0] < model.patch_frames:
            raise ParameterError(
                f"the audio is {y.shape[0] / model.sample_rate:.3f} s long; {model.name} needs at least "
                f"{model.patch_seconds:.3f} s (one patch of {model.patch_frames} samples)"
            )
        return frames_to_patches(y[None, None], length=model.patch_frames, hop=hop)[:, 0]  # (P, 1, S)
    fe = model.front_end
    if fe.n_frames(y.shape[0]) < model.patch_frames:
        raise ParameterError(
            f"the audio is {y.shape[0] / fe.sample_rate:.2f} s long; "
            f"{model.name} needs at least {model.patch_samples / fe.sample_rate:.2f} s "
            f"(one patch of {model.patch_frames} frames)"
        )
    with torch.no_grad():
        x = model.front_end(y[None])
    return frames_to_patches(x, length=model.patch_frames, hop=hop)


def load_audio_for(model: LoadedModel, path: str | os.PathLike[str]) -> np.ndarray:
    """Read a file as mono float32 at the model's front-end sample rate."""
    from musiclens.core import audio

    y, _ = audio.load(path, sr=model.sample_rate, mono=True)
    return y


def default_batch_size(model: LoadedModel) -> int:
    """Patches per forward pass: 1 on the CPU (MusiCNN's front-end maps of one patch, ~9 MB,
    stay in cache; a batch of 10 ran 2x slower on the dev machine), 32 on accelerators."""
    return 1 if next(model.net.parameters()).device.type == "cpu" else 32


# ----------------------------------------------------------------------------- taggram
@dataclass
class Taggram:
    """Per-patch tag probabilities.

    labels : the n_labels tag names.
    probabilities : (P, n_labels) sigmoid (multi-label) or softmax probabilities.
    patch_starts_s : (P,) start of each patch in seconds.
    patch_seconds : duration of one patch in seconds.
    """

    labels: list[str]
    probabilities: np.ndarray
    patch_starts_s: np.ndarray
    patch_seconds: float

    def mean(self) -> np.ndarray:
        """(n_labels,) mean probability over patches."""
        mean: np.ndarray = self.probabilities.mean(axis=0)
        return mean

    def top(self, n: int | None = None) -> list[tuple[str, float]]:
        """Tags sorted by mean probability (descending), ``n`` of them (all by default)."""
        mean = self.mean()
        order = np.argsort(-mean, kind="stable")
        if n is not None:
            order = order[:n]
        return [(self.labels[i], float(mean[i])) for i in order]

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        return {
            "tags": list(self.labels),
            "taggram": self.probabilities.astype(float).tolist(),
            "top": [[t, p] for t, p in self.top(top)],
            "patch_starts_s": self.patch_starts_s.astype(float).tolist(),
            "patch_seconds": self.patch_seconds,
        }


@torch.inference_mode()  # no autograd bookkeeping at all: ~10 % faster than no_grad on MusiCNN (issue 20)
def predict_patches(model: LoadedModel, patches: torch.Tensor, *, batch_size: int | None = None) -> np.ndarray:
    """(P, C, F, L) patches -> (P, n_labels) probabilities, in batches."""
    batch_size = batch_size or default_batch_size(model)
    out = [model.predict(patches[i : i + batch_size]).cpu() for i in range(0, len(patches), batch_size)]
    return torch.cat(out).numpy().astype(np.float32)


def taggram_steps(
    model: LoadedModel, audio: np.ndarray, *, hop: int | None = None, batch_size: int | None = None
) -> Generator[Progress, None, Taggram]:
    """:func:`taggram` in steps: yields a :class:`Progress` (fraction of the patches done)
    before each batch of patches and returns the :class:`Taggram`."""
    patches = audio_to_patches(model, audio, hop=hop)
    size = batch_size or default_batch_size(model)
    parts = []
    for i in range(0, len(patches), size):
        yield Progress(fraction=i / len(patches), message=f"tagging patch {i + 1}/{len(patches)}")
        parts.append(predict_patches(model, patches[i : i + size], batch_size=size))
    probs = np.concatenate(parts)
    step = model.patch_frames if hop is None else int(hop)
    spec = model.input
    if isinstance(spec, NoteSpec):  # audio_to_patches has already refused MIDI models' input
        raise ParameterError(f"{model.name} reads MIDI notes, not audio: it has no taggram")
    starts = spec.frames_to_seconds(np.arange(len(probs)) * step)
    return Taggram(list(model.labels), probs, starts, model.patch_seconds)


def taggram(model: LoadedModel, audio: np.ndarray, *, hop: int | None = None, batch_size: int | None = None) -> Taggram:
    """Mono audio ``(samples,)`` at the model's sample rate -> :class:`Taggram`."""
    steps = taggram_steps(model, audio, hop=hop, batch_size=batch_size)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: Taggram = done.value
            return result


def tag_file(
    path: str | os.PathLike[str], model: LoadedModel | str, *, hop: int | None = None, batch_size: int | None = None
) -> Taggram:
    """Tag an audio file: load (resampled, mono), front end, patches, probabilities."""
    from musiclens.core.models import registry

    m = registry.load(model) if isinstance(model, str) else model
    return taggram(m, load_audio_for(m, path), hop=hop, batch_size=batch_size)


# ----------------------------------------------------------------------------- activations
def layer_outputs(
    model: LoadedModel, x: torch.Tensor, layers: Sequence[str], *, batch_size: int | None = None
) -> dict[str, torch.Tensor]:
    """Outputs of the given layers (readable names or module paths) for inputs ``x``.

    x : (P, C, F, T) front-end patches. Returns {layer: (P, ...)} on the CPU, e.g. (P, 204, T)
    for a timbral branch, (P, 753, T) for MusiCNN's mid end, (P, 200) for the penultimate.
    A thin wrapper of :func:`musiclens.core.interpret.hooks.activations` (hooks always removed).
    """
    from musiclens.core.interpret.hooks import activations

    batch_size = batch_size or default_batch_size(model)
    return {name: a.cpu() for name, a in activations(model, x, list(layers), batch_size=batch_size).items()}


def _conv_channels(block: nn.Module) -> int:
    """Output channels of a MusiCNN block's convolution (every branch and mid-end layer holds
    one as ``.conv``: Conv2d in the front end, Conv1d in the mid end)."""
    conv = cast(nn.Conv1d | nn.Conv2d, block.get_submodule("conv"))
    return conv.out_channels


def dense_matrix(model: LoadedModel, x: torch.Tensor, *, batch_size: int | None = None) -> dict[str, Any]:
    """MusiCNN's W: the front end + the three mid-end outputs, stacked per frame.

    x : (P, 1, 96, 187) patches. Returns ``W`` (P, 753, 187) (rows 0–560 front end in the
    order timbral 38, timbral 67, temporal 128/64/32; 561–624 mid 1, 625–688 mid 2,
    689–752 mid 3), ``energy`` (P, 753) the mean square of each row over frames, and
    ``row_groups`` [(name, start, stop), ...].
    """
    if "mid_end" not in dict(model.net.named_modules()):
        raise ParameterError(f"{model.name} has no MusiCNN mid end (family {model.architecture.get('family')!r})")
    w = layer_outputs(model, x, ["mid_end"], batch_size=batch_size)["mid_end"]
    fe_mod = model.net.get_submodule("front_end")
    groups: list[tuple[str, int, int]] = []
    start = 0
    for key, branch in fe_mod.named_children():
        n = _conv_channels(branch)
        groups.append((f"front end / {key}", start, start + n))
        start += n
    for i in (1, 2, 3):
        n = _conv_channels(model.net.get_submodule(f"mid_end.layer{i}"))
        groups.append((f"mid end / conv {i}", start, start + n))
        start += n
    return {"W": w, "energy": w.pow(2).mean(dim=-1), "row_groups": groups}
