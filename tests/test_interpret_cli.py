"""The interpretation commands (cam, auralise, dream, similarity) on the bundled MusiCNN."""

from __future__ import annotations

import json

import numpy as np
import pytest

from interpret_nets import signal
from musiclens.core import audio


@pytest.fixture
def run(run_cli):
    return run_cli


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    chord = signal(3.1, freqs=(220.0, 277.2, 329.6), sr=22050)
    high = 0.3 * signal(3.1, freqs=(3000.0, 4100.0), sr=22050, seed=3)
    audio.save(d / "chord.wav", chord, 22050)
    audio.save(d / "mix.wav", chord + high, 22050)
    return d


def test_cam_json_and_npz(run, wavs, tmp_path):
    out = tmp_path / "cam.npz"
    status, text, _ = run(
        "cam",
        str(wavs / "chord.wav"),
        "--model",
        "MTT_musicnn",
        "--layer",
        "front end / timbral 7x38 / feature maps",
        "--target",
        "piano",
        "--upsample",
        "-o",
        str(out),
        "--json",
    )
    assert status == 0
    res = json.loads(text)
    assert res["target"] == "piano" and res["shape"] == [96, 187]
    assert np.load(out)["map"].shape == (96, 187)


def test_auralise_writes_audio_at_the_file_rate(run, wavs, tmp_path):
    out = tmp_path / "f.wav"
    status, text, _ = run(
        "auralise",
        str(wavs / "chord.wav"),
        "--layer",
        "front end / timbral 7x38 / conv",
        "--filter",
        "3",
        "-o",
        str(out),
        "--json",
    )
    assert status == 0
    y, sr = audio.load(out, sr=None)
    assert sr == 22050 and len(y) == int(3.1 * 22050) and np.isfinite(y).all()
    assert json.loads(text)["method"] == "activation"


def test_dream_json(run, wavs, tmp_path):
    out = tmp_path / "d.wav"
    status, text, err = run(
        "dream",
        str(wavs / "chord.wav"),
        "--model",
        "MTT_musicnn",
        "--target",
        "piano",
        "--minus",
        "others",
        "--steps",
        "3",
        "--lr",
        "0.1",
        "-o",
        str(out),
        "--json",
    )
    assert status == 0, err
    res = json.loads(text)
    assert res["objective_end"] > res["objective_start"] and res["steps"] == 3
    assert "dream: 0/3 steps" in err and "dream: 3/3 steps" in err
    y, sr = audio.load(out, sr=None)
    assert sr == 22050 and np.sqrt(np.mean(y**2)) > 1e-3


def test_similarity_json_and_errors(run, wavs):
    status, text, _ = run(
        "similarity",
        str(wavs / "mix.wav"),
        str(wavs / "chord.wav"),
        "--layers",
        "front end / timbral 7x38,mid end / conv 1,back end / penultimate",
        "--json",
    )
    assert status == 0
    res = json.loads(text)
    assert len(res["pearson"]) == 3 and all(0 < v < 1 for v in res["pearson"][:2])
    assert res["cka"][2] is None  # a dense layer has no positions
    status, _, err = run("similarity", str(wavs / "mix.wav"), str(wavs / "chord.wav"), "--metrics", "l1")
    assert status == 2 and "unknown metrics" in err
    status, _, err = run("dream", "--target", "piano", "-o", "x.wav")
    assert status == 2 and "--sweep" in err
