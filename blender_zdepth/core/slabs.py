"""Coverage slabs as deep samples: a frame's camera range cut into consecutive slabs, each
rendered with the film transparent (premultiplied colour with its true partial coverage --
motion blur, transparency, anti-aliasing -- and its own Z), turned into the samples of a deep
image that flattens to the beauty: the slabs' own Monte Carlo noise never moves it
(:func:`slab_samples`). No file I/O: :func:`blender_zdepth.core.exr.write_deep_exr` writes them
(``slabs=``), :mod:`.deep` is the sample model they feed."""

import numpy as np

from .deep import BACKGROUND_DEPTH, BACKGROUND_Z, DeepImage, fill_missing_depth, tidy
from .errors import ZDepthError

__all__ = ["SLAB_MIN_ALPHA", "SLAB_MIN_BACKGROUND", "packed_from_slabs", "slab_samples"]

#: A slab's pixel is a sample when its coverage (alpha) is above this.
SLAB_MIN_ALPHA = 1e-4

#: What the slabs leave uncovered in an opaque beauty becomes a background sample when it is
#: more than this (the world seen past the slabs' surfaces); less is noise, folded into the
#: last sample's coverage.
SLAB_MIN_BACKGROUND = 1e-3


def _slab_depth(depth, has, lo, hi):
    """A slab's depth where it has a sample (``has``): its own Z inside ``[lo, hi]``, else
    (Z written from one sample that missed the surface) its neighbours'
    (:func:`~.deep.fill_missing_depth`), else the middle of the slab."""
    z = np.array(depth, np.float32)
    with np.errstate(invalid="ignore"):
        inside = np.isfinite(z) & (z >= lo * (1 - 1e-3)) & (z <= hi * (1 + 1e-3))
    z = fill_missing_depth(np.where(inside, z, np.inf).astype(np.float32), has)
    with np.errstate(invalid="ignore"):
        lost = has & ~(np.isfinite(z) & (z < BACKGROUND_DEPTH))
    if lost.any():
        z[lost] = float(np.sqrt(lo * hi)) if np.isfinite(hi) and lo > 0 else \
            (float(lo) * 2.0 if lo > 0 else np.float32(BACKGROUND_Z))
    return np.where(has, z, np.inf).astype(np.float32)


def slab_samples(rgba, slabs, bounds=None):
    """Packed samples of a slab deep file, reconciled to the beauty.

    ``rgba`` (H, W, 4) premultiplied: the beauty. ``slabs``: near to far, ``(rgba_k, depth_k)``
    of each slab ``[bounds[k], bounds[k + 1]]`` (rendered with the film transparent: premultiplied
    colour with partial coverage, the slab's own depth). Every pixel gets one point sample per
    slab that covers it (alpha above :data:`SLAB_MIN_ALPHA`; a covered pixel without its own
    depth inside the slab takes its neighbours', :func:`~.deep.fill_missing_depth`) and, where an opaque beauty shows more than the slabs cover, a
    background sample at :data:`BACKGROUND_Z` (the world).

    The slabs' own Monte Carlo noise must not move the beauty: the samples are adjusted so that
    compositing them front to back gives the beauty (to float32 rounding):

    * coverage: the background sample takes what the beauty covers beyond the slabs; otherwise
      the last sample's alpha is set so that the total coverage is the beauty's alpha (its
      colour scaled with it: the same unpremultiplied colour);
    * colour, per channel: the samples the pixel shows (not those behind an opaque one) are
      scaled by beauty / composite, or -- where the composite is (near) zero or the ratio is
      beyond 8 -- given the difference in proportion to their coverage.

    Returns ``(counts (H, W), channels, stats)``; ``stats``: ``{"moved": mean |change| of the
    samples' colour relative to the beauty's mean, "background": pixels with a background
    sample}``."""
    rgba = np.asarray(rgba, np.float32)
    h, w = rgba.shape[:2]
    p = h * w
    n = len(slabs)
    if bounds is None:
        ranges = [(0.0, np.inf)] * n  # no boundaries known: any depth is the slab's own
    elif n < 1 or len(bounds) != n + 1:
        raise ZDepthError(f"{n} slab(s) need {n + 1} boundaries, not {len(bounds)}")
    else:
        ranges = [(float(lo), float(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]
    if n < 1:
        raise ZDepthError("no slab given")
    beauty = rgba.reshape(p, 4)
    cols = np.zeros((n + 1, p, 4), np.float32)
    zs = np.full((n + 1, p), np.float32(BACKGROUND_Z), np.float32)
    has = np.zeros((n + 1, p), bool)
    for k, (srgba, sdepth) in enumerate(slabs):
        srgba = np.asarray(srgba, np.float32)
        if srgba.shape != (h, w, 4) or np.shape(sdepth) != (h, w):
            raise ZDepthError(f"slab {k + 1} is {srgba.shape[:2]} / {np.shape(sdepth)}, the "
                              f"beauty {h}x{w}: slabs must be registered pixel for pixel")
        c = np.nan_to_num(srgba.reshape(p, 4), nan=0.0, posinf=0.0,
                          neginf=0.0)
        c[:, 3] = np.clip(c[:, 3], 0.0, 1.0)
        has[k] = c[:, 3] > SLAB_MIN_ALPHA
        z = _slab_depth(sdepth, has[k].reshape(h, w), *ranges[k])
        cols[k] = np.where(has[k][:, None], c, 0.0)
        zs[k] = np.where(has[k], z.ravel(), zs[k])
    # coverage
    trans = np.ones(p, np.float32)
    for k in range(n):
        trans *= 1.0 - cols[k, :, 3]
    target_a = np.clip(beauty[:, 3], 0.0, 1.0)
    extra = target_a - (1.0 - trans)
    bg = (extra > SLAB_MIN_BACKGROUND) & (trans > SLAB_MIN_BACKGROUND)
    bg |= ~has[:n].any(axis=0) & (target_a > 0)
    has[n] = bg
    with np.errstate(divide="ignore", invalid="ignore"):
        cols[n, :, 3] = np.where(bg, np.clip(extra / trans, 0.0, 1.0), 0.0)
    last = np.where(has[::-1].any(axis=0), n - np.argmax(has[::-1], axis=0), -1)
    fix = (last >= 0) & ~bg
    if fix.any():
        # total coverage = the beauty's: solve the last sample's alpha
        px = np.flatnonzero(fix)
        lk = last[px]
        before = np.ones(px.size, np.float32)
        for k in range(n + 1):
            sel = k < lk
            before[sel] *= 1.0 - cols[k, px[sel], 3]
        old = cols[lk, px, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            new = np.where(before > 1e-12, 1.0 - (1.0 - target_a[px]) / before, old)
        new = np.clip(new, 0.0, 1.0)
        scale = np.where(old > 0, new / np.where(old > 0, old, 1.0), 1.0)
        cols[lk, px, :3] *= scale[:, None]
        cols[lk, px, 3] = new
    # colour
    weight = np.zeros((n + 1, p), np.float32)   # how much of each sample the pixel shows
    t = np.ones(p, np.float32)
    for k in range(n + 1):
        weight[k] = np.where(has[k], t, 0.0)
        t = t * np.where(has[k], 1.0 - cols[k, :, 3], 1.0)
    vis = weight > 0
    comp = np.einsum("kp,kpc->pc", weight, cols[:, :, :3])              # (P, 3)
    target = beauty[:, :3]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = target / comp
    mult = (np.abs(comp) > 1e-6) & np.isfinite(ratio) & (ratio >= 0) & (ratio <= 8)
    ratio = np.where(mult, ratio, 1.0)
    before = cols[:, :, :3].copy()
    cols[:, :, :3] *= np.where(vis[:, :, None], ratio[None], 1.0)
    total = (weight * cols[:, :, 3]).sum(axis=0)
    add = np.flatnonzero((~mult).any(axis=1) & (total > 0))
    if add.size:
        # the composite is (near) zero or far off: the difference goes to the samples shown,
        # in proportion to their coverage (their contributions add up to it exactly)
        diff = np.where(mult[add], 0.0, target[add] - comp[add])          # (m, 3)
        share = np.where(vis[:, add], cols[:, add, 3] / total[add], 0.0)  # (n+1, m)
        cols[:, add, :3] += diff[None] * share[:, :, None]
    # background samples show nothing but the world: where the beauty is a pixel with no
    # coverage at all (alpha 0 with colour: an emissive volume), the colour cannot be placed
    counts = has.sum(axis=0).astype(np.int64)
    order = np.flatnonzero(has.T.ravel())
    pix, layer = np.divmod(order, n + 1)
    out = {}
    for i, name in enumerate("RGBA"):
        out[name] = np.ascontiguousarray(cols[layer, pix, i], np.float32)
    out["Z"] = np.ascontiguousarray(zs[layer, pix], np.float32)
    out["ZBack"] = out["Z"].copy()
    mean = float(np.abs(beauty[:, :3]).mean()) or 1.0
    moved = float(np.abs(cols[:, :, :3] - before)[has].mean() / mean) if has.any() else 0.0
    stats = {"moved": moved, "background": int(bg.sum())}
    return counts.reshape(h, w), out, stats


def packed_from_slabs(rgba, slabs, bounds=None):
    """The :class:`~.deep.DeepImage` our writer stores for these slabs (no file: for tests and
    for handing slabs to the engine the way a deep file would): :func:`slab_samples`,
    reconciled so that flattening gives the beauty ``rgba`` in every pixel."""
    counts, samples, _ = slab_samples(rgba, slabs, bounds)
    return tidy(DeepImage("<slabs>", counts, samples))
