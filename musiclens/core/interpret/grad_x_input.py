"""Gradient × input: ``x ⊙ ∂y_c/∂x`` (Shrikumar et al. 2016; Ancona et al. 2018).

Each input value's share of a first-order Taylor expansion of the score around zero: large
where the input is large *and* the score is sensitive to it, signed (negative where the value
speaks against the class). For a linear model ``y = w·x + b`` it is exactly ``w ⊙ x``, the
contribution of each value to the score.

This module is the worked example of adding a method: one function in the table's calling
convention (see :mod:`musiclens.core.interpret.methods`), one entry in
``methods.METHODS`` and its test (``tests/test_methods.py``). The window's list, the CLI's
``saliency`` choices and the sanity check then offer it without further changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from musiclens.core.interpret._common import Target


def gradient_x_input(
    m: Any,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str | None = None,
    output: str = "logit",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gradient ⊙ input, for every input kind the ``gradient`` method supports.

    Parameters
    ----------
    m : a loaded model (audio: ``LoadedModel``; MIDI: a note-sequence model).
    x : audio (B, C, F, T) front-end output; MIDI (B, N, 3) raw note features.
    target : label index or name (one for the batch, or one per item).
    layer : unused (an input-resolution method).
    output : the score differentiated: ``"logit"`` (default) or ``"probability"``.
    mask : MIDI only, (B, N) bool prefix of real notes (padded notes get 0).

    Returns
    -------
    Tensor of x's shape, sign kept.
    """
    from musiclens.core.interpret.methods import get  # the table's gradient, whatever the input kind

    opts = {"output": output} if mask is None else {"output": output, "mask": mask}
    g = get("gradient")(m, x, target=target, **opts)
    return g * x.detach().to(g).reshape(g.shape)
