"""Properties > Render > "Z-Depth" (``RENDER_PT_zdepth``): pass status and set-up, encoding and
range (with the scene's measured depth range), bit depth and codec, export on render and its
output, the precision report in words and a warning row when a choice bands or loses data; and
its "Depth of Field" sub-panel (``RENDER_PT_zdepth_dof``): focus, f-stop, aperture, source and
output of Apply, the live preview."""

import math

import bpy

from ...core.precision import precision_report
from ..refocus.inputs import files_had_dof
from ..refocus.live import LIVE, status_text
from ..render.handlers import last_failure, render_had_dof
from ..scene.camera import focus_distance, scene_depth_range
from ..render.peel import layer_mode
from ..scene.coverage import flat_depth_warning
from ..scene.optics import camera_had_dof
from ..scene.options import LayerOptions, dof_settings, resolve_range
from ..scene.passes import depth_status, engine_has_depth
from .dof_operators import ZDEPTH_OT_apply_dof, ZDEPTH_OT_dof_pick_focus


#: The panel measures the scene's depth range on every redraw up to this many objects.
LIVE_MEASURE_LIMIT = 500


def precision_lines(scene):
    """``(summary, warnings)`` of the precision report for the scene's settings, in words."""
    zd = scene.zdepth
    try:
        near, far = resolve_range(scene)
        bits = "32" if zd.bit_depth == "32" else "16-half"
        focus = None
        cam = scene.camera
        if cam is not None and cam.type == "CAMERA":
            focus = focus_distance(cam)
            if not near < focus < far:
                focus = None
        report = precision_report(zd.encoding, bits, near, far, focus=focus)
    except Exception as exc:  # an impossible range, e.g. near >= far: said once, as a warning
        return "", [str(exc)]
    parts = []
    for step in report.steps:
        if not math.isfinite(step.step):
            parts.append(f"not storable at {_length(step.depth)}")
            continue
        # the decoded depth is float32 itself: no step is finer than one float32 step of depth
        fine = max(step.step, step.depth * 2.0 ** -23)
        parts.append(f"{_length(fine)} at {_length(step.depth)}")
    label = "32-bit" if zd.bit_depth == "32" else "16-bit half"
    summary = f"{zd.encoding} {label}: steps of " + ", ".join(parts)
    return summary, list(report.warnings)


def _length(metres):
    m = abs(metres)
    if m == 0:
        return "0 m"
    if m < 1e-4:
        return f"{metres * 1e6:.3g} µm"
    if m < 1:
        return f"{metres * 1e3:.3g} mm"
    if m >= 1e3:
        return f"{metres / 1e3:.3g} km"
    return f"{metres:.3g} m"


def _wrap(layout, text, icon="NONE", width=60):
    words, line, first = text.split(), "", True
    col = layout.column(align=True)
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            col.label(text=line, icon=icon if first else "BLANK1")
            line, first = word, False
        else:
            line = f"{line} {word}" if line else word
    if line:
        col.label(text=line, icon=icon if first else "BLANK1")


def _split(layout):
    """``layout`` with labels beside the fields, as Blender's own render panels."""
    layout.use_property_split = True
    layout.use_property_decorate = False
    return layout


class _RenderPropertiesPanel:
    """Where both panels live: Properties > Render, closed until opened."""

    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"
    bl_options = {"DEFAULT_CLOSED"}



class RENDER_PT_zdepth(_RenderPropertiesPanel, bpy.types.Panel):
    bl_label = "Z-Depth"
    bl_idname = "RENDER_PT_zdepth"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "zdepth")

    def draw_header(self, context):
        self.layout.prop(context.scene.zdepth, "export_enabled", text="")

    def draw(self, context):
        layout = _split(self.layout)
        scene = context.scene
        zd = scene.zdepth

        # pass status
        ok, status = depth_status(scene)
        row = layout.row(align=True)
        row.label(text=status, icon="CHECKMARK" if ok else "ERROR")
        if engine_has_depth(scene.render.engine):
            sub = row.row(align=True)
            sub.enabled = not ok
            sub.operator("zdepth.setup_passes", text="Set Up", icon="RENDERLAYERS")
        cam = scene.camera
        if cam is not None and cam.type == "CAMERA" and cam.data.type == "PANO":
            layout.label(text="Panoramic camera: no planar depth to export", icon="ERROR")
        elif cam is None:
            layout.label(text="No scene camera", icon="ERROR")

        # encoding and range
        col = layout.column()
        col.prop(zd, "encoding")
        col.prop(zd, "range_source")
        sub = col.column(align=True)
        sub.active = zd.range_source == "MANUAL"
        sub.prop(zd, "near")
        sub.prop(zd, "far")
        live = len(scene.objects) <= LIVE_MEASURE_LIMIT
        measured = scene_depth_range(scene, max_objects=LIVE_MEASURE_LIMIT) if live else None
        row = col.row(align=True)
        if not live:
            row.label(text="Scene depth: many objects, measure on demand",
                      icon="DRIVER_DISTANCE")
            row.operator("zdepth.use_measured_range", text="", icon="EYEDROPPER")
        elif measured is not None:
            row.label(text=f"Scene depth: {_length(measured[0])} to {_length(measured[1])}",
                      icon="DRIVER_DISTANCE")
            row.operator("zdepth.use_measured_range", text="", icon="EYEDROPPER")
        else:
            row.label(text="Scene depth: nothing in view", icon="DRIVER_DISTANCE")
        col.prop(zd, "bit_depth")
        col.prop(zd, "codec")

        # precision in words + warnings
        summary, warnings = precision_lines(scene)
        box = layout.box()
        if summary:
            _wrap(box, summary, icon="INFO")
        for warning in warnings:
            _wrap(box, warning, icon="ERROR")

        # export
        col = layout.column()
        col.prop(zd, "export_enabled")
        sub = col.column()
        sub.active = zd.export_enabled
        sub.prop(zd, "output_dir")
        sub.prop(zd, "name_pattern")
        sub.prop(zd, "beauty")
        sub.prop(zd, "write_preview")
        failure = last_failure()
        if failure is not None:  # until an export succeeds (render/handlers.py)
            frame, message = failure
            _wrap(col.box(), f"Last export failed (frame {frame}): {message}", icon="ERROR")
        # depth layers (render/peel.py)
        if hasattr(zd, "depth_layers"):
            col = layout.column()
            col.prop(zd, "depth_layers")
            sub = col.column()
            sub.active = zd.depth_layers > 1
            if hasattr(zd, "depth_layer_mode"):
                sub.prop(zd, "depth_layer_mode")
            sub.prop(zd, "depth_layer_samples")
            sub.prop(zd, "depth_layer_clips")
            _flat_depth_row(col, scene, zd)
            if zd.depth_layers > 1:
                row = sub.row(align=True)
                row.operator("zdepth.render_depth_layers", icon="RENDER_STILL")
                row.operator("zdepth.render_depth_layers", text="Animation",
                             icon="RENDER_ANIMATION").animation = True
        row = layout.row(align=True)
        row.operator("zdepth.export_render_result", icon="EXPORT")
        row.operator("zdepth.add_node_group", icon="NODETREE", text="Add Compositor Node")


def _flat_depth_row(layout, scene, zd):
    """A warning row when the scene has what a flat Z pass cannot describe (motion blur,
    transparent surfaces) and its depth layers are not slabs (see
    :mod:`..scene.coverage`)."""
    warning = flat_depth_warning(scene)
    if not warning:
        return
    mode = str(getattr(zd, "depth_layer_mode", "AUTO"))
    if zd.depth_layers > 1 and layer_mode(scene, LayerOptions(mode=mode)) == "SLABS":
        return
    _wrap(layout, warning, icon="ERROR")


class RENDER_PT_zdepth_dof(_RenderPropertiesPanel, bpy.types.Panel):
    bl_label = "Depth of Field"
    bl_idname = "RENDER_PT_zdepth_dof"
    bl_parent_id = "RENDER_PT_zdepth"

    @classmethod
    def poll(cls, context):
        return dof_settings(context.scene) is not None

    def draw(self, context):
        layout = _split(self.layout)
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
        # what the render had (the file's header; for the Render Result the camera when it
        # rendered), not the camera now
        if zd.dof_source == "FILES":
            had_dof = files_had_dof(scene)
            what = "The file's render had"
        else:
            had_dof = camera_had_dof(scene, render_result=True)
            # no render seen in this session: the camera now says what a render would have
            what = "The render had" if render_had_dof(scene) is not None else \
                "A render would have"
        if had_dof:
            _wrap(col.box(), f"{what} the camera's depth of field on: it is blurred already "
                             f"and its depth comes from one point of the lens; refocusing "
                             f"blurs it twice", icon="ERROR", width=48)
        col.prop(zd, "dof_output_dir", text="Output")
        col.prop(zd, "dof_output_name", text="Name")
        col.prop(zd, "dof_multilayer", text="Keep All Passes")
        col.prop(zd, "dof_write_png", text="PNG Preview")

        # live preview
        box = layout.box()
        row = box.row(align=True)
        row.prop(zd, "live_preview", text="Live Preview", icon="RESTRICT_VIEW_OFF", toggle=True)
        row.prop(zd, "live_preview_mode", text="")
        row.operator("zdepth.refresh_preview", text="", icon="FILE_REFRESH")
        status = status_text()
        if status:  # wrapped: an error can be a sentence long
            _wrap(box, status, icon="ERROR" if LIVE.error else "INFO", width=48)

        row = layout.row(align=True)
        row.scale_y = 1.3
        op = row.operator(ZDEPTH_OT_apply_dof.bl_idname, icon="RENDER_RESULT")
        op.diagnostic = False
        op = row.operator(ZDEPTH_OT_apply_dof.bl_idname, text="Focal Plane",
                          icon="HIDE_OFF")
        op.diagnostic = True


CLASSES = (RENDER_PT_zdepth, RENDER_PT_zdepth_dof)
