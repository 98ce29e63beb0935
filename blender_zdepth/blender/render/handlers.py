"""Export on render: render handlers that write each rendered frame's depth EXR, and the queue
of depth layers waiting for the main thread.

How it works: a ``render_post`` handler runs after every rendered frame (F12, Ctrl+F12 and
``blender -b file.blend -a`` alike). When the scene's ``zdepth.export_enabled`` is on it exports
the frame as :func:`.export.export_render_result` does: the Render Result saved as a temporary
multilayer float EXR (with the scene's image settings switched to multilayer EXR for that call
only and restored right after), its ``Combined`` and ``Depth.Z`` read back, our depth file
written. ``render_init`` turns a missing Z pass on for that render only; ``render_complete`` and
``render_cancel`` put it back.

With the scene's Depth Layers above 1 each frame also gets its extra passes and a deep EXR
(:mod:`.peel`): rendered by the handler itself when it runs on the main thread (``blender -b``
and the bpy module, where a handler may start another render of a second scene, up to Blender
5.0), in a child process on a saved copy of the .blend where it may not (5.1 on: a render
started from ``render_post`` breaks an animation render; :mod:`.isolated`), or -- in
Blender's window, where F12 and Ctrl+F12 run the handlers in the render job's thread and no
render may start there -- queued and rendered by a timer on the main thread once the render is
over (:func:`render_queued_layers`). Blender writes its own output image of a frame before
``render_post`` runs, and the passes render a temporary copy of the scene: its images and
Render Result stay the beauty.

:func:`register_handlers` / :func:`unregister_handlers` are called by :mod:`..ui` (register).
"""

import os
import tempfile
import threading
import types
from contextlib import nullcontext
from dataclasses import dataclass

import bpy
import numpy as np
from bpy.app.handlers import persistent

from ...core import exr as core_exr
from ...core.errors import UsageError
from ..compat import add_handlers, remove_handlers, renders_from_render_handlers
from ..scene.camera import check_camera
from ..scene.options import ExportOptions, LayerOptions, check_options
from ..scene.passes import rendering_view_layers
from ..scene.views import STEREO_LAYERS, rendered_views
from .export import (DIRECT_KEY, Rendered, drop_stale_deep, export_render_result, frame_folder,
                     layer_bounds, read_frame, render_layers, shared_flags, write_deep,
                     write_flat)
from .isolated import render_passes_isolated
from .peel import PassCancelled, is_peel_scene
from .result import remove_quietly


class _State:
    temp_z = []  # (scene, view layer) whose Z pass is on for the current render only
    errors = []  # (frame, message) of failed exports since the last render_init
    written = []  # depth paths written since the last render_init
    last_render = None  # (scene name, frame) of the latest render_post: what Render Result holds
    queue_due = False  # set by a render job's thread: queued depth layers wait for the main thread
    last_failure = None  # (frame, message) of the last failed export, until one succeeds
    render_dof = None  # (scene name, camera's depth of field on) of the latest render_post
    to_report = []  # failure messages waiting for the main thread's report (_report_failures)


_state = _State()


def last_render_frame(scene):
    """The frame the Render Result holds when ``scene`` rendered it last (after an animation
    render Blender 5.0 puts ``frame_current`` back to where it was), else ``frame_current``."""
    last = _state.last_render
    if last is not None and last[0] == scene.name:
        return last[1]
    return scene.frame_current


def last_errors():
    """``[(frame, message)]`` of the exports that failed during the latest render."""
    return list(_state.errors)


def _note_camera_dof(scene):
    """Remember whether the render that just finished had the camera's own depth of field: what
    the Render Result holds (the panel and Apply warn from this, not from the camera now)."""
    cam = scene.camera
    _state.render_dof = (scene.name, bool(cam is not None and cam.type == "CAMERA"
                                          and cam.data.dof.use_dof))


def render_had_dof(scene):
    """Whether ``scene``'s latest render (the Render Result) had the camera's depth of field:
    True / False, or None when this session has not seen it render."""
    last = _state.render_dof
    if last is not None and last[0] == scene.name:
        return last[1]
    return None


def last_failure():
    """``(frame, message)`` of the last export on render that failed -- the latest render's
    last failure, else one of an earlier render -- until a later render's export succeeds; None
    when there is none. The panel lists it."""
    if _state.errors:
        return _state.errors[-1]
    return _state.last_failure


def _export_failed(frame, message):
    """A failed export of ``frame``: kept for the panel (:func:`last_failure`) and queued for a
    report in Blender's window (:func:`_report_failures`, main thread), besides the console
    line. Before: F12 returned FINISHED and the console line was all the user got."""
    _state.errors.append((frame, message))
    _state.last_failure = (frame, message)
    _state.to_report.append(f"Z-Depth: frame {frame}: depth export failed: {message}")
    del _state.to_report[:-20]  # background mode has no timer to take them: keep a few


def _export_succeeded():
    """An export of this render succeeded: an earlier render's failure is cleared (one of this
    render stays listed)."""
    if not _state.errors:
        _state.last_failure = None


def _report_failures():
    """Main-thread timer of Blender's window (registered by :func:`register_handlers`): report
    the failures render handlers queued -- they may run in the render job's thread, where no
    operator may run -- in the status bar and the Info editor (an operator's report) and in a
    small popup. Runs forever."""
    if _state.to_report:
        messages = []
        while _state.to_report:  # pop(0): one step under the interpreter lock, whatever the
            messages.append(_state.to_report.pop(0))  # render thread appends meanwhile
        wm = getattr(bpy.context, "window_manager", None)
        if bpy.app.background or wm is None or not wm.windows:
            return POLL_S  # no window to show it in (the console has it; the panel lists it)
        try:
            with _window_override():
                text = messages[-1] if len(messages) == 1 else \
                    f"{messages[-1]} (and {len(messages) - 1} more failure(s): see the console)"
                bpy.ops.zdepth.report_failure("EXEC_DEFAULT", message=text)
                bpy.context.window_manager.popup_menu(
                    lambda menu, _context: menu.layout.label(text=text),
                    title="Z-Depth Export Failed", icon="ERROR")
        except Exception:  # a timer must not raise into Blender's event loop
            pass
    return POLL_S


def _is_layer_pass(scene):
    return is_peel_scene(scene)


@persistent
def _on_render_init(scene, *args):
    if _is_layer_pass(scene):
        return  # a depth-layer pass (render/peel.py): not a render of the user's
    _state.errors = []
    _state.written = []
    _state.temp_z = []
    zd = getattr(scene, "zdepth", None)
    if shared_flags().get(DIRECT_KEY) or zd is None or not zd.export_enabled:
        return
    # export is on but a rendering view layer lacks the Z pass (turned off by hand, or a layer
    # added later): turn it on for this render only, restored when the render ends
    try:
        layers = rendering_view_layers(scene)
    except Exception:  # no usable context (a render thread)
        layers = [layer for layer in scene.view_layers if layer.use]
    for layer in layers:
        if not layer.use_pass_z:
            layer.use_pass_z = True
            _state.temp_z.append((scene.name, layer.name))
            print(f"blender_zdepth: Z pass turned on for view layer {layer.name!r} for this "
                  f"render (depth export is on)")


def _restore_z_passes():
    for scene_name, layer_name in _state.temp_z:
        sc = bpy.data.scenes.get(scene_name)
        layer = sc.view_layers.get(layer_name) if sc is not None else None
        if layer is not None:
            layer.use_pass_z = False
    _state.temp_z = []


@persistent
def _on_render_end(scene, *args):
    """render_complete: the Z passes turned on for this render go back; frames whose depth
    layers were queued (the handlers ran in a render job's thread) get them from a timer on the
    main thread once the render job is over."""
    if _is_layer_pass(scene):
        return
    _restore_z_passes()
    if len(LAYER_QUEUE):
        _schedule_queue()


@persistent
def _on_render_cancel(scene, *args):
    """render_cancel: the Z passes go back; depth layers queued by the cancelled render are
    dropped (their flat files stay)."""
    if _is_layer_pass(scene):
        return
    _restore_z_passes()
    dropped = LAYER_QUEUE.drop()
    if dropped:
        print(f"blender_zdepth: the render was cancelled: the depth layers of "
              f"{_frames_text(dropped)} are not rendered (their flat depth files are written)")


def _on_main_thread():
    """True when the caller runs on the interpreter's main thread. Render handlers do during
    ``blender -b`` (``-f`` / ``-a``) and in the bpy module, where a handler may start another
    render; in Blender's window F12 and Ctrl+F12 run them in the render job's thread, where no
    operator may run."""
    return threading.current_thread() is threading.main_thread()


def _layer_options_for_render(scene, frame):
    """The scene's depth-layer settings when this frame's export should render layers, else None
    (one layer; a stereo render, refused with one line; settings that cannot be rendered, an
    error)."""
    try:
        opts = LayerOptions.from_scene(scene)
        if not opts.enabled:
            return None
        if rendered_views(scene):
            print(f"blender_zdepth: frame {frame}: {STEREO_LAYERS}")
            return None
        check_options(scene, opts)
    except UsageError as exc:
        _state.errors.append((frame, f"depth layers not rendered: {exc}"))
        print(f"blender_zdepth: frame {frame}: depth layers not rendered: {exc}")
        return None
    return opts


def _export_on_render(scene, frame):
    """The render_post handler's export of ``frame``: the flat file(s), and with Depth Layers
    above 1 the extra passes and the deep file -- now on the main thread (``blender -b``, the
    bpy module), or queued for :func:`render_queued_layers` from a render job's thread."""
    options = ExportOptions.from_scene(scene)
    layer_opts = _layer_options_for_render(scene, frame)
    if layer_opts is None:
        out = export_render_result(scene, options, frame=frame)
        for one in out.get("views", [out]):
            _state.written.append(one["depth"])
            print(f"blender_zdepth: frame {frame}: depth written to {one['depth']}")
        return
    cam = check_camera(scene)
    folder = frame_folder(options, frame)
    rendered = read_frame(scene, options, frame, cam, folder)
    out = write_flat(rendered, options)
    drop_stale_deep(rendered.paths)  # its deep file comes after the passes, if they succeed
    _state.written.append(out["depth"])
    print(f"blender_zdepth: frame {frame}: depth written to {out['depth']}")
    if not _on_main_thread():
        _keep_for_later(rendered, folder)
        LAYER_QUEUE.add(_Queued(scene.name, bpy.data.filepath, layer_opts, rendered, folder))
        print(f"blender_zdepth: frame {frame}: depth layers queued: {layer_opts.layers - 1} "
              f"extra pass(es) render when the render has finished")
        return
    _layers_now(scene, layer_opts, rendered, folder, isolated=_passes_in_child())


def _passes_in_child():
    """True where the render_post handler must not render the passes itself (Blender 5.3: a
    render started there breaks an animation render, see
    :func:`..compat.renders_from_render_handlers`): they render in a child process
    (:mod:`.isolated`)."""
    return not renders_from_render_handlers()


def _layers_now(scene, layer_opts, rendered, folder, *, isolated=False):
    """Render ``rendered``'s passes (``scene`` at its frame, main thread; with ``isolated`` in
    a child process) and write its deep file; a failure, a crash of the child or a cancel is
    reported (the flat file stays, no deep file) and re-raised as :class:`.peel.PassCancelled`
    for a cancel."""
    frame = rendered.frame
    try:
        if isolated:
            peeled = render_passes_isolated(scene, layer_opts, rendered)
        else:
            peeled = render_layers(scene, layer_opts, rendered, folder)
        deep = write_deep(rendered, peeled)
    except (Exception, KeyboardInterrupt) as exc:
        cancelled = isinstance(exc, (KeyboardInterrupt, PassCancelled))
        why = "cancelled" if isinstance(exc, KeyboardInterrupt) else str(exc)
        _state.errors.append((frame, f"depth layers failed: {why}"))
        print(f"blender_zdepth: frame {frame}: depth layers failed: {why} (the flat depth file "
              f"is written; no deep file for this frame)")
        if cancelled:
            raise PassCancelled(why)
        return None
    clips = ", ".join(f"{c:g}" for c in layer_bounds(peeled))
    what = "slabs" if peeled and peeled[0].end is not None else "clip"
    print(f"blender_zdepth: frame {frame}: depth layers ({what} {clips}) written to {deep}")
    return deep


def _keep_for_later(rendered, folder):
    """Write ``rendered``'s beauty and linear depth (float32, lossless) to a hidden file in
    ``folder`` -- its path in ``rendered.saved`` -- and let go of the arrays (a queued frame:
    read back by :func:`_load_kept`)."""
    fd, path = tempfile.mkstemp(prefix=".zdepth_pending_", suffix=".exr", dir=folder)
    os.close(fd)
    channels = {"Z": rendered.loaded.depth}
    if rendered.loaded.rgba is not None:
        channels["RGBA"] = rendered.loaded.rgba
    try:
        core_exr.write_exr(path, channels, codec="zip", overwrite=True,
                           data_window=getattr(rendered.loaded, "data_window", None),
                           display_window=getattr(rendered.loaded, "display_window", None))
    except BaseException:
        remove_quietly(path)
        raise
    rendered.saved = path
    rendered.loaded = None


def _load_kept(rendered):
    """The beauty and depth :func:`_keep_for_later` wrote, as ``rendered.loaded``."""
    image = core_exr.read_exr(rendered.saved)
    channels = image.channels
    rgba = np.stack([channels[c] for c in "RGBA"], axis=-1) if "A" in channels else None
    rendered.loaded = types.SimpleNamespace(rgba=rgba, depth=channels["Z"],
                                            data_window=image.data_window,
                                            display_window=image.display_window)


@persistent
def _on_render_post(scene, *args):
    if _is_layer_pass(scene):
        return
    _state.last_render = (scene.name, scene.frame_current)
    _note_camera_dof(scene)
    zd = getattr(scene, "zdepth", None)
    if shared_flags().get(DIRECT_KEY) or zd is None or not zd.export_enabled:
        return
    frame = scene.frame_current
    if scene.camera is None:  # Blender refuses to render then: nothing rendered, nothing failed
        print(f"blender_zdepth: frame {frame}: no depth exported: the render did not run (the "
              f"scene has no camera)")
        return
    try:
        _export_on_render(scene, frame)
    except Exception as exc:  # a handler must not break the render; say why, loudly
        if isinstance(exc, PassCancelled):
            return  # said already
        _export_failed(frame, str(exc))
        print(f"blender_zdepth: frame {frame}: depth export failed: {exc}")
        return
    _export_succeeded()


# -- depth layers of renders whose handlers ran off the main thread (F12 in the window) ---------

@dataclass
class _Queued:
    """A frame whose depth layers wait for the main thread: the scene's name and the .blend it
    belongs to, the layer settings of the render, the frame read back (its beauty and depth
    kept in ``rendered.saved``) and its output folder."""

    scene: str
    blend: str
    options: object
    rendered: Rendered
    folder: str


class _LayerQueue:
    """Frames queued by render handlers (any thread), taken by the main thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items = []

    def __len__(self):
        with self._lock:
            return len(self._items)

    def add(self, item):
        with self._lock:
            self._items.append(item)

    def take(self):
        with self._lock:
            items, self._items = self._items, []
        return items

    def drop(self):
        """Empty the queue, removing the kept files; returns the dropped items."""
        items = self.take()
        for item in items:
            remove_quietly(item.rendered.saved)
        return items

    def frames(self):
        with self._lock:
            return [item.rendered.frame for item in self._items]


#: Frames whose depth layers wait for the main thread (see :func:`render_queued_layers`).
LAYER_QUEUE = _LayerQueue()


def _frames_text(items):
    frames = [item.rendered.frame for item in items]
    return f"frame {frames[0]}" if len(frames) == 1 else \
        f"{len(frames)} frames ({frames[0]}-{frames[-1]})"


def _render_job_running():
    try:
        return bool(bpy.app.is_job_running("RENDER"))
    except (AttributeError, TypeError, ValueError):
        return False


#: Seconds between two looks of :func:`_queue_poller` at the queue (Blender's window only).
POLL_S = 0.5


def _schedule_queue():
    """Have the queued depth layers rendered on the main thread once the render job is over.

    On the main thread the timer that does it (:func:`_layer_queue_timer`) is registered here.
    From render_complete in Blender's window, i.e. from the render job's thread, no timer is
    registered (Blender's timer list is not guarded against other threads): the queue is only
    marked due, and :func:`_queue_poller` -- a timer the add-on registered on the main thread --
    registers it there. Neither runs with a real window in the tests (none here): they call
    the two functions as Blender would."""
    if _on_main_thread():
        if not bpy.app.timers.is_registered(_layer_queue_timer):
            bpy.app.timers.register(_layer_queue_timer, first_interval=0.2, persistent=True)
    else:
        _state.queue_due = True  # one attribute store: atomic under the interpreter lock


def _queue_poller():
    """Main-thread timer of Blender's window (registered by :func:`register_handlers`): when a
    render job marked the depth-layer queue due, register :func:`_layer_queue_timer`. Runs
    forever."""
    if _state.queue_due:
        _state.queue_due = False
        if len(LAYER_QUEUE) and not bpy.app.timers.is_registered(_layer_queue_timer):
            bpy.app.timers.register(_layer_queue_timer, first_interval=0.0, persistent=True)
    return POLL_S


def _layer_queue_timer():
    """Timer (main thread): once no render job runs, render every queued frame's depth layers."""
    if _render_job_running():
        return 0.5  # the render job is still finishing (or a new one started): later
    try:
        render_queued_layers()
    except Exception as exc:  # a timer must not raise into Blender's event loop
        print(f"blender_zdepth: depth layers failed: {exc}")
    return None


def _window_override():
    """A context override with a window (a timer's context has none), when Blender has one."""
    wm = getattr(bpy.context, "window_manager", None)
    if bpy.app.background or getattr(bpy.context, "window", None) is not None or wm is None \
            or not wm.windows:
        return nullcontext()
    return bpy.context.temp_override(window=wm.windows[0])


def _tell(text, error=False):
    """Print ``text`` to the console and, in Blender's window, show it in a small popup."""
    print(f"blender_zdepth: {text}")
    wm = getattr(bpy.context, "window_manager", None)
    if bpy.app.background or wm is None or not wm.windows:
        return  # no window to show it in (the bpy module has a stand-in one: not for popups)
    try:
        with _window_override():
            bpy.context.window_manager.popup_menu(
                lambda menu, _context: menu.layout.label(text=text),
                title="Depth Layers", icon="ERROR" if error else "INFO")
    except Exception:
        pass


def render_queued_layers():
    """Render the depth layers of every queued frame, in order, on the main thread, and write
    their deep files: the frames that export on render rendered while its handlers ran in a
    render job's thread (F12 / Ctrl+F12 in Blender's window), where no render may start. This
    is what :func:`_layer_queue_timer` calls once such a render is over.

    Per frame: the scene goes to that frame (``frame_set``: animated objects and camera where
    they were), the beauty and depth come from the file kept when the frame rendered (the
    Render Result's own values: the deep file matches its flat file exactly), the passes render
    as everywhere else (:func:`.peel.render_passes`, settings restored), the deep file is
    written and the kept file removed. A frame that fails is reported and skipped; a cancel
    (Esc) drops the frames left. Afterwards each scene is back at the frame it was at. Returns
    the deep paths written."""
    items = LAYER_QUEUE.take()
    if not items:
        return []
    written, failed, skipped = [], [], []
    frames_before = {}
    pending = list(items)
    try:
        with _window_override():
            while pending:
                item = pending.pop(0)
                rendered = item.rendered
                try:
                    scene = bpy.data.scenes.get(item.scene)
                    if scene is None or bpy.data.filepath != item.blend or \
                            scene.camera is None:
                        print(f"blender_zdepth: frame {rendered.frame}: depth layers not "
                              f"rendered: the scene {item.scene!r} is no longer open")
                        skipped.append(rendered.frame)
                        continue
                    frames_before.setdefault(scene.name, (scene, scene.frame_current))
                    if scene.frame_current != rendered.frame:
                        scene.frame_set(rendered.frame)
                    _load_kept(rendered)
                    deep = _layers_now(scene, item.options, rendered, item.folder)
                    (written if deep else failed).append(deep or rendered.frame)
                except PassCancelled:
                    failed.append(rendered.frame)
                    skipped.extend(other.rendered.frame for other in pending)
                    break  # the frames left: their kept files go below
                except Exception as exc:
                    _state.errors.append((rendered.frame, f"depth layers failed: {exc}"))
                    print(f"blender_zdepth: frame {rendered.frame}: depth layers failed: {exc}")
                    failed.append(rendered.frame)
                finally:
                    rendered.loaded = None
                    remove_quietly(rendered.saved)
    finally:
        for item in pending:
            remove_quietly(item.rendered.saved)
        for scene, frame in frames_before.values():
            if scene.frame_current != frame:
                scene.frame_set(frame)
    text = f"depth layers: {len(written)} deep file(s) written" + \
        (f" to {os.path.dirname(written[0])}" if written else "")
    if failed:
        text += f"; failed: frame(s) {', '.join(map(str, failed))}"
    if skipped:
        text += f"; not rendered: frame(s) {', '.join(map(str, skipped))}"
    _tell(text, error=bool(failed or skipped))
    return written


_HANDLERS = (("render_init", _on_render_init), ("render_post", _on_render_post),
             ("render_complete", _on_render_end), ("render_cancel", _on_render_cancel))


def register_handlers():
    add_handlers(_HANDLERS)
    # Blender's window: the main thread looks for depth layers queued by render jobs (a timer
    # registered here, on the main thread; none in background mode, where nothing is queued)
    if not bpy.app.background and not bpy.app.timers.is_registered(_queue_poller):
        bpy.app.timers.register(_queue_poller, first_interval=POLL_S, persistent=True)
    if not bpy.app.background and not bpy.app.timers.is_registered(_report_failures):
        bpy.app.timers.register(_report_failures, first_interval=POLL_S, persistent=True)


def unregister_handlers():
    remove_handlers(_HANDLERS)
    for timer in (_layer_queue_timer, _queue_poller, _report_failures):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    _state.queue_due = False
    LAYER_QUEUE.drop()
