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

from .atomic import atomic_target, check_target as _check_target, unique_temp_path  # noqa: F401
from .camera import CameraInfo
from .encodings import DEFAULT_BACKGROUND, DepthEncoding, background_threshold, is_background
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


def _exr_threads(OpenEXR):
    """Give the OpenEXR library's global thread pool one thread per usable CPU (at most 8), once.

    The bindings start with no pool (0 threads): every chunk is then (de)compressed on the
    calling thread, and ZIP is most of the cost of reading and writing a float32 frame (on two
    cores, a 1920x1080 RGBA frame: write 0.24 s -> 0.14 s, read of RGBA + Z 0.067 s -> 0.036 s
    with 2 threads). The codec, the bytes written and the values read are the same either way.
    A pool the caller has already set up (``OpenEXR.set_global_thread_count``) is left as it
    is."""
    if _threads_done[0]:
        return
    _threads_done[0] = True
    try:
        if OpenEXR.global_thread_count() == 0:
            try:
                cpus = len(os.sched_getaffinity(0))
            except (AttributeError, OSError):
                cpus = os.cpu_count() or 1
            if cpus > 1:
                OpenEXR.set_global_thread_count(min(cpus, 8))
    except (AttributeError, RuntimeError):  # older bindings without the global pool
        pass


_threads_done = [False]


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

@dataclass
class ExrPart:
    name: str
    header: dict
    channel_names: list
    data_window: tuple
    display_window: tuple


@dataclass
class ExrImage:
    """Every channel of an EXR file (all parts), as float32 HxW arrays.

    ``channels``: full channel names (Blender's ``ViewLayer.Depth.Z`` etc.) -> float32 HxW.
    ``header``: attributes of the first part (``channels`` left out).
    ``data_window`` / ``display_window``: ``((xmin, ymin), (xmax, ymax))`` of the first part.
    ``parts``: one :class:`ExrPart` per part. ``half``: channel names stored as half.
    """

    path: str
    channels: dict
    header: dict
    data_window: tuple
    display_window: tuple
    parts: list
    half: set = field(default_factory=set)


def _window(value):
    if value is None:
        return None
    lo, hi = value
    return (int(lo[0]), int(lo[1])), (int(hi[0]), int(hi[1]))


def _clean_header(header):
    return {k: v for k, v in header.items() if k != "channels"}


def read_exr(path):
    """Read every channel of the EXR at ``path``; :class:`ZDepthError` if it is missing, not an
    EXR, truncated or unreadable."""
    import OpenEXR

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
    failure = None
    with _captured_output() as messages:
        try:
            # the header alone says which parts and channels the file declares; a damaged file
            # can drop whole parts from the full read, with only a message on stdout
            _exr_threads(OpenEXR)
            declared_parts = [[c.name for c in p.header.get("channels", [])]
                              for p in OpenEXR.File(path, header_only=True).parts]
            exr = OpenEXR.File(path, separate_channels=True)
            parts = list(exr.parts)
            loaded = [(p, dict(p.channels), _clean_header(p.header), p.header.get("channels", []))
                      for p in parts]
        except Exception as exc:  # the bindings raise RuntimeError for damaged files
            failure = str(exc)
    text = (messages[0] if messages else "").strip()
    if failure is not None:
        detail = text.splitlines()[-1] if text else failure
        raise ZDepthError(f"{path}: damaged or truncated OpenEXR file ({detail.strip()})")
    if len(loaded) != len(declared_parts):
        detail = text.splitlines()[-1].strip() if text else \
            f"{len(declared_parts) - len(loaded)} part(s) unreadable"
        raise ZDepthError(f"{path}: damaged or truncated OpenEXR file ({detail})")
    channels, half, infos = {}, set(), []
    for part, chans, header, declared in loaded:
        declared_names = [c.name for c in declared]
        missing = [n for n in declared_names if n not in chans]
        if missing:
            detail = text.splitlines()[-1].strip() if text else f"channels {missing} unreadable"
            raise ZDepthError(f"{path}: damaged or truncated OpenEXR file ({detail})")
        pname = part.name() if callable(getattr(part, "name", None)) else ""
        for name, ch in chans.items():
            px = ch.pixels
            if px is None or px.ndim != 2:
                raise ZDepthError(f"{path}: channel {name!r} is not a flat image "
                                  f"(deep or subsampled data is not supported)")
            key = name if name not in channels else f"{pname}.{name}"
            if px.dtype == np.float16:
                half.add(key)
            channels[key] = np.ascontiguousarray(px, dtype=np.float32)
        infos.append(ExrPart(pname or "", header, list(chans),
                             _window(header.get("dataWindow")),
                             _window(header.get("displayWindow"))))
    if not infos:
        detail = text.splitlines()[-1].strip() if text else "no image part"
        raise ZDepthError(f"{path}: damaged or truncated OpenEXR file ({detail})")
    first = infos[0]
    return ExrImage(path, channels, first.header, first.data_window, first.display_window,
                    infos, half)


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


def _describe(names, limit=12):
    names = sorted(names)
    shown = ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit
                                        else "")
    return shown or "no channels"


@dataclass
class Frame:
    """One rendered frame: beauty and depth, registered.

    ``rgba``: float32 HxWx4 premultiplied, or None. ``depth``: float32 HxW linear planar depth,
    ``+inf`` where background. ``encoding``: the file's :class:`DepthEncoding`, or None for a plain
    render. ``camera``: :class:`CameraInfo` or None. ``background``: the threshold that was
    applied to a plain render's depth (None when the file held encoded depth).
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

    @property
    def shape(self):
        return self.depth.shape


def load_frame(path, background="auto", layer=None, depth_channel=None, need_depth=True):
    """Read beauty and depth of the EXR at ``path`` (see :class:`Frame`).

    ``background`` applies to plain renders (files without our encoding header): ``"auto"`` =
    non-finite or ``>= 1e9`` (Cycles writes 1e10), or just under the camera's clip end when the
    header records the camera and the file was not rendered by Cycles (EEVEE writes the clip end);
    a number = that threshold; None = only non-finite values. ``layer``: view layer to read when
    the file has several (default: ``ViewLayer``, Blender's default, when present, else the first
    in the file); beauty and depth always come from the same layer. ``depth_channel``: explicit
    channel name.
    """
    img = read_exr(path)
    names = list(img.channels)
    header = img.header
    encoding = DepthEncoding.from_header(header)
    camera = CameraInfo.from_header(header)
    preferred = depth_channel or header.get("zdepthDepthChannel")
    if depth_channel and depth_channel not in names:
        raise ZDepthError(f"{img.path}: no channel {depth_channel!r}; the file has: "
                          f"{_describe(names)}")
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
        raise ZDepthError(f"{img.path}: no depth channel (looked for Z, depth.Z, "
                          f"<layer>.Depth.Z, <layer>.Depth.V); the file has: {_describe(names)}. "
                          f"Render with the Z pass on (View Layer > Passes > Z) and save a "
                          f"multilayer EXR")
    beauty = find_beauty_channels(names, layer)
    threshold = None
    depth = None
    if dname is not None:
        raw = img.channels[dname]
        if encoding is not None:
            depth = encoding.decode(raw)
        else:
            if background == "auto":
                threshold = DEFAULT_BACKGROUND
                cycles = any(str(k).startswith("cycles.") for k in header)
                if camera is not None and camera.clip_end and not cycles:
                    threshold = background_threshold(camera.clip_end, camera.clip_start,
                                                     "EEVEE")
            elif background is None:
                threshold = None
            else:
                threshold = float(background)
            depth = np.where(is_background(raw, threshold), np.float32(np.inf), raw)
            depth = depth.astype(np.float32, copy=False)  # float32 already: no second copy
    rgba = None
    if beauty is not None:
        chans = [img.channels[c] for c in beauty[:3]]
        shapes = {c.shape for c in chans}
        alpha = img.channels[beauty[3]] if beauty[3] else np.ones_like(chans[0])
        shapes.add(alpha.shape)
        if depth is not None:
            shapes.add(depth.shape)
        if len(shapes) != 1:
            raise ZDepthError(f"{img.path}: beauty and depth have different sizes "
                              f"({sorted(shapes)}): they are not registered")
        # one interleaving copy (the channels are float32 already: no astype copy after it)
        rgba = np.empty(chans[0].shape + (4,), np.float32)
        for i, c in enumerate(chans + [alpha]):
            rgba[..., i] = c
    half = dname in img.half if dname else False
    return Frame(img.path, depth, rgba, encoding, camera, header, dname, beauty,
                 img.data_window, img.display_window, threshold, half)


def suspected_clip_end_background(frame, share=0.001):
    """For a plain render not known to come from Cycles and without a recorded camera: the
    largest finite depth when at least ``share`` of the pixels hold exactly that value -- the
    signature of EEVEE's background (the clip end) -- else None. A hint for the user, never
    applied silently (a flat backdrop facing the camera looks the same)."""
    if frame.encoding is not None or frame.depth is None:
        return None
    if any(str(k).startswith("cycles.") for k in frame.header):
        return None
    if frame.camera is not None and frame.camera.clip_end:
        return None
    d = frame.depth[np.isfinite(frame.depth)]
    if d.size == 0:
        return None
    top = float(d.max())
    if np.count_nonzero(d == top) >= max(2, share * frame.depth.size):
        return top
    return None


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
                _exr_threads(OpenEXR)
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
