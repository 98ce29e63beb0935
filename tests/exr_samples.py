"""Files from other tools, made with the OpenEXR binding for the tests: stereo multi-part with a
data window per view, single-part multi-view, deep scanline and deep tiled, crop and overscan,
Z = 0 backgrounds, an EEVEE sky without our header, and hostile variants of them."""

import numpy as np
import OpenEXR


def win(x0, y0, x1, y1):
    return (np.array([x0, y0], np.int32), np.array([x1, y1], np.int32))


def depth_of_x(x0, y0, w, h, view_offset=0.0):
    """Depth that tells where a pixel came from: 10 + absolute x / 100 (+ an offset per view)."""
    xs = np.arange(x0, x0 + w, dtype=np.float32)
    return np.ascontiguousarray(np.broadcast_to(10.0 + xs / 100.0 + view_offset, (h, w)),
                                dtype=np.float32)


def beauty_of_x(x0, y0, w, h, marker):
    """RGBA whose R is the absolute x / 1000, G the absolute y / 1000, B a view marker."""
    yy, xx = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float32)
    return {"R": xx / 1000.0, "G": yy / 1000.0, "B": np.full((h, w), marker, np.float32),
            "A": np.ones((h, w), np.float32)}


STEREO_WINDOWS = {"left": (40, 10, 119, 59), "right": (6, 10, 85, 59)}  # 34 px apart
STEREO_DISPLAY = (0, 0, 159, 79)
VIEW_MARKER = {"left": 0.25, "right": 0.75}


def stereo_multipart(path, view_attr=True, order=("right", "left"), depth_shift=None):
    """Parts rgba_<view> and depth_<view> in the order rgba_right, depth_left, rgba_left,
    depth_right (as in the public Beachball renders); each view has its own data window.
    ``depth_shift``: move the depth parts' windows by (dx, dy) (beauty and depth then cover
    different windows and must be placed by them)."""
    parts = []
    layout = [("rgba", order[0]), ("depth", order[1]), ("rgba", order[1]), ("depth", order[0])]
    for kind, view in layout:
        x0, y0, x1, y1 = STEREO_WINDOWS[view]
        if kind == "depth" and depth_shift:
            x0, x1, y0, y1 = x0 + depth_shift[0], x1 + depth_shift[0], y0 + depth_shift[1], \
                y1 + depth_shift[1]
        w, h = x1 - x0 + 1, y1 - y0 + 1
        header = {"compression": OpenEXR.ZIPS_COMPRESSION, "type": OpenEXR.scanlineimage,
                  "dataWindow": win(x0, y0, x1, y1), "displayWindow": win(*STEREO_DISPLAY)}
        if view_attr:
            header["view"] = view
        if kind == "rgba":
            channels = beauty_of_x(x0, y0, w, h, VIEW_MARKER[view])
        else:
            channels = {"Z": depth_of_x(x0, y0, w, h, 1.0 if view == "right" else 0.0)}
        parts.append(OpenEXR.Part(header, channels, f"{kind}_{view}"))
    OpenEXR.File(parts).write(str(path))


def multiview_singlepart(path, views=("left", "right")):
    """One part, ``multiView`` = views; the default (first) view's channels are plain R, G, B,
    A, Z, the others' are prefixed (``right.R``)."""
    h, w = 24, 32
    channels = {}
    for i, view in enumerate(views):
        prefix = "" if i == 0 else f"{view}."
        for c, plane in beauty_of_x(0, 0, w, h, VIEW_MARKER.get(view, 0.5)).items():
            channels[prefix + c] = plane
        channels[prefix + "Z"] = depth_of_x(0, 0, w, h, float(i))
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage,
              "multiView": list(views)}
    OpenEXR.File(header, channels).write(str(path))


def deep_file(path, tiled=False, h=12, w=16):
    """A deep scanline (or tiled) RGBA + Z file: pixel (y, x) holds (x + y) % 4 samples."""
    counts = (np.add.outer(np.arange(h), np.arange(w)) % 4).astype(int)
    chans = {c: np.empty((h, w), object) for c in ("R", "G", "B", "A", "Z")}
    for y in range(h):
        for x in range(w):
            n = counts[y, x]
            if n == 0:
                for c in chans:
                    chans[c][y, x] = None
                continue
            for c in "RGB":
                chans[c][y, x] = np.full(n, 0.2, np.float32)
            chans["A"][y, x] = np.full(n, 0.5, np.float32)
            chans["Z"][y, x] = np.arange(1, n + 1, dtype=np.float32) * 2.0
    header = {"type": OpenEXR.deeptile if tiled else OpenEXR.deepscanline,
              "compression": OpenEXR.ZIPS_COMPRESSION}
    if tiled:
        td = OpenEXR.TileDescription()
        td.xSize, td.ySize, td.mode = 8, 8, OpenEXR.ONE_LEVEL
        header["tiles"] = td
    OpenEXR.File(header, chans).write(str(path))
    return counts


def tiled_file(path, h=16, w=24):
    td = OpenEXR.TileDescription()
    td.xSize, td.ySize, td.mode = 8, 8, OpenEXR.ONE_LEVEL
    chans = beauty_of_x(0, 0, w, h, 0.5)
    chans["Z"] = depth_of_x(0, 0, w, h)
    OpenEXR.File({"type": OpenEXR.tiledimage, "compression": OpenEXR.ZIP_COMPRESSION,
                  "tiles": td}, chans).write(str(path))


def plain_file(path, rgba, depth, data_window=None, display_window=None, header=None):
    """A single-part RGBA + Z file without our header, with the given windows."""
    h, w = depth.shape
    data_window = data_window or (0, 0, w - 1, h - 1)
    hdr = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage,
           "dataWindow": win(*data_window), "displayWindow": win(*(display_window or data_window))}
    hdr.update(header or {})
    chans = {c: np.ascontiguousarray(rgba[..., i], np.float32) for i, c in enumerate("RGBA")}
    chans["Z"] = np.ascontiguousarray(depth, np.float32)
    OpenEXR.File(hdr, chans).write(str(path))


def patch_data_window(path, out, xmax):
    """A copy of ``path`` whose (first) data window declares ``xmax`` as its right edge: a
    hostile file declaring far more pixels than it holds."""
    import struct

    data = bytearray(open(path, "rb").read())
    key = b"dataWindow\0box2i\0"
    at = data.index(key) + len(key) + 4
    struct.pack_into("<i", data, at + 8, xmax)
    open(out, "wb").write(bytes(data))


def deep_stereo(path, h=8, w=12):
    """Two deep scanline parts, views left and right: one sample per pixel, Z = 2 (left) or
    4 (right)."""
    parts = []
    for view, z in (("left", 2.0), ("right", 4.0)):
        chans = {c: np.empty((h, w), object) for c in ("R", "G", "B", "A", "Z")}
        for y in range(h):
            for x in range(w):
                for c in "RGB":
                    chans[c][y, x] = np.array([0.3], np.float32)
                chans["A"][y, x] = np.array([1.0], np.float32)
                chans["Z"][y, x] = np.array([z], np.float32)
        header = {"type": OpenEXR.deepscanline, "compression": OpenEXR.ZIPS_COMPRESSION,
                  "view": view}
        parts.append(OpenEXR.Part(header, chans, f"rgba.{view}"))
    OpenEXR.File(parts).write(str(path))


def splice_attribute(path, out, name, type_name, value, part=0):
    """A copy of ``path`` with one more attribute ``name`` of type ``type_name`` (raw bytes
    ``value``) at the end of header ``part``, the chunk offset tables moved to match: a file
    with an attribute the OpenEXR Python bindings cannot read (``deepImageState``,
    ``idmanifest``), as other tools write them."""
    import struct

    data = open(path, "rb").read()
    multi = bool(struct.unpack_from("<I", data, 4)[0] & 0x1000)
    pos, index, insert_at = 8, 0, None
    while True:  # walk the headers: name\0 type\0 size value ... \0 (\0 after the last part)
        if data[pos] == 0:
            if index == part:
                insert_at = pos
            pos += 1
            index += 1
            if not multi or data[pos] == 0:
                pos += 0 if not multi else 1
                break
            continue
        pos = data.index(b"\0", data.index(b"\0", pos) + 1) + 1
        pos += 4 + struct.unpack_from("<i", data, pos)[0]
    attr = name.encode() + b"\0" + type_name.encode() + b"\0" + struct.pack("<i", len(value)) \
        + bytes(value)
    table_at = pos
    first_chunk = struct.unpack_from("<Q", data, table_at)[0]  # the data starts after the tables
    entries = (first_chunk - table_at) // 8
    tables = struct.unpack_from(f"<{entries}Q", data, table_at)
    moved = struct.pack(f"<{entries}Q", *(o + len(attr) if o else 0 for o in tables))
    new = data[:insert_at] + attr + data[insert_at:table_at] + moved + \
        data[table_at + 8 * entries:]
    open(out, "wb").write(new)
