"""``musiclens study dreaming``: a quick run on a tiny synthetic genre folder (tones and noise),
the report's numbers checked against what it wrote (WAVs, dreamed inputs, saved models), and
the one-line errors; the real GTZAN folders' merge and folds on ../shared/data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import tone

SR = 22050
CLASSES = ("low", "high", "noise")


def _write_folder(root, per_class: int = 4, seconds: float = 4.0):
    rng = np.random.default_rng(0)
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            if c == "low":
                y = tone((180.0 + 25 * i, 360.0 + 50 * i), seconds=seconds)
            elif c == "high":
                y = tone((2000.0 + 150 * i, 3100.0 + 100 * i), seconds=seconds)
            else:
                y = (0.1 * rng.standard_normal(int(SR * seconds))).astype(np.float32)
            y = y + (0.005 * rng.standard_normal(len(y))).astype(np.float32)
            sf.write(root / c / f"{c}.{i:05d}.wav", y, SR)
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One quick run through the CLI on the synthetic folder: (folder, numbers, data root)."""
    import contextlib
    import io
    import os

    from musiclens import cli

    base = tmp_path_factory.mktemp("dreaming")
    data = _write_folder(base / "data")
    out = base / "report"
    old = os.environ.get("MUSICLENS_CACHE")
    os.environ["MUSICLENS_CACHE"] = str(base / "cache")
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = cli.main(["study", "dreaming", "--quick", "--data", str(data), "--out", str(out), "--json"])
    finally:
        if old is None:
            os.environ.pop("MUSICLENS_CACHE", None)
        else:
            os.environ["MUSICLENS_CACHE"] = old
    assert status == 0, stderr.getvalue()
    numbers = json.loads(stdout.getvalue())
    assert json.loads((out / "numbers.json").read_text()) == numbers
    return out, numbers, data


def test_the_files_and_the_claims_table_are_written(report):
    out, n, _ = report
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "numbers.json", "accuracy.png", "spectral_convergence.png"} <= names
    assert {"dreams_stft-cnn.png", "dreams_mel-cnn.png"} <= names
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    text = (out / "report.md").read_text()
    assert "| quantity | the study's claim | source of the claim | ours |" in text
    assert "Where the data differ" in text and "--quick left out" in text
    for claim in n["claims"].values():
        assert claim["claim"] in text
    assert f"| the catch-22 | holds: a catch-22 | issue 21, study 2 | {n['verdict']['catch_22']} |" in text
    for w in ("stft", "mel"):
        for d in n["dreams"][w]:
            assert f"| {d['genre']} | " in text
    win = n["open_in_window"]
    assert win["models"] == ["models/stft-cnn", "models/mel-cnn"] and win["midi"] == []
    assert len(win["audio"]) == 1 + 2 * len(n["settings"]["genres_dreamed"])
    for p in win["models"] + win["audio"]:
        assert (out / p).exists(), p


def test_the_saved_models_reproduce_fold_1_accuracy(report):
    """The saved fold-1 models, evaluated again on fold 1's test tracks, give the accuracy the
    report pooled; the two models differ only in the front end; the folds cover every track once."""
    from musiclens.core.models import registry
    from musiclens.core.training.data import Split, load_dataset, prepare_all
    from musiclens.core.training.loop import evaluate

    out, n, data = report
    folds = n["folds_test_tracks"]
    assert sorted(t for f in folds for t in f) == sorted(p.relative_to(data).as_posix() for p in data.rglob("*.wav"))
    ds = load_dataset(data)
    test = [t for t in ds.tracks if t.id in set(folds[0])]
    split = Split({"train": test, "val": [], "test": test}, 0, (0.5, 0.0, 0.5))
    for w, folder in (("stft", "stft-cnn"), ("mel", "mel-cnn")):
        m = registry.load(out / "models" / folder)
        assert m.architecture["family"] == "stft-cnn"
        assert m.front_end.kind == ("stft" if w == "stft" else "logmel")
        ps = prepare_all(ds, split, m.front_end, m.patch_frames, cache=None).sets["test"]
        got = evaluate(m, ps)["accuracy"]
        assert got == pytest.approx(n["accuracy"][w]["per_fold"]["patch_accuracy"][0], abs=1e-6)
        acc = n["accuracy"][w]
        assert acc["tracks"] == len(ds.tracks) and acc["patch_ci95"][0] <= acc["patch_accuracy"] <= acc["patch_ci95"][1]
        assert acc["track_ci95"][0] <= acc["track_accuracy"] <= acc["track_ci95"][1]
    # tones of different pitch and noise: the mel twin must beat chance even after 3 epochs
    assert n["accuracy"]["mel"]["patch_accuracy"] > 1.5 * n["accuracy"]["chance"]


def test_the_spectral_convergence_is_recomputed_from_the_written_wav(report):
    """SC from the WAV on disk and the stored dream input equals the reported one; the WAVs
    are finite, not silent and not clipped; dreaming raised the target's probability."""
    from musiclens.core.analyses.studies.dreaming import own_magnitude
    from musiclens.core.models import registry

    out, n, _ = report
    for w, folder in (("stft", "stft-cnn"), ("mel", "mel-cnn")):
        fe = registry.load(out / "models" / folder).front_end
        for d in n["dreams"][w]:
            y, sr = sf.read(out / d["wav"], dtype="float32")
            assert sr == SR and y.ndim == 1 and np.isfinite(y).all()
            rms_db = 20 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
            assert rms_db > -60, f"{d['wav']} is silent ({rms_db:.1f} dBFS)"
            info = sf.info(str(out / d["wav"]))
            assert np.abs(y).max() < 1.0 or info.subtype == "FLOAT", f"{d['wav']} is clipped"
            assert rms_db == pytest.approx(d["rms_dbfs"], abs=0.05)
            x = torch.from_numpy(np.load(out / d["dream_input"]))[None]
            s = own_magnitude(fe, x)
            s_hat = own_magnitude(fe, fe(torch.from_numpy(y)[None]))
            t = min(s.shape[-1], s_hat.shape[-1])
            sc = float((s[..., :t] - s_hat[..., :t]).norm() / s.norm())
            assert sc == pytest.approx(d["spectral_convergence"], abs=2e-3), (w, d["genre"])
            assert d["p_target_dream"] > d["p_target_start"], (w, d["genre"])
    # the undreamed clip: iSTFT is exact, Griffin-Lim is not
    assert n["baselines"]["stft"]["istft"] < 1e-4
    assert n["baselines"]["mel"]["griffin_lim_start_phase"] > 10 * n["baselines"]["stft"]["istft"]
    y, _ = sf.read(out / "dreams" / "start.wav", dtype="float32")
    assert len(y) == round(3.0 * SR)


def test_the_verdict_follows_the_numbers(report):
    _, n, _ = report
    sc_s = [d["spectral_convergence"] for d in n["dreams"]["stft"]]
    sc_m = [d["spectral_convergence"] for d in n["dreams"]["mel"]]
    v = n["verdict"]
    assert v["mean_sc_stft"] == pytest.approx(np.mean(sc_s)) and v["mean_sc_mel"] == pytest.approx(np.mean(sc_m))
    assert v["stft_inverts_more_cleanly"] == f"{sum(a < b for a, b in zip(sc_s, sc_m))} of {len(sc_s)} genres"
    lo, hi = n["accuracy"]["difference_ci95"]
    d = n["accuracy"]["mel"]["patch_accuracy"] - n["accuracy"]["stft"]["patch_accuracy"]
    assert n["accuracy"]["difference_patch_accuracy"] == pytest.approx(d) and lo <= d <= hi
    ch = {w: np.mean([d["dream_change"] for d in n["dreams"][w]]) for w in ("stft", "mel")}
    assert v["dream_size_ratio_mel_over_stft"] == pytest.approx(ch["mel"] / ch["stft"])
    kept = sum(a["p_target_audio"] > b["p_target_audio"] for a, b in zip(n["dreams"]["stft"], n["dreams"]["mel"]))
    assert v["stft_audio_keeps_target_better"] == f"{kept} of {len(sc_s)} genres"
    acc_half = 1.0 if lo > 0 else 0.5 if d > 0 else 0.0
    all_lower = all(a < b for a, b in zip(sc_s, sc_m))
    inv_half = (
        1.0 if all_lower and v["dream_sizes_comparable"] else 0.5 if 2 * sum(np.less(sc_s, sc_m)) > len(sc_s) else 0.0
    )
    expected = {2.0: "reproduced", 0.0: "refuted"}.get(acc_half + inv_half, "partly")
    assert v["catch_22"] == expected


def test_missing_data_or_no_genre_folders_is_one_line(run_cli, tmp_path):
    status, out, err = run_cli("study", "dreaming", "--out", tmp_path / "r")
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and "--data" in err
    (tmp_path / "loose").mkdir()
    sf.write(tmp_path / "loose" / "a.wav", tone(seconds=0.5), SR)
    status, out, err = run_cli("study", "dreaming", "--data", tmp_path / "loose", "--out", tmp_path / "r")
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and "sub-folder" in err
    status, out, err = run_cli("study", "dreaming", "--data", tmp_path / "nowhere", "--out", tmp_path / "r")
    assert status == 2 and len(err.strip().splitlines()) == 1 and "nowhere" in err
    assert not (tmp_path / "r").exists()


def test_two_folders_keep_one_copy_of_a_clip_the_longer(tmp_path):
    import os

    from musiclens.core.analyses.studies.dreaming import combined_dataset, data_roots, kfold_splits

    a, b = _write_folder(tmp_path / "a", per_class=3, seconds=1.0), tmp_path / "b"
    (b / "low").mkdir(parents=True)
    sf.write(b / "low" / "low.00000.wav", tone(seconds=2.0), SR)  # the longer copy of a/low/low.00000
    sf.write(b / "low" / "low.00009.wav", tone(seconds=2.0), SR)
    ds, dropped = combined_dataset(data_roots(f"{a}{os.pathsep}{b}"))
    ids = [t.id for t in ds.tracks]
    assert len(ids) == 10 and "b/low/low.00000.wav" in ids and "a/low/low.00000.wav" not in ids
    assert dropped == ["a/low/low.00000.wav (kept b/low/low.00000.wav, the longer copy)"]
    splits = kfold_splits(ds, 3)
    tested = [t.id for s in splits for t in s.tracks["test"]]
    assert sorted(tested) == sorted(ids)
    for s in splits:
        assert not {t.id for t in s.tracks["train"]} & {t.id for t in s.tracks["test"]}


@pytest.mark.realdata
def test_the_two_gtzan_folders_merge_into_50_tracks(shared_data):
    """The excerpts hold the first 15-20 s of the 00000 clips that gtzan-full-pecmae holds whole
    (SOURCES.md): merged, each 00000 clip comes from the full folder, 5 tracks per genre."""
    import os

    from musiclens.core.analyses.studies.dreaming import combined_dataset, data_roots, kfold_splits

    ex, full = shared_data / "audio" / "gtzan-excerpts-zenny126", shared_data / "audio" / "gtzan-full-pecmae"
    if not (ex.is_dir() and full.is_dir()):
        pytest.skip(f"real-data tier: {ex} or {full} is not present")
    ds, dropped = combined_dataset(data_roots(f"{ex}{os.pathsep}{full}"))
    assert len(ds.labels) == 10 and len(ds.tracks) == 50 and len(dropped) == 10
    for t in ds.tracks:
        assert t.id.startswith("gtzan-full-pecmae/") == t.id.endswith(".00000.wav"), t.id
    folds = kfold_splits(ds, 5)
    for s in folds:  # one track per genre in every fold's test set
        assert sorted(t.labels[0] for t in s.tracks["test"]) == list(range(10))
