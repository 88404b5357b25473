"""Classification flip for MIDI: the smallest change to the notes that makes the model say ``to``.

Input optimisation in the model's standardised feature space: a delta ``d`` (one value per
note and feature) is learned with Adam to minimise::

    cross_entropy(f(project(inverse(z + d))), to) + penalty · sum |d|

where ``z`` are the standardised features of the piece's first N notes. The L1 penalty
keeps the change small and sparse (few notes change). ``project`` makes the notes valid
MIDI: integer pitches 0..127, non-negative steps, durations of at least one tick, times on
the tick grid of the file that will be written.

A change is made to notes, not to a sequence of steps: a changed step moves *that note*
alone (its start moves by the change of its step) and every other note keeps its exact
start and end, within the window and after it. The model therefore sees the next note's
step change too, and the optimisation sees exactly that (step ``i`` in the forward pass is
``step_i + move_i - move_{i-1}``). The notes after the window, and the tracks the model
does not read, are never touched. The projection is applied in the forward
pass with straight-through gradients, and after every step the projected notes are
re-classified exactly as they will be written, so a reported flip holds after rounding
(not only in the continuous relaxation).

It is a long job, so :func:`flip_steps` is a generator yielding :class:`FlipStep`; stop
it whenever you like, each step carries the best result so far. :func:`flip` runs it to
the end.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.interpret.flip_loop import frozen, target_loss
from musiclens.core.interpret.midi_saliency import rnn_grad_context
from musiclens.core.midi import (
    FEATURES,
    Notes,
    merge_notes,
    snap_to_ticks,
    through_file,
)

if TYPE_CHECKING:
    from musiclens.core.interpret.note_deletion_flip import DeletionFlipResult


class FlipOutcome:
    """What every MIDI flip result reports (the feature-space :class:`FlipResult` and the
    deletion flip's result): the class before and after, the probabilities, the change."""

    labels: list[str]
    target: int
    source: int
    probabilities_before: np.ndarray
    probabilities_after: np.ndarray
    changed: list[dict[str, Any]]
    change: dict[str, float]
    step: int
    edit: str | None = None  # what the flip does to the notes, when it is not a feature change

    @property
    def flipped(self) -> bool:
        return int(np.argmax(self.probabilities_after)) == self.target

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values (labels by name)."""
        out: dict[str, Any] = {"labels": list(self.labels)}
        if self.edit is not None:
            out["edit"] = self.edit
        return out | {
            "target": self.labels[self.target],
            "predicted_before": self.labels[self.source],
            "predicted_after": self.labels[int(np.argmax(self.probabilities_after))],
            "flipped": self.flipped,
            "probabilities_before": {k: float(v) for k, v in zip(self.labels, self.probabilities_before, strict=True)},
            "probabilities_after": {k: float(v) for k, v in zip(self.labels, self.probabilities_after, strict=True)},
            "change": dict(self.change),
            "changed_notes": list(self.changed),
            "step": self.step,
        }


@dataclass
class FlipResult(FlipOutcome):
    """Before/after of a flip. ``before``/``after`` are the model's window of notes."""

    labels: list[str]
    target: int
    source: int  # class predicted before
    before: Notes
    after: Notes  # the window as read back from the written file (what the model saw)
    written: Notes  # the window notes to write, row i = note i of ``before`` (changed or not)
    probabilities_before: np.ndarray
    probabilities_after: np.ndarray
    changed: list[dict[str, Any]]
    change: dict[str, float]
    step: int

    def full_notes(self, notes: Notes, others: Notes | None = None) -> Notes:
        """The whole piece ``notes`` with the flip's changed notes in place; nothing else moves.

        Every note the flip did not change keeps its exact pitch, start, end and velocity.
        ``notes`` keeps its document, so :func:`~musiclens.core.midi.write_midi` writes the
        tracks the model does not read (drums, ...) as they were. ``others``: notes to add
        (unchanged) for a piece without a document.
        """
        full = with_window(notes, self.written)
        if others is None or len(others) == 0:
            return full
        return merge_notes(full, others)


@dataclass
class FlipStep:
    step: int
    steps: int
    loss: float
    target_probability: float  # of the projected (valid-MIDI) notes at this step
    flipped: bool  # this step's projected notes are classified as the target
    # smallest flipping change so far (or the closest attempt); the deletion flip's own result
    best: FlipResult | DeletionFlipResult | None = None
    done: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class _Projector:
    """Continuous window features -> the notes a reader gets back from the written file.

    ``__call__(x)`` with ``x: (k, 3)`` raw features (one row per window note, in the
    window's order) returns ``(written, read_back, probabilities, is_flip)``:
    ``written`` = valid notes on the tick grid (pitches rounded and clipped to 0..127,
    steps >= 0, durations >= 1 tick) for the window; ``read_back`` = the window as a MIDI
    reader sees it after writing the whole piece (MIDI's rules applied: ticks, overlapping
    notes of one key cut, chord order); ``probabilities`` = the model's output on it.
    Only the notes that can interact with the window (those starting before its last
    note ends) are written, which gives the same window as writing the whole piece.
    """

    def __init__(self, model: Any, notes: Notes, k: int, target: int, min_probability: float, margin: float) -> None:
        self.model, self.notes, self.k, self.target = model, notes, k, target
        self.window = notes.first(k)
        self.tick = 60.0 / (notes.tempo * notes.resolution)
        self.min_probability, self.margin = min_probability, margin

    def __call__(self, x: np.ndarray) -> tuple[Notes, Notes, np.ndarray, bool]:
        spec = self.model.spec
        written = realise(x[: self.k], self.window, self.tick, self.notes)
        full = with_window(self.notes, written)
        horizon = max(float(written.end.max()), float(self.window.end.max())) if len(written) else 0.0
        keep = full.start < horizon  # every note that can be in the window or cut a window note
        keep[: self.k] = True
        back = through_file(full.select(keep))
        try:
            fa, ma = spec.window(back)
        except MusicLensError:
            return written, back.first(self.k), np.zeros(len(self.model.labels)), False
        xa, ma_t = self.model.tensors(fa, ma)
        p = self.model.predict(xa, ma_t)[0].cpu().numpy()
        return written, back.first(int(ma.sum())), p, _is_flip(p, self.target, self.min_probability, self.margin)


def realise(x: np.ndarray, window: Notes, tick: float, piece: Notes | None = None) -> Notes:
    """The window's notes with the changes ``x`` asks for, each on its own note.

    ``x``: ``(k, 3)`` continuous ``[pitch, step, duration]`` rows for the ``k`` notes of
    ``window`` (row ``i`` = note ``i``). A note changes only where its row differs from its
    features by at least half a semitone / half a tick (``tick`` s): its pitch is rounded
    and clipped to 0..127; its start moves by the change of its step (the other notes do
    not move); its duration is the row's. Moves keep a note between 0 s and 10 s after the
    window's end, durations are at most 10 s longer than the window's longest note (the
    optimiser can ask for anything). Changed times snap to the file's tick grid (at
    least one tick long). Unchanged notes are returned exactly as they were. Row order is
    kept (row ``i`` is still note ``i``, even if it now starts after note ``i + 1``).

    ``piece``: the whole piece (``window`` is its first ``k`` notes). A changed note ends
    before the next note of the same key on its instrument starts, so writing it cannot cut
    a note that did not change (one key cannot sound twice on a channel); a changed note
    that would start together with another note of its key is left unchanged.
    """
    k = len(window)
    f0 = window.features(np.float64)
    x = np.asarray(x, dtype=np.float64)[:k]
    x = np.where(np.isfinite(x), x, f0)
    pitch_new = np.clip(np.rint(x[:, 0]), 0, 127)
    repitch = pitch_new != window.pitch
    dstep = x[:, 1] - f0[:, 1]
    move = np.abs(dstep) > tick / 2
    resize = np.abs(x[:, 2] - f0[:, 2]) > tick / 2
    span_end = float(window.end.max()) + 10.0 if k else 10.0
    longest = float(window.duration.max()) + 10.0 if k else 10.0
    start = window.start.copy()
    start[move] = np.clip(start[move] + dstep[move], 0.0, span_end)
    duration = window.duration.copy()
    duration[resize] = np.clip(x[resize, 2], 0.0, longest)
    retime = move | resize
    if retime.any():
        s, e = snap_to_ticks(window, start[retime], start[retime] + duration[retime])
        start[retime] = s
        duration[retime] = np.round(e - s, 9)
    pitch = np.where(repitch, pitch_new, window.pitch)
    changed = repitch | retime
    if piece is not None and changed.any():
        all_pitch = np.concatenate([pitch, piece.pitch[k:]])
        all_start = np.concatenate([start, piece.start[k:]])
        all_inst = np.concatenate([window.instrument, piece.instrument[k:]])
        for i in np.flatnonzero(changed):
            same = (all_pitch == pitch[i]) & (all_inst == window.instrument[i])
            same[i] = False
            if np.any(same & (all_start == start[i])):  # would share its note-on with another note
                pitch[i], start[i], duration[i] = window.pitch[i], window.start[i], window.duration[i]
                all_pitch[i], all_start[i] = pitch[i], start[i]
                continue
            later = all_start[same & (all_start > start[i])]
            if len(later) and start[i] + duration[i] > later.min():
                duration[i] = np.round(later.min() - start[i], 9)
    return replace(window, pitch=pitch, start=start, duration=duration, repairs=[])


def with_window(notes: Notes, written: Notes) -> Notes:
    """``notes`` with its first ``len(written)`` notes replaced row by row; sorted; nothing else moves."""
    k = len(written)
    if k > len(notes):
        raise ParameterError(f"the window has {k} notes, the piece only {len(notes)}")
    return replace(
        notes,
        pitch=np.concatenate([written.pitch, notes.pitch[k:]]),
        start=np.concatenate([written.start, notes.start[k:]]),
        duration=np.concatenate([written.duration, notes.duration[k:]]),
        velocity=np.concatenate([written.velocity, notes.velocity[k:]]),
        instrument=np.concatenate([written.instrument, notes.instrument[k:]]),
        repairs=list(notes.repairs),
    ).sorted()


def _changes(before: Notes, written: Notes) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The notes that changed (row ``i`` of ``before`` -> row ``i`` of ``written``), note by note.

    A note is changed when its pitch, start or duration differs; each change lists the
    note's pitch, step (seconds since the previous note of the window starts), duration
    and start before and after. The summary counts notes, and sums the absolute changes.
    """
    n = min(len(before), len(written))
    before, written = before.first(n), written.first(n)

    def rows(notes: Notes) -> np.ndarray:
        step = np.diff(notes.start, prepend=notes.start[:1]) if n else np.zeros(0)
        return np.stack([notes.pitch.astype(np.float64), step, notes.duration, notes.start], axis=1)

    b, a = rows(before), rows(written)
    d = a - b
    repitch = before.pitch != written.pitch
    moved = before.start != written.start
    resized = before.duration != written.duration
    revoiced = before.velocity != written.velocity
    changed_rows = repitch | moved | resized | revoiced
    names = FEATURES + ("start",)
    changed: list[dict[str, Any]] = []
    for i in np.flatnonzero(changed_rows):
        changed.append(
            {
                "index": int(i),
                "before": {f: float(v) for f, v in zip(names, b[i])},
                "after": {f: float(v) for f, v in zip(names, a[i])},
                "delta": {f: float(v) for f, v in zip(names, d[i])},
            }
        )
        changed[-1]["before"]["pitch"] = int(b[i, 0])
        changed[-1]["after"]["pitch"] = int(a[i, 0])
        changed[-1]["before"]["velocity"] = int(before.velocity[i])
        changed[-1]["after"]["velocity"] = int(written.velocity[i])
    summary = {
        "notes_changed": int(changed_rows.sum()),
        "notes": int(n),
        "notes_unchanged": int(n - changed_rows.sum()),
        "pitch_l1_semitones": float(np.abs(d[:, 0]).sum()),
        "step_l1_seconds": float(np.abs(d[:, 3]).sum()),  # how far notes moved, in total
        "duration_l1_seconds": float(np.abs(d[:, 2]).sum()),
        "pitches_changed": int(repitch.sum()),
        "steps_changed": int(moved.sum()),  # notes that start at another time
        "durations_changed": int(resized.sum()),
        "velocities_changed": int(revoiced.sum()),
    }
    return changed, summary


def flip_steps(
    model: Any,
    notes: Notes,
    *,
    to: str | int,
    steps: int = 300,
    lr: float = 0.05,
    penalty: float = 0.001,
    features: Sequence[str] = FEATURES,
    min_probability: float = 0.0,
    margin: float = 0.02,
    stop_when_flipped: bool = True,
    extra_steps: int = 0,
    prune: bool = True,
    seed: int = 0,
) -> Iterator[FlipStep]:
    """Learn a change to the first N notes of ``notes`` that makes ``model`` predict ``to``.

    Parameters
    ----------
    model : a MIDI ``LoadedModel`` (``model.kind == "midi"``); ``notes`` : the piece, read with ``model.spec.read``.
    to : target class (name or index).
    steps : maximum optimisation steps. lr : Adam step size (standardised units).
    penalty : weight of the L1 size of the change (standardised units).
    features : which of ``("pitch", "step", "duration")`` may change.
    min_probability : a flip also needs the target probability to reach this value.
    margin : and it must beat every other class by this much probability, so the flip is
        not a knife-edge tie that the smallest change to the file could undo.
    stop_when_flipped : stop ``extra_steps`` steps after the first flip (the first flip
        along the path is the smallest change found).
    prune : after a flip, undo the change of one note at a time (smallest change first)
        whenever the projected notes still flip without it, then shrink each remaining
        change by bisection, so no note changes more than the flip needs (greedily).

    Yields
    ------
    :class:`FlipStep` per step; the last has ``done=True`` and ``best`` = the final
    :class:`FlipResult` (the smallest flipping change seen, or, if none flipped, the
    projected notes with the highest target probability).
    """
    target = model.label_index(to)
    if steps < 1 or lr <= 0 or penalty < 0:
        raise ParameterError("steps must be >= 1, lr > 0 and penalty >= 0")
    from musiclens.core.interpret.note_deletion_flip import is_presence_model

    if is_presence_model(model):  # its statistics have no gradient in these features: delete notes
        raise ParameterError(
            f"{model.name} reads note statistics, which do not change with small moves of pitch or time; "
            "its flip deletes notes (musiclens.core.interpret.note_deletion_flip.deletion_flip_steps)"
        )
    if getattr(model.spec, "whole_piece", False):
        yield from piece_flip_steps(model, notes, to=to, min_probability=min_probability, margin=margin, prune=prune)
        return
    if len(getattr(model.spec, "features", FEATURES)) != len(FEATURES):
        raise ParameterError(
            f"{model.name}: the flip works on models that read (pitch, step, duration) of the first notes "
            f"or the whole piece; this model reads {len(model.spec.features)} features"
        )
    bad = [f for f in features if f not in FEATURES]
    if bad or not features:
        raise ParameterError(f"features must be a non-empty subset of {FEATURES}, got {list(features)}")
    spec = model.spec
    net = model.net
    device = model.device
    feats, mask = spec.window(notes)
    k = int(mask.sum())
    window = notes.first(k)
    tick = 60.0 / (notes.tempo * notes.resolution)
    x0, m = model.tensors(feats, mask)
    with torch.no_grad():
        p_before = model.predict(x0, m)[0].cpu().numpy()
        z0 = spec.transform(x0)
    source = int(np.argmax(p_before))
    fmask = torch.tensor([f in features for f in FEATURES], dtype=x0.dtype, device=device)
    nmask = m[..., None].to(x0.dtype)
    torch.manual_seed(seed)
    delta = torch.zeros_like(z0, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr)

    project = _Projector(model, notes, k, target, min_probability, margin)

    def result(written: Notes, after: Notes, probs: np.ndarray, step: int) -> FlipResult:
        changed, summary = _changes(window, written)
        summary["l1_standardised"] = float((delta.detach() * fmask * nmask).abs().sum())
        return FlipResult(
            list(model.labels), target, source, window, after, written, p_before, probs, changed, summary, step
        )

    best: FlipResult | None = None
    best_x: np.ndarray | None = None
    best_key: tuple[bool, float] | None = None
    flipped_at: int | None = None
    with frozen(net):  # eval mode, weights frozen (flip_loop, as the audio flip)
        for step in range(1, steps + 1):
            with rnn_grad_context(device), torch.enable_grad():
                z = z0 + delta * fmask * nmask
                xc = spec.inverse(z)
                # a changed step moves that note only: the next note's step changes by minus as much
                move = xc[..., 1] - x0[..., 1]
                steps_in = xc[..., 1] - torch.cat([torch.zeros_like(move[..., :1]), move[..., :-1]], dim=-1)
                steps_in = torch.cat([torch.zeros_like(steps_in[..., :1]), steps_in[..., 1:]], dim=-1)  # first: 0
                xs = torch.stack([xc[..., 0], steps_in, xc[..., 2]], dim=-1)
                proj = torch.stack(
                    [xs[..., 0].round().clamp(0, 127), steps_in.clamp_min(0), xs[..., 2].clamp_min(tick)], dim=-1
                )
                xp = xs + (proj - xs).detach()  # straight-through: forward sees valid MIDI
                logits = net(torch.where(m[..., None], xp, x0), m)
                ce = target_loss(logits, target)  # written once: flip_loop
                size = (delta * fmask * nmask).abs().sum()
                loss = ce + penalty * size
                opt.zero_grad()
                loss.backward()
            opt.step()
            # exactly what a reader gets from the written file, re-classified
            with torch.no_grad():
                xc_now = spec.inverse(z0 + delta * fmask * nmask)[0].cpu().numpy().astype(np.float64)
            written, after, probs, is_flip = project(xc_now)
            key = (is_flip, -float(size.detach()) if is_flip else float(probs[target]))
            # a flip beats no flip; among flips the smaller change, else the higher target probability
            if best_key is None or key > best_key:
                best_key = key
                best = result(written, after, probs, step)
                best_x = xc_now[:k].copy()
            if is_flip and flipped_at is None:
                flipped_at = step
            done = step == steps or (stop_when_flipped and flipped_at is not None and step >= flipped_at + extra_steps)
            if done and prune and best is not None and best_x is not None and best_key is not None and best_key[0]:
                best = _prune(model, project, best, best_x, feats[:k].astype(np.float64), tick)
            yield FlipStep(
                step,
                steps,
                float(loss.detach()),
                float(probs[target]),
                bool(is_flip),
                best,
                done,
                {"cross_entropy": float(ce.detach()), "size": float(size.detach())},
            )
            if done:
                break


def _is_flip(p: np.ndarray, target: int, min_probability: float, margin: float) -> bool:
    others = np.delete(p, target)
    return bool(p[target] >= min_probability and p[target] - others.max() >= margin)


def _prune(
    model: Any, project: _Projector, best: FlipResult, x: np.ndarray, x0: np.ndarray, tick: float, bisections: int = 6
) -> FlipResult:
    """Make a flipping change smaller while the projected notes still flip.

    First undo whole notes' changes (smallest first), then shrink each remaining note's
    change toward the original by bisection on the fraction kept. Every candidate is
    projected to valid MIDI and re-classified, so the result still flips after rounding.
    """
    spec = model.spec
    z = spec.transform(torch.as_tensor(x)).numpy()
    z0 = spec.transform(torch.as_tensor(x0)).numpy()
    size = np.abs(z - z0).sum(axis=1)  # per-note change in standardised units
    changed = np.flatnonzero(
        (np.abs(np.rint(x[:, 0]) - np.rint(x0[:, 0])) >= 0.5) | (np.abs(x[:, 1:] - x0[:, 1:]) > tick / 2).any(axis=1)
    )
    cur = x.copy()
    probs, after, written = best.probabilities_after, best.after, best.written

    order = changed[np.argsort(size[changed], kind="stable")]
    for i in order:  # 1. undo whole notes
        trial = cur.copy()
        trial[i] = x0[i]
        w, a, p, ok = project(trial)
        if ok:
            cur, probs, after, written = trial, p, a, w
    for i in order:  # 2. shrink each remaining change toward the original (bisection)
        if np.array_equal(cur[i], x0[i]):
            continue
        full = cur[i].copy()
        lo, hi = 0.0, 1.0
        for _ in range(bisections):
            mid = (lo + hi) / 2
            trial = cur.copy()
            trial[i] = x0[i] + mid * (full - x0[i])
            w, a, p, ok = project(trial)
            if ok:
                hi, cur, probs, after, written = mid, trial, p, a, w
            else:
                lo = mid
    changed_list, summary = _changes(best.before, written)
    summary["l1_standardised"] = float(np.abs(spec.transform(torch.as_tensor(cur)).numpy() - z0).sum())
    summary["pruned_notes"] = int(len(changed) - summary["notes_changed"])
    return FlipResult(
        best.labels,
        best.target,
        best.source,
        best.before,
        after,
        written,
        best.probabilities_before,
        probs,
        changed_list,
        summary,
        best.step,
    )


def flip(model: Any, notes: Notes, *, to: str | int, **kw: Any) -> FlipResult:
    """Run :func:`flip_steps` to the end and return the final :class:`FlipResult`."""
    last: FlipStep | None = None
    for step in flip_steps(model, notes, to=to, **kw):
        last = step
    assert last is not None and isinstance(last.best, FlipResult)
    return last.best


# ============================================================================ whole pieces
def _piece_probabilities(model: Any, notes: Notes) -> np.ndarray:
    """(L,) probabilities of a whole-piece model on every note of ``notes``."""
    feats, mask = model.spec.window(notes)
    x, m = model.tensors(feats, mask)
    with torch.no_grad():
        out: np.ndarray = model.predict(x, m)[0].cpu().numpy()
    return out


def _free_key(notes: Notes, i: int, pitch: int, start: float, end: float) -> bool:
    """True if note ``i`` can sound ``pitch`` from ``start`` to ``end`` (s) without touching
    another note of that key on its instrument (one key cannot sound twice on a channel:
    writing it would cut or merge a note that did not change)."""
    same = (notes.instrument == notes.instrument[i]) & (notes.pitch == pitch)
    same[i] = False
    return not bool(np.any(same & (notes.start <= end) & (notes.end >= start)))


#: The edits :func:`piece_flip_steps` may make to a note.
PIECE_EDITS: tuple[str, ...] = ("pitch", "velocity", "onset")


def piece_flip_steps(
    model: Any,
    notes: Notes,
    *,
    to: str | int,
    steps: int = 40,
    edits: Sequence[str] = PIECE_EDITS,
    max_share: float = 0.25,
    semitones: int = 1,
    velocity_step: int = 32,
    move_beats: float = 0.25,
    min_probability: float = 0.0,
    margin: float = 0.02,
    prune: bool = True,
) -> Iterator[FlipStep]:
    """The flip for whole-piece models (:class:`~musiclens.core.models.inputs.PieceSpec`):
    change as few notes as it can until ``model`` says ``to``. A note may change its pitch
    (by ``semitones``; not on drums, where the key is the instrument), its velocity (by
    ``velocity_step``) or its onset (by ``move_beats`` beats, keeping its duration). No note
    is added or removed and every note that does not change keeps its exact pitch, start,
    end and velocity, so the change is local to the notes it lists and every track is kept.

    Each step takes the gradient of ``logit[to] - logit[source]`` over the piece's note
    features, gives every note the one edit the gradient favours most (its first-order
    gain), and tries the best 1, 2, 4, ... edits (up to ``max_share`` of the notes)
    exactly: the edited notes are written as MIDI, read back
    (:func:`~musiclens.core.midi.through_file`) and classified, so the answer holds after
    rounding to ticks and after writing. It keeps the smallest batch that flips, else the one
    that raised the target's lead most, and goes on from there (it stops when nothing
    helps). Once flipped, ``prune`` undoes edits (in chunks, then one by one) while the flip
    still holds. Yields :class:`FlipStep` per step; the last has ``done=True`` and ``best``
    (its ``written`` notes are the piece's notes row for row)."""
    from musiclens.core.models.inputs import PIECE_FEATURES

    target = model.label_index(to)
    bad = [e for e in edits if e not in PIECE_EDITS]
    if bad or not edits:
        raise ParameterError(f"edits must be a non-empty subset of {PIECE_EDITS}, got {list(edits)}")
    if steps < 1 or not 0 < max_share <= 1 or semitones < 1 or velocity_step < 1 or move_beats <= 0:
        raise ParameterError("steps, semitones, velocity_step >= 1, max_share in (0, 1] and move_beats > 0")
    n = len(model.spec.window(notes)[0])
    piece = notes.first(n)
    p_before = _piece_probabilities(model, through_file(piece))
    source = int(np.argmax(p_before))
    col = {f: PIECE_FEATURES.index(f) for f in ("pitch", "velocity", "step", "beat")}
    drum = piece.is_drum
    seconds_per_beat = 60.0 / float(piece.tempo)
    cur = (piece.pitch.astype(np.int64), piece.velocity.astype(np.int64), piece.start.copy())

    def edited(pp: np.ndarray, vv: np.ndarray, ss: np.ndarray) -> Notes:
        return replace(piece, pitch=pp, velocity=vv, start=ss, repairs=[])

    def lead(p: np.ndarray) -> float:
        return float(p[target] - np.delete(p, target).max())

    def exact(pp: np.ndarray, vv: np.ndarray, ss: np.ndarray) -> tuple[Notes, Notes, np.ndarray, bool]:
        written = edited(pp, vv, ss)
        back = through_file(written)
        p = _piece_probabilities(model, back)
        return written, back, p, _is_flip(p, target, min_probability, margin)

    def result(written: Notes, back: Notes, p: np.ndarray, step: int) -> FlipResult:
        changed, summary = _changes(piece, written)
        return FlipResult(list(model.labels), target, source, piece, back, written, p_before, p, changed, summary, step)

    written, back, p_now, flipped = exact(*cur)
    best = result(written, back, p_now, 0)
    budget = max(1, int(max_share * n))
    step = 0
    with frozen(model.net):
        while not flipped and step < steps:
            step += 1
            pitch, vel, start = cur
            order_now = np.lexsort((pitch, start))  # the model reads the notes in this order
            now = edited(pitch, vel, start).select(order_now)
            x, m = model.tensors(*model.spec.window(now))
            x = x.detach().requires_grad_(True)
            other = source if source != target else int(np.argsort(p_now)[-2])
            with torch.enable_grad():
                logits = model.net(x, m)[0]
                (logits[target] - logits[other]).backward()
            assert x.grad is not None
            g = np.zeros((n, x.shape[-1]))
            g[order_now] = x.grad[0, :n].cpu().numpy()
            gnext = np.zeros(n)  # the step of the note after each note (in reading order)
            gnext[order_now[:-1]] = g[order_now[1:], col["step"]]
            gains = np.full((3, n), -np.inf)
            new_p = np.clip(pitch + np.where(g[:, col["pitch"]] >= 0, semitones, -semitones), 0, 127)
            new_v = np.clip(vel + np.where(g[:, col["velocity"]] >= 0, velocity_step, -velocity_step), 1, 127)
            g_move = g[:, col["beat"]] / seconds_per_beat + g[:, col["step"]] - gnext  # per second of delay
            moved = np.clip(start + np.sign(g_move) * move_beats * seconds_per_beat, 0.0, None)
            moved, _ = snap_to_ticks(piece, moved, moved + piece.duration)
            if "pitch" in edits:
                gains[0] = np.where(drum | (new_p == pitch), -np.inf, np.abs(g[:, col["pitch"]] * (new_p - pitch)))
            if "velocity" in edits:
                gains[1] = np.abs(g[:, col["velocity"]] * (new_v - vel))
            if "onset" in edits:
                gains[2] = np.abs(g_move * (moved - start))
            kind = gains.argmax(0)
            gain = gains.max(0)
            order: list[int] = []
            for i in np.argsort(-gain):
                if not gain[i] > 0 or len(order) >= budget:
                    break
                p_i = int(new_p[i]) if kind[i] == 0 else int(pitch[i])
                s_i = float(moved[i]) if kind[i] == 2 else float(start[i])
                if kind[i] == 1 or _free_key(edited(pitch, vel, start), int(i), p_i, s_i, s_i + piece.duration[i]):
                    order.append(int(i))
            tried: tuple[float, tuple[np.ndarray, np.ndarray, np.ndarray], Notes, Notes, np.ndarray] | None = None
            b = 1
            while b <= len(order):
                idx = np.asarray(order[:b])
                pp, vv, ss = pitch.copy(), vel.copy(), start.copy()
                pp[idx] = np.where(kind[idx] == 0, new_p[idx], pitch[idx])
                vv[idx] = np.where(kind[idx] == 1, new_v[idx], vel[idx])
                ss[idx] = np.where(kind[idx] == 2, moved[idx], start[idx])
                w, bk, p, ok = exact(pp, vv, ss)
                if tried is None or ok or lead(p) > tried[0]:
                    tried = (lead(p), (pp, vv, ss), w, bk, p)
                if ok:
                    break
                b = b * 2 if b * 2 <= len(order) or b == len(order) else len(order)
            if tried is None or lead(tried[4]) <= lead(p_now):  # no batch helps: stop
                break
            _, cur, written, back, p_now = tried
            flipped = _is_flip(p_now, target, min_probability, margin)
            best = result(written, back, p_now, step)
            yield FlipStep(step, steps, -lead(p_now), float(p_now[target]), flipped, best, False)
        if flipped and prune:
            best = _prune_piece(exact, piece, cur, best, result)
    p_end = best.probabilities_after
    done_flip = _is_flip(p_end, target, min_probability, margin)
    yield FlipStep(step, steps, -lead(p_end), float(p_end[target]), done_flip, best, True)


def _prune_piece(
    exact: Any, piece: Notes, edit: tuple[np.ndarray, np.ndarray, np.ndarray], best: FlipResult, result: Any
) -> FlipResult:
    """Undo a flipping piece edit's changes while the flip holds: in chunks, then one by one."""
    pitch, vel, start = (a.copy() for a in edit)
    changed = [
        int(i) for i in np.flatnonzero((pitch != piece.pitch) | (vel != piece.velocity) | (start != piece.start))
    ]
    chunk = max(1, len(changed) // 2)
    while changed:
        kept: list[int] = []
        for a in range(0, len(changed), chunk):
            part = changed[a : a + chunk]
            tp, tv, ts = pitch.copy(), vel.copy(), start.copy()
            tp[part], tv[part], ts[part] = piece.pitch[part], piece.velocity[part], piece.start[part]
            w, bk, p, ok = exact(tp, tv, ts)
            if ok:
                pitch, vel, start = tp, tv, ts
                best = result(w, bk, p, best.step)
            else:
                kept += part
        changed = kept
        if chunk == 1:
            break
        chunk = max(1, chunk // 4)
    return best
