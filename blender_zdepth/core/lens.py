"""Thin-lens optics: the circle of confusion of every pixel, in pixels.

A point at planar depth ``D`` seen by a lens of focal length ``f``, f-number ``N``, focused at
``S`` (all in metres here) is spread on the sensor over a disk.  The textbook thin lens gives the
disk *diameter* ``c = f^2 |D - S| / (N D (S - f))``.

Cycles does not model the lens that way.  Its camera (``intern/cycles/kernel/camera``) starts
every ray on a disk of radius ``A = f / (2 N)`` centred on the pinhole and aims it at the point
of the pinhole ray that lies on the focal plane ``z = S``.  A point at depth ``D`` is then seen
from the lens point ``u`` at the focal-plane offset ``u (1 - S / D)``, that is at the angle
``u (1 - S / D) / S``, and on the sensor at ``f`` times that angle.  The blur *radius* on the
sensor is therefore::

    r = f^2 (1/S - 1/D) / (2 N)        (Cycles)     instead of
    r = f^2 (D - S) / (2 N D (S - f))   (textbook)

The two differ by the factor ``(S - f) / S`` (under 2 % for S >= 50 f).  We match what Blender
renders, so this module uses the Cycles form.  ``r`` is linear in ``1/D``; it is signed here:
negative in front of the focal plane, positive behind it, and ``f^2 / (2 N S)`` at infinity
(background pixels, Cycles' 1e10 and ``+inf``, are that far limit, not an error).

Sensor to pixels follows Blender's sensor fit: ``AUTO`` lets ``sensor_width`` span the larger
image dimension (measured with the pixel aspect), ``HORIZONTAL`` lets it span the width and
``VERTICAL`` lets ``sensor_height`` span the height.  With non-square pixels
(``pixel_aspect = aspect_x / aspect_y``) a round blur is an ellipse in pixels: the radii this
module returns are horizontal pixels; the vertical radius is ``pixel_aspect`` times larger
(see :func:`vertical_scale`).
"""

from dataclasses import dataclass, fields, replace

import numpy as np

from .errors import UsageError

SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")

#: Depths at or above this are background (Cycles writes 1e10 where no surface was hit).
BACKGROUND_DEPTH = 1e9


@dataclass
class Lens:
    """A camera lens and sensor, in Blender's units (millimetres for the lens and sensor,
    metres -- scene units with unit scale 1 -- for the focus distance)."""

    focal_length_mm: float
    fstop: float
    focus_distance: float
    sensor_width_mm: float = 36.0
    sensor_height_mm: float = 24.0
    sensor_fit: str = "AUTO"
    pixel_aspect: float = 1.0
    #: ``(width, height)`` of the frame the camera saw (an EXR's display window), when it is not
    #: the image the depth array covers (crop, border render, overscan); None: the array's size.
    frame_size: tuple = None

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raise :class:`UsageError` when a value is impossible; return self."""
        def positive(name, value):
            try:
                ok = np.isfinite(float(value)) and float(value) > 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise UsageError(f"the lens {name} must be a positive number, not {value!r}")

        positive("focal length (mm)", self.focal_length_mm)
        positive("f-stop", self.fstop)
        positive("focus distance", self.focus_distance)
        positive("sensor width (mm)", self.sensor_width_mm)
        positive("sensor height (mm)", self.sensor_height_mm)
        positive("pixel aspect", self.pixel_aspect)
        fit = str(self.sensor_fit).upper()
        if fit not in SENSOR_FITS:
            raise UsageError(f"sensor fit must be one of {', '.join(SENSOR_FITS)}, "
                             f"not {self.sensor_fit!r}")
        self.sensor_fit = fit
        if self.frame_size is not None:
            try:
                w, h = (int(v) for v in self.frame_size)
            except (TypeError, ValueError):
                w = h = 0
            if w < 1 or h < 1:
                raise UsageError(f"the frame size must be two positive integers, not "
                                 f"{self.frame_size!r}")
            self.frame_size = (w, h)
        return self

    @classmethod
    def from_camera(cls, camera, **overrides):
        """A :class:`Lens` from a :class:`~blender_zdepth.core.camera.CameraInfo` (or anything
        with the same attribute names); keyword ``overrides`` that are not None win.

        Raises :class:`UsageError` when neither the camera nor the overrides give an f-stop or
        a focus distance."""
        values = {}
        names = [f.name for f in fields(cls)]
        if camera is not None:
            for name in names:
                value = getattr(camera, name, None)
                if value is not None:
                    values[name] = value
        for name, value in overrides.items():
            if name not in names:
                raise TypeError(f"Lens has no field {name!r}")
            if value is not None:
                values[name] = value
        missing = [(what, option) for name, what, option in
                   (("focal_length_mm", "focal length", "--focal-length"),
                    ("fstop", "f-stop", "--fstop"),
                    ("focus_distance", "focus distance", "--focus-distance"))
                   if name not in values]
        if missing:  # all of them in one message, not one per run
            what = " and ".join(", ".join(m[0] for m in missing).rsplit(", ", 1))
            give = " ".join(f"{m[1]} ..." for m in missing)
            raise UsageError(f"no {what} in the file's camera: give {give}")
        return cls(**values)

    def with_focus(self, focus_distance):
        """A copy focused at ``focus_distance``."""
        return replace(self, focus_distance=float(focus_distance))

    def pixels_per_mm(self, width, height):
        """Horizontal image pixels per millimetre of sensor for a ``width`` x ``height`` image
        (:attr:`frame_size`, when set, wins: the sensor spans the display window, whatever part
        of it the pixels cover)."""
        if self.frame_size is not None:
            width, height = self.frame_size
        width, height = int(width), int(height)
        if width < 1 or height < 1:
            raise UsageError(f"image size must be positive, not {width}x{height}")
        fit = self.sensor_fit
        if fit == "AUTO":
            # Blender: the sensor width spans the larger of the two image dimensions, compared
            # in display units (pixel aspect applied).
            fit = "HORIZONTAL" if width * self.pixel_aspect >= height else "VERTICAL_W"
        if fit == "HORIZONTAL":
            return width / self.sensor_width_mm
        # Vertical fit: the sensor spans the image height; a pixel is pixel_aspect times wider
        # than tall, so horizontally one mm of sensor holds fewer pixels.
        span_mm = self.sensor_width_mm if fit == "VERTICAL_W" else self.sensor_height_mm
        return height / span_mm / self.pixel_aspect

    def coc_at_infinity_px(self, width, height):
        """Signed CoC radius (horizontal pixels) of a point at infinite depth."""
        f_mm = float(self.focal_length_mm)
        # Cycles: aperture radius = (f mm * 1e-3) / (2 N) metres, focal plane at S metres.
        aperture_m = f_mm * 1e-3 / (2.0 * float(self.fstop))
        return aperture_m / float(self.focus_distance) * f_mm * self.pixels_per_mm(width, height)


def vertical_scale(lens):
    """Vertical blur radius / horizontal blur radius in pixels (the pixel aspect)."""
    return float(lens.pixel_aspect)


def inverse_depth(depth):
    """``1 / depth`` as float32, 0 for background (``+inf``, NaN, >= 1e9), huge for <= 0."""
    d = np.asarray(depth, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.float32(1.0) / d
    inv[~np.isfinite(d) | (d >= BACKGROUND_DEPTH)] = 0.0
    inv[d <= 0] = np.float32(1e30)
    return inv


def coc_radius_px(depth, lens, width=None, height=None, max_radius=None):
    """Signed circle-of-confusion radius in horizontal pixels for each depth.

    ``depth``: float array (any shape) of planar camera depth in scene units; ``+inf``, NaN and
    values >= 1e9 are background (the lens' far limit).  ``width``/``height``: the image size the
    depth belongs to (default: the array's own shape, which must then be 2-D).  ``max_radius``:
    clamp the magnitude (pixels).  Returns float32, negative in front of the focal plane.
    """
    depth = np.asarray(depth)
    if width is None or height is None:
        if depth.ndim != 2:
            raise UsageError("give width and height for a depth array that is not an image")
        height, width = depth.shape
    r_inf = lens.coc_at_infinity_px(width, height)
    s = np.float32(lens.focus_distance)
    # r = r_inf * (1 - S / D), computed on 1/D so background (1/D = 0) is exact.
    coc = np.float32(r_inf) * (np.float32(1.0) - s * inverse_depth(depth))
    if max_radius is not None:
        m = np.float32(max_radius)
        np.clip(coc, -m, m, out=coc)
    return coc.astype(np.float32, copy=False)


def depth_for_coc(coc, lens, width, height):
    """Planar depth whose signed CoC radius is ``coc`` (inverse of :func:`coc_radius_px`);
    ``+inf`` where ``coc`` reaches the far limit or beyond."""
    r_inf = lens.coc_at_infinity_px(width, height)
    inv = (1.0 - np.asarray(coc, dtype=np.float64) / r_inf) / float(lens.focus_distance)
    with np.errstate(divide="ignore"):
        return np.where(inv > 0, 1.0 / np.maximum(inv, 1e-300), np.inf)
