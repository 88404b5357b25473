"""Hear an explanation: what the model used, and what it ignored.

An attribution map on the model's front-end grid (F bins × T frames: mel bands for MusiCNN,
STFT bins for STFT models) becomes a mask on the recording's own STFT:

1. :func:`top_k_mask` keeps the ``top`` % of all cells with the largest *positive*
   attribution (evidence *for* the target); a soft mask also keeps weaker positive cells
   in proportion to their attribution. Cells with zero or negative attribution are never
   "used".
2. The mask is brought to the STFT bins with the mel filterbank's normalised transpose
   (:func:`musiclens.core.interpret.auralise.mask_to_linear`: each FFT bin takes the
   triangle-weighted mean of the bands covering it; the rows sum to 1). Frames need no
   mapping: the front end's STFT and the recording's share ``n_fft``, ``hop`` and centring,
   so frame ``t`` of the map is frame ``t`` of the STFT (centred at ``t · hop`` samples).
3. ``STFT(audio) ⊙ mask`` ("used") and ``STFT(audio) ⊙ (1 − mask)`` ("ignored") are inverted
   with the recording's *own phase* (iSTFT, :func:`musiclens.core.interpret.auralise.apply_mask`).

Because the linear mapping keeps ``mask + (1 − mask) = 1`` on every STFT bin, ``used +
ignored`` equals the iSTFT of the unmasked STFT (the recording itself, to float rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from musiclens.core.errors import ParameterError
from musiclens.core.features import FrontEnd
from musiclens.core.interpret.auralise import apply_mask


@dataclass
class HeardMasks:
    """The two halves of a recording under an attribution mask.

    used, ignored, original : (B, samples) float32 at ``sample_rate`` (the input's rate, same
        length): the masked, the complement-masked and the unmasked iSTFT.
    mask : (B, F, T) in [0, 1] on the front end's grid (what was used).
    linear_mask : (B, n_fft//2+1, T) the mask applied to the STFT.
    used_share : (B,) mean of ``mask`` (the share of cells used; top-k % / 100 for a binary
        mask with enough positive cells).
    """

    used: np.ndarray
    ignored: np.ndarray
    original: np.ndarray
    sample_rate: int
    mask: torch.Tensor
    linear_mask: torch.Tensor
    used_share: np.ndarray


def top_k_mask(attribution: torch.Tensor, top: float, *, soft: bool = False) -> torch.Tensor:
    """The cells of a map that speak most *for* the target.

    Parameters
    ----------
    attribution : (F, T) or (B, F, T) real, signed or not (positive = toward the target).
    top : percentage of each item's F·T cells to keep, in (0, 100].
    soft : False: 1 on the kept cells, 0 elsewhere. True: ``min(1, a / a_k)`` for positive
        attribution ``a`` (``a_k`` the k-th largest value): the kept cells are 1 and weaker
        positive cells fade in proportion to their attribution.

    Returns
    -------
    mask of the input's shape, float in [0, 1]. Only cells with positive attribution are kept:
    when fewer than k cells are positive, the mask covers just those (so ``top`` is an
    upper bound of the used share).
    """
    if not 0 < float(top) <= 100:
        raise ParameterError(f"top must be a percentage in (0, 100], got {top}")
    if attribution.dim() not in (2, 3):
        raise ParameterError(f"attribution must be (F, T) or (B, F, T), got {tuple(attribution.shape)}")
    a = attribution.detach().float()
    flat = a.reshape(-1, a.shape[-2] * a.shape[-1]) if a.dim() == 3 else a.reshape(1, -1)
    k = max(1, min(flat.shape[1], math.ceil(float(top) / 100.0 * flat.shape[1])))
    kth = flat.topk(k, dim=1).values[:, -1:]  # (B, 1) the k-th largest value of each item
    positive = flat.clamp_min(0)
    # the smallest positive value stands in when fewer than k cells are positive
    smallest = torch.where(flat > 0, flat, torch.full_like(flat, float("inf"))).amin(dim=1, keepdim=True)
    threshold = torch.where(kth > 0, kth, smallest)
    if soft:
        mask = (positive / threshold.clamp_min(1e-30)).clamp(max=1.0)
    else:
        mask = ((flat >= threshold) & (flat > 0)).float()
    return mask.reshape(a.shape)


def fit_frames(mask: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, F, T_m) -> (B, F, ``frames``): cut the extra frames, or add zero frames (a frame the
    map does not cover is not used: it goes to the complement)."""
    if mask.shape[-1] >= frames:
        return mask[..., :frames]
    return torch.nn.functional.pad(mask, (0, frames - mask.shape[-1]))


def hear_masks(
    audio: torch.Tensor | npt.ArrayLike,
    attribution: torch.Tensor | npt.ArrayLike,
    fe: FrontEnd,
    *,
    top: float = 20.0,
    soft: bool = False,
    sample_rate: int | None = None,
) -> HeardMasks:
    """Mask a recording's STFT by its attribution: what the model used, and what it ignored.

    Parameters
    ----------
    audio : (samples,) or (B, samples) float at ``sample_rate`` Hz (default: the front end's).
    attribution : (F, T_a) or (B, F, T_a) map on the front end's grid (F = ``fe.n_bins``),
        frame ``t`` = the front end's frame ``t`` of this audio; signed (positive = toward
        the target). ``T_a`` may differ from the STFT's frame count by a few frames (cut, or
        padded as not used).
    top, soft : see :func:`top_k_mask`.

    Returns
    -------
    :class:`HeardMasks` (audio at ``sample_rate``, the input's length).
    """
    a = attribution if isinstance(attribution, torch.Tensor) else torch.as_tensor(np.asarray(attribution, np.float32))
    if a.dim() == 2:
        a = a.unsqueeze(0)
    if a.dim() != 3 or a.shape[1] != fe.n_bins:
        raise ParameterError(
            f"the attribution must be (B, {fe.n_bins}, T) on the {fe.kind!r} front end's grid, got {tuple(a.shape)}"
        )
    n = np.asarray(audio).shape[-1] if not isinstance(audio, torch.Tensor) else audio.shape[-1]
    rate = int(sample_rate or fe.sample_rate)
    frames = fe.n_frames(math.ceil(n * fe.sample_rate / rate))  # the length audio.resample gives
    if abs(a.shape[-1] - frames) > 2:
        raise ParameterError(
            f"the attribution has {a.shape[-1]} frames, the audio gives {frames} frames of the front end"
        )
    mask = fit_frames(top_k_mask(a, top, soft=soft), frames)
    used = apply_mask(audio, mask, fe, sample_rate=sample_rate)
    ignored = apply_mask(audio, 1.0 - mask, fe, sample_rate=sample_rate)
    original = apply_mask(audio, torch.ones_like(mask), fe, sample_rate=sample_rate)
    return HeardMasks(
        used.audio,
        ignored.audio,
        original.audio,
        used.sample_rate,
        mask,
        used.linear_mask,
        mask.reshape(mask.shape[0], -1).mean(dim=1).cpu().numpy(),
    )
