"""Pictures for people: scene-linear to display sRGB.

Arrays are float: ``HxWx3`` RGB or ``HxWx4`` premultiplied RGBA in scene-linear values (any range)
go in; display-referred ``HxWx3`` float arrays in 0..1 come out, ready for
:func:`blender_zdepth.core.png.write_png`.
"""

import numpy as np


def linear_to_srgb(values):
    """Scene-linear values to the sRGB display transfer (clipped to 0..1), float32."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * np.power(v, 1.0 / 2.4) - 0.055).astype(
        np.float32)


def to_display(image, background=(0.0, 0.0, 0.0)):
    """``HxW`` gray, ``HxWx3`` RGB or ``HxWx4`` premultiplied RGBA (scene-linear) to display
    sRGB ``HxWx3`` in 0..1. Transparent pixels show ``background`` (display values)."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.shape[2] == 4:
        rgb = linear_to_srgb(a[..., :3])
        alpha = np.clip(a[..., 3:4], 0.0, 1.0)
        return rgb + (1.0 - alpha) * np.asarray(background, np.float32)
    return linear_to_srgb(a[..., :3])
