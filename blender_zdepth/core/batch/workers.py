"""Several frames at once: :class:`ParallelRun` runs a picklable task on each
:class:`~blender_zdepth.core.batch.jobs.FrameJob` in worker processes (``start()`` / ``poll()`` /
``cancel()``, usable from a background thread), with the results of a serial
:class:`~blender_zdepth.core.batch.jobs.SequenceRun`; :func:`choose_jobs` picks how many from
the cores and the memory available."""

import contextlib
import os
import pickle
import sys
import threading
import time
import types

from ..atomic import stale_temp_paths
from ..cpus import usable_cores
from ..exr import set_io_threads
from ..malloc import keep_frame_buffers
from .jobs import AbortRun, FrameResult, SequenceReport, error_message

#: output): a 3840x2160 frame needs about 1 GB. Used to choose how many frames run at once.
FRAME_BYTES_PER_PIXEL = 130
#: Memory of a worker process itself (Python, numpy, OpenEXR), on top of its frame.
WORKER_BYTES = 150 * 2 ** 20
#: Share of the available memory the workers may plan to use (the rest is headroom).
MEMORY_SHARE = 0.8
#: Frames at once when the available memory cannot be found out (no /proc/meminfo, no sysconf).
UNKNOWN_MEMORY_JOBS = 4
#: Below this many pixels in all (frames x pixels a frame, about two HD frames), the automatic
#: choice runs the frames one after another: starting worker processes (half a second or more
#: each, importing numpy and OpenEXR) would cost about what it saves.
AUTO_MIN_PIXELS = 4_000_000


def available_memory():
    """Bytes that can still be used without swapping, or None when unknown: ``MemAvailable``
    from ``/proc/meminfo`` (Linux), else the free physical pages (``os.sysconf``), lowered to
    what a container's memory limit (cgroup v2 ``memory.max``) leaves."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            avail = None
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                left = max(0, int(limit) - int(f.read().strip()))
            avail = left if avail is None else min(avail, left)
    except (OSError, ValueError):
        pass
    return avail


_MACHINE = object()  # "ask this machine" (None means unknown)


def choose_jobs(frames, *, pixels=None, jobs=None, threads=0, cores=None, memory=_MACHINE):
    """How many of ``frames`` frames to refocus at once, and with how many threads each.

    * ``pixels``: pixels of a frame (default: 1920x1080); a frame needs about
      :data:`FRAME_BYTES_PER_PIXEL` bytes a pixel plus :data:`WORKER_BYTES` for its process.
    * ``jobs``: None chooses: as many as there are cores and frames, as long as they fit in
      :data:`MEMORY_SHARE` of the available memory (so the machine never swaps), and one when
      the whole sequence is small (under :data:`AUTO_MIN_PIXELS`); a number is used as given,
      but never more than there are frames nor more than fit in memory.
    * ``threads``: 0 shares the cores between the jobs (``cores // jobs`` each; with one job,
      0 = the engine's "all cores"); a number is used for each job as given.
    * ``cores`` / ``memory`` (bytes; None: unknown): the machine's (default: this one's,
      :func:`usable_cores`, :func:`available_memory`).

    Returns ``(jobs, threads_per_job, note)``; ``note`` says why a given ``jobs`` was lowered
    for memory ('' when it was not).
    """
    cores = usable_cores() if cores is None else max(1, int(cores))
    memory = available_memory() if memory is _MACHINE else memory
    pixels = 1920 * 1080 if not pixels else int(pixels)
    per_job = WORKER_BYTES + FRAME_BYTES_PER_PIXEL * pixels
    if memory is None:
        fit = UNKNOWN_MEMORY_JOBS
    else:
        fit = max(1, int(memory * MEMORY_SHARE // per_job))
    frames = max(1, int(frames))
    note = ""
    if jobs is None:
        n = min(cores, frames, fit) if frames * pixels >= AUTO_MIN_PIXELS else 1
    else:
        n = min(int(jobs), frames)
        if n > fit:
            note = (f"--jobs {jobs} lowered to {fit}: "
                    + (f"{memory / 2 ** 30:.1f} GB of memory available, about "
                       f"{per_job / 2 ** 30:.1f} GB a frame" if memory is not None else
                       "the available memory is unknown"))
            n = fit
    n = max(1, n)
    if threads:
        per = int(threads)
    else:
        per = 0 if n == 1 else max(1, cores // n)
    return n, per, note


class _Stop(BaseException):
    """Raised in a worker by SIGTERM (:meth:`ParallelRun.cancel`): unwinds the frame being
    written, so that its temporary file is removed, and ends the worker."""


def _on_sigterm(signum, frame):
    raise _Stop()


def _worker_main(conn, task_bytes, threads):
    """A worker process: receive ``(index, FrameJob)`` on ``conn``, run the task on it, send
    ``(index, status, message, info, seconds)`` back; stop on None or when the parent is gone."""
    import signal

    # Ctrl+C reaches the whole process group: the parent decides what happens (cancel()).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_frame_buffers()  # a process of its own, refocusing frames (see core/malloc.py)
    try:
        _serve(conn, task_bytes, threads)
    except _Stop:  # the parent's terminate() while the loop below was ending: nothing to say
        pass


def _serve(conn, task_bytes, threads):
    """The loop of :func:`_worker_main`, with SIGTERM raising :class:`_Stop` while it runs."""
    import signal

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if threads:  # EXR reading and writing with the job's threads, as its engine
            try:
                set_io_threads(int(threads))
            except ImportError:  # no OpenEXR bindings: the task reads no EXR
                pass
        task = pickle.loads(task_bytes)
        while True:
            message = conn.recv()
            if message is None:
                break
            index, job = message
            t0 = time.perf_counter()
            try:
                reply = (index, "written", "", task(job) or {})
            except AbortRun as exc:
                # with the failure it stands for: a serial run records that instead once an
                # earlier frame was written (see ParallelRun._aborted)
                cause = exc.__cause__ or exc.__context__ or exc
                reply = (index, "abort", str(exc), {"failed": error_message(cause, job.input)})
            except Exception as exc:  # one bad frame must not stop the others
                reply = (index, "failed", error_message(exc, job.input), {})
            seconds = time.perf_counter() - t0
            try:
                conn.send(reply + (seconds,))
            except (pickle.PicklingError, TypeError, AttributeError):
                # a value in the info that cannot travel: keep the progress line's details
                conn.send(reply[:3] + ({"details": str(reply[3].get("details", ""))}, seconds))
    except (_Stop, EOFError, OSError, KeyboardInterrupt):
        pass
    finally:
        # From here a terminate() just ends the process (a _Stop raised by a SIGTERM that came
        # in just before is caught by _worker_main): never a traceback on the parent's stderr.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


#: What a worker process runs first (``exec`` is its target, so nothing of ours has to be
#: importable by name before this ran): it limits BLAS threads (before numpy is imported);
#: when the package lives inside a package the worker's
#: Python cannot import (Blender's extensions: ``bl_ext.<repository>.blender_zdepth``), the
#: parents are recreated from their folders; then the worker loop starts.
_BOOT = """
import importlib, os, sys, types
if threads:  # numpy's BLAS (matrix products) must not start a thread per core in every worker
    for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, str(threads))
for _name, _path in parents:
    if _name not in sys.modules:
        try:
            importlib.import_module(_name)
        except ImportError:
            _module = types.ModuleType(_name)
            _module.__path__ = list(_path)
            sys.modules[_name] = _module
importlib.import_module(module)._worker_main(conn, task, threads)
"""


def _package_parents():
    """``[(name, __path__)]`` of the packages above ours (empty for a plain ``blender_zdepth``)."""
    names = __name__.split(".")  # [..., 'blender_zdepth', 'core', 'batch', 'workers']
    parents = []
    for i in range(1, len(names) - 3):
        name = ".".join(names[:i])
        parents.append((name, list(getattr(sys.modules.get(name), "__path__", []) or [])))
    return parents


class _Worker:
    def __init__(self, context, task_bytes, threads):
        self.conn, child = context.Pipe()
        env = {"parents": _package_parents(), "module": __name__, "conn": child,
               "task": task_bytes, "threads": threads}
        self.process = context.Process(target=exec, args=(_BOOT, env), daemon=True,
                                       name="blender_zdepth frame worker")
        self.index = None  # the job it is working on
        # A spawned process first re-runs its parent's main script (as '__mp_main__') unless it
        # was started with 'python -m'; that script may be a user's Blender script (bpy, a
        # render...) or a module without the 'if __name__ == "__main__"' guard. The worker
        # needs nothing from it: hide it while the process starts.
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            self.process.start()
        finally:
            sys.modules["__main__"] = main
        child.close()

    @property
    def pid(self):
        return self.process.pid


def _worker_death(worker):
    code = worker.process.exitcode
    if code is not None and code < 0:
        why = f"killed by signal {-code}"
        if -code == 9:
            why += " (out of memory?)"
    else:
        why = f"exit code {code}"
    return f"the worker process refocusing this frame stopped ({why})"


class ParallelRun:
    """Run a picklable ``task(job) -> dict`` on each :class:`FrameJob` in ``workers`` worker
    processes at once; the same results as :class:`SequenceRun` (skip-existing, one failed
    frame never stops the others, cancellation, no partial file), several frames at a time.

    * ``task``: a picklable callable (a module-level function, a :func:`functools.partial` of
      one, an object of a module-level class) -- each worker gets its own copy; e.g.
      ``functools.partial(refocus_frame, lens_for_frame=..., settings=...)``. It may raise
      :class:`AbortRun` to stop the whole run: :meth:`poll` then cancels and raises it.
    * ``threads``: each worker's EXR reading and writing threads
      (:func:`~.exr.set_io_threads`; 0 = the OpenEXR library's default, every usable core);
      the task carries its own engine threads, e.g. in its ``DofSettings``.
    * ``progress(result, index, total)`` after each frame, in the order frames finish (index:
      how many are done); :attr:`report` keeps the results in job order.

    Workers are started with the ``spawn`` method (fresh Python processes: safe inside Blender,
    where ``bpy`` is loaded in this process, and on every OS). Use it from any one thread::

        run = ParallelRun(jobs, task, workers=4)
        run.start()
        while not run.done:
            for result in run.poll(timeout=0.1):
                ...            # a FrameResult: 'written', 'skipped' or 'failed'
        report = run.report

    :meth:`cancel` (from any thread: Esc, Ctrl+C) stops the workers at once: frames being
    refocused are not written (their temporary files are removed, also those of a worker that
    had to be killed), finished frames stay, the rest are recorded as cancelled. A worker that
    dies (killed, out of memory) fails its frame by name and is replaced. :meth:`run` is the
    whole loop, as :meth:`SequenceRun.run`.
    """

    def __init__(self, jobs, task, *, workers=2, threads=0, skip_existing=False, progress=None):
        self.jobs = list(jobs)
        self.task = task
        self.workers = max(1, int(workers))
        self.threads = max(0, int(threads or 0))
        self.skip_existing = skip_existing
        self.progress = progress
        self.report = SequenceReport()
        self.report.workers = self.workers
        self.cancelled = False
        self._results = {}
        self._next = 0
        self._pool = []
        self._pids = set()
        self._lock = threading.RLock()
        self._started = None
        self._task_bytes = None
        self._context = None
        self._abort = None  # (index, message, failure message) of the first AbortRun

    @property
    def total(self):
        return len(self.jobs)

    @property
    def done(self):
        return self.cancelled or len(self._results) >= len(self.jobs)

    @property
    def running(self):
        """The :class:`FrameJob` s being refocused now."""
        return [self.jobs[w.index] for w in self._pool if w.index is not None]

    def start(self):
        """Start the worker processes (at most one per frame to do); returns self."""
        import multiprocessing

        with self._lock:
            if self._started is not None:
                return self
            try:
                self._task_bytes = pickle.dumps(self.task)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                raise TypeError(f"ParallelRun: the task must be picklable (a module-level "
                                f"function, a functools.partial of one, an object of a "
                                f"module-level class; not a closure or a lambda): {exc}")
            self._started = time.perf_counter()
            self._context = multiprocessing.get_context("spawn")
            todo = sum(1 for job in self.jobs if not self._skip(job))
            for _ in range(min(self.workers, todo)):
                self._spawn()
            return self

    def _skip(self, job):
        return self.skip_existing and all(os.path.exists(p) for p in job.outputs)

    def _spawn(self):
        import signal

        # Started with Ctrl+C ignored (a child inherits it), so a Ctrl+C during a worker's
        # start-up cannot print its traceback; the worker keeps ignoring it.
        # (Only from the main thread, and only over a handler Python knows: Blender may have
        # its own.)
        main = threading.current_thread() is threading.main_thread()
        before = signal.getsignal(signal.SIGINT) if main else None
        if before is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            worker = _Worker(self._context, self._task_bytes, self.threads)
        finally:
            if before is not None:
                signal.signal(signal.SIGINT, before)
        self._pool.append(worker)
        self._pids.add(worker.pid)
        return worker

    def _record(self, index, result, new):
        self._results[index] = result
        self.report.results = [self._results[i] for i in sorted(self._results)]
        self.report.elapsed = time.perf_counter() - self._started
        new.append(result)
        if self.progress is not None:
            self.progress(result, len(self._results), len(self.jobs))

    def _dispatch(self, new):
        """Give every idle worker its next frame (recording skipped frames on the way); stop the
        workers left without work."""
        if self._abort is not None:
            return  # nothing new until it is settled
        for worker in list(self._pool):
            while worker.index is None and self._next < len(self.jobs):
                index = self._next
                self._next += 1
                job = self.jobs[index]
                if self._skip(job):
                    self._record(index, FrameResult(job, "skipped", "output already there"), new)
                    continue
                try:
                    worker.conn.send((index, job))
                except OSError:  # it died while idle: a fresh one takes the frame
                    self._bury(worker)
                    worker = self._spawn()
                    worker.conn.send((index, job))
                worker.index, worker.t0 = index, time.perf_counter()
            if worker.index is None:
                self._retire(worker)

    def _retire(self, worker, kill=False):
        if worker in self._pool:
            self._pool.remove(worker)
        if kill:
            worker.process.terminate()
        else:
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(None)
        worker.process.join(10 if kill else 30)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(5)
        worker.conn.close()

    def _bury(self, worker):
        """Forget a worker that died: join it, remove the temporary files it left."""
        if worker in self._pool:
            self._pool.remove(worker)
        worker.process.join(5)
        worker.conn.close()
        self._sweep([worker.pid])

    def _sweep(self, pids=None):
        """Remove the temporary files stopped workers left behind (``pids``; default: every
        worker of this run, once none is running) -- theirs only."""
        outputs = [p for job in self.jobs for p in job.outputs]
        for path in stale_temp_paths(outputs, self._pids if pids is None else pids):
            with contextlib.suppress(OSError):
                os.remove(path)

    def poll(self, timeout=0.0):
        """Hand out frames, wait up to ``timeout`` seconds for one to finish, and return the
        :class:`FrameResult` s that finished since the last call (completion order). Starts
        the run if needed. Raises :class:`AbortRun` (after cancelling) when a frame's task
        did."""
        from multiprocessing.connection import wait

        with self._lock:
            self.start()
            new = []
            if self.done:
                self._close()
                return new
            self._dispatch(new)
            busy = [w for w in self._pool if w.index is not None]
            if not busy:
                self._close()
                return new
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy],
                             timeout if not new else 0))
            for worker in busy:
                if worker.conn not in ready and worker.process.sentinel not in ready:
                    continue
                job = self.jobs[worker.index]
                try:
                    index, status, message, info, seconds = worker.conn.recv()
                except (EOFError, OSError):  # the worker died with this frame
                    index, status, info = worker.index, "failed", {}
                    seconds = time.perf_counter() - worker.t0
                    self._bury(worker)
                    message = _worker_death(worker)
                    if self._next < len(self.jobs):
                        self._spawn()
                worker.index = None
                if status == "abort":
                    if self._abort is None or index < self._abort[0]:
                        self._abort = (index, message, info.get("failed", message), seconds)
                    continue
                result = FrameResult(job, status, message, seconds, info if status == "written"
                                     else {})
                self._record(index, result, new)
            self._aborted(new)
            if self.done:
                self._close()
            else:
                self._dispatch(new)
            return new

    def _aborted(self, new):
        """Settle an :class:`AbortRun` from frame k as a serial run would: once the frames
        before k that are running have finished, the run stops (cancel, raise) unless one of the
        frames before k was written -- then frame k only fails, like any bad frame."""
        if self._abort is None:
            return
        index, message, failure, seconds = self._abort
        if any(w.index is not None and w.index < index for w in self._pool):
            return  # wait for them
        self._abort = None
        if any(r.status == "written" for i, r in self._results.items() if i < index):
            self._record(index, FrameResult(self.jobs[index], "failed", failure, seconds), new)
            return
        self.cancel()
        raise AbortRun(message)

    def _close(self):
        for worker in list(self._pool):
            self._retire(worker)
        self._sweep()

    def cancel(self):
        """Stop now: workers are stopped (frames in progress are not written and leave no
        file), finished frames stay, the others are recorded as cancelled. Any thread."""
        with self._lock:
            if self.cancelled:
                return
            self.cancelled = True
            for worker in list(self._pool):
                worker.process.terminate()
            for worker in list(self._pool):
                self._retire(worker, kill=True)
            self._sweep()
            for index, job in enumerate(self.jobs):
                if index not in self._results:
                    self._results[index] = FrameResult(job, "cancelled", "cancelled")
            self.report.results = [self._results[i] for i in sorted(self._results)]
            if self._started is not None:
                self.report.elapsed = time.perf_counter() - self._started

    def run(self, should_cancel=None, interval=0.1):
        """Process every frame (``should_cancel()`` is asked every ``interval`` seconds); return
        the report. On any error or Ctrl+C the workers are stopped (no partial file) before
        it propagates."""
        try:
            self.start()
            while not self.done:
                if should_cancel is not None and should_cancel():
                    self.cancel()
                    break
                self.poll(interval)
        except BaseException:
            self.cancel()
            raise
        return self.report

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if not self.done:
            self.cancel()
        else:
            with self._lock:
                self._close()

