"""Check the sizes an OpenEXR file declares before anything is allocated for it.

A damaged or hostile file can declare an 8-million-pixel-wide data window, a tile of a billion
pixels or billions of deep samples in a file of a few kilobytes; the OpenEXR library allocates
what the header declares before it finds out that the data is not there (seconds and gigabytes).
:func:`check_file` reads only the header and the chunk offset tables (a few kilobytes; this is
no codec: the pixel data is never decoded here) and refuses, with a :class:`ZDepthError`:

* a part whose data window holds more than :data:`MAX_PIXELS` pixels, or more decoded bytes
  than :data:`MAX_BYTES`;
* a chunk offset outside the file, or an offset table that does not fit in the file;
* a chunk (a block of scanlines, a tile, a deep block) that would decode to more bytes than its
  packed size times the best ratio its codec can reach (``_CODECS``): such a file cannot
  hold the pixels it declares;
* for deep parts, sample data larger than that bound, or more samples in all than
  :data:`MAX_DEEP_SAMPLES`.

Everything here is plain Python over at most a few megabytes of offsets; it answers within
milliseconds even for a hostile file.

Attributes of types this scan does not need (every type but the few above) are skipped by the
size they declare, whatever the type: a file is not damaged because it carries an attribute
someone else defined. :func:`header_attributes` lists them and :func:`retyped_header` gives the
header bytes with chosen types renamed, for the OpenEXR Python bindings, which refuse a few
types the C++ library knows (``deepImageState``, ``idmanifest``: see
:func:`~.binding.open_file`).
"""

import os
import struct

from ..errors import ZDepthError

#: Largest data window accepted, per part (16384 x 16384).
MAX_PIXELS = 1 << 28

#: Largest decoded size accepted for one part (all channels), bytes.
MAX_BYTES = 8 << 30

#: Largest number of deep samples accepted in one file (each becomes several numbers in memory).
MAX_DEEP_SAMPLES = 1 << 27

#: Largest number of chunks (scanline blocks or tiles) accepted per part.
MAX_CHUNKS = 1 << 24

# compression id -> (scanlines per chunk, best decoded/packed ratio the codec can reach). The
# ratios are about twice the best measured on all-zero chunks with OpenEXR 3.5 (RLE 63, ZIPS 705,
# ZIP 966, PIZ 407, PXR24 1282, B44A 10.7, DWAA 9039, DWAB 29026 for a 4096-pixel-wide float
# image), so that no valid file is refused.
_CODECS = {
    0: ("none", 1, 1.0),
    1: ("rle", 1, 130.0),
    2: ("zips", 1, 2000.0),
    3: ("zip", 16, 2000.0),
    4: ("piz", 32, 2000.0),
    5: ("pxr24", 16, 3000.0),
    6: ("b44", 32, 30.0),
    7: ("b44a", 32, 30.0),
    8: ("dwaa", 32, 20000.0),
    9: ("dwab", 256, 60000.0),
}
_UNKNOWN_CODEC = ("other", 256, 100000.0)

_PIXEL_BYTES = {0: 4, 1: 2, 2: 4}  # UINT, HALF, FLOAT

_MAGIC = b"\x76\x2f\x31\x01"


class _Reader:
    def __init__(self, data, what):
        self.data, self.pos, self.what = data, 0, what

    def need(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise ZDepthError(f"{self.what}: damaged or truncated OpenEXR file (the header "
                              f"ends too early)")

    def cstring(self, limit=256):
        end = self.data.find(b"\0", self.pos, self.pos + limit + 1)
        if end < 0:
            raise ZDepthError(f"{self.what}: damaged or truncated OpenEXR file (a header name "
                              f"is not terminated)")
        text = self.data[self.pos:end].decode("latin-1")
        self.pos = end + 1
        return text

    def unpack(self, fmt):
        size = struct.calcsize(fmt)
        self.need(size)
        value = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value


def _parse_channels(raw, what):
    chans, pos = [], 0
    while pos < len(raw):
        end = raw.find(b"\0", pos)
        if end < 0:
            raise ZDepthError(f"{what}: damaged OpenEXR file (bad channel list)")
        if end == pos:
            break
        name = raw[pos:end].decode("latin-1")
        pos = end + 1
        if pos + 16 > len(raw):
            raise ZDepthError(f"{what}: damaged OpenEXR file (bad channel list)")
        ptype, _plin, xs, ys = struct.unpack_from("<iB3xii", raw, pos)
        pos += 16
        if ptype not in _PIXEL_BYTES or xs < 1 or ys < 1:
            raise ZDepthError(f"{what}: damaged OpenEXR file (channel {name!r} has pixel type "
                              f"{ptype} and sampling {xs}x{ys})")
        chans.append((name, ptype, xs, ys))
    return chans


def _parse_header(rd, what):
    attrs = {}
    while True:
        name = rd.cstring()
        if not name:
            return attrs
        typ = rd.cstring()
        (size,) = rd.unpack("<i")
        rd.need(size)
        raw = rd.data[rd.pos:rd.pos + size]
        rd.pos += size
        if name == "channels" and typ == "chlist":
            attrs["channels"] = _parse_channels(raw, what)
        elif name in ("dataWindow", "displayWindow") and typ == "box2i" and size == 16:
            attrs[name] = struct.unpack("<4i", raw)
        elif name == "compression" and typ == "compression" and size == 1:
            attrs[name] = raw[0]
        elif name == "tiles" and typ == "tiledesc" and size == 9:
            xs, ys, mode = struct.unpack("<IIB", raw)
            attrs[name] = (xs, ys, mode & 0x0F)
        elif name == "chunkCount" and typ == "int" and size == 4:
            attrs[name] = struct.unpack("<i", raw)[0]
        elif name == "type" and typ == "string":
            attrs[name] = raw.decode("latin-1")
        elif name == "name" and typ == "string":
            attrs[name] = raw.decode("latin-1")


def _walk_headers(data, what):
    """The attributes of every header of an EXR whose first bytes are ``data`` (magic included):
    ``(attributes, end)`` with ``attributes`` a list of ``(part, name, type, size, type_at)``
    (``type_at``: where the type's name starts) and ``end`` the offset just past the last
    header's terminating null. :class:`ZDepthError` when the headers do not fit in ``data``."""
    rd = _Reader(data, what)
    rd.need(8)
    if data[:4] != _MAGIC:
        raise ZDepthError(f"{what}: not an OpenEXR file")
    multi = bool(struct.unpack_from("<I", data, 4)[0] & 0x1000)
    rd.pos = 8
    found, part = [], 0
    while True:
        rd.need(1)
        if data[rd.pos] == 0:  # the end of a header
            rd.pos += 1
            if not multi:
                break
            part += 1
            rd.need(1)
            if data[rd.pos] == 0:  # an empty header: the end of the headers
                rd.pos += 1
                break
            continue
        name = rd.cstring()
        type_at = rd.pos
        typ = rd.cstring()
        (size,) = rd.unpack("<i")
        rd.need(size)
        rd.pos += size
        found.append((part, name, typ, size, type_at))
    return found, rd.pos


def _head(path):
    with open(path, "rb") as fh:
        return fh.read(1 << 20)


def header_attributes(path):
    """Every attribute of the file's headers, ``[(part, name, type, size)]`` (no values; the
    headers must lie in the first MiB). :class:`ZDepthError` for a file that is not an EXR or
    whose headers end early."""
    what = os.fspath(path)
    found, _end = _walk_headers(_head(what), what)
    return [(part, name, typ, size) for part, name, typ, size, _at in found]


#: Type name given to an attribute the bindings cannot read (cut or padded to the original's
#: length): no OpenEXR type has this name, so the library keeps the value as opaque bytes.
PLACEHOLDER_TYPE = "zdepthOpaqueAttribute"


def retyped_header(path, types):
    """The file's header bytes (from the magic to the end of its headers) with the type name of
    every attribute whose type is in ``types`` replaced by a name of the same length that no
    OpenEXR type has (:data:`PLACEHOLDER_TYPE`): nothing moves, so the chunk offsets stay right.
    Returns ``(header_bytes, [(part, name, type)])``, the list naming the attributes changed."""
    what = os.fspath(path)
    data = bytearray(_head(what))
    found, end = _walk_headers(bytes(data), what)
    changed = []
    for part, name, typ, _size, at in found:
        if typ in types:
            data[at:at + len(typ)] = (PLACEHOLDER_TYPE * (1 + len(typ) // len(PLACEHOLDER_TYPE))
                                      )[:len(typ)].encode("latin-1")
            changed.append((part, name, typ))
    return bytes(data[:end]), changed


def _fail(what, detail):
    raise ZDepthError(f"{what}: damaged or truncated OpenEXR file ({detail}); refused "
                      f"before reading its pixels")


def _part_layout(attrs, what, index, tiled_file, deep_file):
    for key in ("channels", "dataWindow", "compression"):
        if key not in attrs:
            _fail(what, f"part {index} has no {key!r} attribute")
    x0, y0, x1, y1 = attrs["dataWindow"]
    w, h = x1 - x0 + 1, y1 - y0 + 1
    if w < 1 or h < 1:
        _fail(what, f"part {index} has an empty data window {attrs['dataWindow']}")
    if w * h > MAX_PIXELS:
        _fail(what, f"part {index} declares a {w}x{h} data window, more than the "
                    f"{MAX_PIXELS} pixels accepted")
    bpp = 0
    for name, ptype, xs, ys in attrs["channels"]:
        bpp += _PIXEL_BYTES[ptype] / (xs * ys)
    ptype_name = attrs.get("type") or ("tiledimage" if tiled_file else "scanlineimage")
    deep = ptype_name.startswith("deep") or (deep_file and "type" not in attrs)
    tiled = ptype_name in ("tiledimage", "deeptile") or (tiled_file and "type" not in attrs)
    if not deep and w * h * bpp > MAX_BYTES:
        _fail(what, f"part {index} declares {w}x{h} pixels of {len(attrs['channels'])} "
                    f"channels ({w * h * bpp / 2**30:.1f} GiB decoded), more than the "
                    f"{MAX_BYTES / 2**30:.0f} GiB accepted")
    codec = _CODECS.get(attrs["compression"], _UNKNOWN_CODEC)
    chunks = attrs.get("chunkCount")
    mode = 0
    if tiled:
        if "tiles" not in attrs:
            _fail(what, f"part {index} is tiled but has no tile description")
        tw, th, mode = attrs["tiles"]
        if tw < 1 or th < 1:
            _fail(what, f"part {index} declares {tw}x{th} tiles")
        if tw * th > MAX_PIXELS:
            _fail(what, f"part {index} declares {tw}x{th} pixel tiles")
        per_chunk = min(tw, w) * min(th, h)
        if chunks is None and mode == 0:  # one level: the count follows from the window
            chunks = -(-w // tw) * -(-h // th)
        lines = None
    else:
        lines = codec[1]
        per_chunk = w * min(lines, h)
        tw = th = None
        if chunks is None:
            chunks = -(-h // lines)
    return {"index": index, "deep": deep, "tiled": tiled, "bpp": bpp, "per_chunk": per_chunk,
            "chunks": chunks, "ratio": codec[2], "width": w, "height": h, "mode": mode,
            "lines": lines, "tile": (tw, th)}


def _chunk_pixels(lay, k):
    """Pixels chunk ``k`` of a part decodes to (edge chunks are smaller; tiles of mipmap levels
    are counted at full size)."""
    w, h = lay["width"], lay["height"]
    if lay["lines"] is not None:
        lines = lay["lines"]
        return w * max(1, min(lines, h - k * lines))
    tw, th = lay["tile"]
    nx, ny = -(-w // tw), -(-h // th)
    if lay["mode"] != 0 or k >= nx * ny:
        return lay["per_chunk"]
    tx, ty = k % nx, k // nx
    return min(tw, w - tx * tw) * min(th, h - ty * th)


def check_file(path):
    """Refuse (:class:`ZDepthError`) a file whose declared sizes it cannot hold; see the module
    docstring. Returns the number of parts. The file must exist and start with the magic."""
    what = os.fspath(path)
    file_size = os.path.getsize(what)
    with open(what, "rb") as fh:
        head = fh.read(min(file_size, 1 << 20))
        rd = _Reader(head, what)
        rd.need(8)
        if head[:4] != _MAGIC:
            raise ZDepthError(f"{what}: not an OpenEXR file")
        (flags,) = struct.unpack_from("<I", head, 4)
        rd.pos = 8
        version = flags & 0xFF
        tiled_file, deep_file, multi = bool(flags & 0x200), bool(flags & 0x800), \
            bool(flags & 0x1000)
        if version != 2:
            _fail(what, f"format version {version}")
        headers = []
        try:
            if multi:
                while True:
                    attrs = _parse_header(rd, what)
                    if not attrs:
                        break
                    headers.append(attrs)
                    if len(headers) > 10000:
                        _fail(what, "more than 10000 parts")
            else:
                headers.append(_parse_header(rd, what))
        except ZDepthError:
            if len(head) < file_size:  # a header over 1 MiB: leave it to the library
                return None
            raise
        if not headers:
            _fail(what, "no part")
        layouts = [_part_layout(a, what, i, tiled_file and not multi, deep_file and not multi)
                   for i, a in enumerate(headers)]
        for lay in layouts:  # the whole part against the whole file, whatever its tables say
            if not lay["deep"] and \
                    lay["width"] * lay["height"] * lay["bpp"] > file_size * lay["ratio"] + (1 << 20):
                _fail(what, f"part {lay['index']} declares {lay['width']}x{lay['height']} "
                            f"pixels; the {file_size}-byte file cannot hold them")
        table_at = rd.pos
        counts = [lay["chunks"] for lay in layouts]
        if any(c is None for c in counts):
            return len(headers)  # a single-part mipmapped tiled file: the windows were checked
        for lay in layouts:
            if not 0 < lay["chunks"] <= MAX_CHUNKS:
                _fail(what, f"part {lay['index']} declares {lay['chunks']} chunks")
        total = sum(counts)
        if table_at + 8 * total > file_size:
            _fail(what, f"its chunk offset tables ({total} entries) do not fit in the "
                        f"{file_size}-byte file")
        fh.seek(table_at)
        table = fh.read(8 * total)
        if len(table) != 8 * total:
            _fail(what, "the file ends inside its chunk offset tables")
        offsets = struct.unpack(f"<{total}Q", table)
        data_start = table_at + 8 * total
        ordered = sorted(set(o for o in offsets if data_start <= o < file_size))
        bounds = ordered + [file_size]
        packed_of = {o: bounds[i + 1] - o for i, o in enumerate(ordered)}
        deep_samples = 0
        pos = 0
        for lay in layouts:
            for k in range(lay["chunks"]):
                off = offsets[pos + k]
                if off == 0:
                    continue  # an incomplete file: the library reports the missing chunk
                if not data_start <= off < file_size:
                    _fail(what, f"chunk {k} of part {lay['index']} lies at byte {off}, outside "
                                f"the {file_size}-byte file")
                packed = packed_of[off]
                if lay["deep"]:
                    deep_samples += _check_deep_chunk(fh, off, packed, lay, multi, what)
                elif _chunk_pixels(lay, k) * lay["bpp"] > packed * lay["ratio"] + 65536:
                    _fail(what, f"part {lay['index']} declares {lay['width']}x"
                                f"{lay['height']} pixels, but its chunk {k} ({packed} bytes) "
                                f"cannot hold the "
                                f"{int(_chunk_pixels(lay, k) * lay['bpp'])} bytes it would "
                                f"decode to")
            pos += lay["chunks"]
        if deep_samples > MAX_DEEP_SAMPLES:
            _fail(what, f"{deep_samples} deep samples declared, more than the "
                        f"{MAX_DEEP_SAMPLES} accepted")
    return len(headers)


def _check_deep_chunk(fh, off, packed, lay, multi, what):
    """Check one deep chunk's declared sizes; return the number of samples it declares."""
    fh.seek(off)
    if lay["tiled"]:
        fmt = "<i4iqqq" if multi else "<4iqqq"
    else:
        fmt = "<iiqqq" if multi else "<iqqq"
    raw = fh.read(struct.calcsize(fmt))
    if len(raw) != struct.calcsize(fmt):
        _fail(what, "the file ends inside a deep chunk header")
    values = struct.unpack(fmt, raw)
    table_size, data_size, unpacked = values[-3:]
    if min(table_size, data_size, unpacked) < 0 or table_size + data_size > packed:
        _fail(what, f"a deep chunk at byte {off} declares {table_size + data_size} bytes in "
                    f"{packed}")
    if lay["per_chunk"] * 4 > table_size * 2000.0 + 65536:
        _fail(what, f"part {lay['index']} declares {lay['width']}x{lay['height']} pixels, but "
                    f"a deep chunk at byte {off} packs their sample counts in {table_size} "
                    f"bytes")
    if unpacked > data_size * lay["ratio"] + 65536:
        _fail(what, f"a deep chunk at byte {off} declares {unpacked} bytes of samples packed "
                    f"in {data_size}")
    per_sample = lay["bpp"] or 1
    return int(unpacked / per_sample)
