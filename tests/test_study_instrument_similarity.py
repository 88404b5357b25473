"""``musiclens study instrument-similarity``: a quick run on a tiny synthetic instrument folder
(three "instruments" of harmonic tones with different spectra: the files, the claims table,
numbers.json against a plain numpy recomputation of cells), its one-line errors, and the
musdb18 stem decoding on ../shared/data (skipped without the data or without ffmpeg)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SR = 22050


def harmonic(f0: float, weights: np.ndarray, *, seconds: float, seed: int) -> np.ndarray:
    """A tone of f0 with harmonic k at amplitude weights[k-1], a slow vibrato and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    phase = 2 * np.pi * f0 * (t + 0.002 * np.sin(2 * np.pi * 5 * t) / 5)
    y = sum(w * np.sin((k + 1) * phase + rng.uniform(0, 2 * np.pi)) for k, w in enumerate(weights))
    y = y / np.abs(y).max() * 0.3 + 0.003 * rng.standard_normal(len(t))
    return y.astype(np.float32)


INSTRUMENTS = {  # name: (f0s, harmonic weights)
    "low": ((82.0, 98.0, 110.0), 1.0 / np.arange(1, 9) ** 2),
    "hollow": ((330.0, 370.0, 392.0), np.array([1, 0, 1 / 3, 0, 1 / 5, 0, 1 / 7, 0])),
    "bright": ((880.0, 988.0, 1046.0), np.ones(8)),
}


def make_folder(root: Path, seconds: float = 3.2) -> Path:
    for i, (name, (f0s, w)) in enumerate(INSTRUMENTS.items()):
        (root / name).mkdir(parents=True)
        for j, f0 in enumerate(f0s):
            sf.write(root / name / f"{name}{j}.wav", harmonic(f0, w, seconds=seconds, seed=10 * i + j), SR)
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One quick run through the CLI: (data folder, report folder, stdout JSON)."""
    import contextlib
    import io

    import torch

    from musiclens import cli

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("instrument_similarity")
    data = make_folder(tmp / "data")
    out = tmp / "report"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = cli.main(
            ["study", "instrument-similarity", "--data", str(data), "--out", str(out), "--quick", "--json"]
        )
    assert status == 0, stderr.getvalue()
    return data, out, json.loads(stdout.getvalue())


def test_the_report_files_are_written_and_listed(report):
    _, out, numbers = report
    assert numbers == json.loads((out / "numbers.json").read_text())
    for name in ("MSD_musicnn", "choi-cnn", "choi-cnn-untrained"):
        png = out / f"similarity_vs_depth_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    win = numbers["open_in_window"]
    assert win["models"] == ["models/choi-cnn"] and (out / "models/choi-cnn/model.json").is_file()
    assert win["midi"] == [] and all((out / a).is_file() for a in win["audio"])
    assert sorted(Path(a).parent.name for a in win["audio"]) == sorted(INSTRUMENTS)  # one clip of each
    clips = numbers["clips"]
    assert sorted({c["instrument"] for c in clips}) == sorted(INSTRUMENTS)
    assert all(sf.info(str(out / c["file"])).duration == pytest.approx(3.0, abs=1e-3) for c in clips)
    rows = (out / "clips" / "labels.csv").read_text().splitlines()
    assert rows[0] == "file,label,track" and len(rows) == 1 + len(clips)


def test_the_report_puts_the_claims_beside_ours(report):
    _, out, numbers = report
    text = (out / "report.md").read_text()
    assert "| quantity | the study's claim | source of the claim | ours |" in text
    for row in ("| rise with depth |", "| plateau after conv 3 |", "| bass at the input |"):
        assert row in text
    assert "## Where the data differ from the study's" in text
    # no bass folder here: the report says so instead of inventing a number
    assert "no bass clips" in text
    assert set(numbers["models"]) == {"MSD_musicnn", "choi-cnn", "choi-cnn-untrained"}
    for model, res in numbers["models"].items():
        assert f"## {model}" in text
        assert len(res["depth"]) == 6 and set(res["curves"]) >= {"pearson", "cosine", "mse_max", "cka", "cka_baseline"}


def test_same_and_different_pairs_are_counted(report):
    _, _, numbers = report
    labels = [c["instrument"] for c in numbers["clips"]]
    same, diff = numbers["pairs"]["same"], numbers["pairs"]["different"]
    assert len(same) == 3 * 3 and all(labels[a] == labels[b] for a, b in same)
    assert len(diff) == 3 * 2 and all(labels[a] != labels[b] for a, b in diff)  # 3 instrument pairs x 2 clips
    # every clip here is its own source file: the other-source curve is the same-instrument one
    curves = numbers["models"]["choi-cnn"]["curves"]["pearson"]
    assert curves["same instrument, other source"] == curves["same (mean of instruments)"]


def test_curves_weigh_every_instrument_equally():
    """SAME and CROSS are means of per-instrument means (so an instrument with many pairs does
    not dominate); CROSS uses only pairs cut from different sources; DIFFERENT pools the control."""
    from musiclens.core.analyses.studies.instrument_similarity import CROSS, DIFFERENT, SAME, curves

    labels = ["a", "a", "a", "b", "b"]
    sources = ["s1", "s1", "s2", "s3", "s4"]
    same = [(0, 1), (0, 2), (1, 2), (3, 4)]
    v = np.array([[0.9, 0.5], [0.3, 0.1], [0.6, 0.4], [0.2, 0.8], [0.0, 0.2], [0.4, np.nan]])  # 4 same + 2 control
    got = curves({"pearson": v}, labels, [*same, (0, 3), (2, 4)], 4, sources)["pearson"]
    np.testing.assert_allclose(got["a"], v[:3].mean(0), atol=1e-6)  # JSON keeps 6 decimals
    np.testing.assert_allclose(got[SAME], (v[:3].mean(0) + v[3]) / 2, atol=1e-6)
    np.testing.assert_allclose(got[CROSS], (v[1:3].mean(0) + v[3]) / 2, atol=1e-6)
    np.testing.assert_allclose(got[DIFFERENT], [0.2, 0.2], atol=1e-6)  # NaN left out


def test_the_untrained_control_is_the_trained_architecture_before_training(report):
    import torch

    from musiclens.core.analyses.studies.instrument_similarity import untrained_choi
    from musiclens.core.models import registry

    _, out, numbers = report
    trained = registry.load(out / "models" / "choi-cnn", device="cpu")
    control = untrained_choi(trained)
    a, b = dict(trained.net.named_parameters()), dict(control.net.named_parameters())
    assert a.keys() == b.keys() and not torch.equal(a["block1.conv.weight"], b["block1.conv.weight"])
    assert torch.equal(trained.net.norm.mean, control.net.norm.mean) and control.patch_frames == trained.patch_frames
    # the curves differ: training changed what the layers share
    got = numbers["models"]
    assert got["choi-cnn"]["curves"]["pearson"] != got["choi-cnn-untrained"]["curves"]["pearson"]
    # but the input is the same for both
    assert got["choi-cnn"]["curves"]["pearson"]["low"][0] == got["choi-cnn-untrained"]["curves"]["pearson"]["low"][0]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def test_numbers_agree_with_a_numpy_recomputation(report):
    """The choi-cnn's input and conv 2 Pearson / cosine of the 'low' instrument, recomputed
    from the saved model, the clip WAVs and a forward hook with plain numpy."""
    import torch

    from musiclens.core.models import registry

    _, out, numbers = report
    m = registry.load(out / "models" / "choi-cnn", device="cpu")
    maps: dict[str, list[np.ndarray]] = {"input": [], "conv 2": []}
    captured: list[np.ndarray] = []
    hook = m.net.block2.register_forward_hook(lambda _m, _i, o: captured.append(o.detach().numpy()[0]))
    m.net.eval()
    try:
        for c in numbers["clips"]:
            y, sr = sf.read(out / c["file"], dtype="float32")
            assert sr == SR == m.front_end.sample_rate
            with torch.no_grad():
                x = m.front_end(torch.from_numpy(y[: m.patch_samples])[None])[..., : m.patch_frames]
                m.net(x)
            maps["input"].append(x.numpy()[0])
            maps["conv 2"].append(captured[-1])
    finally:
        hook.remove()
    labels = [c["instrument"] for c in numbers["clips"]]
    pairs = [(a, b) for a, b in numbers["pairs"]["same"] if labels[a] == "low"]
    curves = numbers["models"]["choi-cnn"]["curves"]
    depth = ["input", *numbers["models"]["choi-cnn"]["depth"]]
    for layer in ("input", "conv 2"):
        j = depth.index(layer)
        want_p = np.mean([_pearson(maps[layer][a], maps[layer][b]) for a, b in pairs])
        want_c = np.mean([_cosine(maps[layer][a], maps[layer][b]) for a, b in pairs])
        assert curves["pearson"]["low"][j] == pytest.approx(want_p, abs=1e-4)
        assert curves["cosine"]["low"][j] == pytest.approx(want_c, abs=1e-4)


def test_the_claim_verdicts_follow_from_the_curves(report):
    from scipy.stats import spearmanr

    _, _, numbers = report
    for res in numbers["models"].values():
        same = np.array(res["curves"]["pearson"]["same (mean of instruments)"], dtype=float)
        conv = same[[0, 1, 2, 3, 4]]  # input, conv 1..4 (both ladders put the conv layers first)
        claim = res["claims"]["pearson"]
        for key, curve in (("from_input", conv), ("over_conv", conv[1:])):
            rho = spearmanr(np.arange(len(curve)), curve).statistic
            assert claim[key]["spearman_rho"] == pytest.approx(rho)
            assert claim[key]["rises"] == bool(rho > 0 and curve[-1] > curve[0])
            share = (curve[-2] - curve[0]) / (curve[-1] - curve[0])
            assert claim[key]["conv3_share_of_change"] == pytest.approx(share, rel=1e-6)
            assert claim[key]["plateau_after_conv3"] == bool(claim[key]["rises"] and share >= 0.8)
        # max-normalised MSE: lower is more similar, so a falling MSE is a rise
        mse = np.array(res["curves"]["mse_max"]["same (mean of instruments)"][1:5], dtype=float)
        assert res["claims"]["mse_max"]["over_conv"]["rises"] == bool(
            spearmanr(np.arange(4), -mse).statistic > 0 and mse[-1] < mse[0]
        )
        # every CKA lies in [0, 1] and its exact permutation baseline below 1
        cka = np.array([v for v in res["curves"]["cka"]["same (mean of instruments)"] if v is not None])
        base = np.array([v for v in res["curves"]["cka_baseline"]["same (mean of instruments)"] if v is not None])
        assert ((cka >= 0) & (cka <= 1 + 1e-9)).all() and (base < 1).all()


def test_missing_data_and_too_few_clips_are_one_line(run_cli, tmp_path):
    status, out, err = run_cli("study", "instrument-similarity", "--out", tmp_path / "r")
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and "--data" in err
    one = make_folder(tmp_path / "one")
    for name in ("hollow", "bright"):
        shutil.rmtree(one / name)
    status, out, err = run_cli("study", "instrument-similarity", "--data", one, "--out", tmp_path / "r")
    assert status == 2 and len(err.strip().splitlines()) == 1 and "at least two instruments" in err
    short = make_folder(tmp_path / "short", seconds=2.0)  # every file shorter than one 3 s clip
    status, out, err = run_cli("study", "instrument-similarity", "--data", short, "--out", tmp_path / "r")
    assert status == 2 and len(err.strip().splitlines()) == 1 and "two or more 3 s clips" in err
    (tmp_path / "flat").mkdir()
    status, out, err = run_cli("study", "instrument-similarity", "--data", tmp_path / "flat", "--out", tmp_path / "r")
    assert status == 2 and len(err.strip().splitlines()) == 1 and "one sub-folder per instrument" in err
    assert not (tmp_path / "r").exists()


def test_missing_ffmpeg_is_one_line(run_cli, tmp_path, monkeypatch):
    from musiclens.core.analyses.studies import instrument_similarity as study
    from musiclens.core.errors import MusicLensError

    monkeypatch.setattr(study.shutil, "which", lambda _name: None)
    root = tmp_path / "shared"
    (root / "audio" / study.MUSDB_DIR).mkdir(parents=True)
    fake = root / "audio" / study.MUSDB_DIR / "x.stem.mp4"
    fake.write_bytes(b"\0" * 16)
    with pytest.raises(MusicLensError, match="needs ffmpeg"):
        study.decode_stems(fake, tmp_path / "stems")
    status, out, err = run_cli("study", "instrument-similarity", "--data", root, "--out", tmp_path / "r")
    assert status == 2 and len(err.strip().splitlines()) == 1 and "ffmpeg" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.realdata
def test_the_musdb_stem_file_decodes_into_its_four_stems(shared_data, tmp_path):
    from musiclens.core.analyses.studies import instrument_similarity as study

    stem_files = sorted((shared_data / "audio" / study.MUSDB_DIR).glob("*.stem.mp4"))
    if not stem_files:
        pytest.skip(f"real-data tier: no .stem.mp4 in {shared_data / 'audio' / study.MUSDB_DIR}")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed (Debian package 'ffmpeg'): cannot decode the .stem.mp4")
    stems = study.decode_stems(stem_files[0], tmp_path / "stems")
    assert list(stems) == ["drums", "bass", "other", "vocals"]
    ys = {}
    for name, path in stems.items():
        y, sr = sf.read(path, dtype="float64")
        assert sr == study.CLIP_SR and y.ndim == 1 and 5.9 < len(y) / sr < 6.3
        assert np.sqrt(np.mean(y**2)) > 1e-3, f"{name} is silent"
        ys[name] = y
    n = min(len(y) for y in ys.values())
    # the four stems add up to the mixture (stream 0), decoded here independently
    mix_path = tmp_path / "mix.wav"
    cmd = [ffmpeg, "-v", "error", "-i", str(stem_files[0]), "-map", "0:a:0", "-ac", "1", "-ar", str(SR)]
    subprocess.run([*cmd, str(mix_path)], check=True)
    mix, _ = sf.read(mix_path, dtype="float64")
    total = sum(y[:n] for y in ys.values())
    assert _pearson(total, mix[:n]) > 0.9
    assert abs(_pearson(ys["bass"][:n], ys["drums"][:n])) < 0.5  # distinct streams, not one decoded four times


@pytest.mark.realdata
def test_the_shared_root_gives_several_clips_per_instrument(shared_data, tmp_path):
    from musiclens.core.analyses.studies import instrument_similarity as study

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (Debian package 'ffmpeg'): cannot decode the .stem.mp4")
    if not (shared_data / "audio" / study.MUSDB_DIR).is_dir():
        pytest.skip(f"real-data tier: {shared_data / 'audio' / study.MUSDB_DIR} is not present")
    clips, notes, stems = study.build_instrument_folder(shared_data, tmp_path, quick=True)
    counts: dict[str, int] = {}
    for c in clips:
        counts[c.instrument] = counts.get(c.instrument, 0) + 1
    assert {"bass", "drums", "vocals"} <= set(counts) and min(counts.values()) >= 2
    assert len(stems) == 4 and any(c.source.endswith(".bass.wav") for c in clips if c.instrument == "bass")
    assert all(isinstance(n, str) for n in notes)
