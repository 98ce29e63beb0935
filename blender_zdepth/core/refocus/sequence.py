"""Refocus a whole sequence (or one frame): plan the jobs, choose how many frames run at once,
and run :func:`~blender_zdepth.core.refocus.frame.refocus_frame` on each, in this process or in
worker processes."""

import dataclasses
import functools
import os

from .. import dof
from ..batch.jobs import SequenceRun, check_existing, plan_jobs
from ..batch.workers import ParallelRun, choose_jobs
from ..errors import ZDepthError
from ..exr import set_io_threads
from .focus import lens_getter
from .frame import load_input, refocus_frame

def refocus_sequence(inputs, outputs, lens_per_frame, *, settings=None, frames=None, png=False,
                     diagnostic=False, skip_existing=False, overwrite=False, progress=None,
                     should_cancel=None, extra_header=None, layer=None, deep=None, workers=1,
                     notify=None, view=None, background="auto", name_pattern=None,
                     multilayer=False, colour=None):
    """Refocus a whole sequence (or one frame); return the :class:`~.batch.SequenceReport`.

    * ``inputs`` / ``outputs`` / ``frames`` / ``png``: as :func:`~.batch.plan_jobs` (patterns like
      ``render.####.exr``, a dict ``{frame: path}``, an output folder).
    * ``lens_per_frame``: a :class:`~blender_zdepth.core.lens.Lens` for every frame, a dict
      ``{frame: Lens}``, or a callable ``(frame_number, loaded_frame) -> Lens`` (it may also
      return ``(Lens, "where the focus came from")``, shown in the progress line and header).
    * ``settings``: :class:`~blender_zdepth.core.dof.DofSettings` (default settings when None).
    * ``overwrite=False`` refuses to start (:class:`ZDepthError`) when an output already exists;
      ``skip_existing`` leaves frames whose outputs exist untouched instead.
    * ``progress(result, index, total)`` after each frame (e.g. print
      :func:`~.batch.progress_line`);
      ``should_cancel()`` is asked between frames.
    * ``layer``: the view layer of multilayer renders with several (default: ``ViewLayer``).
    * ``deep``: deep input (see :func:`~.frame.load_input`): None = deep files and
      ``<name>_deep.exr`` beside flat ones are used with the default hidden-layer budget, an int = that budget,
      False = deep files beside flat ones are ignored.
    * ``workers``: frames refocused at once, each in a worker process
      (:class:`~.batch.ParallelRun`):
      1 (default) one after another in this process; None chooses from the cores and the
      available memory (:func:`~.batch.choose_jobs`; ``settings.threads`` 0 then shares the cores
      between them; in this process, ``settings.threads`` also sets the EXR reading and writing
      threads, :func:`blender_zdepth.core.exr.set_io_threads`). Output, reports, skip-existing
      and failures are the same either way;
      progress comes in the order frames finish. ``notify(text)`` gets a note when a given
      number was lowered to fit in memory.
    * ``view``: the view of stereo / multi-view files (default: the file's default view);
      ``background``: the rule for "no surface" (:func:`core.encodings.apply_background`).
    * ``name_pattern``: output file names when ``outputs`` is a folder
      (:func:`~.batch.output_name`).
    * ``multilayer``: each output keeps every pass of its input, the beauty refocused
      (:func:`~.frame.multilayer_channels`), instead of RGBA only.
    * ``colour``: :class:`~blender_zdepth.core.colour.ColourSettings` of the PNGs, over what each
      frame's header recorded (:func:`~.frame.png_colour`).

    Each output is a single-part float32 RGBA EXR (ZIP, lossless) with the input's header plus
    ``zdepthDof*`` attributes (focus, f-stop, lens, max radius, blades, rotation), and with
    ``png`` a colour-managed PNG beside it. A bad frame is recorded as failed and the others go on.
    """
    settings = (settings if settings is not None else dof.DofSettings()).validate()
    jobs = plan_jobs(inputs, outputs, frames=frames, png=png, name_pattern=name_pattern)
    check_existing(jobs, overwrite=overwrite, skip_existing=skip_existing)
    for folder in sorted({os.path.dirname(p) for j in jobs for p in j.outputs}):
        if folder and not os.path.isdir(folder):
            try:
                os.makedirs(folder, exist_ok=True)  # safe when farm tasks race to make it
            except OSError as exc:
                raise ZDepthError(f"cannot create the output folder {folder}: {exc.strerror}")
    lens_for = lens_getter(lens_per_frame)
    state = {}
    n, threads = _plan_workers(jobs, workers, settings, skip_existing, layer, state, notify,
                               deep, view, background)
    if n > 1:
        settings = with_threads(settings, threads)
    # a partial, not a closure: worker processes get their own copy (state included)
    process = functools.partial(refocus_frame, lens_for_frame=lens_for, settings=settings,
                                diagnostic=diagnostic, state=state, extra_header=extra_header,
                                layer=layer, deep=deep, view=view, background=background,
                                layer_required=layer is not None, multilayer=multilayer,
                                colour=colour)
    if n > 1:
        return ParallelRun(jobs, process, workers=n, threads=threads, skip_existing=skip_existing,
                           progress=progress).run(should_cancel)
    set_io_threads(getattr(settings, "threads", 0))  # reading and writing: as the engine
    run = SequenceRun(jobs, process, skip_existing=skip_existing, progress=progress)
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
            h, w = load_input(job.input, layer=layer, deep=deep, view=view,
                              background=background).depth.shape
        except Exception:  # that frame fails in its worker, with its message
            continue
        size = state["size"] = (w, h)
        break
    n, threads, note = choose_jobs(len(todo), pixels=size[0] * size[1] if size else None,
                                   jobs=workers, threads=getattr(settings, "threads", 0))
    if note and notify is not None:
        notify(note)
    return n, threads


def with_threads(settings, threads):
    """``settings`` (a :class:`~blender_zdepth.core.dof.DofSettings`) with the engine's
    ``threads`` set to ``threads`` (0 = all cores)."""
    return dataclasses.replace(settings, threads=threads)
