"""Deep dream on spectrograms: change the input so the model hears more of a class.

:func:`dream` is a generator, so the GUI worker, the CLI and the tests drive the same code:
it yields a :class:`DreamStep` per iteration (progress, objective, the current input) and a
last one with ``done=True`` and the audio, and it stops early when ``cancel`` is set (a
``threading.Event`` or any callable returning ``True``, checked before every update) or
when the consumer closes it (``gen.close()``).

Objective (on logits by default)::

    J = y_target                               minus=None
    J = y_target − y_minus                     minus=<label>
    J = y_target − mean_{j ≠ target} y_j       minus="others"

Each step: ``g = ∂J/∂x`` (on a copy of x rolled by a random time shift when ``jitter`` > 0,
the gradient rolled back), restricted to ``channels`` (for 2-channel STFT models: 0 = real,
1 = imaginary), optionally normalised (``g / mean|g|``, DeepDream's default), then

* ``update="additive"``: ``x ← x + lr·g`` (energy may appear anywhere);
* ``update="subtractive"``: the step may only move values towards silence: each value
  ends between its current value and the front end's silence value (a dB floor, 0 for STFT
  channels and ``log10(1 + g·S)``), so the dream can only remove what the recording has,
  like a time-varying filter;

and finally values are clipped to ``value_range`` (by default the start's own range:
[silence or min, max] for mel/magnitude kinds, ±max|x| for STFT channels).

Audio out: iSTFT of the two channels for ``stft`` models (exact); for mel/magnitude models
Griffin-Lim started from the *start recording's phase* (random phase only when the dream
started from features without audio). ``resynthesis="mask"`` instead turns the change into
a gain mask on the recording's own STFT (``√(P_dream / P_start)`` per bin, mel mapped to
linear frequency as in auralisation): no Griffin-Lim artefacts, the untouched parts stay
bit-exact, but energy can only be scaled where the recording had some. Output rate = the
start audio's rate.

Raw-waveform models (``model.kind == "waveform"``) dream on the samples themselves: the
same objective and steps on ``x`` (1, 1, S) at the model's rate, each update low-passed by a
Hann window of ``smoothness`` samples (a regulariser: without it gradient ascent fills the
dream with high-frequency noise the model happens to like), the values clamped to [-1, 1]
(full scale; ``value_range``), silence is 0 for the subtractive update, and the audio is
``x`` itself (no inversion).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
    silence_value,
    target_index,
    to_fe_rate,
)
from musiclens.core.interpret.auralise import waveform_input, waveform_output
from musiclens.core.interpret.flip_loop import frozen
from musiclens.core.inversion import features_to_audio
from musiclens.core.models.inputs import Waveform
from musiclens.core.models.registry import LoadedModel
from musiclens.core.progress import Cancel, is_cancelled


@dataclass
class DreamStep:
    """One report of :func:`dream`.

    step : number of updates applied so far (0 = the start); total : planned updates.
    objective : J at the reported input; scores : (L,) the model's outputs (logits or
    probabilities, see ``output``) at that input.
    x : (1, C, F, T) the input at this step (a detached copy); (1, 1, S) samples for a
    raw-waveform model.
    done : the last report; cancelled : the run stopped because ``cancel`` was set.
    audio : (samples,) float32 at ``sample_rate``, in the last report (and every
    ``audio_every`` steps when asked), else None.
    """

    step: int
    total: int
    objective: float
    scores: np.ndarray
    x: torch.Tensor
    done: bool = False
    cancelled: bool = False
    audio: np.ndarray | None = None
    sample_rate: int = 0

    @property
    def progress(self) -> float:
        return self.step / self.total if self.total else 1.0


def sine_sweep(
    fe: FrontEnd | int, *, seconds: float = 3.0, f0: float = 50.0, f1: float | None = None, amplitude: float = 0.3
) -> np.ndarray:
    """An exponential sine sweep from ``f0`` to ``f1`` Hz (default: 0.9 × Nyquist), float32
    (samples,) at the front end's rate (or at the given rate in Hz). A neutral dream start."""
    sr = fe if isinstance(fe, int) else fe.sample_rate
    f1 = 0.9 * sr / 2 if f1 is None else float(f1)
    if not 0 < f0 < f1 <= sr / 2:
        raise ParameterError(f"need 0 < f0 < f1 <= {sr / 2} Hz, got f0={f0}, f1={f1}")
    if seconds <= 0:
        raise ParameterError(f"seconds must be positive, got {seconds}")
    t = np.arange(int(round(seconds * sr))) / sr
    rate = seconds / np.log(f1 / f0)
    phase = 2 * np.pi * f0 * rate * (np.exp(t / rate) - 1.0)
    sweep: np.ndarray = (amplitude * np.sin(phase)).astype(np.float32)
    return sweep


#: the default ``smoothness`` of a raw-waveform dream, in samples: at 16 kHz an 8-tap Hann
#: window halves the change's amplitude near 2 kHz and removes most of it above 4 kHz
WAVEFORM_SMOOTHNESS = 8


def low_pass(g: torch.Tensor, width: int) -> torch.Tensor:
    """Smooth (B, C, S) along S with a normalised Hann window of ``width`` samples (same
    length out; reflect padding)."""
    w = torch.hann_window(int(width) + 2, periodic=False, dtype=g.dtype, device=g.device)[1:-1]
    w = (w / w.sum()).view(1, 1, -1).expand(g.shape[1], 1, -1)
    left = (int(width) - 1) // 2
    padded = torch.nn.functional.pad(g, (left, int(width) - 1 - left), mode="reflect")
    return torch.nn.functional.conv1d(padded, w, groups=g.shape[1])


def dream_audio(
    m: LoadedModel, x: torch.Tensor, *, phase: torch.Tensor | None = None, length: int | None = None, n_iter: int = 32
) -> torch.Tensor:
    """Features (B, C, F, T) -> audio (B, samples) at the front end's rate.

    ``stft``: exact iSTFT. Other kinds: Griffin-Lim from ``phase`` ((B, n_fft//2+1, T)
    radians, the start recording's) when given, else from random phase.
    """
    with torch.no_grad():
        return features_to_audio(x.detach(), m.front_end, phase=phase, n_iter=n_iter, length=length)


def dream(
    m: LoadedModel,
    start: torch.Tensor | npt.ArrayLike,
    *,
    target: Target,
    minus: Target | str | None = None,
    steps: int = 100,
    lr: float = 0.5,
    update: str = "additive",
    normalise_grad: bool = True,
    minimise: bool = False,
    channels: Sequence[int] | None = None,
    jitter: int = 0,
    value_range: str | tuple[float, float] | None = "auto",
    output: str = "logit",
    sample_rate: int | None = None,
    cancel: Cancel = None,
    audio_every: int = 0,
    n_iter: int = 32,
    resynthesis: str = "griffinlim",
    seed: int | None = 0,
    smoothness: int | None = None,
) -> Iterator[DreamStep]:
    """Dream: gradient steps on the input that increase the objective (see the module doc).

    Parameters
    ----------
    start : audio (samples,) at ``sample_rate`` (a file, or :func:`sine_sweep`), or a
        front-end output (1, C, F, T) (then mel dreams are inverted from random phase).
    target : label index or name to maximise. minus : a label to subtract, or ``"others"``
        for the mean of all other labels. minimise : maximise −J instead.
    steps, lr : number of updates and step size (in front-end units: dB for log-mel; with
        ``normalise_grad`` a step changes values by about ``lr`` on average).
    update : ``"additive"`` or ``"subtractive"``. channels : input channels to optimise
        (default all; for a 2-channel STFT model (0,) = real, (1,) = imaginary).
    jitter : maximum random time shift in frames per step (0 = off).
    value_range : ``"auto"``, ``(lo, hi)`` or None (no clipping).
    output : ``"logit"`` (default) or ``"probability"``.
    cancel : ``threading.Event`` or callable, checked before each update.
    audio_every : also attach audio every that many steps (0 = only at the end).
    resynthesis : ``"griffinlim"`` (default) or ``"mask"`` (mel/magnitude models started
        from audio; see the module doc). n_iter : Griffin-Lim iterations.
    smoothness : raw-waveform models: width in samples of the Hann window that low-passes
        each update (None = :data:`WAVEFORM_SMOOTHNESS`; 0 or 1 = off): the change's amplitude
        is halved near ``sample_rate / smoothness`` Hz and mostly gone above twice that.
        Unused for spectrogram models.
    For a raw-waveform model ``start`` is audio or the model input (1, 1, S), ``lr`` is in
    full-scale units (with ``normalise_grad`` a step moves samples by about ``lr``) and
    ``value_range="auto"`` is [-1, 1].

    Yields
    ------
    :class:`DreamStep` for steps 0 .. n-1 (before each update), then one with ``done=True``.
    """
    waveform = isinstance(m.input, Waveform)
    if steps < 0:
        raise ParameterError(f"steps must be non-negative, got {steps}")
    if lr <= 0:
        raise ParameterError(f"lr must be positive, got {lr}")
    if update not in ("additive", "subtractive"):
        raise ParameterError(f"update must be 'additive' or 'subtractive', got {update!r}")
    if jitter < 0:
        raise ParameterError(f"jitter must be non-negative, got {jitter}")
    if output not in ("logit", "probability"):
        raise ParameterError(f"output must be 'logit' or 'probability', got {output!r}")
    if resynthesis not in ("griffinlim", "mask"):
        raise ParameterError(f"resynthesis must be 'griffinlim' or 'mask', got {resynthesis!r}")

    # ------------------------------------------------------------------ the start
    phase = y = None
    smooth = 0
    if waveform:
        smooth = WAVEFORM_SMOOTHNESS if smoothness is None else int(smoothness)
        if smooth < 0:
            raise ParameterError(f"smoothness must be a non-negative number of samples, got {smoothness}")
        if isinstance(start, torch.Tensor) and start.dim() == 3:
            x0, sr, n_out = start.detach().float().to(m.device), m.sample_rate, None
        else:
            x0, sr, n_out = waveform_input(m, start, sample_rate)
        length = x0.shape[-1]
    elif isinstance(start, torch.Tensor) and start.dim() == 4:
        fe = m.front_end
        x0 = check_input(m, start.detach())
        sr, n_out, length = fe.sample_rate, None, None
    else:
        fe = m.front_end
        y, sr, n_out = to_fe_rate(start, sample_rate, fe, device=m.device)
        if y.shape[0] != 1:
            raise ParameterError(f"dream takes one recording, got a batch of {y.shape[0]}")
        with torch.no_grad():
            x0 = fe(y)
            phase = torch.angle(stft(y, fe))
        length = y.shape[-1]
    if x0.shape[0] != 1 or (waveform and x0.shape[1] != 1):
        raise ParameterError(f"dream takes one input (1, C, F, T) or (1, 1, S), got {tuple(x0.shape)}")

    t_idx = target_index(m, target)
    n_labels = len(m.labels)
    if minus is None:
        weights = torch.zeros(n_labels)
        weights[t_idx] = 1.0
    elif isinstance(minus, str) and minus in ("others", "all others", "rest"):
        if n_labels < 2:
            raise ParameterError("minus='others' needs a model with at least two labels")
        weights = torch.full((n_labels,), -1.0 / (n_labels - 1))
        weights[t_idx] = 1.0
    else:
        m_idx = target_index(m, minus)
        if m_idx == t_idx:
            raise ParameterError("minus must be a different label than target")
        weights = torch.zeros(n_labels)
        weights[t_idx], weights[m_idx] = 1.0, -1.0
    if minimise:
        weights = -weights
    weights = weights.to(x0)

    n_ch = x0.shape[1]
    chans = list(range(n_ch)) if channels is None else sorted({int(c) for c in channels})
    if not chans or any(not 0 <= c < n_ch for c in chans):
        raise ParameterError(f"channels must be a non-empty subset of 0..{n_ch - 1}, got {channels}")
    unit = (1,) * (x0.dim() - 2)  # broadcast over (F, T) or (S,)
    ch_mask = torch.zeros((1, n_ch, *unit), dtype=x0.dtype, device=x0.device)
    ch_mask[:, chans] = 1.0

    if waveform:
        silence = torch.zeros((1, 1, 1), dtype=x0.dtype, device=x0.device)
    else:
        silence = silence_value(m).to(x0).view(1, -1, 1, 1)
    if value_range == "auto":
        if waveform:
            lo, hi = -1.0, 1.0
        elif m.front_end.kind in ("stft", "stft_real"):
            peak = float(x0.abs().max())
            lo, hi = -peak, peak
        else:
            lo = min(float(x0.min()), float(silence.min()))
            hi = float(x0.max())
        bounds = (lo, hi)
    elif value_range is None:
        bounds = None
    else:
        try:
            bounds = (float(value_range[0]), float(value_range[1]))
        except (TypeError, ValueError, IndexError):
            raise ParameterError(f"value_range must be 'auto', None or (lo, hi), got {value_range!r}") from None
        if not bounds[0] < bounds[1]:
            raise ParameterError(f"value_range needs lo < hi, got {bounds}")

    gen = torch.Generator().manual_seed(int(seed)) if seed is not None else torch.Generator()
    if seed is None:
        gen.seed()

    def objective(x: torch.Tensor, shift: int = 0, grad: bool = True) -> tuple[float, np.ndarray, torch.Tensor | None]:
        xin = torch.roll(x, shift, dims=-1) if shift else x
        xin = xin.detach().requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            logits = m.net(xin)
            out = logits if output == "logit" else m.probabilities(logits)
            j = (out[0] * weights).sum()
            g = None
            if grad:
                (g,) = torch.autograd.grad(j, xin)
                g = torch.roll(g, -shift, dims=-1) if shift else g
        return float(j.detach()), out[0].detach().cpu().numpy(), g

    def audio_of(x: torch.Tensor) -> np.ndarray:
        if waveform:
            wave: np.ndarray = waveform_output(m, x[:, 0], sr, n_out or x.shape[-1])[0]
            return wave
        fe = m.front_end
        if resynthesis == "mask" and y is not None and fe.kind != "stft":
            from musiclens.core.interpret.flip import change_to_audio

            with torch.no_grad():
                y_out = change_to_audio(m, y, x0, x)
        else:
            y_out = dream_audio(m, x, phase=phase, length=length, n_iter=n_iter)
        if n_out is None:
            audio: np.ndarray = y_out[0].detach().cpu().numpy().astype(np.float32)
            return audio
        first: np.ndarray = from_fe_rate(y_out, sr, n_out, fe)[0]
        return first

    x = x0.clone()
    cancelled = False
    done_steps = 0
    with frozen(m.net):  # eval mode, and no weight gradients: only the input's is needed
        for i in range(steps):
            if is_cancelled(cancel):
                cancelled = True
                break
            shift = int(torch.randint(-jitter, jitter + 1, (1,), generator=gen)) if jitter else 0
            j, scores, g = objective(x, shift)
            report = DreamStep(i, steps, j, scores, x.clone(), sample_rate=sr)
            if audio_every and i % audio_every == 0:
                report.audio = audio_of(x)
            yield report
            if is_cancelled(cancel):  # the consumer may have set it while holding the step
                cancelled = True
                break
            assert g is not None  # objective(grad=True) returns the gradient
            g = g * ch_mask
            if waveform and smooth > 1:
                g = low_pass(g, smooth)
            if normalise_grad:
                g = g / (g.abs().sum() / (ch_mask.sum() * g[0, 0].numel())).clamp_min(1e-12)
            step = lr * g
            if update == "additive":
                x = x + step
            else:
                room = x - silence
                ratio = torch.where(
                    room != 0,
                    (room + step) / torch.where(room != 0, room, torch.ones_like(room)),
                    torch.zeros_like(room),
                ).clamp(0.0, 1.0)
                x = silence + ratio * room
            if bounds is not None:
                x = x.clamp(*bounds)
            done_steps = i + 1
        j, scores, _ = objective(x, grad=False)
        final = DreamStep(done_steps, steps, j, scores, x.clone(), done=True, cancelled=cancelled, sample_rate=sr)
        final.audio = audio_of(x)
    yield final


def run_dream(m: LoadedModel, start: torch.Tensor | npt.ArrayLike, **kwargs: Any) -> DreamStep:
    """Drive :func:`dream` to the end and return its last step (for scripts and the CLI)."""
    last = None
    for step in dream(m, start, **kwargs):
        last = step
    assert last is not None
    return last
