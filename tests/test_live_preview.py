"""Live refocus preview, the camera's aperture, the frame range fields and Apply in a worker
thread, with the real bpy (tiny Cycles renders of the two-plane scene of test_dof_operator)."""

import math
import os
import time

import numpy as np
import pytest

from test_dof_operator import (FAR, FAR_REGION, H, NEAR, NEAR_REGION, W, _render_focus_pull,
                               build_two_plane_scene, configure, rgba_file, sharpness)
from blender_zdepth.core.frame import load_frame

pytestmark = pytest.mark.blender


def image_rgba(bpy, name="Z-Depth DOF"):
    image = bpy.data.images[name]
    w, h = image.size
    px = np.empty(w * h * 4, np.float32)
    image.pixels.foreach_get(px)
    return px.reshape(h, w, 4)[::-1]  # top row first, as the engine and the files


def rendered(bpy, tmp_path, **values):
    scene = build_two_plane_scene(bpy)
    scene.render.filepath = str(tmp_path / "shot_")
    configure(scene, tmp_path, **values)
    bpy.ops.render.render()
    return scene


def run_timer(preview, limit=30.0):
    """Run the live preview's timer function as Blender would (it never fires headless):
    call it again after the interval it asks for, until it is idle."""
    t_end = time.monotonic() + limit
    while True:
        wait = preview._tick()
        if wait is None:
            return
        assert time.monotonic() < t_end, "the live preview never became idle"
        time.sleep(min(wait, 0.05))


def test_refresh_preview_matches_the_engine_and_follows_focus(addon, tmp_path):
    import bpy
    from blender_zdepth.blender.refocus import live
    from blender_zdepth.blender.refocus.inputs import render_result_input
    from blender_zdepth.blender.scene.optics import camera_lens
    from blender_zdepth.core import dof

    scene = rendered(bpy, tmp_path, dof_focus_mode="DISTANCE", dof_focus_distance=NEAR)
    assert bpy.ops.zdepth.refresh_preview() == {"FINISHED"}
    near_focus = image_rgba(bpy)
    assert near_focus.shape == (H, W, 4)  # small enough: no shrinking
    # the same as the engine at draft quality on the Render Result
    render_result_input(scene, str(tmp_path / "check.exr"))
    frame = load_frame(str(tmp_path / "check.exr"))
    lens, _ = camera_lens(scene)
    expected = dof.defocus(frame.rgba, frame.depth, lens,
                           dof.DofSettings(max_radius=12.0, quality="draft"))
    np.testing.assert_allclose(near_focus, expected, atol=1e-5)
    # the preview's own copy of the Render Result (saved uncompressed) holds the same pixels
    np.testing.assert_array_equal(live.CACHE["frame"].rgba, frame.rgba)
    np.testing.assert_array_equal(live.CACHE["frame"].depth, frame.depth)
    # a change of focus changes the picture: the far plane becomes the sharp one
    scene.zdepth.dof_focus_distance = FAR
    assert bpy.ops.zdepth.refresh_preview() == {"FINISHED"}
    far_focus = image_rgba(bpy)
    assert sharpness(far_focus, FAR_REGION) > 2 * sharpness(near_focus, FAR_REGION)
    assert sharpness(far_focus, NEAR_REGION) < 0.5 * sharpness(near_focus, NEAR_REGION)
    # nothing written: a preview is not a result
    assert not [n for n in os.listdir(tmp_path) if "_dof" in n]


def test_preview_is_shrunk_and_picks_full_size_pixels(addon, tmp_path, monkeypatch):
    import bpy
    from blender_zdepth.blender.refocus import live
    from blender_zdepth.blender.refocus.display import image_size
    from blender_zdepth.blender.refocus.inputs import render_result_input
    from blender_zdepth.core.refocus import preview as core_preview

    monkeypatch.setattr(core_preview, "PREVIEW_PIXELS", W * H // 4)  # a factor of 2
    scene = rendered(bpy, tmp_path, dof_focus_mode="PIXEL", dof_focus_pixel=(W - 5, 2))
    assert bpy.ops.zdepth.refresh_preview() == {"FINISHED"}
    image = bpy.data.images["Z-Depth DOF"]
    assert tuple(image.size) == (W // 2, H // 2)
    assert list(image["zdepth_full_size"]) == [W, H]
    # picking on the preview gives pixels of the full frame
    assert image_size(image, scene) == (W, H)
    # the focus pixel is looked up in the full-resolution depth: the far plane
    assert live.LIVE.last.lens.focus_distance == pytest.approx(FAR, rel=1e-3)
    assert "pixel" in live.status_text()
    # the small copies are those of the full frame as Apply reads it
    render_result_input(scene, str(tmp_path / "check.exr"))
    full = load_frame(str(tmp_path / "check.exr"))
    expected = core_preview.shrink_frame(full.rgba, full.depth)
    np.testing.assert_array_equal(live.CACHE["frame"].rgba, expected.rgba)
    np.testing.assert_array_equal(live.CACHE["frame"].small_depth, expected.small_depth)
    # the source is cached: a second refresh does not save the Render Result again
    cached = live.CACHE["frame"]
    calls = []
    monkeypatch.setattr(live, "render_result_input",
                        lambda *a, **k: calls.append(a) or pytest.fail("loaded again"))
    scene.zdepth.dof_focus_pixel = (5, H - 3)
    assert bpy.ops.zdepth.refresh_preview() == {"FINISHED"}
    assert live.CACHE["frame"] is cached and not calls
    assert live.LIVE.last.lens.focus_distance == pytest.approx(NEAR, rel=1e-3)
    # Apply still makes the full-resolution result
    monkeypatch.undo()
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT") == {"FINISHED"}
    assert tuple(bpy.data.images["Z-Depth DOF"].size) == (W, H)
    assert "zdepth_full_size" not in bpy.data.images["Z-Depth DOF"]


def test_a_new_render_is_loaded_again(addon, tmp_path):
    import bpy
    from blender_zdepth.blender.refocus import live

    scene = rendered(bpy, tmp_path)
    assert bpy.ops.zdepth.refresh_preview() == {"FINISHED"}
    first = live.CACHE["frame"]
    scene.objects["NearPlane"].hide_render = True
    bpy.ops.render.render()  # render_complete: the Render Result is new
    assert bpy.ops.zdepth.refresh_preview() == {"FINISHED"}
    assert live.CACHE["frame"] is not first
    assert np.isinf(live.CACHE["frame"].depth).sum() == 0  # the far plane fills the view
    assert live.CACHE["frame"].depth.max() == pytest.approx(FAR, rel=1e-3)


def test_live_preview_is_debounced_and_computed_in_a_thread(addon, tmp_path, monkeypatch):
    import threading

    import bpy
    from blender_zdepth.blender.refocus import live

    scene = rendered(bpy, tmp_path, dof_focus_mode="DISTANCE", dof_focus_distance=NEAR)
    zd = scene.zdepth
    # off: changes schedule nothing
    zd.dof_focus_distance = 3.0
    assert not live.LIVE.busy and not bpy.app.timers.is_registered(live._tick)
    threads = []
    from blender_zdepth.core.refocus import preview as core_preview

    original = core_preview.render_preview

    def recording(*args, **kwargs):
        threads.append(threading.current_thread())
        return original(*args, **kwargs)

    monkeypatch.setattr(core_preview, "render_preview", recording)
    zd.live_preview = True  # on: one refresh right away
    assert bpy.app.timers.is_registered(live._tick)
    run_timer(live)
    image_rgba_at_near = image_rgba(bpy)
    assert live.LIVE.refreshes == 1 and live.LIVE.error == ""
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert live._tick() is None and not live.LIVE.busy  # idle: the timer ends
    # a burst of changes (focus, f-stop, blades, rotation, max radius): one refresh, the last
    zd.dof_focus_distance = 4.0
    zd.dof_fstop_override = True
    zd.dof_fstop = 1.2
    zd.dof_aperture_override = True
    zd.dof_blades = 5
    zd.dof_rotation = math.radians(10)
    zd.dof_max_radius = 10.0
    zd.dof_focus_distance = FAR
    assert live.LIVE.busy
    assert live._tick() > 0  # still inside the debounce window: nothing computed yet
    run_timer(live)
    assert live.LIVE.refreshes == 2
    assert live.LIVE.last.lens.focus_distance == pytest.approx(FAR)
    assert live.LIVE.last.lens.fstop == pytest.approx(1.2)
    far_focus = image_rgba(bpy)
    assert sharpness(far_focus, NEAR_REGION) < 0.85 * sharpness(image_rgba_at_near, NEAR_REGION)
    # the camera's own focus (Camera mode) refreshes through the depsgraph handler
    zd.dof_focus_mode = "CAMERA"
    run_timer(live)
    count = live.LIVE.refreshes
    scene.camera.data.dof.focus_distance = 6.0
    bpy.context.view_layer.update()
    assert live.LIVE.busy
    run_timer(live)
    assert live.LIVE.refreshes == count + 1
    assert live.LIVE.last.lens.focus_distance == pytest.approx(6.0)
    # the focal-plane view as the live overlay
    zd.live_preview_mode = "FOCAL_PLANE"
    run_timer(live)
    assert live.status_text().startswith("Focal plane")
    # an error is shown in the panel, not raised; off: nothing more is scheduled
    zd.dof_focus_mode = "OBJECT"
    run_timer(live)
    assert "no object is set" in live.status_text()
    zd.live_preview = False
    zd.dof_focus_distance = 2.5
    assert not live.LIVE.busy


def test_camera_aperture_reaches_the_engine(addon, tmp_path):
    import bpy
    from blender_zdepth.blender.scene.optics import engine_settings

    scene = rendered(bpy, tmp_path)
    cam = scene.camera.data.dof
    cam.aperture_blades = 6
    cam.aperture_rotation = math.radians(15)
    cam.aperture_ratio = 2.0
    s = engine_settings(scene)
    assert (s.blades, s.rotation_deg, s.anamorphic) == (6, pytest.approx(15), 2.0)
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT") == {"FINISHED"}
    _, header = rgba_file(tmp_path / "shot_dof.0001.exr")
    assert header["zdepthDofBlades"] == 6
    assert header["zdepthDofRotation"] == pytest.approx(15.0)
    cam.aperture_blades = 0
    assert engine_settings(scene).blades == 0
    # the panel's values as overrides; blades 1 and 2 are round, as in Cycles (never a failed
    # frame; Blender itself stores a camera's 1 or 2 blades as 3)
    zd = scene.zdepth
    zd.dof_aperture_override = True
    zd.dof_anamorphic = 0.5
    for blades in (1, 2):
        zd.dof_blades = blades
        s = engine_settings(scene)
        assert (s.blades, s.anamorphic) == (0, 0.5)
        assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT") == {"FINISHED"}
        assert rgba_file(tmp_path / "shot_dof.0001.exr")[1]["zdepthDofBlades"] == 0
    zd.dof_blades = 8
    zd.dof_quality = "high"
    s = engine_settings(scene)
    assert (s.blades, s.quality) == (8, "high")
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT") == {"FINISHED"}
    assert rgba_file(tmp_path / "shot_dof.0001.exr")[1]["zdepthDofBlades"] == 8


def test_animated_aperture_is_read_per_frame(addon, tmp_path):
    import bpy
    from blender_zdepth.blender.refocus.batch import DofBatch

    scene = _render_focus_pull(bpy, tmp_path)
    configure(scene, tmp_path, dof_output_dir="")
    dof = scene.camera.data.dof
    dof.aperture_blades = 5
    dof.aperture_rotation = 0.0
    dof.keyframe_insert("aperture_rotation", frame=1)
    dof.aperture_rotation = math.radians(40)
    dof.keyframe_insert("aperture_rotation", frame=3)
    dof.aperture_ratio = 1.0
    dof.keyframe_insert("aperture_ratio", frame=1)
    dof.aperture_ratio = 3.0
    dof.keyframe_insert("aperture_ratio", frame=3)
    scene.frame_set(2)
    batch = DofBatch(scene, "FILES", frames=[1, 2, 3])
    assert scene.frame_current == 2
    rot = [batch.plans[f].settings.rotation_deg for f in (1, 2, 3)]
    ratio = [batch.plans[f].settings.anamorphic for f in (1, 2, 3)]
    assert rot[0] == pytest.approx(0) and rot[2] == pytest.approx(40) and 0 < rot[1] < 40
    assert ratio[0] == pytest.approx(1) and ratio[2] == pytest.approx(3) and 1 < ratio[1] < 3
    while not batch.done:
        batch.step()
    batch.finish()
    headers = [rgba_file(tmp_path / f"r_dof_{f:04d}.exr")[1] for f in (1, 2, 3)]
    assert [h["zdepthDofRotation"] for h in headers] == pytest.approx(rot, rel=1e-5)
    assert all(h["zdepthDofBlades"] == 5 for h in headers)


def test_double_depth_of_field_warning(addon, tmp_path):
    import bpy
    from blender_zdepth.blender.refocus import live
    from blender_zdepth.blender.refocus.batch import DofBatch
    from blender_zdepth.blender.scene.optics import camera_had_dof

    scene = rendered(bpy, tmp_path)
    batch = DofBatch(scene, "RENDER_RESULT")
    while not batch.done:
        batch.step()
    batch.finish()
    assert batch.warnings == []
    assert "zdepthDofWarning" not in rgba_file(tmp_path / "shot_dof.0001.exr")[1]
    scene.camera.data.dof.use_dof = True  # the camera now: not what the render had
    batch = DofBatch(scene, "RENDER_RESULT")
    while not batch.done:
        batch.step()
    batch.finish()
    assert batch.warnings == []
    bpy.ops.render.render()  # a render with the camera's DOF
    scene.camera.data.dof.use_dof = False  # what counts is what the render had
    batch = DofBatch(scene, "RENDER_RESULT")
    while not batch.done:
        batch.step()
    batch.finish()
    assert batch.warnings and "second time" in batch.warnings[0][1]
    assert batch.report.written  # a warning, not a refusal
    _, header = rgba_file(tmp_path / "shot_dof.0001.exr")
    assert "camera's depth of field" in header["zdepthDofWarning"]
    assert bpy.ops.zdepth.refresh_preview() == {"FINISHED"}
    assert "camera DOF" in live.status_text()
    # the header records it for files: that wins over the camera's setting now
    assert camera_had_dof(scene, {"zdepthCameraDofEnabled": 0}) is False
    scene.camera.data.dof.use_dof = False
    assert camera_had_dof(scene, {"zdepthCameraDofEnabled": 1}) is True
    assert camera_had_dof(scene, {}) is False


def test_frame_range_fields(addon, tmp_path):
    import bpy
    from blender_zdepth.blender.refocus.inputs import panel_frames

    scene = _render_focus_pull(bpy, tmp_path)
    configure(scene, tmp_path, dof_output_dir="")
    zd = scene.zdepth
    # the scene's range until one is typed
    assert zd.dof_use_scene_range
    assert (zd.dof_frame_start, zd.dof_frame_end, zd.dof_frame_step) == (1, 3, 1)
    scene.frame_end = 4
    assert zd.dof_frame_end == 4
    zd.dof_frame_step = 2  # typing a value: the other fields keep the scene's
    assert not zd.dof_use_scene_range
    assert (zd.dof_frame_start, zd.dof_frame_end, zd.dof_frame_step) == (1, 4, 2)
    zd.dof_frame_end = 3
    scene.frame_end = 10  # no longer followed
    assert panel_frames(scene) == [1, 3]
    assert bpy.ops.zdepth.apply_dof(source="FILES") == {"FINISHED"}
    names = sorted(n for n in os.listdir(tmp_path) if n.startswith("r_dof_"))
    assert names == ["r_dof_0001.exr", "r_dof_0003.exr"]
    zd.dof_frame_start = 5
    with pytest.raises(RuntimeError, match="runs backwards"):
        bpy.ops.zdepth.apply_dof(source="FILES")
    zd.dof_use_scene_range = True
    scene.frame_end = 3
    assert panel_frames(scene) == [1, 2, 3]


def test_apply_in_a_worker_thread_completes_and_cancels(addon, tmp_path, monkeypatch):
    """What the modal operator does in the interface: the frames are refocused in a worker
    thread (the modal only polls it on a timer, Esc asks it to stop); driven directly here,
    since a modal cannot run headless."""
    import threading

    import bpy
    from blender_zdepth.blender.refocus.batch import DofBatch
    from blender_zdepth.core import refocus
    from blender_zdepth.core.refocus import planned

    scene = _render_focus_pull(bpy, tmp_path)
    configure(scene, tmp_path, dof_output_dir="")
    batch = DofBatch(scene, "FILES", frames=[1, 2, 3])
    batch.start()
    assert batch.wait(60)
    assert batch.error is None and batch.done and batch.progress == 3
    report = batch.finish()
    assert [r.status for r in report.results] == ["written"] * 3
    assert tuple(bpy.data.images["Z-Depth DOF"].size) == (W, H)
    for f in (1, 2, 3):
        os.remove(tmp_path / f"r_dof_{f:04d}.exr")
    # cancel while frame 1 is being refocused: it is finished whole, the rest never start
    started, release = threading.Event(), threading.Event()
    real = refocus.refocus_frame
    worker = []

    def slow(job, *args, **kwargs):
        worker.append(threading.current_thread())
        started.set()
        assert release.wait(30)
        return real(job, *args, **kwargs)

    monkeypatch.setattr(planned, "refocus_frame", slow)
    batch = DofBatch(scene, "FILES", frames=[1, 2, 3])
    batch.start()
    assert started.wait(30)
    assert batch.running and not batch.done  # the main thread is free meanwhile
    batch.request_cancel()
    assert "cancelling" in batch.status_text()
    release.set()
    assert batch.wait(60)
    report = batch.finish()
    assert worker[0] is not threading.main_thread()
    assert [r.status for r in report.results] == ["written", "cancelled", "cancelled"]
    names = sorted(os.listdir(tmp_path))
    assert [n for n in names if n.startswith("r_dof_")] == ["r_dof_0001.exr"]
    assert not [n for n in names if "tmp" in n]
    result, _ = rgba_file(tmp_path / "r_dof_0001.exr")
    assert result.shape == (H, W, 4)


def test_modal_polls_the_worker_and_esc_cancels(addon, tmp_path, monkeypatch):
    """The operator's modal() on timer and Esc events, called as the window manager would call
    it (a modal cannot run headless): it only polls the worker thread, passes other events
    through (the interface stays usable), and concludes once the worker has stopped."""
    import threading
    import types

    import bpy
    from blender_zdepth.blender.refocus.batch import DofBatch
    from blender_zdepth.blender.ui.dof_operators import ZDEPTH_OT_apply_dof
    from blender_zdepth.core import refocus
    from blender_zdepth.core.refocus import planned

    scene = _render_focus_pull(bpy, tmp_path)
    configure(scene, tmp_path, dof_output_dir="")
    op_cls = ZDEPTH_OT_apply_dof
    reports, statuses = [], []

    def fake_operator(batch):
        op = types.SimpleNamespace(_batch=batch, _timer=None, diagnostic=False,
                                   report=lambda kind, text: reports.append((kind, text)))
        op._set_status = lambda context, text: statuses.append(text)
        op._end_modal = lambda context: op_cls._end_modal(op, context)
        op._conclude = lambda b: op_cls._conclude(op, b)
        return op

    def event(kind):
        return types.SimpleNamespace(type=kind)

    started, release = threading.Event(), threading.Event()
    real = refocus.refocus_frame

    def slow(job, *args, **kwargs):
        started.set()
        assert release.wait(30)
        return real(job, *args, **kwargs)

    monkeypatch.setattr(planned, "refocus_frame", slow)
    batch = DofBatch(scene, "FILES", frames=[1, 2, 3])
    op = fake_operator(batch)
    batch.start()
    assert started.wait(30)
    ctx = bpy.context
    assert op_cls.modal(op, ctx, event("MOUSEMOVE")) == {"PASS_THROUGH"}
    assert op_cls.modal(op, ctx, event("TIMER")) == {"PASS_THROUGH"}  # still running
    assert "1/3" in statuses[-1]
    assert op_cls.modal(op, ctx, event("ESC")) == {"RUNNING_MODAL"}
    assert "cancelling" in statuses[-1]
    release.set()
    assert batch.wait(60)
    result = op_cls.modal(op, ctx, event("TIMER"))
    assert result == {"FINISHED"} and op._batch is None
    assert any("1 written" in text and "2 cancelled" in text for _, text in reports)
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith("r_dof_")) == \
        ["r_dof_0001.exr"]


def test_a_dragged_slider_refreshes_as_it_goes(addon, tmp_path):
    """Debounce, but not starvation: a steady stream of changes (every 30 ms, closer than the
    debounce) still starts refreshes, and the last value is the one shown at the end."""
    import bpy
    from blender_zdepth.blender.refocus import live

    scene = rendered(bpy, tmp_path, dof_focus_mode="DISTANCE", dof_focus_distance=NEAR)
    zd = scene.zdepth
    zd.live_preview = True
    run_timer(live)
    started, distance = 0, NEAR
    t_end = time.monotonic() + 4 * live.MAX_WAIT_S
    while time.monotonic() < t_end:
        distance += 0.05
        zd.dof_focus_distance = distance
        busy_before = live.LIVE.thread is not None
        live._tick()
        started += (not busy_before) and live.LIVE.thread is not None
        time.sleep(0.03)
    assert started >= 1
    run_timer(live)
    assert live.LIVE.last.lens.focus_distance == pytest.approx(distance)


def test_apply_in_worker_processes_completes_and_cancels(addon, tmp_path):
    """Several frames at once (core.batch.ParallelRun, what Apply chooses for a long or
    large sequence on a machine with the cores and memory for it): the same outputs as one at a
    time, the double-DOF warning and the last frame come back, Esc stops the workers at once
    and leaves no partial file."""
    import pickle

    import bpy
    from blender_zdepth.blender.refocus.batch import DofBatch

    scene = _render_focus_pull(bpy, tmp_path)
    configure(scene, tmp_path, dof_output_dir="")
    scene.camera.data.dof.use_dof = True  # a double-DOF warning travels back from the workers
    batch = DofBatch(scene, "FILES", frames=[1, 2, 3])
    assert batch.workers_for(None)[0] == 1  # 3 tiny frames: not worth starting processes
    pickle.loads(pickle.dumps(batch.task))  # what the workers get
    serial = {}
    while not batch.done:
        result = batch.step()
        serial[result.frame] = rgba_file(tmp_path / f"r_dof_{result.frame:04d}.exr")[0]
    batch.finish()
    for f in (1, 2, 3):
        os.remove(tmp_path / f"r_dof_{f:04d}.exr")
    batch = DofBatch(scene, "FILES", frames=[1, 2, 3])
    batch.start(workers=2)
    assert batch.parallel is not None and batch.parallel.workers == 2
    assert "at once" in batch.status_text()
    assert batch.wait(120)
    report = batch.finish()
    assert batch.error is None, batch.error
    assert [r.status for r in report.results] == ["written"] * 3, report.summary()
    for f in (1, 2, 3):
        result, header = rgba_file(tmp_path / f"r_dof_{f:04d}.exr")
        np.testing.assert_allclose(result, serial[f], atol=1e-6)
        assert "zdepthDofWarning" in header
    assert [f for f, _ in batch.warnings] == [1, 2, 3]
    assert batch.last_frame == 3
    np.testing.assert_allclose(image_rgba(bpy), serial[3], atol=1e-5)
    # Esc right away: the workers are stopped, nothing half-written is left
    for f in (1, 2, 3):
        os.remove(tmp_path / f"r_dof_{f:04d}.exr")
    batch = DofBatch(scene, "FILES", frames=[1, 2, 3])
    batch.start(workers=2)
    batch.request_cancel()
    assert batch.wait(120)
    report = batch.finish()
    assert "cancelled" in {r.status for r in report.results}
    names = os.listdir(tmp_path)
    assert not [n for n in names if "tmp" in n]
    # Keep All Passes travels with the workers (they write what one frame at a time writes)
    scene.zdepth.dof_multilayer = True
    batch = DofBatch(scene, "FILES", frames=[1, 2, 3])
    batch.start(workers=2)
    assert batch.parallel.task.multilayer is True
    batch.request_cancel()
    assert batch.wait(120)
    batch.finish()
    for f in (1, 2, 3):
        path = tmp_path / f"r_dof_{f:04d}.exr"
        if path.exists():  # a frame finished before the stop is whole
            assert rgba_file(path)[0].shape == (H, W, 4)


def test_live_preview_follows_a_new_render_and_the_frame(addon, tmp_path):
    """With Live Preview on, a finished render (render_complete handler) and a frame change
    (frame_change_post handler) each refresh the preview; a new render is loaded again."""
    import bpy
    from blender_zdepth.blender.refocus import live

    scene = rendered(bpy, tmp_path, dof_focus_mode="DISTANCE", dof_focus_distance=NEAR)
    scene.zdepth.live_preview = True
    run_timer(live)
    first, count = live.CACHE["frame"], live.LIVE.refreshes
    scene.objects["NearPlane"].hide_render = True
    bpy.ops.render.render()
    assert live.LIVE.busy
    run_timer(live)
    assert live.LIVE.refreshes == count + 1 and live.CACHE["frame"] is not first
    assert live.CACHE["frame"].depth.max() == pytest.approx(FAR, rel=1e-3)
    scene.frame_set(scene.frame_current + 1)
    assert live.LIVE.busy
    run_timer(live)
    assert live.LIVE.refreshes == count + 2
