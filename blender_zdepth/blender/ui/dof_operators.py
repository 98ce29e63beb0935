"""Operators of the Depth of Field sub-panel: Apply (``zdepth.apply_dof``: the
:class:`~..refocus.batch.DofBatch` run synchronously when Blender runs headless, from a modal
timer otherwise -- progress bar, status text, Esc cancels between frames), picking the focus
pixel in an Image Editor (``zdepth.dof_pick_focus``) and refreshing the live preview now
(``zdepth.refresh_preview``).
"""

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty

from ...core import batch as core_batch
from ...core.errors import ZDepthError
from ..refocus.batch import DofBatch
from ..refocus.display import IMAGE_NAME, pixel_under_mouse
from ..refocus.inputs import panel_frames
from ..refocus.live import CACHE, LIVE, prepare
from ..scene.camera import check_camera
from ..scene.optics import DOUBLE_DOF_WARNING, camera_had_dof
from ..scene.options import dof_settings, setting

_SOURCES = [
    ("PANEL", "Panel Setting", "Use the Depth of Field panel's source (Render Result or files)"),
    ("RENDER_RESULT", "Render Result", "The latest render (must have the Z pass)"),
    ("FILES", "Rendered Files", "Multilayer EXR files on disk, over the scene's frame range"),
]


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
            source = setting(dof_settings(scene), "dof_source", "RENDER_RESULT")
        frames = None
        if source == "FILES" and (self.frame_start >= 0 or self.frame_end >= 0):
            a = self.frame_start if self.frame_start >= 0 else scene.frame_start
            b = self.frame_end if self.frame_end >= 0 else scene.frame_end
            if b < a:
                raise ZDepthError(f"frame range {a}-{b} runs backwards")
            frames = list(range(a, b + 1))
        elif source == "FILES" and not self.diagnostic:
            frames = panel_frames(scene)  # the sub-panel's Start / End / Step
        # one clear error before any work, not one failed frame
        check_camera(scene, perspective=True)
        zd = dof_settings(scene)
        if (setting(zd, "dof_focus_mode", "CAMERA") == "OBJECT"
                and setting(zd, "dof_focus_object", None) is None):
            raise ZDepthError("focus on an object was chosen but no object is set in the "
                              "Depth of Field panel")
        layer = getattr(context, "view_layer", None)
        return DofBatch(scene, source, frames=frames, diagnostic=self.diagnostic,
                        skip_existing=self.skip_existing,
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
        # a diagnostic writes nothing: print what the status bar says, not "1 written"; a failed
        # frame whose progress line the console has already (execute) is not printed again
        if self.diagnostic and not report.failed:
            print(head)
        elif getattr(self, "_progress_printed", False):
            print(batch.describe(report.summary(details=False)))
        else:
            print("\n".join(text))
        return {"FINISHED"} if (report.written or report.skipped) else {"CANCELLED"}

    def _warn_before(self, scene):
        """Say before any work when the render already had the camera's depth of field."""
        source = self.source
        if source == "PANEL":
            source = setting(dof_settings(scene), "dof_source", "RENDER_RESULT")
        if not self.diagnostic and source == "RENDER_RESULT" and \
                camera_had_dof(scene, render_result=True):
            self.report({"WARNING"}, DOUBLE_DOF_WARNING)

    def execute(self, context):
        try:
            batch = self._make_batch(context)
        except ZDepthError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._progress_printed = True
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


class ZDEPTH_OT_refresh_preview(bpy.types.Operator):
    """Refresh the depth-of-field preview (the 'Z-Depth DOF' image, at preview resolution) now,
    with the Depth of Field panel's settings"""

    bl_idname = "zdepth.refresh_preview"
    bl_label = "Refresh Depth of Field Preview"
    bl_options = {"REGISTER"}

    reload: bpy.props.BoolProperty(name="Reload", default=False,
                                   description="Load the source again (the Render Result or "
                                               "the file) instead of the cached copy")

    @classmethod
    def poll(cls, context):
        return dof_settings(context.scene) is not None

    def execute(self, context):
        if self.reload:
            CACHE["frame"] = None  # the live preview's cached source
        try:
            result = prepare(context.scene)()
        except ZDepthError as exc:
            LIVE.failed(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        LIVE.shown(result)
        if result.had_dof:
            self.report({"WARNING"}, DOUBLE_DOF_WARNING)
        self.report({"INFO"}, result.text())
        return {"FINISHED"}


CLASSES = (ZDEPTH_OT_apply_dof, ZDEPTH_OT_dof_pick_focus, ZDEPTH_OT_refresh_preview)
