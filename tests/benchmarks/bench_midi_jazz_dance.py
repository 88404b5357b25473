"""Benchmark: jazz vs dance MIDI (the seed study's task), file-level held-out accuracy.

    .venv/bin/python tests/benchmarks/bench_midi_jazz_dance.py [ROOT] [--keep-drums] [--folds K]
        [--epochs E] [--hidden H] [--layers L] [--threads T] [--only lstm,rf,piece] [--piece-params JSON]
        [--seeds 100-109] [--squash C] [--external FOLDER]

ROOT defaults to ``../shared/data/midi/di01096-genre-midi`` (jazz 60, dance 60 files; not
part of the project, never committed). It reports

* (a) the study recipe, the MIDI LSTM on the first 100 notes (drums dropped): the project's
  standard split (by file, per label, seeded 80/10/10) and ``--folds K`` (default 5)
  stratified K-fold cross-validation by file on the folds of ``--seed`` (slow: those folds only);
* (b) a random forest (scikit-learn, 500 trees) on whole-piece note statistics of all tracks
  (pitch, log step, log duration, velocity quantiles, drum share, notes per second, chord
  share, instrument-family and pitch-class histograms, position-in-the-beat histogram);
* (c) the default MIDI architecture (``midi-piece``, :mod:`musiclens.core.models.midi_piece`
  with its training defaults): a linear classifier on the whole piece's note statistics
  (``statistics_of``: shares of notes on the beat grid, swung, in 4-note chords or chords
  with sevenths, walking-bass steps, four-on-the-floor kicks, off-beat hats, repeated bars
  and patterns, melodic intervals, velocities, instrument families, the key-free
  pitch-class profile ...), standardised and squashed (``STAT_SQUASH``; ``--squash 0``: as
  before issue 17), every statistic a differentiable function of each note's presence;
  ``--piece-params '{"votes": true}'`` adds the dilated CNN over every note.

(b) and (c) run on repeated stratified K-fold CV by file, one repeat per seed of ``--seeds``
(e.g. ``100-109``; default ``--seed``): the table gives the accuracy over all files, mean ±
sd over the repeats, and min..max. Issue 17's protocol: seeds 0-4 were the selection folds,
100-109 the fresh folds the chosen configuration was reported on once.

The deletion test of (c) runs on the first seed's folds, with the saliency the app shows for
it (``musiclens.core.analyses.midi.saliency_method``: for this model ``note-presence``, the
gradient of the predicted class's logit with respect to each note's presence): on every
held-out piece, delete the 10 % of notes with the largest saliency (the notes that speak
most *for* the class; also the largest magnitude) or as many random notes (3 draws), and
compare the drop of the predicted class's probability (mean over pieces, n = pieces).
``--external FOLDER`` (e.g. ``../shared/data/midi/cjnolet-genre-midi/jazz``): the share of
those (jazz) files that (c), trained on all the jazz/dance files, reads as jazz. ``--only
piece,rf`` skips the LSTM. The weights are not saved; each piece's note statistics are
computed once for the run (they depend on the notes alone).
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
    ap.add_argument(
        "--seeds",
        default="",
        help="the fold seeds of the forest and midi-piece, e.g. 100-109 (default: --seed; the LSTM always uses --seed)",
    )
    ap.add_argument("--squash", type=float, default=None, help="midi-piece's squash (default: STAT_SQUASH)")
    ap.add_argument("--external", type=Path, default=None, help="a folder of jazz MIDI files for the external check")
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
    table: dict[str, tuple[str, list[float]]] = {}
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
        table["(a) study recipe: 2 x 168 LSTM, first 100 notes"] = (f"seed {args.seed}", [correct / len(y)])
    return whole_piece(data, args, table)


def file_folds(data: MidiDataset, args, seed: int | None = None) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """The files in the LSTM's CV order, their labels and seeded stratified folds (``seed``:
    default ``--seed``, the LSTM's folds)."""
    files = [f for s in ("train", "val", "test") for f in data.files[s]]
    y = np.concatenate([data.y[s] for s in ("train", "val", "test")])
    rng = np.random.default_rng(args.seed if seed is None else seed)
    fold = np.empty(len(y), dtype=int)
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        fold[idx] = np.arange(len(idx)) % args.folds
    return files, y, fold


def parse_seeds(text: str) -> list[int]:
    """``"100-109"`` or ``"0,3,7"`` (or a mix) -> the seeds."""
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.strip().partition("-")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return out


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


def cache_statistics() -> None:
    """Compute each piece's note statistics once for the whole run: :meth:`PieceCNN.statistics`
    (no presence weights) depends on the notes alone, not on the network, so every fold's
    trainer reads the same values; the deletion test (weights, deleted notes) still computes."""
    import hashlib

    from musiclens.core.models.midi_piece import PieceCNN

    orig = PieceCNN.statistics
    cache: dict[str, torch.Tensor] = {}

    def statistics(self, x, mask=None, weight=None):
        if weight is not None or (torch.is_grad_enabled() and x.requires_grad):
            return orig(self, x, mask, weight)
        m = b"" if mask is None else mask.detach().cpu().numpy().tobytes()
        key = hashlib.sha1(x.detach().cpu().numpy().tobytes() + m).hexdigest()
        if key not in cache:
            cache[key] = orig(self, x, mask, weight).detach()
        return cache[key].to(x)

    PieceCNN.statistics = statistics


def with_squash(squash: float | None):
    """Make the trainer build ``midi-piece`` with ``squash`` (``--squash``; 0: the models before
    issue 17); without ``--squash``, :data:`STAT_SQUASH` where the trainer does not give one
    itself. The table names the squash the trained networks had."""
    import functools

    from musiclens.core.models import midi_piece

    orig = midi_piece.build_midi_piece

    @functools.wraps(orig)
    def build(**kw):
        if squash is None:
            kw.setdefault("squash", midi_piece.STAT_SQUASH)
        else:
            kw["squash"] = float(squash)
        return orig(**kw)

    midi_piece.build_midi_piece = build


def whole_piece(data: MidiDataset, args, table: dict[str, tuple[str, list[float]]]) -> int:
    from musiclens.core.analyses.midi import saliency_method
    from musiclens.core.interpret import methods
    from musiclens.core.models.inputs import PieceSpec
    from musiclens.core.training.midi import PieceDataset, predict_pieces, train_midi_piece

    only = set(args.only.split(","))
    seeds = parse_seeds(args.seeds) if args.seeds else [args.seed]
    files, y, _ = file_folds(data, args)
    folds_of = {sd: file_folds(data, args, sd)[2] for sd in seeds}
    where = f"seeds {args.seeds}" if args.seeds else f"seed {args.seed}"
    spec = PieceSpec()
    t0 = time.time()
    pieces = [spec.window(spec.read(f))[0] for f in files]
    lengths = [len(x) for x in pieces]
    print(
        f"read {len(pieces)} whole pieces (all tracks, drums kept) in {time.time() - t0:.1f} s: "
        f"{min(lengths)}..{max(lengths)} notes, median {int(np.median(lengths))}"
    )
    cache_statistics()
    with_squash(args.squash)
    if "rf" in only:
        try:
            from sklearn.ensemble import RandomForestClassifier
        except ImportError:
            print("scikit-learn is not installed: no random forest")
        else:
            feats = np.stack([piece_stats(x) for x in pieces])
            accs = []
            for sd in seeds:
                fold, pred = folds_of[sd], np.empty(len(y), int)
                for k in range(args.folds):
                    tr = fold != k
                    rf = RandomForestClassifier(500, random_state=sd, n_jobs=args.threads).fit(feats[tr], y[tr])
                    pred[~tr] = rf.predict(feats[~tr])
                accs.append(float((pred == y).mean()))
            table["(b) random forest on whole-piece note statistics"] = (where, accs)
            print(f"random forest: {args.folds}-fold CV accuracy {np.mean(accs):.3f} ({where})", flush=True)
    if "piece" in only:
        params = json.loads(args.piece_params)
        drops_top: list[float] = []
        drops_abs: list[float] = []
        drops_rand: list[float] = []
        flips_top = flips_rand = 0
        accs = []
        squash = 0.0
        for r, sd in enumerate(seeds):
            fold, pred = folds_of[sd], np.empty(len(y), int)
            rng = np.random.default_rng(sd)
            t1 = time.time()
            for k in range(args.folds):
                tr = np.flatnonzero(fold != k)
                te = np.flatnonzero(fold == k)
                sub = PieceDataset(
                    data.labels,
                    spec,
                    {"train": [pieces[i] for i in tr], "val": [], "test": []},
                    {"train": y[tr], "val": y[:0], "test": y[:0]},
                    {"train": [], "val": [], "test": []},
                )
                *_, last = train_midi_piece(sub, seed=sd, **params)
                model = last.model
                squash = float(getattr(model.net, "stat_squash", 0.0))
                meth = methods.get(saliency_method(model))  # what the app's piano roll shows
                probs = predict_pieces(model, [pieces[i] for i in te])
                pred[te] = probs.argmax(1)
                if r > 0:  # the deletion test on the first seed's folds (every file held out once)
                    continue
                for j, i in enumerate(te):
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
                        drops_rand.append(float(base - p_r[c]))
                        flips_rand += int(p_r.argmax() != c)
            accs.append(float((pred == y).mean()))
            print(f"  midi-piece, folds of seed {sd}: accuracy {accs[-1]:.3f}, {time.time() - t1:.0f} s", flush=True)
        name = "note statistics" + (" + CNN votes" if params.get("votes") else "")
        name += f", squash {squash:g} ({meth.name} saliency)"
        table[f"(c) midi-piece: {name}"] = (where, accs)
        n_files = len(y)
        top, rand = np.array(drops_top), np.array(drops_rand).reshape(-1, 3).mean(1)
        print(
            f"deletion test (folds of seed {seeds[0]}; {args.delete:.0%} of each held-out piece's notes, "
            f"{meth.name} saliency, n = {n_files} pieces): predicted-class probability drop "
            f"{top.mean():.3f} ± {top.std() / np.sqrt(n_files):.3f} (mean ± se) "
            f"deleting the most salient notes (class flips {flips_top}/{n_files}) vs {rand.mean():.3f} ± "
            f"{rand.std() / np.sqrt(n_files):.3f} for as many random notes (mean of 3 draws; flips "
            f"{flips_rand / 3:.1f}/{n_files}); salient > random on {np.mean(top > rand):.0%} of pieces; ranked by "
            f"|saliency| instead: drop {np.mean(drops_abs):.3f}. " + ("PASS" if top.mean() > rand.mean() else "FAIL")
        )
        if args.external:
            ext = external_check(args.external, data, pieces, y, params, spec)
            print(ext)
    print(
        f"\nfile-level accuracy, jazz vs dance ({len(y)} files), repeated stratified {args.folds}-fold CV by file "
        "(each repeat: every file held out once):"
    )
    print(f"  {'model':70s} {'folds':>14s}  {'mean ± sd over repeats':>22s}  {'min..max':>11s}")
    for name, (folds, accs) in table.items():
        print(
            f"  {name:70s} {folds:>14s}  {np.mean(accs):12.3f} ± {np.std(accs):.3f}  {min(accs):.3f}..{max(accs):.3f}"
        )
    return 0


def external_check(folder: Path, data: MidiDataset, pieces, y, params: dict, spec) -> str:
    """The share of the MIDI files in ``folder`` (all jazz) that midi-piece, trained on every
    jazz/dance piece, reads as jazz."""
    from musiclens.core.errors import MusicLensError
    from musiclens.core.training.midi import PieceDataset, predict_pieces, train_midi_piece

    sub = PieceDataset(
        data.labels,
        spec,
        {"train": list(pieces), "val": [], "test": []},
        {"train": y, "val": y[:0], "test": y[:0]},
        {"train": [], "val": [], "test": []},
    )
    *_, last = train_midi_piece(sub, seed=0, **params)
    ext, skipped = [], 0
    for f in sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".mid", ".midi")):
        try:
            ext.append(spec.window(spec.read(f))[0])
        except MusicLensError:  # an unreadable or too short file: counted, not classified
            skipped += 1
    pred = predict_pieces(last.model, ext).argmax(1)
    jazz = int(np.sum(pred == list(data.labels).index("jazz")))
    return (
        f"external check: midi-piece trained on all {len(y)} files reads {jazz}/{len(ext)} = {jazz / len(ext):.3f} "
        f"of {folder} as jazz ({skipped} files unreadable)"
    )


if __name__ == "__main__":
    sys.exit(main())
