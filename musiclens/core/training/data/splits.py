"""Seeded train/val/test splits of **tracks** (never of patches, segments or stem mixes):
a song's patches are all in one split; single-label sets are stratified per label."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.training.data.scan import Dataset, Track

SPLITS = ("train", "val", "test")

__all__ = ["SPLITS", "Split", "split_by_track"]


@dataclass
class Split:
    """Tracks per split; ``seed`` and ``fractions`` reproduce it."""

    tracks: dict[str, list[Track]]
    seed: int
    fractions: tuple[float, float, float]

    def counts(self) -> dict[str, int]:
        return {s: len(self.tracks[s]) for s in SPLITS}

    def ids(self) -> dict[str, list[str]]:
        return {s: [t.id for t in self.tracks[s]] for s in SPLITS}


def _group(track: Track) -> str:
    """The split unit: the CSV's track id if given (``track::file``), else the track id."""
    return track.id.split("::", 1)[0]


def _cut(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    if n >= 3:
        n_val = max(n_val, 1) if fractions[1] > 0 else 0
        n_test = max(n_test, 1) if fractions[2] > 0 else 0
    elif n == 2 and fractions[2] > 0:
        n_val, n_test = 0, 1
    else:
        n_val = n_test = 0
    return n - n_val - n_test, n_val, n_test


def split_by_track(
    ds: Dataset, *, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0, use_official: bool = True
) -> Split:
    """Seeded train/val/test split of **tracks** (default 80/10/10).

    Single-label sets are stratified: each label's tracks are shuffled and cut, with at
    least one val and one test track per label that has 3 or more. Multi-label sets are
    shuffled as a whole. With musdb's official split (``train/``, ``test/``) and
    ``use_official``, ``test/`` is the test set and ``train/`` is cut into train/val in the
    ratio ``fractions[0] : fractions[1]``. Files sharing a CSV ``track`` id stay together.
    """
    fractions = tuple(float(f) for f in fractions)  # type: ignore[assignment]
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise ParameterError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    groups: dict[str, list[Track]] = {}
    for t in ds.tracks:
        groups.setdefault(_group(t), []).append(t)
    out: dict[str, list[str]] = {s: [] for s in SPLITS}

    def assign(keys: list[str], fr: tuple[float, float, float]) -> None:
        keys = sorted(keys)
        order = rng.permutation(len(keys))
        n_train, n_val, _ = _cut(len(keys), fr)
        for i, j in enumerate(order):
            out["train" if i < n_train else "val" if i < n_train + n_val else "test"].append(keys[j])

    official = use_official and any(t.official_split == "test" for t in ds.tracks)
    if official:
        out["test"] = sorted(g for g, ts in groups.items() if ts[0].official_split == "test")
        rest = [g for g, ts in groups.items() if ts[0].official_split != "test"]
        tv = fractions[0] + fractions[1]
        assign(rest, (fractions[0] / tv, fractions[1] / tv, 0.0) if tv > 0 else (1.0, 0.0, 0.0))
    elif ds.multilabel:
        assign(list(groups), fractions)
    else:
        by_label: dict[int, list[str]] = {}
        for g, ts in groups.items():
            by_label.setdefault(ts[0].labels[0], []).append(g)
        for lab in sorted(by_label):
            assign(by_label[lab], fractions)
    tracks = {s: [t for g in sorted(out[s]) for t in groups[g]] for s in SPLITS}
    seen: dict[str, str] = {}
    for s in SPLITS:  # by construction; checked because a leak would silently inflate results
        for t in tracks[s]:
            if _group(t) in seen and seen[_group(t)] != s:
                raise AssertionError(f"track {t.id} is in {seen[_group(t)]} and {s}")
            seen[_group(t)] = s
    if not tracks["train"]:
        raise MusicLensError(f"the split left no training tracks ({len(ds.tracks)} tracks in {ds.root})")
    return Split(tracks, int(seed), fractions)
