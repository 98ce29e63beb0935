"""Deep OpenEXR files: write our depth layers as a standard deep scanline file
(:func:`write_deep_exr`), read any deep file, ours or another renderer's (:func:`read_deep`), into
the packed :class:`~blender_zdepth.core.deep.DeepImage` (sorted and tidy).

The official bindings hand deep channels over as (H, W) object arrays of per-pixel 1-D arrays
(``None`` where a pixel has no sample); :func:`read_deep` converts them to the packed form once,
and everything after that is vectorised numpy. ``benchmarks/bench_deep.py`` measures what this
costs.
"""

import contextlib
import itertools
import operator
import os

import numpy as np

from ..atomic import check_target
from ..deep import (DEEP_CHANNELS, LAYERS_KEY, MODE_KEY, SLAB_BOUNDS_KEY, DeepImage,
                    layer_samples, tidy)
from ..encodings import DepthEncoding
from ..errors import UsageError, ZDepthError
from ..slabs import slab_samples
from .binding import (STRUCTURAL, UnreadableAttribute, captured_output, clean_header,
                      io_threads, open_file, window, window_value, write_file)
from .channels import file_layers
from .parts import describe_views, read_layout


def _pixel_views(counts_flat, offsets, values):
    """(P,) object array: for each pixel with samples, a C-contiguous view of its samples
    (``values`` (N,) -> (count,) views, (N, k) -> (count, k) views); None elsewhere.

    Pixels are taken in groups of the same sample count: each group's samples are gathered into
    one (pixels, count[, k]) matrix, and numpy cuts it into row views in C (``np.fromiter``)
    instead of a Python slice per pixel (4x faster on a 480x270 frame)."""
    obj = np.empty(counts_flat.size, dtype=object)
    for c in np.flatnonzero(np.bincount(counts_flat)).tolist():
        if c == 0:
            continue
        px = np.flatnonzero(counts_flat == c)
        rows = values[offsets[px][:, None] + np.arange(c)]  # (n, c[, k]), C-contiguous
        try:
            obj[px] = np.fromiter(rows, dtype=object, count=px.size)
        except TypeError:  # numpy < 1.23: no object dtype in fromiter
            for i, row in zip(px.tolist(), rows):
                obj[i] = row
    return obj


def _to_object_arrays(counts, channels, dtypes=None):
    """The bindings' form of packed samples: (H, W) object arrays holding one array per pixel
    (``None`` for a pixel without samples).

    ``R, G, B, A`` of one dtype go in as one ``"RGBA"`` entry of (count, 4) arrays: the bindings
    write it as the four channels ``R``, ``G``, ``B``, ``A`` -- the same file, byte for byte, as
    four separate entries -- with one array per pixel instead of four. A channel equal to one
    already converted (``ZBack == Z``: point samples) shares its per-pixel arrays."""
    h, w = counts.shape
    flat = counts.ravel().astype(np.int64, copy=False)
    off = np.zeros(flat.size + 1, np.int64)
    np.cumsum(flat, out=off[1:])
    dtypes = dtypes or {}
    dtype_of = {name: np.dtype(dtypes.get(name, np.float32)) for name in channels}
    result, done = {}, []
    names = list(channels)
    if all(c in channels for c in "RGBA") and len({dtype_of[c] for c in "RGBA"}) == 1:
        rgba = np.stack([np.asarray(channels[c]) for c in "RGBA"], axis=1).astype(
            dtype_of["R"], copy=False)
        result["RGBA"] = _pixel_views(flat, off, rgba).reshape(h, w)
        names = [n for n in names if n not in "RGBA"]
    for name in names:
        values = np.ascontiguousarray(channels[name], dtype_of[name])
        same = next((obj for v, obj in done if v.dtype == values.dtype
                     and np.array_equal(v, values)), None)
        if same is None:
            same = _pixel_views(flat, off, values).reshape(h, w)
            done.append((values, same))
        result[name] = same
    return result


def write_deep_exr(path, rgba, depth, hidden=(), *, camera=None, extra_header=None,
                   overwrite=False, data_window=None, display_window=None, min_gap=1e-3,
                   slabs=(), bounds=None):
    """Write our deep OpenEXR of one frame: deep scanline, ZIPS, channels R, G, B, A, Z, ZBack
    (float32), premultiplied point samples sorted front to back.

    ``rgba`` (H, W, 4) premultiplied and ``depth`` (H, W) linear planar depth are the frame as
    rendered (the beauty and its visible depth; background = non-finite or >= 1e9, written as
    1e10 like Cycles). ``hidden``: the depth-layer passes, near to far, each ``(rgba_k,
    depth_k)`` registered with the beauty; a pass's pixel becomes a sample behind the beauty
    where it has coverage, a finite depth behind the previous sample of that pixel (by more than
    ``min_gap`` relatively: a pass that sees the same surface as the beauty adds nothing) and
    the beauty is opaque (so that flattening the file gives the beauty exactly).
    ``slabs`` (instead of ``hidden``): coverage-correct depth slabs near to far, each
    ``(rgba_k, depth_k)`` rendered with the film transparent (premultiplied colour with its
    true partial coverage, its own Z), ``bounds`` (optional) the slabs' boundaries from the
    camera's clip start to its clip end: the samples are each slab's partial-coverage colour at
    its own depth (plus the world behind them), reconciled so that flattening gives ``rgba``
    (:func:`~blender_zdepth.core.slabs.slab_samples`); the header has ``zdepthLayerMode`` =
    ``slabs``, ``zdepthSlabBounds`` (the boundaries, space separated, when given) and
    ``zdepthDepthLayers`` = the number of slabs. Peeled files have ``zdepthLayerMode`` =
    ``peel``.
    ``camera`` (:class:`~blender_zdepth.core.camera.CameraInfo`) and ``extra_header`` go into
    the header with
    ``zdepthDepthLayers`` = 1 + len(hidden) (less the attributes that describe a flat file's
    encoded depth channel -- ``zdepthEncoding``, ``zdepthNear`` ...: Z is linear here). Atomic; an existing file is replaced only with
    ``overwrite``. Returns the absolute path written.
    """
    import OpenEXR

    rgba = np.asarray(rgba, np.float32)
    depth = np.asarray(depth, np.float32)
    if depth.ndim != 2:
        raise ZDepthError(f"depth must be a HxW array, not shape {depth.shape}")
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.shape[:2] != depth.shape:
        raise ZDepthError(f"beauty {rgba.shape} and depth {depth.shape} are not registered "
                          f"(H x W x 4 premultiplied RGBA of the depth's size needed)")
    hidden = list(hidden or ())
    slabs = list(slabs or ())
    if hidden and slabs:
        raise UsageError("a deep file holds depth-layer passes or slabs, not both")
    check_target(path, overwrite)
    if slabs:
        if bounds is not None:
            bounds = [float(b) for b in bounds]
        counts, samples, _ = slab_samples(rgba, slabs, bounds)
    else:
        counts, samples = layer_samples(rgba, depth, hidden, min_gap)
    channels = _to_object_arrays(counts, samples)
    h, w = depth.shape
    if data_window is None:
        data_window = ((0, 0), (w - 1, h - 1))
    # the flat file's description of its encoded depth channel does not apply: Z is linear here
    encoded = set(DepthEncoding().to_header()) | {"zdepthDepthChannel"}
    header = {}
    if camera is not None:
        header.update(camera.to_header())
    for key, value in (extra_header or {}).items():
        if key not in STRUCTURAL and key not in encoded and value is not None:
            header[key] = value
    header[LAYERS_KEY] = int(len(slabs) if slabs else 1 + len(hidden))
    header[MODE_KEY] = "slabs" if slabs else "peel"
    if slabs and bounds is not None:
        header[SLAB_BOUNDS_KEY] = " ".join(f"{b:.9g}" for b in bounds)
    header["zdepthDeepDepth"] = "linear planar camera depth in Z and ZBack (not encoded)"
    header["zdepthSoftware"] = "blender_zdepth"
    header["type"] = OpenEXR.deepscanline
    header["compression"] = OpenEXR.ZIPS_COMPRESSION
    header["dataWindow"] = window_value(data_window)
    header["displayWindow"] = window_value(display_window or data_window)
    return write_file(path, header, channels, overwrite, "the deep EXR file")


def is_deep(path):
    """True when ``path`` is an OpenEXR file whose first part is deep (scanline or tiled); False
    for a flat EXR; :class:`ZDepthError` when it is missing or not an EXR."""
    import OpenEXR  # noqa: F401 -- missing, this is the command line's one clear line

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ZDepthError(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:4] != b"\x76\x2f\x31\x01":
        raise ZDepthError(f"{path}: not an OpenEXR file")
    # version field, bit 11 (0x800) = "non-image" (deep) data in a single-part file
    flags = int.from_bytes(head[4:8], "little")
    if flags & 0x800:
        return True
    if not flags & 0x1000:  # single part, not deep
        return False
    with captured_output():
        try:
            parts = open_file(path, header_only=True).parts
        except Exception:
            return False
    return any(str(p.header.get("type", "")).endswith(("deepscanline", "deeptile"))
               for p in parts)


def _object_to_packed(obj, counts=None):
    """(H, W) object array of per-pixel arrays (None for a pixel without samples; (count,) or
    (count, k) arrays) -> ``(counts (H, W) int64, values)``: the samples of every pixel one
    after the other, (N,) or (N, k), in the arrays' own dtype. ``counts`` given (from another
    channel of the file: a deep file has one sample-count table for all its channels) saves
    counting again; the arrays must then hold that many samples (checked by the caller through
    the total). The per-pixel loop runs in C (``map``, ``itertools.compress``)."""
    flat = obj.ravel().tolist()
    if counts is None:
        present = np.fromiter(map(operator.is_not, flat, itertools.repeat(None)), bool,
                              count=len(flat))
    else:
        present = counts.ravel() > 0
    pieces = list(itertools.compress(flat, present)) if not present.all() else flat
    del flat
    if counts is None:
        counts = np.zeros(present.size, np.int64)
        counts[present] = np.fromiter(map(len, pieces), np.int64, count=len(pieces))
        counts = counts.reshape(obj.shape)
    values = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return counts, values


def _read_channels(OpenEXR, path):
    """The parts of a deep file as ``[(header, {channel name: (pixels, column)})]``:
    ``pixels`` the bindings' (H, W) object array, ``column`` None or, for channels the bindings
    read as one group (``R, G, B[, A]`` of one type -> (count, 3 or 4) arrays per pixel), the
    channel's column in the group's arrays.

    Read with the groups when the bindings can (half the per-pixel arrays of a separate read:
    3 instead of 6 for ``R, G, B, A, Z, ZBack``, so about half the memory and time), channel by
    channel otherwise (colour channels of mixed types, names that collide with a group's)."""
    declared = [[c.name for c in p.header.get("channels", [])]
                for p in open_file(path, header_only=True).parts]
    try:
        parts = list(open_file(path).parts)
    except Exception as exc:
        if "coalesce" not in str(exc):
            raise
        parts = None
    if parts is not None:
        loaded = []
        for part, names in zip(parts, declared):
            chans = {}
            for key, channel in part.channels.items():
                if key in names:
                    chans[key] = (channel, None)
                    continue
                prefix = "" if key in ("RGB", "RGBA") else key + "."
                group = [x for x in "RGBA" if prefix + x in names]
                if group[:3] != ["R", "G", "B"]:
                    loaded = None  # a grouping this reader does not know: read channel by channel
                    break
                for column, x in enumerate(group):
                    chans[prefix + x] = (channel, column)
            if loaded is None:
                break
            loaded.append((part.header, chans))
        if loaded is not None:
            return declared, loaded
        del parts
    parts = list(open_file(path, separate_channels=True).parts)
    return declared, [(p.header, {k: (c, None) for k, c in p.channels.items()}) for p in parts]


def _find_channel(names, base):
    if base in names:
        return base
    matches = [n for n in names if n.rsplit(".", 1)[-1] == base]
    return matches[0] if len(matches) == 1 else None


def read_deep(path, *, view=None, layer=None):
    """Read the deep OpenEXR at ``path`` (deep scanline or deep tiled; HALF, FLOAT or UINT
    channels) into a :class:`DeepImage`, sorted front to back and tidy.

    :class:`ZDepthError` (one line) when the file is missing, not an EXR, not deep, damaged or
    truncated, has no ``Z`` channel, channels with different sample counts, or samples with NaN
    depth. Unsorted samples are sorted; ``ZBack < Z`` is read as a point sample at ``Z``;
    overlapping volume samples are split and merged. ``view``: the view of a stereo /
    multi-view deep file (default: the file's default view; one it lacks is a
    :class:`UsageError` listing its views); ``layer``: a layer the file must have
    (:class:`UsageError` listing its layers otherwise)."""
    import OpenEXR

    path = os.fspath(path)
    parts_info, views = read_layout(path)  # declared sizes checked before any allocation
    if view is not None and view not in views:
        raise UsageError(f"--view {view}: {path} has no view {view!r}; its views: "
                         f"{describe_views(views)}")
    chosen = view if view is not None else (views[0] if views else None)
    if not is_deep(path):
        raise ZDepthError(f"{path}: not a deep OpenEXR file (its first part is a flat image)")
    failure = None
    with captured_output() as messages:
        try:
            io_threads()
            declared, loaded = _read_channels(OpenEXR, path)
            loaded = [(clean_header(h), c) for h, c in loaded]
        except UnreadableAttribute:
            raise
        except Exception as exc:
            failure = str(exc)
    text = (messages[0] if messages else "").strip()
    if failure is not None or not loaded:
        detail = text.splitlines()[-1].strip() if text else (failure or "no part")
        raise ZDepthError(f"{path}: damaged or truncated deep OpenEXR file ({detail})")
    deep_parts = [i for i, ((h, c), info) in enumerate(zip(loaded, parts_info))
                  if str(h.get("type", "")).endswith(("deepscanline", "deeptile"))
                  and (chosen is None or info.view in (chosen, None))]
    if not deep_parts:
        raise ZDepthError(f"{path}: not a deep OpenEXR file")
    header, chans = loaded[deep_parts[0]]
    if layer:
        layers = file_layers(list(chans))
        if layer not in layers:
            raise UsageError(f"--layer {layer}: {path} has no view layer {layer!r}; its view "
                             f"layers: {', '.join(layers) if layers else 'none'}")
    want = declared[deep_parts[0]]
    missing = [n for n in want if n not in chans]
    if missing:
        detail = text.splitlines()[-1].strip() if text else f"channels {missing} unreadable"
        raise ZDepthError(f"{path}: damaged or truncated deep OpenEXR file ({detail})")
    names = list(chans)
    zname = _find_channel(names, "Z")
    if zname is None:
        raise ZDepthError(f"{path}: the deep file has no Z channel (it has "
                          f"{', '.join(sorted(names)) or 'no channels'}): without depth its "
                          f"samples cannot be placed; write Z (and ZBack) with the samples")
    half = set()
    counts = None
    packed = {}
    groups = {}  # id of a channel read as a group -> its packed (N, k) samples
    # depth first: packing the small channels frees their per-pixel arrays before the colour
    # group's larger packed copy is made (a lower peak)
    for base in ("Z", "ZBack", "R", "G", "B", "A"):
        name = _find_channel(names, base)
        if name is None:
            continue
        channel, column = chans[name]
        values = groups.get(id(channel)) if column is not None else None
        if values is None:
            px = channel.pixels
            if px is None or px.dtype != object or px.ndim != 2:
                raise ZDepthError(f"{path}: channel {name!r} is not deep data")
            try:
                counts, values = _object_to_packed(px, counts=counts)
            except (TypeError, ValueError):  # None or ragged arrays where samples should be
                raise ZDepthError(f"{path}: damaged deep file: channel {name!r} has other "
                                  f"sample counts than the others") from None
            del px
            with contextlib.suppress(Exception):  # the bindings drop their per-pixel arrays now
                channel.pixels = np.zeros(0, np.float32)
            if column is not None:
                groups[id(channel)] = values
        if column is not None and values.ndim == 2:
            values = values[:, column]
        if values.dtype == np.float16:
            half.add(base)
        if values.size != int(counts.sum()):
            raise ZDepthError(f"{path}: damaged deep file: channel {name!r} has other sample "
                              f"counts than the others")
        packed[base] = np.ascontiguousarray(values, np.float32)
    del groups
    packed = {base: packed[base] for base in DEEP_CHANNELS if base in packed}
    n = packed["Z"].size
    for base in "RGB":
        packed.setdefault(base, np.zeros(n, np.float32))
    packed.setdefault("A", np.ones(n, np.float32))
    if "ZBack" not in packed:
        packed["ZBack"] = packed["Z"].copy()
    image = DeepImage(path, counts, packed, header, window(header.get("dataWindow")),
                      window(header.get("displayWindow")), half)
    return tidy(image)

