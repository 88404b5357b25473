"""Input optimisation that flips an audio classification: the smallest change to the
spectrogram that makes the model say ``target`` (a counterfactual).

:func:`flip` is a generator like :func:`musiclens.core.interpret.dream.dream`: it yields a
:class:`FlipStep` per iteration and a last one with ``done=True`` and the audio, honours
``cancel`` and ``close()``.

Two domains:

* ``domain="audio"`` (default): the change ``δ`` is made to the *waveform* and the front
  end (STFT, mel, log — all differentiable) is part of the optimised function, so the
  audio that comes out is exactly what was classified: the flip is guaranteed to be heard.
* ``domain="features"``: ``δ`` is made to the front-end output (x = x₀ + δ), like the dream;
  freer, but a modified spectrogram is generally not the spectrogram of any signal, so the
  audio made from it may not keep the flip (the last step reports what the model says to
  the audio).

Loss, minimised by Adam on ``δ``:

    cross-entropy towards ``target`` (softmax models) or −log σ(y_target) (multi-label
    models, where "flipped" means the target tag's probability passes ``threshold``)
    + ``l2 · mean(δ²)``   (stay close to the original; δ in front-end units, or for the
                          audio domain relative to the recording's mean square)

in the feature domain restricted to ``channels`` and clipped to the start's value range (as
the dream does); in the audio domain the signal is kept within [-1, 1].
By default it stops at the first step where the prediction has flipped (``stop_on_flip``).

Audio out of the feature domain keeps the recording's own phase: for mel / magnitude front ends the change
becomes a gain mask (``√(P_new / P_old)`` per bin, mapped from mel to linear frequency like
the auralisation masks) applied to the original STFT; for STFT front ends the optimised
channels are inverted directly. The final step re-analyses that audio and reports the
model's prediction on it (``audio_prediction``), since what is heard is what counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from musiclens.core.errors import ParameterError
from musiclens.core.features import FrontEnd, stft
from musiclens.core.interpret._common import (
    Target,
    check_input,
    from_fe_rate,
    target_index,
    to_fe_rate,
)
from musiclens.core.interpret.flip_loop import frozen, target_loss
from musiclens.core.inversion import channels_to_complex, istft, to_power
from musiclens.core.models.registry import LoadedModel
from musiclens.core.progress import Cancel, is_cancelled


@dataclass
class FlipStep:
    """One report of :func:`flip`.

    step/total : updates applied / planned. loss : the loss at ``x``.
    predicted : the label index the model picks at ``x`` (argmax).
    target_probability : probability of the target label at ``x``.
    distance : RMS of ``x − x₀`` (front-end units, e.g. dB).
    snr_db : audio domain: signal-to-change ratio ``10·log10(Σy² / Σδ²)`` (None otherwise).
    flipped : the prediction is the target (multi-label: its probability ≥ threshold).
    x : (1, C, F, T). audio / sample_rate / audio_prediction : in the last report.
    """

    step: int
    total: int
    loss: float
    predicted: int
    target_probability: float
    distance: float
    flipped: bool
    x: torch.Tensor
    snr_db: float | None = None
    done: bool = False
    cancelled: bool = False
    audio: np.ndarray | None = None
    sample_rate: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def change_to_audio(m: LoadedModel, y: torch.Tensor, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Audio (1, samples) at the front end's rate whose features approximate ``x``, made
    from the recording ``y`` (1, samples) with its own phase (see the module doc)."""
    from musiclens.core.interpret.auralise import mask_to_linear

    fe: FrontEnd = m.front_end
    spec = stft(y, fe)
    if fe.kind == "stft":
        return istft(channels_to_complex(x), fe, length=y.shape[-1])
    if fe.kind == "stft_real":
        # keep the imaginary part, replace the real part
        return istft(torch.complex(x[:, 0], spec.imag), fe, length=y.shape[-1])
    p0 = to_power(x0[:, 0], fe)
    p1 = to_power(x[:, 0], fe)
    gain = torch.where(p0 > 0, p1 / p0.clamp_min(1e-30), torch.ones_like(p0)).pow(1.0 / fe.power)
    gain = gain.clamp(0.0, 1e4)
    return istft(spec * mask_to_linear(gain, fe), fe, length=y.shape[-1])


def flip(
    m: LoadedModel,
    start: torch.Tensor | npt.ArrayLike,
    *,
    target: Target,
    steps: int = 200,
    lr: float = 0.5,
    l2: float = 0.01,
    channels: Sequence[int] | None = None,
    value_range: str | tuple[float, float] | None = "auto",
    threshold: float = 0.5,
    stop_on_flip: bool = True,
    domain: str = "audio",
    sample_rate: int | None = None,
    cancel: Cancel = None,
) -> Iterator[FlipStep]:
    """Optimise the input until the model predicts ``target``.

    Parameters
    ----------
    start : audio (samples,) at ``sample_rate`` (default: the model's rate).
    target : the label the model should pick.
    domain : ``"audio"`` (optimise the waveform) or ``"features"`` (the front-end output).
    lr : Adam step: front-end units for features; for audio, a fraction of the recording's
        RMS (default 0.5 → use about 0.01).
    l2 : weight of the closeness penalty. channels (features only) : input channels that may
        change. value_range (features only) : ``"auto"`` (the start's range), ``(lo, hi)``
        or None.
    threshold : multi-label models: target probability that counts as flipped.

    Yields
    ------
    :class:`FlipStep` before every update, then a last one with ``done=True``.
    """
    fe = m.front_end
    if steps < 0 or lr <= 0 or l2 < 0:
        raise ParameterError(f"need steps >= 0, lr > 0, l2 >= 0; got {steps}, {lr}, {l2}")
    y, sr, n = to_fe_rate(start, sample_rate, fe, device=m.device)
    if y.shape[0] != 1:
        raise ParameterError(f"flip takes one recording, got a batch of {y.shape[0]}")
    with torch.no_grad():
        x0 = check_input(m, fe(y))
    t_idx = target_index(m, target)
    n_ch = x0.shape[1]
    chans = list(range(n_ch)) if channels is None else sorted({int(c) for c in channels})
    if not chans or any(not 0 <= c < n_ch for c in chans):
        raise ParameterError(f"channels must be a non-empty subset of 0..{n_ch - 1}, got {channels}")
    ch_mask = torch.zeros(1, n_ch, 1, 1, device=x0.device)
    ch_mask[:, chans] = 1.0
    if value_range == "auto":
        if fe.kind in ("stft", "stft_real"):
            peak = float(x0.abs().max())
            bounds = (-peak, peak)
        else:
            bounds = (float(x0.min()), float(x0.max()))
    elif value_range is None:
        bounds = None
    else:
        bounds = (float(value_range[0]), float(value_range[1]))

    if domain not in ("audio", "features"):
        raise ParameterError(f"domain must be 'audio' or 'features', got {domain!r}")
    rms = float(y.pow(2).mean().sqrt().clamp_min(1e-6))
    if domain == "audio":
        delta = torch.zeros_like(y, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=lr * rms)
    else:
        delta = torch.zeros_like(x0, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=lr)

    def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float, bool]:
        logits = m.net(x)
        if m.multilabel:
            prob = torch.sigmoid(logits[0, t_idx])
            flipped = bool(prob >= threshold)
        else:
            prob = torch.softmax(logits, -1)[0, t_idx]
            flipped = int(logits[0].argmax()) == t_idx
        loss = target_loss(logits, t_idx, multilabel=m.multilabel)  # written once: flip_loop
        return logits, loss, float(prob.detach()), flipped

    def current() -> torch.Tensor:
        if domain == "audio":
            return fe((y + delta).clamp(-1.0, 1.0))
        x = x0 + delta * ch_mask
        return x.clamp(*bounds) if bounds is not None else x

    def penalty(x: torch.Tensor) -> torch.Tensor:
        if domain == "audio":
            return delta.pow(2).mean() / rms**2
        return (x - x0).pow(2).mean()

    def snr() -> float | None:
        if domain != "audio":
            return None
        change = float(delta.detach().pow(2).sum())
        return float("inf") if change == 0 else float(10 * np.log10(float(y.pow(2).sum()) / change))

    done_steps, cancelled, flipped = 0, False, False
    with frozen(m.net):  # eval mode, weights frozen (flip_loop, as the MIDI flip)
        for i in range(steps):
            if is_cancelled(cancel):
                cancelled = True
                break
            with torch.enable_grad():
                x = current()
                logits, loss, prob, flipped = evaluate(x)
                dist = float((x.detach() - x0).pow(2).mean().sqrt())
                yield FlipStep(
                    i,
                    steps,
                    float(loss.detach()),
                    int(logits[0].argmax()),
                    prob,
                    dist,
                    flipped,
                    x.detach().clone(),
                    snr(),
                    sample_rate=sr,
                )
                if flipped and stop_on_flip:
                    break
                if is_cancelled(cancel):
                    cancelled = True
                    break
                total = loss + l2 * penalty(x)
                opt.zero_grad()
                total.backward()  # type: ignore[no-untyped-call]  # torch declares Tensor.backward unannotated
                opt.step()
            done_steps = i + 1
        with torch.no_grad():
            x = current()
            logits, loss, prob, flipped = evaluate(x)
            if domain == "audio":
                audio = (y + delta).clamp(-1.0, 1.0)
            else:
                audio = change_to_audio(m, y, x0, x)
            heard = m.net(fe(audio))
            heard_pred = int(heard[0].argmax())
            heard_prob = float((torch.sigmoid(heard) if m.multilabel else torch.softmax(heard, -1))[0, t_idx])
        final = FlipStep(
            done_steps,
            steps,
            float(loss),
            int(logits[0].argmax()),
            prob,
            float((x - x0).pow(2).mean().sqrt()),
            flipped,
            x.clone(),
            snr(),
            done=True,
            cancelled=cancelled,
            sample_rate=sr,
        )
        final.audio = from_fe_rate(audio, sr, n, fe)[0]
        final.info = {
            "audio_prediction": heard_prediction_label(m, heard_pred),
            "audio_target_probability": heard_prob,
            "start_prediction": heard_prediction_label(m, int(m.net(x0)[0].argmax())),
        }
    yield final


def heard_prediction_label(m: LoadedModel, idx: int) -> str:
    return m.labels[idx] if 0 <= idx < len(m.labels) else str(idx)


def splice_change(
    recording: np.ndarray, before: np.ndarray, after: np.ndarray, start: int, *, sample_rate: int, fade_s: float = 0.01
) -> np.ndarray:
    """Put the flip of one part of a recording back into the whole recording.

    Parameters
    ----------
    recording : (samples,) or (channels, samples) float, the whole recording at ``sample_rate``.
    before, after : (n,) the (mono) span that was optimised, and its flipped version.
    start : index of the span's first sample in ``recording``.
    fade_s : crossfade length in seconds. Inside the span the change is kept whole (what
        was classified is what is written); just outside it, the change continues as its
        mirror image and fades to nothing over ``fade_s`` (raised cosine), so the edit
        starts and ends without a click.

    Returns
    -------
    ``recording`` (same shape, float32) with the change ``after − before`` added to every
    channel: the mono mix of the result is ``after`` over ``[start, start + n)``, the
    recording itself more than ``fade_s`` away from the span.
    """
    rec = np.asarray(recording, dtype=np.float32)
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if before.ndim != 1 or before.shape != after.shape:
        raise ParameterError(f"before and after must be the same (n,) span, got {before.shape} and {after.shape}")
    change = after - before
    n, total = change.shape[0], rec.shape[-1]
    if not 0 <= start <= total - n:
        raise ParameterError(f"the span [{start}, {start + n}) is outside the recording's {total} samples")
    if fade_s < 0:
        raise ParameterError(f"fade_s must be >= 0, got {fade_s}")
    n_fade = min(int(round(fade_s * sample_rate)), n)
    out = rec.copy()
    out[..., start : start + n] += change.astype(np.float32)
    k_in, k_out = min(n_fade, start), min(n_fade, total - start - n)

    def weight(k: int) -> np.ndarray:  # at distance 1..k from the span: from ~1 down towards 0
        w: np.ndarray = np.cos(0.5 * np.pi * np.arange(1, k + 1) / (n_fade + 1)) ** 2
        return w

    if k_in > 0:  # before the span: change[0], change[1], ... mirrored outwards, fading
        out[..., start - k_in : start] += (change[:k_in] * weight(k_in))[::-1].astype(np.float32)
    if k_out > 0:  # after the span: change[n-1], change[n-2], ... mirrored outwards, fading
        out[..., start + n : start + n + k_out] += (change[::-1][:k_out] * weight(k_out)).astype(np.float32)
    return out
