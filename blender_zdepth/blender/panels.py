"""Properties > Render > "Z-Depth" (``RENDER_PT_zdepth``): pass status and set-up, encoding and
range (with the scene's measured depth range), bit depth and codec, export on render and its
output, the precision report in words and a warning row when a choice bands or loses data."""

import math

import bpy

from .scene import passes


#: The panel measures the scene's depth range on every redraw up to this many objects.
LIVE_MEASURE_LIMIT = 500


def precision_lines(scene):
    """``(summary, warnings)`` of the precision report for the scene's settings, in words."""
    from ..core.precision import precision_report
    from .scene.camera import focus_distance
    from .scene.options import resolve_range

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


class RENDER_PT_zdepth(bpy.types.Panel):
    bl_label = "Z-Depth"
    bl_idname = "RENDER_PT_zdepth"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "zdepth")

    def draw_header(self, context):
        self.layout.prop(context.scene.zdepth, "export_enabled", text="")

    def draw(self, context):
        from .scene.camera import scene_depth_range

        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        scene = context.scene
        zd = scene.zdepth

        # pass status
        ok, status = passes.depth_status(scene)
        row = layout.row(align=True)
        row.label(text=status, icon="CHECKMARK" if ok else "ERROR")
        if passes.engine_has_depth(scene.render.engine):
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
        # depth layers (blender/layers.py)
        if hasattr(zd, "depth_layers"):
            col = layout.column()
            col.prop(zd, "depth_layers")
            sub = col.column()
            sub.active = zd.depth_layers > 1
            sub.prop(zd, "depth_layer_samples")
            sub.prop(zd, "depth_layer_clips")
            if zd.depth_layers > 1:
                row = sub.row(align=True)
                row.operator("zdepth.render_depth_layers", icon="RENDER_STILL")
                row.operator("zdepth.render_depth_layers", text="Animation",
                             icon="RENDER_ANIMATION").animation = True
        row = layout.row(align=True)
        row.operator("zdepth.export_render_result", icon="EXPORT")
        row.operator("zdepth.add_node_group", icon="NODETREE", text="Add Compositor Node")


CLASSES = (RENDER_PT_zdepth,)

# Registers CLASSES in order and unregisters them in reverse.
register, unregister = bpy.utils.register_classes_factory(CLASSES)
