"""The order of the stages: :func:`defocus` runs them on one frame, nothing else happens here.

The code is a pipeline of named stages, each a function of explicit inputs and outputs, in
one module each: :func:`~.prepare.prepare` (padded planar :class:`~.prepare.PaddedFrame`) ->
:func:`~.edges.split_edges` and :func:`~.hidden.fill_hidden` / :func:`~.hidden.hidden_samples`
(extra :class:`~.samples.Samples`) -> :func:`~.assign.assign_layers`
(:class:`~.assign.LayerAssignment`) -> per layer :func:`~.content.layer_content` and
:func:`~.convolve.convolve_layer` (:class:`~.convolve.BlurredLayer`) -> compositing near to far
(:func:`~.composite.composite_layers`) -> :func:`~.composite.finish` ->
:func:`~.composite.rgba_out`.  ``DofSettings.threads`` threads run the edge split in batches of
rows, the fill's bands and several layers at once (:mod:`.schedule`), while the compositing
stays in order, so the result does not depend on the thread count.  With the environment
variable ``BLENDER_ZDEPTH_DOF_TIMING`` set, :data:`~.schedule.TIMING` collects seconds per
stage.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import ZDepthError
from ..lens import coc_radius_px
from .assign import assign_layers, layer_radii, sort_pixels
from .composite import _zeroed_planes, composite_layers, finish, rgba_out
from .coverage import coverage_samples, padded_samples
from .edges import split_edges
from .hidden import _hidden_layers, fill_hidden, fill_plan, hidden_samples
from .prepare import prepare
from .samples import _concat_samples, _samples_where
from .schedule import _big_frame, _stage
from .settings import DofSettings


def defocus(rgba, depth, lens, settings=None, *, hidden=None, layers=None):
    """Depth of field of a rendered frame.

    ``rgba``: float32 (H, W, 4) premultiplied (RGB (H, W, 3) is taken as opaque); ``depth``:
    float32 (H, W) planar depth (``+inf``/1e10 = background); ``lens``: a
    :class:`~blender_zdepth.core.lens.Lens`; ``settings``: :class:`DofSettings`.
    ``hidden``: None, or a sequence of ``(rgba_k, depth_k)`` -- premultiplied RGBA (H, W, 4)
    and planar depth (H, W) of surfaces behind the visible ones (depth-peeled renders, deep
    samples behind the front), registered pixel for pixel with the frame, near to far.  A
    pixel of such a layer with alpha <= 0 or a depth that is not finite, <= 0 or >= 1e10
    holds no sample.  Where one lies clearly behind the visible surface it is used as that
    pixel's hidden-surface sample (coverage = its alpha, blurred at its own radius) instead
    of the invented fill (see :func:`~.hidden.hidden_samples`).  ``rgba`` stays the full
    flattened image and ``depth`` its visible depth; None or empty gives exactly the result
    without.
    ``layers``: None, or a sequence of ``(rgba_k, depth_k)`` -- partial-coverage samples
    (depth slabs rendered with the film transparent, the samples of a deep image), registered
    with the frame: premultiplied RGBA (H, W, 4) whose alpha is the share of the pixel (or of
    the shutter) the sample's surface covers, and its planar depth (H, W); per pixel near to
    far (layer k's sample in front of layer k + 1's).  Each sample is blurred at its own depth
    and composited by coverage near to far (see :func:`~.coverage.coverage_samples`); what
    they leave of ``rgba`` (the world behind slabs, say) lies at ``depth``.  A pixel's sample
    with alpha <= 0 holds nothing; one with alpha > 0 but no valid depth takes the depth of
    its layer's samples around it.  Alpha outside 0..1 or NaN is clamped or emptied, and
    samples out of depth order sorted, with a one-line warning.  None or empty gives exactly
    the result without.
    Returns float32 (H, W, 4) premultiplied RGBA."""
    settings = (settings or DofSettings()).validate()
    rgba = np.asarray(rgba)
    depth = np.asarray(depth)
    if rgba.ndim != 3 or rgba.shape[2] not in (3, 4):
        raise ZDepthError(f"the image must be H x W x 4 (RGBA) or x 3, not {rgba.shape}")
    if depth.shape != rgba.shape[:2]:
        raise ZDepthError(f"depth {depth.shape} and image {rgba.shape[:2]} sizes differ")
    H, W = depth.shape
    coc = coc_radius_px(depth, lens, W, H, max_radius=settings.max_radius)
    behind = None
    if hidden is not None and len(hidden):
        behind = _hidden_layers(hidden, depth, coc, lens, settings)
    mixed = None
    if layers is not None and len(layers):
        with _stage("coverage"):
            mixed = coverage_samples(layers, rgba, depth, coc, lens, settings)
        # The pixels' own samples come from the layers; what opaque samples hide joins the
        # caller's hidden surfaces.
        rgba, coc = mixed.rgba, mixed.coc
        if mixed.hidden:
            behind = (behind or []) + mixed.hidden
    # The radius map is handed over in a list, not kept here: the engine frees it once it
    # has its padded copy (33 MB at 4K).
    holder = [coc]
    del coc
    threads = settings.thread_count()
    if threads <= 1:
        return _run_pipeline(rgba, holder, settings, lens.pixel_aspect, None, behind, mixed)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="zdepth-dof") as pool:
        return _run_pipeline(rgba, holder, settings, lens.pixel_aspect, pool, behind, mixed)


def _run_pipeline(rgba, holder, settings, pixel_aspect, pool, hidden=None, mixed=None):
    """The stages (``pool``: a thread pool, or None for one thread; ``holder``: a list
    holding the radius map, emptied here so that it is freed after :func:`~.prepare.prepare`;
    ``mixed``: the caller's partial-coverage samples, a :class:`~.coverage.CoverageSamples`,
    or None)."""
    coc = holder.pop()
    hidden_max = max((float(np.max(np.abs(h.coc))) for h in hidden or ()), default=0.0)
    if mixed is not None and mixed.extra[3].size:
        hidden_max = max(hidden_max, float(np.max(np.abs(mixed.extra[3]))))
    with _stage("prepare"):
        frame = prepare(rgba, coc, settings, pixel_aspect=pixel_aspect, hidden_max=hidden_max,
                        pool=pool, cov=None if mixed is None else mixed.cov)
        del coc  # the padded copy is used from here on
    if frame.maxr < 0.25:
        if mixed is not None:
            # Nothing blurs: the flattened frame as it is (the layers' samples add up to it).
            return _as_rgba(mixed.flat)
        return rgba_out(frame.col, frame.pad, frame.H, frame.W, rgba)
    radii = layer_radii(frame.maxr, quality=settings.quality, coc=frame.coc)
    sorting = None
    # Big frames (4K) keep the stages one after the other: overlapped, their buffers would
    # add up (the peak memory target).
    early = pool is not None and not _big_frame(frame.shape)
    if early:
        # The pixels' layer sort needs only the radii, which the edge split and the hidden
        # fill leave alone: it runs on the pool meanwhile (those two stages are mostly
        # serial on a frame with few depth edges).
        with _stage("assign"):
            sorting = sort_pixels(frame.coc, radii, pool=pool, parts=settings.thread_count())
    # Likewise the hidden fill's plan (where and what to fill) reads the radii only.
    plan = pool.submit(fill_plan, frame.coc, frame.maxr) if early else None
    # The compositing's accumulators are zeroed meanwhile too: the first touch of their
    # fresh pages (45 MB at 1080p) then costs a thread that would otherwise wait, not the
    # main thread while it composites.  (On big frames they would add 170 MB at 4K to the
    # peak of the stages before the layers.)
    buffers = pool.submit(_zeroed_planes, ((4,) + frame.shape, frame.shape)) \
        if early else None
    with _stage("split edges"):
        # With partial-coverage layers only the pixels whose own sample covers them whole
        # hold one anti-aliased colour under one depth (the others are already apart).
        dithered = []
        parts = split_edges(frame.col, frame.coc, frame.cov, pool=pool,
                            solid=None if mixed is None else frame.cov >= 1.0,
                            dithered=dithered)
        if mixed is not None:
            parts.append(padded_samples(mixed.extra, frame))
    with _stage("fill hidden"):
        fill = fill_hidden(frame.col, frame.coc, frame.maxr, pool=pool, plan=plan)
        del plan
        if dithered:
            # A dithered pixel holds both surfaces already (split by their share): an
            # invented surface behind its near part would dilute the real one.
            read = np.zeros(frame.coc.size, bool)
            read[np.concatenate(dithered)] = True
            fill = [_samples_where(f, ~read[f.idx]) for f in fill]
            del read
        if hidden:
            given, has = hidden_samples(frame, hidden)
            # The invented fill stays only where no real hidden sample is given.
            fill = [_samples_where(f, ~has[f.idx]) for f in fill]
            fill += given
        parts += fill
        del fill
    extra = _concat_samples(parts)
    del parts
    with _stage("assign"):
        layers = assign_layers(frame.coc, extra.coc, radii,
                               extra_idx=extra.idx if pool is not None else None, pool=pool,
                               parts=sorting if sorting is not None else
                               settings.thread_count())
        del sorting
        # the radii are not needed past the layer assignment
        frame.coc = None
        extra = extra._replace(coc=None)
    acc, budget, far = composite_layers(frame, extra, layers, settings,
                                        pixel_aspect=pixel_aspect, pool=pool, buffers=buffers)
    del buffers
    del layers, extra
    with _stage("finish"):
        finish(acc, budget, far, frame.col, pool=pool)
        del far
    with _stage("output"):
        return rgba_out(acc, frame.pad, frame.H, frame.W, rgba, pool=pool)


def _as_rgba(rgba):
    """``rgba`` as float32 (H, W, 4) (alpha 1 for RGB), non-finite values zeroed."""
    out = np.empty(rgba.shape[:2] + (4,), np.float32)
    out[..., :rgba.shape[2]] = rgba
    if rgba.shape[2] == 3:
        out[..., 3] = 1.0
    out[~np.isfinite(out)] = 0.0
    return out
