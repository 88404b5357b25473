"""Folder datasets of labelled audio, track-level splits, patches and an on-disk feature cache.

Layouts
-------
``folder`` (genre, mood, any single-label task)
    ``root/<label>/**/*.{wav,flac,ogg,mp3,au,aiff,...}``: the sub-folder name is the label
    (GTZAN's layout). Alternatively ``root/labels.csv`` with columns ``file,label`` and an
    optional ``track`` column (files with the same track id are kept in one split); several
    labels separated by ``;`` make a multi-label set.
``stems`` (instruments, multi-label)
    musdb18-HQ: ``root/{train,test}/<track>/{mixture,drums,bass,vocals,other}.wav`` (or
    ``root/<track>/...`` without the official split). Every audio file of a track folder
    except ``mixture``/``mix`` is a stem; its file name is the label. Each track is cut into
    segments of one patch (~10 s for choi-cnn); a segment is kept where the stems are active
    (RMS above ``active_db`` dBFS); every non-empty combination of the active stems is mixed
    (15 per segment for 4 stems) and labelled with the multi-hot vector of its stems, as in
    the instrument study.

Splits are made on **tracks**, never on patches or segments (:func:`split_by_track`): a
song's patches, segments and stem mixes are all in the same split. Single-label sets are
stratified per label; musdb's official ``test/`` folder is the test split.

The feature cache (:class:`FeatureCache`) stores front-end outputs as ``.npy`` files keyed by
the SHA-256 of the audio file(s) and the front-end spec, under :func:`cache_dir`
(``$MUSICLENS_CACHE``, else ``$XDG_CACHE_HOME/musiclens``, else ``~/.cache/musiclens``).

Preparing patches is a generator (:func:`prepare`) yielding one progress step per track, so
the GUI worker and the CLI show progress and can stop it.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
import torch

from musiclens.core import audio as audio_io
from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.features import FrontEnd

#: Audio file extensions a dataset may contain (libsndfile reads them all; .au is GTZAN's).
DATA_EXTENSIONS = audio_io.AUDIO_EXTENSIONS + (".au", ".snd", ".aifc", ".m4a")
SPLITS = ("train", "val", "test")
MUSDB_STEMS = ("drums", "bass", "vocals", "other")
MIX_NAMES = ("mixture", "mix")
TASKS = ("genre", "mood", "instruments", "labels")
CACHE_VERSION = "1"

__all__ = [
    "Track", "Dataset", "Split", "PatchSet", "PreparedData", "PrepareProgress", "FeatureCache",
    "cache_dir", "file_hash", "check_label", "load_dataset", "scan_folder", "scan_stems",
    "split_by_track", "prepare", "prepare_all",
]


# ============================================================================ cache
def cache_dir() -> Path:
    """``$MUSICLENS_CACHE``, else ``$XDG_CACHE_HOME/musiclens``, else ``~/.cache/musiclens``."""
    env = os.environ.get("MUSICLENS_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "musiclens"


_HASHES: dict[tuple[str, int, int], str] = {}


def file_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's content (memoised per path, size and modification time)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


class FeatureCache:
    """Front-end outputs on disk: ``<root>/features/<key[:2]>/<key>.npy`` (no pickle).

    ``key`` is a SHA-256 of the audio content hash(es), the front end's spec and what was
    done to the audio (e.g. which stems were mixed). Files are written atomically; a damaged
    file is recomputed.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(content: Sequence[str], spec: dict, what: str = "features") -> str:
        blob = json.dumps({"v": CACHE_VERSION, "content": list(content), "spec": spec, "what": what},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / "features" / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            return np.load(p, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError):
            return None

    def put(self, key: str, array: np.ndarray) -> None:
        p = self.path(key)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)
            os.replace(tmp, p)
        except OSError as exc:  # a full or read-only disk must not stop training
            raise MusicLensError(f"cannot write the feature cache in {self.root}: {exc.strerror}; "
                                 "set MUSICLENS_CACHE to a writable folder or disable the cache") from None

    def get_or_compute(self, key: str, compute) -> np.ndarray:
        arr = self.get(key)
        if arr is not None:
            self.hits += 1
            return arr
        self.misses += 1
        arr = np.asarray(compute())
        self.put(key, arr)
        return arr


# ============================================================================ datasets
def check_label(name: str, *, where: str = "") -> str:
    """A label as given by a folder name or a CSV cell, NFC-normalised and stripped.

    Any printable text is allowed (spaces, accents, ``&``, ``'``...); control characters,
    path separators, empty names and names over 100 characters are refused with a message
    that says where the label came from."""
    where = f" ({where})" if where else ""
    label = unicodedata.normalize("NFC", str(name)).strip()
    if not label:
        raise MusicLensError(f"empty label{where}; give every class a name")
    bad = [c for c in label if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")]
    if bad:
        raise MusicLensError(
            f"label {label!r}{where} contains control or invisible characters "
            f"({', '.join(repr(c) for c in dict.fromkeys(bad))}); rename it using printable characters")
    if "/" in label or "\\" in label:
        raise MusicLensError(f"label {label!r}{where} contains a path separator; rename it")
    if len(label) > 100:
        raise MusicLensError(f"label {label[:40]!r}...{where} is longer than 100 characters")
    return label


@dataclass(frozen=True)
class Track:
    """One song: a single file (``stems == ()``) or a folder of stems.

    id : path relative to the dataset root (unique), the unit of splitting.
    files : the audio file, or the stem files in the order of ``stems``.
    labels : label indices (one for single-label sets; the stems' labels for stem sets).
    official_split : ``"train"``/``"test"`` for musdb's own split, else None.
    """

    id: str
    files: tuple[Path, ...]
    labels: tuple[int, ...]
    stems: tuple[str, ...] = ()
    official_split: str | None = None


@dataclass
class Dataset:
    root: Path
    kind: Literal["folder", "stems"]
    labels: list[str]
    multilabel: bool
    tracks: list[Track]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def describe(self) -> dict:
        return {"root": str(self.root), "kind": self.kind, "labels": self.labels,
                "multilabel": self.multilabel, "tracks": len(self.tracks),
                "skipped": [{"file": p, "reason": r} for p, r in self.skipped]}


def _is_hidden(p: Path) -> bool:
    return p.name.startswith(".") or p.name in ("__MACOSX", "@eaDir")


def _audio_files(folder: Path, *, recursive: bool = True) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    out = []
    for p in it:
        rel = p.relative_to(folder).parts
        if any(part.startswith(".") or part in ("__MACOSX", "@eaDir") for part in rel):
            continue
        if p.is_file() and p.suffix.lower() in DATA_EXTENSIONS:
            out.append(p)
    return sorted(out, key=lambda q: str(q))


def _readable(path: Path, skipped: list[tuple[str, str]]) -> bool:
    """Check a file's header; unreadable files are added to ``skipped``."""
    try:
        i = audio_io.info(path)
        if i.frames == 0:
            raise MusicLensError(f"{path} holds no audio (0 samples)")
        return True
    except MusicLensError as exc:
        skipped.append((str(path), str(exc)))
        return False


def _require_root(root: Path) -> None:
    if not root.exists():
        raise MusicLensError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise MusicLensError(f"{root} is a file; give the dataset's folder")


def scan_folder(root: str | os.PathLike[str], *, labels: Sequence[str] | None = None) -> Dataset:
    """A labelled folder (``root/<label>/...`` or ``root/labels.csv``), headers checked.

    ``labels`` fixes the label list and order (e.g. a trained model's); data with other
    labels is then an error."""
    root = Path(root)
    _require_root(root)
    for name in ("labels.csv", "labels.tsv"):
        if (root / name).is_file():
            return _scan_csv(root, root / name, labels)
    skipped: list[tuple[str, str]] = []
    found: dict[str, list[Path]] = {}
    folder_of: dict[str, str] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not _is_hidden(p)):
        files = _audio_files(d)
        if not files:
            continue
        lab = check_label(d.name, where=f"folder {d}")
        if lab in found:
            raise MusicLensError(f"the folders {folder_of[lab]!r} and {d.name!r} give the same label {lab!r}")
        folder_of[lab] = d.name
        found[lab] = files
    if not found:
        loose = _audio_files(root, recursive=False)
        hint = (f"; the {len(loose)} audio files directly in it need one sub-folder per label"
                if loose else "")
        raise MusicLensError(
            f"no audio files found in {root} (looked for {', '.join(DATA_EXTENSIONS)} in "
            f"sub-folders <label>/){hint}")
    names = sorted(found)
    if len(names) < 2 and labels is None:
        raise MusicLensError(
            f"{root} has only one class ({names[0]!r}); a classifier needs at least two "
            "sub-folders <label>/ with audio files")
    label_list = list(labels) if labels is not None else names
    index = {lab: i for i, lab in enumerate(label_list)}
    unknown = [lab for lab in names if lab not in index]
    if unknown:
        raise MusicLensError(f"{root} has labels the model does not know: {unknown}; "
                             f"its labels are {label_list}")
    tracks = []
    for lab in names:
        for f in found[lab]:
            if _readable(f, skipped):
                tracks.append(Track(str(f.relative_to(root)), (f,), (index[lab],)))
    _check_usable(root, tracks, skipped)
    return Dataset(root, "folder", label_list, False, tracks, skipped)


def _scan_csv(root: Path, table: Path, labels: Sequence[str] | None) -> Dataset:
    delim = "\t" if table.suffix == ".tsv" else ","
    try:
        rows = list(csv.DictReader(table.open(newline="", encoding="utf-8"), delimiter=delim))
    except UnicodeDecodeError:
        raise MusicLensError(f"{table} is not UTF-8 text") from None
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise MusicLensError(f"{table} needs a header with the columns 'file' and 'label' "
                             "(optionally 'track')")
    skipped: list[tuple[str, str]] = []
    entries = []
    for n, row in enumerate(rows, start=2):
        f = root / (row["file"] or "").strip()
        labs = [check_label(s, where=f"{table.name} line {n}") for s in (row["label"] or "").split(";")]
        track = (row.get("track") or "").strip() or str(Path(row["file"].strip()))
        entries.append((f, labs, track))
    names = sorted({lab for _, labs, _ in entries for lab in labs})
    multilabel = any(len(labs) > 1 for _, labs, _ in entries)
    if len(names) < 2 and not multilabel and labels is None:
        raise MusicLensError(f"{table} names only one class ({names}); a classifier needs two or more")
    label_list = list(labels) if labels is not None else names
    index = {lab: i for i, lab in enumerate(label_list)}
    unknown = [lab for lab in names if lab not in index]
    if unknown:
        raise MusicLensError(f"{table} has labels the model does not know: {unknown}")
    tracks = []
    for f, labs, track in entries:
        if not f.is_file():
            skipped.append((str(f), f"listed in {table.name} but not found"))
        elif _readable(f, skipped):
            # the CSV's track id groups files; file path keeps the Track id unique
            tracks.append(Track(f"{track}::{f.relative_to(root)}", (f,), tuple(index[lab] for lab in labs)))
    _check_usable(root, tracks, skipped)
    return Dataset(root, "folder", label_list, multilabel, tracks, skipped)


def _check_usable(root: Path, tracks: list[Track], skipped: list[tuple[str, str]]) -> None:
    if not tracks:
        listed = "; ".join(f"{Path(p).name}: {r}" for p, r in skipped[:3])
        raise MusicLensError(f"no readable audio files in {root}: all {len(skipped)} were skipped ({listed})")


def scan_stems(root: str | os.PathLike[str], *, labels: Sequence[str] | None = None) -> Dataset:
    """A musdb-style stems folder: ``root/{train,test}/<track>/<stem>.wav`` or ``root/<track>/``."""
    root = Path(root)
    _require_root(root)
    split_dirs = [s for s in ("train", "test") if (root / s).is_dir()]
    parents = [(root / s, s) for s in split_dirs] if split_dirs else [(root, None)]
    skipped: list[tuple[str, str]] = []
    raw = []
    for parent, official in parents:
        for d in sorted(p for p in parent.iterdir() if p.is_dir() and not _is_hidden(p)):
            stems = {}
            for f in _audio_files(d, recursive=False):
                name = unicodedata.normalize("NFC", f.stem).strip().lower()
                if name in MIX_NAMES:
                    continue
                stems[check_label(name, where=f"stem file {f}")] = f
            if stems:
                raw.append((d, official, stems))
    if not raw:
        raise MusicLensError(
            f"no stem folders found in {root}: expected root/{{train,test}}/<track>/"
            f"{{{','.join(MUSDB_STEMS)}}}.wav (musdb18-HQ layout) or root/<track>/<stem>.wav")
    names = sorted({s for _, _, st in raw for s in st},
                   key=lambda s: (MUSDB_STEMS.index(s) if s in MUSDB_STEMS else len(MUSDB_STEMS), s))
    label_list = list(labels) if labels is not None else names
    index = {lab: i for i, lab in enumerate(label_list)}
    unknown = [s for s in names if s not in index]
    if unknown:
        raise MusicLensError(f"{root} has stems the model does not know: {unknown}; its labels are {label_list}")
    tracks = []
    for d, official, stems in raw:
        ok = {s: f for s, f in stems.items() if _readable(f, skipped)}
        if not ok:
            continue
        order = [s for s in label_list if s in ok]
        tracks.append(Track(str(d.relative_to(root)), tuple(ok[s] for s in order),
                            tuple(index[s] for s in order), tuple(order), official))
    _check_usable(root, tracks, skipped)
    return Dataset(root, "stems", label_list, True, tracks, skipped)


def load_dataset(root: str | os.PathLike[str], *, task: str = "genre",
                 labels: Sequence[str] | None = None) -> Dataset:
    """``task`` ``"instruments"`` reads a stems folder, the others a labelled folder."""
    if task not in TASKS:
        raise ParameterError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return scan_stems(root, labels=labels) if task == "instruments" else scan_folder(root, labels=labels)


# ============================================================================ splits
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


def split_by_track(ds: Dataset, *, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                   seed: int = 0, use_official: bool = True) -> Split:
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
    return Split(tracks, int(seed), fractions)  # type: ignore[arg-type]


# ============================================================================ patches
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
        """Samples of padded audio behind one patch: ``(P - 1) · hop + n_fft``."""
        return (self.patch_frames - 1) * self.front_end.hop + self.front_end.n_fft

    def inputs(self, idx: Sequence[int] | np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
        """Network inputs (b, C, F, P) for the patches ``idx``."""
        rows = self.index[np.asarray(idx, dtype=np.int64)]
        p = self.patch_frames
        if self.kind == "features":
            batch = np.stack([self.arrays[a][..., s:s + p] for a, s in rows]).astype(np.float32, copy=False)
            return torch.from_numpy(batch).to(device)
        hop, span = self.front_end.hop, self.audio_span()
        chunks = np.stack([self.arrays[a][s * hop:s * hop + span] for a, s in rows])
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


@dataclass
class PrepareProgress:
    done: int
    total: int
    track: str | None = None
    error: str | None = None
    data: PreparedData | None = None  # set on the last step


def _features(fe: FrontEnd, y: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return fe(torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None])[0].numpy()


def _pad(fe: FrontEnd, y: np.ndarray) -> np.ndarray:
    half = fe.n_fft // 2
    return np.pad(np.asarray(y, dtype=np.float32), (half, half))


def _segment_db(y: np.ndarray, fe: FrontEnd, starts: list[int], p: int) -> np.ndarray:
    """RMS in dBFS of the audio under each patch start (frames ``s .. s+p-1``)."""
    out = np.empty(len(starts))
    for i, s in enumerate(starts):
        seg = y[s * fe.hop:(s + p - 1) * fe.hop + 1]
        rms = float(np.sqrt(np.mean(np.square(seg, dtype=np.float64)))) if seg.size else 0.0
        out[i] = 20 * np.log10(max(rms, 1e-10))
    return out


class _Builder:
    def __init__(self, kind: str, fe: FrontEnd, p: int, n_labels: int, multilabel: bool):
        self.kind, self.fe, self.p, self.n_labels, self.multilabel = kind, fe, p, n_labels, multilabel
        self.arrays: list[np.ndarray] = []
        self.index: list[tuple[int, int]] = []
        self.y: list = []
        self.track: list[int] = []
        self.track_ids: list[str] = []

    def add(self, array: np.ndarray, starts: list[int], labels: tuple[int, ...], track: str) -> None:
        if not starts:
            return
        if not self.track_ids or self.track_ids[-1] != track:
            self.track_ids.append(track)
        a = len(self.arrays)
        self.arrays.append(array)
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
        y = (np.asarray(self.y, dtype=np.float32).reshape(-1, self.n_labels) if self.multilabel
             else np.asarray(self.y, dtype=np.int64))
        return PatchSet(self.kind, self.fe, self.p, self.arrays,  # type: ignore[arg-type]
                        np.asarray(self.index, dtype=np.int64).reshape(-1, 2), y,
                        np.asarray(self.track, dtype=np.int64), self.track_ids)


def prepare(ds: Dataset, split: Split, front_end: FrontEnd, patch_frames: int, *,
            cache: FeatureCache | None = None, mode: Literal["features", "audio"] = "features",
            patch_hop: int | None = None, active_db: float = -45.0,
            require_all_stems: bool = True) -> Iterator[PrepareProgress]:
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
    short = []
    for s in SPLITS:
        for track in split.tracks[s]:
            error = None
            try:
                if ds.kind == "stems":
                    _add_stem_track(builders[s], track, front_end, p, hop, spec, cache, mode,
                                    active_db, require_all_stems)
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
            + (f"; {len(short)} track(s) shorter than one patch" if short else ""))
    data = PreparedData(sets, list(ds.labels), ds.multilabel, split, skipped, ds)
    yield PrepareProgress(total, total, None, None, data)


def prepare_all(*args, **kwargs) -> PreparedData:
    """:func:`prepare` run to the end (no progress)."""
    data = None
    for step in prepare(*args, **kwargs):
        data = step.data or data
    assert data is not None
    return data


def _load(path: Path, fe: FrontEnd) -> np.ndarray:
    y, _ = audio_io.load(path, sr=fe.sample_rate, mono=True)
    return y


def _add_file_track(b: _Builder, track: Track, fe: FrontEnd, p: int, hop: int, spec: dict,
                    cache: FeatureCache | None, mode: str) -> int:
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


def _add_stem_track(b: _Builder, track: Track, fe: FrontEnd, p: int, hop: int, spec: dict,
                    cache: FeatureCache | None, mode: str, active_db: float, require_all: bool) -> None:
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
    all_active = active.all(axis=0)
    idx = list(range(len(track.files)))
    for r in range(1, len(idx) + 1):
        for combo in itertools.combinations(idx, r):
            keep = all_active if require_all else active[list(combo)].all(axis=0)
            starts = [k * hop for k in range(n_seg) if keep[k]]
            if not starts:
                continue

            def mix(combo=combo) -> np.ndarray:
                ys = load_stems()
                return np.sum([ys[i] for i in combo], axis=0, dtype=np.float32)

            if mode == "features":
                if cache is not None:
                    key = cache.key([hashes[i] for i in combo], spec, "mix")
                    array = cache.get_or_compute(key, lambda mix=mix: _features(fe, mix()))
                else:
                    array = _features(fe, mix())
            else:
                array = _pad(fe, mix())
            b.add(array, starts, tuple(track.labels[i] for i in combo), track.id)
