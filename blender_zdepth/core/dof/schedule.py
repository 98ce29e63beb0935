"""How the stages use the threads of one frame: per-plane work on the pool (:func:`_each`), the
layers blurred ahead of the compositing in order within an in-flight memory budget
(:func:`_ordered_map`, :func:`_layer_bytes`), the size from which a frame counts as big, and the
seconds per stage (:func:`_stage`, :data:`TIMING`).  Nothing here changes a result: the output
does not depend on the thread count."""

import os
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, wait
from contextlib import contextmanager

#: Seconds spent per stage of the last :func:`~.pipeline.defocus` calls, filled only when the
#: environment variable ``BLENDER_ZDEPTH_DOF_TIMING`` is set (for profiling).
#: With threads, a stage's figure is the sum of the seconds every thread spent in it.
TIMING = {}
_TIMING_LOCK = threading.Lock()


@contextmanager
def _stage(name):
    if not os.environ.get("BLENDER_ZDEPTH_DOF_TIMING"):
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        dt = time.perf_counter() - t0
        with _TIMING_LOCK:
            TIMING[name] = TIMING.get(name, 0.0) + dt


def _each(pool, fn, n):
    """``fn(i)`` for ``i`` in ``range(n)``: on ``pool``'s threads if given, else one after
    another (for work split into planes or channels, each writing its own part)."""
    if pool is not None:
        list(pool.map(fn, range(n)))
    else:
        for i in range(n):
            fn(i)


#: Memory (bytes, estimated) that layers being blurred in parallel may hold at once; one
#: layer always runs, however big.  It bounds the peak of a 4K frame with many threads (whose
#: full-frame layers, ~290-370 MB estimated, run one at a time) and lets two full-frame layers
#: of a 1080p frame (~140 MB each) run at once.
_INFLIGHT_BYTES = 320 * 2**20


def _ordered_map(pool, fn, items, cost=None, budget=None, window=None, ahead=None):
    """``fn(item)`` for every item, yielded in order; with a thread pool, later items are
    computed ahead while earlier results are consumed -- at most ``window`` of them
    unfinished at once (running or queued), at most ``ahead`` (default ``4 * window``)
    submitted and not yet consumed, and no more than ``budget`` (default
    :data:`_INFLIGHT_BYTES`, read when the map starts) of their summed ``cost(item)`` (the
    first pending one always runs).  While the next result in order is not ready, every other
    item that finishes lets another start (a long item does not leave the other threads
    idle).  An item's cost is released when the next result is
    asked for (its consumer is done)."""
    if pool is None:
        for item in items:
            yield fn(item)
        return
    if budget is None:
        budget = _INFLIGHT_BYTES
    window = window or 1
    ahead = max(window, ahead or 4 * window)
    pending = deque()  # (future, cost)
    held = 0
    items = iter(items)
    nxt = next(items, _DONE)
    try:
        while True:
            running = sum(1 for f, _ in pending if not f.done())
            while nxt is not _DONE and running < window and len(pending) < ahead:
                c = cost(nxt) if cost else 0
                if pending and held + c > budget:
                    break
                pending.append((pool.submit(fn, nxt), c))
                held += c
                running += 1
                nxt = next(items, _DONE)
            if not pending:
                return
            fut, c = pending[0]
            if not fut.done() and nxt is not _DONE and running == window:
                # Wait for any item in flight: a finished one frees a thread for the next.
                unfinished = [f for f, _ in pending if not f.done()]
                if len(unfinished) == window:
                    wait(unfinished, return_when=FIRST_COMPLETED)
                continue
            pending.popleft()
            result = fut.result()
            yield result
            del result
            held -= c
    finally:
        for fut, _ in pending:
            fut.cancel()


_DONE = object()


def _layer_bytes(layers, k, s, nch):
    """Rough peak bytes of blurring layer k at scale s (its planes, the convolution's output
    and FFT buffers, the full-resolution content of reduced layers)."""
    if layers.boxes is None:
        return 0
    y0, y1, x0, x1 = (int(v) for v in layers.boxes[k])
    if y0 >= y1 or x0 >= x1:
        return 0
    area = (y1 - y0) * (x1 - x0)
    r = abs(float(layers.radii[k]))
    low = (y1 - y0) // s + 2 * r / s + 2, (x1 - x0) // s + 2 * r / s + 2
    n = 4 * (nch + 1) * (2.5 * low[0] * low[1] + (area if s > 1 else 0))
    return int(n) + 48 * 2**20


#: Frames from this many padded pixels up return freed memory to the system after each
#: layer when they run on several threads (:func:`..malloc.release_free_memory`), and keep
#: their stages one after the other (see :func:`_big_frame`).
_TRIM_PIXELS = 4_000_000


def _big_frame(shape):
    """Whether a padded frame of ``shape`` (Hp, Wp) is big (4K): on several threads its stages
    run one after the other and its layers give freed memory back (:data:`_TRIM_PIXELS`)."""
    return shape[0] * shape[1] >= _TRIM_PIXELS
