"""Precision report: how finely a depth encoding at a bit depth resolves depth over a range.

For an encoding (:mod:`.encodings`), a storage format and a range ``[near, far]``, the report
gives the *depth step* -- the distance between two neighbouring storable depths, in world units --
at ``near``, at the focus distance and at ``far``, the worst relative error over ``[near, far]``
after a round trip (half a step, plus ``2^-24`` for the float32 decoded depth), and plain warnings
where banding will show.

Storage formats (:data:`BIT_DEPTHS`):

* ``"32"`` -- float32 EXR. Step = the gap between the stored value ``v`` and its neighbour toward
  zero (one float32 ulp), divided by ``|dv/dz|``.
* ``"16-half"`` -- half float EXR, same rule with half ulps (10-bit mantissa).
* ``"16-int"`` / ``"8"`` -- integer PNG: the encoded range ``[v(near), v(far)]`` is spread over
  65535 / 255 levels, so step = ``|v(far) - v(near)| / (2^bits - 1) / |dv/dz|``; depth outside
  ``[near, far]`` is clipped.

Hand checks: 8-bit ``linear`` 1-500 m steps 499/255 = 1.96 m everywhere; 8-bit ``log`` 1-500 m
steps ``z * ln(500) / 255`` (2.4 cm at 1 m, 12 m at 500 m); half ``log`` 0.1-1000 m steps
``z * ln(1e4) * 2^-11`` just below ``far`` (0.45 % relative), so its worst rounding error is
``ln(far/near) * 2^-12``; half ``linear`` rounds to ``2^-11`` relative (4.9e-4) up to 65504.
"""

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .encodings import ENCODINGS, DepthEncoding
from .errors import UsageError

#: Storage formats, in the order reports list them.
BIT_DEPTHS = ("8", "16-int", "16-half", "32")

_ALIASES = {"8": "8", "8-int": "8", "16-int": "16-int", "16i": "16-int", "png16": "16-int",
            "16": "16-half", "16-half": "16-half", "half": "16-half", "16h": "16-half",
            "32": "32", "float": "32", "32-float": "32", "f32": "32"}

_LABELS = {"8": "8-bit integer", "16-int": "16-bit integer (PNG)", "16-half": "16-bit half float",
           "32": "32-bit float"}

_FLOAT_TYPES = {"16-half": np.float16, "32": np.float32}

#: Relative rounding of the decoded depth itself (float32 output): 2^-24.
FLOAT32_ROUNDING = 2.0 ** -24

#: Half float's largest finite value.
HALF_MAX = 65504.0

#: Relative depth step above which banding shows in a defocus or fog driven by the depth.
BANDING_WILL_SHOW = 0.01
#: Relative depth step above which fine banding may show on smooth surfaces under strong blur.
BANDING_MAY_SHOW = 0.002


def bit_depth_name(bits):
    """Canonical :data:`BIT_DEPTHS` name of ``bits`` ("16" means half, like an EXR)."""
    key = str(bits).lower()
    if key not in _ALIASES:
        raise UsageError(f"unknown bit depth {bits!r}: use one of {', '.join(BIT_DEPTHS)}")
    return _ALIASES[key]


def depth_step(encoding, bits, depth):
    """Depth step (world units, float64 array) of ``encoding`` stored at ``bits`` at ``depth``."""
    bits = bit_depth_name(bits)
    z = np.asarray(depth, dtype=np.float64)
    slope = np.abs(encoding.derivative(z))
    if bits in _FLOAT_TYPES:
        ftype = _FLOAT_TYPES[bits]
        with np.errstate(over="ignore", invalid="ignore"):
            v = np.abs(encoding.encode_value(z)).astype(ftype)
            below = np.nextafter(v, ftype(0))
            gap = np.spacing(below).astype(np.float64)
        gap = np.where(np.isfinite(v), gap, np.inf)  # overflow: not storable at all
        return gap / slope
    levels = 255 if bits == "8" else 65535
    span = abs(float(encoding.encode_value(encoding.far) - encoding.encode_value(encoding.near)))
    return (span / levels) / slope


@dataclass
class StepAt:
    label: str  # "near", "focus", "far"
    depth: float
    step: float  # world units
    relative: float  # step / depth


@dataclass
class PrecisionReport:
    encoding: str
    bits: str
    near: float
    far: float
    units: str
    steps: list
    # half the largest relative step over [near, far], plus 2^-24 for the float32 decoded depth
    worst_relative_error: float
    warnings: list = field(default_factory=list)

    @property
    def label(self):
        return _LABELS[self.bits]

    def to_dict(self):
        d = asdict(self)
        d["label"] = self.label
        return d

    def text(self):
        """The report as plain text lines (what ``inspect`` prints)."""
        u = self.units
        lines = [f"{self.encoding}, {self.label}, range {self.near:g}-{self.far:g} {u}: "
                 f"worst rounding error {format_relative(self.worst_relative_error)} of the depth"]
        for s in self.steps:
            step = "below 1e-12 of the depth" if s.relative < 1e-12 else \
                f"{s.step:.3g} {u} ({format_relative(s.relative)} of the depth)"
            lines.append(f"  depth step at {s.label:<5} {s.depth:>10.4g} {u}: {step}")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)


def format_relative(x):
    """A relative figure in words: "0.45 %", "4.1e-07", "exact" (below 1e-12)."""
    if not math.isfinite(x):
        return "not storable"
    if x >= 1e-4:
        return f"{100 * x:.3g} %"
    if x < 1e-12:
        return "exact"
    return f"{x:.2g}"


def precision_report(encoding, bits, near=None, far=None, focus=None, units=None):
    """A :class:`PrecisionReport` for ``encoding`` (a name or a :class:`DepthEncoding`) stored at
    ``bits`` (:data:`BIT_DEPTHS`, or "8", "16" = half, "32") over ``[near, far]`` (default: the
    encoding's own range), with the step at the ``focus`` distance too when given."""
    if isinstance(encoding, str):
        encoding = DepthEncoding(encoding, near if near is not None else 0.1,
                                 far if far is not None else 1000.0)
    elif near is not None or far is not None:
        encoding = encoding.with_range(near if near is not None else encoding.near,
                                       far if far is not None else encoding.far)
    bits = bit_depth_name(bits)
    near, far, units = encoding.near, encoding.far, units or encoding.units
    points = [("near", near)]
    if focus is not None and focus > 0:
        points.append(("focus", float(focus)))
    points.append(("far", far))
    steps = []
    for label, z in points:
        step = float(depth_step(encoding, bits, z))
        steps.append(StepAt(label, z, step, step / z))
    lo = near if near > 0 else far * 1e-6
    zs = np.geomspace(lo, far, 4097)
    rel = depth_step(encoding, bits, zs) / zs
    worst_step = float(np.max(rel))
    worst_at = float(zs[int(np.argmax(rel))])
    # the stored value rounds by at most half a step; decoding then rounds the depth to float32
    report = PrecisionReport(encoding.name, bits, near, far, units, steps,
                             worst_step / 2 + FLOAT32_ROUNDING)
    report.warnings = _warnings(encoding, bits, worst_step, worst_at, report)
    return report


def _warnings(enc, bits, worst_step, worst_at, report):
    u = enc.units
    out = []
    step_there = worst_step * worst_at
    label = _LABELS.get(bits, bits)
    far_overflows = bits == "16-half" and enc.name != "log" and \
        abs(float(enc.encode_value(enc.far))) > HALF_MAX
    if not math.isfinite(worst_step):
        # some depths overflow the file's float type: no step to speak of there
        if not far_overflows:  # (that case has its own warning below)
            out.append(f"{label} cannot store the {enc.name} value of depths around "
                       f"{worst_at:.4g} {u} (beyond its largest number): those depths are "
                       f"lost; write 32-bit float or use log")
    elif worst_step > BANDING_WILL_SHOW:
        out.append(f"banding will show: depth steps of {step_there:.3g} {u} at {worst_at:.4g} "
                   f"{u} ({format_relative(worst_step)} of the depth) -- too coarse for a "
                   f"defocus or fog driven by this depth; store 32-bit float (log)")
    elif worst_step > BANDING_MAY_SHOW:
        out.append(f"fine banding may show on smooth surfaces under strong defocus: steps up "
                   f"to {format_relative(worst_step)} of the depth (near {worst_at:.4g} {u}); "
                   f"32-bit float is exact to 1e-6")
    if bits == "8":
        out.append("8 bits give only 256 depth levels over the whole range: fine for a "
                   "preview, never for compositing")
    if bits in ("8", "16-int"):
        out.append(f"integer files clip depth outside [{enc.near:g}, {enc.far:g}] {u} and "
                   f"cannot mark background apart from far")
    if bits == "16-half":
        if far_overflows:
            out.append(f"half float stores at most 65504: far ({enc.far:g} {u}) does not fit "
                       f"with the {enc.name} encoding; write 32-bit float or use log")
        if enc.name == "inverse" and enc.far > 1e4:
            out.append("half float inverse depth loses precision beyond 10000 units "
                       "(1/z falls into half's subnormal range)")
        half_linear = 2.0 ** -11
        if enc.name != "linear" and enc.far <= HALF_MAX and \
                math.isfinite(report.worst_relative_error) and \
                report.worst_relative_error > half_linear * 1.05:
            out.append(f"half linear would serve better here: about {half_linear:.1e} "
                       f"relative error (vs {report.worst_relative_error:.1e} for "
                       f"{enc.name}), as long as depth stays below 65504 {u}")
    return out


def precision_table(near, far, focus=None, units="m", encodings=ENCODINGS, bit_depths=BIT_DEPTHS):
    """Reports for every encoding x bit depth over ``[near, far]`` (encodings that cannot take
    the range, e.g. log with near = 0, are left out)."""
    reports = []
    for name in encodings:
        try:
            enc = DepthEncoding(name, near, far, units=units)
        except UsageError:
            continue
        for bits in bit_depths:
            reports.append(precision_report(enc, bits, focus=focus))
    return reports
