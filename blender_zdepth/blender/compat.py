"""Version differences of the Blender Python API, in one place (Blender 4.2 LTS to 5.0).

Everything else in :mod:`blender_zdepth.blender` asks this module instead of testing versions.
"""

import bpy

#: ``(major, minor, patch)`` of the running Blender.
VERSION = tuple(bpy.app.version)

#: True from Blender 5.0 on: compositor node groups, Group Output, ``media_type``, shader math.
IS_5 = VERSION >= (5, 0, 0)


def engine_ids():
    """Identifiers of the render engines this Blender offers."""
    return [e.identifier for e in bpy.types.RenderSettings.bl_rna.properties["engine"].enum_items]


def eevee_engine_id():
    """EEVEE's engine id: ``BLENDER_EEVEE_NEXT`` in 4.2-4.5, ``BLENDER_EEVEE`` in 5.0."""
    ids = engine_ids()
    for candidate in ("BLENDER_EEVEE_NEXT", "BLENDER_EEVEE"):
        if candidate in ids:
            return candidate
    raise RuntimeError(f"no EEVEE engine among {ids}")


def is_eevee(engine_id):
    return engine_id in ("BLENDER_EEVEE_NEXT", "BLENDER_EEVEE")


def set_multilayer_exr(image_settings, depth="32", codec="ZIP"):
    """Make ``image_settings`` write a multilayer OpenEXR (all passes) at ``depth`` bits."""
    if hasattr(image_settings, "media_type"):  # 5.0
        image_settings.media_type = "MULTI_LAYER_IMAGE"
    image_settings.file_format = "OPEN_EXR_MULTILAYER"
    image_settings.color_depth = depth
    image_settings.exr_codec = codec


def set_single_layer_exr(image_settings, depth="32", codec="ZIP"):
    """Make ``image_settings`` write a single-layer OpenEXR image."""
    if hasattr(image_settings, "media_type"):  # 5.0
        image_settings.media_type = "IMAGE"
    image_settings.file_format = "OPEN_EXR"
    image_settings.color_depth = depth
    image_settings.exr_codec = codec


def compositor_tree(scene, create=True, name="Compositing"):
    """Return the scene's compositor node tree (creating it when ``create``), or None.

    4.x: ``scene.use_nodes`` + ``scene.node_tree``. 5.0: a ``CompositorNodeTree`` node group
    assigned to ``scene.compositing_node_group``.
    """
    if IS_5:
        tree = scene.compositing_node_group
        if tree is None and create:
            tree = bpy.data.node_groups.new(name, "CompositorNodeTree")
            scene.compositing_node_group = tree
        return tree
    if scene.node_tree is None and not create:
        return None
    if create:
        scene.use_nodes = True
    return scene.node_tree


#: Node type ids for maths inside compositor trees.
MATH_NODE = "ShaderNodeMath" if IS_5 else "CompositorNodeMath"
MAP_RANGE_NODE = "ShaderNodeMapRange" if IS_5 else "CompositorNodeMapRange"
