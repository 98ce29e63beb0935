"""Resampling of planar arrays (..., h, w): bilinear upsampling by an integer factor, block
sums for downsampling, and maxima over blocks and neighbourhoods (the bounds the edge split and
the hidden fill look around with)."""

import numpy as np
from numpy import float32 as _F32


def _upsample_axis(a, factor, axis, start, n_out):
    """Linear upsampling of ``a`` along ``axis`` (counted from the front, or -1) by integer
    ``factor``; returns output samples ``start .. start + n_out`` (low-res sample j covers
    [j f, (j+1) f); the edge sample is repeated beyond the ends)."""
    f = factor
    n = a.shape[axis]
    shape = list(a.shape)
    shape[axis] = n * f
    out = np.empty(shape, _F32)

    def sl(arr, i0, i1, step=None):
        idx = [slice(None)] * arr.ndim
        idx[axis] = slice(i0, i1, step)
        return arr[tuple(idx)]

    for p in range(f):
        pos = (p + 0.5) / f - 0.5
        dst = sl(out, p, None, f)
        if pos < 0:
            t = _F32(pos + 1)  # between samples j-1 (weight 1-t) and j (weight t)
            np.multiply(a, t, out=dst)
            sl(dst, 1, None)[...] += sl(a, 0, n - 1) * (1 - t)
            sl(dst, 0, 1)[...] += sl(a, 0, 1) * (1 - t)
        else:
            t = _F32(pos)      # between samples j (weight 1-t) and j+1 (weight t)
            np.multiply(a, 1 - t, out=dst)
            if t:
                sl(dst, 0, n - 1)[...] += sl(a, 1, n) * t
                sl(dst, n - 1, n)[...] += sl(a, n - 1, n) * t
    return sl(out, start, start + n_out)


def _upsample_linear(a, factor, out_h, out_w, y0=0, x0=0):
    """Bilinear upsampling of planar ``a`` (..., h, w) by integer ``factor``.

    Low-resolution pixel ``j`` covers full-resolution pixels ``[j f, (j+1) f)``.  Returns the
    full-resolution block of rows ``y0 .. y0+out_h`` and columns ``x0 .. x0+out_w`` (in the
    full-resolution coordinates of ``a``'s origin); outside ``a`` the edge is repeated."""
    f = int(factor)
    h, w = a.shape[-2:]
    if f == 1:
        return a[..., y0:y0 + out_h, x0:x0 + out_w]
    # Only the low-res rows/columns the block needs (+1 each side for the interpolation).
    ry0 = max(0, y0 // f - 1)
    ry1 = min(h, (y0 + out_h) // f + 2)
    rx0 = max(0, x0 // f - 1)
    rx1 = min(w, (x0 + out_w) // f + 2)
    sub = a[..., ry0:ry1, rx0:rx1]
    cols = _upsample_axis(sub, f, a.ndim - 1, x0 - rx0 * f, out_w)   # narrow pass first
    return _upsample_axis(cols, f, a.ndim - 2, y0 - ry0 * f, out_h)


def _downsample_sum(a, f):
    """Sum of ``f`` x ``f`` blocks of planar ``a`` (..., h, w) (zero padded to a multiple)."""
    if f == 1:
        return np.array(a, dtype=_F32)
    if f > 2 and f & (f - 1) == 0:
        # Powers of two in steps of two: every pass reads its input once, contiguously enough.
        out = a
        while f > 1:
            out = _downsample_sum(out, 2)
            f //= 2
        return out
    h, w = a.shape[-2:]
    hh, ww = -(-h // f), -(-w // f)
    if hh * f != h or ww * f != w:
        pad = [(0, 0)] * (a.ndim - 2) + [(0, hh * f - h), (0, ww * f - w)]
        a = np.pad(a, pad)
    rows = np.add(a[..., 0::f, :], a[..., 1::f, :], dtype=_F32)
    for i in range(2, f):
        rows += a[..., i::f, :]
    out = np.add(rows[..., 0::f], rows[..., 1::f])
    for j in range(2, f):
        out += rows[..., j::f]
    return out


def _pool_max(a, f):
    """Max over ``f`` x ``f`` blocks of 2-D ``a`` (edge-padded to a multiple of f)."""
    h, w = a.shape
    hh, ww = -(-h // f), -(-w // f)
    if hh * f != h or ww * f != w:
        a = np.pad(a, ((0, hh * f - h), (0, ww * f - w)), mode="edge")
    out = a[0::f, 0::f].copy()
    for i in range(f):
        for j in range(f):
            if i or j:
                np.maximum(out, a[i::f, j::f], out=out)
    return out


def _max3x3(a):
    """Max over each pixel's 3x3 neighbourhood (edges repeated)."""
    rows = a.copy()
    np.maximum(rows[:, 1:], a[:, :-1], out=rows[:, 1:])
    np.maximum(rows[:, :-1], a[:, 1:], out=rows[:, :-1])
    out = rows.copy()
    np.maximum(out[1:], rows[:-1], out=out[1:])
    np.maximum(out[:-1], rows[1:], out=out[:-1])
    return out


def _max_pyramid(a, levels):
    """Level l (0-based) covers blocks of 2^l pixels of ``a``: the max over each block and its
    8 neighbouring blocks, so it bounds ``a`` within a radius of at least 2^l pixels."""
    out = []
    cur = a
    for lev in range(levels):
        if lev:
            cur = _pool_max(cur, 2)
        out.append(_max3x3(cur))
    return out
