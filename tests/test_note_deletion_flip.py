"""The deletion flip of note-presence models (``midi-piece`` with note statistics): a model
whose score reads the share of drum notes is flipped by deleting drum notes and nothing else;
the flip holds in the written .mid, the other notes keep their exact times, every track and
event is kept, and pruning leaves no deletion the flip does not need. The CLI and the
analysis dispatch to it; the feature-space flip refuses such a model."""

from __future__ import annotations

import json
from collections import Counter

import mido
import numpy as np
import pytest
import torch

from tests.midi_tunes import folk_tune


def drum_reader(tmp_path, notes, *, lead: float):
    """A saved statistics-only whole-piece model: logit[high] - logit[low] = 40 * (drum share) + b,
    ``b`` set so that ``notes`` reads "high" with a lead of ``lead`` in probability."""
    from musiclens.core.models import registry
    from musiclens.core.models.inputs import PieceSpec
    from musiclens.core.models.midi_piece import STAT_NAMES

    arch = {
        "family": "midi_piece",
        "params": {"n_labels": 2, "channels": 4, "layers": 1, "statistics": True, "votes": False},
    }
    net, _ = registry.build(arch)
    col = STAT_NAMES.index("drum share")
    with torch.no_grad():
        net.stat_head.weight.zero_()
        net.stat_head.weight[0, col], net.stat_head.weight[1, col] = 20.0, -20.0
        net.stat_head.bias.zero_()
    net.eval()
    model = registry.LoadedModel("drums", net, spec=PieceSpec(), labels=["high", "low"], architecture=arch)
    x, m = model.tensors(*model.spec.window(notes))
    with torch.no_grad():
        d = float(net(x, m)[0, 0] - net(x, m)[0, 1])
        p_high = (1 + lead) / 2
        net.stat_head.bias[0] = (np.log(p_high / (1 - p_high)) - d) / 2
        net.stat_head.bias[1] = -float(net.stat_head.bias[0])
    registry.save(model, tmp_path / "drums")
    return registry.load(tmp_path / "drums", kind="midi"), tmp_path / "drums"


def key(notes):
    return Counter(
        zip(notes.start.round(6), notes.end.round(6), notes.program, notes.is_drum, notes.pitch, notes.velocity)
    )


def test_entangled_marks_notes_of_one_key_that_overlap():
    from musiclens.core.interpret.note_deletion_flip import entangled
    from musiclens.core.midi import Notes

    # key 60: 0-1 and 0.9-2 overlap, 2-3 only touches (safe); key 62: 0-5 overlaps 2-3 (not its
    # neighbour in time 1-1.5, which it overlaps too); key 64 alone; another instrument's 60 alone
    notes = Notes(
        pitch=[60, 60, 60, 62, 62, 62, 64, 60],
        start=[0.0, 0.9, 2.0, 0.0, 1.0, 2.0, 0.0, 0.5],
        duration=[1.0, 1.1, 1.0, 5.0, 0.5, 1.0, 1.0, 0.2],
        velocity=[80] * 8,
        instrument=[0, 0, 0, 0, 0, 0, 0, 1],
    )
    assert entangled(notes).tolist() == [True, True, False, True, True, True, False, False]


def test_deleting_drum_notes_flips_and_holds_in_the_written_file(tmp_path):
    from musiclens.core.analyses import flip, run
    from musiclens.core.interpret.note_deletion_flip import DeletionFlipResult
    from musiclens.core.midi import read_midi, write_midi
    from musiclens.core.models.inputs import PieceSpec

    piece = folk_tune(tmp_path / "piece.mid", n=200, drums=True)
    notes = PieceSpec().read(piece)
    model, _ = drum_reader(tmp_path, notes, lead=0.2)
    assert model.classify_file(piece)["predicted"] == "high"
    res = run(flip(model, notes, "low"), lambda p: None)
    r = res.result
    assert isinstance(r, DeletionFlipResult) and r.flipped
    deleted = ~r.kept
    assert deleted.any() and notes.is_drum[: len(r.kept)][deleted].all()  # only drum notes go
    assert r.change["notes_deleted"] == int(deleted.sum()) == len(r.changed) < 0.5 * len(notes)
    dest = write_midi(r.full_notes(notes), tmp_path / "flipped.mid", keep_other_tracks=True)
    assert model.classify_file(dest)["predicted"] == "low"  # re-read from disk
    before, after = read_midi(piece), read_midi(dest)
    assert len(after) == len(before) - r.change["notes_deleted"]
    assert sum((key(before) & key(after)).values()) == len(after)  # every note left is a source note, exactly
    src, out = mido.MidiFile(piece), mido.MidiFile(dest)
    assert len(out.tracks) == len(src.tracks)
    other = lambda mf: [[m.type for m in tr if m.type not in ("note_on", "note_off")] for tr in mf.tracks]  # noqa: E731
    assert other(out) == other(src)  # every tempo, program and meta event of every track
    # pruned: putting back any one deleted note undoes the flip (the exact re-classification)
    spec = model.spec
    for i in np.flatnonzero(deleted):
        kept = r.kept.copy()
        kept[i] = True
        p = model.predict(*model.tensors(*spec.window(notes.select(kept))))[0].numpy()
        assert p[1] - p[0] < 0.02  # not a flip with the margin
    # the proposal the window shows is that piece
    assert res.proposal.equals(r.full_notes(notes))


def test_cli_midi_flip_deletes_notes_and_reports_the_written_file(tmp_path, capsys):
    from musiclens import cli
    from musiclens.core.models.inputs import PieceSpec

    piece = folk_tune(tmp_path / "piece.mid", n=120, drums=True)
    _, folder = drum_reader(tmp_path, PieceSpec().read(piece), lead=0.1)
    dest = tmp_path / "f.mid"
    args = ["midi-flip", str(piece), "--model", str(folder), "--to", "low", "-o", str(dest), "--json", "--quiet"]
    assert cli.main(args) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["edit"] == "delete notes" and res["flipped"] and res["flip_holds_in_output"]
    c, k = res["change"], res["output_check"]
    assert k["notes_written"] == k["notes_source"] - c["notes_deleted"] == k["notes_unchanged_exact"]
    assert k["tracks_written"] == k["tracks"] and k["other_events_written"] == k["other_events"]
    assert all(n["deleted"] and n["before"]["drum"] for n in res["changed_notes"])
    # text output says what was deleted and what the file holds
    assert cli.main(args[:-2] + ["--quiet"]) == 0
    text = capsys.readouterr().out
    assert "deleted" in text and "holds" in text and "tracks" in text
    # --features belongs to the feature-space flip: one line, exit 2
    assert cli.main(args[:-2] + ["--features", "pitch"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "deleting notes" in err


def test_feature_space_flip_refuses_a_presence_model(tmp_path):
    from musiclens.core.errors import ParameterError
    from musiclens.core.interpret.midi_flip import flip_steps
    from musiclens.core.models.inputs import PieceSpec

    piece = folk_tune(tmp_path / "piece.mid", n=60, drums=True)
    notes = PieceSpec().read(piece)
    model, _ = drum_reader(tmp_path, notes, lead=0.1)
    with pytest.raises(ParameterError, match="deletes notes"):
        next(flip_steps(model, notes, to="low"))
