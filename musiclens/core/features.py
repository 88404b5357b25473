"""Audio front ends: small immutable specs, saved with every model, and their torch code.

A :class:`FrontEnd` turns a batch of mono audio ``(B, samples)`` at ``sample_rate`` into the
network input ``(B, C, F, T)``: C channels, F frequency bins (mel bands or STFT bins, low
frequencies first), T frames. The STFT follows librosa's conventions (periodic Hann window,
``center=True`` with zero padding, one-sided spectrum), so every feature librosa defines
(``melspectrogram`` + ``power_to_db``) matches it to float32 precision.

Kinds
-----
``logmel``    mel power in dB, ``10·log10(max(amin, S)) − 10·log10(ref)``, then ``top_db`` clip. C = 1
``musicnn``   MusiCNN's input: mel power cast to float16, then ``log10(1 + 10000·S)``.    C = 1
``stft``      complex STFT as two channels (real, imaginary).                             C = 2
``stft_real`` the real part of the complex STFT only.                                     C = 1
``magnitude`` ``|STFT|**power``, optionally in dB (``compression="db"``).                C = 1
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt
import torch

from musiclens.core import mel_power
from musiclens.core.errors import ParameterError

Kind = Literal["logmel", "musicnn", "stft", "stft_real", "magnitude"]
KINDS: tuple[str, ...] = ("logmel", "musicnn", "stft", "stft_real", "magnitude")
MEL_KINDS = ("logmel", "musicnn")
BLOCK_BYTES = 1 << 20  # complex STFT bytes per block in FrontEnd._power (keeps the work in cache)


@dataclass(frozen=True)
class FrontEnd:
    """Specification of an audio front end. Immutable, hashable, JSON-serialisable.

    Parameters
    ----------
    kind : one of :data:`KINDS`.
    sample_rate : Hz the audio must have before the front end.
    n_fft, hop : STFT size and hop in samples. ``win_length`` defaults to ``n_fft``.
    window : a ``scipy.signal.get_window`` name; only ``"hann"`` is implemented in torch.
    n_mels, fmin, fmax, htk, mel_norm : mel filterbank (librosa's ``filters.mel``); fmax
        defaults to ``sample_rate / 2``.
    power : exponent of the magnitude (2 = power, 1 = magnitude).
    ref, amin, top_db : dB conversion as librosa's ``power_to_db`` with a fixed ``ref``
        (``ref="max"`` uses each item's maximum, like ``ref=np.max``); ``top_db=None``
        disables clipping.
    compression : ``"db"``, ``"log10_1p"`` (``log10(1 + log_gain·S)``) or ``"none"``.
    float16_power : quantise the (mel) power to float16 before compression (MusiCNN does).
    """

    kind: Kind
    sample_rate: int
    n_fft: int
    hop: int
    win_length: int | None = None
    window: str = "hann"
    center: bool = True
    n_mels: int | None = None
    fmin: float = 0.0
    fmax: float | None = None
    htk: bool = False
    mel_norm: str | None = "slaney"
    power: float = 2.0
    ref: float | str = 1.0
    amin: float = 1e-10
    top_db: float | None = 80.0
    compression: Literal["db", "log10_1p", "none"] = "db"
    log_gain: float = 10000.0
    float16_power: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ParameterError(f"front-end kind {self.kind!r} is unknown; allowed: {KINDS}")
        for name in ("sample_rate", "n_fft", "hop"):
            if int(getattr(self, name)) <= 0:
                raise ParameterError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.win_length is not None and not 0 < self.win_length <= self.n_fft:
            raise ParameterError(f"win_length must be in 1..n_fft={self.n_fft}, got {self.win_length}")
        if self.window != "hann":
            raise ParameterError(f"window {self.window!r} is not supported; use 'hann'")
        if self.kind in MEL_KINDS:
            if not self.n_mels or self.n_mels <= 0:
                raise ParameterError(f"a {self.kind} front end needs n_mels > 0")
            if self.fmax is not None and not self.fmin < self.fmax <= self.sample_rate / 2:
                raise ParameterError(
                    f"need fmin < fmax <= sample_rate/2 = {self.sample_rate / 2} Hz, "
                    f"got fmin={self.fmin}, fmax={self.fmax}"
                )
        if self.compression not in ("db", "log10_1p", "none"):
            raise ParameterError(f"compression {self.compression!r}: allowed 'db', 'log10_1p', 'none'")
        if isinstance(self.ref, str) and self.ref != "max":
            raise ParameterError(f"ref must be a positive number or 'max', got {self.ref!r}")
        if self.power <= 0:
            raise ParameterError(f"power must be positive, got {self.power}")

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrontEnd:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ParameterError(f"unknown front-end fields: {sorted(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> FrontEnd:
        return dataclasses.replace(self, **changes)

    # ---------------------------------------------------------------- geometry
    @property
    def channels(self) -> int:
        return 2 if self.kind == "stft" else 1

    @property
    def n_bins(self) -> int:
        """Number of frequency rows F of the output."""
        return self._n_mels if self.kind in MEL_KINDS else self.n_fft // 2 + 1

    def n_frames(self, n_samples: int) -> int:
        """Frames T produced for ``n_samples`` of audio."""
        if self.center:
            return 1 + n_samples // self.hop
        return max(0, 1 + (n_samples - self.n_fft) // self.hop)

    # The patch length, defined once: a model's patch is ``patch_frames`` frames; these turn
    # frames into samples and seconds and back (LoadedModel.patch_samples / patch_seconds).
    def frames_to_samples(self, n_frames: int) -> int:
        """Samples of audio that give exactly ``n_frames`` frames:
        ``(n - 1)·hop + 1`` with ``center=True``, ``(n - 1)·hop + n_fft`` without."""
        n = int(n_frames)
        if n <= 0:
            raise ParameterError(f"the number of frames must be positive, got {n_frames}")
        return (n - 1) * self.hop + (1 if self.center else self.n_fft)

    @overload
    def frames_to_seconds(self, n_frames: float) -> float: ...
    @overload
    def frames_to_seconds(self, n_frames: npt.NDArray[Any]) -> npt.NDArray[Any]: ...

    def frames_to_seconds(self, n_frames: float | npt.NDArray[Any]) -> float | npt.NDArray[Any]:
        """Time spanned by ``n_frames`` frame steps, ``n·hop / sample_rate`` seconds (a patch's
        nominal length, the distance between the starts of consecutive patches). Works on arrays."""
        return n_frames * self.hop / self.sample_rate

    def seconds_to_frames(self, seconds: float) -> int:
        """Frames produced by ``seconds`` of audio (rounded to whole samples)."""
        if float(seconds) <= 0:
            raise ParameterError(f"patch length must be positive, got {seconds} s")
        return self.n_frames(int(round(float(seconds) * self.sample_rate)))

    def frame_times(self, n_frames: int) -> np.ndarray:
        """Centre time of each frame in seconds, shape (n_frames,)."""
        offset = 0.0 if self.center else self.n_fft / 2
        return (np.arange(n_frames) * self.hop + offset) / self.sample_rate

    def bin_frequencies(self) -> np.ndarray:
        """Centre frequency in Hz of each of the F rows (mel centres or FFT bins)."""
        if self.kind in MEL_KINDS:
            return mel_frequencies(self._n_mels + 2, fmin=self.fmin, fmax=self._fmax, htk=self.htk)[1:-1]
        return np.arange(self.n_fft // 2 + 1) * self.sample_rate / self.n_fft

    @property
    def _fmax(self) -> float:
        return float(self.fmax) if self.fmax is not None else self.sample_rate / 2

    @property
    def _n_mels(self) -> int:
        if self.n_mels is None:  # __post_init__ requires it of the mel kinds
            raise ParameterError(f"a {self.kind!r} front end has no mel bands")
        return int(self.n_mels)

    # ---------------------------------------------------------------- compute
    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        """audio: (B, samples) or (samples,) float at ``sample_rate`` -> (B, C, F, T)."""
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)
        if audio.dim() != 2:
            raise ParameterError(f"audio must be (batch, samples), got shape {tuple(audio.shape)}")
        if not audio.is_floating_point():
            raise ParameterError(f"audio must be floating point, got {audio.dtype}")
        if audio.shape[-1] == 0:
            raise ParameterError("audio is empty (0 samples)")
        if self.kind in ("stft", "stft_real"):
            spec = stft(audio, self)  # (B, F, T) complex
            if self.kind == "stft":
                return torch.stack([spec.real, spec.imag], dim=1)
            return spec.real.unsqueeze(1)
        return self.compress(self._power(audio)).unsqueeze(1)

    def _power(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> |STFT|**power (B, F, T), projected on the mel bands for mel kinds.

        Computed one item and ~``BLOCK_BYTES`` of spectrum at a time from the padded signal
        (the same frames as ``center=True``), so the complex spectrogram never leaves the CPU
        cache: a batch of 30 s clips is 3-4x faster than one whole-batch STFT. Mel power on
        the CPU without a gradient goes through the compiled :mod:`musiclens.core.mel_power`
        once it is prepared.
        """
        if self.center:
            audio = torch.nn.functional.pad(audio, (self.n_fft // 2, self.n_fft // 2))
        n_frames = 1 + (audio.shape[-1] - self.n_fft) // self.hop
        if n_frames < 1:
            raise ParameterError(f"audio of {audio.shape[-1]} samples is shorter than one frame")
        block = max(16, BLOCK_BYTES // (8 * (self.n_fft // 2 + 1)))
        win = window(self, audio.device, audio.dtype)

        def spectra(item: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
            for f0 in range(0, n_frames, block):
                f1 = min(n_frames, f0 + block)
                segment = item[f0 * self.hop : (f1 - 1) * self.hop + self.n_fft]
                spec = torch.stft(
                    segment,
                    n_fft=self.n_fft,
                    hop_length=self.hop,
                    win_length=self.win_length or self.n_fft,
                    window=win,
                    center=False,
                    onesided=True,
                    return_complex=True,
                )
                yield f0, spec

        run = self._compiled_mel_power(audio)
        if run is not None:
            bands = _mel_bands(self)
            out = np.empty((audio.shape[0], self._n_mels, n_frames), dtype=np.float32)
            scratch = np.empty((self.n_fft // 2 + 1, block), dtype=np.float32)
            for item, item_out in zip(audio, out, strict=True):
                for f0, spec in spectra(item):
                    mel_power.project_block(spec, bands, item_out, f0, scratch, run)
            return torch.from_numpy(out)
        basis = _sparse_mel_basis(self, audio.device, audio.dtype) if self.kind in MEL_KINDS else None
        items = []
        for item in audio:
            blocks = []
            for _, spec in spectra(item):
                if self.power == 2:
                    power = spec.real.square() + spec.imag.square()
                else:
                    power = spec.abs().pow(self.power)
                blocks.append(power if basis is None else basis @ power)
            items.append(torch.cat(blocks, dim=-1))
        return torch.stack(items)

    def _compiled_mel_power(self, audio: torch.Tensor) -> Callable[..., None] | None:
        """The compiled mel-power kernel where it applies: mel power (power 2) of float32
        audio on the CPU that needs no gradient, once :func:`mel_power.prepare` has loaded
        it in this process; else None."""
        if self.kind not in MEL_KINDS or self.power != 2:
            return None
        if audio.device.type != "cpu" or audio.dtype != torch.float32:
            return None
        if torch.is_grad_enabled() and audio.requires_grad:
            return None
        return mel_power.kernel()

    def compress(self, power: torch.Tensor) -> torch.Tensor:
        """Apply ``float16_power`` and ``compression`` to a (B, F, T) power/magnitude."""
        if self.float16_power:
            power = power.to(torch.float16).to(power.dtype)
        if self.compression == "db":
            return power_to_db(power, ref=self.ref, amin=self.amin, top_db=self.top_db)
        if self.compression == "log10_1p":
            return torch.log10(1.0 + self.log_gain * power)
        return power

    def compute(self, audio: np.ndarray, *, device: str | torch.device = "cpu") -> np.ndarray:
        """NumPy convenience: (samples,) or (B, samples) -> (C, F, T) or (B, C, F, T) float32."""
        x = torch.as_tensor(np.asarray(audio, dtype=np.float32), device=device)
        out = self(x).cpu().numpy()
        return out[0] if np.ndim(audio) == 1 else out


# -------------------------------------------------------------------- presets
def logmel_frontend(
    *, sample_rate: int = 22050, n_fft: int = 2048, hop: int = 512, n_mels: int = 128, **kw: Any
) -> FrontEnd:
    """Log-mel in dB (librosa ``melspectrogram`` + ``power_to_db`` defaults)."""
    return FrontEnd("logmel", sample_rate, n_fft, hop, n_mels=n_mels, **kw)


def musicnn_frontend() -> FrontEnd:
    """MusiCNN's input: 16 kHz, n_fft 512, hop 256, 96 mels, float16 power, log10(1 + 10000·S)."""
    return FrontEnd(
        "musicnn",
        16000,
        512,
        256,
        n_mels=96,
        compression="log10_1p",
        log_gain=10000.0,
        float16_power=True,
        top_db=None,
    )


def stft_frontend(*, sample_rate: int = 22050, n_fft: int = 1024, hop: int = 256, real_only: bool = False) -> FrontEnd:
    """Complex STFT as (real, imag) channels, or its real part only."""
    return FrontEnd("stft_real" if real_only else "stft", sample_rate, n_fft, hop, top_db=None, compression="none")


def frontend_by_name(name: str) -> FrontEnd:
    """The default front end for a CLI name: ``logmel``, ``stft``, ``stft_real``, ``magnitude``, ``musicnn``."""
    presets: dict[str, Callable[[], FrontEnd]] = {
        "logmel": logmel_frontend,
        "musicnn": musicnn_frontend,
        "stft": stft_frontend,
        "stft_real": lambda: stft_frontend(real_only=True),
        "magnitude": lambda: FrontEnd("magnitude", 22050, 1024, 256, power=1.0),
    }
    if name not in presets:
        raise ParameterError(f"unknown front end {name!r}; choose one of {', '.join(presets)}")
    return presets[name]()


# -------------------------------------------------------------------- building blocks
@functools.lru_cache(maxsize=32)
def _window(length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(length, periodic=True, device=device, dtype=dtype)


def window(fe: FrontEnd, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The analysis window (periodic Hann, like scipy's ``get_window('hann', N)``)."""
    return _window(fe.win_length or fe.n_fft, torch.device(device), dtype)


def stft(audio: torch.Tensor, fe: FrontEnd) -> torch.Tensor:
    """(B, samples) real -> (B, n_fft//2+1, T) complex, librosa conventions."""
    return torch.stft(
        audio,
        n_fft=fe.n_fft,
        hop_length=fe.hop,
        win_length=fe.win_length or fe.n_fft,
        window=window(fe, audio.device, audio.dtype),
        center=fe.center,
        pad_mode="constant",
        normalized=False,
        onesided=True,
        return_complex=True,
    )


def hz_to_mel(hz: np.ndarray | float, *, htk: bool = False) -> np.ndarray:
    """Hz -> mel: HTK's ``2595·log10(1 + f/700)`` or Slaney's (linear below 1 kHz, log above),
    the two scales librosa defines."""
    hz = np.asanyarray(hz, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    f_sp = 200.0 / 3
    mels = hz / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    log_region = hz >= min_log_hz
    return np.where(log_region, min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep, mels)


def mel_to_hz(mels: np.ndarray | float, *, htk: bool = False) -> np.ndarray:
    """mel -> Hz, the inverse of :func:`hz_to_mel`."""
    mels = np.asanyarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


def mel_frequencies(n: int, *, fmin: float = 0.0, fmax: float = 11025.0, htk: bool = False) -> np.ndarray:
    """``n`` frequencies in Hz, equally spaced on the mel scale from ``fmin`` to ``fmax``."""
    mels = np.linspace(hz_to_mel(fmin, htk=htk), hz_to_mel(fmax, htk=htk), n)
    return mel_to_hz(mels, htk=htk)


@functools.lru_cache(maxsize=32)
def _mel_basis_np(
    sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float, htk: bool, norm: str | None
) -> np.ndarray:
    """Triangular mel filterbank (n_mels, n_fft//2+1) float32, the same construction as
    librosa's ``filters.mel`` (so features match librosa's), without importing librosa.

    Kept on purpose (issue 14, item 8: use librosa's if it adds under 50 ms to the window's
    start): ``import librosa.filters`` on top of what the window has imported by its first
    analysis (torch, numpy, scipy.sparse, PySide6, pyqtgraph, the engine) took 635-813 ms,
    median 661 ms over 5 fresh processes (Python 3.11, librosa 0.11, 2 cores): it pulls
    scipy.signal (~520 ms) and numba/llvmlite (~95 ms), 730 modules. It would also put
    librosa and scikit-learn back into the bundle. (numba is imported since, but only by
    :func:`musiclens.core.mel_power.prepare`: the window and the benchmarks.) These lines
    are tested against librosa's (tests/test_features.py)."""
    if norm not in (None, "slaney"):
        raise ParameterError(f"mel_norm must be 'slaney' or None, got {norm!r}")
    fft_hz = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_hz = mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax, htk=htk)
    widths = np.diff(mel_hz)
    ramps = np.subtract.outer(mel_hz, fft_hz)
    weights = np.zeros((n_mels, len(fft_hz)), dtype=np.float32)
    for i in range(n_mels):
        rising = -ramps[i] / widths[i]
        falling = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0, np.minimum(rising, falling))
    if norm == "slaney":  # constant energy per band
        weights *= (2.0 / (mel_hz[2 : n_mels + 2] - mel_hz[:n_mels]))[:, np.newaxis]
    return weights


def mel_basis(fe: FrontEnd, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """librosa's mel filterbank for ``fe``, shape (n_mels, n_fft//2+1)."""
    basis = _mel_basis_np(fe.sample_rate, fe.n_fft, fe._n_mels, float(fe.fmin), fe._fmax, fe.htk, fe.mel_norm)
    return torch.as_tensor(basis, device=device, dtype=dtype)


@functools.lru_cache(maxsize=32)
def _mel_bands(fe: FrontEnd) -> mel_power.MelBands:
    """The mel filterbank band by band, for the compiled kernel (float32, CPU)."""
    return mel_power.MelBands.from_basis(mel_basis(fe).numpy())


@functools.lru_cache(maxsize=32)
def _sparse_mel_basis(fe: FrontEnd, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The mel filterbank as a CSR matrix on the CPU (each band touches a few bins, so the
    product costs ~1/50 of the dense one, gradients included); dense elsewhere."""
    basis = mel_basis(fe, device, dtype)
    if basis.device.type != "cpu":
        return basis
    import warnings

    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return basis.to_sparse_csr()


def power_to_db(
    power: torch.Tensor, *, ref: float | str = 1.0, amin: float = 1e-10, top_db: float | None = 80.0
) -> torch.Tensor:
    """librosa's ``power_to_db``, applied to each batch item. power: (B, ...) -> dB, same shape.

    ``ref="max"`` takes each item's own maximum (librosa's ``ref=np.max``); ``top_db`` clips
    each item at its own maximum minus ``top_db`` dB.
    """
    if amin <= 0:
        raise ParameterError(f"amin must be strictly positive, got {amin}")
    if top_db is not None and top_db < 0:
        raise ParameterError(f"top_db must be non-negative, got {top_db}")
    per_item = (-1,) + (1,) * (power.dim() - 1)
    log_spec = 10.0 * torch.log10(torch.clamp(power, min=amin))
    if ref == "max":
        ref_power = torch.clamp(power.reshape(power.shape[0], -1).amax(dim=1), min=amin)
        log_spec = log_spec - 10.0 * torch.log10(ref_power).view(per_item)
    else:
        log_spec = log_spec - 10.0 * float(np.log10(max(amin, float(ref))))
    if top_db is not None:
        floor = log_spec.reshape(log_spec.shape[0], -1).amax(dim=1) - top_db
        log_spec = torch.maximum(log_spec, floor.view(per_item))
    return log_spec
