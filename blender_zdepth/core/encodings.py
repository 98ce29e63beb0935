"""Depth encodings: how linear planar camera depth is stored in a file and read back exactly.

Four encodings, each monotonic and exactly invertible from the parameters stored in the file
header (``near``, ``far``, see :meth:`DepthEncoding.to_header`):

==============  =====================================  ===================================
name            stored value ``v`` for depth ``z``     decoded depth
==============  =====================================  ===================================
``log``         ``ln(z / near) / ln(far / near)``      ``near * (far / near) ** v``
``linear``      ``z`` (world units, Blender's Z pass)  ``v``
``normalized``  ``(z - near) / (far - near)``          ``near + v * (far - near)``
``inverse``     ``1 / z`` (Nuke's ``depth.Z``)         ``1 / v``
==============  =====================================  ===================================

``log`` (the default) maps ``near`` to 0 and ``far`` to 1, so every depth in ``[near, far]`` gets
the same *relative* precision; in float32 that is better than 1e-6 relative even for
0.01 m - 10 km. Depths outside ``[near, far]`` are not clamped: they encode below 0 or above 1
and decode back to the same depth.

Background (no surface hit) is a defined state: Cycles writes 1e10, EEVEE writes the camera's
clip end, and NaN/inf may appear. Depth that is non-finite or ``>= background`` (the threshold, by
default 1e9) is background. It is stored as ``+inf`` (``log``, ``linear``, ``normalized``) or
``0`` (``inverse``: 1/inf, "far = 0" like Nuke), values no real depth can take, and decodes to
``+inf``. All arithmetic is done in float64; stored values are float32 (or half).
"""

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import UsageError, ZDepthError

#: Encoding names; the first is the default.
ENCODINGS = ("log", "linear", "normalized", "inverse")

#: Depth at or beyond this is background by default (Cycles writes 1e10 where no surface is hit).
DEFAULT_BACKGROUND = 1e9

#: Header attribute prefix of everything this module writes.
PREFIX = "zdepth"

# Pixels per block in encode/decode (float64 temporaries stay in cache).
_BLOCK = 1 << 16

#: Version of the header layout written by :meth:`DepthEncoding.to_header`.
HEADER_VERSION = 1

_FORMULAS = {
    "log": ("Z = near * (far / near) ** v   "
            "(v = ln(Z / near) / ln(far / near); near -> 0, far -> 1)"),
    "linear": "Z = v   (planar camera depth in world units)",
    "normalized": "Z = near + v * (far - near)   (near -> 0, far -> 1)",
    "inverse": "Z = 1 / v   (v = 1 / Z, far = 0)",
}


def _f32(value):
    """``value`` rounded to the nearest float32, as a Python float (what an EXR float holds)."""
    return float(np.float32(value))


def is_background(depth, threshold=DEFAULT_BACKGROUND):
    """Boolean mask of background pixels in linear depth ``depth`` (any shape).

    Background: non-finite (NaN, +/-inf) or ``>= threshold`` (Cycles writes 1e10; for EEVEE pass
    the camera's clip end, see :func:`background_threshold`). ``threshold=None`` means only
    non-finite values.
    """
    d = np.asarray(depth)
    with np.errstate(invalid="ignore"):
        mask = ~np.isfinite(d)
        if threshold is not None and math.isfinite(threshold):
            mask |= d >= threshold
    return mask


def background_threshold(clip_end=None, clip_start=None, engine=None):
    """The background threshold for a render.

    1e9 (Cycles writes 1e10 where no surface is hit), or, when the camera's ``clip_end`` is known
    and the engine is EEVEE (or not known), just under the clip end: EEVEE writes the clip end as
    background, read back through its depth buffer, so the value lands within about
    ``1e-7 * clip_end / clip_start`` (relative) of the clip end, above or below (measured with
    Blender 4.5 and 5.0); no surface beyond the clip end is ever rendered. The tolerance is
    ``clamp(1e-7 * clip_end / clip_start, 1e-6, 0.05)`` (``clip_start`` unknown: 1e-4).
    """
    if clip_end is None or not clip_end > 0 or (engine is not None
                                                  and "EEVEE" not in str(engine).upper()):
        return DEFAULT_BACKGROUND
    ratio = clip_end / clip_start if clip_start and clip_start > 0 else 1e3
    tol = min(0.05, max(1e-6, 1e-7 * ratio))
    return min(DEFAULT_BACKGROUND, _f32(clip_end * (1.0 - tol)))


@dataclass(frozen=True)
class DepthEncoding:
    """How depth is stored. ``near`` and ``far`` (world units) are rounded to float32 so that the
    values stored in an EXR header (float attributes) are exactly the ones used to encode.

    ``background``: threshold; linear depth that is non-finite or ``>= background`` is
    background (see :func:`is_background`).
    """

    name: str = "log"
    near: float = 0.1
    far: float = 1000.0
    units: str = "m"
    background: float = DEFAULT_BACKGROUND
    planar: bool = field(default=True, repr=False)

    def __post_init__(self):
        if self.name not in ENCODINGS:
            raise UsageError(f"unknown depth encoding {self.name!r}: use one of "
                             f"{', '.join(ENCODINGS)}")
        try:
            near, far = float(self.near), float(self.far)
            bg = float(self.background)
        except (TypeError, ValueError):
            raise UsageError(f"near, far and background must be numbers, not "
                             f"{self.near!r}, {self.far!r}, {self.background!r}")
        if not (math.isfinite(near) and math.isfinite(far)):
            raise UsageError(f"near and far must be finite, not {near} and {far}")
        if near < 0 or (self.name in ("log", "inverse") and near <= 0):
            raise UsageError(f"near must be greater than 0 for the {self.name} encoding, "
                             f"not {near}")
        if not near < far:
            raise UsageError(f"near ({near:g}) must be less than far ({far:g})")
        if math.isnan(bg) or bg <= 0:
            raise UsageError(f"the background threshold must be a positive depth, not {bg}")
        object.__setattr__(self, "near", _f32(near))
        object.__setattr__(self, "far", _f32(far))
        object.__setattr__(self, "background", _f32(bg) if math.isfinite(bg) else math.inf)
        if not self.near < self.far:
            raise UsageError(f"near ({near!r}) and far ({far!r}) are too close to store")

    # -- the maps -------------------------------------------------------------------------------

    @property
    def background_value(self):
        """The stored value of a background pixel: +inf, or 0 for ``inverse``."""
        return 0.0 if self.name == "inverse" else math.inf

    @property
    def formula(self):
        """How to decode a stored value ``v`` to depth ``Z``, in words (also in the header)."""
        return _FORMULAS[self.name]

    def encode_value(self, depth):
        """Encode finite, non-negative depth (float64 in, float64 out, no background handling)."""
        z = np.asarray(depth, dtype=np.float64)
        near, far = self.near, self.far
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.name == "log":
                v = np.divide(z, near, out=np.empty_like(z))
                np.log(v, out=v)
                v *= 1.0 / math.log(far / near)
                return v
            if self.name == "linear":
                return z.copy()
            if self.name == "normalized":
                return (z - near) / (far - near)
            return 1.0 / z

    def decode_value(self, values):
        """Inverse of :meth:`encode_value` (float64 in, float64 out, no background handling)."""
        v = np.asarray(values, dtype=np.float64)
        near, far = self.near, self.far
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.name == "log":
                z = np.multiply(v, math.log(far / near), out=np.empty_like(v))
                np.exp(z, out=z)
                z *= near
                return z
            if self.name == "linear":
                return v.copy()
            if self.name == "normalized":
                return near + v * (far - near)
            return 1.0 / v

    def derivative(self, depth):
        """``dv/dz`` at ``depth`` (float64): how fast the stored value changes with depth."""
        z = np.asarray(depth, dtype=np.float64)
        if self.name == "log":
            return 1.0 / (z * math.log(self.far / self.near))
        if self.name == "linear":
            return np.ones_like(z)
        if self.name == "normalized":
            return np.full_like(z, 1.0 / (self.far - self.near))
        return -1.0 / (z * z)

    def encode(self, depth):
        """Encode linear planar depth (any shape) to float32 stored values.

        Background pixels (see :func:`is_background` with this encoding's threshold) become
        :attr:`background_value`. Negative depth is an error (:class:`ZDepthError`). Works in
        float64 on blocks of pixels (cache-friendly, little extra memory).
        """
        z = np.asarray(depth)
        flat = z.reshape(-1)
        out = np.empty(flat.shape, np.float32)
        negatives, smallest = 0, 0.0
        for i in range(0, flat.size, _BLOCK):
            block = flat[i:i + _BLOCK].astype(np.float64)
            bg = is_background(block, self.background)
            with np.errstate(invalid="ignore"):
                neg = (block < 0) & ~bg
            if neg.any():
                negatives += int(neg.sum())
                smallest = min(smallest, float(block[neg].min()))
                continue
            block[bg] = 1.0
            v = self.encode_value(block)
            v[bg] = self.background_value
            out[i:i + _BLOCK] = v
        if negatives:
            raise ZDepthError(f"{negatives} pixel(s) have negative depth (smallest "
                              f"{smallest:g}): camera depth is never negative; is this really "
                              f"a depth pass?")
        return out.reshape(z.shape)

    def decode(self, values):
        """Decode stored values (any shape, any float dtype) to float32 linear planar depth,
        ``+inf`` where the value is the background value (or NaN / not a possible depth)."""
        v_all = np.asarray(values)
        flat = v_all.reshape(-1)
        out = np.empty(flat.shape, np.float32)
        for i in range(0, flat.size, _BLOCK):
            v = flat[i:i + _BLOCK].astype(np.float64)
            with np.errstate(invalid="ignore"):
                if self.name == "inverse":
                    bg = np.isnan(v) | (v <= 0)  # +inf is depth 0
                elif self.name == "log":
                    bg = np.isnan(v) | (v == np.inf)  # -inf is depth 0
                else:
                    bg = ~np.isfinite(v)
            v[bg] = 0.5
            z = self.decode_value(v)
            z[bg] = np.inf
            with np.errstate(over="ignore"):
                out[i:i + _BLOCK] = z
        return out.reshape(v_all.shape)

    # -- header -----------------------------------------------------------------------------------

    def to_header(self):
        """EXR header attributes (all keys start with ``zdepth``) that describe this encoding."""
        bg_rule = (f"depth >= {self.background:g} or non-finite" if math.isfinite(self.background)
                   else "non-finite depth")
        return {
            "zdepthVersion": HEADER_VERSION,
            "zdepthEncoding": self.name,
            "zdepthNear": self.near,
            "zdepthFar": self.far,
            "zdepthUnits": self.units,
            "zdepthPlanar": 1 if self.planar else 0,
            "zdepthBackgroundThreshold": self.background,
            "zdepthBackgroundValue": self.background_value,
            "zdepthBackground": (f"{bg_rule} is background (no surface); stored as "
                                 f"{'0' if self.name == 'inverse' else '+inf'}, "
                                 f"decodes to +inf"),
            "zdepthFormula": self.formula,
        }

    @classmethod
    def from_header(cls, header):
        """The encoding described by ``header`` (a dict of EXR attributes), or None when the
        header has no ``zdepthEncoding``. A malformed description is a :class:`ZDepthError`."""
        if not header or "zdepthEncoding" not in header:
            return None
        try:
            name = str(header["zdepthEncoding"])
            near, far = float(header["zdepthNear"]), float(header["zdepthFar"])
            bg = float(header.get("zdepthBackgroundThreshold", DEFAULT_BACKGROUND))
            planar = bool(int(header.get("zdepthPlanar", 1)))
            return cls(name=name, near=near, far=far, units=str(header.get("zdepthUnits", "m")),
                       background=bg, planar=planar)
        except (KeyError, TypeError, ValueError, UsageError) as exc:
            raise ZDepthError(f"the file's zdepth header is damaged or from a newer version "
                              f"(version {header.get('zdepthVersion')!r}): {exc}")

    def with_range(self, near, far):
        """A copy with another ``[near, far]``."""
        return DepthEncoding(self.name, near, far, self.units, self.background, self.planar)


# -- ranges ---------------------------------------------------------------------------------------

def _valid_samples(depth, threshold, max_samples):
    d = np.asarray(depth, dtype=np.float64).ravel()
    if max_samples and d.size > max_samples:
        d = d[:: int(math.ceil(d.size / max_samples))]
    bg = is_background(d, threshold)
    return d[~bg & (d > 0)]


def range_from_data(depth, background=DEFAULT_BACKGROUND, low=0.001, high=0.999,
                    max_samples=2_000_000):
    """A robust ``(near, far)`` for one depth frame (or a list/sequence of frames: one range for
    all of them, so that a normalized or log map does not flicker from frame to frame).

    Uses the ``low`` and ``high`` quantiles of the finite, positive, non-background depth (so a few
    stray pixels do not stretch the range); values outside still encode exactly. Raises
    :class:`ZDepthError` when no pixel holds a surface.
    """
    frames = depth if isinstance(depth, (list, tuple)) else [depth]
    per = max(1, max_samples // max(1, len(frames)))
    samples = [_valid_samples(f, background, per) for f in frames]
    d = np.concatenate(samples) if samples else np.empty(0)
    if d.size == 0:
        raise ZDepthError("no pixel holds a surface (all depth is background, NaN, zero or "
                          "negative): cannot choose a depth range from the data; give "
                          "--near and --far")
    lo, hi = np.quantile(d, [low, high]) if d.size > 1 else (d[0], d[0])
    lo, hi = float(lo), float(hi)
    if not hi > lo * (1 + 1e-4):
        lo, hi = lo / 1.01, hi * 1.01
    return lo, hi


def sequence_range(frames, background=DEFAULT_BACKGROUND, **kwargs):
    """One ``(near, far)`` over several depth frames (an iterable of arrays)."""
    return range_from_data(list(frames), background=background, **kwargs)


def range_from_camera(camera):
    """``(near, far)`` from a :class:`~blender_zdepth.core.camera.CameraInfo` clip range."""
    if camera is None or camera.clip_start is None or camera.clip_end is None:
        raise ZDepthError("the camera's clip range is not known: give near and far")
    return float(camera.clip_start), float(camera.clip_end)


# -- preview --------------------------------------------------------------------------------------

def preview(depth, near, far, background=DEFAULT_BACKGROUND):
    """A 0..1 float32 picture of linear ``depth`` (HxW): white (1) at ``near``, black (0) at
    ``far``, logarithmic in between (clipped outside), background 0."""
    d = np.asarray(depth, dtype=np.float64)
    bg = is_background(d, background)
    near = max(float(near), 1e-12)
    far = max(float(far), near * (1 + 1e-6))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.log(np.maximum(d, 1e-300) / near) / math.log(far / near)
    out = 1.0 - np.clip(np.nan_to_num(t, nan=1.0), 0.0, 1.0)
    out[bg] = 0.0
    return out.astype(np.float32)


# -- the background rule ---------------------------------------------------------------------------

#: Relative distance below the frame's largest depth within which the automatic rule looks for
#: EEVEE's sky (the clip end, read back through a depth buffer) in a file without a camera.
SKY_TOLERANCE = 2e-3

#: Share of the frame the sky must cover (and touch the frame's border) to be recognised.
SKY_MIN_SHARE = 0.01

#: Smallest depth taken for a sky without a recorded camera (clip ends are 100 m and more in
#: practice). A flat backdrop facing the camera looks the same as a sky; at 50 m or more, taking
#: it for infinitely far changes its blur by at most focus/50 of the far limit.
SKY_MIN_DEPTH = 50.0


@dataclass
class BackgroundReport:
    """What :func:`apply_background` took for "no surface", and why.

    ``nonfinite``: NaN / inf pixels; ``far``: pixels at or beyond ``threshold`` (Cycles' 1e10,
    or the given depth); ``sky``: pixels taken for EEVEE's sky at ``sky_depth`` (the clip end);
    ``transparent``: pixels with ``Z <= 0`` and alpha 0; ``covered_nonpositive``: pixels with
    ``Z <= 0`` that are NOT transparent (left as they are: not a camera depth). ``total``:
    pixels in the frame."""

    rule: str
    threshold: float = None
    total: int = 0
    nonfinite: int = 0
    far: int = 0
    sky: int = 0
    sky_depth: float = None
    sky_source: str = ""
    transparent: int = 0
    covered_nonpositive: int = 0

    @property
    def background(self):
        return self.nonfinite + self.far + self.sky + self.transparent

    def line(self):
        """One line for the user: how many pixels hold no surface, and why."""
        if not self.background:
            return f"background: none of the {self.total} pixels (rule: {self.rule})"
        why = []
        if self.nonfinite:
            why.append(f"{self.nonfinite} NaN/inf")
        if self.far:
            why.append(f"{self.far} at or beyond {self.threshold:g}")
        if self.sky:
            why.append(f"{self.sky} at {self.sky_depth:g}, EEVEE's sky at the clip end "
                       f"({self.sky_source}; --background none keeps them as a surface)")
        if self.transparent:
            why.append(f"{self.transparent} transparent with Z <= 0")
        return (f"background: {self.background} of {self.total} pixels hold no surface "
                f"({', '.join(why)})")

    def to_dict(self):
        return {k: getattr(self, k) for k in ("rule", "threshold", "total", "nonfinite", "far",
                                              "sky", "sky_depth", "sky_source", "transparent",
                                              "covered_nonpositive")} | {
            "background": self.background}


def parse_background(text):
    """``--background auto|none|DEPTH`` -> ``"auto"``, ``"none"`` or a positive float;
    :class:`UsageError` otherwise."""
    if text is None:
        return "auto"
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        word = str(text).strip().lower()
        if word in ("auto", "none"):
            return word
        try:
            value = float(word)
        except ValueError:
            raise UsageError(f"--background must be auto, none or a depth, not {text!r}")
    if not (value > 0 and math.isfinite(value)):
        raise UsageError(f"--background must be a positive depth, not {text!r}")
    return value


def border_region(mask, max_runs=1 << 18):
    """The pixels of ``mask`` (HxW bool) 4-connected to the frame's border, or None when the
    mask breaks into more than ``max_runs`` row runs (a textured surface, no sky). Runs of each
    row are joined with the overlapping runs of the next row (union-find over runs)."""
    m = np.asarray(mask, dtype=bool)
    h, w = m.shape
    pad = np.zeros((h, w + 2), np.int8)
    pad[:, 1:-1] = m
    edges = np.diff(pad, axis=1)
    rows_s, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)  # exclusive; same order (row-major) as the starts
    n = starts.size
    if n == 0 or n > max_runs:
        return None if n > max_runs else np.zeros_like(m)
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first = np.searchsorted(rows_s, np.arange(h + 1))  # runs of row r: first[r]:first[r + 1]
    for r in range(h - 1):
        a0, a1, b0, b1 = first[r], first[r + 1], first[r + 1], first[r + 2]
        i, j = a0, b0
        while i < a1 and j < b1:  # both lists sorted by start: a merge walk
            if starts[i] < ends[j] and starts[j] < ends[i]:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[ri] = rj
            if ends[i] < ends[j]:
                i += 1
            else:
                j += 1
    roots = np.array([find(i) for i in range(n)])
    touching = (rows_s == 0) | (rows_s == h - 1) | (starts == 0) | (ends == w)
    keep = np.isin(roots, roots[touching])
    out = np.zeros_like(m)
    for r, a, b in zip(rows_s[keep], starts[keep], ends[keep]):
        out[r, a:b] = True
    return out


def apply_background(depth, rule="auto", alpha=None, camera=None, header=None):
    """Linear planar ``depth`` (HxW) of a plain render with "no surface" set to ``+inf``, and a
    :class:`BackgroundReport`. The one rule every command and Blender's Apply use.

    ``rule``: ``"auto"`` (default) -- non-finite, ``>= 1e9`` (Cycles writes 1e10), EEVEE's sky at
    the clip end (from ``camera.clip_end`` when the file records it and was not rendered by
    Cycles; without a camera: the pixels within :data:`SKY_TOLERANCE` of the frame's largest
    depth when it is at least :data:`SKY_MIN_DEPTH`: those of them connected to the frame's
    border, when they cover at least :data:`SKY_MIN_SHARE` of the frame), and
    ``Z <= 0`` where ``alpha`` is 0 (renderers that write "no surface" as 0);
    ``"none"``/None -- non-finite only; a number -- non-finite or at least that depth.
    ``Z <= 0`` on a covered pixel is never changed: it is counted in
    ``covered_nonpositive`` (callers that need a camera depth refuse it)."""
    d = np.asarray(depth, dtype=np.float32)
    rule = parse_background(rule) if rule is not None else "none"
    report = BackgroundReport(rule=str(rule), total=int(d.size))
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(d)
        bg = ~finite
        report.nonfinite = int(np.count_nonzero(bg))
        cycles = any(str(k).startswith("cycles.") for k in (header or {}))
        if rule == "auto":
            threshold = DEFAULT_BACKGROUND
            clip_end = getattr(camera, "clip_end", None) if camera is not None else None
            if clip_end and not cycles:
                threshold = background_threshold(clip_end, getattr(camera, "clip_start", None),
                                                  "EEVEE")
            report.threshold = threshold
            far = d >= DEFAULT_BACKGROUND  # NaN compares False; +inf is counted as non-finite
            far &= finite
            report.far = int(np.count_nonzero(far))
            bg |= far
            if threshold < DEFAULT_BACKGROUND:
                sky = finite & ~far & (d >= threshold)
                if sky.any():
                    report.sky, report.sky_depth = int(sky.sum()), float(d[sky].max())
                    report.sky_source = f"the recorded camera's clip end {clip_end:g}"
                    bg |= sky
            elif not cycles:
                # the largest surface depth, in one pass (background and NaN never win)
                top = float(np.max(np.where(bg, np.float32(-np.inf), d), initial=-np.inf))
                if top >= SKY_MIN_DEPTH:
                    sky = d >= np.float32(top * (1.0 - SKY_TOLERANCE))
                    sky &= ~bg
                    n = int(np.count_nonzero(sky))
                    if n >= max(2, SKY_MIN_SHARE * d.size):
                        sky = border_region(sky)  # only what is connected to the border
                        n = int(sky.sum()) if sky is not None else 0
                    surface_n = d.size - int(np.count_nonzero(bg))
                    if n >= max(2, SKY_MIN_SHARE * d.size) and n < surface_n:
                        report.sky, report.sky_depth = n, top
                        report.sky_source = (f"{100.0 * n / d.size:.3g} % of the frame at its "
                                             f"largest depth, connected to its border")
                        bg |= sky
        elif rule != "none":
            report.threshold = float(rule)
            far = finite & (d >= float(rule))
            report.far = int(far.sum())
            bg |= far
        nonpositive = d <= 0  # NaN and -inf: non-finite, already background
        nonpositive &= finite
        if nonpositive.any():
            if alpha is not None and rule == "auto":
                clear = nonpositive & (np.asarray(alpha) <= 0)
                report.transparent = int(clear.sum())
                bg |= clear
                nonpositive &= ~clear
            report.covered_nonpositive = int(nonpositive.sum())
    if not bg.any():
        return d, report
    out = d.copy()
    out[bg] = np.float32(np.inf)
    return out, report
