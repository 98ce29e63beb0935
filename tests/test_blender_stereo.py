"""Blender's own stereo renders (Stereoscopy on, a multi-view EXR): read and refocus per view.

The scene: an emissive plane at 5 m covering the left part of the frame, seen by a stereo
camera with a wide interocular distance, so its right edge lies at another column in each eye.
"""

import math
import os

import numpy as np
import pytest

from blender_zdepth.core.frame import load_frame

pytestmark = [pytest.mark.blender, pytest.mark.slow]


def _stereo_render(bpy, tmp_path):
    from blender_zdepth.blender import compat, scenes

    scene = scenes.empty_scene((48, 24), "CYCLES", 1)
    mat = scenes.emission_material("Wall", (0.8, 0.4, 0.2))
    scenes.add_object(scene, "plane", "Wall", mat, size=4.0, location=(-1.6, 5.0, 0.0),
                      rotation=(math.pi / 2, 0.0, 0.0))
    cam = scenes.add_camera(scene, (0.0, 0.0, 0.0), (0.0, 10.0, 0.0), lens=50.0,
                            clip=(0.1, 100.0))
    cam.data.stereo.interocular_distance = 0.6
    scene.render.use_multiview = True
    scene.render.views_format = "STEREO_3D"
    compat.set_multilayer_exr(scene.render.image_settings)
    scene.render.image_settings.views_format = "MULTIVIEW"  # all views in one EXR
    path = str(tmp_path / "stereo.exr")
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    assert os.path.exists(path)
    return path


def test_blender_stereo_render_is_read_and_refocused_per_view(bpy, tmp_path, run_cli):
    path = _stereo_render(bpy, tmp_path)
    left = load_frame(path)
    assert left.views == ["left", "right"] and left.view == "left"
    right = load_frame(path, view="right")
    masks = {}
    rows = left.depth.shape[0]
    for name, f in (("left", left), ("right", right)):
        covered = np.isfinite(f.depth)
        # beauty and depth of one view are registered: the orange wall is where its depth is
        # (up to one anti-aliased edge pixel per row: depth is one sample, colour is not)
        wall = f.rgba[..., 0] - f.rgba[..., 2] > 0.3
        assert np.count_nonzero(covered != wall) <= rows, name
        assert np.allclose(f.depth[covered], 5.0, rtol=1e-4)
        masks[name] = covered
    # the other eye's depth under this eye's beauty would be off by many pixels per row
    wall_left = left.rgba[..., 0] - left.rgba[..., 2] > 0.3
    assert np.count_nonzero(masks["right"] != wall_left) > 2 * rows
    r = run_cli("inspect", path, "--view", "right")
    assert r.returncode == 0 and "showing view right" in r.stdout
    for view in ("left", "right"):
        out = tmp_path / f"dof_{view}.exr"
        r = run_cli("dof", path, out, "--view", view, "--focus-distance", "5", "--fstop", "1",
                    "--focal-length", "50")
        assert r.returncode == 0, r.stderr
        refocused = load_frame(out, need_depth=False)
        # in focus at 5 m: the wall stays where that view's own depth has it
        wall = refocused.rgba[..., 0] - refocused.rgba[..., 2] > 0.3
        assert np.count_nonzero(wall != masks[view]) <= rows, view
    r = run_cli("encode", path, tmp_path / "e.exr", "--view", "centre")
    assert r.returncode == 2 and "its views: left, right" in r.stderr
