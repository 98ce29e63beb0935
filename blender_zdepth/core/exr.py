"""OpenEXR reading and writing through the official OpenEXR Python bindings.

Reading (:func:`read_exr`, :func:`load_frame`) understands what Blender writes -- multilayer EXR
(Blender 5.0: one part per pass, ``ViewLayer.Combined`` and ``ViewLayer.Depth``; 4.x: one part),
several view layers, single-part ``R,G,B,A`` + ``Z`` -- and our own files, whose header says how
the depth is encoded (``zdepth*`` attributes, see :mod:`.encodings`).

Writing (:func:`write_exr`, :func:`write_depth_exr`) makes single-part scanline files, float32 by
default (half on request), with a lossless codec only, atomically (a temporary file in the same
folder, then a rename); an existing file is only replaced with ``overwrite=True``.
"""

import contextlib
import fnmatch
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field

import numpy as np

from . import exrscan
from .atomic import atomic_target, check_target as _check_target, unique_temp_path  # noqa: F401
from .camera import CameraInfo
from .encodings import DepthEncoding
from .errors import UsageError, ZDepthError

#: Lossless codecs we write, by their name on the command line.
LOSSLESS_CODECS = ("zip", "piz", "zips", "rle", "none")

#: Lossy codecs that must never carry depth, and why.
LOSSY_CODECS = ("dwaa", "dwab", "b44", "b44a", "pxr24")

#: Depth channel names tried in order (``*`` = a view layer / layer prefix).
DEPTH_PATTERNS = ("Z", "depth.Z", "*.Depth.Z", "*.depth.Z", "*.Depth.V", "*.depth.V", "depth.V",
                  "*.Z")

#: Beauty layer prefixes tried in order (``""`` = plain ``R,G,B,A``).
BEAUTY_PREFIXES = ("", "rgba", "*.Combined", "Combined", "Image", "*.Image", "beauty", "*.beauty")

# Header keys that describe a file's layout; they are never copied from one file to another.
_STRUCTURAL = {"channels", "chunkCount", "name", "type", "compression", "version", "tiles",
               "dataWindow", "displayWindow", "lineOrder"}


#: What :func:`set_io_threads` / :func:`io_threads` set OpenEXR's pool to in this process
#: (None: not yet).
_io_pool = {"threads": None}


def _pool_size(threads):
    """OpenEXR's global pool size for ``threads`` threads in all: the calling thread reads or
    writes the file while the pool's threads (de)compress its chunks, so 1 thread = no pool."""
    from .cpus import usable_cores

    threads = usable_cores() if not threads or int(threads) <= 0 else int(threads)
    return threads if threads > 1 else 0


def set_io_threads(threads=0):
    """Read and write EXR files in this process with ``threads`` threads: 0 = every usable core
    (the process's CPU affinity and a container's CPU quota count), 1 = the calling thread only,
    N = N. The same rule as the engine's ``--threads``: ``dof --threads N`` gives reading and
    writing N threads too. Sets the OpenEXR library's global thread pool (one per process; the
    codec, the bytes written and the values read do not depend on it). Returns the number of
    threads the pool has now (0: none, the calling thread does everything); bindings without a
    global pool are left alone (returns 0)."""
    import OpenEXR

    size = _pool_size(threads)
    try:
        if OpenEXR.global_thread_count() != size:
            OpenEXR.set_global_thread_count(size)
        _io_pool["threads"] = size
        return OpenEXR.global_thread_count()
    except (AttributeError, RuntimeError):  # older bindings without the global pool
        return 0


def io_threads():
    """Make sure EXR reading and writing use the cores: unless :func:`set_io_threads` (or the
    caller, with ``OpenEXR.set_global_thread_count``) has set the pool already, give it every
    usable core. Returns the pool's size. Every reader and writer here calls it first; code that
    calls the OpenEXR bindings itself (deep files) can call it too.

    Why: the bindings start with no pool (0 threads), and then every chunk is (de)compressed on
    the calling thread, while ZIP is most of the cost of reading and writing a float32 frame (two
    cores, a 1920x1080 RGBA frame: write 0.30 s -> 0.17 s, read of RGBA + Z 0.09 s -> 0.045 s)."""
    import OpenEXR

    try:
        if _io_pool["threads"] is None:
            _io_pool["threads"] = OpenEXR.global_thread_count()
            if _io_pool["threads"] == 0:
                return set_io_threads(0)
        return OpenEXR.global_thread_count()
    except (AttributeError, RuntimeError):  # older bindings without the global pool
        _io_pool["threads"] = 0
        return 0


def _codec_enum(codec):
    import OpenEXR

    name = str(codec).lower()
    if name in LOSSY_CODECS:
        raise UsageError(f"codec {codec!r} is lossy: it changes stored values, and a depth "
                         f"channel that is not stored exactly decodes to wrong distances; use a "
                         f"lossless codec ({', '.join(LOSSLESS_CODECS)})")
    if name not in LOSSLESS_CODECS:
        raise UsageError(f"unknown EXR codec {codec!r}: use one of {', '.join(LOSSLESS_CODECS)}")
    return {"zip": OpenEXR.ZIP_COMPRESSION, "piz": OpenEXR.PIZ_COMPRESSION,
            "zips": OpenEXR.ZIPS_COMPRESSION, "rle": OpenEXR.RLE_COMPRESSION,
            "none": OpenEXR.NO_COMPRESSION}[name]


_capture_lock = threading.Lock()
_capture_state = {"depth": 0, "saved": [], "file": None}


def _start_capture():
    import sys

    with _capture_lock:
        state = _capture_state
        if state["depth"] == 0:
            tmp = tempfile.TemporaryFile()
            saved = []
            for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
                try:
                    if stream is not None:
                        stream.flush()
                    copy = os.dup(fd)
                    os.dup2(tmp.fileno(), fd)
                    saved.append((fd, copy))
                except (OSError, ValueError, AttributeError):
                    pass
            state["saved"], state["file"] = saved, tmp
        state["depth"] += 1
        return state["file"], state["file"].tell()


def _stop_capture(start):
    with _capture_lock:
        state = _capture_state
        tmp = state["file"]
        tmp.flush()
        end = tmp.seek(0, os.SEEK_END)
        tmp.seek(start)
        text = tmp.read(max(0, end - start)).decode("utf-8", "replace")
        tmp.seek(end)
        state["depth"] -= 1
        if state["depth"] == 0:
            for fd, copy in state["saved"]:
                os.dup2(copy, fd)
                os.close(copy)
            tmp.close()
            state["saved"], state["file"] = [], None
        return text


@contextlib.contextmanager
def _captured_output():
    """Capture what the C++ library prints on file descriptors 1 and 2 (it reports damaged files
    there, not in the exception); yields a list that receives the text after the block.
    Thread-safe: overlapping captures share one redirection, undone by the last to finish."""
    out = []
    _, start = _start_capture()
    try:
        yield out
    finally:
        out.append(_stop_capture(start))


# -- reading --------------------------------------------------------------------------------------

class DeepFileError(ZDepthError):
    """The image asked for is stored as deep samples, and the caller reads flat images only."""


@dataclass
class ExrPart:
    """One part of a file: ``type`` is ``scanline``, ``tiled``, ``deep scanline`` or ``deep
    tiled``; ``view`` the part's view (its ``view`` attribute, or a view name its part name ends
    with), None for a part shared by all views; ``sample_counts`` (deep parts, when read): int32
    HxW samples per pixel."""

    name: str
    header: dict
    channel_names: list
    data_window: tuple
    display_window: tuple
    view: str = None
    type: str = "scanline"
    index: int = 0
    sample_counts: np.ndarray = None

    @property
    def deep(self):
        return self.type.startswith("deep")


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


def _window(value):
    if value is None:
        return None
    lo, hi = value
    return (int(lo[0]), int(lo[1])), (int(hi[0]), int(hi[1]))


def _clean_header(header):
    return {k: v for k, v in header.items() if k != "channels"}


_TYPES = {"scanlineimage": "scanline", "tiledimage": "tiled", "deepscanline": "deep scanline",
          "deeptile": "deep tiled"}


def _part_type(header):
    t = header.get("type")
    name = getattr(t, "name", None) or str(t or "scanlineimage")
    name = name.split(".")[-1]
    if t is None and header.get("tiles") is not None:
        name = "tiledimage"
    return _TYPES.get(name, name)


def _as_str_list(value):
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        value = [value]
    out = []
    for v in value:
        out.append(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
    return out


#: View names recognised in part names (``rgba_left``) when no part has a ``view`` attribute.
NAMED_VIEWS = ("left", "right", "center", "centre")


def _infer_part_views(names):
    """Views given only by part names (``rgba_left``, ``depth_left``, ``rgba_right``...): a
    suffix after the last ``_`` that is a stereo view name (:data:`NAMED_VIEWS`), shared by
    several parts whose other halves repeat with another such suffix (``enc_log``,
    ``enc_linear`` are no views). Returns {part index: view}."""
    split = {}
    for i, n in enumerate(names):
        if "_" in n:
            base, suffix = n.rsplit("_", 1)
            if base and suffix.lower() in NAMED_VIEWS:
                split[i] = (base, suffix)
    by_base = {}
    for i, (base, suffix) in split.items():
        by_base.setdefault(base, set()).add(suffix)
    groups = [s for s in by_base.values() if len(s) >= 2]
    if not groups:
        return {}
    views = set.intersection(*groups) if len(groups) > 1 else groups[0]
    if len(views) < 2:
        return {}
    return {i: s for i, (b, s) in split.items() if s in views}


def _layout_views(infos):
    """``(views, part_views)``: the file's views (default first) and each part's view (None =
    shared, or per channel by the ``multiView`` rule)."""
    multi = []
    for info in infos:
        multi = _as_str_list(info["header"].get("multiView"))
        if multi:
            break
    part_views = [None] * len(infos)
    for i, info in enumerate(infos):
        v = info["header"].get("view")
        if v is not None:
            part_views[i] = _as_str_list(v)[0] if _as_str_list(v) else None
    if not any(part_views) and len(infos) > 1:
        for i, v in _infer_part_views([info["name"] for info in infos]).items():
            part_views[i] = v
    views = list(multi)
    for v in part_views:
        if v and v not in views:
            views.append(v)
    return views, part_views


def _channel_view(name, views, part_view, multi_view=False):
    """``(view, name without the view)`` of a channel (OpenEXR's multi-view rule: the view is
    the second-to-last ``.`` component; in a part with a ``multiView`` list, a name without one
    belongs to the default view). ``(None, name)``: a channel of a part shared by all views."""
    parts = name.split(".")
    if len(parts) >= 2 and parts[-2] in views and (part_view is None or parts[-2] == part_view):
        return parts[-2], ".".join(parts[:-2] + parts[-1:])
    if part_view is not None:
        return part_view, name
    if multi_view and views:
        return views[0], name  # OpenEXR: a channel without a view name is the default view's
    return None, name


def describe_views(views):
    return ", ".join(views) if views else "none (the file has no views)"


def _damaged(path, text, fallback):
    detail = text.splitlines()[-1].strip() if text else fallback
    return ZDepthError(f"{path}: damaged or truncated OpenEXR file ({detail})")


def _open_checks(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ZDepthError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ZDepthError(f"{path}: is a folder, not an EXR file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ZDepthError(f"{path}: cannot read ({exc.strerror})")
    if magic != b"\x76\x2f\x31\x01":
        raise ZDepthError(f"{path}: not an OpenEXR file")
    try:
        exrscan.check_file(path)
    except OSError as exc:
        raise ZDepthError(f"{path}: cannot read ({exc.strerror})")
    return path


def read_layout(path):
    """The parts of the EXR at ``path`` (headers only, no pixels): ``(parts, views)`` with one
    :class:`ExrPart` per part and the file's views, default first. :class:`ZDepthError` for a
    missing, damaged or hostile file."""
    import OpenEXR

    path = _open_checks(path)
    failure = None
    with _captured_output() as messages:
        try:
            io_threads()
            headers = [(p.name() if callable(getattr(p, "name", None)) else "",
                        dict(p.header)) for p in OpenEXR.File(path, header_only=True).parts]
            layout = _layout(headers)
        except Exception as exc:  # the bindings raise RuntimeError (or a decoding error)
            failure = str(exc)
    text = (messages[0] if messages else "").strip()
    if failure is not None:
        raise _damaged(path, text, failure)
    return layout


def _layout(headers):
    infos = [{"name": n or "", "header": h} for n, h in headers]
    views, part_views = _layout_views(infos)
    parts = []
    for i, info in enumerate(infos):
        h = info["header"]
        names = [c.name if hasattr(c, "name") else str(c) for c in h.get("channels", [])]
        parts.append(ExrPart(info["name"], _clean_header(h), names, _window(h.get("dataWindow")),
                             _window(h.get("displayWindow")), part_views[i], _part_type(h), i))
    return parts, views


def read_exr(path, view=None, sample_counts=False):
    """Read the channels of one view of the EXR at ``path`` (see :class:`ExrImage`).

    ``view``: the view to read (default: the file's default view -- the first of ``multiView``,
    else the first part's); a view the file lacks is a :class:`UsageError` listing its views.
    Deep parts are not turned into images: their channels are listed in ``deep_channels``
    (name -> part), and with ``sample_counts`` their per-pixel sample counts are read. Sizes the
    file declares are checked before anything is allocated (:mod:`.exrscan`).
    :class:`ZDepthError` if the file is missing, not an EXR, damaged or hostile."""
    import OpenEXR

    path = _open_checks(path)
    failure = None
    with _captured_output() as messages:
        try:
            io_threads()
            declared = OpenEXR.File(path, header_only=True).parts
            headers = [(p.name() if callable(getattr(p, "name", None)) else "", dict(p.header))
                       for p in declared]
            parts_info, views = _layout(headers)
            if view is not None and view not in views:
                failure = UsageError(f"--view {view}: {path} has no view {view!r}; its views: "
                                     f"{describe_views(views)}")
            else:
                exr = OpenEXR.File(path, separate_channels=True)
                loaded = [(dict(p.channels), p) for p in exr.parts]
        except Exception as exc:  # the bindings raise RuntimeError for damaged files
            failure = exc
    text = (messages[0] if messages else "").strip()
    if isinstance(failure, ZDepthError):
        raise failure
    if failure is not None:
        raise _damaged(path, text, str(failure))
    if len(loaded) != len(parts_info) or not parts_info:
        raise _damaged(path, text, f"{len(parts_info) - len(loaded)} part(s) unreadable")
    chosen = view if view is not None else (views[0] if views else None)
    channels, half, windows, deep = {}, set(), {}, {}
    first = None
    shared = []  # channels of parts without a view: used where the view has none of its own
    for info, (chans, _part) in zip(parts_info, loaded):
        missing = [n for n in info.channel_names if n not in chans]
        if missing:
            raise _damaged(path, text, f"channels {missing} unreadable")
        for name, ch in chans.items():
            cview, short = _channel_view(name, views, info.view,
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


def _match(pattern, name):
    if "*" not in pattern:
        return name == pattern
    return fnmatch.fnmatchcase(name, pattern) and "." in name


def find_depth_channel(names, layer=None, preferred=None):
    """The depth channel among ``names`` (``preferred`` first, then a layer's ``<layer>.Depth.Z``,
    then :data:`DEPTH_PATTERNS` in order); None when nothing matches."""
    names = list(names)
    if preferred and preferred in names:
        return preferred
    if layer:
        for suffix in ("Depth.Z", "depth.Z", "Depth.V", "Z"):
            if f"{layer}.{suffix}" in names:
                return f"{layer}.{suffix}"
    for pattern in DEPTH_PATTERNS:
        for name in names:
            if _match(pattern, name):
                return name
    return None


def find_beauty_channels(names, layer=None):
    """``[R, G, B, A-or-None]`` channel names of the beauty among ``names``, or None."""
    names = list(names)
    prefixes = ([f"{layer}.Combined", f"{layer}.Image", layer] if layer else []) \
        + list(BEAUTY_PREFIXES)
    for prefix in prefixes:
        if "*" in prefix:
            heads = sorted({n.rsplit(".", 1)[0] for n in names if "." in n},
                           key=lambda h: next(i for i, n in enumerate(names)
                                              if n.startswith(h + ".")))
            heads = [h for h in heads if fnmatch.fnmatchcase(h, prefix)]
        else:
            heads = [prefix]
        for head in heads:
            dot = f"{head}." if head else ""
            rgb = [f"{dot}{c}" for c in "RGB"]
            if all(c in names for c in rgb):
                alpha = f"{dot}A" if f"{dot}A" in names else None
                return rgb + [alpha]
    return None


def file_layers(names):
    """The layer names among channel ``names``: ``X`` of ``X.Depth.Z``, ``X.Combined.R``,
    ``X.R`` (three or more components: the layer is all but the last two)."""
    layers = []
    for n in names:
        bits = n.split(".")
        if len(bits) >= 3:
            layers.append(".".join(bits[:-2]))
        elif len(bits) == 2 and bits[1] in ("R", "G", "B", "A", "Z"):
            layers.append(bits[0])
    return list(dict.fromkeys(layers))


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
    and why). ``view``/``views``: the view read and the file's views.
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
        coordinates with the origin at the BOTTOM-LEFT (x right, y up: Blender's Image Editor,
        Nuke). :class:`UsageError` when it lies outside the display window; the row or column
        may lie outside the array when the data window does not cover that pixel (the caller
        says so)."""
        disp = self.display_window or self.data_window
        if disp is None:
            h, w = self.depth.shape
            disp = ((0, 0), (w - 1, h - 1))
        (dx0, dy0), (dx1, dy1) = disp
        w, h = dx1 - dx0 + 1, dy1 - dy0 + 1
        x, y = int(round(float(x))), int(round(float(y)))
        if not (0 <= x < w and 0 <= y < h):
            raise UsageError(f"focus pixel {x},{y} is outside the {w}x{h} frame (display "
                             f"window; origin at the bottom left, x right, y up)")
        data = self.data_window or disp
        col = dx0 + x - data[0][0]
        row = dy1 - y - data[0][1]
        return row, col


def _deep_refusal(path, part):
    try:
        from . import deep  # noqa: F401  (the dof path reads deep files when it is there)
        hint = "the dof command reads deep files"
    except ImportError:
        hint = "flatten it first (e.g. in your compositor)"
    return DeepFileError(f"{path}: part {part.name or part.index!r} holds deep samples "
                         f"({part.type}): this command reads flat images only; {hint} "
                         f"('inspect' shows its sample counts)")


def load_frame(path, background="auto", layer=None, depth_channel=None, need_depth=True,
               view=None, layer_required=True):
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
    names the active view layer, which files without layers simply do not divide into).
    ``view``: the view (stereo/multi-view files; default the file's default view).
    ``depth_channel``: explicit channel name.
    """
    from .encodings import apply_background

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
        ddepth = find_depth_channel(dnames, layer, preferred)
        dbeauty = find_beauty_channels(dnames, layer)
        if (ddepth and find_depth_channel(names, layer, preferred) is None) or \
                (dbeauty and find_beauty_channels(names, layer) is None):
            raise _deep_refusal(img.path, img.deep_channels[ddepth or dbeauty[0]])
    if layer is None and not preferred:
        layers = [n[: -len(".Depth.Z")] for n in names if n.endswith(".Depth.Z")]
        if len(layers) > 1 and "ViewLayer" in layers:
            layer = "ViewLayer"  # Blender's default layer (4.x files sort layers by name)
    dname = find_depth_channel(names, layer, preferred)
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
    beauty = find_beauty_channels(names, layer)
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


def suspected_clip_end_background(frame, share=0.001):
    """How many pixels ``load_frame``'s automatic rule took for EEVEE's sky at the clip end and
    at which depth: the depth, or None when it recognised none."""
    report = getattr(frame, "background_info", None)
    if report is None or not report.sky:
        return None
    return report.sky_depth


# -- writing --------------------------------------------------------------------------------------

def _window_value(window):
    (x0, y0), (x1, y1) = window
    return (np.array([x0, y0], dtype=np.int32), np.array([x1, y1], dtype=np.int32))


def write_exr(path, channels, header=None, half=False, codec="zip", overwrite=False,
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

    compression = _codec_enum(codec)
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
        if key in _STRUCTURAL or value is None:
            continue
        hdr[key] = value
    hdr["compression"] = compression
    hdr["type"] = OpenEXR.scanlineimage
    hdr["dataWindow"] = _window_value(data_window)
    hdr["displayWindow"] = _window_value(display_window or data_window)
    with atomic_target(path, overwrite) as tmp:
        with _captured_output() as messages:
            try:
                io_threads()
                OpenEXR.File(hdr, arrays).write(tmp)
                failure = None
            except Exception as exc:
                failure = exc
        if failure is not None:
            text = (messages[0] if messages else "").strip()
            raise ZDepthError(f"{path}: could not write the EXR file "
                              f"({text.splitlines()[-1] if text else failure})")
    return os.path.abspath(os.fspath(path))


def encode_for_file(depth, encoding, half=False):
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


def write_depth_exr(path, depth, encoding=None, rgba=None, camera=None, half=False,
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
    _codec_enum(codec)  # a lossy codec is refused before any work
    _check_target(path, overwrite)
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
    channels[depth_channel] = encode_for_file(depth, encoding, half)
    header = {}
    if camera is not None:
        header.update(camera.to_header())
    header.update(extra_header or {})
    header.update(encoding.to_header())
    header["zdepthDepthChannel"] = depth_channel
    header["zdepthSoftware"] = "blender_zdepth"
    return write_exr(path, channels, header, half=half, codec=codec, overwrite=overwrite,
                     data_window=data_window, display_window=display_window)
