"""The training package's shape (every module imports alone, no cycles; one architecture list)
and the CLI verbs on both input kinds: ``train`` finds the kind from the folder, ``evaluate``
and ``predict`` work on MIDI folders/files, evaluate reports files it scores that were in the
model's training split (JSON and stderr), offers the majority vote and ``--per-file``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_midi_model import make_folder, write_piece
from test_train import genre_22k

TRAINING_MODULES = (
    "musiclens.core.training",
    "musiclens.core.models.architectures",
    "musiclens.core.training.events",
    "musiclens.core.training.data",
    "musiclens.core.training.data.cache",
    "musiclens.core.training.data.scan",
    "musiclens.core.training.data.splits",
    "musiclens.core.training.data.patches",
    "musiclens.core.training.loop",
    "musiclens.core.training.probe",
    "musiclens.core.training.midi",
    "musiclens.core.training.scoring",
    "musiclens.core.training.entry",
)
REPO = Path(__file__).resolve().parents[1]

MIDI_EVAL_KEYS = {"accuracy", "n_files", "split", "confusion", "per_class_accuracy"}
AUDIO_EVAL_KEYS = MIDI_EVAL_KEYS | {"track_accuracy", "n_tracks"}


# ----------------------------------------------------------------------------- the package
def test_every_training_module_imports_alone_and_the_light_ones_need_no_torch():
    """Each module imported first in a fresh interpreter (an import cycle fails here), and
    the loop never pulls in the probe, the MIDI trainer or the entry point."""
    code = r"""
import importlib, sys
mod = sys.argv[1]
importlib.import_module(mod)
if mod in ("musiclens.core.training", "musiclens.core.models.architectures", "musiclens.core.training.events"):
    assert "torch" not in sys.modules, f"{mod} imports torch"
if mod == "musiclens.core.training.loop":
    bad = [m for m in ("musiclens.core.training.probe", "musiclens.core.training.midi",
                       "musiclens.core.training.entry") if m in sys.modules]
    assert not bad, f"the loop imports {bad}"
"""
    for mod in TRAINING_MODULES:
        r = subprocess.run([sys.executable, "-c", code, mod], cwd=REPO, capture_output=True, text=True)
        assert r.returncode == 0, f"{mod}: {r.stderr[-2000:]}"


def test_the_old_training_modules_are_gone():
    for old in ("train", "probe", "data", "midi_train"):
        assert not (REPO / "musiclens" / "core" / f"{old}.py").exists()


def test_one_list_of_trainable_architectures():
    from musiclens.core.models import architectures as archs
    from musiclens.core.models import study

    assert archs.names("audio") == list(study.ARCHS)
    assert archs.names("midi") == ["midi-lstm", "midi-piece"]
    assert archs.DEFAULT_ARCH["midi"] == "midi-piece"
    assert archs.kind_of(archs.DEFAULT_ARCH["audio"]) == "audio"
    assert archs.kind_of(archs.DEFAULT_ARCH["midi"]) == "midi"


def test_the_training_panel_and_the_cli_read_the_list():
    pytest.importorskip("PySide6")
    from musiclens.app.panels import training as panel
    from musiclens.cli import build_parser
    from musiclens.core.models import architectures as archs

    assert list(panel.ARCHS) == archs.names()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["train"]
    arch = next(a for a in sub._actions if a.dest == "arch")
    assert list(arch.choices) == archs.names() and arch.default is None


def test_data_kind_tells_audio_from_midi(tmp_path):
    from musiclens.core.errors import MusicLensError
    from musiclens.core.training.data import data_kind

    midi = make_folder(tmp_path / "m", per_class=1, n_notes=4)
    assert data_kind(midi) == "midi"
    audio = genre_22k(tmp_path / "a", n=1, seconds=0.5)
    assert data_kind(audio) == "audio"
    write_piece(audio / "dark" / "x.mid", low=True, n_notes=4, seed=0)
    with pytest.raises(MusicLensError, match="both audio"):
        data_kind(audio)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MusicLensError, match="no audio or MIDI files"):
        data_kind(tmp_path / "empty")


# ----------------------------------------------------------------------------- MIDI through the CLI
@pytest.fixture(scope="module")
def midi_run(tmp_path_factory):
    """A tiny synthetic MIDI folder (2 labels × 10 files) and a model trained on it by the CLI."""
    from musiclens import cli

    tmp = tmp_path_factory.mktemp("midi_cli")
    root = make_folder(tmp / "data", per_class=10, n_notes=24)
    out = tmp / "model"
    argv = [
        "train",
        "--data",
        str(root),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--arch",
        "midi-lstm",
        "--n-notes",
        "16",
        "--hidden",
        "16",
        "--layers",
        "1",
        "--json",
    ]
    return root, out, argv, cli


def _run(cli, argv, capsys):
    status = cli.main([str(a) for a in argv])
    o, e = capsys.readouterr()
    return status, o, e


def test_cli_trains_a_midi_folder_with_midi_lstm(midi_run, capsys):
    root, out, argv, cli = midi_run
    status, o, e = _run(cli, argv, capsys)
    assert status == 0, e
    res = json.loads(o)
    assert res["arch"] == "midi-lstm" and res["kind"] == "midi" and res["classes"] == ["high", "low"]
    assert res["split"] == {"train": 16, "val": 2, "test": 2} and res["epochs_run"] == 1
    assert 0.0 <= res["test_accuracy"] <= 1.0 and res["out"] == str(out)
    assert "files read" in e  # (the default MIDI architecture, midi-piece: tests/test_midi_wholepiece.py)
    meta = json.loads((out / "model.json").read_text())
    assert meta["input"] == "midi" and meta["note_features"]["n_notes"] == 16
    tracks = meta["provenance"]["data"]["tracks"]
    assert {len(tracks[s]) for s in ("val", "test")} == {2} and len(tracks["train"]) == 16
    assert all(t.startswith(("high/", "low/")) for t in tracks["train"])


def test_cli_evaluates_and_predicts_midi(midi_run, capsys):
    root, out, argv, cli = midi_run
    if not (out / "model.json").is_file():
        assert _run(cli, argv, capsys)[0] == 0
    # default: the model's own test files, nothing seen in training
    status, o, e = _run(cli, ["evaluate", "--model", out, "--data", root, "--json"], capsys)
    assert status == 0, e
    ev = json.loads(o)
    assert MIDI_EVAL_KEYS <= set(ev) and ev["kind"] == "midi"
    assert ev["split"] == "test" and ev["n_files"] == 2
    assert ev["training_overlap"] == {"train": 0, "val": 0, "held_out": 2, "train_files": [], "val_files": []}
    assert "training split" not in e
    assert len(ev["confusion"]) == 2 and set(ev["per_class_accuracy"]) == {"high", "low"}
    # every file: the 16 training files are reported, on stderr and in the JSON
    status, o, e = _run(
        cli, ["evaluate", "--model", out, "--data", root, "--split", "all", "--per-file", "--json"], capsys
    )
    ev = json.loads(o)
    assert ev["n_files"] == 20 and ev["training_overlap"]["train"] == 16 and ev["training_overlap"]["val"] == 2
    assert "16 in its training split" in e and "not held-out" in e
    assert len(ev["files"]) == 20
    row = ev["files"][0]
    assert {"file", "label", "predicted", "correct", "probabilities", "split"} <= set(row)
    assert sorted({r["split"] for r in ev["files"]}) == ["test", "train", "val"]
    # predict on a MIDI file with the MIDI model
    piece = root / "low" / "low00.mid"
    status, o, e = _run(cli, ["predict", piece, "--model", out, "--json"], capsys)
    assert status == 0, e
    pr = json.loads(o)
    assert pr["classes"] == ["high", "low"] and pr["predicted"] in ("high", "low")
    assert sum(pr["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert pr["n_notes_read"] == 16 and pr["n_notes_total"] == 24
    # midi-classify stays as an alias with the same keys
    status, o2, _ = _run(cli, ["midi-classify", piece, "--model", out, "--json"], capsys)
    assert status == 0 and json.loads(o2)["probabilities"] == pr["probabilities"]
    # a MIDI file with an audio model: one clear line
    status, _, e = _run(cli, ["predict", piece, "--model", "MTT_musicnn", "--json"], capsys)
    assert status == 2 and "is a MIDI file but" in e


def test_midi_only_options_are_refused_on_audio(tmp_path, capsys):
    from musiclens import cli

    root = genre_22k(tmp_path / "g", n=2, seconds=0.5)
    status, _, e = _run(cli, ["train", "--data", root, "--out", tmp_path / "m", "--n-notes", "8"], capsys)
    assert status == 2 and "--n-notes is for MIDI folders" in e


# ----------------------------------------------------------------------------- audio evaluate
def test_cli_audio_evaluate_reports_overlap_votes_and_files(tmp_path, monkeypatch, capsys):
    from musiclens import cli

    monkeypatch.setenv("MUSICLENS_CACHE", str(tmp_path / "cache"))
    root = genre_22k(tmp_path / "g", n=5, seconds=6.5)  # 2 patches of 3 s per file
    out = tmp_path / "model"
    status, o, e = _run(
        cli, ["train", "--data", root, "--out", out, "--epochs", "1", "--batch-size", "4", "--json", "--quiet"], capsys
    )
    assert status == 0, e
    res = json.loads(o)
    assert res["arch"] == "vanilla-cnn" and res["kind"] == "audio"  # the audio default
    status, o, e = _run(cli, ["evaluate", "--model", out, "--data", root, "--json"], capsys)
    ev = json.loads(o)
    assert AUDIO_EVAL_KEYS <= set(ev) and ev["split"] == "test" and ev["n_files"] == 2 and ev["n_tracks"] == 2
    assert ev["training_overlap"]["train"] == 0 and e == ""
    assert ev["vote"] == "mean" and ev["track_accuracy"] == ev["track_accuracy_mean"]
    status, o, e = _run(
        cli,
        ["evaluate", "--model", out, "--data", root, "--split", "all", "--vote", "majority", "--per-file", "--json"],
        capsys,
    )
    ev = json.loads(o)
    assert ev["n_files"] == 10 and ev["training_overlap"]["train"] == 6
    assert "6 in its training split" in e
    assert ev["vote"] == "majority" and ev["track_accuracy"] == ev["track_accuracy_majority"]
    assert len(ev["files"]) == 10 and all(r["n_patches"] == 2 for r in ev["files"])
    for r in ev["files"]:
        assert r["predicted"] == r["predicted_majority"]
        assert r["predicted_majority"] in ("bright", "dark") and r["predicted_mean"] in ("bright", "dark")
    # predict gives the common keys too
    status, o, _ = _run(cli, ["predict", root / "dark" / "dark0.wav", "--model", out, "--json"], capsys)
    pr = json.loads(o)
    assert pr["classes"] == ["bright", "dark"] and pr["predicted"] == pr["prediction"]
    assert pr["probabilities"] == pr["file_probabilities"]


def test_confusion_metrics_of_single_label_predictions():
    import numpy as np

    from musiclens.core.training.scoring import _confusion_metrics

    m = _confusion_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), ["a", "b"])
    assert m["accuracy"] == pytest.approx(2 / 3) and m["confusion"] == [[1, 0], [1, 1]]
    assert m["per_class_accuracy"] == {"a": 1.0, "b": 0.5}


# ----------------------------------------------------------------------------- saliency and flip on MIDI
def test_saliency_and_flip_accept_midi_files(tmp_path, capsys):
    import numpy as np

    from musiclens import cli

    piece = tmp_path / "tune.mid"
    write_piece(piece, low=False, n_notes=40, seed=3)
    status, o, e = _run(cli, ["saliency", piece, "--method", "gradient", "-o", tmp_path / "s.npz", "--json"], capsys)
    assert status == 0, e
    sal = json.loads(o)
    assert sal["kind"] == "midi" and sal["model"] == "midi_style_lstm" and sal["n_notes"] == 40
    assert len(sal["per_note"]) == 40 and len(sal["top_notes"]) == 5
    with np.load(tmp_path / "s.npz") as z:
        assert z["attribution"].shape == (40, 3) and z["per_note"].shape == (40,)
    status, o, e = _run(
        cli,
        ["saliency", piece, "--method", "integrated-gradients", "--target", "bach", "-o", tmp_path / "s.csv", "--json"],
        capsys,
    )
    assert status == 0, e
    ig = json.loads(o)
    assert ig["target"] == "bach" and abs(ig["integrated_gradients"]["relative_error"]) < 0.05
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 41
    status, _, e = _run(cli, ["saliency", piece, "--method", "smoothgrad"], capsys)
    assert status == 2 and "does not apply to MIDI" in e
    status, o, e = _run(
        cli, ["flip", piece, "--to", "bach", "--steps", "20", "-o", tmp_path / "f.mid", "--json", "--quiet"], capsys
    )
    assert status == 0, e
    fl = json.loads(o)
    assert fl["target"] == "bach" and (tmp_path / "f.mid").is_file() and "probabilities_after" in fl


# ----------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_cli_jazz_vs_dance_train_evaluate_predict(shared_data, tmp_path, capsys):
    from musiclens import cli

    genre = shared_data / "midi" / "di01096-genre-midi"
    if not (genre / "jazz").is_dir():
        pytest.skip(f"real-data tier: {genre} is not present")
    root = tmp_path / "jazz_dance"
    root.mkdir()
    for label in ("dance", "jazz"):
        (root / label).symlink_to(genre / label, target_is_directory=True)
    out = tmp_path / "model"
    status, o, e = _run(
        cli,
        [
            "train",
            "--data",
            root,
            "--out",
            out,
            "--arch",
            "midi-lstm",
            "--epochs",
            "3",
            "--hidden",
            "32",
            "--json",
            "--quiet",
        ],
        capsys,
    )
    assert status == 0, e
    res = json.loads(o)
    assert res["arch"] == "midi-lstm" and res["split"] == {"train": 96, "val": 12, "test": 12}
    status, o, e = _run(cli, ["evaluate", "--model", out, "--data", root, "--json"], capsys)
    ev = json.loads(o)
    assert ev["split"] == "test" and ev["n_files"] == 12 and ev["training_overlap"]["train"] == 0
    assert ev["accuracy"] == pytest.approx(res["test_accuracy"])
    piece = sorted((root / "jazz").glob("*.mid"))[0]
    status, o, e = _run(cli, ["predict", piece, "--model", out, "--json"], capsys)
    assert status == 0, e
    assert json.loads(o)["predicted"] in ("dance", "jazz")
