"""Non-square pixels and renders cropped to their border, with the real bpy (tiny Cycles
renders): exported, refocused by ``dof``, Apply and the live preview, the lens sized and
squeezed by the frame the camera saw (issue 22, items 3 and 4)."""

import math

import numpy as np
import pytest

from blender_zdepth.core import exr
from blender_zdepth.core.frame import load_frame
from blender_zdepth.core.lens import Lens

pytestmark = pytest.mark.blender

# the full frame, and the crop: border x 0.25-0.75, y 0.2-0.8 -> pixels x 40-119, y 18-71 from
# the bottom (Blender truncates border x size), i.e. rows 18-71 from the top of the 90 rows
W, H = 160, 90
BORDER = (0.25, 0.75, 0.2, 0.8)
CROP_DATA = ((40, 18), (119, 71))
NEAR, FAR = 2.0, 8.0


def build_scene(bpy, size=(W, H), samples=8):
    """A 85 mm camera looking down +Y at a checker 2 m away covering the left part of the
    frame and a checker 8 m away behind it; emission only (converges in a few samples), the
    camera's own depth of field off, f/1.0 focused on the near plane: a 6 px blur radius on
    the far one at 160 px."""
    from blender_zdepth.blender import scenes

    scene = scenes.empty_scene(size, "CYCLES", samples)
    scene.render.filter_size = 0.5
    near = scenes.checker_material("Near", (0.9, 0.2, 0.1), (0.1, 0.05, 0.02), scale=8.0)
    far = scenes.checker_material("Far", (0.1, 0.9, 0.3), (0.02, 0.1, 0.05), scale=30.0)
    plane = scenes.add_object(scene, "plane", "NearPlane", near, size=1.0,
                              location=(-0.2, NEAR, 0.0), rotation=(math.pi / 2, 0.0, 0.0))
    plane.scale = (0.4, 0.3, 1.0)
    scenes.add_object(scene, "plane", "FarPlane", far, size=12.0,
                      location=(0.0, FAR, 0.0), rotation=(math.pi / 2, 0.0, 0.0))
    cam = scenes.add_camera(scene, (0.0, 0.0, 0.0), (0.0, 1.0, 0.0), lens=85.0,
                            clip=(0.1, 100.0))
    cam.data.dof.use_dof = False
    cam.data.dof.focus_distance = NEAR
    cam.data.dof.aperture_fstop = 1.0
    scene.frame_start = scene.frame_end = 1
    return scene


def set_border(scene, crop):
    r = scene.render
    r.use_border, r.use_crop_to_border = True, crop
    r.border_min_x, r.border_max_x, r.border_min_y, r.border_max_y = BORDER


def refocus(path, **lens_overrides):
    """The engine's refocus of an export (lens from its header), as ``dof`` makes it."""
    from blender_zdepth.core import dof, refocus as core_refocus

    frame = core_refocus.load_input(str(path))
    lens = Lens.from_camera(frame.camera, **lens_overrides)
    settings = dof.DofSettings(max_radius=32.0)
    return frame, core_refocus.refocus_array(frame, lens, settings)


def psnr(a, b):
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    peak = float(np.max(np.abs(b)))
    return 10 * math.log10(peak * peak / mse) if mse > 0 else math.inf


def rgba_file(path):
    img = exr.read_exr(str(path))
    return np.stack([img.channels[c] for c in "RGBA"], axis=-1), img


@pytest.fixture
def addon(bpy):
    import blender_zdepth

    blender_zdepth.register()
    yield bpy
    blender_zdepth.unregister()


@pytest.mark.slow
def test_crop_is_placed_in_its_frame_and_refocuses_as_the_full_frame(addon, tmp_path):
    bpy = addon
    from blender_zdepth.blender.render import render_with_depth
    from blender_zdepth.blender.scene.region import crop_windows

    scene = build_scene(bpy)
    full_path, = render_with_depth(scene, tmp_path / "full", beauty="SAME_FILE")
    full, full_out = refocus(full_path)
    assert full.depth.shape == (H, W)

    # border WITHOUT crop: the full frame with an empty outside, as before
    set_border(scene, crop=False)
    bordered_path, = render_with_depth(scene, tmp_path / "border", beauty="SAME_FILE")
    bordered = load_frame(bordered_path)
    assert bordered.depth.shape == (H, W)
    assert bordered.data_window == bordered.display_window == ((0, 0), (W - 1, H - 1))
    assert np.isinf(bordered.depth[:10]).all()  # above the region: nothing rendered
    (x0, y0), (x1, y1) = CROP_DATA
    np.testing.assert_allclose(bordered.rgba[y0 + 4:y1 - 3, x0 + 4:x1 - 3],
                               full.rgba[y0 + 4:y1 - 3, x0 + 4:x1 - 3], atol=0.08)

    # border WITH crop: the crop, placed in its frame (the OpenEXR way)
    set_border(scene, crop=True)
    assert crop_windows(scene, (80, 54)) == (CROP_DATA, ((0, 0), (W - 1, H - 1)))
    crop_path, = render_with_depth(scene, tmp_path / "crop", beauty="SAME_FILE")
    crop, crop_out = refocus(crop_path)
    assert crop.depth.shape == (y1 - y0 + 1, x1 - x0 + 1)
    assert crop.data_window == CROP_DATA
    assert crop.display_window == ((0, 0), (W - 1, H - 1))
    header = exr.read_layout(crop_path)[0][0]
    assert header.data_window == CROP_DATA
    # the refocused crop is the full refocus cut to the region, away from the region's edges
    # (which lack what lies outside the crop); 8 px: past the largest blur radius (6 px)
    m = 8
    cut = full_out[y0:y1 + 1, x0:x1 + 1]
    inner = np.s_[m:-m, m:-m]
    measured = psnr(crop_out[inner][..., :3], cut[inner][..., :3])
    print(f"refocused crop vs full refocus cut to the region: {measured:.1f} dB")
    assert measured >= 35.0
    # ... and the lens sized by the crop alone (what the header said before) is far off
    _, wrong = refocus(crop_path, frame_size=crop.depth.shape[::-1])
    wrong_psnr = psnr(wrong[inner][..., :3], cut[inner][..., :3])
    print(f"with the lens sized by the crop: {wrong_psnr:.1f} dB")
    assert wrong_psnr < 35.0

    # Apply on the Render Result (the crop just rendered) and the live preview
    zd = scene.zdepth
    zd.dof_output_dir = str(tmp_path / "apply")
    zd.output_dir = str(tmp_path / "exports")
    zd.dof_max_radius = 32.0
    scene.render.filepath = str(tmp_path / "apply" / "shot_")
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT") == {"FINISHED"}
    applied, img = rgba_file(tmp_path / "apply" / "shot_dof.0001.exr")
    assert img.data_window == CROP_DATA and img.display_window == ((0, 0), (W - 1, H - 1))
    assert psnr(applied[inner][..., :3], cut[inner][..., :3]) >= 35.0
    from blender_zdepth.blender.refocus.display import image_origin, image_size

    shown = bpy.data.images["Z-Depth DOF"]  # Apply's result: the crop, kept in its place
    assert tuple(shown.size) == (x1 - x0 + 1, y1 - y0 + 1)
    assert image_origin(shown, scene) == (x0, H - 1 - y1)
    assert bpy.ops.zdepth.refresh_preview() == {"FINISHED"}
    from blender_zdepth.blender.refocus import live

    cached = live.CACHE["frame"]
    assert cached.display_size == (W, H) and cached.size == (x1 - x0 + 1, y1 - y0 + 1)
    image = bpy.data.images["Z-Depth DOF"]
    assert tuple(image.size) == (x1 - x0 + 1, y1 - y0 + 1)
    # a pixel picked on the preview, or on the cropped Render Result, is a pixel of the frame
    assert image_size(image, scene) == (x1 - x0 + 1, y1 - y0 + 1)
    assert image_origin(image, scene) == (x0, H - 1 - y1)
    result = bpy.data.images["Render Result"]
    if tuple(result.size) == (0, 0):  # headless: the size comes from the scene
        assert image_size(result, scene) == (x1 - x0 + 1, y1 - y0 + 1)
    assert image_origin(result, scene) == (x0, H - 1 - y1)
    zd.dof_focus_mode = "PIXEL"
    zd.dof_focus_pixel = (x0 + 5, H - 1 - y1 + 5)  # on the near plane, inside the crop
    assert bpy.ops.zdepth.refresh_preview() == {"FINISHED"}
    zd.dof_focus_pixel = (x0 - 5, 40)  # in the frame, outside the crop: said so
    with pytest.raises(RuntimeError, match="outside the pixels the file holds"):
        bpy.ops.zdepth.refresh_preview()
    zd.dof_focus_mode = "CAMERA"
    assert bpy.ops.zdepth.refresh_preview() == {"FINISHED"}
    px = np.empty(len(image.pixels), np.float32)
    image.pixels.foreach_get(px)
    preview = px.reshape(y1 - y0 + 1, x1 - x0 + 1, 4)[::-1]
    assert psnr(preview[inner][..., :3], cut[inner][..., :3]) >= 30.0  # draft quality


def _header(path):
    return exr.read_layout(str(path))[0][0].header


@pytest.mark.slow
def test_pixel_aspect_2_renders_exports_and_refocuses_from_the_command_line(bpy, run_cli,
                                                                           tmp_path):
    scene = build_scene(bpy, size=(48, 32), samples=2)
    scene.render.pixel_aspect_x = 2.0
    blend = str(tmp_path / "squeezed.blend")
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    result = run_cli("render", blend, "--out", tmp_path / "out", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    depth = tmp_path / "out" / "zdepth_0001.exr"
    assert _header(depth)["pixelAspectRatio"] == pytest.approx(2.0)
    assert _header(depth)["zdepthCameraPixelAspect"] == pytest.approx(2.0)
    frame = load_frame(str(depth))
    assert frame.depth.shape == (32, 48) and frame.camera.pixel_aspect == pytest.approx(2.0)
    out = tmp_path / "dof.exr"
    result = run_cli("dof", depth, out, timeout=300)
    assert result.returncode == 0, result.stderr
    assert _header(out)["pixelAspectRatio"] == pytest.approx(2.0)
    # the scene's settings were restored after each save of the Render Result
    assert bpy.context.scene.render.pixel_aspect_x == 2.0


@pytest.mark.slow
def test_pixel_aspect_2_export_on_render_apply_preview_and_the_squeezed_lens(addon, tmp_path):
    bpy = addon
    from blender_zdepth.blender.render import handlers as render_handlers
    from blender_zdepth.blender.render.result import read_render_result
    from blender_zdepth.core import dof, refocus as core_refocus

    scene = build_scene(bpy, size=(96, 64), samples=4)
    scene.render.pixel_aspect_x = 2.0
    zd = scene.zdepth
    zd.output_dir = str(tmp_path / "depth")
    zd.dof_output_dir = str(tmp_path / "apply")
    zd.dof_max_radius = 32.0
    zd.beauty = "SAME_FILE"
    zd.export_enabled = True
    scene.render.filepath = str(tmp_path / "apply" / "shot_")
    bpy.ops.render.render()
    assert render_handlers.last_errors() == []
    depth = tmp_path / "depth" / "zdepth_0001.exr"
    assert _header(depth)["pixelAspectRatio"] == pytest.approx(2.0)
    assert (scene.render.pixel_aspect_x, scene.render.pixel_aspect_y) == (2.0, 1.0)
    zd.export_enabled = False
    # Apply and the live preview on the Render Result
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT") == {"FINISHED"}
    applied = tmp_path / "apply" / "shot_dof.0001.exr"
    assert _header(applied)["pixelAspectRatio"] == pytest.approx(2.0)
    assert bpy.ops.zdepth.refresh_preview() == {"FINISHED"}
    assert tuple(bpy.data.images["Z-Depth DOF"].size) == (96, 64)
    # the lens follows the squeeze: against Cycles' own depth of field of the same shot (a
    # round aperture is twice as tall as wide in these pixels), the refocus with the file's
    # aspect beats the same refocus with square pixels
    frame = core_refocus.load_input(str(depth))
    lens = Lens.from_camera(frame.camera)
    assert lens.pixel_aspect == pytest.approx(2.0)
    scene.camera.data.dof.use_dof = True
    scene.cycles.samples = 128
    bpy.ops.render.render()
    truth = read_render_result(scene)[0].rgba
    settings = dof.DofSettings(max_radius=32.0)
    m = np.s_[6:-6, 6:-6]
    squeezed = psnr(core_refocus.refocus_array(frame, lens, settings)[m][..., :3],
                    truth[m][..., :3])
    square = psnr(core_refocus.refocus_array(frame, Lens.from_camera(frame.camera,
                                                                     pixel_aspect=1.0),
                                             settings)[m][..., :3], truth[m][..., :3])
    print(f"against Cycles' depth of field at pixel aspect 2: {squeezed:.1f} dB with the "
          f"squeezed lens, {square:.1f} dB with square pixels")
    assert squeezed > square + 1.0
