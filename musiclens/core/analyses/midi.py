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


def saliency_method(model: Any, method: str = "gradient") -> str:
    """The method of the table that per-note saliency by ``method`` uses for ``model``: a
    network that names its own (``net.note_method``: the whole-piece model's
    ``"note-presence"``, since its gradient misses its statistics) gets that one for
    ``"gradient"``, the window's choice; any other method as asked."""
    own = getattr(getattr(model, "net", None), "note_method", None)
    if isinstance(own, str) and method in ("gradient", "grad"):
        return own
    return method


def classify_notes(
    model: Any, notes: Any, *, target: int | None = None, revision: int = 0, method: str = "gradient"
) -> MidiClassified:
    """Probabilities (L,) of the model's window of ``notes`` and the per-note attribution of
    class ``target`` (index; None = the top class) by ``method`` of the method table (as
    :func:`saliency_method` resolves it): (k, F) for the k notes read, e.g. d logit /
    d (pitch, step, duration); a whole-piece model's note presence: each note's first-order
    deletion effect, spread evenly over its F features."""
    from musiclens.core.interpret import methods

    t0 = time.perf_counter()
    feats, mask = model.spec.window(notes)
    x, mk = model.tensors(feats, mask)
    p = model.predict(x, mk)[0].cpu().numpy()
    t = int(np.argmax(p)) if target is None else int(target)
    method = saliency_method(model, method)  # the model's own per-note method for "gradient"
    meth = methods.get(method)
    sal = meth(model, x, target=t, mask=mk)[0].detach().cpu().numpy()
    k = int(mask.sum())
    return MidiClassified(revision, list(model.labels), p, sal[:k], k, t, time.perf_counter() - t0, meth.name)


def flip_kind(model: Any) -> str:
    """How :func:`flip` changes a piece for ``model``: ``"delete"`` (a note-presence model: the
    statistics read no gradient of pitch or time, so notes are deleted,
    :mod:`~musiclens.core.interpret.note_deletion_flip`) or ``"edit"`` (pitch, step and
    duration of the first notes, or pitch/velocity/onset of a whole piece:
    :mod:`~musiclens.core.interpret.midi_flip`)."""
    from musiclens.core.interpret.note_deletion_flip import is_presence_model

    return "delete" if is_presence_model(model) else "edit"


def flip(
    model: Any, notes: Any, to: str | int, *, steps: int = 300, **options: Any
) -> Generator[Progress, None, MidiFlip | None]:
    """Input optimisation: the smallest change to ``notes`` that makes the model say ``to``:
    for a note-presence model the fewest notes deleted
    (:func:`~musiclens.core.interpret.note_deletion_flip.deletion_flip_steps`), else a change
    of the notes' features (:func:`~musiclens.core.interpret.midi_flip.flip_steps`);
    ``options``: that engine's (see :func:`flip_kind`). Yields a :class:`Progress` per step
    (``payload``: the engine's step); returns :class:`MidiFlip` (the result and the whole
    piece with the change, as a saved file reads back), or None if no step was made."""
    from musiclens.core.interpret.midi_flip import flip_steps
    from musiclens.core.interpret.note_deletion_flip import deletion_flip_steps
    from musiclens.core.midi import through_file

    name = model.labels[model.label_index(to)]
    engine = deletion_flip_steps if flip_kind(model) == "delete" else flip_steps
    last = None
    for last in engine(model, notes, to=to, steps=steps, **options):
        deleted = f", {int(last.extra['deleted'])} notes deleted" if "deleted" in last.extra else ""
        yield Progress(
            fraction=last.step / last.steps,
            message=f"flip to {name}: step {last.step}, p = {last.target_probability:.2f}{deleted}",
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
