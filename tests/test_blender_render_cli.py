"""``python -m blender_zdepth render SCENE.blend --out DIR ...``: a saved .blend rendered headless
in a subprocess (tiny Cycles frames), and its clear errors."""

import glob
import os

import numpy as np
import pytest
from blender_zdepth.core.frame import load_frame

pytestmark = pytest.mark.blender


def _save_scene(bpy, path, camera="PERSP", frames=(1, 3), with_camera=True):
    from blender_zdepth.blender import scenes

    scene = scenes.empty_scene((24, 16), "CYCLES", 1)
    scenes.add_object(scene, "uv_sphere", "Ball", scenes.emission_material("Ball", (1, .6, .2)),
                      radius=1.0, location=(0, 5, 0), segments=12, ring_count=6)
    if with_camera:
        cam = scenes.add_camera(scene, (0, 0, 0), (0, 5, 0), clip=(0.1, 50.0))
        cam.data.type = camera
        dof = cam.data.dof
        for frame, value in ((frames[0], 3.0), (frames[1], 7.0)):
            dof.focus_distance = value
            dof.keyframe_insert("focus_distance", frame=frame)
    scene.frame_start, scene.frame_end = frames
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return str(path)


@pytest.fixture
def blend(bpy, tmp_path):
    return _save_scene(bpy, tmp_path / "shot.blend")


@pytest.mark.slow
def test_render_command_writes_one_file_per_frame(blend, run_cli, tmp_path):

    out = tmp_path / "out"
    result = run_cli("render", blend, "--out", out, "--frames", "2-3", "--engine", "cycles",
                     "--samples", "1", "--encoding", "inverse", "--resolution-percentage", "50",
                     "--codec", "rle", timeout=240)
    assert result.returncode == 0, result.stderr
    files = sorted(glob.glob(str(out / "*.exr")))
    assert [os.path.basename(f) for f in files] == ["zdepth_0002.exr", "zdepth_0003.exr"]
    assert "wrote 2 depth EXR(s)" in result.stdout
    for path, focus in zip(files, (5.0, 7.0)):
        frame = load_frame(path)
        assert frame.depth.shape == (8, 12)  # 24x16 at 50 %
        assert frame.encoding.name == "inverse"
        assert "RLE" in str(frame.header["compression"]).upper()
        assert frame.header["zdepthCameraFocusDistance"] == pytest.approx(focus)
        surface = np.isfinite(frame.depth)
        assert surface.any() and (~surface).any()
        assert 3.9 < frame.depth[surface].min() < 5.0
        assert frame.rgba is not None


def test_render_command_errors(bpy, run_cli, tmp_path):
    blend = _save_scene(bpy, tmp_path / "ok.blend")
    no_cam = _save_scene(bpy, tmp_path / "nocam.blend", with_camera=False)
    pano = _save_scene(bpy, tmp_path / "pano.blend", camera="PANO")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cases = [
        (("render", tmp_path / "missing.blend", "--out", tmp_path / "o"), 1, "no such file"),
        (("render", no_cam, "--out", tmp_path / "o"), 1, "no camera"),
        (("render", pano, "--out", tmp_path / "o"), 1, "panoramic"),
        (("render", blend, "--out", blocker / "sub"), 1, "cannot write the output"),
        (("render", blend, "--out", tmp_path / "o", "--frames", "2-9"), 2,
         "outside the scene's frame range 1-3"),
        (("render", blend, "--out", tmp_path / "o", "--frames", "x"), 2, "--frames must look"),
    ]
    for args, code, message in cases:
        result = run_cli(*args, timeout=240)
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")
