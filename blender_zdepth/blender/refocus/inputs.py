"""What Apply and the live preview refocus, and where the results go: the frames of the Depth of
Field panel's range (:func:`panel_frames`), the rendered files of those frames -- the panel's
Input, the scene's own multilayer EXRs or the depth exports, per view for a stereo render
(:func:`file_inputs`, :func:`view_file_inputs`) -- the Render Result saved as an input
(:func:`render_result_input`), and the output folder (:func:`refocus_folder`).
"""

import os
import tempfile

import bpy

from ...core import batch as core_batch
from ...core.errors import ZDepthError
from ..render.result import save_render_result
from ..scene.options import ExportOptions, dof_settings, setting
from ..scene.paths import abspath, folder_write_problem, frame_paths, render_output_folder
from ..scene.views import rendered_views, view_suffixes, with_view_suffix


def panel_frames(scene):
    """The frames Apply refocuses from files: the sub-panel's Start, End and Step (the scene's
    range and step while Scene Range is ticked). :class:`ZDepthError` when the range runs
    backwards."""
    zd = dof_settings(scene)
    if zd is None or setting(zd, "dof_use_scene_range", True):
        a, b, step = scene.frame_start, scene.frame_end, scene.frame_step
    else:
        a, b, step = zd.dof_frame_start, zd.dof_frame_end, zd.dof_frame_step
    if b < a:
        raise ZDepthError(f"frame range {a}-{b} runs backwards: set End after Start in the "
                          f"Depth of Field panel")
    return list(range(a, b + 1, max(1, step)))


def ensure_output_folder(folder):
    """Create ``folder`` when missing and check a file can be written there; a
    :class:`ZDepthError` saying what to do otherwise (never a silent fallback elsewhere)."""
    problem = folder_write_problem(folder)
    if problem:
        raise ZDepthError(f"cannot write the refocused frames into {folder} ({problem}): "
                          f"choose another Output folder in the Depth of Field panel")
    return folder


def refocus_folder(scene, near=None):
    """Where results go: the panel's output folder, else ``near`` (the renders' folder), else
    the folder of the scene's render output path, else (no output path at all) the system's
    temporary folder. The folder is created when missing; :class:`ZDepthError` when it cannot
    be written."""
    zd = dof_settings(scene)
    folder = (abspath(setting(zd, "dof_output_dir", "")) or near or render_output_folder(scene)
              or tempfile.gettempdir())
    return ensure_output_folder(folder)


def render_result_input(scene, path, *, codec="ZIP"):
    """Save the Render Result (all passes) as a 32-bit multilayer EXR at ``path``, the input of
    a refocus, with ``codec`` (lossless); the scene's output settings are restored afterwards
    (:func:`..render.result.save_render_result`). :class:`ZDepthError` saying what to do when
    there is no render."""
    image = bpy.data.images.get("Render Result")
    if image is None or image.type != "RENDER_RESULT":
        raise ZDepthError("there is no render yet: render a frame (F12) first, with the Z pass "
                          "on (View Layer > Passes > Z)")
    try:
        return save_render_result(scene, path, codec=codec)
    except RuntimeError as exc:
        raise ZDepthError(f"could not save the Render Result: {exc}; render a frame first")


def file_inputs(scene, frames):
    """``{frame: path}`` of the rendered files: the panel's input (a file or a pattern like
    ``//render/shot.####.exr``); else where the scene renders its frames when that is a
    multilayer EXR; else the depth exports of "Export Depth on Render" when they carry the
    beauty (Beauty: Same File, or Beside: the ``<name>_beauty.exr`` next to each) and exist on
    disk. Otherwise :class:`ZDepthError` once, up front (the scene's own renders are not
    multilayer EXRs with depth, so reading them would fail every frame)."""
    zd = dof_settings(scene)
    text = abspath(setting(zd, "dof_input", ""))
    if text:
        pattern = core_batch.FramePattern(text)
        return {f: pattern.path_for(f) for f in frames}
    rendered = {f: abspath(scene.render.frame_path(frame=f)) for f in frames}
    if scene.render.image_settings.file_format == "OPEN_EXR_MULTILAYER":
        return rendered
    exports = {}
    if setting(zd, "beauty", "NONE") in ("SAME_FILE", "BESIDE"):
        options = ExportOptions.from_scene(scene)
        exports = {f: frame_paths(options, f)["depth"] for f in frames}
        if setting(zd, "export_enabled", False) or any(os.path.exists(p)
                                                       for p in exports.values()):
            return exports
    settings = scene.render.image_settings
    fmt = settings.bl_rna.properties["file_format"].enum_items[settings.file_format].name
    fmt = fmt.split(" (")[0]  # "PNG (.png)" in 5.0
    hint = (" or turn on Export Depth on Render (Beauty: Same File or Beside) and render "
            "again" if not exports else f" (no depth exports found either, e.g. "
            f"{exports[min(exports)]})")
    raise ZDepthError(f"nothing to refocus: the scene renders {fmt} files, which hold no depth; "
                      f"set Input in the Depth of Field panel to EXRs with depth, render as "
                      f"OpenEXR MultiLayer with the Z pass{hint}")


def view_file_inputs(scene, frames):
    """The rendered files of a stereo / multi-view scene when the panel's Input is empty:
    ``({frame: [(view, path, name, suffix), ...]}, read_view)``, where ``name`` is the file's
    name without the view (what the frame would be without Stereoscopy) and ``read_view`` says
    that ``path`` holds every view (read the view from it). As :func:`file_inputs` chooses:
    the scene's own multilayer EXRs (one multi-view file per frame, or Blender's
    ``<name><suffix>.exr`` per view), else the per-view depth exports carrying the beauty
    (``<name><suffix>.exr``, :func:`.scene.paths.frame_paths`). None when the scene renders one
    view, Input is set, or there are no such files (then :func:`file_inputs` decides)."""
    zd = dof_settings(scene)
    views = rendered_views(scene)
    if not views or setting(zd, "dof_input", ""):
        return None
    suffixes = view_suffixes(scene, views)
    settings = scene.render.image_settings
    if settings.file_format == "OPEN_EXR_MULTILAYER":
        one_file = settings.views_format == "MULTIVIEW"
        found = {}
        for f in frames:
            name = abspath(scene.render.frame_path(frame=f))
            found[f] = [(v, name if one_file else with_view_suffix(name, suffixes[v]), name,
                         suffixes[v]) for v in views]
        return found, one_file
    if setting(zd, "beauty", "NONE") not in ("SAME_FILE", "BESIDE"):
        return None
    options = ExportOptions.from_scene(scene)
    found = {f: [(v, frame_paths(options, f, view_suffix=suffixes[v])["depth"],
                  frame_paths(options, f)["depth"], suffixes[v]) for v in views]
             for f in frames}
    if not (setting(zd, "export_enabled", False)
            or any(os.path.exists(e[1]) for per in found.values() for e in per)):
        return None
    return found, False


#: ``{(path, mtime, size): True / False / None}``: what files' headers say of the camera's
#: depth of field (the panel asks on every redraw; a header is read once per file version).
_HEADER_DOF = {}


def files_had_dof(scene):
    """Whether the rendered file of the current frame (the panel's input, as Apply finds it) had
    the camera's own depth of field, by its header (``zdepthCameraDofEnabled``): True / False,
    or None when no such file or no such attribute. Reads a header only, cached."""
    from ...core.exr import read_layout
    from ...core.refocus import header_had_dof

    try:
        path = file_inputs(scene, [scene.frame_current])[scene.frame_current]
        st = os.stat(path)
    except (ZDepthError, OSError, KeyError):
        return None
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _HEADER_DOF:
        try:
            parts = read_layout(path)[0]
            known = [r for r in (header_had_dof(p.header) for p in parts) if r is not None]
            _HEADER_DOF[key] = any(known) if known else None
        except Exception:
            _HEADER_DOF[key] = None
        if len(_HEADER_DOF) > 64:
            _HEADER_DOF.pop(next(iter(_HEADER_DOF)))
    return _HEADER_DOF[key]
