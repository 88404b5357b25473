"""``musiclens study midi-rnn``: a quick run on a tiny synthetic two-class MIDI folder (files,
the claims table, numbers consistent with the files, the flipped .mid re-read with every
track), its errors, and a quick run on the shared jazz/dance files when they are there."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest

REPO = Path(__file__).resolve().parents[1]
GENRE = REPO.parent / "shared" / "data" / "midi" / "di01096-genre-midi"


def write_piece(path: Path, *, dance: bool, seed: int, n: int = 120) -> None:
    """'dance': fast (128 bpm) high synth eighths over a four-on-the-floor drum track;
    'swing': slow (90 bpm) low piano notes of mixed lengths, no drums. Two tracks either way
    (a bass line), so a flip must keep both."""
    rng = np.random.default_rng(seed)
    bpm = 128.0 if dance else 90.0
    beat = 60.0 / bpm
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    lead = pretty_midi.Instrument(program=81 if dance else 0, name="lead")
    bass = pretty_midi.Instrument(program=38 if dance else 32, name="bass")
    t = 0.0
    for i in range(n):
        d = beat / 2 if dance else beat * float(rng.choice([0.66, 1.0, 1.33]))
        pitch = int(rng.integers(72, 84) if dance else rng.integers(48, 62))
        lead.notes.append(pretty_midi.Note(velocity=100 if dance else 60, pitch=pitch, start=t, end=t + 0.9 * d))
        if i % 4 == 0:
            bass.notes.append(pretty_midi.Note(velocity=80, pitch=pitch - 24, start=t, end=t + 1.5 * d))
        t += d
    pm.instruments += [lead, bass]
    if dance:
        kit = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
        for b in range(int(t / beat)):
            kit.notes.append(pretty_midi.Note(velocity=110, pitch=36, start=b * beat, end=b * beat + 0.1))
        pm.instruments.append(kit)
    pm.write(str(path))


def make_data(root: Path, per_class: int = 6) -> Path:
    for label in ("dance", "swing"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            write_piece(root / label / f"{label}{i}.mid", dance=label == "dance", seed=i + 50 * (label == "dance"))
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One quick run through the CLI: (data folder, report folder, stdout JSON)."""
    import contextlib
    import io

    from musiclens import cli

    tmp = tmp_path_factory.mktemp("midi_rnn")
    data = make_data(tmp / "data")
    out = tmp / "report"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = cli.main(["study", "midi-rnn", "--data", str(data), "--out", str(out), "--quick", "--json"])
    assert status == 0, stderr.getvalue()
    return data, out, json.loads(stdout.getvalue())


def test_the_report_files_are_written_and_listed(report):
    _, out, numbers = report
    assert json.loads((out / "numbers.json").read_text()) == numbers
    for name in ("report.md", "accuracy.png", "deletion_test.png", "saliency_piece.png"):
        assert (out / name).is_file(), name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    win = numbers["open_in_window"]
    assert set(win) == {"models", "audio", "midi"} and len(win["models"]) == 2 and len(win["midi"]) == 3
    from musiclens.core.models import registry

    for folder in win["models"]:
        model = registry.load(out / folder, kind="midi")  # a model the window can open
        assert model.labels == ["dance", "swing"]
    assert {registry.load(out / f, kind="midi").architecture["family"] for f in win["models"]} == {
        "midi_lstm",
        "midi_piece",
    }
    for mid in win["midi"]:
        assert (out / mid).is_file() and (out / mid).suffix == ".mid"


def test_the_report_puts_the_claims_beside_ours(report):
    _, out, numbers = report
    text = (out / "report.md").read_text()
    assert "| quantity | the study's claim | source of the claim | ours |" in text
    assert "Where the data differ" in text and "--quick" in text
    for claim in numbers["claims"].values():
        assert claim["claim"] in text
    for arch in ("midi-lstm", "midi-piece"):
        a = numbers["accuracy"][arch]
        assert f"{a['accuracy']:.1%} ({a['correct']}/{a['n_files']} files" in text


def test_numbers_are_consistent_with_the_folds_and_the_data(report):
    data, out, numbers = report
    assert numbers["folds"] == 2 and numbers["classes"] == ["dance", "swing"]
    folds = numbers["fold_of_file"]
    assert len(folds) == 12 and sorted(set(folds.values())) == [1, 2]
    for label in ("dance", "swing"):  # stratified: each fold holds 3 of each class
        assert sorted(v for k, v in folds.items() if k.startswith(label)).count(1) == 3
    for arch, a in numbers["accuracy"].items():
        assert a["n_files"] == 12 and a["correct"] == round(a["accuracy"] * 12)
        assert np.isclose(np.mean(a["per_fold"]), a["fold_mean"])
        assert a["ci95"][0] <= a["accuracy"] <= a["ci95"][1]
        assert sum(map(sum, a["confusion"])) == 12 and np.trace(a["confusion"]) == a["correct"]
        d = numbers["deletion_test"][arch]
        rows = numbers["deletion_per_piece"][arch]
        assert d["pieces"] == len(rows) == 12
        assert np.isclose(d["mean_drop_salient"], np.mean([r["drop_salient"] for r in rows]))
        assert all(r["deleted"] == max(1, round(0.1 * r["notes_read"])) for r in rows)
    # the pieces differ clearly: our whole-piece model separates them on unseen files
    assert numbers["accuracy"]["midi-piece"]["accuracy"] >= 0.75


def note_keys(notes) -> list[tuple]:
    """Each note as (start, end, program, drum, pitch, velocity), times to the microsecond."""
    cols = (notes.start.round(6), notes.end.round(6), notes.program, notes.is_drum, notes.pitch, notes.velocity)
    return list(zip(*cols, strict=True))


def other_events(path: Path) -> list[int]:
    """Per track of a MIDI file: the messages that are not notes."""
    return [sum(1 for m in tr if m.type not in ("note_on", "note_off")) for tr in mido.MidiFile(path).tracks]


def test_the_flips_are_written_local_and_keep_every_track(report):
    data, out, numbers = report
    from musiclens.core.midi import read_midi
    from musiclens.core.models import registry

    piece = numbers["piece"]
    source = data / piece["class"] / piece["file"]
    for arch, f in numbers["flips"].items():
        path = out / f["file"]
        c = f["check"]
        # the numbers say what the file holds: re-read it here
        model = registry.load(out / numbers["models"][arch], kind="midi")
        back = model.classify_file(path)
        assert back["predicted"] == c["predicted_after_reading"]
        assert c["holds_in_file"] == (back["predicted"] == f["target"])
        assert (
            len(mido.MidiFile(path).tracks) == len(mido.MidiFile(source).tracks) == c["tracks"] == c["tracks_written"]
        )
        # every tempo, program, controller and meta event of every track is written back
        assert other_events(path) == other_events(source) and sum(other_events(source)) == c["other_events"]
        before, after = read_midi(source), read_midi(path)
        assert len(before) == c["notes_in_file"] and len(after) == c["notes_in_written_file"]
        assert set(zip(after.program, after.is_drum)) == set(zip(before.program, before.is_drum))  # drums too
        # notes of the source with an exact twin (times, instrument, pitch, velocity) in the written file
        twins = sum((Counter(note_keys(before)) & Counter(note_keys(after))).values())
        assert twins == c["notes_unchanged_exact"] == len(before) - c["notes_changed_in_file"]
        if f["flipped"]:  # local: only the notes the flip reports differ (edited or deleted)
            assert 0 < f["change"]["notes_changed"] == len(before) - twins
            assert len(after) - twins <= len(before) - twins and c["local"] and c["every_track_kept"]
    # the recipe's gradient flip moves pitches and times freely: on these pieces it flips, and it holds
    assert numbers["flips"]["midi-lstm"]["flipped"] and numbers["flips"]["midi-lstm"]["check"]["holds_in_file"]


def test_missing_data_or_classes_is_one_line(run_cli, tmp_path):
    status, out, err = run_cli("study", "midi-rnn", "--out", tmp_path / "r")
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and "--data" in err
    (tmp_path / "one" / "jazz").mkdir(parents=True)
    write_piece(tmp_path / "one" / "jazz" / "a.mid", dance=False, seed=0)
    status, out, err = run_cli("study", "midi-rnn", "--data", tmp_path / "one", "--out", tmp_path / "r")
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and "two class sub-folders" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.realdata
def test_shared_jazz_dance_folder_is_read_as_the_studys_two_classes():
    if not (GENRE / "jazz").is_dir():
        pytest.skip(f"real-data tier: {GENRE} is not present")
    from musiclens.core.analyses.studies.midi_rnn import stratified_folds, study_files

    root, labels, files, y, left_out = study_files(GENRE)
    assert labels == ["dance", "jazz"] and len(files) == 120 and np.bincount(y).tolist() == [60, 60]
    assert {"classics", "country", "rock"} <= set(left_out)
    fold = stratified_folds(y, 5)
    assert all(np.bincount(fold[y == c]).tolist() == [12] * 5 for c in (0, 1))
