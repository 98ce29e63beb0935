"""Depth of field on a rendered frame: a layered, occlusion-aware lens blur (numpy only).

Input: premultiplied RGBA ``float32 (H, W, 4)`` and planar depth ``float32 (H, W)`` (``+inf`` or
Cycles' 1e10 for background), a :class:`~blender_zdepth.core.lens.Lens` and
:class:`DofSettings`.  Output: premultiplied RGBA ``float32 (H, W, 4)``.

How it works (see ``docs/dof-engine.md`` for the user's view):

1. Every pixel gets a signed circle-of-confusion radius ``r`` (pixels, negative in front of the
   focal plane) from the lens.  The frame is padded by the largest radius (edge pixels
   repeated) so borders blur like the picture continued.
2. *Mixed edge pixels.*  Blender's depth comes from one sample while the colour is
   anti-aliased, so a pixel on a depth edge holds two surfaces' colours under one depth.  Such a
   pixel is split into two samples -- the part that looks like the near neighbours, at their
   radius, and the part that looks like the far neighbours, at theirs -- with coverages that add
   up to one, so neither halo nor rim is left behind.
3. *Hidden surfaces.*  Pixels in front of their surroundings ("occluders") hide what a lens sees
   around them.  A push-pull fill of the surrounding colours and radii invents that hidden
   surface as an extra sample behind each occluder.  It only shows where the blurred occluder
   turns see-through.
4. *Layers.*  Samples are assigned softly (linear weights) to layers of signed radius: 0 (the
   focal plane, copied untouched), fine 0.5 px steps near focus, then steps growing with the
   radius.  Each layer (premultiplied RGBA and coverage) is convolved with the aperture -- a
   disk, or a polygon with N blades, optionally squeezed (anamorphic) -- by FFT on the layer's
   bounding box only, or with a small direct kernel when that is cheaper.  Layers with large
   radii are processed at reduced resolution (a radius-32 blur needs no full-resolution detail).
5. *Compositing*, near to far, by coverage budget: each layer takes the share of the pixel that
   the nearer layers left free (``min(1, S + a) - S``).  A surface split over two neighbouring
   layers thus adds up instead of hiding itself (which a product of "over" operations would
   do).  At the end each pixel is normalised by the coverage it received, which fills the small
   holes that disocclusion leaves behind sharp edges.
"""

import math
from dataclasses import dataclass

import numpy as np

from .errors import UsageError, ZDepthError
from .lens import BACKGROUND_DEPTH, Lens, coc_radius_px  # noqa: F401  (Lens re-exported)

QUALITIES = ("draft", "default", "high")

#: Layer spacing and resolution per quality: (fine step near focus in px, relative step for
#: larger radii, radius above which a layer may be processed at lower resolution (per factor 2)).
_QUALITY = {
    "draft": dict(fine=1.0, rel=0.30, lowres=3.0),
    "default": dict(fine=0.5, rel=0.20, lowres=4.0),
    "high": dict(fine=0.25, rel=0.12, lowres=8.0),
}

_F32 = np.float32


@dataclass
class DofSettings:
    """Options of :func:`defocus`.

    ``max_radius``: largest blur radius in pixels (the circle of confusion is clamped to it).
    ``blades``: 0 for a round aperture, else the number of diaphragm blades (3 or more).
    ``rotation_deg``: rotation of the polygonal aperture, degrees (counter-clockwise, as
    Cycles' blade rotation).
    ``anamorphic``: aperture height / width (Cycles' aperture ratio); > 1 makes tall bokeh.
    ``quality``: ``"draft"``, ``"default"`` or ``"high"`` (layer spacing and resolution).
    """

    max_radius: float = 64.0
    blades: int = 0
    rotation_deg: float = 0.0
    anamorphic: float = 1.0
    quality: str = "default"

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
        return self


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


def _upsample_linear(a, factor, out_h, out_w, y0=0, x0=0):
    """Bilinear upsampling of planar ``a`` (..., h, w) by integer ``factor``.

    Low-resolution pixel ``j`` covers full-resolution pixels ``[j f, (j+1) f)``.  Returns the
    full-resolution block of rows ``y0 .. y0+out_h`` and columns ``x0 .. x0+out_w`` (in the
    full-resolution coordinates of ``a``'s origin)."""
    f = factor
    h, w = a.shape[-2:]

    def axis(n_out, start, n_in):
        pos = (np.arange(start, start + n_out, dtype=np.float32) + 0.5) / f - 0.5
        i0 = np.floor(pos).astype(np.int64)
        t = (pos - i0).astype(np.float32)
        i1 = np.clip(i0 + 1, 0, n_in - 1)
        i0 = np.clip(i0, 0, n_in - 1)
        return i0, i1, t

    r0, r1, ty = axis(out_h, y0, h)
    c0, c1, tx = axis(out_w, x0, w)
    rows = a[..., r0, :] * (1 - ty)[:, None] + a[..., r1, :] * ty[:, None]
    return rows[..., c0] * (1 - tx) + rows[..., c1] * tx


def _downsample_sum(a, f):
    """Sum of ``f`` x ``f`` blocks of planar ``a`` (..., h, w) (zero padded to a multiple)."""
    h, w = a.shape[-2:]
    hh, ww = -(-h // f), -(-w // f)
    if hh * f != h or ww * f != w:
        pad = [(0, 0)] * (a.ndim - 2) + [(0, hh * f - h), (0, ww * f - w)]
        a = np.pad(a, pad)
    return a.reshape(a.shape[:-2] + (hh, f, ww, f)).sum(axis=(-3, -1), dtype=_F32)


# --------------------------------------------------------------------------------------------
# Aperture kernels


def aperture_kernel(radius, settings=DofSettings(), pixel_aspect=1.0, supersample=None):
    """The normalised blur kernel (2-D float32, odd size, centred) of a point whose signed CoC
    radius is ``radius`` pixels: the aperture shape scaled by the radius, point-mirrored in
    front of the focal plane (as a real lens), sampled with pixel-area integration."""
    r = float(radius)
    ar = abs(r)
    rx = ar / float(settings.anamorphic)
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
    if r < 0:  # in front of the focal plane the blur is the mirrored aperture
        ux, uy = -ux, -uy
    if settings.blades and settings.blades >= 3:
        nb = int(settings.blades)
        rot = math.radians(float(settings.rotation_deg))
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


def layer_radii(max_radius, quality="default"):
    """Sorted signed layer radii from ``-max_radius`` to ``max_radius`` (0 included)."""
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
    return np.concatenate([-pos[::-1], [0.0], pos])


def _layer_scale(radius, quality):
    """Resolution reduction factor (power of two) for a layer of this radius."""
    lim = _QUALITY[quality]["lowres"]
    a = abs(radius)
    s = 1
    while a / (2 * s) >= lim:
        s *= 2
    return s


# --------------------------------------------------------------------------------------------
# Samples: the pixels themselves plus sparse extra samples (edge splits, hidden-surface fill)


class _Extra:
    """Sparse extra samples: flat pixel index, colour (4, n), coverage, signed radius."""

    def __init__(self):
        self.idx, self.col, self.cov, self.coc = [], [], [], []

    def add(self, idx, col, cov, coc):
        if idx.size:
            self.idx.append(idx.astype(np.int64))
            self.col.append(col.astype(_F32))
            self.cov.append(cov.astype(_F32))
            self.coc.append(coc.astype(_F32))

    def arrays(self):
        if not self.idx:
            return (np.zeros(0, np.int64), np.zeros((4, 0), _F32), np.zeros(0, _F32),
                    np.zeros(0, _F32))
        return (np.concatenate(self.idx), np.concatenate(self.col, axis=1),
                np.concatenate(self.cov), np.concatenate(self.coc))


def _neighbour_offsets(width):
    return [(dy, dx, dy * width + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
            if (dy, dx) != (0, 0)]


def _split_edges(col, coc, cov, extra, threshold=1.0):
    """Split mixed-colour pixels on depth edges into a near and a far sample (in place).

    ``col`` (4, H, W) premultiplied colour, ``coc`` (H, W), ``cov`` (H, W) coverage of the
    pixel's own sample."""
    _, h, w = col.shape
    # Min / max radius over the 3x3 neighbourhood (edge-replicated).
    cp = np.pad(coc, 1, mode="edge")
    lo = coc.copy()
    hi = coc.copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            v = cp[dy:dy + h, dx:dx + w]
            np.minimum(lo, v, out=lo)
            np.maximum(hi, v, out=hi)
    edge = (hi - lo) > threshold
    # Keep away from the frame border (padding makes it uniform anyway).
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = False
    idx = np.flatnonzero(edge)
    if idx.size == 0:
        return
    flat_coc = coc.reshape(-1)
    flat_col = col.reshape(4, -1)
    flat_edge = edge.reshape(-1)
    # Pure colours of the two sides: neighbours within two pixels whose own 3x3
    # neighbourhood has one depth (so they are not mixed themselves).
    pure = ~((hi - lo) > threshold).reshape(-1)
    # Pixels two away from the border have no 5x5 neighbourhood: drop them.
    ys, xs = np.divmod(idx, w)
    inner = (ys >= 2) & (ys < h - 2) & (xs >= 2) & (xs < w - 2)
    idx = idx[inner]
    if idx.size == 0:
        return
    lo_i, hi_i = lo.reshape(-1)[idx], hi.reshape(-1)[idx]
    mid = 0.5 * (lo_i + hi_i)
    tol = np.maximum(0.25 * (hi_i - lo_i), 0.5)
    n = idx.size
    cand = []  # (colour (4, n), near mask, far mask) of each pure neighbour
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            if max(abs(dy), abs(dx)) < 1:
                continue
            j = idx + (dy * w + dx)
            cj = flat_coc[j]
            pj = pure[j]
            cand.append((flat_col[:, j], pj & (cj <= lo_i + tol), pj & (cj >= hi_i - tol)))
    del flat_edge
    f_n = sum(m for _, m, _ in cand).astype(_F32)
    b_n = sum(m for _, _, m in cand).astype(_F32)
    ok = (f_n > 0) & (b_n > 0)
    if not ok.any():
        return
    sel = np.flatnonzero(ok)
    idx, lo_i, hi_i, mid = idx[sel], lo_i[sel], hi_i[sel], mid[sel]
    cand = [(cc[:, sel], nm[sel], fm[sel]) for cc, nm, fm in cand]
    c = flat_col[:, idx]
    fc = sum(cc * nm for cc, nm, _ in cand) / f_n[sel]
    bc = sum(cc * fm for cc, _, fm in cand) / b_n[sel]

    def fit(f, b):
        d = f - b
        dd = (d * d).sum(axis=0)
        a = np.clip(((c - b) * d).sum(axis=0) / np.maximum(dd, 1e-12), 0.0, 1.0)
        r = c - (b + a * d)
        return a, (r * r).sum(axis=0), dd

    # Colours vary along an edge (texture, highlights): pick, among the pure neighbours, the
    # far colour and then the near colour that explain the pixel best as a mix.
    for side in (2, 1):
        best = np.full(idx.size, np.inf, _F32)
        pick = bc.copy() if side == 2 else fc.copy()
        for cc, nm, fm in cand:
            mask = fm if side == 2 else nm
            if not mask.any():
                continue
            _, res, _ = fit(fc, cc) if side == 2 else fit(cc, bc)
            better = mask & (res < best)
            best = np.where(better, res, best)
            pick[:, better] = cc[:, better]
        if side == 2:
            bc = pick
        else:
            fc = pick
    a, res2, dd = fit(fc, bc)
    d = fc - bc
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
    # The pixel's own sample keeps the part on its side; the other part becomes an extra one.
    own_cov = np.where(own_near, a, 1 - a)
    flat_cov = cov.reshape(-1)
    base = flat_cov[idx]
    flat_cov[idx] = base * own_cov
    flat_col[:, idx] = np.where(own_near, near_part, far_part)
    other_col = np.where(own_near, far_part, near_part)
    other_coc = np.where(own_near, hi_i, lo_i)
    other_cov = base * (1 - own_cov)
    keep = other_cov > 1e-4
    extra.add(idx[keep], other_col[:, keep], other_cov[keep], other_coc[keep])


def _max_pyramid(coc, levels):
    """Level l: max of coc over 2^l blocks, then over the 3x3 neighbouring blocks."""
    out = []
    cur = coc
    for _ in range(levels):
        h, w = cur.shape
        hh, ww = -(-h // 2), -(-w // 2)
        p = np.pad(cur, ((0, hh * 2 - h), (0, ww * 2 - w)), mode="edge")
        cur = p.reshape(hh, 2, ww, 2).max(axis=(1, 3))
        q = np.pad(cur, 1, mode="edge")
        d = cur.copy()
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                np.maximum(d, q[dy:dy + hh, dx:dx + ww], out=d)
        out.append(d)
    return out


def _push_pull(values, weight, levels):
    """Fill ``values`` (C, H, W) where ``weight`` (H, W) is 0 from the weighted neighbours.

    Returns the pyramid of filled levels; level 0 is full resolution."""
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


def _fill_hidden(col, coc, extra, max_radius):
    """Add hidden-surface samples behind occluders (pixels in front of their surroundings)."""
    _, h, w = col.shape
    levels = max(1, int(math.ceil(math.log2(max(max_radius, 2.0)))))
    pyr = _max_pyramid(coc, levels)
    # For each pixel, the max radius around it within (about) its own blur radius.
    reach = np.maximum(np.abs(coc), 2.0)
    lev = np.clip(np.ceil(np.log2(reach)).astype(np.int64) - 1, 0, levels - 1)
    margin = 1.0 + 0.25 * np.abs(coc)
    cand = np.flatnonzero(np.abs(coc) > 0.75)
    if cand.size == 0:
        return
    ys, xs = np.divmod(cand, w)
    lv = lev.reshape(-1)[cand]
    local_max = np.empty(cand.size, _F32)
    for l in range(levels):
        m = lv == l
        if m.any():
            p = pyr[l]
            local_max[m] = p[ys[m] >> (l + 1), xs[m] >> (l + 1)]
    cc = coc.reshape(-1)[cand]
    occ = local_max > cc + margin.reshape(-1)[cand]
    occ_idx = cand[occ]
    if occ_idx.size == 0:
        return
    valid = np.ones(h * w, _F32)
    valid[occ_idx] = 0
    valid = valid.reshape(h, w)
    # Fill at half resolution: hidden surfaces are seen only through a blur.
    half_vals = _downsample_sum(np.concatenate([col * valid, (coc * valid)[None]]), 2) * 0.25
    half_w = _downsample_sum(valid, 2) * 0.25
    with np.errstate(invalid="ignore", divide="ignore"):
        half_norm = half_vals / np.maximum(half_w, 1e-6)
    filled_half = _push_pull(half_norm, half_w, levels + 2)
    fy, fx = np.divmod(occ_idx, w)
    # Nearest half-resolution value is enough here (the layer blur smooths it).
    fh, fw = filled_half.shape[1:]
    fv = filled_half[:, np.minimum(fy >> 1, fh - 1), np.minimum(fx >> 1, fw - 1)]
    fcol, fcoc = fv[:4], fv[4]
    own = coc.reshape(-1)[occ_idx]
    behind = fcoc > own + 0.5
    extra.add(occ_idx[behind], fcol[:, behind], np.ones(int(behind.sum()), _F32),
              fcoc[behind])


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


class _FftKernel:
    def __init__(self, kernel, shape):
        kh, kw = kernel.shape
        self.shape = shape
        pad = np.zeros(shape, _F32)
        pad[:kh, :kw] = kernel
        self.spec = np.fft.rfft2(pad)

    def apply(self, plane, out_h, out_w):
        fh, fw = self.shape
        buf = np.zeros((fh, fw), _F32)
        buf[:plane.shape[0], :plane.shape[1]] = plane
        res = np.fft.irfft2(np.fft.rfft2(buf) * self.spec, s=self.shape)
        return res[:out_h, :out_w].astype(_F32)


def _convolve(planes, kernel):
    """Full linear convolution, picking direct or FFT by estimated cost."""
    c, h, w = planes.shape
    kh, kw = kernel.shape
    taps = int(np.count_nonzero(kernel > 0))
    oh, ow = h + kh - 1, w + kw - 1
    fh, fw = _next_fast_len(oh), _next_fast_len(ow)
    # Rough costs (ns): a multiply-add pass is ~0.7 ns/element; an rfft2 + irfft2 pair of a
    # real plane ~10 ns/element at good sizes (complex128 inside numpy).
    direct = taps * c * h * w * 0.8
    fft = (c + 0.5) * fh * fw * (6.0 + 0.5 * math.log2(fh * fw))
    if direct <= fft:
        return _convolve_direct(planes, kernel)
    fk = _FftKernel(kernel, (fh, fw))
    out = np.empty((c, oh, ow), _F32)
    for i in range(c):
        out[i] = fk.apply(planes[i], oh, ow)
    return out


# --------------------------------------------------------------------------------------------
# The engine


def _composite(acc, budget, blurred, y0, x0, opaque):
    """Budget compositing of ``blurred`` (C, h, w: colour channels then coverage last) into
    ``acc`` (C-1 or 4 planes) and ``budget`` at offset (y0, x0); clipped to the frame."""
    H, W = budget.shape
    _, h, w = blurred.shape
    ya, xa = max(0, -y0), max(0, -x0)
    yb, xb = min(h, H - y0), min(w, W - x0)
    if ya >= yb or xa >= xb:
        return
    blk = blurred[:, ya:yb, xa:xb]
    sl = (slice(y0 + ya, y0 + yb), slice(x0 + xa, x0 + xb))
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


def defocus(rgba, depth, lens, settings=None):
    """Depth of field of a rendered frame.

    ``rgba``: float32 (H, W, 4) premultiplied (RGB (H, W, 3) is taken as opaque); ``depth``:
    float32 (H, W) planar depth (``+inf``/1e10 = background); ``lens``: a
    :class:`~blender_zdepth.core.lens.Lens`; ``settings``: :class:`DofSettings`.
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
    return _defocus_coc(rgba, coc, settings, lens.pixel_aspect)


def _defocus_coc(rgba, coc, settings, pixel_aspect=1.0):
    """:func:`defocus` from a signed radius map (horizontal pixels)."""
    H, W = coc.shape
    q = settings.quality
    maxr = float(min(settings.max_radius, np.max(np.abs(coc)) if coc.size else 0))
    ry_scale = max(1.0, float(pixel_aspect), 1.0 / float(settings.anamorphic))
    pad = int(math.ceil(maxr * ry_scale)) + 2
    opaque = rgba.shape[2] == 3 or bool(np.all(rgba[..., 3] == 1.0))

    # Planar, padded (edge pixels repeated) working copies.
    col = np.empty((4, H + 2 * pad, W + 2 * pad), _F32)
    for i in range(4):
        if i < rgba.shape[2]:
            src = np.asarray(rgba[..., i], dtype=_F32)
        else:
            src = np.ones((H, W), _F32)
        col[i] = np.pad(np.nan_to_num(src, nan=0.0, posinf=0.0, neginf=0.0), pad, mode="edge")
    cocp = np.pad(coc, pad, mode="edge")
    Hp, Wp = cocp.shape
    cov = np.ones((Hp, Wp), _F32)
    if maxr < 0.25:
        return rgba_out(col, pad, H, W, rgba)

    extra = _Extra()
    _split_edges(col, cocp, cov, extra)
    _fill_hidden(col, cocp, extra, maxr)
    e_idx, e_col, e_cov, e_coc = extra.arrays()
    del extra

    radii = layer_radii(maxr, q)
    nl = radii.size

    def assign(r):
        i = np.clip(np.searchsorted(radii, r, side="right") - 1, 0, nl - 2)
        lo = radii[i].astype(_F32)
        hi = radii[i + 1].astype(_F32)
        t = np.clip((r - lo) / (hi - lo), 0, 1).astype(_F32)
        return i.astype(np.int16), t

    m_i, m_t = assign(cocp.reshape(-1))
    e_i, e_t = assign(e_coc)
    m_order = np.argsort(m_i, kind="stable")
    m_bounds = np.searchsorted(m_i[m_order], np.arange(nl + 1))
    e_order = np.argsort(e_i, kind="stable")
    e_bounds = np.searchsorted(e_i[e_order], np.arange(nl + 1))

    flat_col = col.reshape(4, -1)
    flat_cov = cov.reshape(-1)
    acc = np.zeros((4, Hp, Wp), _F32)
    budget = np.zeros((Hp, Wp), _F32)
    nch = 3 if opaque else 4

    def layer_samples(k):
        """(flat idx, layer weight, coverage, colour (4, n)) of the samples in layer k (the
        colour is premultiplied by its coverage already)."""
        parts = []
        for order, bounds, ii, tt, src_col, src_cov, idx_map in (
                (m_order, m_bounds, m_i, m_t, flat_col, flat_cov, None),
                (e_order, e_bounds, e_i, e_t, e_col, e_cov, e_idx)):
            for kk, upper in ((k, False), (k - 1, True)):
                if kk < 0 or kk >= nl - 1:
                    continue
                sel = order[bounds[kk]:bounds[kk + 1]]
                if sel.size == 0:
                    continue
                wgt = tt[sel] if upper else 1 - tt[sel]
                keep = wgt > 0
                sel, wgt = sel[keep], wgt[keep]
                if sel.size == 0:
                    continue
                pix = sel if idx_map is None else idx_map[sel]
                parts.append((pix, wgt, wgt * src_cov[sel], src_col[:, sel]))
        if not parts:
            return None
        return tuple(np.concatenate([p[i] for p in parts], axis=-1) for i in range(4))

    # Groups of consecutive layers sharing a resolution, near to far.
    scales = [_layer_scale(r, q) for r in radii]
    groups = []
    for k in range(nl):
        if groups and groups[-1][0] == scales[k]:
            groups[-1][1].append(k)
        else:
            groups.append((scales[k], [k]))

    for s, ks in groups:
        if s == 1:
            g_acc, g_budget = acc, budget
        else:
            gh, gw = -(-Hp // s), -(-Wp // s)
            g_acc = np.zeros((4, gh, gw), _F32)
            g_budget = np.zeros((gh, gw), _F32)
        touched = None
        for k in ks:
            smp = layer_samples(k)
            if smp is None:
                continue
            pix, wgt, wcov, scol = smp
            py, px = np.divmod(pix, Wp)
            if s > 1:
                py //= s
                px //= s
            y0, y1 = int(py.min()), int(py.max()) + 1
            x0, x1 = int(px.min()), int(px.max()) + 1
            bh, bw = y1 - y0, x1 - x0
            lidx = (py - y0) * bw + (px - x0)
            planes = np.empty((nch + 1, bh, bw), _F32)
            norm = _F32(1.0 / (s * s))
            for c in range(nch):
                planes[c] = np.bincount(lidx, weights=wgt * scol[c],
                                        minlength=bh * bw).reshape(bh, bw) * norm
            planes[nch] = np.bincount(lidx, weights=wcov,
                                      minlength=bh * bw).reshape(bh, bw) * norm
            radius = radii[k] / s
            kernel = aperture_kernel(radius, settings, pixel_aspect)
            kh, kw = kernel.shape
            if kh == 1 and kw == 1:
                blurred = planes
            else:
                blurred = _convolve(planes, kernel)
            oy, ox = y0 - kh // 2, x0 - kw // 2
            _composite(g_acc, g_budget, blurred, oy, ox, opaque)
            box = (oy, ox, oy + blurred.shape[1], ox + blurred.shape[2])
            touched = box if touched is None else (min(touched[0], box[0]),
                                                   min(touched[1], box[1]),
                                                   max(touched[2], box[2]),
                                                   max(touched[3], box[3]))
        if s > 1 and touched is not None:
            gh, gw = g_budget.shape
            ty0, tx0 = max(0, touched[0]), max(0, touched[1])
            ty1, tx1 = min(gh, touched[2]), min(gw, touched[3])
            # Full-resolution block covered by the touched low-res block (+1 px for the
            # bilinear support), clipped to the frame.
            fy0, fx0 = max(0, (ty0 - 1) * s), max(0, (tx0 - 1) * s)
            fy1, fx1 = min(Hp, (ty1 + 1) * s), min(Wp, (tx1 + 1) * s)
            stack = np.concatenate([g_acc, g_budget[None]])
            up = _upsample_linear(stack, s, fy1 - fy0, fx1 - fx0, fy0, fx0)
            del stack
            up[:4] *= 1.0  # colour already premultiplied by its visibility
            # Merge the group as one layer whose "blurred coverage" is its budget.
            _merge_group(acc, budget, up, fy0, fx0)
            del up
        del g_acc, g_budget

    # Normalise by the coverage received (fills disocclusion holes).
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(budget > 1e-4, 1.0 / np.maximum(budget, 1e-4), 0.0).astype(_F32)
    hole = budget <= 1e-4
    for i in range(4):
        acc[i] *= inv
        if hole.any():
            acc[i][hole] = col[i][hole]
    return rgba_out(acc, pad, H, W, rgba)


def _merge_group(acc, budget, up, y0, x0):
    """Add a group's (colour, budget) as one layer behind what ``acc`` holds."""
    h, w = up.shape[1:]
    sl = (slice(y0, y0 + h), slice(x0, x0 + w))
    g = np.clip(up[4], 0, 1)
    s = budget[sl]
    new_s = np.minimum(s + g, 1.0)
    factor = (new_s - s) / np.maximum(g, 1e-7)
    for i in range(4):
        acc[i][sl] += up[i] * factor
    budget[sl] = new_s


def rgba_out(planes, pad, H, W, rgba):
    out = np.empty((H, W, 4), _F32)
    for i in range(4):
        out[..., i] = planes[i, pad:pad + H, pad:pad + W]
    if rgba.shape[2] == 3:
        out[..., 3] = 1.0
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
