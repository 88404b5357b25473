"""Study 5: layer-wise similarity of same-instrument stems over the depth of a CNN.

The instrument study compares the feature maps of pairs of isolated stems of the same
instrument, layer by layer, in an instrument-recognition CNN (Choi-style, 4 conv layers), with
Pearson correlation, cosine similarity and the MSE normalised per pair to its maximum. Its
claims: similarity rises with depth and plateaus after the third conv layer; bass is already
similar at the input.

Here, on the bundled MSD_musicnn and on a ``choi-cnn`` trained on the clips at hand
(:func:`musiclens.core.training.train`): the three metrics plus linear CKA and its exact
permutation baseline (:mod:`musiclens.core.interpret.similarity`, each clip's activations
computed once), for every same-instrument pair of clips, and, as a control, for
different-instrument pairs.

``--data``: either a folder with one sub-folder per instrument (audio files of one
instrument each), or the shared data root (a folder holding ``audio/musdb18-stem-stempeg``),
from which :func:`shared_sources` picks the isolated stems and solo clips and decodes the
musdb18 ``.stem.mp4`` with ffmpeg. Either way every file is cut into non-overlapping
:data:`CLIP_S` s clips (``REPORT_DIR/clips/<instrument>/``, with ``labels.csv`` grouping the
clips of one source file so that training splits by source).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musiclens.core.analyses.studies.report import StudyReport, claims_table, make_folder, pyplot, write_report
from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.progress import Progress

#: seconds per clip (MusiCNN's patch is 2.98 s); a file gives floor(duration / CLIP_S) clips
CLIP_S = 3.0
#: a file this much shorter than a clip still counts as one (zero-padded when read)
CLIP_TOLERANCE_S = 0.06
#: the sample rate clips are written at (both models resample when they read)
CLIP_SR = 22050
#: clips quieter than this RMS (dBFS) are left out (silent stretches of a stem)
SILENCE_DB = -50.0
#: the choi-cnn's patch: 2.9 s at hop 256 (250 frames; its poolings need 160)
CHOI_PATCH_S = 2.9
CHOI_HOP = 256
#: metrics computed at every layer ("cka" brings "cka_baseline")
METRICS = ("pearson", "cosine", "mse_max", "cka")
#: metrics where a larger value means more similar (mse_max: smaller)
HIGHER_IS_SIMILAR = {"pearson": True, "cosine": True, "mse_max": False, "cka": True, "cka_above_baseline": True}
#: the plateau test: conv 3 reaches at least this share of the input -> conv 4 change
PLATEAU_SHARE = 0.8

#: (full, quick) settings
SETTINGS = {
    False: {"clips_per_source": 3, "clips_per_instrument": 12, "control_per_pair": 3, "epochs": 60},
    True: {"clips_per_source": 2, "clips_per_instrument": 6, "control_per_pair": 2, "epochs": 15},
}

#: depth ladders: (layer name in the model, label on the depth axis, conv index or None)
LADDERS: dict[str, list[tuple[str, str, int | None]]] = {
    "MSD_musicnn": [
        ("front end", "front end (conv 1)", 1),
        ("mid end / conv 1", "mid conv 1 (conv 2)", 2),
        ("mid end / conv 2", "mid conv 2 (conv 3)", 3),
        ("mid end / conv 3", "mid conv 3 (conv 4)", 4),
        ("back end / pool", "pool", None),
        ("back end / penultimate", "penultimate", None),
    ],
    "choi-cnn": [
        ("conv 1 (pooled)", "conv 1", 1),
        ("conv 2 (pooled)", "conv 2", 2),
        ("conv 3 (pooled)", "conv 3", 3),
        ("conv 4 (pooled)", "conv 4", 4),
        ("dense 1", "dense 1", None),
        ("dense 2", "dense 2", None),
    ],
}

#: the study's claims: key -> (claim, source)
_CLAIMS = {
    "rise": ("same-instrument similarity rises with depth", "the study (issue 21)"),
    "plateau": ("it plateaus after the third conv layer", "the study (issue 21)"),
    "bass": ("bass is already similar at the input", "the study (issue 21)"),
    "metrics": (
        "one conclusion from Pearson, cosine and max-normalised MSE",
        "the study's figures (the three metrics, issue 21)",
    ),
}

# ---------------------------------------------------------------------------- the data

#: shared data root -> instrument sources: instrument -> globs under ``audio/`` (the musdb18
#: stems are added by :func:`shared_sources`)
_MIR = "mirdata-test-resources"
_MEDLEY = "medley-solos-db-pecmae/Medley-solos-DB_training-{}_*.wav"
SHARED_GLOBS: dict[str, list[str]] = {
    "bass": [f"{_MIR}/jtd/processed/*_bass.wav", f"{_MIR}/tinysol/audio/Strings/Contrabass/*/*.wav"],
    "drums": [
        f"{_MIR}/jtd/processed/*_drums.wav",
        "tonejs-audio/drum-samples/breakbeat.mp3",
        "tonejs-audio/berklee/conga_loop_110.mp3",
    ],
    "vocals": [_MEDLEY.format(2), "tonejs-audio/berklee/ahntone_c*.mp3"],
    "other": [],
    "piano": [f"{_MIR}/jtd/processed/*_piano.wav", _MEDLEY.format(4), "tonejs-audio/salamander/*.mp3"],
    "saxophone": [f"{_MIR}/filosax/Participant */*/Sax.wav", _MEDLEY.format(5)],
    "guitar": ["tonejs-audio/berklee/guitar_*.mp3", _MEDLEY.format(1)],
    "flute": [
        f"{_MIR}/tinysol/audio/Winds/Flute/*/*.wav",
        _MEDLEY.format(3),
        "tonejs-audio/berklee/flute_harmonics_1.mp3",
    ],
    "clarinet": [f"{_MIR}/irmas/IRMAS-TrainingData/cla/*.wav", _MEDLEY.format(0)],
    "trumpet": ["librosa-data/sorohanro_-_solo-trumpet-06.ogg", _MEDLEY.format(6)],
}
#: the musdb18 stem file (decoded with ffmpeg) and its stems' instruments
MUSDB_DIR = "musdb18-stem-stempeg"
MUSDB_STEMS = ("drums", "bass", "other", "vocals")


@dataclass(frozen=True)
class Clip:
    """One clip: its WAV under the clips folder, its instrument, the source file it was cut from
    (the training split keeps a source's clips together) and its start in that file (s)."""

    path: Path
    instrument: str
    source: str
    start_s: float


def is_shared_root(data: Path) -> bool:
    """Whether ``data`` is the shared data root (holds ``audio/musdb18-stem-stempeg``)."""
    return (data / "audio" / MUSDB_DIR).is_dir()


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise MusicLensError(
            "decoding the musdb18 .stem.mp4 needs ffmpeg on the PATH (Debian package 'ffmpeg', "
            "installed by scripts/system-deps); none was found"
        )
    return exe


def decode_stems(stem_file: str | os.PathLike[str], out: str | os.PathLike[str]) -> dict[str, Path]:
    """Decode a Native Instruments ``.stem.mp4`` (stream 0 the mix, then one stream per stem)
    into mono WAVs at :data:`CLIP_SR` Hz: ``out/<track>.<stem>.wav`` -> {stem: path}.

    The stems' names come from ``default_metadata.json`` beside the file when it lists them,
    else musdb's order (drums, bass, other, vocals). Needs ffmpeg."""
    stem_file = Path(stem_file)
    if not stem_file.is_file():
        raise ParameterError(f"expected a .stem.mp4 file, got {stem_file} (not found)")
    exe = _ffmpeg()
    names = list(MUSDB_STEMS)
    meta = stem_file.parent / "default_metadata.json"
    if meta.is_file():
        try:
            listed = [str(s["name"]).lower() for s in json.loads(meta.read_text())["stems"]]
            names = listed or names
        except (ValueError, KeyError, TypeError):
            pass
    folder = make_folder(out)
    track = stem_file.name.removesuffix(".stem.mp4").replace(" ", "_")
    paths: dict[str, Path] = {}
    for k, name in enumerate(names, start=1):
        target = folder / f"{track}.{name}.wav"
        cmd = [exe, "-v", "error", "-y", "-i", str(stem_file), "-map", f"0:a:{k}", "-ac", "1", "-ar", str(CLIP_SR)]
        done = subprocess.run([*cmd, str(target)], capture_output=True, text=True, check=False)
        if done.returncode != 0 or not target.is_file():
            msg = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise MusicLensError(f"ffmpeg could not decode stem {k} ({name}) of {stem_file}: {msg[0]}")
        paths[name] = target
    return paths


def shared_sources(root: str | os.PathLike[str], work: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """The instrument sources in the shared data root: instrument -> audio files.

    The musdb18 excerpt's four stems are decoded into ``work`` (ffmpeg); the solo clips and
    instrument samples are listed by :data:`SHARED_GLOBS`. The phenicx anechoic excerpts are
    1 s long, shorter than a clip, and are not used."""
    audio_root = Path(root) / "audio"
    stems = sorted((audio_root / MUSDB_DIR).glob("*.stem.mp4"))
    if not stems:
        raise ParameterError(f"expected a musdb18 .stem.mp4 in {audio_root / MUSDB_DIR}, found none")
    out: dict[str, list[Path]] = {k: [] for k in SHARED_GLOBS}
    for stem_file in stems:
        for name, path in decode_stems(stem_file, work).items():
            out.setdefault(name, []).append(path)
    for instrument, globs in SHARED_GLOBS.items():
        for g in globs:
            out[instrument] += sorted(audio_root.glob(g))
    return {k: v for k, v in out.items() if v}


def folder_sources(folder: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """An instrument folder ``folder/<instrument>/**/<audio>`` -> instrument -> audio files."""
    from musiclens.core.audio import AUDIO_EXTENSIONS

    folder = Path(folder)
    out: dict[str, list[Path]] = {}
    for d in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
        if files:
            out[d.name] = files
    if not out:
        raise ParameterError(
            f"--data {folder} holds no sub-folder of audio files: expected one sub-folder per instrument "
            "(e.g. bass/, drums/) or the shared data root (with audio/musdb18-stem-stempeg)"
        )
    return out


def cut_clips(
    sources: dict[str, list[Path]],
    out: str | os.PathLike[str],
    *,
    clips_per_source: int,
    clips_per_instrument: int,
    relative_to: Path | None = None,
) -> tuple[list[Clip], list[str]]:
    """Cut every source into non-overlapping :data:`CLIP_S` s clips, mono at :data:`CLIP_SR` Hz,
    at most ``clips_per_source`` per file and ``clips_per_instrument`` per instrument (taken
    round-robin over the files, so every source gives clips before any gives two); write
    ``out/<instrument>/<n>.wav`` and ``out/labels.csv`` (file, label, track = source).

    Returns (clips, notes): the notes say which files gave nothing (too short, silent)."""
    from musiclens.core import audio

    folder = make_folder(out)
    clips: list[Clip] = []
    notes: list[str] = []
    for instrument, files in sources.items():
        per_file: list[list[tuple[np.ndarray, float, str]]] = []
        silent = 0
        for f in files:
            source = str(f.relative_to(relative_to)) if relative_to and f.is_relative_to(relative_to) else f.name
            y, _ = audio.load(f, sr=CLIP_SR, mono=True)
            n_clip = int(CLIP_S * CLIP_SR)
            n = int((len(y) + CLIP_TOLERANCE_S * CLIP_SR) // n_clip)
            if n == 0:
                notes.append(f"{instrument}: {source} is {len(y) / CLIP_SR:.2f} s, shorter than a {CLIP_S:g} s clip")
                continue
            got = []
            for k in range(n):
                seg = y[k * n_clip : (k + 1) * n_clip]
                rms = float(np.sqrt(np.mean(np.square(seg, dtype=np.float64))))
                if 20 * np.log10(max(rms, 1e-12)) < SILENCE_DB:
                    silent += 1
                    continue
                got.append((seg, k * CLIP_S, source))
            per_file.append(got[:clips_per_source])
        if silent:
            notes.append(f"{instrument}: {silent} silent {CLIP_S:g} s stretch(es) (below {SILENCE_DB:g} dBFS) left out")
        order = [c for k in range(clips_per_source) for got in per_file if k < len(got) for c in [got[k]]]
        for i, (seg, start, source) in enumerate(order[:clips_per_instrument]):
            path = folder / instrument / f"{instrument}_{i:02d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            audio.save(path, seg, CLIP_SR)
            clips.append(Clip(path, instrument, source, start))
    with (folder / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "track"])
        for c in clips:
            w.writerow([str(c.path.relative_to(folder)), c.instrument, c.source])
    return clips, notes


def build_instrument_folder(
    data: str | os.PathLike[str], out: str | os.PathLike[str], *, quick: bool = False
) -> tuple[list[Clip], list[str], list[Path]]:
    """The clips of the study from ``data`` (an instrument folder or the shared data root),
    written under ``out/clips`` (the decoded musdb18 stems under ``out/stems``).

    Returns (clips of the instruments with at least two clips, notes on what was left out,
    the decoded stem WAVs). Raises :class:`ParameterError` when fewer than two instruments
    have two clips (a same- and a different-instrument pair need two of each)."""
    data = Path(data)
    if not data.is_dir():
        raise ParameterError(
            f"--data must be a folder with one sub-folder per instrument or the shared data root, got {data}"
        )
    out = Path(out)
    stems: list[Path] = []
    unused: list[str] = []
    if is_shared_root(data):
        sources = shared_sources(data, out / "stems")
        stems = sorted((out / "stems").glob("*.wav"))
        rel = data / "audio"
        unused.append(
            "not used from the shared data: the phenicx anechoic excerpts (1 s), the drum-kit one-shots and "
            "the single bass-string, conga, hand-drum and kalimba notes (under 2 s) are shorter than a clip; "
            "the filosax backing tracks, the jtd raw mix and the librosa recordings other than the trumpet are mixtures"
        )
    else:
        sources = folder_sources(data)
        rel = data
    clips_dir = out / "clips"
    if clips_dir.exists():
        shutil.rmtree(clips_dir)
    s = SETTINGS[quick]
    clips, cut_notes = cut_clips(
        sources,
        clips_dir,
        clips_per_source=int(s["clips_per_source"]),
        clips_per_instrument=int(s["clips_per_instrument"]),
        relative_to=rel,
    )
    notes = unused + cut_notes
    counts: dict[str, int] = {}
    for c in clips:
        counts[c.instrument] = counts.get(c.instrument, 0) + 1
    few = sorted(k for k in sources if counts.get(k, 0) < 2)
    for k in few:
        notes.append(f"{k}: {counts.get(k, 0)} clip(s) of {CLIP_S:g} s, needs 2: left out")
    keep = [c for c in clips if counts[c.instrument] >= 2]
    kept = sorted({c.instrument for c in keep})
    if len(kept) < 2:
        raise ParameterError(
            f"--data {data}: expected at least two instruments with two or more {CLIP_S:g} s clips each, got "
            + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no clips")
        )
    if few:  # the training folder lists only the instruments studied
        _rewrite_labels(clips_dir, keep)
    return keep, notes, stems


def _rewrite_labels(folder: Path, clips: list[Clip]) -> None:
    with (folder / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "track"])
        for c in clips:
            w.writerow([str(c.path.relative_to(folder)), c.instrument, c.source])


def pairs_of(labels: Sequence[str], control_per_pair: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(same-instrument pairs: every pair within an instrument; different-instrument pairs:
    for every two instruments A, B, clip k of A with clip k of B for k < ``control_per_pair``)."""
    from musiclens.core.interpret.similarity import class_pairs

    same = [p for ps in class_pairs(list(labels)).values() for p in ps]
    idx: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        idx.setdefault(lab, []).append(i)
    names = sorted(idx)
    diff = [
        (idx[a][k], idx[b][k])
        for ia, a in enumerate(names)
        for b in names[ia + 1 :]
        for k in range(min(control_per_pair, len(idx[a]), len(idx[b])))
    ]
    return same, diff


# ---------------------------------------------------------------------------- the similarity


def input_similarity(xs: Sequence[Any], pairs: Sequence[tuple[int, int]]) -> dict[str, np.ndarray]:
    """The metrics of the front-end inputs themselves, (1, C, F, T) each (cut to the shortest
    T), for ``pairs`` -> metric -> (P,): the "input" point of the depth curves (CKA reads the
    input as F·T positions × C channels)."""
    import torch

    from musiclens.core.interpret import similarity as sim

    t = min(int(x.shape[-1]) for x in xs)
    a = torch.cat([xs[i][..., :t] for i, _ in pairs]).double()
    b = torch.cat([xs[j][..., :t] for _, j in pairs]).double()
    return {
        "pearson": sim.pearson(a, b).numpy(),
        "cosine": sim.cosine(a, b).numpy(),
        "mse_max": sim.mse_max(a, b).numpy(),
        "cka": sim.linear_cka(a, b).numpy(),
        "cka_baseline": sim.cka_permutation_baseline(a, b).numpy(),
    }


def model_similarity(
    model: Any, clips: Sequence[Clip], pairs: Sequence[tuple[int, int]], ladder: Sequence[tuple[str, str, int | None]]
) -> Generator[Progress, None, dict[str, np.ndarray]]:
    """Every clip read once (one patch, :func:`~musiclens.core.analyses.similarity.read_features`),
    run once through ``model``; the metrics of ``pairs`` at the input and at each layer of
    ``ladder`` -> metric -> (P, 1 + L) (column 0: the input), plus ``cka_above_baseline``.

    Yields a Progress per clip read and per 10 % of the comparisons (payload: (done, total))."""
    from musiclens.core.analyses.similarity import read_features
    from musiclens.core.interpret.similarity import pairwise_similarity_steps

    xs = []
    for k, c in enumerate(clips, start=1):
        xs.append(read_features(model, c.path, pad=True))
        yield Progress(message=f"{model.name}: read {c.path.name}", payload=(k, len(clips) + 1))
    first = input_similarity(xs, pairs)
    layers = [name for name, _, _ in ladder]
    steps = pairwise_similarity_steps(model, xs, pairs, layers=layers, metrics=METRICS, baseline=True)
    while True:
        try:
            done, total = next(steps)
        except StopIteration as stop:
            curve = stop.value
            break
        if done % max(1, total // 10) == 0:
            yield Progress(message=f"{model.name}: compared {done}/{total} (pair, layer)")
    missing = [n for n in layers if n not in curve.layers]
    if missing:
        raise MusicLensError(f"{model.name} has no layer(s) {missing} to compare")
    order = [curve.layers.index(n) for n in layers]
    out = {k: np.column_stack([first[k], curve.values[k][:, order]]) for k in first}
    out["cka_above_baseline"] = out["cka"] - out["cka_baseline"]
    yield Progress(message=f"{model.name}: compared", payload=(len(clips) + 1, len(clips) + 1))
    return out


#: the summary rows of a metric's curves (every other key is an instrument)
SAME, CROSS, DIFFERENT = "same (mean of instruments)", "same instrument, other source", "different instruments"
SUMMARY_KEYS = (SAME, CROSS, DIFFERENT)


def curves(
    values: dict[str, np.ndarray],
    labels: Sequence[str],
    same: Sequence[tuple[int, int]],
    n_same: int,
    sources: Sequence[str] | None = None,
) -> dict[str, dict[str, list[float | None]]]:
    """metric -> {instrument: mean over its same-instrument pairs, :data:`SAME`: the mean of
    those curves, :data:`CROSS`: the same over the pairs cut from different source files (when
    ``sources`` are given and such pairs exist), :data:`DIFFERENT`: the control's
    mean} as (1 + L,) lists. ``values``: metric -> (P, 1 + L), the ``n_same`` same-instrument
    pairs first."""
    from musiclens.core.analyses.results import mean_curves

    per = {
        lab: mean_curves(values, [p for p in range(n_same) if labels[same[p][0]] == lab])
        for lab in sorted({labels[i] for i, _ in same[:n_same]})
    }
    stacked = {k: np.stack([c[k] for c in per.values()]) for k in values}
    mean_same = mean_curves(stacked)
    # cross-source pairs: weighted like SAME, the mean of each instrument's mean
    per_cross = {}
    for lab in per:
        rows = [p for p in range(n_same) if labels[same[p][0]] == lab and _cross(same[p], sources)]
        if rows:
            per_cross[lab] = mean_curves(values, rows)
    cross = mean_curves({k: np.stack([c[k] for c in per_cross.values()]) for k in values}) if per_cross else None
    control = mean_curves(values, slice(n_same, None)) if len(values["pearson"]) > n_same else None
    out: dict[str, dict[str, list[float | None]]] = {}
    for k in values:
        entry = {lab: _list(c[k]) for lab, c in per.items()}
        entry[SAME] = _list(mean_same[k])
        entry[CROSS] = [] if cross is None else _list(cross[k])
        entry[DIFFERENT] = [] if control is None else _list(control[k])
        out[k] = entry
    return out


def _cross(pair: tuple[int, int], sources: Sequence[str] | None) -> bool:
    return sources is not None and sources[pair[0]] != sources[pair[1]]


def _list(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(x) else round(float(x), 6) for x in a]


def _as_similar(metric: str, xs: Sequence[float | None]) -> np.ndarray:
    """Values turned so that larger = more similar (mse_max negated), None -> NaN."""
    a = np.array([np.nan if x is None else x for x in xs], dtype=float)
    return a if HIGHER_IS_SIMILAR.get(metric, True) else -a


def _trend(curve: np.ndarray) -> dict[str, Any]:
    """Rise and plateau of a curve over depth (larger = more similar; the last point is conv 4,
    the one before it conv 3): Spearman rho against the depth index, the first-to-last change,
    ``rises`` (rho > 0 and the change > 0), the share of the change reached one step before the
    end (conv 3) and ``plateau_after_conv3`` (rises and that share >= :data:`PLATEAU_SHARE`)."""
    from scipy.stats import spearmanr

    ok = np.isfinite(curve)
    rho = float(spearmanr(np.arange(len(curve))[ok], curve[ok]).statistic) if ok.sum() > 2 else float("nan")
    change = float(curve[-1] - curve[0])
    share = float((curve[-2] - curve[0]) / change) if change != 0 else float("nan")
    rises = bool(rho > 0 and change > 0)
    return {
        "spearman_rho": rho,
        "change": change,
        "rises": rises,
        "conv3_share_of_change": share,
        "plateau_after_conv3": bool(rises and share >= PLATEAU_SHARE),
    }


def claims_of(
    curve: dict[str, dict[str, list[float | None]]], ladder: Sequence[tuple[str, str, int | None]]
) -> dict[str, Any]:
    """The claims, tested per metric on one model's mean same-instrument curve (index 0 = the
    input; conv k at its ladder place): :func:`_trend` over input, conv 1..4 (``from_input``)
    and over conv 1..4 (``over_conv``); the same-minus-different gap (all same-instrument pairs,
    and those cut from different sources) at input, conv 1..4.

    bass : bass's input similarity, its rank among the instruments at the input (1 = most
        similar), the mean of the others and the different-instrument control at the input."""
    conv_cols = [0] + [1 + i for i, (_, _, c) in enumerate(ladder) if c is not None]
    out: dict[str, Any] = {}
    for metric, entry in curve.items():
        if metric == "cka_baseline":
            continue
        same = _as_similar(metric, entry[SAME])[conv_cols]
        diff = _as_similar(metric, entry[DIFFERENT])
        gap = same - diff[conv_cols] if len(diff) else np.full_like(same, np.nan)
        m: dict[str, Any] = {
            "from_input": _trend(same),  # input, conv 1..4
            "over_conv": _trend(same[1:]),  # conv 1..4
            "gap_same_minus_different": _list(gap),
            "gap_rises": bool(np.isfinite(gap[[0, -1]]).all() and gap[-1] > gap[0]),
        }
        if entry[CROSS] and len(diff):
            cross = _as_similar(metric, entry[CROSS])[conv_cols] - diff[conv_cols]
            m["gap_other_source_minus_different"] = _list(cross)
            m["gap_other_source_rises"] = bool(np.isfinite(cross[[0, -1]]).all() and cross[-1] > cross[0])
        if "bass" in entry:
            insts = {k: v for k, v in entry.items() if k not in SUMMARY_KEYS}
            at_input = {k: float(_as_similar(metric, v)[0]) for k, v in insts.items()}
            ranked = sorted(at_input, key=lambda k: -at_input[k])
            others = [v for k, v in at_input.items() if k != "bass"]
            bass = _as_similar(metric, entry["bass"])[conv_cols]
            m["bass"] = {
                "input": entry["bass"][0],
                "rank_at_input": ranked.index("bass") + 1,
                "instruments": len(ranked),
                "others_mean_input": float(np.mean(others)) * (1 if HIGHER_IS_SIMILAR.get(metric, True) else -1),
                "different_instruments_input": entry[DIFFERENT][0] if len(diff) else None,
                "input_to_conv4_change": float(bass[-1] - bass[0]),
            }
        out[metric] = m
    return out


# ---------------------------------------------------------------------------- training


def train_choi(clips_dir: Path, out: Path, *, epochs: int) -> Generator[Progress, None, tuple[Any, dict[str, Any]]]:
    """Train a ``choi-cnn`` on the clips folder (its ``labels.csv``: split by source file) with
    :func:`musiclens.core.training.train` (CPU, seed 0) and save it to ``out``
    -> (the model, the run's summary). The patch is :data:`CHOI_PATCH_S` s at hop
    :data:`CHOI_HOP` (the clips are 3 s; the default 10 s patch at hop 512 would not fit)."""
    from musiclens.core.features import logmel_frontend
    from musiclens.core.training.entry import train
    from musiclens.core.training.events import Finished
    from musiclens.core.training.loop import TrainConfig

    fe = logmel_frontend(sample_rate=22050, n_fft=2048, hop=CHOI_HOP, n_mels=80, top_db=None)
    config = TrainConfig(epochs=epochs, batch_size=8, lr=1e-3, seed=0, patience=None, device="cpu")
    finished = None
    for ev in train(
        clips_dir,
        out,
        "choi-cnn",
        task="genre",
        config=config,
        cache=None,
        patch_seconds=CHOI_PATCH_S,
        model_params={"front_end": fe},
    ):
        if isinstance(ev, Finished):
            finished = ev
        elif getattr(ev, "kind", "") == "epoch":
            yield Progress(message=f"choi-cnn: {ev.line()}", payload=(int(ev.epoch), int(ev.epochs)))
    if finished is None or finished.cancelled:
        raise MusicLensError("training the choi-cnn ended without a model")
    return finished.model, finished.summary


#: the name of the untrained choi-cnn control in the report
UNTRAINED = "choi-cnn-untrained"


def untrained_choi(trained: Any, seed: int = 0) -> Any:
    """The choi-cnn ``trained`` was before training: the same architecture and front end built
    after ``torch.manual_seed(seed)`` (what the training run did), with ``trained``'s input
    standardisation copied so that both read the same scaled input; batch norms at their
    initial statistics. A control for what depth alone does to the similarity."""
    import torch

    from musiclens.core.models import study

    torch.manual_seed(seed)
    m = study.create(
        "choi-cnn", list(trained.labels), front_end=trained.front_end, patch_seconds=CHOI_PATCH_S, model_name=UNTRAINED
    )
    if m.patch_frames != trained.patch_frames:
        raise MusicLensError(
            f"the untrained choi-cnn reads {m.patch_frames} frames, the trained {trained.patch_frames}"
        )
    m.module("input norm").load_state_dict(trained.module("input norm").state_dict())
    m.net.eval()
    return m


# ---------------------------------------------------------------------------- the report


def _figures(folder: Path, per_model: dict[str, dict[str, Any]]) -> list[Path]:
    plt = pyplot()
    figs = []
    panels = [
        ("pearson", "Pearson"),
        ("cosine", "cosine"),
        ("mse_max", "max-normalised MSE (lower = more similar)"),
        ("cka", "linear CKA (dotted: permutation baseline)"),
    ]
    for model_name, res in per_model.items():
        xlabels = ["input", *res["depth"]]
        fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), sharex=True)
        cmap = plt.get_cmap("tab10")
        for ax, (metric, title) in zip(axes.flat, panels, strict=True):
            entry = res["curves"][metric]
            insts = [k for k in entry if k not in SUMMARY_KEYS]
            x = np.arange(len(xlabels))
            for i, k in enumerate(insts):
                ax.plot(x, _nan(entry[k]), "-o", ms=3, lw=1, color=cmap(i % 10), label=k)
            ax.plot(x, _nan(entry[SAME]), "-", lw=3, color="black", label="same (mean)")
            if entry[CROSS]:
                ax.plot(x, _nan(entry[CROSS]), "-.", lw=2, color="black", label="same, other source")
            if entry[DIFFERENT]:
                ax.plot(x, _nan(entry[DIFFERENT]), "--", lw=2, color="grey", label="different instruments")
            if metric == "cka":
                base = res["curves"]["cka_baseline"][SAME]
                ax.plot(x, _nan(base), ":", lw=2, color="black", label="baseline (same)")
            ax.axvline(res["conv3_index"], color="red", lw=0.8, ls=":")
            ax.set_title(title, fontsize=10)
            ax.set_xticks(x, xlabels, rotation=35, ha="right", fontsize=8)
            ax.grid(alpha=0.3)
        axes.flat[0].legend(fontsize=7, ncol=2)
        fig.suptitle(f"{model_name}: same-instrument similarity over depth (red: the third conv layer)")
        fig.tight_layout()
        path = folder / f"similarity_vs_depth_{model_name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        figs.append(path)
    return figs


def _nan(xs: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in xs], dtype=float)


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _table(res: dict[str, Any], metric: str) -> list[str]:
    """Markdown: the mean curves of one metric (rows: instruments, same mean, control)."""
    head = ["input", *res["depth"]]
    lines = ["| pairs | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for k, v in res["curves"][metric].items():
        if not v:
            continue
        n = res["pairs"].get(k)
        name = f"{k} ({n})" if n is not None else k
        lines.append(f"| {name} | " + " | ".join(_fmt(x) for x in v) + " |")
    return lines


def _gap_table(res: dict[str, Any]) -> list[str]:
    """Markdown: same-instrument mean minus the different-instrument control per metric, turned
    so that positive = same-instrument pairs more similar (max-normalised MSE: negated)."""
    head = ["input", *res["depth"]]
    lines = ["| metric | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for metric in ("pearson", "cosine", "mse_max", "cka", "cka_above_baseline"):
        entry = res["curves"][metric]
        if not entry[DIFFERENT]:
            continue
        for key, name in ((SAME, metric), (CROSS, f"{metric}, other source")):
            if entry[key]:
                gap = _as_similar(metric, entry[key]) - _as_similar(metric, entry[DIFFERENT])
                lines.append(f"| {name} | " + " | ".join(_fmt(float(x)) for x in gap) + " |")
    return lines


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _ours(per_model: dict[str, dict[str, Any]], key: str) -> str:
    parts = []
    for name, res in per_model.items():
        c = res["claims"]
        if key == "rise":
            s = "; ".join(
                f"{m} {_yes(c[m]['from_input']['rises'])} (ρ {_fmt(c[m]['from_input']['spearman_rho'], 2)}) / "
                f"{_yes(c[m]['over_conv']['rises'])} (ρ {_fmt(c[m]['over_conv']['spearman_rho'], 2)})"
                for m in ("pearson", "cosine", "mse_max", "cka_above_baseline")
            )
            p = c["pearson"]
            gap = p["gap_same_minus_different"]
            g = f"{_yes(p['gap_rises'])} ({_fmt(gap[0], 2)} → {_fmt(gap[-1], 2)})"
            cross = p.get("gap_other_source_minus_different")
            if cross:
                g += f"; other-source pairs {_yes(p['gap_other_source_rises'])} "
                g += f"({_fmt(cross[0], 2)} → {_fmt(cross[-1], 2)})"
            parts.append(f"**{name}** (input→conv 4 / conv 1→4): {s}; same−different Pearson gap grows: {g}")
        elif key == "plateau":
            s = "; ".join(
                f"{m} {_yes(c[m]['from_input']['plateau_after_conv3'])} "
                f"({_fmt(c[m]['from_input']['conv3_share_of_change'], 2)}) / "
                f"{_yes(c[m]['over_conv']['plateau_after_conv3'])} "
                f"({_fmt(c[m]['over_conv']['conv3_share_of_change'], 2)})"
                for m in ("pearson", "cosine", "mse_max", "cka_above_baseline")
            )
            parts.append(f"**{name}** (input→conv 4 / conv 1→4; in brackets the share reached at conv 3): {s}")
        elif key == "bass":
            b = c["pearson"].get("bass")
            if b is None:
                parts.append(f"**{name}**: no bass clips")
            else:
                parts.append(
                    f"**{name}**: bass Pearson at the input {_fmt(b['input'])}, rank {b['rank_at_input']}/"
                    f"{b['instruments']} (others {_fmt(b['others_mean_input'])}, different instruments "
                    f"{_fmt(b['different_instruments_input'])}); input→conv 4 change {_fmt(b['input_to_conv4_change'])}"
                )
        elif key == "metrics":
            votes = [c[m]["over_conv"]["rises"] for m in ("pearson", "cosine", "mse_max")]
            parts.append(f"**{name}**: {sum(votes)}/3 metrics rise over conv 1→4")
    return "<br>".join(parts)


def _report(
    per_model: dict[str, dict[str, Any]],
    clips: list[Clip],
    notes: list[str],
    data: Path,
    shared: bool,
    quick: bool,
    train_summary: dict[str, Any],
    seconds: float,
) -> str:
    counts: dict[str, int] = {}
    for c in clips:
        counts[c.instrument] = counts.get(c.instrument, 0) + 1
    lines = [
        "# Study 5: instrument similarity over depth",
        "",
        f"Data: `{data}` ({'the shared data root' if shared else 'an instrument folder'}); "
        f"{len(clips)} clips of {CLIP_S:g} s in {len(counts)} instruments: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + f". {'Quick run' if quick else 'Full run'}, {seconds:.0f} s.",
        "",
        "## The study's claims beside ours",
        "",
        *claims_table(
            [
                (q, *_CLAIMS[k], _ours(per_model, k))
                for q, k in (
                    ("rise with depth", "rise"),
                    ("plateau after conv 3", "plateau"),
                    ("bass at the input", "bass"),
                    ("the three metrics", "metrics"),
                )
            ]
        ),
        "",
        f"Tests, over input→conv 4 and over conv 1→4: *rises* = Spearman ρ(depth, similarity) > 0 and "
        f"conv 4 more similar than the first point (max-normalised MSE: lower); *plateau* = rises and "
        f"conv 3 reaches at least {PLATEAU_SHARE:.0%} of the change. `cka_above_baseline` is linear CKA "
        "minus its exact permutation baseline. MusiCNN's four conv stages are its front end and its "
        "three mid-end layers (the mid end's conv 2 and 3 add a residual).",
        "",
        f"choi-cnn trained on these clips (split by source file): test accuracy "
        f"{_fmt(train_summary.get('test_accuracy'))} on {train_summary.get('patches', {}).get('test', 0)} "
        f"patches (chance {_fmt(train_summary.get('chance'))}), train {_fmt(train_summary.get('train_accuracy'))}, "
        f"{train_summary.get('epochs_run')} epochs.",
        "",
    ]
    for name, res in per_model.items():
        lines += [f"## {name}", "", f"![{name}](similarity_vs_depth_{name}.png)", ""]
        lines += [
            "### same − different instruments (positive: same-instrument pairs more similar)",
            "",
            *_gap_table(res),
            "",
        ]
        for metric in ("pearson", "cosine", "mse_max", "cka", "cka_baseline"):
            lines += [f"### {metric} (mean over pairs; in brackets: pairs)", "", *_table(res, metric), ""]
    lines += [
        "## Where the data differ from the study's",
        "",
        f"- Clips of {CLIP_S:g} s cut from a handful of sources (excerpts of 3–24 s), not whole stems of "
        "a multitrack set: one musdb18 excerpt (6 s, four stems) plus solo clips and single-note samples; "
        "several clips of one instrument come from one recording or one sampled instrument.",
        "- The choi-cnn is trained on the same few clips (split by source file) and measured on all of them; "
        f"its patch is {CHOI_PATCH_S:g} s at hop {CHOI_HOP} (the study's 10 s at hop 512 does not fit the clips); "
        "its conv 4 output has 3 × 1 positions, so CKA there is close to its permutation baseline by "
        "construction: read `cka_above_baseline`.",
        "- The study used a Choi-style CNN only; MusiCNN (MSD) is added as a pretrained tagger, and "
        f"`{UNTRAINED}` (the same net with its initial weights) as a control for what depth does without training.",
        f"- Levels are as recorded (no normalisation); silent clips (< {SILENCE_DB:g} dBFS) are left out.",
    ]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- the runner


def _steps(gen: Generator[Progress, None, Any], base: int, total: int) -> Generator[Progress, None, Any]:
    """Re-yield ``gen``'s steps with their ``(done, n)`` payloads counted from ``base`` of the
    study's ``total`` steps (steps without a payload pass as they are); return its value."""
    while True:
        try:
            step = next(gen)
        except StopIteration as stop:
            return stop.value
        if step.payload is not None:
            done = base + int(step.payload[0])
            step = Progress(fraction=done / total, message=step.message, payload=(done, total))
        yield step


def instrument_similarity(
    out: str | os.PathLike[str], *, quick: bool = False, data: str | os.PathLike[str] | None = None
) -> Generator[Progress, None, StudyReport]:
    """Run the study; write report.md, the figures, numbers.json, the clips, the decoded stems
    and the trained choi-cnn (``models/choi-cnn``) to ``out``.

    data : an instrument folder (one sub-folder per instrument) or the shared data root.
    quick : one clip per source, four per instrument, a 4-epoch choi-cnn."""
    import torch

    from musiclens.core.models import registry

    if data is None:
        raise ParameterError(
            "instrument-similarity needs --data: a folder with one sub-folder per instrument, "
            "or the shared data root (with audio/musdb18-stem-stempeg)"
        )
    t0 = time.perf_counter()
    data = Path(data)
    if not data.is_dir():
        raise ParameterError(
            f"--data must be a folder with one sub-folder per instrument or the shared data root, got {data}"
        )
    if is_shared_root(data):
        _ffmpeg()
    else:
        folder_sources(data)
    created = not Path(out).exists()
    folder = make_folder(out)
    s = SETTINGS[quick]
    epochs = int(s["epochs"])
    try:  # no step before the data is accepted: a refused --data prints one line only
        clips, notes, stems = build_instrument_folder(data, folder, quick=quick)
    except MusicLensError:
        if created:  # a refused --data leaves no report folder behind
            shutil.rmtree(folder, ignore_errors=True)
        raise
    labels = [c.instrument for c in clips]
    same, diff = pairs_of(labels, int(s["control_per_pair"]))
    pairs = same + diff
    n_pairs = {lab: sum(1 for i, _ in same if labels[i] == lab) for lab in sorted(set(labels))}
    n_pairs[SAME] = len(same)
    n_pairs[CROSS] = sum(1 for i, j in same if clips[i].source != clips[j].source)
    n_pairs[DIFFERENT] = len(diff)
    # steps: the clips (1), MusiCNN (a read per clip + the comparisons), the training epochs,
    # the choi-cnn (the same), the report (1)
    per = len(clips) + 1
    total = 1 + per + epochs + 2 * per + 1

    per_model: dict[str, dict[str, Any]] = {}

    def summarise(name: str, values: dict[str, np.ndarray], ladder_of: str | None = None) -> None:
        ladder = LADDERS[ladder_of or name]
        curve = curves(values, labels, same, len(same), [c.source for c in clips])
        per_model[name] = {
            "depth": [lab for _, lab, _ in ladder],
            "layers": [layer for layer, _, _ in ladder],
            "conv3_index": 1 + [c for _, _, c in ladder].index(3),
            "curves": curve,
            "claims": claims_of(curve, ladder),
            "pairs": n_pairs,
        }

    yield Progress(fraction=1 / total, message=f"cut {len(clips)} clips; loading MSD_musicnn", payload=(1, total))
    musicnn = registry.load("MSD_musicnn", device="cpu")
    with torch.no_grad():
        values = yield from _steps(model_similarity(musicnn, clips, pairs, LADDERS["MSD_musicnn"]), 1, total)
    summarise("MSD_musicnn", values)
    del musicnn

    model_dir = folder / "models" / "choi-cnn"
    choi, summary = yield from _steps(train_choi(folder / "clips", model_dir, epochs=epochs), 1 + per, total)
    choi.name = "choi-cnn"
    with torch.no_grad():
        values = yield from _steps(model_similarity(choi, clips, pairs, LADDERS["choi-cnn"]), 1 + per + epochs, total)
    summarise("choi-cnn", values)

    # control: the same net with its initial weights (the run's seed), the trained input scaling
    untrained = untrained_choi(choi)
    with torch.no_grad():
        values = yield from _steps(
            model_similarity(untrained, clips, pairs, LADDERS["choi-cnn"]), 1 + 2 * per + epochs, total
        )
    summarise(UNTRAINED, values, "choi-cnn")

    yield Progress(fraction=(total - 1) / total, message="writing the report", payload=(total - 1, total))
    figs = _figures(folder, per_model)
    seconds = time.perf_counter() - t0
    text = _report(per_model, clips, notes, data, is_shared_root(data), quick, summary, seconds)
    numbers: dict[str, Any] = {
        "study": "instrument-similarity",
        "quick": quick,
        "data": str(data),
        "clip_seconds": CLIP_S,
        "clips": [
            {
                "file": str(c.path.relative_to(folder)),
                "instrument": c.instrument,
                "source": c.source,
                "start_s": c.start_s,
            }
            for c in clips
        ],
        "pairs": {
            "same": [[int(a), int(b)] for a, b in same],
            "different": [[int(a), int(b)] for a, b in diff],
        },
        "metrics": [*METRICS, "cka_baseline", "cka_above_baseline"],
        "models": per_model,
        "choi_cnn_training": {
            k: summary.get(k)
            for k in (
                "classes",
                "split",
                "patches",
                "train_accuracy",
                "val_accuracy",
                "test_accuracy",
                "chance",
                "epochs_run",
            )
        },
        "notes": notes,
        "seconds": round(seconds, 1),
        "open_in_window": {
            "models": [str(model_dir.relative_to(folder))],
            # the decoded stems and the first clip of each instrument (all clips: clips/<instrument>/)
            "audio": [str(p.relative_to(folder)) for p in stems]
            + [
                str(c.path.relative_to(folder))
                for k, c in enumerate(clips)
                if k == 0 or clips[k - 1].instrument != c.instrument
            ],
            "midi": [],
        },
    }
    extra = [model_dir, *stems, folder / "clips"]
    report = write_report("instrument-similarity", folder, text, numbers, figs, extra)
    yield Progress(fraction=1.0, message=f"wrote {folder}", payload=(total, total))
    return report
