"""Depth of field after render, frame by frame: the lens of each frame, refocusing one frame or
a sequence, and the small copies the live preview refocuses.

* :mod:`.focus` -- focus keys, focus on a pixel, ``lens_for_frame`` callables;
* :mod:`.frame` -- load a frame as the engine's input, refocus it, write the result;
* :mod:`.sequence` -- :func:`refocus_sequence` (jobs, serial or in worker processes);
* :mod:`.planned` -- the plans Blender's Apply reads out of a scene (picklable, no bpy);
* :mod:`.preview` -- small copies of a frame for the live preview.
"""

from .focus import FocusKeys, lens_from_table, lens_resolver, parse_focus_keys, pixel_focus
from .frame import (CAMERA_DOF_WARNING, DOUBLE_DOF_KEY, copyable_header, dof_header,
                    header_had_dof, load_input, multilayer_channels, refocus_array, refocus_frame,
                    write_refocused)
from .planned import FramePlan, LensPlan, PlannedRefocus
from .preview import PREVIEW_PIXELS, PreviewFrame, render_preview, shrink_frame
from .sequence import refocus_sequence, with_threads

__all__ = [
    "CAMERA_DOF_WARNING", "DOUBLE_DOF_KEY", "FocusKeys", "FramePlan", "LensPlan", "PREVIEW_PIXELS", "PlannedRefocus",
    "PreviewFrame", "copyable_header", "dof_header", "header_had_dof", "lens_from_table",
    "lens_resolver", "load_input", "multilayer_channels", "parse_focus_keys", "pixel_focus",
    "refocus_array", "refocus_frame", "refocus_sequence", "render_preview", "shrink_frame",
    "with_threads", "write_refocused",
]
