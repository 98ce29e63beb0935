"""How a process that refocuses frames asks the C allocator to keep its memory (glibc).

The engine allocates and frees many frame-sized arrays (a 1920x1080 float64 plane is 16.6 MB).
glibc's malloc serves each block above its mmap threshold (128 KB at start, raised on the way
by its own heuristic) with a fresh ``mmap`` and returns it to the system when it is freed, and
it returns the free top of its heap beyond the trim threshold: every array then costs its page
faults again (the kernel zeroes each 4 KB page on first touch). Measured on two cores, the
whole ``dof`` command on a 1080p frame: system CPU time 0.46-0.57 s -> 0.20-0.26 s, page faults
125,000 -> 62,000, peak memory +30 MB (4K: +20-60 MB, within the noise of the figure).

:func:`keep_frame_buffers` is called by ``python -m blender_zdepth`` and by the frame worker
processes of ``dof --jobs``; never inside Blender or another host program (its allocator and
memory policy are its own). Standard library only.
"""

import os
import sys

#: glibc ``mallopt`` parameters (``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Blocks up to this size come from the heap and are reused (glibc's largest allowed value on
#: 64-bit systems: half its 64 MB heap size).
MMAP_THRESHOLD = 32 * 2 ** 20
#: Free memory at the top of the heap kept for the next arrays (and the next frame).
TRIM_THRESHOLD = 512 * 2 ** 20

_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
        "MALLOC_MMAP_MAX_")


def keep_frame_buffers():
    """Set glibc's mmap threshold to :data:`MMAP_THRESHOLD` and its trim threshold to
    :data:`TRIM_THRESHOLD` in this process, so freed frame-sized arrays are reused instead of
    being unmapped and faulted in again. Nothing is done (returns False) off Linux, with another
    C library, or when the user set glibc's malloc options in the environment
    (``MALLOC_*_``, ``GLIBC_TUNABLES``): theirs are kept. Returns True when both were set."""
    if not sys.platform.startswith("linux"):
        return False
    if any(name in os.environ for name in _ENV) or \
            "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: their own rules
            return False
        mallopt = libc.mallopt
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        mallopt.restype = ctypes.c_int
        return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
            bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError, ImportError, TypeError):
        return False
