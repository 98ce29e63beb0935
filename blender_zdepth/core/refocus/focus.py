"""The lens of every frame: focus keys (a smooth focus pull through keyed distances), focus on
a picked pixel, and ``lens_for_frame(frame_number, loaded_frame) -> (Lens, focus_source)``
callables that worker processes can receive (picklable)."""

import functools

from .. import dof
from ..batch.names import frame_from_header
from ..errors import UsageError, ZDepthError
from ..lens import Lens

class FocusKeys:
    """A smooth curve through keyed ``(frame, value)`` pairs (focus distances in metres).

    Interpolation: piecewise cubic Hermite. The tangent is flat (zero) at the first and last key
    and at every key where the curve turns (a local minimum or maximum); elsewhere it is the
    Fritsch-Carlson weighted harmonic mean of the neighbouring slopes. So the curve passes
    through every key, never overshoots (no focus behind a key's distance), is monotone between
    keys, and eases in and out like Blender's auto-clamped keyframes: with two keys it is exactly
    a smoothstep ``3t^2 - 2t^3``. Frames before the first key or after the last hold the end
    values.
    """

    def __init__(self, keys):
        keys = sorted((float(f), float(v)) for f, v in keys)
        if not keys:
            raise UsageError("no focus keys given")
        for (fa, _), (fb, _) in zip(keys, keys[1:]):
            if fa == fb:
                raise UsageError(f"frame {fa:g} is keyed twice in the focus keys")
        self.frames = [f for f, _ in keys]
        self.values = [v for _, v in keys]
        self.tangents = self._tangents()

    def _tangents(self):
        x, y, n = self.frames, self.values, len(self.frames)
        if n < 2:
            return [0.0] * n
        h = [x[k + 1] - x[k] for k in range(n - 1)]
        d = [(y[k + 1] - y[k]) / h[k] for k in range(n - 1)]
        m = [0.0] * n
        for k in range(1, n - 1):
            if d[k - 1] * d[k] > 0:
                w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
                m[k] = (w1 + w2) / (w1 / d[k - 1] + w2 / d[k])
        return m

    def __call__(self, frame):
        return self.evaluate(frame)

    def evaluate(self, frame):
        """The value at ``frame`` (any real number)."""
        x, y, m = self.frames, self.values, self.tangents
        frame = float(frame)
        if frame <= x[0]:
            return y[0]
        if frame >= x[-1]:
            return y[-1]
        k = max(i for i in range(len(x) - 1) if x[i] <= frame)
        h = x[k + 1] - x[k]
        t = (frame - x[k]) / h
        t2, t3 = t * t, t * t * t
        return ((2 * t3 - 3 * t2 + 1) * y[k] + (t3 - 2 * t2 + t) * h * m[k]
                + (-2 * t3 + 3 * t2) * y[k + 1] + (t3 - t2) * h * m[k + 1])

    def __repr__(self):
        return "FocusKeys(" + ",".join(f"{f:g}:{v:g}" for f, v in zip(self.frames, self.values)) + ")"


def parse_focus_keys(text):
    """Parse ``"1001:2.5,1048:8.0"`` (frame:distance pairs, distances in metres, > 0)."""
    keys = []
    for item in str(text).replace(" ", "").split(","):
        if not item:
            continue
        try:
            f, v = item.split(":")
            frame, value = float(f), float(v)
        except ValueError:
            raise UsageError(f"--focus-keys: cannot read {item!r}: write FRAME:DISTANCE pairs "
                             f"separated by commas, e.g. 1001:2.5,1048:8.0")
        if not (value > 0 and value < float("inf")):
            raise UsageError(f"--focus-keys: the distance in {item!r} must be a positive number "
                             f"of metres")
        keys.append((frame, value))
    if not keys:
        raise UsageError("--focus-keys is empty: write FRAME:DISTANCE pairs, e.g. 1001:2.5,1048:8.0")
    return FocusKeys(keys)




def lens_resolver(*, focus_distance=None, focus_pixel=None, focus_keys=None, fstop=None,
                  focal_length_mm=None, sensor_width_mm=None, sensor_height_mm=None,
                  sensor_fit=None, pixel_aspect=None):
    """A ``lens_for_frame(frame_number, loaded_frame) -> (Lens, focus_source)`` for
    :func:`~.sequence.refocus_sequence`: camera values come from the frame's header
    (``loaded_frame.camera``, our own exports; the pixel aspect of a plain render from its
    ``pixelAspectRatio``) and every argument that is not None wins over them. Focus, first match: ``focus_keys`` (:class:`FocusKeys`, evaluated at the frame),
    ``focus_pixel`` ``(x, y)`` (the depth under that pixel, per frame), ``focus_distance``, the
    header's focus distance. Raises :class:`UsageError` (via ``Lens.from_camera``) when a
    needed value is in neither."""
    arguments = dict(locals())  # to remake it in a worker process (see _Remade)

    def lens_for(frame, loaded):
        camera = getattr(loaded, "camera", None)
        focus, source = focus_distance, "option"
        if focus_keys is not None:
            if frame is None:
                frame = frame_from_header(getattr(loaded, "header", None))
            if frame is None:
                raise UsageError(f"--focus-keys needs the frame number of {loaded.path}: it is "
                                 f"neither in the file name nor in the header")
            focus, source = float(focus_keys(frame)), "focus keys"
        elif focus_pixel is not None:
            focus, source = pixel_focus(loaded, *focus_pixel), f"pixel {focus_pixel[0]},{focus_pixel[1]}"
        elif focus_distance is None:
            source = "camera"
        aspect = pixel_aspect
        if aspect is None and camera is None:  # a plain render: its standard attribute
            aspect = header_pixel_aspect(getattr(loaded, "header", None))
        lens = Lens.from_camera(camera, focal_length_mm=focal_length_mm, fstop=fstop,
                                focus_distance=focus, sensor_width_mm=sensor_width_mm,
                                sensor_height_mm=sensor_height_mm, sensor_fit=sensor_fit,
                                pixel_aspect=aspect)
        return lens, source
    return _Remade(lens_for, lens_resolver, arguments)


def header_pixel_aspect(header):
    """The standard ``pixelAspectRatio`` of ``header`` (pixel width / height), or None when it
    has none that makes sense."""
    try:
        aspect = float((header or {})["pixelAspectRatio"])
    except (KeyError, TypeError, ValueError):
        return None
    return aspect if 0 < aspect < float("inf") else None


class _Remade:
    """A function made by ``factory(**arguments)`` (a closure), picklable as the factory and its
    arguments, so that worker processes (:class:`~.batch.ParallelRun`) can use it."""

    def __init__(self, function, factory, arguments):
        self.function, self.factory, self.arguments = function, factory, arguments

    def __call__(self, *args, **kwargs):
        return self.function(*args, **kwargs)

    def __reduce__(self):
        return _remake, (self.factory, self.arguments)


def _remake(factory, arguments):
    return factory(**arguments)


def pixel_focus(loaded, x, y, *, remedy="give a focus distance"):
    """The focus distance under pixel ``x, y`` of a loaded frame, given in display-window
    coordinates with the origin at the BOTTOM-LEFT (x right, y up), as Blender's Image Editor
    and Nuke count them; an error when the frame's data window holds no pixel there.
    ``remedy``: what the background error tells the user to do instead."""
    if hasattr(loaded, "array_index"):
        row, col = loaded.array_index(x, y)
    else:  # a bare array-like frame: its own size is the display window
        h = loaded.depth.shape[0]
        row, col = h - 1 - int(round(float(y))), int(round(float(x)))
    h, w = loaded.depth.shape
    if not (0 <= row < h and 0 <= col < w):
        raise ZDepthError(f"focus pixel {x},{y} lies outside the pixels the file holds (its data "
                          f"window is smaller than the frame): pick a pixel on the image")
    try:
        return float(dof.focus_from_pixel(loaded.depth, col, row))
    except ZDepthError:  # the engine counts rows from the top: say it in the user's terms
        raise ZDepthError(f"focus pixel {x},{y} (from the bottom left) looks at the background "
                          f"(no surface): pick a pixel on an object or {remedy}") from None


def lens_getter(lens_per_frame):
    """``lens_per_frame`` (a Lens, ``{frame: Lens}`` or a callable) as a picklable
    ``lens_for_frame(frame_number, loaded_frame)``."""
    # partials of module-level functions: picklable, so that worker processes can use them
    if callable(lens_per_frame) and not hasattr(lens_per_frame, "focus_distance"):
        return lens_per_frame
    if isinstance(lens_per_frame, dict):
        return functools.partial(lens_from_table, dict(lens_per_frame))
    return functools.partial(_same_lens, lens_per_frame)


def lens_from_table(table, frame, _loaded=None):
    """The lens of ``frame`` in ``table`` (``{frame: Lens}``); a :class:`ZDepthError` for a
    frame it does not hold. ``functools.partial(lens_from_table, table)`` is a picklable
    ``lens_for_frame`` for worker processes."""
    try:
        return table[frame]
    except KeyError:
        raise ZDepthError(f"no lens given for frame {frame}")


def _same_lens(lens, _frame, _loaded):
    return lens
