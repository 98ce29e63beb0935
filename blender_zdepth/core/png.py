"""Minimal PNG writer (stdlib ``zlib`` + numpy; no Pillow): 8- or 16-bit gray, RGB or RGBA.

Values are floats in 0..1 (clipped; NaN becomes 0) written as they are -- no colour transform
(use :mod:`.display` first for a viewable picture of scene-linear colour).
"""

import os
import struct
import zlib

import numpy as np

from .errors import UsageError, ZDepthError

_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)


def _chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def encode_png(array, bits=8):
    """PNG file bytes for ``array``: HxW (gray) or HxWxC (C = 1..4) floats in 0..1."""
    if bits not in (8, 16):
        raise UsageError(f"PNG bit depth must be 8 or 16, not {bits!r}")
    a = np.asarray(array, dtype=np.float64)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in _COLOR_TYPES or a.shape[0] < 1 or a.shape[1] < 1:
        raise ZDepthError(f"a PNG needs a HxW or HxWx1..4 array, not shape {a.shape}")
    h, w, c = a.shape
    top = (1 << bits) - 1
    q = np.rint(np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0) * top)
    q = q.astype(">u2" if bits == 16 else np.uint8)
    rows = q.reshape(h, w * c).view(np.uint8).reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1)  # filter 0 on every row
    ihdr = struct.pack(">IIBBBBB", w, h, bits, _COLOR_TYPES[c], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + _chunk(b"IEND", b""))


def write_png(path, array, bits=8, overwrite=False):
    """Write ``array`` (see :func:`encode_png`) to ``path`` atomically; an existing file is
    replaced only with ``overwrite``. Returns the absolute path."""
    from .atomic import atomic_target

    data = encode_png(array, bits)
    with atomic_target(path, overwrite) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return os.path.abspath(os.fspath(path))


def _unfilter(raw, h, stride, bpp):
    """The rows of a non-interlaced PNG's image data with their filters (0-4) undone."""
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for y in range(h):
        kind, row = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            cur = row
        elif kind == 2:  # Up
            cur = (row + prev) & 0xFF
        elif kind in (1, 3, 4):  # Sub, Average, Paeth: each byte needs the one bpp before it
            cur = row.copy()
            for x in range(stride):
                left = cur[x - bpp] if x >= bpp else 0
                if kind == 1:
                    pred = left
                elif kind == 3:
                    pred = (left + prev[x]) >> 1
                else:
                    up, corner = prev[x], prev[x - bpp] if x >= bpp else 0
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                cur[x] = (cur[x] + pred) & 0xFF
        else:
            raise ZDepthError(f"PNG row filter {kind} is not a valid filter")
        out[y] = cur
        prev = cur
    return out


def read_png(path):
    """Read an 8/16-bit, non-interlaced gray / RGB / RGBA PNG (ours, or Blender's: any row
    filter); returns (uint array HxWxC, bits). Meant for tests and checks, not a general
    decoder (no palette, no interlace; plain Python loops for filtered rows)."""
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ZDepthError(f"{path}: not a PNG file")
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    w, h, bits, ctype = ihdr[:4]
    if ctype not in _COLOR_TYPES.values() or bits not in (8, 16) or ihdr[6]:
        raise ZDepthError(f"{path}: only 8/16-bit gray, RGB and RGBA PNGs without interlace "
                          f"are read here")
    c = {v: k for k, v in _COLOR_TYPES.items()}[ctype]
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, -1)
    if np.any(raw[:, 0] != 0):
        rows = _unfilter(raw, h, raw.shape[1] - 1, c * bits // 8)
    else:
        rows = raw[:, 1:]
    px = rows.copy().view(">u2" if bits == 16 else np.uint8).reshape(h, w, c)
    return px.astype(np.uint16 if bits == 16 else np.uint8), bits
