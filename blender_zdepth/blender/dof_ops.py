"""Depth of field on rendered frames, inside Blender: ``bpy.ops.zdepth.apply_dof`` and the
"Depth of Field" sub-panel of Properties > Render > Z-Depth.

The work itself is :mod:`blender_zdepth.core.batch` (one :class:`SequenceRun` step per frame);
this module only gathers the inputs (the Render Result, or rendered EXR files on disk), the lens
of every frame (the scene camera evaluated at that frame, or the panel's overrides), shows the
result in an image called "Z-Depth DOF", and drives the run: synchronously when Blender runs
headless, from a modal timer otherwise (progress bar, status text, Esc cancels between frames).
"""

import dataclasses
import os
import shutil
import tempfile

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty

from ..core import batch as core_batch
from ..core import refocus
from ..core.errors import ZDepthError
from ..core.refocus.planned import FramePlan, PlannedRefocus, header_had_dof

#: Name of the image the result is shown in.
IMAGE_NAME = "Z-Depth DOF"

_SOURCES = [
    ("PANEL", "Panel Setting", "Use the Depth of Field panel's source (Render Result or files)"),
    ("RENDER_RESULT", "Render Result", "The latest render (must have the Z pass)"),
    ("FILES", "Rendered Files", "Multilayer EXR files on disk, over the scene's frame range"),
]


# ---------------------------------------------------------------------------------------------
# Settings and lens


def dof_settings(scene):
    """The panel's settings (``scene.zdepth``), or None when the properties are not registered."""
    return getattr(scene, "zdepth", None)


def _get(zd, name, default):
    return getattr(zd, name, default) if zd is not None else default


def planar_distance(camera_obj, point):
    """Distance of world-space ``point`` from the camera along its view axis (planar depth, as
    Blender's focus object and the Z pass measure it)."""
    local = camera_obj.matrix_world.inverted() @ point
    return max(-local.z, 1e-4)


def check_dof_camera(scene):
    """The scene camera, or :class:`ZDepthError` when there is none or it is not perspective."""
    cam = scene.camera
    if cam is None or cam.type != "CAMERA":
        raise ZDepthError("the scene has no camera: set Scene > Camera")
    if cam.data.type != "PERSP":
        kind = {"ORTHO": "orthographic", "PANO": "panoramic"}.get(cam.data.type,
                                                                  cam.data.type.lower())
        raise ZDepthError(f"camera {cam.name!r} is {kind}: depth of field needs a perspective "
                          f"camera")
    return cam


def camera_lens(scene, loaded=None):
    """The :class:`~blender_zdepth.core.lens.Lens` of ``scene``'s camera at the current frame,
    with the panel's overrides; returns ``(lens, focus_source)``.

    Focus (panel ``dof_focus_mode``): CAMERA = the camera's focus object if set, else its focus
    distance; DISTANCE = the panel's distance; OBJECT = the panel's object; PIXEL = the depth
    under the panel's pixel in ``loaded`` (the frame being refocused). f-stop: the camera's,
    unless the panel overrides it.
    """
    return lens_plan(scene)(loaded)


def lens_plan(scene):
    """Read everything the lens needs from ``scene`` now (main thread: it touches bpy) and
    return a :class:`~blender_zdepth.core.refocus.planned.LensPlan`, ``plan(loaded) -> (lens,
    focus_source)``, which touches no bpy and is picklable, so it may run in a worker thread or
    process; ``loaded`` (anything with a ``depth`` array) is needed for PIXEL focus only.
    See :func:`camera_lens`."""
    cam = check_dof_camera(scene)
    data = cam.data
    zd = dof_settings(scene)
    mode = _get(zd, "dof_focus_mode", "CAMERA")
    focus = source = pixel = None
    if mode == "DISTANCE":
        focus, source = float(zd.dof_focus_distance), "panel distance"
    elif mode == "OBJECT":
        obj = _get(zd, "dof_focus_object", None)
        if obj is None:
            raise ZDepthError("focus on an object was chosen but no object is set in the "
                              "Depth of Field panel")
        focus, source = planar_distance(cam, obj.matrix_world.translation), f"object {obj.name}"
    elif mode == "PIXEL":
        pixel = tuple(int(v) for v in zd.dof_focus_pixel)
    elif data.dof.focus_object is not None:
        obj = data.dof.focus_object
        focus = planar_distance(cam, obj.matrix_world.translation)
        source = f"camera focus object {obj.name}"
    else:
        focus, source = float(data.dof.focus_distance), "camera"
    if _get(zd, "dof_fstop_override", False):
        fstop = float(zd.dof_fstop)
    else:
        fstop = float(data.dof.aperture_fstop)
    render = scene.render
    values = dict(focal_length_mm=float(data.lens), fstop=fstop,
                  sensor_width_mm=float(data.sensor_width),
                  sensor_height_mm=float(data.sensor_height), sensor_fit=str(data.sensor_fit),
                  pixel_aspect=float(render.pixel_aspect_x) / float(render.pixel_aspect_y))
    from ..core.refocus.planned import LensPlan

    return LensPlan(values, focus=None if focus is None else float(focus), source=source or "",
                    pixel=pixel)


def view_lens_plan(scene, plan, view):
    """``plan`` (:func:`lens_plan`, the scene camera's) for the view ``view`` of a stereo /
    multi-view render: the lens (focal length, sensor) of the camera rendering that view
    (:func:`.export.view_camera`: the scene camera in Stereo 3D, where the eyes share its lens;
    the view's own camera in a Multi-View set-up); the focus and f-stop stay the scene
    camera's."""
    from . import export

    cam = export.view_camera(scene, scene.camera, view)
    if cam is scene.camera or cam.data is scene.camera.data:
        return plan
    data = cam.data
    values = dict(plan.values, focal_length_mm=float(data.lens),
                  sensor_width_mm=float(data.sensor_width),
                  sensor_height_mm=float(data.sensor_height), sensor_fit=str(data.sensor_fit))
    return dataclasses.replace(plan, values=values)


def camera_aperture(scene):
    """``(blades, rotation_degrees, ratio, source)`` of the aperture at the current frame: the
    scene camera's (Camera > Depth of Field > Aperture: blades, rotation, ratio, with their
    animated values) unless the panel's Aperture Override is on. As in Cycles, fewer than 3
    blades is a round aperture (blades 0); the ratio is clamped to the engine's 0.1 to 10."""
    import math

    zd = dof_settings(scene)
    cam = scene.camera
    if _get(zd, "dof_aperture_override", False) or cam is None or cam.type != "CAMERA":
        blades = int(_get(zd, "dof_blades", 0))
        rotation = math.degrees(float(_get(zd, "dof_rotation", 0.0)))
        ratio = float(_get(zd, "dof_anamorphic", 1.0))
        source = "panel"
    else:
        dof = cam.data.dof
        blades = int(dof.aperture_blades)
        rotation = math.degrees(float(dof.aperture_rotation))
        ratio = float(dof.aperture_ratio)
        source = "camera"
    if blades < 3:
        blades = 0  # Cycles' rule: 1 or 2 blades make no polygon, the aperture is round
    ratio = min(max(ratio, 0.1), 10.0)
    return blades, rotation, ratio, source


def engine_settings(scene):
    """:class:`~blender_zdepth.core.dof.DofSettings` at the current frame: the panel's radius
    cap and quality, the aperture of :func:`camera_aperture`."""
    from ..core.dof import DofSettings

    zd = dof_settings(scene)
    blades, rotation, ratio, _ = camera_aperture(scene)
    return DofSettings(max_radius=float(_get(zd, "dof_max_radius", 64.0)), blades=blades,
                       rotation_deg=rotation, anamorphic=ratio,
                       quality=str(_get(zd, "dof_quality", "default")))


def camera_had_dof(scene, header=None):
    """Whether the frame was rendered with the camera's own depth of field on: the header's
    ``zdepthCameraDofEnabled`` (our exports record it) when there is one, else the scene
    camera's Depth of Field setting now (the Render Result and plain renders record nothing)."""
    recorded = header_had_dof(header)
    if recorded is not None:
        return recorded
    cam = scene.camera
    return bool(cam is not None and cam.type == "CAMERA" and cam.data.dof.use_dof)


DOUBLE_DOF_WARNING = ("the render already has the camera's depth of field (Camera > Depth of "
                      "Field was on): refocusing blurs it a second time; render with it off")


def panel_frames(scene):
    """The frames Apply refocuses from files: the sub-panel's Start, End and Step (the scene's
    range and step while Scene Range is ticked). :class:`ZDepthError` when the range runs
    backwards."""
    zd = dof_settings(scene)
    if zd is None or _get(zd, "dof_use_scene_range", True):
        a, b, step = scene.frame_start, scene.frame_end, scene.frame_step
    else:
        a, b, step = zd.dof_frame_start, zd.dof_frame_end, zd.dof_frame_step
    if b < a:
        raise ZDepthError(f"frame range {a}-{b} runs backwards: set End after Start in the "
                          f"Depth of Field panel")
    return list(range(a, b + 1, max(1, step)))


# ---------------------------------------------------------------------------------------------
# Inputs and outputs


def _abspath(path):
    """Absolute path; ``//`` is the .blend's folder, or the system's temporary folder while the
    file is unsaved (as the depth export does)."""
    if not path:
        return ""
    if path.startswith("//") and not bpy.data.filepath:
        path = os.path.join(tempfile.gettempdir(), path[2:])
    return os.path.normpath(bpy.path.abspath(path))


def render_output_folder(scene):
    """The folder of the scene's render output path (Output Properties > Output): the path
    itself when it ends with a separator (Blender's default ``/tmp/``), else its folder; ''
    when the path is empty."""
    path = scene.render.filepath
    if not path:
        return ""
    full = _abspath(path)
    return full if path.endswith(("/", "\\")) else os.path.dirname(full)


def ensure_output_folder(folder):
    """Create ``folder`` when missing and check a file can be written there; a
    :class:`ZDepthError` saying what to do otherwise (never a silent fallback elsewhere)."""
    from .export import folder_write_problem

    problem = folder_write_problem(folder)
    if problem:
        raise ZDepthError(f"cannot write the refocused frames into {folder} ({problem}): "
                          f"choose another Output folder in the Depth of Field panel")
    return folder


def output_folder(scene, near=None):
    """Where results go: the panel's output folder, else ``near`` (the renders' folder), else
    the folder of the scene's render output path, else (no output path at all) the system's
    temporary folder. The folder is created when missing; :class:`ZDepthError` when it cannot
    be written."""
    zd = dof_settings(scene)
    folder = (_abspath(_get(zd, "dof_output_dir", "")) or near or render_output_folder(scene)
              or tempfile.gettempdir())
    return ensure_output_folder(folder)


def save_render_result(scene, path):
    """Save the Render Result (all passes) as a 32-bit multilayer EXR at ``path``; the scene's
    output settings are restored afterwards (:func:`.export.save_render_result`)."""
    from . import export

    image = bpy.data.images.get("Render Result")
    if image is None or image.type != "RENDER_RESULT":
        raise ZDepthError("there is no render yet: render a frame (F12) first, with the Z pass "
                          "on (View Layer > Passes > Z)")
    try:
        return export.save_render_result(scene, path)
    except RuntimeError as exc:
        raise ZDepthError(f"could not save the Render Result: {exc}; render a frame first")


def file_inputs(scene, frames):
    """``{frame: path}`` of the rendered files: the panel's input (a file or a pattern like
    ``//render/shot.####.exr``); else where the scene renders its frames when that is a
    multilayer EXR; else the depth exports of "Export Depth on Render" when they carry the
    beauty (Beauty: Same File, or Beside: the ``<name>_beauty.exr`` next to each) and exist on
    disk. Otherwise :class:`ZDepthError` once, up front (the scene's own renders are not
    multilayer EXRs with depth, so reading them would fail every frame)."""
    zd = dof_settings(scene)
    text = _abspath(_get(zd, "dof_input", ""))
    if text:
        pattern = core_batch.FramePattern(text)
        return {f: pattern.path_for(f) for f in frames}
    rendered = {f: _abspath(scene.render.frame_path(frame=f)) for f in frames}
    if scene.render.image_settings.file_format == "OPEN_EXR_MULTILAYER":
        return rendered
    exports = {}
    if _get(zd, "beauty", "NONE") in ("SAME_FILE", "BESIDE"):
        from . import export

        options = export.ExportOptions.from_scene(scene)
        exports = {f: export.frame_paths(options, f)["depth"] for f in frames}
        if _get(zd, "export_enabled", False) or any(os.path.exists(p)
                                                     for p in exports.values()):
            return exports
    settings = scene.render.image_settings
    fmt = settings.bl_rna.properties["file_format"].enum_items[settings.file_format].name
    fmt = fmt.split(" (")[0]  # "PNG (.png)" in 5.0
    hint = (f" or turn on Export Depth on Render (Beauty: Same File or Beside) and render "
            f"again" if not exports else f" (no depth exports found either, e.g. "
            f"{exports[min(exports)]})")
    raise ZDepthError(f"nothing to refocus: the scene renders {fmt} files, which hold no depth; "
                      f"set Input in the Depth of Field panel to EXRs with depth, render as "
                      f"OpenEXR MultiLayer with the Z pass{hint}")


def view_file_inputs(scene, frames):
    """The rendered files of a stereo / multi-view scene when the panel's Input is empty:
    ``({frame: [(view, path, name, suffix), ...]}, read_view)``, where ``name`` is the file's
    name without the view (what the frame would be without Stereoscopy) and ``read_view`` says
    that ``path`` holds every view (read the view from it). As :func:`file_inputs` chooses:
    the scene's own multilayer EXRs (one multi-view file per frame, or Blender's
    ``<name><suffix>.exr`` per view), else the per-view depth exports carrying the beauty
    (``<name><suffix>.exr``, :func:`.export.frame_paths`). None when the scene renders one view,
    Input is set, or there are no such files (then :func:`file_inputs` decides)."""
    from . import export

    zd = dof_settings(scene)
    views = export.rendered_views(scene)
    if not views or _get(zd, "dof_input", ""):
        return None
    suffixes = export.view_suffixes(scene, views)
    settings = scene.render.image_settings
    if settings.file_format == "OPEN_EXR_MULTILAYER":
        one_file = settings.views_format == "MULTIVIEW"
        found = {}
        for f in frames:
            name = _abspath(scene.render.frame_path(frame=f))
            found[f] = [(v, name if one_file else with_view_suffix(name, suffixes[v]), name,
                         suffixes[v]) for v in views]
        return found, one_file
    if _get(zd, "beauty", "NONE") not in ("SAME_FILE", "BESIDE"):
        return None
    options = export.ExportOptions.from_scene(scene)
    found = {f: [(v, export.frame_paths(options, f, suffixes[v])["depth"],
                  export.frame_paths(options, f)["depth"], suffixes[v]) for v in views]
             for f in frames}
    if not (_get(zd, "export_enabled", False)
            or any(os.path.exists(e[1]) for per in found.values() for e in per)):
        return None
    return found, False


def with_view_suffix(path, suffix):
    """``path`` with a view's file suffix before its extension, as the depth export and
    Blender's own per-view files name views: ``render_dof.0001.exr`` ->
    ``render_dof.0001_L.exr``."""
    stem, ext = os.path.splitext(path)
    return stem + suffix + ext


# ---------------------------------------------------------------------------------------------
# The batch: one object, stepped by the modal timer or looped by execute()


class DofBatch:
    """Everything one run of the operator needs: jobs, lens and aperture per frame, the run,
    the result.

    ``source``: 'RENDER_RESULT' or 'FILES'. ``frames``: for FILES (default: the sub-panel's
    range, :func:`panel_frames`).
    ``layer``: the view layer to read from multilayer renders (the operator passes the active
    one; files without it fall back to ``ViewLayer`` or the first).
    ``diagnostic``: the focal-plane view of the current frame instead of the blur; shown, not
    written.

    The scene is read on the main thread when the batch is made: every frame's camera (focus,
    f-stop, lens, aperture: ``scene.frame_set`` so animated values are honoured) becomes a
    :class:`~blender_zdepth.core.refocus.planned.FramePlan` that touches no bpy, so the frames
    can then be refocused in the background (:meth:`start`: a worker thread, or several frames
    at once in worker processes; :meth:`request_cancel`, :attr:`running`, :attr:`progress`: Blender's
    interface stays responsive) or one by one here (:meth:`step`, :meth:`cancel`).
    :meth:`finish` (main thread) restores the scene's frame, shows the result in the
    "Z-Depth DOF" image and cleans temporary files.
    """

    def __init__(self, scene, source="RENDER_RESULT", frames=None, diagnostic=False,
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
        self.warnings = []  # (frame, text): frames that already had the camera's DOF
        self.error = None  # an unexpected exception of the worker thread
        self._thread = None
        import threading

        self._stop = threading.Event()
        zd = dof_settings(scene)
        png = bool(_get(zd, "dof_write_png", False)) if write_png is None else write_png
        self.multilayer = bool(_get(zd, "dof_multilayer", False))  # read here: no bpy in workers
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
                                   multilayer=self.multilayer, read_view=self.read_view)
        self.state = self.task.state
        self.run = core_batch.SequenceRun(jobs, self._process, skip_existing=skip_existing)
        self.parallel = None  # the ParallelRun when start() chose worker processes

    def _jobs(self, source, frames, png):
        scene, diagnostic, zd = self.scene, self.diagnostic, dof_settings(self.scene)
        if source == "RENDER_RESULT":
            self.tempdir = tempfile.mkdtemp(prefix="zdepth_dof_")
            try:
                src = save_render_result(scene, os.path.join(self.tempdir,
                                                             "render_result.exr"))
            except BaseException:
                shutil.rmtree(self.tempdir, ignore_errors=True)
                raise
            from . import export
            from .export import last_render_frame

            frame = last_render_frame(scene)  # 5.0 restores frame_current after an animation
            filepath = scene.render.filepath
            # a folder (Blender's default '/tmp/') names no file: 'render', not 'tmp'
            stem = ("" if filepath.endswith(("/", "\\")) else
                    os.path.basename(_abspath(filepath)).replace("#", "").strip("._-"))
            name = f"{stem or 'render'}.{frame:04d}.exr"
            out = self._output_path(
                name, frame, self.tempdir if diagnostic else output_folder(scene))
            views = export.rendered_views(scene)
            if views:  # stereo / multi-view: each view of the saved multi-view EXR
                suffixes = export.view_suffixes(scene, views)
                self.read_view, self.first_view = True, views[0]
                jobs = []
                for view in views[:1] if diagnostic else views:
                    vout = with_view_suffix(out, suffixes[view])
                    outs = () if diagnostic else ((vout, os.path.splitext(vout)[0] + ".png")
                                                  if png else (vout,))
                    jobs.append(core_batch.FrameJob(frame, src, outs, view))
            else:
                outs = () if diagnostic else ((out, os.path.splitext(out)[0] + ".png") if png
                                              else (out,))
                jobs = [core_batch.FrameJob(frame, src, outs)]
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
            zd_out = _abspath(_get(zd, "dof_output_dir", ""))
            jobs = []
            if _get(zd, "dof_output_name", ""):
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
        """Jobs for the per-view exports of a stereo / multi-view scene (:func:`view_file_inputs`):
        each view's file, written as the frame's output without Stereoscopy with the view's
        suffix before the extension (``zdepth_0001_L.exr`` -> ``zdepth_dof_0001_L.exr``)."""
        diagnostic, zd = self.diagnostic, dof_settings(self.scene)
        paths = [e[1] for per in per_view.values() for e in per]
        if not any(os.path.exists(p) for p in paths):
            raise ZDepthError(f"no rendered views found (looked for {paths[0]} ...): render "
                              f"the animation as OpenEXR MultiLayer with the Z pass or with "
                              f"Export Depth on Render, or set Input in the Depth of Field "
                              f"panel")
        zd_out = _abspath(_get(zd, "dof_output_dir", ""))
        if _get(zd, "dof_output_name", ""):
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
        pattern = _get(dof_settings(self.scene), "dof_output_name", "")
        if pattern:
            return os.path.join(folder, core_batch.output_name(pattern, src, frame))
        return core_batch.derived_path(src, folder=folder)

    def _read_frames(self, frames, views=()):
        """``{frame: FramePlan}`` (lens plan, DofSettings, camera DOF on) read from the scene at
        each frame (main thread), the scene's frame restored afterwards. ``views`` (a stereo /
        multi-view batch): ``{(frame, view): FramePlan}`` too, whose lens is that view's camera
        (:func:`view_lens_plan`)."""
        scene = self.scene
        plans = {}
        views = list(dict.fromkeys(views))
        try:
            for f in frames:
                if scene.frame_current != f:
                    scene.frame_set(f)
                cam_dof = camera_had_dof(scene)
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
        if job.view is None or job.view == self.first_view:  # the image shows the first view
            self.last_rgba, self.last_frame = rgba, job.frame
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
        import threading

        if self._thread is not None:
            raise RuntimeError("this batch was started already")
        n, threads = self.workers_for(workers)
        target = self._work
        if n > 1:
            task = PlannedRefocus(self.plans, self.diagnostic, self.layer, keep_result=False,
                                  read_view=self.read_view)
            task.state.update(self.state)
            task = task.with_settings(lambda s: refocus.with_threads(s, threads))
            self.parallel = core_batch.ParallelRun(self.run.jobs, task, workers=n,
                                                   threads=threads,
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
            import numpy as np

            from ..core import exr

            try:
                image = exr.read_exr(written[-1].job.output)
                self.last_rgba = np.dstack([image.channels[c] for c in "RGBA"])
                self.last_frame = written[-1].frame
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
            show_image(self.last_rgba)
        if self.tempdir:
            shutil.rmtree(self.tempdir, ignore_errors=True)
            self.tempdir = None
        return self.report


def show_image(rgba, name=IMAGE_NAME, full_size=None):
    """Put ``rgba`` (float32 HxWx4 premultiplied, top row first) into the float image ``name``
    (created or resized as needed) and show it in the open Image Editors; return the image.
    ``full_size``: ``(width, height)`` of the frame when ``rgba`` is a smaller preview of it
    (kept on the image, so a pixel picked on the preview is a pixel of the full frame)."""
    import numpy as np

    h, w = rgba.shape[:2]
    image = bpy.data.images.get(name)
    if image is not None and (tuple(image.size) != (w, h) or not image.is_float
                              or image.source != "GENERATED"):
        bpy.data.images.remove(image)
        image = None
    if image is None:
        image = bpy.data.images.new(name, w, h, alpha=True, float_buffer=True)
    # Colour space first: changing it after filling the pixels regenerates the buffer.
    linear = compat_linear_colorspace(image)
    if linear and image.colorspace_settings.name != linear:
        image.colorspace_settings.name = linear
    image.alpha_mode = "PREMUL"
    if full_size is not None:
        image["zdepth_full_size"] = [int(full_size[0]), int(full_size[1])]
    elif "zdepth_full_size" in image:
        del image["zdepth_full_size"]
    image.pixels.foreach_set(np.ascontiguousarray(rgba[::-1], dtype=np.float32).ravel())
    image.update()
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type == "IMAGE_EDITOR":
                area.spaces.active.image = image
                area.tag_redraw()
    return image


def compat_linear_colorspace(image):
    """The scene-linear colour space name this Blender offers for float images."""
    items = [e.identifier for e in
             image.colorspace_settings.bl_rna.properties["name"].enum_items]
    for name in ("Linear Rec.709", "Linear", "Linear CIE-XYZ E"):
        if name in items:
            return name
    return None


# ---------------------------------------------------------------------------------------------
# The operator


class ZDEPTH_OT_apply_dof(bpy.types.Operator):
    """Apply depth of field to the latest render or to rendered EXR frames, from their Z pass"""

    bl_idname = "zdepth.apply_dof"
    bl_label = "Apply Depth of Field"
    bl_options = {"REGISTER"}

    source: EnumProperty(name="Source", items=_SOURCES, default="PANEL")
    diagnostic: BoolProperty(
        name="Focal Plane Diagnostic",
        description="Show what is in front of the focal plane (red), in focus (green) and "
                    "behind it (blue) for the current frame, instead of blurring; writes no file",
        default=False)
    frame_start: IntProperty(name="Start", description="First frame (files; -1 with End -1: "
                                                       "the panel's range)",
                             default=-1)
    frame_end: IntProperty(name="End", description="Last frame (files; -1: the scene's)",
                           default=-1)
    skip_existing: BoolProperty(name="Skip Existing",
                                description="Keep frames whose output already exists (resume)",
                                default=False)

    _timer = None
    _batch = None

    def _make_batch(self, context):
        scene = context.scene
        source = self.source
        if source == "PANEL":
            source = _get(dof_settings(scene), "dof_source", "RENDER_RESULT")
        frames = None
        if source == "FILES" and (self.frame_start >= 0 or self.frame_end >= 0):
            a = self.frame_start if self.frame_start >= 0 else scene.frame_start
            b = self.frame_end if self.frame_end >= 0 else scene.frame_end
            if b < a:
                raise ZDepthError(f"frame range {a}-{b} runs backwards")
            frames = list(range(a, b + 1))
        elif source == "FILES" and not self.diagnostic:
            frames = panel_frames(scene)  # the sub-panel's Start / End / Step
        check_dof_camera(scene)  # one clear error before any work, not one failed frame
        zd = dof_settings(scene)
        if (_get(zd, "dof_focus_mode", "CAMERA") == "OBJECT"
                and _get(zd, "dof_focus_object", None) is None):
            raise ZDepthError("focus on an object was chosen but no object is set in the "
                              "Depth of Field panel")
        layer = getattr(context, "view_layer", None)
        return DofBatch(scene, source, frames, self.diagnostic, self.skip_existing,
                        layer=layer.name if layer is not None else None)

    def _conclude(self, batch):
        report = batch.finish()
        text = batch.describe(report.summary()).splitlines()
        what = "Focal-plane view" if self.diagnostic else "Depth of field"
        head = f"{what}: {text[0]}"
        if self.diagnostic and not report.failed and batch.last_frame is not None:
            # nothing is written: the summary's 'written' would send the user looking for a file
            head = (f"{what} of frame {batch.last_frame}: shown in the image '{IMAGE_NAME}' "
                    f"(Image Editor), not written to disk")
        if batch.warnings:
            frames = core_batch.format_frames([f for f, _ in batch.warnings])
            self.report({"WARNING"}, f"frame{'s' if len(batch.warnings) > 1 else ''} "
                                     f"{frames}: {DOUBLE_DOF_WARNING}")
        if report.failed:
            for line in text[1:]:
                self.report({"WARNING"}, line.strip())
            self.report({"WARNING"}, head)
        else:
            self.report({"INFO"}, head)
        # a diagnostic writes nothing: print what the status bar says, not "1 written"
        print(head if self.diagnostic and not report.failed else "\n".join(text))
        return {"FINISHED"} if (report.written or report.skipped) else {"CANCELLED"}

    def _warn_before(self, scene):
        """Say before any work when the render already had the camera's depth of field."""
        source = self.source
        if source == "PANEL":
            source = _get(dof_settings(scene), "dof_source", "RENDER_RESULT")
        if not self.diagnostic and source == "RENDER_RESULT" and camera_had_dof(scene):
            self.report({"WARNING"}, DOUBLE_DOF_WARNING)

    def execute(self, context):
        try:
            batch = self._make_batch(context)
        except ZDepthError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        try:
            while not batch.run.done:
                result = batch.step()
                print(batch.describe(core_batch.progress_line(result, batch.run.index,
                                                            batch.total)))
        except KeyboardInterrupt:
            batch.cancel()
        return self._conclude(batch)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)  # headless: synchronous
        self._warn_before(context.scene)
        try:
            self._batch = self._make_batch(context)
        except ZDepthError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        # the frames are refocused in a worker thread; this modal only polls it on a timer,
        # so the interface stays responsive (progress bar, status text, Esc)
        self._batch.start()
        wm = context.window_manager
        wm.progress_begin(0, max(1, self._batch.total))
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        self._set_status(context, self._batch.status_text())
        return {"RUNNING_MODAL"}

    def _set_status(self, context, text):
        workspace = getattr(context, "workspace", None)
        if workspace is not None:
            workspace.status_text_set(text)

    def _end_modal(self, context):
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        self._set_status(context, None)

    def modal(self, context, event):
        batch = self._batch
        if event.type == "ESC":
            batch.request_cancel()
            self._set_status(context, batch.status_text())
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if batch.running:
            context.window_manager.progress_update(batch.progress)
            self._set_status(context, batch.status_text())
            return {"PASS_THROUGH"}
        self._end_modal(context)
        self._batch = None
        if batch.error is not None:  # a bug in the worker: clean up, then show it
            batch.finish()
            raise batch.error
        return self._conclude(batch)


# ---------------------------------------------------------------------------------------------
# Picking the focus pixel in an Image Editor


def uv_to_pixel(u, v, width, height):
    """Image Editor view coordinates (0..1 across the image, v up) to the pixel ``(x, y)``
    counted from the bottom-left corner (Blender's convention, that of ``dof_focus_pixel``);
    None outside the image."""
    if not (0.0 <= u < 1.0 and 0.0 <= v < 1.0) or width < 1 or height < 1:
        return None
    return int(u * width), int(v * height)


def _image_size(image, scene):
    full = image.get("zdepth_full_size") if hasattr(image, "get") else None
    if full is not None and len(full) == 2:  # a live preview: pixels of the full frame
        return int(full[0]), int(full[1])
    w, h = (int(v) for v in image.size)
    if w < 1 or h < 1:  # the Render Result reports no size: use the scene's resolution
        pct = scene.render.resolution_percentage / 100.0
        w, h = int(scene.render.resolution_x * pct), int(scene.render.resolution_y * pct)
    return w, h


def pixel_under_mouse(context, mouse_x, mouse_y):
    """``(x, y)`` of the image pixel under window coordinates ``mouse_x, mouse_y`` in an Image
    Editor, or None."""
    for area in context.window.screen.areas:
        if area.type != "IMAGE_EDITOR":
            continue
        image = area.spaces.active.image
        for region in area.regions:
            if region.type != "WINDOW" or image is None:
                continue
            rx, ry = mouse_x - region.x, mouse_y - region.y
            if 0 <= rx < region.width and 0 <= ry < region.height:
                u, v = region.view2d.region_to_view(rx, ry)
                return uv_to_pixel(u, v, *_image_size(image, context.scene))
    return None


class ZDEPTH_OT_dof_pick_focus(bpy.types.Operator):
    """Click a point of the render in an Image Editor: depth of field focuses on the surface
    there (sets Focus to Pixel)"""

    bl_idname = "zdepth.dof_pick_focus"
    bl_label = "Pick Focus Pixel"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return dof_settings(context.scene) is not None

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            self.report({"ERROR"}, "picking a pixel needs Blender's interface; set the pixel "
                                   "numbers instead")
            return {"CANCELLED"}
        context.window.cursor_modal_set("EYEDROPPER")
        if getattr(context, "workspace", None) is not None:
            context.workspace.status_text_set(
                "Click the point to focus on in an Image Editor showing the render; "
                "Esc or right-click cancels")
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _end(self, context):
        context.window.cursor_modal_restore()
        if getattr(context, "workspace", None) is not None:
            context.workspace.status_text_set(None)

    def modal(self, context, event):
        if event.type in {"ESC", "RIGHTMOUSE"}:
            self._end(context)
            return {"CANCELLED"}
        if event.type == "LEFTMOUSE" and event.value == "PRESS":
            hit = pixel_under_mouse(context, event.mouse_x, event.mouse_y)
            if hit is None:
                self.report({"WARNING"}, "click on the image in an Image Editor")
                return {"RUNNING_MODAL"}
            zd = dof_settings(context.scene)
            zd.dof_focus_pixel = hit
            zd.dof_focus_mode = "PIXEL"
            self._end(context)
            self.report({"INFO"}, f"focus pixel {hit[0]}, {hit[1]}")
            return {"FINISHED"}
        return {"RUNNING_MODAL"} if event.type.endswith("MOUSE") else {"PASS_THROUGH"}


# ---------------------------------------------------------------------------------------------
# The sub-panel


class RENDER_PT_zdepth_dof(bpy.types.Panel):
    bl_label = "Depth of Field"
    bl_idname = "RENDER_PT_zdepth_dof"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"
    bl_parent_id = "RENDER_PT_zdepth"
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context):
        return dof_settings(context.scene) is not None

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        scene = context.scene
        zd = scene.zdepth
        cam = scene.camera

        col = layout.column()
        col.prop(zd, "dof_focus_mode", text="Focus")
        if zd.dof_focus_mode == "DISTANCE":
            col.prop(zd, "dof_focus_distance", text="Distance")
        elif zd.dof_focus_mode == "OBJECT":
            col.prop(zd, "dof_focus_object", text="Object")
        elif zd.dof_focus_mode == "PIXEL":
            row = col.row(align=True)
            row.prop(zd, "dof_focus_pixel", text="Pixel")
            row.operator(ZDEPTH_OT_dof_pick_focus.bl_idname, text="", icon="EYEDROPPER")
        elif cam is not None and cam.type == "CAMERA":
            dof = cam.data.dof
            sub = col.column(align=True)
            if dof.focus_object is not None:
                sub.label(text=f"Camera focus object: {dof.focus_object.name}")
            else:
                sub.prop(dof, "focus_distance", text="Camera Distance")

        col = layout.column()
        row = col.row(heading="F-Stop Override")
        row.prop(zd, "dof_fstop_override", text="")
        sub = row.row()
        sub.active = zd.dof_fstop_override
        sub.prop(zd, "dof_fstop", text="")
        if not zd.dof_fstop_override and cam is not None and cam.type == "CAMERA":
            col.prop(cam.data.dof, "aperture_fstop", text="Camera F-Stop")
        col.prop(zd, "dof_max_radius", text="Max Radius")
        col.prop(zd, "dof_quality", text="Quality")

        # the aperture: the camera's, unless overridden here
        col = layout.column()
        row = col.row(heading="Aperture Override")
        row.prop(zd, "dof_aperture_override", text="")
        has_cam = cam is not None and cam.type == "CAMERA"
        if zd.dof_aperture_override or not has_cam:
            owner, prefix = zd, ""
            blades_p, rotation_p, ratio_p = "dof_blades", "dof_rotation", "dof_anamorphic"
        else:  # the camera's own aperture, edited in place
            owner, prefix = cam.data.dof, "Camera "
            blades_p, rotation_p, ratio_p = "aperture_blades", "aperture_rotation", "aperture_ratio"
        blades = getattr(owner, blades_p)
        sub = col.column()
        sub.prop(owner, blades_p, text=prefix + "Blades")
        sub2 = sub.column()
        sub2.active = blades >= 3
        sub2.prop(owner, rotation_p, text=prefix + "Rotation")
        sub.prop(owner, ratio_p, text=prefix + "Ratio")
        if 0 < blades < 3:
            col.label(text="Fewer than 3 blades: round, as in Cycles", icon="INFO")

        col = layout.column()
        col.prop(zd, "dof_source", text="Source")
        if zd.dof_source == "FILES":
            col.prop(zd, "dof_input", text="Input")
            row = col.row(heading="Scene Range")
            row.prop(zd, "dof_use_scene_range", text="")
            sub = col.column(align=True)
            sub.prop(zd, "dof_frame_start", text="Frame Start")
            sub.prop(zd, "dof_frame_end", text="End")
            sub.prop(zd, "dof_frame_step", text="Step")
        elif has_cam and cam.data.dof.use_dof:
            box = col.box()
            box.label(text="Camera depth of field is on: the render", icon="ERROR")
            box.label(text="is blurred already, refocusing blurs it twice", icon="BLANK1")
        col.prop(zd, "dof_output_dir", text="Output")
        col.prop(zd, "dof_output_name", text="Name")
        col.prop(zd, "dof_multilayer", text="Keep All Passes")
        col.prop(zd, "dof_write_png", text="PNG Preview")

        # live preview
        from . import preview

        box = layout.box()
        row = box.row(align=True)
        row.prop(zd, "live_preview", text="Live Preview", icon="RESTRICT_VIEW_OFF", toggle=True)
        row.prop(zd, "live_preview_mode", text="")
        row.operator("zdepth.refresh_preview", text="", icon="FILE_REFRESH")
        status = preview.status_text()
        if status:  # wrapped: an error can be a sentence long
            from .panels import _wrap

            _wrap(box, status, icon="ERROR" if preview.LIVE.error else "INFO", width=48)

        row = layout.row(align=True)
        row.scale_y = 1.3
        op = row.operator(ZDEPTH_OT_apply_dof.bl_idname, icon="RENDER_RESULT")
        op.diagnostic = False
        op = row.operator(ZDEPTH_OT_apply_dof.bl_idname, text="Focal Plane",
                          icon="HIDE_OFF")
        op.diagnostic = True


_CLASSES = (ZDEPTH_OT_apply_dof, ZDEPTH_OT_dof_pick_focus, RENDER_PT_zdepth_dof)


def register():
    for cls in _CLASSES:
        if cls is RENDER_PT_zdepth_dof and not hasattr(bpy.types, cls.bl_parent_id):
            continue  # the Z-Depth panel is not there (its module is not registered)
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(_CLASSES):
        if getattr(cls, "is_registered", False):
            bpy.utils.unregister_class(cls)
