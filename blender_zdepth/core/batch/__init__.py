"""Running one task per frame of a sequence, without knowing what the task does.

* :mod:`.names` -- frame patterns (``shot.####.exr``), frame lists and chunks, output names;
* :mod:`.jobs` -- :class:`FrameJob` (paired by :func:`plan_jobs`), :class:`SequenceRun` (one
  frame after another) and its :class:`SequenceReport`, atomic outputs;
* :mod:`.workers` -- :class:`ParallelRun` (several frames at once in worker processes) and
  :func:`choose_jobs` (how many, from the cores and the memory).

Pure Python; never imports ``bpy``.
"""

from .jobs import (AbortRun, FrameJob, FrameResult, SequenceReport, SequenceRun, atomic_output,
                   check_existing, plan_jobs, progress_line)
from .names import (FramePattern, check_output_name, chunk_frames, derived_path, format_frames,
                    frame_from_header, frame_from_name, output_name, parse_frames, same_file)
from .workers import ParallelRun, available_memory, choose_jobs

__all__ = [
    "AbortRun", "FrameJob", "FramePattern", "FrameResult", "ParallelRun", "SequenceReport",
    "SequenceRun", "atomic_output", "available_memory", "check_existing", "check_output_name",
    "choose_jobs", "chunk_frames", "derived_path", "format_frames", "frame_from_header",
    "frame_from_name", "output_name", "parse_frames", "plan_jobs", "progress_line", "same_file",
]
