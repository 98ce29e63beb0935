"""Depth of field on a rendered frame: a layered, occlusion-aware lens blur (numpy only).

Input: premultiplied RGBA ``float32 (H, W, 4)`` and planar depth ``float32 (H, W)`` (``+inf`` or
Cycles' 1e10 for background), a :class:`~blender_zdepth.core.lens.Lens` and
:class:`DofSettings`.  Output: premultiplied RGBA ``float32 (H, W, 4)``.

How it works (see ``docs/dof-engine.md`` for the user's view):

1. Every pixel gets a signed circle-of-confusion radius ``r`` (pixels, negative in front of the
   focal plane) from the lens (:mod:`.lens`, Cycles' camera model).  The frame is padded by the
   largest radius so borders blur like the picture continued: radii and colours repeated from
   the edge, except small highlights on the edge (they would pour a streak of light back in).
2. *Mixed edge pixels.*  Blender's depth comes from one sample while the colour is
   anti-aliased, so a pixel on a depth edge holds two surfaces' colours under one depth.  Such a
   pixel is split into two samples -- the part that looks like the near neighbours, at their
   radius, and the part that looks like the far neighbours, at theirs -- with coverages that add
   up to one, so neither halo nor rim is left behind.
3. *Hidden surfaces.*  Blurred foreground pixels in front of their surroundings ("occluders")
   hide what a lens sees around them.  A push-pull fill of the surfaces behind (the nearest
   wins) invents that hidden surface as an extra sample behind each occluder.  It only shows
   where the blurred occluder turns see-through.  Where the caller gives real hidden surfaces
   (``defocus(..., hidden=...)``: depth-peeled renders, deep samples), those are used instead.
4. *Layers.*  Samples are assigned softly (linear weights) to layers of signed radius: 0 (the
   focal plane, copied untouched), fine 0.5 px steps near focus, steps growing with the radius,
   and layers snapped onto radii many pixels share.  Each layer (premultiplied colour and
   coverage) is convolved with the aperture -- a disk, or a polygon with N blades, optionally
   squeezed (anamorphic), mirrored in front of the focal plane -- by FFT on the tiles it
   occupies, with a small direct kernel, or (sparse layers) by splatting its samples, whichever
   is estimated cheapest.  Layers with large radii are
   processed at reduced resolution (a radius-32 blur needs no pixel detail), except their small
   highlights ("sparkles"), which are blurred at (nearly) full resolution so that bokeh disks
   keep crisp edges.
5. *Compositing*, near to far, by coverage budget: each layer takes the share of the pixel that
   the nearer layers left free (``min(1, S + a) - S``).  A surface split over two neighbouring
   layers thus adds up instead of hiding itself (which a product of "over" operations would
   do).  Coverage still missing at the end (a blurred background reaching behind a sharp edge:
   disocclusion) is filled with the farthest layers' own colour, else normalised.

The code is a pipeline of named stages, each a function of explicit inputs and outputs:
:func:`prepare` (padded planar :class:`Frame`) -> :func:`split_edges` and :func:`fill_hidden`
/ :func:`hidden_samples` (extra :class:`Samples`) -> :func:`assign_layers`
(:class:`LayerAssignment`) -> per layer :func:`layer_content` and :func:`convolve_layer`
(:class:`BlurredLayer`) -> compositing near to far (:func:`composite_layers`) -> :func:`finish`
-> :func:`rgba_out`.  ``DofSettings.threads`` threads run the edge split in batches of rows,
the fill's bands and several layers at once, while the compositing stays in order, so the
result does not depend on the thread count.  With the environment variable
``BLENDER_ZDEPTH_DOF_TIMING`` set, :data:`TIMING` collects seconds per stage.
"""

import functools
import math
import os
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .cpus import usable_cores
from .errors import UsageError, ZDepthError
from .lens import BACKGROUND_DEPTH, Lens, coc_radius_px  # noqa: F401  (Lens re-exported)
from .malloc import release_free_memory as _release_free_memory

QUALITIES = ("draft", "default", "high")

#: Layer spacing and resolution per quality: ``fine`` step near focus (px), ``rel`` step for
#: larger radii (times the radius), ``first`` radius from which a layer is processed at half
#: resolution, then a further factor 2 each time the reduced radius reaches ``lowres`` twice.
#: (Measured against Cycles: ``first`` 6 instead of 10 loses 0.3 dB on the ground-plane shot
#: and makes frames whose blur stays under 10 px about 1.6x faster.)
_QUALITY = {
    "draft": dict(fine=1.0, rel=0.30, first=5.0, lowres=4.0),
    "default": dict(fine=0.5, rel=0.20, first=6.0, lowres=5.0),
    "high": dict(fine=0.25, rel=0.12, first=16.0, lowres=8.0),
}

_F32 = np.float32

#: Seconds spent per stage of the last :func:`defocus` calls, filled only when the
#: environment variable ``BLENDER_ZDEPTH_DOF_TIMING`` is set (for profiling).
#: With threads, a stage's figure is the sum of the seconds every thread spent in it.
TIMING = {}
_TIMING_LOCK = threading.Lock()


@contextmanager
def _stage(name):
    if not os.environ.get("BLENDER_ZDEPTH_DOF_TIMING"):
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        dt = time.perf_counter() - t0
        with _TIMING_LOCK:
            TIMING[name] = TIMING.get(name, 0.0) + dt


def _each(pool, fn, n):
    """``fn(i)`` for ``i`` in ``range(n)``: on ``pool``'s threads if given, else one after
    another (for work split into planes or channels, each writing its own part)."""
    if pool is not None:
        list(pool.map(fn, range(n)))
    else:
        for i in range(n):
            fn(i)


@dataclass
class DofSettings:
    """Options of :func:`defocus`.

    ``max_radius``: largest blur radius in pixels (the circle of confusion is clamped to it).
    ``blades``: 0 for a round aperture, else the number of diaphragm blades (3 or more).
    ``rotation_deg``: rotation of the polygonal aperture, degrees (counter-clockwise, as
    Cycles' blade rotation).
    ``anamorphic``: aperture height / width (Cycles' aperture ratio); > 1 makes tall bokeh.
    ``quality``: ``"draft"``, ``"default"`` or ``"high"`` (layer spacing and resolution).
    ``threads``: worker threads inside one frame; 0 (default) uses every usable core
    (:func:`.cpus.usable_cores`: affinity and a container's CPU quota).  The result does not
    depend on it (bit-identical).
    """

    max_radius: float = 64.0
    blades: int = 0
    rotation_deg: float = 0.0
    anamorphic: float = 1.0
    quality: str = "default"
    threads: int = 0

    def validate(self):
        try:
            m = float(self.max_radius)
        except (TypeError, ValueError):
            m = float("nan")
        if not (np.isfinite(m) and 0 <= m <= 1024):
            raise UsageError(f"max radius must be between 0 and 1024 pixels, not "
                             f"{self.max_radius!r}")
        if int(self.blades) != self.blades or not (self.blades == 0 or 3 <= self.blades <= 64):
            raise UsageError(f"blades must be 0 (round aperture) or 3 to 64, not "
                             f"{self.blades!r}")
        if not np.isfinite(float(self.rotation_deg)):
            raise UsageError(f"rotation must be a number of degrees, not {self.rotation_deg!r}")
        a = float(self.anamorphic)
        if not (np.isfinite(a) and 0.1 <= a <= 10):
            raise UsageError(f"anamorphic ratio must be between 0.1 and 10, not "
                             f"{self.anamorphic!r}")
        if self.quality not in QUALITIES:
            raise UsageError(f"quality must be one of {', '.join(QUALITIES)}, not "
                             f"{self.quality!r}")
        t = self.threads
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
            raise UsageError(f"threads must be a whole number >= 0 (0 = every core), not "
                             f"{t!r}")
        return self

    def thread_count(self):
        """Threads a frame uses: ``threads``, or every usable core when it is 0."""
        return int(self.threads) if self.threads else usable_cores()


# --------------------------------------------------------------------------------------------
# Small helpers


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


# --------------------------------------------------------------------------------------------
# Aperture kernels


def aperture_kernel(radius, settings=DofSettings(), pixel_aspect=1.0, supersample=None):
    """The normalised blur kernel (2-D float32, odd size, centred) of a point whose signed CoC
    radius is ``radius`` pixels: the aperture shape scaled by the radius, point-mirrored in
    front of the focal plane (as a real lens), sampled with pixel-area integration.

    Kernels are kept (the last 512, read-only arrays): a frame asks for one per layer, and the
    frames of a sequence mostly for the same ones."""
    return _kernel(float(radius), int(settings.blades or 0), float(settings.rotation_deg),
                   float(settings.anamorphic), float(pixel_aspect),
                   None if supersample is None else int(supersample))


@functools.lru_cache(maxsize=512)
def _kernel(radius, blades, rotation_deg, anamorphic, pixel_aspect, supersample):
    """:func:`aperture_kernel` for plain values (cached)."""
    k = _make_kernel(radius, blades, rotation_deg, anamorphic, pixel_aspect, supersample)
    k.setflags(write=False)
    return k


def _make_kernel(radius, blades, rotation_deg, anamorphic, pixel_aspect, supersample):
    """The kernel of :func:`aperture_kernel` (a new, writable array)."""
    r = float(radius)
    ar = abs(r)
    rx = ar / anamorphic
    ry = ar * float(pixel_aspect)
    if ar < 1e-6:
        return np.ones((1, 1), _F32)
    ext_x = int(math.ceil(rx)) + 1
    ext_y = int(math.ceil(ry)) + 1
    n = supersample or max(3, min(16, int(48 / max(rx, ry, 1.0)) + 1))
    # Sub-pixel samples over the kernel extent, each splatted bilinearly to the integer grid:
    # the shape convolved with the pixel footprint twice (source pixel area + target pixel).
    ys = (np.arange(-ext_y * n, ext_y * n + 1, dtype=np.float64)) / n
    xs = (np.arange(-ext_x * n, ext_x * n + 1, dtype=np.float64)) / n
    # Camera axes: x right, y up; image rows go down.
    ux = xs[None, :] / max(rx, 1e-9)
    uy = -ys[:, None] / max(ry, 1e-9)
    if r > 0:
        # Behind the focal plane Cycles renders the aperture turned by 180 degrees, in front
        # of it the aperture as it is (checked against Cycles renders with a 3-blade aperture
        # at rotations 0 and 90 degrees); the two sides are point mirrors of each other.
        ux, uy = -ux, -uy
    if blades and blades >= 3:
        nb = int(blades)
        rot = math.radians(rotation_deg)
        apothem = math.cos(math.pi / nb)
        inside = np.ones(np.broadcast_shapes(ux.shape, uy.shape), bool)
        for k in range(nb):
            phi = rot + (2 * k + 1) * math.pi / nb  # edge normals between vertices
            inside &= ux * math.cos(phi) + uy * math.sin(phi) <= apothem
    else:
        inside = ux * ux + uy * uy <= 1.0
    w = inside.astype(np.float64)
    # Bilinear splat of the sub-samples: separable tent weights.
    def splat_matrix(coords, ext):
        m = np.zeros((2 * ext + 1, coords.size))
        pos = coords + ext
        i0 = np.floor(pos).astype(int)
        t = pos - i0
        idx = np.arange(coords.size)
        ok0 = (i0 >= 0) & (i0 <= 2 * ext)
        ok1 = (i0 + 1 >= 0) & (i0 + 1 <= 2 * ext)
        m[i0[ok0], idx[ok0]] += 1 - t[ok0]
        m[i0[ok1] + 1, idx[ok1]] += t[ok1]
        return m

    k = splat_matrix(ys, ext_y) @ w @ splat_matrix(xs, ext_x).T
    # Trim empty borders (keep it centred and odd-sized).
    nz_y = np.nonzero(k.sum(axis=1) > 1e-12 * k.sum())[0]
    nz_x = np.nonzero(k.sum(axis=0) > 1e-12 * k.sum())[0]
    cy = min(nz_y[0], 2 * ext_y - nz_y[-1])
    cx = min(nz_x[0], 2 * ext_x - nz_x[-1])
    k = k[cy:k.shape[0] - cy, cx:k.shape[1] - cx]
    return (k / k.sum()).astype(_F32)


# --------------------------------------------------------------------------------------------
# Layer radii


def layer_radii(max_radius, quality="default", coc=None):
    """Sorted signed layer radii from ``-max_radius`` to ``max_radius`` (0 included).

    Spacing: ``fine`` px near focus, growing as ``rel`` times the radius.  With ``coc`` (the
    frame's radius map), layers also snap to the radii many pixels share (a far wall, the
    sky at the lens' far limit, the clamp at the maximum): a surface that sits exactly on one
    layer blurs into a crisp disk instead of a blend of two neighbouring sizes."""
    q = _QUALITY[quality]
    out = [0.0]
    r = 0.0
    m = float(max_radius)
    while r < m - 1e-6:
        step = max(q["fine"], q["rel"] * r)
        r = min(m, r + step)
        if m - r < 0.35 * step:
            r = m
        out.append(r)
    pos = np.array(out[1:], dtype=np.float64)
    radii = np.concatenate([-pos[::-1], [0.0], pos])
    if coc is None or m <= 0:
        return radii
    # Histogram of radii (0.05 px bins, subsampled frame); peaks holding >= 1 % of the pixels.
    sample = coc.reshape(-1)[::7]
    bins = np.round(sample * 20.0).astype(np.int64)
    lo = int(bins.min())
    counts = np.bincount(bins - lo)
    order = np.argsort(counts)[::-1][:12]
    peaks = [(b + lo) / 20.0 for b in order if counts[b] >= 0.01 * sample.size]
    for pk in peaks:
        if abs(pk) < 0.25 or abs(pk) > m:
            continue
        k = int(np.argmin(np.abs(radii - pk)))
        step = np.diff(radii)[min(k, radii.size - 2)]
        if abs(radii[k] - pk) < 1e-6 or radii[k] == 0.0:
            continue
        # Move the nearest layer onto the peak when that keeps the layers apart, else add.
        lo_n = radii[k - 1] if k > 0 else -np.inf
        hi_n = radii[k + 1] if k + 1 < radii.size else np.inf
        if lo_n + 0.3 * step < pk < hi_n - 0.3 * step and abs(radii[k]) != m:
            radii[k] = pk
        else:
            radii = np.sort(np.append(radii, pk))
    return np.unique(radii)


def _assign_layers(r, radii):
    """Lower layer index (int16) and weight of the upper layer (float32) for radii ``r``:
    linear ("tent") weights between the two layers around each radius."""
    nl = radii.size
    lo_r = float(radii[0])
    res = 16.0  # lookup bins per pixel of radius (finer than the finest layer step)
    nb = int(math.ceil((float(radii[-1]) - lo_r) * res)) + 2
    edges = lo_r + np.arange(nb) / res
    lut = np.clip(np.searchsorted(radii, edges, side="right") - 1, 0, nl - 2).astype(np.int16)
    b = ((r - _F32(lo_r)) * _F32(res)).astype(np.int32)
    np.clip(b, 0, nb - 1, out=b)
    i = lut[b]
    r32 = radii.astype(_F32)
    i += (r >= r32[np.minimum(i + 1, nl - 1)]) & (i < nl - 2)
    lo = r32[i]
    t = (r - lo) / (r32[i + 1] - lo)
    np.clip(t, 0, 1, out=t)
    return i, t.astype(_F32, copy=False)


def _layer_scale(radius, quality):
    """Resolution reduction factor (power of two) for a layer of this radius."""
    q = _QUALITY[quality]
    lim = q["lowres"]
    a = abs(radius)
    if a < q["first"]:
        return 1
    s = 2
    while a / (2 * s) >= lim:
        s *= 2
    return s


# --------------------------------------------------------------------------------------------
# Samples: the pixels themselves plus sparse extra samples (edge splits, hidden-surface fill)


class Samples(NamedTuple):
    """Sparse extra samples (edge splits, hidden surfaces): flat index into the padded frame
    (int64, n), premultiplied colour (float32, (4, n)), coverage (float32, n) and signed
    radius (float32, n)."""

    idx: np.ndarray
    col: np.ndarray
    cov: np.ndarray
    coc: np.ndarray


def _samples(idx, col, cov, coc):
    """:class:`Samples` with the engine's dtypes."""
    return Samples(idx.astype(np.int64), col.astype(_F32), cov.astype(_F32), coc.astype(_F32))


def _concat_samples(parts):
    """One :class:`Samples` from a list of them (in order; empty ones skipped)."""
    parts = [p for p in parts if p.idx.size]
    if not parts:
        return Samples(np.zeros(0, np.int64), np.zeros((4, 0), _F32), np.zeros(0, _F32),
                       np.zeros(0, _F32))
    return Samples(np.concatenate([p.idx for p in parts]),
                   np.concatenate([p.col for p in parts], axis=1),
                   np.concatenate([p.cov for p in parts]),
                   np.concatenate([p.coc for p in parts]))


#: Edge pixels per batch of the edge split (bounds its temporaries: ~2 KB a pixel).
_SPLIT_CHUNK = 16384

#: The 24 neighbours within two pixels (row, column offsets), in a fixed order.
_SPLIT_OFFSETS = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if dy or dx]


def split_edges(col, coc, cov, threshold=1.0, pool=None):
    """Stage *split edges*: split mixed-colour pixels on depth edges into a near and a far
    sample.

    ``col`` (4, H, W) premultiplied colour and ``cov`` (H, W) coverage of each pixel's own
    sample (both updated in place: the pixel keeps the part on its own side), ``coc`` (H, W)
    signed radii.  Returns the other parts as a list of :class:`Samples` (empty or one).
    The edge pixels are handled in batches of rows (on ``pool``'s threads if given), all
    reading the frame before any pixel is changed, so the result does not depend on it."""
    _, h, w = col.shape
    # Min / max radius over the 3x3 neighbourhood (edge-replicated).
    hi = _max3x3(coc)
    lo = -_max3x3(-coc)
    mixed = (hi - lo) > threshold
    edge = mixed.copy()
    # Keep away from the frame border (padding makes it uniform anyway).
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = False
    # Pixels two away from the border have no 5x5 neighbourhood: drop them.
    edge[:2, :] = edge[-2:, :] = edge[:, :2] = edge[:, -2:] = False
    idx = np.flatnonzero(edge)
    if idx.size == 0:
        return []
    # Pure colours of the two sides: neighbours within two pixels whose own 3x3
    # neighbourhood has one depth (so they are not mixed themselves).
    pure = ~mixed.reshape(-1)
    flat_coc = coc.reshape(-1)
    flat_col = col.reshape(4, -1)
    lo_f, hi_f = lo.reshape(-1), hi.reshape(-1)
    chunks = [idx[i:i + _SPLIT_CHUNK] for i in range(0, idx.size, _SPLIT_CHUNK)]

    def work(chunk):
        return _split_chunk(chunk, flat_col, flat_coc, pure, lo_f[chunk], hi_f[chunk], w)

    flat_cov = cov.reshape(-1)

    def compact(r):
        # Only the other parts that hold anything are kept until every batch has read.
        if r is None:
            return None
        idx, own_col, own_cov, other_col, other_cov, other_coc = r
        other_cov = flat_cov[idx] * other_cov
        keep = other_cov > 1e-4
        return (idx, own_col, own_cov,
                (idx[keep], other_col[:, keep], other_cov[keep], other_coc[keep]))

    results = list(pool.map(lambda c: compact(work(c)), chunks)) \
        if pool is not None and len(chunks) > 1 else [compact(work(c)) for c in chunks]
    # Every batch has read the frame: now the pixels' own samples keep the part on their side
    # (in place), the other parts become extra samples.
    others = []
    for n, r in enumerate(results):
        if r is None:
            continue
        idx, own_col, own_cov, other = r
        flat_cov[idx] *= own_cov
        flat_col[:, idx] = own_col
        if other[0].size:
            others.append(_samples(*other))
        results[n] = None
    if not others:
        return []
    return [_concat_samples(others)]


def _split_fit(c, f, b):
    """Best mix ``b + a (f - b)`` of colours ``f`` (near) and ``b`` (far) for pixel colours
    ``c`` (4 channels on the first axis; ``f`` or ``b`` may hold candidates, (4, m, n)):
    returns (a, squared residual, squared contrast).  Channel by channel, so that the
    candidates' arrays stay contiguous."""
    d = [f[i] - b[i] for i in range(4)]
    dd = d[0] * d[0]
    for i in range(1, 4):
        dd += d[i] * d[i]
    ed = (c[0] - b[0]) * d[0]
    for i in range(1, 4):
        ed += (c[i] - b[i]) * d[i]
    a = np.clip(ed / np.maximum(dd, 1e-12), 0.0, 1.0)
    del ed
    res = None
    for i in range(4):
        r = c[i] - (b[i] + a * d[i])
        r *= r
        if res is None:
            res = r
        else:
            res += r
    return a, res, dd


def _line_residuals(g, f, cand, mask):
    """Squared residuals (k, n) of the best mixes of pixel colours ``c`` on the lines from
    each candidate colour ``cand`` (4, k, n) to the fixed colour ``f`` (4, n), given
    ``g = c - f``; the float32 maximum (or more) where ``mask`` (k, n) is False.  From three
    dot products (``e = c - cand = g + d`` with ``d = f - cand``; ``|e - a d|^2 = e.e - 2 a
    e.d + a^2 d.d``), so the candidates are read once per channel.  Candidates on the first axis and
    pixels on the last keep every operation's inner loop long (the pixels), not 24 long."""
    dd = gd = None
    for i in range(4):
        d = np.subtract(f[i], cand[i])
        gd_i = np.multiply(g[i], d)
        d *= d
        if dd is None:
            dd, gd = d, gd_i
        else:
            dd += d
            gd += gd_i
        del d, gd_i
    gg = g[0] * g[0]
    for i in range(1, 4):
        gg += g[i] * g[i]
    ed = gd + dd                                      # e.d
    a = np.maximum(dd, 1e-12)
    np.divide(ed, a, out=a)
    np.clip(a, 0.0, 1.0, out=a)
    # e.e - 2 a e.d + a^2 d.d, with e.e = g.g + 2 g.d + d.d
    res = gd
    res *= 2
    res += dd
    res += gg
    # Residuals within the rounding of these sums count as exact fits (0): among equally
    # good candidates the first one wins, as with the residuals summed channel by channel.
    tiny = np.add(dd, gg)
    tiny *= 1e-6
    ed *= 2
    dd *= a
    ed -= dd
    ed *= a
    res -= ed
    res *= res > tiny
    # Candidates off the mask: pushed to the float32 maximum (or inf), above any real fit.
    res += np.multiply(~mask, np.finfo(_F32).max, dtype=_F32)
    return res


def _first_best(res, cand):
    """The candidate colours (4, n) with the smallest residual ``res`` (k, n) of ``cand``
    (4, k, n), the first of equal ones (as ``argmin``, faster on (k, n): a minimum over the
    k rows, then the rows that reach it from the last to the first)."""
    best = res.min(axis=0)
    k, n = res.shape
    pick = np.zeros(n, np.intp)
    for row in range(k - 1, 0, -1):
        pick[res[row] == best] = row
    # (a first row that reaches the minimum overrides the later ones: set it last)
    pick[res[0] == best] = 0
    pick *= n
    pick += np.arange(n)
    return np.take(cand.reshape(cand.shape[0], -1), pick, axis=1)


def _split_steps(w):
    """Flat-index offsets (24, 1) of :data:`_SPLIT_OFFSETS` in a frame ``w`` pixels wide."""
    return np.array([dy * w + dx for dy, dx in _SPLIT_OFFSETS], np.int64)[:, None]


def _split_chunk(idx, flat_col, flat_coc, pure, lo_i, hi_i, w):
    """The edge split of the pixels ``idx`` (read only): ``(idx, own colour, own coverage
    share, other colour, other coverage share, other radius)`` of the pixels that split, or
    None."""
    mid = 0.5 * (lo_i + hi_i)
    tol = np.maximum(0.25 * (hi_i - lo_i), 0.5)
    # The 24 neighbours at once, one row per neighbour and a column per pixel: near / far
    # masks (24, n), colours (4, 24, n).
    j = _split_steps(w) + idx[None, :]
    cj = flat_coc[j]
    pj = pure[j]
    near = pj & (cj <= lo_i + tol)
    far = pj & (cj >= hi_i - tol)
    del cj, pj
    f_n = np.count_nonzero(near, axis=0)
    b_n = np.count_nonzero(far, axis=0)
    ok = (f_n > 0) & (b_n > 0)
    if not ok.any():
        return None
    if not ok.all():
        sel = np.flatnonzero(ok)
        idx, lo_i, hi_i, mid = idx[sel], lo_i[sel], hi_i[sel], mid[sel]
        j, near, far, f_n = j[:, sel], near[:, sel], far[:, sel], f_n[sel]
    cand = np.take(flat_col, j, axis=1)  # (4, 24, n)
    del j
    c = np.take(flat_col, idx, axis=1)
    fc = np.multiply(cand, near).sum(axis=1)
    fc /= f_n.astype(_F32)
    # Colours vary along an edge (texture, highlights): pick, among the pure neighbours, the
    # far colour and then the near colour that explain the pixel best as a mix (the first
    # of equally good ones).
    bc = _first_best(_line_residuals(c - fc, fc, cand, far), cand)
    # (the lines from the far colour bc to each candidate: the same residuals with the
    # roles of the fixed and the candidate colour swapped)
    fc = _first_best(_line_residuals(c - bc, bc, cand, near), cand)
    del cand
    a, res2, dd = _split_fit(c, fc, bc)
    # Only split a pixel whose colour really lies between the two sides: the part of it the
    # near/far mix does not explain must be small next to the near/far contrast, and a clear
    # majority snaps to one side (texture on one surface is not a mix).
    bad = res2 > 0.25 * dd
    a = np.where(a > 0.95, 1.0, np.where(a < 0.05, 0.0, a))
    own = flat_coc[idx]
    own_near = own <= mid
    a = np.where(bad, np.where(own_near, 1.0, 0.0), a)
    # Energy-conserving split: the far part takes the far colour times its share (never more
    # than the pixel holds), the near part the rest.
    a = np.where(dd > 1e-8, a, np.where(own_near, 1.0, 0.0))
    far_part = np.minimum(bc * (1 - a), np.maximum(c, 0))
    far_part = np.where(a <= 0, c, np.where(a >= 1, 0, far_part))
    near_part = c - far_part
    # Premultiplied parts: a part's alpha never exceeds its coverage.
    a = np.clip(a, near_part[3], np.maximum(1.0 - far_part[3], near_part[3]))
    own_cov = np.where(own_near, a, 1 - a)
    return (idx, np.where(own_near, near_part, far_part), own_cov,
            np.where(own_near, far_part, near_part), 1 - own_cov,
            np.where(own_near, hi_i, lo_i))


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


def _push_pull(values, weight, levels):
    """Fill ``values`` (C, H, W) where ``weight`` (H, W) is 0 from the weighted neighbours.

    Returns the filled (C, H, W) values."""
    vals = [values * weight]
    ws = [weight.astype(_F32)]
    for _ in range(levels):
        v = _downsample_sum(vals[-1], 2) * _F32(0.25)
        wt = _downsample_sum(ws[-1], 2) * _F32(0.25)
        vals.append(v)
        ws.append(wt)
        if wt.size <= 4:
            break
    # Coarsest: normalise.
    filled = vals[-1] / np.maximum(ws[-1], 1e-6)
    for lev in range(len(vals) - 2, -1, -1):
        h, w = ws[lev].shape
        up = _upsample_linear(filled, 2, h, w)
        wl = ws[lev]
        # Normalised valid colour where there is weight, the coarser fill where not.
        norm = vals[lev] / np.maximum(wl, 1e-6)
        t = np.clip(wl, 0, 1)
        filled = norm * t + up * (1 - t)
    return filled


#: Bands of occluder radius (px) that get their own hidden-surface fill.  Only blurred
#: foregrounds (in front of the focal plane) get one: behind a sharp or far occluder the
#: disk-average of the visible background (the final normalisation) is closer to the truth
#: than a push-pull guess (measured).
_FILL_BANDS = (-1e9, -24.0, -12.0, -6.0, -3.0, -1.0)


def fill_hidden(col, coc, max_radius, block=4, pool=None, plan=None):
    """Stage *fill hidden*: hidden-surface samples behind occluders, as a list of
    :class:`Samples` (one per band of occluder radii that has any).

    Works on ``block`` x ``block`` pixel blocks (hidden surfaces are only ever seen through a
    blur).  An occluder block has a clearly larger radius (something farther) within its own
    blur radius.  For each band of occluder radii, a push-pull fill of the blocks that lie
    clearly behind the band invents the hidden surface -- the nearest such surface wins, so
    behind a blurred foreground the subject next to it shows, not the wall behind both.  The
    fill is added as extra samples (coverage 1) at the filled radius, only near the
    occluder's outline (where it can be seen) and only where it lies behind the pixel."""
    _, h, w = col.shape
    f = block
    if plan is None:
        plan = fill_plan(coc, max_radius, block)
    elif hasattr(plan, "result"):
        plan = plan.result()
    if plan is None:
        return []
    levels, jobs = plan
    # The blocks' mean colour and radius, one plane per thread.
    blocks = np.empty((5,) + jobs[0][0].shape, _F32)

    def block_mean(i):
        blocks[i] = _downsample_sum(col[i] if i < 4 else coc, f)
        blocks[i] *= _F32(1.0 / (f * f))

    _each(pool, block_mean, 5)
    flat_coc = coc.reshape(-1)
    offs_y = np.repeat(np.arange(f), f)
    offs_x = np.tile(np.arange(f), f)

    def push_pull(job):
        return _push_pull(blocks, job[1].astype(_F32), levels + 8)

    # The bands' fills are independent: on the frame's threads if there are several.
    fills = list(pool.map(push_pull, jobs)) if pool is not None and len(jobs) > 1 else \
        [push_pull(j) for j in jobs]
    out = []
    for (band, _), filled in zip(jobs, fills):
        by, bx = np.nonzero(band)
        fv = filled[:, by, bx]
        # Every pixel of a chosen block gets the block's fill value.
        pys = (by[None, :] * f + offs_y[:, None]).ravel()
        pxs = (bx[None, :] * f + offs_x[:, None]).ravel()
        fv = np.tile(fv, (1, f * f))
        inside = (pys < h) & (pxs < w)
        idx = (pys * w + pxs)[inside]
        fv = fv[:, inside]
        behind = fv[4] > flat_coc[idx] + 0.5
        n = int(behind.sum())
        if n:
            out.append(_samples(idx[behind], fv[:4, behind], np.ones(n, _F32), fv[4, behind]))
    return out


def fill_plan(coc, max_radius, block=4):
    """The part of :func:`fill_hidden` that reads only the radii (not the colours, which the
    edge split changes): ``(levels, [(band, valid), ...])`` -- the pyramid depth and, per
    band of occluder radii, its occluder blocks where the hidden surface can be seen and the
    blocks that lie clearly behind it -- or None when there is nothing to fill."""
    f = block
    cmin = -_pool_max(-coc, f)                       # front-most radius of each block
    cmax_pyr_base = _pool_max(coc, f)
    hh, hw = cmin.shape
    levels = max(1, int(math.ceil(math.log2(max(max_radius, 2.0) / f))) + 1)
    reach = np.maximum(np.abs(cmin) / f, 1.0)        # own blur radius in blocks
    lev = np.clip(np.ceil(np.log2(reach)), 0, levels - 1).astype(np.int8)

    def at_own_level(pyr, mask):
        out = np.zeros(mask.shape, pyr[0].dtype)
        for lv in range(levels):
            m = mask & (lev == lv)
            if not m.any():
                continue
            p = pyr[lv]
            if lv:
                p = np.repeat(np.repeat(p, 1 << lv, axis=0), 1 << lv, axis=1)[:hh, :hw]
            out[m] = p[m]
        return out

    local_max = at_own_level(_max_pyramid(cmax_pyr_base, levels), np.ones_like(cmin, bool))
    occ = local_max > cmin + (1.0 + 0.25 * np.abs(cmin))
    if not occ.any():
        return None
    # Where can the hidden surface be seen?  Within the occluder's radius of a non-occluder.
    seen = occ & (at_own_level(_max_pyramid((~occ).astype(_F32), levels), occ) > 0)
    if not seen.any():
        return None
    jobs = []
    for lo, hi in zip(_FILL_BANDS[:-1], _FILL_BANDS[1:]):
        band = seen & (cmin >= lo) & (cmin < hi)
        if not band.any():
            continue
        top = float(cmin[band].max())
        valid = cmin > top + 1.0 + 0.25 * abs(top)
        if not valid.any():
            continue
        jobs.append((band, valid))
    return (levels, jobs) if jobs else None


def _samples_where(samples, keep):
    """The samples whose ``keep`` is True."""
    if keep.all():
        return samples
    return Samples(samples.idx[keep], samples.col[:, keep], samples.cov[keep],
                   samples.coc[keep])


def _reach_max(values, reach, block=4):
    """Per ``block`` x ``block`` block of 2-D ``values``: (a bound of) the largest value within
    ``reach`` (per block, pixels) of the block -- at least that far, at most about twice."""
    vb = _pool_max(values, block)
    rb = _pool_max(reach, block)
    levels = max(1, int(math.ceil(math.log2(max(float(rb.max()), 2.0) / block))) + 1)
    lev = np.clip(np.ceil(np.log2(np.maximum(rb / block, 1.0))), 0, levels - 1).astype(np.int8)
    hh, hw = vb.shape
    out = np.full(vb.shape, -np.inf, _F32)
    for lv, p in enumerate(_max_pyramid(vb, levels)):
        m = lev == lv
        if not m.any():
            continue
        if lv:
            p = np.repeat(np.repeat(p, 1 << lv, axis=0), 1 << lv, axis=1)[:hh, :hw]
        out[m] = p[m]
    return out


def hidden_samples(frame, hidden, block=4):
    """Stage *hidden samples* (part of *fill hidden*): the given hidden surfaces (a list of
    :class:`HiddenLayer`, already those clearly behind the visible surface) as extra samples
    of the padded frame -- coverage their alpha, radius their own -- where a lens can see
    them: near a visible surface farther than the pixel's own (within the larger of the two
    blur radii; elsewhere nearer surfaces cover them whatever the blur).  Returns (list of
    :class:`Samples`, (Hp * Wp,) bool map of the pixels that got one)."""
    Hp, Wp = frame.shape
    pad, H, W = frame.pad, frame.H, frame.W
    coc = frame.coc
    h_max = np.full((Hp, Wp), -np.inf, _F32)  # per pixel, the farthest hidden radius
    placed = []
    for layer in hidden:
        src, flat = _padded_positions(layer.idx, H, W, pad)
        placed.append((src, flat))
        hm = h_max.reshape(-1)
        hm[flat] = np.maximum(hm[flat], layer.coc[src])  # (a layer's positions are unique)
    reach = np.maximum(np.abs(coc), np.where(np.isfinite(h_max), np.abs(h_max), 0)) + 1.0
    far_near = _reach_max(coc, reach, block)
    # A block is "open" when something visible within reach lies clearly behind its
    # front-most pixel.
    open_blk = far_near > -_pool_max(-coc, block) + _HIDDEN_BEHIND_PX
    open_px = np.repeat(np.repeat(open_blk, block, axis=0), block, axis=1)[:Hp, :Wp]
    open_px = open_px.reshape(-1)
    has = np.zeros(Hp * Wp, bool)
    out = []
    for layer, (src, flat) in zip(hidden, placed):
        keep = open_px[flat]
        if not keep.any():
            continue
        flat, src = flat[keep], src[keep]
        has[flat] = True
        out.append(_samples(flat, layer.col[:, src], layer.cov[src], layer.coc[src]))
    return out, has


def _padded_positions(idx, H, W, pad):
    """Where the samples at flat unpadded pixels ``idx`` lie in the frame padded by ``pad``:
    ``(source sample, padded flat index)``, the samples on the frame's edge repeated across
    the border as the frame's own edge pixels are (see :func:`prepare`)."""
    Wp = W + 2 * pad
    y, x = np.divmod(idx, W)
    src = [np.arange(idx.size)]
    pos_y, pos_x = [y], [x]
    ks = np.arange(1, pad + 1)
    # Each edge, then each corner (a pad x pad block).
    for sel, dy, dx in (((y == 0), -ks, None), ((y == H - 1), ks, None),
                        ((x == 0), None, -ks), ((x == W - 1), None, ks)):
        i = np.flatnonzero(sel)
        if i.size == 0 or pad == 0:
            continue
        src.append(np.repeat(i, pad))
        if dy is not None:
            pos_y.append((y[i][:, None] + dy[None, :]).ravel())
            pos_x.append(np.repeat(x[i], pad))
        else:
            pos_y.append(np.repeat(y[i], pad))
            pos_x.append((x[i][:, None] + dx[None, :]).ravel())
    for cy, cx, sy, sx in ((0, 0, -1, -1), (0, W - 1, -1, 1), (H - 1, 0, 1, -1),
                           (H - 1, W - 1, 1, 1)):
        i = np.flatnonzero((y == cy) & (x == cx))
        if i.size == 0 or pad == 0:
            continue
        gy, gx = np.meshgrid(ks * sy, ks * sx, indexing="ij")
        src.append(np.repeat(i, pad * pad))
        pos_y.append((cy + np.tile(gy.ravel(), i.size)))
        pos_x.append((cx + np.tile(gx.ravel(), i.size)))
    src = np.concatenate(src)
    flat = (np.concatenate(pos_y) + pad) * Wp + (np.concatenate(pos_x) + pad)
    return src, flat


# --------------------------------------------------------------------------------------------
# Convolution of one layer


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


def _tile_size(kh, kw, target=128):
    """Tile edge T (and FFT sizes) for overlap-add: T + k - 1 is a fast FFT length."""
    fy = _next_fast_len(target + kh - 1)
    fx = _next_fast_len(target + kw - 1)
    return fy, fx, fy - kh + 1, fx - kw + 1


def _occupied_tiles(cov, ty, tx, nz=None):
    """Boolean (ny, nx) map of the ty x tx tiles of ``cov`` that hold anything (``nz``:
    ``cov != 0`` if already known)."""
    h, w = cov.shape
    ny, nx = -(-h // ty), -(-w // tx)
    occ = np.zeros((ny, nx), bool)
    if nz is None:
        nz = cov != 0
    rows = np.flatnonzero(nz.any(axis=1))
    if rows.size == 0:
        return occ
    for iy in np.unique(rows // ty):
        band = nz[iy * ty:(iy + 1) * ty]
        cols = np.flatnonzero(band.any(axis=0))
        occ[iy, np.unique(cols // tx)] = True
    return occ


def _convolve_fft_tiled(planes, kernel, occ, fy, fx, ty, tx, batch=24, collect=None):
    """Full linear convolution by overlap-add of FFT-convolved tiles (only occupied ones).

    With a list ``collect``, the tiles are appended to it as ``(y0, x0, array (C, fy, fx))``
    (offsets in the output) instead of being added into a full output array."""
    c, h, w = planes.shape
    kh, kw = kernel.shape
    out = None if collect is not None else np.zeros((c, h + kh - 1, w + kw - 1), _F32)
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
            y0, x0 = iy * ty, ix * tx
            if collect is not None:
                collect.append((y0, x0, res[n].astype(_F32)))
                continue
            dst = out[:, y0:y0 + fy, x0:x0 + fx]
            dst += res[n, :, :dst.shape[1], :dst.shape[2]]
        del res
    return out


#: Tile edges (px) the FFT convolution chooses from (:func:`_fft_plan`); each twice the one
#: before, so that the occupancy of the larger tiles follows from the smallest's.
_TILE_EDGES = (16, 32, 64, 128)

#: Cost model of the convolutions (ns), measured on numpy 1.26 (whose FFT works in
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
_COST = {"fft": 25.0, "tile": 8000.0, "direct": 1.2, "splat": 4.0, "splat_plane": 5.0,
         "plane": 3.0, "direct_tile": 2.0, "tile_direct": 3000.0}


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
                out5[:, by + qy, :sub.shape[2], bx + qx, :sub.shape[3]] += sub
        del res
    return out[:, :h + kh - 1, :w + kw - 1]


#: Sparkle detection: brighter than ``abs`` (mean of R, G, B) and ``rel`` times the mean
#: of the surrounding ``block`` x ``block`` pixels.
_SPARKLE = {"abs": 1.0, "rel": 2.0, "block": 16}


def _extract_sparkles(planes):
    """Take the light of small highlights out of a layer's full-resolution colour planes.

    ``planes`` (C >= 3, h, w), modified in place.  A sparkle is a pixel brighter than 1 (mean
    of R, G, B) and than three times the mean of its ``block`` x ``block`` surroundings; the
    light above that level (same hue) is removed and returned as (3, h, w), or None.  Layers
    with big radii are blurred at reduced resolution, which would soften the crisp edge of a
    highlight's bokeh disk; the sparkles are blurred at full resolution instead."""
    block, rel, absolute = _SPARKLE["block"], _SPARKLE["rel"], 3.0 * _SPARKLE["abs"]
    lum = planes[0] + planes[1] + planes[2]
    if not (lum > absolute).any():
        return None
    h, w = lum.shape
    mean = _downsample_sum(lum, block) * _F32(1.0 / (block * block))
    mean = np.repeat(np.repeat(mean, block, axis=0), block, axis=1)[:h, :w]
    thr = np.maximum(rel * mean, absolute)
    hot = lum > thr
    if not hot.any():
        return None
    # Small highlights only: a pixel with bright pixels 6 px away on both sides (across or
    # down) belongs to a bright area (a lamp shade, a lit window, a strip), which is blurred
    # with the rest and whose hidden parts the hole fill may continue.
    # Pixels where the layer has nothing (hidden by nearer surfaces) count as bright: a strip
    # cut by an occluder is still a strip.
    d = 6
    near = hot | (planes[-1] <= 0)
    wide = np.zeros_like(hot)
    wide[:, d:-d] = near[:, :-2 * d] & near[:, 2 * d:]
    wide[d:-d, :] |= near[:-2 * d, :] & near[2 * d:, :]
    hot &= ~wide
    if not hot.any():
        return None
    ys, xs = np.nonzero(hot)
    frac = 1.0 - thr[ys, xs] / lum[ys, xs]
    sp = np.zeros((3, h, w), _F32)
    for c in range(3):
        v = planes[c][ys, xs] * frac
        sp[c][ys, xs] = v
        planes[c][ys, xs] -= v
    return sp


def _may_sparkle(flat_col, sel, weight):
    """Whether any of the samples ``sel`` (flat pixels, layer weights ``weight``) is bright
    enough to be a small highlight (:func:`_extract_sparkles`' absolute threshold, less a
    margin for rounding: when in doubt, it may)."""
    lum = flat_col[0, sel] + flat_col[1, sel]
    lum += flat_col[2, sel]
    lum *= weight
    return bool((lum > 0.999 * 3.0 * _SPARKLE["abs"]).any())


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


class SparseLayer(NamedTuple):
    """A layer's content kept as samples (a sparse layer at full resolution): ``shape`` of its
    planes (C, h, w), flat pixel ``pix`` in that box (repeats add up) and ``vals`` (C, n)."""

    shape: tuple
    pix: np.ndarray
    vals: np.ndarray

    def dense(self, channel=None):
        """The planes (C, h, w), or one channel of them as (1, h, w)."""
        chans = range(self.shape[0]) if channel is None else (channel,)
        planes = np.zeros((len(chans),) + tuple(self.shape[1:]), _F32)
        flat = planes.reshape(len(chans), -1)
        for n, ci in enumerate(chans):
            np.add.at(flat[n], self.pix, self.vals[ci])
        return planes


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


# --------------------------------------------------------------------------------------------
# The engine


#: Rows per strip of :func:`_composite` (bounds its temporaries: a few full-width rows).
_COMPOSITE_ROWS = 128


def _composite(acc, budget, blurred, y0, x0, opaque, far=None):
    """Budget compositing of ``blurred`` (C, h, w: colour channels then coverage last) into
    ``acc`` (C-1 or 4 planes) and ``budget`` at offset (y0, x0); clipped to the frame.

    ``far``: (planes (4, H, W), set (H, W) bool) that keep, per pixel, the normalised colour
    of the farthest layer seen so far (what fills the disocclusion holes at the end).  Done in
    strips of rows (element by element, so the strips do not change the result)."""
    H, W = budget.shape
    _, h, w = blurred.shape
    ya, xa = max(0, -y0), max(0, -x0)
    yb, xb = min(h, H - y0), min(w, W - x0)
    if ya >= yb or xa >= xb:
        return
    for r0 in range(ya, yb, _COMPOSITE_ROWS):
        r1 = min(yb, r0 + _COMPOSITE_ROWS)
        blk = blurred[:, r0:r1, xa:xb]
        sl = (slice(y0 + r0, y0 + r1), slice(x0 + xa, x0 + xb))
        cov = np.maximum(blk[-1], 0)
        s = budget[sl]
        new_s = np.minimum(s + cov, 1.0)
        vis = new_s - s
        factor = vis / np.maximum(cov, 1e-7)
        ncol = blk.shape[0] - 1
        for i in range(ncol):
            acc[i][sl] += blk[i] * factor
        if opaque:
            acc[3][sl] += vis
        budget[sl] = new_s
        if far is not None:
            _track_far(far, blk[:ncol], cov, sl, opaque)


def _track_far(far, colour, cov, sl, opaque):
    planes, is_set = far
    m = cov > 0.02
    if not m.any():
        return
    inv = 1.0 / np.maximum(cov, 0.02)
    for i in range(colour.shape[0]):
        planes[i][sl] = np.where(m, colour[i] * inv, planes[i][sl])
    if opaque:
        planes[3][sl] = np.where(m, 1.0, planes[3][sl])
    is_set[sl] |= m


def defocus(rgba, depth, lens, settings=None, hidden=None):
    """Depth of field of a rendered frame.

    ``rgba``: float32 (H, W, 4) premultiplied (RGB (H, W, 3) is taken as opaque); ``depth``:
    float32 (H, W) planar depth (``+inf``/1e10 = background); ``lens``: a
    :class:`~blender_zdepth.core.lens.Lens`; ``settings``: :class:`DofSettings`.
    ``hidden``: None, or a sequence of ``(rgba_k, depth_k)`` -- premultiplied RGBA (H, W, 4)
    and planar depth (H, W) of surfaces behind the visible ones (depth-peeled renders, deep
    samples behind the front), registered pixel for pixel with the frame, near to far.  A
    pixel of such a layer with alpha <= 0 or a depth that is not finite, <= 0 or >= 1e10
    holds no sample.  Where one lies clearly behind the visible surface it is used as that
    pixel's hidden-surface sample (coverage = its alpha, blurred at its own radius) instead
    of the invented fill (see :func:`hidden_samples`).  ``rgba`` stays the full flattened
    image and ``depth`` its visible depth; None or empty gives exactly the result without.
    Returns float32 (H, W, 4) premultiplied RGBA."""
    settings = (settings or DofSettings()).validate()
    rgba = np.asarray(rgba)
    depth = np.asarray(depth)
    if rgba.ndim != 3 or rgba.shape[2] not in (3, 4):
        raise ZDepthError(f"the image must be H x W x 4 (RGBA) or x 3, not {rgba.shape}")
    if depth.shape != rgba.shape[:2]:
        raise ZDepthError(f"depth {depth.shape} and image {rgba.shape[:2]} sizes differ")
    H, W = depth.shape
    coc = coc_radius_px(depth, lens, W, H, max_radius=settings.max_radius)
    behind = None
    if hidden is not None and len(hidden):
        behind = _hidden_layers(hidden, depth, coc, lens, settings)
    # The radius map is handed over in a list, not kept here: the engine frees it once it
    # has its padded copy (33 MB at 4K).
    holder = [coc]
    del coc
    return _defocus_coc(rgba, holder, settings, lens.pixel_aspect, behind)


#: A hidden sample is used where its radius exceeds the visible one's by this much (px) and
#: it lies farther than the visible surface (as the push-pull fill's own samples).
_HIDDEN_BEHIND_PX = 0.5


class HiddenLayer(NamedTuple):
    """One layer of hidden samples, unpadded: flat pixel index (int64, n), premultiplied
    colour (float32, (4, n)), coverage = alpha (float32, n), signed radius (float32, n)."""

    idx: np.ndarray
    col: np.ndarray
    cov: np.ndarray
    coc: np.ndarray


def _hidden_layers(hidden, depth, coc, lens, settings):
    """Validate ``hidden`` (see :func:`defocus`) and keep, per layer, the samples that lie
    clearly behind the visible surface, with their radii from the same lens."""
    H, W = depth.shape
    out = []
    vis_depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.inf)
    for n, item in enumerate(hidden):
        try:
            h_rgba, h_depth = item
        except (TypeError, ValueError):
            raise ZDepthError(f"hidden layer {n + 1} must be a pair (rgba, depth)") from None
        h_rgba = np.asarray(h_rgba)
        h_depth = np.asarray(h_depth)
        if h_rgba.ndim != 3 or h_rgba.shape[:2] != (H, W) or h_rgba.shape[2] not in (3, 4):
            raise ZDepthError(f"hidden layer {n + 1}: the image must be {H} x {W} x 4 like "
                              f"the frame, not {h_rgba.shape}")
        if h_depth.shape != (H, W):
            raise ZDepthError(f"hidden layer {n + 1}: depth {h_depth.shape} and frame "
                              f"{(H, W)} sizes differ")
        alpha = h_rgba[..., 3] if h_rgba.shape[2] == 4 else np.ones((H, W), _F32)
        ok = (alpha > 0) & np.isfinite(h_depth) & (h_depth > 0) & (h_depth < BACKGROUND_DEPTH)
        ok &= np.all(np.isfinite(h_rgba), axis=2)
        if not ok.any():
            continue
        h_coc = coc_radius_px(np.where(ok, h_depth, 1.0), lens, W, H,
                              max_radius=settings.max_radius)
        ok &= (h_depth > vis_depth * (1 + 1e-4)) & (h_coc > coc + _HIDDEN_BEHIND_PX)
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            continue
        col = np.empty((4, idx.size), _F32)
        flat = h_rgba.reshape(-1, h_rgba.shape[2])
        for c in range(4):
            col[c] = flat[idx, c] if c < h_rgba.shape[2] else 1.0
        out.append(HiddenLayer(idx.astype(np.int64), col,
                               np.minimum(alpha.reshape(-1)[idx], 1.0).astype(_F32),
                               h_coc.reshape(-1)[idx].astype(_F32)))
    return out


_PAD_MODE = "despeckle"


def _pad_edges(a, pad, mode="edge"):
    """Fill the ``pad`` border of 2-D ``a`` from its inner block: ``"reflect"`` mirrors it,
    ``"edge"`` repeats the edge pixels."""
    if pad <= 0:
        return
    h, w = a.shape[0] - 2 * pad, a.shape[1] - 2 * pad
    if mode == "reflect" and h > pad and w > pad:
        a[:pad] = a[2 * pad:pad:-1]
        a[-pad:] = a[-pad - 2:-2 * pad - 2:-1]
        a[:, :pad] = a[:, 2 * pad:pad:-1]
        a[:, -pad:] = a[:, -pad - 2:-2 * pad - 2:-1]
        return
    if mode == "despeckle":
        # The edge pixels repeated, except small highlights (above 1 and above twice the
        # median of the 15 pixels along the edge around them), which get that median: a
        # surface cut by the frame continues, a highlight on the edge does not turn into a
        # streak pouring light back into the frame.
        from numpy.lib.stride_tricks import sliding_window_view

        def clean(v):
            med = np.median(sliding_window_view(np.pad(v, 7, mode="edge"), 15), axis=-1)
            med = med.astype(a.dtype)
            return np.where((v > 1.0) & (v > 2.0 * med), med, v)

        a[:pad, pad:-pad] = clean(a[pad, pad:-pad])
        a[-pad:, pad:-pad] = clean(a[-pad - 1, pad:-pad])
        a[:, :pad] = clean(a[:, pad])[:, None]
        a[:, -pad:] = clean(a[:, -pad - 1])[:, None]
        return
    a[:pad] = a[pad]
    a[-pad:] = a[-pad - 1]
    a[:, :pad] = a[:, pad:pad + 1]
    a[:, -pad:] = a[:, -pad - 1:-pad]


# --------------------------------------------------------------------------------------------
# The pipeline: prepare -> split edges -> fill hidden -> assign layers -> convolve (per layer)
# -> composite (near to far) -> finish -> output.  Each stage is a function of explicit inputs.


@dataclass
class Frame:
    """Output of :func:`prepare`: the padded, planar working copy of a frame.

    ``col`` float32 (4, Hp, Wp) premultiplied colour (alpha 1 for RGB input, non-finite values
    zeroed), ``coc`` float32 (Hp, Wp) signed radii (None once the layers are assigned), ``cov``
    float32 (Hp, Wp) coverage of each pixel's own sample (1, lowered by the edge split), ``pad``
    border width, ``H, W`` the frame's size, ``maxr`` the largest radius that occurs (capped),
    ``opaque`` whether every alpha is 1."""

    col: np.ndarray
    coc: np.ndarray
    cov: np.ndarray
    pad: int
    H: int
    W: int
    maxr: float
    opaque: bool

    @property
    def shape(self):
        return self.cov.shape


def prepare(rgba, coc, settings, pixel_aspect=1.0, hidden_max=0.0, pool=None):
    """Stage *prepare*: pad the frame by the largest radius (radii repeated from the edge,
    colours too except small highlights on the edge) and make planar working copies (the
    planes on ``pool``'s threads, if given).  ``hidden_max``: the largest radius of the hidden
    samples, if any."""
    H, W = coc.shape
    maxr = float(min(settings.max_radius, max(np.max(np.abs(coc)) if coc.size else 0,
                                              float(hidden_max))))
    ry_scale = max(1.0, float(pixel_aspect), 1.0 / float(settings.anamorphic))
    pad = int(math.ceil(maxr * ry_scale)) + 2
    opaque = rgba.shape[2] == 3 or bool(np.all(rgba[..., 3] == 1.0))
    Hp, Wp = H + 2 * pad, W + 2 * pad
    col = np.empty((4, Hp, Wp), _F32)
    cocp = np.empty((Hp, Wp), _F32)
    inner = (slice(pad, pad + H), slice(pad, pad + W))

    def plane(i):
        # Beyond the frame the geometry continues (radii repeated: a ground plane stays as
        # near as its last row); colours are repeated too, except small highlights on the
        # edge (they would pour a streak of light back into the frame).
        if i == 4:
            cocp[inner] = coc
            _pad_edges(cocp, pad, "edge")
            return
        a = col[i]
        if i < rgba.shape[2]:
            a[inner] = rgba[..., i]
            bad = ~np.isfinite(a[inner])
            if bad.any():
                a[inner][bad] = 0.0
        else:
            a[inner] = 1.0
        _pad_edges(a, pad, _PAD_MODE)

    _each(pool, plane, 5)
    cov = np.ones((Hp, Wp), _F32)
    return Frame(col, cocp, cov, pad, H, W, maxr, opaque)


@dataclass
class LayerAssignment:
    """Output of :func:`assign_layers`: for the pixels' own samples (``m_*``, flat indices
    into the padded frame) and the extra samples (``e_*``, indices into :class:`Samples`),
    the samples sorted by lower layer (``order``), where each layer's run starts
    (``bounds``, nl + 1) and the upper layer's weight of each sample (``t``)."""

    radii: np.ndarray
    m_order: np.ndarray
    m_bounds: np.ndarray
    m_t: np.ndarray
    e_order: np.ndarray
    e_bounds: np.ndarray
    e_t: np.ndarray
    boxes: np.ndarray = None  # (nl, 4) int64: y0, y1, x0, x1 bounding each layer (estimate)


def _run_boxes(pix, bounds, width):
    """Bounding boxes ``(n_runs, 4)`` (y0, y1, x0, x1; empty runs: y0 >= y1) of the runs
    ``pix[bounds[k]:bounds[k + 1]]`` of flat pixel indices."""
    n = bounds.size - 1
    out = np.zeros((n, 4), np.int64)
    out[:, 0] = out[:, 2] = np.iinfo(np.int64).max
    out[:, 1] = out[:, 3] = np.iinfo(np.int64).min
    sizes = np.diff(bounds)
    nz = np.flatnonzero(sizes)
    if nz.size == 0:
        return out
    rows, cols = np.divmod(pix, width)
    starts = bounds[nz]
    out[nz, 0] = np.minimum.reduceat(rows, starts)
    out[nz, 1] = np.maximum.reduceat(rows, starts) + 1
    out[nz, 2] = np.minimum.reduceat(cols, starts)
    out[nz, 3] = np.maximum.reduceat(cols, starts) + 1
    return out


def _sorted_by_layer(flat_coc, radii, start):
    """Layer assignment of one run of pixels (from flat index ``start``): (order sorted by
    lower layer, as absolute int32/int64 indices; run bounds (nl + 1); upper weights)."""
    i, t = _assign_layers(flat_coc, radii)
    order = np.argsort(i, kind="stable")
    bounds = np.searchsorted(i[order], np.arange(radii.size + 1))
    if start + flat_coc.size < 2**31:
        # int32 indices: half the memory of argsort's int64 (35 MB less at 4K), same values
        order = order.astype(np.int32)
    if start:
        order += start
    return order, bounds, t


#: Pixels per part of the layer assignment on several threads (smaller frames: one part).
_ASSIGN_PART = 1 << 20


def sort_pixels(coc, radii, pool=None, parts=1):
    """The pixels' own samples sorted by layer (the first half of :func:`assign_layers`),
    in up to ``parts`` runs of pixels: a list of ``(order, bounds, t)`` per run -- with
    ``pool``, futures of them, already running, so that the caller may do other work (the
    edge split, the hidden fill: neither changes the radii) while the frame is sorted."""
    flat = coc.reshape(-1)
    n = flat.size
    parts = max(1, min(int(parts), n // _ASSIGN_PART)) if pool is not None else 1
    if parts == 1 and pool is None:
        return [_sorted_by_layer(flat, radii, 0)]
    cuts = [n * j // parts for j in range(parts + 1)]
    return [pool.submit(_sorted_by_layer, flat[cuts[j]:cuts[j + 1]], radii, cuts[j])
            for j in range(parts)]


def assign_layers(coc, extra_coc, radii, extra_idx=None, pool=None, parts=1):
    """Stage *assign layers*: soft (tent) assignment of every sample to the two layers
    around its radius, sorted by layer (a stable radix sort: pixel order kept per layer).
    ``extra_idx`` (the extra samples' pixels) lets it also bound each layer's box, which
    the threads use to keep the memory in flight bounded.  With ``pool``, the pixels are
    sorted in up to ``parts`` runs at once and the runs joined layer by layer (the same
    order as one stable sort).  ``parts`` may instead be :func:`sort_pixels`' result (the
    pixels already sorted, or being sorted, on ``pool``)."""
    nl = radii.size
    n = coc.size
    if not isinstance(parts, list):
        parts = sort_pixels(coc, radii, pool, parts)
    runs = [r.result() if hasattr(r, "result") else r for r in parts]
    del parts
    if len(runs) == 1:
        m_order, m_bounds, m_t = runs[0]
        del runs
    else:
        m_t = np.concatenate([r[2] for r in runs])
        m_bounds = np.sum([r[1] for r in runs], axis=0)
        m_order = np.empty(n, runs[0][0].dtype if n < 2**31 else np.int64)
        pos = 0
        for k in range(nl):
            for order, bounds, _ in runs:
                run = order[bounds[k]:bounds[k + 1]]
                m_order[pos:pos + run.size] = run
                pos += run.size
        del runs
    e_i, e_t = _assign_layers(extra_coc, radii)
    e_order = np.argsort(e_i, kind="stable")
    e_bounds = np.searchsorted(e_i[e_order], np.arange(nl + 1))
    boxes = None
    if extra_idx is not None:
        width = coc.shape[-1]
        runs = _run_boxes(m_order, m_bounds, width)
        e_runs = _run_boxes(extra_idx[e_order], e_bounds, width)
        runs[:, ::2] = np.minimum(runs[:, ::2], e_runs[:, ::2])
        runs[:, 1::2] = np.maximum(runs[:, 1::2], e_runs[:, 1::2])
        # Layer k holds the runs k (lower layer k) and k - 1 (upper layer k).
        boxes = runs.copy()
        boxes[1:, ::2] = np.minimum(runs[1:, ::2], runs[:-1, ::2])
        boxes[1:, 1::2] = np.maximum(runs[1:, 1::2], runs[:-1, 1::2])
    return LayerAssignment(radii, m_order, m_bounds, m_t, e_order, e_bounds, e_t, boxes)


def _gather(order, bounds, tt, k, nl):
    """Indices (into the sample arrays) and layer weights of layer k's samples, or
    (None, None): the run whose lower layer is k (weight 1 - t), then the run whose upper
    layer is k (weight t, those above 0), written once into their result arrays."""
    empty = order[:0]
    lo = order[bounds[k]:bounds[k + 1]] if k < nl - 1 else empty
    up = order[bounds[k - 1]:bounds[k]] if k > 0 else empty
    w_up = None
    if up.size:
        w_up = tt[up]
        keep = w_up > 0
        if not keep.all():
            up, w_up = up[keep], w_up[keep]
        del keep
    n_lo, n = lo.size, lo.size + up.size
    if n == 0:
        return None, None
    if not up.size:
        w = tt[lo]
        np.subtract(1, w, out=w)
        return lo, w
    sel = np.empty(n, order.dtype)
    w = np.empty(n, _F32)
    sel[:n_lo] = lo
    sel[n_lo:] = up
    if n_lo:
        np.take(tt, lo, out=w[:n_lo])
        np.subtract(1, w[:n_lo], out=w[:n_lo])
    w[n_lo:] = w_up
    return sel, w


#: A full-resolution layer whose samples number fewer than this share of its box is kept as
#: samples (:class:`SparseLayer`) until its convolution.
_SPARSE_SHARE = 0.08


def layer_content(frame, extra, layers, k, s):
    """Layer k at scale s: ``(y0, x0, planes, (sy0, sx0, sparkles))`` -- premultiplied colour
    channels (3 for opaque frames, else 4) then coverage on the layer's bounding box (low-res
    coordinates y0, x0), and the layer's small highlights (full resolution, origin sy0, sx0)
    or None -- or None when the layer is empty."""
    Hp, Wp = frame.shape
    nl = layers.radii.size
    nch = 3 if frame.opaque else 4
    col, cov = frame.col, frame.cov
    m_sel, m_w = _gather(layers.m_order, layers.m_bounds, layers.m_t, k, nl)
    e_sel, e_w = _gather(layers.e_order, layers.e_bounds, layers.e_t, k, nl)
    if m_sel is None and e_sel is None:
        return None
    boxes = []
    if m_sel is not None:
        m_rows, m_cols = np.divmod(m_sel, Wp)
        boxes.append((int(m_rows.min()), int(m_rows.max()) + 1,
                      int(m_cols.min()), int(m_cols.max()) + 1))
    if e_sel is not None:
        e_pix = extra.idx[e_sel]
        e_rows = e_pix // Wp
        e_cols = e_pix - e_rows * Wp
        boxes.append((int(e_rows.min()), int(e_rows.max()) + 1,
                      int(e_cols.min()), int(e_cols.max()) + 1))
    # The layer's box, aligned to the scale (it may reach past the frame: planes are zero
    # there).
    y0 = min(b[0] for b in boxes) // s * s
    y1 = -(-max(b[1] for b in boxes) // s) * s
    x0 = min(b[2] for b in boxes) // s * s
    x1 = -(-max(b[3] for b in boxes) // s) * s
    bh, bw = (y1 - y0) // s, (x1 - x0) // s
    n_samples = (0 if m_sel is None else m_sel.size) + (0 if e_sel is None else e_sel.size)
    if s == 1 and n_samples < _SPARSE_SHARE * bh * bw:
        # A sparse layer (scattered samples over a large box): kept as samples, so that its
        # convolution may splat them instead of transforming the whole box.
        pix, vals = [], []
        if m_sel is not None:
            pix.append((m_rows - y0) * bw + (m_cols - x0))
            v = np.empty((nch + 1, m_sel.size), _F32)
            flat_col = col.reshape(4, -1)
            for c in range(nch):
                v[c] = m_w * flat_col[c, m_sel]
            v[nch] = m_w * cov.reshape(-1)[m_sel]
            vals.append(v)
        if e_sel is not None:
            pix.append((e_rows - y0) * bw + (e_cols - x0))
            v = np.empty((nch + 1, e_sel.size), _F32)
            for c in range(nch):
                v[c] = e_w * extra.col[c, e_sel] * _F32(1.0)
            v[nch] = e_w * extra.cov[e_sel] * _F32(1.0)
            vals.append(v)
        layer = SparseLayer((nch + 1, bh, bw), np.concatenate(pix),
                            np.concatenate(vals, axis=1))
        return y0, x0, layer, (0, 0, None)
    planes = np.zeros((nch + 1, bh, bw), _F32)
    sparkles = None
    sy0 = sx0 = 0
    if m_sel is not None:
        # The pixels' own samples, on their own box (extra samples may widen the layer's box a
        # lot), at full resolution first.
        my0, my1, mx0, mx1 = boxes[0]
        my0, mx0 = my0 // s * s, mx0 // s * s
        my1, mx1 = -(-my1 // s) * s, -(-mx1 // s) * s
        mh, mw = my1 - my0, mx1 - mx0
        ch, cw = min(my1, Hp) - my0, min(mx1, Wp) - mx0
        flat_col = col.reshape(4, -1)
        dense = m_sel.size > 0.3 * mh * mw
        if s > 1 and not _may_sparkle(flat_col, m_sel, m_w):
            # No highlight to keep at full resolution: one channel at a time, straight to the
            # layer's scale (a 4K layer's full-resolution planes are 36 MB each).
            oy, ox = (my0 - y0) // s, (mx0 - x0) // s
            if dense:
                del m_rows, m_cols  # not needed below (16 MB each for a big 4K layer)
                # The weights scattered on a frame-sized plane by the samples' own indices
                # (no index arithmetic over millions of samples), the box a view of it.
                wt = np.zeros(Hp * Wp, _F32)
                wt[m_sel] = m_w
                wt = wt.reshape(Hp, Wp)[my0:my0 + ch, mx0:mx0 + cw]
                box = (slice(my0, my0 + ch), slice(mx0, mx0 + cw))
                full = np.zeros((mh, mw), _F32)
                for c in range(nch + 1):
                    np.multiply(col[c][box] if c < nch else cov[box], wt,
                                out=full[:ch, :cw])
                    low = _downsample_sum(full, s)
                    low *= _F32(1.0 / (s * s))
                    planes[c, oy:oy + low.shape[0], ox:ox + low.shape[1]] = low
                del wt, full, low
            else:
                # Scattered samples: summed into their low-resolution pixels directly.
                lidx = ((m_rows - y0) // s) * bw + (m_cols - x0) // s
                flat = planes.reshape(nch + 1, -1)
                norm = 1.0 / (s * s)
                for c in range(nch + 1):
                    v = flat_col[c, m_sel] if c < nch else cov.reshape(-1)[m_sel]
                    flat[c] += np.bincount(lidx, weights=m_w * v * norm, minlength=bh * bw)
                del lidx
        else:
            full = np.zeros((nch + 1, mh, mw), _F32)
            lidx = (m_rows - my0) * mw + (m_cols - mx0)
            if dense:
                # Dense: scatter the layer weights once, multiply whole planes.
                wt = np.zeros(mh * mw, _F32)
                wt[lidx] = m_w
                wt = wt.reshape(mh, mw)[:ch, :cw]
                box = (slice(my0, my0 + ch), slice(mx0, mx0 + cw))
                for c in range(nch):
                    np.multiply(col[c][box], wt, out=full[c, :ch, :cw])
                np.multiply(cov[box], wt, out=full[nch, :ch, :cw])
                del wt
            else:
                flat = full.reshape(nch + 1, -1)
                for c in range(nch):
                    flat[c, lidx] = m_w * flat_col[c, m_sel]
                flat[nch, lidx] = m_w * cov.reshape(-1)[m_sel]
            del lidx
            if s > 1:
                with _stage("sparkles"):
                    sparkles = _extract_sparkles(full)
                sy0, sx0 = my0, mx0
                full = _downsample_sum(full, s)
                full *= _F32(1.0 / (s * s))
            oy, ox = (my0 - y0) // s, (mx0 - x0) // s
            planes[:, oy:oy + full.shape[1], ox:ox + full.shape[2]] = full
            del full
    if e_sel is not None:
        lidx = ((e_rows - y0) // s) * bw + (e_cols - x0) // s
        flat = planes.reshape(nch + 1, -1)
        norm = _F32(1.0 / (s * s))
        for c in range(nch):
            np.add.at(flat[c], lidx, e_w * extra.col[c, e_sel] * norm)
        np.add.at(flat[nch], lidx, e_w * extra.cov[e_sel] * norm)
    return y0 // s, x0 // s, planes, (sy0, sx0, sparkles)


class BlurredLayer(NamedTuple):
    """Output of :func:`convolve_layer`: the layer's blurred planes (colour channels then
    coverage) at its group's scale with their origin ``(y0, x0)`` in that scale's
    coordinates, and its blurred highlight tiles (full resolution, ``(y, x, (3, h, w))``)."""

    y0: int
    x0: int
    planes: np.ndarray
    sparkles: list


def convolve_layer(content, radius, s, gs, settings, pixel_aspect):
    """Stage *convolve*: blur one layer's content (from :func:`layer_content`, scale ``s``)
    with the aperture of signed ``radius`` (full-resolution pixels), its highlights at
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
            kfull = aperture_kernel(radius / ss, settings, pixel_aspect)
            fy, fx, ty, tx = _tile_size(*kfull.shape)
            occ = _occupied_tiles(sparkles[0] + sparkles[1] + sparkles[2], ty, tx)
            tiles = []
            _convolve_fft_tiled(sparkles, kfull, occ, fy, fx, ty, tx, collect=tiles)
            oy_ = sy0 // ss - kfull.shape[0] // 2
            ox_ = sx0 // ss - kfull.shape[1] // 2
            for a, b, t in tiles:
                if ss > 1:
                    t = _upsample_linear(t, ss, t.shape[1] * ss, t.shape[2] * ss)
                tiles_out.append(((oy_ + a) * ss, (ox_ + b) * ss, t))
            del sparkles, tiles
    kernel = aperture_kernel(radius / s, settings, pixel_aspect)
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


def layer_groups(radii, quality):
    """Groups of consecutive layers, near to far: ``(scale of each layer, [(low, [k, ...])])``
    -- the full-resolution layers around focus and, on each side, the reduced-resolution
    layers (composited together at the side's finest reduced scale, merged once)."""
    scales = [_layer_scale(r, quality) for r in radii]
    groups = []
    for k in range(len(radii)):
        low = scales[k] > 1
        if groups and groups[-1][0] == low:
            groups[-1][1].append(k)
        else:
            groups.append((low, [k]))
    return scales, groups


def _blur_layer(frame, extra, layers, k, s, gs, settings, pixel_aspect):
    """Layer k's content and convolution (a :class:`BlurredLayer`, or None when empty)."""
    with _stage(f"layer content s={s}"):
        content = layer_content(frame, extra, layers, k, s)
    if content is None:
        return None
    return convolve_layer(content, layers.radii[k], s, gs, settings, pixel_aspect)


#: Memory (bytes, estimated) that layers being blurred in parallel may hold at once; one
#: layer always runs, however big.  It bounds the peak of a 4K frame with many threads (whose
#: full-frame layers, ~290-370 MB estimated, run one at a time) and lets two full-frame layers
#: of a 1080p frame (~140 MB each) run at once.
_INFLIGHT_BYTES = 320 * 2**20


def _ordered_map(pool, fn, items, cost=None, budget=_INFLIGHT_BYTES, window=None,
                 ahead=None):
    """``fn(item)`` for every item, yielded in order; with a thread pool, later items are
    computed ahead while earlier results are consumed -- at most ``window`` of them
    unfinished at once (running or queued), at most ``ahead`` (default ``4 * window``)
    submitted and not yet consumed, and no more than ``budget`` of their summed
    ``cost(item)`` (the first pending one always runs).  While the next result in order is
    not ready, every other item that finishes lets another start (a long item does not
    leave the other threads idle).  An item's cost is released when the next result is
    asked for (its consumer is done)."""
    if pool is None:
        for item in items:
            yield fn(item)
        return
    window = window or 1
    ahead = max(window, ahead or 4 * window)
    pending = deque()  # (future, cost)
    held = 0
    items = iter(items)
    nxt = next(items, _DONE)
    try:
        while True:
            running = sum(1 for f, _ in pending if not f.done())
            while nxt is not _DONE and running < window and len(pending) < ahead:
                c = cost(nxt) if cost else 0
                if pending and held + c > budget:
                    break
                pending.append((pool.submit(fn, nxt), c))
                held += c
                running += 1
                nxt = next(items, _DONE)
            if not pending:
                return
            fut, c = pending[0]
            if not fut.done() and nxt is not _DONE and running == window:
                # Wait for any item in flight: a finished one frees a thread for the next.
                unfinished = [f for f, _ in pending if not f.done()]
                if len(unfinished) == window:
                    wait(unfinished, return_when=FIRST_COMPLETED)
                continue
            pending.popleft()
            result = fut.result()
            yield result
            del result
            held -= c
    finally:
        for fut, _ in pending:
            fut.cancel()


_DONE = object()


def _layer_bytes(layers, k, s, nch):
    """Rough peak bytes of blurring layer k at scale s (its planes, the convolution's output
    and FFT buffers, the full-resolution content of reduced layers)."""
    if layers.boxes is None:
        return 0
    y0, y1, x0, x1 = (int(v) for v in layers.boxes[k])
    if y0 >= y1 or x0 >= x1:
        return 0
    area = (y1 - y0) * (x1 - x0)
    r = abs(float(layers.radii[k]))
    low = (y1 - y0) // s + 2 * r / s + 2, (x1 - x0) // s + 2 * r / s + 2
    n = 4 * (nch + 1) * (2.5 * low[0] * low[1] + (area if s > 1 else 0))
    return int(n) + 48 * 2**20


#: Frames from this many padded pixels up return freed memory to the system after each
#: layer when they run on several threads (:func:`.malloc.release_free_memory`).
_TRIM_PIXELS = 4_000_000


def _zeroed_planes(shapes):
    """Zero-filled float32 arrays of these shapes, written through (their pages touched)."""
    out = []
    for shape in shapes:
        a = np.empty(shape, _F32)
        a.fill(0)
        out.append(a)
    return out


def composite_layers(frame, extra, layers, settings, pixel_aspect=1.0, pool=None,
                     buffers=None):
    """Stages *convolve* and *composite*: every layer blurred (on ``pool``'s threads, if
    given, several at once) and composited near to far by coverage budget (in order, so the
    result does not depend on the threads).  Returns ``(acc, budget, far)``: accumulated
    premultiplied colour (4, Hp, Wp), coverage budget (Hp, Wp), and the farthest layers' own
    colour (for the disocclusion holes, or None)."""
    Hp, Wp = frame.shape
    opaque = frame.opaque
    radii = layers.radii
    if buffers is None:
        acc = np.zeros((4, Hp, Wp), _F32)
        budget = np.zeros((Hp, Wp), _F32)
    else:
        # Zeroed ahead on a pool thread (see _run_pipeline), or a future of them.
        acc, budget = buffers.result() if hasattr(buffers, "result") else buffers
        del buffers
    far = None  # allocated below if the last group is at full resolution
    scales, groups = layer_groups(radii, settings.quality)
    nch = 3 if opaque else 4
    # Big frames on several threads: freed buffers go back to the system after each layer
    # (else each thread's allocator arena keeps its own, ~250 MB more at 4K on two threads).
    trim = pool is not None and Hp * Wp >= _TRIM_PIXELS
    group_scale = {}
    for low, ks in groups:
        gs = min(scales[k] for k in ks) if low else 1
        for k in ks:
            group_scale[k] = gs
    stream = _ordered_map(
        pool,
        lambda k: _blur_layer(frame, extra, layers, k, scales[k], group_scale[k], settings,
                              pixel_aspect),
        range(radii.size), cost=lambda k: _layer_bytes(layers, k, scales[k], nch),
        budget=_INFLIGHT_BYTES, window=settings.thread_count() + 1)

    for gi, (low, ks) in enumerate(groups):
        last = gi == len(groups) - 1
        # The farthest layers' own colour fills disocclusion holes (see finish); it is
        # tracked in the last group only (nothing lies behind it).
        if not low:
            gs = 1
            g_acc, g_budget = acc, budget
            if last:
                far = (np.zeros((4, Hp, Wp), _F32), np.zeros((Hp, Wp), bool))
            g_far = far
        else:
            gs = min(scales[k] for k in ks)
            gh, gw = -(-Hp // gs), -(-Wp // gs)
            g_acc = np.zeros((4, gh, gw), _F32)
            g_budget = np.zeros((gh, gw), _F32)
            g_far = (np.zeros((4, gh, gw), _F32), np.zeros((gh, gw), bool)) if last else None
        touched = None
        g_sparkles = []  # full-resolution blurred highlight tiles of this group
        for k in ks:
            layer = next(stream)
            if layer is None:
                continue
            g_sparkles.extend(layer.sparkles)
            oy, ox, blurred = layer.y0, layer.x0, layer.planes
            with _stage(f"composite s={gs}"):
                _composite(g_acc, g_budget, blurred, oy, ox, opaque, g_far)
            box = (oy, ox, oy + blurred.shape[1], ox + blurred.shape[2])
            del layer, blurred  # before the next layer's buffers are made
            if trim:
                _release_free_memory()
            touched = box if touched is None else (min(touched[0], box[0]),
                                                   min(touched[1], box[1]),
                                                   max(touched[2], box[2]),
                                                   max(touched[3], box[3]))
        if gs > 1 and touched is not None:
            gh, gw = g_budget.shape
            ty0, tx0 = max(0, touched[0]), max(0, touched[1])
            ty1, tx1 = min(gh, touched[2]), min(gw, touched[3])
            # Full-resolution block covered by the touched low-res block (+1 px for the
            # bilinear support), clipped to the frame.
            fy0, fx0 = max(0, (ty0 - 1) * gs), max(0, (tx0 - 1) * gs)
            fy1, fx1 = min(Hp, (ty1 + 1) * gs), min(Wp, (tx1 + 1) * gs)
            with _stage("merge groups"):
                if g_far is not None:
                    _fill_holes(g_acc, g_budget, g_far)
                # (opaque frames: the group's alpha is its budget, no need to carry it)
                # Merge the group as one layer whose "blurred coverage" is its budget; its
                # planes are upsampled one at a time (a 4K frame's full-resolution planes are
                # 35 MB each).
                _merge_group(acc, budget, list(g_acc[:3] if opaque else g_acc) + [g_budget],
                             gs, (fy1 - fy0, fx1 - fx0), fy0, fx0, g_sparkles)
        del g_acc, g_budget, g_far, g_sparkles
    stream.close()
    return acc, budget, far


def finish(acc, budget, far, col, pool=None):
    """Stage *finish* (in place on ``acc``): disocclusion holes (coverage short of 1: a
    blurred layer's disk reaches where nearer pixels hid it) take the farthest layers' own
    colour -- the light missing there is that background's; elsewhere normalise by the
    coverage received; pixels that received nothing keep their own colour ``col``.  The
    channels on ``pool``'s threads, if given."""
    if far is not None:
        _fill_holes(acc, budget, far)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(budget > 1e-4, 1.0 / np.maximum(budget, 1e-4), 0.0).astype(_F32)
    hole = budget <= 1e-4
    any_hole = bool(hole.any())

    def channel(i):
        acc[i] *= inv
        if any_hole:
            acc[i][hole] = col[i][hole]

    _each(pool, channel, 4)
    return acc


def _defocus_coc(rgba, coc, settings, pixel_aspect=1.0, hidden=None):
    """:func:`defocus` from a signed radius map (horizontal pixels; or a list holding it,
    which is emptied, so that the map is freed early): the pipeline.  ``hidden``: a list of
    :class:`HiddenLayer` (or None)."""
    holder = coc if isinstance(coc, list) else [coc]
    del coc
    threads = settings.thread_count()
    if threads <= 1:
        return _run_pipeline(rgba, holder, settings, pixel_aspect, None, hidden)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="zdepth-dof") as pool:
        return _run_pipeline(rgba, holder, settings, pixel_aspect, pool, hidden)


def _run_pipeline(rgba, holder, settings, pixel_aspect, pool, hidden=None):
    """The stages (``pool``: a thread pool, or None for one thread; ``holder``: a list
    holding the radius map, emptied here so that it is freed after :func:`prepare`)."""
    coc = holder.pop()
    hidden_max = max((float(np.max(np.abs(h.coc))) for h in hidden or ()), default=0.0)
    with _stage("prepare"):
        frame = prepare(rgba, coc, settings, pixel_aspect, hidden_max, pool)
        del coc  # the padded copy is used from here on
    if frame.maxr < 0.25:
        return rgba_out(frame.col, frame.pad, frame.H, frame.W, rgba)
    radii = layer_radii(frame.maxr, settings.quality, frame.coc)
    sorting = None
    # Big frames (4K) keep the stages one after the other: overlapped, their buffers would
    # add up (the peak memory target).
    early = pool is not None and frame.shape[0] * frame.shape[1] < _TRIM_PIXELS
    if early:
        # The pixels' layer sort needs only the radii, which the edge split and the hidden
        # fill leave alone: it runs on the pool meanwhile (those two stages are mostly
        # serial on a frame with few depth edges).
        with _stage("assign"):
            sorting = sort_pixels(frame.coc, radii, pool, settings.thread_count())
    # Likewise the hidden fill's plan (where and what to fill) reads the radii only.
    plan = pool.submit(fill_plan, frame.coc, frame.maxr) if early else None
    # The compositing's accumulators are zeroed meanwhile too: the first touch of their
    # fresh pages (45 MB at 1080p) then costs a thread that would otherwise wait, not the
    # main thread while it composites.  (On big frames they would add 170 MB at 4K to the
    # peak of the stages before the layers.)
    buffers = pool.submit(_zeroed_planes, ((4,) + frame.shape, frame.shape)) \
        if early else None
    with _stage("split edges"):
        parts = split_edges(frame.col, frame.coc, frame.cov, pool=pool)
    with _stage("fill hidden"):
        fill = fill_hidden(frame.col, frame.coc, frame.maxr, pool=pool, plan=plan)
        del plan
        if hidden:
            given, has = hidden_samples(frame, hidden)
            # The invented fill stays only where no real hidden sample is given.
            fill = [_samples_where(f, ~has[f.idx]) for f in fill]
            fill += given
        parts += fill
        del fill
    extra = _concat_samples(parts)
    del parts
    with _stage("assign"):
        layers = assign_layers(frame.coc, extra.coc, radii,
                               extra.idx if pool is not None else None, pool,
                               sorting if sorting is not None else settings.thread_count())
        del sorting
        # the radii are not needed past the layer assignment
        frame.coc = None
        extra = extra._replace(coc=None)
    acc, budget, far = composite_layers(frame, extra, layers, settings, pixel_aspect, pool,
                                        buffers)
    del buffers
    del layers, extra
    with _stage("finish"):
        finish(acc, budget, far, frame.col, pool)
        del far
    with _stage("output"):
        return rgba_out(acc, frame.pad, frame.H, frame.W, rgba, pool)


def _fill_holes(acc, budget, far):
    """Top up coverage short of 1 with the tracked far colour, where there is one."""
    planes, is_set = far
    if not is_set.any():
        return
    missing = np.where(is_set, 1.0 - budget, 0.0).astype(_F32)
    for i in range(4):
        acc[i] += planes[i] * missing
    budget += missing


def _merge_group(acc, budget, low, scale, size, y0, x0, sparkles=()):
    """Add a group's (colour, budget) as one layer behind what ``acc`` holds; its
    full-resolution highlight tiles (``(y, x, array (3, h, w))``) are seen as much as the
    group is.

    ``low``: the group's planes at 1/``scale`` resolution (colour channels, then its budget);
    each is upsampled (bilinear) to the full-resolution block of ``size`` (h, w) at (y0, x0)
    when it is needed, so that only one full-resolution plane lives at a time."""
    h, w = size
    sl = (slice(y0, y0 + h), slice(x0, x0 + w))

    def up(plane):
        return _upsample_linear(plane, scale, h, w, y0, x0)

    g = up(low[-1])
    np.clip(g, 0, 1, out=g)
    s = budget[sl]
    new_s = np.add(s, g)
    np.minimum(new_s, 1.0, out=new_s)
    vis = np.subtract(new_s, s)
    factor = np.divide(vis, np.maximum(g, 1e-7, out=g), out=g)  # g is not needed after this
    del g
    for i in range(len(low) - 1):
        u = up(low[i])
        acc[i][sl] += np.multiply(u, factor, out=u)
        del u
    if len(low) == 4:  # opaque: alpha is the visible coverage
        acc[3][sl] += vis
    budget[sl] = new_s
    for ty, tx, tile in sparkles:
        ya, xa = max(ty, y0), max(tx, x0)
        yb, xb = min(ty + tile.shape[1], y0 + h), min(tx + tile.shape[2], x0 + w)
        if ya >= yb or xa >= xb:
            continue
        f = factor[ya - y0:yb - y0, xa - x0:xb - x0]
        for i in range(3):
            acc[i][ya:yb, xa:xb] += tile[i, ya - ty:yb - ty, xa - tx:xb - tx] * f


def rgba_out(planes, pad, H, W, rgba, pool=None):
    """Stage *output*: the frame's part of the planar ``planes`` (4, Hp, Wp) as interleaved
    float32 (H, W, 4) (alpha 1 for an RGB input); the channels on ``pool``'s threads, if
    given."""
    out = np.empty((H, W, 4), _F32)

    def channel(i):
        out[..., i] = 1.0 if i == 3 and rgba.shape[2] == 3 else \
            planes[i, pad:pad + H, pad:pad + W]

    _each(pool, channel, 4)
    return out


# --------------------------------------------------------------------------------------------
# Focus picking and the diagnostic view


def focus_from_pixel(depth, x, y, size=5):
    """Focus distance picked at pixel column ``x``, row ``y`` (row 0 = top, as stored in EXR):
    the median of the finite depths in a ``size`` x ``size`` neighbourhood (robust against
    the un-anti-aliased depth of edge pixels).  Raises :class:`ZDepthError` if the pixel lies
    outside the image or only background is around it."""
    depth = np.asarray(depth)
    h, w = depth.shape
    x, y = int(round(float(x))), int(round(float(y)))
    if not (0 <= x < w and 0 <= y < h):
        raise UsageError(f"focus pixel ({x}, {y}) is outside the {w}x{h} image")
    r = max(0, int(size) // 2)
    block = depth[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1].astype(np.float64)
    vals = block[np.isfinite(block) & (block > 0) & (block < BACKGROUND_DEPTH)]
    if vals.size * 2 <= block.size:
        raise ZDepthError(f"focus pixel ({x}, {y}) looks at the background (no surface): pick "
                          f"a pixel on an object or give a focus distance")
    return float(np.median(vals))


def focal_plane_view(rgba, depth, lens, settings=None, in_focus_px=0.5):
    """Diagnostic picture: red in front of the focal plane, green in focus (|CoC| <=
    ``in_focus_px``), blue behind, brighter for stronger blur, over a dimmed grey version of
    the image.  Returns float32 (H, W, 4), opaque, values 0..1."""
    settings = (settings or DofSettings()).validate()
    rgba = np.asarray(rgba, dtype=_F32)
    H, W = depth.shape
    coc = coc_radius_px(depth, lens, W, H, max_radius=settings.max_radius)
    m = max(float(settings.max_radius), 1.0)
    lum = 0.2126 * rgba[..., 0] + 0.7152 * rgba[..., 1] + 0.0722 * rgba[..., 2]
    base = 0.35 * np.clip(lum, 0, 1)
    strength = np.clip(np.abs(coc) / m, 0, 1) * 0.55 + 0.2
    out = np.empty((H, W, 4), _F32)
    front = coc < -in_focus_px
    back = coc > in_focus_px
    focus = ~(front | back)
    out[..., 0] = base + np.where(front, strength, 0)
    out[..., 1] = base + np.where(focus, 0.6, 0)
    out[..., 2] = base + np.where(back, strength, 0)
    out[..., 3] = 1.0
    np.clip(out, 0, 1, out=out)
    return out
