"""Stage *prepare*: the padded, planar working copy of a frame (:class:`PaddedFrame`).  The
frame is padded by the largest radius so that borders blur like the picture continued (radii
and colours repeated from the edge, except small highlights on the edge), and samples given on
the unpadded frame are placed on the padded one the same way."""

import math
from dataclasses import dataclass

import numpy as np
from numpy import float32 as _F32
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ZDepthError
from .schedule import _each


def _pad_edges(a, pad, mode="edge"):
    """Fill the ``pad`` border of 2-D ``a`` from its inner block: ``"edge"`` repeats the edge
    pixels, ``"despeckle"`` too except small highlights."""
    if pad <= 0:
        return
    if mode == "despeckle":
        # The edge pixels repeated, except small highlights (above 1 and above twice the
        # median of the 15 pixels along the edge around them), which get that median: a
        # surface cut by the frame continues, a highlight on the edge does not turn into a
        # streak pouring light back into the frame.
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


@dataclass
class PaddedFrame:
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


def prepare(rgba, coc, settings, *, pixel_aspect=1.0, hidden_max=0.0, pool=None, cov=None):
    """Stage *prepare*: pad the frame by the largest radius (radii repeated from the edge,
    colours too except small highlights on the edge) and make planar working copies (the
    planes on ``pool``'s threads, if given).  ``hidden_max``: the largest radius of the hidden
    and extra samples, if any; ``cov``: the coverage (H, W) of each pixel's own sample, if not
    1 (partial-coverage layers), repeated from the edge."""
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
        _pad_edges(a, pad, "despeckle")

    _each(pool, plane, 5)
    if cov is None:
        cov = np.ones((Hp, Wp), _F32)
    else:
        own = cov
        cov = np.empty((Hp, Wp), _F32)
        cov[inner] = own
        _pad_edges(cov, pad, "edge")
    return PaddedFrame(col, cocp, cov, pad, H, W, maxr, opaque)


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


def _checked_layer(item, n, H, W, what):
    """Layer ``n`` of a caller's list (hidden surfaces, coverage layers) as the arrays
    ``(rgba, depth)``: a pair, its image (H, W, 3 or 4) and depth (H, W) the frame's size, else a
    :class:`ZDepthError` naming ``what`` and the layer."""
    try:
        rgba, depth = item
    except (TypeError, ValueError):
        raise ZDepthError(f"{what} {n + 1} must be a pair (rgba, depth)") from None
    rgba = np.asarray(rgba)
    depth = np.asarray(depth)
    if rgba.ndim != 3 or rgba.shape[:2] != (H, W) or rgba.shape[2] not in (3, 4):
        raise ZDepthError(f"{what} {n + 1}: the image must be {H} x {W} x 4 like the frame, "
                          f"not {rgba.shape}")
    if depth.shape != (H, W):
        raise ZDepthError(f"{what} {n + 1}: depth {depth.shape} and frame {(H, W)} sizes "
                          f"differ")
    return rgba, depth
