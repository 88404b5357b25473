"""MusiCNN (Pons & Serra 2019) and its VGG baseline, ported from the TF1 ``musicnn`` package.

The pretrained MTT/MSD weights are converted from the ``musicnn==0.1.0`` wheel by
``packaging/convert_musicnn.py`` (no TensorFlow at run time). Both networks take this
project's input convention, the front-end output ``x: (B, 1, F=96 mel bands, T=187 frames)``
(MusiCNN's log-compressed mel, see :func:`musiclens.core.features.musicnn_frontend`), and
return logits ``(B, 50)``; the registry's ``LoadedModel.probabilities`` applies the sigmoid.

The original takes ``(B, T, F)``; here every TF kernel ``[time, freq, in, out]`` becomes a
torch kernel ``(out, in, freq, time)``, so the timbral 7×38 kernel (7 frames × 38 mel bands)
is a ``Conv2d`` kernel of size ``(38, 7)``.

Details that must match the original (all verified by ``tests/test_musicnn_golden.py``):

* batch norm everywhere with ``eps = 1e-3``; every conv is conv -> ReLU -> batch norm;
* timbral convs: zero-pad 3 frames each side, *valid* in frequency (96-38+1 = 59 and
  96-67+1 = 30 rows), then max over frequency;
* temporal convs (128/64/32 frames × 1 band): TF "same" padding, i.e. for an even kernel
  k pad ``k/2 - 1`` frames before and ``k/2`` after (63/64, 31/32, 15/16), then max over
  frequency;
* the front end concatenates [timbral 38 (204), timbral 67 (204), temporal 128, 64, 32
  (51 each)] = 408 + 153 = 561 channels;
* the mid end is three 7-frame convs (64 filters, zero-pad 3), the 2nd and 3rd with
  residual connections, and the back end pools over time the dense concatenation
  ``W = [front end (561), mid 1, mid 2, mid 3 (64 each)]`` = 753 rows;
* the pooled vector is interleaved ``[max_0, mean_0, max_1, mean_1, ...]`` (1506 values).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from musiclens.core.models.registry import LayerInfo, register_family

BN_EPS = 1e-3
TAGS_MTT = [
    "guitar",
    "classical",
    "slow",
    "techno",
    "strings",
    "drums",
    "electronic",
    "rock",
    "fast",
    "piano",
    "ambient",
    "beat",
    "violin",
    "vocal",
    "synth",
    "female",
    "indian",
    "opera",
    "male",
    "singing",
    "vocals",
    "no vocals",
    "harpsichord",
    "loud",
    "quiet",
    "flute",
    "woman",
    "male vocal",
    "no vocal",
    "pop",
    "soft",
    "sitar",
    "solo",
    "man",
    "classic",
    "choir",
    "voice",
    "new age",
    "dance",
    "male voice",
    "female vocal",
    "beats",
    "harp",
    "cello",
    "no voice",
    "weird",
    "country",
    "metal",
    "female voice",
    "choral",
]  # musicnn.configuration.MTT_LABELS
TAGS_MSD = [
    "rock",
    "pop",
    "alternative",
    "indie",
    "electronic",
    "female vocalists",
    "dance",
    "00s",
    "alternative rock",
    "jazz",
    "beautiful",
    "metal",
    "chillout",
    "male vocalists",
    "classic rock",
    "soul",
    "indie rock",
    "Mellow",
    "electronica",
    "80s",
    "folk",
    "90s",
    "chill",
    "instrumental",
    "punk",
    "oldies",
    "blues",
    "hard rock",
    "ambient",
    "acoustic",
    "experimental",
    "female vocalist",
    "guitar",
    "Hip-Hop",
    "70s",
    "party",
    "country",
    "easy listening",
    "sexy",
    "catchy",
    "funk",
    "electro",
    "heavy metal",
    "Progressive rock",
    "60s",
    "rnb",
    "indie pop",
    "sad",
    "House",
    "happy",
]  # musicnn.configuration.MSD_LABELS


# ----------------------------------------------------------------------------- MusiCNN
class FreqMaxPool(nn.Module):
    """Max over the frequency axis: (B, C, F, T) -> (B, C, T)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=2)


class FrontEndBranch(nn.Module):
    """One front-end branch: pad time -> conv (freq_size × time_size) -> ReLU -> BN -> max over F.

    Input (B, 1, F, T); ``conv``/``bn`` outputs (B, filters, F - freq_size + 1, T); branch
    output (B, filters, T). Time padding is TF's "same": ``(k - 1) // 2`` frames before,
    the rest after.
    """

    def __init__(self, filters: int, freq_size: int, time_size: int) -> None:
        super().__init__()
        before = (time_size - 1) // 2
        self.pad = nn.ZeroPad2d((before, time_size - 1 - before, 0, 0))
        self.conv = nn.Conv2d(1, filters, kernel_size=(freq_size, time_size))
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm2d(filters, eps=BN_EPS)
        self.pool = FreqMaxPool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self._maps_observed():
            out: torch.Tensor = self.pool(self.bn(self.relu(self.conv(self.pad(x)))))
            return out
        # Fast path, same values: in eval mode ReLU and batch norm are per-channel monotone
        # maps (increasing where gamma >= 0, decreasing where gamma < 0), so the max over
        # frequency can be taken first, on the conv output, and the cheap maps applied to the
        # pooled (B, C, T) only. Taken only when no hook watches conv/relu/bn/pool.
        return self.finish(self.select(x))

    def select(self, x: torch.Tensor, input_only: bool = False) -> torch.Tensor:
        """The conv maps reduced over frequency before ReLU and batch norm (eval mode): the max
        where the batch norm's gamma >= 0, else the min. (B, 1, F, T) -> (B, C, T).

        ``input_only``: gradients flow to ``x`` only (the weights are read detached, so no
        weight gradient is computed)."""
        up = self.bn.weight >= 0
        xp = self.pad(x)
        w, b = self.conv.weight, self.conv.bias
        if input_only:
            w, b = w.detach(), (None if b is None else b.detach())
        grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (xp, w, b))
        # (see _ConvFreqPool) the temporal branches' 1-row kernels take it only for input
        # gradients: their weight gradient, which its backward computes whenever the weights
        # need one, used or not, is cheaper in torch's (the dream ran 20% slower, measured)
        own = self.conv.kernel_size[0] > 1 or not (w.requires_grad or (b is not None and b.requires_grad))
        if grad and xp.device.type == "cpu" and own:
            pooled: torch.Tensor = _ConvFreqPool.apply(xp, w, b, up)  # type: ignore[no-untyped-call]
        elif not grad and up.device.type != "meta" and not self._maps_observed():  # (conv hooks see the maps)
            pooled = _signed_max(xp, w, b, up)
        else:
            pooled = F.conv2d(xp, w, b) if input_only else self.conv(xp)
            pooled = _freq_select(pooled, up)
        return pooled

    def finish(self, pooled: torch.Tensor) -> torch.Tensor:
        """ReLU and batch norm (eval mode) of :meth:`select`'s output: (B, C, T) -> (B, C, T)."""
        return F.batch_norm(
            torch.relu(pooled),
            self.bn.running_mean,
            self.bn.running_var,
            self.bn.weight,
            self.bn.bias,
            False,
            0.0,
            self.bn.eps,
        )

    def _maps_observed(self) -> bool:
        from torch.nn.modules import module as _module

        if _module._global_forward_hooks or _module._global_forward_pre_hooks:
            return True
        return any(m._forward_hooks or m._forward_pre_hooks for m in (self.conv, self.relu, self.bn, self.pool))


def _freq_select(c: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """(B, C, F, T) -> (B, C, T): the max over F for the channels where ``up`` (C,) is True,
    the min for the others. ``amax``/``amin`` separately: ``aminmax`` over a middle axis ran
    10x slower (measured, torch 2.13 CPU)."""
    hi = c.amax(dim=2)
    if up.device.type != "meta" and bool(up.all()):  # (the registry checks shapes on meta tensors)
        return hi
    return torch.where(up.view(1, -1, 1), hi, c.amin(dim=2))


def _signed_filters(
    weight: torch.Tensor, bias: torch.Tensor | None, up: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(sign, weight · sign, bias · sign)``: ``sign`` (C,) is 1 where ``up`` is True, else -1.
    The conv of the negated filters is the exact negation of theirs (IEEE rounding is
    symmetric), so one max over frequency of the signed maps, times ``sign``, gives the max
    where ``up`` and the min elsewhere, and picks the same rows."""
    sign = torch.where(up, 1.0, -1.0).to(weight.dtype)
    ws = weight * sign.view(-1, *(1,) * (weight.dim() - 1))
    return sign, ws, None if bias is None else bias * sign


def _count_true(mask: torch.Tensor, dim: int, *, keepdim: bool = False) -> torch.Tensor:
    """How many entries of the bool ``mask`` are True along ``dim``, as int16 (int32 when the
    axis is 2**15 long or more): counted as bytes, 3.5x faster than a bool sum, which widens
    to int64 (measured, torch 2.13 CPU)."""
    small = torch.int16 if mask.shape[dim] < 2**15 else torch.int32
    return mask.view(torch.uint8).sum(dim=dim, keepdim=keepdim, dtype=small)


def _signed_max(xp: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, up: torch.Tensor) -> torch.Tensor:
    """``_freq_select(conv2d(xp, weight, bias), up)`` without autograd, bit for bit: the
    filters where ``up`` (C,) is False are negated (weights and bias), so one max over
    frequency serves every channel (``min(c) == -max(-c)`` exactly: the conv of negated
    filters is the exact negation, IEEE rounding being symmetric), and those channels'
    maxima are negated back. (B, Cin, F, T) -> (B, C, T).

    Kernels taller than one band (the timbral branches) run in TF's orientation, time before
    frequency, with channels-last weights: oneDNN then writes (B, T, F', C) maps and the max
    over F' is a channels-last max pool. Measured on a 3 s patch (torch 2.13 CPU, one
    thread): the timbral 7x38 branch 8.3 -> 6.7 ms, 7x67 6.4 -> 5.6 ms, the values the same
    bit for bit here (the 30 s taggram too; another oneDNN build may round the last bit
    differently); the 1-band temporal kernels ran slower that way and keep the plain layout.
    One max instead of ``amax`` + ``amin`` + ``where`` saved 8-16 % of the forward pass."""
    sign, ws, bs = _signed_filters(weight, bias, up)
    if weight.shape[2] > 1:
        wt = ws.transpose(2, 3).contiguous(memory_format=torch.channels_last)
        maps = F.conv2d(xp.transpose(2, 3), wt, bs)  # (B, C, T, F')
        # contiguous: batch norm of the strided (B, C, T) view rounds differently (1 ulp)
        hi = F.max_pool2d(maps, (1, maps.shape[3]))[..., 0].contiguous()
    else:
        hi = F.conv2d(xp, ws, bs).amax(dim=2)
    return hi * sign.view(1, -1, 1)


class _ConvFreqPool(torch.autograd.Function):
    """``_freq_select(conv2d(xp, weight, bias), up)`` with a CPU backward that never builds the
    dense gradient map: (B, Cin, F, T) -> (B, C, T).

    The gradient is amax/amin's own (shared evenly among the rows that tie for the extreme),
    so only one row per (item, channel, frame) gets one, except where a whole column ties
    (a dead filter, silence): there every row gets the same share. The input gradient is then
    ``W^T @ M`` with ``M`` sparse (C, B·F'·T) for the few selected rows plus one small dense
    product for the columns that tie, folded back to (B, Cin, F, T): measured 5-10x faster
    than torch's transposed convolution of the 1-input-channel timbral kernels, which took
    ~10x a forward pass (issue 20). The weight gradient, when the weights need one, is the
    dense product (about one forward convolution).

    The selected rows (:class:`_SelectPattern`) do not depend on the gradient fed in: they
    are found at the first backward and kept on the graph's node, so a retained graph (the
    split IG's front, kept across a sanity check's cascade) pays only the sparse product and
    the fold (:func:`_sparse_col2im`) for each further gradient. A 30 s input gradient through
    the whole front (timbral and, for input gradients, temporal branches): 1.3-1.5 s -> 0.16 s
    (measured, torch 2.13 CPU, one thread, load 2-3).
    """

    @staticmethod
    def forward(ctx: Any, xp: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        # one max of the signed maps instead of amax + amin + where (those cost 10 % of a
        # dream step, measured); the rows it picks are the same
        sign, ws, bs = _signed_filters(weight, bias, up)
        signed = F.conv2d(xp, ws, bs)
        hi = signed.amax(dim=2)
        ctx.save_for_backward(xp, weight, signed, hi)
        return hi * sign.view(1, -1, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xp, weight, c, sel = ctx.saved_tensors  # c, sel: the signed maps and their maxima
        n, ch, rows, frames = c.shape
        kernel = (int(weight.shape[2]), int(weight.shape[3]))
        pat = getattr(ctx, "pattern", None)
        if pat is None:  # kept on the graph's node: a retained graph reuses it for every g
            pat = ctx.pattern = _SelectPattern(c, sel)
        share = g / pat.count  # (B, C, T): each tied row's part
        gx = gw = gb = None
        wf = weight.reshape(ch, -1)
        if ctx.needs_input_grad[0]:
            gx = _sparse_col2im(pat.crow, pat.col, share.reshape(-1)[pat.src], wf, weight.shape[1:], n, rows, frames)
            if pat.full is not None:  # a column that ties puts the same patch on every row
                tied = torch.where(pat.full, share, 0.0).transpose(1, 2) @ wf  # (B, T, K)
                gx += _col2im(tied.unsqueeze(1), weight.shape[1:], rows, frames)
        if ctx.needs_input_grad[1]:
            dense = ((c == sel.unsqueeze(2)) * share.unsqueeze(2)).reshape(n, ch, rows * frames)
            patches = F.unfold(xp, kernel)  # (B, K, F'·T)
            gw = (dense @ patches.transpose(1, 2)).sum(0).view_as(weight)
        if ctx.needs_input_grad[2]:
            gb = g.sum(dim=(0, 2))
        return gx, gw, gb, None


class _SelectPattern:
    """Which rows :func:`_freq_select` picked, for :class:`_ConvFreqPool`'s backward: it does
    not depend on the gradient fed in, so it is computed once per graph (a sanity check's
    cascade and IG reuse one front graph for many gradients, issue 20).

    ``count`` (B, C, T) in the maps' dtype: the rows tying for the extreme (at least 1);
    ``full`` (B, C, T) bool where a whole column ties, None when none does; ``crow``, ``col``,
    ``src``: the CSR layout (rows: (item, row, frame), columns: channels) of the selected rows
    outside those columns, ``src`` the flat (B, C, T) index of each entry's share."""

    def __init__(self, c: torch.Tensor, sel: torch.Tensor) -> None:
        n, ch, rows, frames = c.shape
        mask = c == sel.unsqueeze(2)
        count = _count_true(mask, 2)
        full = count == rows
        self.count = count.clamp_min(1).to(c.dtype)
        self.full = full if bool(full.any()) else None
        if self.full is not None:
            mask &= ~full.unsqueeze(2)
        bi, ci, fi, ti = mask.nonzero(as_tuple=True)  # ordered by (item, channel, row, frame)
        flat = (bi * ch + ci) * frames + ti
        row = (bi * rows + fi) * frames + ti
        order = torch.argsort(row, stable=True)
        self.col = ci[order]
        self.src = flat[order]
        self.crow = torch.zeros(n * rows * frames + 1, dtype=torch.int64, device=c.device)
        self.crow[1:] = torch.cumsum(torch.bincount(row, minlength=n * rows * frames), 0)


def _col2im(cols: torch.Tensor, kernel: Any, rows: int, frames: int) -> torch.Tensor:
    """The input-side sum of kernel-sized patches: ``cols`` (B, rows, frames, Cin·kh·kw), one
    patch per output position (row r, frame t), added at input rows r..r+kh, frames t..t+kw
    -> (B, Cin, rows + kh - 1, frames + kw - 1); ``cols`` (B, 1, frames, K) puts the same
    patch on every row.

    F.fold's job, done from this layout by kw + kh slice sums: fold needs the transposed
    layout and took 3.7x this time on the 30 s timbral shapes (measured, torch 2.13 CPU, one
    thread). The kw sums over time run a few (item, row) slices at a time (about 4 MiB of
    ``cols``), so each slice stays in cache across its kw passes: 1.5x faster than over the
    whole tensor at 30 s, the same at 3 s (measured)."""
    cin, kh, kw = (int(v) for v in kernel)
    n, r, k = cols.shape[0], cols.shape[1], cols.shape[3]
    patches = cols.reshape(n * r, frames, cin * kh, kw)
    acc = cols.new_zeros(n * r, frames + kw - 1, cin * kh)
    step = max(1, (4 << 20) // max(1, frames * k * cols.element_size()))
    for i in range(0, n * r, step):
        a, p = acc[i : i + step], patches[i : i + step]
        for dt in range(kw):
            a[:, dt : dt + frames] += p[..., dt]
    return _fold_rows(acc, n, rows, kernel)


def _fold_rows(acc: torch.Tensor, n: int, rows: int, kernel: Any) -> torch.Tensor:
    """:func:`_col2im`'s second pass, the kh sums over rows: ``acc`` (B·(rows or 1), T', Cin·kh)
    -> (B, Cin, rows + kh - 1, T')."""
    cin, kh, _ = (int(v) for v in kernel)
    r, frames = acc.shape[0] // n, acc.shape[1]
    by_row = acc.view(n, r, frames, cin, kh).permute(0, 3, 1, 2, 4)  # (B, Cin, rows or 1, T', kh)
    out = acc.new_zeros(n, cin, rows + kh - 1, frames)
    for df in range(kh):
        out[:, :, df : df + rows] += by_row[..., df]
    return out


def _sparse_col2im(
    crow: torch.Tensor,
    col: torch.Tensor,
    vals: torch.Tensor,
    wf: torch.Tensor,
    kernel: Any,
    n: int,
    rows: int,
    frames: int,
) -> torch.Tensor:
    """``_col2im((M @ wf).view(n, rows, frames, K), kernel, rows, frames)`` with ``M`` the CSR
    matrix (``crow``, ``col``, ``vals``) of shape (n·rows·frames, C) and ``wf`` (C, K), without
    the (n·rows·frames, K) product: it is made a few (item, row) slices at a time (about 4 MiB)
    into one buffer and summed over time while in cache. The whole product took 5-10x its
    sparse kernel's time (zero-filling and copying a fresh 120 MB at 30 s, measured, torch
    2.13 CPU, one thread) -> (n, Cin, rows + kh - 1, frames + kw - 1).

    The sum over time is one strided reduction: each slice's frames are written with
    ``kw - 1`` empty frames before and after (rows of ``M`` without entries), so that the
    patches' parts landing on output frame t' (frame t' - dt, kernel column dt) lie ``K - 1``
    floats apart and ``sum`` adds them from a view. The kw slice additions it replaced were
    2.5-5x slower at 30 s (the temporal kernels' 128 columns: 3072 small additions per
    gradient, measured, torch 2.13 CPU, 2 threads)."""
    cin, kh, kw = (int(v) for v in kernel)
    k, pad = int(wf.shape[1]), kw - 1
    span = frames + 2 * pad  # frames per (item, row) slice, padding included
    slices = n * rows
    starts = crow[:-1].view(slices, frames)
    ends = crow[frames::frames].view(slices, 1)
    crow_padded = torch.cat(
        [torch.cat([starts[:, :1].expand(slices, pad), starts, ends.expand(slices, pad)], dim=1).flatten(), crow[-1:]]
    )
    step = max(1, (4 << 20) // max(1, span * k * wf.element_size()))
    acc = wf.new_empty(slices, frames + kw - 1, cin * kh)
    buf = wf.new_empty(min(step, slices) * span * k)
    bounds = crow[::frames].tolist()  # the first entry of each (item, row)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": what it does here is tested
        warnings.simplefilter("ignore", UserWarning)
        for i in range(0, slices, step):
            j = min(slices, i + step)
            lo, hi = bounds[i], bounds[j]
            part = torch.sparse_csr_tensor(
                crow_padded[i * span : j * span + 1] - lo, col[lo:hi], vals[lo:hi], ((j - i) * span, wf.shape[0])
            )
            out = buf[: (j - i) * span * k].view((j - i) * span, k)
            torch.mm(part, wf, out=out)
            # element (slice b, padded frame t + pad, row-in-kernel q, column dt) sits at
            # b·span·K + (t + pad)·K + q·kw + dt; with t = t' - dt and u = kw - 1 - dt that is
            # b·span·K + t'·K + q·kw + u·(K - 1) + (kw - 1)
            landing = buf.as_strided(
                (j - i, frames + kw - 1, cin * kh, kw), (span * k, k, kw, k - 1), storage_offset=kw - 1
            )
            torch.sum(landing, dim=3, out=acc[i:j])
    return _fold_rows(acc, n, rows, kernel)


class MusicnnFrontEnd(nn.Module):
    """Timbral (7×38, 7×67 frames×bands) and temporal (128/64/32 frames × 1 band) branches.

    (B, 1, F, T) -> (B, 2·timbral + 3·temporal, T), channels in the original's order.
    """

    def __init__(self, n_mels: int = 96, timbral_filters: int = 204, temporal_filters: int = 51):
        super().__init__()
        self.timbral_38 = FrontEndBranch(timbral_filters, int(0.4 * n_mels), 7)
        self.timbral_67 = FrontEndBranch(timbral_filters, int(0.7 * n_mels), 7)
        self.temporal_128 = FrontEndBranch(temporal_filters, 1, 128)
        self.temporal_64 = FrontEndBranch(temporal_filters, 1, 64)
        self.temporal_32 = FrontEndBranch(temporal_filters, 1, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.timbral_38(x), self.timbral_67(x), self.temporal_128(x), self.temporal_64(x), self.temporal_32(x)],
            dim=1,
        )


class MidEndLayer(nn.Module):
    """7-frame conv over all input channels -> ReLU -> BN (+ input if residual). (B, C, T) -> (B, 64, T)."""

    def __init__(self, in_channels: int, filters: int, residual: bool) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, filters, kernel_size=7, padding=3)
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm1d(filters, eps=BN_EPS)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.relu(self.conv(x)))
        out: torch.Tensor = y + x if self.residual else y
        return out


class MusicnnMidEnd(nn.Module):
    """Three mid-end layers; returns the dense concatenation W = [input, mid 1, mid 2, mid 3].

    (B, 561, T) -> (B, 561 + 3·64 = 753, T).
    """

    def __init__(self, in_channels: int = 561, filters: int = 64) -> None:
        super().__init__()
        self.layer1 = MidEndLayer(in_channels, filters, residual=False)
        self.layer2 = MidEndLayer(filters, filters, residual=True)
        self.layer3 = MidEndLayer(filters, filters, residual=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.parts(x), dim=1)

    def parts(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The concatenation's parts, [input, mid 1, mid 2, mid 3], each (B, C_i, T)."""
        m1 = self.layer1(x)
        m2 = self.layer2(m1)
        m3 = self.layer3(m2)
        return [x, m1, m2, m3]


class InterleavedTimePool(nn.Module):
    """Max and mean over time, interleaved per row: (B, C, T) -> (B, 2C) = [max0, mean0, max1, ...]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            out: torch.Tensor = _MaxMeanOverTime.apply(x)  # type: ignore[no-untyped-call]
            return out
        return torch.stack([x.amax(dim=2), x.mean(dim=2)], dim=2).flatten(1)


class _MaxMeanOverTime(torch.autograd.Function):
    """:class:`InterleavedTimePool` with a fused backward, the same values as autograd's:
    ``amax``'s gradient shared evenly among the frames that tie for the maximum plus
    ``mean``'s ``g / T`` on every frame, written in one pass. Autograd's own (``eq``, the
    tie count through an int64 copy, ``div``, ``mul``, the mean's ``div`` and the sum of the
    two) made 6-7 passes over the (B, C, T) maps: at 16 Integrated-Gradients points of a
    30 s clip (16 x 753 x 1876 floats) 300 of the tail's 700 ms (measured, torch 2.13 CPU,
    2 threads). Differentiable again (its backward is made of torch ops)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        hi = x.amax(dim=2)
        ctx.save_for_backward(x, hi)
        return torch.stack([hi, x.mean(dim=2)], dim=2).flatten(1)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        x, hi = ctx.saved_tensors
        pair = g.view(g.shape[0], -1, 2)
        mask = x == hi.unsqueeze(2)
        count = _count_true(mask, 2, keepdim=True).to(g.dtype)
        share = pair[..., :1] / count  # amax's part: (g / ties) on each tying frame
        spread = pair[..., 1:] / x.shape[2]  # mean's part: g / T on every frame
        return torch.where(mask, share + spread, spread)


class MusicnnBackEnd(nn.Module):
    """Pool over time -> BN -> dense (ReLU) -> BN ("penultimate") -> dense (logits)."""

    def __init__(self, in_channels: int = 753, units: int = 200, n_labels: int = 50) -> None:
        super().__init__()
        self.pool = InterleavedTimePool()
        self.bn_pool = nn.BatchNorm1d(2 * in_channels, eps=BN_EPS)
        self.dense = nn.Linear(2 * in_channels, units)
        self.relu = nn.ReLU()
        self.bn_dense = nn.BatchNorm1d(units, eps=BN_EPS)
        self.output = nn.Linear(units, n_labels)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(w))

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits from the time-pooled rows (B, 2C): everything after :attr:`pool`."""
        h = self.bn_dense(self.relu(self.dense(self.bn_pool(pooled))))
        out: torch.Tensor = self.output(h)
        return out


class Musicnn(nn.Module):
    """The musically motivated CNN. (B, 1, n_mels, T) -> logits (B, n_labels)."""

    def __init__(
        self,
        n_mels: int = 96,
        n_labels: int = 50,
        timbral_filters: int = 204,
        temporal_filters: int = 51,
        midend_filters: int = 64,
        backend_units: int = 200,
    ) -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS)
        self.front_end = MusicnnFrontEnd(n_mels, timbral_filters, temporal_filters)
        front_channels = 2 * timbral_filters + 3 * temporal_filters
        self.mid_end = MusicnnMidEnd(front_channels, midend_filters)
        self.back_end = MusicnnBackEnd(front_channels + 3 * midend_filters, backend_units, n_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.back_end(self.mid_end(self.front_end(self.input_bn(x))))
        return out

    # The split used by Integrated Gradients (musiclens.core.interpret.integrated_gradients_split):
    # forward(x) == from_pooled_front(pooled_front(x)) in eval mode without hooks, same values.

    def _branches(self) -> list[FrontEndBranch]:
        fe = self.front_end
        return [fe.timbral_38, fe.timbral_67, fe.temporal_128, fe.temporal_64, fe.temporal_32]

    def pooled_front(self, x: torch.Tensor, input_only: bool = False) -> torch.Tensor:
        """The front end before its ReLUs and batch norms (eval mode): every branch's conv maps
        of the batch-normalised input reduced over frequency (:meth:`FrontEndBranch.select`),
        concatenated: (B, 1, F, T) -> (B, 561, T).

        Affine along every straight path from a baseline that is constant along frequency (its
        conv maps are then constant along frequency, as the convs are valid there, so the
        reduction picks the same rows all along the path): see :meth:`affine_from`."""
        z = self.front_input(x)
        return torch.cat([br.select(z, input_only) for br, _ in self.front_parts()], dim=1)

    def front_input(self, x: torch.Tensor) -> torch.Tensor:
        """The batch-normalised input every branch of :meth:`pooled_front` reads (eval mode):
        (B, 1, F, T) -> (B, 1, F, T)."""
        out: torch.Tensor = self.input_bn(x)
        return out

    def front_input_state(self) -> list[torch.Tensor]:
        """The tensors :meth:`front_input` reads (to tell when a cached result is stale)."""
        return [*self.input_bn.parameters(), *self.input_bn.buffers()]

    def front_parts(self) -> list[tuple[FrontEndBranch, list[torch.Tensor]]]:
        """:meth:`pooled_front` per branch, in its channel order: each branch
        (``branch.select(front_input(x), input_only)``: (B, 1, F, T) -> (B, C_i, T)) with the
        tensors its ``select`` reads besides its input (to cache each branch on its own)."""
        return [
            (br, [br.conv.weight, br.bn.weight] + ([] if br.conv.bias is None else [br.conv.bias]))
            for br in self._branches()
        ]

    def from_pooled_front(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_labels) from :meth:`pooled_front`'s output (B, 561, T) (eval mode)."""
        branches = self._branches()
        parts = torch.split(pooled, [br.conv.out_channels for br in branches], dim=1)
        front = torch.cat([br.finish(p) for br, p in zip(branches, parts, strict=True)], dim=1)
        # the back end pools each row over time on its own, so the mid end's parts are pooled
        # one by one: the same values without the (B, 753, T) concatenation and its gradient
        # (16 IG points of 30 s: 90 MB each)
        pool = self.back_end.pool
        out: torch.Tensor = self.back_end.head(torch.cat([pool(p) for p in self.mid_end.parts(front)], dim=1))
        return out

    def affine_from(self, baseline: torch.Tensor) -> bool:
        """Whether :meth:`pooled_front` is affine along every straight path from ``baseline``
        (B, 1, F, T): true when each item is constant along frequency (e.g. silence)."""
        return bool((baseline == baseline[:, :, :1]).all())


def musicnn_layers(
    timbral_filters: int = 204,
    temporal_filters: int = 51,
    midend_filters: int = 64,
    backend_units: int = 200,
    n_labels: int = 50,
    n_mels: int = 96,
) -> list[LayerInfo]:
    fe, me, be = "front end", "mid end", "back end"
    tb, tp = timbral_filters, temporal_filters
    front = 2 * tb + 3 * tp
    rows = front + 3 * midend_filters
    layers = [
        LayerInfo(
            "input / batch norm", "input_bn", "input", "batchnorm", f"batch-normalised log-mel input (1, {n_mels}, T)"
        )
    ]
    for key, title, filters, fsize, tsize in [
        ("timbral_38", "timbral 7x38", tb, int(0.4 * n_mels), 7),
        ("timbral_67", "timbral 7x67", tb, int(0.7 * n_mels), 7),
        ("temporal_128", "temporal 128x1", tp, 1, 128),
        ("temporal_64", "temporal 64x1", tp, 1, 64),
        ("temporal_32", "temporal 32x1", tp, 1, 32),
    ]:
        mod = f"front_end.{key}"
        rows_f = n_mels - fsize + 1
        layers += [
            LayerInfo(
                f"{fe} / {title} / conv",
                f"{mod}.conv",
                fe,
                "conv",
                f"{filters} kernels of {tsize} frames x {fsize} mel bands (pre-ReLU), ({filters}, {rows_f}, T)",
            ),
            LayerInfo(
                f"{fe} / {title} / feature maps",
                f"{mod}.bn",
                fe,
                "batchnorm",
                f"ReLU + batch norm, before the max over frequency, ({filters}, {rows_f}, T)",
            ),
            LayerInfo(f"{fe} / {title}", mod, fe, "block", f"branch output, max over frequency, ({filters}, T)"),
        ]
    layers.append(
        LayerInfo(
            fe, "front_end", fe, "block", f"concatenated front end ({2 * tb} timbral + {3 * tp} temporal = {front}, T)"
        )
    )
    for i in (1, 2, 3):
        res = "" if i == 1 else " + residual"
        layers += [
            LayerInfo(
                f"{me} / conv {i} / conv",
                f"mid_end.layer{i}.conv",
                me,
                "conv",
                f"{midend_filters} kernels of 7 frames (pre-ReLU), ({midend_filters}, T)",
            ),
            LayerInfo(
                f"{me} / conv {i} / batch norm",
                f"mid_end.layer{i}.bn",
                me,
                "batchnorm",
                f"ReLU + batch norm, before any residual sum, ({midend_filters}, T)",
            ),
            LayerInfo(
                f"{me} / conv {i}", f"mid_end.layer{i}", me, "block", f"ReLU + batch norm{res}, ({midend_filters}, T)"
            ),
        ]
    layers += [
        LayerInfo(me, "mid_end", me, "block", f"W: front end + the three mid-end outputs, ({rows}, T)"),
        LayerInfo(
            f"{be} / pool",
            "back_end.pool",
            be,
            "pool",
            f"max and mean over time, interleaved [max0, mean0, ...], ({2 * rows},)",
        ),
        LayerInfo(f"{be} / pool / batch norm", "back_end.bn_pool", be, "batchnorm", f"({2 * rows},)"),
        LayerInfo(
            f"{be} / dense", "back_end.dense", be, "dense", f"{backend_units} units (pre-ReLU), ({backend_units},)"
        ),
        LayerInfo(
            f"{be} / penultimate",
            "back_end.bn_dense",
            be,
            "batchnorm",
            f"dense + ReLU + batch norm (musicnn's 'penultimate'), ({backend_units},)",
        ),
        LayerInfo(
            "output", "back_end.output", "output", "output", f"logits ({n_labels},); sigmoid gives tag probabilities"
        ),
    ]
    return layers


@register_family("musicnn")
def build_musicnn(
    *,
    n_mels: int = 96,
    n_labels: int = 50,
    timbral_filters: int = 204,
    temporal_filters: int = 51,
    midend_filters: int = 64,
    backend_units: int = 200,
) -> tuple[nn.Module, list[LayerInfo]]:
    net = Musicnn(n_mels, n_labels, timbral_filters, temporal_filters, midend_filters, backend_units)
    return net.eval(), musicnn_layers(
        timbral_filters, temporal_filters, midend_filters, backend_units, n_labels, n_mels
    )


# ----------------------------------------------------------------------------- VGG baseline
class VggBlock(nn.Module):
    """3×3 'same' conv -> ReLU -> BN -> max pool (kernel/stride given as (freq, time))."""

    def __init__(self, in_channels: int, filters: int, pool: tuple[int, int], stride: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, filters, kernel_size=3, padding=1)
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm2d(filters, eps=BN_EPS)
        self.pool = nn.MaxPool2d(kernel_size=pool, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.pool(self.bn(self.relu(self.conv(x))))
        return out


# (freq, time) pool sizes and strides of musicnn's ``vgg`` (TF's are [time, freq]).
_VGG_POOLS = [((1, 4), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4))]


def _vgg_shapes(n_mels: int, n_frames: int) -> list[tuple[int, int]]:
    shapes, f, t = [], n_mels, n_frames
    for (pf, pt), (sf, st) in _VGG_POOLS:
        f, t = (f - pf) // sf + 1, (t - pt) // st + 1
        shapes.append((f, t))
    return shapes


class MusicnnVgg(nn.Module):
    """musicnn's VGG baseline: input BN, 5 × (3×3 conv, ReLU, BN, max pool), dense.

    (B, 1, 96, 187) -> logits (B, 50). Pooled maps: (128, 48, 92), (128, 24, 46),
    (128, 12, 23), (128, 6, 11), (128, 1, 2); the dense layer reads the last one flattened
    in torch order (C, F, T) (the converter permutes TF's (T, F, C) rows accordingly).
    """

    def __init__(self, n_mels: int = 96, n_frames: int = 187, n_labels: int = 50, filters: int = 128) -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS)
        chans = [1] + [filters] * 5
        for i, (pool, stride) in enumerate(_VGG_POOLS, start=1):
            self.add_module(f"block{i}", VggBlock(chans[i - 1], filters, pool, stride))
        f, t = _vgg_shapes(n_mels, n_frames)[-1]
        self.flatten = nn.Flatten()
        self.output = nn.Linear(filters * f * t, n_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_bn(x)
        for i in range(1, 6):
            x = getattr(self, f"block{i}")(x)
        out: torch.Tensor = self.output(self.flatten(x))
        return out


@register_family("musicnn_vgg")
def build_vgg(
    *, n_mels: int = 96, n_frames: int = 187, n_labels: int = 50, filters: int = 128
) -> tuple[nn.Module, list[LayerInfo]]:
    net = MusicnnVgg(n_mels, n_frames, n_labels, filters)
    layers = [
        LayerInfo(
            "input / batch norm", "input_bn", "input", "batchnorm", f"batch-normalised log-mel input (1, {n_mels}, T)"
        )
    ]
    f, t = n_mels, n_frames
    for i, (fp, tp) in enumerate(_vgg_shapes(n_mels, n_frames), start=1):
        layers += [
            LayerInfo(
                f"conv {i} / conv",
                f"block{i}.conv",
                "convolutions",
                "conv",
                f"{filters} kernels of 3x3 (pre-ReLU), ({filters}, {f}, {t})",
            ),
            LayerInfo(
                f"conv {i} / feature maps",
                f"block{i}.bn",
                "convolutions",
                "batchnorm",
                f"ReLU + batch norm, ({filters}, {f}, {t})",
            ),
            LayerInfo(
                f"conv {i} / pool",
                f"block{i}",
                "convolutions",
                "pool",
                f"max pool (musicnn's 'pool{i}'), ({filters}, {fp}, {tp})",
            ),
        ]
        f, t = fp, tp
    layers.append(
        LayerInfo("output", "output", "output", "output", f"logits ({n_labels},); sigmoid gives tag probabilities")
    )
    return net.eval(), layers
