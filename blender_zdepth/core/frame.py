"""A rendered frame as the depth-of-field engine's input: beauty and depth of one view, from a
flat EXR (a Blender render, our export), a deep EXR, or a flat export with its deep samples
(``<name>_deep.exr``) or its beauty (``<name>_beauty.exr``) beside it. :func:`load_frame` is the
one loader; :class:`Frame` what it gives.
"""

import os
from dataclasses import dataclass, field

import numpy as np

from .camera import CameraInfo
from .deep import engine_input
from .encodings import DepthEncoding, apply_background
from .errors import UsageError, ZDepthError
from .exr import (DeepFileError, file_layers, find_beauty_channels, find_depth_channel, is_deep,
                  read_deep, read_exr, read_layout)


class FrameSizeError(ZDepthError):
    """A frame of a sequence has another resolution than the one asked for."""


@dataclass
class Frame:
    """One rendered frame: beauty and depth of one view, registered.

    ``rgba``: float32 HxWx4 premultiplied, or None. ``depth``: float32 HxW linear planar depth,
    ``+inf`` where background. Both cover ``data_window`` (absolute pixel coordinates; each
    part's pixels were placed by its own data window: beauty where a part has none is
    transparent black, depth background). ``display_window``: the frame the camera saw (the
    lens' width and height). ``encoding``: the file's :class:`DepthEncoding`, or None for a plain
    render. ``camera``: :class:`CameraInfo` or None. ``background``: the threshold that was
    applied to a plain render's depth (None when the file held encoded depth);
    ``background_info``: :class:`~.encodings.BackgroundReport` (what was taken as "no surface"
    and why). ``view``/``views``: the view read and the file's views. A frame read from deep
    samples has ``hidden`` (the engine's hidden layers, near to far, for ``defocus(hidden=)``)
    and ``layers`` (its partial-coverage samples, for ``defocus(layers=)``; one of the two
    is empty, see :func:`~blender_zdepth.core.deep.engine_input`) and ``deep_note`` (one line
    saying what was used); None otherwise.
    """

    path: str
    depth: np.ndarray
    rgba: np.ndarray = None
    encoding: DepthEncoding = None
    camera: CameraInfo = None
    header: dict = field(default_factory=dict)
    depth_channel: str = None
    beauty_channels: list = None
    data_window: tuple = None
    display_window: tuple = None
    background: float = None
    half: bool = False
    view: str = None
    views: list = field(default_factory=list)
    background_info: object = None
    hidden: list = None
    layers: list = None
    deep_note: str = None

    @property
    def shape(self):
        return self.depth.shape

    @property
    def display_size(self):
        """``(width, height)`` of the display window (the data's size when unknown)."""
        win = self.display_window or self.data_window
        if win is None:
            h, w = self.depth.shape
            return w, h
        (x0, y0), (x1, y1) = win
        return x1 - x0 + 1, y1 - y0 + 1

    def array_index(self, x, y):
        """``(row, column)`` in :attr:`depth` of the pixel ``x, y`` given in display-window
        coordinates with the origin at the BOTTOM-LEFT (see :func:`window_index`)."""
        return window_index(x, y, self.depth.shape, self.data_window, self.display_window)


def window_index(x, y, shape, data_window=None, display_window=None):
    """``(row, column)`` in an array of ``shape`` (H, W) covering ``data_window`` of the pixel
    ``x, y`` given in display-window coordinates with the origin at the BOTTOM-LEFT (x right,
    y up: Blender's Image Editor, Nuke). :class:`UsageError` when it lies outside the display
    window; the row or column may lie outside the array when the data window does not cover
    that pixel (the caller says so). Windows None: the array is the whole frame."""
    disp = display_window or data_window
    if disp is None:
        h, w = shape[:2]
        disp = ((0, 0), (w - 1, h - 1))
    (dx0, dy0), (dx1, dy1) = disp
    w, h = dx1 - dx0 + 1, dy1 - dy0 + 1
    x, y = int(round(float(x))), int(round(float(y)))
    if not (0 <= x < w and 0 <= y < h):
        raise UsageError(f"focus pixel {x},{y} is outside the {w}x{h} frame (display "
                         f"window; origin at the bottom left, x right, y up)")
    data = data_window or disp
    col = dx0 + x - data[0][0]
    row = dy1 - y - data[0][1]
    return row, col



def deep_beside_path(path):
    """Where our deep export of a frame goes: ``shot_0001.exr`` -> ``shot_0001_deep.exr``."""
    stem, ext = os.path.splitext(os.fspath(path))
    return stem + "_deep" + (ext or ".exr")


def beauty_beside_path(path):
    """Where export on render writes the beauty when it goes *beside* the depth file:
    ``zdepth_0001.exr`` -> ``zdepth_0001_beauty.exr``."""
    stem, ext = os.path.splitext(os.fspath(path))
    return stem + "_beauty" + ext



def load_frame(path, *, background="auto", layer=None, depth_channel=None, need_depth=True,
               view=None, layer_required=True, deep_layers=None, deep_beside=False,
               engine=False, expect_size=None):
    """Read beauty and depth of one view of the EXR at ``path`` (see :class:`Frame`).

    ``background``: the rule for "no surface" (:func:`~.encodings.apply_background`): ``"auto"``
    (non-finite, Cycles' ``>= 1e9``, EEVEE's sky at the clip end -- from the recorded camera, or
    recognised as a large region at the frame's largest depth touching the border --, and
    ``Z <= 0`` on fully transparent pixels), ``"none"`` / None (non-finite only) or a depth (at
    or beyond it). For our own files the encoding says what is background.
    ``layer``: view layer to read when the file has several (default: ``ViewLayer``, Blender's
    default, when present, else the first in the file); beauty and depth always come from the
    same layer; a layer the file lacks is a :class:`UsageError` listing its layers (with
    ``layer_required=False``, a file without any layers is read whole instead: Blender's Apply
    names the active view layer, which files without layers simply do not divide into; a deep
    file's layers are then not checked).
    ``view``: the view (stereo/multi-view files; default the file's default view).
    ``depth_channel``: explicit channel name. ``need_depth``: a file without depth is an error.

    Deep samples: with ``deep_layers`` None, flat images only (a view stored as deep samples is
    a :class:`~blender_zdepth.core.exr.DeepFileError`); with ``deep_layers`` K (0 or more), a
    deep file is read too, flattened, with at most K hidden layers for the engine
    (``Frame.hidden``, ``Frame.deep_note``), and with ``deep_beside`` a flat file's
    ``<name>_deep.exr`` beside it (:func:`deep_beside_path`) is read instead of it -- its camera
    is used when the deep header has none, and a size that differs from the flat file's is an
    error (they are not the same frame).

    ``engine``: the depth of field's input: a missing file is the error ``missing: ...``; colour
    and depth are both needed (the colour of a depth-only export comes from the
    ``<name>_beauty.exr`` beside it, :func:`beauty_beside_path`), no depth may be zero or
    negative, and with ``expect_size`` ``(width, height)`` another size is a
    :class:`FrameSizeError`. Raises :class:`ZDepthError`.
    """
    if engine and not os.path.exists(path):
        raise ZDepthError("missing: the file does not exist")
    frame = None
    if deep_layers is not None:
        frame = _deep_or_none(path, deep_layers, deep_beside, view,
                              layer if layer_required else None)
    if frame is None:
        frame = _flat_frame(path, background, layer, depth_channel, need_depth, view,
                            layer_required)
    if engine:
        _check_engine_input(frame, path, expect_size)
    return frame


def _deep_or_none(path, budget, beside, view=None, layer=None):
    """The deep frame for ``path`` (a deep file, or with ``beside`` a flat one with
    ``<name>_deep.exr`` beside it), or None for a flat frame."""
    if is_deep(path):
        return _deep_frame(path, int(budget), view=view, layer=layer)
    deep_path = deep_beside_path(path)
    if beside and os.path.isfile(deep_path):
        return _deep_frame(deep_path, int(budget), flat_path=path)
    return None


def _check_engine_input(frame, path, expect_size):
    """What the engine needs of a loaded frame (see :func:`load_frame`'s ``engine``)."""
    if frame.depth is None:
        raise ZDepthError("no depth channel: render with the Z pass (View Layer > Passes > Z) "
                          "or export with blender_zdepth")
    if frame.rgba is None:
        frame.rgba = _beauty_beside(path, frame.depth.shape)
    bad = int(np.count_nonzero(frame.depth <= 0))
    if bad:
        raise ZDepthError(f"the depth channel holds zero or negative distances on {bad} covered "
                          f"pixel(s): it is not a camera depth pass (use Blender's Z pass or a "
                          f"blender_zdepth export; Z <= 0 counts as 'no surface' only where "
                          f"alpha is 0)")
    h, w = frame.depth.shape
    if frame.rgba.shape[:2] != (h, w):
        raise ZDepthError(f"colour is {frame.rgba.shape[1]}x{frame.rgba.shape[0]} but depth is "
                          f"{w}x{h}")
    if expect_size is not None and (w, h) != tuple(expect_size):
        raise FrameSizeError(f"wrong size: {w}x{h}, the sequence is "
                             f"{expect_size[0]}x{expect_size[1]}")


def _deep_refusal(path, part):
    return DeepFileError(f"{path}: part {part.name or part.index!r} holds deep samples "
                         f"({part.type}): this command reads flat images only; the dof command "
                         f"reads deep files ('inspect' shows its sample counts)")


def _flat_frame(path, background, layer, depth_channel, need_depth, view, layer_required):
    """The flat image of one view of the EXR at ``path`` (see :func:`load_frame`)."""
    parts, views = read_layout(path)  # headers only: a deep-only view is refused at once
    chosen = view if view is not None else (views[0] if views else None)
    mine = [p for p in parts if p.view in (chosen, None) or chosen is None]
    if mine and all(p.deep for p in mine) and (view is None or view in views) and not layer:
        raise _deep_refusal(os.fspath(path), mine[0])
    img = read_exr(path, view=view)
    names = list(img.channels)
    header = img.header
    encoding = DepthEncoding.from_header(header)
    camera = CameraInfo.from_header(header)
    preferred = depth_channel or header.get("zdepthDepthChannel")
    if depth_channel and depth_channel not in names:
        raise ZDepthError(f"{img.path}: no channel {depth_channel!r}; the file has: "
                          f"{_describe(names)}")
    all_names = names + list(img.deep_channels)
    if layer:
        layers = file_layers(all_names)
        if not layers and not layer_required:
            layer = None
        elif layer not in layers:
            raise UsageError(f"--layer {layer}: {img.path} has no view layer {layer!r}; its view "
                             f"layers: {', '.join(layers) if layers else 'none'}")
    if img.deep_channels:
        dnames = list(img.deep_channels)
        ddepth = find_depth_channel(dnames, layer=layer, preferred=preferred)
        dbeauty = find_beauty_channels(dnames, layer=layer)
        if (ddepth and find_depth_channel(names, layer=layer, preferred=preferred) is None) or \
                (dbeauty and find_beauty_channels(names, layer=layer) is None):
            raise _deep_refusal(img.path, img.deep_channels[ddepth or dbeauty[0]])
    if layer is None and not preferred:
        layers = [n[: -len(".Depth.Z")] for n in names if n.endswith(".Depth.Z")]
        if len(layers) > 1 and "ViewLayer" in layers:
            layer = "ViewLayer"  # Blender's default layer (4.x files sort layers by name)
    dname = find_depth_channel(names, layer=layer, preferred=preferred)
    if layer is None and dname is not None:
        head = dname.rsplit(".", 2)
        if len(head) == 3 and head[1].lower() == "depth":
            layer = head[0]  # beauty from the same view layer as the depth
    if dname is None and need_depth:
        views = f" (view {img.view})" if img.view else ""
        raise ZDepthError(f"{img.path}: no depth channel{views} (looked for Z, depth.Z, "
                          f"<layer>.Depth.Z, <layer>.Depth.V); the file has: {_describe(names)}. "
                          f"Render with the Z pass on (View Layer > Passes > Z) and save a "
                          f"multilayer EXR")
    beauty = find_beauty_channels(names, layer=layer)
    used = ([dname] if dname else []) + [c for c in (beauty or []) if c]
    window = _union(img.windows.get(n) for n in used) or img.data_window
    rgba = None
    if beauty is not None:
        bwin = _union(img.windows.get(n) for n in beauty if n)
        shapes = {img.channels[n].shape for n in beauty[:3]}
        if len(shapes) != 1 or len({img.windows.get(n) for n in beauty[:3]}) != 1:
            raise ZDepthError(f"{img.path}: the beauty's R, G, B channels cover different "
                              f"windows ({sorted(shapes)}): they are not registered")
        (bx0, by0), (bx1, by1) = window
        shape = (by1 - by0 + 1, bx1 - bx0 + 1, 4)
        whole = all((img.windows.get(n) or window) == window for n in beauty if n)
        rgba = np.empty(shape, np.float32) if whole else np.zeros(shape, np.float32)
        for i, n in enumerate(beauty):
            if n is None:
                plane = np.ones(img.channels[beauty[0]].shape, np.float32)
                win = img.windows.get(beauty[0])
            else:
                plane, win = img.channels[n], img.windows.get(n)
            win = win or bwin or window
            (x0, y0), (x1, y1) = win
            rgba[y0 - by0:y1 - by0 + 1, x0 - bx0:x1 - bx0 + 1, i] = plane
    raw = None
    if dname is not None:
        raw = _place(img.channels[dname], img.windows.get(dname), window, np.inf)
    depth, threshold, report = None, None, None
    if raw is not None:
        if encoding is not None:
            depth = encoding.decode(raw)
            if background not in ("auto", None, "none"):
                depth = np.where(depth >= float(background), np.float32(np.inf), depth)
                depth = depth.astype(np.float32, copy=False)
        else:
            alpha = rgba[..., 3] if rgba is not None else None
            depth, report = apply_background(raw, background, alpha=alpha, camera=camera,
                                             header=header)
            threshold = report.threshold
    half = dname in img.half if dname else False
    display = img.display_window
    if dname is not None and img.windows.get(dname) is not None:
        for part in img.parts:
            if part.data_window == img.windows.get(dname) and part.display_window:
                display = part.display_window
                break
    return Frame(img.path, depth, rgba, encoding, camera, header, dname, beauty,
                 window, display, threshold, half, img.view, img.views, report)


def _deep_frame(path, max_layers, flat_path=None, view=None, layer=None):
    """A deep OpenEXR as the depth of field's input: a :class:`Frame` (``rgba`` the
    flattened image, ``depth`` its visible depth, ``camera`` from the header) with ``hidden``
    (the engine's hidden layers, at most ``max_layers``) or ``layers`` (partial-coverage
    samples, at most ``max_layers + 1``; see :func:`~.deep.engine_input`) and ``deep_note``
    (one line saying what was used).

    ``flat_path``: the flat export the deep file was found beside (``<name>_deep.exr`` next to
    ``<name>.exr``): its camera is used when the deep header has none, and a size that differs
    from the deep file's is an error (they are not the same frame)."""
    image = read_deep(path, view=view, layer=layer)
    header = dict(image.header)
    h, w = image.shape
    if flat_path is not None:
        try:
            flat_header = read_layout(flat_path)[0][0]
        except ZDepthError:
            flat_header = None
        if flat_header is None:
            raise ZDepthError(f"{flat_path}: damaged or unreadable OpenEXR header")
        window = flat_header.data_window
        flat_header = flat_header.header
        if window is not None:
            (x0, y0), (x1, y1) = window
            if (x1 - x0 + 1, y1 - y0 + 1) != (w, h):
                raise ZDepthError(f"{path} is {w}x{h} but {os.path.basename(flat_path)} is "
                                  f"{x1 - x0 + 1}x{y1 - y0 + 1}: not the same frame; move or "
                                  f"delete the deep file to refocus the flat one alone")
        for key, value in flat_header.items():
            header.setdefault(key, value)
    rgba, depth, hidden, layers = engine_input(image, max_layers=max_layers)
    frame = Frame(os.fspath(path), depth, rgba, None, CameraInfo.from_header(header), header,
                  "Z", list("RGBA"), image.data_window, image.display_window, hidden=hidden,
                  layers=layers)
    name = os.path.basename(os.fspath(path))
    if layers:
        a = layers[0][0][..., 3]
        partly = int(np.count_nonzero((a > 0) & (a < 1)))
        frame.deep_note = (f"deep {name}: {len(layers)} coverage layer(s) (samples that cover "
                           f"pixels partly, each blurred at its own depth), "
                           f"{100.0 * partly / max(1, h * w):.1f}% of pixels partly covered "
                           f"in front")
    else:
        covered = int(np.count_nonzero(hidden[0][0][..., 3] > 0)) if hidden else 0
        frame.deep_note = (f"deep {name}: {len(hidden)} hidden layer(s), "
                           f"{100.0 * covered / max(1, h * w):.1f}% of pixels see behind")
    if image.resorted:
        frame.deep_note += f", {image.resorted} pixel(s) sorted"
    if image.tidied:
        frame.deep_note += f", {image.tidied} overlapping pixel(s) tidied"
    return frame


def _beauty_beside(path, shape):
    """The RGBA of the ``<name>_beauty.exr`` written beside a depth-only export; an error that
    says what to do when there is none, or when it is not registered with the depth."""
    beside = beauty_beside_path(path)
    if not os.path.exists(beside):
        raise ZDepthError(f"no colour channels (R, G, B or ViewLayer.Combined) to refocus, and no "
                          f"{os.path.basename(beside)} beside it: export with the beauty in the "
                          f"same file or beside it")
    image = read_exr(beside)
    if not all(c in image.channels for c in "RGB"):
        raise ZDepthError(f"{beside}: no R, G, B channels (it has "
                          f"{', '.join(sorted(image.channels))})")
    h, w = shape
    if image.channels["R"].shape != (h, w):
        hb, wb = image.channels["R"].shape
        raise ZDepthError(f"{beside} is {wb}x{hb} but the depth is {w}x{h}: not the same frame "
                          f"size, refusing to resample")
    alpha = image.channels.get("A")
    if alpha is None:
        alpha = np.ones((h, w), np.float32)
    return np.dstack([image.channels["R"], image.channels["G"], image.channels["B"],
                      alpha]).astype(np.float32, copy=False)


def _describe(names, limit=12):
    names = sorted(names)
    shown = ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit
                                        else "")
    return shown or "no channels"


def _union(windows):
    wins = [w for w in windows if w is not None]
    if not wins:
        return None
    return ((min(w[0][0] for w in wins), min(w[0][1] for w in wins)),
            (max(w[1][0] for w in wins), max(w[1][1] for w in wins)))


def _place(array, window, target, fill):
    """``array`` (covering ``window``) in a new array covering ``target``, ``fill`` elsewhere;
    the same array when the windows are equal."""
    if window == target or window is None:
        return array
    (tx0, ty0), (tx1, ty1) = target
    (x0, y0), (x1, y1) = window
    out = np.full((ty1 - ty0 + 1, tx1 - tx0 + 1) + array.shape[2:], fill, dtype=array.dtype)
    out[y0 - ty0:y1 - ty0 + 1, x0 - tx0:x1 - tx0 + 1] = array
    return out



def suspected_clip_end_background(frame, share=0.001):
    """How many pixels ``load_frame``'s automatic rule took for EEVEE's sky at the clip end and
    at which depth: the depth, or None when it recognised none."""
    report = getattr(frame, "background_info", None)
    if report is None or not report.sky:
        return None
    return report.sky_depth


__all__ = ["Frame", "FrameSizeError", "beauty_beside_path", "deep_beside_path", "load_frame",
           "suspected_clip_end_background"]
