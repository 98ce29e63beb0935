"""``bpy.ops.zdepth.apply_dof`` on real tiny Cycles renders: the Render Result, a keyed focus
pull that becomes a focus rack, and cancelling between frames."""

import math
import os

import numpy as np
import pytest

from blender_zdepth.core import exr
from blender_zdepth.core.frame import load_frame

pytestmark = pytest.mark.blender

W, H = 48, 32
NEAR, FAR = 2.0, 8.0


def build_two_plane_scene(bpy, samples=4):
    """A 100 mm camera at the origin looking down +Y; the left half of the frame is a fine
    checker 2 m away, the rest a checker 8 m away. Camera DOF off (pinhole render), f/0.8:
    about 3 px of blur on the plane out of focus at this size."""
    from blender_zdepth.blender import scenes

    scene = scenes.empty_scene((W, H), "CYCLES", samples)
    scene.render.filter_size = 0.5
    near = scenes.checker_material("Near", (0.9, 0.2, 0.1), (0.1, 0.05, 0.02), scale=8.0)
    far = scenes.checker_material("Far", (0.1, 0.9, 0.3), (0.02, 0.1, 0.05), scale=40.0)
    # the view is 0.72 x 0.48 m at 2 m: the near plane covers its left half, except the
    # bottom 3 rows (so that pixels counted from the top or the bottom differ)
    plane = scenes.add_object(scene, "plane", "NearPlane", near, size=1.0,
                              location=(-0.18, NEAR, 0.5 - 0.24 + 3 * 0.015),
                              rotation=(math.pi / 2, 0.0, 0.0))
    plane.scale = (0.36, 1.0, 1.0)
    scenes.add_object(scene, "plane", "FarPlane", far, size=10.0,
                      location=(0.0, FAR, 0.0), rotation=(math.pi / 2, 0.0, 0.0))
    cam = scenes.add_camera(scene, (0.0, 0.0, 0.0), (0.0, 1.0, 0.0), lens=100.0)
    cam.data.dof.use_dof = False
    cam.data.dof.focus_distance = NEAR
    cam.data.dof.aperture_fstop = 0.8
    return scene


def sharpness(rgba, region):
    img = rgba[..., :3].sum(axis=-1)[region]
    return float(np.abs(np.diff(img, axis=0)).mean() + np.abs(np.diff(img, axis=1)).mean())


NEAR_REGION = np.s_[2:H - 7, 3:W // 2 - 6]
FAR_REGION = np.s_[4:H - 4, W // 2 + 6:W - 3]


@pytest.fixture
def addon(bpy):
    import blender_zdepth

    blender_zdepth.register()
    yield bpy
    blender_zdepth.unregister()


def configure(scene, tmp_path, **values):
    zd = scene.zdepth
    zd.dof_output_dir = str(tmp_path)
    # the export folder too: its default for an unsaved file (the system's temporary folder's
    # zdepth) is shared with every other run, and Apply on files looks there
    zd.output_dir = str(tmp_path / "exports")
    zd.dof_max_radius = 12.0
    for k, v in values.items():
        setattr(zd, k, v)


def rgba_file(path):
    img = exr.read_exr(str(path))
    assert set(img.channels) == {"R", "G", "B", "A"}
    return np.stack([img.channels[c] for c in "RGBA"], axis=-1), img.header


def test_apply_to_render_result(addon, tmp_path):
    bpy = addon
    scene = build_two_plane_scene(bpy)
    scene.render.filepath = str(tmp_path / "shot_")
    configure(scene, tmp_path)
    bpy.ops.render.render()
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT") == {"FINISHED"}
    out = tmp_path / "shot_dof.0001.exr"
    assert out.exists(), os.listdir(tmp_path)
    result, header = rgba_file(out)
    assert header["zdepthDofFocusDistance"] == pytest.approx(NEAR)
    assert header["zdepthDofFstop"] == pytest.approx(0.8)
    assert header["zdepthDofFocalLength"] == pytest.approx(100.0)
    # what the render looked like: the same save path the operator uses, read back
    from blender_zdepth.blender.refocus.inputs import render_result_input

    render_result_input(scene, str(tmp_path / "check.exr"))
    src = load_frame(str(tmp_path / "check.exr")).rgba
    assert sharpness(result, NEAR_REGION) > 0.8 * sharpness(src, NEAR_REGION)
    assert sharpness(result, FAR_REGION) < 0.5 * sharpness(src, FAR_REGION)
    # the result is shown in an image, top row first in the file = last row in Blender
    image = bpy.data.images["Z-Depth DOF"]
    assert tuple(image.size) == (W, H)
    pixels = np.empty(W * H * 4, np.float32)
    image.pixels.foreach_get(pixels)
    np.testing.assert_allclose(pixels.reshape(H, W, 4)[::-1], result, atol=1e-5)
    # the scene's output settings are untouched
    assert scene.render.image_settings.file_format == "PNG"
    # no temporary files beside the output
    assert not [n for n in os.listdir(tmp_path) if "tmp" in n]


def _render_focus_pull(bpy, tmp_path):
    """Render frames 1-3 of the two-plane scene with the camera's focus keyed from the near
    plane (frame 1) to the far plane (frame 3); return the scene."""
    from blender_zdepth.blender import compat

    scene = build_two_plane_scene(bpy, samples=2)
    dof = scene.camera.data.dof
    dof.focus_distance = NEAR
    dof.keyframe_insert("focus_distance", frame=1)
    dof.focus_distance = FAR
    dof.keyframe_insert("focus_distance", frame=3)
    scene.frame_start, scene.frame_end = 1, 3
    scene.frame_set(1)
    compat.set_multilayer_exr(scene.render.image_settings)
    scene.render.filepath = str(tmp_path / "r_####")
    bpy.ops.render.render(animation=True)
    return scene


def test_keyed_focus_pull_becomes_a_rack(addon, tmp_path):
    bpy = addon
    scene = _render_focus_pull(bpy, tmp_path)
    configure(scene, tmp_path, dof_output_dir="")
    scene.frame_set(2)
    assert bpy.ops.zdepth.apply_dof(source="FILES") == {"FINISHED"}
    assert scene.frame_current == 2  # restored
    expected = {}
    for f in (1, 2, 3):
        scene.frame_set(f)
        expected[f] = scene.camera.data.dof.focus_distance
    near, far = [], []
    for f in (1, 2, 3):
        result, header = rgba_file(tmp_path / f"r_dof_{f:04d}.exr")
        assert header["zdepthDofFocusDistance"] == pytest.approx(expected[f], rel=1e-5)
        near.append(sharpness(result, NEAR_REGION))
        far.append(sharpness(result, FAR_REGION))
    assert expected[1] == pytest.approx(NEAR) and expected[3] == pytest.approx(FAR)
    assert NEAR < expected[2] < FAR
    # the sharp plane moves from near (frame 1) to far (frame 3) as keyed; in between (5 m)
    # both planes are out of focus
    assert near[0] > 2 * max(near[1], near[2])
    assert far[2] > 2 * far[0] and far[2] > far[1] > far[0]


def test_cancel_keeps_finished_frames(addon, tmp_path):
    """The modal operator's frame loop (DofBatch.step / cancel / finish, what modal() calls
    on timer and Esc events), driven directly since a modal cannot run headless."""
    bpy = addon
    from blender_zdepth.blender.refocus.batch import DofBatch

    scene = _render_focus_pull(bpy, tmp_path)
    configure(scene, tmp_path, dof_output_dir="")
    batch = DofBatch(scene, "FILES", frames=[1, 2, 3])
    assert batch.total == 3 and "1/3" in batch.status_text()
    assert batch.step().status == "written"
    assert "2/3" in batch.status_text()
    batch.cancel()
    assert batch.done and batch.step() is None
    report = batch.finish()
    assert [r.status for r in report.results] == ["written", "cancelled", "cancelled"]
    names = sorted(os.listdir(tmp_path))
    assert "r_dof_0001.exr" in names
    assert not [n for n in names if n.startswith("r_dof_") and n != "r_dof_0001.exr"]
    assert not [n for n in names if "tmp" in n]
    assert bpy.data.images["Z-Depth DOF"].size[0] == W
    # resume with skip-existing: frame 1 is kept as it is, 2 and 3 are made
    stamp = os.stat(tmp_path / "r_dof_0001.exr").st_mtime_ns
    assert bpy.ops.zdepth.apply_dof(source="FILES", skip_existing=True) == {"FINISHED"}
    assert os.stat(tmp_path / "r_dof_0001.exr").st_mtime_ns == stamp
    assert (tmp_path / "r_dof_0003.exr").exists()


def test_diagnostic_and_missing_render(addon, tmp_path):
    bpy = addon
    scene = build_two_plane_scene(bpy)
    scene.render.filepath = str(tmp_path / "shot_")
    configure(scene, tmp_path)
    # nothing rendered yet: a clear error, no file
    with pytest.raises(RuntimeError, match="render"):
        bpy.ops.zdepth.apply_dof(source="RENDER_RESULT")
    with pytest.raises(RuntimeError, match="nothing to refocus: the scene renders PNG"):
        bpy.ops.zdepth.apply_dof(source="FILES")
    bpy.ops.render.render()
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT", diagnostic=True) == {"FINISHED"}
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".exr")]  # shown, not written
    px = np.empty(W * H * 4, np.float32)
    bpy.data.images["Z-Depth DOF"].pixels.foreach_get(px)
    view = px.reshape(H, W, 4)[::-1]
    # focused on the near plane: it reads green, the far plane blue
    near_rgb = view[NEAR_REGION][..., :3].mean(axis=(0, 1))
    far_rgb = view[FAR_REGION][..., :3].mean(axis=(0, 1))
    assert near_rgb[1] > near_rgb[0] and near_rgb[1] > near_rgb[2]
    assert far_rgb[2] > far_rgb[0] and far_rgb[2] > far_rgb[1]


def test_pick_pixel_mapping_and_registration(addon):
    from blender_zdepth.blender.refocus.display import uv_to_pixel

    # Image Editor view coordinates: 0..1 across the image, v up; pixels from the bottom left
    assert uv_to_pixel(0.0, 0.0, 48, 32) == (0, 0)
    assert uv_to_pixel(0.5, 0.5, 48, 32) == (24, 16)
    assert uv_to_pixel(0.99, 0.999, 48, 32) == (47, 31)
    assert uv_to_pixel(1.2, 0.5, 48, 32) is None
    assert hasattr(addon.types, "ZDEPTH_OT_dof_pick_focus")
    assert hasattr(addon.ops.zdepth, "apply_dof")
    assert addon.types.RENDER_PT_zdepth_dof.bl_parent_id == "RENDER_PT_zdepth"


def test_panel_focus_modes_and_overrides(addon, tmp_path):
    """The Depth of Field panel's settings reach the lens: focus by distance, object, pixel
    (counted from the bottom left) and the camera's focus object; f-stop override, the
    aperture override's blades and rotation."""
    bpy = addon
    scene = build_two_plane_scene(bpy)
    scene.render.filepath = str(tmp_path / "shot_")
    configure(scene, tmp_path)
    zd = scene.zdepth
    bpy.ops.render.render()
    out = tmp_path / "shot_dof.0001.exr"

    def applied(**values):
        for k, v in values.items():
            setattr(zd, k, v)
        assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT") == {"FINISHED"}
        return rgba_file(out)[1]

    h = applied(dof_focus_mode="DISTANCE", dof_focus_distance=6.5)
    assert h["zdepthDofFocusDistance"] == pytest.approx(6.5)
    assert h["zdepthDofFocusSource"] == "panel distance"
    h = applied(dof_focus_mode="OBJECT", dof_focus_object=bpy.data.objects["FarPlane"])
    assert h["zdepthDofFocusDistance"] == pytest.approx(FAR, rel=1e-4)
    h = applied(dof_focus_mode="PIXEL", dof_focus_pixel=(5, H - 3))  # near plane, top left
    assert h["zdepthDofFocusDistance"] == pytest.approx(NEAR, rel=1e-3)
    assert h["zdepthDofFocusSource"] == f"pixel 5,{H - 3}"
    h = applied(dof_focus_pixel=(W - 5, 2))  # far plane, bottom right
    assert h["zdepthDofFocusDistance"] == pytest.approx(FAR, rel=1e-3)
    h = applied(dof_focus_pixel=(5, 1))  # bottom left: the far plane shows under the near one
    assert h["zdepthDofFocusDistance"] == pytest.approx(FAR, rel=1e-3)
    scene.camera.data.dof.focus_object = bpy.data.objects["FarPlane"]
    h = applied(dof_focus_mode="CAMERA", dof_fstop_override=True, dof_fstop=1.6,
                dof_aperture_override=True, dof_blades=6, dof_rotation=math.radians(30.0))
    assert h["zdepthDofFocusDistance"] == pytest.approx(FAR, rel=1e-4)
    assert h["zdepthDofFocusSource"] == "camera focus object FarPlane"
    assert h["zdepthDofFstop"] == pytest.approx(1.6)
    assert h["zdepthDofBlades"] == 6 and h["zdepthDofRotation"] == pytest.approx(30.0)


def test_files_default_to_the_depth_exports(addon, tmp_path):
    """With "Export Depth on Render" (beauty in the same file) and a non-EXR render output, the
    operator refocuses our own exports: log-encoded depth + beauty + camera header."""
    bpy = addon
    scene = build_two_plane_scene(bpy, samples=2)
    zd = scene.zdepth
    zd.export_enabled = True
    zd.beauty = "SAME_FILE"
    zd.output_dir = str(tmp_path / "zd")
    zd.name_pattern = "zd_####"
    zd.dof_max_radius = 12.0
    scene.frame_start = scene.frame_end = 1
    scene.render.filepath = str(tmp_path / "png_####")  # PNG: no depth there
    bpy.ops.render.render(animation=True)
    export = tmp_path / "zd" / "zd_0001.exr"
    assert load_frame(str(export)).encoding is not None  # one of ours
    assert bpy.ops.zdepth.apply_dof(source="FILES") == {"FINISHED"}
    result, header = rgba_file(tmp_path / "zd" / "zd_dof_0001.exr")
    assert header["zdepthDofFocusDistance"] == pytest.approx(NEAR)
    assert "zdepthEncoding" not in header and header["zdepthCameraFocalLength"] == 100.0
    src = load_frame(str(export)).rgba
    assert sharpness(result, NEAR_REGION) > 0.8 * sharpness(src, NEAR_REGION)
    assert sharpness(result, FAR_REGION) < 0.5 * sharpness(src, FAR_REGION)
