"""Folder datasets: layouts, bad input, by-track splits (never leaking), stems, feature cache."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musiclens.core.errors import MusicLensError
from musiclens.core.features import logmel_frontend
from musiclens.core.training import data

torch.set_num_threads(1)
SR = 8000
FE = logmel_frontend(sample_rate=SR, n_fft=256, hop=128, n_mels=16, top_db=None)
P = 16  # frames per patch (~0.25 s)


def write_tone(
    path: Path,
    freq: float,
    seconds: float = 1.0,
    *,
    sr: int = SR,
    amp: float = 0.3,
    seed: int = 0,
    fmt: str | None = None,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    noise = np.random.default_rng(seed).standard_normal(len(t)) * 0.01
    sf.write(str(path), (amp * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32), sr, format=fmt)
    return path


def genre_folder(root: Path, labels=("high", "low"), per_label: int = 5, seconds: float = 1.0) -> Path:
    for k, lab in enumerate(labels):
        for i in range(per_label):
            write_tone(root / lab / f"{lab}.{i:05d}.wav", 300.0 * (k + 1) + 20 * i, seconds, seed=i)
    return root


# ----------------------------------------------------------------------------- layouts
def test_gtzan_layout_is_scanned_with_labels_from_folders(tmp_path):
    root = genre_folder(tmp_path / "g", labels=("rock", "blues", "jazz"), per_label=3)
    write_tone(root / "jazz" / "sub" / "extra.au", 500.0, fmt="AU")  # GTZAN's .au, nested
    (root / ".hidden").mkdir()
    write_tone(root / ".hidden" / "x.wav", 100.0)
    write_tone(root / "jazz" / ".DS_x.wav", 100.0)
    (root / "empty_label").mkdir()
    ds = data.scan_folder(root)
    assert ds.labels == ["blues", "jazz", "rock"] and ds.kind == "folder" and not ds.multilabel
    ids = [t.id for t in ds.tracks]
    assert len(ids) == 10 and "jazz/sub/extra.au" in ids
    assert not any(".hidden" in i or ".DS_x" in i for i in ids)
    assert all(ds.labels[t.labels[0]] == t.id.split("/")[0] for t in ds.tracks)


def test_folder_with_no_audio_says_what_it_looked_for(tmp_path):
    (tmp_path / "d" / "rock").mkdir(parents=True)
    (tmp_path / "d" / "rock" / "notes.txt").write_text("hi")
    with pytest.raises(MusicLensError, match=r"no audio files found in .*\.wav"):
        data.scan_folder(tmp_path / "d")
    write_tone(tmp_path / "loose" / "a.wav", 200.0)
    with pytest.raises(MusicLensError, match="need one sub-folder per label"):
        data.scan_folder(tmp_path / "loose")
    with pytest.raises(MusicLensError, match="not found"):
        data.scan_folder(tmp_path / "nope")
    with pytest.raises(MusicLensError, match="is a file"):
        data.scan_folder(tmp_path / "loose" / "a.wav")


def test_one_class_only_is_refused(tmp_path):
    root = genre_folder(tmp_path / "g", labels=("rock",), per_label=3)
    with pytest.raises(MusicLensError, match=r"only one class \('rock'\).*at least two"):
        data.scan_folder(root)


def test_unreadable_files_are_skipped_and_listed(tmp_path):
    root = genre_folder(tmp_path / "g", per_label=3)
    (root / "high" / "garbage.wav").write_bytes(b"RIFF....not audio at all" * 10)
    (root / "low" / "empty.wav").write_bytes(b"")
    (root / "low" / "renamed.mp3").write_text("this is text")
    ds = data.scan_folder(root)
    assert len(ds.tracks) == 6
    skipped = {Path(p).name: r for p, r in ds.skipped}
    assert set(skipped) == {"garbage.wav", "empty.wav", "renamed.mp3"}
    assert "empty" in skipped["empty.wav"] and "not a readable audio file" in skipped["garbage.wav"]
    # and the whole pipeline still runs, listing them
    split = data.split_by_track(ds, seed=0)
    prepared = data.prepare_all(ds, split, FE, P)
    assert {Path(p).name for p, _ in prepared.skipped} == set(skipped)


def test_only_unreadable_files_give_one_message(tmp_path):
    for lab in ("a", "b"):
        (tmp_path / lab).mkdir()
        (tmp_path / lab / "x.wav").write_bytes(b"nope")
    with pytest.raises(MusicLensError, match=r"no readable audio files .* all 2 were skipped"):
        data.scan_folder(tmp_path)


def test_labels_with_odd_characters(tmp_path):
    odd = "R&B ünï (live) 'n' ♪"
    root = tmp_path / "g"
    for lab in (odd, "hip-hop"):
        for i in range(3):
            write_tone(root / lab / f"{i}.wav", 300 + 100 * i)
    ds = data.scan_folder(root)
    assert odd in ds.labels
    assert json.loads(json.dumps(ds.labels, ensure_ascii=True)) == ds.labels
    # decomposed accents are normalised (NFC), surrounding spaces stripped
    assert data.check_label(unicodedata.normalize("NFD", " ünï ")) == "ünï"
    bad = tmp_path / "bad"
    genre_folder(bad, labels=("ok", "tab\there"), per_label=1)
    with pytest.raises(MusicLensError, match=r"label 'tab\\there' \(folder .*\) contains control"):
        data.scan_folder(bad)
    with pytest.raises(MusicLensError, match="empty label"):
        data.check_label("   ")
    with pytest.raises(MusicLensError, match="path separator"):
        data.check_label("a/b", where="labels.csv line 2")
    with pytest.raises(MusicLensError, match="invisible"):
        data.check_label("zero\u200bwidth")


def test_two_folders_with_the_same_label_after_normalisation(tmp_path):
    genre_folder(tmp_path, labels=("rock", "rock "), per_label=1)
    with pytest.raises(MusicLensError, match="same label 'rock'"):
        data.scan_folder(tmp_path)


def test_labels_csv_with_track_groups_and_multi_labels(tmp_path):
    root = tmp_path / "c"
    rows = ["file,label,track"]
    for i in range(8):
        for part in range(2):
            f = write_tone(root / "clips" / f"song{i}_part{part}.wav", 200 + 30 * i)
            rows.append(f"{f.relative_to(root)},{'calm' if i % 2 else 'angry'},song{i}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    ds = data.scan_folder(root)
    assert ds.labels == ["angry", "calm"] and len(ds.tracks) == 16
    split = data.split_by_track(ds, seed=3)
    where = {}
    for s, tracks in split.tracks.items():
        for t in tracks:
            song = t.id.split("::")[0]
            assert where.setdefault(song, s) == s, f"{song} is in two splits"
    assert sum(split.counts().values()) == 16
    (root / "labels.csv").write_text("file,label\nclips/song0_part0.wav,drums;bass\nclips/song1_part0.wav,bass\n")
    ml = data.scan_folder(root)
    assert ml.multilabel and ml.labels == ["bass", "drums"] and ml.tracks[0].labels == (1, 0)


# ----------------------------------------------------------------------------- splits
def test_split_by_track_never_leaks_and_is_seeded(tmp_path):
    root = genre_folder(tmp_path / "g", labels=("a", "b", "c"), per_label=10, seconds=1.2)
    ds = data.scan_folder(root)
    split = data.split_by_track(ds, seed=7)
    assert split.counts() == {"train": 24, "val": 3, "test": 3}  # per label 8/1/1
    ids = {s: set(split.ids()[s]) for s in data.SPLITS}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert ids["train"] | ids["val"] | ids["test"] == {t.id for t in ds.tracks}
    for s in ("val", "test"):  # stratified: every label in val and test
        assert {ds.tracks[[t.id for t in ds.tracks].index(i)].labels[0] for i in ids[s]} == {0, 1, 2}
    assert data.split_by_track(ds, seed=7).ids() == split.ids()
    assert data.split_by_track(ds, seed=8).ids() != split.ids()
    # patch level: every patch of a split comes from a track of that split, each track has several
    prepared = data.prepare_all(ds, split, FE, P)
    for s in data.SPLITS:
        ps = prepared.sets[s]
        patch_tracks = {ps.track_ids[k] for k in ps.track}
        assert patch_tracks == ids[s]
        assert len(ps) > len(patch_tracks)  # several patches per track, all in the same split
    with pytest.raises(Exception, match="summing to 1"):
        data.split_by_track(ds, fractions=(0.5, 0.1, 0.1))


# ----------------------------------------------------------------------------- stems
def musdb_folder(root: Path, tracks: dict[str, str], seconds: float = 2.0) -> Path:
    freqs = {"drums": 150.0, "bass": 60.0, "vocals": 900.0, "other": 2000.0}
    for name, split in tracks.items():
        for k, (stem, f) in enumerate(freqs.items()):
            path = root / split / name / f"{stem}.wav"
            write_tone(path, f, seconds, seed=k)
            if stem == "vocals" and name.endswith("0"):  # silent from the 3rd 31-frame segment on
                y, sr = sf.read(str(path), dtype="float32")
                y[62 * 128 :] = 0.0
                sf.write(str(path), y, sr)
        write_tone(root / split / name / "mixture.wav", 440.0, seconds)
    return root


def test_musdb_stems_are_mixed_into_every_combination_of_active_stems(tmp_path):
    root = musdb_folder(tmp_path / "m", {"t0": "train", "t1": "train", "t2": "train", "t3": "test"})
    ds = data.load_dataset(root, task="instruments")
    assert ds.kind == "stems" and ds.multilabel and ds.labels == ["drums", "bass", "vocals", "other"]
    split = data.split_by_track(ds, seed=0)
    assert [t.id for t in split.tracks["test"]] == ["test/t3"]  # musdb's own test split
    seg = 31  # frames per segment: 2 s = 126 frames -> 4 segments
    prepared = data.prepare_all(ds, split, FE, seg)
    everything = {s: prepared.sets[s] for s in data.SPLITS}
    per_track: dict[str, list[np.ndarray]] = {}
    for ps in everything.values():
        for k in range(len(ps)):
            per_track.setdefault(ps.track_ids[ps.track[k]], []).append(ps.y[k])
    for tid, ys in per_track.items():
        ys = np.stack(ys)
        n_seg = 2 if tid.endswith("0") else 4  # t0's vocals are silent in its 2nd half
        assert len(ys) == 15 * n_seg
        combos = {tuple(y) for y in ys}
        assert len(combos) == 15 and (0, 0, 0, 0) not in combos
        assert ys.sum(axis=0).tolist() == [8 * n_seg] * 4  # each stem in 8 of the 15 mixes
    # with require_all_stems=False, t0's second half keeps the 7 mixes without vocals
    loose = data.prepare_all(ds, split, FE, seg, require_all_stems=False)
    t0 = [ps for ps in loose.sets.values() if "train/t0" in ps.track_ids]
    n_t0 = sum(int((ps.track == ps.track_ids.index("train/t0")).sum()) for ps in t0)
    assert n_t0 == 15 * 2 + 7 * 2


def test_a_mix_is_the_sum_of_its_stems(tmp_path):
    root = musdb_folder(tmp_path / "m", {"t1": "train"})
    ds = data.load_dataset(root, task="instruments")
    split = data.Split({"train": ds.tracks, "val": [], "test": []}, 0, (1.0, 0.0, 0.0))
    ps = data.prepare_all(ds, split, FE, 31, mode="audio").sets["train"]
    drums_bass = next(k for k in range(len(ps)) if ps.y[k].tolist() == [1, 1, 0, 0])
    a, s = ps.index[drums_bass]
    stems = [sf.read(str(root / "train" / "t1" / f"{n}.wav"), dtype="float32")[0] for n in ("drums", "bass")]
    half = FE.n_fft // 2
    expect = stems[0] + stems[1]
    got = ps.arrays[a][half:-half]
    assert np.allclose(got, expect, atol=1e-6)


def test_stems_layout_errors(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(MusicLensError, match=r"no stem folders found .*musdb18-HQ layout"):
        data.scan_stems(tmp_path / "empty")
    root = musdb_folder(tmp_path / "m", {"t1": "train"})
    with pytest.raises(MusicLensError, match=r"stems the model does not know: \['other'\]"):
        data.scan_stems(root, labels=["drums", "bass", "vocals"])


# ----------------------------------------------------------------------------- cache
def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("MUSICLENS_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "musiclens"
    monkeypatch.setenv("MUSICLENS_CACHE", str(tmp_path / "mine"))
    assert data.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("MUSICLENS_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "musiclens"


def test_feature_cache_is_keyed_by_content_and_front_end(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICLENS_CACHE", str(tmp_path / "cache"))
    root = genre_folder(tmp_path / "g", per_label=3)
    ds = data.scan_folder(root)
    split = data.split_by_track(ds, seed=0)
    cache = data.FeatureCache()
    assert cache.root == tmp_path / "cache"
    first = data.prepare_all(ds, split, FE, P, cache=cache)
    assert (cache.hits, cache.misses) == (0, 6)
    assert len(list((tmp_path / "cache" / "features").rglob("*.npy"))) == 6
    again = data.FeatureCache()
    second = data.prepare_all(ds, split, FE, P, cache=again)
    assert (again.hits, again.misses) == (6, 0)
    idx = np.arange(len(first.sets["train"]))
    assert torch.equal(first.sets["train"].inputs(idx), second.sets["train"].inputs(idx))
    # a different front end is a different key; changed content is a different key
    other = data.FeatureCache()
    data.prepare_all(ds, split, FE.replace(n_mels=20), P, cache=other)
    assert other.misses == 6
    write_tone(root / "high" / "high.00000.wav", 999.0, seed=42)
    changed = data.FeatureCache()
    data.prepare_all(ds, split, FE, P, cache=changed)
    assert (changed.hits, changed.misses) == (5, 1)
    # a damaged cache file is recomputed, not trusted
    victim = healed_path = data.FeatureCache().path(
        data.FeatureCache.key([data.file_hash(root / "low" / "low.00001.wav")], FE.to_dict())
    )
    assert healed_path.is_file()
    victim.write_bytes(b"garbage")
    healed = data.FeatureCache()
    data.prepare_all(ds, split, FE, P, cache=healed)
    assert healed.misses == 1 and np.load(victim, allow_pickle=False).ndim == 3


def test_cached_features_equal_features_computed_per_batch(tmp_path):
    root = genre_folder(tmp_path / "g", per_label=3, seconds=1.5)
    ds = data.scan_folder(root)
    split = data.split_by_track(ds, seed=0)
    feats = data.prepare_all(ds, split, FE, P, cache=data.FeatureCache(tmp_path / "c"))
    audio = data.prepare_all(ds, split, FE, P, mode="audio")
    for s in data.SPLITS:
        a, b = feats.sets[s], audio.sets[s]
        assert np.array_equal(a.index, b.index) and np.array_equal(a.y, b.y)
        idx = np.arange(len(a))
        assert torch.allclose(a.inputs(idx), b.inputs(idx), atol=1e-4)
