"""From spectrograms back to audio: iSTFT with a known phase, fast Griffin-Lim, mel → linear.

All functions take batched torch tensors and follow the STFT conventions of
:mod:`musiclens.core.features` (periodic Hann window, ``center=True``), so
``istft(stft(x, fe), fe, length=len(x))`` returns ``x`` to float32 precision.
Use the original phase whenever it exists (auralisation of a mask on a real recording);
Griffin-Lim is for spectrograms that never had one (dreams on mel input).
"""

from __future__ import annotations

import functools
from typing import Literal

import torch

from musiclens.core.errors import ParameterError
from musiclens.core.features import FrontEnd, mel_basis, stft, window


def istft(spec: torch.Tensor, fe: FrontEnd, *, length: int | None = None) -> torch.Tensor:
    """Inverse STFT. spec: (B, n_fft//2+1, T) complex -> audio (B, samples).

    ``length`` trims or zero-pads the output to exactly that many samples (pass the
    original length for a perfect round trip). Equal to ``torch.istft`` (to float32
    rounding); when the hop divides ``n_fft`` the overlap-add is done as ``n_fft / hop``
    shifted block sums, twice as fast (it dominates Griffin-Lim).
    """
    if not spec.is_complex():
        raise ParameterError("istft needs a complex spectrogram; use channels_to_complex first")
    if fe.n_fft % fe.hop or not fe.center or spec.dim() != 3:
        return torch.istft(
            spec,
            n_fft=fe.n_fft,
            hop_length=fe.hop,
            win_length=fe.win_length or fe.n_fft,
            window=window(fe, spec.device, spec.real.dtype),
            center=fe.center,
            length=length,
        )
    n_fft, hop = fe.n_fft, fe.hop
    batch, _, frames = spec.shape
    win = _synthesis_window(fe, spec.device, spec.real.dtype)
    chunks = (torch.fft.irfft(spec, n=n_fft, dim=1) * win[:, None]).transpose(1, 2)
    chunks = chunks.reshape(batch, frames, n_fft // hop, hop)
    out = chunks.new_zeros(batch, frames + n_fft // hop - 1, hop)
    for c in range(n_fft // hop):  # chunk c of frame t lands in output block t + c
        out[:, c : c + frames] += chunks[:, :, c]
    audio: torch.Tensor = out.reshape(batch, -1) / _window_envelope(fe, frames, spec.device, spec.real.dtype)
    start = n_fft // 2
    n_out = length if length is not None else hop * (frames - 1)
    audio = audio[:, start : start + n_out]
    if audio.shape[-1] < n_out:
        audio = torch.nn.functional.pad(audio, (0, n_out - audio.shape[-1]))
    return audio


def _synthesis_window(fe: FrontEnd, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The analysis window zero-padded (centred) to n_fft, as torch.stft/istft use it."""
    win = window(fe, device, dtype)
    left = (fe.n_fft - win.shape[0]) // 2
    return torch.nn.functional.pad(win, (left, fe.n_fft - win.shape[0] - left))


@functools.lru_cache(maxsize=16)
def _window_envelope(fe: FrontEnd, frames: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Sum of the squared windows at every sample (the overlap-add normaliser); 1 where ~0."""
    win2 = _synthesis_window(fe, device, dtype) ** 2
    r = fe.n_fft // fe.hop
    env = win2.new_zeros(frames + r - 1, fe.hop)
    for c in range(r):
        env[c : c + frames] += win2[c * fe.hop : (c + 1) * fe.hop]
    env = env.reshape(-1)
    return torch.where(env > 1e-11, env, torch.ones_like(env))


def channels_to_complex(x: torch.Tensor) -> torch.Tensor:
    """(B, 2, F, T) real/imaginary channels -> (B, F, T) complex (inverse of the ``stft`` kind)."""
    if x.dim() != 4 or x.shape[1] != 2:
        raise ParameterError(f"expected (B, 2, F, T) real/imag channels, got {tuple(x.shape)}")
    return torch.complex(x[:, 0].contiguous(), x[:, 1].contiguous())


def griffin_lim(
    magnitude: torch.Tensor,
    fe: FrontEnd,
    *,
    n_iter: int = 32,
    momentum: float = 0.99,
    init_phase: torch.Tensor | Literal["random", "zeros"] = "random",
    length: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013), the same iteration as librosa's ``griffinlim``.

    Parameters
    ----------
    magnitude : (B, n_fft//2+1, T) non-negative STFT magnitude (not power).
    n_iter : iterations; momentum : 0 gives classic Griffin-Lim, librosa's default is 0.99.
    init_phase : a phase tensor in radians of the same shape (e.g. the original recording's),
        ``"random"`` or ``"zeros"``.

    Returns
    -------
    audio (B, samples) at ``fe.sample_rate``.
    """
    if magnitude.is_complex() or magnitude.dim() != 3:
        raise ParameterError(f"magnitude must be real (B, F, T), got {tuple(magnitude.shape)}")
    if magnitude.shape[1] != fe.n_fft // 2 + 1:
        raise ParameterError(f"magnitude has {magnitude.shape[1]} bins, n_fft={fe.n_fft} needs {fe.n_fft // 2 + 1}")
    if n_iter < 0 or momentum < 0:
        raise ParameterError("n_iter and momentum must be non-negative")
    if isinstance(init_phase, torch.Tensor):
        angles = torch.polar(torch.ones_like(magnitude), init_phase.to(magnitude))
    elif init_phase == "random":
        rand = torch.rand(magnitude.shape, generator=generator, device=magnitude.device if generator is None else "cpu")
        angles = torch.polar(torch.ones_like(magnitude), (2 * torch.pi * rand).to(magnitude))
    elif init_phase == "zeros":
        angles = torch.complex(torch.ones_like(magnitude), torch.zeros_like(magnitude))
    else:
        raise ParameterError(f"init_phase must be a tensor, 'random' or 'zeros', got {init_phase!r}")
    eps = torch.finfo(magnitude.dtype).tiny
    rebuilt = torch.zeros_like(angles)
    n_samples = length if length is not None else fe.hop * (magnitude.shape[-1] - 1)
    for _ in range(n_iter):
        previous = rebuilt
        rebuilt = stft(istft(_scale(angles, magnitude), fe, length=n_samples), fe)
        # the element-wise steps on (re, im) views: complex ops here cost 5x more on the CPU
        update = torch.view_as_real(rebuilt)
        if momentum:
            update = torch.add(update, torch.view_as_real(previous), alpha=-momentum / (1 + momentum))
        norm = torch.rsqrt(update[..., 0].square() + update[..., 1].square() + eps)
        angles = torch.view_as_complex(update * norm.unsqueeze(-1))
    return istft(_scale(angles, magnitude), fe, length=length)


def _scale(angles: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Complex (B, F, T) times real (B, F, T), computed on the (re, im) view."""
    return torch.view_as_complex(torch.view_as_real(angles) * magnitude.unsqueeze(-1))


def spectral_convergence(magnitude: torch.Tensor, audio: torch.Tensor, fe: FrontEnd) -> torch.Tensor:
    """‖S − |STFT(audio)|‖_F / ‖S‖_F per batch item: (B, F, T), (B, samples) -> (B,).

    0 means the audio has exactly the target magnitude; Griffin-Lim typically reaches 0.05–0.2.
    """
    rebuilt = stft(audio, fe).abs()
    frames = min(rebuilt.shape[-1], magnitude.shape[-1])
    diff = (magnitude[..., :frames] - rebuilt[..., :frames]).flatten(1).norm(dim=1)
    convergence: torch.Tensor = diff / magnitude.flatten(1).norm(dim=1).clamp_min(1e-12)
    return convergence


def mel_to_linear(
    mel: torch.Tensor,
    fe: FrontEnd,
    *,
    method: Literal["pinv", "nnls"] = "nnls",
    n_iter: int = 100,
) -> torch.Tensor:
    """Map mel power (B, n_mels, T) to linear-frequency power (B, n_fft//2+1, T).

    ``pinv``: the filterbank's pseudo-inverse, clipped at 0 (fast, blurry, can be negative
    before clipping). ``nnls``: non-negative least squares ``min ‖M·S − mel‖, S ≥ 0`` by
    multiplicative updates started from the pseudo-inverse, what librosa's ``mel_to_stft``
    solves with L-BFGS-B, batched on the GPU when present.
    """
    if fe.kind not in ("logmel", "musicnn"):
        raise ParameterError(f"mel_to_linear needs a mel front end, got {fe.kind!r}")
    basis = mel_basis(fe, mel.device, mel.dtype)  # (M, F)
    if mel.dim() != 3 or mel.shape[1] != basis.shape[0]:
        raise ParameterError(f"mel must be (B, {basis.shape[0]}, T), got {tuple(mel.shape)}")
    mel = mel.clamp_min(0)
    linear = torch.matmul(torch.linalg.pinv(basis), mel).clamp_min(0)
    if method == "pinv":
        return linear
    if method != "nnls":
        raise ParameterError(f"method must be 'pinv' or 'nnls', got {method!r}")
    target = basis.T @ mel  # (B, F, T)
    linear = linear + 1e-10
    for _ in range(n_iter):  # Mᵀ(M·S) costs 2·M·F·T, far less than (MᵀM)·S's F²·T
        linear = linear * target / (basis.T @ (basis @ linear) + 1e-20)
    return linear


def to_power(values: torch.Tensor, fe: FrontEnd) -> torch.Tensor:
    """Undo a front end's compression: its output values (any shape) -> power.

    ``db`` needs a numeric ``ref`` (with ``ref="max"`` the result is relative to the
    maximum); ``top_db`` clipping cannot be undone. ``float16_power`` is not undone either.
    """
    if fe.compression == "db":
        ref = 1.0 if fe.ref == "max" else float(fe.ref)
        return ref * torch.pow(10.0, values / 10.0)
    if fe.compression == "log10_1p":
        return (torch.pow(10.0, values) - 1.0).clamp_min(0) / fe.log_gain
    return values


def features_to_audio(
    x: torch.Tensor,
    fe: FrontEnd,
    *,
    phase: torch.Tensor | None = None,
    n_iter: int = 32,
    length: int | None = None,
) -> torch.Tensor:
    """Front-end output (B, C, F, T) -> audio (B, samples), by the best route available.

    ``stft``: exact iSTFT of the two channels. ``stft_real``: the real part with ``phase``
    if given (magnitude = |real| / |cos(phase)| is ill-posed, so we use Griffin-Lim from
    ``phase``). Magnitude and mel kinds: Griffin-Lim, started from ``phase`` (radians,
    (B, F_lin, T)) when the original recording's phase is known.
    """
    if fe.kind == "stft":
        return istft(channels_to_complex(x), fe, length=length)
    power = to_power(x[:, 0], fe)
    if fe.kind in ("logmel", "musicnn"):
        power = mel_to_linear(power, fe)
    magnitude = power.clamp_min(0).pow(1.0 / fe.power) if fe.kind != "stft_real" else x[:, 0].abs()
    init: torch.Tensor | Literal["random"] = phase if phase is not None else "random"
    return griffin_lim(magnitude, fe, n_iter=n_iter, init_phase=init, length=length)
