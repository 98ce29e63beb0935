"""Pictures for people: scene-linear colour to display values.

Arrays are float: ``HxWx3`` RGB or ``HxWx4`` premultiplied RGBA in scene-linear values (any range)
go in; display-referred float arrays in 0..1 come out, ready for
:func:`blender_zdepth.core.png.write_png`. With ``colour`` (a complete
:class:`~blender_zdepth.core.colour.ColourSettings`) the picture is colour managed as Blender
shows it (view transform, look, exposure, gamma: :mod:`.colour`); without, it is the plain sRGB
transfer (data such as depth previews stay plain).
"""

import numpy as np

from .colour import apply, linear_to_srgb

__all__ = ["has_alpha", "linear_to_srgb", "to_display"]


def _transfer(rgb, colour):
    if colour is None:
        return linear_to_srgb(rgb)
    return apply(rgb, colour)


def has_alpha(image):
    """True when an ``HxWx4`` image has a pixel an 8-bit alpha shows as not opaque."""
    a = np.asarray(image)
    return a.ndim == 3 and a.shape[2] == 4 and bool(np.any(np.rint(
        np.clip(np.nan_to_num(a[..., 3], nan=1.0), 0.0, 1.0) * 255.0) < 255))


def to_display(image, colour=None, *, background=(0.0, 0.0, 0.0), keep_alpha=False):
    """``HxW`` gray, ``HxWx3`` RGB or ``HxWx4`` premultiplied RGBA (scene-linear) to display
    values in 0..1, ``colour`` managed (see the module). Returns ``HxWx3``; transparent pixels
    show ``background`` (display values). With ``keep_alpha`` and an image that has alpha
    (:func:`has_alpha`), returns ``HxWx4`` with straight alpha instead, as Blender writes an RGBA
    PNG: the colour is divided by alpha before the transform, the alpha is kept as it is."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.shape[2] != 4:
        return _transfer(a[..., :3], colour)
    alpha = np.clip(np.nan_to_num(a[..., 3:4], nan=0.0), 0.0, 1.0)
    if keep_alpha and has_alpha(a):
        safe = np.where(alpha > 0.0, alpha, 1.0)
        straight = np.where(alpha > 0.0, a[..., :3] / safe, 0.0)
        return np.concatenate([_transfer(straight, colour), alpha], axis=2)
    if colour is None:  # the plain transfer of premultiplied colour, as before
        rgb = linear_to_srgb(a[..., :3])
    else:
        safe = np.where(alpha > 0.0, alpha, 1.0)
        rgb = _transfer(np.where(alpha > 0.0, a[..., :3] / safe, 0.0), colour) * alpha
    return rgb + (1.0 - alpha) * np.asarray(background, np.float32)
