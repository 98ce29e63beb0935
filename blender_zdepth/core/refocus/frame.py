"""Refocus one frame: load it as the engine's input (:func:`load_input`), defocus it
(:func:`refocus_array`), and write the result atomically with the input's metadata and the
``zdepthDof*`` attributes (:func:`write_refocused`); :func:`refocus_frame` is all three, the
task of one :class:`~blender_zdepth.core.batch.jobs.FrameJob`."""

import dataclasses
import os

import numpy as np

from .. import dof
from ..batch.jobs import AbortRun
from ..deep import DEFAULT_MAX_LAYERS
from .. import colour as colour_management
from ..display import to_display
from ..encodings import DepthEncoding
from ..errors import UsageError, ZDepthError
from ..exr import find_beauty_channels, read_exr, write_exr
from ..frame import load_frame
from ..png import write_png

_LAYOUT_KEYS = {
    "channels", "compression", "dataWindow", "displayWindow", "lineOrder", "type", "name",
    "chunkCount", "version", "tiles", "BlenderMultiChannel", "view", "multiView",
}


#: Header attribute of a refocused frame whose render already had the camera's depth of field.
DOUBLE_DOF_KEY = "zdepthDofWarning"

#: What the user is told of a frame whose render had the camera's depth of field on.
CAMERA_DOF_WARNING = (
    "the render had the camera's depth of field on (zdepthCameraDofEnabled=1): its beauty is "
    "already defocused and its depth comes from one point of the lens, so refocusing blurs it "
    "a second time; render with the camera's Depth of Field off to refocus after render")


def header_had_dof(header):
    """What a header says of the camera's own depth of field at render time (our exports record
    ``zdepthCameraDofEnabled``): True / False, or None when it says nothing."""
    value = (header or {}).get("zdepthCameraDofEnabled")
    if value is None:
        return None
    try:
        return bool(int(str(value).strip()))
    except ValueError:
        return None


def copyable_header(header):
    """The attributes of an input's header worth keeping on a refocused RGBA output: everything
    but the layout (channels, windows, compression, parts) and the description of a depth
    channel (``zdepthEncoding``, ``zdepthNear`` ...: the output has no depth channel)."""
    depth_keys = set(DepthEncoding().to_header()) | {"zdepthDepthChannel"}
    return {k: v for k, v in (header or {}).items()
            if k not in _LAYOUT_KEYS and k not in depth_keys}


def dof_header(lens, settings, *, focus_source="", diagnostic=False, source=""):
    """The header attributes a refocused frame gets (all prefixed ``zdepthDof``)."""
    h = {
        "zdepthDof": (f"focal {lens.focal_length_mm:g}mm f/{lens.fstop:g} focus "
                      f"{lens.focus_distance:g} sensor {lens.sensor_width_mm:g}mm "
                      f"max radius {settings.max_radius:g}px"),
        "zdepthDofFocusDistance": float(lens.focus_distance),
        "zdepthDofFstop": float(lens.fstop),
        "zdepthDofFocalLength": float(lens.focal_length_mm),
        "zdepthDofSensorWidth": float(lens.sensor_width_mm),
        "zdepthDofSensorHeight": float(getattr(lens, "sensor_height_mm", 24.0)),
        "zdepthDofSensorFit": str(getattr(lens, "sensor_fit", "AUTO")),
        "zdepthDofMaxRadius": float(settings.max_radius),
        "zdepthDofBlades": int(settings.blades),
        "zdepthDofRotation": float(settings.rotation_deg),
        "zdepthDofView": "focal-plane diagnostic" if diagnostic else "defocus",
        # the lens' squeeze is the pixels' (an input saved from Blender may say 1: see
        # blender.compat.save_render)
        "pixelAspectRatio": float(getattr(lens, "pixel_aspect", 1.0)),
    }
    if focus_source:
        h["zdepthDofFocusSource"] = str(focus_source)
    if source:
        h["zdepthDofSource"] = os.path.basename(str(source))
    return h


def load_input(path, *, expect_size=None, layer=None, deep=None, view=None, background="auto",
               layer_required=False):
    """Load a frame for depth of field: :func:`blender_zdepth.core.frame.load_frame` with
    ``engine=True`` (colour and depth checked; ``expect_size`` ``(width, height)`` when given).
    ``layer``: the view layer to read from a multilayer render with several (default:
    ``ViewLayer`` or the first). ``deep``: None = a deep OpenEXR, or a flat export with its
    ``<name>_deep.exr`` beside it, is read as deep samples with the default budget of hidden
    layers; an int = that budget; False = a deep file beside a flat one is ignored (a deep file
    itself is flattened). ``view``: the view of a stereo / multi-view file; ``background``: the
    rule for "no surface". A ``--view`` / ``--layer`` the file lacks stops the run
    (:class:`~blender_zdepth.core.batch.jobs.AbortRun`, exit 2); other problems are a
    :class:`ZDepthError`."""
    budget = DEFAULT_MAX_LAYERS if deep is None or deep is True else int(deep)
    try:
        return load_frame(path, layer=layer, view=view, background=background,
                          layer_required=layer_required, deep_layers=budget,
                          deep_beside=deep is not False, engine=True, expect_size=expect_size)
    except UsageError as exc:  # a --view / --layer the file lacks: stop the run (exit 2)
        raise AbortRun(str(exc)) from None


def refocus_array(frame, lens, settings, *, diagnostic=False):
    """Defocus (or, with ``diagnostic``, the focal-plane view of) a loaded frame: float32 HxWx4
    premultiplied RGBA."""
    if getattr(lens, "frame_size", None) is None and hasattr(frame, "display_size"):
        # the lens sees the display window: crop, border and overscan change no blur size
        lens = dataclasses.replace(lens, frame_size=frame.display_size)
    if diagnostic:
        return dof.focal_plane_view(frame.rgba, frame.depth, lens, settings)
    # a deep file hands over either the surfaces behind opaque samples or its samples that
    # cover pixels partly (core.deep.engine_input)
    extra = {"layers": frame.layers} if getattr(frame, "layers", None) else {}
    return dof.defocus(frame.rgba, frame.depth, lens, settings,
                       hidden=getattr(frame, "hidden", None) or None, **extra)


def multilayer_channels(path, rgba, *, layer=None):
    """Every channel of the input EXR at ``path`` with the refocused ``rgba`` (HxWx4) in place
    of its beauty (``<layer>.Combined.R/G/B/A`` of a Blender render, ``R, G, B, A`` of ours; an
    input without colour -- an export whose beauty was written beside it -- gets ``R, G, B, A``
    added). Returns ``(channels, half)``: name -> HxW float32 plane, and the names stored as
    half in the input (kept half). :class:`ZDepthError` when the input's passes are not all
    the frame's size."""
    image = read_exr(path)
    h, w = rgba.shape[:2]
    odd = sorted(n for n, a in image.channels.items() if a.shape != (h, w))
    if odd:
        raise ZDepthError(f"cannot keep the other passes in a multilayer output: {odd[0]} is not "
                          f"{w}x{h} like the beauty (views or parts of other sizes)")
    beauty = find_beauty_channels(list(image.channels), layer=layer)
    if beauty is None:
        beauty = ["R", "G", "B", "A"]
    elif beauty[3] is None:
        beauty[3] = beauty[0][:-1] + "A"
    channels = dict(image.channels)
    for i, name in enumerate(beauty):
        channels[name] = np.ascontiguousarray(rgba[..., i], dtype=np.float32)
    half = {n for n in image.half if n not in beauty}
    return channels, half


def png_colour(colour, header):
    """The complete :class:`~blender_zdepth.core.colour.ColourSettings` of a frame's PNG:
    ``colour`` (the command line's, or the scene's in Blender) over what ``header`` recorded at
    render time. A missing OpenColorIO or config, or a name the config lacks, stops the run
    (:class:`AbortRun`, one line): every frame would fail alike."""
    try:
        return colour_management.complete(colour_management.resolve(colour, header))
    except UsageError as exc:
        raise AbortRun(str(exc)) from None


def write_refocused(job, rgba, header, *, data_window=None, display_window=None,
                    fallback_header=None, passes=None, colour=None):
    """Write ``rgba`` (HxWx4) to ``job.output`` as a single-part float32 RGBA EXR (ZIP,
    lossless) with ``header`` (and the input's data / display windows, so overscan and border
    renders line up), and to ``job.outputs[1]`` (if any) as an 8-bit PNG for people: colour
    managed as Blender shows the frame (:func:`png_colour`: ``colour`` over the header's
    settings), RGBA with straight alpha when the frame has alpha (Film Transparent), else RGB.
    Each file is written under a unique temporary name and renamed into place: it appears
    complete or not at all. The PNG is written first, so an existing EXR means a finished
    frame. If the EXR cannot be written with ``header`` (an attribute the library refuses) and
    ``fallback_header`` is given, it is written with that one instead. ``passes``: ``(channels,
    half)`` of :func:`multilayer_channels` -- the output is then a multilayer EXR holding every
    pass of the input, with the refocused beauty."""
    rgba = np.ascontiguousarray(rgba, dtype=np.float32)
    channels = {"RGBA": rgba}  # written as R, G, B, A without splitting into planes
    half = False
    if passes is not None:
        channels, half = passes
    if job.outputs[1:]:
        picture = to_display(rgba, png_colour(colour, header), keep_alpha=True)
    # write_png and write_exr are atomic themselves (one temporary file each, named after the
    # output, which a run's sweep of stopped workers finds); wrapping them in another temporary
    # file would give a temporary file of a temporary file, which it does not.
    for path in job.outputs[1:]:
        write_png(path, picture, bits=8, overwrite=True)
    for attempt in (header, fallback_header):
        try:
            write_exr(job.output, channels, header=attempt, half=half, codec="zip",
                      overwrite=True, data_window=data_window, display_window=display_window)
            return attempt
        except ZDepthError:
            if fallback_header is None or attempt is fallback_header:
                raise


def refocus_frame(job, lens_for_frame, settings, *, diagnostic=False, state=None,
                  extra_header=None, keep_result=False, layer=None, deep=None, view=None,
                  background="auto", layer_required=False, multilayer=False, colour=None,
                  camera_dof=None):
    """Refocus one :class:`FrameJob`: load, defocus (or diagnostic), write atomically (all of
    ``job.outputs``; none when it is empty).

    ``lens_for_frame(frame_number, loaded_frame) -> Lens`` or ``-> (Lens, focus_source_text)``.
    ``state`` (a dict shared across the frames of one run) remembers the first frame's size, so a
    frame of another size fails with a clear message. Returns the info dict for the progress
    line (``details``, ``lens``; with ``keep_result`` also ``rgba`` and ``windows``, the frame's
    ``(data_window, display_window)``). ``multilayer``: the output
    keeps every pass of the input (:func:`multilayer_channels`) and the input's whole header,
    its depth description included, since the depth channel is kept too. ``colour``: the
    :class:`~blender_zdepth.core.colour.ColourSettings` of the PNG (see :func:`write_refocused`).

    When the frame's render had the camera's own depth of field (its header's
    ``zdepthCameraDofEnabled``, else ``camera_dof``: what the scene says, for files that record
    nothing), a refocus (not a diagnostic) gets :data:`DOUBLE_DOF_KEY` in its header, a warning
    in ``details`` and ``info["double_dof"]`` True.
    """
    state = {} if state is None else state
    frame = load_input(job.input, expect_size=state.get("size"), layer=layer, deep=deep,
                       view=view, background=background, layer_required=layer_required)
    h, w = frame.depth.shape
    state.setdefault("size", (w, h))
    got = lens_for_frame(job.frame, frame)
    lens, focus_source = got if isinstance(got, tuple) else (got, "")
    had_dof = header_had_dof(getattr(frame, "header", None))
    double_dof = bool(camera_dof if had_dof is None else had_dof) and not diagnostic
    out = refocus_array(frame, lens, settings, diagnostic=diagnostic)
    if job.outputs:
        applied = dof_header(lens, settings, focus_source=focus_source, diagnostic=diagnostic,
                             source=getattr(job, "source", None) or job.input)
        if double_dof:
            applied[DOUBLE_DOF_KEY] = "the input already had the camera's depth of field"
        applied.update(extra_header or {})
        passes = None
        if multilayer:
            passes = multilayer_channels(job.input, out, layer=layer)
            kept = {k: v for k, v in (frame.header or {}).items() if k not in _LAYOUT_KEYS}
            header = {**kept, **applied}
        else:
            header = {**copyable_header(frame.header), **applied}
        fallback = {**applied, "zdepthDofNote": "the input's metadata could not be copied"}
        write_refocused(job, out, header, data_window=getattr(frame, "data_window", None),
                        display_window=getattr(frame, "display_window", None),
                        fallback_header=fallback, passes=passes, colour=colour)
    details = f"focus {lens.focus_distance:.3g} m"
    if focus_source:
        details += f" ({focus_source})"
    details += f", f/{lens.fstop:g}, {lens.focal_length_mm:g} mm"
    if getattr(frame, "deep_note", None):
        details += f", {frame.deep_note}"
    bg = getattr(frame, "background_info", None)
    if bg is not None and (bg.sky or bg.transparent):  # a rule the user may want to know of
        details += f"; {bg.line()}"
    if double_dof:
        details += "; WARNING: the render had the camera's depth of field (blurred twice)"
    info = {"details": details, "lens": lens, "focus_source": focus_source,
            "double_dof": double_dof}
    if keep_result:
        info["rgba"] = out
        info["windows"] = (getattr(frame, "data_window", None),
                           getattr(frame, "display_window", None))
    return info
