"""What ``scene.zdepth`` says, as plain values: :class:`ExportOptions` (the depth export),
:class:`LayerOptions` (depth layers), the encoding's range (:func:`resolve_range`) and the
background threshold of the scene's engine. Every reader here uses ``getattr(scene, "zdepth")``
and falls back to the defaults when the add-on's properties are not registered.
"""

import math
from dataclasses import dataclass, fields

from ...core.encodings import background_threshold
from ...core.errors import UsageError
from .camera import scene_depth_range


def dof_settings(scene):
    """The panel's settings (``scene.zdepth``), or None when the properties are not registered."""
    return getattr(scene, "zdepth", None)


def setting(zd, name, default):
    """``zd.<name>`` (``zd``: :func:`dof_settings`), or ``default`` when ``zd`` is None or has
    no such setting."""
    return getattr(zd, name, default) if zd is not None else default


@dataclass
class ExportOptions:
    """What :func:`..render.export.export_render_result` writes (the panel's settings, as plain
    values)."""

    encoding: str = "log"
    range_source: str = "CAMERA"  # CAMERA, SCENE, MANUAL
    near: float = 0.1
    far: float = 1000.0
    bit_depth: str = "32"  # "32" or "16" (half)
    codec: str = "ZIP"
    output_dir: str = "//zdepth/"
    name_pattern: str = "zdepth_####"
    write_preview: bool = False
    beauty: str = "SAME_FILE"  # SAME_FILE, BESIDE, NONE

    @classmethod
    def from_scene(cls, scene, **overrides):
        """Options from ``scene.zdepth`` (defaults when the add-on's properties are not
        registered), with ``overrides`` (None values ignored)."""
        zd = getattr(scene, "zdepth", None)
        values = {}
        for f in fields(cls):
            if zd is not None and hasattr(zd, f.name):
                values[f.name] = getattr(zd, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        bad = set(values) - {f.name for f in fields(cls)}
        if bad:
            raise TypeError(f"unknown export options {sorted(bad)}")
        return cls(**values)


def resolve_range(scene, *, options=None):
    """``(near, far)`` of the encoding for ``scene`` from its range settings (``options``, an
    :class:`ExportOptions`; default: the scene's own, :meth:`ExportOptions.from_scene`).

    CAMERA: the scene camera's clip range; SCENE: the visible objects' depth range measured from
    their bounding boxes (the camera's clip range when nothing is in view); MANUAL: the typed
    values. Falls back to the options' near and far (0.1, 1000 by default) without a camera.
    """
    if options is None:
        options = ExportOptions.from_scene(scene)
    if options.range_source == "MANUAL":
        return float(options.near), float(options.far)
    cam = scene.camera
    if cam is None or cam.type != "CAMERA":
        return float(options.near), float(options.far)
    if options.range_source == "SCENE":
        measured = scene_depth_range(scene)
        if measured is not None:
            return measured
    return float(cam.data.clip_start), float(cam.data.clip_end)


def background_for(scene):
    """The background threshold of ``scene``'s render: 1e9 for Cycles (it writes 1e10), just
    under the camera's clip end for EEVEE (it writes the clip end)."""
    cam = scene.camera
    if cam is None or cam.type != "CAMERA":
        return background_threshold()
    return background_threshold(cam.data.clip_end, cam.data.clip_start, scene.render.engine)


#: Allowed range of ``depth_layers``.
MIN_LAYERS, MAX_LAYERS = 1, 8

#: Depth-layer modes: automatic (slabs where :func:`..coverage.flat_depth_limits` finds motion
#: blur or transparent surfaces, else peel), peel, slabs (see :mod:`..render.peel`).
LAYER_MODES = ("AUTO", "PEEL", "SLABS")


@dataclass
class LayerOptions:
    """Depth-layer settings as plain values (see :mod:`..render.peel` for what they mean)."""

    layers: int = 1
    samples: int = 0  # 0 = automatic
    clips: tuple = ()  # () = automatic (peel: clip distances; slabs: inner boundaries)
    mode: str = "AUTO"  # one of LAYER_MODES

    @classmethod
    def from_scene(cls, scene, *, layers=None, samples=None, clips=None, mode=None):
        """The scene's settings (defaults without the add-on's properties), with the non-None
        arguments overriding them. ``clips`` may be a text ("4.5, 12") or a sequence; ``mode``
        one of :data:`LAYER_MODES` (any case)."""
        zd = getattr(scene, "zdepth", None)
        opts = cls()
        if zd is not None and hasattr(zd, "depth_layers"):
            opts = cls(int(zd.depth_layers), int(zd.depth_layer_samples),
                       parse_clips(zd.depth_layer_clips, what="the Depth Layer Clips setting"),
                       str(getattr(zd, "depth_layer_mode", "AUTO")))
        if mode is not None:
            opts.mode = str(mode).upper()
            if opts.mode not in LAYER_MODES:
                raise UsageError(f"the depth-layer mode must be one of "
                                 f"{', '.join(m.lower() for m in LAYER_MODES)}, not {mode!r}")
        if clips is not None:
            opts.clips = parse_clips(clips) if isinstance(clips, str) else \
                tuple(float(c) for c in clips)
        if layers is not None:
            opts.layers = int(layers)
        elif clips is not None and opts.clips:
            opts.layers = len(opts.clips) + 1  # clips given alone decide the layer count
        if samples is not None:
            opts.samples = int(samples)
        return opts

    @property
    def enabled(self):
        return self.layers > 1


def parse_clips(text, *, what="--layer-clips"):
    """Clip distances from ``"D1,D2"`` (commas and/or spaces); () for an empty text."""
    parts = [p for p in str(text or "").replace(",", " ").split() if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise UsageError(f"{what} must be distances separated by commas, like 4.5,12, "
                         f"not {text!r}")
    return values


def check_options(scene, opts):
    """:class:`UsageError` (one line, before anything renders) unless ``opts`` can be rendered
    with ``scene``'s camera: N in range, samples not negative, manual clips (N - 1 of them,
    increasing) inside the camera's clip range."""
    if not MIN_LAYERS <= opts.layers <= MAX_LAYERS:
        raise UsageError(f"depth layers must be between {MIN_LAYERS} and {MAX_LAYERS}, "
                         f"not {opts.layers}")
    if opts.samples < 0:
        raise UsageError(f"depth layer samples must be 0 (automatic) or more, not {opts.samples}")
    if not opts.clips:
        return
    if not opts.enabled:
        return  # one layer: the clips are not used
    if len(opts.clips) != opts.layers - 1:
        raise UsageError(f"{opts.layers} depth layers need {opts.layers - 1} clip distance(s) "
                         f"(slab boundaries), not {len(opts.clips)} ({_fmt(opts.clips)})")
    cam = scene.camera
    start, end = float(cam.data.clip_start), float(cam.data.clip_end)
    for d in opts.clips:
        if not math.isfinite(d) or d <= start:
            raise UsageError(f"clip distance {d:g} is not beyond the camera's clip start "
                             f"{start:g}: give distances between {start:g} and {end:g}")
        if d >= end:
            raise UsageError(f"clip distance {d:g} is beyond the camera's clip end {end:g}: "
                             f"give distances between {start:g} and {end:g}")
    if any(b <= a for a, b in zip(opts.clips, opts.clips[1:])):
        raise UsageError(f"clip distances must increase, not {_fmt(opts.clips)}")


def _fmt(values):
    return ", ".join(f"{v:g}" for v in values)
