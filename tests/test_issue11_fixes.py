"""Regression tests for the defects of issue 11 found while using the add-on as an artist would
(each fails without its fix): output folders of Apply, Workbench's depth pass, blade counts
below 3, the Z pass under a wired node when export is unticked, Apply on files exported with the
beauty beside, and the messages. Real bpy, tiny Cycles / Workbench renders.

Run on bpy 5.0 (.venv) and 4.5 LTS (.venv-4.5).
"""

import os
import tempfile
import types

import numpy as np
import pytest
from blender_zdepth.core.frame import load_frame

pytestmark = pytest.mark.blender


def make_scene(engine="CYCLES", size=(32, 24), clip=(0.1, 100.0), frames=(1, 1)):
    """A ball 5 m in front of the camera, a box at 9 m, sky around (background); emission
    only, one sample."""
    from blender_zdepth.blender import scenes

    scene = scenes.empty_scene(size, engine, 1)
    scenes.add_object(scene, "uv_sphere", "Ball", scenes.emission_material("Ball", (1, .5, .2)),
                      radius=1.0, location=(-0.8, 5, 0), segments=16, ring_count=8)
    scenes.add_object(scene, "cube", "Box", scenes.emission_material("Box", (.2, .4, .9)),
                      size=2.0, location=(1.5, 9, 0.3))
    cam = scenes.add_camera(scene, (0, 0, 0), (0, 5, 0), lens=35.0, clip=clip)
    cam.data.dof.focus_distance = 5.0
    cam.data.dof.aperture_fstop = 1.0
    scene.frame_start, scene.frame_end = frames
    scene.frame_set(frames[0])
    if hasattr(scene, "zdepth"):
        scene.zdepth.dof_max_radius = 4.0
    return scene


def files_in(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


# -- defect 1: the scene's output folder ---------------------------------------------------------

def test_render_output_folder_keeps_a_trailing_separator(bpy, addon):
    from blender_zdepth.blender.scene.paths import render_output_folder

    scene = bpy.context.scene
    scene.render.filepath = "/tmp/"  # Blender's default
    assert render_output_folder(scene) == "/tmp"
    scene.render.filepath = "/x/out/"
    assert render_output_folder(scene) == "/x/out"
    scene.render.filepath = "/x/out/shot_####"
    assert render_output_folder(scene) == "/x/out"


@pytest.mark.slow
def test_apply_on_render_result_writes_into_the_output_folder_not_its_parent(bpy, addon,
                                                                            tmp_path):
    scene = make_scene()
    out = tmp_path / "out"
    scene.render.filepath = str(out) + os.sep  # a folder, like '/tmp/'
    bpy.ops.render.render()
    assert scene.zdepth.dof_output_dir == ""
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT") == {"FINISHED"}
    assert files_in(out) == ["render_dof.0001.exr"]
    assert files_in(tmp_path) == ["out"]


# -- defect 2: an output folder that cannot be written ---------------------------------------------

@pytest.mark.slow
def test_unwritable_output_folder_is_one_clear_error_for_both_sources(bpy, addon, tmp_path):
    from blender_zdepth.blender.render.result import save_render_result

    scene = make_scene()
    bpy.ops.render.render()
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    scene.zdepth.dof_output_dir = str(blocker / "dof")
    temp_before = set(os.listdir(tempfile.gettempdir()))
    with pytest.raises(RuntimeError, match=r"cannot write the refocused frames into .*a_file"):
        bpy.ops.zdepth.apply_dof(source="RENDER_RESULT")
    new = {n for n in set(os.listdir(tempfile.gettempdir())) - temp_before
           if "_dof" in n}
    assert not new  # no silent write into the temporary folder

    src = str(tmp_path / "render.0001.exr")
    save_render_result(scene, src)
    scene.zdepth.dof_input = str(tmp_path / "render.####.exr")
    with pytest.raises(RuntimeError, match=r"cannot write the refocused frames into .*a_file"):
        bpy.ops.zdepth.apply_dof(source="FILES")  # was NotADirectoryError from os.makedirs
    assert files_in(tmp_path) == ["a_file", "render.0001.exr"]


# -- defect 3: Workbench has a depth pass ---------------------------------------------------------

def test_workbench_is_an_engine_with_depth(bpy, addon):
    from blender_zdepth.blender.scene.passes import depth_status, engine_has_depth, setup_passes

    scene = make_scene("BLENDER_WORKBENCH")
    scene.view_layers[0].use_pass_z = False
    assert engine_has_depth("BLENDER_WORKBENCH")
    assert not depth_status(scene)[0]
    changes, problem = setup_passes(scene)
    assert problem is None and changes and scene.view_layers[0].use_pass_z
    ok, text = depth_status(scene)
    assert ok and "Z pass on" in text
    assert bpy.ops.zdepth.setup_passes() == {"FINISHED"}


@pytest.mark.slow
def test_workbench_render_command_writes_the_same_depth_as_cycles(bpy, addon, tmp_path):
    """``render --engine workbench`` is accepted and its depth matches Cycles' planar depth."""
    from blender_zdepth import cli

    make_scene(size=(24, 16))
    blend = str(tmp_path / "shot.blend")
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    depth = {}
    for engine in ("cycles", "workbench"):
        out = tmp_path / engine
        code = cli.main(["render", blend, "--out", str(out), "--engine", engine,
                         "--samples", "1", "--encoding", "linear"])
        assert code == 0
        frame = load_frame(str(out / "zdepth_0001.exr"))
        assert frame.header["zdepthEngine"] == ("CYCLES" if engine == "cycles"
                                                else "BLENDER_WORKBENCH")
        depth[engine] = frame.depth
    c, w = depth["cycles"], depth["workbench"]
    bg_c, bg_w = np.isinf(c), np.isinf(w)
    assert bg_c.any() and bg_w.any() and np.mean(bg_c != bg_w) < 0.05
    both = ~bg_c & ~bg_w
    assert np.median(np.abs(c[both] - w[both])) < 1e-3


def test_workbench_samples_map_to_its_antialiasing(bpy):
    from blender_zdepth.commands.render import workbench_aa

    items = {e.identifier for e in
             bpy.types.SceneDisplay.bl_rna.properties["render_aa"].enum_items}
    got = [workbench_aa(n) for n in (1, 2, 5, 9, 16, 100)]
    assert got == ["OFF", "5", "5", "11", "16", "32"] and set(got) <= items


# -- defect 4: one or two blades are round ------------------------------------------------------

@pytest.mark.parametrize("blades", [1, 2])
def test_one_or_two_blades_are_a_round_aperture(bpy, addon, blades):
    from blender_zdepth.blender.scene.optics import engine_settings

    scene = make_scene()
    scene.zdepth.dof_aperture_override = True  # the panel's blades
    scene.zdepth.dof_blades = blades
    settings = engine_settings(scene)
    assert settings.blades == 0
    settings.validate()  # was: "blades must be 0 ... or 3 to 64" on every frame
    scene.zdepth.dof_blades = 6
    assert engine_settings(scene).blades == 6
    scene.zdepth.dof_aperture_override = False  # the camera's own (Blender stores 1-2 as 3)
    scene.camera.data.dof.aperture_blades = 0
    assert engine_settings(scene).validate().blades == 0


def test_cli_blades_below_three_are_round(tmp_path, run_cli):
    from blender_zdepth.core import exr

    h, w = 12, 16
    rgba = np.ones((h, w, 4), np.float32)
    z = np.full((h, w), 4.0, np.float32)
    src = str(tmp_path / "in.exr")
    exr.write_exr(src, {"RGBA": rgba, "Z": z})
    r = run_cli("dof", src, str(tmp_path / "out.exr"), "--blades", "2", "--focus-distance", "3",
                "--fstop", "2", "--focal-length", "50")
    assert r.returncode == 0, r.stderr
    assert exr.read_exr(str(tmp_path / "out.exr")).header["zdepthDofBlades"] == 0
    r = run_cli("dof", src, str(tmp_path / "out2.exr"), "--blades", "-1", "--focus-distance", "3",
                "--fstop", "2", "--focal-length", "50")
    assert r.returncode == 2 and "--blades" in r.stderr and "Traceback" not in r.stderr


# -- defect 5: unticking export keeps a Z pass that a node uses -------------------------------------

def test_unticking_export_keeps_the_z_pass_a_compositor_node_uses(bpy, addon):
    from blender_zdepth.blender import compat, nodes

    scene = make_scene()
    layer = scene.view_layers[0]
    layer.use_pass_z = False
    scene.zdepth.export_enabled = True  # turns Z on, remembered as export's own
    assert layer.use_pass_z
    assert bpy.ops.zdepth.add_node_group(wire=True) == {"FINISHED"}
    scene.zdepth.export_enabled = False
    assert layer.use_pass_z  # was turned off, leaving the node's link on a hidden socket
    tree = compat.compositor_tree(scene, create=False)
    group = nodes.find_group_node(tree, bpy.data.node_groups[nodes.ENCODE_GROUP])
    link = group.inputs["Depth"].links[0]
    assert link.from_socket.enabled and link.is_valid
    # without a node using it, unticking still removes what export added
    tree.links.remove(link)
    scene.zdepth.export_enabled = True
    layer.use_pass_z = False
    scene.zdepth.export_enabled = True
    scene.zdepth.export_enabled = False
    assert not layer.use_pass_z


# -- defect 7: Apply on files exported with the beauty beside -------------------------------------

@pytest.mark.slow
def test_apply_on_files_finds_exports_with_the_beauty_beside(bpy, addon, tmp_path):
    scene = make_scene(frames=(1, 2))
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(tmp_path / "png" / "shot_####")
    zd = scene.zdepth
    zd.dof_source = "FILES"
    zd.dof_output_dir = str(tmp_path / "dof")
    zd.output_dir = str(tmp_path / "depth")  # not the shared default (temporary folder's zdepth)
    # nothing exported, PNG renders: one clear error up front, not one failure per frame
    with pytest.raises(RuntimeError, match="nothing to refocus: the scene renders PNG files"):
        bpy.ops.zdepth.apply_dof()
    zd.export_enabled, zd.beauty = True, "BESIDE"
    zd.output_dir = str(tmp_path / "depth")
    bpy.ops.render.render(animation=True)
    assert "zdepth_0002_beauty.exr" in files_in(tmp_path / "depth")
    assert bpy.ops.zdepth.apply_dof() == {"FINISHED"}
    assert files_in(tmp_path / "dof") == ["zdepth_dof_0001.exr", "zdepth_dof_0002.exr"]


# -- defect 8: messages ------------------------------------------------------------------------

def test_sky_focus_pixel_is_reported_from_the_bottom_left(bpy, addon):
    from blender_zdepth.blender.scene.optics import camera_lens
    from blender_zdepth.core.errors import ZDepthError

    scene = make_scene()
    zd = scene.zdepth
    zd.dof_focus_mode, zd.dof_focus_pixel = "PIXEL", (2, 1)
    depth = np.full((20, 30), 4.0, np.float32)
    depth[-8:, :8] = np.inf  # sky in the bottom-left corner only
    loaded = types.SimpleNamespace(depth=depth)
    with pytest.raises(ZDepthError) as err:
        camera_lens(scene, loaded)
    assert "focus pixel 2,1 (from the bottom left) looks at the background" in str(err.value)
    assert "(2, 18)" not in str(err.value)
    zd.dof_focus_pixel = (2, 18)  # top left: a surface
    assert camera_lens(scene, loaded)[0].focus_distance == pytest.approx(4.0)


def test_cli_sky_focus_pixel_is_reported_in_the_option_s_own_terms(tmp_path, run_cli):
    from blender_zdepth.core import exr

    h, w = 20, 30
    z = np.full((h, w), 4.0, np.float32)
    z[-8:, :8] = np.inf  # sky in the bottom-left corner only
    src = str(tmp_path / "in.exr")
    exr.write_exr(src, {"RGBA": np.ones((h, w, 4), np.float32), "Z": z})
    r = run_cli("dof", src, str(tmp_path / "out.exr"), "--focus-pixel", "2,1", "--fstop", "2",
                "--focal-length", "50")
    assert r.returncode == 1
    assert "focus pixel 2,1 (from the bottom left) looks at the background" in r.stderr
    assert "(2, 18)" not in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_render_result_failures_and_diagnostics_say_what_the_user_knows(bpy, addon, tmp_path,
                                                                       capfd):
    scene = make_scene()
    scene.zdepth.dof_output_dir = str(tmp_path)
    bpy.ops.render.render()
    capfd.readouterr()
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT", diagnostic=True) == {"FINISHED"}
    out = capfd.readouterr().out
    assert "not written to disk" in out and "1 written" not in out
    assert files_in(tmp_path) == []
    scene.view_layers[0].use_pass_z = False
    bpy.ops.render.render()
    capfd.readouterr()
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT") == {"CANCELLED"}
    out = capfd.readouterr().out
    assert "Render Result (frame 1)" in out and "no depth channel" in out
    assert "zdepth_dof_" not in out and "render_result.exr" not in out


def test_refocused_header_drops_the_depth_channel_name():
    from blender_zdepth.core.refocus.frame import copyable_header

    kept = copyable_header({"zdepthDepthChannel": "Z", "zdepthEncoding": "log",
                            "zdepthFocalLength": 50.0, "Frame": "1"})
    assert kept == {"zdepthFocalLength": 50.0, "Frame": "1"}


def test_half_float_overflow_warnings_read_as_sentences():
    from blender_zdepth.core.precision import precision_report

    for args in (("linear", "16-half", 1.0, 1e5), ("inverse", "16-half", 1e-6, 1e3)):
        warnings = precision_report(*args).warnings
        assert warnings
        for w in warnings:
            assert "not storable of" not in w and "inf " not in w and "vs inf" not in w


def test_panel_precision_words_overflow_and_impossible_range(bpy, addon):
    from blender_zdepth.blender.ui.panels import precision_lines

    scene = make_scene()
    zd = scene.zdepth
    zd.encoding, zd.bit_depth, zd.range_source = "linear", "16", "MANUAL"
    zd.near, zd.far = 0.1, 1e5
    summary, warnings = precision_lines(scene)
    assert "inf" not in summary and "not storable at 100 km" in summary
    zd.near, zd.far = 10.0, 1.0
    summary, warnings = precision_lines(scene)
    assert summary == "" and len(warnings) == 1  # said once, not twice


def test_missing_lens_values_are_asked_for_at_once():
    from blender_zdepth.core.errors import UsageError
    from blender_zdepth.core.lens import Lens

    with pytest.raises(UsageError) as err:
        Lens.from_camera(None)
    text = str(err.value)
    assert "--focal-length" in text and "--fstop" in text and "--focus-distance" in text
    with pytest.raises(UsageError, match="no focus distance in the file's camera"):
        Lens.from_camera(None, fstop=2.0, focal_length_mm=50.0)


def test_render_without_camera_is_not_a_failed_export(bpy, addon, tmp_path, capfd):
    scene = make_scene()
    bpy.data.objects.remove(scene.camera)
    scene.zdepth.export_enabled = True
    scene.zdepth.output_dir = str(tmp_path)
    with pytest.raises(RuntimeError, match="camera"):
        bpy.ops.render.render()
    out = capfd.readouterr().out
    assert "depth export failed" not in out and "the render did not run" in out
