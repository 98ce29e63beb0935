"""The OpenEXR bindings' plumbing, shared by every reader and writer of the package: the
library's thread pool, what it prints on stdout / stderr (captured, made part of our errors),
data windows, codecs, and the one guarded, atomic write of a file.

``OpenEXR`` is imported inside the functions that need it (importing the package costs nothing).
"""

import contextlib
import io
import os
import re
import tempfile
import threading

import numpy as np

from ..atomic import atomic_target
from .. import cpus
from ..errors import UsageError, ZDepthError
from .scan import header_attributes, retyped_header

#: Lossless codecs we write, by their name on the command line.
LOSSLESS_CODECS = ("zip", "piz", "zips", "rle", "none")

#: Lossy codecs that must never carry depth, and why.
LOSSY_CODECS = ("dwaa", "dwab", "b44", "b44a", "pxr24")


# Header keys that describe a file's layout; they are never copied from one file to another.
STRUCTURAL = {"channels", "chunkCount", "name", "type", "compression", "version", "tiles",
               "dataWindow", "displayWindow", "lineOrder"}


#: What :func:`set_io_threads` / :func:`io_threads` set OpenEXR's pool to in this process
#: (None: not yet).
_io_pool = {"threads": None}


def _pool_size(threads):
    """OpenEXR's global pool size for ``threads`` threads in all: the calling thread reads or
    writes the file while the pool's threads (de)compress its chunks, so 1 thread = no pool."""
    threads = cpus.usable_cores() if not threads or int(threads) <= 0 else int(threads)
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


def codec_enum(codec):
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
def captured_output():
    """Capture what the C++ library prints on file descriptors 1 and 2 (it reports damaged files
    there, not in the exception); yields a list that receives the text after the block.
    Thread-safe: overlapping captures share one redirection, undone by the last to finish."""
    out = []
    _, start = _start_capture()
    try:
        yield out
    finally:
        out.append(_stop_capture(start))


_UNSUPPORTED = re.compile(r"unsupported attribute type: (\S+)")

#: Attribute types the C++ library reads but the Python bindings (3.5) refuse; once a file is
#: refused for one of them, all are read as opaque bytes (the values are of no use here).
REFUSED_TYPES = ("deepImageState", "idmanifest")


class UnreadableAttribute(ZDepthError):
    """A valid OpenEXR file with an attribute the OpenEXR Python bindings cannot read."""


class _PatchedStream(io.RawIOBase):
    """The file at ``path`` read as a stream, its first ``len(head)`` bytes replaced by
    ``head`` (same length: nothing else moves)."""

    def __init__(self, path, head):
        super().__init__()
        self._fh = open(path, "rb")
        self._head = head
        self._pos = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def readinto(self, buffer):
        view = memoryview(buffer).cast("B")
        n, pos = 0, self._pos
        if pos < len(self._head):
            piece = self._head[pos:pos + len(view)]
            view[:len(piece)] = piece
            n = len(piece)
        if n < len(view):
            self._fh.seek(pos + n)
            n += self._fh.readinto(view[n:]) or 0
        self._pos += n
        return n

    def seek(self, offset, whence=io.SEEK_SET):
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += os.fstat(self._fh.fileno()).st_size
        self._pos = max(0, int(offset))
        return self._pos

    def tell(self):
        return self._pos

    def close(self):
        self._fh.close()
        super().close()


def open_file(path, **kwargs):
    """``OpenEXR.File(path, **kwargs)``, also for a valid file with attributes the bindings
    cannot parse.

    The C++ library reads ``deepImageState`` and ``idmanifest`` attributes (as ``exrheader``
    shows: the OpenEXR project's own ``11.deep.exr`` has both), but the Python bindings (3.5)
    refuse the whole file ("unsupported attribute type: deepImageState"), though an attribute of
    a type the library does not know at all is read as opaque bytes. So such a file is read
    through a stream whose header gives those attributes a type no one defines
    (:func:`.scan.retyped_header`, same length, so the chunk offsets stay right): the pixels
    and every other attribute read as they are, and the retyped attributes are left out of the
    headers. Should the bindings refuse it still, an :class:`UnreadableAttribute` says that the
    file is valid and which attribute they cannot read."""
    return _open(path, kwargs)[0]


def unreadable_attributes(path):
    """The attributes :func:`open_file` leaves out of the file's headers because the OpenEXR
    Python bindings cannot read them: ``[(part, name, type)]``, empty for most files."""
    return _open(path, {"header_only": True})[1]


def _open(path, kwargs):
    import OpenEXR

    path = os.fspath(path)  # a Path object would be taken for a stream
    try:
        return OpenEXR.File(path, **kwargs), []
    except RuntimeError as exc:
        match = _UNSUPPORTED.search(str(exc))
        if match is None:
            raise
        types = {match.group(1), *REFUSED_TYPES}
    for _ in range(16):  # one more type per try; a file has a handful at most
        head, changed = retyped_header(path, types)
        if not changed:
            break
        stream = _PatchedStream(path, head)
        try:
            exr = OpenEXR.File(stream, **kwargs)
        except RuntimeError as exc:
            match = _UNSUPPORTED.search(str(exc))
            if match is None or match.group(1) in types:
                raise
            types.add(match.group(1))
            continue
        finally:
            stream.close()
        for part, name, _typ in changed:
            if part < len(exr.parts):
                exr.parts[part].header.pop(name, None)
        return exr, changed
    typ = sorted(types)[0]
    names = [n for _p, n, t, _s in header_attributes(path) if t == typ] or ["?"]
    raise UnreadableAttribute(
        f"{path}: a valid OpenEXR file, but the OpenEXR Python bindings cannot read its "
        f"attribute {names[0]!r} (type {typ})")


def window(value):
    if value is None:
        return None
    lo, hi = value
    return (int(lo[0]), int(lo[1])), (int(hi[0]), int(hi[1]))


def clean_header(header):
    return {k: v for k, v in header.items() if k != "channels"}



def damaged(path, text, fallback):
    detail = text.splitlines()[-1].strip() if text else fallback
    return ZDepthError(f"{path}: damaged or truncated OpenEXR file ({detail})")



def window_value(window):
    (x0, y0), (x1, y1) = window
    return (np.array([x0, y0], dtype=np.int32), np.array([x1, y1], dtype=np.int32))



def write_file(path, header, channels, overwrite=False, what="the EXR file"):
    """Write ``OpenEXR.File(header, channels)`` to ``path`` atomically (a temporary file in the
    same folder, then a rename; an existing ``path`` is replaced only with ``overwrite``), with
    the library's pool and what it prints captured: a failure is one :class:`ZDepthError` that
    says ``could not write <what>``. Returns the absolute path written."""
    import OpenEXR

    with atomic_target(path, overwrite) as tmp:
        with captured_output() as messages:
            try:
                io_threads()
                OpenEXR.File(header, channels).write(tmp)
                failure = None
            except Exception as exc:  # the bindings raise RuntimeError / TypeError
                failure = exc
        if failure is not None:
            text = (messages[0] if messages else "").strip()
            raise ZDepthError(f"{path}: could not write {what} "
                              f"({text.splitlines()[-1] if text else failure})")
    return os.path.abspath(os.fspath(path))
