"""``musiclens study genre-cnn``: a quick run on a synthetic genre folder, its report and numbers
checked against the files it wrote (the saved models re-run on their test tracks), the error
cases, and the real GTZAN folders merged by track."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import soundfile as sf

from musiclens.core.analyses.studies.genre_cnn import (
    ARCHS,
    STUDY_ACCURACY,
    load_genres,
    row_folds,
    segment_folds,
    split_rows,
    track_folds,
    wilson,
)

SR = 22050


def _write_genres(root, genres=("tones", "noise", "clicks"), n=3, seconds=6.5):
    """n clips per genre: steady tones, white noise, click trains (each clip a little different)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(SR * seconds)) / SR
    for g in genres:
        (root / g).mkdir(parents=True)
        for i in range(n):
            if g == "tones":
                y = 0.3 * np.sin(2 * np.pi * (300 + 100 * i) * t)
            elif g == "noise":
                y = 0.1 * rng.standard_normal(len(t))
            else:
                y = np.zeros(len(t))
                y[:: SR // (4 + i)] = 0.8
            sf.write(root / g / f"{g}.{i:05d}.wav", y.astype(np.float32), SR)
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One quick run through the CLI: (folder, stdout JSON, data folder)."""
    from musiclens import cli

    data = _write_genres(tmp_path_factory.mktemp("genres"))
    out = tmp_path_factory.mktemp("study") / "report"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = cli.main(["study", "genre-cnn", "--quick", "--data", str(data), "--out", str(out), "--json"])
    assert status == 0, stderr.getvalue()
    return out, json.loads(stdout.getvalue()), data


def test_the_report_files_are_written(report):
    out, numbers, _ = report
    assert json.loads((out / "numbers.json").read_text()) == numbers
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "numbers.json", "accuracy.png", "confusion.png"} <= names
    for a in ARCHS:
        assert {f"conv1_{a}.png", f"deconv_cam_{a}.png"} <= names
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    windows = numbers["open_in_window"]
    assert windows["models"] == [f"models/{a}" for a in ARCHS] and windows["midi"] == []
    # one input segment per genre, and per model and genre one auralised conv-1 filter
    assert len(windows["audio"]) == len(numbers["labels"]) * (1 + len(ARCHS))


def test_the_wavs_are_finite_and_not_silent(report):
    out, numbers, _ = report
    for rel in numbers["open_in_window"]["audio"]:
        y, sr = sf.read(out / rel, dtype="float64")
        assert sr == SR and len(y) > SR  # a 3-s segment
        assert np.isfinite(y).all()
        assert 20 * math.log10(np.sqrt(np.mean(y**2))) > -40, rel


def test_the_table_puts_the_studys_numbers_beside_ours(report):
    out, numbers, _ = report
    text = (out / "report.md").read_text()
    assert "| quantity | the study's claim | source of the claim | ours |" in text
    assert "Where the data differ" in text and "--quick" in text and "by track" in text
    for a in ARCHS:
        s = numbers["by_track"][a]
        assert f"| test accuracy, {a} | {STUDY_ACCURACY[a]} % (segment-level split)" in text
        assert f"{s['tracks_correct']}/{s['tracks']} tracks" in text


def test_quick_runs_the_track_split_only_and_says_so(report):
    out, numbers, _ = report
    assert numbers["quick"] and numbers["settings"]["by_segment"] is False and numbers["by_segment"] == {}
    assert numbers["folds_run"] == 1 and {r["fold"] for a in ARCHS for r in numbers["tracks"][a]} == {0}
    assert all(f["epochs_run"] <= numbers["settings"]["epochs"] for a in ARCHS for f in numbers["by_track"][a]["folds"])
    text = (out / "report.md").read_text()
    assert "segment-level split is not run" in text and "by segment:" not in text


def test_the_segment_split_spreads_tracks_and_the_track_split_does_not(tmp_path):
    """The two protocols' rows (the full run trains both): each fold's test, val and train sets
    are disjoint and cover every patch; by track no track is in two sets, by segment (the study's
    protocol) some are, and every genre is tested in every fold."""
    from musiclens.core.models import study
    from musiclens.core.training.data import Split, prepare_all

    ds, _ = load_genres(_write_genres(tmp_path / "d", n=4, seconds=6.5))
    m = study.create(ARCHS[0], ds.labels)
    ps = prepare_all(
        ds, Split({"train": list(ds.tracks), "val": [], "test": []}, 0, (1.0, 0.0, 0.0)), m.front_end, m.patch_frames
    ).sets["train"]
    assert len(ps) == 2 * len(ds.tracks)  # 6.5 s: two 3-s segments a track
    k = 3
    fold_of_row, seg_folds = row_folds(ps, track_folds(ds, k)), segment_folds(ps, k)
    spread = 0
    for protocol in ("by_track", "by_segment"):
        for i in range(k):
            rows = split_rows(protocol, i, fold_of_row, seg_folds)
            every = np.concatenate([rows["test"], rows["val"], rows["train"]])
            assert sorted(every) == list(range(len(ps)))  # disjoint, and every patch once
            assert set(ps.y[rows["test"]]) == set(range(len(ds.labels)))
            tracks = {s: set(ps.track[r]) for s, r in rows.items()}
            shared = len(tracks["test"] & (tracks["train"] | tracks["val"]))
            if protocol == "by_track":
                assert shared == 0 and not tracks["val"] & tracks["train"]
            else:
                spread += shared
    assert spread > 0


def test_the_accuracies_are_the_counts_recorded(report):
    _, numbers, _ = report
    for a in ARCHS:
        s, rows = numbers["by_track"][a], numbers["tracks"][a]
        assert s["segments"] == sum(r["segments"] for r in rows) > 0
        assert s["segments_correct"] == sum(r["segments_correct"] for r in rows)
        assert s["segment_accuracy"] == pytest.approx(s["segments_correct"] / s["segments"])
        assert s["tracks"] == len(rows) and s["tracks_correct"] == sum(r["correct"] for r in rows)
        assert s["track_accuracy"] == pytest.approx(s["tracks_correct"] / s["tracks"])
        assert np.asarray(s["confusion"]).sum() == s["segments"]
        assert np.trace(s["confusion"]) == s["segments_correct"]
        low, high = s["track_ci95"]
        assert low <= s["track_accuracy"] <= high
        # every genre is tested, each test track once
        assert {r["label"] for r in rows} == set(numbers["labels"])
        assert len({r["track"] for r in rows}) == len(rows)


def test_wilson_interval_matches_its_formula():
    for k, n in ((0, 10), (7, 10), (50, 60)):
        p, z = k / n, 1.959963984540054
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        assert wilson(k, n) == pytest.approx((centre - half, centre + half), abs=1e-9)


def test_the_saved_models_reproduce_their_test_numbers_and_never_saw_their_test_tracks(report):
    """Each saved model (fold 1) re-run on its test tracks, read from the files it names,
    gives the counts in numbers.json; no test track is in its training or validation set."""
    import torch

    from musiclens.core.models import registry
    from musiclens.core.tagging import audio_to_patches, load_audio_for

    out, numbers, data = report
    for a in ARCHS:
        m = registry.load(out / "models" / a, device="cpu")
        assert m.labels == numbers["labels"]
        split = m.provenance["data"]["tracks"]
        test = set(split["test"])
        assert test and not test & set(split["train"]) and not test & set(split["val"])
        rows = {r["track"]: r for r in numbers["tracks"][a] if r["fold"] == 0}
        assert set(rows) == test
        for tid in test:
            patches = audio_to_patches(m, load_audio_for(m, data / tid))
            with torch.no_grad():
                pred = m.net(patches).argmax(1).numpy()
            truth = m.labels.index(tid.split("/")[0])
            assert rows[tid]["segments"] == len(pred)
            assert rows[tid]["segments_correct"] == int((pred == truth).sum())


def test_the_interpretation_is_recorded_per_genre(report):
    _, numbers, _ = report
    for a in ARCHS:
        per = numbers["interpretation"][a]["tracks"]
        assert set(per) == set(numbers["labels"])
        for g, v in per.items():
            assert v["track"].startswith(f"{g}/") and v["track"] in [r["track"] for r in numbers["tracks"][a]]
            assert 0 <= v["conv1_top"] < v["conv1_filters"] and len(v["conv1_level_db"]) == v["conv1_filters"]
            assert v["wav"] in numbers["open_in_window"]["audio"]
            assert sum(v["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    # the GAP model's CAM is exact: logit = mean CAM + bias
    assert numbers["interpretation"]["gap-cnn"]["cam_identity_error_max"] < 1e-4


def test_missing_data_and_a_folder_without_genres_are_one_line(run_cli, tmp_path):
    status, out, err = run_cli("study", "genre-cnn", "--quick", "--out", tmp_path / "r")
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and "--data" in err
    loose = tmp_path / "loose"
    loose.mkdir()
    sf.write(loose / "a.wav", np.zeros(SR, dtype=np.float32), SR)
    status, out, err = run_cli("study", "genre-cnn", "--quick", "--data", loose, "--out", tmp_path / "r")
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and "sub-folder" in err
    status, _, err = run_cli("study", "genre-cnn", "--data", tmp_path / "nowhere", "--out", tmp_path / "r")
    assert status == 2 and len(err.strip().splitlines()) == 1 and "not a folder" in err
    assert not (tmp_path / "r").exists()


def test_a_genre_with_too_few_tracks_is_refused(tmp_path):
    from musiclens.core.errors import ParameterError

    _write_genres(tmp_path / "d", n=2, seconds=3.5)
    with pytest.raises(ParameterError, match="at least 3 tracks"):
        load_genres(tmp_path / "d")


def test_folds_are_stratified_and_disjoint(tmp_path):
    ds, merged = load_genres(_write_genres(tmp_path / "d", n=4, seconds=3.5))
    assert merged == []
    folds = track_folds(ds, 3)
    ids = [t.id for f in folds for t in f]
    assert sorted(ids) == sorted(t.id for t in ds.tracks)  # every track once
    for f in folds:
        assert {t.labels[0] for t in f} == set(range(len(ds.labels)))  # every genre in every fold


@pytest.mark.realdata
def test_the_gtzan_excerpts_and_full_clips_are_merged_by_track(shared_data):
    excerpts = shared_data / "audio" / "gtzan-excerpts-zenny126"
    full = shared_data / "audio" / "gtzan-full-pecmae"
    if not (excerpts.is_dir() and full.is_dir()):
        pytest.skip("the GTZAN folders are not in ../shared/data")
    import os

    ds, merged = load_genres(f"{excerpts}{os.pathsep}{full}")
    assert len(ds.labels) == 10 and len(ds.tracks) == 50  # the full clips are the excerpts' 00000 tracks
    assert len(merged) == 10 and all(m["prefix_identical"] for m in merged)
    assert all(m["kept"].startswith(str(full)) and m["kept_s"] > m["dropped_s"] for m in merged)
    for f in track_folds(ds, 5):
        assert len(f) == 10 and {t.labels[0] for t in f} == set(range(10))
