"""The Apply batch: ``bpy.ops.zdepth.apply_dof``'s work, one :class:`DofBatch` per run.

The work itself is :mod:`blender_zdepth.core.batch` (one :class:`SequenceRun` step per frame);
this module only gathers the inputs (the Render Result, or rendered EXR files on disk:
:mod:`.inputs`), the lens of every frame (the scene camera evaluated at that frame, or the
panel's overrides: :mod:`..scene.optics`), shows the result in an image called "Z-Depth DOF"
(:mod:`.display`), and runs the frames: one by one (:meth:`DofBatch.step`), or in the background
(:meth:`DofBatch.start`) while the operator's modal timer polls it.
"""

import dataclasses
import os
import shutil
import tempfile
import threading

import bpy
import numpy as np

from ...core import batch as core_batch
from ...core import exr, refocus
from ...core.errors import ZDepthError
from ...core.refocus.planned import FramePlan, PlannedRefocus
from ..render.handlers import last_render_frame
from ..scene.colour import scene_colour
from ..scene.optics import (DOUBLE_DOF_WARNING, camera_had_dof, engine_settings, lens_plan,
                            view_lens_plan)
from ..scene.options import dof_settings, setting
from ..scene.paths import abspath
from ..scene.views import rendered_views, view_suffixes, with_view_suffix
from .display import crop_origin, show_image
from .inputs import (ensure_output_folder, file_inputs, panel_frames, refocus_folder,
                     render_result_input, view_file_inputs)


class DofBatch:
    """Everything one run of the operator needs: jobs, lens and aperture per frame, the run,
    the result.

    ``source``: 'RENDER_RESULT' or 'FILES'. ``frames``: for FILES (default: the sub-panel's
    range, :func:`.inputs.panel_frames`).
    ``layer``: the view layer to read from multilayer renders (the operator passes the active
    one; files without it fall back to ``ViewLayer`` or the first).
    ``diagnostic``: the focal-plane view of the current frame instead of the blur; shown, not
    written.

    The scene is read on the main thread when the batch is made: every frame's camera (focus,
    f-stop, lens, aperture: ``scene.frame_set`` so animated values are honoured) becomes a
    :class:`~blender_zdepth.core.refocus.planned.FramePlan` that touches no bpy, so the frames can then
    be refocused in the background (:meth:`start`: a worker thread, or several frames at once in
    worker processes; :meth:`request_cancel`, :attr:`running`, :attr:`progress`: Blender's
    interface stays responsive) or one by one here (:meth:`step`, :meth:`cancel`).
    :meth:`finish` (main thread) restores the scene's frame, shows the result in the
    "Z-Depth DOF" image and cleans temporary files.
    """

    def __init__(self, scene, source="RENDER_RESULT", *, frames=None, diagnostic=False,
                 skip_existing=False, write_png=None, layer=None):
        self.scene = scene
        self.source = source
        self.diagnostic = diagnostic
        self.layer = layer
        self.frame_before = scene.frame_current
        self.tempdir = None
        self.aliases = {}  # temporary input path -> what the user knows it as
        self.last_rgba = None
        self.last_frame = None
        self.last_origin = None  # where the last frame's pixels lie in its frame (a crop)
        self.warnings = []  # (frame, text): frames that already had the camera's DOF
        self.error = None  # an unexpected exception of the worker thread
        self._thread = None
        self._stop = threading.Event()
        zd = dof_settings(scene)
        png = bool(setting(zd, "dof_write_png", False)) if write_png is None else write_png
        # read here: no bpy in workers
        self.multilayer = bool(setting(zd, "dof_multilayer", False))
        # the PNGs are shown as the scene shows the render (Color Management panel)
        self.colour = scene_colour(scene)
        self.read_view = False  # True: the jobs' views are read from one multi-view file
        self.first_view = None  # a stereo / multi-view batch: the view shown in the image
        try:
            jobs = self._jobs(source, frames, png)
            self.plans = self._read_frames(sorted({j.frame for j in jobs}),
                                           [j.view for j in jobs if j.view is not None])
        except BaseException:  # leave no temporary folder behind
            if self.tempdir:
                shutil.rmtree(self.tempdir, ignore_errors=True)
                self.tempdir = None
            raise
        self.settings = self.plans[jobs[0].frame].settings if jobs else engine_settings(scene)
        self.task = PlannedRefocus(self.plans, diagnostic, layer, keep_result=True,
                                   multilayer=self.multilayer, read_view=self.read_view,
                                   colour=self.colour)
        self.state = self.task.state
        self.run = core_batch.SequenceRun(jobs, self._process, skip_existing=skip_existing)
        self.parallel = None  # the ParallelRun when start() chose worker processes

    def _jobs(self, source, frames, png):
        scene, diagnostic, zd = self.scene, self.diagnostic, dof_settings(self.scene)
        if source == "RENDER_RESULT":
            self.tempdir = tempfile.mkdtemp(prefix="zdepth_dof_")
            try:
                src = render_result_input(scene, os.path.join(self.tempdir,
                                                              "render_result.exr"))
            except BaseException:
                shutil.rmtree(self.tempdir, ignore_errors=True)
                raise
            frame = last_render_frame(scene)  # 5.0 restores frame_current after an animation
            filepath = scene.render.filepath
            # a folder (Blender's default '/tmp/') names no file: 'render', not 'tmp'
            stem = ("" if filepath.endswith(("/", "\\")) else
                    os.path.basename(abspath(filepath)).replace("#", "").strip("._-"))
            name = f"{stem or 'render'}.{frame:04d}.exr"
            # the header names what the input really was, not the temporary file it was saved to
            blend = os.path.basename(bpy.data.filepath) or "an unsaved .blend"
            source = f"Render Result (frame {frame}) of {blend}"
            out = self._output_path(
                name, frame, self.tempdir if diagnostic else refocus_folder(scene))
            views = rendered_views(scene)
            if views:  # stereo / multi-view: each view of the saved multi-view EXR
                suffixes = view_suffixes(scene, views)
                self.read_view, self.first_view = True, views[0]
                jobs = []
                for view in views[:1] if diagnostic else views:
                    vout = with_view_suffix(out, suffixes[view])
                    outs = () if diagnostic else ((vout, os.path.splitext(vout)[0] + ".png")
                                                  if png else (vout,))
                    jobs.append(core_batch.FrameJob(frame, src, outs, view,
                                                    source=f"{source}, view {view}"))
            else:
                outs = () if diagnostic else ((out, os.path.splitext(out)[0] + ".png") if png
                                              else (out,))
                jobs = [core_batch.FrameJob(frame, src, outs, source=source)]
            self.aliases[src] = f"Render Result (frame {frame})"
        elif source == "FILES":
            if diagnostic:
                frames = [scene.frame_current]
            elif frames is None:
                frames = panel_frames(scene)
            per_view = view_file_inputs(scene, frames)
            if per_view is not None:
                self.read_view = per_view[1]
                return self._view_file_jobs(per_view[0], png)
            inputs = file_inputs(scene, frames)
            if inputs and not any(os.path.exists(p) for p in inputs.values()):
                first = inputs[min(inputs)]
                raise ZDepthError(f"no rendered frames found (looked for {first} ...): render "
                                  f"the animation as OpenEXR MultiLayer with the Z pass, or set "
                                  f"Input in the Depth of Field panel")
            zd_out = abspath(setting(zd, "dof_output_dir", ""))
            jobs = []
            if setting(zd, "dof_output_name", ""):
                core_batch.check_output_name(zd.dof_output_name, sequence=len(inputs) > 1)
            for f, src in sorted(inputs.items()):
                out = self._output_path(src, f, zd_out or os.path.dirname(src))
                if core_batch.same_file(src, out):
                    raise ZDepthError(f"the output would overwrite the input {src}")
                outs = () if diagnostic else ((out, os.path.splitext(out)[0] + ".png") if png
                                              else (out,))
                jobs.append(core_batch.FrameJob(f, src, outs))
            if zd_out and not diagnostic:
                ensure_output_folder(zd_out)
        else:
            raise ZDepthError(f"unknown source {source!r}")
        return jobs

    def _view_file_jobs(self, per_view, png):
        """Jobs for the per-view exports of a stereo / multi-view scene
        (:func:`.inputs.view_file_inputs`):
        each view's file, written as the frame's output without Stereoscopy with the view's
        suffix before the extension (``zdepth_0001_L.exr`` -> ``zdepth_dof_0001_L.exr``)."""
        diagnostic, zd = self.diagnostic, dof_settings(self.scene)
        paths = [e[1] for per in per_view.values() for e in per]
        if not any(os.path.exists(p) for p in paths):
            raise ZDepthError(f"no rendered views found (looked for {paths[0]} ...): render "
                              f"the animation as OpenEXR MultiLayer with the Z pass or with "
                              f"Export Depth on Render, or set Input in the Depth of Field "
                              f"panel")
        zd_out = abspath(setting(zd, "dof_output_dir", ""))
        if setting(zd, "dof_output_name", ""):
            core_batch.check_output_name(zd.dof_output_name, sequence=len(per_view) > 1)
        jobs = []
        for f, per in sorted(per_view.items()):
            if diagnostic:
                per = per[:1]
            for view, src, base, suffix in per:
                out = with_view_suffix(self._output_path(base, f, zd_out or os.path.dirname(src)),
                                       suffix)
                if core_batch.same_file(src, out):
                    raise ZDepthError(f"the output would overwrite the input {src}")
                outs = () if diagnostic else ((out, os.path.splitext(out)[0] + ".png") if png
                                              else (out,))
                jobs.append(core_batch.FrameJob(f, src, outs, view))
        self.first_view = jobs[0].view if jobs else None
        if zd_out and not diagnostic:
            ensure_output_folder(zd_out)
        return jobs

    def _output_path(self, src, frame, folder):
        """The output of input ``src`` (frame ``frame``) in ``folder``: named by the panel's
        Output Name pattern, else the input's name with ``_dof`` before the frame number."""
        pattern = setting(dof_settings(self.scene), "dof_output_name", "")
        if pattern:
            return os.path.join(folder, core_batch.output_name(pattern, src, frame))
        return core_batch.derived_path(src, folder=folder)

    def _read_frames(self, frames, views=()):
        """``{frame: FramePlan}`` (lens plan, DofSettings, camera DOF on) read from the scene at
        each frame (main thread), the scene's frame restored afterwards. ``views`` (a stereo /
        multi-view batch): ``{(frame, view): FramePlan}`` too, whose lens is that view's camera
        (:func:`..scene.optics.view_lens_plan`)."""
        scene = self.scene
        plans = {}
        views = list(dict.fromkeys(views))
        try:
            for f in frames:
                if scene.frame_current != f:
                    scene.frame_set(f)
                cam_dof = camera_had_dof(scene, render_result=self.source == "RENDER_RESULT")
                plans[f] = FramePlan(lens_plan(scene), engine_settings(scene), cam_dof)
                for view in views:
                    plans[(f, view)] = dataclasses.replace(
                        plans[f], lens=view_lens_plan(scene, plans[f].lens, view))
        finally:
            if scene.frame_current != self.frame_before:
                scene.frame_set(self.frame_before)
        return plans

    def _process(self, job):  # in the worker thread too: no bpy here
        info = self.task(job)
        self._noted(job.frame, info)
        rgba = info.pop("rgba")
        windows = info.pop("windows")  # kept with the rgba (keep_result)
        if job.view is None or job.view == self.first_view:  # the image shows the first view
            self.last_rgba, self.last_frame = rgba, job.frame
            self.last_origin = crop_origin(*windows)
        return info

    def _noted(self, frame, info):
        if info.pop("double_dof", False):
            self.warnings.append((frame, DOUBLE_DOF_WARNING))

    @property
    def total(self):
        return self.run.total

    @property
    def done(self):
        run = self.parallel if self.parallel is not None else self.run
        return run.done and not self.running

    @property
    def report(self):
        return (self.parallel if self.parallel is not None else self.run).report

    def step(self):
        return self.run.step()

    def describe(self, text):
        """``text`` (a summary or progress line) with temporary input files named as the user
        knows them (the Render Result is saved to a temporary file the user never sees)."""
        for path, alias in self.aliases.items():
            text = text.replace(path, alias).replace(os.path.basename(path), alias)
        return text

    def cancel(self):
        """Stop now (no worker running) or ask the worker to stop after its frame."""
        if self.running:
            self.request_cancel()
        else:
            self.run.cancel()

    # -- in the background -------------------------------------------------------------------

    @property
    def running(self):
        """True while :meth:`start`'s background work is refocusing frames."""
        return self._thread is not None and self._thread.is_alive()

    def workers_for(self, workers=None):
        """``(frames at once, engine threads each)`` for :meth:`start`: ``workers`` None
        chooses from the cores and the memory available for the frames' size
        (:func:`~blender_zdepth.core.batch.choose_jobs`; one for a small sequence, where
        starting processes would cost more than it saves); the Render Result and the
        focal-plane view are one frame."""
        if workers == 1 or self.source != "FILES" or self.diagnostic:
            return 1, 0
        todo = [j for j in self.run.jobs
                if not (self.run.skip_existing and all(os.path.exists(p) for p in j.outputs))]
        if len(todo) < 2:
            return 1, 0
        pixels = None
        for job in todo:
            try:  # the size from the first readable header (the frames are loaded by workers)
                import OpenEXR

                lo, hi = OpenEXR.File(job.input, header_only=True).header()["dataWindow"]
                pixels = int(hi[0] - lo[0] + 1) * int(hi[1] - lo[1] + 1)
                break
            except Exception:
                continue
        n, threads, _ = core_batch.choose_jobs(len(todo), pixels=pixels, jobs=workers, threads=0)
        return n, threads

    def start(self, workers=None):
        """Refocus every frame in the background, then poll :attr:`running` and
        :attr:`progress` from the main thread and call :meth:`finish` there. One frame at a
        time runs in a worker thread (numpy only, no bpy); several at once (``workers``, or
        chosen by :meth:`workers_for`) run in worker processes
        (:class:`~blender_zdepth.core.batch.ParallelRun`) that a thread looks after."""
        if self._thread is not None:
            raise RuntimeError("this batch was started already")
        n, threads = self.workers_for(workers)
        target = self._work
        if n > 1:
            task = PlannedRefocus(self.plans, self.diagnostic, self.layer, keep_result=False,
                                  multilayer=self.multilayer, read_view=self.read_view,
                                  colour=self.colour)
            task.state.update(self.state)
            task = task.with_settings(lambda s: refocus.with_threads(s, threads))
            self.parallel = core_batch.ParallelRun(self.run.jobs, task, workers=n, threads=threads,
                                                   skip_existing=self.run.skip_existing)
            target = self._work_parallel
        self._thread = threading.Thread(target=target, name="zdepth-apply-dof", daemon=True)
        self._thread.start()

    def _work(self):
        try:
            while not self.run.done:
                if self._stop.is_set():
                    self.run.cancel()
                    break
                self.run.step()
        except BaseException as exc:  # a bug, not a bad frame (those are recorded)
            self.error = exc
            self.run.cancel()

    def _work_parallel(self):
        try:  # Esc: cancel() stops the workers at once; frames in progress leave no file
            self.parallel.run(should_cancel=self._stop.is_set)
        except BaseException as exc:
            self.error = exc

    def request_cancel(self):
        """Ask the background work to stop: one frame at a time, the frame being refocused is
        finished and written whole; in worker processes, they are stopped at once and the frames
        they were refocusing are not written. Outputs are atomic: no partial file is ever
        left."""
        self._stop.set()

    def wait(self, timeout=None):
        """Wait for the background work to end (True when it has)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    @property
    def progress(self):
        """Frames finished (written, skipped or failed) so far."""
        report = self.report
        return len(report.results) - len(report.cancelled)

    def status_text(self):
        if self._stop.is_set():
            return "Z-Depth DOF: cancelling ..."
        if self.parallel is not None:
            return (f"Z-Depth DOF: {self.progress}/{self.total} frames done, "
                    f"{self.parallel.workers} at once, Esc to cancel")
        i = min(len(self.run.report.results), self.total - 1)  # the frame being done next
        return (f"Z-Depth DOF: frame {self.run.jobs[i].frame} ({i + 1}/{self.total}), "
                f"Esc to cancel")

    def _collect_parallel(self):
        """After worker processes: the double-DOF warnings from the frames' infos, and the last
        frame written read back for the image."""
        written = [r for r in self.parallel.report.results if r.status == "written"]
        for result in written:
            self._noted(result.frame, result.info)
        written = [r for r in written if r.job.view in (None, self.first_view)]
        if written and written[-1].job.output:
            try:
                image = exr.read_exr(written[-1].job.output)
                self.last_rgba = np.dstack([image.channels[c] for c in "RGBA"])
                self.last_frame = written[-1].frame
                self.last_origin = crop_origin(image.data_window, image.display_window)
            except (ZDepthError, KeyError, OSError):
                pass

    def finish(self):
        """Restore the frame, show the last result, remove temporary files; return the report."""
        self.wait()
        if self.parallel is not None and self.last_rgba is None:
            self._collect_parallel()
        if self.scene.frame_current != self.frame_before:
            self.scene.frame_set(self.frame_before)
        if self.last_rgba is not None:
            # a crop keeps its place, so a pixel picked on the image is a pixel of the frame
            show_image(self.last_rgba, origin=self.last_origin)
        if self.tempdir:
            shutil.rmtree(self.tempdir, ignore_errors=True)
            self.tempdir = None
        return self.report
