"""Depth layers from export on render (blender/render/handlers.py): a render started by
Blender itself (F12, an animation render, ``blender -b file.blend -f N / -a``) with the scene's
Depth Layers above 1 gets each frame's extra passes and deep file too.

Every test here runs in a pytest process of its own (``isolated``): a render that crashes
Blender is that test's failure, not the end of the test run.

* On the main thread (``blender -b``, the bpy module) the render_post handler renders the
  passes right there up to Blender 5.0, and in a child process from 5.1 on (5.3 crashes at the
  next frame of an animation render when render_post starts a render:
  blender/render/isolated.py): Blender's own output images, the flat depth files and the
  Render Result stay exactly those of a render without layers, and the deep files are the same
  either way.
* Off it (F12 / Ctrl+F12 in Blender's window run the handlers in the render job's thread, where
  no render may start) the frame is queued and a timer renders its passes on the main thread
  once the render is over (:func:`export.render_queued_layers`); a cancelled render drops the
  queue. Blender's window is not available here: the queue path is driven by making the
  handler believe it runs off the main thread, and by calling what the timer calls.
"""

import glob
import os
import tempfile
import threading

import numpy as np
import pytest
from blender_zdepth.core.frame import load_frame

pytestmark = [pytest.mark.blender, pytest.mark.isolated]

PEEL_MARK = "zdepth_depth_layer_pass"


def _shot(bpy):
    """A red box moving in front of a green wall (frames 1-2), 48x27, Cycles, 4 samples; Blender
    writes 32-bit EXR images."""
    from blender_zdepth.blender import compat, scenes

    scene = scenes.empty_scene((48, 27), "CYCLES", 4)
    scenes.set_world_color(scene, (0.02, 0.02, 0.05))
    box = scenes.add_object(scene, "cube", "Box", scenes.emission_material("Box", (1, 0, 0)),
                            size=1.0, location=(-0.5, 4, 0))
    box = bpy.data.objects["Box"]
    box.keyframe_insert("location", frame=1)
    box.location = (0.5, 4, 0)
    box.keyframe_insert("location", frame=2)
    scenes.add_object(scene, "plane", "Wall", scenes.emission_material("Wall", (0, 1, 0)),
                      size=6.0, location=(0, 10, 0), rotation=(1.5707963, 0, 0))
    scenes.add_camera(scene, (0, 0, 0), (0, 10, 0), clip=(0.1, 50.0))
    scene.frame_start, scene.frame_end = 1, 2
    compat.set_single_layer_exr(scene.render.image_settings)
    # Blender's own images go to its session's temporary folder, removed when it exits (its
    # default, /tmp/, is shared by every run); tests that compare them set their own path
    scene.render.filepath = os.path.join(bpy.app.tempdir, "img", "####")
    scene.zdepth.export_enabled = True
    return scene


def _state(scene):
    import bpy

    cam = scene.camera.data
    r = scene.render
    return {"clip_start": cam.clip_start, "clip_end": cam.clip_end,
            "samples": scene.cycles.samples, "denoise": scene.cycles.use_denoising,
            "persistent": r.use_persistent_data, "filepath": r.filepath,
            "format": r.image_settings.file_format, "depth": r.image_settings.color_depth,
            "compositing": r.use_compositing, "frame": scene.frame_current,
            "z": [layer.use_pass_z for layer in scene.view_layers],
            "scenes": [s.name for s in bpy.data.scenes]}


@pytest.fixture
def peel_renders(bpy):
    """Frames at which a depth-layer pass rendered (a render_post handler counting them)."""
    seen = []

    @bpy.app.handlers.persistent  # the scene set-up loads an empty file
    def count(scene, *args):
        if scene.get(PEEL_MARK):
            seen.append(scene.frame_current)

    bpy.app.handlers.render_post.append(count)
    yield seen
    while count in bpy.app.handlers.render_post:
        bpy.app.handlers.render_post.remove(count)


def _render(bpy, scene, folder, layers, clips="6"):
    """An animation render (frames 1-2) and then a still of frame 2 with write_still, as
    ``blender -b -a`` and ``-f 2`` do, with ``layers`` depth layers; returns Blender's images,
    the depth files, and the Render Result's depth after it all."""
    from blender_zdepth.blender.render import handlers as render_handlers
    from blender_zdepth.blender.render.result import read_render_result

    zd = scene.zdepth
    zd.output_dir = str(folder / "z")
    zd.depth_layers = layers
    zd.depth_layer_clips = clips if layers > 1 else ""
    scene.frame_set(1)
    scene.render.filepath = str(folder / "img" / "anim_####")
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    assert render_handlers.last_errors() == []
    scene.frame_set(2)
    scene.render.filepath = str(folder / "img" / "still")
    assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
    assert render_handlers.last_errors() == []
    return read_render_result(scene)[0]


def _channels(path):
    from blender_zdepth.core import exr

    return exr.read_exr(str(path)).channels


@pytest.mark.slow
def test_background_render_with_layers_writes_deep_files_and_changes_nothing_else(
        bpy, addon, tmp_path, peel_renders, capsys):
    from blender_zdepth.blender.render import handlers as render_handlers
    from blender_zdepth.core import deep, exr

    scene = _shot(bpy)
    scene.cycles.use_denoising = True  # the passes turn it off in their own copy only
    plain_result = _render(bpy, scene, tmp_path / "plain", 1)
    assert peel_renders == []
    before = _state(scene)
    layered_result = _render(bpy, scene, tmp_path / "layers", 2)
    before["filepath"] = str(tmp_path / "layers" / "img" / "still")
    assert _state(scene) == before  # camera, samples, outputs, frame, Z pass, no extra scene
    # one pass per frame rendered: frames 1 and 2 of the animation, then the still of frame 2
    # (in this process, or -- where the handler may not render -- in a child process)
    assert peel_renders == ([] if render_handlers._passes_in_child() else [1, 2, 2])
    out = capsys.readouterr().out
    assert "depth layers (clip 6) written to" in out and "not rendered from F12" not in out

    # (a) Blender's own images: the beauty, identical to the render without layers, for the
    # still and for every animation frame (it writes them before render_post; the passes do
    # not leak into the next frame)
    images = sorted(os.listdir(tmp_path / "plain" / "img"))
    assert images == ["anim_0001.exr", "anim_0002.exr", "still.exr"]
    assert sorted(os.listdir(tmp_path / "layers" / "img")) == images
    for name in images:
        a = _channels(tmp_path / "plain" / "img" / name)
        b = _channels(tmp_path / "layers" / "img" / name)
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name} {key}")
    frame1 = _channels(tmp_path / "plain" / "img" / "anim_0001.exr")
    frame2 = _channels(tmp_path / "plain" / "img" / "anim_0002.exr")
    assert not np.array_equal(frame1["R"], frame2["R"])  # the box moved: frames differ

    # (b) the flat depth files: the same as without layers
    assert sorted(os.listdir(tmp_path / "plain" / "z")) == ["zdepth_0001.exr",
                                                             "zdepth_0002.exr"]
    assert sorted(os.listdir(tmp_path / "layers" / "z")) == [
        "zdepth_0001.exr", "zdepth_0001_deep.exr", "zdepth_0002.exr", "zdepth_0002_deep.exr"]
    for frame in (1, 2):
        name = f"zdepth_{frame:04d}.exr"
        a = load_frame(str(tmp_path / "plain" / "z" / name))
        b = load_frame(str(tmp_path / "layers" / "z" / name))
        np.testing.assert_array_equal(a.rgba, b.rgba)
        np.testing.assert_array_equal(a.depth, b.depth)

        # (c) the deep file of each frame flattens to the beauty; behind the box it holds
        # the wall at 10 m, seen by the pass with the clip start at 6 m
        image = exr.read_deep(str(tmp_path / "layers" / "z" / f"zdepth_{frame:04d}_deep.exr"))
        np.testing.assert_allclose(deep.flatten(image)[0], b.rgba, atol=1e-6)
        assert image.header["zdepthDepthLayers"] == 2
        box = np.abs(b.depth - 3.5) < 0.6
        assert box.sum() > 20
        assert (image.counts[box] == 2).all() and (image.counts[~box] == 1).all()
        back = image.channels["Z"][image.offsets[:-1].reshape(box.shape)[box] + 1]
        np.testing.assert_allclose(back, 10.0, atol=0.05)

    # (d) the Render Result after it all is the user's beauty (frame 2's still), not a pass
    np.testing.assert_array_equal(layered_result.rgba, plain_result.rgba)
    np.testing.assert_array_equal(layered_result.depth, plain_result.depth)
    assert render_handlers.last_render_frame(scene) == 2


@pytest.mark.slow
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_or_cancelled_pass_keeps_the_flat_file_and_restores_everything(
        bpy, addon, tmp_path, monkeypatch, capsys, error):
    from blender_zdepth.blender.render import export
    from blender_zdepth.blender.render import handlers as render_handlers
    from blender_zdepth.blender.render.result import read_render_result

    scene = _shot(bpy)
    scene.zdepth.output_dir = str(tmp_path / "z")
    scene.zdepth.depth_layers = 2
    scene.zdepth.depth_layer_clips = "6"
    scene.render.filepath = str(tmp_path / "img" / "still")
    before = _state(scene)
    real = read_render_result
    inside = []

    def failing(rendered, *args, **kwargs):
        if rendered.get(PEEL_MARK):  # inside the pass: the camera's clip start is moved
            inside.append(scene.camera.data.clip_start)
            raise error("boom inside the pass")
        return real(rendered, *args, **kwargs)

    monkeypatch.setattr(export, "read_render_result", failing)
    # a still may render its passes in the handler on every version: this process's passes
    monkeypatch.setattr(render_handlers, "_passes_in_child", lambda: False)
    assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
    assert inside == [pytest.approx(6.0)]
    assert _state(scene) == before
    assert sorted(os.listdir(tmp_path / "z")) == ["zdepth_0001.exr"]  # flat, no deep file
    assert os.listdir(tmp_path / "img") == ["still.exr"]
    errors = render_handlers.last_errors()
    assert len(errors) == 1 and errors[0][0] == 1
    assert ("boom inside the pass" if error is RuntimeError else "cancelled") in errors[0][1]
    out = capsys.readouterr().out
    assert "depth layers failed" in out and "the flat depth file is written" in out
    # the next render renders its passes again
    monkeypatch.setattr(export, "read_render_result", real)
    assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
    assert render_handlers.last_errors() == []
    assert sorted(os.listdir(tmp_path / "z")) == ["zdepth_0001.exr", "zdepth_0001_deep.exr"]
    assert _state(scene) == before


@pytest.mark.slow
def test_layer_settings_that_cannot_render_give_the_flat_file_and_one_error(
        bpy, addon, tmp_path, peel_renders, capsys):
    from blender_zdepth.blender.render import handlers as render_handlers

    scene = _shot(bpy)
    scene.zdepth.output_dir = str(tmp_path)
    scene.zdepth.depth_layers = 2
    scene.zdepth.depth_layer_clips = "80"  # beyond the camera's clip end (50)
    bpy.ops.render.render(write_still=False)
    assert sorted(os.listdir(tmp_path)) == ["zdepth_0001.exr"]
    assert peel_renders == []
    (frame, message), = render_handlers.last_errors()
    assert "depth layers not rendered: clip distance 80 is beyond the camera's clip end 50" \
        in message
    assert message in capsys.readouterr().out


@pytest.mark.slow
def test_stereo_render_with_layers_is_refused_in_one_line(bpy, addon, tmp_path, peel_renders,
                                                          capsys):
    from blender_zdepth.blender.render import handlers as render_handlers
    from blender_zdepth.blender.scene.views import STEREO_LAYERS

    scene = _shot(bpy)
    scene.render.use_multiview = True
    scene.render.views_format = "STEREO_3D"
    scene.zdepth.output_dir = str(tmp_path)
    scene.zdepth.depth_layers = 2
    bpy.ops.render.render(write_still=False)
    assert render_handlers.last_errors() == []
    assert sorted(os.listdir(tmp_path)) == ["zdepth_0001_L.exr", "zdepth_0001_R.exr"]
    assert peel_renders == []
    lines = [line for line in capsys.readouterr().out.splitlines() if "depth layers" in line]
    assert lines == [f"blender_zdepth: frame 1: {STEREO_LAYERS}"]


@pytest.mark.slow
def test_render_command_paths_render_the_passes_once(bpy, addon, tmp_path, peel_renders):
    """render_with_depth (the render command, the demo) and the panel's buttons export by
    themselves: with export on render also on, the handlers stay out (no second set of
    passes)."""
    from blender_zdepth.blender.render import export
    from blender_zdepth.blender.render import handlers as render_handlers

    scene = _shot(bpy)
    scene.zdepth.depth_layers = 2
    scene.zdepth.depth_layer_clips = "6"
    written = export.render_with_depth(scene, str(tmp_path / "a"), frames=[1, 2])
    assert len(written) == 2
    assert peel_renders == [1, 2]
    scene.zdepth.output_dir = str(tmp_path / "b")
    assert bpy.ops.zdepth.render_depth_layers(animation=True) == {"FINISHED"}
    assert peel_renders == [1, 2, 1, 2]
    assert len(render_handlers.LAYER_QUEUE) == 0
    for folder in ("a", "b"):
        assert sorted(os.listdir(tmp_path / folder)) == [
            "zdepth_0001.exr", "zdepth_0001_deep.exr", "zdepth_0002.exr", "zdepth_0002_deep.exr"]


def test_the_handler_decides_by_the_thread_it_runs_on(bpy):
    from blender_zdepth.blender.render import handlers as render_handlers

    assert render_handlers._on_main_thread() is True
    seen = []
    worker = threading.Thread(target=lambda: seen.append(render_handlers._on_main_thread()))
    worker.start()
    worker.join()
    assert seen == [False]


def _hidden(folder):
    return [name for name in os.listdir(folder) if name.startswith(".")]


@pytest.mark.slow
def test_off_the_main_thread_frames_are_queued_and_rendered_by_the_timer(
        bpy, addon, tmp_path, monkeypatch, peel_renders, capsys):
    """F12 / Ctrl+F12 in the window: the handlers run in the render job's thread. There the
    frame is queued (flat file written, no pass rendered); render_complete registers the timer,
    whose function renders the queued frames' passes on the main thread: the same deep files as
    on the main thread, every setting and the frame restored, the kept files removed."""
    from blender_zdepth.blender.render import handlers as render_handlers
    from blender_zdepth.blender.render.result import read_render_result
    from blender_zdepth.core import exr

    scene = _shot(bpy)
    _render(bpy, scene, tmp_path / "main", 2)  # reference: passes rendered in the handler
    peel_renders.clear()
    zd = scene.zdepth
    zd.output_dir = str(tmp_path / "queued")
    monkeypatch.setattr(render_handlers, "_on_main_thread", lambda: False)
    scene.frame_set(1)
    scene.render.filepath = str(tmp_path / "img" / "anim_####")
    before = _state(scene)
    try:
        assert bpy.ops.render.render(animation=True) == {"FINISHED"}
        assert peel_renders == []
        assert render_handlers.LAYER_QUEUE.frames() == [1, 2]
        folder = tmp_path / "queued"
        assert sorted(os.listdir(folder)) == sorted(["zdepth_0001.exr", "zdepth_0002.exr"]
                                                    + _hidden(folder))
        assert len(_hidden(folder)) == 2  # each frame's beauty and depth, kept
        kept = _channels(folder / _hidden(folder)[0])
        assert sorted(kept) == ["A", "B", "G", "R", "Z"]
        out = capsys.readouterr().out
        assert out.count("depth layers queued: 1 extra pass(es) render when the render has "
                         "finished") == 2
        # render_complete (in the render job's thread) registers no timer: it marks the queue
        # due, and the add-on's main-thread poller registers the timer that renders it
        assert render_handlers._state.queue_due
        assert not bpy.app.timers.is_registered(render_handlers._layer_queue_timer)
        assert render_handlers._queue_poller() == render_handlers.POLL_S
        assert not render_handlers._state.queue_due
        assert bpy.app.timers.is_registered(render_handlers._layer_queue_timer)
        scene.frame_set(1)  # what the timer finds: the frame the user is on
        before = _state(scene)
        assert render_handlers._layer_queue_timer() is None  # what the timer calls: done, not again
    finally:
        if bpy.app.timers.is_registered(render_handlers._layer_queue_timer):
            bpy.app.timers.unregister(render_handlers._layer_queue_timer)
    assert peel_renders == [1, 2]
    assert len(render_handlers.LAYER_QUEUE) == 0
    assert _state(scene) == before  # frame 1 again, camera and settings as they were
    assert _hidden(folder) == []
    assert sorted(os.listdir(folder)) == [
        "zdepth_0001.exr", "zdepth_0001_deep.exr", "zdepth_0002.exr", "zdepth_0002_deep.exr"]
    assert "depth layers: 2 deep file(s) written to" in capsys.readouterr().out
    for frame in (1, 2):
        name = f"zdepth_{frame:04d}_deep.exr"
        a = exr.read_deep(str(tmp_path / "main" / "z" / name))
        b = exr.read_deep(str(folder / name))
        np.testing.assert_array_equal(a.counts, b.counts)
        for key in a.channels:
            np.testing.assert_array_equal(a.channels[key], b.channels[key], err_msg=key)
        assert sorted(a.header) == sorted(b.header)
        for key in a.header:  # the frame's camera, as when it rendered
            assert np.array_equal(np.asarray(a.header[key]), np.asarray(b.header[key])), key
    # the Render Result is still the user's beauty of the last frame rendered
    assert render_handlers.last_render_frame(scene) == 2
    flat = load_frame(str(folder / "zdepth_0002.exr"))
    np.testing.assert_array_equal(read_render_result(scene)[0].rgba, flat.rgba)
    assert render_handlers.render_queued_layers() == []  # nothing left to do


@pytest.mark.slow
def test_a_cancelled_render_drops_the_queue(bpy, addon, tmp_path, monkeypatch, peel_renders,
                                            capsys):
    from blender_zdepth.blender.render import handlers as render_handlers

    scene = _shot(bpy)
    scene.zdepth.output_dir = str(tmp_path)
    scene.zdepth.depth_layers = 2
    monkeypatch.setattr(render_handlers, "_on_main_thread", lambda: False)
    assert bpy.ops.render.render(write_still=False) == {"FINISHED"}
    if bpy.app.timers.is_registered(render_handlers._layer_queue_timer):
        bpy.app.timers.unregister(render_handlers._layer_queue_timer)
    assert render_handlers.LAYER_QUEUE.frames() == [1]
    assert len(_hidden(tmp_path)) == 1
    # while a render job still runs (it is finishing, or the next one started) the timer waits
    monkeypatch.setattr(render_handlers, "_render_job_running", lambda: True)
    assert render_handlers._layer_queue_timer() == 0.5
    assert render_handlers.LAYER_QUEUE.frames() == [1] and peel_renders == []
    render_handlers._on_render_cancel(scene)  # what Blender calls when the render is cancelled
    assert len(render_handlers.LAYER_QUEUE) == 0 and _hidden(tmp_path) == []
    assert os.listdir(tmp_path) == ["zdepth_0001.exr"]
    assert "the render was cancelled: the depth layers of frame 1 are not rendered" in \
        capsys.readouterr().out
    assert render_handlers.render_queued_layers() == [] and peel_renders == []


@pytest.mark.slow
def test_a_queued_frame_whose_pass_is_cancelled_drops_the_frames_left(
        bpy, addon, tmp_path, monkeypatch, peel_renders, capsys):
    from blender_zdepth.blender.render import export
    from blender_zdepth.blender.render import handlers as render_handlers
    from blender_zdepth.blender.render import peel

    scene = _shot(bpy)
    scene.zdepth.output_dir = str(tmp_path)
    scene.zdepth.depth_layers = 2
    scene.zdepth.depth_layer_clips = "6"
    monkeypatch.setattr(render_handlers, "_on_main_thread", lambda: False)
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    if bpy.app.timers.is_registered(render_handlers._layer_queue_timer):
        bpy.app.timers.unregister(render_handlers._layer_queue_timer)
    assert render_handlers.LAYER_QUEUE.frames() == [1, 2]
    before = _state(scene)
    real = peel.render_passes

    def cancelled(*args, **kwargs):
        raise peel.PassCancelled("the depth layer at 6 was cancelled")

    monkeypatch.setattr(export, "render_passes", cancelled)
    assert render_handlers.render_queued_layers() == []
    monkeypatch.setattr(export, "render_passes", real)
    assert _state(scene) == before
    assert len(render_handlers.LAYER_QUEUE) == 0 and _hidden(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["zdepth_0001.exr", "zdepth_0002.exr"]
    out = capsys.readouterr().out
    assert "frame 1: depth layers failed: the depth layer at 6 was cancelled" in out
    assert "failed: frame(s) 1; not rendered: frame(s) 2" in out


@pytest.mark.slow
def test_eevee_render_with_layers_keeps_blenders_image(bpy, addon, tmp_path, peel_renders):
    """EEVEE renders its passes from inside its own render's handler too (a second GPU render
    started from render_post): Blender's image is unchanged, the deep file sees the wall."""
    from blender_zdepth.blender import compat
    from blender_zdepth.core import exr

    scene = _shot(bpy)
    scene.render.engine = compat.eevee_engine_id()
    scene.eevee.taa_render_samples = 1
    scene.render.resolution_x, scene.render.resolution_y = 32, 18
    scene.zdepth.depth_layer_clips = "6"
    images = {}
    for layers in (1, 2):
        scene.zdepth.depth_layers = layers
        scene.zdepth.output_dir = str(tmp_path / f"z{layers}")
        scene.render.filepath = str(tmp_path / f"still{layers}")
        assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
        images[layers] = _channels(tmp_path / f"still{layers}.exr")
    from blender_zdepth.blender.render import handlers as render_handlers

    assert peel_renders == ([] if render_handlers._passes_in_child() else [1])
    for key in images[1]:
        np.testing.assert_array_equal(images[1][key], images[2][key], err_msg=key)
    image = exr.read_deep(str(tmp_path / "z2" / "zdepth_0001_deep.exr"))
    assert (image.counts == 2).sum() > 5
    assert scene.camera.data.clip_start == pytest.approx(0.1)


@pytest.mark.slow
def test_a_scene_that_is_not_the_context_scene_renders_its_own_frame(bpy, addon, tmp_path):
    """bpy.ops.render.render(scene=...) copies the context scene's frame into the scene it
    renders: the beauty of render_with_depth and every depth-layer pass are rendered with the
    context pointed at their own scene, so a scene other than the window's renders the frame
    it is at (the render command's --scene, a script's render of another scene)."""
    from blender_zdepth.blender.render import export
    from blender_zdepth.blender.render import handlers as render_handlers
    from blender_zdepth.core import exr

    scene = _shot(bpy)
    scene.zdepth.export_enabled = False
    scene.zdepth.depth_layers = 2
    scene.zdepth.depth_layer_clips = "6"
    reference = export.render_with_depth(scene, str(tmp_path / "ref"), frames=[2],
                                         with_paths=True)[0]
    other = bpy.data.scenes.new("Elsewhere")
    other.frame_set(1)
    bpy.context.window.scene = other
    assert bpy.context.scene == other
    moved = export.render_with_depth(scene, str(tmp_path / "moved"), frames=[2],
                                     with_paths=True)[0]
    # export on render of an animation of `scene` while the window shows `other`
    scene.zdepth.export_enabled = True
    scene.zdepth.output_dir = str(tmp_path / "anim")
    scene.render.filepath = str(tmp_path / "img" / "anim_####")
    assert bpy.ops.render.render(animation=True, scene=scene.name) == {"FINISHED"}
    assert render_handlers.last_errors() == []
    assert other.frame_current == 1
    ref_flat = load_frame(reference["depth"])
    ref_deep = exr.read_deep(reference["deep"])
    for flat, deep_path in ((moved["depth"], moved["deep"]),
                            (tmp_path / "anim" / "zdepth_0002.exr",
                             tmp_path / "anim" / "zdepth_0002_deep.exr")):
        np.testing.assert_array_equal(load_frame(str(flat)).rgba, ref_flat.rgba)
        image = exr.read_deep(str(deep_path))
        np.testing.assert_array_equal(image.counts, ref_deep.counts)
        np.testing.assert_array_equal(image.channels["Z"], ref_deep.channels["Z"])


# -- the passes in a child process (Blender 5.1+ by default; forced here on every version) -------

def _leftovers():
    return sorted(glob.glob(os.path.join(tempfile.gettempdir(), "zdepth_passes_*")))


@pytest.mark.slow
def test_animation_render_with_the_passes_in_a_child_process(bpy, addon, tmp_path,
                                                             monkeypatch, peel_renders, capsys):
    """An animation render (``blender -b -a``) whose passes render in a child process: every
    frame gets its deep file, the same as the passes rendered from a script give; nothing
    rendered here but the beauty, settings unchanged, no temporary file left."""
    from blender_zdepth.blender.render import export
    from blender_zdepth.blender.render import handlers as render_handlers
    from blender_zdepth.core import exr

    scene = _shot(bpy)
    scene.zdepth.depth_layers = 2
    scene.zdepth.depth_layer_clips = "6"
    scene.zdepth.export_enabled = False
    reference = export.render_with_depth(scene, str(tmp_path / "ref"), frames=[1, 2],
                                         with_paths=True)
    peel_renders.clear()
    scene.zdepth.export_enabled = True
    scene.zdepth.output_dir = str(tmp_path / "z")
    scene.render.filepath = str(tmp_path / "img" / "anim_####")
    scene.frame_set(1)
    before, leftovers = _state(scene), _leftovers()
    monkeypatch.setattr(render_handlers, "_passes_in_child", lambda: True)
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    assert render_handlers.last_errors() == []
    assert peel_renders == []  # no pass rendered in this process
    assert _state(scene) == before
    assert _leftovers() == leftovers
    assert sorted(os.listdir(tmp_path / "z")) == [
        "zdepth_0001.exr", "zdepth_0001_deep.exr", "zdepth_0002.exr", "zdepth_0002_deep.exr"]
    assert sorted(os.listdir(tmp_path / "img")) == ["anim_0001.exr", "anim_0002.exr"]
    out = capsys.readouterr().out
    assert out.count("1 depth-layer pass(es) rendered in a separate process in") == 2
    for frame, ref in zip((1, 2), reference):
        flat = load_frame(str(tmp_path / "z" / f"zdepth_{frame:04d}.exr"))
        np.testing.assert_array_equal(flat.rgba, load_frame(ref["depth"]).rgba)
        a = exr.read_deep(ref["deep"])
        b = exr.read_deep(str(tmp_path / "z" / f"zdepth_{frame:04d}_deep.exr"))
        np.testing.assert_array_equal(a.counts, b.counts)
        for key in a.channels:
            np.testing.assert_array_equal(a.channels[key], b.channels[key], err_msg=key)
        assert b.header["zdepthDepthLayers"] == 2
    assert render_handlers.last_render_frame(scene) == 2


@pytest.mark.slow
@pytest.mark.parametrize("how", ["crash", "error"])
def test_a_child_that_crashes_or_fails_costs_only_that_frames_deep_file(
        bpy, addon, tmp_path, monkeypatch, capsys, how):
    """The child process dies (a segmentation fault, as Blender 5.3's would) or fails: the
    frame keeps its flat file and Blender's image, the reason is printed and in last_errors,
    the next frames go on, no temporary file is left."""
    from blender_zdepth.blender.render import handlers as render_handlers
    from blender_zdepth.blender.render import isolated

    code = {"crash": "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",
            "error": "import sys; print('boom in the child'); sys.exit(1)"}[how]
    monkeypatch.setattr(render_handlers, "_passes_in_child", lambda: True)
    monkeypatch.setattr(isolated, "child_command",
                        lambda args_path, blend: [os.sys.executable, "-c", code])
    scene = _shot(bpy)
    scene.zdepth.output_dir = str(tmp_path / "z")
    scene.zdepth.depth_layers = 2
    scene.zdepth.depth_layer_clips = "6"
    scene.render.filepath = str(tmp_path / "img" / "anim_####")
    before, leftovers = _state(scene), _leftovers()
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    assert _state(scene) == before
    assert _leftovers() == leftovers
    assert sorted(os.listdir(tmp_path / "z")) == ["zdepth_0001.exr", "zdepth_0002.exr"]
    assert sorted(os.listdir(tmp_path / "img")) == ["anim_0001.exr", "anim_0002.exr"]
    why = "the depth-layer process crashed (SIGSEGV)" if how == "crash" else \
        "the depth-layer process failed (exit status 1): boom in the child"
    assert render_handlers.last_errors() == [(1, f"depth layers failed: {why}"),
                                             (2, f"depth layers failed: {why}")]
    assert capsys.readouterr().out.count(f"depth layers failed: {why} (the flat depth file "
                                         f"is written; no deep file for this frame)") == 2


@pytest.mark.slow
def test_ctrl_c_while_the_child_renders_kills_it_and_cleans_up(bpy, addon, tmp_path,
                                                               monkeypatch, capsys):
    """Ctrl+C in the bpy module (a KeyboardInterrupt in the handler while it waits): the child
    is killed, the frame has its flat file and no deep file, nothing temporary is left."""
    import _thread

    from blender_zdepth.blender.render import handlers as render_handlers
    from blender_zdepth.blender.render import isolated

    pid_file = tmp_path / "child.pid"
    code = (f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
            f"time.sleep(60)")
    monkeypatch.setattr(render_handlers, "_passes_in_child", lambda: True)
    monkeypatch.setattr(isolated, "child_command",
                        lambda args_path, blend: [os.sys.executable, "-c", code])
    real_wait = isolated._wait

    def interrupted_wait(proc):
        threading.Timer(1.0, _thread.interrupt_main).start()
        return real_wait(proc)

    monkeypatch.setattr(isolated, "_wait", interrupted_wait)
    scene = _shot(bpy)
    scene.zdepth.output_dir = str(tmp_path / "z")
    scene.zdepth.depth_layers = 2
    scene.zdepth.depth_layer_clips = "6"
    scene.render.filepath = str(tmp_path / "img" / "still")
    before, leftovers = _state(scene), _leftovers()
    assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped
    assert _state(scene) == before
    assert _leftovers() == leftovers
    assert os.listdir(tmp_path / "z") == ["zdepth_0001.exr"]
    (frame, message), = render_handlers.last_errors()
    assert frame == 1 and "cancelled" in message
