"""Depth pass set-up: :func:`setup_passes` and ``bpy.ops.zdepth.setup_passes``.

Cycles, EEVEE (``BLENDER_EEVEE_NEXT`` in 4.2-4.5, ``BLENDER_EEVEE`` in 5.0) and Workbench have a
Z pass (``view_layer.use_pass_z``): planar camera depth in all three (background: Cycles 1e10,
EEVEE the clip end, Workbench +inf). Other engines (third-party) may have none, and nothing is
changed for them. The operator is in :mod:`..ui.operators`.
"""

import bpy

from ..compat import is_eevee
from .options import resolve_range

#: Engines with a Z pass besides EEVEE (whose id depends on the version).
DEPTH_ENGINES = ("CYCLES", "BLENDER_WORKBENCH")


def engine_has_depth(engine):
    """True for the engines with a Z pass: Cycles, EEVEE (either id) and Workbench."""
    return engine in DEPTH_ENGINES or is_eevee(engine)


def engine_label(engine):
    return {"CYCLES": "Cycles", "BLENDER_WORKBENCH": "Workbench"}.get(
        engine, "EEVEE" if is_eevee(engine) else engine)


def rendering_view_layers(scene):
    """The view layers a render of ``scene`` produces (all enabled ones, or just the active one
    when "Render Single Layer" is on)."""
    if scene.render.use_single_layer:
        return [bpy.context.view_layer] if bpy.context.scene == scene else [scene.view_layers[0]]
    return [layer for layer in scene.view_layers if layer.use]


def depth_status(scene):
    """``(ok, text)``: whether every rendering view layer has its Z pass, in words."""
    engine = scene.render.engine
    if not engine_has_depth(engine):
        return False, (f"{engine_label(engine)} has no depth pass: use Cycles, EEVEE or "
                       f"Workbench")
    layers = rendering_view_layers(scene)
    if not layers:
        return False, "no view layer renders (all are disabled)"
    missing = [layer.name for layer in layers if not layer.use_pass_z]
    if missing:
        return False, f"Z pass off on {', '.join(missing)}"
    return True, f"Z pass on ({len(layers)} view layer{'s' if len(layers) > 1 else ''})"


def setup_passes(scene, *, all_layers=False, mist=False, near=None, far=None):
    """Turn the Z pass on for the view layers that render (``all_layers``: every view layer)
    and, with ``mist``, the mist pass with the world's mist range set to ``[near, far]``
    (default: the encoding's range, see :func:`.options.resolve_range`).

    Returns ``(changes, problem)``: a list of what was changed, in words (empty when everything
    was already so: running it twice changes nothing more), and a problem in words (an engine
    without a depth pass; nothing is changed then) or None.
    """
    engine = scene.render.engine
    if not engine_has_depth(engine):
        return [], (f"the {engine_label(engine)} engine has no depth pass; switch to Cycles, "
                    f"EEVEE or Workbench (nothing was changed)")
    layers = list(scene.view_layers) if all_layers else rendering_view_layers(scene)
    changes = []
    for layer in layers:
        if not layer.use_pass_z:
            layer.use_pass_z = True
            changes.append(f"Z pass on for view layer {layer.name!r}")
        if mist and not layer.use_pass_mist:
            layer.use_pass_mist = True
            changes.append(f"mist pass on for view layer {layer.name!r}")
    if mist:
        if near is None or far is None:
            near, far = resolve_range(scene)
        world = scene.world
        if world is None:
            world = bpy.data.worlds.new("World")
            scene.world = world
            changes.append(f"new world {world.name!r} for the mist settings")
        ms = world.mist_settings
        depth = float(far) - float(near)
        if abs(ms.start - near) > 1e-6 * max(1.0, near) or abs(ms.depth - depth) > 1e-6 * depth:
            ms.start, ms.depth = float(near), depth
            changes.append(f"mist range {near:g}-{far:g} on world {world.name!r}")
        if ms.falloff != "LINEAR":
            ms.falloff = "LINEAR"
            changes.append("mist falloff linear")
    return changes, None
