"""The MIDI use cases: open a file with a MIDI model's spec, classify the (edited) notes with
per-note saliency, flip the classification, and render notes to audio."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from musiclens.core.analyses.results import MidiClassified, MidiFlip, MidiOpened
from musiclens.core.progress import Progress, run, scaled

T = TypeVar("T")


def midi_model_steps(name: str | Path | None = None, loaded: Any = None) -> Generator[Progress, None, Any]:
    """The MIDI model ``name`` (a bundled name or a folder; None: the bundled default):
    ``loaded`` when that is it, else loaded in one step (over a second the first time)."""
    from musiclens.core.models.midi_lstm import DEFAULT_MIDI_MODEL, load_midi_model

    name = str(name or DEFAULT_MIDI_MODEL)
    if loaded is not None and name in (loaded.name, str(loaded.source)):
        return loaded
    yield Progress(fraction=0.0, message=f"loading MIDI model {Path(name).name}")
    return load_midi_model(name)


def on_midi_model(
    loading: Generator[Progress, None, Any], use_case: Callable[..., Generator[Progress, None, T]], *args: Any
) -> Generator[Progress, None, T]:
    """``use_case(model, *args)``'s steps on the model that ``loading`` (:func:`midi_model_steps`)
    returns; when that loads it (one step), the use case's steps become the last two thirds."""
    loaded_now = False
    try:
        while True:
            step = next(loading)
            loaded_now = True
            yield step
    except StopIteration as stop:
        model = stop.value
    steps = use_case(model, *args)
    return (yield from scaled(steps, 1 / 3, 1.0) if loaded_now else steps)


def open_midi(model: Any, path: str | Path) -> MidiOpened:
    """Read a MIDI file with the MIDI model's spec (raises when it has too few notes)."""
    return run(open_midi_steps(model, path))


def open_midi_steps(model: Any, path: str | Path) -> Generator[Progress, None, MidiOpened]:
    """:func:`open_midi` in two steps (read the file once, check the model's window)."""
    path = Path(path)
    yield Progress(fraction=0.0, message=f"reading {path.name}")
    notes = model.spec.read(path)
    yield Progress(fraction=0.5, message=f"read {len(notes)} notes of {path.name}; checking the model's window")
    model.spec.window(notes)  # too few notes: say so now
    return MidiOpened(path, notes, list(model.labels), model.name, model.spec.n_notes, list(notes.repairs))


def training_distance(model: Any, piece: Any) -> dict[str, Any] | None:
    """How far a piece (every note of every track) lies from ``model``'s training pieces
    (:func:`~musiclens.core.models.midi_piece.distance_to_training`), or None when the model
    does not record its training pieces' statistics. ``piece``: a MIDI file's path, or
    :class:`~musiclens.core.midi.Notes` already read (their file's other tracks are taken from
    the document they carry, so the file is not read again)."""
    from musiclens.core.midi import Notes, merge_notes, other_notes, read_midi
    from musiclens.core.models.inputs import piece_features
    from musiclens.core.models.midi_piece import distance_to_training

    stats = (model.provenance or {}).get("training_statistics")
    if not stats:
        return None
    if isinstance(piece, Notes):
        others = other_notes(piece)
        every = merge_notes(piece, others) if len(others) else piece
    else:
        every = read_midi(piece)
    return distance_to_training(piece_features(every), stats)


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
    return run(classify_notes_steps(model, notes, target=target, revision=revision, method=method))


def classify_notes_steps(
    model: Any, notes: Any, *, target: int | None = None, revision: int = 0, method: str = "gradient"
) -> Generator[Progress, None, MidiClassified]:
    """:func:`classify_notes` as its three steps (the window's features, the prediction, the
    saliency); each :class:`Progress` says which starts (fraction: steps done / 3)."""
    from musiclens.core.interpret import methods

    t0 = time.perf_counter()
    yield Progress(fraction=0.0, message=f"reading the model's window of {len(notes)} notes")
    feats, mask = model.spec.window(notes)
    k = int(mask.sum())
    yield Progress(fraction=1 / 3, message=f"classifying {k} notes")
    x, mk = model.tensors(feats, mask)
    p = model.predict(x, mk)[0].cpu().numpy()
    t = int(np.argmax(p)) if target is None else int(target)
    method = saliency_method(model, method)  # the model's own per-note method for "gradient"
    meth = methods.get(method)
    yield Progress(fraction=2 / 3, message=f"{meth.name} saliency of {k} notes")
    sal = meth(model, x, target=t, mask=mk)[0].detach().cpu().numpy()
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
    return run(render_steps(notes, sample_rate))


def render_steps(notes: Any, sample_rate: int = 22050) -> Generator[Progress, None, tuple[np.ndarray, int, str]]:
    """:func:`render` as progress steps: the synthesiser's, one per few notes rendered
    (:func:`~musiclens.core.synth.synthesise_steps`)."""
    from musiclens.core.midi import merge_notes, other_notes
    from musiclens.core.synth import synthesise_steps

    others = other_notes(notes)
    audio, how = yield from synthesise_steps(merge_notes(notes, others) if len(others) else notes, sample_rate)
    return audio, sample_rate, how
