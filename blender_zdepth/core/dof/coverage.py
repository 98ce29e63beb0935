"""Partial-coverage samples from the caller (``defocus(..., layers=...)``): depth slabs or deep
samples, each with its own depth and an alpha that is the share of the pixel (or of the
shutter) its surface covers.  :func:`coverage_samples` turns them into the engine's samples:
per pixel one own sample (the one that covers most of it) and extra samples for the rest,
each blurred at its own depth, so that the compositing by coverage near to far refocuses a
pixel that holds several surfaces (motion blur, half-transparent surfaces, soft edges) as a
lens does; what opaque samples hide becomes the pixel's hidden surface."""

import warnings
from typing import NamedTuple

import numpy as np
from numpy import float32 as _F32

from ..deep import fill_missing_depth
from ..lens import coc_radius_px
from .hidden import _HIDDEN_BEHIND_PX, HiddenLayer
from .prepare import _checked_layer, _padded_positions
from .samples import _samples

#: Alpha from which a sample counts as opaque (it hides what lies behind it).
_OPAQUE = 1.0 - 1e-3
#: Share of a pixel below which what lies behind the nearer samples is hidden, not seen.
_SEEN = 1e-3


class CoverageSamples(NamedTuple):
    """Output of :func:`coverage_samples`, unpadded: the own sample of each pixel (``rgba``
    (H, W, 4) premultiplied colour, ``coc`` (H, W) signed radius, ``cov`` (H, W) coverage),
    the extra samples (``extra``: flat pixel index, colour (4, n), coverage, radius) and the
    samples hidden behind opaque ones (a list of :class:`~.hidden.HiddenLayer`), and the
    flattened frame as given (``flat``)."""

    rgba: np.ndarray
    coc: np.ndarray
    cov: np.ndarray
    extra: tuple
    hidden: list
    flat: np.ndarray = None  # the flattened frame as given (returned as is when nothing blurs)


def _tidy_layer(n, item, H, W, bad):
    """Layer ``n``'s premultiplied colour (H, W, 4) and depth (H, W) as float32, checked;
    alpha clamped to 0..1 and samples with a non-finite value emptied (counted in ``bad``)."""
    rgba, depth = _checked_layer(item, n, H, W, "coverage layer")
    rgba = np.asarray(rgba, dtype=_F32)
    depth = np.asarray(depth, dtype=_F32)
    if rgba.shape[2] == 3:
        rgba = np.concatenate([rgba, np.ones((H, W, 1), _F32)], axis=2)
    alpha = rgba[..., 3]
    finite = np.all(np.isfinite(rgba), axis=2)
    n_bad = int(np.count_nonzero(~finite))
    out_of_range = finite & ((alpha > 1.0) | (alpha < 0.0))
    n_range = int(np.count_nonzero(out_of_range))
    if n_bad or n_range:
        rgba = rgba.copy()
        rgba[~finite] = 0.0
        # Alpha above 1: the colour keeps its hue and brightness per coverage (scaled with the
        # alpha down to 1); below 0: nothing there.
        over = finite & (alpha > 1.0)
        if over.any():
            rgba[over] /= rgba[over][:, 3:4]
        rgba[rgba[..., 3] <= 0] = 0.0
        bad["nan"] += n_bad
        bad["range"] += n_range
    return rgba, depth


def coverage_samples(layers, rgba, depth, coc, lens, settings):
    """The caller's partial-coverage samples as the engine's samples (see
    :func:`~.pipeline.defocus`, ``layers``).

    ``layers``: ``(rgba_k, depth_k)`` pairs, premultiplied float (H, W, 4) with alpha = the
    share of the pixel the sample covers, and planar depth (H, W); per pixel near to far.  Per
    pixel the samples are composited "over" near to far: a partial sample (alpha < 1) is seen
    as ``alpha * T`` of the pixel (``T``: what the nearer ones leave), an opaque one takes all
    that is left (coverage 1: the budget compositing gives it the rest, and what a nearer
    blurred sample uncovers); samples behind an opaque one are hidden surfaces.  What the
    layers leave of ``rgba`` (the flattened frame, e.g. the world behind slabs rendered with the
    film transparent) is a last sample at ``depth`` (or the background, if that is not behind
    the layers).  Bad values (alpha outside 0..1, NaN) are clamped or emptied with a one-line
    warning; a pixel's samples out of depth order are sorted."""
    H, W = depth.shape
    bad = {"nan": 0, "range": 0, "order": 0}
    items = [_tidy_layer(n, item, H, W, bad) for n, item in enumerate(layers)]
    K = len(items)
    cols = np.stack([it[0] for it in items])                      # (K, H, W, 4)
    alpha = cols[..., 3]
    deps = np.stack([fill_missing_depth(it[1], it[0][..., 3] > 0) for it in items])  # (K, H, W)
    del items
    has = alpha > 0
    key = np.where(has, deps, np.inf)
    if K > 1:
        # (empty samples do not count: a pixel's samples in order, with gaps, is in order)
        nearest_after = np.minimum.accumulate(key[::-1], axis=0)[::-1]
        unsorted = np.any(has[:-1] & (key[:-1] > nearest_after[1:]), axis=0)
        if unsorted.any():
            bad["order"] += int(np.count_nonzero(unsorted))
            order = np.argsort(key, axis=0, kind="stable")
            cols = np.take_along_axis(cols, order[..., None], axis=0)
            deps = np.take_along_axis(deps, order, axis=0)
            alpha = cols[..., 3]
            has = alpha > 0
    notes = []
    if bad["nan"]:
        notes.append(f"{bad['nan']} sample(s) with a non-finite value emptied")
    if bad["range"]:
        notes.append(f"{bad['range']} alpha(s) outside 0..1 clamped")
    if bad["order"]:
        notes.append(f"{bad['order']} pixel(s) with samples out of depth order sorted")
    if notes:
        warnings.warn("coverage layers: " + "; ".join(notes), stacklevel=3)
    cocs = coc_radius_px(deps, lens, W, H, max_radius=settings.max_radius).astype(_F32)

    # Over near to far: each sample's coverage and colour as the engine takes them.
    T = np.ones((H, W), _F32)
    cov = np.zeros((K, H, W), _F32)
    seen = np.zeros((K, H, W), bool)
    visible = np.zeros((H, W, 4), _F32)
    hidden = []
    for k in range(K):
        a = alpha[k]
        s = has[k] & (T > _SEEN)
        # Behind an opaque sample: a hidden surface (where clearly behind; the own sample is
        # known below, the test against it then).
        i = np.flatnonzero(has[k] & ~s)
        if i.size:
            hidden.append((k, i, np.ascontiguousarray(cols[k].reshape(-1, 4)[i].T),
                           a.reshape(-1)[i].copy()))
        opaque = a >= _OPAQUE
        visible += cols[k] * np.where(s, T, 0.0)[..., None]
        # Partial: its share of what is left; opaque: all that is left and what nearer
        # blurred samples uncover (coverage 1, colour unscaled).
        cols[k] *= np.where(s, np.where(opaque, 1.0, T), 0.0)[..., None]
        cov[k] = np.where(s, np.where(opaque, 1.0, a * T), 0.0)
        seen[k] = s
        T = np.where(has[k], T * (1.0 - a), T)
    # What the layers leave of the flattened frame: a last sample where it is seen.
    flat = np.asarray(rgba, _F32)
    if flat.shape[2] == 3:
        flat = np.concatenate([flat, np.ones((H, W, 1), _F32)], axis=2)
    flat = np.where(np.isfinite(flat), flat, 0.0)
    rest_seen = T > _SEEN
    rest = np.where(rest_seen[..., None], flat - visible, 0.0)
    rest[..., :3] = np.maximum(rest[..., :3], 0.0)
    rest[..., 3] = np.where(rest_seen, T, 0.0)
    last = np.max(np.where(has, deps, 0.0), axis=0)
    own_depth = np.asarray(depth, _F32)
    behind = np.isfinite(own_depth) & (own_depth > last * (1 + 1e-4))
    rest_coc = np.where(behind, coc, coc_radius_px(np.full((1,), np.inf, _F32), lens, W, H,
                                                   max_radius=settings.max_radius)[0])
    cols = np.concatenate([cols, rest[None]])
    cov = np.concatenate([cov, np.where(rest_seen, T, 0.0)[None]])
    cocs = np.concatenate([cocs, rest_coc[None].astype(_F32)])
    seen = np.concatenate([seen, rest_seen[None]])
    # A pixel without any sample keeps the flattened frame as its own, as without layers.
    empty = ~seen.any(axis=0)
    if empty.any():
        cols[K][empty] = flat[empty]
        cov[K][empty] = 1.0
        cocs[K][empty] = coc[empty]
        seen[K][empty] = True
    # The own sample: the one that covers most of the pixel (the nearest of equal ones).
    own = np.argmax(np.where(seen, cov, -1.0), axis=0)
    own_rgba = np.take_along_axis(cols, own[None, ..., None], axis=0)[0]
    own_cov = np.take_along_axis(cov, own[None], axis=0)[0]
    own_coc = np.take_along_axis(cocs, own[None], axis=0)[0]
    idx, e_col, e_cov, e_coc = [], [], [], []
    for k in range(K + 1):
        m = seen[k] & (own != k) & (cov[k] > 1e-4)
        i = np.flatnonzero(m)
        if i.size:
            idx.append(i)
            e_col.append(cols[k].reshape(-1, 4)[i].T)
            e_cov.append(cov[k].reshape(-1)[i])
            e_coc.append(cocs[k].reshape(-1)[i])
    extra = (np.concatenate(idx).astype(np.int64) if idx else np.zeros(0, np.int64),
             np.concatenate(e_col, axis=1).astype(_F32) if idx else np.zeros((4, 0), _F32),
             np.concatenate(e_cov).astype(_F32) if idx else np.zeros(0, _F32),
             np.concatenate(e_coc).astype(_F32) if idx else np.zeros(0, _F32))
    hidden_layers = []
    for k, i, col, a in hidden:
        h_coc = cocs[k].reshape(-1)[i]
        keep = h_coc > own_coc.reshape(-1)[i] + _HIDDEN_BEHIND_PX
        if keep.any():
            hidden_layers.append(HiddenLayer(i[keep].astype(np.int64), col[:, keep],
                                             a[keep].astype(_F32), h_coc[keep]))
    return CoverageSamples(own_rgba, own_coc, own_cov, extra, hidden_layers, np.asarray(rgba))



def padded_samples(extra, frame):
    """The extra samples of :class:`CoverageSamples` (unpadded) on the padded ``frame`` (a
    :class:`~.prepare.PaddedFrame`; those on the frame's edge repeated across the border as
    its edge pixels are), as :class:`~.samples.Samples`."""
    idx, col, cov, coc = extra
    src, flat = _padded_positions(idx, frame.H, frame.W, frame.pad)
    return _samples(flat, col[:, src], cov[src], coc[src])
