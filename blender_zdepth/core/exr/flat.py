"""Flat OpenEXR images: read every channel of one view (:func:`read_exr`), and write
single-part scanline files (:func:`write_exr`, :func:`write_depth_exr`), float32 by default (half
on request), with a lossless codec only, atomically; an existing file is only replaced with
``overwrite=True``."""

import re
from dataclasses import dataclass, field

import numpy as np

from ..atomic import atomic_target, check_target
from ..encodings import DepthEncoding
from ..errors import UsageError, ZDepthError
from .binding import (STRUCTURAL, captured_output, codec_enum, damaged, io_threads,
                      open_file, window_value, write_file)
from .parts import channel_view, checked_file, describe_views, layout


class DeepFileError(ZDepthError):
    """The image asked for is stored as deep samples, and the caller reads flat images only."""



@dataclass
class ExrImage:
    """The channels of one view of an EXR file (all parts), as float32 HxW arrays.

    ``channels``: channel names (the view's own names with the view taken out: ``left.R`` and a
    part ``rgba_left``'s ``R`` are both ``R`` in view ``left``; Blender's
    ``ViewLayer.Depth.Z``...) -> float32 HxW, each covering its own part's data window,
    ``windows[name]``. ``header``: attributes of the first part of the view (``channels`` left
    out). ``data_window`` / ``display_window``: ``((xmin, ymin), (xmax, ymax))`` of that part.
    ``parts``: one :class:`ExrPart` per part of the file (all views). ``half``: channel names
    stored as half. ``views``: the file's views in order, the default first ([] when it has
    none); ``view``: the view read (None when the file has no views).
    """

    path: str
    channels: dict
    header: dict
    data_window: tuple
    display_window: tuple
    parts: list
    half: set = field(default_factory=set)
    windows: dict = field(default_factory=dict)
    views: list = field(default_factory=list)
    view: str = None
    deep_channels: dict = field(default_factory=dict)



def read_exr(path, *, view=None, sample_counts=False):
    """Read the channels of one view of the EXR at ``path`` (see :class:`ExrImage`).

    ``view``: the view to read (default: the file's default view -- the first of ``multiView``,
    else the first part's); a view the file lacks is a :class:`UsageError` listing its views.
    Deep parts are not turned into images: their channels are listed in ``deep_channels``
    (name -> part), and with ``sample_counts`` their per-pixel sample counts are read. Sizes the
    file declares are checked before anything is allocated (:mod:`.scan`).
    :class:`ZDepthError` if the file is missing, not an EXR, damaged or hostile."""
    import OpenEXR  # noqa: F401 -- missing, this is the command line's one clear line

    path, declared = checked_file(path)
    failure, unreadable = None, 0
    with captured_output() as messages:
        try:
            io_threads()
            # one open for the layout and the pixels (the sizes were checked by checked_file,
            # and a view the file lacks is rare enough to be found after reading); the bindings
            # leave out a part whose pixels they cannot read, so the parts are counted against
            # the headers' own count
            whole = open_file(path, separate_channels=True)
            if declared is None:
                declared = len(open_file(path, header_only=True).parts)
            unreadable = declared - len(whole.parts)
            headers = [(p.name() if callable(getattr(p, "name", None)) else "", dict(p.header))
                       for p in whole.parts]
            parts_info, views = layout(headers)
            if view is not None and view not in views:
                failure = UsageError(f"--view {view}: {path} has no view {view!r}; its views: "
                                     f"{describe_views(views)}")
            loaded = [(dict(p.channels), p) for p in whole.parts]
        except Exception as exc:  # the bindings raise RuntimeError for damaged files
            failure = exc
    text = (messages[0] if messages else "").strip()
    if unreadable or (failure is None and not parts_info):
        raise damaged(path, text, f"{unreadable} part(s) unreadable")
    if isinstance(failure, ZDepthError):
        raise failure
    if failure is not None:
        raise damaged(path, text, str(failure))
    chosen = view if view is not None else (views[0] if views else None)
    channels, half, windows, deep = {}, set(), {}, {}
    first = None
    shared = []  # channels of parts without a view: used where the view has none of its own
    for info, (chans, _part) in zip(parts_info, loaded):
        missing = [n for n in info.channel_names if n not in chans]
        if missing:
            raise damaged(path, text, f"channels {missing} unreadable")
        for name, ch in chans.items():
            cview, short = channel_view(name, views, info.view,
                                         bool(info.header.get("multiView")))
            if info.deep:
                if sample_counts and info.sample_counts is None:
                    info.sample_counts = _sample_counts(ch.pixels, path)
                if cview in (chosen, None) and short not in deep:
                    deep[short] = info
                continue
            if cview is not None and cview != chosen:
                continue
            px = ch.pixels
            if px is None or px.ndim != 2:
                raise ZDepthError(f"{path}: channel {name!r} is not a flat image "
                                  f"(subsampled data is not supported)")
            entry = (short, px, info)
            if cview is None and views:
                shared.append(entry)
            else:
                _add_channel(channels, half, windows, entry)
                if first is None:
                    first = info
    for entry in shared:
        if entry[0] not in channels:
            _add_channel(channels, half, windows, entry)
            first = first or entry[2]
    if first is None:
        first = next((p for p in parts_info if not p.deep), parts_info[0])
    return ExrImage(path, channels, first.header, first.data_window, first.display_window,
                    parts_info, half, windows, views, chosen, deep)


def _add_channel(channels, half, windows, entry):
    short, px, info = entry
    key = short if short not in channels else f"{info.name}.{short}"
    if px.dtype == np.float16:
        half.add(key)
    channels[key] = np.ascontiguousarray(px, dtype=np.float32)
    windows[key] = info.data_window


def _sample_counts(pixels, path):
    """Samples per pixel of a deep channel (an object array of 1-D arrays, None = no sample)."""
    if pixels is None or pixels.dtype != object:
        raise ZDepthError(f"{path}: damaged deep part (no per-pixel samples)")
    flat = pixels.ravel()
    counts = np.fromiter((0 if a is None else len(a) for a in flat), np.int64, flat.size)
    return counts.reshape(pixels.shape)



def write_exr(path, channels, *, header=None, half=False, codec="zip", overwrite=False,
              data_window=None, display_window=None):
    """Write a single-part scanline EXR with ``channels`` (name -> HxW array, all the same size).

    An interleaved colour image may be given whole as ``{"RGBA": HxWx4}`` (or ``{"RGB": HxWx3}``):
    it is stored as the channels R, G, B (A), the same file as four HxW planes, without
    splitting it into planes first.

    ``half``: True = every channel as half float, or a collection of the channel names to store
    as half; float32 otherwise. ``codec``: lossless only (:data:`LOSSLESS_CODECS`); lossy codecs
    are a :class:`UsageError`. ``header``: extra attributes (str, int, float, float32 4x4 arrays
    for M44f...). ``data_window``: ``((xmin, ymin), (xmax, ymax))``; default ``(0,0)-(W-1,H-1)``.
    Atomic; an existing ``path`` is replaced only with ``overwrite``.
    """
    import OpenEXR

    compression = codec_enum(codec)
    if not channels:
        raise ZDepthError("nothing to write: no channels")
    arrays, shapes = {}, set()
    for name, value in channels.items():
        a = np.asarray(value)
        interleaved = name in ("RGB", "RGBA") and a.ndim == 3 and a.shape[2] == len(name)
        if a.ndim != 2 and not interleaved:
            raise ZDepthError(f"channel {name!r} must be a HxW array, not shape {a.shape}")
        shapes.add(a.shape[:2])
        as_half = half is True or (half and not isinstance(half, bool) and name in half)
        with np.errstate(over="ignore"):
            arrays[name] = np.ascontiguousarray(a, dtype=np.float16 if as_half else np.float32)
    if len(shapes) != 1:
        raise ZDepthError(f"channels of different sizes cannot share a file: {sorted(shapes)}; "
                          f"beauty and depth must be registered")
    h, w = shapes.pop()
    if data_window is None:
        data_window = ((0, 0), (w - 1, h - 1))
    (x0, y0), (x1, y1) = data_window
    if (x1 - x0 + 1, y1 - y0 + 1) != (w, h):
        raise ZDepthError(f"data window {data_window} does not match the {w}x{h} image")
    hdr = {}
    for key, value in (header or {}).items():
        if key in STRUCTURAL or value is None:
            continue
        hdr[key] = value
    hdr["compression"] = compression
    hdr["type"] = OpenEXR.scanlineimage
    hdr["dataWindow"] = window_value(data_window)
    hdr["displayWindow"] = window_value(display_window or data_window)
    return write_file(path, hdr, arrays, overwrite)


def place_in_frame(path, offset, display_window, *, header=None):
    """Rewrite the EXR at ``path`` in place (atomically) as a region of a larger frame: every
    part's data window moved by ``offset`` ``(dx, dy)`` and its display window set to
    ``display_window`` ``((xmin, ymin), (xmax, ymax))``; ``header``: attributes set on every
    part too. Pixels, channels, codecs and the other attributes are kept. For a render cropped
    to its border (Blender writes the crop as a whole frame of its own), so that readers know
    the full frame and the crop's place in it, the OpenEXR way. Returns ``path``."""
    import OpenEXR

    dx, dy = (int(v) for v in offset)
    with captured_output() as messages:
        try:
            io_threads()
            image = OpenEXR.File(str(path))
            failure = None
        except Exception as exc:  # the bindings raise RuntimeError
            failure = exc
    if failure is not None:
        raise damaged(path, messages[0] if messages else "", str(failure))
    for part in image.parts:
        (x0, y0), (x1, y1) = ((int(v) for v in corner) for corner in part.header["dataWindow"])
        part.header["dataWindow"] = window_value(((x0 + dx, y0 + dy), (x1 + dx, y1 + dy)))
        part.header["displayWindow"] = window_value(display_window)
        for key, value in (header or {}).items():
            part.header[key] = value
    with atomic_target(path, True) as tmp:
        with captured_output() as messages:
            try:
                image.write(tmp)
                failure = None
            except Exception as exc:
                failure = exc
        if failure is not None:
            text = (messages[0] if messages else "").strip()
            raise ZDepthError(f"{path}: could not rewrite the EXR file "
                              f"({text.splitlines()[-1] if text else failure})")
    return path


def encode_for_file(depth, encoding, *, half=False):
    """Encode ``depth`` for storage; with ``half``, check that half float keeps every pixel's
    background state (a real depth that would become background, or the reverse, is an error).
    Returns the float32 (or float16) stored values."""
    values = encoding.encode(depth)
    if not half:
        return values
    with np.errstate(over="ignore"):
        stored = values.astype(np.float16)
    before = ~np.isfinite(encoding.decode(values))
    after = ~np.isfinite(encoding.decode(stored))
    changed = before != after
    if changed.any():
        z = np.asarray(depth, dtype=np.float64)[changed]
        raise ZDepthError(f"{int(changed.sum())} pixel(s) (depth {float(np.nanmin(z)):g} to "
                          f"{float(np.nanmax(z)):g}) do not fit in half float with the "
                          f"{encoding.name} encoding over [{encoding.near:g}, "
                          f"{encoding.far:g}] (half holds at most 65504): write float32, "
                          f"or use the log encoding")
    return stored


def write_depth_exr(path, depth, *, encoding=None, rgba=None, camera=None, half=False,
                    codec="zip", depth_channel="Z", overwrite=False, extra_header=None,
                    data_window=None, display_window=None):
    """Write linear planar ``depth`` (float HxW; background = non-finite or >= the encoding's
    threshold) encoded with ``encoding`` (default :class:`DepthEncoding()` = log 0.1-1000) into a
    single-part EXR, channel ``depth_channel`` (``"Z"``, or ``"depth.Z"`` Nuke-style), with
    optional registered beauty ``rgba`` (HxWx4 or HxWx3) as ``R,G,B,A`` and the encoding and
    ``camera`` (:class:`CameraInfo`) in the header. Returns the absolute path written."""
    encoding = encoding or DepthEncoding()
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ZDepthError(f"depth must be a HxW array, not shape {depth.shape}")
    if not depth_channel or not re.fullmatch(r"[A-Za-z0-9_.]+", depth_channel):
        raise UsageError(f"bad depth channel name {depth_channel!r} (use Z or depth.Z)")
    codec_enum(codec)  # a lossy codec is refused before any work
    check_target(path, overwrite)
    channels = {}
    if rgba is not None:
        rgba = np.asarray(rgba)
        if rgba.ndim != 3 or rgba.shape[2] not in (3, 4) or rgba.shape[:2] != depth.shape:
            raise ZDepthError(f"beauty {rgba.shape} and depth {depth.shape} are not registered "
                              f"(same width and height needed): refusing to resample")
        for i, c in enumerate("RGBA"[: rgba.shape[2]]):
            channels[c] = rgba[..., i]
    if depth_channel in channels:
        raise UsageError(f"depth channel {depth_channel!r} collides with the beauty channels")
    channels[depth_channel] = encode_for_file(depth, encoding, half=half)
    header = {}
    if camera is not None:
        header.update(camera.to_header())
    header.update(extra_header or {})
    header.update(encoding.to_header())
    header["zdepthDepthChannel"] = depth_channel
    header["zdepthSoftware"] = "blender_zdepth"
    return write_exr(path, channels, header=header, half=half, codec=codec, overwrite=overwrite,
                     data_window=data_window, display_window=display_window)
