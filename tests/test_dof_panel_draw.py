"""Every panel of the add-on drawn with a recording layout over the scene's states.

A panel cannot be drawn headless (there is no window), so its ``draw`` runs with a stand-in
layout that records each call and checks it the way Blender would: every property drawn exists
on the data it is drawn from, every operator is registered and every property set on its button
exists, every icon is one of Blender's, every layout method and keyword is one UILayout has.
"""

import itertools
import math
import types

import pytest

pytestmark = pytest.mark.blender


class Recorder:
    """A stand-in for ``bpy.types.UILayout``: sub-layouts are recorders, calls are checked."""

    def __init__(self, bpy, log):
        object.__setattr__(self, "_bpy", bpy)
        object.__setattr__(self, "_log", log)

    def __setattr__(self, name, value):
        assert name in self._bpy.types.UILayout.bl_rna.properties, f"UILayout has no {name}"

    def _check(self, func, kwargs):
        fn = self._bpy.types.UILayout.bl_rna.functions[func]
        for key, value in kwargs.items():
            assert key in fn.parameters, f"UILayout.{func} has no keyword {key!r}"
            if key == "icon":
                icons = fn.parameters["icon"].enum_items.keys()
                assert value in icons, f"no icon {value!r}"

    def _sub(self, func, kwargs):
        self._check(func, kwargs)
        return Recorder(self._bpy, self._log)

    def row(self, **kw):
        return self._sub("row", kw)

    def column(self, **kw):
        return self._sub("column", kw)

    def box(self, **kw):
        return self._sub("box", kw)

    def split(self, **kw):
        return self._sub("split", kw)

    def label(self, **kw):
        self._check("label", kw)
        assert isinstance(kw.get("text", ""), str)
        self._log.append(("label", kw.get("text", "")))

    def separator(self, **kw):
        self._check("separator", kw)

    def prop(self, data, name, **kw):
        self._check("prop", kw)
        assert data is not None, f"prop {name!r} drawn from None"
        props = data.bl_rna.properties
        assert name in props, f"{data.bl_rna.identifier} has no property {name!r}"
        getattr(data, name)  # readable (a broken getter would raise here)
        self._log.append(("prop", data.bl_rna.identifier, name))

    def operator(self, idname, **kw):
        self._check("operator", kw)
        module, func = idname.split(".")
        cls_name = f"{module.upper()}_OT_{func}"
        assert hasattr(self._bpy.types, cls_name), f"operator {idname} is not registered"
        rna = getattr(getattr(self._bpy.ops, module), func).get_rna_type()
        self._log.append(("operator", idname))
        return OperatorProps(rna)


class OperatorProps:
    def __init__(self, rna):
        object.__setattr__(self, "_rna", rna)

    def __setattr__(self, name, value):
        assert name in self._rna.properties, f"{self._rna.identifier} has no property {name!r}"


def panels(bpy):
    from blender_zdepth.blender import dof_ops, panels as main

    return [main.RENDER_PT_zdepth, dof_ops.RENDER_PT_zdepth_dof]


def draw_all(bpy, scene):
    log = []
    context = types.SimpleNamespace(scene=scene, view_layer=scene.view_layers[0])
    for cls in panels(bpy):
        assert cls.poll(context)
        fake = types.SimpleNamespace(layout=Recorder(bpy, log))
        if hasattr(cls, "draw_header"):
            cls.draw_header(fake, context)
        cls.draw(fake, context)
    return log


def test_every_panel_draws_over_the_scenes_states(addon):
    import bpy
    from blender_zdepth.blender import preview, scenes

    scene = scenes.empty_scene((64, 48), "CYCLES", 1)
    scenes.add_object(scene, "plane", "Plane", None, size=2.0, location=(0, 5, 0),
                      rotation=(math.pi / 2, 0, 0))
    cam = scenes.add_camera(scene, (0, 0, 0), (0, 1, 0))
    zd = scene.zdepth
    seen = set()
    states = itertools.product(
        ("CAMERA", "DISTANCE", "OBJECT", "PIXEL"), ("RENDER_RESULT", "FILES"), (False, True),
        (False, True), (0, 2, 6), (False, True))
    for i, (focus, source, override, use_dof, blades, fstop) in enumerate(states):
        zd.dof_focus_mode = focus
        zd.dof_source = source
        zd.dof_aperture_override = override
        zd.dof_blades = blades
        cam.data.dof.aperture_blades = blades
        cam.data.dof.use_dof = use_dof
        zd.dof_fstop_override = fstop
        zd.dof_use_scene_range = bool(i % 2)
        zd.export_enabled = bool(i % 3 == 0)
        zd.range_source = ("CAMERA", "SCENE", "MANUAL")[i % 3]
        zd.live_preview_mode = ("DEFOCUS", "FOCAL_PLANE")[i % 2]
        preview.LIVE.error = "some error" if i % 5 == 0 else ""
        preview.LIVE.status = "Preview 64x48" if i % 5 == 1 else ""
        scene.camera = cam if i % 7 else None
        log = draw_all(bpy, scene)
        seen.update(entry[2] for entry in log if entry[0] == "prop")
    preview.LIVE.reset()
    # every setting of the Depth of Field panel was drawn in some state
    dof_names = {n for n in zd.bl_rna.properties.keys()
                 if n.startswith(("dof_", "live_"))}
    assert dof_names <= seen, sorted(dof_names - seen)
    for name in ("aperture_blades", "aperture_rotation", "aperture_ratio", "aperture_fstop",
                 "focus_distance"):
        assert name in seen  # the camera's own values where they apply


def test_recorder_catches_a_wrong_name(addon):
    """The stand-in layout must fail on what Blender would refuse (else the test above could
    not fail)."""
    import bpy
    from blender_zdepth.blender import scenes

    scene = scenes.empty_scene((8, 8), "CYCLES", 1)
    rec = Recorder(bpy, [])
    with pytest.raises(AssertionError, match="no property"):
        rec.prop(scene.zdepth, "dof_no_such_thing")
    with pytest.raises(AssertionError, match="icon"):
        rec.prop(scene.zdepth, "live_preview", icon="NO_SUCH_ICON")
    with pytest.raises(AssertionError, match="not registered"):
        rec.operator("zdepth.no_such_operator")
    with pytest.raises(AssertionError, match="has no property"):
        rec.operator("zdepth.apply_dof").no_such_option = 1
    with pytest.raises(AssertionError, match="keyword"):
        rec.row(no_such_keyword=True)
