"""The part of the frame a render covers: the full frame (resolution times percentage) and,
for a render cropped to its border (Render Region with Crop to Render Region), the crop's
place in it, as OpenEXR windows (:func:`crop_windows`).
"""

import numpy as np


def frame_size(scene):
    """``(width, height)`` in pixels of the frame ``scene`` renders (resolution times
    percentage, as Blender rounds it), border or not."""
    render = scene.render
    pct = int(render.resolution_percentage)
    return int(render.resolution_x) * pct // 100, int(render.resolution_y) * pct // 100


def border_rect(scene):
    """The render border of ``scene`` in pixels, ``(xmin, ymin, xmax, ymax)`` from the bottom
    left (max exclusive), as Blender's render pipeline computes it (``render_init_from_main``:
    the float border times the frame size, truncated), or None when the render has no border."""
    render = scene.render
    if not render.use_border:
        return None
    w, h = frame_size(scene)
    f32 = np.float32  # Blender multiplies the float border by the size in single precision
    xmin, xmax = int(f32(render.border_min_x) * f32(w)), int(f32(render.border_max_x) * f32(w))
    ymin, ymax = int(f32(render.border_min_y) * f32(h)), int(f32(render.border_max_y) * f32(h))
    if (xmin, ymin, xmax, ymax) == (0, 0, w, h):
        return None
    return xmin, ymin, xmax, ymax


def is_cropped(scene):
    """Whether ``scene`` renders a crop of its frame (a border with Crop to Render Region)."""
    return border_rect(scene) is not None and bool(scene.render.use_crop_to_border)


def crop_windows(scene, size):
    """``(data_window, display_window)`` (OpenEXR windows, ``((xmin, ymin), (xmax, ymax))``, y
    down) of a render of ``size`` ``(width, height)`` pixels from ``scene``: when it is cropped
    to its border, the crop's place in the full frame and the full frame; None when the render
    is the full frame (no border, or a border without crop: Blender renders the full frame with
    an empty outside) or ``size`` is not the crop Blender would make of these settings (then
    nothing is known of the crop's place)."""
    if not is_cropped(scene):
        return None
    xmin, ymin, xmax, ymax = border_rect(scene)
    if tuple(int(v) for v in size) != (xmax - xmin, ymax - ymin):
        return None
    w, h = frame_size(scene)
    data = ((xmin, h - ymax), (xmax - 1, h - 1 - ymin))
    return data, ((0, 0), (w - 1, h - 1))
