"""What a flat Z pass cannot describe: motion blur and transparent surfaces in a scene.

A depth pass holds one depth per pixel, taken from one sample (Cycles: the first) and only for
surfaces at least as opaque as the view layer's alpha threshold. A pixel of a motion trail holds
the moving object *and* what is behind it, and its depth is either, at random (a dither); a
half-transparent curtain gets no depth at all (it is refocused as if it were the wall behind
it). Depth layers rendered as slabs (:mod:`..render.peel`) give each surface of such a pixel its
own coverage and depth. :func:`flat_depth_limits` is the cheap look at the scene that says so:
the panel shows it as a warning row, the ``render`` command prints it, and the depth layers'
automatic mode chooses slabs from it.
"""

from ..compat import material_is_blended, uses_nodes

#: Shader nodes that make a surface let light through unchanged (see-through, not refracting).
TRANSPARENT_NODES = {"ShaderNodeBsdfTransparent"}

#: Most materials looked at (the heuristic stays cheap on huge scenes).
MAX_MATERIALS = 500


def _alpha_below_one(tree):
    """A Principled BSDF whose Alpha is below 1 or driven by a link (a texture's alpha)."""
    for node in tree.nodes:
        if node.bl_idname != "ShaderNodeBsdfPrincipled" or getattr(node, "mute", False):
            continue
        alpha = node.inputs.get("Alpha")
        if alpha is not None and (alpha.is_linked or float(alpha.default_value) < 1.0):
            return True
    return False


def material_is_transparent(mat):
    """True when ``mat`` lets the camera see through it in part: alpha blending, a Transparent
    BSDF in its node tree, a Principled BSDF with alpha below 1 (or textured), or a viewport /
    Workbench colour with alpha below 1."""
    if mat is None:
        return False
    if material_is_blended(mat):
        return True
    tree = getattr(mat, "node_tree", None)
    if tree is not None and uses_nodes(mat):
        if any(n.bl_idname in TRANSPARENT_NODES and not getattr(n, "mute", False)
               for n in tree.nodes):
            return True
        if _alpha_below_one(tree):
            return True
    colour = getattr(mat, "diffuse_color", None)
    return colour is not None and len(colour) == 4 and float(colour[3]) < 1.0


def transparent_materials(scene):
    """Names of the transparent materials (:func:`material_is_transparent`) on the objects
    ``scene`` renders (not hidden from the render), at most :data:`MAX_MATERIALS` looked at."""
    seen, found = set(), []
    for obj in scene.objects:
        if obj.hide_render or obj.type not in {"MESH", "CURVE", "SURFACE", "META", "FONT",
                                               "CURVES", "POINTCLOUD", "VOLUME"}:
            continue
        for slot in getattr(obj, "material_slots", ()):
            mat = slot.material
            if mat is None or mat.name in seen:
                continue
            seen.add(mat.name)
            if material_is_transparent(mat):
                found.append(mat.name)
            if len(seen) >= MAX_MATERIALS:
                return found
    return found


def flat_depth_limits(scene):
    """What in ``scene`` a flat Z pass cannot describe, as short phrases (empty: nothing):
    ``"motion blur"`` (Cycles, EEVEE) and ``"transparent surfaces (Curtain, Glass)"``."""
    reasons = []
    if scene.render.engine != "BLENDER_WORKBENCH" and getattr(scene.render, "use_motion_blur",
                                                              False):
        reasons.append("motion blur")
    names = transparent_materials(scene)
    if names:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        reasons.append(f"transparent surfaces ({shown})")
    return reasons


def flat_depth_warning(scene):
    """One line saying what goes wrong with a flat Z pass in ``scene`` and what fixes it, or
    None when :func:`flat_depth_limits` finds nothing."""
    reasons = flat_depth_limits(scene)
    if not reasons:
        return None
    return (f"{' and '.join(reasons)}: a flat Z pass holds one depth per pixel, so motion "
            f"trails and see-through surfaces refocus at the wrong depth (blocky, crisp where "
            f"a lens melts them); depth layers as slabs fix it (Depth Layers 3, Mode Slabs)")
