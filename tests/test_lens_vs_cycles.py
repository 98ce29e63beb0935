"""The blur size against Cycles' own depth of field, measured on its renders (not against the
lens module's inverse, where a wrong constant would cancel out).

A tiny emissive sphere on a black world, out of focus, rendered by Cycles with the camera's
depth of field (round aperture, a near-zero pixel filter) spreads into a uniform disk.  For a
uniform disk of radius R the intensity-weighted mean of r^2 about its centre is R^2 / 2, so the
render's second moment measures the bokeh radius without any threshold; it is compared with
:func:`blender_zdepth.core.lens.coc_radius_px` for the sphere's planar depth.
"""

import math
import os
import tempfile

import numpy as np
import pytest

from blender_zdepth.core.frame import load_frame
from blender_zdepth.core.lens import Lens, coc_radius_px

pytestmark = [pytest.mark.blender, pytest.mark.slow]

SIZE = (96, 64)  # wide frame: the sensor fit matters
SPHERE_PX = 1.5


def _mm_per_px(fit):
    """Sensor millimetres per pixel of the SIZE frame (width fits unless VERTICAL)."""
    return 24.0 / SIZE[1] if fit == "VERTICAL" else 36.0 / SIZE[0]


def _render_point(bpy, *, depth, lens_mm, fstop, focus, sensor_fit="AUTO", x_offset=0.0):
    """Render a point light source (tiny emissive sphere) at planar ``depth`` with Cycles' DOF;
    returns the luminance image (H, W) float64."""
    from blender_zdepth.blender import compat, scenes

    scene = scenes.empty_scene(SIZE, "CYCLES", 512)
    scene.cycles.max_bounces = 0
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.filter_width = 0.01  # no pixel filter: the disk alone
    scene.cycles.seed = 3
    scenes.set_world_color(scene, (0.0, 0.0, 0.0))
    cam = scenes.add_camera(scene, (0.0, 0.0, 0.0), (0.0, 10.0, 0.0), lens=lens_mm,
                            sensor_width=36.0, clip=(0.01, 1000.0))
    cam.data.sensor_height = 24.0
    cam.data.sensor_fit = sensor_fit
    cam.data.dof.use_dof = True
    cam.data.dof.focus_distance = focus
    cam.data.dof.aperture_fstop = fstop
    cam.data.dof.aperture_blades = 0
    light = scenes.emission_material("Point", (1.0, 1.0, 1.0), 50.0)
    # SPHERE_PX pixels in radius in the pinhole image: big enough that the lens samples of a
    # pixel find it often (a smaller one only adds noise), small against the bokeh disk
    radius = SPHERE_PX * depth * _mm_per_px(sensor_fit) / lens_mm
    scenes.add_object(scene, "uv_sphere", "Point", light, radius=radius,
                      location=(x_offset, depth, 0.0), segments=16, ring_count=8)
    compat.set_multilayer_exr(scene.render.image_settings, "32", "ZIP")
    with tempfile.TemporaryDirectory() as tmp:
        scene.render.filepath = os.path.join(tmp, "point.exr")
        scene.render.use_file_extension = False
        assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
        frame = load_frame(scene.render.filepath, need_depth=False)
    rgb = np.asarray(frame.rgba[..., :3], np.float64)
    return rgb.mean(axis=-1)


def _disk_radius(img):
    """Radius (px) of the uniform disk ``img`` holds, from its intensity-weighted second moment
    (R^2 = 2 E[r^2]); the disk's centre is the weighted mean."""
    h, w = img.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    total = img.sum()
    cy, cx = (img * y).sum() / total, (img * x).sum() / total
    r2 = ((y - cy) ** 2 + (x - cx) ** 2)
    return math.sqrt(2.0 * (img * r2).sum() / total)


@pytest.mark.parametrize("depth, lens_mm, fstop, focus, fit", [
    (8.0, 200.0, 1.4, 2.0, "AUTO"),       # behind the focal plane (~16 px)
    (1.6, 135.0, 1.0, 4.0, "AUTO"),       # in front of it (~9 px)
    (20.0, 150.0, 1.2, 3.0, "VERTICAL"),  # the sensor height sizes the frame (~7 px)
])
def test_bokeh_radius_matches_cycles(bpy, depth, lens_mm, fstop, focus, fit):
    img = _render_point(bpy, depth=depth, lens_mm=lens_mm, fstop=fstop, focus=focus,
                        sensor_fit=fit)
    # the sphere's own image (a disk of SPHERE_PX) widens the bokeh: R_seen^2 = R^2 + r_s^2
    measured = math.sqrt(_disk_radius(img) ** 2 - SPHERE_PX ** 2)
    lens = Lens(focal_length_mm=lens_mm, fstop=fstop, focus_distance=focus,
                sensor_width_mm=36.0, sensor_height_mm=24.0, sensor_fit=fit)
    ours = abs(float(coc_radius_px(np.array([depth], np.float32), lens, SIZE[0], SIZE[1])[0]))
    assert 5.0 < ours < 25.0  # a disk well inside the frame, big against a pixel
    # Measured here within 0.4 % on bpy 5.0 and 5.3; a constant off by 2 % fails.
    assert measured == pytest.approx(ours, rel=0.015), (measured, ours)
