"""Mel power of a one-sided STFT block in one compiled pass on the CPU: ``mel = W @ |X|**2``.

Why compiled (numba) and not torch ops: on one thread, a 128-frame block of a 2048-point
STFT takes torch ~0.17 ms for ``re**2 + im**2`` (three passes over the complex block) and the
sparse mel product (its dense operand frames-major); this kernel takes ~0.08 ms: it squares
each bin once into a bins-major scratch and then adds each band's weighted bins with the
frames innermost, where the CPU's vector units run along contiguous memory. Whole log-mel
of 30 s at 22.05 kHz: 4.6 ms (torch) -> 3.5 ms, against librosa's 13.8 ms in the same run
(``tests/benchmarks/bench_heavy.py --only logmel``).

Inference only, and only once :func:`prepare` has loaded it (~1 s per process): the front
end keeps the torch path (the CSR product) before that, when its input needs a gradient,
off the CPU, for float64, and where numba cannot be imported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class MelBands:
    """A mel filterbank (M, F) stored band by band: band m weighs bins ``lo[m]:hi[m]`` with
    ``weights[offset[m]:offset[m + 1]]`` (the triangles' zero tails left out)."""

    lo: np.ndarray  # (M,) int64, first bin with a weight
    hi: np.ndarray  # (M,) int64, one past the last; lo == hi for a band that touches no bin
    offset: np.ndarray  # (M + 1,) int64
    weights: np.ndarray  # (offset[-1],) float32

    @classmethod
    def from_basis(cls, basis: np.ndarray) -> MelBands:
        """basis: (M, F) filterbank, non-negative."""
        basis = np.asarray(basis, dtype=np.float32)
        lo = np.zeros(basis.shape[0], dtype=np.int64)
        hi = np.zeros(basis.shape[0], dtype=np.int64)
        for m, row in enumerate(basis):
            nonzero = np.flatnonzero(row)
            if nonzero.size:
                lo[m], hi[m] = nonzero[0], nonzero[-1] + 1
        offset = np.concatenate([[0], np.cumsum(hi - lo)]).astype(np.int64)
        weights = np.concatenate([basis[m, lo[m] : hi[m]] for m in range(len(basis))] + [np.zeros(0, np.float32)])
        return cls(lo, hi, offset, weights.astype(np.float32))


def _project(
    spec: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    offset: np.ndarray,
    weights: np.ndarray,
    scratch: np.ndarray,
    out: np.ndarray,
    t0: int,
) -> None:
    """spec (T, 2F) float32: T frames of interleaved (re, im) bins; scratch (>= F, >= T);
    writes out[:, t0:t0 + T] (out: (M, total frames) float32)."""
    n_frames = spec.shape[0]
    n_bins = spec.shape[1] // 2
    for f in range(n_bins):  # |X|**2, bins-major
        for t in range(n_frames):
            re = spec[t, 2 * f]
            im = spec[t, 2 * f + 1]
            scratch[f, t] = re * re + im * im
    for m in range(lo.shape[0]):  # each band's weighted bins, frames innermost
        acc = out[m, t0 : t0 + n_frames]
        acc[:] = 0
        shift = offset[m] - lo[m]
        for f in range(lo[m], hi[m]):
            w = weights[shift + f]
            row = scratch[f]
            for t in range(n_frames):
                acc[t] += w * row[t]


_loaded: list[Callable[..., None]] = []  # the compiled kernel, once prepare() has loaded it
_loading = threading.Lock()


def kernel() -> Callable[..., None] | None:
    """The compiled :func:`_project` once :func:`prepare` has loaded it in this process, else
    None (the front ends then take the torch path: same values to float32 rounding)."""
    return _loaded[0] if _loaded else None


def prepare() -> bool:
    """Load the compiled kernel now; True when it is available (numba importable).

    Costs ~1 s once per process (importing numba ~0.4 s, then compiling, ~0.6 s, or reading
    the compiled code from the disk cache beside this file or in ``NUMBA_CACHE_DIR``), and
    saves ~1 ms per 30 s of audio, so only long-lived work calls it: the window's session
    (when it loads a model), ``musiclens batch``, the benchmarks. A one-file CLI command
    keeps the torch path. Where no cache location exists (a frozen bundle) it compiles
    without one."""
    with _loading:
        if _loaded:
            return True
        try:
            import numba
        except ImportError:
            return False
        options: dict[str, Any] = {"fastmath": True, "nogil": True}
        try:
            compiled = numba.njit(cache=True, **options)(_project)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            compiled = numba.njit(**options)(_project)
        # compile (or load) now, for the argument types project_block passes: one frame, one bin
        spec, square = np.zeros((1, 2), np.float32), np.zeros((1, 1), np.float32)
        bins, weights = np.zeros(1, np.int64), np.zeros(1, np.float32)
        compiled(spec, bins, bins, np.zeros(2, np.int64), weights, square, square.copy(), 0)
        _loaded.append(compiled)
        return True


def project_block(
    spec: torch.Tensor, bands: MelBands, out: np.ndarray, t0: int, scratch: np.ndarray, run: Callable[..., None]
) -> None:
    """spec: (F, T) complex64 one-sided STFT block as ``torch.stft`` returns it (its memory is
    frames-major) -> out[:, t0:t0 + T] = W @ |spec|**2, out: (M, frames) float32.
    scratch: float32, at least (F, T); ``run``: :func:`kernel`'s result (not None)."""
    frames = spec.transpose(0, 1).contiguous()  # a view: torch.stft's output is frames-major
    interleaved = torch.view_as_real(frames).numpy().reshape(frames.shape[0], -1)
    run(interleaved, bands.lo, bands.hi, bands.offset, bands.weights, scratch, out, t0)
