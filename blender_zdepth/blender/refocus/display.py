"""The image the refocused frames are shown in ("Z-Depth DOF", in the open Image Editors), and
the way back from a click on it to a pixel of the frame (picking the focus pixel).
"""

import bpy
import numpy as np

from ..scene.region import border_rect, frame_size


#: Name of the image the result is shown in.
IMAGE_NAME = "Z-Depth DOF"


def show_image(rgba, *, name=IMAGE_NAME, full_size=None, origin=None):
    """Put ``rgba`` (float32 HxWx4 premultiplied, top row first) into the float image ``name``
    (created or resized as needed) and show it in the open Image Editors; return the image.
    ``full_size``: ``(width, height)`` of the frame when ``rgba`` is a smaller preview of it
    (kept on the image, so a pixel picked on the preview is a pixel of the full frame).
    ``origin``: ``(x, y)`` from the bottom left of the frame the camera saw of the image's
    bottom-left pixel, when the image is a crop of that frame (kept too: a pixel picked on it
    is counted in the frame, as the panel's focus pixel is)."""
    h, w = rgba.shape[:2]
    image = bpy.data.images.get(name)
    if image is not None and (tuple(image.size) != (w, h) or not image.is_float
                              or image.source != "GENERATED"):
        bpy.data.images.remove(image)
        image = None
    if image is None:
        image = bpy.data.images.new(name, w, h, alpha=True, float_buffer=True)
    # Colour space first: changing it after filling the pixels regenerates the buffer.
    linear = compat_linear_colorspace(image)
    if linear and image.colorspace_settings.name != linear:
        image.colorspace_settings.name = linear
    image.alpha_mode = "PREMUL"
    if full_size is not None:
        image["zdepth_full_size"] = [int(full_size[0]), int(full_size[1])]
    elif "zdepth_full_size" in image:
        del image["zdepth_full_size"]
    if origin is not None and tuple(origin) != (0, 0):
        image["zdepth_origin"] = [int(origin[0]), int(origin[1])]
    elif "zdepth_origin" in image:
        del image["zdepth_origin"]
    image.pixels.foreach_set(np.ascontiguousarray(rgba[::-1], dtype=np.float32).ravel())
    image.update()
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type == "IMAGE_EDITOR":
                area.spaces.active.image = image
                area.tag_redraw()
    return image


def crop_origin(data_window, display_window):
    """``(x, y)`` from the bottom left of the frame (the display window) of the bottom-left
    pixel of a picture that holds the data window (OpenEXR windows: ``((xmin, ymin), (xmax,
    ymax))``, y down); None when either is unknown. For :func:`show_image` 's ``origin``."""
    if not data_window or not display_window:
        return None
    (x0, _), (_, y1) = data_window
    (dx0, _), (_, dy1) = display_window
    return int(x0) - int(dx0), int(dy1) - int(y1)


def compat_linear_colorspace(image):
    """The scene-linear colour space name this Blender offers for float images."""
    items = [e.identifier for e in
             image.colorspace_settings.bl_rna.properties["name"].enum_items]
    for name in ("Linear Rec.709", "Linear", "Linear CIE-XYZ E"):
        if name in items:
            return name
    return None


def uv_to_pixel(u, v, width, height):
    """Image Editor view coordinates (0..1 across the image, v up) to the pixel ``(x, y)``
    counted from the bottom-left corner (Blender's convention, that of ``dof_focus_pixel``);
    None outside the image."""
    if not (0.0 <= u < 1.0 and 0.0 <= v < 1.0) or width < 1 or height < 1:
        return None
    return int(u * width), int(v * height)


def image_size(image, scene):
    """``(width, height)`` in pixels of the frame ``image`` shows: the full frame of a live
    preview, the scene's render size for the Render Result."""
    full = image.get("zdepth_full_size") if hasattr(image, "get") else None
    if full is not None and len(full) == 2:  # a live preview: pixels of the full frame
        return int(full[0]), int(full[1])
    w, h = (int(v) for v in image.size)
    if w < 1 or h < 1:  # the Render Result reports no size: use the scene's resolution
        w, h = frame_size(scene)
        rect = border_rect(scene)
        if rect is not None and scene.render.use_crop_to_border:  # the crop
            w, h = rect[2] - rect[0], rect[3] - rect[1]
    return w, h


def image_origin(image, scene):
    """``(x, y)`` from the bottom left of the frame the camera saw of ``image``'s bottom-left
    pixel: where a live preview of a crop lies, the border of a Render Result cropped to it,
    else ``(0, 0)``."""
    origin = image.get("zdepth_origin") if hasattr(image, "get") else None
    if origin is not None and len(origin) == 2:
        return int(origin[0]), int(origin[1])
    if getattr(image, "type", "") == "RENDER_RESULT" and scene.render.use_crop_to_border:
        rect = border_rect(scene)
        if rect is not None:
            return rect[0], rect[1]
    return 0, 0


def pixel_under_mouse(context, mouse_x, mouse_y):
    """``(x, y)`` of the image pixel under window coordinates ``mouse_x, mouse_y`` in an Image
    Editor, or None."""
    for area in context.window.screen.areas:
        if area.type != "IMAGE_EDITOR":
            continue
        image = area.spaces.active.image
        for region in area.regions:
            if region.type != "WINDOW" or image is None:
                continue
            rx, ry = mouse_x - region.x, mouse_y - region.y
            if 0 <= rx < region.width and 0 <= ry < region.height:
                u, v = region.view2d.region_to_view(rx, ry)
                hit = uv_to_pixel(u, v, *image_size(image, context.scene))
                if hit is None:
                    return None
                ox, oy = image_origin(image, context.scene)
                return hit[0] + ox, hit[1] + oy
    return None
