"""Export a rendered frame: the depth EXR of the Render Result just rendered, with its beauty,
preview and -- with depth layers -- the deep EXR of its extra passes (:func:`export_render_result`),
and rendering frames from Python with that export (:func:`render_with_depth`).

The Render Result is saved as a temporary multilayer float EXR and read back
(:mod:`.result`); our file is written with :func:`blender_zdepth.core.exr.write_depth_exr`: the
depth encoded as chosen, float32 (or half) with a lossless codec, the beauty as R, G, B, A in
the same file (or in its own file beside it), the encoding and the camera of that very frame in
the header (focal length, sensor, f-stop, focus distance -- the focus object's distance when one
is set --, clip range, pixel aspect as ``pixelAspectRatio``). The result is registered with the
beauty: it is the Render Result itself, so resolution percentage, border and crop are those of
the render; a render cropped to its border keeps its place in the full frame (data window = the
crop, display window = the full frame), which sizes the lens.

Cycles, EEVEE and Workbench give the same depth semantics: planar depth, background (Cycles'
1e10, EEVEE's clip end, Workbench's +inf) stored as the encoding's background value.

:func:`render_with_depth` renders frames from Python (the ``render`` command and the demo use it)
and returns the written paths; export on render (:mod:`.handlers`) uses the steps here one by
one. Nothing here touches the user's compositor or output settings.
"""

import math
import os
import sys
import types
from dataclasses import dataclass

from ...core import exr as core_exr
from ...core.encodings import DepthEncoding, preview
from ...core.errors import UsageError, ZDepthError
from ...core.png import write_png
from ..scene.camera import camera_info, check_camera, extra_header, frame_depsgraph
from ..scene.options import ExportOptions, LayerOptions, check_options, resolve_range
from ..scene.passes import engine_has_depth, engine_label, rendering_view_layers
from ..scene.paths import check_output_folder, export_folder, frame_paths
from ..scene.views import STEREO_LAYERS, eye_matrix, rendered_views, view_camera, view_suffixes
from .peel import render_passes, render_scene
from .result import read_render_result



def export_render_result(scene, options=None, *, frame=None, depth_layers=None):
    """Write the depth EXR (and beauty / preview, as ``options`` say) of the Render Result that
    was just rendered from ``scene`` at ``frame`` (default: the current frame). Call it right
    after the render, at that frame: the camera values in the header are read now.

    ``depth_layers`` (:class:`~..scene.options.LayerOptions` with more than one layer): render
    the frame's extra passes now (see :mod:`.peel`; on the main thread) and write the deep
    EXR ``<name>_deep.exr`` beside the flat file, which does not change. The passes render
    before any file is written: a failed pass leaves no half-made frame behind. Without layers
    a ``<name>_deep.exr`` left from an earlier export of that name is removed (it would no
    longer match). Returns ``frame_paths(...)`` with None for the files not written (and, with
    layers, ``"layer_clips"``: the clip distances of the passes, or the slab boundaries from
    the camera's clip start to its clip end, and ``"layer_mode"``: ``peel`` or ``slabs``).

    A stereo / multi-view render (:func:`~..scene.views.rendered_views`) writes one set of files
    per view, ``<name><suffix>.exr`` (:func:`~..scene.views.view_suffixes`: ``_L`` / ``_R``),
    each with that view's beauty, depth and camera (the eye's own ``worldToCamera``); the result
    is the first view's dict with ``"views"``: every view's dict (each with ``"view"``). Depth
    layers are refused for such renders (:class:`UsageError`)."""
    options = options or ExportOptions.from_scene(scene)
    frame = scene.frame_current if frame is None else int(frame)
    cam = check_camera(scene)
    views = rendered_views(scene)
    if views and depth_layers is not None and depth_layers.enabled:
        raise UsageError(STEREO_LAYERS)
    folder = frame_folder(options, frame)
    if views:
        return _export_views(scene, options, frame, cam, views, folder)
    rendered = read_frame(scene, options, frame, cam, folder)
    peeled = None
    if depth_layers is not None and depth_layers.enabled:
        peeled = render_layers(scene, depth_layers, rendered, folder)
    out = write_flat(rendered, options)
    if peeled is not None:
        out["deep"] = write_deep(rendered, peeled)
        out["layer_clips"] = layer_bounds(peeled)
        out["layer_mode"] = "slabs" if peeled and peeled[0].end is not None else "peel"
    else:
        drop_stale_deep(rendered.paths)
    return out


def frame_folder(options, frame):
    """The output folder of ``frame``'s files, created when missing."""
    folder = os.path.dirname(frame_paths(options, frame)["depth"])
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise ZDepthError(f"{folder}: cannot create the output folder ({exc.strerror})")
    return folder


@dataclass
class Rendered:
    """A frame's Render Result read back with what its files need: ``loaded`` (beauty and
    linear depth), the view ``layer`` and background ``threshold`` it was read with, the depth
    ``encoding``, the camera ``info`` and ``extra`` header of that frame, the encoding's
    ``near`` / ``far``, the frame's :func:`~..scene.paths.frame_paths`, and ``saved``: the file
    holding its beauty and depth while its depth layers wait in the queue (:mod:`.handlers`),
    else None."""

    loaded: object
    layer: str
    threshold: float
    encoding: object
    info: object
    extra: dict
    near: float
    far: float
    paths: dict
    frame: int
    saved: str = None


def read_frame(scene, options, frame, cam, folder):
    """Read the Render Result of ``frame`` (a single view) as :class:`Rendered`."""
    loaded, layer, threshold = read_render_result(scene, folder=folder)
    near, far = resolve_range(scene, options=options)
    encoding = DepthEncoding(options.encoding, near, far,
                             background=threshold if math.isfinite(threshold) else 1e9)
    info = camera_info(scene, cam, frame, frame_depsgraph())
    extra = extra_header(scene, cam)
    extra["zdepthViewLayer"] = layer
    return Rendered(loaded, layer, threshold, encoding, info, extra, near, far,
                     frame_paths(options, frame), frame)


def render_layers(scene, depth_layers, rendered, folder):
    """Render the extra passes of ``rendered``'s frame (scene at that frame, main thread):
    :func:`.peel.render_passes` with the clip distances from its depth and focus."""

    def read_pass(pass_scene):
        result = read_render_result(pass_scene, folder=folder)[0]
        return result.rgba, result.depth

    return render_passes(scene, depth_layers, rendered.loaded.depth,
                                 rendered.info.focus_distance, read_pass)


def write_deep(rendered, peeled):
    """Write ``rendered``'s deep EXR: its beauty and depth, then the ``peeled`` passes; or, for
    slabs (layers with an ``end``), the slabs' samples reconciled to its beauty."""
    if peeled and peeled[0].end is not None:
        return core_exr.write_deep_exr(
            rendered.paths["deep"], rendered.loaded.rgba, rendered.loaded.depth,
            slabs=[(p.rgba, p.depth) for p in peeled], bounds=layer_bounds(peeled),
            camera=rendered.info, extra_header=rendered.extra, overwrite=True)
    return core_exr.write_deep_exr(
        rendered.paths["deep"], rendered.loaded.rgba, rendered.loaded.depth,
        [(p.rgba, p.depth) for p in peeled], camera=rendered.info,
        extra_header=rendered.extra, overwrite=True,
        data_window=getattr(rendered.loaded, "data_window", None),
        display_window=getattr(rendered.loaded, "display_window", None))


def layer_bounds(peeled):
    """The clip distances of peeled passes, or the boundaries of slabs (clip start to end)."""
    if peeled and peeled[0].end is not None:
        return [p.clip for p in peeled] + [peeled[-1].end]
    return [p.clip for p in peeled]


def write_flat(rendered, options):
    """:func:`_write_frame` for a frame read back by :func:`read_frame`."""
    return _write_frame(rendered.paths, rendered.loaded, rendered.encoding, rendered.info,
                        rendered.extra, options, rendered.near, rendered.far)


def drop_stale_deep(paths):
    """Remove the ``<name>_deep.exr`` an earlier layered export of this name left: it does
    not match the flat file just written."""
    if os.path.isfile(paths["deep"]):
        os.remove(paths["deep"])


def _write_frame(paths, loaded, encoding, info, extra, options, near, far):
    """Write the depth EXR of ``loaded`` (and its beauty / preview, as ``options`` say) at
    ``paths``; returns ``{"depth", "beauty", "preview", "deep": None}``."""
    rgba = loaded.rgba if options.beauty == "SAME_FILE" else None
    codec = options.codec.lower()
    half = options.bit_depth == "16"
    # a render cropped to its border keeps its place in the full frame (read_render_result)
    windows = dict(data_window=getattr(loaded, "data_window", None),
                   display_window=getattr(loaded, "display_window", None))
    out = {"depth": core_exr.write_depth_exr(
        paths["depth"], loaded.depth, encoding=encoding, rgba=rgba, camera=info, half=half, codec=codec,
        overwrite=True, extra_header=extra, **windows), "beauty": None, "preview": None,
        "deep": None}
    if paths["beauty"] and loaded.rgba is not None:
        channels = {c: loaded.rgba[..., i] for i, c in enumerate("RGBA")}
        header = dict(info.to_header())
        header.update(extra)
        out["beauty"] = core_exr.write_exr(paths["beauty"], channels, header=header, half=half,
                                           codec=codec, overwrite=True, **windows)
    if paths["preview"]:
        out["preview"] = write_png(paths["preview"], preview(loaded.depth, near, far), bits=16,
                                   overwrite=True)
    return out


# -- stereo and multi-view renders ----------------------------------------------------------------


def _export_views(scene, options, frame, cam, views, folder):
    """:func:`export_render_result` for a render of several ``views``: one depth file per view
    (named with :func:`~..scene.views.view_suffixes`), each holding that view's beauty, depth
    and camera."""
    loaded, layer, threshold = read_render_result(scene, folder=folder, views=views)
    near, far = resolve_range(scene, options=options)
    encoding = DepthEncoding(options.encoding, near, far,
                             background=threshold if math.isfinite(threshold) else 1e9)
    depsgraph = frame_depsgraph()
    suffixes = view_suffixes(scene, views)
    results = []
    for view in views:
        vcam = view_camera(scene, cam, view)
        info = camera_info(scene, vcam, frame, depsgraph)
        if scene.render.views_format != "MULTIVIEW":
            eye = eye_matrix(scene, vcam, view, depsgraph)
            info.world_to_camera = [list(row) for row in eye.inverted().transposed()]
            info.world_to_ndc = None  # the eye's off-axis shift is not in the camera's matrix
        extra = extra_header(scene, vcam)
        extra["zdepthViewLayer"] = layer
        extra["zdepthView"] = view
        paths = frame_paths(options, frame, view_suffix=suffixes[view])
        out = _write_frame(paths, loaded[view], encoding, info, extra, options, near, far)
        out["view"] = view
        drop_stale_deep(paths)
        results.append(out)
    first = dict(results[0])
    first["views"] = results
    return first


# -- export on render stays out of the way of render_with_depth --------------------------------

#: Set (in :func:`shared_flags`, shared by every copy of this add-on in the process, e.g. the
#: installed extension and the command line's import) while :func:`render_with_depth` exports by
#: itself: the render handlers stay out of the way.
DIRECT_KEY = "_zdepth_direct_render"


def shared_flags():
    """A dict shared by every copy of the add-on in this process. Not
    ``bpy.app.driver_namespace``: merely touching it makes the bpy 4.5 module hang at exit."""
    shared = sys.modules.get("_blender_zdepth_shared")
    if shared is None:
        shared = types.ModuleType("_blender_zdepth_shared")
        shared.flags = {}
        sys.modules[shared.__name__] = shared
    return shared.flags


# -- rendering from Python -----------------------------------------------------------------------

def check_renderable(scene):
    """:class:`ZDepthError` unless ``scene`` can render planar depth: a camera that is not
    panoramic and an engine with a depth pass."""
    check_camera(scene)
    if not engine_has_depth(scene.render.engine):
        raise ZDepthError(f"the {engine_label(scene.render.engine)} engine has no depth pass: "
                          f"render with Cycles, EEVEE or Workbench")


def render_with_depth(scene, out_dir=None, *, frames=None, depth_layers=None,
                      layer_samples=None, layer_clips=None, layer_mode=None, with_paths=False,
                      **options):
    """Render ``frames`` of ``scene`` (default: the current frame; a range or list of frame
    numbers) and write each frame's depth EXR in ``out_dir`` (default: the scene's Z-Depth output
    folder). ``options``: :class:`ExportOptions` fields overriding the scene's settings
    (``encoding``, ``range_source``, ``near``, ``far``, ``bit_depth``, ``codec``,
    ``name_pattern``, ``write_preview``, ``beauty``). ``depth_layers``, ``layer_samples``,
    ``layer_clips`` override the scene's depth-layer settings (see :mod:`.peel`): with more
    than one layer every frame also gets its extra passes and a ``<name>_deep.exr``. Bad layer
    settings are refused before anything renders. The Z pass is turned on for the render and
    restored afterwards, as is the current frame. Returns the depth EXR paths in frame order
    (with ``with_paths``: each frame's :func:`~..scene.paths.frame_paths` dict, None for files
    not written); a stereo / multi-view render gives one per view, in view order, for each
    frame. Works whether or not the add-on is registered."""
    check_renderable(scene)
    layer_opts = LayerOptions.from_scene(scene, layers=depth_layers, samples=layer_samples,
                                         clips=layer_clips, mode=layer_mode)
    check_options(scene, layer_opts)
    if layer_opts.enabled and rendered_views(scene):
        raise UsageError(STEREO_LAYERS)
    if out_dir is not None:
        options["output_dir"] = os.path.abspath(out_dir)
    opts = ExportOptions.from_scene(scene, **options)
    check_output_folder(export_folder(opts))
    frames = [scene.frame_current] if frames is None else [int(f) for f in frames]
    layers = rendering_view_layers(scene)
    z_before = {layer.name: layer.use_pass_z for layer in layers}
    frame_before = scene.frame_current
    written = []
    shared_flags()[DIRECT_KEY] = True
    try:
        for layer in layers:
            layer.use_pass_z = True
        for frame in frames:
            scene.frame_set(frame)
            if "CANCELLED" in render_scene(scene, write_still=False):
                raise ZDepthError(f"frame {frame}: the render was cancelled")
            out = export_render_result(scene, opts, frame=frame, depth_layers=layer_opts)
            for one in out.get("views", [out]):  # one per view of a stereo render
                written.append(one if with_paths else one["depth"])
    finally:
        shared_flags().pop(DIRECT_KEY, None)
        for layer in layers:
            if layer.name in z_before and layer.use_pass_z != z_before[layer.name]:
                layer.use_pass_z = z_before[layer.name]
        if scene.frame_current != frame_before:
            scene.frame_set(frame_before)
    return written
