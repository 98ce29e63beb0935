"""Stage *convolve*: one layer blurred with its aperture kernel, by whichever is estimated
cheapest (the cost model ``_COST``) of a direct convolution, FFT on the tiles the layer
occupies, and a splat of its samples; its highlights by FFT at (nearly) full resolution; the
result brought to its group's scale (:class:`BlurredLayer`)."""

from typing import NamedTuple

import numpy as np
from numpy import float32 as _F32

from .aperture import aperture_kernel
from .content import SparseLayer
from .resample import _downsample_sum, _upsample_linear
from .schedule import _stage


def _next_fast_len(n):
    """Smallest 2^a 3^b 5^c >= n (sizes pocketfft handles fastest)."""
    n = int(n)
    if n <= 6:
        return max(n, 1)
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            # Smallest power-of-two multiple of p35 that reaches n.
            q = -(-n // p35)
            p2 = 1 << (q - 1).bit_length()
            best = min(best, p2 * p35)
            p35 *= 3
        p5 *= 5
    return best


def _convolve_direct(planes, kernel):
    """Full linear convolution of planar ``planes`` (C, h, w) with a small ``kernel``."""
    kh, kw = kernel.shape
    c, h, w = planes.shape
    out = np.zeros((c, h + kh - 1, w + kw - 1), _F32)
    tmp = np.empty_like(planes)
    for (dy, dx) in zip(*np.nonzero(kernel > 0)):
        np.multiply(planes, kernel[dy, dx], out=tmp)
        out[:, dy:dy + h, dx:dx + w] += tmp
    return out


#: Tile edges (px) the FFT convolution chooses from (:func:`_fft_plan`); each twice the one
#: before, so that the occupancy of the larger tiles follows from the smallest's.
_TILE_EDGES = (16, 32, 64, 128)


#: Cost model of the convolutions (ns), ``_COST_NUMPY1`` measured on numpy 1.26 (whose FFT works in
#: complex128), one core: :func:`_convolve_fft_grid` ``fft`` per FFT element and channel
#: (transforms, gathering and adding back) plus ``tile`` per tile and channel; a direct
#: convolution ``direct`` per kernel tap, pixel and channel; a splat ``splat`` per sample,
#: tap and channel plus ``splat_plane`` per output pixel and channel; direct on small tiles
#: ``direct_tile`` per kernel tap, pixel and channel, ``plane`` per output pixel and channel
#: and ``tile_direct`` per tile and channel.  The splat's figures are twice its own time on one
#: thread (~2 and ~2.5 ns): ``np.add.at`` holds the interpreter lock, so while a splat runs the
#: other threads' Python-level work waits (the dense-edge frame's whole command on two threads,
#: medians of 4 alternating runs: 3.82 s with the splat's own time, 3.62 s with twice it; one
#: thread unchanged).  The choice does not depend on the thread count, so that the result is
#: bit-identical for every count.
_COST_NUMPY1 = {"fft": 25.0, "tile": 8000.0, "direct": 1.2, "splat": 4.0, "splat_plane": 5.0,
                "plane": 3.0, "direct_tile": 2.0, "tile_direct": 3000.0}

#: The same model on numpy 2 (Blender 5.1+: float32 transforms computed natively), measured
#: there and on numpy 1.26 on the same machine (each method timed against its estimate on
#: 1148x1988 layers, radius 1.5-12 px, 5-100 % filled, best of 5, alternating): an FFT element
#: costs ~0.6x, the splat ~0.85x per tap and ~0.5x per output pixel, a direct convolution
#: ~0.8-0.9x.  Inside the engine these figures (``fft`` alone scaled, or ``fft``, ``splat`` and
#: ``splat_plane`` together) change the dense-edge frame's time by ~1 % (within the noise),
#: but they are what numpy 2 costs (docs/dof-engine.md, "numpy 2").
_COST_NUMPY2 = dict(_COST_NUMPY1, fft=15.0, splat=3.4, splat_plane=2.5)

#: The model this numpy runs (the choice never depends on the thread count, so a result is
#: bit-identical for every count on one numpy; numpy 1.26 and 2 may choose differently for a
#: layer, which changes its values by float32 rounding only).
_COST = dict(_COST_NUMPY2 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else _COST_NUMPY1)


def _occupancy(nz, t):
    """(ny, nx) bool map of the ``t`` x ``t`` tiles of 2-D bool ``nz`` that hold anything."""
    h, w = nz.shape
    ny, nx = -(-h // t), -(-w // t)
    rows = np.zeros((ny * t, w), bool)
    rows[:h] = nz
    rows = rows.reshape(ny, t, w).any(axis=1)
    cols = np.zeros((ny, nx * t), bool)
    cols[:, :w] = rows
    return cols.reshape(ny, nx, t).any(axis=2)


def _occupancy_of_pixels(pix, h, w, t):
    """:func:`_occupancy` of the flat pixels ``pix`` of an (h, w) plane."""
    occ = np.zeros((-(-h // t), -(-w // t)), bool)
    ys, xs = np.divmod(pix, w)
    occ[ys // t, xs // t] = True
    return occ


def _coarser(occ):
    """Occupancy of tiles twice as large (2 x 2 of ``occ``'s)."""
    ny, nx = occ.shape
    p = np.zeros((ny + ny % 2, nx + nx % 2), bool)
    p[:ny, :nx] = occ
    return p.reshape(p.shape[0] // 2, 2, p.shape[1] // 2, 2).any(axis=(1, 3))


def _fft_plan(occ, c, kh, kw, taps=None):
    """The cheapest tiling for a convolution of ``c`` planes with a ``kh`` x ``kw`` kernel
    (``taps`` non-zero weights), from the occupancy ``occ`` of the smallest tiles
    (``_TILE_EDGES[0]``): ``(estimated ns, tile edge, rows, columns, occupancy at that edge,
    direct)`` -- each occupied tile convolved by FFT (``rows`` x ``columns`` transforms) or,
    ``direct`` (small kernels), tap by tap (``rows`` x ``columns`` = the tile plus the
    kernel).  Sparse layers (scattered particles, the thin slices of a frame full of depth
    edges) get small tiles that skip the empty space between their samples; dense ones
    larger tiles."""
    best = None
    for n, t in enumerate(_TILE_EDGES):
        if n:
            occ = _coarser(occ)
        n_occ = int(occ.sum())
        fy, fx = _next_fast_len(t + kh - 1), _next_fast_len(t + kw - 1)
        cost = n_occ * c * (fy * fx * _COST["fft"] + _COST["tile"])
        if best is None or cost < best[0]:
            best = (cost, t, fy, fx, occ, False)
        if taps is not None:
            dy, dx = t + kh - 1, t + kw - 1
            cost = n_occ * c * (taps * t * t * _COST["direct_tile"] +
                                dy * dx * _COST["plane"] + _COST["tile_direct"])
            if cost < best[0]:
                best = (cost, t, dy, dx, occ, True)
    return best


#: Most runs of neighbouring tiles a batch of :func:`_convolve_fft_grid` is split into before
#: it falls back to fancy indexing (each run costs a few Python-level operations).
_MAX_RUNS = 8


def _runs(by, bx):
    """``[(start, stop), ...]``: the batch of tiles (rows ``by``, columns ``bx``, in row-major
    order) as runs of neighbouring tiles in one row, or None when there are more than
    ``_MAX_RUNS``."""
    if by.size == 0:
        return None
    brk = np.flatnonzero((by[1:] != by[:-1]) | (bx[1:] != bx[:-1] + 1)) + 1
    if brk.size >= _MAX_RUNS:
        return None
    edges = [0] + brk.tolist() + [by.size]
    return list(zip(edges[:-1], edges[1:]))


def _convolve_fft_grid(planes, kernel, occ, t, fy, fx, direct=False):
    """Full linear convolution (C, h + kh - 1, w + kw - 1) of planar ``planes`` (C, h, w) by
    overlap-add of FFT-convolved ``t`` x ``t`` tiles (only the tiles ``occ`` marks; FFT size
    ``fy`` x ``fx``), the tiles gathered and added back with whole-array operations.
    ``direct``: each tile convolved tap by tap instead (``fy`` x ``fx`` = the tile plus the
    kernel)."""
    c, h, w = planes.shape
    kh, kw = kernel.shape
    ny, nx = occ.shape
    my, mx = -(-fy // t), -(-fx // t)  # output tiles one result spans
    out = np.zeros((c, (ny + my - 1) * t, (nx + mx - 1) * t), _F32)
    out5 = out.reshape(c, ny + my - 1, t, nx + mx - 1, t)
    if direct:
        taps = [(dy, dx, kernel[dy, dx]) for dy, dx in zip(*np.nonzero(kernel > 0))]
    else:
        kpad = np.zeros((fy, fx), _F32)
        kpad[:kh, :kw] = kernel
        kspec = np.fft.rfft2(kpad)
    iy, ix = np.nonzero(occ)
    full_y, full_x = h // t, w // t
    grid = planes[:, :full_y * t, :full_x * t].reshape(c, full_y, t, full_x, t)
    batch = max(1, (1 << 20) // (c * fy * fx))  # ~1 M elements a batch (~50 MB in flight)
    for b0 in range(0, iy.size, batch):
        by, bx = iy[b0:b0 + batch], ix[b0:b0 + batch]
        buf = np.zeros((by.size, c) + ((t, t) if direct else (fy, fx)), _F32)
        inner = (by < full_y) & (bx < full_x)
        runs = _runs(by, bx)
        if runs is not None:
            # Runs of neighbouring tiles in a row (a layer that fills its box): their whole
            # tiles gathered as slices, not by fancy indexing (the same values).
            for n0, n1 in runs:
                m = int(inner[n0:n1].sum())  # the whole tiles lead a run
                if m:
                    buf[n0:n0 + m, :, :t, :t] = grid[:, by[n0], :, bx[n0]:bx[n0] + m,
                                                     :].transpose(2, 0, 1, 3)
        else:
            sel = np.flatnonzero(inner)
            if sel.size:
                buf[sel, :, :t, :t] = grid[:, by[sel], :, bx[sel], :]
        for n in np.flatnonzero(~inner):
            src = planes[:, by[n] * t:(by[n] + 1) * t, bx[n] * t:(bx[n] + 1) * t]
            buf[n, :, :src.shape[1], :src.shape[2]] = src
        if direct:
            res = np.zeros((by.size, c, fy, fx), _F32)
            src = buf[:, :, :t, :t]
            tmp = np.empty_like(src)
            for dy, dx, v in taps:
                np.multiply(src, v, out=tmp)
                res[:, :, dy:dy + t, dx:dx + t] += tmp
            del buf, src, tmp
        else:
            spec = np.fft.rfft2(buf)
            del buf
            spec *= kspec
            res = np.fft.irfft2(spec, s=(fy, fx))
            del spec
        for qy in range(my):
            for qx in range(mx):
                sub = res[:, :, qy * t:(qy + 1) * t, qx * t:(qx + 1) * t]
                if runs is None:
                    out5[:, by + qy, :sub.shape[2], bx + qx, :sub.shape[3]] += sub
                    continue
                # Each output element gets the same single addition as by fancy indexing
                # (the tiles of a batch are distinct), in place and without the copies.
                for n0, n1 in runs:
                    y, x = by[n0] + qy, bx[n0] + qx
                    out5[:, y, :sub.shape[2], x:x + n1 - n0, :sub.shape[3]] += \
                        sub[n0:n1].transpose(1, 2, 0, 3)
        del res
    return out[:, :h + kh - 1, :w + kw - 1]


def _convolve_sparse(planes, kernel, nz):
    """Full linear convolution of planar ``planes`` (C, h, w) whose only non-zero pixels are
    ``nz`` (flat indices) with ``kernel``, by splatting (see :func:`_splat`)."""
    c, h, w = planes.shape
    return _splat(nz, planes.reshape(c, -1)[:, nz], h, w, kernel)


#: Kernel taps times samples per batch of :func:`_splat` (bounds its temporaries: 8 bytes of
#: index and 4 of weight per element).
_SPLAT_BATCH = 1 << 21


def _splat(pix, vals, h, w, kernel):
    """Full linear convolution (C, h + kh - 1, w + kw - 1) of the samples at flat pixels
    ``pix`` of an (h, w) plane (repeats add up) with values ``vals`` (C, n): each sample
    splats the kernel, so the cost follows the samples, not the area.  A batch of samples
    is added for every kernel tap at once, one unbuffered ``np.add.at`` per channel over
    every (sample, tap) pair."""
    c = vals.shape[0]
    kh, kw = kernel.shape
    oh, ow = h + kh - 1, w + kw - 1
    out = np.zeros((c, oh * ow), _F32)
    pix = np.asarray(pix, np.int64)
    if pix.size == 0:
        return out.reshape(c, oh, ow)
    vals = np.asarray(vals, _F32)
    ky, kx = np.nonzero(kernel > 0)
    kv = kernel[ky, kx].astype(_F32)
    off = ky.astype(np.int64) * ow + kx
    ys, xs = np.divmod(pix, w)
    base = ys * ow + xs                       # the sample's position in the output
    del ys, xs
    step = max(1, _SPLAT_BATCH // kv.size)
    for a in range(0, base.size, step):
        b = min(base.size, a + step)
        idx = base[a:b, None] + off[None, :]
        idx = idx.reshape(-1)
        for ci in range(c):
            np.add.at(out[ci], idx, np.multiply.outer(vals[ci, a:b], kv).reshape(-1))
        del idx
    return out.reshape(c, oh, ow)


def _splat_cost(n, taps, c, h, w, kh, kw):
    """Estimated cost (ns) of :func:`_splat` (see ``_COST``)."""
    return c * (n * taps * _COST["splat"] + (h + kh) * (w + kw) * _COST["splat_plane"])


def _convolve(planes, kernel):
    """Full linear convolution (C, h + kh - 1, w + kw - 1) of ``planes`` (C, h, w; coverage
    last) with ``kernel``: whichever is estimated cheapest (``_COST``) of a direct
    convolution (small kernels), a splat of the samples (sparse layers: particles, leaves,
    the thin slices of a dense depth-edge frame) and FFT over the occupied tiles, the tile
    size chosen by :func:`_fft_plan`.  ``planes`` may be a :class:`SparseLayer` (then the
    splat takes its samples as they are; it is made dense only if the splat does not win)."""
    sparse = isinstance(planes, SparseLayer)
    c, h, w = planes.shape
    kh, kw = kernel.shape
    taps = int(np.count_nonzero(kernel > 0))
    t0 = _TILE_EDGES[0]
    if sparse:
        occ = _occupancy_of_pixels(planes.pix, h, w, t0)
    else:
        nz = planes[-1] != 0
        occ = _occupancy(nz, t0)
    if not occ.any():
        return np.zeros((c, h + kh - 1, w + kw - 1), _F32)
    fft, t, fy, fx, occ_t, on_tiles = _fft_plan(occ, c, kh, kw, taps)
    direct = taps * c * h * w * _COST["direct"]
    best = min(direct, fft)
    # Count the samples only when a splat can win (fewer than best / cost per sample).
    if best > _splat_cost(1, taps, c, h, w, kh, kw):
        if sparse:
            n = planes.pix.size
        else:
            pix = np.flatnonzero(nz.reshape(-1))
            n = pix.size
        if _splat_cost(n, taps, c, h, w, kh, kw) < best:
            if sparse:
                return _splat(planes.pix, planes.vals, h, w, kernel)
            return _convolve_sparse(planes, kernel, pix)
    if sparse:
        # One channel at a time: only one full plane of the layer lives next to the output.
        out = np.empty((c, h + kh - 1, w + kw - 1), _F32)
        for ci in range(c):
            one = planes.dense(ci)
            out[ci] = _convolve_direct(one, kernel)[0] if direct <= fft else \
                _convolve_fft_grid(one, kernel, occ_t, t, fy, fx, on_tiles)[0]
            del one
        return out
    if direct <= fft:
        return _convolve_direct(planes, kernel)
    return _convolve_fft_grid(planes, kernel, occ_t, t, fy, fx, on_tiles)


def _tile_size(kh, kw, target=128):
    """Tile edge T (and FFT sizes) for overlap-add: T + k - 1 is a fast FFT length."""
    fy = _next_fast_len(target + kh - 1)
    fx = _next_fast_len(target + kw - 1)
    return fy, fx, fy - kh + 1, fx - kw + 1


def _occupied_tiles(cov, ty, tx):
    """Boolean (ny, nx) map of the ty x tx tiles of ``cov`` that hold anything."""
    h, w = cov.shape
    ny, nx = -(-h // ty), -(-w // tx)
    occ = np.zeros((ny, nx), bool)
    nz = cov != 0
    rows = np.flatnonzero(nz.any(axis=1))
    if rows.size == 0:
        return occ
    for iy in np.unique(rows // ty):
        band = nz[iy * ty:(iy + 1) * ty]
        cols = np.flatnonzero(band.any(axis=0))
        occ[iy, np.unique(cols // tx)] = True
    return occ


def _convolve_fft_tiled(planes, kernel, occ, fy, fx, ty, tx, batch=24):
    """Full linear convolution of ``planes`` (C, h, w) as FFT-convolved ``ty`` x ``tx`` tiles
    (only the occupied ones, ``occ``), to be added up: a list of ``(y0, x0, array (C, fy,
    fx))`` (offsets in the output)."""
    c = planes.shape[0]
    kh, kw = kernel.shape
    out = []
    kpad = np.zeros((fy, fx), _F32)
    kpad[:kh, :kw] = kernel
    kspec = np.fft.rfft2(kpad)
    tiles = list(zip(*np.nonzero(occ)))
    for b0 in range(0, len(tiles), batch):
        chunk = tiles[b0:b0 + batch]
        buf = np.zeros((len(chunk), c, fy, fx), _F32)
        for n, (iy, ix) in enumerate(chunk):
            src = planes[:, iy * ty:(iy + 1) * ty, ix * tx:(ix + 1) * tx]
            buf[n, :, :src.shape[1], :src.shape[2]] = src
        res = np.fft.irfft2(np.fft.rfft2(buf) * kspec, s=(fy, fx))
        del buf
        for n, (iy, ix) in enumerate(chunk):
            out.append((iy * ty, ix * tx, res[n].astype(_F32)))
        del res
    return out


class BlurredLayer(NamedTuple):
    """Output of :func:`convolve_layer`: the layer's blurred planes (colour channels then
    coverage) at its group's scale with their origin ``(y0, x0)`` in that scale's
    coordinates, and its blurred highlight tiles (full resolution, ``(y, x, (3, h, w))``)."""

    y0: int
    x0: int
    planes: np.ndarray
    sparkles: list


def convolve_layer(content, radius, s, gs, settings, pixel_aspect):
    """Stage *convolve*: blur one layer's content (from :func:`~.content.layer_content`, scale
    ``s``) with the aperture of signed ``radius`` (full-resolution pixels), its highlights at
    (nearly) full resolution, and bring it to its group's scale ``gs``."""
    y0, x0, planes, (sy0, sx0, sparkles) = content
    tiles_out = []
    if sparkles is not None:
        with _stage("sparkles"):
            # Full resolution for scale 2; beyond, half the layer's reduction (the disk's edge
            # stays within a pixel or two on a 20+ px radius).
            ss = max(1, s // 2)
            if ss > 1:
                sparkles = _downsample_sum(sparkles, ss)
                sparkles *= _F32(1.0 / (ss * ss))
            kfull = aperture_kernel(radius / ss, settings, pixel_aspect=pixel_aspect)
            fy, fx, ty, tx = _tile_size(*kfull.shape)
            occ = _occupied_tiles(sparkles[0] + sparkles[1] + sparkles[2], ty, tx)
            tiles = _convolve_fft_tiled(sparkles, kfull, occ, fy, fx, ty, tx)
            oy_ = sy0 // ss - kfull.shape[0] // 2
            ox_ = sx0 // ss - kfull.shape[1] // 2
            for a, b, t in tiles:
                if ss > 1:
                    t = _upsample_linear(t, ss, t.shape[1] * ss, t.shape[2] * ss)
                tiles_out.append(((oy_ + a) * ss, (ox_ + b) * ss, t))
            del sparkles, tiles
    kernel = aperture_kernel(radius / s, settings, pixel_aspect=pixel_aspect)
    kh, kw = kernel.shape
    with _stage(f"convolve s={s}"):
        if kh == 1 and kw == 1:
            blurred = planes.dense() if isinstance(planes, SparseLayer) else planes
        else:
            blurred = _convolve(planes, kernel)
    oy, ox = y0 - kh // 2, x0 - kw // 2
    if s > gs:
        with _stage("upsample layers"):
            f = s // gs
            bh, bw = blurred.shape[1:]
            blurred = _upsample_linear(blurred, f, bh * f, bw * f)
            oy, ox = oy * f, ox * f
    return BlurredLayer(oy, ox, blurred, tiles_out)
