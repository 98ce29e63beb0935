"""The scene, read: ``scene.zdepth`` and the scene camera turned into plain values -- export
and depth-layer options, the encoding's range, the lens and aperture of a refocused frame --
and the scene's views, paths and depth passes. Nothing here renders, writes a depth file or
registers anything.
"""

from .camera import camera_info, check_camera, focus_distance, planar_distance, scene_depth_range
from .optics import camera_had_dof, engine_settings, lens_plan
from .options import ExportOptions, LayerOptions, dof_settings, resolve_range
from .passes import rendering_view_layers, setup_passes
from .paths import frame_paths
from .views import rendered_views

__all__ = ["ExportOptions", "LayerOptions", "camera_had_dof", "camera_info", "check_camera",
           "dof_settings", "engine_settings", "focus_distance", "frame_paths", "lens_plan",
           "planar_distance", "rendered_views", "rendering_view_layers", "resolve_range",
           "scene_depth_range", "setup_passes"]
