"""Refocused outputs (issue 11): an output name pattern ({name}, {frame}, ####) and a
multilayer EXR that keeps every pass of the input with the refocused beauty -- on the command
line, in ``core.batch`` and from Blender's Apply (real bpy render with extra passes)."""

import os

import numpy as np
import pytest

from blender_zdepth.core import exr
from blender_zdepth.core.encodings import DepthEncoding
from blender_zdepth.core.errors import UsageError
from blender_zdepth.core.batch.names import check_output_name, output_name

LENS = ("--focus-distance", "3", "--fstop", "1.4", "--focal-length", "100", "--sensor-width", "4",
        "--max-radius", "6")


def test_output_name_fields():
    assert output_name("{name}_dof.####.exr", "/r/shot.0042.exr", 42) == "shot_dof.0042.exr"
    assert output_name("{name}_dof.####", "/r/shot.0042.exr", 42) == "shot_dof.0042.exr"
    assert output_name("{name}.{frame}.refocus", "r_7.exr", 7) == "r.0007.refocus.exr"
    assert output_name("x_##", "a.exr", 1234) == "x_1234.exr"  # wider than the padding
    assert output_name("{name}_dof.####.exr", "still.exr", None) == "still_dof.exr"
    assert output_name("f####", "s.0003.exr") == "f0003.exr"  # frame read from the name
    for bad, why in (("{name}_{take}.####.exr", "unknown field"), ("a/b.####.exr", "file name"),
                     ("{name}_dof.exr", "no frame number"), ("x.####.png", "must end in .exr"),
                     ("", "empty")):
        with pytest.raises(UsageError, match=why):
            check_output_name(bad)


def _frames(folder, n=2, h=16, w=20):
    """Single-part EXRs with RGBA, Z and two more passes (a normal and an AOV, one half)."""
    rng = np.random.default_rng(3)
    os.makedirs(folder, exist_ok=True)
    for f in range(1, n + 1):
        z = np.full((h, w), 5.0, np.float32)
        z[:, w // 2:] = 1.5
        channels = {"RGBA": rng.random((h, w, 4), dtype=np.float32),
                    "Z": z, "N.X": rng.random((h, w), dtype=np.float32),
                    "aov.V": rng.random((h, w), dtype=np.float32)}
        header = {**DepthEncoding("linear", 0.1, 100.0).to_header(), "zdepthDepthChannel": "Z",
                  "Note": "mine"}
        exr.write_exr(os.path.join(folder, f"shot.{f:04d}.exr"), channels, half={"aov.V"},
                      header=header)


def test_cli_output_name_and_multilayer(tmp_path, run_cli):
    _frames(str(tmp_path / "in"))
    pattern = str(tmp_path / "in" / "shot.####.exr")
    out = str(tmp_path / "out") + os.sep
    r = run_cli("dof", pattern, out, *LENS, "--output-name", "{name}_refocus.####.exr",
                "--multilayer")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["shot_refocus.0001.exr", "shot_refocus.0002.exr"]
    r = run_cli("dof", pattern, str(tmp_path / "flat") + os.sep, *LENS)
    assert r.returncode == 0, r.stderr
    src = exr.read_exr(str(tmp_path / "in" / "shot.0001.exr"))
    ml = exr.read_exr(os.path.join(out, "shot_refocus.0001.exr"))
    flat = exr.read_exr(str(tmp_path / "flat" / "shot.0001.exr"))
    assert set(ml.channels) == set(src.channels) == {"R", "G", "B", "A", "Z", "N.X", "aov.V"}
    for c in "RGBA":  # the beauty is the refocused one, the same as the RGBA-only output
        np.testing.assert_array_equal(ml.channels[c], flat.channels[c])
        assert not np.array_equal(ml.channels[c], src.channels[c])
    for c in ("Z", "N.X", "aov.V"):  # the other passes are kept as they were
        np.testing.assert_array_equal(ml.channels[c], src.channels[c])
    assert ml.half == {"aov.V"}
    assert ml.header["zdepthDepthChannel"] == "Z" and ml.header["Note"] == "mine"
    assert "zdepthDepthChannel" not in flat.header  # no Z there
    assert ml.header["zdepthDofFocusDistance"] == pytest.approx(3.0)
    # a pattern OUT already names the files; a pattern without frame number for a sequence
    r = run_cli("dof", pattern, str(tmp_path / "x.####.exr"), *LENS, "--output-name", "a_####")
    assert r.returncode == 2 and "--output-name needs OUT to be a folder" in r.stderr
    r = run_cli("dof", pattern, out, *LENS, "--output-name", "same.exr")
    assert r.returncode == 2 and "no frame number" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.blender
@pytest.mark.slow
def test_apply_writes_named_multilayer_output_with_every_pass(bpy, addon, tmp_path):
    from blender_zdepth.blender import scenes

    scene = scenes.empty_scene((32, 24), "CYCLES", 1)
    scenes.add_object(scene, "uv_sphere", "Ball", scenes.emission_material("Ball", (1, .5, .2)),
                      radius=1.0, location=(-0.5, 4, 0), segments=16, ring_count=8)
    scenes.add_object(scene, "cube", "Box", scenes.emission_material("Box", (.2, .4, .9)),
                      size=4.0, location=(1.5, 12, 0.3))
    cam = scenes.add_camera(scene, (0, 0, 0), (0, 5, 0), lens=50.0, clip=(0.1, 100.0))
    cam.data.dof.focus_distance, cam.data.dof.aperture_fstop = 4.0, 1.0
    layer = scene.view_layers[0]
    layer.use_pass_normal = True
    zd = scene.zdepth
    zd.dof_output_dir = str(tmp_path)
    zd.dof_max_radius = 6.0
    zd.dof_output_name = "{name}_take2.{frame}"
    zd.dof_multilayer = True
    scene.render.filepath = str(tmp_path / "beauty_")
    bpy.ops.render.render()
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT") == {"FINISHED"}
    assert os.listdir(tmp_path) == ["beauty_take2.0001.exr"]
    out = exr.read_exr(str(tmp_path / "beauty_take2.0001.exr"))
    names = set(out.channels)
    assert {"ViewLayer.Combined.R", "ViewLayer.Depth.Z", "ViewLayer.Normal.X"} <= names
    assert not {"R", "G", "B", "A"} & names  # the beauty replaced in place, not added
    rgba = np.stack([out.channels[f"ViewLayer.Combined.{c}"] for c in "RGBA"], -1)
    shown = np.empty(rgba.size, np.float32)
    bpy.data.images["Z-Depth DOF"].pixels.foreach_get(shown)
    np.testing.assert_allclose(shown.reshape(rgba.shape)[::-1], rgba, atol=1e-6)
    z = out.channels["ViewLayer.Depth.Z"]
    assert 3.0 < z.min() < 4.0 and z.max() >= 1e9  # the raw Z pass, kept
    assert out.header["zdepthDofFocusDistance"] == pytest.approx(4.0)
