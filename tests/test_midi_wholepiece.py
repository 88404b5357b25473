"""The whole-piece MIDI model (family ``midi_piece``, architecture ``midi-piece``, the default
for MIDI folders): registry round trip, training through the CLI, predict/evaluate, and
per-note saliency over every note of the piece."""

from __future__ import annotations

import json
from collections import Counter
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
    from musiclens.core.models.midi_piece import STAT_SQUASH

    assert meta["architecture"]["params"]["squash"] == STAT_SQUASH  # new models squash their statistics
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
    res = classify_notes(model, notes)  # what the piano roll asks for ("gradient")
    sal = np.asarray(res.saliency)
    assert sal.shape[0] == len(notes) and np.isfinite(sal).all()
    per_note = np.abs(sal).sum(axis=1)
    assert (per_note[100:] > 0).mean() > 0.9  # notes after the first 100 count too
    assert model.classify_file(path)["n_notes_read"] == len(notes)
    # it is the note-presence map of the model (its statistics are piecewise constant in the
    # note features: their plain gradient is 0)
    from musiclens.core.analyses.midi import saliency_method
    from musiclens.core.interpret import methods

    assert (
        saliency_method(model) == "note-presence" and saliency_method(model, "integrated-gradients") != "note-presence"
    )
    x, m = model.tensors(*model.spec.window(notes))
    pres = methods.get("note-presence")(model, x, target=res.target, mask=m)[0].numpy()
    np.testing.assert_allclose(sal, pres, rtol=1e-4, atol=1e-7)


def _piece(n=300, seed=0):
    """(n, 7) piece features: pitched notes on two programs and drums, on a 16th grid."""
    rng = np.random.default_rng(seed)
    beat = np.sort(rng.integers(0, n, n)) / 4.0
    x = np.zeros((n, 7), np.float32)
    x[:, 0] = rng.integers(36, 84, n)
    x[:, 1] = np.diff(beat, prepend=0.0) / 2.0  # 120 bpm
    x[:, 2] = rng.choice([0.125, 0.25, 0.5], n)
    x[:, 3] = rng.integers(40, 120, n)
    x[:, 4] = rng.choice([0, 32], n)
    drum = rng.random(n) < 0.3
    x[drum, 0], x[drum, 4], x[:, 5], x[:, 6] = rng.choice([36, 38, 42], drum.sum()), 0, drum, beat
    return x


def test_statistics_are_weighted_shares_and_a_zero_weight_deletes_the_note():
    from musiclens.core.models.midi_piece import STAT_NAMES, note_statistics, statistics_of

    x = _piece()
    names, d = note_statistics(x)
    s = statistics_of(d, torch.ones(len(x))).numpy()
    assert s.shape == (len(STAT_NAMES),) and list(STAT_NAMES[: len(names)]) == names
    k = STAT_NAMES.index("drum share")
    assert s[k] == pytest.approx(x[:, 5].mean(), abs=1e-6)
    fam = STAT_NAMES.index("family 4")  # program 32 (bass) // 8
    assert s[fam] == pytest.approx(np.mean((x[:, 5] == 0) & (x[:, 4] == 32)), abs=1e-6)
    # a share whose descriptors do not depend on the neighbours: weight 0 == the note deleted
    w = torch.ones(len(x))
    w[:30] = 0
    _, d2 = note_statistics(x[30:])
    for name in ("drum share", "family 0", "family 4", "pitch 48-59", "velocity 96-111"):
        i = STAT_NAMES.index(name)
        assert float(statistics_of(d, w)[i]) == pytest.approx(float(statistics_of(d2, torch.ones(len(x) - 30))[i]))


def test_note_presence_is_the_gradient_of_the_presence_weights():
    from musiclens.core.interpret import methods
    from musiclens.core.models import registry
    from musiclens.core.models.inputs import PieceSpec
    from musiclens.core.models.midi_piece import STAT_NAMES

    torch.manual_seed(0)
    params = {"n_labels": 2, "channels": 4, "statistics": True, "votes": True, "dropout": 0.0}
    arch = {"family": "midi_piece", "params": params}
    net, _ = registry.build(arch)
    with torch.no_grad():
        net.stat_head.weight.copy_(torch.randn(2, len(STAT_NAMES)))
        ranks = [i for i, n in enumerate(STAT_NAMES) if n.startswith("pitch-class share, rank")]
        net.stat_head.weight[:, ranks] = 0  # sorting has kinks where two pitch classes tie
    net.eval()
    model = registry.LoadedModel("p", net, spec=PieceSpec(), labels=["a", "b"], architecture=arch)
    x, m = model.tensors(_piece(200, seed=1), np.ones(200, bool))
    sal = methods.get("note-presence")(model, x, target=1, mask=m)
    assert sal.shape == x.shape
    g = sal[0].sum(-1)  # per note: the sum over its features
    assert (g != 0).float().mean() > 0.9
    for i in (3, 77, 150):  # a central finite difference of the logit in note i's weight
        w = torch.ones(1, 200, dtype=torch.float64)
        eps = 1e-3
        with torch.no_grad():
            up, down = w.clone(), w.clone()
            up[0, i] += eps
            down[0, i] -= eps
            net.double()
            fd = (net(x.double(), m, weight=up)[0, 1] - net(x.double(), m, weight=down)[0, 1]) / (2 * eps)
            net.float()
        assert float(g[i]) == pytest.approx(float(fd), rel=1e-2, abs=1e-5)
    # padded notes get exactly 0
    m2 = m.clone()
    m2[0, 180:] = False
    assert float(methods.get("note-presence")(model, x, target=1, mask=m2)[0, 180:].abs().sum()) == 0.0


def test_note_presence_refuses_a_model_without_presence_weights():
    from musiclens.core.errors import ParameterError
    from musiclens.core.interpret import methods
    from musiclens.core.models.inputs import NoteSpec
    from musiclens.core.models.midi_lstm import build_midi_lstm
    from musiclens.core.models.registry import LoadedModel

    net, _ = build_midi_lstm(n_labels=2, hidden=4, layers=1)
    model = LoadedModel("l", net, spec=NoteSpec(n_notes=10), labels=["a", "b"], architecture={})
    with pytest.raises(ParameterError, match="whole-piece"):
        methods.get("note-presence")(model, torch.rand(1, 10, 3), target=0)


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


def pitch_reader(tmp_path, notes, *, lead):
    """A saved whole-piece model (no statistics branch) whose "high" logit minus its "low" logit
    is ``40 * mean standardised pitch + bias``, the bias set so that ``notes`` reads "high"
    with a lead of ``lead`` in probability: a model near its boundary, to flip with small edits."""
    from musiclens.core.models import registry
    from musiclens.core.models.inputs import PieceSpec

    params = {"n_labels": 2, "channels": 4, "layers": 1, "kernel": 1, "dropout": 0.0}
    arch = {"family": "midi_piece", "params": params}
    net, layers = registry.build(arch)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        conv, head = net.body[0], net.head
        conv.weight[0, 0, 0] = 1.0  # channel 0 = standardised pitch + 5 (GELU ~ identity there)
        conv.bias[0] = 5.0
        net.body[1].weight.fill_(1.0)
        head.weight[0, 0, 0], head.weight[1, 0, 0] = 20.0, -20.0
    net.eval()
    model = registry.LoadedModel("pitch", net, spec=PieceSpec(), labels=["high", "low"], architecture=arch)
    x, m = model.tensors(*model.spec.window(notes))
    with torch.no_grad():
        d = float(net(x, m)[0, 0] - net(x, m)[0, 1])
        p_high = (1 + lead) / 2
        head.bias[0] = (np.log(p_high / (1 - p_high)) - d) / 2
        head.bias[1] = -float(head.bias[0])
    registry.save(model, tmp_path / "pitch")
    return tmp_path / "pitch"


def test_flip_on_a_whole_piece_is_local_and_holds_in_the_written_file(trained, tmp_path, capsys):
    import mido

    from musiclens.core.models import registry

    root, _, cli = trained
    piece = tmp_path / "piece.mid"
    folk_tune(piece, n=200, drums=True)
    from musiclens.core.models.inputs import PieceSpec

    out = pitch_reader(tmp_path, PieceSpec().read(piece), lead=0.03)
    model = registry.load(out, kind="midi")
    assert model.classify_file(piece)["predicted"] == "high"
    capsys.readouterr()
    dest = tmp_path / "f.mid"
    status = cli.main(["flip", str(piece), "--model", str(out), "--to", "low", "-o", str(dest), "--json", "--quiet"])
    assert status == 0
    res = json.loads(capsys.readouterr().out)
    assert res["predicted_before"] == "high" and res["flipped"] and res["flip_holds_in_output"]
    assert model.classify_file(dest)["predicted"] == "low"  # re-read from disk
    before, after = model.spec.read(piece), model.spec.read(dest)
    assert len(after) == len(before)
    c = res["change"]
    assert 0 < c["notes_changed"] < 0.1 * len(before)  # a small change
    assert all(n["after"]["pitch"] < n["before"]["pitch"] for n in res["changed_notes"])  # lower = less "high"
    # local: no note moves in time, every unchanged note is the same note
    key = lambda n: list(zip(n.start.round(6), n.end.round(6), n.instrument, n.pitch, n.velocity))  # noqa: E731
    kept = sum((Counter(key(before)) & Counter(key(after))).values())
    assert len(before) - kept == c["notes_changed"]
    # every track kept
    assert len(mido.MidiFile(dest).tracks) == len(mido.MidiFile(piece).tracks)


def test_flip_of_the_trained_hybrid_runs_and_reports_what_holds(trained, tmp_path, capsys):
    from musiclens.core.analyses import flip, run
    from musiclens.core.models import registry

    root, out, _ = trained
    model = registry.load(out, kind="midi")
    path = sorted(root.glob("high/*.mid"))[0]
    notes = model.spec.read(path)
    res = run(flip(model, notes, "low"), lambda p: None)
    assert res is not None
    r = res.result
    # a note-presence model's flip deletes notes (note_deletion_flip); nothing else changes
    assert len(r.written) == len(notes) - r.change.get("notes_deleted", 0) and r.change["notes"] == len(notes)
    # whatever it reached, it is what the written piece reads as
    again = model.predict(*model.tensors(*model.spec.window(res.proposal)))[0].numpy()
    assert np.allclose(again, r.probabilities_after, atol=1e-5)


def test_midi_classify_says_when_a_piece_lies_outside_the_training_pieces(trained, tmp_path, capsys):
    root, out, cli = trained
    meta = json.loads((out / "model.json").read_text())
    stats = meta["provenance"]["training_statistics"]
    assert stats["pieces"] == meta["provenance"]["metrics"]["counts"]["train"]["high"] * 2
    capsys.readouterr()
    seen = sorted(root.glob("high/*.mid"))[0]
    assert cli.main(["midi-classify", str(seen), "--model", str(out), "--json"]) == 0
    near = json.loads(capsys.readouterr().out)["training_distance"]
    other = folk_tune(tmp_path / "other.mid", n=400, drums=True)  # drums, another length and tempo
    assert cli.main(["midi-classify", str(other), "--model", str(out), "--json"]) == 0
    far = json.loads(capsys.readouterr().out)["training_distance"]
    assert far["outside"] and far["distance"] > near["distance"] and len(far["farthest"]) == 3
    # predict says the same, in its JSON and in one line of its text report
    assert cli.main(["predict", str(other), "--model", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["training_distance"] == far
    assert cli.main(["predict", str(other), "--model", str(out)]) == 0
    assert "outside the model's training pieces" in capsys.readouterr().out
