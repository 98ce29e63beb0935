"""Rendering with depth: the Render Result saved and read back, the depth export of a rendered
frame and :func:`render_with_depth`, the depth-layer passes, and export on render (render
handlers and the queue of depth layers waiting for the main thread).
"""

from .export import check_renderable, export_render_result, render_with_depth
from .handlers import LAYER_QUEUE, last_errors, last_render_frame, render_queued_layers
from .peel import PassCancelled, render_passes
from .result import read_render_result, save_render_result

__all__ = ["LAYER_QUEUE", "PassCancelled", "check_renderable", "export_render_result",
           "last_errors", "last_render_frame", "read_render_result", "render_passes",
           "render_queued_layers", "render_with_depth", "save_render_result"]
