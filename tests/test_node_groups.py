"""The compositor node groups of issue 11: "Z-Depth Encode"'s Encoding as a menu (5.0) or an
integer (4.x), its Background following the engine at render time, and "Z-Depth Decode"
checked against ``core.encodings`` through a real compositor render. Real bpy, tiny renders;
run on bpy 5.0 (.venv) and 4.5 LTS (.venv-4.5).
"""

import glob

import numpy as np
import pytest

pytestmark = pytest.mark.blender


def make_scene(engine="CYCLES", size=(40, 30), clip=(0.1, 100.0)):
    """A ball 5 m away, a box at 9 m, sky around; emission only, one sample."""
    from blender_zdepth.blender import scenes

    scene = scenes.empty_scene(size, engine, 1)
    scenes.add_object(scene, "uv_sphere", "Ball", scenes.emission_material("Ball", (1, .5, .2)),
                      radius=1.0, location=(-0.8, 5, 0), segments=16, ring_count=8)
    scenes.add_object(scene, "cube", "Box", scenes.emission_material("Box", (.2, .4, .9)),
                      size=2.0, location=(1.5, 9, 0.3))
    scenes.add_camera(scene, (0, 0, 0), (0, 5, 0), lens=35.0, clip=clip)
    return scene


def _channels(tmp_path, prefix):
    from blender_zdepth.core import exr

    (path,) = glob.glob(str(tmp_path / f"{prefix}*.exr"))
    return {k.split(".")[0]: v for k, v in exr.read_exr(path).channels.items()}


def test_encoding_input_is_a_menu_where_the_compositor_has_menus(bpy, addon, blender_version):
    from blender_zdepth.blender import nodes

    for group in (nodes.encode_group()[0], nodes.decode_group()[0]):
        item = next(i for i in group.interface.items_tree
                    if i.item_type == "SOCKET" and i.name == "Encoding")
        assert item.description.startswith("How depth is stored")
        node = bpy.data.node_groups.new("host", "CompositorNodeTree").nodes.new(
            "CompositorNodeGroup")
        node.node_tree = group
        sock = node.inputs["Encoding"]
        if blender_version >= (5, 0, 0):
            assert item.socket_type == "NodeSocketMenu" and sock.type == "MENU"
            nodes.set_encoding(sock, "inverse")
            assert sock.default_value == "Inverse"
        else:  # 4.x compositors have no menu socket: an integer 0-3 with the tooltip
            assert item.socket_type == "NodeSocketInt"
            assert (item.min_value, item.max_value) == (0, 3)
            nodes.set_encoding(sock, "normalized")
            assert sock.default_value == 2


def test_version_1_group_is_upgraded_keeping_links(bpy, addon):
    """A .blend saved with the float Encoding input of version 1: rebuilt in place, the group
    node's Depth link survives, Encoding becomes the menu / integer."""
    from blender_zdepth.blender import compat, nodes

    scene = make_scene()
    assert bpy.ops.zdepth.add_node_group(wire=True) == {"FINISHED"}
    group = bpy.data.node_groups[nodes.ENCODE_GROUP]
    item = next(i for i in group.interface.items_tree if i.name == "Encoding")
    group.interface.remove(item)  # turn it into version 1: a float Encoding
    item = group.interface.new_socket("Encoding", in_out="INPUT", socket_type="NodeSocketFloat")
    group[nodes.TAG] = 1
    tree = compat.compositor_tree(scene, create=False)
    node = nodes.find_group_node(tree, group)
    assert bpy.ops.zdepth.add_node_group(wire=True) == {"FINISHED"}
    assert group[nodes.TAG] == nodes.GROUP_VERSION
    names = [i.name for i in group.interface.items_tree if i.in_out == "INPUT"]
    assert names == ["Depth", "Near", "Far", "Encoding", "Background"]
    assert node.inputs["Depth"].links[0].from_socket.name == "Depth"
    assert node.inputs["Encoding"].type in ("MENU", "INT")


def test_background_follows_the_engine_unless_typed(bpy, addon):
    from blender_zdepth.blender import compat, nodes
    from blender_zdepth.core.encodings import DEFAULT_BACKGROUND

    scene = make_scene(clip=(0.1, 60.0))
    bpy.ops.zdepth.add_node_group(wire=True)
    node = nodes.find_group_node(compat.compositor_tree(scene, create=False),
                                 bpy.data.node_groups[nodes.ENCODE_GROUP])
    bg = node.inputs["Background"]
    assert bg.default_value == pytest.approx(DEFAULT_BACKGROUND)
    scene.render.engine = compat.eevee_engine_id()
    assert nodes.follow_engine(scene) == [node]
    assert 59.0 < bg.default_value < 60.0  # just under EEVEE's clip end
    scene.render.engine = "BLENDER_WORKBENCH"
    nodes.follow_engine(scene)
    assert bg.default_value == pytest.approx(DEFAULT_BACKGROUND)
    bg.default_value = 42.0  # typed by hand: stays
    scene.render.engine = compat.eevee_engine_id()
    assert nodes.follow_engine(scene) == [] and bg.default_value == 42.0


@pytest.mark.slow
def test_node_added_under_cycles_encodes_eevee_sky_as_background(bpy, addon, tmp_path):
    """Added under Cycles, rendered in EEVEE: the sky (EEVEE writes the clip end) encodes as
    +inf, set by the render_pre handler (was 1.00001 until the node was added again)."""
    from blender_zdepth.blender import compat, nodes

    scene = make_scene(size=(16, 12), clip=(0.1, 60.0))
    bpy.ops.zdepth.add_node_group(wire=True)
    tree = compat.compositor_tree(scene, create=False)
    node = nodes.find_group_node(tree, bpy.data.node_groups[nodes.ENCODE_GROUP])
    _, socks = compat.new_file_output(tree, str(tmp_path), "eevee_", ["encoded", "depth"])
    tree.links.new(node.outputs["Encoded"], socks["encoded"])
    tree.links.new(nodes.find_render_layers(tree).outputs["Depth"], socks["depth"])
    scene.render.engine = compat.eevee_engine_id()
    scene.eevee.taa_render_samples = 1
    bpy.ops.render.render()
    ch = _channels(tmp_path, "eevee_")
    sky = ch["depth"] > 59.0
    assert 0.1 < sky.mean() < 0.9
    assert np.isinf(ch["encoded"][sky]).all() and np.isfinite(ch["encoded"][~sky]).all()


@pytest.mark.slow
def test_decode_group_equals_core_decoding(bpy, addon, tmp_path):
    """Render Layers Depth -> Encode -> Decode for every encoding, through one File Output:
    the decoded depth equals ``DepthEncoding.decode`` of the encoded values to 1e-6 relative,
    Background Depth where the core gives +inf."""
    from blender_zdepth.blender import compat, nodes
    from blender_zdepth.core.encodings import ENCODINGS, DepthEncoding

    scene = make_scene()
    tree = compat.compositor_tree(scene)
    rl = nodes.find_render_layers(tree) or tree.nodes.new("CompositorNodeRLayers")
    enc_group, _ = nodes.encode_group()
    dec_group, _ = nodes.decode_group()
    names = [f"{k}_{e}" for e in ENCODINGS for k in ("enc", "dec", "bg")]
    _, socks = compat.new_file_output(tree, str(tmp_path), "decode_", names)
    near, far = 0.5, 200.0
    for name in ENCODINGS:
        enc = tree.nodes.new("CompositorNodeGroup")
        enc.node_tree = enc_group
        dec = tree.nodes.new("CompositorNodeGroup")
        dec.node_tree = dec_group
        for node in (enc, dec):
            node.inputs["Near"].default_value = near
            node.inputs["Far"].default_value = far
            nodes.set_encoding(node.inputs["Encoding"], name)
        tree.links.new(rl.outputs["Depth"], enc.inputs["Depth"])
        tree.links.new(enc.outputs["Encoded"], dec.inputs["Encoded"])
        tree.links.new(enc.outputs["Encoded"], socks[f"enc_{name}"])
        tree.links.new(dec.outputs["Depth"], socks[f"dec_{name}"])
        tree.links.new(dec.outputs["Background"], socks[f"bg_{name}"])
    bpy.ops.render.render()
    ch = _channels(tmp_path, "decode_")
    for name in ENCODINGS:
        ref = DepthEncoding(name, near, far).decode(ch[f"enc_{name}"])
        bg = np.isinf(ref)
        assert 0.1 < bg.mean() < 0.9, name  # sky and surfaces both present
        got = ch[f"dec_{name}"]
        assert np.array_equal(ch[f"bg_{name}"], bg.astype(np.float32)), name
        assert (got[bg] == nodes.DECODE_BACKGROUND).all(), name
        rel = np.abs(got[~bg].astype(np.float64) - ref[~bg]) / ref[~bg]
        assert rel.max() <= 1e-6, (name, rel.max())


def test_decode_node_from_the_operator_and_add_menu(bpy, addon):
    from blender_zdepth.blender import compat, nodes
    from blender_zdepth.blender.ui.menus import draw_add_menu

    scene = make_scene()
    scene.zdepth.encoding = "normalized"
    assert bpy.ops.zdepth.add_node_group(group="DECODE") == {"FINISHED"}
    tree = compat.compositor_tree(scene, create=False)
    node = nodes.find_group_node(tree, bpy.data.node_groups[nodes.DECODE_GROUP])
    assert node.inputs["Near"].default_value == pytest.approx(0.1)
    assert node.inputs["Far"].default_value == pytest.approx(100.0)
    assert node.inputs["Encoding"].default_value in ("Normalized", 2)
    assert sum(f is draw_add_menu for f in bpy.types.NODE_MT_add.draw._draw_funcs) == 1
    assert sum(f is nodes._on_render_pre for f in bpy.app.handlers.render_pre) == 1
    assert sum(f is nodes._on_load_post for f in bpy.app.handlers.load_post) == 1


def test_engine_change_in_the_interface_updates_background_on_the_main_thread(bpy, addon):
    """The message-bus callback (what Blender's interface calls when the engine or the camera's
    clip range changes) sets the automatic Background of every scene's nodes at once."""
    from blender_zdepth.blender import compat, nodes
    from blender_zdepth.core.encodings import DEFAULT_BACKGROUND

    scene = make_scene(clip=(0.1, 60.0))
    bpy.ops.zdepth.add_node_group(wire=True)
    node = nodes.find_group_node(compat.compositor_tree(scene, create=False),
                                 bpy.data.node_groups[nodes.ENCODE_GROUP])
    scene.render.engine = compat.eevee_engine_id()
    nodes._on_watched_change()
    assert 59.0 < node.inputs["Background"].default_value < 60.0
    scene.camera.data.clip_end = 30.0
    nodes._on_watched_change()
    assert 29.0 < node.inputs["Background"].default_value < 30.0
    scene.render.engine = "CYCLES"
    nodes._on_watched_change()
    assert node.inputs["Background"].default_value == pytest.approx(DEFAULT_BACKGROUND)
    assert nodes.follow_engine(scene) == []  # nothing left for the render thread to write
