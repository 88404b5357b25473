"""A tiny labelled folder of tones for the training benchmarks (3 classes x 5 tracks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def synthetic(root: Path, *, sr: int = 22050, seconds: float = 15.0) -> Path:
    """Write ``root/{a,b,c}/{0..4}.wav``: a class's tones share a register; returns ``root``."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    for k, lab in enumerate(("a", "b", "c")):
        for i in range(5):
            y = 0.2 * np.sin(2 * np.pi * (200 * (k + 1) + 10 * i) * t) + 0.01 * rng.standard_normal(len(t))
            (root / lab).mkdir(parents=True, exist_ok=True)
            sf.write(str(root / lab / f"{i}.wav"), y.astype(np.float32), sr)
    return root
