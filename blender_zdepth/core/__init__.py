"""Pure Python + numpy core of blender_zdepth. Nothing here may import ``bpy``."""

from .errors import UsageError, ZDepthError

__all__ = ["UsageError", "ZDepthError"]
