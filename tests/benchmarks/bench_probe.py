"""Benchmark + real-data comparison: MusiCNN probes vs. the from-scratch vanilla-cnn.

    nice .venv/bin/python tests/benchmarks/bench_probe.py [DATA_DIR] [--seeds 0,1,2,3,4]
        [--bases MSD_musicnn,MTT_musicnn] [--features tags,pooled,penultimate] [--heads linear]
        [--epochs 30] [--patience 5] [--threads 1] [--json OUT.json]

For every seed: one by-track split (80/10/10, stratified, ``split_by_track(seed)``), then on
that same split

* every probe (base × features × head): frozen features (read from the cache after the
  first computation), L2 chosen by track-grouped CV on the training tracks, head fitted
  (:func:`musiclens.core.training.probe.train_probe`, seed = the split seed);
* vanilla-cnn from scratch on its own log-mel front end (front-end features cached too),
  Adam, ``--epochs`` epochs with early stopping on validation (``--patience``), best
  validation weights;

and the *test track accuracy* (patch probabilities averaged per track, argmax) and patch
accuracy of each. Prints a table with mean ± std over the seeds (population std) and the
per-seed values.

Timing (the same data, features computed once and cached): the probe's training time is
the head's (CV + fit, warm cache); the one-off cold computation of the MusiCNN features is
reported separately; the vanilla-cnn's is its training loop (warm front-end cache).
The ratio is vanilla-cnn time / probe time. Without DATA_DIR it uses the GTZAN excerpts in
../shared/data (a synthetic folder when absent). The caches go to a temporary folder.

Measured (GTZAN excerpts, 50 tracks / 10 genres, splits 30/10/10 tracks, seeds 0–9 run as
``--seeds 0,1,2,3,4`` and ``--seeds 5,6,7,8,9``, 1 thread, shared 2-core machine), test
track accuracy mean ± std over the 10 seeds (chance 0.10):

===================================  ==============  ==============
model                                track accuracy  patch accuracy
===================================  ==============  ==============
probe MSD_musicnn pooled, linear     0.79 ± 0.09     0.75 ± 0.08
probe MSD_musicnn penultimate        0.77 ± 0.08     0.73 ± 0.07
probe MSD_musicnn tags               0.76 ± 0.07     0.71 ± 0.06
probe MTT_musicnn penultimate        0.67 ± 0.11     0.63 ± 0.09
probe MTT_musicnn pooled             0.66 ± 0.09     0.60 ± 0.08
probe MTT_musicnn tags               0.65 ± 0.10     0.57 ± 0.09
vanilla-cnn from scratch             0.49 ± 0.10     0.46 ± 0.09
===================================  ==============  ==============

Paired per split: MSD pooled − vanilla-cnn +0.30 ± 0.09 (better on 10/10 splits); MSD
pooled − MSD penultimate +0.02 ± 0.10 (4 better, 3 equal, 3 worse): the representations
of one base are within noise of each other, the base matters more (MSD − MTT +0.11 ± 0.10).
Time (seeds 0–4, quiet machine): head CV + fit 1.3–2.4 s vs. vanilla-cnn 22 s (9–17×);
the one-off cold MusiCNN features of all 50 tracks take 21–23 s per base.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from musiclens.core.models import study  # noqa: E402
from musiclens.core.training import data, events, probe  # noqa: E402
from musiclens.core.training import loop as train  # noqa: E402
from synthetic_data import synthetic  # noqa: E402


def ms(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--bases", default="MSD_musicnn,MTT_musicnn")
    ap.add_argument("--features", default="tags,pooled,penultimate")
    ap.add_argument("--heads", default="linear")
    ap.add_argument("--epochs", type=int, default=30, help="vanilla-cnn: maximum epochs")
    ap.add_argument("--patience", type=int, default=5, help="vanilla-cnn: early-stopping patience")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-scratch", action="store_true", help="skip the vanilla-cnn runs")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    configs = [
        (b, f, h) for b in args.bases.split(",") for f in args.features.split(",") for h in args.heads.split(",")
    ]
    import librosa  # noqa: F401  (keep its import out of the timings)

    results: dict[str, dict[str, list[float]]] = {}
    times: dict[str, list[float]] = {}
    cold: dict[str, float] = {}
    chosen: dict[str, list[float]] = {}

    def add(name: str, metrics: dict, seconds: float) -> None:
        r = results.setdefault(name, {"track": [], "patch": []})
        r["track"].append(metrics["track_accuracy"])
        r["patch"].append(metrics["accuracy"])
        times.setdefault(name, []).append(seconds)

    with tempfile.TemporaryDirectory() as tmp:
        default = REPO.parent / "shared/data/audio/gtzan-excerpts-zenny126"
        if args.data:
            root = Path(args.data)
        else:
            root = default if default.is_dir() else synthetic(Path(tmp) / "syn", sr=16000, seconds=10.0)
        ds = data.scan_folder(root)
        cache = data.FeatureCache(Path(tmp) / "cache")
        for seed in seeds:
            split = data.split_by_track(ds, seed=seed)
            print(f"seed {seed}: tracks {split.counts()}", flush=True)
            prepared_probe = None
            for base, feats, head in configs:
                name = f"probe {base} {feats} {head}"
                m = study.create("musicnn-probe", ds.labels, base=base, features=feats, head=head)
                if prepared_probe is None:
                    prepared_probe = data.prepare_all(ds, split, m.front_end, m.patch_frames, cache=cache)
                key = f"{base}"
                if key not in cold:  # the one-off computation of this base's features (all tracks)
                    t = time.perf_counter()
                    for s in data.SPLITS:
                        probe.representations(m, prepared_probe.sets[s], cache=cache)
                    cold[key] = time.perf_counter() - t
                t = time.perf_counter()
                done = events.run(probe.train_probe(m, prepared_probe, train.TrainConfig(seed=seed), cache=cache))
                seconds = time.perf_counter() - t
                test = train.metrics_from(done.predictions["test"], prepared_probe.sets["test"], ds.labels)
                add(name, test, seconds)
                chosen.setdefault(name, []).append(m.provenance["probe"]["l2"])
                print(
                    f"  {name}: test tracks {test['track_accuracy']:.2f}, patches {test['accuracy']:.3f}, "
                    f"l2 {m.provenance['probe']['l2']:g}, {seconds:.2f} s",
                    flush=True,
                )
            if args.no_scratch:
                continue
            torch.manual_seed(seed)
            m = study.create("vanilla-cnn", ds.labels)
            prepared = data.prepare_all(ds, split, m.front_end, m.patch_frames, cache=cache)
            t = time.perf_counter()
            ev = events.run(
                train.train(
                    m,
                    prepared,
                    train.TrainConfig(
                        epochs=args.epochs, patience=args.patience, seed=seed, batch_size=32, device="cpu"
                    ),
                )
            )
            seconds = time.perf_counter() - t
            test = train.evaluate(m, prepared.sets["test"])
            add("vanilla-cnn (scratch)", test, seconds)
            print(
                f"  vanilla-cnn: test tracks {test['track_accuracy']:.2f}, patches {test['accuracy']:.3f}, "
                f"{len(ev.history)} epochs (best {ev.best_epoch}), {seconds:.1f} s",
                flush=True,
            )

    n_test = split.counts()["test"]
    print(
        f"\ndata: {root} ({len(ds.tracks)} tracks, {len(ds.labels)} classes, {n_test} test tracks per split), "
        f"seeds {seeds}, {args.threads} thread(s)"
    )
    print(f"{'model':42s} {'test track acc':>16s} {'test patch acc':>16s} {'train time s':>14s}  per-seed track acc")
    for name, r in results.items():
        print(
            f"{name:42s} {ms(r['track']):>16s} {ms(r['patch']):>16s} {np.mean(times[name]):14.2f}  "
            + " ".join(f"{v:.2f}" for v in r["track"])
        )
    for base, s in cold.items():
        print(f"one-off MusiCNN features ({base}, all {len(ds.tracks)} tracks, cold cache): {s:.1f} s")
    scratch = times.get("vanilla-cnn (scratch)")
    if scratch:
        for name in results:
            if name.startswith("probe"):
                print(f"time ratio vanilla-cnn / {name}: {np.mean(scratch) / np.mean(times[name]):.0f}x")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "data": str(root),
                    "seeds": seeds,
                    "results": results,
                    "seconds": times,
                    "cold_feature_seconds": cold,
                    "l2": chosen,
                },
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
