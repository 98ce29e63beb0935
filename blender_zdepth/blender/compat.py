"""Version differences of the Blender Python API, in one place (Blender 4.2 LTS to 5.3).

Everything else in :mod:`blender_zdepth.blender` asks this module instead of testing versions.
"""

import os

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
    _set_exr(image_settings, "MULTI_LAYER_IMAGE", "OPEN_EXR_MULTILAYER", depth, codec)


def set_single_layer_exr(image_settings, depth="32", codec="ZIP"):
    """Make ``image_settings`` write a single-layer OpenEXR image."""
    _set_exr(image_settings, "IMAGE", "OPEN_EXR", depth, codec)


def _set_exr(image_settings, media_type, file_format, depth, codec):
    if hasattr(image_settings, "media_type"):  # 5.0: the media type first, then the format
        image_settings.media_type = media_type
    image_settings.file_format = file_format
    image_settings.color_depth = depth
    image_settings.exr_codec = codec


def save_render(image, path, scene):
    """``image.save_render(path, scene=scene)`` (the Render Result, as ``scene``'s image
    settings say), with square pixels for that one call: Blender 5.0's multilayer EXR writer
    refuses a frame rendered with a pixel aspect other than 1 ("Conflicting attributes found
    for header :: ViewLayer.Depth 'pixelAspectRatio'", then "Error writing render result,
    Success"), while 4.5 and 5.3 write it with ``pixelAspectRatio``. The setting changes no
    pixel of the saved result (verified on 4.5, 5.0 and 5.3), so it is squared on every version
    -- one behaviour, the saved file's ``pixelAspectRatio`` is always 1 -- and restored right
    after, also on error. Whoever reads the file takes the true aspect from the scene."""
    render = scene.render
    aspect = (render.pixel_aspect_x, render.pixel_aspect_y)
    if aspect == (1.0, 1.0):
        return image.save_render(path, scene=scene)
    try:
        render.pixel_aspect_x = render.pixel_aspect_y = 1.0
        return image.save_render(path, scene=scene)
    finally:
        render.pixel_aspect_x, render.pixel_aspect_y = aspect


def compositor_tree(scene, create=True, name="Compositing"):
    """Return the scene's compositor node tree (creating it when ``create``), or None.

    4.x: ``scene.use_nodes`` + ``scene.node_tree``. 5.0: a ``CompositorNodeTree`` node group
    assigned to ``scene.compositing_node_group``. 5.3 (where ``compositing_node_group`` is
    deprecated, "expected to be removed in Blender 6.0"): the node group of the scene's active
    compositor effect (``scene.compositor_effects``, what the deprecated property reads and
    sets); an effect is added when the scene has none.
    """
    effects = getattr(scene, "compositor_effects", None)
    if effects is not None:
        tree = effects.active.node_group if effects.active is not None else None
    elif IS_5:
        tree = scene.compositing_node_group
    else:
        if scene.node_tree is None and not create:
            return None
        if create:
            scene.use_nodes = True
        return scene.node_tree
    if tree is None and create:
        tree = bpy.data.node_groups.new(name, "CompositorNodeTree")
        set_compositor_tree(scene, tree)
    return tree


def set_compositor_tree(scene, tree):
    """Make the ``CompositorNodeTree`` node group ``tree`` the scene's compositor (5.0 on):
    ``scene.compositing_node_group`` in 5.0, the node group of the active compositor effect in
    5.3 (one is added when the scene has none)."""
    effects = getattr(scene, "compositor_effects", None)
    if effects is None:
        scene.compositing_node_group = tree
        return
    effect = effects.active
    if effect is None:
        effect = effects.new(tree.name)
    effect.node_group = tree


#: Node type ids for maths inside compositor trees.
MATH_NODE = "ShaderNodeMath" if IS_5 else "CompositorNodeMath"
MAP_RANGE_NODE = "ShaderNodeMapRange" if IS_5 else "CompositorNodeMapRange"


def new_file_output(tree, directory, file_name, inputs, depth="32", codec="ZIP"):
    """Add a File Output node to compositor ``tree`` writing one multilayer OpenEXR per frame
    (``directory``/``file_name`` + frame number) with one float layer per name in ``inputs``.
    Returns ``(node, {name: input socket})``.

    5.0: ``directory``, ``file_name``, ``file_output_items``, ``format.media_type``; 4.x:
    ``base_path``, ``layer_slots``, ``format.file_format``.
    """
    node = tree.nodes.new("CompositorNodeOutputFile")
    set_multilayer_exr(node.format, depth, codec)
    if IS_5:
        node.directory = directory
        node.file_name = file_name
        node.file_output_items.clear()
        for name in inputs:
            node.file_output_items.new("FLOAT", name)
    else:
        node.base_path = os.path.join(directory, file_name)
        node.layer_slots.clear()
        for name in inputs:
            node.layer_slots.new(name)
    return node, {name: node.inputs[name] for name in inputs}


def action_fcurves(id_data):
    """The F-Curves of ``id_data``'s own action (4.4+ slotted actions and older ones alike), or
    None when it has no action."""
    ad = getattr(id_data, "animation_data", None)
    action = ad.action if ad is not None else None
    if action is None:
        return None
    slot = getattr(ad, "action_slot", None)
    if slot is not None:
        try:
            from bpy_extras import anim_utils

            bag = anim_utils.action_get_channelbag_for_slot(action, slot)
            if bag is not None:
                return bag.fcurves
        except (ImportError, AttributeError):
            pass
    return getattr(action, "fcurves", None)


def fcurve_value(id_data, data_path, frame, index=0):
    """The value of ``id_data``'s own F-Curve for ``data_path`` at ``frame``, or None when that
    property is not animated by its action (4.4+ slotted actions and older ones alike)."""
    fcurves = action_fcurves(id_data)
    if fcurves is None:
        return None
    fc = fcurves.find(data_path, index=index)
    if fc is None or fc.mute:
        return None
    return fc.evaluate(frame)


def use_nodes(id_block):
    """Make a material or world use its node tree: needed up to 4.5; 5.0 always uses nodes and
    deprecates the switch."""
    if not IS_5:
        id_block.use_nodes = True
    return id_block.node_tree


def uses_nodes(id_block):
    """Whether a material or world renders through its node tree: always from 5.0 on (where
    ``use_nodes`` is deprecated and reads True), the ``use_nodes`` switch before."""
    return IS_5 or bool(getattr(id_block, "use_nodes", True))


def path_options():
    """``options`` for a file/folder StringProperty: with ``PATH_SUPPORTS_BLEND_RELATIVE`` where
    Blender knows the flag (4.5+), so that a blend-relative ``//`` path is accepted without
    Blender's 'does not support blend relative "//" prefix' warning; plain where it does not."""
    global _PATH_OPTIONS
    if _PATH_OPTIONS is None:
        options = {"ANIMATABLE", "PATH_SUPPORTS_BLEND_RELATIVE"}
        probe = "zdepth_path_option_probe"
        try:  # property options are only checked when the property is registered
            setattr(bpy.types.WindowManager, probe, bpy.props.StringProperty(options=options))
            delattr(bpy.types.WindowManager, probe)
        except (TypeError, ValueError):
            options = {"ANIMATABLE"}
        _PATH_OPTIONS = options
    return set(_PATH_OPTIONS)


_PATH_OPTIONS = None


def remove_handlers(pairs):
    """Take ``pairs`` (``(handler list name, function)``) out of ``bpy.app.handlers``: every
    entry with the function's name and module, so a copy left by an earlier import of the same
    module (an add-on reloaded) goes too."""
    for name, func in pairs:
        handlers = getattr(bpy.app.handlers, name)
        for h in [h for h in handlers if getattr(h, "__name__", "") == func.__name__
                  and getattr(h, "__module__", "") == func.__module__]:
            handlers.remove(h)


def add_handlers(pairs):
    """Append ``pairs``' functions to ``bpy.app.handlers``, each exactly once (see
    :func:`remove_handlers`)."""
    remove_handlers(pairs)
    for name, func in pairs:
        getattr(bpy.app.handlers, name).append(func)


# -- render behaviour that changed between versions ----------------------------------------------

#: The first Blender of the newer behaviours below. Measured with 4.5, 5.0.1 (older behaviour)
#: and 5.3.0 (newer); 5.1 and 5.2 were not measured and are taken to behave like 5.3.
_NEWER_RENDERS = (5, 1, 0)


def eevee_background_depth(clip_end):
    """The Z that EEVEE writes where no surface is hit: the camera's ``clip_end`` up to 5.0
    (read back through its depth buffer: within about ``1e-7 * clip_end / clip_start`` of
    it), 1e10 -- like Cycles -- in 5.3. Every background rule takes both for background:
    :func:`blender_zdepth.core.encodings.background_threshold` puts EEVEE's threshold just under
    the clip end, and 1e10 is beyond it and beyond the default 1e9."""
    return float(clip_end) if VERSION < _NEWER_RENDERS else 1e10


def renders_from_render_handlers():
    """True where a ``render_post`` handler on the main thread (``blender -b``, the bpy module)
    may render another scene itself. Up to 5.0 it may, stills and animations alike. In 5.3 a
    render started from ``render_post`` during an animation render (``blender -b -a``,
    ``render(animation=True)``) leaves the animation job broken: the next frame dies with a
    segmentation fault (a still's handler may render; the handler cannot tell the two apart
    at the first frame). From ``render_complete`` no version may (5.0 fails, 5.3 crashes).
    Where this is False the passes render in a child process (:mod:`.render.isolated`)."""
    return VERSION < _NEWER_RENDERS


def material_is_blended(mat):
    """True for a material EEVEE renders alpha-blended: ``surface_render_method == 'BLENDED'``
    from 4.2 on, ``blend_method == 'BLEND'`` before (absent from 5.0 on)."""
    if getattr(mat, "surface_render_method", None) == "BLENDED":
        return True
    return getattr(mat, "blend_method", None) == "BLEND"
