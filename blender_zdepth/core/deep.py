"""The deep-sample model: a deep image in memory (:class:`DeepImage`), tidied, flattened, and
turned into the depth-of-field engine's input. No file I/O here: deep OpenEXR files are read and
written by :mod:`blender_zdepth.core.exr.deep`.

Conventions (OpenEXR's "Interpreting OpenEXR Deep Pixels"):

* channels ``R, G, B, A`` (premultiplied colour and coverage), ``Z`` (front depth) and
  ``ZBack`` (back depth; ``ZBack == Z`` is a point sample, ``ZBack > Z`` a volume sample);
  depth is linear planar camera depth in scene units (never our log encoding);
* samples of a pixel are sorted front to back (by ``Z``, then ``ZBack``) before use; a file with
  unsorted samples is sorted, not refused;
* overlapping volume samples are *tidied* as the document describes: every sample is split at
  the other samples' ``Z`` and ``ZBack`` (a volume sample keeps its optical density when split:
  ``alpha' = 1 - (1 - alpha) ** fraction``, colour scaled by ``alpha' / alpha``), then samples
  covering the same interval are merged (``alpha = 1 - prod(1 - alpha_i)``, colour weighted by
  ``-log(1 - alpha_i) / alpha_i``; opaque samples average);
* flattening composites the tidy samples front to back with "over".

Our own files (:func:`blender_zdepth.core.exr.write_deep_exr`) hold, per pixel, the beauty as the front sample at the
visible depth and the surfaces the depth-layer passes saw behind it; flattening one gives the
beauty exactly.

In memory a deep image is *packed*: ``counts`` (H, W) samples per pixel and one flat float32
array per channel with every pixel's samples one after the other (row by row). The official
bindings hand deep channels over as (H, W) object arrays of per-pixel 1-D arrays (``None`` where
a pixel has no sample); :func:`blender_zdepth.core.exr.read_deep` converts them to the packed
form once, and everything after that is vectorised numpy. ``benchmarks/bench_deep.py`` measures
what this costs.
"""

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .errors import UsageError, ZDepthError

#: Channels of our deep files, in this order.
DEEP_CHANNELS = ("R", "G", "B", "A", "Z", "ZBack")

#: Header attribute: how many depth layers the deep file was made from (beauty + peeled passes).
LAYERS_KEY = "zdepthDepthLayers"

#: Depth at or beyond which a sample is background (Cycles writes 1e10 for the sky).
BACKGROUND_DEPTH = 1e9

#: Depth written for background (sky / world) samples, as Cycles' Z pass does.
BACKGROUND_Z = 1e10

#: Samples whose front depths differ by less than this fraction belong to one surface: they are
#: grouped into one engine layer (hair strands, the two faces of a thin sheet, a volume's slices).
SURFACE_GAP = 0.02

#: Default budget of hidden layers per pixel handed to the engine.
DEFAULT_MAX_LAYERS = 3


# -- the packed deep image ------------------------------------------------------------------------

@dataclass
class DeepImage:
    """A deep image in packed form, samples sorted front to back and tidy.

    ``counts``: int64 (H, W) samples per pixel. ``channels``: name -> float32 (N,) with the
    samples of pixel 0, then pixel 1, ... (row by row, top row first); always ``R, G, B, A, Z,
    ZBack`` (``A`` = 1 and ``ZBack`` = ``Z`` when the file has none; colour 0 when it has no
    ``R, G, B``). ``header``: the first deep part's attributes (``channels`` left out).
    ``resorted``: pixels whose samples were out of order; ``tidied``: pixels with overlapping
    volume samples that were split and merged; ``half``: channels stored as half float.
    """

    path: str
    counts: np.ndarray
    channels: dict
    header: dict = field(default_factory=dict)
    data_window: tuple = None
    display_window: tuple = None
    half: set = field(default_factory=set)
    resorted: int = 0
    tidied: int = 0

    @property
    def shape(self):
        return self.counts.shape

    @property
    def total(self):
        return int(self.channels["Z"].size)

    @property
    def offsets(self):
        """int64 (H*W + 1,): where each pixel's samples start in the packed arrays."""
        off = np.zeros(self.counts.size + 1, np.int64)
        np.cumsum(self.counts.ravel(), out=off[1:])
        return off

    def nbytes(self):
        return int(self.counts.nbytes + sum(a.nbytes for a in self.channels.values()))


# -- our layers as samples ----------------------------------------------------------------------

def layer_samples(rgba, depth, hidden, min_gap=1e-3):
    """Packed samples of our own deep file: the beauty at the visible depth, then each hidden
    layer's sample where it lies behind the last one written (by more than ``min_gap``
    relatively) and the beauty is opaque there (so that flattening still gives the beauty)."""
    h, w = depth.shape
    vis = np.asarray(depth, np.float32).ravel()
    vis = np.where(np.isfinite(vis) & (vis < BACKGROUND_DEPTH), vis, np.float32(BACKGROUND_Z))
    front = rgba.reshape(-1, 4)
    has_front = (front[:, 3] > 0) | np.any(front[:, :3] != 0, axis=1)
    opaque = front[:, 3] >= 1.0 - 1e-6
    per_layer = [(front, vis, has_front)]
    last = np.where(has_front, vis, np.float32(0)).astype(np.float32)
    for k, (lrgba, ldepth) in enumerate(hidden):
        lrgba = np.asarray(lrgba, np.float32)
        ldepth = np.asarray(ldepth, np.float32)
        if lrgba.shape != (h, w, 4) or ldepth.shape != (h, w):
            raise ZDepthError(f"depth layer {k + 1} is {lrgba.shape[:2]} / {ldepth.shape}, the "
                              f"beauty {h}x{w}: layers must be registered pixel for pixel")
        c = lrgba.reshape(-1, 4)
        d = ldepth.ravel()
        with np.errstate(invalid="ignore"):
            ok = (opaque & (c[:, 3] > 0) & np.isfinite(d) & (d > 0) & (d < BACKGROUND_DEPTH)
                  & (d > last * (1 + min_gap)))
        per_layer.append((c, d, ok))
        last = np.where(ok, d, last)
    masks = np.stack([m for _, _, m in per_layer])  # (L, P)
    counts = masks.sum(axis=0).astype(np.int64)
    # Sample order: pixel-major, layer within pixel -> select from the (P, L) transposed masks.
    order = np.flatnonzero(masks.T.ravel())
    pix, layer = np.divmod(order, len(per_layer))
    out = {}
    colours = np.stack([c for c, _, _ in per_layer])  # (L, P, 4)
    depths = np.stack([d for _, d, _ in per_layer]).astype(np.float32)  # (L, P)
    for i, name in enumerate("RGBA"):
        out[name] = np.ascontiguousarray(colours[layer, pix, i], np.float32)
    out["Z"] = np.ascontiguousarray(depths[layer, pix], np.float32)
    out["ZBack"] = out["Z"].copy()
    return counts.reshape(h, w), out



#: Header attribute: how the depth layers were made (``peel`` or ``slabs``; absent = peel).
MODE_KEY = "zdepthLayerMode"

#: Header attribute of a slab file: the slab boundaries, camera clip start to clip end.
SLAB_BOUNDS_KEY = "zdepthSlabBounds"

# -- sorting and tidying --------------------------------------------------------------------------

def _pixel_of_sample(counts_flat):
    return np.repeat(np.arange(counts_flat.size, dtype=np.int64), counts_flat)


def tidy(image):
    """Sort every pixel's samples front to back and resolve overlapping volume samples (in
    place; returns ``image``). NaN depths are an error (a damaged file)."""
    ch = image.channels
    z, zb = ch["Z"], ch["ZBack"]
    if np.isnan(z).any() or np.isnan(zb).any():
        bad = int(np.isnan(z).sum() + np.isnan(zb).sum())
        raise ZDepthError(f"{image.path}: damaged deep file: {bad} sample depth(s) are NaN")
    np.maximum(zb, z, out=zb)  # ZBack < Z: a point sample at Z
    if z.size < 2:
        return image
    flat = image.counts.ravel()
    pix = _pixel_of_sample(flat)
    same = pix[1:] == pix[:-1]
    # out of order: a later sample of the same pixel in front of an earlier one
    wrong = same & ((z[1:] < z[:-1]) | ((z[1:] == z[:-1]) & (zb[1:] < zb[:-1])))
    if wrong.any():
        bad = np.zeros(flat.size, bool)
        bad[pix[1:][wrong]] = True
        image.resorted = int(bad.sum())
        _sort_pixels(image, np.flatnonzero(bad))
        z, zb = ch["Z"], ch["ZBack"]
    # overlapping volume samples: a sample starting before the previous one ends
    overlap = same & (z[1:] < zb[:-1])
    if overlap.any():
        _tidy_overlaps(image, pix, np.unique(pix[1:][overlap]))
    return image


def _sort_pixels(image, pixels):
    """Sort the samples of ``pixels`` by ``(Z, ZBack)``, in place: the pixels are grouped by
    sample count and each group is sorted as one (pixels, count) matrix along its rows."""
    ch = image.channels
    counts = image.counts.ravel()
    off = image.offsets
    names = list(ch)
    per = counts[pixels]
    for c in np.unique(per):
        group = pixels[per == c]
        idx = off[group][:, None] + np.arange(c)[None, :]            # (pixels, c)
        first = np.argsort(ch["ZBack"][idx], axis=1, kind="stable")
        idx2 = np.take_along_axis(idx, first, axis=1)
        second = np.argsort(ch["Z"][idx2], axis=1, kind="stable")
        src = np.take_along_axis(idx2, second, axis=1)
        for name in names:
            ch[name][idx] = ch[name][src]


def _split(sample, z0, z1):
    """The part ``[z0, z1]`` of a volume sample ``(r, g, b, a, z, zback)``."""
    r, g, b, a, z, zb = sample
    frac = (z1 - z0) / (zb - z)
    if a >= 1.0:
        na = 1.0
    elif a <= 0.0:
        na = 0.0
    else:
        na = -np.expm1(frac * np.log1p(-a))
    scale = na / a if a > 0 else frac
    return (r * scale, g * scale, b * scale, na, z0, z1)


def _merge(samples):
    """Merge samples that cover the same interval (the deep document's rule)."""
    if len(samples) == 1:
        return samples[0]
    z, zb = samples[0][4], samples[0][5]
    opaque = [s for s in samples if s[3] >= 1.0]
    if opaque:
        k = len(opaque)
        return (sum(s[0] for s in opaque) / k, sum(s[1] for s in opaque) / k,
                sum(s[2] for s in opaque) / k, 1.0, z, zb)
    u_total, v = 0.0, [0.0, 0.0, 0.0]
    for r, g, b, a, _, _ in samples:
        a = max(a, 0.0)
        u = -np.log1p(-a)
        w = u / a if a > 0 else 1.0
        u_total += u
        v = [v[0] + r * w, v[1] + g * w, v[2] + b * w]
    alpha = -np.expm1(-u_total)
    w = alpha / u_total if u_total > 0 else 1.0
    return (v[0] * w, v[1] * w, v[2] * w, alpha, z, zb)


def tidy_pixel(samples):
    """Split and merge one pixel's samples (tuples ``(r, g, b, a, z, zback)``, sorted by z):
    the tidy, non-overlapping list, front to back."""
    edges = sorted({s[4] for s in samples} | {s[5] for s in samples})
    pieces = {}
    for s in samples:
        if s[5] <= s[4]:
            pieces.setdefault((s[4], s[4]), []).append(s)
            continue
        inside = [e for e in edges if s[4] <= e <= s[5]]
        for z0, z1 in zip(inside[:-1], inside[1:]):
            pieces.setdefault((z0, z1), []).append(_split(s, z0, z1))
    return [_merge(pieces[key]) for key in sorted(pieces)]


def _tidy_block(z, zb, col):
    """Vectorised :func:`tidy_pixel` for ``n`` pixels of ``c`` samples each (sorted by Z):
    ``z``, ``zb`` (n, c), ``col`` (n, c, 4) premultiplied RGBA, float64. Returns ``(keep (n, K),
    out (n, K, 6))`` with K = 2c - 1 candidate intervals between the sorted boundaries; the kept
    ones, row by row, are the tidy samples front to back."""
    n, c = z.shape
    edges = np.sort(np.concatenate([z, zb], axis=1), axis=1)          # (n, 2c)
    lo, hi = edges[:, :-1], edges[:, 1:]                               # (n, K)
    zj, zbj = z[:, :, None], zb[:, :, None]                            # (n, c, 1)
    lo3, hi3 = lo[:, None, :], hi[:, None, :]                          # (n, 1, K)
    point = zbj <= zj
    first = np.ones(lo.shape, bool)                                    # first interval at lo
    first[:, 1:] = lo[:, 1:] > lo[:, :-1]
    # a volume sample covers the intervals of non-zero length inside it; a point sample
    # belongs to the first zero-length interval at its depth
    vol = ~point & (zj <= lo3) & (hi3 <= zbj) & (hi3 > lo3)
    pts = point & (lo3 == zj) & (hi3 == lo3) & first[:, None, :]
    cover = vol | pts                                                  # (n, c, K)
    a = np.clip(col[..., 3], 0.0, 1.0)[:, :, None]                    # (n, c, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(point, 1.0, (hi3 - lo3) / np.where(point, 1.0, zbj - zj))
        ap = np.where(a >= 1.0, 1.0, -np.expm1(frac * np.log1p(-np.minimum(a, 1.0 - 1e-12))))
        ap = np.where(a <= 0.0, 0.0, ap)
        scale = np.where(a > 0, ap / np.where(a > 0, a, 1.0), frac)
    ap = np.where(cover, ap, 0.0)
    scale = np.where(cover, scale, 0.0)
    pc = col[:, :, None, :3] * scale[..., None]                        # (n, c, K, 3)
    opaque = cover & (ap >= 1.0)
    n_opaque = opaque.sum(axis=1)                                      # (n, K)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_opaque = (pc * opaque[..., None]).sum(axis=1) / np.maximum(n_opaque, 1)[..., None]
        u = np.where(cover & (ap < 1.0), -np.log1p(-np.minimum(ap, 1.0 - 1e-12)), 0.0)
        w = np.where(ap > 0, u / np.where(ap > 0, ap, 1.0), 1.0)
        v = (pc * (w * cover)[..., None]).sum(axis=1)                 # (n, K, 3)
        big_u = u.sum(axis=1)                                          # (n, K)
        alpha = -np.expm1(-big_u)
        colour = np.where((big_u > 0)[..., None], v * (alpha / np.where(big_u > 0, big_u,
                                                                          1.0))[..., None], v)
    has_op = n_opaque > 0
    colour = np.where(has_op[..., None], mean_opaque, colour)
    alpha = np.where(has_op, 1.0, alpha)
    keep = cover.any(axis=1)
    out = np.concatenate([colour, alpha[..., None], lo[..., None], hi[..., None]], axis=2)
    return keep, out


def _tidy_overlaps(image, pix, bad_pixels, block=20000):
    """Tidy the pixels ``bad_pixels`` (overlapping volume samples), vectorised over pixels with
    the same sample count, ``block`` pixels at a time."""
    ch = image.channels
    names = list(DEEP_CHANNELS)
    flat = image.counts.ravel().copy()
    keep = np.ones(pix.size, bool)
    keep[np.isin(pix, bad_pixels)] = False
    off = image.offsets
    new_pix, new_vals = [], []
    per = flat[bad_pixels]
    for c in np.unique(per):
        group = bad_pixels[per == c]
        for start in range(0, group.size, block):
            g = group[start:start + block]
            idx = off[g][:, None] + np.arange(c)[None, :]
            col = np.stack([ch[n][idx] for n in "RGBA"], axis=2).astype(np.float64)
            kept, out = _tidy_block(ch["Z"][idx].astype(np.float64),
                                    ch["ZBack"][idx].astype(np.float64), col)
            flat[g] = kept.sum(axis=1)
            rows, cols = np.nonzero(kept)
            new_pix.append(g[rows])
            new_vals.append(out[rows, cols])
    all_pix = np.concatenate([pix[keep]] + new_pix)
    order = np.argsort(all_pix, kind="stable")
    added = np.concatenate(new_vals) if new_vals else np.zeros((0, 6))
    for i, name in enumerate(names):
        ch[name] = np.concatenate([ch[name][keep], added[:, i].astype(np.float32)])[order]
    image.counts = flat.reshape(image.counts.shape)
    image.tidied = int(len(bad_pixels))


# -- flattening and the engine's layers ----------------------------------------------------------

def _walk(image):
    """Yield ``(rank, pixels, sample_index)`` for rank 0, 1, ...: the pixels that have a sample
    of that rank (front to back) and where it is in the packed arrays."""
    flat = image.counts.ravel()
    off = image.offsets
    active = np.flatnonzero(flat)
    rank = 0
    while active.size:
        yield rank, active, off[active] + rank
        rank += 1
        active = active[flat[active] > rank]


def flatten(image, *, visible_alpha=0.5):
    """Composite every pixel's samples front to back ("over").

    Returns ``(rgba, depth)``: float32 (H, W, 4) premultiplied and float32 (H, W) visible depth:
    the depth of the sample at which the accumulated alpha first reaches ``visible_alpha`` (as
    Blender's Z pass follows surfaces above its alpha threshold), else -- a pixel that never gets
    that opaque -- of the sample that contributes most; ``+inf`` where a pixel has no sample or
    that sample is background (>= 1e9)."""
    rgba, depth, _ = _composite(image, 0, visible_alpha)
    return rgba, depth


def to_engine(image, *, max_layers=DEFAULT_MAX_LAYERS, visible_alpha=0.5, gap=SURFACE_GAP):
    """The depth-of-field engine's input from a deep image: ``(rgba, depth, hidden)``.

    ``rgba``/``depth``: :func:`flatten`. ``hidden``: at most ``max_layers`` (the per-pixel
    budget) ``(rgba_k, depth_k)`` near to far, float32 (H, W, 4) premultiplied / (H, W): the
    samples behind the visible surface, grouped by depth -- a sample starts a new group when it
    lies more than ``gap`` (relatively) behind the front of the current one; samples beyond the
    budget join the last group. A group's colour is its own samples composited over each other
    (not darkened by what is in front: it is the surface as a lens sees it past the edge of the
    nearer one) and its depth that of its front sample. Pixels without hidden samples have
    alpha 0 and depth +inf there. Memory: ``max_layers`` x 20 bytes per pixel."""
    if max_layers < 0:
        raise UsageError(f"the hidden-layer budget must be 0 or more, not {max_layers}")
    return _composite(image, int(max_layers), visible_alpha, gap)


def _composite(image, max_layers, visible_alpha=0.5, gap=SURFACE_GAP):
    h, w = image.shape
    p = h * w
    ch = image.channels
    R, G, B, A, Z = ch["R"], ch["G"], ch["B"], ch["A"], ch["Z"]
    acc = np.zeros((p, 4), np.float64)
    trans = np.ones(p, np.float64)
    vis_rank = np.full(p, -1, np.int64)
    vis_z = np.full(p, np.inf, np.float64)
    best = np.full(p, -1.0)
    best_z = np.full(p, np.inf, np.float64)
    for rank, px, idx in _walk(image):
        a = np.clip(A[idx].astype(np.float64), 0.0, 1.0)
        t = trans[px]
        acc[px, 0] += t * R[idx]
        acc[px, 1] += t * G[idx]
        acc[px, 2] += t * B[idx]
        acc[px, 3] += t * a
        trans[px] = t * (1.0 - a)
        contrib = t * a
        better = contrib > best[px]
        best[px[better]] = contrib[better]
        best_z[px[better]] = Z[idx[better]]
        reached = (vis_rank[px] < 0) & (1.0 - trans[px] >= visible_alpha)
        vis_rank[px[reached]] = rank
        vis_z[px[reached]] = Z[idx[reached]]
    fallback = vis_rank < 0
    vis_z[fallback] = best_z[fallback]
    # the fallback pixels' visible sample: the first with the best contribution's depth
    rgba = acc.astype(np.float32).reshape(h, w, 4)
    depth = np.where(np.isfinite(vis_z) & (vis_z < BACKGROUND_DEPTH), vis_z, np.inf)
    depth = depth.astype(np.float32).reshape(h, w)
    if max_layers == 0:
        return rgba, depth, []
    # hidden groups: samples after the visible one, clustered by depth
    counts = image.counts.ravel()
    if fallback.any():
        # rank of the fallback pixels' visible sample: the first sample at that depth
        for rank, px, idx in _walk(image):
            sel = fallback[px] & (vis_rank[px] < 0) & (Z[idx] == vis_z[px])
            vis_rank[px[sel]] = rank
    colour = np.zeros((max_layers, p, 4), np.float32)
    gdepth = np.full((max_layers, p), np.inf, np.float32)
    group = np.full(p, -1, np.int64)
    front = vis_z.copy()   # front depth of the current group (the visible surface at first)
    gtrans = np.ones(p, np.float64)
    off = image.offsets
    has = np.flatnonzero((vis_rank >= 0) & (counts > vis_rank + 1))
    rank = 1
    while has.size:
        idx = off[has] + vis_rank[has] + rank
        z = Z[idx].astype(np.float64)
        usable = np.isfinite(z) & (z < BACKGROUND_DEPTH) & (z > 0)
        new = usable & (z > front[has] * (1.0 + gap))
        can_open = new & (group[has] < max_layers - 1)
        g_px = has[can_open]
        group[g_px] += 1
        front[g_px] = z[can_open]
        gtrans[g_px] = 1.0
        gdepth[group[g_px], g_px] = z[can_open]
        add = usable & (group[has] >= 0)
        px, ix = has[add], idx[add]
        a = np.clip(A[ix].astype(np.float64), 0.0, 1.0)
        t = gtrans[px]
        g = group[px]
        colour[g, px, 0] += (t * R[ix]).astype(np.float32)
        colour[g, px, 1] += (t * G[ix]).astype(np.float32)
        colour[g, px, 2] += (t * B[ix]).astype(np.float32)
        colour[g, px, 3] += (t * a).astype(np.float32)
        gtrans[px] = t * (1.0 - a)
        rank += 1
        has = has[counts[has] > vis_rank[has] + rank]
    hidden = [(colour[k].reshape(h, w, 4), gdepth[k].reshape(h, w)) for k in range(max_layers)
              if np.any(colour[k][:, 3] > 0)]
    return rgba, depth, hidden


#: Alpha from which a sample counts as opaque (it hides what lies behind it).
OPAQUE_ALPHA = 1.0 - 1e-3


class EngineInput(NamedTuple):
    """The depth-of-field engine's input from a deep image (:func:`engine_input`): ``rgba``
    the flattened image, ``depth`` its visible depth, and either ``hidden`` (the surfaces
    behind opaque samples, :func:`to_engine`; for ``defocus(..., hidden=)``) or ``layers``
    (partial-coverage samples, :func:`coverage_layers`; for ``defocus(..., layers=)``); the
    other one is empty."""

    rgba: np.ndarray
    depth: np.ndarray
    hidden: list
    layers: list


def has_partial_coverage(image):
    """True when some pixel holds a sample that covers only part of it (alpha below
    :data:`OPAQUE_ALPHA`) with another sample behind: motion blur, half-transparent surfaces,
    soft edges, hair, volumes.  Our peeled deep files (an opaque beauty in front of the
    surfaces behind it) have none: their front sample is partial only where nothing is
    behind (a transparent film)."""
    a = image.channels["A"]
    if a.size < 2:
        return False
    pix = _pixel_of_sample(image.counts.ravel())
    return bool(np.any((pix[1:] == pix[:-1]) & (a[:-1] < OPAQUE_ALPHA)))


def coverage_layers(image, max_layers=DEFAULT_MAX_LAYERS):
    """The deep samples as the engine's partial-coverage layers (``defocus(..., layers=)``):
    a list of ``(rgba_k, depth_k)``, float32 (H, W, 4) premultiplied and (H, W): layer k
    holds each pixel's k-th sample nearest first (its own colour and alpha, its front ``Z``),
    alpha 0 and depth ``+inf`` where a pixel has fewer samples.  At most ``max_layers + 1``
    layers (the visible sample and ``max_layers`` behind it, the budget of :func:`to_engine`):
    a pixel's samples beyond the last layer are composited over each other into it, at the
    depth of the first of them.  Background samples (``Z`` >= 1e9, not finite) are left
    out: the engine takes what the layers leave of the flattened image as the background.
    ``max_layers`` 0 gives no layer (the flattened image alone)."""
    if max_layers < 0:
        raise UsageError(f"the hidden-layer budget must be 0 or more, not {max_layers}")
    if max_layers == 0:
        return []
    K = int(max_layers) + 1
    h, w = image.shape
    p = h * w
    ch = image.channels
    R, G, B, A, Z = ch["R"], ch["G"], ch["B"], ch["A"], ch["Z"]
    colour = np.zeros((K, p, 4), np.float32)
    zdepth = np.full((K, p), np.inf, np.float32)
    slot = np.zeros(p, np.int64)          # the layer a pixel's next sample goes to
    trans = np.ones(p, np.float64)        # transparency within the last layer
    for rank, px, idx in _walk(image):
        with np.errstate(invalid="ignore"):
            z = Z[idx]
            use = np.isfinite(z) & (z < BACKGROUND_DEPTH)
        px, idx, z = px[use], idx[use], z[use]
        k = slot[px]
        first = k < K - 1
        # a layer of its own
        f_px, f_ix, f_k = px[first], idx[first], k[first]
        for i, c in enumerate((R, G, B, A)):
            colour[f_k, f_px, i] = c[f_ix]
        zdepth[f_k, f_px] = z[first]
        slot[f_px] += 1
        # beyond the budget: over each other in the last layer
        l_px, l_ix = px[~first], idx[~first]
        opened = ~np.isfinite(zdepth[K - 1, l_px])
        zdepth[K - 1, l_px[opened]] = z[~first][opened]
        t = trans[l_px]
        for i, c in enumerate((R, G, B, A)):
            colour[K - 1, l_px, i] += (t * c[l_ix]).astype(np.float32)
        trans[l_px] = t * (1.0 - np.clip(A[l_ix].astype(np.float64), 0.0, 1.0))
    used = [k for k in range(K) if np.any(np.isfinite(zdepth[k]))]
    return [(colour[k].reshape(h, w, 4), zdepth[k].reshape(h, w)) for k in used]


def engine_input(image, *, max_layers=DEFAULT_MAX_LAYERS, visible_alpha=0.5, gap=SURFACE_GAP):
    """The engine's input from a deep image, an :class:`EngineInput`: ``rgba`` / ``depth``
    as :func:`flatten`; a deep image with partial-coverage samples in front of others
    (:func:`has_partial_coverage`: slab renders, motion blur, hair, volumes from any renderer)
    gives ``layers`` (:func:`coverage_layers`: each sample blurred at its own depth), one
    whose samples are opaque (our peeled depth layers) gives ``hidden``
    (:func:`to_engine`: the surfaces behind the visible one)."""
    if max_layers < 0:
        raise UsageError(f"the hidden-layer budget must be 0 or more, not {max_layers}")
    if max_layers and has_partial_coverage(image):
        rgba, depth, _ = _composite(image, 0, visible_alpha, gap)
        return EngineInput(rgba, depth, [], coverage_layers(image, max_layers))
    rgba, depth, hidden = _composite(image, int(max_layers), visible_alpha, gap)
    return EngineInput(rgba, depth, hidden, [])


def fill_missing_depth(depth, has, rounds=16):
    """``depth`` (H, W) where it is valid; where a sample (``has``) lacks a valid depth (a slab
    whose Z pass came from a sample that missed the surface: Cycles writes Z from one sample),
    the mean inverse depth of the valid samples next to it, grown ``rounds`` pixels; beyond
    that the median valid depth, else the background (``+inf``)."""
    depth = np.asarray(depth, np.float32)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(depth) & (depth > 0) & (depth < BACKGROUND_DEPTH) & has
    need = has & ~ok
    if not need.any():
        return depth
    out = depth.copy()
    if not ok.any():
        out[need] = np.inf
        return out
    inv = np.where(ok, 1.0 / np.where(ok, depth, 1.0), 0.0).astype(np.float32)
    wt = ok.astype(np.float32)
    for _ in range(rounds):
        if not need.any():
            break
        s_v = _box3(inv)
        s_w = _box3(wt)
        grow = need & (s_w > 0)
        inv[grow] = s_v[grow] / s_w[grow]
        wt[grow] = 1.0
        need &= ~grow
    done = has & ~need
    fill = done & ~ok
    out[fill] = 1.0 / inv[fill]
    out[need] = np.median(depth[ok])
    return out


def _box3(a):
    """Sum over each pixel's 3x3 neighbourhood (zero beyond the edges)."""
    p = np.pad(a, 1)
    rows = p[:-2] + p[1:-1] + p[2:]
    return rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]


def packed_from_layers(rgba, depth, hidden=(), *, min_gap=1e-3):
    """The :class:`DeepImage` our writer would store for these layers (no file): for tests and
    for handing layers to the engine the way a deep file would."""
    rgba = np.asarray(rgba, np.float32)
    depth = np.asarray(depth, np.float32)
    counts, samples = layer_samples(rgba, depth, list(hidden), min_gap)
    return tidy(DeepImage("<layers>", counts, samples))


def describe(image):
    """One line about a deep image's samples, for ``inspect`` and ``dof``'s report."""
    c = image.counts
    nonempty = int(np.count_nonzero(c))
    mean = image.total / nonempty if nonempty else 0.0
    text = (f"deep: {image.total} samples, {nonempty} of {c.size} pixels hold some, "
            f"{mean:.2f} per pixel on average, at most {int(c.max()) if c.size else 0}")
    if image.half:
        text += f"; half float: {', '.join(sorted(image.half))}"
    if image.resorted:
        text += f"; {image.resorted} pixel(s) had unsorted samples (sorted)"
    if image.tidied:
        text += f"; {image.tidied} pixel(s) had overlapping volume samples (split and merged)"
    return text


__all__ = [
    "BACKGROUND_DEPTH", "BACKGROUND_Z", "DEEP_CHANNELS", "DEFAULT_MAX_LAYERS", "LAYERS_KEY",
    "OPAQUE_ALPHA", "SURFACE_GAP", "DeepImage", "EngineInput", "coverage_layers", "describe",
    "MODE_KEY", "SLAB_BOUNDS_KEY", "engine_input", "fill_missing_depth", "flatten",
    "has_partial_coverage", "layer_samples", "packed_from_layers", "tidy", "tidy_pixel",
    "to_engine",
]
