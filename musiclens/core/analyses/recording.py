"""Open a recording, summarise a model, and the small conversions every analysis shares.
Torch is imported inside the functions (the window imports this module before torch loads)."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from musiclens.core.analyses.results import ModelSummary, Recording
from musiclens.core.progress import Progress, run, scaled


def read_span(
    path: str | Path, model: Any, *, offset: float = 0.0, duration: float | None = None
) -> tuple[np.ndarray, int]:
    """A span of an audio file, mono at the file's own rate -> ((samples,) float32, rate Hz).

    offset : seconds from the start (>= 0). duration : seconds; None = one model patch
    (exactly ``patch_frames`` frames), 0 = the rest of the file.
    """
    from musiclens.core import audio
    from musiclens.core.errors import ParameterError

    if offset < 0:
        raise ParameterError(f"--offset must be non-negative, got {offset}")
    if duration is None:
        duration = model.patch_samples / model.sample_rate  # exactly one patch of frames
    if duration < 0:
        raise ParameterError(f"--duration must be non-negative, got {duration}")
    y, sr = audio.load(path, sr=None, mono=True, offset=offset, duration=duration or None)
    if len(y) == 0:
        raise ParameterError(f"{path}: no audio at offset {offset} s")
    return y, int(sr)


def summarise(model: Any) -> ModelSummary:
    """A LoadedModel -> :class:`ModelSummary` (plain Python); a raw-waveform model's
    ``front_end_kind`` is ``"waveform"``."""
    return ModelSummary(
        name=model.name,
        labels=list(model.labels),
        multilabel=model.multilabel,
        layers=[(info.name, info.group, info.kind) for info in model.layers.values()],
        patch_seconds=model.patch_seconds,
        front_end_kind="waveform" if model.kind == "waveform" else model.front_end.kind,
        sample_rate=model.sample_rate,
        source=str(model.source or ""),
    )


def load_model_steps(
    name_or_dir: str, *, device: str = "cpu", trust_code: bool = False
) -> Generator[Progress, None, tuple[Any, ModelSummary, dict[str, Any]]]:
    """Load a model in three steps (PyTorch, the model, what it can do), yielding a
    :class:`Progress` before each (``fraction``: steps done / 3). Returns (LoadedModel, its
    :class:`ModelSummary`, its abilities: ``{"cam_layer": str | None, "limits": {feature: why
    not}, "lines": [...]}``; the CAM layer and the lines only for the user's own networks,
    found out by running them: a family's are known)."""
    yield Progress(fraction=0.0, message="loading PyTorch")
    import torch  # noqa: F401  (the heavy import is a step of its own)

    from musiclens.core.models import discover, registry, user_models

    yield Progress(fraction=1 / 3, message=f"loading model {name_or_dir}")
    model = registry.load(name_or_dir, device=device, trust_code=trust_code)
    yield Progress(fraction=2 / 3, message=f"summarising {model.name}")
    own = "family" not in model.architecture
    abilities = {
        "cam_layer": discover.default_cam_layer(model) if own else None,
        "limits": dict(model.limits),
        "lines": user_models.describe(model) if own else [],
    }
    return model, summarise(model), abilities


def probabilities(model: Any, scores: np.ndarray, output: str = "logit") -> dict[str, float]:
    """Label -> probability from a model's (L,) logits (or probabilities already)."""
    import torch

    t = torch.as_tensor(np.asarray(scores))[None]
    p = model.probabilities(t)[0] if output == "logit" else t[0]
    return dict(zip(model.labels, (float(v) for v in p)))


def display_of(x: Any, fe: Any) -> np.ndarray:
    """One front-end output (C, F, T) tensor -> the (F, T) image the viewers draw
    (STFT models: |STFT|² in dB; others: the first channel as it is)."""
    import torch

    x = x.detach().cpu()
    if fe.kind == "stft":
        return (10 * torch.log10((x[0] ** 2 + x[1] ** 2).clamp_min(1e-10))).float().numpy()
    image: np.ndarray = x[0].float().numpy()
    return image


def layer_kinds(model: Any) -> dict[str, str]:
    """Layer name -> its kind (conv, batchnorm, block, pool, dense, …) for grouping curves."""
    return {name: info.kind for name, info in model.layers.items()}


def make_recording(path: Path, y: np.ndarray, sr: int, model: Any) -> Recording:
    """(samples,) at the model's rate -> :class:`Recording`: the front end of the whole file
    reduced to one (F, T) image for display (a raw-waveform model: a log-mel of the samples,
    :func:`~musiclens.core.analyses.dream.waveform_display`)."""
    import torch

    if model.kind == "waveform":
        from musiclens.core.analyses.dream import waveform_display, waveform_display_front_end

        shown = waveform_display_front_end(sr)
        caption = f"raw samples at {sr} Hz, shown as a {shown.n_mels}-band log-mel"
        return Recording(path, y, sr, waveform_display(y, sr), shown.bin_frequencies(), len(y) / sr, caption)
    fe = model.front_end
    with torch.no_grad():
        x = fe(torch.from_numpy(y)[None].to(getattr(model, "device", "cpu")))[0]  # (C, F, T)
    display = display_of(x, fe)
    caption = f"{fe.kind} front end, {fe.sample_rate} Hz" + (" (|STFT|² in dB)" if fe.kind == "stft" else "")
    return Recording(path, y, sr, display.astype(np.float32), fe.bin_frequencies(), len(y) / sr, caption)


def open_recording(model: Any, path: str | Path) -> Recording:
    """Read an audio file (mono, at the model's rate) -> :class:`Recording`."""
    return run(open_recording_steps(model, path))


def open_recording_steps(model: Any, path: str | Path) -> Generator[Progress, None, Recording]:
    """:func:`open_recording` in steps: yields a :class:`Progress` per block read
    (:func:`musiclens.core.audio.load_steps`) and before the front end is drawn; each pass
    over the samples (decoding, resampling when the rates differ, the front end) counts as
    an equal part of the fraction."""
    from musiclens.core import audio

    path = Path(path)
    reading = 1 + (audio.info(path).sample_rate != model.sample_rate)  # passes: decode (and resample)
    share = reading / (reading + 1)
    y, sr = yield from scaled(audio.load_steps(path, sr=model.sample_rate), 0.0, share)
    yield Progress(fraction=share, message=f"drawing {path.name}")
    return make_recording(path, y, sr, model)


def patch_audio(recording: Recording, patch_seconds: float, patch: int) -> tuple[np.ndarray, float]:
    """(samples,) of patch ``patch`` of ``recording`` at its rate, and its start in s."""
    start = patch * patch_seconds
    a = int(round(start * recording.sample_rate))
    b = a + int(round(patch_seconds * recording.sample_rate))
    return recording.audio[a:b], start


def patch_at(patch_starts_s: np.ndarray, seconds: float) -> int:
    """Index of the patch that contains ``seconds`` (clamped to the patches; 0 if none)."""
    if not len(patch_starts_s):
        return 0
    i = int(np.searchsorted(patch_starts_s, seconds, side="right") - 1)
    return int(np.clip(i, 0, len(patch_starts_s) - 1))
