"""Real-data tier for MIDI: ../shared/data/midi (skipped with a reason when absent).

* every jazz/dance file of di01096-genre-midi reads, including the two malformed ones
  (a data byte > 127; an invalid key signature), and the RIFF-RMID file of cjnolet;
* the study's task: an LSTM (2 × 168) on the first 100 notes of jazz vs dance, split by
  file; the held-out accuracy is reported (``-s`` prints it; ``record_property`` keeps it
  in the JUnit XML). The weights are not kept;
* the bundled model on real folk tunes (Nottingham) and a flip on a real jazz file that
  survives writing and re-reading.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musiclens.core.interpret.midi_flip import flip
from musiclens.core.midi import read_midi, write_midi
from musiclens.core.models.midi_lstm import DEFAULT_MIDI_MODEL, NoteFeatureSpec, load_midi_model
from musiclens.core.training.midi import load_folder, train_midi_lstm

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def genre_root(shared_data):
    root = shared_data / "midi" / "di01096-genre-midi"
    if not (root / "jazz").is_dir():
        pytest.skip(f"real-data tier: {root} is not present")
    return root


@pytest.fixture(scope="module")
def jazz_dance(genre_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jazz_dance")
    for label in ("dance", "jazz"):
        (tmp / label).symlink_to(genre_root / label, target_is_directory=True)
    spec = NoteFeatureSpec(n_notes=100, short="drop", drop_drums=True)
    steps = list(load_folder(tmp, spec, seed=0))
    return steps[-1].data


def test_malformed_real_files_read_leniently(genre_root, shared_data):
    d45 = read_midi(genre_root / "dance" / "dance45.mid")
    assert len(d45) > 1000 and any("clip" in r for r in d45.repairs)
    d39 = read_midi(genre_root / "dance" / "dance39.mid")
    assert len(d39) > 500 and any("key signature" in r for r in d39.repairs)
    rmid = shared_data / "midi" / "cjnolet-genre-midi" / "rock" / "david_lee_roth-skyscraper.midi"
    if rmid.exists():
        notes = read_midi(rmid)
        assert "unwrapped RIFF-RMID container" in notes.repairs and len(notes) > 1000
    clean = read_midi(genre_root / "jazz" / "jazz (1).mid")
    assert clean.repairs == []


def test_jazz_vs_dance_lstm_held_out_accuracy(jazz_dance, record_property):
    data = jazz_dance
    assert data.skipped == []  # every file has more than 100 notes and reads
    assert data.counts() == {
        "train": {"dance": 48, "jazz": 48},
        "val": {"dance": 6, "jazz": 6},
        "test": {"dance": 6, "jazz": 6},
    }
    files = [f for s in ("train", "val", "test") for f in data.files[s]]
    assert len(set(files)) == len(files) == 120  # by-file split
    torch.manual_seed(0)
    steps = [
        ev
        for ev in train_midi_lstm(data, hidden=168, layers=2, epochs=40, lr=3e-3, seed=0, name="jazz_dance")
        if ev.kind != "batch"
    ]
    m = steps[-1].model.provenance["metrics"]
    record_property("jazz_dance_test_accuracy", m["test_accuracy"])
    record_property("jazz_dance_val_accuracy", m["val_accuracy"])
    print(
        f"jazz vs dance (first 100 notes, drums dropped): test accuracy {m['test_accuracy']:.3f} on 12 "
        f"held-out files, val {m['val_accuracy']:.3f}, "
        f"final train accuracy {steps[-1].metrics['train']['accuracy']:.3f}; "
        f"test confusion {m['test_confusion']} (rows: dance, jazz)"
    )
    assert steps[-1].metrics["train"]["loss"] < steps[0].metrics["train"]["loss"]  # it learns something from real data
    assert sum(map(sum, m["test_confusion"])) == 12


def test_bundled_model_on_real_folk_tunes(shared_data):
    """Nottingham tunes (another source): their melody track reads as folk.

    The bundled model's folk class is monophonic (Ryan's Mammoth tunes), so the same tunes
    *with* their chord track are classified as chorale/polyphony (reported, not asserted).
    """
    folder = shared_data / "midi" / "nottingham-midi"
    files = sorted(folder.rglob("*.mid"))[::40][:20]
    if not files:
        pytest.skip(f"real-data tier: no MIDI in {folder}")
    model = load_midi_model(DEFAULT_MIDI_MODEL)
    melody = [model.classify_notes(read_midi(f, instruments=[0]))["predicted"] for f in files]
    full = [model.classify_file(f)["predicted"] for f in files]
    share = melody.count("folk") / len(melody)
    print(
        f"bundled model on {len(files)} Nottingham tunes: melody track {share:.0%} folk "
        f"({ {k: melody.count(k) for k in model.labels} }); with chords "
        f"{ {k: full.count(k) for k in model.labels} }"
    )
    assert share >= 0.7


def test_flip_real_jazz_file_survives_writing(genre_root, tmp_path):
    model = load_midi_model(DEFAULT_MIDI_MODEL)
    notes = model.spec.read(genre_root / "jazz" / "jazz (1).mid")
    before = model.classify_notes(notes)
    target = "bach" if before["predicted"] != "bach" else "folk"
    result = flip(model, notes, to=target, steps=300)
    d = result.to_dict()
    print(f"real jazz (1).mid: {d['probabilities_before']} -> {d['probabilities_after']}, change {d['change']}")
    assert result.flipped, d
    out = write_midi(result.full_notes(notes), tmp_path / "jazz_1_flipped.mid")
    again = model.classify_file(out)
    assert again["predicted"] == target
    assert len(read_midi(out, drop_drums=True)) == len(notes)
    assert np.all(result.after.duration > 0)
