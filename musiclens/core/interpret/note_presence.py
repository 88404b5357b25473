"""Note presence: the first-order effect of deleting each note, for whole-piece MIDI models.

A whole-piece model (:class:`~musiclens.core.models.midi_piece.PieceCNN`) reads every note
with a presence weight ``w_i`` (1 = the note is there, 0 = deleted); its statistics and its
note votes are weighted sums over the notes, so ``d score / d w_i`` at ``w = 1`` estimates, to
first order, how much the score falls when note ``i`` is deleted. Positive: the note speaks
for the class (deleting it lowers the score). Its statistics are piecewise constant in the
note features (shares of notes on the grid, in chords, ...), so the gradient with respect to
pitch, step or duration says nothing about them; this gradient does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from musiclens.core.errors import ParameterError

if TYPE_CHECKING:
    import torch

    from musiclens.core.interpret._common import Target


def note_presence(
    m: Any,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str | None = None,
    output: str = "logit",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``d output[target] / d w_i`` at ``w = 1`` for every note: (B, N, F) for x (B, N, F) raw
    note features, each note's value spread evenly over its F features (their sum is the
    note's value; the features share it), 0 on padded notes (``mask`` (B, N) False).

    ``m``: a MIDI model whose network takes ``weight=`` (the whole-piece family); ``output``:
    ``"logit"``, ``"probability"`` or ``"log_probability"``."""
    from musiclens.core.interpret._common import eval_mode, target_weights
    from musiclens.core.interpret.captum_methods import transform

    net = getattr(m, "net", m)
    presence = getattr(net, "presence_saliency", None)
    if presence is None:
        raise ParameterError(
            f"note-presence needs a whole-piece MIDI model (family midi_piece), not a {type(net).__name__}"
        )
    dev = next(net.parameters()).device
    x = x.to(dev)
    mk = None if mask is None else mask.to(dev)
    weights = target_weights(m, target, x.shape[0]).to(dev)

    def score(logits: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = (transform(m, logits, output) * weights.to(logits)).sum(1)
        return out

    with eval_mode(net):
        g: torch.Tensor = presence(x.detach(), mk, score).detach()
    out: torch.Tensor = (g / x.shape[-1]).unsqueeze(-1).expand(-1, -1, x.shape[-1]).contiguous()
    return out
