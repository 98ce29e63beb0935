"""Reading real Blender renders (Cycles and EEVEE, rendered here with bpy) and re-encoding them.

The scene: a camera at the origin looking along +Y, a flat emissive plane facing it at 5 m that
covers the left part of the frame; the right part sees no surface (background). Planar depth on
the plane is exactly 5 m everywhere.
"""

import math
import os

import numpy as np
import pytest

from blender_zdepth.core import exr
from blender_zdepth.core.camera import CameraInfo
from blender_zdepth.core.encodings import ENCODINGS, DepthEncoding, background_threshold
from blender_zdepth.core.frame import load_frame, suspected_clip_end_background

pytestmark = [pytest.mark.blender, pytest.mark.slow]

CLIP = (0.1, 100.0)
PLANE_DISTANCE = 5.0


def _render(bpy, tmp_path, engine, size, extra_layer=None):
    from blender_zdepth.blender import compat, scenes

    scene = scenes.empty_scene(size, engine, 1)
    if extra_layer:
        layer = scene.view_layers.new(extra_layer)
        layer.use_pass_z = True
    mat = scenes.emission_material("Wall", (0.8, 0.4, 0.2))
    # plane facing the camera (normal -Y), centred left of the view axis
    scenes.add_object(scene, "plane", "Wall", mat, size=4.0,
                      location=(-1.6, PLANE_DISTANCE, 0.0), rotation=(math.pi / 2, 0.0, 0.0))
    cam = scenes.add_camera(scene, (0.0, 0.0, 0.0), (0.0, 10.0, 0.0), lens=50.0, clip=CLIP)
    compat.set_multilayer_exr(scene.render.image_settings)
    path = str(tmp_path / f"{engine.lower()}.exr")
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    assert os.path.exists(path)
    info = CameraInfo(focal_length_mm=cam.data.lens, sensor_width_mm=cam.data.sensor_width,
                      sensor_height_mm=cam.data.sensor_height, sensor_fit=cam.data.sensor_fit,
                      clip_start=cam.data.clip_start, clip_end=cam.data.clip_end,
                      frame=scene.frame_current)
    return path, info, scene.render.engine


def _check_plane_and_background(frame, width, channel="ViewLayer.Depth.Z"):
    d = frame.depth
    left, right = d[:, : width // 4], d[:, -width // 5:]
    assert np.all(np.isfinite(left)), "the plane covers the left quarter"
    assert np.allclose(left, PLANE_DISTANCE, rtol=1e-4)
    assert np.all(np.isposinf(right)), "the right part sees no surface: background"
    assert frame.rgba is not None and frame.rgba.shape == d.shape + (4,)
    assert frame.rgba[0, 0, 0] > frame.rgba[0, 0, 2]  # the orange wall
    assert frame.depth_channel == channel


def _reencode_all(tmp_path, frame, camera, engine):
    for name in ENCODINGS:
        for half in (False, True):
            out = tmp_path / f"{engine}_{name}_{int(half)}.exr"
            exr.write_depth_exr(out, frame.depth, encoding=DepthEncoding(name, *CLIP), rgba=frame.rgba,
                                camera=camera, half=half)
            back = load_frame(out)
            fin = np.isfinite(frame.depth)
            assert np.array_equal(np.isposinf(back.depth), ~fin)
            tol = 5e-3 if half else 1e-6
            assert np.allclose(back.depth[fin], frame.depth[fin], rtol=tol)
            assert back.camera.clip_end == pytest.approx(CLIP[1])


def test_cycles_render_reads_and_round_trips(bpy, tmp_path, run_cli):
    path, camera, engine = _render(bpy, tmp_path, "CYCLES", (48, 32))
    raw = exr.read_exr(path)
    assert float(np.max(raw.channels["ViewLayer.Depth.Z"])) == pytest.approx(1e10)
    frame = load_frame(path)  # auto rule: Cycles' 1e10 is background
    assert frame.encoding is None and frame.background == 1e9
    _check_plane_and_background(frame, 48)
    _reencode_all(tmp_path, frame, camera, "cycles")
    # and through the command line
    out = tmp_path / "cli.exr"
    r = run_cli("encode", path, out, "--near", CLIP[0], "--far", CLIP[1])
    assert r.returncode == 0, r.stderr
    _check_plane_and_background(load_frame(out), 48, "Z")


def test_eevee_render_background_is_background_on_every_version(bpy, tmp_path, run_cli):
    """EEVEE writes the camera's clip end where no surface is hit up to Blender 5.0, and 1e10
    (as Cycles does) in 5.3 (``compat.eevee_background_depth``): every background rule takes
    either for background."""
    from blender_zdepth.blender import compat

    path, camera, engine = _render(bpy, tmp_path, "EEVEE", (32, 24))
    raw = exr.read_exr(path).channels["ViewLayer.Depth.Z"]
    far_value = float(raw[:, -4:].max())
    written = compat.eevee_background_depth(CLIP[1])
    at_clip_end = written == CLIP[1]
    assert far_value == pytest.approx(written, rel=1e-3)
    # the export's rule (background_for: the engine and the camera known): just under the
    # clip end, so both the clip end and 1e10 are background
    threshold = background_threshold(camera.clip_end, camera.clip_start, engine)
    assert threshold < far_value
    frame = load_frame(path, background=threshold)
    assert frame.background == threshold
    _check_plane_and_background(frame, 32)
    # our file records the camera, so the automatic rule finds EEVEE's background by itself
    plain = tmp_path / "plain_with_camera.exr"
    exr.write_exr(plain, {"Z": raw}, header=camera.to_header())
    assert np.isposinf(load_frame(plain).depth[:, -4:]).all()
    _reencode_all(tmp_path, frame, camera, "eevee")
    # a plain EEVEE render without our header
    auto = load_frame(path)
    _check_plane_and_background(auto, 32)
    r = run_cli("encode", path, tmp_path / "cli_auto.exr")
    assert r.returncode == 0
    if at_clip_end:
        # up to 5.0 the automatic rule recognises the sky (a large region at the frame's
        # largest depth, reaching its border) and says so in one line
        assert suspected_clip_end_background(auto) == far_value
        assert auto.background_info.sky == int((raw >= threshold).sum())
        assert "EEVEE's sky" in r.stdout and "--background none" in r.stdout
    else:
        # 5.3: 1e10 is beyond the default threshold (1e9), as Cycles' sky: nothing to guess
        assert suspected_clip_end_background(auto) is None
        assert auto.background == 1e9
        assert "EEVEE's sky" not in r.stdout
    _check_plane_and_background(load_frame(tmp_path / "cli_auto.exr"), 32, "Z")
    r = run_cli("encode", path, tmp_path / "cli_bg.exr", "--background", threshold)
    assert r.returncode == 0 and r.stderr == ""
    _check_plane_and_background(load_frame(tmp_path / "cli_bg.exr"), 32, "Z")
    # --background none keeps the sky as a surface (at the clip end, or at 1e10)
    kept = load_frame(path, background="none")
    assert np.isfinite(kept.depth[:, -4:]).all()
    np.testing.assert_allclose(kept.depth[:, -4:], written, rtol=1e-3)


def test_cycles_render_with_two_view_layers(bpy, tmp_path):
    path, camera, engine = _render(bpy, tmp_path, "CYCLES", (24, 16), extra_layer="Second")
    names = set(exr.read_exr(path).channels)
    assert {"ViewLayer.Depth.Z", "Second.Depth.Z", "Second.Combined.R"} <= names
    first = load_frame(path)
    assert first.depth_channel == "ViewLayer.Depth.Z"
    second = load_frame(path, layer="Second")
    assert second.depth_channel == "Second.Depth.Z"
    assert second.beauty_channels[0] == "Second.Combined.R"
    _check_plane_and_background(second, 24, "Second.Depth.Z")
