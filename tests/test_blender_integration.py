"""Inside Blender: settings, depth pass set-up, the "Z-Depth Encode" compositor group, depth
export on render (Cycles and EEVEE), the panel's precision words. Real bpy, tiny renders.

Run on bpy 5.0 (.venv) and 4.5 LTS (.venv-4.5).
"""

import glob
import math
import os

import numpy as np
import pytest
from blender_zdepth.core.frame import load_frame

pytestmark = pytest.mark.blender


# -- fixtures and scene helpers -----------------------------------------------------------------

def make_scene(engine="CYCLES", size=(32, 24), clip=(0.1, 100.0), frames=(1, 1)):
    """A sphere 5 m in front of the camera, a cube behind it at 9 m, empty sky around (the
    background); emission only, converges in one sample."""
    from blender_zdepth.blender import scenes

    scene = scenes.empty_scene(size, engine, 1)
    scenes.add_object(scene, "uv_sphere", "Ball", scenes.emission_material("Ball", (1, .5, .2)),
                      radius=1.0, location=(-0.8, 5, 0), segments=16, ring_count=8)
    scenes.add_object(scene, "cube", "Box", scenes.checker_material("Box", (.2, .4, .9),
                                                                    (.1, .1, .1)),
                      size=2.0, location=(1.5, 9, 0.3))
    scenes.add_camera(scene, (0, 0, 0), (0, 5, 0), lens=35.0, clip=clip)
    scene.frame_start, scene.frame_end = frames
    scene.frame_set(frames[0])
    return scene


def animate_focus(scene, values):
    """Key the camera's focus distance: ``{frame: distance}``."""
    dof = scene.camera.data.dof
    for frame, value in values.items():
        dof.focus_distance = value
        dof.keyframe_insert("focus_distance", frame=frame)
    scene.frame_set(scene.frame_start)


def plain_z(path, layer="ViewLayer"):
    """The raw Z pass and Combined of a Blender multilayer EXR (no background handling)."""
    from blender_zdepth.core import exr

    img = exr.read_exr(path)
    z = img.channels[f"{layer}.Depth.Z"]
    rgba = np.stack([img.channels[f"{layer}.Combined.{c}"] for c in "RGBA"], axis=-1)
    return z, rgba


# -- settings ----------------------------------------------------------------------------------

def test_settings_defaults_and_contract_fields(bpy, addon):
    zd = bpy.context.scene.zdepth
    assert (zd.encoding, zd.range_source, zd.bit_depth, zd.codec, zd.beauty) == \
        ("log", "CAMERA", "32", "ZIP", "SAME_FILE")
    assert zd.export_enabled is False and zd.name_pattern == "zdepth_####"
    enum_ids = lambda p: {e.identifier for e in zd.bl_rna.properties[p].enum_items}  # noqa: E731
    assert enum_ids("encoding") == {"log", "linear", "normalized", "inverse"}
    assert enum_ids("codec") == {"ZIP", "PIZ", "ZIPS", "RLE", "NONE"}
    assert enum_ids("dof_focus_mode") == {"CAMERA", "DISTANCE", "OBJECT", "PIXEL"}
    assert enum_ids("dof_source") == {"RENDER_RESULT", "FILES"}
    for name in ("dof_focus_distance", "dof_focus_object", "dof_focus_pixel",
                 "dof_fstop_override", "dof_fstop", "dof_max_radius", "dof_blades",
                 "dof_rotation", "dof_input", "dof_output_dir", "dof_write_png", "output_dir",
                 "write_preview", "near", "far"):
        assert name in zd.bl_rna.properties, name


def test_settings_are_saved_in_the_blend(bpy, addon, tmp_path):
    scene = make_scene()
    scene.zdepth.encoding = "inverse"
    scene.zdepth.codec = "PIZ"
    path = str(tmp_path / "s.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert bpy.context.scene.zdepth.encoding == "log"
    bpy.ops.wm.open_mainfile(filepath=path)
    assert (bpy.context.scene.zdepth.encoding, bpy.context.scene.zdepth.codec) == \
        ("inverse", "PIZ")


def test_range_sources_and_measured_scene_range(bpy, addon):
    from blender_zdepth.blender.scene.camera import scene_depth_range
    from blender_zdepth.blender.scene.options import resolve_range

    scene = make_scene(clip=(0.25, 80.0))
    zd = scene.zdepth
    assert resolve_range(scene) == pytest.approx((0.25, 80.0))
    # sphere: 4..6 m; cube (2 m, at 9 m): 8..10 m
    assert scene_depth_range(scene) == pytest.approx((4.0, 10.0), abs=1e-4)
    zd.range_source = "SCENE"
    assert resolve_range(scene) == pytest.approx((4.0, 10.0), abs=1e-4)
    zd.range_source, zd.near, zd.far = "MANUAL", 2.0, 50.0
    assert resolve_range(scene) == pytest.approx((2.0, 50.0))
    # an object behind the camera does not count
    bpy.data.objects["Box"].location.y = -9
    bpy.context.view_layer.update()
    assert scene_depth_range(scene) == pytest.approx((4.0, 6.0), abs=1e-4)
    assert bpy.ops.zdepth.use_measured_range() == {"FINISHED"}
    assert (zd.near, zd.far) == pytest.approx((4.0, 6.0), abs=1e-4)


def test_precision_words_and_warning_row(bpy, addon):
    from blender_zdepth.blender.ui.panels import precision_lines

    scene = make_scene(clip=(0.1, 500.0))
    summary, warnings = precision_lines(scene)
    assert summary.startswith("log 32-bit: steps of ")
    assert " at 100 mm" in summary and " at 500 m" in summary
    assert warnings == []
    scene.zdepth.encoding, scene.zdepth.bit_depth = "linear", "16"
    scene.zdepth.range_source, scene.zdepth.far = "MANUAL", 1e5
    summary, warnings = precision_lines(scene)
    assert "16-bit half" in summary
    assert any("65504" in w for w in warnings)


def test_panel_uses_existing_settings_operators_and_icons(bpy, addon):
    """The panel cannot be drawn without a window; check what its draw() names instead."""
    import inspect
    import re

    from blender_zdepth.blender.ui import panels

    source = inspect.getsource(panels)
    settings = bpy.context.scene.zdepth.bl_rna.properties
    for name in re.findall(r'prop\(zd, "(\w+)"', source):
        assert name in settings, name
    for op in re.findall(r'operator\("(zdepth\.\w+)"', source):
        assert hasattr(bpy.ops.zdepth, op.split(".")[1]), op
        assert getattr(bpy.ops.zdepth, op.split(".")[1]).get_rna_type().description
    icons = {e.identifier for e in
             bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items}
    used = set(re.findall(r'icon="(\w+)"', source)) | set(re.findall(r'"(\w+)" if ok', source))
    assert used and used <= icons, used - icons
    assert bpy.types.RENDER_PT_zdepth.bl_context == "render"


# -- depth pass set-up ---------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["CYCLES", "EEVEE"])
def test_setup_passes_changes_rendering_layers_once(bpy, addon, engine):
    from blender_zdepth.blender import compat
    from blender_zdepth.blender.scene.passes import setup_passes

    scene = make_scene(engine)
    assert scene.render.engine == ("CYCLES" if engine == "CYCLES" else compat.eevee_engine_id())
    main = scene.view_layers[0]
    main.use_pass_z = False
    off = scene.view_layers.new("Disabled")
    off.use = False
    changes, problem = setup_passes(scene)
    assert problem is None and len(changes) == 1 and main.use_pass_z
    assert not off.use_pass_z  # does not render: untouched without all_layers
    assert setup_passes(scene) == ([], None)  # twice: nothing more
    assert bpy.ops.zdepth.setup_passes(all_layers=True) == {"FINISHED"}
    assert off.use_pass_z
    assert bpy.ops.zdepth.setup_passes(all_layers=True, mist=True) == {"FINISHED"}
    assert main.use_pass_mist and off.use_pass_mist
    ms = scene.world.mist_settings
    assert (ms.start, ms.start + ms.depth) == pytest.approx((0.1, 100.0))
    again, _ = setup_passes(scene, all_layers=True, mist=True)
    assert again == []


def test_setup_passes_on_an_engine_without_depth_changes_nothing(bpy, addon):
    """A third-party engine (a real one registered here, with no Z pass of its own): nothing is
    changed and the message says which engines have depth."""
    from blender_zdepth.blender.scene.passes import setup_passes

    class ThirdPartyEngine(bpy.types.RenderEngine):
        bl_idname = "ZDEPTH_TEST_ENGINE"
        bl_label = "Third Party"

    bpy.utils.register_class(ThirdPartyEngine)
    try:
        scene = make_scene()
        scene.render.engine = "ZDEPTH_TEST_ENGINE"
        scene.view_layers[0].use_pass_z = False
        changes, problem = setup_passes(scene, mist=True)
        assert changes == [] and "no depth pass" in problem and "Workbench" in problem
        assert bpy.ops.zdepth.setup_passes() == {"CANCELLED"}
        assert not scene.view_layers[0].use_pass_z and scene.world is None
        scene.render.engine = "CYCLES"
    finally:
        bpy.utils.unregister_class(ThirdPartyEngine)


# -- compositor node group -------------------------------------------------------------------

def _user_compositor(bpy, scene):
    """A compositor the user made: Render Layers -> Blur -> output, a labelled frame node."""
    from blender_zdepth.blender import compat

    tree = compat.compositor_tree(scene)
    rl = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers"), None) \
        or tree.nodes.new("CompositorNodeRLayers")
    blur = tree.nodes.new("CompositorNodeBlur")
    blur.name = blur.label = "My Blur"
    frame = tree.nodes.new("NodeFrame")
    frame.label = "my notes"
    tree.links.new(rl.outputs["Image"], blur.inputs["Image"])
    if compat.IS_5:
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        out = tree.nodes.new("NodeGroupOutput")
        tree.links.new(blur.outputs["Image"], out.inputs[0])
    else:
        out = next(n for n in tree.nodes if n.bl_idname == "CompositorNodeComposite")
        tree.links.new(blur.outputs["Image"], out.inputs["Image"])
    return tree


def _describe(tree):
    nodes = sorted((n.bl_idname, n.name, n.label) for n in tree.nodes)
    links = sorted((l.from_node.name, l.from_socket.identifier, l.to_node.name,
                    l.to_socket.identifier) for l in tree.links)
    return nodes, links


def test_add_node_group_is_idempotent_and_keeps_user_nodes(bpy, addon):
    from blender_zdepth.blender import nodes

    scene = make_scene()
    tree = _user_compositor(bpy, scene)
    nodes_before, links_before = _describe(tree)
    assert bpy.ops.zdepth.add_node_group(wire=True) == {"FINISHED"}
    group = bpy.data.node_groups[nodes.ENCODE_GROUP]
    after_nodes, after_links = _describe(tree)
    assert set(nodes_before) <= set(after_nodes) and set(links_before) <= set(after_links)
    added = [n for n in tree.nodes if n.bl_idname == "CompositorNodeGroup"]
    assert len(added) == 1 and added[0].node_tree == group
    assert added[0].inputs["Depth"].links[0].from_socket.name == "Depth"
    snapshot = _describe(tree)
    for refresh in (False, True):
        assert bpy.ops.zdepth.add_node_group(wire=True, refresh=refresh) == {"FINISHED"}
        assert _describe(tree) == snapshot
    assert [g.name for g in bpy.data.node_groups if g.name.startswith("Z-Depth")] == \
        [nodes.ENCODE_GROUP]
    assert added[0].node_tree == group and group.get(nodes.TAG) == nodes.GROUP_VERSION
    assert [s.name for s in group.interface.items_tree if s.in_out == "OUTPUT"] == \
        ["Encoded", "Preview"]


@pytest.mark.slow
def test_new_compositor_passes_the_render_through(bpy, addon, tmp_path):
    """A scene without a compositor gets one that leaves the beauty unchanged."""
    from blender_zdepth.blender import compat
    from blender_zdepth.core import exr

    scene = make_scene()
    compat.set_single_layer_exr(scene.render.image_settings)

    def beauty(name):
        scene.render.filepath = str(tmp_path / name)
        bpy.ops.render.render(write_still=True)
        img = exr.read_exr(str(tmp_path / name))
        return np.stack([img.channels[c] for c in "RGBA"], -1)

    before = beauty("before.exr")
    assert compat.compositor_tree(scene, create=False) is None
    assert bpy.ops.zdepth.add_node_group(wire=True) == {"FINISHED"}
    assert compat.compositor_tree(scene, create=False) is not None
    after = beauty("after.exr")
    assert before.max() > 0.1
    np.testing.assert_array_equal(before, after)


def test_add_menu_entry_registered_and_removed(bpy, addon):
    from blender_zdepth.blender.ui.menus import draw_add_menu

    funcs = bpy.types.NODE_MT_add.draw._draw_funcs
    assert sum(f is draw_add_menu for f in funcs) == 1
    addon.unregister()
    assert not any(f is draw_add_menu for f in bpy.types.NODE_MT_add.draw._draw_funcs)
    addon.register()
    assert sum(f is draw_add_menu for f in bpy.types.NODE_MT_add.draw._draw_funcs) == 1


@pytest.mark.slow
def test_node_group_equals_core_encoding(bpy, addon, tmp_path):
    """Render a tiny frame through the compositor: each encoding from the group vs the numpy
    core on the same Z pass (written by the same File Output node)."""
    from blender_zdepth.blender import compat, nodes
    from blender_zdepth.core import exr
    from blender_zdepth.core.encodings import ENCODINGS, DepthEncoding, preview

    scene = make_scene(size=(40, 30))
    group, _ = nodes.encode_group()
    tree = compat.compositor_tree(scene)
    rl = nodes.find_render_layers(tree) or tree.nodes.new("CompositorNodeRLayers")
    names = ["depth", *ENCODINGS, "preview"]
    _, socks = compat.new_file_output(tree, str(tmp_path), "nodes_", names)
    tree.links.new(rl.outputs["Depth"], socks["depth"])
    near, far = 0.5, 200.0
    for i, name in enumerate(ENCODINGS):
        node = tree.nodes.new("CompositorNodeGroup")
        node.node_tree = group
        tree.links.new(rl.outputs["Depth"], node.inputs["Depth"])
        node.inputs["Near"].default_value = near
        node.inputs["Far"].default_value = far
        nodes.set_encoding(node.inputs["Encoding"], name)
        tree.links.new(node.outputs["Encoded"], socks[name])
        if name == "log":
            tree.links.new(node.outputs["Preview"], socks["preview"])
    bpy.ops.render.render()
    (path,) = glob.glob(str(tmp_path / "nodes_*.exr"))
    ch = {k.split(".")[0]: v for k, v in exr.read_exr(path).channels.items()}
    z = ch["depth"]
    bg = z >= 1e9
    assert 0.1 < bg.mean() < 0.9  # surfaces and sky both present
    for name in ENCODINGS:
        ref = DepthEncoding(name, near, far).encode(z)
        got = ch[name]
        assert np.array_equal(got[bg], ref[bg]), name  # +inf, or 0 for inverse
        rel = np.abs(got[~bg].astype(np.float64) - ref[~bg]) / np.abs(ref[~bg])
        assert rel.max() <= 1e-6, (name, rel.max())
    assert np.abs(ch["preview"] - preview(z, near, far)).max() <= 1e-6


# -- export on render --------------------------------------------------------------------------

@pytest.mark.slow
def test_export_on_animation_render_cycles(bpy, addon, tmp_path):
    """Ctrl+F12 / blender -a: one depth EXR per frame, values = the Z pass, the frame's own
    (animated) focus in the header, ZIP float32, beauty RGBA in the same file; the user's own
    output settings untouched."""
    from blender_zdepth.core import exr
    from blender_zdepth.core.camera import CameraInfo
    from blender_zdepth.core.encodings import DepthEncoding

    scene = make_scene(frames=(1, 3))
    animate_focus(scene, {1: 2.0, 3: 6.0})
    scene.camera.data.dof.aperture_fstop = 2.8
    from blender_zdepth.blender import compat

    compat.set_multilayer_exr(scene.render.image_settings, "32", "PIZ")  # the user's output
    scene.render.filepath = str(tmp_path / "beauty_")
    user_settings = (scene.render.image_settings.file_format,
                     scene.render.image_settings.exr_codec,
                     scene.render.image_settings.color_depth)
    zd = scene.zdepth
    zd.output_dir = str(tmp_path / "depth")
    zd.export_enabled = True
    bpy.ops.render.render(animation=True)
    from blender_zdepth.blender.render import handlers as render_handlers

    assert render_handlers.last_errors() == []
    files = sorted(glob.glob(str(tmp_path / "depth" / "*.exr")))
    assert [os.path.basename(f) for f in files] == \
        ["zdepth_0001.exr", "zdepth_0002.exr", "zdepth_0003.exr"]
    assert not glob.glob(str(tmp_path / "depth" / ".*"))  # no temporary left behind
    assert (scene.render.image_settings.file_format, scene.render.image_settings.exr_codec,
            scene.render.image_settings.color_depth) == user_settings
    for frame, path, focus in zip((1, 2, 3), files, (2.0, 4.0, 6.0)):
        z, rgba = plain_z(str(tmp_path / f"beauty_{frame:04d}.exr"))
        loaded = load_frame(path)
        h = loaded.header
        assert str(h["compression"]).upper().startswith(("ZIP_COMP", "COMPRESSION.ZIP_COMP"))
        assert loaded.half is False
        assert h["zdepthEncoding"] == "log" and h["zdepthNear"] == pytest.approx(0.1)
        assert h["zdepthFar"] == pytest.approx(100.0)
        cam = CameraInfo.from_header(h)
        assert cam.frame == frame
        assert cam.focus_distance == pytest.approx(focus)
        assert (cam.focal_length_mm, cam.fstop, cam.sensor_width_mm) == pytest.approx((35, 2.8,
                                                                                       36))
        assert (cam.clip_start, cam.clip_end) == pytest.approx((0.1, 100.0))
        bg = z >= 1e9
        assert bg.any() and (~bg).any()
        assert np.all(np.isinf(loaded.depth[bg]))
        np.testing.assert_allclose(loaded.depth[~bg], z[~bg], rtol=1e-6)
        np.testing.assert_array_equal(loaded.rgba, rgba)
        # stored values are the core's encoding of the Z pass, bit for bit
        raw = exr.read_exr(path).channels["Z"]
        np.testing.assert_array_equal(raw, DepthEncoding("log", 0.1, 100.0).encode(z))


@pytest.mark.slow
def test_export_cycles_and_eevee_agree(bpy, addon, tmp_path):
    """Same shot in both engines: planar depth, background (1e10 / clip end) -> +inf."""
    from blender_zdepth.blender.render import export

    results = {}
    for engine in ("CYCLES", "EEVEE"):
        scene = make_scene(engine, size=(32, 24), clip=(0.1, 60.0))
        (path,) = export.render_with_depth(scene, str(tmp_path / engine), encoding="linear")
        results[engine] = load_frame(path)
        assert results[engine].header["zdepthEngine"] == scene.render.engine
    c, e = results["CYCLES"].depth, results["EEVEE"].depth
    bg_c, bg_e = np.isinf(c), np.isinf(e)
    assert bg_c.any() and bg_e.any()
    assert np.mean(bg_c != bg_e) < 0.05  # edges may differ by a pixel
    both = ~bg_c & ~bg_e
    assert np.isfinite(e[~bg_e]).all() and e[~bg_e].max() < 59.0  # clip end is not a depth
    assert np.median(np.abs(c[both] - e[both]) / c[both]) < 1e-3


@pytest.mark.slow
def test_export_resolution_percentage_border_crop_and_focus_object(bpy, addon, tmp_path):
    from blender_zdepth.blender import compat
    from blender_zdepth.blender.render import export
    from blender_zdepth.blender.scene.options import ExportOptions
    from blender_zdepth.core import exr

    scene = make_scene(size=(64, 48))
    r = scene.render
    r.resolution_percentage = 50
    r.use_border, r.use_crop_to_border = True, True
    r.border_min_x, r.border_max_x, r.border_min_y, r.border_max_y = 0.25, 0.75, 0.0, 0.5
    compat.set_multilayer_exr(r.image_settings)
    r.filepath = str(tmp_path / "beauty.exr")
    target = bpy.data.objects["Box"]
    scene.camera.data.dof.focus_object = target
    bpy.ops.render.render(write_still=True)
    out = export.export_render_result(scene, ExportOptions(
        output_dir=str(tmp_path), beauty="BESIDE", codec="PIZ", bit_depth="16",
        write_preview=True, encoding="log"))
    z, rgba = plain_z(str(tmp_path / "beauty.exr"))
    loaded = load_frame(out["depth"])
    assert loaded.depth.shape == z.shape == (12, 16)  # 50 %, then the border crop
    assert loaded.rgba is None and loaded.half is True
    assert "PIZ" in str(loaded.header["compression"]).upper()
    beauty = exr.read_exr(out["beauty"])
    np.testing.assert_array_equal(np.stack([beauty.channels[c] for c in "RGBA"], -1),
                                  rgba.astype(np.float16).astype(np.float32))  # bit depth 16
    assert os.path.getsize(out["preview"]) > 0
    assert loaded.header["zdepthCameraFocusDistance"] == pytest.approx(9.0, abs=1e-4)
    assert loaded.header["zdepthCameraFocusObject"] == "Box"
    bg = z >= 1e9
    np.testing.assert_allclose(loaded.depth[~bg], z[~bg], rtol=2e-3)  # half float


@pytest.mark.slow
def test_still_render_exports_and_direct_render_is_not_exported_twice(bpy, addon, tmp_path):
    from blender_zdepth.blender.render import export

    scene = make_scene(frames=(1, 5))
    scene.frame_set(4)
    zd = scene.zdepth
    zd.output_dir = str(tmp_path / "handler")
    zd.name_pattern = "shot_###_depth"
    zd.export_enabled = True
    bpy.ops.render.render()  # F12: the current frame, no file of Blender's own
    assert os.listdir(tmp_path / "handler") == ["shot_004_depth.exr"]
    paths = export.render_with_depth(scene, str(tmp_path / "direct"), frames=[2])
    assert [os.path.basename(p) for p in paths] == ["shot_002_depth.exr"]
    assert os.listdir(tmp_path / "handler") == ["shot_004_depth.exr"]  # handler stayed out
    assert scene.frame_current == 4


@pytest.mark.slow
def test_export_turns_a_missing_z_pass_on_for_the_render_only(bpy, addon, tmp_path):
    from blender_zdepth.blender.render import handlers as render_handlers

    scene = make_scene()
    zd = scene.zdepth
    zd.output_dir = str(tmp_path)
    zd.export_enabled = True
    scene.view_layers[0].use_pass_z = False  # turned off by hand afterwards
    bpy.ops.render.render()
    assert render_handlers.last_errors() == []
    assert os.listdir(tmp_path) == ["zdepth_0001.exr"]
    assert scene.view_layers[0].use_pass_z is False


def test_export_toggle_removes_only_what_it_added(bpy, addon):
    scene = make_scene()
    mine = scene.view_layers[0]
    other = scene.view_layers.new("Other")
    mine.use_pass_z, other.use_pass_z = True, False
    scene.zdepth.export_enabled = True
    assert mine.use_pass_z and other.use_pass_z
    scene.zdepth.export_enabled = False
    assert mine.use_pass_z and not other.use_pass_z


def test_camera_values_follow_fcurves_without_a_depsgraph(bpy, addon):
    """Off the main thread (a render job in the UI) the camera is read from its F-Curves."""
    from blender_zdepth.blender.scene.camera import camera_info

    scene = make_scene(frames=(1, 3))
    animate_focus(scene, {1: 2.0, 3: 6.0})
    cam = scene.camera
    cam.data.lens = 35.0
    cam.data.keyframe_insert("lens", frame=1)
    cam.data.lens = 70.0
    cam.data.keyframe_insert("lens", frame=3)
    scene.frame_set(1)  # originals hold frame 1's values
    info = camera_info(scene, frame=2)
    assert (info.focus_distance, info.focal_length_mm, info.frame) == pytest.approx((4.0, 52.5,
                                                                                     2))


def test_render_errors_are_clear(bpy, addon, tmp_path):
    from blender_zdepth.blender.render import export
    from blender_zdepth.blender.scene.options import background_for
    from blender_zdepth.blender.scene.paths import frame_file_name
    from blender_zdepth.core.errors import ZDepthError

    scene = make_scene()
    scene.camera.data.type = "PANO"
    with pytest.raises(ZDepthError, match="panoramic"):
        export.render_with_depth(scene, str(tmp_path))
    bpy.data.objects.remove(scene.camera)
    with pytest.raises(ZDepthError, match="no camera"):
        export.render_with_depth(scene, str(tmp_path))
    assert frame_file_name("shot_##_z", 7) == "shot_07_z.exr"
    assert frame_file_name("depth", 12) == "depth_0012.exr"
    assert math.isinf(background_for(make_scene())) is False
