"""Deletion flip for note-presence models: delete as few notes as it can until the model says ``to``.

A whole-piece model with note statistics (:class:`~musiclens.core.models.midi_piece.PieceCNN`,
``note_method == "note-presence"``) reads every note with a presence weight ``w_i`` (1 = the
note is there, 0 = deleted); its statistics are piecewise constant in pitch, step and duration
(shares of notes on the grid, in chords ...), so a gradient flip over those features moves
nothing. This flip optimises the presence weights themselves:

* relaxed weights ``w`` in [0, 1]^n (one per note, all 1 at first) descend the gradient of
  ``cross_entropy(f(w), to) + penalty · Σ(1 − w) / n`` (the L1 size of the change, as a share of
  the notes), normalised so the steepest note moves ``lr`` a step (Adam moved every note with
  a steady sign at the same pace, so hundreds crossed at once: measured), projected back to
  [0, 1] after each step;
* after every step the weights are projected to {0, 1} (a note with ``w < 0.5`` is deleted,
  the others are kept) and that piece is classified *exactly*: the kept notes are written as
  MIDI and read back (:func:`~musiclens.core.midi.through_file`) and the model reads them from
  scratch (its statistics recomputed, not the relaxation's), so a reported flip holds in the
  written file;
* once flipped, greedy pruning restores deleted notes (in chunks, then one by one, those
  whose return costs the target least first) while the exact flip still holds.

Nothing is moved or changed: a note is either deleted or left exactly as it was, on every
track. Notes that overlap another note of the same key on their instrument are never
deleted (writing the file without one of them could change how the other reads back).
Velocities are not optimised: the statistics read them through bins and counts (piecewise
constant, gradient 0), the note votes only when the model has them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from musiclens.core.errors import ParameterError
from musiclens.core.interpret.flip_loop import frozen, target_loss
from musiclens.core.interpret.midi_flip import FlipOutcome, FlipStep, _is_flip
from musiclens.core.midi import Notes, merge_notes, through_file

__all__ = ["DeletionFlipResult", "deletion_flip_steps", "is_presence_model", "entangled"]


def is_presence_model(model: Any) -> bool:
    """True for a MIDI model whose per-note method is note presence (the statistics models)."""
    net = getattr(model, "net", None)
    return getattr(net, "note_method", None) == "note-presence" and hasattr(net, "presence_saliency")


def entangled(notes: Notes) -> np.ndarray:
    """(n,) bool: the notes that overlap another note of the same key on their instrument
    (MIDI pairs note-ons and note-offs by key, so deleting one can change where the other
    ends when the file is read back). Notes that only touch (one ends where the next starts)
    are not entangled: the writer puts the note-off first."""
    out = np.zeros(len(notes), dtype=bool)
    key = notes.instrument.astype(np.int64) * 128 + notes.pitch.astype(np.int64)
    order = np.lexsort((notes.start, key))
    k, s, e = key[order], notes.start[order], notes.end[order]
    touch = np.zeros(len(order), dtype=bool)
    last_end, last = -np.inf, 0  # the latest end so far among the earlier notes of this key, and its note
    for i in range(len(order)):
        if i and k[i] == k[i - 1]:
            if s[i] < last_end:  # a note that only touches the next is safe: MIDI ends it first
                touch[i] = touch[last] = True
            if e[i] > last_end:
                last_end, last = e[i], i
        else:
            last_end, last = e[i], i
    out[order] = touch
    return out


@dataclass
class DeletionFlipResult(FlipOutcome):
    """Before/after of a deletion flip. ``before``: the piece as the model reads it (n notes);
    ``kept`` (n,) bool: the notes left (False = deleted); ``after``: the kept notes as read
    back from the written file (what ``probabilities_after`` measured)."""

    labels: list[str]
    target: int
    source: int  # class predicted before
    before: Notes
    kept: np.ndarray
    after: Notes
    probabilities_before: np.ndarray
    probabilities_after: np.ndarray
    changed: list[dict[str, Any]]
    change: dict[str, float]
    step: int

    edit: str | None = "delete notes"

    @property
    def written(self) -> Notes:
        """The notes to write: the kept notes of ``before``, exactly as they were."""
        return self.before.select(self.kept)

    def full_notes(self, notes: Notes, others: Notes | None = None) -> Notes:
        """The whole piece ``notes`` (the notes the flip was run on) without the deleted notes;
        every other note keeps its exact pitch, start, end and velocity, and ``notes`` keeps its
        document, so :func:`~musiclens.core.midi.write_midi` writes every track (and the notes
        the model did not read) as they were. ``others``: notes to add for a piece without a
        document."""
        n = len(self.kept)
        if len(notes) < n:
            raise ParameterError(f"the flip deleted notes of a piece of {n} notes; these notes have {len(notes)}")
        full = notes.select(np.concatenate([self.kept, np.ones(len(notes) - n, dtype=bool)]))
        if others is None or len(others) == 0:
            return full
        return merge_notes(full, others)


_COUNTS = ("notes_changed", "notes_deleted", "notes", "notes_unchanged", "share_deleted")


def _deleted_list(piece: Notes, kept: np.ndarray) -> list[dict[str, Any]]:
    """One dict per deleted note: its index and what it was."""
    out: list[dict[str, Any]] = []
    program, drum = piece.program, piece.is_drum
    for i in np.flatnonzero(~kept):
        out.append(
            {
                "index": int(i),
                "deleted": True,
                "before": {
                    "pitch": int(piece.pitch[i]),
                    "start": float(piece.start[i]),
                    "duration": float(piece.duration[i]),
                    "velocity": int(piece.velocity[i]),
                    "program": int(program[i]),
                    "drum": bool(drum[i]),
                },
            }
        )
    return out


def deletion_flip_steps(
    model: Any,
    notes: Notes,
    *,
    to: str | int,
    steps: int = 300,
    lr: float = 0.05,
    penalty: float = 0.5,
    threshold: float = 0.5,
    max_share: float = 0.5,
    min_probability: float = 0.0,
    margin: float = 0.02,
    stop_when_flipped: bool = True,
    extra_steps: int = 10,
    prune: bool = True,
    max_prune_checks: int = 400,
    scale_quantile: float = 0.99,
) -> Iterator[FlipStep]:
    """Delete notes of ``notes`` (the whole piece, read with ``model.spec``) until ``model``
    says ``to``: the relaxed presence weights of the module docstring, projected and classified
    exactly after every step, then pruned.

    Parameters
    ----------
    steps : gradient steps at most. lr : how far the steepest note's weight moves per step
        (normalised projected gradient descent: the notes whose gradient is at or above its
        ``scale_quantile`` quantile move by lr, the others in proportion to their gradient, so
        notes are deleted in the order the relaxation wants them gone; normalising by the
        largest gradient alone let one note set the pace of thousands: measured).
    penalty : weight of ``Σ(1 − w) / n`` (the share of the notes removed, relaxed).
    threshold : a note whose weight falls below it is deleted in the projection (raised by
        0.1, up to 0.95, each time the projection has not changed for 10 steps without a flip).
    max_share : at most this share of the notes is deleted (the notes with the lowest weights).
    min_probability, margin : a flip needs ``p[to] >= min_probability`` and a lead of
        ``margin`` over every other class (on the notes read back from the file).
    stop_when_flipped : stop ``extra_steps`` steps after the first exact flip.
    prune : restore deleted notes while the exact flip holds (at most ``max_prune_checks``
        exact classifications).

    Yields :class:`~musiclens.core.interpret.midi_flip.FlipStep` per step (``best``: a
    :class:`DeletionFlipResult`, the fewest deletions that flip so far, else the closest
    attempt); the last has ``done=True``.
    """
    from musiclens.core.models.midi_piece import note_statistics, statistics_of

    if not is_presence_model(model):
        raise ParameterError(
            f"{model.name}: the deletion flip needs a whole-piece model with note statistics "
            "(per-note method note-presence)"
        )
    target = model.label_index(to)
    if steps < 1 or lr <= 0 or penalty < 0 or not 0 < threshold < 1 or not 0 < max_share <= 1:
        raise ParameterError("steps >= 1, lr > 0, penalty >= 0, threshold in (0, 1) and max_share in (0, 1]")
    spec, net = model.spec, model.net
    feats, mask = spec.window(notes)
    n = len(feats)
    piece = notes.first(n)
    min_notes = max(1, int(getattr(spec, "min_notes", 1)))
    budget = min(int(max_share * n), n - min_notes)
    movable = ~entangled(piece)
    if budget < 1 or not movable.any():
        raise ParameterError(f"the piece has {n} notes: too few to delete any and keep {min_notes}")

    def classify(back: Notes) -> tuple[Notes, np.ndarray, bool]:
        f, m = spec.window(back)
        xb, mb = model.tensors(f, m)
        p = model.predict(xb, mb)[0].cpu().numpy()
        return back, p, _is_flip(p, target, min_probability, margin)

    def written_and_read(kept: np.ndarray) -> tuple[Notes, np.ndarray, bool]:
        return classify(through_file(piece.select(kept)))

    all_kept = np.ones(n, dtype=bool)
    back0, p_before, _ = written_and_read(all_kept)
    # a piece that reads back as it is stays so without any of its movable notes (their
    # note-ons and note-offs share no key with another note): then the kept notes are what a
    # reader gets, and only the final answer needs the file written (measured: 0.2 s a write)
    same = back0.equals(piece)

    def exact(kept: np.ndarray) -> tuple[Notes, np.ndarray, bool]:
        return classify(piece.select(kept)) if same else written_and_read(kept)

    source = int(np.argmax(p_before))
    other = source if source != target else int(np.argsort(p_before)[-2])

    def result(kept: np.ndarray, back: Notes, p: np.ndarray, step: int, **extra: float) -> DeletionFlipResult:
        gone = int(n - kept.sum())
        change: dict[str, float] = {
            "notes_changed": gone,
            "notes_deleted": gone,
            "notes": n,
            "notes_unchanged": int(kept.sum()),
            "share_deleted": gone / n,
            **extra,
        }
        return DeletionFlipResult(
            list(model.labels),
            target,
            source,
            piece,
            kept.copy(),
            back,
            p_before,
            p,
            _deleted_list(piece, kept),
            change,
            step,
        )

    x, m = model.tensors(feats, mask)
    d = note_statistics(feats)[1]
    w = torch.ones(n, dtype=x.dtype, device=x.device, requires_grad=True)
    fixed = torch.as_tensor(~movable, device=x.device)

    def relaxed(wv: torch.Tensor) -> torch.Tensor:
        """(1, L) logits of the piece read with presence weights ``wv`` (n,)."""
        out: torch.Tensor = net(x, m, weight=wv[None], stats=statistics_of(d, wv)[None])
        return out

    def project(wv: np.ndarray, cut: float) -> np.ndarray:
        """Weights -> kept (n,) bool: below ``cut`` (and movable) is deleted, the lowest first, within the budget."""
        cand = np.flatnonzero((wv < cut) & movable)
        cand = cand[np.argsort(wv[cand], kind="stable")][:budget]
        kept = np.ones(n, dtype=bool)
        kept[cand] = False
        return kept

    best = result(all_kept, back0, p_before, 0)
    best_key = (False, float(p_before[target] - np.delete(p_before, target).max()))
    seen: dict[bytes, tuple[np.ndarray, bool]] = {all_kept.tobytes(): (p_before, False)}  # projections classified
    flipped_at: int | None = None
    last_kept = all_kept
    cut, still = threshold, 0
    with frozen(net):
        for step in range(1, steps + 1):
            with torch.enable_grad():
                logits = relaxed(w)
                ce = target_loss(logits, target)
                size = (1 - w).sum() / n
                loss = ce + penalty * size
                (g,) = torch.autograd.grad(loss, w)
            with torch.no_grad():  # normalised projected gradient: the steepest notes move by lr
                g = torch.where(fixed, torch.zeros_like(g), g)
                scale = torch.quantile(g.abs()[~fixed], scale_quantile) if scale_quantile < 1 else g.abs().max()
                w -= lr * (g / scale.clamp_min(1e-12)).clamp(-1.0, 1.0)
                w.clamp_(0.0, 1.0)
                w[fixed] = 1.0
            kept = project(w.detach().cpu().numpy(), cut)
            # stalled (the relaxation has settled between 0 and 1 without an exact flip): delete
            # the notes it has lowered part of the way too, a tenth higher each time
            still = still + 1 if np.array_equal(kept, last_kept) and flipped_at is None else 0
            if still >= 10 and cut < 0.95:
                cut, still = min(cut + 0.1, 0.95), 0
            key_bytes = kept.tobytes()
            back: Notes | None = None
            if key_bytes in seen:
                p, ok = seen[key_bytes]
            else:
                back, p, ok = exact(kept)
                seen[key_bytes] = (p, ok)
            last_kept = kept
            lead = float(p[target] - np.delete(p, target).max())
            key = (ok, -float((~kept).sum()) if ok else lead)
            if key > best_key:  # a flip beats no flip; among flips the fewer deletions, else the larger lead
                if back is None:  # classified at an earlier step: the notes again
                    back = exact(kept)[0]
                best_key, best = key, result(kept, back, p, step, relaxed_share=float(size.detach()))
            if ok and flipped_at is None:
                flipped_at = step
            done = step == steps or (stop_when_flipped and flipped_at is not None and step >= flipped_at + extra_steps)
            if done and prune and best_key[0]:
                best = _prune(best, exact, relaxed, lambda lg: lg[0, target] - lg[0, other], max_prune_checks, result)
            if done and same:  # the answer as the written file reads back
                back, p, ok = written_and_read(best.kept)
                best = result(
                    best.kept, back, p, best.step, **{k: v for k, v in best.change.items() if k not in _COUNTS}
                )
            yield FlipStep(
                step,
                steps,
                float(loss.detach()),
                float(p[target]),
                bool(ok),
                best,
                done,
                {
                    "cross_entropy": float(ce.detach()),
                    "relaxed_share": float(size.detach()),
                    "deleted": float((~last_kept).sum()),
                },
            )
            if done:
                break


def _prune(
    best: DeletionFlipResult, exact: Any, relaxed: Any, lead: Any, max_checks: int, result: Any
) -> DeletionFlipResult:
    """Restore deleted notes of a flipping deletion while the exact flip holds. Rounds of: rank
    the deleted notes by what their return costs the target's lead (first order, ``d lead / d
    w_i`` at the current deletion, cheapest first) and restore the longest prefix of that
    ranking that still flips (found by bisection); when no prefix is left, try the notes one by
    one. At most ``max_checks`` exact classifications."""
    kept = best.kept.copy()
    checks, restored = 0, 0

    def ranking() -> list[int]:
        wv = torch.as_tensor(kept.astype(np.float32), dtype=torch.float32).requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(lead(relaxed(wv)), wv)
        gain = g.detach().cpu().numpy()  # restoring note i changes the lead by about +gain[i]
        gone = np.flatnonzero(~kept)
        return [int(i) for i in gone[np.argsort(-gain[gone], kind="stable")]]

    def attempt(part: list[int]) -> bool:
        nonlocal kept, best, checks, restored
        trial = kept.copy()
        trial[part] = True
        back, p, ok = exact(trial)
        checks += 1
        if ok:
            kept, restored = trial, restored + len(part)
            best = result(kept, back, p, best.step)
        return bool(ok)

    while checks < max_checks:
        order = ranking()
        lo, hi = 0, len(order)  # restoring order[:lo] flips (lo = 0 trivially); order[:hi + 1] ... unknown
        while lo < hi and checks < max_checks:
            mid = (lo + hi + 1) // 2
            trial = kept.copy()
            trial[order[:mid]] = True
            back, p, ok = exact(trial)
            checks += 1
            if ok:
                lo, good = mid, (back, p)
            else:
                hi = mid - 1
        if lo == 0:
            break
        kept[order[:lo]] = True
        restored += lo
        best = result(kept, good[0], good[1], best.step)
    for i in ranking() if checks < max_checks else []:  # one by one
        if checks >= max_checks:
            break
        attempt([i])
    best.change["pruned_notes"] = restored
    best.change["prune_checks"] = checks
    return best
