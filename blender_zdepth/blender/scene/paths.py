"""Where files are: ``//`` paths made absolute, the scene's render output folder, and the
names of the depth export's files (:func:`frame_paths`), with the check that a folder can be
written.
"""

import os
import re
import tempfile

import bpy

from ...core.errors import UsageError, ZDepthError


def abspath(path):
    """Absolute path; ``//`` is the .blend's folder, or the system's temporary folder while the
    file is unsaved (as the depth export does)."""
    if not path:
        return ""
    if path.startswith("//") and not bpy.data.filepath:
        path = os.path.join(tempfile.gettempdir(), path[2:])
    return os.path.normpath(bpy.path.abspath(path))


def render_output_folder(scene):
    """The folder of the scene's render output path (Output Properties > Output): the path
    itself when it ends with a separator (Blender's default ``/tmp/``), else its folder; ''
    when the path is empty."""
    path = scene.render.filepath
    if not path:
        return ""
    full = abspath(path)
    return full if path.endswith(("/", "\\")) else os.path.dirname(full)


def frame_file_name(pattern, frame, *, suffix=".exr"):
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


def export_folder(options):
    """Absolute folder of the depth export (``options.output_dir``, an
    :class:`~.options.ExportOptions`) (``//`` = next to the .blend; the system's temporary folder's
    ``zdepth`` when the file is unsaved)."""
    path = options.output_dir or "//zdepth/"
    if path.startswith("//") and not bpy.data.filepath:
        path = os.path.join(tempfile.gettempdir(), path[2:] or "zdepth")
    return os.path.normpath(bpy.path.abspath(path))


def frame_paths(options, frame, *, view_suffix=""):
    """``{"depth": path, "beauty": path or None, "preview": path or None, "deep": path}`` for
    ``frame`` (the deep file is written only with depth layers). ``view_suffix``: a stereo /
    multi-view render's view suffix (see :func:`.views.view_suffixes`), put before ``.exr``."""
    folder = export_folder(options)
    depth = os.path.join(folder, frame_file_name(options.name_pattern, frame,
                                                 suffix=view_suffix + ".exr"))
    stem = depth[:-4]
    return {
        "depth": depth,
        "beauty": stem + "_beauty.exr" if options.beauty == "BESIDE" else None,
        "preview": stem + "_preview.png" if options.write_preview else None,
        "deep": stem + "_deep.exr",  # written only with depth layers
    }


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
