"""Aperture kernels: the normalised blur of a point at a given signed radius -- a disk or an
N-blade polygon, rotated, squeezed (anamorphic), point-mirrored in front of the focal plane --
sampled with pixel-area integration and kept in a cache."""

import functools
import math

import numpy as np
from numpy import float32 as _F32

from .settings import DofSettings


def aperture_kernel(radius, settings=None, *, pixel_aspect=1.0, supersample=None):
    """The normalised blur kernel (2-D float32, odd size, centred) of a point whose signed CoC
    radius is ``radius`` pixels: the aperture shape scaled by the radius, point-mirrored in
    front of the focal plane (as a real lens), sampled with pixel-area integration.

    Kernels are kept (the last 512, read-only arrays): a frame asks for one per layer, and the
    frames of a sequence mostly for the same ones.  ``settings``: :class:`DofSettings` (the
    aperture's shape; default settings when None)."""
    settings = settings or DofSettings()
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
