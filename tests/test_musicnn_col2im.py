"""``musicnn._col2im`` and ``_sparse_col2im`` (the front branches' input gradient, issue 20)
against plain references: the kw + kh slice sums over the whole tensor (the loop they
replaced), torch's ``F.fold`` and the dense product."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from musiclens.core.models.musicnn import MusicnnFrontEnd, _col2im, _sparse_col2im

N_MELS = 96
FRAMES_30S = 1875  # 30 s at 16 kHz, hop 256: the sanity check's one input


def _reference(cols: torch.Tensor, kernel: tuple[int, int, int], rows: int, frames: int) -> torch.Tensor:
    """The slice sums over the whole tensor, in float64: (B, rows or 1, T, K) -> (B, Cin, F, T')."""
    cin, kh, kw = kernel
    n, r = cols.shape[0], cols.shape[1]
    patches = cols.double().view(n, r, frames, cin, kh, kw)
    acc = torch.zeros(n, r, frames + kw - 1, cin, kh, dtype=torch.float64)
    for dt in range(kw):
        acc[:, :, dt : dt + frames] += patches[..., dt]
    acc = acc.permute(0, 3, 1, 2, 4)
    out = torch.zeros(n, cin, rows + kh - 1, frames + kw - 1, dtype=torch.float64)
    for df in range(kh):
        out[:, :, df : df + rows] += acc[..., df]
    return out


def _timbral_kernels() -> list[tuple[int, int, int]]:
    """(Cin, kh, kw) of the real timbral convolutions (the ones _ConvFreqPool runs)."""
    fe = MusicnnFrontEnd(n_mels=N_MELS)
    return [tuple(int(v) for v in br.conv.weight.shape[1:]) for br in (fe.timbral_38, fe.timbral_67)]  # type: ignore[misc]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize("kernel", _timbral_kernels(), ids=lambda k: f"{k[1]}x{k[2]}")
@pytest.mark.parametrize(("n", "frames"), [(1, FRAMES_30S), (2, 187), (3, 5)])
@pytest.mark.parametrize("broadcast", [False, True], ids=["per-row", "every-row"])
def test_col2im_equals_the_plain_slice_sums(kernel, n, frames, broadcast):
    cin, kh, kw = kernel
    rows = N_MELS - kh + 1
    g = torch.Generator().manual_seed(kh * 1000 + frames)
    cols = torch.randn(n, 1 if broadcast else rows, frames, cin * kh * kw, generator=g)
    got = _col2im(cols, kernel, rows, frames)
    assert got.shape == (n, cin, N_MELS, frames + kw - 1)
    assert got.dtype == cols.dtype
    assert _rel(got, _reference(cols, kernel, rows, frames)) < 1e-6


@pytest.mark.parametrize("kernel", _timbral_kernels(), ids=lambda k: f"{k[1]}x{k[2]}")
def test_col2im_is_fold(kernel):
    """The same sums as F.fold of the patches laid out (B, K, rows·T) — an independent reference."""
    cin, kh, kw = kernel
    rows, frames, n = N_MELS - kh + 1, 60, 2
    cols = torch.randn(n, rows, frames, cin * kh * kw, generator=torch.Generator().manual_seed(kh))
    folded = F.fold(cols.reshape(n, rows * frames, -1).transpose(1, 2), (N_MELS, frames + kw - 1), (kh, kw))
    assert _rel(_col2im(cols, kernel, rows, frames), folded) < 1e-6


def _random_csr(n_rows: int, channels: int, density: float, seed: int):
    """A random CSR matrix (n_rows, channels) with empty rows, as crow, col, vals."""
    g = torch.Generator().manual_seed(seed)
    dense = torch.randn(n_rows, channels, generator=g) * (torch.rand(n_rows, channels, generator=g) < density)
    csr = dense.to_sparse_csr()
    return csr.crow_indices(), csr.col_indices(), csr.values(), dense


@pytest.mark.parametrize(
    "kernel",
    [*_timbral_kernels(), (1, 1, 128), (1, 1, 32), (1, 1, 1), (2, 3, 4)],
    ids=lambda k: f"{k[0]}x{k[1]}x{k[2]}",
)
@pytest.mark.parametrize(("n", "frames"), [(1, 300), (2, 17)])
def test_sparse_col2im_equals_the_dense_product_folded(kernel, n, frames):
    """The strided time sum over padded slices (issue 20) = the dense product ``M @ wf`` folded
    by the plain slice sums, for the timbral and temporal kernels and odd ones (kw = 1)."""
    cin, kh, kw = kernel
    rows, channels = 12, 9
    crow, col, vals, dense = _random_csr(n * rows * frames, channels, 0.2, seed=kh * 100 + kw)
    wf = torch.randn(channels, cin * kh * kw, generator=torch.Generator().manual_seed(7))
    got = _sparse_col2im(crow, col, vals, wf, kernel, n, rows, frames)
    want = _reference((dense @ wf).view(n, rows, frames, -1), kernel, rows, frames)
    assert got.shape == want.shape == (n, cin, rows + kh - 1, frames + kw - 1)
    assert _rel(got, want) < 1e-6
