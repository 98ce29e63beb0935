"""Stage *layer content*: one layer's premultiplied colour and coverage gathered from the
samples assigned to it, on its bounding box at its scale -- dense planes, or the samples
themselves for a sparse layer (:class:`SparseLayer`) -- with its small highlights ("sparkles")
taken out to be blurred at (nearly) full resolution."""

from typing import NamedTuple

import numpy as np
from numpy import float32 as _F32

from .resample import _downsample_sum
from .schedule import _stage


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
