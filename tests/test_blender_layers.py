"""Depth layers in the render (blender/layers.py): the extra passes with the clip start moved,
their settings restored (also after an error), and the options refused before rendering."""

import os

import numpy as np
import pytest
from blender_zdepth.core.frame import load_frame

pytestmark = pytest.mark.blender


def _shot(engine="CYCLES", resolution=(48, 27), samples=4):
    """A near red box in front of a far green wall, on a dark sky: the box hides part of the
    wall."""
    from blender_zdepth.blender import scenes

    scene = scenes.empty_scene(resolution, engine, samples)
    scenes.set_world_color(scene, (0.02, 0.02, 0.05))
    scenes.add_object(scene, "cube", "Box", scenes.emission_material("Box", (1, 0, 0)),
                      size=1.0, location=(0, 4, 0))
    scenes.add_object(scene, "plane", "Wall", scenes.emission_material("Wall", (0, 1, 0)),
                      size=6.0, location=(0, 10, 0), rotation=(1.5707963, 0, 0))
    scenes.add_camera(scene, (0, 0, 0), (0, 10, 0), clip=(0.1, 50.0))
    return scene


def _read(scene):
    from blender_zdepth.blender.render.result import read_render_result

    frame = read_render_result(scene)[0]
    return frame.rgba, frame.depth


def _state(scene):
    cam = scene.camera.data
    values = {"clip_start": cam.clip_start, "clip_end": cam.clip_end}
    if scene.render.engine == "CYCLES":
        values.update(samples=scene.cycles.samples, denoise=scene.cycles.use_denoising,
                      persistent=scene.render.use_persistent_data)
    elif scene.render.engine == "BLENDER_WORKBENCH":
        values.update(aa=scene.display.render_aa)
    else:
        values.update(samples=scene.eevee.taa_render_samples)
    return values


def _passes(bpy, scene, clips, samples=0, read=None):
    from blender_zdepth.blender.render import peel
    from blender_zdepth.blender.scene.options import LayerOptions, check_options

    bpy.ops.render.render(write_still=False)
    rgba, depth = _read(scene)
    opts = LayerOptions(len(clips) + 1, samples, tuple(clips))
    check_options(scene, opts)
    return rgba, depth, peel.render_passes(scene, opts, depth, 5.0, read or _read)


@pytest.mark.slow
def test_cycles_pass_sees_behind_the_box_and_settings_come_back(bpy):
    scene = _shot()
    scene.cycles.use_denoising = True
    before = _state(scene)
    rgba, depth, passes = _passes(bpy, scene, [6.0])
    assert _state(scene) == before
    assert [s.name for s in bpy.data.scenes] == [scene.name]  # the passes' scene is gone
    # the scene's Render Result is still the beauty
    np.testing.assert_array_equal(_read(scene)[1], depth)
    assert len(passes) == 1
    layer = passes[0]
    assert layer.clip == 6.0 and layer.rgba.shape == rgba.shape
    box = np.abs(depth - 3.5) < 0.6  # the box's front face, at 3.5 m
    assert box.sum() > 20
    # behind the box the pass sees the green wall at 10 m, registered pixel for pixel
    assert np.allclose(layer.depth[box], 10.0, atol=0.05)
    assert (layer.rgba[box][:, 1] > 0.5).all() and (layer.rgba[box][:, 0] < 0.1).all()
    # where the beauty already saw the wall, the pass sees the same wall at the same depth
    wall = np.abs(depth - 10.0) < 0.05
    assert np.allclose(layer.depth[wall], depth[wall], atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_settings_are_restored_after_an_error_inside_a_pass(bpy, error):
    scene = _shot()
    scene.cycles.samples = 7
    scene.cycles.use_denoising = True
    before = _state(scene)

    def failing_read(rendered):
        # inside the pass: the camera's clip start is moved; the samples are those of the
        # temporary scene the pass renders, the user's scene keeps its own
        assert rendered != scene and rendered.camera == scene.camera
        assert scene.camera.data.clip_start == pytest.approx(6.0)
        assert rendered.cycles.samples == 3 and rendered.cycles.use_denoising is False
        assert rendered.render.use_persistent_data is True
        assert _state(scene) == dict(before, clip_start=pytest.approx(6.0))
        raise error("boom inside the pass")  # a failure, or a cancel (Ctrl+C)

    with pytest.raises(error, match="boom"):
        _passes(bpy, scene, [6.0], samples=3, read=failing_read)
    assert _state(scene) == before
    assert [s.name for s in bpy.data.scenes] == [scene.name]


@pytest.mark.slow
def test_keyframed_clip_start_is_muted_for_the_pass_and_restored(bpy):
    from blender_zdepth.blender import compat

    scene = _shot()
    cam = scene.camera.data
    cam.clip_start = 0.1
    cam.keyframe_insert("clip_start", frame=1)
    rgba, depth, passes = _passes(bpy, scene, [6.0])
    assert np.nanmin(passes[0].depth) > 6.0  # the F-Curve did not undo the moved clip start
    assert cam.clip_start == pytest.approx(0.1)
    assert compat.fcurve_value(cam, "clip_start", 1) == pytest.approx(0.1)  # not muted now


@pytest.mark.slow
def test_eevee_honours_the_clip_start(bpy):
    from blender_zdepth.blender import compat

    scene = _shot("EEVEE", (32, 18), 1)
    before = _state(scene)
    rgba, depth, passes = _passes(bpy, scene, [6.0], samples=1)
    assert scene.render.engine == compat.eevee_engine_id()
    assert _state(scene) == before
    box = np.abs(depth - 3.5) < 0.6
    assert box.sum() > 5
    assert np.allclose(passes[0].depth[box], 10.0, atol=0.1)
    assert (passes[0].rgba[box][:, 1] > 0.5).all()


@pytest.mark.slow
def test_workbench_honours_the_clip_start(bpy):
    scene = _shot("CYCLES", (32, 18), 1)
    scene.render.engine = "BLENDER_WORKBENCH"
    before = _state(scene)
    rgba, depth, passes = _passes(bpy, scene, [6.0])
    assert _state(scene) == before
    box = np.abs(depth - 3.5) < 0.6
    assert box.sum() > 5
    assert np.allclose(passes[0].depth[box], 10.0, atol=0.1)


def test_options_are_refused_before_rendering(bpy):
    from blender_zdepth.blender.scene.options import LayerOptions, check_options, parse_clips
    from blender_zdepth.core.errors import UsageError

    scene = _shot()
    cases = [
        (LayerOptions(0), "between 1 and 8, not 0"),
        (LayerOptions(9), "between 1 and 8, not 9"),
        (LayerOptions(2, -1), "samples must be 0"),
        (LayerOptions(2, 0, (60.0,)), "beyond the camera's clip end 50"),
        (LayerOptions(2, 0, (0.05,)), "not beyond the camera's clip start"),
        (LayerOptions(3, 0, (8.0, 4.0)), "must increase"),
        (LayerOptions(3, 0, (8.0,)), "need 2 clip distance(s)"),
    ]
    for opts, message in cases:
        with pytest.raises(UsageError) as info:
            check_options(scene, opts)
        assert message in str(info.value), (opts, info.value)
    with pytest.raises(UsageError, match="separated by commas"):
        parse_clips("4,x")
    assert parse_clips("4.5, 12") == (4.5, 12.0)
    assert parse_clips("") == ()


def test_layer_options_from_scene_and_automatic_samples(addon):
    from blender_zdepth.blender.render import peel
    from blender_zdepth.blender.scene.options import LayerOptions

    scene = _shot(samples=40)
    opts = LayerOptions.from_scene(scene)
    assert (opts.layers, opts.samples, opts.clips) == (1, 0, ())
    scene.zdepth.depth_layers = 3
    scene.zdepth.depth_layer_clips = "5, 9"
    opts = LayerOptions.from_scene(scene)
    assert (opts.layers, opts.clips) == (3, (5.0, 9.0))
    assert peel.pass_samples(scene, opts) == 5  # 40 / 8
    assert LayerOptions.from_scene(scene, samples=2).samples == 2
    # clips given alone decide the count
    assert LayerOptions.from_scene(scene, clips="7").layers == 2
    scene.cycles.samples = 3
    assert peel.pass_samples(scene, LayerOptions(2)) == 1


@pytest.mark.slow
def test_render_depth_layers_button_writes_flat_and_deep_files(addon, tmp_path):
    import bpy

    from blender_zdepth.core import deep, exr

    scene = _shot(samples=2)
    scene.frame_start, scene.frame_end = 1, 2
    zd = scene.zdepth
    zd.output_dir = str(tmp_path)
    zd.depth_layers = 2
    zd.depth_layer_clips = "6"
    before = _state(scene)
    assert bpy.ops.zdepth.render_depth_layers(animation=True) == {"FINISHED"}
    assert _state(scene) == before
    assert sorted(os.listdir(tmp_path)) == ["zdepth_0001.exr", "zdepth_0001_deep.exr",
                                            "zdepth_0002.exr", "zdepth_0002_deep.exr"]
    image = exr.read_deep(str(tmp_path / "zdepth_0002_deep.exr"))
    flat = load_frame(str(tmp_path / "zdepth_0002.exr"))
    np.testing.assert_allclose(deep.flatten(image)[0], flat.rgba, atol=1e-6)
    assert (image.counts == 2).sum() > 10
    # what Apply and the preview then read: the beauty of the last frame, not a pass
    from blender_zdepth.blender.render import handlers as render_handlers

    assert render_handlers.last_render_frame(scene) == 2
    np.testing.assert_allclose(_read(scene)[1], flat.depth, rtol=1e-6)  # log-encoded file
    # a clip distance beyond the clip end: an error report, nothing rendered or written
    zd.depth_layer_clips = "80"
    with pytest.raises(RuntimeError, match="beyond the camera's clip end 50"):
        bpy.ops.zdepth.render_depth_layers()
    assert len(os.listdir(tmp_path)) == 4


@pytest.mark.slow
def test_f12_with_layers_writes_the_flat_and_deep_files_with_automatic_clips(addon, tmp_path,
                                                                            capsys):
    """Export on render with Depth Layers 3 and automatic clip distances (more in
    test_blender_layers_on_render.py): the deep file replaces the one of an earlier export."""
    import bpy

    from blender_zdepth.blender.render import handlers as render_handlers
    from blender_zdepth.core import deep, exr

    scene = _shot(samples=1)
    zd = scene.zdepth
    zd.output_dir = str(tmp_path)
    zd.export_enabled = True
    zd.depth_layers = 3
    stale = tmp_path / "zdepth_0001_deep.exr"
    stale.write_bytes(b"from an earlier layered export")
    before = _state(scene)
    bpy.ops.render.render(write_still=False)
    assert render_handlers.last_errors() == []
    assert _state(scene) == before
    assert sorted(os.listdir(tmp_path)) == ["zdepth_0001.exr", "zdepth_0001_deep.exr"]
    image = exr.read_deep(str(stale))
    flat = load_frame(str(tmp_path / "zdepth_0001.exr"))
    np.testing.assert_allclose(deep.flatten(image)[0], flat.rgba, atol=1e-6)
    assert image.header["zdepthDepthLayers"] == 3
    assert (image.counts >= 2).sum() > 10  # the wall behind the box
    out = capsys.readouterr().out
    assert "depth layers (clip " in out and "not rendered from F12" not in out
