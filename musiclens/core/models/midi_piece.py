"""Whole-piece MIDI classifier: a small dilated CNN over every note of every track.

The network takes the raw features of :class:`~musiclens.core.models.inputs.PieceSpec`,
``x: (B, N, 7)`` = ``[pitch, step (s), duration (s), velocity, program, drum, beat]`` for
all ``N`` notes of a piece (drums included, in order of onset), and a ``mask: (B, N)`` bool
(True = real note). It standardises them itself (pitch, log-times, velocity, drum flag, the
position in the beat as sines and cosines; the instrument family of the General MIDI program
as an embedding), runs ``layers`` dilated 1-d convolutions over the note sequence (a window
of a few dozen notes around each note), gives every note a vector of class logits and
returns their mean over the real notes: the piece's logits are the average of its local
windows' votes, so every note of the piece counts and gets saliency.

Training reads random windows of the piece (:func:`musiclens.core.training.midi.train_midi_piece`);
prediction reads the whole piece.
"""

from __future__ import annotations

from collections import Counter
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
]

#: 16 General MIDI instrument families (program // 8) and one for drums.
N_FAMILIES = 17


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


class PieceCNN(nn.Module):
    """forward(x: (B, N, 7) raw piece features, mask: (B, N) bool or None) -> logits (B, n_labels).

    ``note_logits(x)`` -> (B, N, n_labels): each note's local vote (its receptive field:
    ``1 + (kernel - 1) * (2 ** layers - 1)`` notes). With ``summary`` (the hybrid), a second
    branch adds a linear function of the piece's standardised :func:`piece_summary` to the
    logits (computed from the real notes of ``x``, or given as ``summary: (B, S)``: the
    statistics of the whole piece while ``x`` is a window of it, as in training)."""

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
    ) -> None:
        super().__init__()
        self.time_scale = float(time_scale)
        self.has_summary = bool(summary)
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

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, summary: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = self._votes(x, mask)
        if self.has_summary:
            out = out + self.summary_logits(self.summaries(x, mask) if summary is None else summary)
        return out

    def _votes(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """(B, n_labels): the mean of the real notes' local votes."""
        lg = self.note_logits(x)
        if mask is None:
            return lg.mean(dim=1)
        m = mask.to(lg.dtype).unsqueeze(-1)
        if x.shape[0] == 1:  # one piece: its real notes only (padding never enters the convolutions)
            n = int(mask[0].sum())
            lg = self.note_logits(x[:, :n]) if n < x.shape[1] else lg
            return lg.mean(dim=1)
        out: torch.Tensor = (lg * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
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
    note_features: dict[str, Any] | None = None,
) -> tuple[nn.Module, list[LayerInfo]]:
    """Builder for the registry. ``note_features``: a :meth:`PieceSpec.to_dict` (its time scale);
    ``summary``: the hybrid (a whole-piece statistics branch beside the note CNN)."""
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
    return net, layer_list
