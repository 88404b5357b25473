"""Filter auralisation: hear what one filter responds to in a recording.

A filter's activation map is resized to the input spectrogram and becomes a mask on the
recording's own complex STFT, which is inverted with the *original phase* (iSTFT), so the
result is a filtered version of the real recording, not a phase-less reconstruction:

* STFT front ends (``stft``, ``stft_real``, ``magnitude``): the mask is already on the
  linear-frequency STFT grid; ``STFT(audio) ⊙ mask → iSTFT``.
* mel front ends (``logmel``, ``musicnn``): the mel-domain mask is mapped to linear
  frequency with the mel filterbank's normalised transpose (each FFT bin takes the
  weighted mean of the mask values of the mel bands that cover it, so an all-ones mask
  stays all-ones and a band mask stays a band mask), then applied as above.
* Griffin-Lim is used only when no recording (hence no phase) is given: masked features
  are turned into audio by :func:`musiclens.core.inversion.features_to_audio`.

Audio comes in and goes out at the file's own rate: it is resampled to the front end's
rate for the analysis and the result is resampled back.

Raw-waveform models (``model.kind == "waveform"``) have no spectrogram to mask: a filter is
heard by *time-domain masking* with its **activation** (not its contribution to a class): the
positive part of the filter's activation over time (a 1-D layer's ``(B, K, T_l)``), scaled
to a maximum of 1 and interpolated linearly to one gain per sample, multiplies the
recording (:func:`activation_gain`). The result keeps the parts of the recording where the
filter responds and silences the rest; it cannot change the spectrum within a frame.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from musiclens.core.errors import ParameterError
from musiclens.core.features import MEL_KINDS, FrontEnd, stft
from musiclens.core.interpret._common import check_input, eval_mode, from_fe_rate, to_fe_rate
from musiclens.core.interpret.hooks import as_map, capture, filter_map
from musiclens.core.interpret.maps import normalise as normalise_maps
from musiclens.core.interpret.maps import upsample
from musiclens.core.inversion import features_to_audio, istft, to_power
from musiclens.core.models.inputs import Waveform
from musiclens.core.models.registry import LoadedModel
from musiclens.core.progress import Progress, run


@dataclass
class Auralisation:
    """audio : (B, samples) float32 at ``sample_rate`` (the input file's rate).
    mask : (B, F, T) the mask at the front end's resolution (mel bands or STFT bins).
    linear_mask : (B, n_fft//2+1, T) the mask actually applied to the STFT.
    """

    audio: np.ndarray
    sample_rate: int
    mask: torch.Tensor
    linear_mask: torch.Tensor


def mel_to_linear_weights(
    fe: FrontEnd, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The mel filterbank's normalised transpose: (n_fft//2+1, n_mels), rows summing to 1.

    Mel triangles with peak 1 overlap so that, between two band centres, they sum to 1; the
    transpose of that filterbank therefore maps a mel mask to linear frequency by linear
    interpolation (in Hz) between the band centres. The Slaney area normalisation of the
    analysis filterbank is left out on purpose: with it, the narrower (lower) band would
    weigh more. Bins below the first / above the last centre take that band's value.
    """
    if fe.kind not in MEL_KINDS:
        raise ParameterError(f"mel_to_linear_weights needs a mel front end, got {fe.kind!r}")
    centres = np.asarray(fe.bin_frequencies(), dtype=np.float64)  # (M,) ascending, Hz
    freqs = np.arange(fe.n_fft // 2 + 1) * fe.sample_rate / fe.n_fft
    n_mels = len(centres)
    w = np.zeros((len(freqs), n_mels))
    if n_mels == 1:
        w[:, 0] = 1.0
    else:
        f = np.clip(freqs, centres[0], centres[-1])
        hi = np.clip(np.searchsorted(centres, f, side="right"), 1, n_mels - 1)
        lo = hi - 1
        frac = (f - centres[lo]) / (centres[hi] - centres[lo])
        rows = np.arange(len(freqs))
        w[rows, lo] = 1.0 - frac
        w[rows, hi] += frac
    return torch.as_tensor(w, device=device, dtype=dtype)


def mask_to_linear(mask: torch.Tensor, fe: FrontEnd) -> torch.Tensor:
    """A mask on the front end's frequency axis (B, F, T) -> on the STFT bins (B, n_fft//2+1, T)."""
    if mask.dim() != 3:
        raise ParameterError(f"mask must be (B, F, T), got {tuple(mask.shape)}")
    if mask.shape[1] != fe.n_bins:
        raise ParameterError(f"mask has {mask.shape[1]} rows, the {fe.kind!r} front end has {fe.n_bins}")
    if fe.kind in MEL_KINDS:
        return torch.matmul(mel_to_linear_weights(fe, mask.device, mask.dtype), mask)
    return mask


def apply_mask(
    audio: torch.Tensor | npt.ArrayLike,
    mask: torch.Tensor,
    fe: FrontEnd,
    *,
    sample_rate: int | None = None,
) -> Auralisation:
    """Multiply the recording's complex STFT by ``mask`` and invert with its own phase.

    Parameters
    ----------
    audio : (samples,) or (B, samples) at ``sample_rate`` (default: the front end's rate).
    mask : (B, F, T) or (F, T) on the front end's grid (F mel bands or STFT bins, T frames
        of the front end at its rate). Real, usually in [0, 1]; it is not normalised here.

    Returns
    -------
    :class:`Auralisation` with audio (B, samples) at ``sample_rate``, same length as the input.
    """
    y, sr, n = to_fe_rate(audio, sample_rate, fe, device=mask.device)
    spec = stft(y, fe)  # (B, F_lin, T)
    if mask.dim() == 2:
        mask = mask.unsqueeze(0)
    mask = mask.to(spec.real.dtype)
    if mask.shape[0] == 1 and spec.shape[0] > 1:
        mask = mask.expand(spec.shape[0], -1, -1)
    if mask.shape[0] != spec.shape[0] or mask.shape[-1] != spec.shape[-1]:
        raise ParameterError(
            f"mask {tuple(mask.shape)} does not fit the recording's STFT: "
            f"need (B={spec.shape[0]}, F, T={spec.shape[-1]})"
        )
    lin = mask_to_linear(mask, fe)
    out = istft(spec * lin, fe, length=y.shape[-1])
    return Auralisation(from_fe_rate(out, sr, n, fe), sr, mask, lin)


def apply_mask_to_features(
    x: torch.Tensor, mask: torch.Tensor, fe: FrontEnd, *, n_iter: int = 32, length: int | None = None
) -> torch.Tensor:
    """No recording, no phase: mask the features themselves and invert them.

    x : (B, C, F, T) front-end output; mask (B, F, T). STFT kinds are masked per channel and
    inverted exactly (``stft``) or by Griffin-Lim; mel/magnitude kinds are masked in the
    power domain, re-compressed, then Griffin-Lim. Returns audio (B, samples) at fe's rate.
    """
    if fe.kind in ("stft", "stft_real"):
        masked = x * mask.unsqueeze(1)
    else:
        masked = fe.compress(to_power(x[:, 0], fe) * mask.clamp_min(0)).unsqueeze(1)
    return features_to_audio(masked, fe, n_iter=n_iter, length=length)


class _StopForward(Exception):
    """Raised by a forward hook to end a forward pass once the wanted layer has run."""


def layer_output(m: LoadedModel, x: torch.Tensor, layer: str, *, stop_early: bool = True) -> torch.Tensor:
    """The output of ``layer`` for ``x`` (no gradients), stopping the forward pass as soon as
    the layer has run (``stop_early``): the rest of the net is not computed, which makes
    early layers several times cheaper to read. The value is the same as with
    :func:`capture` over a full pass, for any layer whose module runs once per forward pass
    (use ``stop_early=False`` for a module called several times, e.g. inside a loop).
    """
    from musiclens.core.interpret.hooks import resolve

    module = resolve(m, layer)
    with torch.no_grad(), eval_mode(m.net), capture(m, layer) as acts:
        handle = None
        if stop_early:

            def stop(_module: nn.Module, _inputs: Any, _output: Any) -> None:
                raise _StopForward

            handle = module.register_forward_hook(stop)  # runs after capture's hook
        try:
            m.net(x)
        except _StopForward:
            pass
        finally:
            if handle is not None:
                handle.remove()
    if layer not in acts:
        raise ParameterError(f"layer {layer!r} did not run in the forward pass")
    out = acts[layer]
    if out.dim() == 3 and _channel_last(m, layer, module):
        raise ParameterError(
            f"layer {layer!r} outputs {tuple(out.shape)}: positions × features (tokens or frames, channels last), "
            "not filters over time or frequency, so its maps cannot be drawn or heard; pick a conv layer"
        )
    return out


#: modules whose 3-D outputs are (B, positions, features), channels last
_CHANNEL_LAST_TYPES = (nn.Linear, nn.LayerNorm, nn.MultiheadAttention, nn.RNNBase)


def _channel_last(m: LoadedModel, layer: str, module: nn.Module) -> bool:
    """A linear, layer-norm, attention or recurrent layer (by module type, or by the kind
    the model's layer list gives it): its (B, N, D) output is not (B, K filters, T)."""
    info = m.layers.get(layer)
    return isinstance(module, _CHANNEL_LAST_TYPES) or (info is not None and info.kind in ("attention", "recurrent"))


def filter_mask(
    m: LoadedModel,
    x: torch.Tensor,
    *,
    layer: str,
    filter: int,
    relu: bool = True,
    normalise: bool = True,
    mode: str = "bilinear",
    stop_early: bool = True,
) -> torch.Tensor:
    """One filter's activation, resized to the input: (B, C, F, T) -> mask (B, F, T).

    ``relu`` keeps only positive activation (a mask must not flip the phase);
    ``normalise`` scales each item's mask to a maximum of 1; ``stop_early``: see
    :func:`layer_output`.
    """
    x = check_input(m, x)
    a = filter_map(as_map(layer_output(m, x, layer, stop_early=stop_early)), filter)  # (B, F_l, T_l)
    mask = upsample(a, x.shape[-2:], mode=mode)
    if relu:
        mask = mask.clamp_min(0)
    if normalise:
        mask = normalise_maps(mask, mode="max")
    return mask


def auralise_filter(
    m: LoadedModel,
    audio: torch.Tensor | npt.ArrayLike,
    *,
    layer: str,
    filter: int,
    sample_rate: int | None = None,
    relu: bool = True,
    normalise: bool = True,
    mode: str = "bilinear",
    stop_early: bool = True,
) -> Auralisation:
    """Hear one filter: its activation on ``audio`` masks the recording's STFT.

    Parameters
    ----------
    audio : (samples,) or (B, samples) float at ``sample_rate`` Hz (default: the model's).
    layer, filter : which filter (``filter`` indexes the layer's channels).
    relu, normalise, mode, stop_early : see :func:`filter_mask`.

    Returns
    -------
    :class:`Auralisation`: audio (B, samples) at ``sample_rate``, the same length as the input.
    A raw-waveform model is heard by time-domain masking (the module doc; ``mode`` unused):
    ``mask`` is then (B, 1, T_l), the layer's time resolution, and ``linear_mask`` (B, 1, S)
    the gain applied to each sample at the model's rate.
    """
    if isinstance(m.input, Waveform):
        return _auralise_waveform(
            m,
            audio,
            layer=layer,
            filter=filter,
            sample_rate=sample_rate,
            relu=relu,
            normalise=normalise,
            stop_early=stop_early,
        )
    fe = m.front_end
    y, sr, n = to_fe_rate(audio, sample_rate, fe, device=m.device)
    x = fe(y)
    mask = filter_mask(
        m, x, layer=layer, filter=filter, relu=relu, normalise=normalise, mode=mode, stop_early=stop_early
    )
    spec = stft(y, fe)
    lin = mask_to_linear(mask, fe)
    out = istft(spec * lin, fe, length=y.shape[-1])
    return Auralisation(from_fe_rate(out, sr, n, fe), sr, mask, lin)


# ---------------------------------------------------------------------- what is heard
SILENT_DBFS = -40.0  # an auralisation quieter than this (RMS, dB full scale) counts as silent


def rms_dbfs(audio: npt.ArrayLike) -> float:
    """RMS level of ``audio`` in dB full scale (1.0 = 0 dBFS); ``-inf`` for digital silence."""
    y = np.asarray(audio, dtype=np.float64)
    rms = float(np.sqrt(np.mean(y**2))) if y.size else 0.0
    return 20.0 * float(np.log10(rms)) if rms > 0 else -np.inf


def normalise_loudness(
    audio: npt.ArrayLike, *, target_dbfs: float = -20.0, peak: float = 0.99
) -> tuple[np.ndarray, float]:
    """Scale ``audio`` to an RMS of ``target_dbfs``, but never beyond a ``peak`` of full scale.

    Returns (scaled float32 audio, the gain applied in dB). Digital silence is returned as it
    is with a gain of 0 dB (there is nothing to normalise).
    """
    y = np.asarray(audio, dtype=np.float32)
    level = rms_dbfs(y)
    top = float(np.max(np.abs(y))) if y.size else 0.0
    if not np.isfinite(level) or top <= 0:
        return y.copy(), 0.0
    gain_db = min(target_dbfs - level, 20.0 * float(np.log10(peak / top)))
    return (y * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32), float(gain_db)


@dataclass
class FilterLevels:
    """Every filter of one layer on one recording, as heard.

    maps : (K, F_l, T_l) the layer's activation (1-D layers: F_l = 1), before any ReLU.
    energy : (K,) mean square of the *positive part* of each map: the part the auralisation's
        mask is made of (a filter that is never positive is silent however large its raw
        mean square).
    level_db : (K,) RMS of each filter's auralisation (:func:`auralise_filter` with its
        defaults) in dBFS; ``-inf`` for digital silence.
    silent : (K,) level below ``silent_db`` (or digital silence).
    """

    layer: str
    maps: np.ndarray
    energy: np.ndarray
    level_db: np.ndarray
    silent: np.ndarray
    silent_db: float = SILENT_DBFS


def filter_levels(
    m: LoadedModel,
    audio: torch.Tensor | npt.ArrayLike,
    *,
    layer: str,
    sample_rate: int | None = None,
    batch: int = 64,
    silent_db: float = SILENT_DBFS,
    stop_early: bool = True,
) -> FilterLevels:
    """Auralise every filter of ``layer`` on one recording and measure what is heard.

    One forward pass; the masks are built as :func:`filter_mask` builds them (bilinear
    resize, ReLU, each scaled to a maximum of 1) and applied to the recording's STFT in
    batches of ``batch`` filters. The levels equal those of :func:`auralise_filter` for each
    filter (up to float rounding).

    audio : (samples,) float at ``sample_rate`` Hz (default: the model's rate).
    Raw-waveform models: the filters are heard by time-domain masking (:func:`activation_gain`)
    and ``maps`` is (K, 1, T_l) (:func:`waveform_maps`).
    """
    steps = filter_levels_steps(
        m, audio, layer=layer, sample_rate=sample_rate, batch=batch, silent_db=silent_db, stop_early=stop_early
    )
    return run(steps)


def filter_levels_steps(
    m: LoadedModel,
    audio: torch.Tensor | npt.ArrayLike,
    *,
    layer: str,
    sample_rate: int | None = None,
    batch: int = 64,
    silent_db: float = SILENT_DBFS,
    stop_early: bool = True,
) -> Generator[Progress, None, FilterLevels]:
    """:func:`filter_levels` in steps: after the forward pass, yields a :class:`Progress`
    (fraction of the K filters heard) before each batch of ``batch`` filters."""
    if isinstance(m.input, Waveform):
        return (
            yield from _waveform_levels(
                m, audio, layer=layer, sample_rate=sample_rate, batch=batch, silent_db=silent_db, stop_early=stop_early
            )
        )
    fe = m.front_end
    y, sr, n = to_fe_rate(audio, sample_rate, fe, device=m.device)
    if y.shape[0] != 1:
        raise ParameterError(f"filter_levels takes one recording, got a batch of {y.shape[0]}")
    x = check_input(m, fe(y))
    act = as_map(layer_output(m, x, layer, stop_early=stop_early))[0]  # (K, F_l, T_l)
    spec = stft(y, fe)  # (1, F_lin, T)
    levels: list[float] = []
    with torch.no_grad():
        for a in range(0, act.shape[0], batch):
            yield _hearing(a, batch, act.shape[0])
            chunk = act[a : a + batch].unsqueeze(0)  # (1, k, F_l, T_l)
            mask = upsample(chunk, x.shape[-2:])[0].clamp_min(0)  # (k, F, T)
            mask = normalise_maps(mask, mode="max")
            lin = mask_to_linear(mask, fe)
            out = istft(spec * lin, fe, length=y.shape[-1])  # (k, samples)
            heard = from_fe_rate(out, sr, n, fe)
            levels.extend(rms_dbfs(h) for h in heard)
    maps = act.detach().float().cpu().numpy()
    energy = (np.clip(maps, 0, None).astype(np.float64) ** 2).mean(axis=(1, 2))
    level_db = np.asarray(levels, dtype=np.float64)
    return FilterLevels(layer, maps, energy, level_db, ~(level_db >= silent_db), silent_db)


def _hearing(a: int, batch: int, k: int) -> Progress:
    """The step before hearing filters ``a`` .. ``a + batch`` of ``k``."""
    return Progress(fraction=a / k, message=f"hearing filters {a + 1}–{min(a + batch, k)} of {k}")


# ---------------------------------------------------------------------- raw-waveform models
def _rate(spec: Waveform) -> FrontEnd:
    """``to_fe_rate``/``from_fe_rate`` read only ``.sample_rate`` of their spec; a
    :class:`Waveform` has one too (typed as a front end for them)."""
    return cast(FrontEnd, spec)


def waveform_input(
    m: LoadedModel, audio: torch.Tensor | npt.ArrayLike, sample_rate: int | None = None
) -> tuple[torch.Tensor, int, int]:
    """A raw-waveform model's input from audio: (samples,) or (B, samples) at ``sample_rate``
    (default the model's) -> (x (B, 1, S) float32 at the model's rate on its device, the rate
    given in Hz, the number of samples given)."""
    spec = m.input
    if not isinstance(spec, Waveform):
        raise ParameterError(f"model {m.name!r} is a {m.kind} model, not a raw-waveform model")
    y, sr, n = to_fe_rate(audio, sample_rate, _rate(spec), device=m.device)
    return spec(y), sr, n


def waveform_output(m: LoadedModel, y: torch.Tensor, sr: int, n: int) -> np.ndarray:
    """The inverse of :func:`waveform_input`: samples (B, S) at the model's rate -> float32
    numpy (B, n) at ``sr`` Hz (resampled, trimmed or zero-padded to ``n``)."""
    return from_fe_rate(y, sr, n, _rate(cast(Waveform, m.input)))


def waveform_maps(act: torch.Tensor) -> torch.Tensor:
    """A layer's output on a raw-waveform input as per-filter curves over time (B, K, T_l).

    (B, K, T) stays (``Conv1d``); (B, K, T, 1) and (B, K, 1, T) (a ``Conv2d`` run over the
    samples as a (B, 1, S, 1) image, as CREPE does) drop their unit axis; (B, K) (a dense
    layer) becomes (B, K, 1). A 4-D output with two axes longer than 1 raises: it is not a
    curve over time.
    """
    if act.dim() == 3:
        return act
    if act.dim() == 2:
        return act.unsqueeze(-1)
    if act.dim() == 4 and act.shape[-1] == 1:
        return act[..., 0]
    if act.dim() == 4 and act.shape[-2] == 1:
        return act[..., 0, :]
    raise ParameterError(
        f"a layer output of shape {tuple(act.shape)} is not (B, K, T); pick a layer whose output runs over time"
    )


def activation_gain(act: torch.Tensor, n_samples: int, *, relu: bool = True, normalise: bool = True) -> torch.Tensor:
    """One gain per sample from activations over time: (B, T_l) -> (B, n_samples).

    ``relu`` keeps the positive part (a gain must not flip the signal); ``normalise`` scales
    each item to a maximum of 1; the T_l values are spread evenly over the samples (linear
    interpolation, ``align_corners=False``: each value covers its share of the patch;
    padding and receptive fields of the layer are not modelled).
    """
    if act.dim() != 2:
        raise ParameterError(f"activations must be (B, T_l), got {tuple(act.shape)}")
    a = act.clamp_min(0) if relu else act
    if normalise:
        a = normalise_maps(a, mode="max")
    return torch.nn.functional.interpolate(
        a.float().unsqueeze(1), size=int(n_samples), mode="linear", align_corners=False
    )[:, 0]


def _auralise_waveform(
    m: LoadedModel,
    audio: torch.Tensor | npt.ArrayLike,
    *,
    layer: str,
    filter: int,
    sample_rate: int | None,
    relu: bool,
    normalise: bool,
    stop_early: bool,
) -> Auralisation:
    """:func:`auralise_filter` for a raw-waveform model (time-domain masking)."""
    x, sr, n = waveform_input(m, audio, sample_rate)
    act = filter_map(waveform_maps(layer_output(m, x, layer, stop_early=stop_early)), filter)  # (B, T_l)
    mask = act.clamp_min(0) if relu else act
    if normalise:
        mask = normalise_maps(mask, mode="max")
    gain = activation_gain(mask, x.shape[-1], relu=False, normalise=False)  # (B, S)
    out = x[:, 0] * gain.to(x)
    return Auralisation(waveform_output(m, out, sr, n), sr, mask[:, None], gain[:, None])


def _waveform_levels(
    m: LoadedModel,
    audio: torch.Tensor | npt.ArrayLike,
    *,
    layer: str,
    sample_rate: int | None,
    batch: int,
    silent_db: float,
    stop_early: bool,
) -> Generator[Progress, None, FilterLevels]:
    """:func:`filter_levels_steps` for a raw-waveform model (time-domain masking)."""
    x, sr, n = waveform_input(m, audio, sample_rate)
    if x.shape[0] != 1:
        raise ParameterError(f"filter_levels takes one recording, got a batch of {x.shape[0]}")
    act = waveform_maps(layer_output(m, x, layer, stop_early=stop_early))[0]  # (K, T_l)
    levels: list[float] = []
    with torch.no_grad():
        for a in range(0, act.shape[0], batch):
            yield _hearing(a, batch, act.shape[0])
            gain = activation_gain(act[a : a + batch], x.shape[-1])  # (k, S)
            heard = waveform_output(m, x[:, 0] * gain.to(x), sr, n)
            levels.extend(rms_dbfs(h) for h in heard)
    maps = act.detach().float().cpu().numpy()[:, None, :]  # (K, 1, T_l)
    energy = (np.clip(maps, 0, None).astype(np.float64) ** 2).mean(axis=(1, 2))
    level_db = np.asarray(levels, dtype=np.float64)
    return FilterLevels(layer, maps, energy, level_db, ~(level_db >= silent_db), silent_db)
