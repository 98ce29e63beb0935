"""Scene settings of blender_zdepth, saved in the .blend: ``scene.zdepth``
(:class:`ZDepthSettings`), and their update callbacks.

The export settings (encoding, range, bit depth, codec, output, beauty placement) drive the
depth export (:mod:`.render`); the ``dof_*`` settings the depth of field (:mod:`.refocus`). Nobody
imports this module to read them: the readers of :mod:`.scene` use ``getattr(scene, "zdepth")``
and their own defaults (:func:`.scene.options.resolve_range` turns the range settings into
``(near, far)``). :mod:`.ui` registers the group and ``Scene.zdepth``.
"""

import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, IntVectorProperty,
                       PointerProperty, StringProperty)

from ..core.encodings import ENCODINGS
from .compat import compositor_tree, path_options
from .refocus.live import settings_changed, toggled
from .scene.passes import rendering_view_layers

ENCODING_ITEMS = [
    ("log", "Log", "ln(z/near)/ln(far/near): the same relative precision at every distance "
                   "(recommended)"),
    ("linear", "Linear", "Planar camera depth in scene units, as Blender's Z pass"),
    ("normalized", "Normalized", "(z-near)/(far-near): 0 at near, 1 at far"),
    ("inverse", "Inverse", "1/z, like Nuke's depth.Z (background 0)"),
]
assert tuple(i[0] for i in ENCODING_ITEMS) == ENCODINGS

RANGE_ITEMS = [
    ("CAMERA", "Camera Clip", "Near and far from the camera's clip start and end"),
    ("SCENE", "Scene Bounds", "Near and far measured from the visible objects' bounding boxes"),
    ("MANUAL", "Manual", "Near and far typed in"),
]

BIT_DEPTH_ITEMS = [
    ("32", "Float (Full)", "32-bit float: exact to about 1e-7 of the depth (recommended)"),
    ("16", "Float (Half)", "16-bit half float: smaller files, 1e-3 relative precision at best"),
]

CODEC_ITEMS = [
    ("ZIP", "ZIP", "Lossless, 16 scanlines per block (recommended)"),
    ("PIZ", "PIZ", "Lossless wavelet, good for noisy images"),
    ("ZIPS", "ZIPS", "Lossless, one scanline per block"),
    ("RLE", "RLE", "Lossless run-length"),
    ("NONE", "None", "No compression"),
]

BEAUTY_ITEMS = [
    ("SAME_FILE", "Same File", "Write the beauty as R, G, B, A in the depth EXR"),
    ("BESIDE", "Beside", "Write the beauty as its own EXR next to the depth EXR"),
    ("NONE", "None", "Depth only"),
]

FOCUS_ITEMS = [
    ("CAMERA", "Camera", "The camera's own focus (focus object or distance)"),
    ("DISTANCE", "Distance", "A distance typed in"),
    ("OBJECT", "Object", "The distance to an object"),
    ("PIXEL", "Pixel", "The depth under a pixel of the frame"),
]

DOF_SOURCE_ITEMS = [
    ("RENDER_RESULT", "Render Result", "The latest render (needs the Z pass)"),
    ("FILES", "Rendered Files", "EXR files on disk"),
]


def _export_update(self, context):
    scene = self.id_data
    if self.export_enabled:
        _enable_z_for_export(scene, self)
    else:
        _undo_z_for_export(scene, self)


def _enable_z_for_export(scene, settings):
    """Turn the Z pass on where export needs it; remember which layers we touched."""
    added = [n for n in settings.added_z_layers.split("\n") if n]
    for layer in rendering_view_layers(scene):
        if not layer.use_pass_z:
            layer.use_pass_z = True
            added.append(layer.name)
    settings.added_z_layers = "\n".join(dict.fromkeys(added))


def _undo_z_for_export(scene, settings):
    """Turn the Z pass off again only on the layers export itself turned it on for, and not on
    those whose Depth feeds a compositor node (e.g. the "Z-Depth Encode" node): that link would
    hang from a hidden socket."""
    used = depth_used_in_compositor(scene)
    for name in [n for n in settings.added_z_layers.split("\n") if n]:
        layer = scene.view_layers.get(name)
        if layer is not None and name not in used:
            layer.use_pass_z = False
    settings.added_z_layers = ""


def _dof_update(self, context):
    """A depth-of-field setting changed: refresh the live preview (when it is on)."""
    settings_changed(self.id_data)


def _live_toggle(self, context):
    toggled(self.id_data)


QUALITY_ITEMS = [
    ("draft", "Draft", "Coarser layers: fastest"),
    ("default", "Default", "The engine's default layer spacing"),
    ("high", "High", "Finer layers near focus: slowest, best small blur"),
]

PREVIEW_VIEW_ITEMS = [
    ("DEFOCUS", "Depth of Field", "The refocused frame"),
    ("FOCAL_PLANE", "Focal Plane", "In front of the focal plane red, in focus green, behind blue"),
]


def _range_prop(key, scene_attr):
    """get / set of a frame range field that shows the scene's value while Scene Range is on;
    typing a value turns Scene Range off (the other two fields keep the scene's values)."""
    def get(self):
        scene = self.id_data
        if self.dof_use_scene_range:
            return int(getattr(scene, scene_attr))
        return int(self.get(key, getattr(scene, scene_attr)))

    def set(self, value):
        scene = self.id_data
        if self.dof_use_scene_range:
            self["dof_frame_start_value"] = int(scene.frame_start)
            self["dof_frame_end_value"] = int(scene.frame_end)
            self["dof_frame_step_value"] = int(scene.frame_step)
            self.dof_use_scene_range = False
        self[key] = int(value)
    return get, set


_START = _range_prop("dof_frame_start_value", "frame_start")
_END = _range_prop("dof_frame_end_value", "frame_end")
_STEP = _range_prop("dof_frame_step_value", "frame_step")


def depth_used_in_compositor(scene):
    """Names of ``scene``'s view layers whose Render Layers node has its Depth output linked in
    the scene's compositor."""
    tree = compositor_tree(scene, create=False)
    used = set()
    for node in (tree.nodes if tree is not None else ()):
        if node.bl_idname != "CompositorNodeRLayers" or node.scene not in (None, scene):
            continue
        depth = node.outputs.get("Depth")
        if depth is not None and depth.is_linked:
            used.add(node.layer)
    return used


class ZDepthSettings(bpy.types.PropertyGroup):
    """blender_zdepth settings of a scene."""

    encoding: EnumProperty(name="Encoding", items=ENCODING_ITEMS, default="log",
                           description="How depth is stored in the exported EXR")
    range_source: EnumProperty(name="Range", items=RANGE_ITEMS, default="CAMERA",
                               description="Where near and far of the encoding come from")
    near: FloatProperty(name="Near", default=0.1, min=1e-6, soft_max=1e4, precision=4,
                        unit="LENGTH", description="Depth stored as 0 (log, normalized)")
    far: FloatProperty(name="Far", default=1000.0, min=1e-5, soft_max=1e6, precision=3,
                       unit="LENGTH", description="Depth stored as 1 (log, normalized)")
    bit_depth: EnumProperty(name="Bit Depth", items=BIT_DEPTH_ITEMS, default="32",
                            description="Float precision of the exported depth")
    codec: EnumProperty(name="Codec", items=CODEC_ITEMS, default="ZIP",
                        description="EXR compression (lossless codecs only: a lossy one "
                                    "would change the depth)")
    export_enabled: BoolProperty(
        name="Export Depth on Render", default=False, update=_export_update,
        description="Write one depth EXR per rendered frame (F12, Ctrl+F12, blender -b -a); "
                    "turns the Z pass on where needed, and off again when unticked")
    output_dir: StringProperty(name="Output Folder", default="//zdepth/", subtype="DIR_PATH",
                               options=path_options(),
                               description="Folder of the depth EXRs (// = next to the .blend)")
    name_pattern: StringProperty(name="Name", default="zdepth_####",
                                 description="File name; # is replaced by the zero-padded "
                                             "frame number, .exr is added")
    write_preview: BoolProperty(name="Preview PNG", default=False,
                                description="Also write a white-near depth preview PNG per "
                                            "frame")
    beauty: EnumProperty(name="Beauty", items=BEAUTY_ITEMS, default="SAME_FILE",
                         description="Where the beauty (Combined pass) goes")
    added_z_layers: StringProperty(
        name="Z Pass Added", default="", options={"HIDDEN"},
        description="View layers whose Z pass export turned on (turned off with it)")

    # Depth of field on rendered frames (used by bpy.ops.zdepth.apply_dof).
    dof_focus_mode: EnumProperty(name="Focus", items=FOCUS_ITEMS, default="CAMERA",
                                 description="What decides the focus distance",
                                 update=_dof_update)
    dof_focus_distance: FloatProperty(name="Focus Distance", default=5.0, min=1e-4,
                                      unit="LENGTH", description="Focus distance (Distance mode)",
                                      update=_dof_update)
    dof_focus_object: PointerProperty(name="Focus Object", type=bpy.types.Object,
                                      description="Object to focus on (Object mode)",
                                      update=_dof_update)
    dof_focus_pixel: IntVectorProperty(name="Focus Pixel", size=2, default=(0, 0), min=0,
                                       description="Pixel x, y (from the bottom left) to focus "
                                                   "on (Pixel mode)", update=_dof_update)
    dof_fstop_override: BoolProperty(name="Override f-stop", default=False,
                                     description="Use this f-stop instead of the camera's",
                                     update=_dof_update)
    dof_fstop: FloatProperty(name="f-stop", default=2.8, min=0.1, soft_max=64.0, precision=2,
                             description="Aperture f-number", update=_dof_update)
    dof_max_radius: FloatProperty(name="Max Radius", default=64.0, min=0.5, soft_max=256.0,
                                  subtype="PIXEL", description="Largest blur radius in pixels",
                                  update=_dof_update)
    dof_blades: bpy.props.IntProperty(name="Blades", default=0, min=0, max=16,
                                      description="Aperture blades: 3 or more for a "
                                                  "polygon; 0, 1 or 2 = round (as Cycles)",
                                      update=_dof_update)
    dof_rotation: FloatProperty(name="Rotation", default=0.0, subtype="ANGLE",
                                description="Rotation of the aperture polygon",
                                update=_dof_update)
    dof_source: EnumProperty(name="Source", items=DOF_SOURCE_ITEMS, default="RENDER_RESULT",
                             description="Frames to refocus", update=_dof_update)
    dof_input: StringProperty(name="Input", default="", subtype="FILE_PATH",
                              options=path_options(),
                              description="EXR file or pattern (#### = frame) to refocus",
                              update=_dof_update)
    dof_output_dir: StringProperty(name="Output Folder", default="", subtype="DIR_PATH",
                                   options=path_options(),
                                   description="Folder of the refocused frames")
    dof_write_png: BoolProperty(name="PNG Too", default=False,
                                description="Also write an 8-bit PNG per refocused frame, "
                                            "colour managed as the scene's Color Management")
    dof_output_name: StringProperty(
        name="Output Name", default="",
        description="Names of the refocused files: {name} = the input's name without frame "
                    "number, {frame} or #### = the frame number, e.g. {name}_dof.####.exr "
                    "(empty: the input's name with _dof before the frame number)")
    dof_multilayer: BoolProperty(
        name="Keep All Passes", default=False,
        description="Write a multilayer EXR keeping every pass of the input (depth, normals, "
                    "AOVs... and its header), the beauty refocused, instead of RGBA only")

    # Depth layers (see blender/render/peel.py): extra passes with the clip start moved.
    depth_layers: bpy.props.IntProperty(
        name="Depth Layers", default=1, min=1, max=8,
        description="Layers per frame, the beauty included: each extra pass renders the same "
                    "camera with its clip start moved past nearer surfaces, so the depth of "
                    "field sees what they hide; written as a deep EXR beside the depth EXR. "
                    "1 = no extra pass")
    depth_layer_samples: bpy.props.IntProperty(
        name="Layer Samples", default=0, min=0, soft_max=1024,
        description="Render samples of each extra pass (they are only seen blurred). 0 = "
                    "automatic: an eighth of the render's samples, at least 1 (slabs: the "
                    "render's samples)")
    depth_layer_clips: StringProperty(
        name="Layer Clips", default="",
        description="Clip distances of the extra passes, e.g. 4.5, 12 (one per extra layer, "
                    "increasing, inside the camera's clip range). Empty = automatic, from the "
                    "frame's depth around the focus distance (slabs: the boundaries between "
                    "the slabs)")
    depth_layer_mode: bpy.props.EnumProperty(
        name="Layer Mode", default="AUTO",
        items=[("AUTO", "Automatic", "Slabs where the scene has motion blur or transparent "
                "surfaces (what a flat Z pass and opaque passes cannot describe), else Peel"),
               ("PEEL", "Peel", "The beauty, then passes with the clip start moved past the "
                "nearer surfaces: opaque surfaces behind the visible one, few samples"),
               ("SLABS", "Slabs", "One render per depth slab (clip start and end moved, film "
                "transparent): every surface with its partial coverage -- motion trails, "
                "see-through surfaces, soft edges -- at its own depth; at the render's samples")],
        description="How the depth layers are rendered")

    # Aperture from the camera (or overridden), quality, frame range, live preview
    dof_aperture_override: BoolProperty(
        name="Aperture Override", default=False, update=_dof_update,
        description="Use the panel's blades, rotation and ratio instead of the camera's "
                    "(Camera > Depth of Field > Aperture)")
    dof_anamorphic: FloatProperty(
        name="Ratio", default=1.0, min=0.1, max=10.0, precision=3, update=_dof_update,
        description="Aperture height / width, as the camera's aperture ratio: above 1 tall "
                    "(anamorphic) bokeh, below 1 wide")
    dof_quality: EnumProperty(name="Quality", items=QUALITY_ITEMS, default="default",
                              description="Layer spacing of the engine (Apply; the live "
                                          "preview always uses Draft)")
    dof_use_scene_range: BoolProperty(
        name="Scene Range", default=True,
        description="Refocus the scene's frame range (Start, End, Step); typing a frame below "
                    "turns this off")
    dof_frame_start: bpy.props.IntProperty(name="Start", get=_START[0], set=_START[1],
                                           description="First frame to refocus (Rendered Files)")
    dof_frame_end: bpy.props.IntProperty(name="End", get=_END[0], set=_END[1],
                                         description="Last frame to refocus (Rendered Files)")
    dof_frame_step: bpy.props.IntProperty(name="Step", get=_STEP[0], set=_STEP[1], min=1,
                                          description="Refocus every Step-th frame")
    live_preview: BoolProperty(
        name="Live Preview", default=False, update=_live_toggle,
        description="Refresh the 'Z-Depth DOF' image at preview resolution on every change of "
                    "focus, f-stop or aperture (computed in the background; Apply makes the "
                    "full-resolution result)")
    live_preview_mode: EnumProperty(name="Preview", items=PREVIEW_VIEW_ITEMS, default="DEFOCUS",
                                    update=_dof_update,
                                    description="What the live preview shows")
