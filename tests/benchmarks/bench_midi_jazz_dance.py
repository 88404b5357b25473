"""Benchmark: the MIDI LSTM on real jazz vs dance MIDI (the seed study's task), held-out accuracy.

    .venv/bin/python tests/benchmarks/bench_midi_jazz_dance.py [ROOT] [--keep-drums] [--folds K]
        [--epochs E] [--hidden H] [--layers L] [--threads T] [--only lstm,rf,piece] [--piece-params JSON]

ROOT defaults to ``../shared/data/midi/di01096-genre-midi`` (jazz 60, dance 60 files; not
part of the project, never committed). Pieces are cut to their first 100 notes (the study's
setting; all of these files are longer). It reports

* the project's standard split (by file, per label, seeded 80/10/10): test accuracy;
* ``--folds K`` (default 5) seeded, stratified K-fold cross-validation by file, so every
  file is held out once: mean accuracy over all held-out files (the 12-file test split
  alone is too small to say much).

Then, on the same folds (same files held out), it reports file-level 5-fold CV accuracy of

* (b) a random forest (scikit-learn, 500 trees) on whole-piece note statistics of all tracks
  (pitch, log step, log duration, velocity quantiles, drum share, notes per second, chord
  share, instrument-family and pitch-class histograms, position-in-the-beat histogram);
* (c) the default MIDI architecture (``midi-piece``, :mod:`musiclens.core.models.midi_piece`
  with its training defaults): a linear classifier on the whole piece's note statistics
  (``statistics_of``: shares of notes on the beat grid, swung, in 4-note chords or chords
  with sevenths, walking-bass steps, four-on-the-floor kicks, off-beat hats, repeated bars
  and patterns, melodic intervals, velocities, instrument families, the key-free
  pitch-class profile ...), every statistic a differentiable function of each note's
  presence; ``--piece-params '{"votes": true}'`` adds the dilated CNN over every note;

and the deletion test of (c) with the saliency the app shows for it
(``musiclens.core.analyses.midi.saliency_method``: for this model ``note-presence``, the
gradient of the predicted class's logit with respect to each note's presence): on every
held-out piece, delete the 10 % of notes with the largest saliency (the notes that speak
most *for* the class; also the largest magnitude) or as many random notes (3 draws), and
compare the drop of the predicted class's probability (mean over pieces, n = pieces).
The table gives each model's accuracy over all held-out files and its mean ± sd over the
folds. ``--only piece,rf`` skips the LSTM. The weights are not saved.
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
    ap.add_argument("--only", default="lstm,rf,piece", help="which of lstm, rf, piece to run (comma-separated)")
    ap.add_argument("--piece-params", default="{}", help="JSON: train_midi_piece settings beside its defaults")
    ap.add_argument("--delete", type=float, default=0.1, help="share of notes deleted in the deletion test")
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
    only = set(args.only.split(","))
    if "lstm" not in only:
        return whole_piece(data, args, {})
    acc, m = train_eval(data, args)
    print(
        f"standard split: test accuracy {acc:.3f} on {sum(m['counts']['test'].values())} files "
        f"(val {m['val_accuracy']:.3f}); confusion {m['test_confusion']} (rows true {data.labels})"
    )
    only = set(args.only.split(","))
    table: dict[str, list[float]] = {}
    if args.folds > 1 and "lstm" in only:
        x = np.concatenate([data.x[s] for s in ("train", "val", "test")])
        mk = np.concatenate([data.mask[s] for s in ("train", "val", "test")])
        y = np.concatenate([data.y[s] for s in ("train", "val", "test")])
        rng = np.random.default_rng(args.seed)
        fold = np.empty(len(y), dtype=int)
        for label in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == label))
            fold[idx] = np.arange(len(idx)) % args.folds
        correct = 0
        per_fold = []
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
            per_fold.append(acc_k)
            print(f"  fold {k + 1}/{args.folds}: held-out accuracy {acc_k:.3f} ({test.sum()} files)", flush=True)
        print(
            f"{args.folds}-fold cross-validation: held-out accuracy {correct / len(y):.3f} "
            f"({correct}/{len(y)} files), {time.time() - t0:.0f} s in all"
        )
        table["(a) study recipe: 2 x 168 LSTM, first 100 notes"] = [correct / len(y), *per_fold]
    return whole_piece(data, args, table)


def file_folds(data: MidiDataset, args) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """The files in the LSTM's CV order, their labels and the same seeded stratified folds."""
    files = [f for s in ("train", "val", "test") for f in data.files[s]]
    y = np.concatenate([data.y[s] for s in ("train", "val", "test")])
    rng = np.random.default_rng(args.seed)
    fold = np.empty(len(y), dtype=int)
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        fold[idx] = np.arange(len(idx)) % args.folds
    return files, y, fold


def piece_stats(x: np.ndarray) -> np.ndarray:
    """Whole-piece statistics of the (n, 7) PieceSpec features of all tracks (for the forest)."""
    p, s, du, v, pr, dr, bt = x.T
    fam = np.where(dr > 0, 16, pr // 8).astype(int)
    nd = dr == 0

    def q(a):
        return np.percentile(a, [10, 50, 90]) if len(a) else np.zeros(3)

    ls, ld = np.log1p(s / 0.05), np.log1p(du / 0.05)
    pc = np.bincount(p[nd].astype(int) % 12, minlength=12) / max(1, nd.sum())
    return np.concatenate(
        [
            q(p[nd]),
            [p[nd].std() if nd.any() else 0.0],
            q(ls),
            [ls.std()],
            q(ld),
            [ld.std()],
            q(v),
            [v.std()],
            [dr.mean(), len(x) / max(1e-3, s.sum()), (s == 0).mean()],
            np.bincount(fam, minlength=17) / len(x),
            pc,
            np.histogram(bt % 1, bins=12, range=(0, 1))[0] / len(x),
        ]
    )


def delete_notes(x: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """The (n, 7) piece features with the notes at ``drop`` removed (steps recomputed)."""
    start = np.cumsum(x[:, 1].astype(np.float64))
    keep = np.ones(len(x), bool)
    keep[drop] = False
    out = x[keep].copy()
    out[:, 1] = np.diff(start[keep], prepend=start[keep][0]).astype(np.float32)
    return out


def whole_piece(data: MidiDataset, args, table: dict[str, list[float]]) -> int:
    from musiclens.core.analyses.midi import saliency_method
    from musiclens.core.interpret import methods
    from musiclens.core.models.inputs import PieceSpec
    from musiclens.core.training.midi import PieceDataset, predict_pieces, train_midi_piece

    only = set(args.only.split(","))
    files, y, fold = file_folds(data, args)
    spec = PieceSpec()
    t0 = time.time()
    pieces = [spec.window(spec.read(f))[0] for f in files]
    lengths = [len(x) for x in pieces]
    print(
        f"read {len(pieces)} whole pieces (all tracks, drums kept) in {time.time() - t0:.1f} s: "
        f"{min(lengths)}..{max(lengths)} notes, median {int(np.median(lengths))}"
    )
    if "rf" in only:
        try:
            from sklearn.ensemble import RandomForestClassifier
        except ImportError:
            print("scikit-learn is not installed: no random forest")
        else:
            feats = np.stack([piece_stats(x) for x in pieces])
            pred = np.empty(len(y), int)
            for k in range(args.folds):
                tr = fold != k
                rf = RandomForestClassifier(500, random_state=args.seed, n_jobs=args.threads).fit(feats[tr], y[tr])
                pred[~tr] = rf.predict(feats[~tr])
            table["(b) random forest on whole-piece note statistics"] = [float((pred == y).mean())] + [
                float((pred[fold == k] == y[fold == k]).mean()) for k in range(args.folds)
            ]
            print(f"random forest: {args.folds}-fold CV accuracy {(pred == y).mean():.3f}", flush=True)
    if "piece" in only:
        pred = np.empty(len(y), int)
        params = json.loads(args.piece_params)
        drops_top: list[float] = []
        drops_abs: list[float] = []
        drops_rand: list[float] = []
        flips_top = flips_rand = 0
        rng = np.random.default_rng(args.seed)
        for k in range(args.folds):
            t1 = time.time()
            tr = np.flatnonzero(fold != k)
            te = np.flatnonzero(fold == k)
            sub = PieceDataset(
                data.labels,
                spec,
                {"train": [pieces[i] for i in tr], "val": [], "test": []},
                {"train": y[tr], "val": y[:0], "test": y[:0]},
                {"train": [], "val": [], "test": []},
            )
            *_, last = train_midi_piece(sub, seed=args.seed, **params)
            model = last.model
            meth = methods.get(saliency_method(model))  # what the app's piano roll shows
            probs = predict_pieces(model, [pieces[i] for i in te])
            pred[te] = probs.argmax(1)
            for j, i in enumerate(te):  # the deletion test on this held-out piece
                x = pieces[i]
                c = int(pred[i])
                xt, mt = model.tensors(x, np.ones(len(x), bool))
                attr = meth(model, xt, target=c, mask=mt)[0].detach().cpu().numpy()
                n = max(1, int(round(args.delete * len(x))))
                base = probs[j, c]
                p_top = predict_pieces(model, [delete_notes(x, np.argsort(-attr.sum(-1))[:n])])[0]
                drops_top.append(float(base - p_top[c]))
                flips_top += int(p_top.argmax() != c)
                p_abs = predict_pieces(model, [delete_notes(x, np.argsort(-np.abs(attr).sum(-1))[:n])])[0]
                drops_abs.append(float(base - p_abs[c]))
                for _ in range(3):
                    p_r = predict_pieces(model, [delete_notes(x, rng.choice(len(x), n, replace=False))])[0]
                    drops_rand.append(float(base - p_r[c]) / 1.0)
                    flips_rand += int(p_r.argmax() != c)
            acc_k = float((pred[te] == y[te]).mean())
            print(f"  whole-piece fold {k + 1}/{args.folds}: held-out accuracy {acc_k:.3f}, {time.time() - t1:.0f} s")
        name = "note statistics" + (" + CNN votes" if params.get("votes") else "") + f" ({meth.name} saliency)"
        table[f"(c) midi-piece: {name}"] = [float((pred == y).mean())] + [
            float((pred[fold == k] == y[fold == k]).mean()) for k in range(args.folds)
        ]
        n_files = len(y)
        top, rand = np.array(drops_top), np.array(drops_rand).reshape(-1, 3).mean(1)
        print(
            f"deletion test ({args.delete:.0%} of each held-out piece's notes, {meth.name} saliency, n = {n_files} "
            f"pieces): predicted-class probability drop {top.mean():.3f} ± {top.std() / np.sqrt(n_files):.3f} "
            "(mean ± se) "
            f"deleting the most salient notes (class flips {flips_top}/{n_files}) vs {rand.mean():.3f} ± "
            f"{rand.std() / np.sqrt(n_files):.3f} for as many random notes (mean of 3 draws; flips "
            f"{flips_rand / 3:.1f}/{n_files}); salient > random on {np.mean(top > rand):.0%} of pieces; ranked by "
            f"|saliency| instead: drop {np.mean(drops_abs):.3f}. " + ("PASS" if top.mean() > rand.mean() else "FAIL")
        )
    print(f"\nfile-level {args.folds}-fold cross-validated accuracy, jazz vs dance ({len(y)} files; same folds):")
    print(f"  {'model':64s} {'all files':>9s}  {'folds: mean ± sd':>16s}")
    for name, (acc, *folds) in table.items():
        print(f"  {name:64s} {acc:9.3f}  {np.mean(folds):9.3f} ± {np.std(folds):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
