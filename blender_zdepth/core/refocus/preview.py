"""A small copy of a rendered frame for a fast depth-of-field preview (pure numpy, no bpy).

Blender's live refocus preview (:mod:`blender_zdepth.blender.refocus.live`) loads a frame once,
shrinks it with :func:`shrink_frame` to a pixel budget (:data:`PREVIEW_PIXELS`, chosen so that a
refresh of a 1080p frame fits in about 0.3 s on two cores, see
``benchmarks/bench_live_preview.py``), and refocuses the small copy with :func:`render_preview`
on every change of focus or aperture. The full-resolution result is still made by Apply.

The physics does not change with the size: :func:`~blender_zdepth.core.lens.coc_radius_px` takes
the width of the image it is given, so the circle of confusion of the small copy is the full
one divided by the factor, and the radius cap is divided by it too.
"""

import dataclasses
import math

import numpy as np

from .. import dof
from ..frame import window_index

#: Largest preview in pixels (640 x 360: a 1080p frame is shrunk 3 times, 4K 6 times).
PREVIEW_PIXELS = 640 * 360

#: Engine quality used for previews (layer spacing and resolution, see core.dof.DofSettings).
PREVIEW_QUALITY = "draft"


def shrink_factor(width, height, *, budget=None):
    """The smallest whole factor that brings ``width x height`` within ``budget`` pixels
    (default :data:`PREVIEW_PIXELS`; 1: already small enough)."""
    budget = PREVIEW_PIXELS if budget is None else budget
    if width < 1 or height < 1:
        raise ValueError(f"an image of {width}x{height} pixels has no pixels")
    return max(1, math.ceil(math.sqrt(width * height / float(budget))))


def _blocks(a, f):
    """``a`` (H, W[, C]) padded at the bottom and right by repeating its edge to a multiple of
    ``f``, viewed as (H/f, f, W/f, f[, C]) blocks."""
    h, w = a.shape[:2]
    ph, pw = (-h) % f, (-w) % f
    if ph or pw:
        pad = [(0, ph), (0, pw)] + [(0, 0)] * (a.ndim - 2)
        a = np.pad(a, pad, mode="edge")
    hh, ww = a.shape[0] // f, a.shape[1] // f
    return a.reshape((hh, f, ww, f) + a.shape[2:])


def shrink_rgba(rgba, f):
    """Box-filtered (premultiplied, so edges stay right) float32 (H/f, W/f, 4) copy of
    ``rgba``; bottom and right edges repeated when the size is not a multiple of ``f``."""
    rgba = np.asarray(rgba, dtype=np.float32)
    if f == 1:
        return np.ascontiguousarray(rgba)
    return _block_mean(_blocks(rgba, f))


def _block_mean(blocks):
    """The mean of each ``f x f`` block of ``blocks`` (H/f, f, W/f, f, C), float32: the block's
    pixels added one at a time in memory order, then divided by their count -- the sums of
    ``blocks.mean(axis=(1, 3), dtype=np.float32)``, which adds them in that order too (the same
    bits with numpy 1.26 and 2.x), in under half its time: numpy's reduction over two strided
    axes walks the whole frame pixel by pixel, here each of the f*f adds is one pass over the
    small copy."""
    f = blocks.shape[1]
    out = np.array(blocks[:, 0, :, 0], dtype=np.float32, order="C")
    for i in range(f):
        for j in range(f):
            if i or j:
                out += blocks[:, i, :, j]
    return np.true_divide(out, f * f, out=out, casting="unsafe")


def shrink_depth(depth, f):
    """Float32 (H/f, W/f) depth: the median of each ``f x f`` block (a depth edge keeps to
    one side instead of averaging two surfaces into a depth that exists nowhere; background
    ``+inf`` stays ``+inf`` where most of the block is background)."""
    depth = np.asarray(depth, dtype=np.float32)
    if f == 1:
        return np.ascontiguousarray(depth)
    b = _blocks(depth, f)
    hh, ww = b.shape[0], b.shape[2]
    flat = b.transpose(0, 2, 1, 3).reshape(hh, ww, f * f)
    flat = np.where(np.isnan(flat), np.inf, flat)
    if f % 2:
        # an odd count: the median is the middle value itself, which np.median finds by this
        # same partition (and then averages alone)
        return np.ascontiguousarray(np.partition(flat, f * f // 2, axis=-1)[..., f * f // 2])
    return np.ascontiguousarray(np.median(flat, axis=-1).astype(np.float32))


@dataclasses.dataclass
class PreviewFrame:
    """A frame prepared for previews: the full-resolution depth (for focus picking), the
    small copies of colour and depth, and where it came from.

    ``depth``: float32 (H, W) full-resolution depth (``+inf`` = background); ``header``: the
    file's header; ``factor``: how many times smaller the copies are; ``rgba`` / ``small_depth``:
    the copies; ``key``: what was loaded (the caller's cache key)."""

    depth: np.ndarray
    rgba: np.ndarray
    small_depth: np.ndarray
    factor: int
    header: dict = dataclasses.field(default_factory=dict)
    key: object = None
    path: str = ""
    data_window: tuple = None
    display_window: tuple = None

    @property
    def size(self):
        """``(width, height)`` of the full-resolution pixels."""
        return int(self.depth.shape[1]), int(self.depth.shape[0])

    @property
    def display_size(self):
        """``(width, height)`` of the frame the camera saw (the display window: larger than
        :attr:`size` for a render cropped to its border)."""
        win = self.display_window or self.data_window
        if win is None:
            return self.size
        (x0, y0), (x1, y1) = win
        return x1 - x0 + 1, y1 - y0 + 1

    def array_index(self, x, y):
        """``(row, column)`` in :attr:`depth` of display-window pixel ``x, y`` from the bottom
        left (:func:`~blender_zdepth.core.frame.window_index`)."""
        return window_index(x, y, self.depth.shape, self.data_window, self.display_window)

    @property
    def preview_size(self):
        """``(width, height)`` of the preview."""
        return int(self.small_depth.shape[1]), int(self.small_depth.shape[0])


def shrink_frame(rgba, depth, *, header=None, budget=None, key=None, path="",
                 data_window=None, display_window=None):
    """A :class:`PreviewFrame` of a loaded frame (``rgba`` float32 (H, W, 4) premultiplied,
    ``depth`` float32 (H, W), covering ``data_window`` of ``display_window``: the loaded
    frame's). The full-resolution colour is not kept."""
    depth = np.asarray(depth, dtype=np.float32)
    h, w = depth.shape
    f = shrink_factor(w, h, budget=budget)
    return PreviewFrame(depth=depth, rgba=shrink_rgba(rgba, f), small_depth=shrink_depth(depth, f),
                        factor=f, header=dict(header or {}), key=key, path=path,
                        data_window=data_window, display_window=display_window)


def preview_settings(settings, factor, *, quality=PREVIEW_QUALITY):
    """``settings`` (:class:`~blender_zdepth.core.dof.DofSettings`) for a copy ``factor`` times
    smaller: the radius cap divided by the factor, the preview quality."""
    return dataclasses.replace(settings, max_radius=float(settings.max_radius) / factor,
                               quality=quality)


def render_preview(frame, lens, settings, *, view="DEFOCUS"):
    """Refocus the small copy of ``frame`` (:class:`PreviewFrame`) with ``lens`` and
    ``settings`` (the full-resolution settings; scaled here); ``view`` 'FOCAL_PLANE' gives the
    focal-plane diagnostic instead. Returns float32 (h, w, 4) premultiplied RGBA."""
    small = preview_settings(settings, frame.factor)
    if tuple(frame.display_size) != tuple(frame.size):
        # a crop of a larger frame: the lens spans the whole frame, shrunk like the pixels
        w, h = frame.display_size
        lens = dataclasses.replace(lens, frame_size=(max(1, round(w / frame.factor)),
                                                     max(1, round(h / frame.factor))))
    if view == "FOCAL_PLANE":
        # the in-focus band of the full-resolution view (half a full pixel of blur)
        return dof.focal_plane_view(frame.rgba, frame.small_depth, lens, small,
                                    in_focus_px=0.5 / frame.factor)
    return dof.defocus(frame.rgba, frame.small_depth, lens, small)
