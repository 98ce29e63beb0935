"""The scene's colour management as :class:`~blender_zdepth.core.colour.ColourSettings`: what
Blender's Color Management panel says (display device, view transform, look, exposure, gamma),
the OpenColorIO config this Blender uses and the blend file's working colour space. Recorded in
the header of every export (:func:`colour_header`) and used for Apply's PNG, so the refocused
pictures look like the render the artist lit."""

import os

import bpy

from ...core.colour import ColourSettings


def blender_config_path():
    """The OpenColorIO config this Blender runs with: ``$OCIO`` when set (Blender reads it at
    start-up), else its own ``datafiles/colormanagement/config.ocio``; None when neither is a
    file."""
    env = os.environ.get("OCIO")
    if env and os.path.isfile(env):
        return env
    try:
        path = os.path.join(bpy.utils.resource_path("LOCAL"), "datafiles", "colormanagement",
                            "config.ocio")
    except Exception:
        return None
    return path if os.path.isfile(path) else None


def scene_colour(scene):
    """The scene's :class:`ColourSettings` (curves and white balance are not carried)."""
    view = scene.view_settings
    space = getattr(getattr(bpy.data, "colorspace", None), "working_space", None)  # 5.0+
    return ColourSettings(
        display=str(scene.display_settings.display_device), view=str(view.view_transform),
        look=str(view.look), exposure=float(view.exposure), gamma=float(view.gamma),
        config=blender_config_path(), working_space=str(space) if space else None)


def colour_header(scene):
    """The ``zdepthDisplayDevice`` ... header attributes of the scene's colour management."""
    try:
        return scene_colour(scene).to_header()
    except (AttributeError, TypeError):  # a scene without colour settings: nothing to record
        return {}
