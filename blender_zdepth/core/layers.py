"""Depth layers: where to put the camera's clip start for the extra ("peeled") render passes.

A pass rendered with the camera's clip start moved to a distance ``c`` sees, at every pixel, the
first surface beyond ``c``: behind a subject nearer than ``c`` it shows what the subject hid
(camera rays start at ``c``; the clipped objects still cast their shadows and reflections).
:func:`clip_distances` chooses those distances from the frame's own depth. Pure numpy.

The rule (:func:`clip_distances`):

1. The frame's finite depths (background left out) are histogrammed on a log scale
   (``BINS`` bins between the nearest and farthest depth). Bins holding at least ``MIN_SHARE``
   of the pixels are *occupied*; runs of occupied bins separated by at least ``MIN_GAP``
   (relative depth, i.e. the far side of the gap is ``1 + MIN_GAP`` times the near side) are
   the frame's depth *clusters* (a subject, a row of foreground bars, the back wall).
2. A cluster is a candidate to peel when something lies behind it (it is not the last cluster)
   and it is in front of or around the focus distance (its nearest depth is at most the focus
   distance times ``1 + MIN_GAP``, its farthest at most ``MAX_SPAN`` times the focus distance):
   those are the surfaces a lens sees past -- a sharp subject whose blurred background shows
   around it, and blurred foreground in front of it. Without a focus distance every cluster
   with something behind it is a candidate.
3. Candidates are peeled nearest first: the k-th clip distance is placed in the gap behind the
   k-th candidate, at the geometric middle of the cluster's farthest depth and the next
   cluster's nearest one (far enough behind the cluster to clear its unseen back side, never
   past the next surface).
4. When there are fewer candidates than passes, the remaining distances split the depth range
   behind the last clip (up to the focus distance, or the farthest depth) evenly in log depth,
   so every pass still peels something. All distances lie strictly between ``clip_start`` and
   ``clip_end`` and increase.
"""

import math

import numpy as np

from .errors import UsageError

#: Histogram bins over the frame's depth range (log scale).
BINS = 256

#: A bin is occupied when it holds at least this share of the frame's finite pixels.
MIN_SHARE = 0.0005

#: Smallest relative depth gap separating two clusters (10 %).
MIN_GAP = 0.10

#: A cluster reaching farther than this many times the focus distance is not "around the
#: focus" (a ground plane receding to the horizon): it is not peeled as a whole.
MAX_SPAN = 2.0

#: Depths at or beyond this are background (Cycles writes 1e10).
BACKGROUND = 1e9

#: Most layers a frame may have (the beauty + 15 peeled passes).
MAX_LAYERS = 16


def depth_clusters(depth, bins=BINS, min_share=MIN_SHARE, min_gap=MIN_GAP):
    """The frame's depth clusters, near to far, as ``[(nearest, farthest, share), ...]`` (depths
    in scene units; ``share`` = fraction of the finite pixels in the cluster). Empty when the
    frame has no finite depth."""
    d = np.asarray(depth, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        d = d[np.isfinite(d) & (d > 0) & (d < BACKGROUND)]
    if d.size == 0:
        return []
    lo, hi = float(d.min()), float(d.max())
    if hi <= lo * (1 + 1e-6):
        return [(lo, hi, 1.0)]
    logd = np.log(d)
    edges = np.linspace(math.log(lo), math.log(hi), bins + 1)
    hist, _ = np.histogram(logd, bins=edges)
    occupied = hist >= max(1, min_share * d.size)
    # bins whose pixels are too few count as empty, but those pixels still belong to clusters
    idx = np.flatnonzero(occupied)
    if idx.size == 0:
        return [(lo, hi, 1.0)]
    step = edges[1] - edges[0]
    gap_bins = max(1, int(math.ceil(math.log1p(min_gap) / step)))
    runs, start = [], idx[0]
    for a, b in zip(idx[:-1], idx[1:]):
        if b - a > gap_bins:
            runs.append((start, a))
            start = b
    runs.append((start, idx[-1]))
    clusters = []
    order = np.sort(logd)
    for i, (a, b) in enumerate(runs):
        # a cluster spans from the middle of the gap before it to the middle of the gap after it
        low = -np.inf if i == 0 else (edges[runs[i - 1][1] + 1] + edges[a]) / 2
        high = np.inf if i == len(runs) - 1 else (edges[b + 1] + edges[runs[i + 1][0]]) / 2
        i0, i1 = np.searchsorted(order, [low, high])
        if i1 <= i0:
            continue
        clusters.append((float(math.exp(order[i0])), float(math.exp(order[i1 - 1])),
                         (i1 - i0) / d.size))
    return clusters


def clip_distances(depth, n_layers, focus_distance=None, clip_start=0.1, clip_end=1000.0):
    """``n_layers - 1`` increasing clip-start distances for the extra passes of a frame whose
    rendered depth (planar, scene units, background non-finite or >= 1e9) is ``depth`` (see the
    module's rule). ``n_layers`` = 1 gives ``[]``. ``clip_start`` / ``clip_end``: the camera's;
    every distance lies strictly between them. :class:`UsageError` for an ``n_layers`` out of
    range (1 to 16) or an empty clip range."""
    if isinstance(n_layers, bool) or int(n_layers) != n_layers or not 1 <= n_layers <= MAX_LAYERS:
        raise UsageError(f"depth layers must be a whole number from 1 to {MAX_LAYERS}, not "
                         f"{n_layers!r}")
    n_layers = int(n_layers)
    if not (clip_start > 0 and clip_end > clip_start):
        raise UsageError(f"the camera's clip range {clip_start:g}-{clip_end:g} is empty")
    if focus_distance is not None and not focus_distance > 0:
        raise UsageError(f"the focus distance must be positive, not {focus_distance!r}")
    wanted = n_layers - 1
    if wanted == 0:
        return []
    lo_limit, hi_limit = clip_start * (1 + 1e-4), clip_end * (1 - 1e-4)
    clusters = depth_clusters(depth)
    clips = []
    for i, (near, far, _share) in enumerate(clusters[:-1]):
        if len(clips) == wanted:
            break
        if focus_distance is not None and near > focus_distance * (1 + MIN_GAP):
            break
        if focus_distance is not None and far > focus_distance * MAX_SPAN:
            break  # a long run of depth (a ground plane), not a subject around the focus
        nxt = clusters[i + 1][0]
        c = math.sqrt(far * nxt)
        if lo_limit < c < hi_limit and (not clips or c > clips[-1]):
            clips.append(c)
    if len(clips) < wanted:
        # fill: split what lies behind the last clip evenly in log depth
        if clusters:
            top = clusters[-1][1]
            if focus_distance is not None:
                top = min(top, max(focus_distance, clusters[0][0]))
            start = clips[-1] if clips else clusters[0][0]
        else:
            start = max(clip_start, focus_distance or clip_start) * 1.5
            top = start * 4
        start = max(start, lo_limit)
        top = min(max(top, start * 1.05), hi_limit)
        missing = wanted - len(clips)
        if top <= start:
            top = min(start * 2, hi_limit)
        extra = np.exp(np.linspace(math.log(start), math.log(top), missing + 2)[1:-1])
        if clips:
            extra = np.exp(np.linspace(math.log(start), math.log(top), missing + 1)[1:])
        clips.extend(float(c) for c in extra)
    clips = sorted(min(max(c, lo_limit), hi_limit) for c in clips)
    for k in range(1, len(clips)):
        if clips[k] <= clips[k - 1]:
            clips[k] = min(clips[k - 1] * (1 + 1e-3), hi_limit)
    if len(set(clips)) != len(clips):
        raise UsageError(f"{n_layers} depth layers do not fit between the frame's depths and "
                         f"the camera's clip end ({clip_end:g}): use fewer layers")
    return [float(c) for c in clips]


# -- slabs ----------------------------------------------------------------------------------------

#: Depth-layer modes: ``peel`` (the beauty + passes with the clip start moved past nearer
#: surfaces, opaque samples) and ``slabs`` (consecutive clip start / clip end ranges rendered
#: with the film transparent: premultiplied colour with partial coverage per slab).
MODES = ("peel", "slabs")


def slab_boundaries(depth, n_layers, focus_distance=None, clip_start=0.1, clip_end=1000.0):
    """``n_layers - 1`` increasing inner boundaries cutting the camera's clip range into
    ``n_layers`` slabs, from the frame's depth (as :func:`clip_distances`) and the focus.

    A boundary is best placed where nothing is: in the gaps of the frame's depth, so that a
    surface is not split between two slabs. The rule:

    1. the gaps behind the depth clusters in front of or around the focus (the peel rule of
       :func:`clip_distances`, candidates nearest first): the foreground, the subject and what
       lies behind each get their own slab;
    2. while slabs are left: one boundary just in front of the nearest visible surface
       (``nearest / (1 + MIN_GAP)``). A surface the depth pass does not show -- a curtain less
       opaque than the view layer's alpha threshold, smoke, the faint part of a motion trail --
       lies in front of everything the pass saw; this gives it a slab of its own;
    3. the rest split the depth range behind the last boundary evenly in log depth (the fill of
       :func:`clip_distances`).

    Every boundary lies strictly between ``clip_start`` and ``clip_end``; :class:`UsageError`
    as :func:`clip_distances`."""
    wanted = int(n_layers) - 1 if not isinstance(n_layers, bool) and \
        int(n_layers) == n_layers else n_layers
    base = clip_distances(depth, n_layers, focus_distance, clip_start, clip_end)
    if not wanted or wanted < 1:
        return base
    lo_limit, hi_limit = clip_start * (1 + 1e-4), clip_end * (1 - 1e-4)
    clusters = depth_clusters(depth)
    gaps = []
    for i, (near, far, _share) in enumerate(clusters[:-1]):
        if focus_distance is not None and near > focus_distance * (1 + MIN_GAP):
            break
        if focus_distance is not None and far > focus_distance * MAX_SPAN:
            break
        c = math.sqrt(far * clusters[i + 1][0])
        if lo_limit < c < hi_limit:
            gaps.append(c)
    chosen = gaps[:wanted]
    if clusters and len(chosen) < wanted:
        front = clusters[0][0] / (1 + MIN_GAP)
        if lo_limit < front < hi_limit and all(abs(front / c - 1) > MIN_GAP for c in chosen):
            chosen.append(front)
    if len(chosen) == len(base):
        bounds = sorted(chosen)
    else:
        # the fill of clip_distances behind the last chosen boundary
        rest = [c for c in base if not chosen or c > max(chosen) * (1 + 1e-3)]
        bounds = sorted(chosen + rest[:wanted - len(chosen)])
        if len(bounds) < wanted:
            return base
    for k in range(1, len(bounds)):
        if bounds[k] <= bounds[k - 1]:
            bounds[k] = min(bounds[k - 1] * (1 + 1e-3), hi_limit)
    if len(set(bounds)) != len(bounds):
        return base
    return [float(c) for c in bounds]
