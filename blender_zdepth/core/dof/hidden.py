"""Stage *fill hidden*: surfaces a lens sees behind blurred occluders, as extra samples.  Given
hidden surfaces (depth-peeled renders, deep samples: :class:`HiddenLayer`) are used where they
lie clearly behind the visible one (:func:`hidden_samples`); elsewhere a push-pull fill of the
surfaces behind each band of occluders invents them (:func:`fill_plan`, :func:`fill_hidden`)."""

import math
from typing import NamedTuple

import numpy as np
from numpy import float32 as _F32

from ..lens import BACKGROUND_DEPTH, coc_radius_px
from .prepare import _checked_layer, _padded_positions
from .resample import _downsample_sum, _max_pyramid, _pool_max, _upsample_linear
from .samples import _samples
from .schedule import _each

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
    """Validate ``hidden`` (see :func:`~.pipeline.defocus`) and keep, per layer, the samples
    that lie clearly behind the visible surface, with their radii from the same lens."""
    H, W = depth.shape
    out = []
    vis_depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.inf)
    for n, item in enumerate(hidden):
        h_rgba, h_depth = _checked_layer(item, n, H, W, "hidden layer")
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


def hidden_samples(frame, hidden, *, block=4):
    """Stage *hidden samples* (part of *fill hidden*): the given hidden surfaces (a list of
    :class:`HiddenLayer`, already those clearly behind the visible surface) as extra samples
    of the padded frame -- coverage their alpha, radius their own -- where a lens can see
    them: near a visible surface farther than the pixel's own (within the larger of the two
    blur radii; elsewhere nearer surfaces cover them whatever the blur).  Returns (list of
    :class:`~.samples.Samples`, (Hp * Wp,) bool map of the pixels that got one)."""
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


#: Bands of occluder radius (px) that get their own hidden-surface fill.  Only blurred
#: foregrounds (in front of the focal plane) get one: behind a sharp or far occluder the
#: disk-average of the visible background (the final normalisation) is closer to the truth
#: than a push-pull guess (measured).
_FILL_BANDS = (-1e9, -24.0, -12.0, -6.0, -3.0, -1.0)


def fill_hidden(col, coc, max_radius, *, block=4, pool=None, plan=None):
    """Stage *fill hidden*: hidden-surface samples behind occluders, as a list of
    :class:`~.samples.Samples` (one per band of occluder radii that has any).

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
        plan = fill_plan(coc, max_radius, block=block)
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


def fill_plan(coc, max_radius, *, block=4):
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
