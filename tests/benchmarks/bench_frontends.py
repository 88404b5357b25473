"""Benchmark: our log-mel and Griffin-Lim against librosa's on a 30 s clip, in one run.

    .venv/bin/python tests/benchmarks/bench_frontends.py [FILE] [--repeat N] [--threads T]

Prints the best-of-N wall time of each, the ratio librosa / ours (> 1: ours is faster) and
the largest difference of the results, so speed is never bought with a different answer.
Targets (issue 2): log-mel >= 3x, Griffin-Lim (32 iterations) >= 2x. Without FILE it uses
GTZAN's jazz.00000 from ../shared/data, or 30 s of synthetic music when that is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from musiclens.core import features as F  # noqa: E402
from musiclens.core import inversion as inv  # noqa: E402
from musiclens.core import mel_power  # noqa: E402
from musiclens.core.audio import load  # noqa: E402


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def clip(path: str | None) -> tuple[np.ndarray, int, str]:
    default = REPO.parent / "shared/data/audio/gtzan-full-pecmae/jazz/jazz.00000.wav"
    if path or default.exists():
        p = Path(path) if path else default
        y, sr = load(p, duration=30.0)
        return y, sr, p.name
    sr = 22050
    t = np.arange(30 * sr) / sr
    y = sum(np.sin(2 * np.pi * f * t) * np.exp(-4 * (t % 0.5)) for f in (110, 220, 330, 550))
    return (0.2 * y + 0.01 * np.random.default_rng(0).standard_normal(len(t))).astype(np.float32), sr, "synthetic"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file", nargs="?")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import librosa

    y, sr, name = clip(args.file)
    print(f"clip: {name}, {len(y) / sr:.1f} s at {sr} Hz; torch threads {torch.get_num_threads()}")

    fe = F.logmel_frontend(sample_rate=sr, n_fft=2048, hop=512, n_mels=128)
    x = torch.from_numpy(y)[None]
    mel_power.prepare()  # the compiled mel projection, as the window loads it (a one-file CLI run does not)
    fe(x), librosa.feature.melspectrogram(y=y[:sr], sr=sr)  # warm up (numba JIT, caches)
    t_ours, ours = best_of(lambda: fe(x), args.repeat)
    t_ref, ref = best_of(
        lambda: librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=128)),
        args.repeat,
    )
    diff = np.abs(ours[0, 0].numpy() - ref).max()
    print(
        f"log-mel      ours {t_ours * 1e3:8.1f} ms  librosa {t_ref * 1e3:8.1f} ms  "
        f"ratio {t_ref / t_ours:5.2f}x  max |diff| {diff:.2e} dB"
    )

    gl_fe = F.FrontEnd("magnitude", sr, 2048, 512, power=1.0, compression="none")
    mag = F.stft(x, gl_fe).abs()
    mag_np = mag[0].numpy()
    g_ours, a = best_of(
        lambda: inv.griffin_lim(mag, gl_fe, n_iter=32, init_phase="zeros", length=len(y)), max(1, args.repeat // 2)
    )
    g_ref, b = best_of(
        lambda: librosa.griffinlim(mag_np, n_iter=32, hop_length=512, n_fft=2048, init=None, length=len(y)),
        max(1, args.repeat // 2),
    )
    sc_a = inv.spectral_convergence(mag, a, gl_fe).item()
    sc_b = inv.spectral_convergence(mag, torch.from_numpy(b)[None], gl_fe).item()
    print(
        f"Griffin-Lim  ours {g_ours * 1e3:8.1f} ms  librosa {g_ref * 1e3:8.1f} ms  "
        f"ratio {g_ref / g_ours:5.2f}x  spectral convergence {sc_a:.4f} vs {sc_b:.4f}"
    )

    mel = F.mel_basis(fe) @ (F.stft(x, fe).abs() ** 2)
    m_ours, _ = best_of(lambda: inv.mel_to_linear(mel, fe), 1)
    m_ref, _ = best_of(lambda: librosa.feature.inverse.mel_to_stft(mel[0].numpy(), sr=sr, n_fft=2048), 1)
    print(f"mel->linear  ours {m_ours * 1e3:8.1f} ms  librosa {m_ref * 1e3:8.1f} ms  ratio {m_ref / m_ours:5.2f}x")


if __name__ == "__main__":
    main()
