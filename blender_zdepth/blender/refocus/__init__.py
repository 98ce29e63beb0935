"""Refocusing inside Blender: the Apply batch (:class:`DofBatch`), the live preview
(:data:`LIVE`) and the "Z-Depth DOF" image they show their result in.
"""

from .batch import DofBatch
from .display import IMAGE_NAME, show_image
from .inputs import file_inputs, panel_frames
from .live import LIVE

__all__ = ["DofBatch", "IMAGE_NAME", "LIVE", "file_inputs", "panel_frames", "show_image"]
