"""``render --depth-layers N``: the extra passes end to end through the command line (a saved
.blend in a subprocess), the deep EXR beside an unchanged flat file, and the clear errors."""

import os

import numpy as np
import pytest
from blender_zdepth.core.frame import load_frame

pytestmark = pytest.mark.blender


def _save_shot(bpy, path):
    """A near red box in front of a far green wall (camera clip 0.1-50)."""
    from blender_zdepth.blender import scenes

    scene = scenes.empty_scene((40, 24), "CYCLES", 4)
    scenes.set_world_color(scene, (0.02, 0.02, 0.05))
    scenes.add_object(scene, "cube", "Box", scenes.emission_material("Box", (1, 0, 0)),
                      size=1.0, location=(0, 4, 0))
    scenes.add_object(scene, "plane", "Wall", scenes.emission_material("Wall", (0, 1, 0)),
                      size=6.0, location=(0, 10, 0), rotation=(1.5707963, 0, 0))
    cam = scenes.add_camera(scene, (0, 0, 0), (0, 10, 0), clip=(0.1, 50.0))
    cam.data.dof.focus_distance = 10.0
    scene.frame_start = scene.frame_end = 1
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return str(path)


@pytest.mark.slow
def test_render_with_layers_writes_a_deep_file_beside_the_unchanged_flat_one(bpy, run_cli,
                                                                              tmp_path):
    from blender_zdepth.core import deep, exr

    blend = _save_shot(bpy, tmp_path / "shot.blend")
    plain = run_cli("render", blend, "--out", tmp_path / "plain", timeout=240)
    assert plain.returncode == 0, plain.stderr
    assert os.listdir(tmp_path / "plain") == ["zdepth_0001.exr"]
    result = run_cli("render", blend, "--out", tmp_path / "layered", "--depth-layers", "3",
                     "--layer-samples", "2", timeout=240)
    assert result.returncode == 0, result.stderr
    assert "with 3 depth layers: 2 extra pass(es) per frame of 2 samples" in result.stdout
    assert "and 1 deep EXR(s)" in result.stdout
    assert "zdepth_0001_deep.exr  (clip distances " in result.stdout
    assert sorted(os.listdir(tmp_path / "layered")) == ["zdepth_0001.exr",
                                                        "zdepth_0001_deep.exr"]
    flat = load_frame(str(tmp_path / "layered" / "zdepth_0001.exr"))
    before = load_frame(str(tmp_path / "plain" / "zdepth_0001.exr"))
    # the flat file is today's: same beauty and depth as without layers
    np.testing.assert_array_equal(flat.rgba, before.rgba)
    np.testing.assert_array_equal(flat.depth, before.depth)
    image = exr.read_deep(str(tmp_path / "layered" / "zdepth_0001_deep.exr"))
    assert image.header[deep.LAYERS_KEY] == 3
    assert image.header["zdepthCameraFocusDistance"] == pytest.approx(10.0)
    # flattening the deep samples front to back gives the flat beauty
    rgba, depth = deep.flatten(image)
    np.testing.assert_allclose(rgba, flat.rgba, atol=1e-6)
    # behind the box (automatic clips: just behind it) the file holds the green wall at 10 m
    box = np.abs(flat.depth - 3.5) < 0.6
    assert box.sum() > 10
    assert (image.counts[box] == 2).all()
    assert (image.counts[~box] == 1).all()
    off = np.concatenate([[0], np.cumsum(image.counts.ravel())])
    second = off[:-1][box.ravel()] + 1
    assert np.allclose(image.channels["Z"][second], 10.0, atol=0.05)
    assert (image.channels["G"][second] > 0.5).all()


def test_render_layer_options_are_refused_before_rendering(bpy, run_cli, tmp_path):
    blend = _save_shot(bpy, tmp_path / "shot.blend")
    out = tmp_path / "o"
    cases = [
        (("--depth-layers", "9"), "--depth-layers must be between 1 and 8, not 9"),
        (("--depth-layers", "0"), "--depth-layers must be between 1 and 8, not 0"),
        (("--layer-clips", "60"), "clip distance 60 is beyond the camera's clip end 50"),
        (("--depth-layers", "3", "--layer-clips", "5"), "3 depth layers need 2 clip distance"),
        (("--layer-clips", "5,x"), "--layer-clips must be distances separated by commas"),
        (("--layer-samples", "-1"), "--layer-samples must be 0 (automatic) or more"),
        (("--depth-layers", "1", "--layer-clips", "5"), "--layer-clips needs more than one"),
    ]
    for args, message in cases:
        result = run_cli("render", blend, "--out", out, *args, timeout=240)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert "rendering" not in result.stdout
    assert not out.exists() or not os.listdir(out)


@pytest.mark.slow
def test_render_uses_the_files_own_depth_layer_settings(addon, run_cli, tmp_path):
    import bpy

    from blender_zdepth.core import deep, exr

    blend = _save_shot(bpy, tmp_path / "shot.blend")
    scene = bpy.context.scene
    scene.zdepth.depth_layers = 2
    scene.zdepth.depth_layer_clips = "6"
    scene.zdepth.depth_layer_samples = 1
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    result = run_cli("render", blend, "--out", tmp_path / "out", timeout=240)
    assert result.returncode == 0, result.stderr
    assert "2 depth layers: 1 extra pass(es) per frame of 1 samples, clip at 6" in result.stdout
    image = exr.read_deep(str(tmp_path / "out" / "zdepth_0001_deep.exr"))
    assert image.header[deep.LAYERS_KEY] == 2 and (image.counts == 2).sum() > 10
