"""Frame sequences: patterns, frame ranges, focus keys and a per-frame job runner.

Pure Python (numpy only inside :func:`refocus_sequence`); never imports ``bpy``.

* :class:`FramePattern` -- ``shot.####.exr`` or ``shot.%04d.exr`` <-> frame numbers.
* :func:`parse_frames` -- ``"1001-1048"``, ``"1,5,9"``, ``"1-100x5"`` -> sorted frame list;
  :func:`chunk_frames` splits a list into farm-sized chunks.
* :class:`FocusKeys` / :func:`parse_focus_keys` -- ``"1001:2.5,1048:8.0"`` -> a smooth curve
  (monotone cubic Hermite with flat tangents at the ends and at turning points, like Blender's
  auto-clamped keyframes; two keys give a smoothstep ease-in/ease-out).
* :class:`SequenceRun` -- runs one job per frame, one frame per :meth:`SequenceRun.step`, with
  skip-existing, failure collection (one bad frame never stops the others) and cancellation
  between frames. The command line runs it in a loop, the Blender operator from a modal timer.
* :class:`ParallelRun` -- the same for several frames at once, each in a worker process
  (``start()`` / ``poll()`` / ``cancel()``, usable from a background thread);
  :func:`choose_jobs` picks how many from the cores and the memory available.
* :func:`unique_temp_path` / :func:`atomic_output` -- outputs appear complete or not at all;
  temporary names are unique per process, so farm chunks writing into one folder never collide.
* :func:`refocus_sequence` -- the whole thing for depth of field: load each frame, defocus it
  with its own :class:`~blender_zdepth.core.lens.Lens`, write a float32 RGBA EXR (+ PNG).
"""

import contextlib
import dataclasses
import functools
import os
import pickle
import re
import sys
import threading
import time
import types

from .errors import UsageError, ZDepthError
from .cpus import usable_cores
from .atomic import atomic_target, stale_temp_paths, unique_temp_path  # noqa: F401 (API)

# ---------------------------------------------------------------------------------------------
# Frame patterns


_HASHES = re.compile(r"#+")
_PRINTF = re.compile(r"%(0?)(\d*)d")


class FramePattern:
    """A file path with a frame-number placeholder, or a plain path.

    The placeholder is the last run of ``#`` in the file name (``shot.####.exr``: padded to 4
    digits, as Blender writes it) or a printf field (``shot.%04d.exr``, ``shot.%d.exr``). A path
    without one is a single file (:attr:`is_sequence` False) and :meth:`path_for` returns it as is.
    Frame numbers wider than the padding are written in full; negative frames get a minus sign.
    """

    def __init__(self, text):
        if not text:
            raise UsageError("an empty path was given where a file or a frame pattern is needed")
        self.text = os.fspath(text)
        folder, name = os.path.split(self.text)
        self.folder = folder
        prefix = suffix = None
        padding = 0
        hashes = list(_HASHES.finditer(name))
        printf = list(_PRINTF.finditer(name))
        if hashes and printf:
            raise UsageError(f"{self.text!r} mixes '#' and '%d' frame placeholders: use one")
        if len(printf) > 1:
            raise UsageError(f"{self.text!r} has more than one '%d' frame placeholder")
        if hashes:
            m = hashes[-1]
            prefix, suffix, padding = name[:m.start()], name[m.end():], len(m.group())
        elif printf:
            m = printf[0]
            prefix, suffix = name[:m.start()], name[m.end():]
            padding = int(m.group(2) or 0)
        self.prefix, self.suffix, self.padding = prefix, suffix, padding

    @property
    def is_sequence(self):
        return self.prefix is not None

    def path_for(self, frame):
        """The path of ``frame`` (the plain path itself when this is not a sequence)."""
        if not self.is_sequence:
            return self.text
        return os.path.join(self.folder, f"{self.prefix}{int(frame):0{self.padding}d}{self.suffix}")

    def frame_of(self, path):
        """The frame number ``path`` stands for under this pattern, or None if it does not match."""
        if not self.is_sequence:
            return None
        name = os.path.basename(os.fspath(path))
        if not (name.startswith(self.prefix) and name.endswith(self.suffix)):
            return None
        digits = name[len(self.prefix):len(name) - len(self.suffix)]
        if not re.fullmatch(r"-?\d+", digits):
            return None
        frame = int(digits)
        return frame if f"{frame:0{self.padding}d}" == digits else None

    def existing_frames(self):
        """Sorted frame numbers whose files exist on disk (empty when the folder is missing)."""
        if not self.is_sequence:
            return []
        try:
            names = os.listdir(self.folder or ".")
        except OSError:
            return []
        frames = {self.frame_of(n) for n in names}
        frames.discard(None)
        return sorted(frames)

    def with_suffix(self, ext):
        """The same pattern with the file extension replaced by ``ext`` (e.g. ``".png"``)."""
        root, _ = os.path.splitext(self.text)
        return FramePattern(root + ext)

    def __repr__(self):
        return f"FramePattern({self.text!r})"


def frame_from_name(path):
    """The frame number in a file name like ``shot.1001.exr`` or ``shot_0042.exr`` (the last run
    of digits before the extension), or None."""
    stem = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    m = re.search(r"(\d+)\D*$", stem)
    return int(m.group(1)) if m else None


def derived_path(path, tag="_dof", folder=None, ext=".exr"):
    """The name of a derived file beside ``path`` (or in ``folder``): ``tag`` goes before the
    frame number, so sequences stay sequences: ``shot.0042.exr`` -> ``shot_dof.0042.exr``,
    ``shot_0042.exr`` -> ``shot_dof_0042.exr``, ``still.exr`` -> ``still_dof.exr``."""
    src_folder, name = os.path.split(os.fspath(path))
    stem = os.path.splitext(name)[0]
    m = re.match(r"^(.*?)([._-]?)(-?\d+)$", stem)
    if m and m.group(1):
        new = f"{m.group(1)}{tag}{m.group(2)}{m.group(3)}{ext}"
    elif m:  # the name is only a number
        new = f"{tag.lstrip('_.-') or 'out'}{m.group(2) or '.'}{m.group(3)}{ext}"
    else:
        new = f"{stem}{tag}{ext}"
    return os.path.join(src_folder if folder is None else folder, new)


_NAME_FIELDS = re.compile(r"\{(\w*)\}")


def check_output_name(pattern, sequence=True):
    """:class:`UsageError` unless ``pattern`` is a usable output name pattern (see
    :func:`output_name`); ``sequence``: several frames will be named by it, so it needs the
    frame number."""
    text = str(pattern)
    if not text.strip():
        raise UsageError("the output name pattern is empty: e.g. {name}_dof.####.exr")
    if "/" in text or "\\" in text or (os.sep in text):
        raise UsageError(f"the output name pattern {text!r} must be a file name, not a path: "
                         f"choose the folder separately")
    unknown = [f for f in _NAME_FIELDS.findall(text) if f not in ("name", "frame")]
    if unknown:
        raise UsageError(f"the output name pattern {text!r} has an unknown field "
                         f"{{{unknown[0]}}}: use {{name}}, {{frame}} or #### (the frame, "
                         f"zero-padded)")
    if sequence and "{frame}" not in text and "#" not in text:
        raise UsageError(f"the output name pattern {text!r} has no frame number, so every frame "
                         f"would get the same name: add {{frame}} or ####")
    ext = os.path.splitext(text)[1].lower()
    if ext in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dpx", ".hdr", ".webp", ".bmp"):
        raise UsageError(f"the output name pattern {text!r} must end in .exr (or have no "
                         f"extension: .exr is added)")


def output_name(pattern, src, frame=None, ext=".exr"):
    """The output file name for input ``src`` at ``frame`` from a name ``pattern``:
    ``{name}`` is the input's name without its frame number and extension (``shot`` for
    ``shot.0042.exr``), ``{frame}`` the frame number (4 digits at least), a run of ``#`` the
    frame zero-padded to that many digits; ``.exr`` is added when missing. Without a frame
    number the frame fields are dropped (with the separator before them)."""
    check_output_name(pattern, sequence=False)
    stem = os.path.splitext(os.path.basename(os.fspath(src)))[0]
    m = re.match(r"^(.*?)[._-]?(-?\d+)$", stem)
    name = m.group(1) if m and m.group(1) else stem
    if frame is None:
        frame = frame_from_name(src)
    text = str(pattern)
    if text.lower().endswith(ext):
        text = text[:-len(ext)]
    if frame is None:
        text = re.sub(r"[._-]?(\{frame\}|#+)", "", text)
    else:
        sign = "-" if frame < 0 else ""
        text = text.replace("{frame}", f"{sign}{abs(int(frame)):04d}")
        text = re.sub(r"#+", lambda g: f"{sign}{abs(int(frame)):0{len(g.group())}d}", text)
    text = text.replace("{name}", name).strip()
    if not text.strip("._-"):
        raise UsageError(f"the output name pattern {pattern!r} gives an empty name for {src}")
    return text + ext


def frame_from_header(header):
    """The frame number an EXR header records (ours: ``zdepthFrame``; Blender's: ``Frame``),
    or None."""
    for key in ("zdepthFrame", "Frame"):
        try:
            return int(str((header or {})[key]).strip())
        except (KeyError, ValueError):
            pass
    return None


# ---------------------------------------------------------------------------------------------
# Frame ranges


_RANGE = re.compile(r"^(-?\d+)(?:-(-?\d+))?(?:[x:](\d+))?$")


def parse_frames(text):
    """Parse a frame list: ``"1001-1048"``, ``"7"``, ``"1-10,20,30-40"``, with an optional step
    ``"1-100x5"`` (or ``"1-100:5"``). Returns the frames sorted, without duplicates.

    Raises :class:`UsageError` for anything else (descending ranges, zero step, garbage).
    """
    frames = set()
    items = [t.strip() for t in str(text).replace(" ", "").split(",")]
    if not any(items):
        raise UsageError("--frames is empty: give a range like 1001-1048 or a list like 1,5,9")
    for item in items:
        m = _RANGE.match(item)
        if not m:
            raise UsageError(f"--frames: cannot read {item!r}: use A-B (e.g. 1001-1048), a single "
                             f"frame, a list 1,5,9 or a step 1-100x5")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        step = int(m.group(3)) if m.group(3) is not None else 1
        if b < a:
            raise UsageError(f"--frames: range {item!r} runs backwards: write {b}-{a}")
        if step < 1:
            raise UsageError(f"--frames: the step in {item!r} must be at least 1")
        frames.update(range(a, b + 1, step))
    return sorted(frames)


def format_frames(frames):
    """Compact text for a frame list: ``[1, 2, 3, 7]`` -> ``"1-3,7"``."""
    frames = sorted(set(frames))
    parts, start, prev = [], None, None
    for f in frames + [None]:
        if start is not None and (f is None or f != prev + 1):
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if f is not None and start is None:
            start = f
        prev = f
    return ",".join(parts)


def chunk_frames(frames, size):
    """Split ``frames`` into consecutive chunks of at most ``size`` frames (for farm tasks)."""
    if size < 1:
        raise UsageError("the chunk size must be at least 1")
    frames = list(frames)
    return [frames[i:i + size] for i in range(0, len(frames), size)]


# ---------------------------------------------------------------------------------------------
# Focus keys


class FocusKeys:
    """A smooth curve through keyed ``(frame, value)`` pairs (focus distances in metres).

    Interpolation: piecewise cubic Hermite. The tangent is flat (zero) at the first and last key
    and at every key where the curve turns (a local minimum or maximum); elsewhere it is the
    Fritsch-Carlson weighted harmonic mean of the neighbouring slopes. So the curve passes
    through every key, never overshoots (no focus behind a key's distance), is monotone between
    keys, and eases in and out like Blender's auto-clamped keyframes: with two keys it is exactly
    a smoothstep ``3t^2 - 2t^3``. Frames before the first key or after the last hold the end
    values.
    """

    def __init__(self, keys):
        keys = sorted((float(f), float(v)) for f, v in keys)
        if not keys:
            raise UsageError("no focus keys given")
        for (fa, _), (fb, _) in zip(keys, keys[1:]):
            if fa == fb:
                raise UsageError(f"frame {fa:g} is keyed twice in the focus keys")
        self.frames = [f for f, _ in keys]
        self.values = [v for _, v in keys]
        self.tangents = self._tangents()

    def _tangents(self):
        x, y, n = self.frames, self.values, len(self.frames)
        if n < 2:
            return [0.0] * n
        h = [x[k + 1] - x[k] for k in range(n - 1)]
        d = [(y[k + 1] - y[k]) / h[k] for k in range(n - 1)]
        m = [0.0] * n
        for k in range(1, n - 1):
            if d[k - 1] * d[k] > 0:
                w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
                m[k] = (w1 + w2) / (w1 / d[k - 1] + w2 / d[k])
        return m

    def __call__(self, frame):
        return self.evaluate(frame)

    def evaluate(self, frame):
        """The value at ``frame`` (any real number)."""
        x, y, m = self.frames, self.values, self.tangents
        frame = float(frame)
        if frame <= x[0]:
            return y[0]
        if frame >= x[-1]:
            return y[-1]
        k = max(i for i in range(len(x) - 1) if x[i] <= frame)
        h = x[k + 1] - x[k]
        t = (frame - x[k]) / h
        t2, t3 = t * t, t * t * t
        return ((2 * t3 - 3 * t2 + 1) * y[k] + (t3 - 2 * t2 + t) * h * m[k]
                + (-2 * t3 + 3 * t2) * y[k + 1] + (t3 - t2) * h * m[k + 1])

    def __repr__(self):
        return "FocusKeys(" + ",".join(f"{f:g}:{v:g}" for f, v in zip(self.frames, self.values)) + ")"


def parse_focus_keys(text):
    """Parse ``"1001:2.5,1048:8.0"`` (frame:distance pairs, distances in metres, > 0)."""
    keys = []
    for item in str(text).replace(" ", "").split(","):
        if not item:
            continue
        try:
            f, v = item.split(":")
            frame, value = float(f), float(v)
        except ValueError:
            raise UsageError(f"--focus-keys: cannot read {item!r}: write FRAME:DISTANCE pairs "
                             f"separated by commas, e.g. 1001:2.5,1048:8.0")
        if not (value > 0 and value < float("inf")):
            raise UsageError(f"--focus-keys: the distance in {item!r} must be a positive number "
                             f"of metres")
        keys.append((frame, value))
    if not keys:
        raise UsageError("--focus-keys is empty: write FRAME:DISTANCE pairs, e.g. 1001:2.5,1048:8.0")
    return FocusKeys(keys)


# ---------------------------------------------------------------------------------------------
# Atomic outputs


@contextlib.contextmanager
def atomic_output(path):
    """``with atomic_output(final) as tmp: write(tmp)`` -- on success ``tmp`` replaces ``final``
    in one step (``os.replace``); on any error ``tmp`` is removed and ``final`` is untouched.
    (:func:`blender_zdepth.core.atomic.atomic_target` with overwriting allowed: whether an output
    may be replaced is decided before the run, by :func:`check_existing`.)"""
    with atomic_target(path, overwrite=True) as tmp:
        yield tmp


def same_file(a, b):
    """True when paths ``a`` and ``b`` name the same file (existing or not)."""
    a, b = os.fspath(a), os.fspath(b)
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


# ---------------------------------------------------------------------------------------------
# Per-frame jobs


@dataclasses.dataclass
class FrameJob:
    """One frame to process: its number, input file and output files (main output first).
    ``view``: the view of a stereo / multi-view render this job refocuses (None: the frame has
    one view)."""

    frame: int
    input: str
    outputs: tuple
    view: str = None

    @property
    def output(self):
        """The main output path ('' when the job writes nothing, e.g. a diagnostic view)."""
        return self.outputs[0] if self.outputs else ""


@dataclasses.dataclass
class FrameResult:
    """What happened to one frame: ``status`` is 'written', 'skipped', 'failed' or 'cancelled'."""

    job: FrameJob
    status: str
    message: str = ""
    seconds: float = 0.0
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def frame(self):
        return self.job.frame


class SequenceReport:
    """The results of a :class:`SequenceRun`, in job order."""

    def __init__(self):
        self.results = []
        #: Wall-clock seconds of a parallel run (:class:`ParallelRun`); None for a serial one,
        #: whose time is the sum of its frames'.
        self.elapsed = None
        #: How many frames a parallel run refocused at once (None: one after another).
        self.workers = None

    def _with(self, status):
        return [r for r in self.results if r.status == status]

    @property
    def written(self):
        return self._with("written")

    @property
    def skipped(self):
        return self._with("skipped")

    @property
    def failed(self):
        return self._with("failed")

    @property
    def cancelled(self):
        return self._with("cancelled")

    @property
    def ok(self):
        """True when no frame failed and none was cancelled."""
        return not self.failed and not self.cancelled

    def summary(self):
        """A few lines for the end of a run: counts, then one line per failed frame."""
        n = len(self.results)
        seconds = sum(r.seconds for r in self.results) if self.elapsed is None else self.elapsed
        parts = [f"{len(self.written)} written"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped (output already there)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.cancelled:
            parts.append(f"{len(self.cancelled)} cancelled")
        lines = [f"{n} frame{'s' if n != 1 else ''}: {', '.join(parts)} in {seconds:.1f} s"]
        if self.workers:
            lines[0] += f" ({self.workers} at a time)"
        for r in self.failed:
            what = f"frame {r.frame}" if r.frame is not None else "frame"
            lines.append(f"  FAILED {what}: {r.job.input}: {r.message}")
        if self.cancelled:
            numbers = [r.frame for r in self.cancelled if r.frame is not None]
            lines.append(f"  cancelled before frames {format_frames(numbers)}" if numbers
                         else "  cancelled")
        return "\n".join(lines)


class AbortRun(UsageError):
    """Raised by a frame's ``process`` to stop the whole run (e.g. options that cannot work for
    any frame); :class:`SequenceRun` lets it through instead of recording a failed frame."""


def _error_message(exc, path=None):
    """The message of a frame's failure; the input's path is dropped from its start, since
    every report line names the input already."""
    if isinstance(exc, (ZDepthError, OSError)):
        text = str(exc)
        prefix = f"{path}: " if path else None
        return text[len(prefix):] if prefix and text.startswith(prefix) else text
    return f"{type(exc).__name__}: {exc}"


class SequenceRun:
    """Run ``process(job) -> dict`` for each :class:`FrameJob`, one frame per :meth:`step`.

    * ``skip_existing``: a frame whose outputs all exist is not processed (resume).
    * A frame whose ``process`` raises (any :class:`Exception`) is recorded as failed with the
      error's message and the run goes on with the next frame.
    * :meth:`cancel` stops between frames: frames already written stay, the rest are recorded as
      cancelled. ``process`` must write atomically so that no partial file is ever left.
    * ``progress(result, index, total)`` is called after every frame (index from 1).

    The command line calls :meth:`run`; Blender's modal operator calls :meth:`step` from a timer
    and :meth:`cancel` on Esc -- the same code path.
    """

    def __init__(self, jobs, process, skip_existing=False, progress=None):
        self.jobs = list(jobs)
        self.process = process
        self.skip_existing = skip_existing
        self.progress = progress
        self.report = SequenceReport()
        self.index = 0
        self.cancelled = False

    @property
    def total(self):
        return len(self.jobs)

    @property
    def done(self):
        return self.cancelled or self.index >= len(self.jobs)

    def step(self):
        """Process the next frame; return its :class:`FrameResult`, or None when done."""
        if self.done:
            return None
        job = self.jobs[self.index]
        self.index += 1
        t0 = time.perf_counter()
        if self.skip_existing and all(os.path.exists(p) for p in job.outputs):
            result = FrameResult(job, "skipped", "output already there")
        else:
            try:
                info = self.process(job) or {}
                result = FrameResult(job, "written", info=info)
            except AbortRun:
                self.index -= 1
                raise
            except Exception as exc:  # one bad frame must not stop the others
                result = FrameResult(job, "failed", _error_message(exc, job.input))
        result.seconds = time.perf_counter() - t0
        self.report.results.append(result)
        if self.progress is not None:
            self.progress(result, self.index, len(self.jobs))
        return result

    def cancel(self):
        """Stop before the next frame; the remaining frames are recorded as cancelled."""
        if self.cancelled:
            return
        for job in self.jobs[self.index:]:
            self.report.results.append(FrameResult(job, "cancelled", "cancelled"))
        self.cancelled = True

    def run(self, should_cancel=None):
        """Process every frame (``should_cancel()`` is asked between frames); return the report."""
        while not self.done:
            if should_cancel is not None and should_cancel():
                self.cancel()
                break
            self.step()
        return self.report


def progress_line(result, index, total):
    """The one-line progress text the command line prints for a frame."""
    width = len(str(total))
    what = f"frame {result.frame}" if result.frame is not None else "frame"
    head = f"[{index:>{width}}/{total}] {what}"
    if result.status == "written":
        details = result.info.get("details", "")
        return (f"{head}: {os.path.basename(result.job.input)} -> "
                f"{result.job.output or '(not written)'}"
                f"{'  ' + details if details else ''}  ({result.seconds:.2f} s)")
    if result.status == "skipped":
        return f"{head}: skipped, {result.job.output} already exists"
    if result.status == "failed":
        return f"{head}: FAILED: {result.job.input}: {result.message}"
    return f"{head}: cancelled"


# ---------------------------------------------------------------------------------------------
# Several frames at once: worker processes

#: Memory a worker needs for a frame, per pixel (the loaded frame, the engine's buffers, the
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


def choose_jobs(frames, pixels=None, jobs=None, threads=0, cores=None, memory=_MACHINE):
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
    from .malloc import keep_frame_buffers

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
                from . import exr

                exr.set_io_threads(int(threads))
            except ImportError:
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
                reply = (index, "abort", str(exc), {"failed": _error_message(cause, job.input)})
            except Exception as exc:  # one bad frame must not stop the others
                reply = (index, "failed", _error_message(exc, job.input), {})
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
    names = __name__.split(".")  # [..., 'blender_zdepth', 'core', 'sequence']
    parents = []
    for i in range(1, len(names) - 2):
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
      (:func:`core.exr.set_io_threads`; 0 = the OpenEXR library's default, every usable core);
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

    def __init__(self, jobs, task, workers=2, threads=0, skip_existing=False, progress=None):
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


# ---------------------------------------------------------------------------------------------
# Planning input -> output paths


def plan_jobs(inputs, outputs, frames=None, png=False, name_pattern=None):
    """Pair input and output paths frame by frame; return a list of :class:`FrameJob`.

    ``inputs``: one file, a pattern (``shot.####.exr``, ``shot.%04d.exr``) or a dict
    ``{frame: path}``. ``outputs``: one file, a pattern, or an existing folder (the output keeps
    the input's file name, or ``name_pattern`` (:func:`output_name`) when given; a folder must
    not be the inputs' own folder unless the names differ). ``frames``: the frames to
    do (default: the pattern's files found on disk). With ``png`` every job gets a second output,
    the main output's path with ``.png``.

    Raises :class:`UsageError` when the two sides do not fit together or an output would be an
    input.
    """
    if isinstance(inputs, dict):
        table = {int(f): os.fspath(p) for f, p in inputs.items()}
        if frames is not None:
            missing = sorted(set(frames) - set(table))
            if missing:
                raise UsageError(f"no input given for frames {format_frames(missing)}")
            table = {f: table[f] for f in frames}
        pairs = sorted(table.items())
        in_is_seq = len(pairs) > 1
    else:
        pattern = FramePattern(inputs)
        in_is_seq = pattern.is_sequence
        if pattern.is_sequence:
            if frames is None:
                frames = pattern.existing_frames()
                if not frames:
                    raise UsageError(f"no file matches {pattern.text!r}: check the path, or give "
                                     f"the frames with --frames A-B")
            pairs = [(f, pattern.path_for(f)) for f in frames]
        else:
            # only '####', '%04d' or --frames make frame numbers: the digits of a single
            # file's name ('v1.7.test.exr') are no frame (the header's frame is used instead)
            frame = None
            if frames is not None and len(frames) == 1:
                frame = frames[0]
            elif frames is not None:
                raise UsageError(f"--frames needs a frame pattern such as shot.####.exr, but IN "
                                 f"{pattern.text!r} is a single file")
            pairs = [(frame, pattern.text)]
    if not pairs:
        raise UsageError("no frames to process")

    out_text = os.fspath(outputs)
    is_folder = os.path.isdir(out_text) or out_text.endswith(("/", os.sep))
    out_pattern = None if is_folder else FramePattern(out_text)
    if out_pattern is not None and not out_pattern.is_sequence and (in_is_seq or len(pairs) > 1):
        raise UsageError(f"IN is a sequence but OUT {out_text!r} is a single file: give OUT as a "
                         f"pattern (e.g. out.####.exr) or an existing folder")
    if out_pattern is not None and os.path.splitext(out_text)[1].lower() != ".exr":
        raise UsageError(f"OUT {out_text!r} must be an .exr file, pattern or folder (add --png "
                         f"for a PNG preview beside each EXR)")

    if name_pattern:
        if not is_folder:
            raise UsageError(f"--output-name needs OUT to be a folder (ending in '/'), not "
                             f"{out_text!r}: OUT as a pattern already names the files")
        check_output_name(name_pattern, sequence=len(pairs) > 1)
    jobs = []
    for frame, src in pairs:
        if is_folder and name_pattern:
            dst = os.path.join(out_text, output_name(name_pattern, src, frame))
        elif is_folder:
            dst = os.path.join(out_text, os.path.basename(src))
        else:
            dst = out_pattern.path_for(frame)
        if same_file(src, dst):
            raise UsageError(f"OUT would overwrite the input {src!r}: inputs are never "
                             f"overwritten, choose another output name or folder")
        outs = (dst,)
        if png:
            outs = (dst, os.path.splitext(dst)[0] + ".png")
        jobs.append(FrameJob(frame, src, outs))
    return jobs


# ---------------------------------------------------------------------------------------------
# Depth of field on a sequence

#: Header attributes of an input that describe its layout, not its content; they are not
#: copied to a refocused RGBA output.
_LAYOUT_KEYS = {
    "channels", "compression", "dataWindow", "displayWindow", "lineOrder", "type", "name",
    "chunkCount", "version", "tiles", "BlenderMultiChannel", "view", "multiView",
}


def copyable_header(header):
    """The attributes of an input's header worth keeping on a refocused RGBA output: everything
    but the layout (channels, windows, compression, parts) and the description of a depth
    channel (``zdepthEncoding``, ``zdepthNear`` ...: the output has no depth channel)."""
    from .encodings import DepthEncoding

    depth_keys = set(DepthEncoding().to_header()) | {"zdepthDepthChannel"}
    return {k: v for k, v in (header or {}).items()
            if k not in _LAYOUT_KEYS and k not in depth_keys}


def dof_header(lens, settings, focus_source="", diagnostic=False, source=""):
    """The header attributes a refocused frame gets (all prefixed ``zdepthDof``)."""
    h = {
        "zdepthDof": (f"focal {lens.focal_length_mm:g}mm f/{lens.fstop:g} focus "
                      f"{lens.focus_distance:g} sensor {lens.sensor_width_mm:g}mm "
                      f"max radius {settings.max_radius:g}px"),
        "zdepthDofFocusDistance": float(lens.focus_distance),
        "zdepthDofFstop": float(lens.fstop),
        "zdepthDofFocalLength": float(lens.focal_length_mm),
        "zdepthDofSensorWidth": float(lens.sensor_width_mm),
        "zdepthDofSensorHeight": float(getattr(lens, "sensor_height_mm", 24.0)),
        "zdepthDofSensorFit": str(getattr(lens, "sensor_fit", "AUTO")),
        "zdepthDofMaxRadius": float(settings.max_radius),
        "zdepthDofBlades": int(settings.blades),
        "zdepthDofRotation": float(settings.rotation_deg),
        "zdepthDofView": "focal-plane diagnostic" if diagnostic else "defocus",
    }
    if focus_source:
        h["zdepthDofFocusSource"] = str(focus_source)
    if source:
        h["zdepthDofSource"] = os.path.basename(str(source))
    return h


def lens_resolver(focus_distance=None, focus_pixel=None, focus_keys=None, fstop=None,
                  focal_length_mm=None, sensor_width_mm=None, sensor_height_mm=None,
                  sensor_fit=None, pixel_aspect=None):
    """A ``lens_for_frame(frame_number, loaded_frame) -> (Lens, focus_source)`` for
    :func:`refocus_sequence`: camera values come from the frame's header
    (``loaded_frame.camera``, our own exports) and every argument that is not None wins over
    them. Focus, first match: ``focus_keys`` (:class:`FocusKeys`, evaluated at the frame),
    ``focus_pixel`` ``(x, y)`` (the depth under that pixel, per frame), ``focus_distance``, the
    header's focus distance. Raises :class:`UsageError` (via ``Lens.from_camera``) when a
    needed value is in neither."""
    arguments = dict(locals())  # to remake it in a worker process (see _Remade)

    def lens_for(frame, loaded):
        from .lens import Lens

        camera = getattr(loaded, "camera", None)
        focus, source = focus_distance, "option"
        if focus_keys is not None:
            if frame is None:
                frame = frame_from_header(getattr(loaded, "header", None))
            if frame is None:
                raise UsageError(f"--focus-keys needs the frame number of {loaded.path}: it is "
                                 f"neither in the file name nor in the header")
            focus, source = float(focus_keys(frame)), "focus keys"
        elif focus_pixel is not None:
            focus, source = pixel_focus(loaded, *focus_pixel), f"pixel {focus_pixel[0]},{focus_pixel[1]}"
        elif focus_distance is None:
            source = "camera"
        lens = Lens.from_camera(camera, focal_length_mm=focal_length_mm, fstop=fstop,
                                focus_distance=focus, sensor_width_mm=sensor_width_mm,
                                sensor_height_mm=sensor_height_mm, sensor_fit=sensor_fit,
                                pixel_aspect=pixel_aspect)
        return lens, source
    return _Remade(lens_for, lens_resolver, arguments)


class _Remade:
    """A function made by ``factory(**arguments)`` (a closure), picklable as the factory and its
    arguments, so that worker processes (:class:`ParallelRun`) can use it."""

    def __init__(self, function, factory, arguments):
        self.function, self.factory, self.arguments = function, factory, arguments

    def __call__(self, *args, **kwargs):
        return self.function(*args, **kwargs)

    def __reduce__(self):
        return _remake, (self.factory, self.arguments)


def _remake(factory, arguments):
    return factory(**arguments)


def pixel_focus(loaded, x, y, remedy="give a focus distance"):
    """The focus distance under pixel ``x, y`` of a loaded frame, given in display-window
    coordinates with the origin at the BOTTOM-LEFT (x right, y up), as Blender's Image Editor
    and Nuke count them; an error when the frame's data window holds no pixel there.
    ``remedy``: what the background error tells the user to do instead."""
    from .dof import focus_from_pixel

    if hasattr(loaded, "array_index"):
        row, col = loaded.array_index(x, y)
    else:  # a bare array-like frame: its own size is the display window
        h = loaded.depth.shape[0]
        row, col = h - 1 - int(round(float(y))), int(round(float(x)))
    h, w = loaded.depth.shape
    if not (0 <= row < h and 0 <= col < w):
        raise ZDepthError(f"focus pixel {x},{y} lies outside the pixels the file holds (its data "
                          f"window is smaller than the frame): pick a pixel on the image")
    try:
        return float(focus_from_pixel(loaded.depth, col, row))
    except ZDepthError:  # the engine counts rows from the top: say it in the user's terms
        raise ZDepthError(f"focus pixel {x},{y} (from the bottom left) looks at the background "
                          f"(no surface): pick a pixel on an object or {remedy}") from None


def load_dof_frame(path, expect_size=None, layer=None, deep=None, view=None, background="auto",
                   layer_required=False):
    """Load a frame for depth of field with :func:`core.frame.load_frame` (``engine=True``).
    ``deep``: None = deep files and ``<name>_deep.exr`` beside flat ones, with the default budget
    of hidden layers; an int = that budget; False = ignore a deep file beside a flat one. A
    ``--view`` / ``--layer`` the file lacks stops the run (:class:`AbortRun`)."""
    from .deep import DEFAULT_MAX_LAYERS
    from .frame import load_frame

    budget = DEFAULT_MAX_LAYERS if deep is None or deep is True else int(deep)
    try:
        return load_frame(path, layer=layer, view=view, background=background,
                          layer_required=layer_required, deep_layers=budget,
                          deep_beside=deep is not False, engine=True, expect_size=expect_size)
    except UsageError as exc:  # a --view / --layer the file lacks: stop the run (exit 2)
        raise AbortRun(str(exc)) from None


def refocus_array(frame, lens, settings, diagnostic=False):
    """Defocus (or, with ``diagnostic``, the focal-plane view of) a loaded frame: float32 HxWx4
    premultiplied RGBA."""
    from . import dof

    if getattr(lens, "frame_size", None) is None and hasattr(frame, "display_size"):
        # the lens sees the display window: crop, border and overscan change no blur size
        lens = dataclasses.replace(lens, frame_size=frame.display_size)
    if diagnostic:
        return dof.focal_plane_view(frame.rgba, frame.depth, lens, settings)
    return dof.defocus(frame.rgba, frame.depth, lens, settings,
                       hidden=getattr(frame, "hidden", None) or None)


def multilayer_channels(path, rgba, layer=None):
    """Every channel of the input EXR at ``path`` with the refocused ``rgba`` (HxWx4) in place
    of its beauty (``<layer>.Combined.R/G/B/A`` of a Blender render, ``R, G, B, A`` of ours; an
    input without colour -- an export whose beauty was written beside it -- gets ``R, G, B, A``
    added). Returns ``(channels, half)``: name -> HxW float32 plane, and the names stored as
    half in the input (kept half). :class:`ZDepthError` when the input's passes are not all
    the frame's size."""
    import numpy as np

    from . import exr

    image = exr.read_exr(path)
    h, w = rgba.shape[:2]
    odd = sorted(n for n, a in image.channels.items() if a.shape != (h, w))
    if odd:
        raise ZDepthError(f"cannot keep the other passes in a multilayer output: {odd[0]} is not "
                          f"{w}x{h} like the beauty (views or parts of other sizes)")
    beauty = exr.find_beauty_channels(list(image.channels), layer=layer)
    if beauty is None:
        beauty = ["R", "G", "B", "A"]
    elif beauty[3] is None:
        beauty[3] = beauty[0][:-1] + "A"
    channels = dict(image.channels)
    for i, name in enumerate(beauty):
        channels[name] = np.ascontiguousarray(rgba[..., i], dtype=np.float32)
    half = {n for n in image.half if n not in beauty}
    return channels, half


def write_refocused(job, rgba, header, data_window=None, display_window=None,
                    fallback_header=None, passes=None):
    """Write ``rgba`` (HxWx4) to ``job.output`` as a single-part float32 RGBA EXR (ZIP,
    lossless) with ``header`` (and the input's data / display windows, so overscan and border
    renders line up), and to ``job.outputs[1]`` (if any) as an 8-bit sRGB PNG preview.
    Each file is written under a unique temporary name and renamed into place: it appears
    complete or not at all. The PNG is written first, so an existing EXR means a finished
    frame. If the EXR cannot be written with ``header`` (an attribute the library refuses) and
    ``fallback_header`` is given, it is written with that one instead. ``passes``: ``(channels,
    half)`` of :func:`multilayer_channels` -- the output is then a multilayer EXR holding every
    pass of the input, with the refocused beauty."""
    import numpy as np

    from . import exr

    rgba = np.ascontiguousarray(rgba, dtype=np.float32)
    channels = {"RGBA": rgba}  # written as R, G, B, A without splitting into planes
    half = False
    if passes is not None:
        channels, half = passes
    for path in job.outputs[1:]:
        from . import display, png

        with atomic_output(path) as tmp:
            png.write_png(tmp, display.to_display(rgba), bits=8, overwrite=True)
    for attempt in (header, fallback_header):
        try:
            with atomic_output(job.output) as tmp:
                exr.write_exr(tmp, channels, header=attempt, half=half, codec="zip",
                              overwrite=True, data_window=data_window,
                              display_window=display_window)
            return attempt
        except ZDepthError:
            if fallback_header is None or attempt is fallback_header:
                raise


def refocus_frame(job, lens_for_frame, settings, diagnostic=False, state=None,
                  extra_header=None, keep_result=False, layer=None, deep=None, view=None,
                  background="auto", layer_required=False, multilayer=False):
    """Refocus one :class:`FrameJob`: load, defocus (or diagnostic), write atomically (all of
    ``job.outputs``; none when it is empty).

    ``lens_for_frame(frame_number, loaded_frame) -> Lens`` or ``-> (Lens, focus_source_text)``.
    ``state`` (a dict shared across the frames of one run) remembers the first frame's size, so a
    frame of another size fails with a clear message. Returns the info dict for the progress
    line (``details``, ``lens``; ``rgba`` too with ``keep_result``). ``multilayer``: the output
    keeps every pass of the input (:func:`multilayer_channels`) and the input's whole header,
    its depth description included, since the depth channel is kept too.
    """
    state = {} if state is None else state
    frame = load_dof_frame(job.input, state.get("size"), layer, deep, view, background,
                           layer_required)
    h, w = frame.depth.shape
    state.setdefault("size", (w, h))
    got = lens_for_frame(job.frame, frame)
    lens, focus_source = got if isinstance(got, tuple) else (got, "")
    out = refocus_array(frame, lens, settings, diagnostic)
    if job.outputs:
        applied = dof_header(lens, settings, focus_source, diagnostic, job.input)
        applied.update(extra_header or {})
        passes = None
        if multilayer:
            passes = multilayer_channels(job.input, out, layer)
            kept = {k: v for k, v in (frame.header or {}).items() if k not in _LAYOUT_KEYS}
            header = {**kept, **applied}
        else:
            header = {**copyable_header(frame.header), **applied}
        fallback = {**applied, "zdepthDofNote": "the input's metadata could not be copied"}
        write_refocused(job, out, header, getattr(frame, "data_window", None),
                        getattr(frame, "display_window", None), fallback, passes)
    details = f"focus {lens.focus_distance:.3g} m"
    if focus_source:
        details += f" ({focus_source})"
    details += f", f/{lens.fstop:g}, {lens.focal_length_mm:g} mm"
    if getattr(frame, "deep_note", None):
        details += f", {frame.deep_note}"
    bg = getattr(frame, "background_info", None)
    if bg is not None and (bg.sky or bg.transparent):  # a rule the user may want to know of
        details += f"; {bg.line()}"
    info = {"details": details, "lens": lens, "focus_source": focus_source}
    if keep_result:
        info["rgba"] = out
    return info


def refocus_sequence(inputs, outputs, lens_per_frame, settings=None, frames=None, png=False,
                     diagnostic=False, skip_existing=False, overwrite=False, progress=None,
                     should_cancel=None, extra_header=None, layer=None, deep=None, workers=1,
                     notify=None, view=None, background="auto", name_pattern=None,
                     multilayer=False):
    """Refocus a whole sequence (or one frame); return the :class:`SequenceReport`.

    * ``inputs`` / ``outputs`` / ``frames`` / ``png``: as :func:`plan_jobs` (patterns like
      ``render.####.exr``, a dict ``{frame: path}``, an output folder).
    * ``lens_per_frame``: a :class:`~blender_zdepth.core.lens.Lens` for every frame, a dict
      ``{frame: Lens}``, or a callable ``(frame_number, loaded_frame) -> Lens`` (it may also
      return ``(Lens, "where the focus came from")``, shown in the progress line and header).
    * ``settings``: :class:`~blender_zdepth.core.dof.DofSettings` (default settings when None).
    * ``overwrite=False`` refuses to start (:class:`ZDepthError`) when an output already exists;
      ``skip_existing`` leaves frames whose outputs exist untouched instead.
    * ``progress(result, index, total)`` after each frame (e.g. print :func:`progress_line`);
      ``should_cancel()`` is asked between frames.
    * ``layer``: the view layer of multilayer renders with several (default: ``ViewLayer``).
    * ``deep``: deep input (see :func:`load_dof_frame`): None = deep files and ``<name>_deep.exr``
      beside flat ones are used with the default hidden-layer budget, an int = that budget,
      False = deep files beside flat ones are ignored.
    * ``workers``: frames refocused at once, each in a worker process (:class:`ParallelRun`):
      1 (default) one after another in this process; None chooses from the cores and the
      available memory (:func:`choose_jobs`; ``settings.threads`` 0 then shares the cores
      between them; in this process, ``settings.threads`` also sets the EXR reading and writing
      threads, :func:`core.exr.set_io_threads`). Output, reports, skip-existing and failures
      are the same either way;
      progress comes in the order frames finish. ``notify(text)`` gets a note when a given
      number was lowered to fit in memory.
    * ``view``: the view of stereo / multi-view files (default: the file's default view);
      ``background``: the rule for "no surface" (:func:`core.encodings.apply_background`).
    * ``name_pattern``: output file names when ``outputs`` is a folder (:func:`output_name`).
    * ``multilayer``: each output keeps every pass of its input, the beauty refocused
      (:func:`multilayer_channels`), instead of RGBA only.

    Each output is a single-part float32 RGBA EXR (ZIP, lossless) with the input's header plus
    ``zdepthDof*`` attributes (focus, f-stop, lens, max radius, blades, rotation), and with
    ``png`` an sRGB preview beside it. A bad frame is recorded as failed and the others go on.
    """
    from . import dof

    settings = (settings if settings is not None else dof.DofSettings()).validate()
    jobs = plan_jobs(inputs, outputs, frames, png, name_pattern=name_pattern)
    check_existing(jobs, overwrite, skip_existing)
    for folder in sorted({os.path.dirname(p) for j in jobs for p in j.outputs}):
        if folder and not os.path.isdir(folder):
            try:
                os.makedirs(folder, exist_ok=True)  # safe when farm tasks race to make it
            except OSError as exc:
                raise ZDepthError(f"cannot create the output folder {folder}: {exc.strerror}")
    lens_for = _lens_getter(lens_per_frame)
    state = {}
    n, threads = _plan_workers(jobs, workers, settings, skip_existing, layer, state, notify,
                               deep, view, background)
    if n > 1:
        settings = with_threads(settings, threads)
    # a partial, not a closure: worker processes get their own copy (state included)
    process = functools.partial(refocus_frame, lens_for_frame=lens_for, settings=settings,
                                diagnostic=diagnostic, state=state, extra_header=extra_header,
                                layer=layer, deep=deep, view=view, background=background,
                                layer_required=layer is not None, multilayer=multilayer)
    if n > 1:
        return ParallelRun(jobs, process, n, threads, skip_existing, progress).run(should_cancel)
    from . import exr

    exr.set_io_threads(getattr(settings, "threads", 0))  # reading and writing: as the engine
    run = SequenceRun(jobs, process, skip_existing, progress)
    return run.run(should_cancel)


def _plan_workers(jobs, workers, settings, skip_existing, layer, state, notify, deep=None,
                  view=None, background="auto"):
    """``(frames at once, engine threads each)`` for :func:`refocus_sequence`; with more than
    one, ``state['size']`` is set from the first frame to do that loads (a serial run takes the
    sequence's size from it too), before the workers start."""
    if workers == 1:
        return 1, 0
    todo = [j for j in jobs if not (skip_existing and all(os.path.exists(p) for p in j.outputs))]
    if len(todo) < 2:
        return 1, 0
    size = None
    for job in todo:
        try:
            h, w = load_dof_frame(job.input, None, layer, deep, view, background).depth.shape
        except Exception:  # that frame fails in its worker, with its message
            continue
        size = state["size"] = (w, h)
        break
    n, threads, note = choose_jobs(len(todo), size[0] * size[1] if size else None, workers,
                                   getattr(settings, "threads", 0))
    if note and notify is not None:
        notify(note)
    return n, threads


def with_threads(settings, threads):
    """``settings`` (a :class:`~blender_zdepth.core.dof.DofSettings`) with the engine's
    ``threads`` set to ``threads`` (0 = all cores)."""
    return dataclasses.replace(settings, threads=threads)


def check_existing(jobs, overwrite=False, skip_existing=False):
    """Refuse (:class:`ZDepthError`, exit 1) when outputs exist and neither overwriting nor
    skipping was asked for."""
    if overwrite or skip_existing:
        return
    there = [p for j in jobs for p in j.outputs if os.path.exists(p)]
    if there:
        what = (f"outputs {there[0]!r} and {len(there) - 1} more already exist" if len(there) > 1
                else f"output {there[0]!r} already exists")
        raise ZDepthError(f"{what}: pass --overwrite to replace, "
                         f"or --skip-existing to keep what is there and do only the missing frames")


def _lens_getter(lens_per_frame):
    # partials of module-level functions: picklable, so that worker processes can use them
    if callable(lens_per_frame) and not hasattr(lens_per_frame, "focus_distance"):
        return lens_per_frame
    if isinstance(lens_per_frame, dict):
        return functools.partial(lens_from_table, dict(lens_per_frame))
    return functools.partial(_same_lens, lens_per_frame)


def lens_from_table(table, frame, _loaded=None):
    """The lens of ``frame`` in ``table`` (``{frame: Lens}``); a :class:`ZDepthError` for a
    frame it does not hold. ``functools.partial(lens_from_table, table)`` is a picklable
    ``lens_for_frame`` for worker processes."""
    try:
        return table[frame]
    except KeyError:
        raise ZDepthError(f"no lens given for frame {frame}")


def _same_lens(lens, _frame, _loaded):
    return lens
