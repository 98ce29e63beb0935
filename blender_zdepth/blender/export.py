"""Depth export on render: one depth EXR per rendered frame.

How it works: a ``render_post`` handler runs after every rendered frame (F12, Ctrl+F12 and
``blender -b file.blend -a`` alike). When the scene's ``zdepth.export_enabled`` is on it saves the
Render Result as a temporary multilayer float EXR (``Image.save_render``, with the scene's image
settings switched to multilayer EXR for that call only and restored right after), reads the
view layer's ``Combined`` and ``Depth.Z`` back with :mod:`blender_zdepth.core.exr`, and writes
our file with :func:`blender_zdepth.core.exr.write_depth_exr`: the depth encoded as chosen,
float32 (or half) with a lossless codec, the beauty as R, G, B, A in the same file (or in its own
file beside it), the encoding and the camera of that very frame in the header (focal length,
sensor, f-stop, focus distance -- the focus object's distance when one is set --, clip range).
The result is registered with the beauty: it is the Render Result itself, so resolution
percentage, border and crop are those of the render.

Cycles, EEVEE and Workbench give the same depth semantics: planar depth, background (Cycles'
1e10, EEVEE's clip end, Workbench's +inf) stored as the encoding's background value.

With the scene's Depth Layers above 1 each frame also gets its extra passes and a deep EXR
(:mod:`.layers`): rendered by the handler itself when it runs on the main thread (``blender -b``
and the bpy module, where a handler may start another render of a second scene), or -- in
Blender's window, where F12 and Ctrl+F12 run the handlers in the render job's thread and no
render may start there -- queued and rendered by a timer on the main thread once the render is
over (:func:`render_queued_layers`). Blender writes its own output image of a frame before
``render_post`` runs, and the passes render a temporary copy of the scene: its images and
Render Result stay the beauty.

:func:`render_with_depth` renders frames from Python (the ``render`` command and the demo use it)
and returns the written paths. Nothing here touches the user's compositor or output settings.
"""

import math
import os
import re
import tempfile
import threading
from dataclasses import dataclass, fields

import bpy
from bpy.app.handlers import persistent

from ..core import exr as core_exr
from ..core.encodings import DepthEncoding, background_threshold, preview
from ..core.errors import UsageError, ZDepthError
from ..core.frame import load_frame
from . import camera as bcam
from . import compat
from .passes import engine_has_depth, engine_label, rendering_view_layers


@dataclass
class ExportOptions:
    """What :func:`export_render_result` writes (the panel's settings, as plain values)."""

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


def frame_file_name(pattern, frame, suffix=".exr"):
    """``pattern`` with its run of ``#`` replaced by the zero-padded ``frame`` (``_####`` is
    added when there is none), plus ``suffix``."""
    pattern = pattern or "zdepth_####"
    if "#" not in pattern:
        pattern += "_####"
    runs = list(re.finditer(r"#+", pattern))
    last = runs[-1]
    sign = "-" if frame < 0 else ""
    name = pattern[:last.start()] + sign + str(abs(int(frame))).zfill(len(last.group())) \
        + pattern[last.end():]
    name = name.replace("#", "")
    if os.sep in name or (os.altsep and os.altsep in name):
        raise UsageError(f"the file name pattern {pattern!r} must not contain a folder")
    return name + suffix


def output_folder(options):
    """Absolute output folder (``//`` = next to the .blend; the system's temporary folder's
    ``zdepth`` when the file is unsaved)."""
    path = options.output_dir or "//zdepth/"
    if path.startswith("//") and not bpy.data.filepath:
        path = os.path.join(tempfile.gettempdir(), path[2:] or "zdepth")
    return os.path.normpath(bpy.path.abspath(path))


def frame_paths(options, frame, view_suffix=""):
    """``{"depth": path, "beauty": path or None, "preview": path or None, "deep": path}`` for
    ``frame`` (the deep file is written only with depth layers). ``view_suffix``: a stereo /
    multi-view render's view suffix (see :func:`view_suffixes`), put before ``.exr``."""
    folder = output_folder(options)
    depth = os.path.join(folder, frame_file_name(options.name_pattern, frame,
                                                 view_suffix + ".exr"))
    stem = depth[:-4]
    return {
        "depth": depth,
        "beauty": stem + "_beauty.exr" if options.beauty == "BESIDE" else None,
        "preview": stem + "_preview.png" if options.write_preview else None,
        "deep": stem + "_deep.exr",  # written only with depth layers
    }


def resolve_range(scene, options):
    """``(near, far)`` of the encoding for ``scene`` (see :func:`.properties.resolve_range`)."""
    if options.range_source == "MANUAL":
        return float(options.near), float(options.far)
    cam = scene.camera
    if cam is None or cam.type != "CAMERA":
        return float(options.near), float(options.far)
    if options.range_source == "SCENE":
        measured = bcam.scene_depth_range(scene)
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


# -- temporary settings ------------------------------------------------------------------------

def _snapshot(struct):
    """Writable plain values of an RNA struct (enums, numbers, booleans, strings)."""
    saved = {}
    for prop in struct.bl_rna.properties:
        if prop.is_readonly or prop.type in ("POINTER", "COLLECTION") or prop.identifier == \
                "rna_type":
            continue
        try:
            value = getattr(struct, prop.identifier)
        except AttributeError:
            continue
        if getattr(prop, "is_array", False) or (prop.type in ("INT", "FLOAT", "BOOLEAN")
                                                and getattr(prop, "array_length", 0)):
            value = tuple(value)
        saved[prop.identifier] = value
    return saved


def _restore(struct, saved):
    # media_type / file_format first: setting them resets dependent values (depth, codec)
    order = [k for k in ("media_type", "file_format") if k in saved] + \
        [k for k in saved if k not in ("media_type", "file_format")]
    for _ in range(2):
        for key in order:
            try:
                if getattr(struct, key) != saved[key]:
                    setattr(struct, key, saved[key])
            except (AttributeError, TypeError, ValueError):
                pass


def save_render_result(scene, path):
    """Save the Render Result as a 32-bit multilayer EXR at ``path`` (every pass of every view
    layer); the scene's image settings are restored afterwards."""
    image = bpy.data.images.get("Render Result")
    if image is None or image.type != "RENDER_RESULT":
        raise ZDepthError("there is no Render Result to export: render first (F12)")
    settings = scene.render.image_settings
    saved = _snapshot(settings)
    try:
        compat.set_multilayer_exr(settings, "32", "ZIP")
        if scene.render.use_multiview:
            settings.views_format = "MULTIVIEW"  # every view in this one file
        if hasattr(settings, "color_management"):
            settings.color_management = "FOLLOW_SCENE"  # EXR: scene-linear, as rendered
        try:
            image.save_render(path, scene=scene)
        except RuntimeError:
            if not scene.render.use_multiview:
                raise
            # a stereo Render Result not yet saved in this session: Blender learns its views
            # during this first save and writes each view to its own file instead; remove
            # those and save again, now as one multi-view file
            stem, ext = os.path.splitext(path)
            for view in scene.render.views:
                if os.path.isfile(stem + view.file_suffix + ext):
                    os.remove(stem + view.file_suffix + ext)
            image.save_render(path, scene=scene)
    finally:
        _restore(settings, saved)
    if not os.path.exists(path):
        raise ZDepthError(f"Blender did not write the Render Result to {path}")
    return path


def _pick_layer(scene, names):
    try:
        layers = rendering_view_layers(scene)
    except Exception:  # no usable context (a render thread)
        layers = [layer for layer in scene.view_layers if layer.use]
    candidates = [layer.name for layer in layers] + [layer.name for layer in scene.view_layers]
    for name in candidates:
        if f"{name}.Depth.Z" in names:
            return name
    return None


def read_render_result(scene, folder=None, views=None):
    """Read the Render Result just rendered from ``scene``: ``(frame, layer, threshold)`` --
    its beauty and linear depth (:class:`blender_zdepth.core.exr.Frame`), the view layer they
    come from and the background threshold applied. ``folder``: where the temporary file goes
    (default: the system's temporary folder); it is removed before returning. ``views`` (a
    stereo / multi-view render's view names): ``frame`` is ``{view: Frame}`` instead, each
    view's beauty and depth read from that view."""
    fd, tmp = tempfile.mkstemp(prefix=".zdepth_render_", suffix=".exr", dir=folder)
    os.close(fd)
    try:
        save_render_result(scene, tmp)
        names = list(core_exr.read_exr(tmp).channels)
        layer = _pick_layer(scene, names)
        if layer is None:
            raise ZDepthError(f"the render has no depth pass (channels: {', '.join(names)}); "
                              f"turn the Z pass on (Z-Depth panel > Set Up Depth Pass)")
        threshold = background_for(scene)
        if views:
            loaded = {view: load_frame(tmp, background=threshold, layer=layer,
                                       view=view) for view in views}
        else:
            loaded = load_frame(tmp, background=threshold, layer=layer)
    finally:
        _remove_quietly(tmp)
    return loaded, layer, threshold


def export_render_result(scene, options=None, frame=None, depth_layers=None):
    """Write the depth EXR (and beauty / preview, as ``options`` say) of the Render Result that
    was just rendered from ``scene`` at ``frame`` (default: the current frame). Call it right
    after the render, at that frame: the camera values in the header are read now.

    ``depth_layers`` (:class:`.layers.LayerOptions` with more than one layer): render the
    frame's extra passes now (see :mod:`.layers`; on the main thread) and write the deep
    EXR ``<name>_deep.exr`` beside the flat file, which does not change. The passes render
    before any file is written: a failed pass leaves no half-made frame behind. Without layers
    a ``<name>_deep.exr`` left from an earlier export of that name is removed (it would no
    longer match). Returns ``frame_paths(...)`` with None for the files not written (and, with
    layers, ``"layer_clips"``: the clip distances of the passes).

    A stereo / multi-view render (:func:`rendered_views`) writes one set of files per view,
    ``<name><suffix>.exr`` (:func:`view_suffixes`: ``_L`` / ``_R``), each with that view's
    beauty, depth and camera (the eye's own ``worldToCamera``); the result is the first view's
    dict with ``"views"``: every view's dict (each with ``"view"``). Depth layers are refused
    for such renders (:class:`UsageError`)."""
    options = options or ExportOptions.from_scene(scene)
    frame = scene.frame_current if frame is None else int(frame)
    cam = bcam.check_camera(scene)
    views = rendered_views(scene)
    if views and depth_layers is not None and depth_layers.enabled:
        raise UsageError(STEREO_LAYERS)
    folder = _frame_folder(options, frame)
    if views:
        return _export_views(scene, options, frame, cam, views, folder)
    rendered = _read_frame(scene, options, frame, cam, folder)
    peeled = None
    if depth_layers is not None and depth_layers.enabled:
        peeled = _render_layers(scene, depth_layers, rendered, folder)
    out = _write_flat(rendered, options)
    if peeled is not None:
        out["deep"] = _write_deep(rendered, peeled)
        out["layer_clips"] = [p.clip for p in peeled]
    else:
        _drop_stale_deep(rendered.paths)
    return out


def _frame_folder(options, frame):
    """The output folder of ``frame``'s files, created when missing."""
    folder = os.path.dirname(frame_paths(options, frame)["depth"])
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise ZDepthError(f"{folder}: cannot create the output folder ({exc.strerror})")
    return folder


@dataclass
class _Rendered:
    """A frame's Render Result read back with what its files need: ``loaded`` (beauty and
    linear depth), the view ``layer`` and background ``threshold`` it was read with, the depth
    ``encoding``, the camera ``info`` and ``extra`` header of that frame, the encoding's
    ``near`` / ``far``, the frame's :func:`frame_paths`, and ``saved``: the file holding its
    beauty and depth while its depth layers wait in the queue, else None."""

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


def _read_frame(scene, options, frame, cam, folder):
    """Read the Render Result of ``frame`` (a single view) as :class:`_Rendered`."""
    loaded, layer, threshold = read_render_result(scene, folder)
    near, far = resolve_range(scene, options)
    encoding = DepthEncoding(options.encoding, near, far,
                             background=threshold if math.isfinite(threshold) else 1e9)
    info = bcam.camera_info(scene, cam, frame, bcam.frame_depsgraph())
    extra = bcam.extra_header(scene, cam)
    extra["zdepthViewLayer"] = layer
    return _Rendered(loaded, layer, threshold, encoding, info, extra, near, far,
                     frame_paths(options, frame), frame)


def _keep_for_later(rendered, folder):
    """Write ``rendered``'s beauty and linear depth (float32, lossless) to a hidden file in
    ``folder`` -- its path in ``rendered.saved`` -- and let go of the arrays (a queued frame:
    read back by :func:`_load_kept`)."""
    fd, path = tempfile.mkstemp(prefix=".zdepth_pending_", suffix=".exr", dir=folder)
    os.close(fd)
    channels = {"Z": rendered.loaded.depth}
    if rendered.loaded.rgba is not None:
        channels["RGBA"] = rendered.loaded.rgba
    try:
        core_exr.write_exr(path, channels, codec="zip", overwrite=True)
    except BaseException:
        _remove_quietly(path)
        raise
    rendered.saved = path
    rendered.loaded = None


def _load_kept(rendered):
    """The beauty and depth :func:`_keep_for_later` wrote, as ``rendered.loaded``."""
    import types

    import numpy as np

    channels = core_exr.read_exr(rendered.saved).channels
    rgba = np.stack([channels[c] for c in "RGBA"], axis=-1) if "A" in channels else None
    rendered.loaded = types.SimpleNamespace(rgba=rgba, depth=channels["Z"])


def _remove_quietly(path):
    if path:
        try:
            os.remove(path)
        except OSError:
            pass


def _render_layers(scene, depth_layers, rendered, folder):
    """Render the extra passes of ``rendered``'s frame (scene at that frame, main thread):
    :func:`.layers.render_passes` with the clip distances from its depth and focus."""
    from . import layers as blayers

    def read_pass(pass_scene):
        result = read_render_result(pass_scene, folder)[0]
        return result.rgba, result.depth

    return blayers.render_passes(scene, depth_layers, rendered.loaded.depth,
                                 rendered.info.focus_distance, read_pass)


def _write_deep(rendered, peeled):
    """Write ``rendered``'s deep EXR: its beauty and depth, then the ``peeled`` passes."""
    return core_exr.write_deep_exr(
        rendered.paths["deep"], rendered.loaded.rgba, rendered.loaded.depth,
        [(p.rgba, p.depth) for p in peeled], camera=rendered.info,
        extra_header=rendered.extra, overwrite=True)


def _write_flat(rendered, options):
    """:func:`_write_frame` for a frame read back by :func:`_read_frame`."""
    return _write_frame(rendered.paths, rendered.loaded, rendered.encoding, rendered.info,
                        rendered.extra, options, rendered.near, rendered.far)


def _drop_stale_deep(paths):
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
    out = {"depth": core_exr.write_depth_exr(
        paths["depth"], loaded.depth, encoding=encoding, rgba=rgba, camera=info, half=half, codec=codec,
        overwrite=True, extra_header=extra), "beauty": None, "preview": None, "deep": None}
    if paths["beauty"] and loaded.rgba is not None:
        channels = {c: loaded.rgba[..., i] for i, c in enumerate("RGBA")}
        header = dict(info.to_header())
        header.update(extra)
        out["beauty"] = core_exr.write_exr(paths["beauty"], channels, header=header, half=half,
                                           codec=codec, overwrite=True)
    if paths["preview"]:
        from ..core.png import write_png

        out["preview"] = write_png(paths["preview"], preview(loaded.depth, near, far), bits=16,
                                   overwrite=True)
    return out


# -- stereo and multi-view renders ----------------------------------------------------------------

STEREO_LAYERS = ("depth layers are not rendered for a stereo / multi-view render (Stereoscopy "
                 "is on): set Depth Layers to 1, or turn Stereoscopy off for the layered render")


def rendered_views(scene):
    """The names of the views ``scene`` renders, in order, when it renders more than one
    (Stereoscopy on: ``left`` and ``right``, or the enabled views of a Multi-View set-up);
    else ``[]`` (one depth file per frame, as without Stereoscopy)."""
    r = scene.render
    if not r.use_multiview:
        return []
    names = [v.name for v in r.views if v.use
             and (r.views_format == "MULTIVIEW" or v.name in ("left", "right"))]
    return names if len(names) > 1 else []


def view_suffixes(scene, views):
    """``{view: suffix}`` of the depth files: the view's own File Suffix (Blender's ``_L`` and
    ``_R`` for stereo), or ``_<view name>`` where that suffix is empty or shared by two views."""
    given = {v: scene.render.views[v].file_suffix for v in views}
    counts = {}
    for s in given.values():
        counts[s] = counts.get(s, 0) + 1
    return {v: s if s and counts[s] == 1 else f"_{v}" for v, s in given.items()}


def view_camera(scene, cam, view):
    """The camera object rendering ``view``: the scene camera for Stereo 3D; in a Multi-View
    set-up the object named like it with that view's Camera Suffix, when there is one (as
    Blender picks it)."""
    r = scene.render
    if r.views_format != "MULTIVIEW":
        return cam
    name = cam.name
    best = None
    for v in r.views:  # the longest camera suffix the camera's name ends with
        s = v.camera_suffix
        if name.endswith(s) and len(s) <= len(name) and (best is None or len(s) >= len(best)):
            best = s
    if best is None:
        return cam
    other = scene.objects.get(name[:len(name) - len(best)] + r.views[view].camera_suffix)
    return other if other is not None and other.type == "CAMERA" else cam


def eye_matrix(scene, cam, view, depsgraph=None):
    """World matrix (scale removed) of the eye rendering ``view`` of a Stereo 3D render: the
    camera moved along its own X axis by the interocular distance (all of it, or half each way
    with the Center pivot) and, with Toe-in convergence, turned toward the convergence plane --
    Blender's own stereo camera rule."""
    from mathutils import Matrix

    src = cam.evaluated_get(depsgraph) if depsgraph is not None else cam
    world = src.matrix_world.normalized()
    st = src.data.stereo
    left = view == "left"
    if (st.pivot == "LEFT" and left) or (st.pivot == "RIGHT" and not left):
        return world
    iod = float(st.interocular_distance)
    fac = 0.5 if st.pivot == "CENTER" else 1.0
    signed = fac if left else -fac
    if st.convergence_mode != "TOE":
        return world @ Matrix.Translation((-iod * signed, 0.0, 0.0))
    if st.pivot == "CENTER":
        fac, signed = -fac, -signed
    angle = math.atan(iod * 0.5 / float(st.convergence_distance)) / fac * signed
    c, s = math.cos(angle), math.sin(angle)
    rot = Matrix(((c, 0.0, -s, 0.0), (0.0, 1.0, 0.0, 0.0), (s, 0.0, c, 0.0),
                  (0.0, 0.0, 0.0, 1.0)))
    if st.pivot == "CENTER":
        toe = rot.copy()
        toe[0][3] = iod * signed
        return world @ toe
    return world @ rot @ Matrix.Translation((-iod * signed, 0.0, 0.0)) @ rot


def _export_views(scene, options, frame, cam, views, folder):
    """:func:`export_render_result` for a render of several ``views``: one depth file per view
    (named with :func:`view_suffixes`), each holding that view's beauty, depth and camera."""
    loaded, layer, threshold = read_render_result(scene, folder, views=views)
    near, far = resolve_range(scene, options)
    encoding = DepthEncoding(options.encoding, near, far,
                             background=threshold if math.isfinite(threshold) else 1e9)
    depsgraph = bcam.frame_depsgraph()
    suffixes = view_suffixes(scene, views)
    results = []
    for view in views:
        vcam = view_camera(scene, cam, view)
        info = bcam.camera_info(scene, vcam, frame, depsgraph)
        if scene.render.views_format != "MULTIVIEW":
            eye = eye_matrix(scene, vcam, view, depsgraph)
            info.world_to_camera = [list(row) for row in eye.inverted().transposed()]
            info.world_to_ndc = None  # the eye's off-axis shift is not in the camera's matrix
        extra = bcam.extra_header(scene, vcam)
        extra["zdepthViewLayer"] = layer
        extra["zdepthView"] = view
        paths = frame_paths(options, frame, suffixes[view])
        out = _write_frame(paths, loaded[view], encoding, info, extra, options, near, far)
        out["view"] = view
        _drop_stale_deep(paths)
        results.append(out)
    first = dict(results[0])
    first["views"] = results
    return first


# -- the handler -------------------------------------------------------------------------------

#: Set (in :func:`_shared_flags`, shared by every copy of this add-on in the process, e.g. the
#: installed extension and the command line's import) while :func:`render_with_depth` exports by
#: itself: the render handlers stay out of the way.
DIRECT_KEY = "_zdepth_direct_render"


def _shared_flags():
    """A dict shared by every copy of the add-on in this process. Not
    ``bpy.app.driver_namespace``: merely touching it makes the bpy 4.5 module hang at exit."""
    import sys
    import types

    shared = sys.modules.get("_blender_zdepth_shared")
    if shared is None:
        shared = types.ModuleType("_blender_zdepth_shared")
        shared.flags = {}
        sys.modules[shared.__name__] = shared
    return shared.flags


class _State:
    temp_z = []  # (scene, view layer) whose Z pass is on for the current render only
    errors = []  # (frame, message) of failed exports since the last render_init
    written = []  # depth paths written since the last render_init
    last_render = None  # (scene name, frame) of the latest render_post: what Render Result holds
    queue_due = False  # set by a render job's thread: queued depth layers wait for the main thread


_state = _State()


def last_render_frame(scene):
    """The frame the Render Result holds when ``scene`` rendered it last (after an animation
    render Blender 5.0 puts ``frame_current`` back to where it was), else ``frame_current``."""
    last = _state.last_render
    if last is not None and last[0] == scene.name:
        return last[1]
    return scene.frame_current


def last_errors():
    """``[(frame, message)]`` of the exports that failed during the latest render."""
    return list(_state.errors)


def _is_layer_pass(scene):
    from .layers import is_peel_scene

    return is_peel_scene(scene)


@persistent
def _on_render_init(scene, *args):
    if _is_layer_pass(scene):
        return  # a depth-layer pass (blender/layers.py): not a render of the user's
    _state.errors = []
    _state.written = []
    _state.temp_z = []
    zd = getattr(scene, "zdepth", None)
    if _shared_flags().get(DIRECT_KEY) or zd is None or not zd.export_enabled:
        return
    # export is on but a rendering view layer lacks the Z pass (turned off by hand, or a layer
    # added later): turn it on for this render only, restored when the render ends
    try:
        layers = rendering_view_layers(scene)
    except Exception:  # no usable context (a render thread)
        layers = [layer for layer in scene.view_layers if layer.use]
    for layer in layers:
        if not layer.use_pass_z:
            layer.use_pass_z = True
            _state.temp_z.append((scene.name, layer.name))
            print(f"blender_zdepth: Z pass turned on for view layer {layer.name!r} for this "
                  f"render (depth export is on)")


def _restore_z_passes():
    for scene_name, layer_name in _state.temp_z:
        sc = bpy.data.scenes.get(scene_name)
        layer = sc.view_layers.get(layer_name) if sc is not None else None
        if layer is not None:
            layer.use_pass_z = False
    _state.temp_z = []


@persistent
def _on_render_end(scene, *args):
    """render_complete: the Z passes turned on for this render go back; frames whose depth
    layers were queued (the handlers ran in a render job's thread) get them from a timer on the
    main thread once the render job is over."""
    if _is_layer_pass(scene):
        return
    _restore_z_passes()
    if len(LAYER_QUEUE):
        _schedule_queue()


@persistent
def _on_render_cancel(scene, *args):
    """render_cancel: the Z passes go back; depth layers queued by the cancelled render are
    dropped (their flat files stay)."""
    if _is_layer_pass(scene):
        return
    _restore_z_passes()
    dropped = LAYER_QUEUE.drop()
    if dropped:
        print(f"blender_zdepth: the render was cancelled: the depth layers of "
              f"{_frames_text(dropped)} are not rendered (their flat depth files are written)")


def _on_main_thread():
    """True when the caller runs on the interpreter's main thread. Render handlers do during
    ``blender -b`` (``-f`` / ``-a``) and in the bpy module, where a handler may start another
    render; in Blender's window F12 and Ctrl+F12 run them in the render job's thread, where no
    operator may run."""
    return threading.current_thread() is threading.main_thread()


def _layer_options_for_render(scene, frame):
    """The scene's depth-layer settings when this frame's export should render layers, else None
    (one layer; a stereo render, refused with one line; settings that cannot be rendered, an
    error)."""
    from . import layers as blayers

    try:
        opts = blayers.LayerOptions.from_scene(scene)
        if not opts.enabled:
            return None
        if rendered_views(scene):
            print(f"blender_zdepth: frame {frame}: {STEREO_LAYERS}")
            return None
        blayers.check_options(scene, opts)
    except UsageError as exc:
        _state.errors.append((frame, f"depth layers not rendered: {exc}"))
        print(f"blender_zdepth: frame {frame}: depth layers not rendered: {exc}")
        return None
    return opts


def _export_on_render(scene, frame):
    """The render_post handler's export of ``frame``: the flat file(s), and with Depth Layers
    above 1 the extra passes and the deep file -- now on the main thread (``blender -b``, the
    bpy module), or queued for :func:`render_queued_layers` from a render job's thread."""
    options = ExportOptions.from_scene(scene)
    layer_opts = _layer_options_for_render(scene, frame)
    if layer_opts is None:
        out = export_render_result(scene, options, frame)
        for one in out.get("views", [out]):
            _state.written.append(one["depth"])
            print(f"blender_zdepth: frame {frame}: depth written to {one['depth']}")
        return
    cam = bcam.check_camera(scene)
    folder = _frame_folder(options, frame)
    rendered = _read_frame(scene, options, frame, cam, folder)
    out = _write_flat(rendered, options)
    _drop_stale_deep(rendered.paths)  # its deep file comes after the passes, if they succeed
    _state.written.append(out["depth"])
    print(f"blender_zdepth: frame {frame}: depth written to {out['depth']}")
    if not _on_main_thread():
        _keep_for_later(rendered, folder)
        LAYER_QUEUE.add(_Queued(scene.name, bpy.data.filepath, layer_opts, rendered, folder))
        print(f"blender_zdepth: frame {frame}: depth layers queued: {layer_opts.layers - 1} "
              f"extra pass(es) render when the render has finished")
        return
    _layers_now(scene, layer_opts, rendered, folder)


def _layers_now(scene, layer_opts, rendered, folder):
    """Render ``rendered``'s passes (``scene`` at its frame, main thread) and write its deep
    file; a failure or a cancel is reported (the flat file stays, no deep file) and re-raised
    as :class:`.layers.PassCancelled` for a cancel."""
    from . import layers as blayers

    frame = rendered.frame
    try:
        peeled = _render_layers(scene, layer_opts, rendered, folder)
        deep = _write_deep(rendered, peeled)
    except (Exception, KeyboardInterrupt) as exc:
        cancelled = isinstance(exc, (KeyboardInterrupt, blayers.PassCancelled))
        why = "cancelled" if isinstance(exc, KeyboardInterrupt) else str(exc)
        _state.errors.append((frame, f"depth layers failed: {why}"))
        print(f"blender_zdepth: frame {frame}: depth layers failed: {why} (the flat depth file "
              f"is written; no deep file for this frame)")
        if cancelled:
            raise blayers.PassCancelled(why)
        return None
    clips = ", ".join(f"{p.clip:g}" for p in peeled)
    print(f"blender_zdepth: frame {frame}: depth layers (clip {clips}) written to {deep}")
    return deep


@persistent
def _on_render_post(scene, *args):
    if _is_layer_pass(scene):
        return
    _state.last_render = (scene.name, scene.frame_current)
    zd = getattr(scene, "zdepth", None)
    if _shared_flags().get(DIRECT_KEY) or zd is None or not zd.export_enabled:
        return
    frame = scene.frame_current
    if scene.camera is None:  # Blender refuses to render then: nothing rendered, nothing failed
        print(f"blender_zdepth: frame {frame}: no depth exported: the render did not run (the "
              f"scene has no camera)")
        return
    try:
        _export_on_render(scene, frame)
    except Exception as exc:  # a handler must not break the render; say why, loudly
        from .layers import PassCancelled

        if isinstance(exc, PassCancelled):
            return  # said already
        _state.errors.append((frame, str(exc)))
        print(f"blender_zdepth: frame {frame}: depth export failed: {exc}")


# -- depth layers of renders whose handlers ran off the main thread (F12 in the window) ---------

@dataclass
class _Queued:
    """A frame whose depth layers wait for the main thread: the scene's name and the .blend it
    belongs to, the layer settings of the render, the frame read back (its beauty and depth
    kept in ``rendered.saved``) and its output folder."""

    scene: str
    blend: str
    options: object
    rendered: _Rendered
    folder: str


class _LayerQueue:
    """Frames queued by render handlers (any thread), taken by the main thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items = []

    def __len__(self):
        with self._lock:
            return len(self._items)

    def add(self, item):
        with self._lock:
            self._items.append(item)

    def take(self):
        with self._lock:
            items, self._items = self._items, []
        return items

    def drop(self):
        """Empty the queue, removing the kept files; returns the dropped items."""
        items = self.take()
        for item in items:
            _remove_quietly(item.rendered.saved)
        return items

    def frames(self):
        with self._lock:
            return [item.rendered.frame for item in self._items]


#: Frames whose depth layers wait for the main thread (see :func:`render_queued_layers`).
LAYER_QUEUE = _LayerQueue()


def _frames_text(items):
    frames = [item.rendered.frame for item in items]
    return f"frame {frames[0]}" if len(frames) == 1 else \
        f"{len(frames)} frames ({frames[0]}-{frames[-1]})"


def _render_job_running():
    try:
        return bool(bpy.app.is_job_running("RENDER"))
    except (AttributeError, TypeError, ValueError):
        return False


#: Seconds between two looks of :func:`_queue_poller` at the queue (Blender's window only).
POLL_S = 0.5


def _schedule_queue():
    """Have the queued depth layers rendered on the main thread once the render job is over.

    On the main thread the timer that does it (:func:`_layer_queue_timer`) is registered here.
    From render_complete in Blender's window, i.e. from the render job's thread, no timer is
    registered (Blender's timer list is not guarded against other threads): the queue is only
    marked due, and :func:`_queue_poller` -- a timer the add-on registered on the main thread --
    registers it there. Neither runs with a real window in the tests (none here): they call
    the two functions as Blender would."""
    if _on_main_thread():
        if not bpy.app.timers.is_registered(_layer_queue_timer):
            bpy.app.timers.register(_layer_queue_timer, first_interval=0.2, persistent=True)
    else:
        _state.queue_due = True  # one attribute store: atomic under the interpreter lock


def _queue_poller():
    """Main-thread timer of Blender's window (registered by :func:`register`): when a render
    job marked the depth-layer queue due, register :func:`_layer_queue_timer`. Runs forever."""
    if _state.queue_due:
        _state.queue_due = False
        if len(LAYER_QUEUE) and not bpy.app.timers.is_registered(_layer_queue_timer):
            bpy.app.timers.register(_layer_queue_timer, first_interval=0.0, persistent=True)
    return POLL_S


def _layer_queue_timer():
    """Timer (main thread): once no render job runs, render every queued frame's depth layers."""
    if _render_job_running():
        return 0.5  # the render job is still finishing (or a new one started): later
    try:
        render_queued_layers()
    except Exception as exc:  # a timer must not raise into Blender's event loop
        print(f"blender_zdepth: depth layers failed: {exc}")
    return None


def _window_override():
    """A context override with a window (a timer's context has none), when Blender has one."""
    from contextlib import nullcontext

    wm = getattr(bpy.context, "window_manager", None)
    if bpy.app.background or getattr(bpy.context, "window", None) is not None or wm is None \
            or not wm.windows:
        return nullcontext()
    return bpy.context.temp_override(window=wm.windows[0])


def _tell(text, error=False):
    """Print ``text`` to the console and, in Blender's window, show it in a small popup."""
    print(f"blender_zdepth: {text}")
    wm = getattr(bpy.context, "window_manager", None)
    if bpy.app.background or wm is None or not wm.windows:
        return  # no window to show it in (the bpy module has a stand-in one: not for popups)
    try:
        with _window_override():
            bpy.context.window_manager.popup_menu(
                lambda menu, _context: menu.layout.label(text=text),
                title="Depth Layers", icon="ERROR" if error else "INFO")
    except Exception:
        pass


def render_queued_layers():
    """Render the depth layers of every queued frame, in order, on the main thread, and write
    their deep files: the frames that export on render rendered while its handlers ran in a
    render job's thread (F12 / Ctrl+F12 in Blender's window), where no render may start. This
    is what :func:`_layer_queue_timer` calls once such a render is over.

    Per frame: the scene goes to that frame (``frame_set``: animated objects and camera where
    they were), the beauty and depth come from the file kept when the frame rendered (the
    Render Result's own values: the deep file matches its flat file exactly), the passes render as everywhere else
    (:func:`.layers.render_passes`, settings restored), the deep file is written and the kept
    file removed. A frame that fails is reported and skipped; a cancel (Esc) drops the frames
    left. Afterwards each scene is back at the frame it was at. Returns the deep paths
    written."""
    from . import layers as blayers

    items = LAYER_QUEUE.take()
    if not items:
        return []
    written, failed, skipped = [], [], []
    frames_before = {}
    pending = list(items)
    try:
        with _window_override():
            while pending:
                item = pending.pop(0)
                rendered = item.rendered
                try:
                    scene = bpy.data.scenes.get(item.scene)
                    if scene is None or bpy.data.filepath != item.blend or \
                            scene.camera is None:
                        print(f"blender_zdepth: frame {rendered.frame}: depth layers not "
                              f"rendered: the scene {item.scene!r} is no longer open")
                        skipped.append(rendered.frame)
                        continue
                    frames_before.setdefault(scene.name, (scene, scene.frame_current))
                    if scene.frame_current != rendered.frame:
                        scene.frame_set(rendered.frame)
                    _load_kept(rendered)
                    deep = _layers_now(scene, item.options, rendered, item.folder)
                    (written if deep else failed).append(deep or rendered.frame)
                except blayers.PassCancelled:
                    failed.append(rendered.frame)
                    skipped.extend(other.rendered.frame for other in pending)
                    break  # the frames left: their kept files go below
                except Exception as exc:
                    _state.errors.append((rendered.frame, f"depth layers failed: {exc}"))
                    print(f"blender_zdepth: frame {rendered.frame}: depth layers failed: {exc}")
                    failed.append(rendered.frame)
                finally:
                    rendered.loaded = None
                    _remove_quietly(rendered.saved)
    finally:
        for item in pending:
            _remove_quietly(item.rendered.saved)
        for scene, frame in frames_before.values():
            if scene.frame_current != frame:
                scene.frame_set(frame)
    text = f"depth layers: {len(written)} deep file(s) written" + \
        (f" to {os.path.dirname(written[0])}" if written else "")
    if failed:
        text += f"; failed: frame(s) {', '.join(map(str, failed))}"
    if skipped:
        text += f"; not rendered: frame(s) {', '.join(map(str, skipped))}"
    _tell(text, error=bool(failed or skipped))
    return written


_HANDLERS = (("render_init", _on_render_init), ("render_post", _on_render_post),
             ("render_complete", _on_render_end), ("render_cancel", _on_render_cancel))


def register():
    compat.add_handlers(_HANDLERS)
    # Blender's window: the main thread looks for depth layers queued by render jobs (a timer
    # registered here, on the main thread; none in background mode, where nothing is queued)
    if not bpy.app.background and not bpy.app.timers.is_registered(_queue_poller):
        bpy.app.timers.register(_queue_poller, first_interval=POLL_S, persistent=True)


def unregister():
    compat.remove_handlers(_HANDLERS)
    for timer in (_layer_queue_timer, _queue_poller):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    _state.queue_due = False
    LAYER_QUEUE.drop()


# -- rendering from Python -----------------------------------------------------------------------

def check_renderable(scene):
    """:class:`ZDepthError` unless ``scene`` can render planar depth: a camera that is not
    panoramic and an engine with a depth pass."""
    bcam.check_camera(scene)
    if not engine_has_depth(scene.render.engine):
        raise ZDepthError(f"the {engine_label(scene.render.engine)} engine has no depth pass: "
                          f"render with Cycles, EEVEE or Workbench")


def folder_write_problem(folder):
    """Create ``folder`` when missing and write (then remove) a probe file there; return None
    when that worked, else why not (the system's words)."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".zdepth_probe_", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


def check_output_folder(folder):
    """Create ``folder`` when missing; :class:`ZDepthError` when it cannot be written."""
    problem = folder_write_problem(folder)
    if problem:
        raise ZDepthError(f"{folder}: cannot write the output here ({problem})")
    return folder


def render_with_depth(scene, out_dir=None, frames=None, depth_layers=None, layer_samples=None,
                      layer_clips=None, with_paths=False, **options):
    """Render ``frames`` of ``scene`` (default: the current frame; a range or list of frame
    numbers) and write each frame's depth EXR in ``out_dir`` (default: the scene's Z-Depth output
    folder). ``options``: :class:`ExportOptions` fields overriding the scene's settings
    (``encoding``, ``range_source``, ``near``, ``far``, ``bit_depth``, ``codec``,
    ``name_pattern``, ``write_preview``, ``beauty``). ``depth_layers``, ``layer_samples``,
    ``layer_clips`` override the scene's depth-layer settings (see :mod:`.layers`): with more
    than one layer every frame also gets its extra passes and a ``<name>_deep.exr``. Bad layer
    settings are refused before anything renders. The Z pass is turned on for the render and
    restored afterwards, as is the current frame. Returns the depth EXR paths in frame order
    (with ``with_paths``: each frame's :func:`frame_paths` dict, None for files not written);
    a stereo / multi-view render gives one per view, in view order, for each frame. Works whether or not the add-on is registered."""
    from . import layers as blayers

    check_renderable(scene)
    layer_opts = blayers.LayerOptions.from_scene(scene, depth_layers, layer_samples, layer_clips)
    blayers.check_options(scene, layer_opts)
    if layer_opts.enabled and rendered_views(scene):
        raise UsageError(STEREO_LAYERS)
    if out_dir is not None:
        options["output_dir"] = os.path.abspath(out_dir)
    opts = ExportOptions.from_scene(scene, **options)
    check_output_folder(output_folder(opts))
    frames = [scene.frame_current] if frames is None else [int(f) for f in frames]
    layers = rendering_view_layers(scene)
    z_before = {layer.name: layer.use_pass_z for layer in layers}
    frame_before = scene.frame_current
    written = []
    _shared_flags()[DIRECT_KEY] = True
    try:
        for layer in layers:
            layer.use_pass_z = True
        for frame in frames:
            scene.frame_set(frame)
            if "CANCELLED" in blayers.render_scene(scene, write_still=False):
                raise ZDepthError(f"frame {frame}: the render was cancelled")
            out = export_render_result(scene, opts, frame, depth_layers=layer_opts)
            for one in out.get("views", [out]):  # one per view of a stereo render
                written.append(one if with_paths else one["depth"])
    finally:
        _shared_flags().pop(DIRECT_KEY, None)
        for layer in layers:
            if layer.name in z_before and layer.use_pass_z != z_before[layer.name]:
                layer.use_pass_z = z_before[layer.name]
        if scene.frame_current != frame_before:
            scene.frame_set(frame_before)
    return written
