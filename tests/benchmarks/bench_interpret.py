"""Benchmark: interpretation on MusiCNN (MTT_musicnn) with resources/demo/demo.ogg, in one run.

    .venv/bin/python tests/benchmarks/bench_interpret.py [--repeat N] [--dream-steps K]

For each thread setting (torch.set_num_threads(1), then torch's default) it prints the
best-of-N wall time of:

* auralising one filter of the first conv layer over a 3 s patch (``auralise_filter``:
  front end, forward pass up to the layer, mask, STFT, mask to linear frequency, iSTFT),
  against a plain forward pass (front end + whole net, no gradient) of the same patch as
  the baseline; target <= 50 ms. Also: the same with the whole forward pass
  (``stop_early=False``, the behaviour before the early stop) and a late layer;
* Grad-CAM of the 30 s clip (10 patches of 187 frames): all patches in one batch and patch
  by patch, total and per patch, against a forward pass of the same patches;
* deep-dream iterations per second on a 3 s patch (the loop only: the final Griffin-Lim
  is timed separately), against one forward + backward of the patch (one gradient).

Ratios: "x baseline" = time / baseline time (for the dream: gradient time × iterations/s).
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

from musiclens.core.audio import load  # noqa: E402
from musiclens.core.interpret.auralise import auralise_filter  # noqa: E402
from musiclens.core.interpret.cam import grad_cam  # noqa: E402
from musiclens.core.interpret.dream import dream  # noqa: E402
from musiclens.core.models import registry  # noqa: E402
from musiclens.core.tagging import audio_to_patches  # noqa: E402

AURALISE_LAYER = "front end / timbral 7x38 / conv"
LATE_LAYER = "mid end / conv 3"
CAM_LAYER = "mid end / conv 1"
TARGET = "techno"


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def ms(s: float) -> str:
    return f"{1000 * s:8.1f} ms"


def run(m, y30: np.ndarray, patch: np.ndarray, repeat: int, dream_steps: int) -> dict:
    fe = m.front_end
    res = {}
    yt = torch.from_numpy(patch)[None]

    def forward():
        with torch.no_grad():
            return m.net(fe(yt))

    forward()  # warm-up (allocations, lazy imports)
    t_fwd, _ = best_of(forward, repeat)
    auralise_filter(m, patch, layer=AURALISE_LAYER, filter=1)
    t_aur, _ = best_of(lambda: auralise_filter(m, patch, layer=AURALISE_LAYER, filter=1), repeat)
    print(
        f"  auralise one filter, 3 s patch   {ms(t_aur)}   forward pass {ms(t_fwd)}   "
        f"x{t_aur / t_fwd:5.2f} baseline   target <= 50 ms: {'met' if t_aur <= 0.05 else 'MISSED'}"
    )
    res["auralise_ms"], res["forward_ms"] = 1000 * t_aur, 1000 * t_fwd
    t_full, _ = best_of(lambda: auralise_filter(m, patch, layer=AURALISE_LAYER, filter=1, stop_early=False), repeat)
    print(
        f"    same with the whole forward pass {ms(t_full)}   x{t_full / t_fwd:5.2f} baseline (before the early stop)"
    )
    t_late, _ = best_of(lambda: auralise_filter(m, patch, layer=LATE_LAYER, filter=1), repeat)
    print(f"    a late layer ({LATE_LAYER})  {ms(t_late)}   x{t_late / t_fwd:5.2f} baseline")
    res |= {"auralise_full_ms": 1000 * t_full, "auralise_late_ms": 1000 * t_late}

    patches = audio_to_patches(m, y30)
    n = patches.shape[0]

    def fwd_all():
        with torch.no_grad():
            return m.net(patches)

    fwd_all()
    t_fwd_all, _ = best_of(fwd_all, repeat)
    grad_cam(m, patches[:1], layer=CAM_LAYER, target=TARGET)
    t_cam_b, _ = best_of(lambda: grad_cam(m, patches, layer=CAM_LAYER, target=TARGET), repeat)
    t_cam_l, _ = best_of(
        lambda: [grad_cam(m, patches[i : i + 1], layer=CAM_LAYER, target=TARGET) for i in range(n)], repeat
    )
    print(
        f"  Grad-CAM 30 s ({n} patches), batch {ms(t_cam_b)} = {ms(t_cam_b / n)}/patch   "
        f"forward {ms(t_fwd_all)}   x{t_cam_b / t_fwd_all:5.2f} baseline"
    )
    print(
        f"  Grad-CAM 30 s, patch by patch     {ms(t_cam_l)} = {ms(t_cam_l / n)}/patch   "
        f"x{t_cam_l / t_fwd_all:5.2f} baseline"
    )
    res |= {
        "cam_batch_ms": 1000 * t_cam_b,
        "cam_loop_ms": 1000 * t_cam_l,
        "patches": n,
        "forward_30s_ms": 1000 * t_fwd_all,
    }

    x = fe(yt)

    def one_grad():
        xi = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(m.net(xi)[0, m.labels.index(TARGET)], xi)
        return g

    one_grad()
    t_grad, _ = best_of(one_grad, repeat)
    # time between consecutive reports = one update + the next objective and gradient; the
    # final report (with the Griffin-Lim resynthesis) is not counted but timed on its own
    times, t_last = [], None
    for step in dream(m, patch, target=TARGET, minus="others", steps=dream_steps, lr=0.5):
        now = time.perf_counter()
        if step.done:
            break
        if t_last is not None:
            times.append(now - t_last)
        t_last = now
    t0 = time.perf_counter()
    for _ in dream(m, patch, target=TARGET, minus="others", steps=0):
        pass
    t_audio = time.perf_counter() - t0
    it_s = 1.0 / np.median(times)
    print(
        f"  dream, 3 s patch                  {it_s:6.1f} it/s ({ms(1 / it_s)}/it)   "
        f"one gradient {ms(t_grad)}   x{(1 / it_s) / t_grad:5.2f} baseline   "
        f"(+ final resynthesis {ms(t_audio)})"
    )
    res |= {"dream_it_s": it_s, "gradient_ms": 1000 * t_grad, "dream_audio_ms": 1000 * t_audio}
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dream-steps", type=int, default=15)
    args = ap.parse_args()
    m = registry.load("MTT_musicnn")
    fe = m.front_end
    y30, _ = load(REPO / "resources" / "demo" / "demo.ogg", sr=fe.sample_rate, duration=30.0)
    n3 = (m.patch_frames - 1) * fe.hop + 1  # one patch: 187 frames, 2.97 s
    patch = np.ascontiguousarray(y30[fe.sample_rate * 10 : fe.sample_rate * 10 + n3])
    default = torch.get_num_threads()
    print(f"MusiCNN ({m.name}), demo.ogg, torch {torch.__version__}, best of {args.repeat}")
    out = {}
    for threads in (1, default):
        torch.set_num_threads(threads)
        print(f"threads = {threads}{' (default)' if threads == default else ''}")
        out[threads] = run(m, y30, patch, args.repeat, args.dream_steps)
    if default != 1:
        a, b = out[1], out[default]
        print(
            f"speed-up {default} threads vs 1: auralise x{a['auralise_ms'] / b['auralise_ms']:.2f}, "
            f"Grad-CAM x{a['cam_batch_ms'] / b['cam_batch_ms']:.2f}, dream x{b['dream_it_s'] / a['dream_it_s']:.2f}"
        )


if __name__ == "__main__":
    main()
