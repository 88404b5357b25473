"""The MIDI use cases: open a file with a MIDI model's spec, classify the (edited) notes with
per-note saliency, flip the classification, and render notes to audio."""

from __future__ import annotations

import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from musiclens.core.analyses.results import MidiClassified, MidiFlip, MidiOpened
from musiclens.core.progress import Progress


def open_midi(model: Any, path: str | Path) -> MidiOpened:
    """Read a MIDI file with the MIDI model's spec (raises when it has too few notes)."""
    path = Path(path)
    notes = model.spec.read(path)
    model.spec.window(notes)  # too few notes: say so now
    return MidiOpened(path, notes, list(model.labels), model.name, model.spec.n_notes, list(notes.repairs))


def training_distance(model: Any, path: str | Path) -> dict[str, Any] | None:
    """How far the piece at ``path`` (every note of every track) lies from ``model``'s training
    pieces (:func:`~musiclens.core.models.midi_piece.distance_to_training`), or None when the
    model does not record its training pieces' statistics."""
    from musiclens.core.midi import read_midi
    from musiclens.core.models.inputs import piece_features
    from musiclens.core.models.midi_piece import distance_to_training

    stats = (model.provenance or {}).get("training_statistics")
    if not stats:
        return None
    return distance_to_training(piece_features(read_midi(path)), stats)


def classify_notes(
    model: Any, notes: Any, *, target: int | None = None, revision: int = 0, method: str = "gradient"
) -> MidiClassified:
    """Probabilities (L,) of the model's window of ``notes`` and the per-note attribution of
    class ``target`` (index; None = the top class) by ``method`` of the method table:
    (k, 3) d logit / d (pitch, step, duration) for the k notes read."""
    from musiclens.core.interpret import methods

    t0 = time.perf_counter()
    feats, mask = model.spec.window(notes)
    x, mk = model.tensors(feats, mask)
    p = model.predict(x, mk)[0].cpu().numpy()
    t = int(np.argmax(p)) if target is None else int(target)
    meth = methods.get(method)
    sal = meth(model, x, target=t, mask=mk)[0].detach().cpu().numpy()
    k = int(mask.sum())
    return MidiClassified(revision, list(model.labels), p, sal[:k], k, t, time.perf_counter() - t0)


def flip(
    model: Any, notes: Any, to: str | int, *, steps: int = 300, **options: Any
) -> Generator[Progress, None, MidiFlip | None]:
    """Input optimisation: the smallest change to the model's window of ``notes`` that makes
    it say ``to`` (``options``: :func:`~musiclens.core.interpret.midi_flip.flip_steps`'s).
    Yields a :class:`Progress` per step (``payload``: the engine's step); returns
    :class:`MidiFlip` (the result and the whole piece with the flipped opening, as a saved
    file reads back), or None if no step was made."""
    from musiclens.core.interpret.midi_flip import flip_steps
    from musiclens.core.midi import through_file

    name = model.labels[model.label_index(to)]
    last = None
    for last in flip_steps(model, notes, to=to, steps=steps, **options):
        yield Progress(
            fraction=last.step / last.steps,
            message=f"flip to {name}: step {last.step}, p = {last.target_probability:.2f}",
            payload=last,
        )
    if last is None or last.best is None:
        return None
    result = last.best
    return MidiFlip(result, through_file(result.full_notes(notes)), list(model.labels))


def render(notes: Any, sample_rate: int = 22050) -> tuple[np.ndarray, int, str]:
    """Notes -> (audio (samples,) float32, rate, how: SoundFont or the built-in synthesiser),
    with the file's tracks the model does not read (drums, ...) as they are."""
    from musiclens.core.midi import merge_notes, other_notes
    from musiclens.core.synth import synthesise

    others = other_notes(notes)
    audio, how = synthesise(merge_notes(notes, others) if len(others) else notes, sample_rate)
    return audio, sample_rate, how
