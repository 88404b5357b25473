"""The whole-piece MIDI model (family ``midi_piece``, architecture ``midi-piece``, the default
for MIDI folders): registry round trip, training through the CLI, predict/evaluate, and
per-note saliency over every note of the piece."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.midi_tunes import folk_tune, make_folder

REPO = Path(__file__).resolve().parents[1]
GENRE = REPO.parent / "shared" / "data" / "midi" / "di01096-genre-midi"


def test_family_builds_saves_and_loads(tmp_path):
    from musiclens.core.models import registry
    from musiclens.core.models.inputs import PieceSpec, spec_from_meta

    assert "musiclens.core.models.midi_piece" in registry.FAMILY_MODULES
    spec = PieceSpec()
    net, layers = registry.build({"family": "midi_piece", "params": {"n_labels": 2, "channels": 8}})
    model = registry.LoadedModel(
        "p",
        net,
        spec=spec,
        labels=["a", "b"],
        architecture={"family": "midi_piece", "params": {"n_labels": 2, "channels": 8}},
    )
    registry.save(model, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["note_features"]["whole_piece"] is True
    assert isinstance(spec_from_meta(meta), PieceSpec)
    back = registry.load(tmp_path / "m", kind="midi")
    assert isinstance(back.spec, PieceSpec) and back.architecture["family"] == "midi_piece"
    x = torch.randn(1, 50, 7).abs() * 10
    net.eval()
    assert torch.allclose(net(x), back.net(x), atol=1e-6)


def test_spec_reads_every_note_of_every_track(tmp_path):
    from musiclens.core.models.inputs import PIECE_FEATURES, PieceSpec

    path = folk_tune(tmp_path / "t.mid", n=300, drums=True)
    spec = PieceSpec()
    notes = spec.read(path)
    feats, mask = spec.window(notes)
    assert feats.shape == (len(notes), len(PIECE_FEATURES)) and mask.all()
    assert len(notes) > 300 and feats[:, PIECE_FEATURES.index("drum")].sum() > 0  # drums read
    beat = feats[:, PIECE_FEATURES.index("beat")]
    assert np.allclose(beat, notes.start * 2.0, atol=1e-3)  # 120 bpm: 2 beats per second


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from musiclens import cli

    tmp = tmp_path_factory.mktemp("piece")
    root = make_folder(tmp / "data", per_class=10, n_notes=40)
    out = tmp / "model"
    status = cli.main(["train", "--data", str(root), "--out", str(out), "--epochs", "3", "--json", "--quiet"])
    assert status == 0
    return root, out, cli


def test_cli_trains_the_default_midi_architecture(trained, capsys):
    root, out, cli = trained
    capsys.readouterr()
    meta = json.loads((out / "model.json").read_text())
    assert meta["architecture"]["family"] == "midi_piece" and meta["input"] == "midi"
    assert cli.main(["evaluate", "--model", str(out), "--data", str(root), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["n_files"] == 2 and 0.0 <= ev["accuracy"] <= 1.0 and "confusion" in ev
    piece = next((root / "low").glob("*.mid"))
    assert cli.main(["predict", str(piece), "--model", str(out), "--json"]) == 0
    pr = json.loads(capsys.readouterr().out)
    assert set(pr["probabilities"]) == {"high", "low"} and pr["predicted"] in ("high", "low")


def test_saliency_covers_the_whole_piece(trained, tmp_path):
    from musiclens.core.analyses.midi import classify_notes
    from musiclens.core.models import registry

    _, out, _ = trained
    model = registry.load(out, kind="midi")
    path = folk_tune(tmp_path / "long.mid", n=400, drums=True)
    notes = model.spec.read(path)
    assert len(notes) > 400
    res = classify_notes(model, notes, method="gradient-x-input")
    sal = np.asarray(res.saliency)
    assert sal.shape[0] == len(notes) and np.isfinite(sal).all()
    per_note = np.abs(sal).sum(axis=1)
    assert (per_note[100:] > 0).mean() > 0.9  # notes after the first 100 count too
    assert model.classify_file(path)["n_notes_read"] == len(notes)


@pytest.mark.realdata
def test_real_jazz_dance_pieces_read_whole():
    if not (GENRE / "jazz").is_dir():
        pytest.skip(f"real-data tier: {GENRE} is not present")
    from musiclens.core.models.inputs import PieceSpec

    spec = PieceSpec()
    for label in ("jazz", "dance"):
        path = sorted((GENRE / label).glob("*.mid"))[0]
        notes = spec.read(path)
        feats, _ = spec.window(notes)
        assert len(feats) == len(notes) > 100
        assert feats[:, 5].sum() > 0 or label == "jazz"  # dance files have drums


def test_flip_says_it_does_not_support_whole_piece_models_yet(trained, tmp_path, capsys):
    root, out, cli = trained
    piece = next((root / "low").glob("*.mid"))
    capsys.readouterr()
    status = cli.main(["flip", str(piece), "--model", str(out), "--to", "high", "-o", str(tmp_path / "f.mid")])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "does not support" in err and "RuntimeError" not in err
    assert not (tmp_path / "f.mid").exists()
