"""Notes -> audio: a small deterministic additive synthesiser, or a SoundFont when one is installed.

:func:`synthesise` renders :class:`~musiclens.core.midi.Notes` as mono float32 audio.
With ``soundfont="auto"`` it uses FluidSynth through pretty_midi when the ``fluidsynth``
Python module and a ``.sf2`` file (``$MUSICLENS_SOUNDFONT`` or a usual system path) are
present; otherwise (or with ``soundfont=None``) :func:`additive` renders every note as a
few decaying harmonics with a short attack and release, the same samples every time.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from musiclens.core.midi import Notes, _to_pretty_midi
from musiclens.core.progress import Progress, run

#: how many progress steps :func:`additive_steps` yields over a piece (at most; one per note
#: for shorter pieces)
PROGRESS_STEPS = 50

SOUNDFONT_PATHS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
)


def midi_to_hz(pitch: npt.ArrayLike) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69.0) / 12.0)


def additive(
    notes: Notes, sr: int = 22050, *, harmonics: int = 6, release: float = 0.08, tail: float = 0.3, gain: float = 0.25
) -> np.ndarray:
    """Harmonics ``1/k`` with an exponential decay, 5 ms attack and ``release`` s release:
    :func:`additive_steps` run to its end -> audio float32 (samples,)."""
    return run(additive_steps(notes, sr, harmonics=harmonics, release=release, tail=tail, gain=gain))


def additive_steps(
    notes: Notes, sr: int = 22050, *, harmonics: int = 6, release: float = 0.08, tail: float = 0.3, gain: float = 0.25
) -> Generator[Progress, None, np.ndarray]:
    """:func:`additive` as progress steps: yields a :class:`Progress` (fraction: notes rendered /
    notes) every ``len(notes) / PROGRESS_STEPS`` notes; returns the audio float32 (samples,)."""
    total = float(notes.end.max()) + release + tail if len(notes) else 0.0
    out = np.zeros(int(np.ceil(total * sr)), dtype=np.float64)
    n_notes = len(notes)
    every = max(1, -(-n_notes // PROGRESS_STEPS))
    for i, (p, s, d, v, drum) in enumerate(
        zip(notes.pitch, notes.start, notes.duration, notes.velocity, notes.is_drum)
    ):
        if i % every == 0:
            yield Progress(fraction=i / n_notes, message=f"synthesising note {i + 1} of {n_notes}")
        a = int(round(s * sr))
        n = int(round((d + release) * sr))
        if n <= 0 or a >= len(out):
            continue
        n = min(n, len(out) - a)
        t = np.arange(n) / sr
        amp = (v / 127.0) ** 1.5
        if drum:  # a short deterministic noise burst
            rng = np.random.default_rng(int(p))
            tone = rng.standard_normal(n) * np.exp(-t / 0.05)
        else:
            f0 = float(midi_to_hz(p))
            k = np.arange(1, harmonics + 1)
            k = k[k * f0 < sr / 2]
            tone = (np.sin(2 * np.pi * f0 * t[:, None] * k) / k).sum(axis=1)
            tone *= np.exp(-t * (1.5 + f0 / 1000.0))
        env = np.minimum(1.0, t / 0.005)
        off = t > d
        env[off] *= np.clip(1.0 - (t[off] - d) / release, 0.0, 1.0)
        out[a : a + n] += gain * amp * tone * env
    peak = float(np.abs(out).max()) if len(out) else 0.0
    if peak > 1.0:
        out /= peak
    return out.astype(np.float32)


def find_soundfont() -> Path | None:
    env = os.environ.get("MUSICLENS_SOUNDFONT")
    for candidate in ([env] if env else []) + list(SOUNDFONT_PATHS):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def soundfont_available() -> Path | None:
    """The SoundFont FluidSynth would use, or None (no fluidsynth module or no .sf2)."""
    try:
        import fluidsynth  # noqa: F401
    except Exception:  # noqa: BLE001 - missing module or missing libfluidsynth
        return None
    return find_soundfont()


def synthesise(
    notes: Notes, sr: int = 22050, *, soundfont: str | os.PathLike[str] | None = "auto"
) -> tuple[np.ndarray, str]:
    """Render ``notes``; returns ``(audio float32 (samples,), "soundfont NAME" | "additive")``."""
    return run(synthesise_steps(notes, sr, soundfont=soundfont))


def synthesise_steps(
    notes: Notes, sr: int = 22050, *, soundfont: str | os.PathLike[str] | None = "auto"
) -> Generator[Progress, None, tuple[np.ndarray, str]]:
    """:func:`synthesise` as progress steps: the built-in synthesiser's per-note steps
    (:func:`additive_steps`); FluidSynth renders in one call (one step, fraction unknown)."""
    sf2 = soundfont_available() if soundfont == "auto" else (Path(soundfont) if soundfont else None)
    if sf2 is not None and len(notes):
        yield Progress(message=f"synthesising {len(notes)} notes with {sf2.name}")
        try:
            audio = _to_pretty_midi(notes).fluidsynth(fs=sr, sf2_path=str(sf2))
            peak = float(np.abs(audio).max()) or 1.0
            return (0.9 * audio / peak).astype(np.float32), f"soundfont {sf2.name}"
        except Exception:  # noqa: BLE001 - fall back to the built-in synthesiser
            pass
    audio = yield from additive_steps(notes, sr)
    return audio, "additive"
