"""Operators of the Z-Depth panel: set up the depth pass, add the compositor node group, export
the latest render's depth, measure the scene's depth range, render the depth layers. Each has a
tooltip and reports what it did on the status bar."""

import bpy
from bpy.props import BoolProperty, EnumProperty

import os

from ...core.errors import ZDepthError
from ..nodes import (ENCODE_GROUP, add_decode_node, add_encode_node, decode_group, encode_group,
                     find_group_node)
from ..render.export import export_render_result, render_with_depth
from ..render.handlers import last_render_frame
from ..scene.camera import scene_depth_range
from ..scene.passes import setup_passes


class ZDEPTH_OT_setup_passes(bpy.types.Operator):
    bl_idname = "zdepth.setup_passes"
    bl_label = "Set Up Depth Pass"
    bl_description = ("Turn the Z (depth) pass on for the view layers that render (Cycles, "
                      "EEVEE, Workbench); optionally the mist pass matched to the depth range. "
                      "Running it again changes nothing more")
    bl_options = {"REGISTER", "UNDO"}

    all_layers: BoolProperty(name="All View Layers", default=False,
                             description="Every view layer, not only those that render")
    mist: BoolProperty(name="Mist Pass", default=False,
                       description="Also turn the mist pass on, with the world's mist range "
                                   "matched to the encoding's near and far")

    def execute(self, context):
        changes, problem = setup_passes(context.scene, all_layers=self.all_layers,
                                         mist=self.mist)
        if problem:
            self.report({"WARNING"}, problem)
            return {"CANCELLED"}
        if changes:
            self.report({"INFO"}, "Changed: " + "; ".join(changes))
        else:
            self.report({"INFO"}, "Depth pass already set up: nothing changed")
        return {"FINISHED"}


class ZDEPTH_OT_add_node_group(bpy.types.Operator):
    bl_idname = "zdepth.add_node_group"
    bl_label = "Add Z-Depth Node"
    bl_description = ("Build (or refresh) the \"Z-Depth Encode\" compositor node group and add "
                      "one node using it to the compositor (reused if already there); "
                      "optionally wire it after the Render Layers node. Or add a \"Z-Depth "
                      "Decode\" node: our encoded depth back to linear depth")
    bl_options = {"REGISTER", "UNDO"}

    group: EnumProperty(name="Group", default="ENCODE", items=[
        ("ENCODE", "Z-Depth Encode", "Depth -> encoded depth and a preview"),
        ("DECODE", "Z-Depth Decode", "Encoded depth (a file's Z) -> linear depth, for the "
                                     "Defocus node, fog or a mist mix"),
    ])

    wire: BoolProperty(name="Wire After Render Layers", default=True,
                       description="Feed it the Render Layers node's Depth output")
    refresh: BoolProperty(name="Rebuild Group", default=False,
                          description="Rebuild the group's contents even when up to date")

    def execute(self, context):
        scene = context.scene
        tree = None
        space = context.space_data
        if getattr(space, "type", "") == "NODE_EDITOR" and \
                getattr(space, "tree_type", "") == "CompositorNodeTree" and space.edit_tree:
            tree = space.edit_tree
        changes = []
        if self.group == "DECODE":
            if self.refresh:
                decode_group(refresh=True)
                changes.append("rebuilt the node group")
            node, more = add_decode_node(scene, tree)
            if tree is not None:
                node.location = space.cursor_location
                for other in tree.nodes:
                    other.select = other == node
                tree.nodes.active = node
            self.report({"INFO"}, "; ".join(changes + more))
            return {"FINISHED"}
        if self.refresh:
            encode_group(refresh=True)
            changes.append("rebuilt the node group")
        group = bpy.data.node_groups.get(ENCODE_GROUP)
        is_new = tree is not None and (group is None or find_group_node(tree, group) is None)
        try:
            node, more = add_encode_node(scene, tree, wire=self.wire)
        except ZDepthError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        changes += more
        if tree is not None:
            if is_new:
                node.location = space.cursor_location
            for other in tree.nodes:
                other.select = other == node
            tree.nodes.active = node
        self.report({"INFO"}, ("; ".join(changes) if changes else
                               "Z-Depth Encode node already in place: nothing changed"))
        return {"FINISHED"}


class ZDEPTH_OT_export_render_result(bpy.types.Operator):
    bl_idname = "zdepth.export_render_result"
    bl_label = "Export Depth of Last Render"
    bl_description = ("Write the depth EXR of the latest render (Render Result) now, with the "
                      "panel's settings, as export on render would have")

    @classmethod
    def poll(cls, context):
        image = bpy.data.images.get("Render Result")
        return image is not None and context.scene.camera is not None

    def execute(self, context):
        scene = context.scene
        frame, current = last_render_frame(scene), scene.frame_current
        try:
            if frame != current:  # the camera values of the frame that Render Result holds
                scene.frame_set(frame)
            out = export_render_result(scene, frame=frame)
        except ZDepthError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        finally:
            if scene.frame_current != current:
                scene.frame_set(current)
        written = [one["depth"] for one in out.get("views", [out])]  # one per stereo view
        self.report({"INFO"}, f"Depth written to {', '.join(written)}")
        return {"FINISHED"}


class ZDEPTH_OT_use_measured_range(bpy.types.Operator):
    bl_idname = "zdepth.use_measured_range"
    bl_label = "Use Measured Range"
    bl_description = ("Copy the depth range measured from the visible objects' bounding boxes "
                      "into Near and Far (Manual range)")
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        measured = scene_depth_range(scene)
        if measured is None:
            self.report({"WARNING"}, "Nothing renderable in the camera's view: range not changed")
            return {"CANCELLED"}
        zd = scene.zdepth
        zd.near, zd.far = measured
        zd.range_source = "MANUAL"
        self.report({"INFO"}, f"Range set to {measured[0]:.4g}-{measured[1]:.4g}")
        return {"FINISHED"}


class ZDEPTH_OT_render_depth_layers(bpy.types.Operator):
    bl_idname = "zdepth.render_depth_layers"
    bl_label = "Render Depth Layers"
    bl_description = ("Render the current frame (or the frame range) with its depth layers: the "
                      "beauty, then the extra passes with the clip start moved; write the depth "
                      "EXR and the deep EXR beside it to the export folder. Blender is busy until "
                      "it is done")
    bl_options = {"REGISTER"}

    animation: bpy.props.BoolProperty(
        name="Animation", default=False,
        description="Every frame of the scene's frame range (with its frame step), not only the "
                    "current frame")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "zdepth")

    def execute(self, context):
        scene = context.scene
        frames = None
        if self.animation:
            frames = range(scene.frame_start, scene.frame_end + 1, max(1, scene.frame_step))
        try:
            written = render_with_depth(scene, frames=frames, with_paths=True)
        except ZDepthError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if len(written) == 1:
            paths = written[0]
            deep = paths.get("deep")
            self.report({"INFO"}, f"Wrote {paths['depth']}" + (f" and {deep}" if deep else ""))
        else:
            deep = sum(1 for p in written if p.get("deep"))
            self.report({"INFO"}, f"Wrote {len(written)} depth EXRs and {deep} deep EXRs to "
                                  f"{os.path.dirname(written[0]['depth'])}")
        return {"FINISHED"}


class ZDEPTH_OT_report_failure(bpy.types.Operator):
    """Report a failure of Export on render in the status bar and the Info editor (the render
    handlers queue it; a timer on the main thread runs this: render/handlers.py)"""
    bl_idname = "zdepth.report_failure"
    bl_label = "Report Z-Depth Failure"
    bl_options = {"INTERNAL"}

    message: bpy.props.StringProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        # WARNING, not ERROR: an ERROR report of an operator run from Python raises in the
        # caller (a timer) instead of staying in the status bar
        self.report({"WARNING"}, self.message)
        return {"FINISHED"}


CLASSES = (ZDEPTH_OT_setup_passes, ZDEPTH_OT_add_node_group, ZDEPTH_OT_export_render_result,
           ZDEPTH_OT_use_measured_range, ZDEPTH_OT_render_depth_layers, ZDEPTH_OT_report_failure)
