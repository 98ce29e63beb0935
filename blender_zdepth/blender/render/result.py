"""The Render Result, as files: save it as a 32-bit multilayer EXR with every pass of every view
layer (the scene's image settings switched for that one call and restored right after), and
read its beauty and linear depth back (:func:`read_render_result`).

Two things Blender's writer does not say are set right in the saved file: a render cropped to
its border is placed in its full frame (data window = the crop, display window = the frame:
Blender writes the crop as a frame of its own, and a lens sized by it would blur too little),
and frames with non-square pixels are saved at all (see :func:`..compat.save_render`; the file
then says ``pixelAspectRatio`` 1: the true aspect is the scene's, and every file we write from
it records that one).
"""

import os
import tempfile

import bpy

from ...core import exr as core_exr
from ...core.frame import load_frame
from ...core.errors import ZDepthError
from ..compat import save_render, set_multilayer_exr
from ..scene.options import background_for
from ..scene.passes import rendering_view_layers
from ..scene.region import crop_windows, is_cropped


# -- temporary settings ------------------------------------------------------------------------

def _snapshot(struct):
    """Writable plain values of an RNA struct (enums, numbers, booleans, strings)."""
    saved = {}
    for prop in struct.bl_rna.properties:
        if prop.is_readonly or prop.type in ("POINTER", "COLLECTION") or prop.identifier == \
                "rna_type":
            continue
        try:
            value = getattr(struct, prop.identifier)
        except AttributeError:
            continue
        if getattr(prop, "is_array", False) or (prop.type in ("INT", "FLOAT", "BOOLEAN")
                                                and getattr(prop, "array_length", 0)):
            value = tuple(value)
        saved[prop.identifier] = value
    return saved


def _restore(struct, saved):
    # media_type / file_format first: setting them resets dependent values (depth, codec)
    order = [k for k in ("media_type", "file_format") if k in saved] + \
        [k for k in saved if k not in ("media_type", "file_format")]
    for _ in range(2):
        for key in order:
            try:
                if getattr(struct, key) != saved[key]:
                    setattr(struct, key, saved[key])
            except (AttributeError, TypeError, ValueError):
                pass


def save_render_result(scene, path, *, codec="ZIP"):
    """Save the Render Result as a 32-bit multilayer EXR at ``path`` (every pass of every view
    layer); the scene's image settings are restored afterwards. A render cropped to its border
    is placed in its full frame (:func:`place_cropped`). ``codec``: Blender's EXR codec (a
    lossless one: the pixels read back are the same; ``"NONE"`` for a file read once and
    removed, which writes and reads in about a third of ZIP's time)."""
    image = bpy.data.images.get("Render Result")
    if image is None or image.type != "RENDER_RESULT":
        raise ZDepthError("there is no Render Result to export: render first (F12)")
    settings = scene.render.image_settings
    saved = _snapshot(settings)
    try:
        set_multilayer_exr(settings, "32", codec)
        if scene.render.use_multiview:
            settings.views_format = "MULTIVIEW"  # every view in this one file
        if hasattr(settings, "color_management"):
            settings.color_management = "FOLLOW_SCENE"  # EXR: scene-linear, as rendered
        try:
            save_render(image, path, scene)
        except RuntimeError:
            if not scene.render.use_multiview:
                raise
            # a stereo Render Result not yet saved in this session: Blender learns its views
            # during this first save and writes each view to its own file instead; remove
            # those and save again, now as one multi-view file
            stem, ext = os.path.splitext(path)
            for view in scene.render.views:
                if os.path.isfile(stem + view.file_suffix + ext):
                    os.remove(stem + view.file_suffix + ext)
            save_render(image, path, scene)
    finally:
        _restore(settings, saved)
    if not os.path.exists(path):
        raise ZDepthError(f"Blender did not write the Render Result to {path}")
    place_cropped(scene, path)
    return path


def place_cropped(scene, path):
    """When the Render Result saved at ``path`` is cropped to its border, rewrite it placed in
    the full frame (:func:`~blender_zdepth.core.exr.place_in_frame`, windows from
    :func:`..scene.region.crop_windows`), with the scene's true ``pixelAspectRatio``. Returns
    True when it did; files of the full frame are left as Blender wrote them (and not read)."""
    if not is_cropped(scene):
        return False
    (x0, y0), (x1, y1) = core_exr.read_layout(path)[0][0].data_window
    windows = crop_windows(scene, (x1 - x0 + 1, y1 - y0 + 1))
    if windows is None:
        return False
    (cx, cy), _ = windows[0]
    render = scene.render
    aspect = float(render.pixel_aspect_x) / float(render.pixel_aspect_y)
    core_exr.place_in_frame(path, (cx - x0, cy - y0), windows[1],
                            header={"pixelAspectRatio": aspect})
    return True


def _pick_layer(scene, names):
    try:
        layers = rendering_view_layers(scene)
    except Exception:  # no usable context (a render thread)
        layers = [layer for layer in scene.view_layers if layer.use]
    candidates = [layer.name for layer in layers] + [layer.name for layer in scene.view_layers]
    for name in candidates:
        if f"{name}.Depth.Z" in names:
            return name
    return None


def read_render_result(scene, *, folder=None, views=None):
    """Read the Render Result just rendered from ``scene``: ``(frame, layer, threshold)`` --
    its beauty and linear depth (:class:`blender_zdepth.core.frame.Frame`), the view layer they
    come from and the background threshold applied. ``folder``: where the temporary file goes
    (default: the system's temporary folder); it is removed before returning. ``views`` (a
    stereo / multi-view render's view names): ``frame`` is ``{view: Frame}`` instead, each
    view's beauty and depth read from that view."""
    fd, tmp = tempfile.mkstemp(prefix=".zdepth_render_", suffix=".exr", dir=folder)
    os.close(fd)
    try:
        save_render_result(scene, tmp)
        names = core_exr.channel_names(tmp)  # headers only: load_frame reads the pixels
        layer = _pick_layer(scene, names)
        if layer is None:
            raise ZDepthError(f"the render has no depth pass (channels: {', '.join(names)}); "
                              f"turn the Z pass on (Z-Depth panel > Set Up Depth Pass)")
        threshold = background_for(scene)
        if views:
            loaded = {view: load_frame(tmp, background=threshold, layer=layer, view=view) for view in views}
        else:
            loaded = load_frame(tmp, background=threshold, layer=layer)
    finally:
        remove_quietly(tmp)
    return loaded, layer, threshold


def remove_quietly(path):
    """Remove ``path`` (None: nothing) if it is there; never raises."""
    if path:
        try:
            os.remove(path)
        except OSError:
            pass
