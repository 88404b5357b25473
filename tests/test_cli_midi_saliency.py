"""``musiclens saliency FILE.mid`` on a whole-piece model that reads note statistics: the MIDI
methods of the table are offered, ``gradient`` (whose value is 0 on such a model) becomes its
note presence, and the per-note values keep their sign (for the class vs against it)."""

from __future__ import annotations

import json

import numpy as np

from tests.midi_tunes import folk_tune
from tests.test_note_deletion_flip import drum_reader


def test_saliency_of_a_midi_file_uses_the_models_note_presence(tmp_path, capsys):
    from musiclens import cli
    from musiclens.core.models.inputs import PieceSpec

    piece = folk_tune(tmp_path / "piece.mid", n=80, drums=True)
    notes = PieceSpec().read(piece)
    _, folder = drum_reader(tmp_path, notes, lead=0.1)
    for asked in (None, "note-presence"):
        extra = [] if asked is None else ["--method", asked]
        out = tmp_path / "s.csv"
        assert cli.main(["saliency", str(piece), "--model", str(folder), "--json", "-o", str(out), *extra]) == 0
        s = json.loads(capsys.readouterr().out)
        assert s["method"] == "note-presence" and s["method_asked"] == (asked or "gradient")
        per = np.asarray(s["per_note"])
        assert len(per) == s["n_notes"] == len(notes)  # every note of every track
        # the model's "high" score grows with the share of drum notes: drums speak for it, the rest against
        assert s["target"] == "high"
        assert (per[notes.is_drum] > 0).all() and (per[~notes.is_drum] < 0).all()
        assert all(notes.is_drum[t["index"]] for t in s["top_notes"])  # the top notes are for the class
        rows = out.read_text().splitlines()
        assert len(rows) == len(notes) + 1 and rows[0].endswith("d_drum,d_beat")
    # text: says which method it used instead of the one asked for
    assert cli.main(["saliency", str(piece), "--model", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "note-presence saliency (the model's own method for gradient)" in text and "all " in text


def test_midi_methods_are_choices_and_refused_on_audio(run_cli, tmp_path, capsys):
    import pytest

    from musiclens import cli

    with pytest.raises(SystemExit) as done:
        cli.main(["saliency", "--help"])
    flat = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    assert done.value.code == 0 and "note-presence [midi]:" in flat and "smoothgrad [audio]:" in flat
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, np.zeros(22050, np.float32), 22050)
    status, out, err = run_cli("saliency", wav, "--method", "note-presence")
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and "for MIDI files" in err
