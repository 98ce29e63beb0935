"""Compositor node groups "Z-Depth Encode" and "Z-Depth Decode", and how they are added to a
scene's compositor.

"Z-Depth Encode" takes the render's ``Depth`` (planar camera depth, Blender's Z pass) and gives:

* ``Encoded`` -- the depth encoded exactly as :class:`blender_zdepth.core.encodings.DepthEncoding`
  encodes it (log / linear / normalized / inverse over ``[Near, Far]``; background = depth at or
  beyond ``Background`` (or non-finite) -> +inf, or 0 for inverse), in float32;
* ``Preview`` -- white at Near, black at Far (log in between, clipped), background black
  (:func:`blender_zdepth.core.encodings.preview`).

Inputs: ``Depth``, ``Near``, ``Far``, ``Encoding`` and ``Background`` (the background
threshold: 1e9 for Cycles and Workbench, just under the camera's clip end for EEVEE; see
:func:`blender_zdepth.core.encodings.background_threshold`). A render_pre handler sets an
automatic Background for the engine that renders (:func:`follow_engine`).

"Z-Depth Decode" is the inverse, as :meth:`DepthEncoding.decode`: ``Encoded``, ``Near``,
``Far``, ``Encoding``, ``Background Depth`` in; ``Depth`` (linear planar depth, for the Defocus
node, fog or a mist mix) and ``Background`` (1 where no surface) out. The core decodes the
background to +inf; the node gives ``Background Depth`` there (default 1e10, what Cycles' own
Z pass holds), since +inf would turn blurs and mixes into NaN.

``Encoding`` is a menu (Log, Linear, Normalized, Inverse) where the compositor has menu sockets
(Blender 5.0, through a Menu Switch node); an integer 0-3 (0 log, 1 linear, 2 normalized,
3 inverse) in 4.x, whose compositor has none. Everything else is Math nodes
(``CompositorNodeMath`` in 4.x, ``ShaderNodeMath`` in 5.0: see :mod:`.compat`), so the groups
work in the 4.x and 5.0 compositors alike.
"""

import bpy
from bpy.app.handlers import persistent

from ..core.encodings import DEFAULT_BACKGROUND, ENCODINGS, background_threshold
from .compat import (IS_5, MATH_NODE, add_handlers, compositor_tree, is_eevee,
                     remove_handlers)
from .scene.options import resolve_range
from .scene.passes import setup_passes

ENCODE_GROUP = "Z-Depth Encode"
DECODE_GROUP = "Z-Depth Decode"

#: Bumped when the group's contents change: older groups in a .blend are rebuilt in place.
GROUP_VERSION = 2

#: Menu labels of the encodings (the ``Encoding`` menu's items, in :data:`ENCODINGS` order).
ENCODING_LABELS = ("Log", "Linear", "Normalized", "Inverse")

#: Custom property of a group node: the Background value :func:`follow_engine` set last.
AUTO_BACKGROUND = "zdepth_auto_background"

#: Background depth the decode group gives by default (what Cycles' Z pass holds).
DECODE_BACKGROUND = 1e10

#: Custom property marking the trees and nodes this add-on made.
TAG = "zdepth_group_version"
NODE_TAG = "zdepth_node"

_HUGE = 1e38  # 1e38 * 1e38 overflows float32 to +inf; 0 * 1e38 * 1e38 stays 0


_MENU = None


def menu_encoding():
    """True when this Blender's compositor groups can have a menu socket (5.0: a
    ``NodeSocketMenu`` fed to a Menu Switch node); False in 4.x (an integer input then)."""
    global _MENU
    if _MENU is None:
        tree = bpy.data.node_groups.new(".zdepth_menu_probe", "CompositorNodeTree")
        try:
            tree.interface.new_socket("m", in_out="INPUT", socket_type="NodeSocketMenu")
            tree.nodes.new("GeometryNodeMenuSwitch").data_type = "FLOAT"
            _MENU = True
        except (TypeError, RuntimeError, ValueError):
            _MENU = False
        finally:
            bpy.data.node_groups.remove(tree)
    return _MENU


def set_encoding(socket, name):
    """Set a group node's ``Encoding`` input to encoding ``name`` (menu or integer)."""
    i = ENCODINGS.index(name)
    socket.default_value = ENCODING_LABELS[i] if socket.type == "MENU" else i


class _Builder:
    def __init__(self, tree):
        self.tree = tree
        self.x = 0

    def math(self, op, a, b=None, label=None, x=None, y=0):
        node = self.tree.nodes.new(MATH_NODE)
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


_ENCODING_TIP = "How depth is stored: 0 log, 1 linear, 2 normalized, 3 inverse"

#: The encode group's sockets: (name, in/out, default, min, max, tooltip).
_SOCKETS = (
    ("Depth", "INPUT", 1.0, 0.0, 3.4e38, "Planar camera depth (the Render Layers node's Depth)"),
    ("Near", "INPUT", 0.1, 1e-6, 3.4e38, "Depth stored as 0 (log, normalized)"),
    ("Far", "INPUT", 1000.0, 1e-6, 3.4e38, "Depth stored as 1 (log, normalized)"),
    ("Encoding", "INPUT", "ENCODING", 0, 3, _ENCODING_TIP),
    ("Background", "INPUT", DEFAULT_BACKGROUND, 0.0, 3.4e38,
     "Depth at or beyond this is background (Cycles, Workbench: 1e9; EEVEE: just under the "
     "clip end); set for the engine at each render unless you type your own"),
    ("Encoded", "OUTPUT", None, None, None, "Depth encoded as blender_zdepth writes it"),
    ("Preview", "OUTPUT", None, None, None, "White at near, black at far and for the background"),
)

#: The decode group's sockets.
_DECODE_SOCKETS = (
    ("Encoded", "INPUT", 0.0, -3.4e38, 3.4e38, "Depth as blender_zdepth stores it (channel Z)"),
    ("Near", "INPUT", 0.1, 1e-6, 3.4e38, "The file's near (header zdepthNear)"),
    ("Far", "INPUT", 1000.0, 1e-6, 3.4e38, "The file's far (header zdepthFar)"),
    ("Encoding", "INPUT", "ENCODING", 0, 3, _ENCODING_TIP + " (header zdepthEncoding)"),
    ("Background Depth", "INPUT", DECODE_BACKGROUND, 0.0, 3.4e38,
     "Depth given where the file holds background (default 1e10, as Cycles' Z pass)"),
    ("Depth", "OUTPUT", None, None, None, "Linear planar camera depth"),
    ("Background", "OUTPUT", None, None, None, "1 where no surface was hit, else 0"),
)


def _socket_type(default):
    if default == "ENCODING":
        return "NodeSocketMenu" if menu_encoding() else "NodeSocketInt"
    return "NodeSocketFloat"


def _interface(tree, sockets=_SOCKETS):
    """Make the group's sockets those of ``sockets``; sockets that already match (name,
    direction and type) are kept, so links to group nodes using this tree survive a rebuild;
    one of another type (the float Encoding of version 1) is replaced."""
    def items():
        return [i for i in tree.interface.items_tree if i.item_type == "SOCKET"]

    wanted = [(name, io, _socket_type(default)) for name, io, default, *_ in sockets]
    names = {(n, io) for n, io, _ in wanted}
    for item in items():
        if (item.name, item.in_out) not in names or \
                (item.name, item.in_out, item.socket_type) not in wanted:
            tree.interface.remove(item)
    have = {(i.name, i.in_out) for i in items()}
    for name, io, kind in wanted:
        if (name, io) not in have:
            tree.interface.new_socket(name, in_out=io, socket_type=kind)
    order = [n for n, io, _ in wanted if io == "INPUT"]
    if [i.name for i in items() if i.in_out == "INPUT"] != order:
        # a socket was added at the end: move each input in turn to the front of the inputs
        for name in reversed(order):
            inputs = [i for i in items() if i.in_out == "INPUT"]
            item = next(i for i in inputs if i.name == name)
            tree.interface.move(item, inputs[0].position)
    found = {(i.name, i.in_out): i for i in items()}
    for name, in_out, default, lo, hi, tip in sockets:
        item = found[(name, in_out)]
        item.description = tip
        if default is None or default == "ENCODING":
            if default == "ENCODING" and item.socket_type == "NodeSocketInt":
                item.default_value, item.min_value, item.max_value = 0, lo, hi
            continue
        item.default_value = default
        item.min_value, item.max_value = lo, hi


def _encoding_output(tree, gin, x=-350, y=600):
    """The group's Encoding as a float index 0-3: through a Menu Switch for a menu socket,
    as is for an integer one."""
    enc = gin.outputs["Encoding"]
    if enc.type != "MENU":
        return enc
    switch = tree.nodes.new("GeometryNodeMenuSwitch")
    switch.data_type = "FLOAT"
    switch.location = (x, y)
    switch.label = "Encoding"
    switch.enum_items.clear()
    for label in ENCODING_LABELS:
        switch.enum_items.new(label)
    for i, label in enumerate(ENCODING_LABELS):
        switch.inputs[label].default_value = float(i)
    tree.links.new(enc, switch.inputs["Menu"])
    item = next(i for i in tree.interface.items_tree
                if i.item_type == "SOCKET" and i.name == "Encoding" and i.in_out == "INPUT")
    item.default_value = ENCODING_LABELS[0]
    return switch.outputs["Output"]


def _build_encode(tree):
    tree.nodes.clear()
    _interface(tree)

    gin = tree.nodes.new("NodeGroupInput")
    gin.location = (-600, 0)
    gout = tree.nodes.new("NodeGroupOutput")
    gout.location = (1800, 0)
    z, near, far, thr = (gin.outputs[n] for n in ("Depth", "Near", "Far", "Background"))
    enc = _encoding_output(tree, gin)
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


def _group(name, build, refresh=False):
    tree = bpy.data.node_groups.get(name)
    if tree is not None and tree.bl_idname != "CompositorNodeTree":
        tree = None  # a user's tree of another kind with our name: leave it, make our own
        for ng in bpy.data.node_groups:
            if ng.bl_idname == "CompositorNodeTree" and ng.get(TAG) is not None \
                    and ng.name.startswith(name):
                tree = ng
                break
    if tree is not None and tree.get(TAG) == GROUP_VERSION and not refresh:
        return tree, False
    if tree is None:
        tree = bpy.data.node_groups.new(name, "CompositorNodeTree")
    build(tree)
    return tree, True


def encode_group(refresh=False):
    """The "Z-Depth Encode" node group, built when missing or out of date (``refresh``: rebuilt
    in place, so group nodes using it keep working). Returns ``(tree, built)``."""
    return _group(ENCODE_GROUP, _build_encode, refresh)


def decode_group(refresh=False):
    """The "Z-Depth Decode" node group (as :func:`encode_group`). Returns ``(tree, built)``."""
    return _group(DECODE_GROUP, _build_decode, refresh)


def _build_decode(tree):
    tree.nodes.clear()
    _interface(tree, _DECODE_SOCKETS)
    gin = tree.nodes.new("NodeGroupInput")
    gin.location = (-600, 0)
    gout = tree.nodes.new("NodeGroupOutput")
    gout.location = (1800, 0)
    v, near, far, bg_depth = (gin.outputs[n] for n in
                              ("Encoded", "Near", "Far", "Background Depth"))
    enc = _encoding_output(tree, gin)
    b = _Builder(tree)

    # which encoding: weights w_i = (Encoding == i)
    weights = []
    for i in range(4):
        w = b.math("COMPARE", enc, float(i), f"Encoding = {i}", x=-150, y=600 - 120 * i)
        w.node.inputs[2].default_value = 0.5
        weights.append(w)
    # background: +inf (log, linear, normalized: anything above float32's range) or <= 0
    # (inverse), as DepthEncoding.decode; NaN is never written by the encoder
    b.x = -150
    huge = b.math("GREATER_THAN", v, 3.0e38, "Value = +inf", y=100)
    not_pos = b.math("LESS_THAN", v, 1e-38, "Value <= 0", y=-50)
    bg = b.math("ADD", b.math("MULTIPLY", weights[3], not_pos, x=0, y=-50),
                b.math("MULTIPLY", b.math("SUBTRACT", 1.0, weights[3], x=0, y=100), huge,
                       x=150, y=100), "Background Mask", x=300, y=50)
    keep = b.math("SUBTRACT", 1.0, bg, "Surface", x=450, y=50)
    # a finite stand-in for background values (0.5, as the core), so no inf * 0 = NaN
    vmin = b.math("MINIMUM", v, 1e30, x=0, y=250)
    vs = b.math("ADD", b.math("MULTIPLY", vmin, keep, x=600, y=250),
                b.math("MULTIPLY", bg, 0.5, x=600, y=100), "Safe Value", x=750, y=250)

    # the four decodings
    b.x = 950
    ratio = b.math("DIVIDE", far, near, "Far / Near", x=750, y=-250)
    z_log = b.math("MULTIPLY", b.math("POWER", ratio, vs, y=450), near, "Log", x=1100, y=450)
    span = b.math("SUBTRACT", far, near, "Far - Near", x=750, y=-400)
    z_norm = b.math("ADD", b.math("MULTIPLY", vs, span, y=150), near, "Normalized", x=1100,
                    y=150)
    z_inv = b.math("DIVIDE", 1.0, vs, "Inverse", x=1100, y=0)
    picked = None
    for i, z in enumerate((z_log, vs, z_norm, z_inv)):
        term = b.math("MULTIPLY", weights[i], z, ENCODINGS[i], x=1250, y=450 - 150 * i)
        picked = term if picked is None else b.math("ADD", picked, term, x=1400,
                                                    y=300 - 150 * i)
    depth = b.math("ADD", b.math("MULTIPLY", picked, keep, "Surface Depth", x=1550, y=0),
                   b.math("MULTIPLY", bg, bg_depth, "Background Depth", x=1550, y=-200),
                   "Depth", x=1700, y=0)
    tree.links.new(depth, gout.inputs["Depth"])
    tree.links.new(bg, gout.inputs["Background"])
    tree[TAG] = GROUP_VERSION


def group_settings(scene):
    """``(near, far, encoding name, background threshold)`` for the groups from the scene's
    Z-Depth settings and engine."""
    near, far = resolve_range(scene)
    return near, far, scene.zdepth.encoding, engine_background(scene)


def engine_background(scene):
    """The encode group's Background for ``scene``'s engine: just under the camera's clip end
    for EEVEE (it writes the clip end), else 1e9 (Cycles writes 1e10, Workbench +inf)."""
    cam = scene.camera
    if cam is not None and cam.type == "CAMERA" and is_eevee(scene.render.engine):
        return background_threshold(cam.data.clip_end, cam.data.clip_start, "EEVEE")
    return DEFAULT_BACKGROUND


def _set_inputs(node, scene, decode=False):
    near, far, encoding, thr = group_settings(scene)
    for name, value in (("Near", near), ("Far", far)):
        sock = node.inputs.get(name)
        if sock is not None and not sock.is_linked:
            sock.default_value = value
    sock = node.inputs.get("Encoding")
    if sock is not None and not sock.is_linked:
        set_encoding(sock, encoding)
    if not decode:
        _set_background(node, thr)


def _set_background(node, value):
    sock = node.inputs.get("Background")
    if sock is not None and not sock.is_linked:
        sock.default_value = value
        node[AUTO_BACKGROUND] = float(sock.default_value)


def _group_nodes(tree, group, seen=None):
    """Group nodes using ``group`` in ``tree`` and in the node groups it contains."""
    seen = set() if seen is None else seen
    if tree is None or tree.name in seen:
        return
    seen.add(tree.name)
    for node in tree.nodes:
        if node.bl_idname != "CompositorNodeGroup" or node.node_tree is None:
            continue
        if node.node_tree == group:
            yield node
        else:
            yield from _group_nodes(node.node_tree, group, seen)


def follow_engine(scene):
    """Set the Background of every "Z-Depth Encode" node in ``scene``'s compositor for the
    engine that renders (a render_pre handler calls it): an automatic value -- the one this
    add-on set last, or the group's default -- follows the engine; a value typed by hand, or a
    linked input, is left alone. Returns the nodes changed."""
    group = bpy.data.node_groups.get(ENCODE_GROUP)
    tree = compositor_tree(scene, create=False)
    if group is None or tree is None:
        return []
    value = engine_background(scene)
    changed = []
    for node in _group_nodes(tree, group):
        sock = node.inputs.get("Background")
        if sock is None or sock.is_linked:
            continue
        now = float(sock.default_value)
        auto = now == float(node.get(AUTO_BACKGROUND, DEFAULT_BACKGROUND)) or \
            now == float(DEFAULT_BACKGROUND)
        if auto and now != value:
            _set_background(node, value)
            changed.append(node)
        elif auto:
            node[AUTO_BACKGROUND] = now
    return changed


@persistent
def _on_render_pre(scene, *args):
    try:
        follow_engine(scene)
    except Exception as exc:  # a handler must not break the render
        print(f"blender_zdepth: could not set the Z-Depth Encode background: {exc}")


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
    if not IS_5 or any(n.bl_idname == "NodeGroupOutput" for n in tree.nodes):
        return
    if not any(i.item_type == "SOCKET" and i.in_out == "OUTPUT" for i in tree.interface.items_tree):
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    rl = find_render_layers(tree, scene) or tree.nodes.new("CompositorNodeRLayers")
    rl.location = (-300, 0)
    out = tree.nodes.new("NodeGroupOutput")
    out.location = (300, 0)
    tree.links.new(rl.outputs["Image"], out.inputs[0])


def _scene_tree(scene, had, changes):
    """The scene's compositor tree, created when the scene ``had`` none (then passing the
    render through unchanged, and saying so in ``changes``)."""
    tree = compositor_tree(scene, create=True)
    if had is None:
        _pass_through(tree, scene)
        changes.append("compositor node tree created (render passed through unchanged)")
    return tree


def _group_node(tree, group, name, changes):
    """A new group node of ``group`` in ``tree``, named and tagged as ours."""
    node = tree.nodes.new("CompositorNodeGroup")
    node.node_tree = group
    node.name = node.label = name
    node[NODE_TAG] = True
    node.width = 180
    changes.append(f"added a {group.name!r} node")
    return node


def add_decode_node(scene, tree=None):
    """Put a "Z-Depth Decode" group node in ``tree`` (default: the scene's compositor, created
    when missing) with Near, Far and Encoding from the panel; feed it an Image node's ``Z``
    (one of our files) yourself. Returns ``(node, changes)``."""
    changes = []
    group, built = decode_group()
    if built:
        changes.append(f"built node group {group.name!r}")
    if tree is None:
        tree = _scene_tree(scene, compositor_tree(scene, create=False), changes)
    node = _group_node(tree, group, DECODE_GROUP, changes)
    _set_inputs(node, scene, decode=True)
    return node, changes


def add_encode_node(scene, tree=None, *, wire=False):
    """Put a "Z-Depth Encode" group node in ``tree`` (default: the scene's compositor, created
    when missing), reusing one that is already there; with ``wire``, feed it the Render Layers
    node's Depth (a Render Layers node is added when there is none). The user's own nodes and
    links are left as they are. Returns ``(node, changes)`` (changes in words)."""
    changes = []
    group, built = encode_group()
    if built:
        changes.append(f"built node group {group.name!r}")
    scene_tree = compositor_tree(scene, create=False)
    own = tree is None or tree == scene_tree
    if tree is None:
        had = scene_tree
        if had is not None and not IS_5 and not scene.use_nodes:
            changes.append("compositing nodes turned on")
        tree = _scene_tree(scene, had, changes)
    node = find_group_node(tree, group)
    if node is None:
        node = _group_node(tree, group, ENCODE_GROUP, changes)
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
            done, _ = setup_passes(scene)
            changes.extend(done)
            depth = rl.outputs.get("Depth")
        target = node.inputs["Depth"]
        if depth is not None and not any(link.from_socket == depth for link in target.links):
            tree.links.new(depth, target)
            changes.append("wired Render Layers Depth into it")
    return node, changes



#: Owner of the message-bus subscriptions (see :func:`_subscribe`).
_MSGBUS_OWNER = object()

#: What changes the automatic Background: the engine, the scene camera and its clip range.
_WATCHED = (("RenderSettings", "engine"), ("Scene", "camera"), ("Camera", "clip_start"),
            ("Camera", "clip_end"))


def _on_watched_change(*_args):
    """In Blender's interface, the Background follows as soon as the engine or the camera's clip
    range changes, on the main thread; the render_pre handler then finds nothing left to do (a
    render started from the interface runs its handlers in the render thread)."""
    for scene in bpy.data.scenes:
        try:
            follow_engine(scene)
        except Exception as exc:  # never break the interface
            print(f"blender_zdepth: could not set the Z-Depth Encode background: {exc}")


def _subscribe():
    bpy.msgbus.clear_by_owner(_MSGBUS_OWNER)
    for type_name, prop in _WATCHED:
        bpy.msgbus.subscribe_rna(key=(getattr(bpy.types, type_name), prop),
                                 owner=_MSGBUS_OWNER, args=(), notify=_on_watched_change)


@persistent
def _on_load_post(*_args):
    _subscribe()  # loading a file drops message-bus subscriptions


_HANDLERS = (("render_pre", _on_render_pre), ("load_post", _on_load_post))


def register_handlers():
    add_handlers(_HANDLERS)
    _subscribe()


def unregister_handlers():
    remove_handlers(_HANDLERS)
    bpy.msgbus.clear_by_owner(_MSGBUS_OWNER)
