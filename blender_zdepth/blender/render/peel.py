"""Depth layers: extra renders of the same camera that see behind the nearer surfaces.

After a frame's normal render (the *beauty*), ``N - 1`` extra passes render the same camera with
its clip start moved past nearer surfaces: camera rays then start at the clip distance, so each
pass shows the first surface beyond it (the clipped objects still cast their shadows and
reflections). Every pass has the beauty's resolution, so its pixels are registered with the
beauty's one for one. The depth of field engine uses those surfaces as the hidden surfaces a
real lens sees around a sharp subject or through a blurred foreground (instead of inventing
them), and export writes them as a deep OpenEXR beside the flat file.

Settings (``scene.zdepth``, read as :class:`~..scene.options.LayerOptions`; the ``render``
command's options of the same names):

* ``depth_layers`` (N, 1-8; 1 = no extra pass, the default): layers per frame, the beauty
  included.
* ``depth_layer_samples`` (0 = automatic): render samples of each extra pass. Automatic is an
  eighth of the beauty's samples (at least 1): those surfaces are only ever seen blurred, and
  with it a frame with three layers costs about 1.25x a plain render plus each pass's set-up.
  Denoising is off for the extra passes for the same reason. Workbench passes keep the scene's
  anti-aliasing (they are cheap).
* ``depth_layer_clips``: the clip distances typed in (``"4.5, 12"``, N - 1 increasing values
  between the camera's clip start and clip end); empty = automatic, from the frame's own depth
  with :func:`blender_zdepth.core.layers.clip_distances` (focus distance of the camera).

The passes render a temporary linked copy of the scene (same objects and camera, its own
samples: fewer, denoising off, Cycles' persistent data on so that the passes after the first
reuse the synced scene), removed afterwards: the scene's own settings are never changed and its
Render Result stays the beauty. The one shared setting the passes change, the camera's clip
start (and a keyframed or driven clip start, muted meanwhile), is restored afterwards, also
after an error or a cancel (:func:`peel_settings`).

**Slabs** (``depth_layer_mode`` = Slabs, or Automatic on a scene with motion blur or transparent
surfaces, :func:`layer_mode`): instead of the passes behind the beauty, N passes render the same
camera with the film transparent, the view layer's alpha threshold at 0, and the camera's clip
start / clip end set to consecutive *slabs* of depth (camera clip start, the N - 1 boundaries,
camera clip end): each slab's pixels hold the premultiplied colour of the surfaces inside it with
their true partial coverage -- a motion trail, a half-transparent curtain, an anti-aliased edge
-- and that slab's own depth. Their samples are the deep file, reconciled to the beauty
(:func:`blender_zdepth.core.slabs.slab_samples`). Automatic slab samples: the beauty's divided
by N + 1 (at least 1): together the slabs trace fewer camera rays than the render. Automatic
boundaries: :func:`blender_zdepth.core.layers.slab_boundaries`.

Where it runs: the ``render`` command, :func:`.export.render_with_depth`
(``blender -b file.blend -P cli.py -- render ...``), the demo, the panel's "Render Depth
Layers" button, and export on render (F12, Ctrl+F12, ``blender -b file.blend -f N / -a``): its
``render_post`` handler renders the frame's passes right there when it runs on the main thread
(``blender -b``, the bpy module; from Blender 5.1 on in a child process, see :mod:`.isolated`),
and otherwise (Blender's window runs render handlers in the
render job's thread, where no render may start) queues the frame for a timer that renders the
passes on the main thread once the render is over (see :mod:`.handlers`).
"""

from contextlib import contextmanager
from dataclasses import dataclass

import bpy
import numpy as np

from ...core import layers as core_layers
from ...core.errors import ZDepthError
from ..compat import action_fcurves
from ..scene.coverage import flat_depth_limits


#: Automatic extra-pass samples: the beauty's samples divided by this (at least 1).
AUTO_SAMPLE_DIVISOR = 8


def layer_mode(scene, opts):
    """``"SLABS"`` or ``"PEEL"``: ``opts.mode``, or for ``"AUTO"`` slabs where
    :func:`..scene.coverage.flat_depth_limits` finds motion blur or transparent surfaces (a
    peeled pass is opaque: it cannot describe them) and peel elsewhere (the same hidden
    surfaces for fewer samples)."""
    mode = str(getattr(opts, "mode", "AUTO") or "AUTO").upper()
    if mode in ("PEEL", "SLABS"):
        return mode
    return "SLABS" if flat_depth_limits(scene) else "PEEL"


def pass_samples(scene, opts, mode="PEEL"):
    """Render samples of each extra pass (``opts.samples``, or automatic: for peel an eighth of
    the beauty's, for slabs the beauty's divided by the number of slabs + 1); None for
    Workbench, whose anti-aliasing setting is left as it is (its renders are cheap)."""
    if scene.render.engine == "BLENDER_WORKBENCH":
        return None
    if opts.samples > 0:
        return int(opts.samples)
    if scene.render.engine == "CYCLES":
        beauty = int(scene.cycles.samples)
    else:
        beauty = int(getattr(scene.eevee, "taa_render_samples", 16))
    if mode == "SLABS":
        # the N slabs share N / (N + 1) of the render's samples: together they trace fewer
        # camera rays than the render, so that with the deep file's own cost three slabs stay
        # within 2x a plain render (benchmarks/bench_layers.py); their colour is reconciled to
        # the beauty anyway, so the samples only decide how finely coverage is split
        return max(1, int(round(beauty / (max(1, int(opts.layers)) + 1))))
    return max(1, int(round(beauty / AUTO_SAMPLE_DIVISOR)))


def clip_distances(scene, opts, depth, focus_distance, mode="PEEL"):
    """The clip distances of ``opts`` (manual), or automatic ones from ``depth`` (the beauty's
    linear planar depth, inf = background) and the camera's focus; with ``mode`` = ``"SLABS"``
    the inner slab boundaries (:func:`blender_zdepth.core.layers.slab_boundaries`)."""
    if opts.clips:
        return list(opts.clips)
    cam = scene.camera
    rule = core_layers.slab_boundaries if mode == "SLABS" else core_layers.clip_distances
    return [float(d) for d in rule(
        depth, opts.layers, focus_distance=focus_distance,
        clip_start=float(cam.data.clip_start), clip_end=float(cam.data.clip_end))]


def slab_bounds(scene, inner):
    """The boundaries of the slabs: the camera's clip start, ``inner``, its clip end."""
    cam = scene.camera.data
    return [float(cam.clip_start)] + [float(b) for b in inner] + [float(cam.clip_end)]


# -- settings changed by the passes, and their restore ------------------------------------------

def _clip_animation(cam_data, paths=("clip_start",)):
    """F-Curves and drivers that would set ``clip_start`` (and, for slabs, ``clip_end``) during
    a render (they would undo the moved clip): muted for the passes."""
    found = []
    ad = getattr(cam_data, "animation_data", None)
    if ad is None:
        return found
    fcurves = action_fcurves(cam_data)
    for path in paths:
        drv = ad.drivers.find(path) if ad.drivers is not None else None
        if drv is not None:
            found.append(drv)
        fc = fcurves.find(path) if fcurves is not None else None
        if fc is not None:
            found.append(fc)
    return found


#: Custom property marking the temporary scene the passes render (export's handlers skip it).
PEEL_MARK = "zdepth_depth_layer_pass"


def _peel_scene(scene):
    """A temporary linked copy of ``scene`` (same objects, camera and frame; its own render
    settings and Render Result) that the passes render, so that ``scene``'s Render Result stays
    the beauty and its settings are never touched. No compositing or sequencer: the passes are
    read from the view layers' own passes."""
    peel = scene.copy()
    peel.name = f"{scene.name[:40]} (zdepth layer pass)"
    peel[PEEL_MARK] = 1
    peel.render.use_compositing = False
    peel.render.use_sequencer = False
    return peel


def is_peel_scene(scene):
    """True for the temporary scene of the depth-layer passes."""
    try:
        return bool(scene.get(PEEL_MARK))
    except (AttributeError, ReferenceError, TypeError):
        return False


def _make_slab_scene(peel):
    """Turn the temporary scene into the slabs' one: film transparent (a slab's pixels keep
    the coverage of its surfaces) and every view layer's alpha threshold at 0 (Cycles writes a
    depth for a surface of any coverage, not only from 0.5 on)."""
    peel.render.film_transparent = True
    for layer in peel.view_layers:
        layer.pass_alpha_threshold = 0.0
        layer.use_pass_z = True


@contextmanager
def peel_settings(scene, *, slabs=False):
    """Context for the extra passes: yields ``(peel, set_pass)``: ``peel`` is the temporary
    scene to render (see :func:`_peel_scene`; with ``slabs`` its film transparent and its
    alpha threshold 0), ``set_pass(clip, samples, end=None)`` moves the shared camera's clip
    start to ``clip`` (and its clip end to ``end`` when given: a slab) and sets ``peel``'s
    samples (denoising off, Cycles' persistent data on). On leaving -- normally, after an
    error, or after a cancel (KeyboardInterrupt) -- the camera's clip start and end and their
    muted F-Curves or drivers are put back as they were and the temporary scene is removed;
    ``scene`` itself is never changed."""
    cam_data = scene.camera.data
    clip_before = cam_data.clip_start
    end_before = cam_data.clip_end
    paths = ("clip_start", "clip_end") if slabs else ("clip_start",)
    muted = [(item, item.mute) for item in _clip_animation(cam_data, paths)]
    peel = None

    def set_pass(clip, samples, end=None):
        for item, _ in muted:
            item.mute = True
        if end is not None:
            # clip start and end move together: set them in the order that never crosses
            if float(clip) >= cam_data.clip_end:
                cam_data.clip_end = float(end)
                cam_data.clip_start = float(clip)
            else:
                cam_data.clip_start = float(clip)
                cam_data.clip_end = float(end)
        else:
            cam_data.clip_start = float(clip)
        if samples is None:
            return
        if peel.render.engine == "CYCLES":
            peel.cycles.samples = int(samples)
            peel.cycles.use_denoising = False
            peel.render.use_persistent_data = True
        elif peel.render.engine != "BLENDER_WORKBENCH":
            peel.eevee.taa_render_samples = int(samples)

    try:
        peel = _peel_scene(scene)
        if slabs:
            _make_slab_scene(peel)
        yield peel, set_pass
    finally:
        if cam_data.clip_end != end_before:
            cam_data.clip_end = end_before
        if cam_data.clip_start != clip_before:
            cam_data.clip_start = clip_before
        for item, mute in muted:
            if item.mute != mute:
                item.mute = mute
        if peel is not None:
            bpy.data.scenes.remove(peel)


def render_scene(scene, **kwargs):
    """``bpy.ops.render.render(scene=scene.name, **kwargs)`` at ``scene``'s own current frame.
    Given a scene by name, the operator first copies the *context* scene's frame into it (it
    renders another scene "at the current frame"), so the context is pointed at ``scene`` and
    one of its view layers for the call: the passes' temporary scene, or a scene that is not the
    window's, render the frame they are at."""
    current = getattr(getattr(bpy.context, "view_layer", None), "name", "")
    layer = scene.view_layers.get(current) or scene.view_layers[0]
    with bpy.context.temp_override(scene=scene, view_layer=layer):
        return bpy.ops.render.render(scene=scene.name, **kwargs)


class PassCancelled(ZDepthError):
    """A depth-layer pass was cancelled (Esc, Ctrl+C): no deep file for the frame."""


@dataclass
class Layer:
    """One extra pass: ``clip`` distance, ``rgba`` (HxWx4 float32 premultiplied) and ``depth``
    (HxW float32 linear planar, inf = nothing beyond the clip), registered with the beauty;
    ``end``: a slab's far boundary (None for a peeled pass)."""

    clip: float
    rgba: object
    depth: object
    end: float = None


def render_passes(scene, opts, beauty_depth, focus_distance, read_result, *, clips=None):
    """Render the extra passes of the current frame and return their :class:`Layer` list
    (near to far). ``read_result(rendered_scene)`` reads the Render Result that scene just
    rendered as ``(rgba, depth)``; ``beauty_depth`` (the beauty's depth) decides the automatic
    clip distances, or ``clips`` when given. The passes render a temporary copy of ``scene``
    (see :func:`peel_settings`): ``scene``'s Render Result stays the beauty, its settings are
    not touched, and the camera's clip start is restored afterwards."""
    if not opts.enabled:
        return []
    mode = layer_mode(scene, opts)
    if clips is None:
        clips = clip_distances(scene, opts, beauty_depth, focus_distance, mode)
    if mode == "SLABS":
        return _render_slabs(scene, opts, beauty_depth, read_result, clips)
    samples = pass_samples(scene, opts)
    end = float(scene.camera.data.clip_end)
    layers = []
    with peel_settings(scene) as (peel, set_pass):
        for clip in clips:
            if not clip < end:
                raise ZDepthError(f"clip distance {clip:g} is beyond the camera's clip end "
                                  f"{end:g}")
            set_pass(clip, samples)
            rgba, depth = _render_pass(peel, read_result, beauty_depth,
                                       f"the depth layer at {clip:g}")
            _check_peeled(depth, clip)
            layers.append(Layer(float(clip), rgba, depth))
    return layers


def _render_pass(peel, read_result, beauty_depth, what):
    """Render one pass of the ``peel`` scene and read it back: ``(rgba, depth)``, registered
    with the beauty (:class:`PassCancelled` on Esc / Ctrl+C, :class:`ZDepthError` when its size
    is not the beauty's)."""
    if "CANCELLED" in render_scene(peel):
        raise PassCancelled(f"{what} was cancelled: no deep file written for this frame")
    rgba, depth = read_result(peel)
    if rgba.shape[:2] != tuple(beauty_depth.shape):
        raise ZDepthError(f"{what} rendered at {rgba.shape[1]}x{rgba.shape[0]}, not at the "
                          f"beauty's {beauty_depth.shape[1]}x{beauty_depth.shape[0]}")
    return rgba, depth


def _render_slabs(scene, opts, beauty_depth, read_result, inner):
    """The slabs of the current frame (see the module): one render per slab between
    consecutive :func:`slab_bounds`, as :class:`Layer` with ``end`` set."""
    bounds = slab_bounds(scene, inner)
    if any(b <= a for a, b in zip(bounds, bounds[1:])):
        raise ZDepthError(f"slab boundaries must increase inside the camera's clip range "
                          f"{bounds[0]:g}-{bounds[-1]:g}, not "
                          f"{', '.join(f'{b:g}' for b in inner)}")
    samples = pass_samples(scene, opts, "SLABS")
    layers = []
    with peel_settings(scene, slabs=True) as (peel, set_pass):
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            set_pass(lo, samples, hi)
            rgba, depth = _render_pass(peel, read_result, beauty_depth,
                                       f"the depth slab {lo:g}-{hi:g}")
            _check_peeled(np.where(rgba[..., 3] > 0, depth, np.inf), lo)
            layers.append(Layer(float(lo), rgba, depth, float(hi)))
    return layers


def _check_peeled(depth, clip):
    hit = np.isfinite(depth) & (depth > 0)
    if hit.any() and float(depth[hit].min()) < clip * 0.99:
        raise ZDepthError(f"the depth layer at {clip:g} still shows surfaces at "
                          f"{float(depth[hit].min()):.3g}: the camera's clip start did not move "
                          f"(is it set by a driver or a constraint of another datablock?)")
