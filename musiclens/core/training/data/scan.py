"""Finding a labelled dataset in a folder: audio ``root/<label>/``, a ``labels.csv``,
musdb-style stems, or MIDI ``root/<label>/*.mid``; and telling audio from MIDI folders.

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
    except ``mixture``/``mix`` is a stem; its file name is the label.
``midi``
    ``root/<label>/*.{mid,midi,rmi}``: one piece per file (:func:`scan_midi_folder`).

Track ids are paths relative to the root; they are what a model's ``model.json`` records
as its train/val/test split.
"""

from __future__ import annotations

import csv
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from musiclens.core import audio as audio_io
from musiclens.core.errors import MusicLensError, ParameterError

#: Audio file extensions a dataset may contain (libsndfile reads them all; .au is GTZAN's).
DATA_EXTENSIONS = audio_io.AUDIO_EXTENSIONS + (".au", ".snd", ".aifc", ".m4a")
MUSDB_STEMS = ("drums", "bass", "vocals", "other")
MIX_NAMES = ("mixture", "mix")
TASKS = ("genre", "mood", "instruments", "labels")

__all__ = [
    "DATA_EXTENSIONS",
    "MUSDB_STEMS",
    "MIX_NAMES",
    "TASKS",
    "Track",
    "Dataset",
    "check_label",
    "scan_folder",
    "scan_stems",
    "scan_midi_folder",
    "load_dataset",
    "data_kind",
]


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
            f"({', '.join(repr(c) for c in dict.fromkeys(bad))}); rename it using printable characters"
        )
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
    kind: Literal["folder", "stems", "midi"]
    labels: list[str]
    multilabel: bool
    tracks: list[Track]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def describe(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "kind": self.kind,
            "labels": self.labels,
            "multilabel": self.multilabel,
            "tracks": len(self.tracks),
            "skipped": [{"file": p, "reason": r} for p, r in self.skipped],
        }


def _is_hidden(p: Path) -> bool:
    return p.name.startswith(".") or p.name in ("__MACOSX", "@eaDir")


def _files(folder: Path, extensions: Sequence[str], *, recursive: bool = True) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    out = []
    for p in it:
        rel = p.relative_to(folder).parts
        if any(part.startswith(".") or part in ("__MACOSX", "@eaDir") for part in rel):
            continue
        if p.is_file() and p.suffix.lower() in extensions:
            out.append(p)
    return sorted(out, key=lambda q: str(q))


def _audio_files(folder: Path, *, recursive: bool = True) -> list[Path]:
    return _files(folder, DATA_EXTENSIONS, recursive=recursive)


def _midi_extensions() -> tuple[str, ...]:
    from musiclens.core.midi import MIDI_EXTENSIONS

    return MIDI_EXTENSIONS


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
        hint = f"; the {len(loose)} audio files directly in it need one sub-folder per label" if loose else ""
        raise MusicLensError(
            f"no audio files found in {root} (looked for {', '.join(DATA_EXTENSIONS)} in sub-folders <label>/){hint}"
        )
    names = sorted(found)
    if len(names) < 2 and labels is None:
        raise MusicLensError(
            f"{root} has only one class ({names[0]!r}); a classifier needs at least two "
            "sub-folders <label>/ with audio files"
        )
    label_list = list(labels) if labels is not None else names
    index = {lab: i for i, lab in enumerate(label_list)}
    unknown = [lab for lab in names if lab not in index]
    if unknown:
        raise MusicLensError(f"{root} has labels the model does not know: {unknown}; its labels are {label_list}")
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
        raise MusicLensError(f"{table} needs a header with the columns 'file' and 'label' (optionally 'track')")
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
            f"{{{','.join(MUSDB_STEMS)}}}.wav (musdb18-HQ layout) or root/<track>/<stem>.wav"
        )
    names = sorted(
        {s for _, _, st in raw for s in st},
        key=lambda s: (MUSDB_STEMS.index(s) if s in MUSDB_STEMS else len(MUSDB_STEMS), s),
    )
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
        tracks.append(
            Track(
                str(d.relative_to(root)),
                tuple(ok[s] for s in order),
                tuple(index[s] for s in order),
                tuple(order),
                official,
            )
        )
    _check_usable(root, tracks, skipped)
    return Dataset(root, "stems", label_list, True, tracks, skipped)


def load_dataset(root: str | os.PathLike[str], *, task: str = "genre", labels: Sequence[str] | None = None) -> Dataset:
    """``task`` ``"instruments"`` reads a stems folder, the others a labelled folder."""
    if task not in TASKS:
        raise ParameterError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return scan_stems(root, labels=labels) if task == "instruments" else scan_folder(root, labels=labels)


def scan_midi_folder(root: str | os.PathLike[str], *, labels: Sequence[str] | None = None) -> Dataset:
    """A MIDI folder ``root/<label>/**/*.mid`` (kind ``"midi"``, single-label).

    Files are not parsed here (reading a MIDI file is reading all of it); unreadable or too
    short pieces are skipped, with the reason, when the notes are read. ``labels`` fixes the
    label list and order (a trained model's)."""
    root = Path(root)
    _require_root(root)
    exts = _midi_extensions()
    found: dict[str, list[Path]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not _is_hidden(p)):
        files = _files(d, exts)
        if files:
            lab = check_label(d.name, where=f"folder {d}")
            if lab in found:
                raise MusicLensError(f"two folders of {root} give the same label {lab!r}")
            found[lab] = files
    names = sorted(found)
    if len(names) < 2 and labels is None:
        raise MusicLensError(
            f"{root} needs at least two sub-folders <label>/ with MIDI files "
            f"({', '.join(exts)}); found {names or 'none'}"
        )
    label_list = list(labels) if labels is not None else names
    index = {lab: i for i, lab in enumerate(label_list)}
    unknown = [lab for lab in names if lab not in index]
    if unknown:
        raise MusicLensError(f"{root} has labels the model does not know: {unknown}; its labels are {label_list}")
    if not names:
        raise MusicLensError(f"no MIDI files found in {root} (looked in sub-folders <label>/)")
    tracks = [Track(str(f.relative_to(root)), (f,), (index[lab],)) for lab in names for f in found[lab]]
    return Dataset(root, "midi", label_list, False, tracks, [])


def data_kind(root: str | os.PathLike[str]) -> Literal["audio", "midi"]:
    """``"midi"`` when the folder's data files are MIDI, ``"audio"`` when they are audio (or a
    ``labels.csv`` / stems folder). A folder with both kinds is an error that says how many
    of each; one with neither says what was looked for."""
    root = Path(root)
    _require_root(root)
    if (root / "labels.csv").is_file() or (root / "labels.tsv").is_file():
        return "audio"
    midi_exts = _midi_extensions()
    n_audio = n_midi = 0
    for _folder, dirs, files in os.walk(root, followlinks=True):  # label folders may be symlinks
        dirs[:] = [d for d in dirs if not (d.startswith(".") or d in ("__MACOSX", "@eaDir"))]
        for name in files:
            if name.startswith("."):
                continue
            suffix = os.path.splitext(name)[1].lower()
            n_audio += suffix in DATA_EXTENSIONS
            n_midi += suffix in midi_exts
    if n_audio and n_midi:
        raise MusicLensError(
            f"{root} holds both audio ({n_audio} files) and MIDI ({n_midi} files); train on one kind at a time"
        )
    if n_midi:
        return "midi"
    if n_audio:
        return "audio"
    raise MusicLensError(
        f"no audio or MIDI files found in {root} (looked for "
        f"{', '.join(DATA_EXTENSIONS + midi_exts)} in sub-folders <label>/)"
    )
