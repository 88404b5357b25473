"""Whole-piece MIDI classifier: every note of every track, through note statistics and/or a CNN.

The network takes the raw features of :class:`~musiclens.core.models.inputs.PieceSpec`,
``x: (B, N, 7)`` = ``[pitch, step (s), duration (s), velocity, program, drum, beat]`` for
all ``N`` notes of a piece (drums included, in order of onset), and a ``mask: (B, N)`` bool
(True = real note). Two branches add up to the logits:

* the **note statistics** (``statistics=True``; the default of ``midi-piece`` training, alone):
  :func:`statistics_of` describes the whole piece (shares of its notes on the beat grid, swung,
  in chords with sevenths, walking-bass steps, kicks on the beat, repeated bars, velocities,
  instrument families, the key-free pitch-class profile ...), standardised, then a linear
  layer (or a small MLP); new models squash each standardised statistic ``z`` to
  ``c tanh(z / c)`` (:data:`STAT_SQUASH`) so that no piece's outlying statistic dominates its
  logit. Each statistic is a differentiable function of a presence weight
  per note, so ``d logit / d weight`` estimates what deleting each note does
  (:meth:`PieceCNN.presence_saliency`, the ``note-presence`` method);
* the **note votes** (``votes=True``): the features standardised (pitch, log-times, velocity,
  drum flag, the position in the beat as sines and cosines; the instrument family as an
  embedding), ``layers`` dilated 1-d convolutions over the note sequence, one vector of class
  logits per note, and their (presence-weighted) mean over the real notes.

The older ``summary`` branch (:func:`piece_summary`, not differentiable) is kept for the models
saved with it; :func:`piece_summary` also describes the training pieces in ``model.json``
(:func:`training_statistics`). Training reads random windows of the piece for the votes
(:func:`musiclens.core.training.midi.train_midi_piece`); prediction reads the whole piece.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from musiclens.core.errors import ParameterError
from musiclens.core.models.inputs import PIECE_FEATURES, PieceSpec
from musiclens.core.models.registry import LayerInfo, register_family

__all__ = [
    "PieceCNN",
    "build_midi_piece",
    "N_FAMILIES",
    "piece_summary",
    "SUMMARY_NAMES",
    "summary_scale",
    "training_statistics",
    "distance_to_training",
    "NoteStatistics",
    "note_statistics",
    "statistics_of",
    "STAT_NAMES",
    "STAT_SQUASH",
]

#: 16 General MIDI instrument families (program // 8) and one for drums.
N_FAMILIES = 17

#: ``c`` of the statistics branch's squash ``z -> c tanh(z / c)`` of each standardised
#: statistic ``z`` (in training-set standard deviations), for the models trained from now on
#: (``squash`` in their architecture; 0, no squash, for the models saved before). Chosen by
#: repeated 5-fold CV on jazz/dance (issue 17; selection folds, seeds 0-4: 0.833 -> 0.873
#: file-level accuracy; the figure on fresh folds: ``bench_midi_jazz_dance.py --seeds 100-109``):
#: a share that is rare among the training pieces (z of 10 and more on one piece) no longer
#: decides alone.
STAT_SQUASH = 1.5


#: Drum-kit groups (General MIDI key numbers) counted by :func:`piece_summary`.
_DRUM_GROUPS: tuple[tuple[int, ...], ...] = (
    (35, 36),  # kick
    (37, 38, 39, 40),  # snare, clap
    (42, 44),  # closed / pedal hi-hat
    (46,),  # open hi-hat
    (51, 53, 59),  # ride
    (49, 52, 55, 57),  # crash, splash, china
    (41, 43, 45, 47, 48, 50),  # toms
    (54, 56, 69, 70, 82),  # tambourine, cowbell, shakers
)

#: The names of :func:`piece_summary`'s values, in order.
SUMMARY_NAMES: tuple[str, ...] = (
    ("tempo (bpm)", "log notes per second", "log duration (s)", "onsets on the 16th/triplet grid")
    + ("triplet onsets", "swung off-beats", "repeated 8-note patterns", "repeated drum 8-grams")
    + ("bass stepwise moves", "bass repeated notes", "bass duration (beats)", "bass pitch classes / 12")
    + ("bass octave leaps", "kicks on the beat", "kicks per beat", "distinct velocities / 127")
    + ("velocity sd", "3+-note chords", "programs", "drum share")
    + tuple(f"drums: {g}" for g in ("kick", "snare", "closed hat", "open hat", "ride", "crash", "toms", "percussion"))
    + tuple(f"chord interval {i}" for i in range(12))
    + tuple(f"family {i}" for i in range(N_FAMILIES))
    + tuple(f"pitch-class share, rank {i + 1}" for i in range(12))
    + ("duration 10 % (beats)", "duration 50 % (beats)", "duration 90 % (beats)")
    + ("pitch 10 %", "pitch 50 %", "pitch 90 %")
    + tuple(f"onset at beat {i}/12" for i in range(12))
    + ("repeated 6-grams per track", "least repeated track", "repeated drum bars")
    + ("4+-pitch-class chords", "chords with a tritone", "pitch-class entropy")
)


def _repeated(pitch: np.ndarray, beat: np.ndarray, k: int, *, more_than: int = 1) -> float:
    """Share of the ``k``-note patterns (pitch, onset step in 16ths) of a note sequence that
    occur more than ``more_than`` times in it (0 for fewer than ``k + 2`` notes)."""
    if len(pitch) < k + 2:
        return 0.0
    steps = np.round(np.diff(beat, prepend=beat[0]) * 4).astype(np.int64).clip(0, 63)
    grams = np.lib.stride_tricks.sliding_window_view(pitch.astype(np.int64) * 64 + steps, k)
    _, inv, counts = np.unique(grams, axis=0, return_inverse=True, return_counts=True)
    return float(np.mean(counts[inv.ravel()] > more_than))


def _chords(pitch: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """Of notes grouped by onset (``group``, non-decreasing): the histogram (12,) of intervals
    (mod 12) between neighbouring pitches of a group, the share of groups of 3+ notes, and of
    those the shares with 4+ pitch classes and with a tritone."""
    order = np.lexsort((pitch, group))
    g, p = group[order], pitch[order].astype(np.int64)
    same = g[1:] == g[:-1]
    iv = (p[1:] - p[:-1])[same] % 12
    hist = np.bincount(iv, minlength=12)[:12] / max(1, int(same.sum()))
    starts = np.flatnonzero(np.diff(g, prepend=-1))
    ends = np.append(starts[1:], len(g))
    big = [np.unique(p[a:b] % 12) for a, b in zip(starts, ends, strict=True) if b - a >= 3]
    four = float(np.mean([len(u) >= 4 for u in big])) if big else 0.0
    tri = float(np.mean([bool(np.any((u[:, None] - u[None]) % 12 == 6)) for u in big])) if big else 0.0
    return hist, len(big) / max(1, len(starts)), four, tri


def piece_summary(x: np.ndarray) -> np.ndarray:
    """Whole-piece statistics of the (n, 7) :data:`PIECE_FEATURES` of a piece -> (S,) float32,
    named by :data:`SUMMARY_NAMES`: tempo, density, quantisation and swing, repetition (of
    note patterns per track and of drum bars), the bass line, the drum kit, velocities,
    chords and their intervals, instrument families, the key-free pitch-class profile,
    durations in beats, the position of onsets in the beat. Not differentiable (the model's
    note-level branch carries the gradient)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(PIECE_FEATURES):
        raise ParameterError(f"piece_summary expects (n, {len(PIECE_FEATURES)}) note features, got {x.shape}")
    if len(x) == 0:
        return np.zeros(len(SUMMARY_NAMES), np.float32)
    p, s, du, v, pr, dr, bt = x.T
    nd, n = dr < 0.5, len(x)
    onset = np.cumsum(s)
    seconds = max(float(onset[-1] - onset[0]), 1e-3)
    beats = max(float(bt[-1] - bt[0]), 1e-3)
    bps = max(beats / seconds, 1e-3)
    phase = bt % 1
    g16 = np.abs(bt * 4 - np.round(bt * 4)) < 0.06
    g12 = np.abs(bt * 3 - np.round(bt * 3)) < 0.06
    off = phase[(phase > 0.3) & (phase < 0.8)]
    bass = nd & (pr >= 32) & (pr < 40)
    bp = p[bass]
    bi = np.abs(np.diff(bp))
    has_bass = len(bp) > 4
    dp = p[~nd].astype(np.int64)
    kick = np.isin(dp, (35, 36))
    kick_phase = phase[~nd][kick]
    fam = np.where(~nd, 16, pr // 8).astype(np.int64)
    pcs = np.bincount(p[nd].astype(np.int64) % 12, minlength=12).astype(np.float64)
    pc_share = pcs / max(1.0, pcs.sum())
    groups = np.cumsum(s > 0.03)
    hist, chords, four, tri = _chords(p[nd], groups[nd]) if nd.sum() > 3 else (np.zeros(12), 0.0, 0.0, 0.0)
    reps, weights = [], []
    for prog in np.unique(pr[nd]):
        sel = nd & (pr == prog)
        if sel.sum() >= 20:
            reps.append(_repeated(p[sel], bt[sel], 6, more_than=2))
            weights.append(int(sel.sum()))
    bars: Counter[frozenset[tuple[int, int]]] = Counter()
    if (~nd).sum() > 16:
        per_bar: dict[int, set[tuple[int, int]]] = {}
        for b, q, d in zip((bt[~nd] // 4).astype(int), np.round((bt[~nd] % 4) * 4).astype(int), dp, strict=True):
            per_bar.setdefault(int(b), set()).add((int(q), int(d)))
        bars.update(frozenset(c) for c in per_bar.values())
    durb = du[nd] * bps

    def q3(a: np.ndarray) -> np.ndarray:
        return np.percentile(a, [10, 50, 90]) if len(a) else np.zeros(3)

    values = np.concatenate(
        [
            [60 * bps, np.log(n / seconds), np.log(seconds), np.mean(g16 | g12), np.mean(g12 & ~g16)],
            [np.mean(off > 0.58) if len(off) else 0.5, _repeated(p[nd], bt[nd], 8), _repeated(p[~nd], bt[~nd], 8)],
            [np.mean((bi >= 1) & (bi <= 2)) if has_bass else 0.0, np.mean(bi == 0) if has_bass else 0.0],
            [np.median(du[bass] * bps) if has_bass else 0.0, len(np.unique(bp % 12)) / 12 if has_bass else 0.0],
            [np.mean(bi == 12) if has_bass else 0.0],
            [np.mean(np.minimum(kick_phase, 1 - kick_phase) < 0.05) if len(kick_phase) else 0.0, kick.sum() / beats],
            [len(np.unique(v)) / 127, v[nd].std() if nd.any() else 0.0, chords, len(np.unique(pr[nd])), 1 - nd.mean()],
            [np.isin(dp, g).sum() / max(1, len(dp)) for g in _DRUM_GROUPS],
            hist,
            np.bincount(fam, minlength=N_FAMILIES)[:N_FAMILIES] / n,
            np.sort(pc_share)[::-1],
            q3(durb),
            q3(p[nd]),
            np.histogram(phase, bins=12, range=(0, 1))[0] / n,
            [np.average(reps, weights=weights) if reps else 0.0, min(reps) if reps else 0.0],
            [sum(c for c in bars.values() if c > 1) / max(1, sum(bars.values())), four, tri],
            [-(pc_share[pc_share > 0] * np.log(pc_share[pc_share > 0])).sum()],
        ]
    )
    out: np.ndarray = np.nan_to_num(values).astype(np.float32)
    return out


def summary_scale(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` (S,) of the statistics ``stats`` (M, S) of M pieces. A statistic's scale is
    at least a tenth of its mean magnitude (and 0.01), so one that barely varies among these
    pieces cannot blow up on a piece where it does."""
    stats = np.asarray(stats, dtype=np.float64)
    std = np.maximum(stats.std(0), np.maximum(0.1 * np.abs(stats).mean(0), 1e-2))
    return stats.mean(0), std


def _distance(stats: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(M,) root-mean-square of the standardised statistics (each clipped to ±10) of (M, S) ``stats``."""
    z = np.clip((np.asarray(stats, dtype=np.float64) - mean) / std, -10, 10)
    out: np.ndarray = np.sqrt(np.mean(z**2, axis=-1))
    return out


def training_statistics(pieces: list[np.ndarray]) -> dict[str, Any]:
    """What ``model.json`` keeps of a model's training pieces (each (n_i, 7) piece features) to
    tell later whether a piece looks like them: the mean and scale of their
    :func:`piece_summary` and the 95th percentile and maximum of their own distances."""
    if not pieces:
        raise ParameterError("training statistics need at least one piece")
    stats = np.stack([piece_summary(x) for x in pieces])
    mean, std = summary_scale(stats)
    d = _distance(stats, mean, std)
    return {
        "names": list(SUMMARY_NAMES),
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "pieces": len(pieces),
        "distance_p95": float(np.percentile(d, 95)),
        "distance_max": float(d.max()),
    }


def distance_to_training(x: np.ndarray, statistics: dict[str, Any]) -> dict[str, Any]:
    """How far a piece ((n, 7) piece features) lies from a model's training pieces
    (``statistics``: :func:`training_statistics`): ``distance`` (root-mean-square of its
    standardised statistics), the training pieces' own 95th percentile and maximum, and
    ``outside`` (farther than the 95th percentile), with the three statistics farthest out."""
    if list(statistics.get("names", [])) != list(SUMMARY_NAMES):
        raise ParameterError("the model's training statistics were computed with other piece statistics")
    mean, std = np.asarray(statistics["mean"]), np.asarray(statistics["std"])
    s = piece_summary(x).astype(np.float64)
    d = float(_distance(s[None], mean, std)[0])
    z = (s - mean) / std
    far = np.argsort(-np.abs(z))[:3]
    return {
        "distance": d,
        "training_p95": float(statistics["distance_p95"]),
        "training_max": float(statistics["distance_max"]),
        "outside": bool(d > float(statistics["distance_p95"])),
        "farthest": {SUMMARY_NAMES[i]: round(float(z[i]), 2) for i in far},
    }


# ============================================================================ note statistics
# The statistics branch of the ``statistics`` model: every whole-piece statistic is a
# differentiable function of a per-note presence weight w_i (1 = the note is there, 0 = it is
# deleted), so d logit / d w_i is a first-order estimate of what deleting note i does, and
# the per-note saliency covers this branch too (``note-presence`` in the method table).
# The descriptors of each note (is it on the 16th grid, in a 4-note chord, a walking-bass
# step, a kick on the beat ...) are computed once from the piece and held fixed; the
# statistics are weighted shares  sum_i w_i a_ik / sum_i w_i d_ik  (a_ik: note i has property
# k; d_ik: note i is among those the share is taken over), counts per beat, the key-free
# pitch-class profile and its entropy, the spread of notes per bar and the log note density.
# Hand-written with numpy: no MIDI library computes these per note.


@dataclass(frozen=True)
class NoteStatistics:
    """Per-note descriptors of one piece of n notes (numpy, float32).

    share_num, share_den : (n, K) the numerator and denominator indicators of the K shares.
    per_beat : (n, C) counts per beat (each row already divided by the piece's length in beats).
    pitch_class : (n, 12) one-hot pitch class of the pitched notes (0 for drums).
    bar : (n,) int64 bar index (4 beats) from 0. seconds : the piece's length (s).
    constants : (G,) statistics no single note changes (tempo, length, programs, velocities)."""

    share_num: np.ndarray
    share_den: np.ndarray
    per_beat: np.ndarray
    pitch_class: np.ndarray
    bar: np.ndarray
    seconds: float
    constants: np.ndarray


def _cover(pitch: np.ndarray, beat: np.ndarray, k: int, more_than: int) -> np.ndarray:
    """(m,) float: 1 for a note inside a ``k``-note pattern (pitch, onset step in 16ths) that
    occurs more than ``more_than`` times in the sequence."""
    m = len(pitch)
    if m < k + 2:
        return np.zeros(m)
    steps = np.round(np.diff(beat, prepend=beat[0]) * 4).astype(np.int64).clip(0, 63)
    grams = np.lib.stride_tricks.sliding_window_view(pitch.astype(np.int64) * 64 + steps, k)
    _, inv, counts = np.unique(grams, axis=0, return_inverse=True, return_counts=True)
    start = np.zeros(m)
    start[: len(inv)] = counts[inv.ravel()] > more_than
    out: np.ndarray = (np.convolve(start, np.ones(k))[:m] > 0).astype(np.float64)
    return out


def _bar_repeated(bar: np.ndarray, slot: np.ndarray, key: np.ndarray) -> np.ndarray:
    """(m,) float: 1 for a note whose bar's set of (16th slot, key) occurs in another bar too."""
    pats: dict[int, set[tuple[int, int]]] = {}
    for b, q, k in zip(bar.tolist(), slot.tolist(), key.tolist(), strict=True):
        pats.setdefault(b, set()).add((q, k))
    keys = {b: frozenset(c) for b, c in pats.items()}
    count = Counter(keys.values())
    return np.asarray([count[keys[b]] > 1 for b in bar.tolist()], dtype=np.float64)


def _chord_descriptors(p: np.ndarray, grp: np.ndarray, nd: np.ndarray) -> dict[str, np.ndarray]:
    """Per note: in a 3+-note chord (notes of one onset group), in one of 4+ pitch classes, in
    one with a tritone; its interval (mod 12) above the chord's lowest note and above its lower
    neighbour (-1: not above another chord note)."""
    n = len(p)
    out = {k: np.zeros(n) for k in ("in3", "in4", "tritone")}
    root, nbr = np.full(n, -1), np.full(n, -1)
    idx = np.flatnonzero(nd)
    order = np.lexsort((p[idx], grp[idx]))
    g, pp, ii = grp[idx][order], p[idx][order].astype(np.int64), idx[order]
    starts = np.flatnonzero(np.diff(g, prepend=-1))
    for a, b in zip(starts, np.append(starts[1:], len(g)), strict=True):
        if b - a < 2:
            continue
        root[ii[a + 1 : b]] = (pp[a + 1 : b] - pp[a]) % 12
        nbr[ii[a + 1 : b]] = (pp[a + 1 : b] - pp[a : b - 1]) % 12
        if b - a >= 3:
            pcs = np.unique(pp[a:b] % 12)
            out["in3"][ii[a:b]] = 1
            out["in4"][ii[a:b]] = len(pcs) >= 4
            out["tritone"][ii[a:b]] = bool(np.any((pcs[:, None] - pcs[None]) % 12 == 6))
    out["root"], out["nbr"] = root.astype(np.float64), nbr.astype(np.float64)
    return out


def _beat_harmony(p: np.ndarray, beat: np.ndarray, nd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pitched note: its beat (onsets in one beat, all tracks) has 4+ pitch classes; has two
    a minor or major seventh apart."""
    n = len(p)
    four, seventh = np.zeros(n), np.zeros(n)
    if not nd.any():
        return four, seventh
    b = np.floor(beat[nd]).astype(np.int64)
    sets: dict[int, set[int]] = {}
    for bi, pc in zip(b.tolist(), (p[nd].astype(np.int64) % 12).tolist(), strict=True):
        sets.setdefault(bi, set()).add(pc)
    has7 = {k: any((a - c) % 12 in (10, 11) for a in s for c in s) for k, s in sets.items()}
    four[nd] = [len(sets[k]) >= 4 for k in b.tolist()]
    seventh[nd] = [has7[k] for k in b.tolist()]
    return four, seventh


_BASS_KINDS = (
    ("acoustic", (32,)),
    ("electric", (33, 34)),
    ("fretless", (35,)),
    ("slap", (36, 37)),
    ("synth", (38, 39)),
)
_DRUM_NAMES = ("kick", "snare", "closed hat", "open hat", "ride", "crash", "toms", "percussion")


def note_statistics(x: np.ndarray) -> tuple[list[str], NoteStatistics]:
    """The per-note descriptors of a piece's (n, 7) :data:`PIECE_FEATURES` -> (the names of
    the shares, :class:`NoteStatistics`). See :func:`statistics_of` for what is computed."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(PIECE_FEATURES) or len(x) == 0:
        raise ParameterError(f"note statistics need (n > 0, {len(PIECE_FEATURES)}) note features, got {x.shape}")
    p, s, du, v, pr, dr, bt = x.T
    n = len(x)
    nd, drum = dr < 0.5, dr >= 0.5
    onset = np.cumsum(s)
    seconds = max(float(onset[-1] - onset[0]), 1e-3)
    beats = max(float(bt[-1] - bt[0]), 1e-3)
    bps = max(beats / seconds, 1e-3)
    phase = bt % 1
    dev16 = np.abs(bt * 4 - np.round(bt * 4)) / 4  # beats off the 16th grid
    g16, g12 = dev16 < 0.015, np.abs(bt * 3 - np.round(bt * 3)) / 3 < 0.02
    one, ndf, drf = np.ones(n), nd.astype(np.float64), drum.astype(np.float64)
    cols: dict[str, tuple[Any, Any]] = {}

    def add(name: str, num: Any, den: Any) -> None:
        cols[name] = (num, den)

    add("drum share", drf, one)
    add("onsets on the 16th/triplet grid", g16 | g12, one)
    add("triplet onsets", g12 & ~g16, one)
    for lo, hi in ((0, 0.005), (0.005, 0.02), (0.02, 0.05), (0.05, 1)):
        add(f"onset {lo}-{hi} beats off the 16th grid", (dev16 >= lo) & (dev16 < hi), one)
    slot12 = np.round(phase * 12).astype(np.int64) % 12
    for i in range(12):
        add(f"onset at beat {i}/12", slot12 == i, one)
    off = (phase > 0.3) & (phase < 0.8)
    add("swung off-beats", off & (phase > 0.58), off)
    fam = np.where(drum, 16, pr // 8).astype(np.int64)
    for i in range(N_FAMILIES):
        add(f"family {i}", fam == i, one)
    for lo, hi in ((0, 36), (36, 48), (48, 60), (60, 72), (72, 84), (84, 128)):
        add(f"pitch {lo}-{hi - 1}", nd & (p >= lo) & (p < hi), ndf)
    db = du * bps
    edges = (0.0, 0.18, 0.35, 0.7, 1.4, 2.8, np.inf)
    for a, b in itertools.pairwise(edges):
        add(f"duration {a}-{b} beats", nd & (db >= a) & (db < b), ndf)
    add("duration on the 16th grid", nd & (np.abs(db * 4 - np.round(db * 4)) < 0.03), ndf)
    vb = np.clip(v // 16, 0, 7)
    for i in range(8):
        add(f"velocity {16 * i}-{16 * i + 15}", nd & (vb == i), ndf)
    vals, cnt = np.unique(v[nd], return_counts=True) if nd.any() else (np.array([-1.0]), np.array([1]))
    add("velocity = the commonest", nd & (v == vals[np.argmax(cnt)]), ndf)
    grp = np.cumsum(s > 0.03)
    ch = _chord_descriptors(p, grp, nd)
    add("in a 3+-note chord", ch["in3"], ndf)
    add("in a 4+-pitch-class chord", ch["in4"], ndf)
    add("in a chord with a tritone", ch["tritone"], ndf)
    above = ch["root"] >= 0
    for i in range(12):
        add(f"chord: {i} above the bass", ch["root"] == i, above)
        add(f"chord: {i} above the note below", ch["nbr"] == i, above)
    melodic = np.full(n, -1.0)
    rep6 = np.zeros(n)
    for prog in np.unique(pr[nd]):
        sel = np.flatnonzero(nd & (pr == prog))
        if len(sel) < 2:
            continue
        new = np.diff(grp[sel]) > 0
        melodic[sel[1:][new]] = np.abs(np.diff(p[sel]))[new]
        rep6[sel] = _cover(p[sel], bt[sel], 6, more_than=2)
    mel = melodic >= 0
    for lo, hi in ((0, 1), (1, 2), (2, 3), (3, 5), (5, 8), (8, 13), (13, 128)):
        add(f"melodic interval {lo}-{hi - 1}", mel & (melodic >= lo) & (melodic < hi), mel)
    add("in a repeated 6-note pattern of its track", rep6, ndf)
    rep8 = np.zeros(n)
    rep8[nd] = _cover(p[nd], bt[nd], 8, more_than=1)
    add("in a repeated 8-note pattern", rep8, ndf)
    bass = nd & (pr >= 32) & (pr < 40)
    bsel = np.flatnonzero(bass)
    leap = np.full(n, -1.0)
    leap[bsel[1:]] = np.abs(np.diff(p[bsel]))
    bm, bf = leap >= 0, bass.astype(np.float64)
    add("bass stepwise", bm & (leap >= 1) & (leap <= 2), bm)
    add("bass repeated note", bm & (leap == 0), bm)
    add("bass octave leap", bm & (leap == 12), bm)
    add("bass leap 3-7", bm & (leap >= 3) & (leap <= 7), bm)
    onbeat, offbeat = np.minimum(phase, 1 - phase) < 0.05, np.abs(phase - 0.5) < 0.05
    add("bass quarter notes", bass & (db > 0.6) & (db < 1.1), bf)
    add("bass on the beat", bass & onbeat, bf)
    add("bass on the off-beat", bass & offbeat, bf)
    for name, progs in _BASS_KINDS:
        add(f"bass: {name}", bass & np.isin(pr, progs), bf)
    dp = p.astype(np.int64)
    kick, snare = drum & np.isin(dp, (35, 36)), drum & np.isin(dp, (37, 38, 39, 40))
    hat, ride = drum & np.isin(dp, (42, 44, 46)), drum & np.isin(dp, (51, 53, 59))
    for g, name in zip(_DRUM_GROUPS, _DRUM_NAMES, strict=True):
        add(f"drums: {name}", drum & np.isin(dp, g), drf)
    add("kicks on the beat", kick & onbeat, kick)
    add("snares on 2 and 4", snare & onbeat & (np.round(bt) % 2 == 1), snare)
    add("hi-hats on the off-beat", hat & offbeat, hat)
    add("ride/hat on the swung off-beat", (ride | hat) & (np.abs(phase - 2 / 3) < 0.06), ride | hat)
    slot16 = np.round((bt % 4) * 4).astype(np.int64)
    bar = (bt // 4).astype(np.int64)
    rep_bar = np.zeros(n)
    if drum.sum() > 16:
        rep_bar[drum] = _bar_repeated(bar[drum], slot16[drum], dp[drum])
    add("drum bar repeated", rep_bar, drf)
    rep_bar = np.zeros(n)
    for prog in np.unique(pr[nd]):
        sel = nd & (pr == prog)
        rep_bar[sel] = _bar_repeated(bar[sel], slot16[sel], dp[sel])
    add("track bar repeated", rep_bar, ndf)
    four, seventh = _beat_harmony(p, bt, nd)
    add("beat with 4+ pitch classes", four, ndf)
    add("beat with a seventh", seventh, ndf)
    names = list(cols)

    def f32(a: Any) -> np.ndarray:
        return np.asarray(a, dtype=np.float32)

    per_beat = np.stack([kick, kick & onbeat, snare, hat, bass], 1) / beats
    return names, NoteStatistics(
        share_num=f32(np.stack([np.broadcast_to(np.asarray(cols[k][0], np.float64), n) for k in names], 1)),
        share_den=f32(np.stack([np.broadcast_to(np.asarray(cols[k][1], np.float64), n) for k in names], 1)),
        per_beat=f32(per_beat),
        pitch_class=f32(np.eye(12)[dp % 12] * nd[:, None]),
        bar=bar - bar.min(),
        seconds=seconds,
        constants=f32([60 * bps, np.log(seconds), len(np.unique(pr[nd])), len(np.unique(v)) / 127]),
    )


_PER_BEAT = (
    "kicks per beat",
    "kicks on the beat per beat",
    "snares per beat",
    "hi-hats per beat",
    "bass notes per beat",
)
_OTHER = tuple(f"pitch-class share, rank {i + 1}" for i in range(12)) + (
    "pitch-class entropy",
    "notes per bar: coefficient of variation",
    "log notes per second",
)
_CONSTANTS = ("tempo (bpm)", "log length (s)", "programs", "distinct velocities / 127")
#: The names of :func:`statistics_of`'s values, in order.
STAT_NAMES: tuple[str, ...] = (
    tuple(note_statistics(np.array([[60, 0, 0.5, 80, 0, 0, 0], [64, 0.5, 0.5, 80, 0, 0, 1]]))[0])
    + _PER_BEAT
    + _OTHER
    + _CONSTANTS
)


def statistics_of(d: NoteStatistics, w: torch.Tensor) -> torch.Tensor:
    """The piece's statistics (S,) named by :data:`STAT_NAMES`, differentiable in the per-note
    presence weights ``w`` (n,) (1 = present): the K weighted shares
    ``sum w * share_num / sum w * share_den`` (0 where nothing is counted), counts per beat,
    the sorted key-free pitch-class profile and its entropy, the coefficient of variation of
    the (weighted) notes per bar, log notes per second, and constants."""

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=w.dtype, device=w.device)

    num, den = w @ t(d.share_num), w @ t(d.share_den)
    shares = torch.where(den > 1e-6, num / den.clamp_min(1e-6), torch.zeros_like(num))
    pcs = w @ t(d.pitch_class)
    pcs = pcs / pcs.sum().clamp_min(1e-6)
    entropy = -(pcs * pcs.clamp_min(1e-12).log()).sum()
    bars = torch.as_tensor(d.bar, device=w.device)
    per_bar = torch.zeros(int(d.bar.max()) + 1, dtype=w.dtype, device=w.device).index_add(0, bars, w)
    per_bar = per_bar[torch.as_tensor(np.bincount(d.bar) > 0, device=w.device)]
    spread = per_bar.std(unbiased=False) / per_bar.mean().clamp_min(1e-6)
    density = torch.log(w.sum().clamp_min(1e-3) / d.seconds)
    other = torch.stack([entropy, spread, density])
    return torch.cat([shares, w @ t(d.per_beat), torch.sort(pcs, descending=True).values, other, t(d.constants)])


class PieceCNN(nn.Module):
    """forward(x: (B, N, 7) raw piece features, mask: (B, N) bool or None) -> logits (B, n_labels).

    ``note_logits(x)`` -> (B, N, n_labels): each note's local vote (its receptive field:
    ``1 + (kernel - 1) * (2 ** layers - 1)`` notes). With ``summary`` (the hybrid), a second
    branch adds a linear function of the piece's standardised :func:`piece_summary` to the
    logits (computed from the real notes of ``x``, or given as ``summary: (B, S)``: the
    statistics of the whole piece while ``x`` is a window of it, as in training).

    With ``statistics`` (the default of ``midi-piece`` training), a branch adds a linear
    function (``hidden`` > 0: a one-hidden-layer MLP) of the standardised :func:`statistics_of`
    of the piece, differentiable in the per-note presence weights ``weight: (B, N)`` (1 =
    present; default: the mask), as are the votes (their ``weight``-weighted mean): d logit /
    d weight is the first-order effect of deleting each note (:meth:`presence_saliency`);
    ``stats: (B, S)`` gives the statistics when already computed (training, evaluation).
    ``votes=False`` leaves the note CNN out of the logits (the statistics alone).
    ``squash`` > 0: each standardised statistic ``z`` enters the head as ``squash *
    tanh(z / squash)`` (smooth, so the presence gradient stays; 0: ``z`` itself, the models
    saved before)."""

    def __init__(
        self,
        *,
        n_labels: int,
        channels: int = 64,
        layers: int = 3,
        kernel: int = 5,
        embed: int = 8,
        dropout: float = 0.2,
        time_scale: float = 0.05,
        summary: bool = False,
        statistics: bool = False,
        hidden: int = 0,
        votes: bool = True,
        squash: float = 0.0,
    ) -> None:
        super().__init__()
        if not squash >= 0:
            raise ParameterError(f"squash must be >= 0 (0: none), got {squash}")
        self.time_scale = float(time_scale)
        self.stat_squash = float(squash)
        self.has_summary = bool(summary)
        self.has_statistics = bool(statistics)
        self.votes = bool(votes)
        #: the per-note saliency that covers every branch (see :meth:`presence_saliency`)
        self.note_method: str | None = "note-presence" if self.has_statistics else None
        if self.has_statistics:
            self.register_buffer("stat_mean", torch.zeros(len(STAT_NAMES)))
            self.register_buffer("stat_std", torch.ones(len(STAT_NAMES)))
            self.stat_mean: torch.Tensor
            self.stat_std: torch.Tensor
            if hidden > 0:
                self.stat_head: nn.Module = nn.Sequential(
                    nn.Linear(len(STAT_NAMES), hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_labels)
                )
            else:
                self.stat_head = nn.Linear(len(STAT_NAMES), n_labels)
                nn.init.zeros_(self.stat_head.weight)
        if self.has_summary:  # the whole-piece statistics branch: standardised, then linear
            self.register_buffer("summary_mean", torch.zeros(len(SUMMARY_NAMES)))
            self.register_buffer("summary_std", torch.ones(len(SUMMARY_NAMES)))
            self.summary_mean: torch.Tensor
            self.summary_std: torch.Tensor
            self.summary_head: nn.Linear = nn.Linear(len(SUMMARY_NAMES), n_labels)
            nn.init.zeros_(self.summary_head.weight)  # a statistic only matters once training says so
        self.family = nn.Embedding(N_FAMILIES, embed)
        mods: list[nn.Module] = []
        c = 11 + embed
        for i in range(layers):
            d = 2**i
            mods += [
                nn.Conv1d(c, channels, kernel, padding=(kernel // 2) * d, dilation=d),
                nn.BatchNorm1d(channels),
                nn.GELU(),
                nn.Dropout(dropout),
            ]
            c = channels
        self.body = nn.Sequential(*mods)
        self.head = nn.Conv1d(channels, n_labels, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, 7) raw -> (B, 11 + embed, N) standardised input of the convolutions."""
        if x.ndim != 3 or x.shape[-1] != len(PIECE_FEATURES):
            raise ParameterError(f"PieceCNN expects (B, N, {len(PIECE_FEATURES)}) note features, got {tuple(x.shape)}")
        pitch, step, dur, vel, prog, drum, beat = x.unbind(-1)
        phase = 2 * torch.pi * torch.remainder(beat, 1.0)
        fam = torch.where(drum > 0.5, torch.full_like(prog, 16), torch.div(prog.detach(), 8, rounding_mode="floor"))
        z = torch.stack(
            [
                (pitch - 60.0) / 15.0,
                (torch.log1p(step.clamp_min(0) / self.time_scale) - 1.0) / 1.5,
                (torch.log1p(dur.clamp_min(0) / self.time_scale) - 1.5) / 1.5,
                vel / 64.0 - 1.0,
                drum,
                phase.sin(),
                phase.cos(),
                (2 * phase).sin(),
                (2 * phase).cos(),
                (3 * phase).sin(),
                (3 * phase).cos(),
            ],
            dim=-1,
        )
        h = torch.cat([z, self.family(fam.long().clamp(0, N_FAMILIES - 1))], dim=-1)
        return h.transpose(1, 2)

    def note_logits(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.body(self.encode(x))).transpose(1, 2)
        return out

    def fit_summary(self, stats: np.ndarray) -> None:
        """Standardise the statistics branch on ``stats`` (M, S) of the training pieces (:func:`summary_scale`)."""
        mean, std = summary_scale(stats)
        self.summary_mean.copy_(torch.as_tensor(mean, dtype=self.summary_mean.dtype))
        self.summary_std.copy_(torch.as_tensor(std, dtype=self.summary_std.dtype))

    def summaries(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, 7) raw features (and mask) -> (B, S) :func:`piece_summary` of each piece's real notes."""
        xs = x.detach().cpu().numpy()
        ms = np.ones(xs.shape[:2], bool) if mask is None else mask.detach().cpu().numpy().astype(bool)
        return x.new_tensor(np.stack([piece_summary(xi[mi]) for xi, mi in zip(xs, ms, strict=True)]))

    def summary_logits(self, summary: torch.Tensor) -> torch.Tensor:
        """(B, S) raw piece statistics -> (B, n_labels) the statistics branch's logits."""
        out: torch.Tensor = self.summary_head((summary - self.summary_mean) / self.summary_std)
        return out

    def fit_statistics(self, stats: np.ndarray) -> None:
        """Standardise the statistics branch on ``stats`` (M, S) of the training pieces (:func:`summary_scale`)."""
        mean, std = summary_scale(stats)
        self.stat_mean.copy_(torch.as_tensor(mean, dtype=self.stat_mean.dtype))
        self.stat_std.copy_(torch.as_tensor(std, dtype=self.stat_std.dtype))

    def statistics(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, N, 7) raw features (mask, presence ``weight`` (B, N)) -> (B, S) :func:`statistics_of`
        of each piece's real notes, differentiable in ``weight``."""
        xs = x.detach().cpu().numpy()
        ms = np.ones(xs.shape[:2], bool) if mask is None else mask.detach().cpu().numpy().astype(bool)
        w = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device) if weight is None else weight.to(x)
        rows = []
        for b in range(len(xs)):
            idx = torch.as_tensor(np.flatnonzero(ms[b]), device=x.device)
            rows.append(statistics_of(note_statistics(xs[b][ms[b]])[1], w[b].index_select(0, idx)))
        return torch.stack(rows)

    def stat_logits(self, stats: torch.Tensor) -> torch.Tensor:
        """(B, S) raw :func:`statistics_of` -> (B, n_labels) the statistics branch's logits
        (standardised, squashed when ``squash`` > 0)."""
        z = (stats - self.stat_mean) / self.stat_std
        if self.stat_squash > 0:
            z = self.stat_squash * torch.tanh(z / self.stat_squash)
        out: torch.Tensor = self.stat_head(z)
        return out

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        summary: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
        stats: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = self._votes(x, mask, weight) if self.votes else None
        if self.has_summary:
            s = self.summary_logits(self.summaries(x, mask) if summary is None else summary)
            out = s if out is None else out + s
        if self.has_statistics:
            s = self.stat_logits(self.statistics(x, mask, weight) if stats is None else stats)
            out = s if out is None else out + s
        if out is None:
            raise ParameterError("this PieceCNN has neither votes nor a statistics branch")
        if not self.votes:  # the statistics are piecewise constant in the note features: their
            out = out + 0.0 * x.sum()  # gradient is 0, and gradient methods get that instead of an error
        return out

    def presence_saliency(self, x: torch.Tensor, mask: torch.Tensor | None, score: Any) -> torch.Tensor:
        """(B, N) d score / d weight at weight = 1 on the real notes (0 on padding): the
        first-order change of ``score(logits) -> (B,)`` when each note is deleted is minus this."""
        w = (torch.ones(x.shape[:2], device=x.device) if mask is None else mask.to(x.dtype)).requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(score(self(x, mask, weight=w)).sum(), w)
        return grad if mask is None else grad * mask.to(grad.dtype)

    def _votes(self, x: torch.Tensor, mask: torch.Tensor | None, weight: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n_labels): the (``weight``-weighted) mean of the real notes' local votes."""
        lg = self.note_logits(x)
        if mask is None and weight is None:
            return lg.mean(dim=1)
        m = torch.ones(x.shape[:2], dtype=lg.dtype, device=lg.device) if mask is None else mask.to(lg.dtype)
        if weight is not None:
            m = m * weight.to(lg.dtype)
        if (
            x.shape[0] == 1 and mask is not None
        ):  # one piece: its real notes only (padding never enters the convolutions)
            n = int(mask[0].sum())
            if n < x.shape[1]:
                lg, m = self.note_logits(x[:, :n]), m[:, :n]
        m = m.unsqueeze(-1)
        out: torch.Tensor = (lg * m).sum(dim=1) / m.sum(dim=1).clamp_min(1e-6)
        return out


@register_family("midi_piece")
def build_midi_piece(
    *,
    n_labels: int,
    channels: int = 64,
    layers: int = 3,
    kernel: int = 5,
    embed: int = 8,
    dropout: float = 0.2,
    summary: bool = False,
    statistics: bool = False,
    hidden: int = 0,
    votes: bool = True,
    squash: float = 0.0,
    note_features: dict[str, Any] | None = None,
) -> tuple[nn.Module, list[LayerInfo]]:
    """Builder for the registry. ``note_features``: a :meth:`PieceSpec.to_dict` (its time scale);
    ``summary``: the hybrid (a whole-piece statistics branch beside the note CNN); ``squash``:
    of the standardised statistics (:data:`STAT_SQUASH` for new models; absent, 0, in the
    models saved before)."""
    spec = PieceSpec.from_dict(note_features) if note_features else PieceSpec()
    net = PieceCNN(
        n_labels=int(n_labels),
        channels=int(channels),
        layers=int(layers),
        kernel=int(kernel),
        embed=int(embed),
        dropout=float(dropout),
        time_scale=spec.time_scale,
        summary=bool(summary),
        statistics=bool(statistics),
        hidden=int(hidden),
        votes=bool(votes),
        squash=float(squash),
    )
    layer_list = [LayerInfo("family embedding", "family", "input", "block", "instrument family (program // 8, drums)")]
    for i in range(int(layers)):
        layer_list.append(
            LayerInfo(f"conv {i + 1}", f"body.{4 * i}", "notes", "conv", f"dilated conv over notes, dilation {2**i}")
        )
    layer_list.append(LayerInfo("output", "head", "back end", "output", "per-note logits, averaged over the piece"))
    if summary:
        layer_list.append(
            LayerInfo("statistics", "summary_head", "back end", "output", "logits of the whole-piece statistics")
        )
    if statistics:
        layer_list.append(
            LayerInfo("note statistics", "stat_head", "back end", "output", "logits of the note statistics")
        )
    return net, layer_list
