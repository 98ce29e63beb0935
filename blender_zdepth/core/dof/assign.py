"""Stage *assign layers*: the layers' signed radii (fine near focus, snapped onto radii many
pixels share), each layer's resolution, and the soft (tent) assignment of every sample to the
two layers around its radius, sorted by layer."""

import math
from dataclasses import dataclass

import numpy as np
from numpy import float32 as _F32

from .settings import _QUALITY


def layer_radii(max_radius, *, quality="default", coc=None):
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


@dataclass
class LayerAssignment:
    """Output of :func:`assign_layers`: for the pixels' own samples (``m_*``, flat indices
    into the padded frame) and the extra samples (``e_*``, indices into :class:`~.samples.Samples`),
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


def sort_pixels(coc, radii, *, pool=None, parts=1):
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


def assign_layers(coc, extra_coc, radii, *, extra_idx=None, pool=None, parts=1):
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
        parts = sort_pixels(coc, radii, pool=pool, parts=parts)
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
