"""Generate the bundled demo recording ``resources/demo/demo.ogg`` (our own work, CC0).

    .venv/bin/python packaging/make_demo_audio.py [OUT]

30 s at 22,050 Hz, mono: a four-bar electronic groove at 120 BPM (kick, snare, hi-hats,
a bass line, chord stabs, a lead melody), built from sines and filtered noise with a fixed
seed, so the file is reproducible. It ships because no model or recording can be
downloaded at run time and none of the real recordings we test with may be redistributed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22050
BPM = 120.0
BEAT = 60.0 / BPM
SECONDS = 30.0


def envelope(n: int, attack: float, decay: float) -> np.ndarray:
    t = np.arange(n) / SR
    return np.minimum(1.0, t / max(attack, 1e-4)) * np.exp(-t / decay)


def midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def add(out: np.ndarray, start_s: float, sound: np.ndarray) -> None:
    i = int(start_s * SR)
    j = min(len(out), i + len(sound))
    if i < len(out):
        out[i:j] += sound[: j - i]


def kick() -> np.ndarray:
    n = int(0.35 * SR)
    t = np.arange(n) / SR
    freq = 45 + 90 * np.exp(-t / 0.04)
    return 0.9 * np.sin(2 * np.pi * np.cumsum(freq) / SR) * envelope(n, 0.001, 0.12)


def noise_hit(rng, seconds: float, decay: float, brightness: float) -> np.ndarray:
    n = int(seconds * SR)
    noise = rng.standard_normal(n)
    if brightness > 0:  # first difference = crude high-pass, repeated for brighter hats
        for _ in range(int(brightness)):
            noise = np.diff(noise, prepend=0.0)
    return noise / np.abs(noise).max() * envelope(n, 0.001, decay)


def tone(note: float, seconds: float, harmonics=(1.0, 0.5, 0.33, 0.25), decay=0.5, attack=0.01):
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f = midi_hz(note)
    wave = sum(a * np.sin(2 * np.pi * f * (k + 1) * t) for k, a in enumerate(harmonics) if f * (k + 1) < SR / 2)
    return wave * envelope(n, attack, decay)


def render(seed: int = 2026) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(int(SECONDS * SR))
    chords = [(57, 60, 64), (53, 57, 60), (48, 52, 55), (55, 59, 62)]  # Am F C G
    bass_roots = [45, 41, 36, 43]
    melody = [76, 74, 72, 74, 76, 76, 76, None, 74, 74, 74, None, 76, 79, 79, None]
    n_bars = int(SECONDS / (4 * BEAT))
    for bar in range(n_bars):
        t0 = bar * 4 * BEAT
        chord, root = chords[bar % 4], bass_roots[bar % 4]
        for beat in range(4):
            add(out, t0 + beat * BEAT, kick() if beat in (0, 2) or bar % 4 == 3 else 0.5 * kick())
            if beat in (1, 3):
                add(out, t0 + beat * BEAT, 0.35 * noise_hit(rng, 0.25, 0.07, 1))
            for half in (0, 0.5):
                add(out, t0 + (beat + half) * BEAT, 0.12 * noise_hit(rng, 0.08, 0.02, 3))
            for eighth, step in enumerate((0, 12, 0, 7)):
                add(out, t0 + (beat + eighth / 4) * BEAT, 0.22 * tone(root + step, BEAT / 4, (1.0, 0.3), decay=0.1))
        for note in chord:
            for stab in (0.5, 2.5):
                add(out, t0 + stab * BEAT, 0.09 * tone(note, BEAT, decay=0.25))
        if bar >= 2:
            for i, note in enumerate(melody[(bar % 2) * 8 : (bar % 2) * 8 + 8]):
                if note is not None:
                    add(out, t0 + i * BEAT / 2, 0.13 * tone(note, BEAT / 2, (1.0, 0.0, 0.2), decay=0.3))
    out /= np.abs(out).max() / 0.89  # peak at -1 dBFS, no clipping
    fade = int(0.5 * SR)
    out[-fade:] *= np.linspace(1.0, 0.0, fade)
    return out.astype(np.float32)


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else repo / "resources/demo/demo.ogg"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, render(), SR, format="OGG", subtype="VORBIS")
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
