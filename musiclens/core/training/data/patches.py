"""Patches of a split dataset: every track decoded once and cut into the model's input
length (:func:`prepare`, a generator with one progress step per track, so the GUI worker and
the CLI show progress and can stop it). Stem tracks are cut into segments of one patch; a
segment is kept where the stems are active (RMS above ``active_db`` dBFS) and every
non-empty combination of the active stems is mixed and labelled with its multi-hot vector,
as in the instrument study."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch

from musiclens.core import audio as audio_io
from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.features import FrontEnd
from musiclens.core.training.data.cache import FeatureCache, file_hash
from musiclens.core.training.data.scan import Dataset, Track
from musiclens.core.training.data.splits import SPLITS, Split
from musiclens.core.training.events import PrepareProgress

__all__ = ["PatchSet", "PreparedData", "PrepareProgress", "prepare", "prepare_all"]


@dataclass
class PatchSet:
    """The patches of one split.

    kind ``"features"``: ``arrays[i]`` is a front-end output (C, F, T_i) (maybe memory-mapped
    from the cache); ``"audio"``: ``arrays[i]`` is audio (samples,) zero-padded by
    ``n_fft // 2`` on both sides, and :meth:`inputs` runs the front end per batch.
    index : (N, 2) int64 rows ``(array, start frame)``; y : (N,) int64 or (N, L) float32
    multi-hot; track : (N,) int64 into ``track_ids``.
    """

    kind: Literal["features", "audio"]
    front_end: FrontEnd
    patch_frames: int
    arrays: list[np.ndarray]
    index: np.ndarray
    y: np.ndarray
    track: np.ndarray
    track_ids: list[str]

    def __len__(self) -> int:
        return int(len(self.index))

    @property
    def multilabel(self) -> bool:
        return self.y.ndim == 2

    def audio_span(self) -> int:
        """Samples of padded audio behind one patch: ``(P - 1) · hop + n_fft`` (the patch
        length of the un-centred front end, :meth:`FrontEnd.frames_to_samples`)."""
        return self.front_end.replace(center=False).frames_to_samples(self.patch_frames)

    def inputs(self, idx: Sequence[int] | np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
        """Network inputs (b, C, F, P) for the patches ``idx``."""
        rows = self.index[np.asarray(idx, dtype=np.int64)]
        p = self.patch_frames
        if self.kind == "features":
            batch = np.stack([self.arrays[a][..., s : s + p] for a, s in rows]).astype(np.float32, copy=False)
            return torch.from_numpy(batch).to(device)
        hop, span = self.front_end.hop, self.audio_span()
        chunks = np.stack([self.arrays[a][s * hop : s * hop + span] for a, s in rows])
        fe = self.front_end.replace(center=False)
        with torch.no_grad():
            return fe(torch.from_numpy(chunks).to(device))

    def targets(self, idx: Sequence[int] | np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
        return torch.from_numpy(self.y[np.asarray(idx, dtype=np.int64)]).to(device)


@dataclass
class PreparedData:
    sets: dict[str, PatchSet]
    labels: list[str]
    multilabel: bool
    split: Split
    skipped: list[tuple[str, str]]
    dataset: Dataset

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {"tracks": len(self.split.tracks[s]), "patches": len(self.sets[s])} for s in SPLITS}


def _features(fe: FrontEnd, y: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return fe(torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None])[0].numpy()


def _pad(fe: FrontEnd, y: np.ndarray) -> np.ndarray:
    half = fe.n_fft // 2
    return np.pad(np.asarray(y, dtype=np.float32), (half, half))


def _segment_db(y: np.ndarray, fe: FrontEnd, starts: list[int], p: int) -> np.ndarray:
    """RMS in dBFS of the audio under each patch start (frames ``s .. s+p-1``)."""
    out = np.empty(len(starts))
    length = fe.replace(center=True).frames_to_samples(p)  # (p - 1) · hop + 1: the patch's own samples
    for i, s in enumerate(starts):
        seg = y[s * fe.hop : s * fe.hop + length]
        rms = float(np.sqrt(np.mean(np.square(seg, dtype=np.float64)))) if seg.size else 0.0
        out[i] = 20 * np.log10(max(rms, 1e-10))
    return out


class _Builder:
    def __init__(
        self, kind: Literal["features", "audio"], fe: FrontEnd, p: int, n_labels: int, multilabel: bool
    ) -> None:
        self.kind, self.fe, self.p, self.n_labels, self.multilabel = kind, fe, p, n_labels, multilabel
        self.arrays: list[np.ndarray] = []
        self.index: list[tuple[int, int]] = []
        self.y: list[np.ndarray | int] = []  # multi-hot (L,) rows, or class indices
        self.track: list[int] = []
        self.track_ids: list[str] = []

    def add(self, array: np.ndarray, starts: list[int], labels: tuple[int, ...], track: str) -> None:
        if not starts:
            return
        if not self.track_ids or self.track_ids[-1] != track:
            self.track_ids.append(track)
        a = len(self.arrays)
        self.arrays.append(array)
        target: np.ndarray | int
        if self.multilabel:
            target = np.zeros(self.n_labels, dtype=np.float32)
            target[list(labels)] = 1.0
        else:
            target = int(labels[0])
        for s in starts:
            self.index.append((a, s))
            self.y.append(target)
            self.track.append(len(self.track_ids) - 1)

    def build(self) -> PatchSet:
        y = (
            np.asarray(self.y, dtype=np.float32).reshape(-1, self.n_labels)
            if self.multilabel
            else np.asarray(self.y, dtype=np.int64)
        )
        return PatchSet(
            self.kind,
            self.fe,
            self.p,
            self.arrays,
            np.asarray(self.index, dtype=np.int64).reshape(-1, 2),
            y,
            np.asarray(self.track, dtype=np.int64),
            self.track_ids,
        )


def prepare(
    ds: Dataset,
    split: Split,
    front_end: FrontEnd,
    patch_frames: int,
    *,
    cache: FeatureCache | None = None,
    mode: Literal["features", "audio"] = "features",
    patch_hop: int | None = None,
    active_db: float = -45.0,
    require_all_stems: bool = True,
) -> Iterator[PrepareProgress]:
    """Decode every track of ``split`` and cut it into patches; one progress step per track.

    Parameters
    ----------
    front_end, patch_frames : the model's front end and input length in frames.
    cache : a :class:`FeatureCache` (features mode), or None to compute in memory.
    mode : ``"features"`` computes each file's front-end output once (whole file, then the
        frames are cut); ``"audio"`` keeps the audio and runs the front end per batch
        (no feature cache; the same values, see :class:`PatchSet`).
    patch_hop : frames between patch starts (default: ``patch_frames``, no overlap).
    active_db, require_all_stems : stem sets: a stem is active in a segment when its RMS is
        above ``active_db`` dBFS; segments are kept where all the track's stems are active
        (or, with ``require_all_stems=False``, the combinations of the active ones).

    Files that cannot be decoded are skipped and listed (``data.skipped``, and the step's
    ``error``). The last step carries ``data``.
    """
    if mode not in ("features", "audio"):
        raise ParameterError(f"mode must be 'features' or 'audio', got {mode!r}")
    p = int(patch_frames)
    hop = int(patch_hop or p)
    if p <= 0 or hop <= 0:
        raise ParameterError(f"patch_frames and patch_hop must be positive, got {p}, {hop}")
    spec = front_end.to_dict()
    builders = {s: _Builder(mode, front_end, p, len(ds.labels), ds.multilabel) for s in SPLITS}
    skipped = list(ds.skipped)
    total = sum(len(split.tracks[s]) for s in SPLITS)
    done = 0
    short: list[str] = []
    for s in SPLITS:
        for track in split.tracks[s]:
            error = None
            try:
                if ds.kind == "stems":
                    _add_stem_track(
                        builders[s], track, front_end, p, hop, spec, cache, mode, active_db, require_all_stems
                    )
                else:
                    n = _add_file_track(builders[s], track, front_end, p, hop, spec, cache, mode)
                    if n == 0:
                        short.append(track.id)
            except MusicLensError as exc:
                error = str(exc)
                skipped.append((str(track.files[0]) if len(track.files) == 1 else track.id, error))
            done += 1
            if done < total:
                yield PrepareProgress(done, total, track.id, error)
    for tid in short:
        skipped.append((tid, f"shorter than one patch ({p} frames)"))
    sets = {s: builders[s].build() for s in SPLITS}
    if len(sets["train"]) == 0:
        raise MusicLensError(
            f"no training patches in {ds.root}: {len(skipped)} file(s) skipped"
            + (f" (e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else "")
            + (f"; {len(short)} track(s) shorter than one patch" if short else "")
        )
    data = PreparedData(sets, list(ds.labels), ds.multilabel, split, skipped, ds)
    yield PrepareProgress(total, total, None, None, data)


def prepare_all(*args: Any, **kwargs: Any) -> PreparedData:
    """:func:`prepare` run to the end (no progress)."""
    data: PreparedData | None = None
    for step in prepare(*args, **kwargs):
        data = step.data or data
    assert data is not None
    return data


def _load(path: Path, fe: FrontEnd) -> np.ndarray:
    y, _ = audio_io.load(path, sr=fe.sample_rate, mono=True)
    return y


def _add_file_track(
    b: _Builder,
    track: Track,
    fe: FrontEnd,
    p: int,
    hop: int,
    spec: dict[str, Any],
    cache: FeatureCache | None,
    mode: str,
) -> int:
    path = track.files[0]
    if mode == "features":
        if cache is not None:
            key = cache.key([file_hash(path)], spec)
            feats = cache.get_or_compute(key, lambda: _features(fe, _load(path, fe)))
        else:
            feats = _features(fe, _load(path, fe))
        n_frames = feats.shape[-1]
        array = feats
    else:
        y = _load(path, fe)
        n_frames = fe.n_frames(len(y))
        array = _pad(fe, y)
    starts = audio_io.patch_starts(n_frames, p, hop)
    b.add(array, starts, track.labels, track.id)
    return len(starts)


def _add_stem_track(
    b: _Builder,
    track: Track,
    fe: FrontEnd,
    p: int,
    hop: int,
    spec: dict[str, Any],
    cache: FeatureCache | None,
    mode: str,
    active_db: float,
    require_all: bool,
) -> None:
    hashes = [file_hash(f) for f in track.files] if cache is not None else []
    stems: list[np.ndarray] | None = None

    def load_stems() -> list[np.ndarray]:
        nonlocal stems
        if stems is None:
            ys = [_load(f, fe) for f in track.files]
            n = min(len(y) for y in ys)
            stems = [y[:n] for y in ys]
        return stems

    # activity of each stem under each segment: (S, n_segments)
    def activity() -> np.ndarray:
        ys = load_stems()
        starts = audio_io.patch_starts(fe.n_frames(len(ys[0])), p, hop)
        return np.stack([_segment_db(y, fe, starts, p) for y in ys]) if starts else np.zeros((len(ys), 0))

    if cache is not None:
        act_spec = {"sr": fe.sample_rate, "hop": fe.hop, "patch": p, "patch_hop": hop}
        db = np.asarray(cache.get_or_compute(cache.key(hashes, act_spec, "stem-rms"), activity))
    else:
        db = activity()
    active = db > active_db  # (S, n_seg)
    n_seg = active.shape[1]
    # numpy's stubs type a reduction over one axis as scalar | array; here it is an array
    all_active = cast(np.ndarray, active.all(axis=0))
    idx = list(range(len(track.files)))
    for r in range(1, len(idx) + 1):
        for combo in itertools.combinations(idx, r):
            keep = all_active if require_all else cast(np.ndarray, active[list(combo)].all(axis=0))
            starts = [k * hop for k in range(n_seg) if keep[k]]
            if not starts:
                continue

            def mix(combo: tuple[int, ...] = combo) -> np.ndarray:
                ys = load_stems()
                mixed = np.sum([ys[i] for i in combo], axis=0, dtype=np.float32)
                return cast(np.ndarray, mixed)  # an array (see all_active)

            if mode == "features":
                if cache is not None:
                    key = cache.key([hashes[i] for i in combo], spec, "mix")
                    array = cache.get_or_compute(key, lambda mix=mix: _features(fe, mix()))
                else:
                    array = _features(fe, mix())
            else:
                array = _pad(fe, mix())
            b.add(array, starts, tuple(track.labels[i] for i in combo), track.id)
