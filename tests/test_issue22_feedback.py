"""What a user meets in Blender (issue 22): a failed Export on render is reported and listed in
the panel until an export succeeds; the camera's depth of field warnings come from what the
render had (the Render Result's render, a file's header), not from the camera now; Apply names
the Render Result it refocused in the output's header. Real bpy, tiny Cycles renders."""

import os

import pytest

pytestmark = [pytest.mark.blender, pytest.mark.slow]


def _scene(bpy, tmp_path):
    from blender_zdepth.blender import scenes

    scene = scenes.empty_scene((24, 16), "CYCLES", 1)
    scenes.add_object(scene, "cube", "Box", scenes.emission_material("Box", (.2, .4, .9)),
                      size=2.0, location=(0, 6, 0))
    scenes.add_camera(scene, (0, 0, 0), (0, 5, 0), lens=35.0, clip=(0.1, 100.0))
    scene.camera.data.dof.aperture_fstop = 2.0
    scene.camera.data.dof.focus_distance = 5.0
    scene.render.filepath = str(tmp_path / "beauty" / "shot.####")
    return scene


def _labels(bpy, scene, panel_id):
    from test_panel_draw import Recorder, _panels

    (panel,) = [p for p in _panels(bpy) if p.bl_idname == panel_id]
    log = []
    fake = type("PanelSelf", (), {})()
    fake.layout = Recorder(bpy, log)
    panel.draw(fake, bpy.context)
    return " ".join(entry[1] for entry in log if entry[0] == "label")


def test_failed_export_is_reported_and_listed_until_an_export_succeeds(bpy, addon, tmp_path):
    """Was: with an output folder that cannot be created F12 returned FINISHED and a console
    line was the only trace."""
    from blender_zdepth.blender.render import handlers

    scene = _scene(bpy, tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    zd = scene.zdepth
    zd.export_enabled = True
    zd.output_dir = str(tmp_path / "a_file" / "depth")  # cannot be created
    handlers._state.to_report = []
    assert bpy.ops.render.render() == {"FINISHED"}
    failure = handlers.last_failure()
    assert failure is not None and failure[0] == scene.frame_current, failure
    assert handlers._state.to_report and "depth export failed" in handlers._state.to_report[0]
    # the main-thread timer reports it (an operator's report: status bar and Info editor) and
    # keeps running; the queue is emptied
    assert handlers._report_failures() == handlers.POLL_S
    assert handlers._state.to_report == []
    assert bpy.ops.zdepth.report_failure("EXEC_DEFAULT", message="x") == {"FINISHED"}
    text = _labels(bpy, scene, "RENDER_PT_zdepth")
    assert f"Last export failed (frame {failure[0]})" in text
    # a render whose export fails again keeps it; one that succeeds clears it
    zd.output_dir = str(tmp_path / "depth")
    assert bpy.ops.render.render() == {"FINISHED"}
    assert handlers.last_failure() is None
    assert "Last export failed" not in _labels(bpy, scene, "RENDER_PT_zdepth")
    assert os.listdir(tmp_path / "depth")
    # another render with export off keeps nothing stale either
    zd.export_enabled = False
    bpy.ops.render.render()
    assert handlers.last_failure() is None


def test_camera_dof_warnings_come_from_what_the_render_had(bpy, addon, tmp_path):
    from blender_zdepth.blender.refocus.inputs import files_had_dof
    from blender_zdepth.blender.scene.optics import camera_had_dof
    from blender_zdepth.core import exr

    scene = _scene(bpy, tmp_path)
    cam = scene.camera
    zd = scene.zdepth
    zd.export_enabled = True
    zd.output_dir = str(tmp_path / "depth")
    zd.dof_output_dir = str(tmp_path / "dof")
    zd.dof_source = "RENDER_RESULT"
    cam.data.dof.use_dof = True
    bpy.ops.render.render()
    cam.data.dof.use_dof = False  # the camera now: off; the render had it on
    assert camera_had_dof(scene, render_result=True) is True
    assert "The render had the camera's depth of field on" in _labels(
        bpy, scene, "RENDER_PT_zdepth_dof")
    # Apply: warned, written with the warning and the Render Result's real name as its source
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT") == {"FINISHED"}
    (out,) = [f for f in os.listdir(tmp_path / "dof") if f.endswith(".exr")]
    header = exr.read_exr(str(tmp_path / "dof" / out)).header
    assert "camera's depth of field" in header["zdepthDofWarning"]
    assert header["zdepthDofSource"] == (f"Render Result (frame {scene.frame_current}) of an "
                                         f"unsaved .blend")
    # Files: the exported file's header says so, whatever the camera says now
    zd.dof_source = "FILES"
    assert files_had_dof(scene) is True
    assert "The file's render had the camera's depth of field on" in _labels(
        bpy, scene, "RENDER_PT_zdepth_dof")
    # a render without it: no warning, though the camera has it on now
    bpy.ops.render.render()  # use_dof off
    cam.data.dof.use_dof = True
    assert files_had_dof(scene) is False
    zd.dof_source = "RENDER_RESULT"
    assert camera_had_dof(scene, render_result=True) is False
    assert "camera's depth of field on" not in _labels(bpy, scene, "RENDER_PT_zdepth_dof")


def test_render_command_warns_once_when_the_render_had_the_camera_dof(bpy, run_cli, tmp_path):
    from blender_zdepth.blender import scenes

    scene = scenes.empty_scene((24, 16), "CYCLES", 1)
    scenes.add_object(scene, "cube", "Box", scenes.emission_material("Box", (.2, .4, .9)),
                      size=2.0, location=(0, 6, 0))
    cam = scenes.add_camera(scene, (0, 0, 0), (0, 5, 0), clip=(0.1, 50.0))
    cam.data.dof.use_dof = True
    scene.frame_start, scene.frame_end = 1, 2
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    r = run_cli("render", tmp_path / "shot.blend", "--out", tmp_path / "out", timeout=240)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("zdepthCameraDofEnabled=1") == 1, r.stderr
    assert "zdepth_0001.exr, zdepth_0002.exr" in r.stderr
    r = run_cli("inspect", tmp_path / "out" / "zdepth_0001.exr")
    assert "warning: the render had the camera's depth of field on" in r.stdout
