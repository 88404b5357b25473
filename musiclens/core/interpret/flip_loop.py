"""What the audio flip (:mod:`~musiclens.core.interpret.flip`) and the MIDI flip
(:mod:`~musiclens.core.interpret.midi_flip`) share, written once: the objective that pulls
the model towards the target class, and the frozen network the input is optimised through.

Both flips learn a change ``δ`` to the input with Adam, minimising
``target_loss(f(x₀ + δ), target) + λ · size(δ)``, and stop once the class has flipped. The
rest of each loop differs on purpose, so it stays with its kind:

* the size of the change: audio ``mean(δ²)`` relative to the recording's power (a quiet,
  spread change is least audible); MIDI ``Σ|δ|`` in standardised units (few notes change);
* what "flipped" means: audio, the model's answer on the very input that was optimised
  (argmax, or the target tag's probability over a threshold); MIDI, the answer on the notes
  as a MIDI reader gets them back from the written file (rounded to valid MIDI and the tick
  grid), with a margin over the other classes, so the optimised input itself is never
  what is judged;
* so audio reports each state before it updates it and ends on the first flip (its result
  is that input, re-synthesised), while MIDI updates, projects and re-classifies, keeps the
  smallest flipping change so far, and prunes it afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from musiclens.core.interpret._common import eval_mode

__all__ = ["frozen", "target_loss"]


def target_loss(logits: torch.Tensor, target: int, *, multilabel: bool = False) -> torch.Tensor:
    """The loss that is small when the model says ``target``, for a batch of logits (B, L):
    cross-entropy towards ``target`` (softmax models), or ``−log σ(logit_target)`` (multi-label
    models, where only the target tag has to come on); the mean over the batch."""
    if multilabel:
        column = logits[:, target]
        return F.binary_cross_entropy_with_logits(column, torch.ones_like(column))
    wanted = torch.full((logits.shape[0],), int(target), dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, wanted)


@contextlib.contextmanager
def frozen(net: nn.Module) -> Iterator[nn.Module]:
    """``net`` in eval mode with its weights frozen (no gradients for them, so only the
    input's change learns and nothing accumulates in the weights' ``.grad``); each
    submodule's training flag and each weight's ``requires_grad`` come back afterwards."""
    flags = [(p, p.requires_grad) for p in net.parameters()]
    with eval_mode(net):
        try:
            for p, _ in flags:
                p.requires_grad_(False)
            yield net
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)
