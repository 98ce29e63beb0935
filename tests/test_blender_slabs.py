"""Depth layers as slabs with real renders (blender/render/peel.py, mode Slabs): the deep file
of a motion-blurred frame and of a half-transparent plane holds partial-coverage samples at the
right depths and flattens to the beauty; export on render (in the handler and forced through
the child process); ``render --depth-layers 3 --slabs``; bad boundaries; the automatic mode and
the flat-Z warning (panel row, ``render`` line)."""

import os

import numpy as np
import pytest
from blender_zdepth.core.frame import load_frame

pytestmark = pytest.mark.blender

CURTAIN = 0.35


def _shot(bpy, engine="CYCLES", resolution=(48, 27), samples=16, blur=True):
    """A 35 % opaque yellow curtain at 2 m (left of the frame), a red box moving fast at 4 m
    (motion blur), a green wall at 10 m, a blue sky at the right edge; camera clip 0.1-50."""
    from blender_zdepth.blender import scenes

    scene = scenes.empty_scene(resolution, engine, samples)
    scenes.set_world_color(scene, (0.1, 0.1, 0.3))
    mat = scenes.emission_material("Curtain", (1, 1, 0), alpha=CURTAIN)
    scenes.add_object(scene, "plane", "Curtain", mat, size=1.0, location=(-0.5, 2, 0),
                      rotation=(1.5707963, 0, 0))
    box = scenes.add_object(scene, "cube", "Box", scenes.emission_material("Box", (1, 0, 0)),
                            size=0.6, location=(0.5, 4, 0))
    if blur:
        box.keyframe_insert("location", frame=1)
        box.location.x = 1.3
        box.keyframe_insert("location", frame=2)
    scenes.add_object(scene, "plane", "Wall", scenes.emission_material("Wall", (0, 1, 0)),
                      size=8.0, location=(-0.5, 10, 0), rotation=(1.5707963, 0, 0))
    cam = scenes.add_camera(scene, (0, 0, 0), (0, 10, 0), clip=(0.1, 50.0))
    cam.data.dof.focus_distance = 4.0
    scene.render.use_motion_blur = blur
    scene.frame_start = scene.frame_end = 1
    scene.frame_set(1)
    return scene


def _state(scene):
    cam = scene.camera.data
    r = scene.render
    values = {"clip": (cam.clip_start, cam.clip_end), "film": r.film_transparent,
              "threshold": [v.pass_alpha_threshold for v in scene.view_layers],
              "persistent": r.use_persistent_data, "scenes": len(__import__("bpy").data.scenes)}
    if r.engine == "CYCLES":
        values["samples"] = (scene.cycles.samples, scene.cycles.use_denoising)
    return values


def _check_slab_file(path, flat_path, *, curtain_z=2.0, box_z=4.0):
    """The deep file: slabs recorded, flattening = the beauty, partial coverage where the
    curtain and the motion trail are, each at its own depth."""
    from blender_zdepth.core import deep, exr

    image = exr.read_deep(str(path))
    flat = load_frame(str(flat_path))
    assert image.header[deep.MODE_KEY] == "slabs"
    bounds = [float(b) for b in image.header[deep.SLAB_BOUNDS_KEY].split()]
    assert bounds[0] == pytest.approx(0.1) and bounds[-1] == pytest.approx(50.0)
    assert image.header[deep.LAYERS_KEY] == len(bounds) - 1
    rgba, _ = deep.flatten(image)
    assert np.abs(rgba - flat.rgba).mean() < 1e-3
    a, z = image.channels["A"], image.channels["Z"]
    curtain = np.abs(z - curtain_z) < 0.05
    assert curtain.sum() > 20
    assert np.median(a[curtain]) == pytest.approx(CURTAIN, abs=0.08)
    trail = (np.abs(z - box_z) < 0.5) & (a > 0.05) & (a < 0.95)
    return image, curtain, trail


@pytest.mark.slow
def test_slabs_of_a_motion_blurred_frame_and_a_half_transparent_plane(bpy, tmp_path):
    from blender_zdepth.blender.render import export, peel
    from blender_zdepth.blender.scene.options import LayerOptions

    scene = _shot(bpy)
    assert peel.layer_mode(scene, LayerOptions(3)) == "SLABS"  # automatic: blur, curtain
    before = _state(scene)
    out = export.render_with_depth(scene, str(tmp_path), depth_layers=3, with_paths=True)[0]
    assert _state(scene) == before
    assert out["layer_mode"] == "slabs" and len(out["layer_clips"]) == 4
    image, curtain, trail = _check_slab_file(out["deep"], out["depth"])
    assert trail.sum() > 10  # the trail: partly covered by the box, at the box's depth
    # the wall behind the curtain and the box is in the file too (a slab of its own)
    assert (np.abs(image.channels["Z"] - 10.0) < 0.1).sum() > image.counts.size * 0.5


@pytest.mark.slow
def test_peel_stays_the_default_where_a_flat_z_pass_suffices(bpy, tmp_path):
    from blender_zdepth.blender.render import export, peel
    from blender_zdepth.blender.scene import coverage
    from blender_zdepth.blender.scene.options import LayerOptions
    from blender_zdepth.core import deep, exr

    scene = _shot(bpy, blur=False)
    bpy.data.objects["Curtain"].hide_render = True
    assert coverage.flat_depth_limits(scene) == []
    assert peel.layer_mode(scene, LayerOptions(3)) == "PEEL"
    out = export.render_with_depth(scene, str(tmp_path), depth_layers=2, layer_clips="6",
                                   with_paths=True)[0]
    image = exr.read_deep(out["deep"])
    assert image.header[deep.MODE_KEY] == "peel" and out["layer_clips"] == [6.0]
    # a Principled BSDF with alpha below 1 counts as transparent, as does motion blur
    mat = bpy.data.materials.new("Glassy")
    from blender_zdepth.blender import compat
    compat.use_nodes(mat)
    mat.node_tree.nodes.new("ShaderNodeBsdfPrincipled").inputs["Alpha"].default_value = 0.5
    bpy.data.objects["Box"].data.materials.append(mat)
    bpy.data.objects["Box"].material_slots[-1].material = mat
    assert coverage.flat_depth_limits(scene) == ["transparent surfaces (Box, Glassy)"] or \
        coverage.flat_depth_limits(scene) == ["transparent surfaces (Glassy)"]
    scene.render.use_motion_blur = True
    assert coverage.flat_depth_limits(scene)[0] == "motion blur"
    assert peel.layer_mode(scene, LayerOptions(3, mode="PEEL")) == "PEEL"


@pytest.mark.slow
def test_eevee_slabs_keep_the_curtain_and_flatten_to_the_beauty(bpy, tmp_path):
    """EEVEE's own transparency and motion blur (tiny: EEVEE renders through Mesa are slow)."""
    from blender_zdepth.blender.render import export

    scene = _shot(bpy, "EEVEE", (32, 18), 8)
    before = _state(scene)
    out = export.render_with_depth(scene, str(tmp_path), depth_layers=2, layer_clips="3",
                                   layer_mode="slabs", with_paths=True)[0]
    assert _state(scene) == before
    assert out["layer_clips"] == [pytest.approx(0.1), 3.0, 50.0]
    _check_slab_file(out["deep"], out["depth"])


@pytest.mark.slow
@pytest.mark.isolated
@pytest.mark.parametrize("child", [False, True], ids=["handler", "child-process"])
def test_export_on_render_writes_the_slab_deep_file(bpy, addon, tmp_path, monkeypatch, child,
                                                    capsys):
    """Export on render (a still, as ``blender -b -f 1``): in the handler (up to 5.0) and
    forced through the child process (5.1 on): the same deep file as render_with_depth's."""
    from blender_zdepth.blender.render import export
    from blender_zdepth.blender.render import handlers as render_handlers
    from blender_zdepth.core import exr

    scene = _shot(bpy)
    zd = scene.zdepth
    zd.depth_layers = 3
    zd.depth_layer_mode = "SLABS"
    zd.depth_layer_clips = "3, 7"
    reference = export.render_with_depth(scene, str(tmp_path / "ref"), with_paths=True)[0]
    zd.export_enabled = True
    zd.output_dir = str(tmp_path / "z")
    scene.render.filepath = os.path.join(bpy.app.tempdir, "img", "####")
    monkeypatch.setattr(render_handlers, "_passes_in_child", lambda: child)
    before = _state(scene)
    assert bpy.ops.render.render(write_still=False) == {"FINISHED"}
    assert render_handlers.last_errors() == []
    assert _state(scene) == before
    out = capsys.readouterr().out
    assert "depth layers (slabs 0.1, 3, 7, 50) written to" in out
    assert ("3 depth-layer pass(es) rendered in a separate process" in out) == child
    deep_path = tmp_path / "z" / "zdepth_0001_deep.exr"
    _check_slab_file(deep_path, tmp_path / "z" / "zdepth_0001.exr")
    a, b = exr.read_deep(reference["deep"]), exr.read_deep(str(deep_path))
    np.testing.assert_array_equal(a.counts, b.counts)
    for key in a.channels:
        np.testing.assert_allclose(a.channels[key], b.channels[key], atol=1e-5, err_msg=key)


def _save(bpy, path, **kwargs):
    _shot(bpy, **kwargs)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return str(path)


@pytest.mark.slow
def test_render_command_with_slabs_and_its_warning(bpy, run_cli, tmp_path):
    blend = _save(bpy, tmp_path / "shot.blend")
    plain = run_cli("render", blend, "--out", tmp_path / "plain", timeout=240)
    assert plain.returncode == 0, plain.stderr
    warnings = [line for line in plain.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and warnings[0].startswith("blender_zdepth: warning: ")
    assert "motion blur and transparent surfaces (Curtain)" in warnings[0]
    assert "depth layers as slabs fix it" in warnings[0]
    result = run_cli("render", blend, "--out", tmp_path / "slabs", "--depth-layers", "3",
                     "--slabs", timeout=240)
    assert result.returncode == 0, result.stderr
    assert "with 3 depth layers as slabs: 3 slab render(s) per frame of 4 samples, " \
           "automatic boundaries" in result.stdout
    assert "zdepth_0001_deep.exr  (slabs 0.1, " in result.stdout
    assert "warning:" not in result.stdout + result.stderr
    _check_slab_file(tmp_path / "slabs" / "zdepth_0001_deep.exr",
                     tmp_path / "slabs" / "zdepth_0001.exr")
    # the flat file is the render's own, layers or not
    np.testing.assert_array_equal(load_frame(str(tmp_path / "slabs" / "zdepth_0001.exr")).rgba,
                                  load_frame(str(tmp_path / "plain" / "zdepth_0001.exr")).rgba)


@pytest.mark.slow
@pytest.mark.parametrize("clips, message", [
    ("7,3", "clip distances must increase, not 7, 3"),
    ("3,60", "clip distance 60 is beyond the camera's clip end 50"),
    ("0.05,3", "clip distance 0.05 is not beyond the camera's clip start 0.1"),
    ("3", "3 depth layers need 2 clip distance(s) (slab boundaries), not 1"),
])
def test_bad_slab_boundaries_exit_2_in_one_line(bpy, run_cli, tmp_path, clips, message):
    blend = _save(bpy, tmp_path / "shot.blend")
    result = run_cli("render", blend, "--out", tmp_path / "o", "--depth-layers", "3",
                     "--slabs", "--layer-clips", clips, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not os.path.exists(tmp_path / "o" / "zdepth_0001.exr")


class _Layout:
    """A stand-in UILayout that records the labels drawn (everything else returns itself)."""

    def __init__(self, labels):
        self._labels = labels

    def label(self, text="", **kwargs):
        self._labels.append(text)

    def __getattr__(self, name):
        def call(*args, **kwargs):
            return self
        return call


def test_panel_warns_where_a_flat_z_pass_falls_short(bpy, addon):
    from blender_zdepth.blender.ui.panels import RENDER_PT_zdepth

    def labels():
        found = []
        fake = type("PanelSelf", (), {})()
        fake.layout = _Layout(found)
        RENDER_PT_zdepth.draw(fake, bpy.context)
        return " ".join(found)

    scene = _shot(bpy)
    assert "depth layers as slabs fix" in labels()
    assert "motion blur and transparent surfaces" in labels()
    scene.zdepth.depth_layers = 3  # automatic mode: slabs, which fix it: no warning
    assert "slabs fix" not in labels()
    scene.zdepth.depth_layer_mode = "PEEL"
    assert "slabs fix" in labels()
    scene.zdepth.depth_layer_mode = "SLABS"
    scene.render.use_motion_blur = False
    bpy.data.objects["Curtain"].hide_render = True
    scene.zdepth.depth_layers = 1
    assert "slabs fix" not in labels()


@pytest.mark.slow
def test_workbench_slabs_flatten_to_the_beauty(bpy, tmp_path):
    """Workbench renders slabs too (no motion blur; its anti-aliasing gives the coverage)."""
    from blender_zdepth.blender.render import export
    from blender_zdepth.core import deep, exr

    scene = _shot(bpy, "BLENDER_WORKBENCH", blur=False)
    bpy.data.objects["Curtain"].hide_render = True
    before = _state(scene)
    out = export.render_with_depth(scene, str(tmp_path), depth_layers=3, layer_clips="3,7",
                                   layer_mode="slabs", with_paths=True)[0]
    assert _state(scene) == before
    image = exr.read_deep(out["deep"])
    assert image.header[deep.MODE_KEY] == "slabs"
    rgba, _ = deep.flatten(image)
    assert np.abs(rgba - load_frame(out["depth"]).rgba).mean() < 1e-3
    z = image.channels["Z"]
    assert (np.abs(z - 4.0) < 0.6).sum() > 10 and (np.abs(z - 10.0) < 0.1).sum() > 100
    # the wall behind the box is in the file (the box's slab ends before it)
    box = image.counts >= 2
    assert box.sum() > 10
