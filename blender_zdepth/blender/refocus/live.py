"""Live refocus preview: the "Z-Depth DOF" image follows the Depth of Field panel.

While ``scene.zdepth.live_preview`` is on, every change of focus (mode, distance, object, picked
pixel, the camera's own focus), f-stop, aperture (blades, rotation, ratio, from the panel or the
camera), radius cap or view refreshes the image at preview resolution
(:data:`blender_zdepth.core.refocus.preview.PREVIEW_PIXELS`):

* a change calls :meth:`LivePreview.request` (property update callbacks; a depsgraph handler
  for the camera and the focus object; a frame-change handler; a finished render), which
  (re)arms a ``bpy.app.timers`` timer: changes closer together than :data:`DEBOUNCE_S` make one
  refresh (debounce), though a steady stream of them (a slider dragged) still refreshes every
  :data:`MAX_WAIT_S`;
* the timer (main thread) reads the scene -- lens, aperture, the source's cache key -- into plain
  values (:func:`prepare`) and hands the work to a worker thread (numpy only: load and shrink the
  source when it is new, refocus the small copy); it then polls the thread and, on the main thread
  again, puts the result into the image (:meth:`LivePreview.tick`). The interface never waits
  for the engine;
* the source -- the last Render Result or the chosen input file of the current frame -- is loaded
  and shrunk once and cached (:data:`CACHE`), until another render finishes or the file changes.

``bpy.ops.zdepth.refresh_preview()`` (:mod:`..ui.dof_operators`) does the same refresh
synchronously (headless scripts, tests). Apply (``bpy.ops.zdepth.apply_dof``) still makes the
full-resolution result. :func:`register_handlers` / :func:`unregister_handlers` are called by
:mod:`..ui` (register).
"""

import os
import shutil
import tempfile
import threading
import time

import bpy
from bpy.app.handlers import persistent

from ...core import refocus
from ...core.refocus import preview as core_preview
from ...core.errors import ZDepthError
from ...core.refocus.frame import header_had_dof
from ..compat import add_handlers, remove_handlers
from ..render.peel import is_peel_scene
from ..scene.optics import camera_had_dof, engine_settings, lens_plan
from ..scene.options import dof_settings, setting
from .display import crop_origin, show_image
from .inputs import file_inputs, render_result_input, view_file_inputs

#: Changes closer together than this (seconds) make one refresh.
DEBOUNCE_S = 0.15
#: A steady stream of changes (dragging a slider) still refreshes at least this often (seconds).
MAX_WAIT_S = 0.5
#: How often the timer looks whether the worker has finished (seconds).
POLL_S = 0.04

#: The loaded source: ``{"frame": PreviewFrame or None}`` (its ``key`` says what it holds).
CACHE = {"frame": None}

#: Incremented when a render finishes: the Render Result changed.
_RENDERS = [0]


# ---------------------------------------------------------------------------------------------
# One refresh: prepare (main thread) -> task (any thread) -> show (main thread)


class Refresh:
    """What a refresh produced: ``rgba`` (the preview), ``frame`` (the cached
    :class:`~blender_zdepth.core.refocus.preview.PreviewFrame`), ``lens``, ``focus_source``,
    ``seconds`` (worker time) and ``had_dof`` (the render already had the camera's DOF)."""

    def __init__(self, rgba, frame, lens, focus_source, seconds, had_dof, view):
        self.rgba, self.frame, self.lens = rgba, frame, lens
        self.focus_source, self.seconds, self.had_dof, self.view = (focus_source, seconds,
                                                                     had_dof, view)

    def text(self):
        w, h = self.frame.preview_size
        what = "Focal plane" if self.view == "FOCAL_PLANE" else "Preview"
        line = (f"{what} {w}x{h} in {self.seconds:.2f} s: focus {self.lens.focus_distance:.3g} m"
                f" ({self.focus_source}), f/{self.lens.fstop:g}")
        if self.had_dof:
            line += "; the render already has camera DOF"
        return line


def _layer_name():
    layer = getattr(bpy.context, "view_layer", None)
    return layer.name if layer is not None else None


def source_key(scene, layer=None):
    """What the preview of ``scene`` refocuses, as a hashable key: the Render Result (changes
    with every finished render) or the input file of the current frame (path, size, time)."""
    zd = dof_settings(scene)
    if setting(zd, "dof_source", "RENDER_RESULT") == "FILES":
        frame = scene.frame_current
        view = None
        per_view = view_file_inputs(scene, [frame])  # stereo: the first view, as Apply
        if per_view is not None:                      # shows it
            found, read_view = per_view
            first, path = found[frame][0][:2]
            view = first if read_view else None
        else:
            path = file_inputs(scene, [frame])[frame]
        try:
            st = os.stat(path)
        except OSError:
            raise ZDepthError(f"no rendered file for frame {frame} to preview ({path}): render "
                              f"it, or set Input in the Depth of Field panel")
        return ("FILES", path, st.st_mtime_ns, st.st_size, layer, view)
    return ("RENDER_RESULT", _RENDERS[0], layer)


def _loader(scene, key, layer):
    """A function (no bpy: it may run in a worker thread) that loads and shrinks the source of
    ``key``. The Render Result is saved here first, on the main thread."""
    tempdir = None
    if key[0] == "FILES":
        path = key[1]
    else:
        tempdir = tempfile.mkdtemp(prefix="zdepth_preview_")
        try:
            # uncompressed: the file is read once and removed, and ZIP would be most of the
            # first refresh's time (saving and reading it back)
            path = render_result_input(scene, os.path.join(tempdir, "render_result.exr"),
                                       codec="NONE")
        except BaseException:
            shutil.rmtree(tempdir, ignore_errors=True)
            raise

    def load():
        try:
            view = key[5] if key[0] == "FILES" else None
            loaded = refocus.load_input(path, layer=layer, view=view)
            return core_preview.shrink_frame(loaded.rgba, loaded.depth, header=loaded.header,
                                             key=key, path=path,
                                             data_window=loaded.data_window,
                                             display_window=loaded.display_window)
        finally:
            if tempdir:
                shutil.rmtree(tempdir, ignore_errors=True)
    return load


def prepare(scene):
    """Read what a refresh of ``scene`` needs (main thread); return ``task() -> Refresh``,
    which touches no bpy. :class:`ZDepthError` when the scene cannot be previewed (no camera,
    no render, no file, object focus without an object)."""
    zd = dof_settings(scene)
    layer = _layer_name()
    key = source_key(scene, layer)
    cached = CACHE["frame"]
    if cached is not None and cached.key == key:
        def load():
            return cached
    else:
        load = _loader(scene, key, layer)
    plan = lens_plan(scene)
    settings = engine_settings(scene)
    view = setting(zd, "live_preview_mode", "DEFOCUS")
    camera_dof = camera_had_dof(scene, render_result=key[0] == "RENDER_RESULT")
    try:
        _SIGNATURES[scene.name] = camera_signature(scene)  # what this refresh sees
    except Exception:
        pass

    def task():
        t0 = time.perf_counter()
        frame = load()
        lens, focus_source = plan(frame)
        rgba = core_preview.render_preview(frame, lens, settings, view=view)
        recorded = header_had_dof(frame.header)
        had = camera_dof if recorded is None else recorded
        return Refresh(rgba, frame, lens, focus_source, time.perf_counter() - t0, had, view)
    return task


def show(result):
    """Put a :class:`Refresh` into the "Z-Depth DOF" image (main thread) and keep its source
    cached; return the image."""
    CACHE["frame"] = result.frame
    frame = result.frame
    origin = crop_origin(frame.data_window, frame.display_window)  # a crop: its place
    return show_image(result.rgba, full_size=frame.size, origin=origin)


def _redraw_panels():
    wm = getattr(bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in {"PROPERTIES", "IMAGE_EDITOR"}:
                area.tag_redraw()


def _message(exc):
    return str(exc) if isinstance(exc, ZDepthError) else f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------------------------
# The live loop: debounce on a timer, compute in a worker thread


class LivePreview:
    """The debounced refresh loop (one per Blender session: :data:`LIVE`).

    :meth:`request` arms the timer; :meth:`tick` is the timer function (returns the seconds
    until it wants to run again, or None when idle). ``status`` / ``error``: the last outcome,
    shown in the panel; ``refreshes``: how many refreshes were shown."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.scene_name = None
        self.due = None
        self.first_request = 0.0
        self.thread = None
        self.outcome = None
        self.status = ""
        self.error = ""
        self.refreshes = 0
        self.last = None

    @property
    def busy(self):
        """True while a refresh is waiting for its debounce or computing."""
        return self.due is not None or self.thread is not None

    def request(self, scene, delay=DEBOUNCE_S):
        """Refresh ``scene``'s preview ``delay`` seconds after the last request (but no later
        than :data:`MAX_WAIT_S` after the first one still waiting, so that dragging a slider
        refreshes as it goes)."""
        now = time.monotonic()
        if self.due is None:
            self.first_request = now
        self.scene_name = scene.name
        self.due = min(now + delay, self.first_request + MAX_WAIT_S)
        if not bpy.app.timers.is_registered(_tick):
            bpy.app.timers.register(_tick, first_interval=delay)

    def cancel(self):
        """Forget a pending refresh (one computing still shows when done)."""
        self.due = None

    def tick(self):
        if self.thread is not None:
            if self.thread.is_alive():
                return POLL_S
            self.thread = None
            self._collect()
        if self.due is None:
            return None
        wait = self.due - time.monotonic()
        if wait > 0:
            return wait
        self.due = None
        scene = bpy.data.scenes.get(self.scene_name or "")
        if scene is None or not setting(dof_settings(scene), "live_preview", False):
            return None
        try:
            task = prepare(scene)
        except Exception as exc:  # said in the panel; the next change tries again
            self.failed(exc)
            return None
        self.outcome = None
        self.thread = threading.Thread(target=self._work, args=(task,),
                                       name="zdepth-live-preview", daemon=True)
        self.thread.start()
        return POLL_S

    def _work(self, task):
        try:
            self.outcome = ("ok", task())
        except Exception as exc:
            self.outcome = ("error", exc)

    def _collect(self):
        kind, value = self.outcome or ("error", RuntimeError("the preview worker stopped"))
        self.outcome = None
        if kind == "ok":
            self.shown(value)
        else:
            self.failed(value)

    def shown(self, result):
        show(result)
        self.refreshes += 1
        self.last = result
        self.status, self.error = result.text(), ""
        _redraw_panels()

    def failed(self, exc):
        """Show why the refresh failed (``exc``) in the panel."""
        self.error = _message(exc)
        self.status = ""
        _redraw_panels()


LIVE = LivePreview()


def _tick():
    try:
        return LIVE.tick()
    except Exception as exc:  # never leave a broken timer behind
        LIVE.thread = None
        LIVE.failed(exc)
        return None


def status_text():
    """The line the panel shows under the Live Preview toggle ('' when there is nothing)."""
    return LIVE.error or LIVE.status


def settings_changed(scene):
    """A Depth of Field setting of ``scene`` changed (property update callback)."""
    if setting(dof_settings(scene), "live_preview", False):
        LIVE.request(scene)


def toggled(scene):
    """Live Preview was ticked or unticked."""
    if setting(dof_settings(scene), "live_preview", False):
        LIVE.request(scene, delay=0.0)
    else:
        LIVE.cancel()


def camera_signature(scene):
    """What of the camera and the focus object a preview depends on, as a tuple (so a
    depsgraph update that changed none of it refreshes nothing)."""
    cam = scene.camera
    if cam is None or cam.type != "CAMERA":
        return None
    data = cam.data
    dof = data.dof
    items = [tuple(cam.matrix_world.col[3]), tuple(cam.matrix_world.col[2]), data.lens,
             data.sensor_width, data.sensor_height, data.sensor_fit, dof.focus_distance,
             dof.aperture_fstop, dof.aperture_blades, dof.aperture_rotation, dof.aperture_ratio,
             dof.use_dof]
    for obj in (dof.focus_object, setting(dof_settings(scene), "dof_focus_object", None)):
        items.append(None if obj is None else tuple(obj.matrix_world.translation))
    return tuple(items)


_SIGNATURES = {}


@persistent
def _on_depsgraph_update(scene, depsgraph=None):
    if not setting(dof_settings(scene), "live_preview", False):
        return
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        sig = camera_signature(scene)
    except Exception:
        return
    if _SIGNATURES.get(scene.name, sig) != sig:
        _SIGNATURES[scene.name] = sig
        LIVE.request(scene)


@persistent
def _on_frame_change(scene, depsgraph=None):
    if setting(dof_settings(scene), "live_preview", False) and \
            threading.current_thread() is threading.main_thread():
        LIVE.request(scene)


@persistent
def _on_render_complete(scene, *args):
    if is_peel_scene(scene):
        return  # a depth-layer pass: the user's Render Result did not change
    _RENDERS[0] += 1  # the Render Result is new: reload it on the next refresh
    if setting(dof_settings(scene), "live_preview", False) and \
            threading.current_thread() is threading.main_thread():
        LIVE.request(scene)


@persistent
def _on_load_pre(*args):
    LIVE.reset()
    CACHE["frame"] = None
    _SIGNATURES.clear()


_HANDLERS = (("depsgraph_update_post", _on_depsgraph_update),
             ("frame_change_post", _on_frame_change),
             ("render_complete", _on_render_complete),
             ("load_pre", _on_load_pre))


def register_handlers():
    add_handlers(_HANDLERS)


def unregister_handlers():
    remove_handlers(_HANDLERS)
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
    LIVE.reset()
    CACHE["frame"] = None
    _SIGNATURES.clear()
