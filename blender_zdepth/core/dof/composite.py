"""Stages *composite*, *finish* and *output*: the blurred layers composited near to far by
coverage budget (reduced-resolution groups merged as one layer each), disocclusion holes
filled with the farthest layers' own colour, the rest normalised, and the frame cut out of the
padding as interleaved RGBA."""

import numpy as np
from numpy import float32 as _F32

from ..malloc import release_free_memory as _release_free_memory
from .assign import layer_groups
from .content import layer_content
from .convolve import convolve_layer
from .resample import _upsample_linear
from .schedule import _big_frame, _each, _layer_bytes, _ordered_map, _stage

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


def _blur_layer(frame, extra, layers, k, s, gs, settings, pixel_aspect):
    """Layer k's content and convolution (a :class:`~.convolve.BlurredLayer`, or None when
    empty)."""
    with _stage(f"layer content s={s}"):
        content = layer_content(frame, extra, layers, k, s)
    if content is None:
        return None
    return convolve_layer(content, layers.radii[k], s, gs, settings, pixel_aspect)


def _zeroed_planes(shapes):
    """Zero-filled float32 arrays of these shapes, written through (their pages touched)."""
    out = []
    for shape in shapes:
        a = np.empty(shape, _F32)
        a.fill(0)
        out.append(a)
    return out


def composite_layers(frame, extra, layers, settings, *, pixel_aspect=1.0, pool=None,
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
    trim = pool is not None and _big_frame(frame.shape)
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
        window=settings.thread_count() + 1)

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


def _fill_holes(acc, budget, far):
    """Top up coverage short of 1 with the tracked far colour, where there is one."""
    planes, is_set = far
    if not is_set.any():
        return
    missing = np.where(is_set, 1.0 - budget, 0.0).astype(_F32)
    for i in range(4):
        acc[i] += planes[i] * missing
    budget += missing


def finish(acc, budget, far, col, *, pool=None):
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


def rgba_out(planes, pad, H, W, rgba, *, pool=None):
    """Stage *output*: the frame's part of the planar ``planes`` (4, Hp, Wp) as interleaved
    float32 (H, W, 4) (alpha 1 for an RGB input); the channels on ``pool``'s threads, if
    given."""
    out = np.empty((H, W, 4), _F32)

    def channel(i):
        out[..., i] = 1.0 if i == 3 and rgba.shape[2] == 3 else \
            planes[i, pad:pad + H, pad:pad + W]

    _each(pool, channel, 4)
    return out
