"""Export on render with Stereoscopy on: one depth file per view (``<name>_L.exr`` and
``<name>_R.exr``), each equal to that view of Blender's own multi-view EXR of the same render,
with that eye's beauty and camera, and refocused by ``dof``; depth layers are refused.

The scene: an emissive plane at 5 m covering the left part of the frame, a stereo camera with
parallel eyes 0.6 m apart (centre pivot), so the plane's right edge lies at another column in
each eye, where each eye's recorded ``worldToCamera`` projects it.
"""

import math
import os

import numpy as np
import pytest

from blender_zdepth.core import exr
from blender_zdepth.core.frame import load_frame

pytestmark = [pytest.mark.blender, pytest.mark.slow]

EDGE = (0.4, 5.0, 0.0)  # the wall's right edge (world), at mid-height
SIZE = (48, 24)
LENS, SENSOR = 50.0, 36.0


def _stereo_scene(bpy):
    from blender_zdepth.blender import scenes

    scene = scenes.empty_scene(SIZE, "CYCLES", 1)
    mat = scenes.emission_material("Wall", (0.8, 0.4, 0.2))
    scenes.add_object(scene, "plane", "Wall", mat, size=4.0, location=(-1.6, 5.0, 0.0),
                      rotation=(math.pi / 2, 0.0, 0.0))
    cam = scenes.add_camera(scene, (0.0, 0.0, 0.0), (0.0, 10.0, 0.0), lens=LENS,
                            sensor_width=SENSOR, clip=(0.1, 100.0))
    st = cam.data.stereo
    st.interocular_distance = 0.6
    st.convergence_mode = "PARALLEL"  # no off-axis shift: the matrix alone places the edge
    st.pivot = "CENTER"
    scene.render.use_multiview = True
    scene.render.views_format = "STEREO_3D"
    return scene


def _edge_column(world_to_camera):
    """Column (from the left) where a pinhole camera with this matrix sees ``EDGE``."""
    p = np.array([*EDGE, 1.0]) @ np.asarray(world_to_camera, dtype=np.float64)
    x_cam, depth = p[0], -p[2]
    return SIZE[0] / 2 + x_cam / depth * LENS / SENSOR * SIZE[0]


def _wall(rgba):
    return rgba[..., 0] - rgba[..., 2] > 0.3


def test_stereo_render_exports_one_registered_file_per_eye(bpy, addon, tmp_path, run_cli):
    from blender_zdepth.blender import compat
    from blender_zdepth.blender.render import handlers as render_handlers

    scene = _stereo_scene(bpy)
    settings = scene.render.image_settings
    compat.set_multilayer_exr(settings)
    settings.views_format = "MULTIVIEW"  # Blender's own file: every view in one EXR
    blender_file = str(tmp_path / "stereo.exr")
    scene.render.filepath = blender_file
    zd = scene.zdepth
    zd.output_dir = str(tmp_path / "depth")
    zd.export_enabled = True
    bpy.ops.render.render(write_still=True)  # the render_post handler exports
    assert render_handlers.last_errors() == []
    assert sorted(os.listdir(tmp_path / "depth")) == ["zdepth_0001_L.exr", "zdepth_0001_R.exr"]
    assert settings.views_format == "MULTIVIEW"  # the user's output settings are restored
    rows = SIZE[1]
    eyes = {}
    for view, suffix in (("left", "_L"), ("right", "_R")):
        ours = load_frame(tmp_path / "depth" / f"zdepth_0001{suffix}.exr")
        theirs = load_frame(blender_file, view=view)
        assert ours.header["zdepthView"] == view
        covered = np.isfinite(theirs.depth)
        assert covered.any() and (~covered).any()
        assert np.array_equal(np.isfinite(ours.depth), covered), view
        np.testing.assert_allclose(ours.depth[covered], theirs.depth[covered], rtol=1e-5)
        np.testing.assert_array_equal(ours.rgba, theirs.rgba)  # that eye's own beauty
        assert np.count_nonzero(_wall(ours.rgba) != covered) <= rows, view
        # the eye's camera: the wall's edge is where the recorded matrix projects it
        mid = covered[rows // 2]
        edge = np.flatnonzero(mid).max() + 1
        assert abs(_edge_column(ours.camera.world_to_camera) - edge) <= 1.0, view
        eyes[view] = ours
    # the eyes sit 0.6 m apart along the camera's X axis, one on each side of it
    left_pos = np.linalg.inv(eyes["left"].camera.world_to_camera)[3, :3]
    right_pos = np.linalg.inv(eyes["right"].camera.world_to_camera)[3, :3]
    np.testing.assert_allclose(left_pos, (-0.3, 0.0, 0.0), atol=1e-5)
    np.testing.assert_allclose(right_pos, (0.3, 0.0, 0.0), atol=1e-5)
    assert not np.array_equal(np.isfinite(eyes["left"].depth), np.isfinite(eyes["right"].depth))

    # dof refocuses each file, and our right eye matches Blender's own file's right view
    for view, suffix in (("left", "_L"), ("right", "_R")):
        src = tmp_path / "depth" / f"zdepth_0001{suffix}.exr"
        out = tmp_path / f"dof{suffix}.exr"
        r = run_cli("dof", src, out, "--focus-distance", "5", "--fstop", "1")
        assert r.returncode == 0, r.stderr
        refocused = load_frame(out, need_depth=False)
        wall = _wall(refocused.rgba)
        assert np.count_nonzero(wall != np.isfinite(eyes[view].depth)) <= rows, view
    theirs_out = tmp_path / "dof_blender_R.exr"
    r = run_cli("dof", blender_file, theirs_out, "--view", "right", "--focus-distance", "5",
                "--fstop", "1", "--focal-length", str(LENS))
    assert r.returncode == 0, r.stderr
    a = load_frame(tmp_path / "dof_R.exr", need_depth=False).rgba
    b = load_frame(theirs_out, need_depth=False).rgba
    assert np.abs(a - b).max() < 1e-3


def test_stereo_export_names_beside_files_and_refuses_depth_layers(bpy, tmp_path, run_cli):
    from blender_zdepth.blender.render import export
    from blender_zdepth.core.errors import UsageError

    scene = _stereo_scene(bpy)
    written = export.render_with_depth(scene, str(tmp_path / "a"), name_pattern="shot_###",
                                       beauty="BESIDE", write_preview=True, with_paths=True)
    assert [p["view"] for p in written] == ["left", "right"]
    assert sorted(os.listdir(tmp_path / "a")) == [
        "shot_001_L.exr", "shot_001_L_beauty.exr", "shot_001_L_preview.png",
        "shot_001_R.exr", "shot_001_R_beauty.exr", "shot_001_R_preview.png"]
    left = load_frame(tmp_path / "a" / "shot_001_L.exr")
    beauty = exr.read_exr(tmp_path / "a" / "shot_001_L_beauty.exr")
    wall = beauty.channels["R"] - beauty.channels["B"] > 0.3
    assert np.count_nonzero(wall != np.isfinite(left.depth)) <= SIZE[1]
    with pytest.raises(UsageError, match="depth layers are not rendered for a stereo"):
        export.render_with_depth(scene, str(tmp_path / "b"), depth_layers=2)
    assert not os.path.exists(tmp_path / "b")  # refused before anything rendered
    # the render command: both eyes per frame, and depth layers refused in one line (exit 2)
    blend = str(tmp_path / "stereo.blend")
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    r = run_cli("render", blend, "--out", tmp_path / "c", "--frames", "1", "--samples", "1", timeout=240)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "c")) == ["zdepth_0001_L.exr", "zdepth_0001_R.exr"]
    assert "wrote 2 depth EXR(s)" in r.stdout
    r = run_cli("render", blend, "--out", tmp_path / "d", "--depth-layers", "2", timeout=240)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Stereoscopy" in r.stderr
    assert not os.path.isdir(tmp_path / "d") or not os.listdir(tmp_path / "d")


@pytest.mark.parametrize("mode,pivot", [("TOE", "CENTER"), ("TOE", "LEFT"),
                                        ("PARALLEL", "RIGHT")])
def test_each_eye_matrix_follows_blenders_stereo_camera(bpy, tmp_path, mode, pivot):
    """Toe-in turns the eyes (no off-axis shift either): the recorded matrix still projects the
    wall's edge to where that eye's render has it; the pivot eye is the camera itself."""
    from blender_zdepth.blender.render import export

    scene = _stereo_scene(bpy)
    st = scene.camera.data.stereo
    st.convergence_mode, st.pivot = mode, pivot
    st.convergence_distance = 3.0
    written = export.render_with_depth(scene, str(tmp_path), with_paths=True)
    assert [p["view"] for p in written] == ["left", "right"]
    cams = {}
    for paths in written:
        f = load_frame(paths["depth"])
        mid = np.isfinite(f.depth)[SIZE[1] // 2]
        edge = np.flatnonzero(mid).max() + 1
        assert abs(_edge_column(f.camera.world_to_camera) - edge) <= 1.0, paths["view"]
        cams[paths["view"]] = f.camera.world_to_camera
    if pivot != "CENTER":
        identity = np.eye(4)
        np.testing.assert_allclose(np.asarray(cams[pivot.lower()]) @ np.linalg.inv(
            np.asarray(scene.camera.matrix_world.inverted().transposed())), identity,
            atol=1e-5)
    assert not np.allclose(cams["left"], cams["right"])


def test_multi_view_setup_uses_each_views_camera(bpy, tmp_path):
    """Multi-View: the right view renders with the camera named with its suffix (Cam_R); its
    file records that camera."""
    from blender_zdepth.blender import scenes
    from blender_zdepth.blender.render import export

    scene = _stereo_scene(bpy)
    scene.render.views_format = "MULTIVIEW"
    left = scene.camera
    left.name = "Cam_L"
    right = scenes.add_camera(scene, (0.8, 0.0, 0.0), (0.8, 10.0, 0.0), lens=LENS,
                              sensor_width=SENSOR, clip=(0.1, 100.0))
    right.name = "Cam_R"
    scene.camera = left
    written = export.render_with_depth(scene, str(tmp_path), with_paths=True)
    assert [os.path.basename(p["depth"]) for p in written] == ["zdepth_0001_L.exr",
                                                               "zdepth_0001_R.exr"]
    for paths, cam in zip(written, (left, right)):
        f = load_frame(paths["depth"])
        assert f.header["zdepthCameraName"] == cam.name
        np.testing.assert_allclose(
            f.camera.world_to_camera, np.asarray(cam.matrix_world.inverted().transposed()),
            atol=1e-5)
        mid = np.isfinite(f.depth)[SIZE[1] // 2]
        assert abs(_edge_column(f.camera.world_to_camera) - (np.flatnonzero(mid).max() + 1)) \
            <= 1.0, cam.name


# -- Apply Depth of Field on stereo renders: each view refocused, as `dof --view` does -------------

DOF_ARGS = ("--focus-distance", "5", "--fstop", "1", "--focal-length", str(LENS),
            "--sensor-width", str(SENSOR), "--max-radius", "12")


@pytest.fixture
def registered(bpy):
    import blender_zdepth

    blender_zdepth.register()
    yield bpy
    blender_zdepth.unregister()


def _dof_scene(bpy, tmp_path):
    scene = _stereo_scene(bpy)
    dof = scene.camera.data.dof
    dof.use_dof, dof.focus_distance, dof.aperture_fstop = False, 5.0, 1.0
    scene.zdepth.dof_output_dir = str(tmp_path / "dof")
    scene.zdepth.dof_max_radius = 12.0
    return scene


def _rgba(path):
    img = exr.read_exr(str(path))
    return np.stack([img.channels[c] for c in "RGBA"], axis=-1)


def _shown(bpy):
    image = bpy.data.images["Z-Depth DOF"]
    w, h = image.size
    pixels = np.empty(w * h * 4, np.float32)
    image.pixels.foreach_get(pixels)
    return pixels.reshape(h, w, 4)[::-1]


def test_apply_on_a_stereo_render_result_refocuses_each_view(registered, tmp_path, run_cli):
    from blender_zdepth.blender.refocus.inputs import render_result_input

    bpy = registered
    scene = _dof_scene(bpy, tmp_path)
    scene.render.filepath = str(tmp_path / "shot_")
    bpy.ops.render.render()
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT") == {"FINISHED"}
    assert sorted(os.listdir(tmp_path / "dof")) == ["shot_dof.0001_L.exr",
                                                    "shot_dof.0001_R.exr"]
    saved = str(tmp_path / "check.exr")  # the same multi-view EXR the operator reads
    render_result_input(scene, saved)
    results = {}
    for view, suffix in (("left", "_L"), ("right", "_R")):
        ours = _rgba(tmp_path / "dof" / f"shot_dof.0001{suffix}.exr")
        cli_out = tmp_path / f"cli{suffix}.exr"
        r = run_cli("dof", saved, cli_out, "--view", view, *DOF_ARGS)
        assert r.returncode == 0, r.stderr
        np.testing.assert_allclose(ours, _rgba(cli_out), atol=1e-5, err_msg=view)
        src = load_frame(saved, view=view)
        assert np.count_nonzero(_wall(ours) != np.isfinite(src.depth)) <= SIZE[1], view
        results[view] = ours
    assert not np.allclose(results["left"], results["right"])  # each eye its own view
    np.testing.assert_allclose(_shown(bpy), results["left"], atol=1e-5)  # the first view shown
    # the focal-plane view shows the first view too, and writes nothing
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT", diagnostic=True) == {"FINISHED"}
    assert len(os.listdir(tmp_path / "dof")) == 2


def test_apply_on_files_after_a_stereo_export_refocuses_each_view(registered, tmp_path,
                                                                   run_cli):
    bpy = registered
    scene = _dof_scene(bpy, tmp_path)
    zd = scene.zdepth
    zd.export_enabled, zd.beauty = True, "SAME_FILE"
    zd.output_dir = str(tmp_path / "zd")
    zd.dof_output_dir = ""  # beside the exports
    scene.frame_start = scene.frame_end = 1
    scene.render.filepath = str(tmp_path / "png_####")  # PNG: no depth there
    bpy.ops.render.render(animation=True)
    assert sorted(os.listdir(tmp_path / "zd")) == ["zdepth_0001_L.exr", "zdepth_0001_R.exr"]
    assert bpy.ops.zdepth.apply_dof(source="FILES") == {"FINISHED"}
    assert sorted(os.listdir(tmp_path / "zd")) == [
        "zdepth_0001_L.exr", "zdepth_0001_R.exr", "zdepth_dof_0001_L.exr",
        "zdepth_dof_0001_R.exr"]
    for suffix in ("_L", "_R"):
        cli_out = tmp_path / f"cli{suffix}.exr"
        r = run_cli("dof", tmp_path / "zd" / f"zdepth_0001{suffix}.exr", cli_out, *DOF_ARGS)
        assert r.returncode == 0, r.stderr
        ours = _rgba(tmp_path / "zd" / f"zdepth_dof_0001{suffix}.exr")
        np.testing.assert_allclose(ours, _rgba(cli_out), atol=1e-5, err_msg=suffix)
    np.testing.assert_allclose(_shown(bpy), _rgba(tmp_path / "zd" / "zdepth_dof_0001_L.exr"),
                               atol=1e-5)
    # in the background, both views at once in worker processes: the same files
    from blender_zdepth.blender.refocus.batch import DofBatch

    before = {s: _rgba(tmp_path / "zd" / f"zdepth_dof_0001{s}.exr") for s in ("_L", "_R")}
    bpy.data.images.remove(bpy.data.images["Z-Depth DOF"])
    batch = DofBatch(scene, "FILES")
    batch.start(workers=2)
    report = batch.finish()
    assert batch.parallel is not None and not report.failed
    for suffix, rgba in before.items():
        np.testing.assert_allclose(_rgba(tmp_path / "zd" / f"zdepth_dof_0001{suffix}.exr"),
                                   rgba, atol=1e-6, err_msg=suffix)
    np.testing.assert_allclose(_shown(bpy), before["_L"], atol=1e-5)  # still the first view


@pytest.mark.parametrize("views_format", ["MULTIVIEW", "INDIVIDUAL"])
def test_apply_on_the_scenes_own_stereo_exrs_refocuses_each_view(registered, tmp_path, run_cli,
                                                                   views_format):
    """The scene renders OpenEXR MultiLayer: one multi-view EXR per frame (each view read from
    it), or Blender's own ``<name>_L.exr`` / ``<name>_R.exr``."""
    from blender_zdepth.blender import compat

    bpy = registered
    scene = _dof_scene(bpy, tmp_path)
    settings = scene.render.image_settings
    compat.set_multilayer_exr(settings)
    settings.views_format = views_format
    scene.frame_start = scene.frame_end = 1
    scene.render.filepath = str(tmp_path / "ml_####")
    bpy.ops.render.render(animation=True)
    assert bpy.ops.zdepth.apply_dof(source="FILES") == {"FINISHED"}
    assert sorted(os.listdir(tmp_path / "dof")) == ["ml_dof_0001_L.exr", "ml_dof_0001_R.exr"]
    for view, suffix in (("left", "_L"), ("right", "_R")):
        if views_format == "MULTIVIEW":
            src, extra = tmp_path / "ml_0001.exr", ("--view", view)
        else:
            src, extra = tmp_path / f"ml_0001{suffix}.exr", ()
        cli_out = tmp_path / f"cli{suffix}.exr"
        r = run_cli("dof", src, cli_out, *extra, *DOF_ARGS)
        assert r.returncode == 0, r.stderr
        np.testing.assert_allclose(_rgba(tmp_path / "dof" / f"ml_dof_0001{suffix}.exr"),
                                   _rgba(cli_out), atol=1e-5, err_msg=view)


def test_apply_uses_each_views_camera_lens_in_a_multi_view_setup(registered, tmp_path, run_cli):
    """Multi-View: the right view renders with Cam_R (a 35 mm lens); its result is refocused
    with that lens, the focus distance and f-stop staying the scene camera's."""
    from blender_zdepth.blender import scenes
    from blender_zdepth.blender.refocus.inputs import render_result_input

    bpy = registered
    scene = _dof_scene(bpy, tmp_path)
    scene.render.views_format = "MULTIVIEW"
    left = scene.camera
    left.name = "Cam_L"
    right = scenes.add_camera(scene, (0.8, 0.0, 0.0), (0.8, 10.0, 0.0), lens=35.0,
                              sensor_width=SENSOR, clip=(0.1, 100.0))
    right.name = "Cam_R"
    right.data.dof.focus_distance, right.data.dof.aperture_fstop = 2.0, 8.0  # not used
    scene.camera = left
    scene.render.filepath = str(tmp_path / "mv_")
    bpy.ops.render.render()
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT") == {"FINISHED"}
    saved = str(tmp_path / "check.exr")
    render_result_input(scene, saved)
    for view, suffix, lens in (("left", "_L", LENS), ("right", "_R", 35.0)):
        out = tmp_path / "dof" / f"mv_dof.0001{suffix}.exr"
        header = exr.read_exr(str(out)).header
        assert header["zdepthDofFocalLength"] == pytest.approx(lens), view
        assert header["zdepthDofFocusDistance"] == pytest.approx(5.0), view
        assert header["zdepthDofFstop"] == pytest.approx(1.0), view
        cli_out = tmp_path / f"cli{suffix}.exr"
        args = [a if a != str(LENS) else str(lens) for a in DOF_ARGS]
        r = run_cli("dof", saved, cli_out, "--view", view, *args)
        assert r.returncode == 0, r.stderr
        np.testing.assert_allclose(_rgba(out), _rgba(cli_out), atol=1e-5, err_msg=view)


@pytest.mark.parametrize("views_format", ["MULTIVIEW", "INDIVIDUAL"])
def test_live_preview_of_stereo_files_shows_the_first_view(registered, tmp_path, views_format):
    """The live preview on Rendered Files of a stereo scene finds the files Apply finds and
    shows the first view, as Apply's image does."""
    from blender_zdepth.blender import compat

    bpy = registered
    scene = _dof_scene(bpy, tmp_path)
    scene.frame_start = scene.frame_end = scene.frame_current = 1
    compat.set_multilayer_exr(scene.render.image_settings)
    scene.render.image_settings.views_format = views_format
    scene.render.filepath = str(tmp_path / "ml_####")
    bpy.ops.render.render(animation=True)
    zd = scene.zdepth
    zd.dof_source, zd.dof_focus_mode, zd.dof_focus_distance = "FILES", "DISTANCE", 5.0
    assert bpy.ops.zdepth.refresh_preview() == {"FINISHED"}
    preview_rgba = _shown(bpy)
    assert bpy.ops.zdepth.apply_dof(source="FILES") == {"FINISHED"}
    first = sorted(n for n in os.listdir(tmp_path / "dof") if n.endswith("_L.exr"))
    assert first, os.listdir(tmp_path / "dof")
    # the same view (the left eye) at the same focus: the preview equals Apply's left result
    # up to the preview's draft quality
    left = _rgba(tmp_path / "dof" / first[0])
    assert preview_rgba.shape == left.shape
    assert np.abs(preview_rgba - left).mean() < 0.02
