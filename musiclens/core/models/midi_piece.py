"""Whole-piece MIDI classifier: a small dilated CNN over every note of every track.

The network takes the raw features of :class:`~musiclens.core.models.inputs.PieceSpec`,
``x: (B, N, 7)`` = ``[pitch, step (s), duration (s), velocity, program, drum, beat]`` for
all ``N`` notes of a piece (drums included, in order of onset), and a ``mask: (B, N)`` bool
(True = real note). It standardises them itself (pitch, log-times, velocity, drum flag, the
position in the beat as sines and cosines; the instrument family of the General MIDI program
as an embedding), runs ``layers`` dilated 1-d convolutions over the note sequence (a window
of a few dozen notes around each note), gives every note a vector of class logits and
returns their mean over the real notes: the piece's logits are the average of its local
windows' votes, so every note of the piece counts and gets saliency.

Training reads random windows of the piece (:func:`musiclens.core.training.midi.train_midi_piece`);
prediction reads the whole piece.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from musiclens.core.errors import ParameterError
from musiclens.core.models.inputs import PIECE_FEATURES, PieceSpec
from musiclens.core.models.registry import LayerInfo, register_family

__all__ = ["PieceCNN", "build_midi_piece", "N_FAMILIES"]

#: 16 General MIDI instrument families (program // 8) and one for drums.
N_FAMILIES = 17


class PieceCNN(nn.Module):
    """forward(x: (B, N, 7) raw piece features, mask: (B, N) bool or None) -> logits (B, n_labels).

    ``note_logits(x)`` -> (B, N, n_labels): each note's local vote (its receptive field:
    ``1 + (kernel - 1) * (2 ** layers - 1)`` notes)."""

    def __init__(
        self,
        *,
        n_labels: int,
        channels: int = 64,
        layers: int = 3,
        kernel: int = 5,
        embed: int = 8,
        dropout: float = 0.2,
        time_scale: float = 0.05,
    ) -> None:
        super().__init__()
        self.time_scale = float(time_scale)
        self.family = nn.Embedding(N_FAMILIES, embed)
        mods: list[nn.Module] = []
        c = 11 + embed
        for i in range(layers):
            d = 2**i
            mods += [
                nn.Conv1d(c, channels, kernel, padding=(kernel // 2) * d, dilation=d),
                nn.BatchNorm1d(channels),
                nn.GELU(),
                nn.Dropout(dropout),
            ]
            c = channels
        self.body = nn.Sequential(*mods)
        self.head = nn.Conv1d(channels, n_labels, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, 7) raw -> (B, 11 + embed, N) standardised input of the convolutions."""
        if x.ndim != 3 or x.shape[-1] != len(PIECE_FEATURES):
            raise ParameterError(f"PieceCNN expects (B, N, {len(PIECE_FEATURES)}) note features, got {tuple(x.shape)}")
        pitch, step, dur, vel, prog, drum, beat = x.unbind(-1)
        phase = 2 * torch.pi * torch.remainder(beat, 1.0)
        fam = torch.where(drum > 0.5, torch.full_like(prog, 16), torch.div(prog.detach(), 8, rounding_mode="floor"))
        z = torch.stack(
            [
                (pitch - 60.0) / 15.0,
                (torch.log1p(step.clamp_min(0) / self.time_scale) - 1.0) / 1.5,
                (torch.log1p(dur.clamp_min(0) / self.time_scale) - 1.5) / 1.5,
                vel / 64.0 - 1.0,
                drum,
                phase.sin(),
                phase.cos(),
                (2 * phase).sin(),
                (2 * phase).cos(),
                (3 * phase).sin(),
                (3 * phase).cos(),
            ],
            dim=-1,
        )
        h = torch.cat([z, self.family(fam.long().clamp(0, N_FAMILIES - 1))], dim=-1)
        return h.transpose(1, 2)

    def note_logits(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.body(self.encode(x))).transpose(1, 2)
        return out

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        lg = self.note_logits(x)
        if mask is None:
            return lg.mean(dim=1)
        m = mask.to(lg.dtype).unsqueeze(-1)
        if x.shape[0] == 1:  # one piece: its real notes only (padding never enters the convolutions)
            n = int(mask[0].sum())
            lg = self.note_logits(x[:, :n]) if n < x.shape[1] else lg
            return lg.mean(dim=1)
        out: torch.Tensor = (lg * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
        return out


@register_family("midi_piece")
def build_midi_piece(
    *,
    n_labels: int,
    channels: int = 64,
    layers: int = 3,
    kernel: int = 5,
    embed: int = 8,
    dropout: float = 0.2,
    note_features: dict[str, Any] | None = None,
) -> tuple[nn.Module, list[LayerInfo]]:
    """Builder for the registry. ``note_features``: a :meth:`PieceSpec.to_dict` (its time scale)."""
    spec = PieceSpec.from_dict(note_features) if note_features else PieceSpec()
    net = PieceCNN(
        n_labels=int(n_labels),
        channels=int(channels),
        layers=int(layers),
        kernel=int(kernel),
        embed=int(embed),
        dropout=float(dropout),
        time_scale=spec.time_scale,
    )
    layer_list = [LayerInfo("family embedding", "family", "input", "block", "instrument family (program // 8, drums)")]
    for i in range(int(layers)):
        layer_list.append(
            LayerInfo(f"conv {i + 1}", f"body.{4 * i}", "notes", "conv", f"dilated conv over notes, dilation {2**i}")
        )
    layer_list.append(LayerInfo("output", "head", "back end", "output", "per-note logits, averaged over the piece"))
    return net, layer_list
