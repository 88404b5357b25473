"""Helpers shared by the interpretation commands (cam, auralise, dream, similarity)."""

from __future__ import annotations

import argparse

DEFAULT_MODEL = "MTT_musicnn"


def add_model_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"bundled model name or model folder (default {DEFAULT_MODEL})")


def add_segment_arguments(p: argparse.ArgumentParser, *, default_duration: float | None) -> None:
    p.add_argument("--offset", type=float, default=0.0, help="start reading at this time (s)")
    what = "one model patch" if default_duration is None else f"{default_duration} s"
    p.add_argument("--duration", type=float, default=None,
                   help=f"seconds to read (default {what}; 0 = the whole file)")


def read_audio(path: str, m, *, offset: float, duration: float | None):
    """Mono audio at the file's own rate -> (samples,) float32, rate. ``duration`` None =
    one model patch, 0 = the whole file."""
    from musiclens.core import audio
    from musiclens.core.errors import ParameterError

    if offset < 0:
        raise ParameterError(f"--offset must be non-negative, got {offset}")
    if duration is None:
        fe = m.front_end
        duration = ((m.patch_frames - 1) * fe.hop + 1) / fe.sample_rate
    if duration < 0:
        raise ParameterError(f"--duration must be non-negative, got {duration}")
    y, sr = audio.load(path, sr=None, mono=True, offset=offset, duration=duration or None)
    if len(y) == 0:
        raise ParameterError(f"{path}: no audio at offset {offset} s")
    return y, int(sr)


def features_at_model_rate(m, y, sr: int):
    """(samples,) at ``sr`` -> front-end output (1, C, F, T)."""
    import torch

    from musiclens.core.interpret._common import to_fe_rate

    yy, _, _ = to_fe_rate(y, sr, m.front_end)
    with torch.no_grad():
        return m.front_end(yy)


def resolve_target(m, target: str | None, x) -> int:
    """A label name or index; None = the model's top label on ``x``."""
    import torch

    from musiclens.core.interpret._common import target_index

    if target is None:
        with torch.no_grad():
            return int(m.probabilities(m.net(x)).mean(0).argmax())
    return target_index(m, int(target) if target.lstrip("-").isdigit() else target)
