"""Stage *split edges*: Blender's depth comes from one sample while the colour is anti-aliased,
so a pixel on a depth edge holds two surfaces' colours under one depth.  Such a pixel is split
into the part that looks like its near neighbours (at their radius) and the part that looks
like its far neighbours (at theirs), with coverages that add up to one."""

import numpy as np
from numpy import float32 as _F32

from .resample import _max3x3
from .samples import _concat_samples, _samples

#: Edge pixels per batch of the edge split (bounds its temporaries: ~2 KB a pixel).
_SPLIT_CHUNK = 16384


#: The 24 neighbours within two pixels (row, column offsets), in a fixed order.
_SPLIT_OFFSETS = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if dy or dx]


def split_edges(col, coc, cov, *, threshold=1.0, pool=None, solid=None, dithered=None):
    """Stage *split edges*: split mixed-colour pixels on depth edges into a near and a far
    sample.

    ``col`` (4, H, W) premultiplied colour and ``cov`` (H, W) coverage of each pixel's own
    sample (both updated in place: the pixel keeps the part on its own side), ``coc`` (H, W)
    signed radii.  Returns the other parts as a list of :class:`~.samples.Samples` (empty or one).
    The edge pixels are handled in batches of rows (on ``pool``'s threads if given), all
    reading the frame before any pixel is changed, so the result does not depend on it.
    ``solid``: None, or an (H, W) bool map of the pixels that may be split or lend their colour
    as a side's (those whose own sample covers the pixel whole).  ``dithered``: None, or a
    list to which the flat indices of the pixels read as a dithered depth are appended (their
    two parts are the surfaces in front and behind: nothing hidden is left to invent)."""
    _, h, w = col.shape
    # Min / max radius over the 3x3 neighbourhood (edge-replicated).
    hi = _max3x3(coc)
    lo = -_max3x3(-coc)
    mixed = (hi - lo) > threshold
    edge = mixed.copy() if solid is None else mixed & solid
    # Keep away from the frame border (padding makes it uniform anyway).
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = False
    # Pixels two away from the border have no 5x5 neighbourhood: drop them.
    edge[:2, :] = edge[-2:, :] = edge[:, :2] = edge[:, -2:] = False
    # A depth that dithers (motion trails: each pixel's depth is one sample's surface) is read
    # as coverage instead of split by colour.
    dither = _dither_map(coc, threshold) if solid is None else None
    if dither is not None:
        edge &= ~dither
    idx = np.flatnonzero(edge)
    d_idx = np.flatnonzero(dither) if dither is not None else idx[:0]
    if dithered is not None and d_idx.size:
        dithered.append(d_idx)
    if idx.size == 0 and d_idx.size == 0:
        return []
    # Pure colours of the two sides: neighbours within two pixels whose own 3x3
    # neighbourhood has one depth (so they are not mixed themselves).
    pure = ~mixed.reshape(-1)
    if solid is not None:
        pure &= solid.reshape(-1)
    if dither is not None:
        pure &= ~dither.reshape(-1)
    flat_coc = coc.reshape(-1)
    flat_col = col.reshape(4, -1)
    lo_f, hi_f = lo.reshape(-1), hi.reshape(-1)
    chunks = [idx[i:i + _SPLIT_CHUNK] for i in range(0, idx.size, _SPLIT_CHUNK)]
    chunks += [-1 - d_idx[i:i + _SPLIT_CHUNK] for i in range(0, d_idx.size, _SPLIT_CHUNK)]

    def work(chunk):
        if chunk.size and chunk[0] < 0:  # (dithered pixels, marked by their sign)
            return _split_dither(-1 - chunk, flat_col, flat_coc, w)
        return _split_chunk(chunk, flat_col, flat_coc, pure, lo_f[chunk], hi_f[chunk], w)

    flat_cov = cov.reshape(-1)

    def compact(r):
        # Only the other parts that hold anything are kept until every batch has read.
        if r is None:
            return None
        idx, own_col, own_cov, other_col, other_cov, other_coc = r
        other_cov = flat_cov[idx] * other_cov
        keep = other_cov > 1e-4
        return (idx, own_col, own_cov,
                (idx[keep], other_col[:, keep], other_cov[keep], other_coc[keep]))

    results = list(pool.map(lambda c: compact(work(c)), chunks)) \
        if pool is not None and len(chunks) > 1 else [compact(work(c)) for c in chunks]
    # Every batch has read the frame: now the pixels' own samples keep the part on their side
    # (in place), the other parts become extra samples.
    others = []
    for n, r in enumerate(results):
        if r is None:
            continue
        idx, own_col, own_cov, other = r
        flat_cov[idx] *= own_cov
        flat_col[:, idx] = own_col
        if other[0].size:
            others.append(_samples(*other))
        results[n] = None
    if not others:
        return []
    return [_concat_samples(others)]


#: Dithered depth: a pixel whose four neighbours all lie at another depth is isolated; where
#: at least this many of them lie within a 9x9 neighbourhood (``_DITHER_BOX``) the depth
#: dithers there (motion shot, flat: 5x5 and 2 gave 38.78 / 34.96 dB, 9x9 39.39 / 35.65).
_DITHER_ISOLATED = 2
_DITHER_BOX = 9
#: Half-size of the window whose depths estimate a dithered pixel's coverage (7x7).
_DITHER_REACH = 3
#: Half-size of the window whose colours give the blurrier side's smooth colour (15x15;
#: motion shot edge band: 5x5 36.71, 7x7 37.11, 11x11 37.58, 15x15 37.74, 21x21 37.75 dB),
#: read every ``_DITHER_COLOUR_STEP`` pixels (8x8 of them: 37.72 dB, and on a 1080p frame
#: with 500,000 dithered pixels 0.5 CPU s instead of 2.6 for all 15x15; every third: 37.53).
_DITHER_COLOUR_REACH = 7
_DITHER_COLOUR_STEP = 2
#: A dithered pixel's window holds two groups of radii: the gap between them at least this
#: share of the wider group's spread.
_DITHER_GAP = 1.0


def _dither_map(coc, threshold):
    """(H, W) bool map of the pixels where the depth dithers, or None: Cycles writes the Z
    pass from one sample, so in a motion trail (or any pixel shared by surfaces at other
    depths, noisily) each pixel shows one of the surfaces at random.  There many pixels are
    isolated (their four neighbours all at another radius), which an edge -- however ragged
    -- does not make."""
    c = coc
    iso = np.zeros(c.shape, bool)
    mid = c[1:-1, 1:-1]
    iso[1:-1, 1:-1] = np.abs(mid - c[:-2, 1:-1]) > threshold
    if not iso.any():
        return None
    iso[1:-1, 1:-1] &= np.abs(mid - c[2:, 1:-1]) > threshold
    iso[1:-1, 1:-1] &= np.abs(mid - c[1:-1, :-2]) > threshold
    iso[1:-1, 1:-1] &= np.abs(mid - c[1:-1, 2:]) > threshold
    if np.count_nonzero(iso) < _DITHER_ISOLATED:
        return None
    # Isolated pixels per 9x9 neighbourhood (a box sum of the map).
    n = iso.astype(np.int16)
    b = _DITHER_BOX
    cs = np.cumsum(np.pad(n, ((b // 2 + 1, b // 2), (0, 0))), axis=0)
    n = cs[b:] - cs[:-b]
    cs = np.cumsum(np.pad(n, ((0, 0), (b // 2 + 1, b // 2))), axis=1)
    n = cs[:, b:] - cs[:, :-b]
    out = n >= _DITHER_ISOLATED
    r = _DITHER_REACH
    out[:r, :] = out[-r:, :] = out[:, :r] = out[:, -r:] = False
    # A dither shows two surfaces: the radii around the pixel fall into a near and a far
    # group, each tighter than the gap between them.  Depths spread all over (noise, a
    # frame of random depths) are no dither: those pixels are left to the edge split.
    idx = np.flatnonzero(out)
    if idx.size:
        h, w = c.shape
        flat = c.reshape(-1)
        steps = np.array([dy * w + dx for dy in range(-r, r + 1) for dx in range(-r, r + 1)],
                         np.int64)[:, None]
        two = np.zeros(idx.size, bool)
        for s in range(0, idx.size, _SPLIT_CHUNK):
            v = flat[steps + idx[None, s:s + _SPLIT_CHUNK]]       # (49, n)
            lo, hi = v.min(axis=0), v.max(axis=0)
            mid = 0.5 * (lo + hi)
            near = v <= mid
            near_hi = np.where(near, v, lo).max(axis=0)
            far_lo = np.where(near, hi, v).min(axis=0)
            gap = far_lo - near_hi
            spread = np.maximum(near_hi - lo, hi - far_lo)
            two[s:s + _SPLIT_CHUNK] = (gap > threshold) & (gap > _DITHER_GAP * spread)
        out.reshape(-1)[idx[~two]] = False
    return out if out.any() else None


def _split_dither(idx, flat_col, flat_coc, w):
    """The dithered pixels ``idx`` read as coverage: the share of near and far radii in the
    7x7 window around a pixel estimates how much of it each surface covers.  Returns the
    tuple of :func:`_split_chunk`: the pixel keeps its own side's share (at its own radius),
    the other side's share becomes an extra sample at the mean radius of that side's pixels
    in the window.  The colour (already the mix) is shared so that the detail stays with the
    sharper side: the blurrier side takes its share of a smooth colour (the mean over the
    15x15 window's pixels at its depth, every other one), the sharper side the rest (motion
    shot, flat: colour shared in proportion 39.39 / 35.65 dB, this 41.16 / 37.72; 7x7 window
    40.65 / 37.11)."""
    r = _DITHER_REACH
    steps = np.array([dy * w + dx for dy in range(-r, r + 1) for dx in range(-r, r + 1)],
                     np.int64)[:, None]
    v = flat_coc[steps + idx[None, :]]                    # (49, n)
    lo, hi = v.min(axis=0), v.max(axis=0)
    mid = 0.5 * (lo + hi)
    near = v <= mid
    n_near = np.count_nonzero(near, axis=0)
    k = v.shape[0]
    a = n_near.astype(_F32) / _F32(k)                     # near coverage
    near_r = np.where(near, v, 0).sum(axis=0) / np.maximum(n_near, 1)
    far_r = np.where(near, 0, v).sum(axis=0) / np.maximum(k - n_near, 1)
    own = flat_coc[idx]
    own_near = own <= mid
    own_cov = np.where(own_near, a, 1 - a).astype(_F32)
    c = np.take(flat_col, idx, axis=1)
    # The pixel's colour is the mix of both surfaces.  The blurrier side's part is smooth
    # (the lens melts its detail anyway): its share of a mean colour around; the detail
    # stays with the sharper side (a wall seen through a blurred bar's trail keeps its
    # texture, a ball moving in focus its stripes).
    near_blurrier = np.abs(near_r) > np.abs(far_r)
    # (the mean over the window's pixels whose depth is the blurrier side's: those show more
    # of it than the others)
    R = _DITHER_COLOUR_REACH
    # (the window clamped to the frame: repeated edge pixels, as the padding has them)
    span = np.arange(-R, R + 1, _DITHER_COLOUR_STEP)
    ys, xs = np.divmod(idx, w)
    rows = np.clip(ys[None, :] + span[:, None], 0, flat_coc.size // w - 1) * w
    cols = np.clip(xs[None, :] + span[:, None], 0, w - 1)
    wide = (rows[:, None, :] + cols[None, :, :]).reshape(-1, idx.size)
    del rows, cols
    side = (flat_coc[wide] <= mid) == near_blurrier[None, :]
    n_side = np.maximum(np.count_nonzero(side, axis=0), 1).astype(_F32)
    smooth = np.zeros_like(c)
    for ch in range(4):
        smooth[ch] = np.where(side, flat_col[ch][wide], 0).sum(axis=0) / n_side
    share = np.where(near_blurrier, a, 1 - a).astype(_F32)
    blurry = np.clip(smooth * share, 0.0, np.maximum(c, 0.0))
    sharp = c - blurry
    own_is_blurry = own_near == near_blurrier
    own_col = np.where(own_is_blurry, blurry, sharp)
    return (idx, own_col, own_cov, c - own_col, 1 - own_cov,
            np.where(own_near, far_r, near_r).astype(_F32))


def _split_fit(c, f, b):
    """Best mix ``b + a (f - b)`` of colours ``f`` (near) and ``b`` (far) for pixel colours
    ``c`` (4 channels on the first axis; ``f`` or ``b`` may hold candidates, (4, m, n)):
    returns (a, squared residual, squared contrast).  Channel by channel, so that the
    candidates' arrays stay contiguous."""
    d = [f[i] - b[i] for i in range(4)]
    dd = d[0] * d[0]
    for i in range(1, 4):
        dd += d[i] * d[i]
    ed = (c[0] - b[0]) * d[0]
    for i in range(1, 4):
        ed += (c[i] - b[i]) * d[i]
    a = np.clip(ed / np.maximum(dd, 1e-12), 0.0, 1.0)
    del ed
    res = None
    for i in range(4):
        r = c[i] - (b[i] + a * d[i])
        r *= r
        if res is None:
            res = r
        else:
            res += r
    return a, res, dd


def _line_residuals(g, f, cand, mask):
    """Squared residuals (k, n) of the best mixes of pixel colours ``c`` on the lines from
    each candidate colour ``cand`` (4, k, n) to the fixed colour ``f`` (4, n), given
    ``g = c - f``; the float32 maximum (or more) where ``mask`` (k, n) is False.  From three
    dot products (``e = c - cand = g + d`` with ``d = f - cand``; ``|e - a d|^2 = e.e - 2 a
    e.d + a^2 d.d``), so the candidates are read once per channel.  Candidates on the first axis and
    pixels on the last keep every operation's inner loop long (the pixels), not 24 long."""
    dd = gd = None
    for i in range(4):
        d = np.subtract(f[i], cand[i])
        gd_i = np.multiply(g[i], d)
        d *= d
        if dd is None:
            dd, gd = d, gd_i
        else:
            dd += d
            gd += gd_i
        del d, gd_i
    gg = g[0] * g[0]
    for i in range(1, 4):
        gg += g[i] * g[i]
    ed = gd + dd                                      # e.d
    a = np.maximum(dd, 1e-12)
    np.divide(ed, a, out=a)
    np.clip(a, 0.0, 1.0, out=a)
    # e.e - 2 a e.d + a^2 d.d, with e.e = g.g + 2 g.d + d.d
    res = gd
    res *= 2
    res += dd
    res += gg
    # Residuals within the rounding of these sums count as exact fits (0): among equally
    # good candidates the first one wins, as with the residuals summed channel by channel.
    tiny = np.add(dd, gg)
    tiny *= 1e-6
    ed *= 2
    dd *= a
    ed -= dd
    ed *= a
    res -= ed
    res *= res > tiny
    # Candidates off the mask: pushed to the float32 maximum (or inf), above any real fit.
    res += np.multiply(~mask, np.finfo(_F32).max, dtype=_F32)
    return res


def _first_best(res, cand):
    """The candidate colours (4, n) with the smallest residual ``res`` (k, n) of ``cand``
    (4, k, n), the first of equal ones (as ``argmin``, faster on (k, n): a minimum over the
    k rows, then the rows that reach it from the last to the first)."""
    best = res.min(axis=0)
    k, n = res.shape
    pick = np.zeros(n, np.intp)
    for row in range(k - 1, 0, -1):
        pick[res[row] == best] = row
    # (a first row that reaches the minimum overrides the later ones: set it last)
    pick[res[0] == best] = 0
    pick *= n
    pick += np.arange(n)
    return np.take(cand.reshape(cand.shape[0], -1), pick, axis=1)


def _split_steps(w):
    """Flat-index offsets (24, 1) of :data:`_SPLIT_OFFSETS` in a frame ``w`` pixels wide."""
    return np.array([dy * w + dx for dy, dx in _SPLIT_OFFSETS], np.int64)[:, None]


def _split_chunk(idx, flat_col, flat_coc, pure, lo_i, hi_i, w):
    """The edge split of the pixels ``idx`` (read only): ``(idx, own colour, own coverage
    share, other colour, other coverage share, other radius)`` of the pixels that split, or
    None."""
    mid = 0.5 * (lo_i + hi_i)
    tol = np.maximum(0.25 * (hi_i - lo_i), 0.5)
    # The 24 neighbours at once, one row per neighbour and a column per pixel: near / far
    # masks (24, n), colours (4, 24, n).
    j = _split_steps(w) + idx[None, :]
    cj = flat_coc[j]
    pj = pure[j]
    near = pj & (cj <= lo_i + tol)
    far = pj & (cj >= hi_i - tol)
    del cj, pj
    f_n = np.count_nonzero(near, axis=0)
    b_n = np.count_nonzero(far, axis=0)
    ok = (f_n > 0) & (b_n > 0)
    if not ok.any():
        return None
    if not ok.all():
        sel = np.flatnonzero(ok)
        idx, lo_i, hi_i, mid = idx[sel], lo_i[sel], hi_i[sel], mid[sel]
        j, near, far, f_n = j[:, sel], near[:, sel], far[:, sel], f_n[sel]
    cand = np.take(flat_col, j, axis=1)  # (4, 24, n)
    del j
    c = np.take(flat_col, idx, axis=1)
    fc = np.multiply(cand, near).sum(axis=1)
    fc /= f_n.astype(_F32)
    # Colours vary along an edge (texture, highlights): pick, among the pure neighbours, the
    # far colour and then the near colour that explain the pixel best as a mix (the first
    # of equally good ones).
    bc = _first_best(_line_residuals(c - fc, fc, cand, far), cand)
    # (the lines from the far colour bc to each candidate: the same residuals with the
    # roles of the fixed and the candidate colour swapped)
    fc = _first_best(_line_residuals(c - bc, bc, cand, near), cand)
    del cand
    a, res2, dd = _split_fit(c, fc, bc)
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
    # Premultiplied parts: a part's alpha never exceeds its coverage.
    a = np.clip(a, near_part[3], np.maximum(1.0 - far_part[3], near_part[3]))
    own_cov = np.where(own_near, a, 1 - a)
    return (idx, np.where(own_near, near_part, far_part), own_cov,
            np.where(own_near, far_part, near_part), 1 - own_cov,
            np.where(own_near, hi_i, lo_i))
