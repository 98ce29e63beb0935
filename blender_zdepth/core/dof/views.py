"""Around the engine: the focus distance picked at a pixel, and the focal-plane diagnostic
view (what lies in front of, on and behind the focal plane)."""

import numpy as np
from numpy import float32 as _F32

from ..errors import UsageError, ZDepthError
from ..lens import BACKGROUND_DEPTH, coc_radius_px
from .settings import DofSettings


def focus_from_pixel(depth, x, y, *, size=5):
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


def focal_plane_view(rgba, depth, lens, settings=None, *, in_focus_px=0.5):
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
