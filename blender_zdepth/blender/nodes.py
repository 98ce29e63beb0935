"""Compositor node group "Z-Depth Encode" and how it is added to a scene's compositor.

The group takes the render's ``Depth`` (planar camera depth, Blender's Z pass) and gives:

* ``Encoded`` -- the depth encoded exactly as :class:`blender_zdepth.core.encodings.DepthEncoding`
  encodes it (log / linear / normalized / inverse over ``[Near, Far]``; background = depth at or
  beyond ``Background`` (or non-finite) -> +inf, or 0 for inverse), in float32;
* ``Preview`` -- white at Near, black at Far (log in between, clipped), background black
  (:func:`blender_zdepth.core.encodings.preview`).

Inputs: ``Depth``, ``Near``, ``Far``, ``Encoding`` (0 log, 1 linear, 2 normalized, 3 inverse)
and ``Background`` (the background threshold: 1e9 for Cycles, just under the camera's clip end
for EEVEE; see :func:`blender_zdepth.core.encodings.background_threshold`).

Only Math nodes are used (``CompositorNodeMath`` in 4.x, ``ShaderNodeMath`` in 5.0: see
:mod:`.compat`), so the group works in the 4.x and 5.0 compositors alike.
"""

import bpy

from ..core.encodings import DEFAULT_BACKGROUND, ENCODINGS, background_threshold
from . import compat

ENCODE_GROUP = "Z-Depth Encode"

#: Bumped when the group's contents change: older groups in a .blend are rebuilt in place.
GROUP_VERSION = 1

#: Custom property marking the trees and nodes this add-on made.
TAG = "zdepth_group_version"
NODE_TAG = "zdepth_node"

_HUGE = 1e38  # 1e38 * 1e38 overflows float32 to +inf; 0 * 1e38 * 1e38 stays 0


def encoding_index(name):
    """The ``Encoding`` input value of an encoding name."""
    return float(ENCODINGS.index(name))


class _Builder:
    def __init__(self, tree):
        self.tree = tree
        self.x = 0

    def math(self, op, a, b=None, label=None, x=None, y=0):
        node = self.tree.nodes.new(compat.MATH_NODE)
        node.operation = op
        node.location = (x if x is not None else self.x, y)
        if label:
            node.label = label
        for sock, value in zip(node.inputs, (a, b)):
            if value is None:
                continue
            if isinstance(value, (int, float)):
                sock.default_value = float(value)
            else:
                self.tree.links.new(value, sock)
        return node.outputs[0]


#: The group's sockets: (name, in/out, default, min, max, tooltip).
_SOCKETS = (
    ("Depth", "INPUT", 1.0, 0.0, 3.4e38, "Planar camera depth (the Render Layers node's Depth)"),
    ("Near", "INPUT", 0.1, 1e-6, 3.4e38, "Depth stored as 0 (log, normalized)"),
    ("Far", "INPUT", 1000.0, 1e-6, 3.4e38, "Depth stored as 1 (log, normalized)"),
    ("Encoding", "INPUT", 0.0, 0.0, 3.0, "0 log, 1 linear, 2 normalized, 3 inverse"),
    ("Background", "INPUT", DEFAULT_BACKGROUND, 0.0, 3.4e38,
     "Depth at or beyond this is background (Cycles: 1e9; EEVEE: just under the clip end)"),
    ("Encoded", "OUTPUT", None, None, None, "Depth encoded as blender_zdepth writes it"),
    ("Preview", "OUTPUT", None, None, None, "White at near, black at far and for the background"),
)


def _interface(tree):
    """Make the group's sockets those of :data:`_SOCKETS`; sockets that already match are
    kept (so links to group nodes using this tree survive a rebuild)."""
    def layout():
        items = [i for i in tree.interface.items_tree if i.item_type == "SOCKET"]
        return [(i.name, i.in_out) for i in items if i.in_out == "INPUT"] + \
            [(i.name, i.in_out) for i in items if i.in_out == "OUTPUT"]

    if layout() != [(n, io) for n, io, *_ in _SOCKETS]:
        tree.interface.clear()
        for name, in_out, *_ in _SOCKETS:
            tree.interface.new_socket(name, in_out=in_out, socket_type="NodeSocketFloat")
    items = {(i.name, i.in_out): i for i in tree.interface.items_tree if i.item_type == "SOCKET"}
    for name, in_out, default, lo, hi, tip in _SOCKETS:
        item = items[(name, in_out)]
        item.description = tip
        if default is not None:
            item.default_value = default
            item.min_value, item.max_value = lo, hi


def _build_encode(tree):
    tree.nodes.clear()
    _interface(tree)

    gin = tree.nodes.new("NodeGroupInput")
    gin.location = (-600, 0)
    gout = tree.nodes.new("NodeGroupOutput")
    gout.location = (1800, 0)
    z, near, far, enc, thr = (gin.outputs[n] for n in
                              ("Depth", "Near", "Far", "Encoding", "Background"))
    b = _Builder(tree)

    # background mask: 1 where not (z < threshold), i.e. z >= threshold, NaN or +inf
    b.x = -350
    below = b.math("LESS_THAN", z, thr, "z < Background", y=300)
    bg = b.math("SUBTRACT", 1.0, below, "Background Mask", y=300, x=-150)
    keep = below  # 1 - bg
    zc = b.math("MINIMUM", z, thr, "Finite Depth", y=0)  # background -> threshold (finite)

    # the four encodings of finite depth
    b.x = 0
    ratio = b.math("DIVIDE", far, near, "Far / Near", y=-300)
    e_log = b.math("LOGARITHM", b.math("DIVIDE", zc, near, "z / Near", y=150), ratio, "Log",
                   x=200, y=150)
    span = b.math("SUBTRACT", far, near, "Far - Near", y=-450)
    e_norm = b.math("DIVIDE", b.math("SUBTRACT", zc, near, "z - Near", y=0), span,
                    "Normalized", x=200, y=0)
    e_inv = b.math("DIVIDE", 1.0, zc, "Inverse", x=200, y=-150)
    values = [e_log, zc, e_norm, e_inv]

    # choose one: sum of (Encoding == i) * value_i (the others add exact zeros)
    b.x = 450
    picked = None
    for i, value in enumerate(values):
        w = b.math("COMPARE", enc, float(i), f"Encoding = {i}", y=450 - 150 * i)
        w.node.inputs[2].default_value = 0.5
        term = b.math("MULTIPLY", w, value, f"{ENCODINGS[i]}", x=650, y=450 - 150 * i)
        picked = term if picked is None else b.math("ADD", picked, term, x=850, y=300 - 150 * i)
        if i == 3:
            is_inverse = w
    b.x = 1100
    finite = b.math("MULTIPLY", picked, keep, "Surface Only", y=0)
    # background -> +inf (log, linear, normalized) or 0 (inverse): bg * (1 - inverse) * 1e38 * 1e38
    not_inv = b.math("SUBTRACT", 1.0, is_inverse, "Not Inverse", y=-200)
    inf = b.math("MULTIPLY", b.math("MULTIPLY", b.math("MULTIPLY", bg, not_inv, y=-350), _HUGE,
                                    x=1250, y=-350), _HUGE, "Background Inf", x=1400, y=-350)
    encoded = b.math("ADD", finite, inf, "Encoded", x=1600, y=0)
    tree.links.new(encoded, gout.inputs["Encoded"])

    # preview: 1 - clamp(log position, 0, 1), background 0
    t = b.math("MAXIMUM", b.math("MINIMUM", e_log, 1.0, x=1100, y=-600), 0.0, x=1250, y=-600)
    pv = b.math("MULTIPLY", b.math("SUBTRACT", 1.0, t, x=1400, y=-600), keep, "Preview",
                x=1600, y=-600)
    tree.links.new(pv, gout.inputs["Preview"])
    tree[TAG] = GROUP_VERSION


def encode_group(refresh=False):
    """The "Z-Depth Encode" node group, built when missing or out of date (``refresh``: rebuilt
    in place, so group nodes using it keep working). Returns ``(tree, built)``."""
    tree = bpy.data.node_groups.get(ENCODE_GROUP)
    if tree is not None and tree.bl_idname != "CompositorNodeTree":
        tree = None  # a user's tree of another kind with our name: leave it, make our own
        for ng in bpy.data.node_groups:
            if ng.bl_idname == "CompositorNodeTree" and ng.get(TAG) is not None \
                    and ng.name.startswith(ENCODE_GROUP):
                tree = ng
                break
    if tree is not None and tree.get(TAG) == GROUP_VERSION and not refresh:
        return tree, False
    if tree is None:
        tree = bpy.data.node_groups.new(ENCODE_GROUP, "CompositorNodeTree")
    _build_encode(tree)
    return tree, True


def group_settings(scene):
    """``(near, far, encoding index, background threshold)`` for the group from the scene's
    Z-Depth settings and engine."""
    from .properties import resolve_range

    near, far = resolve_range(scene)
    cam = scene.camera
    threshold = DEFAULT_BACKGROUND
    if cam is not None and cam.type == "CAMERA" and compat.is_eevee(scene.render.engine):
        threshold = background_threshold(cam.data.clip_end, cam.data.clip_start, "EEVEE")
    return near, far, encoding_index(scene.zdepth.encoding), threshold


def _set_inputs(node, scene):
    near, far, enc, thr = group_settings(scene)
    for name, value in (("Near", near), ("Far", far), ("Encoding", enc), ("Background", thr)):
        sock = node.inputs.get(name)
        if sock is not None and not sock.is_linked:
            sock.default_value = value


def find_group_node(tree, group):
    for node in tree.nodes:
        if node.bl_idname == "CompositorNodeGroup" and node.node_tree == group:
            return node
    return None


def find_render_layers(tree, scene=None):
    for node in tree.nodes:
        if node.bl_idname == "CompositorNodeRLayers" and (scene is None or node.scene in
                                                          (None, scene)):
            return node
    return None


def _pass_through(tree, scene):
    """Make a new compositor tree give the render unchanged, as Blender's own default does
    (4.x: Render Layers -> Composite, made by ``use_nodes``; 5.0: Render Layers -> Group
    Output ``Image``)."""
    if not compat.IS_5 or any(n.bl_idname == "NodeGroupOutput" for n in tree.nodes):
        return
    if not any(i.item_type == "SOCKET" and i.in_out == "OUTPUT" for i in tree.interface.items_tree):
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    rl = find_render_layers(tree, scene) or tree.nodes.new("CompositorNodeRLayers")
    rl.location = (-300, 0)
    out = tree.nodes.new("NodeGroupOutput")
    out.location = (300, 0)
    tree.links.new(rl.outputs["Image"], out.inputs[0])


def add_encode_node(scene, tree=None, wire=False):
    """Put a "Z-Depth Encode" group node in ``tree`` (default: the scene's compositor, created
    when missing), reusing one that is already there; with ``wire``, feed it the Render Layers
    node's Depth (a Render Layers node is added when there is none). The user's own nodes and
    links are left as they are. Returns ``(node, changes)`` (changes in words)."""
    changes = []
    group, built = encode_group()
    if built:
        changes.append(f"built node group {group.name!r}")
    scene_tree = compat.compositor_tree(scene, create=False)
    own = tree is None or tree == scene_tree
    if tree is None:
        had = scene_tree
        if had is not None and not compat.IS_5 and not scene.use_nodes:
            changes.append("compositing nodes turned on")
        tree = compat.compositor_tree(scene, create=True)
        if had is None:
            _pass_through(tree, scene)
            changes.append("compositor node tree created (render passed through unchanged)")
    node = find_group_node(tree, group)
    if node is None:
        node = tree.nodes.new("CompositorNodeGroup")
        node.node_tree = group
        node.name = node.label = ENCODE_GROUP
        node[NODE_TAG] = True
        node.width = 180
        changes.append(f"added a {group.name!r} node")
    _set_inputs(node, scene)
    if wire:
        rl = find_render_layers(tree, scene)
        if rl is None and not own:
            return node, changes  # inside a node group: no render to wire
        if rl is None:
            rl = tree.nodes.new("CompositorNodeRLayers")
            rl.location = (node.location.x - 400, node.location.y)
            rl[NODE_TAG] = True
            changes.append("added a Render Layers node")
        else:
            node.location = (rl.location.x + 350, rl.location.y - 250)
        depth = rl.outputs.get("Depth")
        if depth is None or not depth.enabled:
            from .passes import setup_passes

            done, _ = setup_passes(scene)
            changes.extend(done)
            depth = rl.outputs.get("Depth")
        target = node.inputs["Depth"]
        if depth is not None and not any(link.from_socket == depth for link in target.links):
            tree.links.new(depth, target)
            changes.append("wired Render Layers Depth into it")
    return node, changes


# -- Add menu ----------------------------------------------------------------------------------

def _draw_add_menu(self, context):
    space = context.space_data
    if getattr(space, "tree_type", None) != "CompositorNodeTree":
        return
    self.layout.separator()
    self.layout.operator("zdepth.add_node_group", text=ENCODE_GROUP, icon="NODETREE")


def register():
    bpy.types.NODE_MT_add.append(_draw_add_menu)


def unregister():
    bpy.types.NODE_MT_add.remove(_draw_add_menu)
