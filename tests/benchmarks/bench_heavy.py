"""Benchmark of the heavy analyses (issue 20), one run, each figure against a baseline.

    .venv/bin/python tests/benchmarks/bench_heavy.py [--only similarity] [--old-classes 1]

* similarity: ``similarity FOLDER --pairs within-class`` over the shared GTZAN excerpts
  (../shared/data/audio/gtzan-excerpts-zenny126: 10 classes x 5 files, 100 pairs) on
  MSD_musicnn with the default metrics and the CKA permutation baselines, at 2 threads:
  wall time and peak memory (each variant in its own child process, peak RSS from
  ``getrusage``). Baseline: the engine as it was before (``git show BASE:...similarity.py``,
  10 sampled permutations) on ``--old-classes`` classes only (it needs minutes per class);
  the figure is its time per pair, extrapolated to 100 pairs, beside the new engine's whole run.
* dream: iterations per second of a dream on a 3 s MSD_musicnn patch (a sine sweep, 20
  steps, default options) at ``--threads``, the network as it was (``git show HEAD:`` of
  core/models/musicnn.py, same weights) against the current one, and the current forward pass.
* taggram: ``tag_file`` of a 30 s clip (GTZAN rock.00000 from ../shared/data, else 30 s of
  noise) on MTT_musicnn, old network against current, largest taggram difference; the
  TensorFlow side venv is gone, so the original's time is the one recorded in issue 20
  (original / ours = 0.78 with the old network) scaled to this run.
* logmel: our log-mel of 30 s at 22.05 kHz against librosa's (same values), one thread.
* ig: Integrated Gradients over resources/demo/demo.ogg (30 s, ``--seconds`` to shorten) on
  MSD_musicnn as the window runs it (``attribution_over_file``, the table's quick options:
  24 Gauss–Legendre points): before = Captum over the whole network at every point
  (``integrated_gradients_split.enabled(False)``), after = the split path, interleaved; the
  largest completeness error of each, their largest difference and the load average.
* sanity: ``musiclens sanity demo.ogg --method grad,ig`` as the CLI runs it
  (``sanity.sanity_check``, 16 IG points, the whole 30 s as one input): before = HEAD's
  sanity module with Captum's paths on ``--sanity-before-layers`` layers (default 2; it needs
  minutes per layer; its time per step extrapolated to all layers, labelled so), after = the
  current one on the same layers and on ``--sanity-layers`` layers (default all, as the CLI),
  the largest difference of the similarity figures and the progress lines' time estimates.
Run with ``--threads 1``; each figure is the best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "audio" / "gtzan-excerpts-zenny126"
BASE = "b3ac0d5"  # the last commit with the sampled-permutation engine


def _child_similarity(variant: str, classes: int, threads: int) -> dict:
    """Runs in a child: one variant over the first ``classes`` classes -> figures."""
    import resource
    import types

    import numpy as np
    import torch

    sys.path.insert(0, str(REPO))
    torch.set_num_threads(threads)
    from musiclens.core.analyses.similarity import read_features
    from musiclens.core.interpret import similarity as sim
    from musiclens.core.models import registry

    engine = sim
    kwargs: dict = {}
    if variant == "old":
        src = subprocess.run(
            ["git", "show", f"{BASE}:musiclens/core/interpret/similarity.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        engine = types.ModuleType("old_similarity")
        sys.modules["old_similarity"] = engine  # dataclasses look their module up
        exec(compile(src, "old_similarity.py", "exec"), engine.__dict__)
        kwargs = {"n_permutations": 10}
    m = registry.load("MSD_musicnn")
    folders = sorted(p for p in DATA.iterdir() if p.is_dir())[:classes]
    files = [f for d in folders for f in sorted(d.glob("*.wav"))]
    labels = [f.parent.name for f in files]
    t0 = time.perf_counter()
    xs = [read_features(m, f) for f in files]
    t_read = time.perf_counter() - t0
    pairs = [p for ps in sim.class_pairs(labels).values() for p in ps]
    t0 = time.perf_counter()
    curve = engine.pairwise_similarity(m, xs, pairs, **kwargs)
    t_cmp = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mean = {k: np.nanmean(v, 0).tolist() for k, v in curve.values.items()}
    return {
        "variant": variant,
        "files": len(files),
        "pairs": len(pairs),
        "read_s": t_read,
        "compare_s": t_cmp,
        "peak_mb": peak_mb,
        "mean": mean,
        "layers": curve.layers,
    }


def similarity(args: argparse.Namespace) -> None:
    if not DATA.is_dir():
        print(f"similarity: skipped, {DATA} is absent")
        return
    runs = {}
    for variant, classes in (("new", 10), ("old", args.old_classes)):
        out = subprocess.run(
            [sys.executable, __file__, "--child", f"similarity:{variant}:{classes}:{args.threads}"],
            capture_output=True,
            text=True,
        )
        if out.returncode:
            raise SystemExit(f"similarity {variant} failed:\n{out.stderr}")
        runs[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    new, old = runs["new"], runs["old"]
    per_pair_old = old["compare_s"] / old["pairs"]
    per_pair_new = new["compare_s"] / new["pairs"]
    print(f"\nsimilarity within-class, MSD_musicnn, {args.threads} threads, default metrics + CKA baselines")
    print(
        f"  new engine: {new['files']} files, {new['pairs']} pairs: read {new['read_s']:.1f} s + compare "
        f"{new['compare_s']:.1f} s = {new['read_s'] + new['compare_s']:.1f} s, peak {new['peak_mb']:.0f} MB "
        "(goal <= 60 s, <= 1024 MB)"
    )
    print(
        f"  old engine: {old['files']} files, {old['pairs']} pairs: compare {old['compare_s']:.1f} s "
        f"({per_pair_old:.2f} s/pair -> {100 * per_pair_old:.0f} s for 100 pairs), peak {old['peak_mb']:.0f} MB"
    )
    print(f"  speed-up per pair: {per_pair_old / per_pair_new:.1f}x")
    # the same pairs' values agree (the old baseline was a 10-permutation estimate of the exact one)
    k = old["pairs"]
    for metric in ("pearson", "cosine", "nmse", "cka", "cka_baseline"):
        import numpy as np

        a = np.asarray(old["mean"][metric])
        print(f"  old {metric:13s} mean over its pairs, first layers: {np.round(a[:4], 4)}")
    print(f"  (the new run's values over the same {k} pairs are checked equal in tests/test_interpret_similarity.py)")


def _old_musicnn_net(m):
    """The MusiCNN network as committed at HEAD, with ``m``'s weights, in eval mode."""
    import types

    src = subprocess.run(
        ["git", "show", "HEAD:musiclens/core/models/musicnn.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    src = src.replace(
        "from musiclens.core.models.registry import LayerInfo, register_family",
        "from musiclens.core.models.registry import LayerInfo\nregister_family = lambda name: (lambda f: f)",
    )
    mod = types.ModuleType("old_musicnn")
    sys.modules["old_musicnn"] = mod
    exec(compile(src, "old_musicnn.py", "exec"), mod.__dict__)
    net = mod.Musicnn()
    net.load_state_dict(m.net.state_dict())
    return net.eval()


def _with_net(m, net):
    import copy

    other = copy.copy(m)
    other.net = net
    return other


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def dream(args: argparse.Namespace) -> None:
    import torch

    sys.path.insert(0, str(REPO))
    torch.set_num_threads(args.threads)
    from musiclens.core.interpret.dream import dream as run
    from musiclens.core.interpret.dream import sine_sweep
    from musiclens.core.models import registry

    m = registry.load("MSD_musicnn")
    start = sine_sweep(m.front_end, seconds=3.0)
    x = m.front_end(torch.from_numpy(start)[None])
    steps = 20
    variants = {"before": _with_net(m, _old_musicnn_net(m)), "after": m}

    def per_step(model) -> float:
        """Seconds per update: the time from the first report to the last before the end."""
        stamps = []
        for step in run(model, start, target=0, steps=steps):
            if step.done:
                break
            stamps.append(time.perf_counter())
        return (stamps[-1] - stamps[0]) / (len(stamps) - 1)

    best = {k: float("inf") for k in variants}
    for _ in range(args.repeat):  # interleaved, so both see the same machine load
        for k, model in variants.items():
            best[k] = min(best[k], per_step(model))

    def forward(net) -> None:
        with torch.no_grad():
            net(x)

    forward(m.net)
    fwd = _best(lambda: forward(m.net), 5 * args.repeat)
    fwd_old = _best(lambda: forward(variants["before"].net), 5 * args.repeat)
    print(f"\ndream, MSD_musicnn, 3 s sine sweep, {steps} steps, {args.threads} thread(s), best of {args.repeat}")
    for k in variants:
        print(f"  {k:6s}: {best[k] * 1000:7.1f} ms/step = {1 / best[k]:5.1f} it/s")
    print(
        f"  forward pass (no grad, current): {fwd * 1000:.1f} ms; step / forward: before "
        f"{best['before'] / fwd:.1f}x, after {best['after'] / fwd:.1f}x"
    )
    print(f"  forward pass of the old network: {fwd_old * 1000:.1f} ms (issue 20 measured 27 ms on an idle machine)")
    scale = 0.027 / fwd_old  # this machine's load, judged by the old forward pass
    print(
        f"  speed-up: {best['before'] / best['after']:.2f}x; at the issue's speed (old forward = 27 ms): "
        f"before {1 / (best['before'] * scale):.1f} it/s, after {1 / (best['after'] * scale):.1f} it/s "
        "(goal >= 10 it/s)"
    )


def taggram(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    sys.path.insert(0, str(REPO))
    torch.set_num_threads(args.threads)
    from musiclens.core.models import registry
    from musiclens.core.tagging import tag_file

    clip = REPO.parent / "shared/data/audio/gtzan-full-pecmae/rock/rock.00000.wav"
    tmp = None
    if not clip.exists():
        import tempfile

        import soundfile as sf

        tmp = tempfile.TemporaryDirectory()
        clip = Path(tmp.name) / "noise30s.wav"
        sf.write(clip, 0.1 * np.random.default_rng(0).standard_normal(30 * 16000).astype(np.float32), 16000)
    m = registry.load("MTT_musicnn")
    variants = {"before": _with_net(m, _old_musicnn_net(m)), "after": m}
    out = {k: tag_file(clip, v) for k, v in variants.items()}  # warm-up
    best = {k: float("inf") for k in variants}
    for _ in range(args.repeat):
        for k, v in variants.items():
            best[k] = min(best[k], _best(lambda v=v: tag_file(clip, v), 1))
    diff = np.abs(out["before"].probabilities - out["after"].probabilities).max()
    tf = 0.78 * best["before"]  # issue 20: original / ours(before) = 0.78
    print(f"\ntaggram, MTT_musicnn, {clip.name} ({len(out['after'].probabilities)} patches), {args.threads} thread(s)")
    for k in variants:
        print(f"  {k:6s}: {best[k] * 1000:7.1f} ms")
    print(f"  speed-up {best['before'] / best['after']:.2f}x, max |taggram diff| {diff:.1e}")
    print(
        f"  TensorFlow graph (no side venv here; recorded 0.78x of 'before'): ~{tf * 1000:.0f} ms -> "
        f"original / ours now ~{tf / best['after']:.2f}x (goal >= 1)"
    )
    if tmp:
        tmp.cleanup()


def logmel(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    sys.path.insert(0, str(REPO))
    torch.set_num_threads(args.threads)
    import librosa

    from musiclens.core import features as F

    sr = 22050
    y = (0.1 * np.random.default_rng(0).standard_normal(30 * sr)).astype(np.float32)
    fe = F.logmel_frontend(sample_rate=sr, n_fft=2048, hop=512, n_mels=128)
    x = torch.from_numpy(y)[None]

    def ref() -> np.ndarray:
        return librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=128))

    fe(x), ref()  # warm-up (numba, caches)
    t_ours = t_ref = float("inf")
    for _ in range(args.repeat):
        t_ours = min(t_ours, _best(lambda: fe(x), 1))
        t_ref = min(t_ref, _best(ref, 1))
    diff = np.abs(fe(x)[0, 0].numpy() - ref()).max()
    print(f"\nlog-mel, 30 s at {sr} Hz, n_fft 2048, hop 512, 128 mels, {args.threads} thread(s)")
    print(
        f"  ours {t_ours * 1000:.1f} ms, librosa {t_ref * 1000:.1f} ms: {t_ref / t_ours:.2f}x (goal >= 3x), "
        f"max |diff| {diff:.1e} dB"
    )


DEMO = REPO / "resources" / "demo" / "demo.ogg"


def _demo(m, seconds: float):
    from musiclens.core.audio import load

    y, _ = load(DEMO, sr=m.sample_rate, duration=seconds)
    return y


def _load() -> str:
    import os

    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _old_module(path: str, name: str):
    """``path`` (a module of musiclens) as committed at HEAD, loaded as module ``name``."""
    import types

    src = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType(name)
    sys.modules[name] = mod  # dataclasses look their module up
    exec(compile(src, f"{name}.py", "exec"), mod.__dict__)
    return mod


def ig(args: argparse.Namespace) -> None:
    import contextlib

    import torch

    sys.path.insert(0, str(REPO))
    torch.set_num_threads(args.threads)
    from musiclens.core.analyses import attribution as A
    from musiclens.core.analyses import run
    from musiclens.core.interpret import integrated_gradients_split as split
    from musiclens.core.interpret import methods
    from musiclens.core.models import registry

    m = registry.load("MSD_musicnn")
    y = _demo(m, args.seconds)
    steps = dict(methods.get("integrated-gradients").quick)["steps"]
    # before: Captum over the whole network at every point (the split switched off);
    # after: the split path (the front once per patch, the tail per point)
    variants = {"before": lambda: split.enabled(False), "after": contextlib.nullcontext}
    print(f"\nIntegrated Gradients over {args.seconds:g} s of demo.ogg, MSD_musicnn, {steps} Gauss-Legendre points")
    print(
        f"  per patch, as the window runs it (attribution_over_file), {args.threads} thread(s), best of {args.repeat}"
    )
    print(f"  start: {_load()}")
    out, best = {}, {k: float("inf") for k in variants}
    for _ in range(args.repeat):  # interleaved, so both see the same machine load
        for k, ctx in variants.items():
            t = time.perf_counter()
            with ctx():
                out[k] = run(A.attribution_over_file(m, y, "integrated-gradients", 0))
            best[k] = min(best[k], time.perf_counter() - t)
            print(f"    {k:6s} {time.perf_counter() - t:7.1f} s ({_load()})", flush=True)
    a, b = out["before"].values, out["after"].values
    rel = float(abs(a - b).max() / abs(a).max())
    for k in variants:
        print(f"  {k:6s}: {best[k]:7.1f} s ({out[k].note.strip('; ')})")
    print(f"  speed-up {best['before'] / best['after']:.2f}x; max |diff| / max |map| {rel:.1e} (goal: after <= 5 s)")
    print(f"  end: {_load()}")


def sanity(args: argparse.Namespace) -> None:
    import math

    import torch

    sys.path.insert(0, str(REPO))
    torch.set_num_threads(args.threads)
    from musiclens.core.analyses import run
    from musiclens.core.interpret import integrated_gradients_split as split
    from musiclens.core.interpret.sanity import cascade_layers, sanity_check
    from musiclens.core.models import registry

    old = _old_module("musiclens/core/interpret/sanity.py", "old_sanity")
    m = registry.load("MSD_musicnn")
    x = m.front_end(torch.from_numpy(_demo(m, args.seconds))[None])
    every = cascade_layers(m)
    layers = every[: args.sanity_layers] if args.sanity_layers else every
    fns = {"grad": "gradient", "ig": "integrated-gradients"}
    opts = {"ig": {"steps": 16}}  # the CLI's default
    print(f"\nsanity grad + ig (16 points) on {args.seconds:g} s of demo.ogg, MSD_musicnn, {args.threads} thread(s)")
    print(f"  start: {_load()}")

    def job(k: str, n: int):
        """(seconds, result, progress reports) of one variant on the first n layers."""
        reports: list = []
        t = time.perf_counter()
        if k == "before":  # HEAD's sanity module, Captum's IG and gradient
            with split.enabled(False):
                r = run(old.sanity_check(m, x, fns, target=0, layers=layers[:n], options=opts), reports.append)
        else:
            r = run(sanity_check(m, x, fns, target=0, layers=layers[:n], options=opts), reports.append)
        dt = time.perf_counter() - t
        print(f"    {k:6s} {n:2d} layers {dt:7.1f} s ({_load()})", flush=True)
        return dt, r, reports

    nb = min(args.sanity_before_layers, len(layers))
    best, out, reports = {}, {}, {}
    for _ in range(args.repeat):  # interleaved: before on nb layers, after on nb layers, after on all
        for k, n in (("before", nb), ("after-short", nb), ("after", len(layers))):
            dt, r, rep = job(k.split("-")[0], n)
            if dt < best.get(k, float("inf")):
                best[k], out[k], reports[k] = dt, r, rep
    diff = max(
        abs(getattr(s, f) - getattr(r, f))
        for name in fns
        for s, r in zip(out["before"][name], out["after-short"][name], strict=True)
        for f in ("spearman", "spearman_signed", "ssim")
        if not (math.isnan(getattr(s, f)) or math.isnan(getattr(r, f)))
    )
    per_before = best["before"] / (nb + 1)  # the trained model's maps + nb randomised steps
    print(
        f"  before (HEAD's sanity, Captum): {best['before']:7.1f} s for {nb} layers "
        f"-> ~{per_before * (len(layers) + 1):.0f} s for all {len(layers)} (extrapolated, {per_before:.1f} s per step)"
    )
    print(f"  after, {nb} layers:           {best['after-short']:7.1f} s: {best['before'] / best['after-short']:.1f}x")
    etas = [r.message.rsplit("; ", 1)[-1] for r in reports["after"] if r.payload is not None]
    print(
        f"  after, all {len(layers)} layers:       {best['after']:7.1f} s (goal <= 30 s), "
        f"{len(reports['after'])} progress reports, e.g. {etas[0]!r} ... {etas[-1]!r}"
    )
    print(f"  max |similarity diff| before/after on {nb} layers: {diff:.1e}")
    print(f"  end: {_load()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=("similarity", "dream", "taggram", "logmel", "ig", "sanity"), default=None)
    p.add_argument("--repeat", type=int, default=3, help="dream, taggram, logmel: best of this many runs")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--old-classes", type=int, default=1, help="classes the old similarity engine runs on")
    p.add_argument("--seconds", type=float, default=30.0, help="ig, sanity: seconds of demo.ogg (default 30)")
    p.add_argument("--sanity-layers", type=int, default=0, help="sanity: layers randomised (default 0: all)")
    p.add_argument(
        "--sanity-before-layers", type=int, default=2, help="sanity: layers the old check runs on (minutes per layer)"
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        what, variant, classes, threads = args.child.split(":")
        print(json.dumps(_child_similarity(variant, int(classes), int(threads))))
        return
    if args.only in (None, "similarity"):
        similarity(args)
    sections = (("dream", dream), ("taggram", taggram), ("logmel", logmel), ("ig", ig), ("sanity", sanity))
    for name, section in sections:
        if args.only in (None, name):
            section(args)


if __name__ == "__main__":
    main()
