"""Small MIDI files the tests write: the fiddle tune the bundled MIDI model calls folk, and
the 'high'/'low' pieces of the tiny two-class MIDI datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi

#: one 20-note phrase of the fiddle tune (G major), repeated as often as a test asks
FIDDLE_PHRASE = (67, 71, 74, 71, 67, 71, 72, 76, 79, 76, 74, 72, 71, 74, 67, 69, 71, 72, 74, 76)


def folk_tune(path, n: int = 60, *, drums: bool = False) -> Path:
    """A jig-like fiddle tune of ``n`` notes: quick eighth notes at 120 bpm, every third one
    a quarter, one voice (program 40, violin); the bundled MIDI model says folk. With
    ``drums``, a bodhrán-ish drum track the model does not read (drop_drums)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    inst = pretty_midi.Instrument(program=40, name="fiddle")
    t = 0.0
    for i in range(n):
        d = 0.25 if i % 3 else 0.5
        pitch = FIDDLE_PHRASE[i % len(FIDDLE_PHRASE)]
        inst.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=t, end=t + d))
        t += d
    pm.instruments.append(inst)
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True, name="drum")
        for i in range(int(t / 0.5)):
            kit.notes.append(pretty_midi.Note(velocity=70, pitch=45, start=i * 0.5, end=i * 0.5 + 0.1))
        pm.instruments.append(kit)
    pm.write(str(path))
    return Path(path)


def write_piece(path, *, low: bool, n_notes: int, seed: int) -> None:
    """'low': slow low notes (0.4 s, pitches 40..52); 'high': fast high notes (0.1 s, 72..84)."""
    rng = np.random.default_rng(seed)
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    inst = pretty_midi.Instrument(program=0)
    t = 0.0
    for _ in range(n_notes):
        d = 0.4 if low else 0.1
        pitch = int(rng.integers(40, 53) if low else rng.integers(72, 85))
        inst.notes.append(pretty_midi.Note(velocity=80, pitch=pitch, start=t, end=t + d))
        t += d
    pm.instruments.append(inst)
    pm.write(str(path))


def make_folder(root, per_class: int = 10, n_notes: int = 24) -> Path:
    """A two-class dataset: ``root/high`` and ``root/low``, ``per_class`` pieces each."""
    root = Path(root)
    for label in ("high", "low"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            write_piece(
                root / label / f"{label}{i:02d}.mid",
                low=label == "low",
                n_notes=n_notes,
                seed=i + (100 if label == "low" else 0),
            )
    return root
