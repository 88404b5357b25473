"""Benchmark: the MIDI LSTM on real jazz vs dance MIDI (the seed study's task), held-out accuracy.

    .venv/bin/python tests/benchmarks/bench_midi_jazz_dance.py [ROOT] [--keep-drums] [--folds K]
        [--epochs E] [--hidden H] [--layers L] [--threads T]

ROOT defaults to ``../shared/data/midi/di01096-genre-midi`` (jazz 60, dance 60 files; not
part of the project, never committed). Pieces are cut to their first 100 notes (the study's
setting; all of these files are longer). It reports

* the project's standard split (by file, per label, seeded 80/10/10): test accuracy;
* ``--folds K`` (default 5) seeded, stratified K-fold cross-validation by file, so every
  file is held out once: mean accuracy over all held-out files (the 12-file test split
  alone is too small to say much).

The weights are not saved.
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

from musiclens.core.models.midi_lstm import NoteFeatureSpec  # noqa: E402
from musiclens.core.training.midi import MidiDataset, load_folder, train_midi_lstm  # noqa: E402


def jazz_dance_folder(root: Path) -> Path:
    """A temporary folder with only the jazz and dance sub-folders (symlinks)."""
    tmp = Path(tempfile.mkdtemp(prefix="jazz_dance_"))
    for label in ("dance", "jazz"):
        (tmp / label).symlink_to(root / label, target_is_directory=True)
    return tmp


def train_eval(data: MidiDataset, args) -> tuple[float, dict]:
    *_, last = train_midi_lstm(
        data, hidden=args.hidden, layers=args.layers, epochs=args.epochs, lr=args.lr, seed=args.seed
    )
    m = last.model.provenance["metrics"]
    return m["test_accuracy"], m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "root", nargs="?", type=Path, default=REPO.parent / "shared" / "data" / "midi" / "di01096-genre-midi"
    )
    ap.add_argument("--keep-drums", action="store_true")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--hidden", type=int, default=168)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not (args.root / "jazz").is_dir():
        print(f"no jazz/dance MIDI at {args.root}", file=sys.stderr)
        return 2
    spec = NoteFeatureSpec(n_notes=100, short="drop", drop_drums=not args.keep_drums)
    t0 = time.time()
    data = None
    for p in load_folder(jazz_dance_folder(args.root), spec, seed=args.seed):
        data = p.data or data
    print(
        f"read {sum(len(y) for y in data.y.values())} pieces in {time.time() - t0:.1f} s "
        f"(drums {'kept' if args.keep_drums else 'dropped'}); {data.summary()}"
    )
    acc, m = train_eval(data, args)
    print(
        f"standard split: test accuracy {acc:.3f} on {sum(m['counts']['test'].values())} files "
        f"(val {m['val_accuracy']:.3f}); confusion {m['test_confusion']} (rows true {data.labels})"
    )
    if args.folds > 1:
        x = np.concatenate([data.x[s] for s in ("train", "val", "test")])
        mk = np.concatenate([data.mask[s] for s in ("train", "val", "test")])
        y = np.concatenate([data.y[s] for s in ("train", "val", "test")])
        rng = np.random.default_rng(args.seed)
        fold = np.empty(len(y), dtype=int)
        for label in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == label))
            fold[idx] = np.arange(len(idx)) % args.folds
        correct = 0
        for k in range(args.folds):
            test = fold == k
            val = fold == (k + 1) % args.folds
            train = ~(test | val)
            sub = MidiDataset(
                data.labels,
                spec,
                {"train": x[train], "val": x[val], "test": x[test]},
                {"train": mk[train], "val": mk[val], "test": mk[test]},
                {"train": y[train], "val": y[val], "test": y[test]},
                {"train": [], "val": [], "test": []},
            )
            acc_k, _ = train_eval(sub, args)
            correct += round(acc_k * test.sum())
            print(f"  fold {k + 1}/{args.folds}: held-out accuracy {acc_k:.3f} ({test.sum()} files)", flush=True)
        print(
            f"{args.folds}-fold cross-validation: held-out accuracy {correct / len(y):.3f} "
            f"({correct}/{len(y)} files), {time.time() - t0:.0f} s in all"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
