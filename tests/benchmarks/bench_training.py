"""Benchmark: vanilla-cnn training throughput with and without the feature cache, in one run.

    .venv/bin/python tests/benchmarks/bench_training.py [DATA_DIR] [--epochs N] [--threads T]

* **with the cache**: the front-end output of every file is computed once (cold cache:
  decode + front end + write), then read back memory-mapped (warm cache); training batches
  are slices of those arrays.
* **without**: the audio is decoded once and kept in memory, and the front end runs on every
  batch of every epoch (``prepare(..., mode="audio")``), as a run without a cache must.

Both runs use the same split, seed and model, see exactly the same input values, and train
for ``--epochs`` epochs, ``--repeat`` times alternately (the best run of each counts: the
machine is shared). Prints the preparation times, patches per second of training (the
mean over epochs, counting only the batches), the ratio cached / uncached (> 1: the cache is
faster) and the largest difference between the two inputs. Without DATA_DIR it uses the
GTZAN excerpts in ../shared/data, or a synthetic folder when that is absent. The cache goes
to a temporary folder (never the user's).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from musiclens.core.device import resolve_device  # noqa: E402
from musiclens.core.models import study  # noqa: E402
from musiclens.core.training import data, events  # noqa: E402
from musiclens.core.training import loop as train  # noqa: E402
from synthetic_data import synthetic  # noqa: E402


def run_training(ds, split, prepared, epochs: int, seed: int) -> tuple[float, float]:
    torch.manual_seed(seed)
    m = study.create("vanilla-cnn", ds.labels)
    ev = events.run(
        train.train(
            m, prepared, train.TrainConfig(epochs=epochs, batch_size=32, seed=seed, patience=None, device="auto")
        )
    )
    pps = [h["patches_per_second"] for h in ev.history]
    return float(np.mean(pps)), float(sum(h["seconds"] for h in ev.history))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs per mode; the best counts")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import librosa  # noqa: F401  (its import would otherwise be timed as part of the cold cache)

    with tempfile.TemporaryDirectory() as tmp:
        default = REPO.parent / "shared/data/audio/gtzan-excerpts-zenny126"
        root = Path(args.data) if args.data else default if default.is_dir() else synthetic(Path(tmp) / "syn")
        ds = data.scan_folder(root)
        split = data.split_by_track(ds, seed=args.seed)
        m = study.create("vanilla-cnn", ds.labels)
        fe, p = m.front_end, m.patch_frames

        cache = data.FeatureCache(Path(tmp) / "cache")
        t = time.perf_counter()
        data.prepare_all(ds, split, fe, p, cache=cache)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        cached = data.prepare_all(ds, split, fe, p, cache=data.FeatureCache(Path(tmp) / "cache"))
        warm = time.perf_counter() - t
        t = time.perf_counter()
        audio = data.prepare_all(ds, split, fe, p, mode="audio")
        decode = time.perf_counter() - t

        idx = np.arange(len(cached.sets["train"]))
        diff = float((cached.sets["train"].inputs(idx) - audio.sets["train"].inputs(idx)).abs().max())
        runs: dict[str, list[tuple[float, float]]] = {"cache": [], "audio": []}
        for _ in range(args.repeat):  # alternate, so load from other processes hits both alike
            runs["cache"].append(run_training(ds, split, cached, args.epochs, args.seed))
            runs["audio"].append(run_training(ds, split, audio, args.epochs, args.seed))
        pps_cache, s_cache = max(runs["cache"])
        pps_audio, s_audio = max(runs["audio"])
        # the front end alone, over one epoch's training patches
        t = time.perf_counter()
        for i in range(0, len(idx), 32):
            audio.sets["train"].inputs(idx[i : i + 32])
        fe_epoch = time.perf_counter() - t

    n = len(cached.sets["train"])
    print(
        f"data: {root} ({len(ds.tracks)} tracks; {n} training patches of {p} frames), "
        f"{args.epochs} epochs, {args.threads} thread(s), device {resolve_device('auto')}"
    )
    print(f"prepare: cold cache {cold:.2f} s, warm cache {warm:.2f} s, audio only (no cache) {decode:.2f} s")
    print(f"training with the feature cache:    {pps_cache:8.1f} patches/s ({s_cache:.2f} s)")
    print(f"training without (front end/batch): {pps_audio:8.1f} patches/s ({s_audio:.2f} s)")
    print(
        f"ratio cached / uncached: {pps_cache / pps_audio:.2f}x (best of {args.repeat} alternating runs); "
        f"front end alone {fe_epoch:.2f} s per epoch; largest input difference {diff:.2e} dB"
    )


if __name__ == "__main__":
    main()
