"""The camera that made a frame, as stored in (and read from) an EXR header.

:class:`CameraInfo` holds what a later depth of field or a compositor needs from the file alone:
lens, sensor, f-stop, focus distance, clip range, frame, and the standard OpenEXR
``worldToCamera`` / ``worldToNDC`` matrices when known. Header attributes are prefixed
``zdepthCamera``; the standard OpenEXR attributes ``focus`` (focus distance), ``aperture``
(f-stop), ``nominalFocalLength`` (mm), ``pixelAspectRatio``, ``worldToCamera`` and ``worldToNDC``
are written too, and read as a fallback.
"""

from dataclasses import dataclass

import numpy as np

#: Blender's sensor fit values.
SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")

_FLOAT_FIELDS = (
    # (field, header key)
    ("focal_length_mm", "zdepthCameraFocalLength"),
    ("sensor_width_mm", "zdepthCameraSensorWidth"),
    ("sensor_height_mm", "zdepthCameraSensorHeight"),
    ("fstop", "zdepthCameraFstop"),
    ("focus_distance", "zdepthCameraFocusDistance"),
    ("clip_start", "zdepthCameraClipStart"),
    ("clip_end", "zdepthCameraClipEnd"),
    ("pixel_aspect", "zdepthCameraPixelAspect"),
)

#: Standard OpenEXR attributes read when our own are missing.
_STANDARD = {"focus_distance": "focus", "fstop": "aperture",
             "focal_length_mm": "nominalFocalLength"}


def _matrix(value):
    if value is None:
        return None
    m = np.asarray(value, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        return None
    return m


@dataclass
class CameraInfo:
    """Camera of a frame. Lengths of the lens and sensor in millimetres, distances in scene units
    (metres by default). ``fstop``/``focus_distance`` None: unknown or depth of field off.

    ``world_to_camera`` / ``world_to_ndc``: 4x4 matrices (row-vector convention of OpenEXR:
    ``p_cam = p_world @ M``), or None.
    """

    focal_length_mm: float = 50.0
    sensor_width_mm: float = 36.0
    sensor_height_mm: float = 24.0
    sensor_fit: str = "AUTO"
    fstop: float = None
    focus_distance: float = None
    clip_start: float = None
    clip_end: float = None
    frame: int = None
    pixel_aspect: float = 1.0
    world_to_camera: object = None
    world_to_ndc: object = None

    def to_header(self):
        """EXR header attributes for this camera (float32 floats, M44f matrices)."""
        h = {}
        for name, key in _FLOAT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                h[key] = float(value)
        h["zdepthCameraSensorFit"] = str(self.sensor_fit)
        if self.frame is not None:
            h["zdepthFrame"] = int(self.frame)
        for name, key in _STANDARD.items():
            if getattr(self, name) is not None:
                h[key] = float(getattr(self, name))
        if self.pixel_aspect is not None:  # the standard attribute too: viewers squeeze by it
            h["pixelAspectRatio"] = float(self.pixel_aspect)
        for name, key in (("world_to_camera", "worldToCamera"), ("world_to_ndc", "worldToNDC")):
            m = _matrix(getattr(self, name))
            if m is not None:
                h[key] = m.astype(np.float32)
        return h

    @classmethod
    def from_header(cls, header):
        """The camera described by ``header``, or None when it has no camera attribute."""
        if not header:
            return None
        ours = any(str(k).startswith("zdepthCamera") for k in header)
        standard = any(k in header for k in _STANDARD.values())
        if not (ours or standard):
            return None
        kwargs = {}
        for name, key in _FLOAT_FIELDS:
            value = header.get(key, header.get(_STANDARD.get(name, ""), None))
            if value is not None:
                try:
                    kwargs[name] = float(value)
                except (TypeError, ValueError):
                    pass
        if "pixel_aspect" not in kwargs:  # files of others: the standard attribute
            try:
                aspect = float(header.get("pixelAspectRatio", 1.0))
                if aspect > 0 and np.isfinite(aspect):
                    kwargs["pixel_aspect"] = aspect
            except (TypeError, ValueError):
                pass
        fit = str(header.get("zdepthCameraSensorFit", "AUTO")).upper()
        kwargs["sensor_fit"] = fit if fit in SENSOR_FITS else "AUTO"
        if "zdepthFrame" in header:
            try:
                kwargs["frame"] = int(header["zdepthFrame"])
            except (TypeError, ValueError):
                pass
        kwargs["world_to_camera"] = _matrix(header.get("worldToCamera"))
        kwargs["world_to_ndc"] = _matrix(header.get("worldToNDC"))
        return cls(**kwargs)
