"""Jobs and their reports: one :class:`FrameJob` per frame (input and outputs, paired by
:func:`plan_jobs`), run one frame per :meth:`SequenceRun.step` with skip-existing, failure
collection (one bad frame never stops the others) and cancellation between frames; a task
writes its outputs atomically (:func:`atomic_output` for a task of one's own; the refocus writers
are atomic themselves). The command line runs it in a loop, Blender's
operator from a modal timer; :class:`~blender_zdepth.core.batch.workers.ParallelRun` runs the
same jobs in worker processes."""

import contextlib
import dataclasses
import os
import time

from ..atomic import atomic_target
from ..errors import UsageError, ZDepthError
from .names import FramePattern, check_output_name, format_frames, output_name, same_file

@contextlib.contextmanager
def atomic_output(path):
    """``with atomic_output(final) as tmp: write(tmp)`` -- on success ``tmp`` replaces ``final``
    in one step (``os.replace``); on any error ``tmp`` is removed and ``final`` is untouched.
    (:func:`blender_zdepth.core.atomic.atomic_target` with overwriting allowed: whether an output
    may be replaced is decided before the run, by :func:`check_existing`.)"""
    with atomic_target(path, overwrite=True) as tmp:
        yield tmp


@dataclasses.dataclass
class FrameJob:
    """One frame to process: its number, input file and output files (main output first).
    ``view``: the view of a stereo / multi-view render this job refocuses (None: the frame has
    one view). ``source``: what the output's header names as its source
    (``zdepthDofSource``) when the input is a temporary file (e.g. the Render Result saved for
    the job); None: the input's file name."""

    frame: int
    input: str
    outputs: tuple
    view: str = None
    source: str = None

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

    def summary(self, details=True):
        """A few lines for the end of a run: counts, then one line per failed frame (with
        ``details``; else one line naming the failed frames, for a caller that has shown each
        failure already)."""
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
        for r in self.failed if details else ():
            what = f"frame {r.frame}" if r.frame is not None else "frame"
            lines.append(f"  FAILED {what}: {r.job.input}: {r.message}")
        if self.failed and not details:
            numbers = [r.frame for r in self.failed if r.frame is not None]
            lines.append(f"  failed: frame(s) {format_frames(numbers)} (the errors are above)"
                         if numbers else "  failed: see the error above")
        if self.cancelled:
            numbers = [r.frame for r in self.cancelled if r.frame is not None]
            lines.append(f"  cancelled before frames {format_frames(numbers)}" if numbers
                         else "  cancelled")
        return "\n".join(lines)


class AbortRun(UsageError):
    """Raised by a frame's ``process`` to stop the whole run (e.g. options that cannot work for
    any frame); :class:`SequenceRun` lets it through instead of recording a failed frame."""


def error_message(exc, path=None):
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

    def __init__(self, jobs, process, *, skip_existing=False, progress=None):
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
                result = FrameResult(job, "failed", error_message(exc, job.input))
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


def plan_jobs(inputs, outputs, *, frames=None, png=False, name_pattern=None):
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


def check_existing(jobs, *, overwrite=False, skip_existing=False):
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
