"""Benchmark: Integrated Gradients over a 30 s clip on MusiCNN, old code against Captum, in one run.

    .venv/bin/python tests/benchmarks/bench_ig.py [--steps 32] [--patches 10] [--repeat 1]

The clip is resources/demo/demo.ogg (30 s) cut into MusiCNN patches (3 s, 187 frames), as
the window attributes a file; IG runs patch by patch from silence, ``--steps`` Gauss–Legendre
points (the same for every variant), for one tag on MSD_musicnn. Variants:

* ``old``: the hand-written IG MusicLens used before Captum (kept here only as the baseline:
  16 points per forward pass, gradients summed in float64);
* ``captum default``: ``IntegratedGradients.attribute`` without ``internal_batch_size``
  (all the points of a patch in one forward pass);
* ``captum batch K``: with ``internal_batch_size=K``;
* ``table, Captum``: ``methods.get("integrated-gradients")`` with the split path off (Captum
  with :data:`musiclens.core.interpret.captum_methods.IG_BATCH`), as before issue 20;
* ``table, split``: the same call as the window makes it now: the front once per patch, the
  tail per point (:mod:`musiclens.core.interpret.integrated_gradients_split`). Its maps differ
  from the float32 Captum ones by the rounding-decided ties of the Captum path (see
  ``tests/test_ig_split.py``), about 1e-5 to 1e-4 of the map's largest value.

Each is timed at 2 threads and at 1 (``torch.set_num_threads``), best of ``--repeat`` rounds
(each round runs every variant once, so that a change of the machine's load hits all alike);
"x old" is the time over the old code's time at the same thread count. The maps are checked
to agree (max |difference| / max |old|).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from musiclens.core.audio import load  # noqa: E402
from musiclens.core.interpret import integrated_gradients_split as split  # noqa: E402
from musiclens.core.interpret import methods, saliency  # noqa: E402
from musiclens.core.interpret._common import class_scores, eval_mode, target_weights  # noqa: E402
from musiclens.core.interpret.captum_methods import IG_BATCH  # noqa: E402
from musiclens.core.models import registry  # noqa: E402
from musiclens.core.resources import demo_recording  # noqa: E402
from musiclens.core.tagging import audio_to_patches  # noqa: E402

TARGET = "rock"


def old_ig(m, x: torch.Tensor, x0: torch.Tensor, target: str, steps: int, batch_size: int = 16) -> torch.Tensor:
    """The algorithm of musiclens/core/interpret/paths.py before Captum: Gauss–Legendre,
    ``batch_size`` points per pass, float64 sum. x, x0: (1, C, F, T)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas, weights = (nodes + 1) / 2, weights / 2
    w = target_weights(m, target, 1)
    diff = (x - x0)[0]
    acc = torch.zeros(diff.shape, dtype=torch.float64)
    with eval_mode(m.net):
        for s in range(0, steps, batch_size):
            a = torch.as_tensor(alphas[s : s + batch_size], dtype=x.dtype)
            points = (x0[0] + a.view(-1, 1, 1, 1) * diff).requires_grad_(True)
            with torch.enable_grad():
                score = class_scores(m, m.net(points), w.expand(len(a), -1)).sum()
                (g,) = torch.autograd.grad(score, points)
            ww = torch.as_tensor(weights[s : s + batch_size], dtype=torch.float64)
            acc += (ww.view(-1, 1, 1, 1) * g.double()).sum(0)
    return (acc * diff.double()).float()[None]


def captum_ig(m, x: torch.Tensor, x0: torch.Tensor, target: str, steps: int, batch: int | None) -> torch.Tensor:
    from captum.attr import IntegratedGradients

    w = target_weights(m, target, 1)

    def f(points: torch.Tensor) -> torch.Tensor:
        return class_scores(m, m.net(points), w.expand(len(points), -1))

    with eval_mode(m.net):
        return IntegratedGradients(f).attribute(x, baselines=x0, n_steps=steps, internal_batch_size=batch).detach()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--patches", type=int, default=10, help="patches of the clip (10 = the whole 30 s)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--batches", default="8,16,32", help="internal_batch_size values for Captum")
    args = ap.parse_args()

    m = registry.load("MSD_musicnn", device="cpu")
    y, _ = load(demo_recording(), sr=m.sample_rate)
    patches = audio_to_patches(m, y)[: args.patches]
    n = patches.shape[0]
    steps = args.steps
    x0s = [saliency.baseline_tensor(m, patches[i : i + 1], "silence") for i in range(n)]
    ig = methods.get("integrated-gradients")

    def captum_table(x: torch.Tensor) -> torch.Tensor:
        with split.enabled(False):
            return ig(m, x, target=TARGET, steps=steps)

    variants: list[tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = [
        ("old (hand-written, 16/pass)", lambda x, x0: old_ig(m, x, x0, TARGET, steps)),
        (f"captum default ({steps}/pass)", lambda x, x0: captum_ig(m, x, x0, TARGET, steps, None)),
    ]
    for b in (int(v) for v in args.batches.split(",") if v.strip()):
        variants.append((f"captum batch {b}", lambda x, x0, b=b: captum_ig(m, x, x0, TARGET, steps, b)))
    variants.append((f"table, Captum (batch {IG_BATCH})", lambda x, x0: captum_table(x)))
    variants.append(("table, split (default)", lambda x, x0: ig(m, x, target=TARGET, steps=steps)))

    print(
        f"IG over {n} patches ({n * m.patch_seconds:.0f} s) of demo.ogg, MSD_musicnn, {steps} steps, target {TARGET!r}"
    )
    print(f"{'variant':32s} {'threads':>7s} {'total s':>9s} {'s/patch':>9s} {'x old':>7s} {'max diff':>9s}")
    for threads in (2, 1):
        torch.set_num_threads(threads)
        for _name, fn in variants:
            fn(patches[:1], x0s[0])  # warm-up
        best = dict.fromkeys(range(len(variants)), float("inf"))
        maps: dict[int, list[torch.Tensor]] = {}
        for _ in range(args.repeat):  # rounds: every variant once per round, so load changes hit all alike
            for k, (_name, fn) in enumerate(variants):
                t = time.perf_counter()
                maps[k] = [fn(patches[i : i + 1], x0s[i]) for i in range(n)]
                best[k] = min(best[k], time.perf_counter() - t)
        for k, (name, _fn) in enumerate(variants):
            diff = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(maps[k], maps[0], strict=True))
            t = best[k]
            print(f"{name:32s} {threads:7d} {t:9.2f} {t / n:9.3f} {t / best[0]:7.2f} {diff:9.1e}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
