"""How a process that refocuses frames asks the C allocator to keep its memory (glibc).

The engine allocates and frees many frame-sized arrays (a 1920x1080 float64 plane is 16.6 MB),
from its worker threads too. glibc's malloc serves each block above its mmap threshold (128 KB
at start, raised on the way by its own heuristic) with a fresh ``mmap`` and returns it to the
system when it is freed; it returns the free top of its heap beyond the trim threshold; and
each thread that allocates gets an arena of its own, whose heaps are unmapped again when they
empty: every array then costs its page faults again (the kernel zeroes each 4 KB page on first
touch), and memory freed in one arena cannot serve another. Measured on two cores (the machine
shared with other work; medians), the whole ``dof`` command:

======================  ==========================  ===========================
frame                   page faults, system CPU     peak memory
======================  ==========================  ===========================
1080p smooth            125,000 -> 50,000;          406 -> 386 MB
                        0.36-0.77 s -> 0.18 s
1080p dense edges       438,000 -> 101,000;         610 -> 501 MB
                        1.22 s -> 0.58 s
3840x2160, cap 64 px    391,000 -> 289,000;         1090 -> 1029 MB
                        1.74-1.86 s -> 0.82 s
======================  ==========================  ===========================

:func:`keep_frame_buffers` is called by ``python -m blender_zdepth dof`` and by the frame
worker processes of ``dof --jobs`` (also those Blender's Apply starts); never inside Blender or
another host program, nor for the commands that load ``bpy`` (its threads keep glibc's
defaults). :func:`release_free_memory` is the engine's, wherever it runs (big frames on several
threads give their freed buffers back after each layer). Standard library only.
"""

import os
import sys

#: glibc ``mallopt`` parameters (``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

#: Blocks up to this size come from the heap and are reused (glibc's largest allowed value on
#: 64-bit systems: half its 64 MB heap size).
MMAP_THRESHOLD = 32 * 2 ** 20
#: Free memory at the top of the heap kept for the next arrays (and the next frame).
TRIM_THRESHOLD = 512 * 2 ** 20
#: One arena for every thread: the engine's threads reuse what the others freed (numpy takes
#: the allocator's lock a few thousand times a frame: no contention worth measuring).
ARENA_MAX = 1

_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
        "MALLOC_MMAP_MAX_", "MALLOC_ARENA_MAX", "MALLOC_ARENA_TEST")


def _glibc():
    """This process's C library through ctypes when it is glibc (Linux), else None; looked up
    once."""
    if not _GLIBC:
        libc = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL(None)
            except (OSError, ImportError):
                libc = None
            if libc is not None and not hasattr(libc, "gnu_get_libc_version"):
                libc = None  # musl and others: their own rules
        _GLIBC.append(libc)
    return _GLIBC[0]


_GLIBC = []


def keep_frame_buffers():
    """Set glibc's mmap threshold to :data:`MMAP_THRESHOLD`, its trim threshold to
    :data:`TRIM_THRESHOLD` and its arenas to :data:`ARENA_MAX` in this process (call it before
    any thread is started), so freed frame-sized arrays are reused instead of being unmapped and
    faulted in again. Nothing is done (returns False) off Linux, with another C library, or when
    the user set glibc's malloc options in the environment (``MALLOC_*``, ``GLIBC_TUNABLES``):
    theirs are kept. Returns True when all three were set."""
    if any(name in os.environ for name in _ENV) or \
            "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc = _glibc()
    if libc is None:
        return False
    try:
        import ctypes

        mallopt = libc.mallopt
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        mallopt.restype = ctypes.c_int
        return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
            bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and \
            bool(mallopt(M_ARENA_MAX, ARENA_MAX))
    except (AttributeError, TypeError):
        return False


def release_free_memory():
    """Give the C allocator's free memory back to the system (glibc's ``malloc_trim``, which
    covers every thread's arena; elsewhere nothing)."""
    libc = _glibc()
    if libc is not None:
        import ctypes

        libc.malloc_trim(ctypes.c_size_t(0))
