"""Every panel of the add-on drawn over the scene's states (engines, encodings, toggles, focus
modes, sources, cameras) with a recording layout, checking that each property it shows exists
on its data and each operator (and operator property) it offers exists.

No window exists headless, so ``self.layout`` is a recorder standing in for Blender's UILayout:
it accepts only the methods and attributes the real ``bpy.types.UILayout`` has (checked against
its RNA), and records prop()/operator()/label() calls. The context, the scene and every data
block the panels read are the real bpy ones. Run on bpy 5.0 and 4.5.
"""

import itertools

import pytest

pytestmark = pytest.mark.blender

#: UILayout methods that return a sub-layout.
_SUBLAYOUTS = {"row", "column", "box", "split", "grid_flow", "column_flow", "menu_pie"}
#: UILayout methods whose (data, property) pair must exist.
_PROPS = {"prop", "prop_enum", "prop_menu_enum", "props_enum", "prop_tabs_enum",
          "prop_with_popover", "prop_with_menu", "prop_search", "prop_decorator"}


class Recorder:
    """A stand-in for ``UILayout`` that records what a panel draws and checks every name."""

    def __init__(self, bpy, log):
        object.__setattr__(self, "_bpy", bpy)
        object.__setattr__(self, "_log", log)

    def __setattr__(self, name, value):
        assert name in self._bpy.types.UILayout.bl_rna.properties, f"UILayout has no {name!r}"
        object.__setattr__(self, name, value)

    def __getattr__(self, name):
        rna = self._bpy.types.UILayout.bl_rna
        if name in rna.properties:  # e.g. reading layout.active
            return True
        assert name in rna.functions, f"UILayout has no method {name!r}"

        def call(*args, **kwargs):
            self._check_icon(kwargs.get("icon"))
            if name in _SUBLAYOUTS:
                return Recorder(self._bpy, self._log)
            if name in _PROPS:
                data, prop = args[0], args[1]
                assert data is not None, f"{name}() of {prop!r} on None"
                assert prop in data.bl_rna.properties, \
                    f"{type(data).__name__} has no property {prop!r}"
                self._log.append(("prop", data.bl_rna.identifier, prop))
                return None
            if name == "operator":
                return self._operator(args[0] if args else kwargs["operator"])
            if name == "label":
                self._log.append(("label", kwargs.get("text", "")))
            return None
        return call

    def _check_icon(self, icon):
        if icon is None:
            return
        icons = self._bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"]
        assert icon in {e.identifier for e in icons.enum_items}, f"no icon {icon!r}"

    def _operator(self, idname):
        module, _, name = idname.partition(".")
        ops = getattr(self._bpy.ops, module)
        assert hasattr(ops, name), f"no operator {idname}"
        try:  # (bpy.ops answers hasattr for any name; the RNA type exists only when registered)
            rna = getattr(ops, name).get_rna_type()
        except KeyError:
            raise AssertionError(f"no operator {idname}") from None
        self._log.append(("operator", idname))
        return OperatorProps(rna, idname)


class OperatorProps:
    """What ``layout.operator()`` returns: only the operator's own properties can be set."""

    def __init__(self, rna, idname):
        object.__setattr__(self, "_rna", rna)
        object.__setattr__(self, "_idname", idname)

    def __setattr__(self, name, value):
        assert name in self._rna.properties, f"{self._idname} has no property {name!r}"
        prop = self._rna.properties[name]
        if prop.type == "ENUM":
            assert value in {e.identifier for e in prop.enum_items}, (self._idname, name, value)


def _panels(bpy):
    """The add-on's registered panel classes, parents first."""
    import sys

    found = []
    for mod_name, module in list(sys.modules.items()):
        if module is None or not mod_name.startswith("blender_zdepth."):
            continue
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, bpy.types.Panel) \
                    and value is not bpy.types.Panel and getattr(value, "is_registered", False):
                found.append(value)
    found = sorted(set(found), key=lambda c: (bool(getattr(c, "bl_parent_id", "")),
                                              c.bl_idname))
    return found


def _scene(bpy):
    from blender_zdepth.blender import scenes

    scene = scenes.empty_scene((32, 24), "CYCLES", 1)
    scenes.add_object(scene, "cube", "Box", scenes.emission_material("Box", (.2, .4, .9)),
                      size=2.0, location=(0, 6, 0))
    scenes.add_camera(scene, (0, 0, 0), (0, 5, 0), lens=35.0, clip=(0.1, 100.0))
    return scene


def _enum(data, name):
    return [e.identifier for e in data.bl_rna.properties[name].enum_items]


@pytest.mark.slow
def test_every_panel_draws_over_the_scene_states(bpy, addon):
    from blender_zdepth.blender import compat
    from blender_zdepth.blender.refocus import live

    scene = _scene(bpy)
    camera = scene.camera
    box = bpy.data.objects["Box"]
    zd = scene.zdepth
    panels = _panels(bpy)
    assert {"RENDER_PT_zdepth", "RENDER_PT_zdepth_dof"} <= {p.bl_idname for p in panels}
    engines = ["CYCLES", compat.eevee_engine_id(), "BLENDER_WORKBENCH"]
    cameras = ["PERSP", "PANO", "ORTHO", None]
    states = list(itertools.product(engines, _enum(zd, "encoding"), (False, True),
                                    _enum(zd, "dof_focus_mode"), _enum(zd, "dof_source"),
                                    cameras))
    assert len(states) >= 700
    drawn = set()
    for i, (engine, encoding, export, focus, source, cam_kind) in enumerate(states):
        scene.render.engine = engine
        zd.encoding = encoding
        zd.export_enabled = export
        zd.dof_focus_mode = focus
        zd.dof_source = source
        # cycle the remaining toggles through the states as well
        zd.range_source = _enum(zd, "range_source")[i % 3]
        zd.bit_depth = _enum(zd, "bit_depth")[(i // 3) % 2]
        zd.beauty = _enum(zd, "beauty")[i % 3]
        zd.dof_fstop_override = bool(i % 2)
        zd.dof_blades = (0, 2, 6)[i % 3]
        zd.depth_layers = (1, 3)[(i // 2) % 2]
        zd.dof_focus_object = box if i % 4 else None
        camera.data.dof.focus_object = box if i % 5 == 0 else None
        zd.dof_aperture_override = bool((i // 2) % 2)
        camera.data.dof.use_dof = bool((i // 4) % 2)
        camera.data.dof.aperture_blades = (0, 6)[(i // 8) % 2]
        zd.dof_use_scene_range = bool((i // 16) % 2)
        zd.live_preview_mode = _enum(zd, "live_preview_mode")[(i // 32) % 2]
        live.LIVE.error = "no render yet" if i % 7 == 0 else ""
        live.LIVE.status = "Preview 32x24 in 0.01 s" if i % 7 == 1 else ""
        scene.camera = camera if cam_kind else None
        if cam_kind:
            camera.data.type = cam_kind
        context = bpy.context
        assert context.scene == scene
        for panel in panels:
            if not panel.poll(context):
                continue
            log = []
            fake = type("PanelSelf", (), {})()
            fake.layout = Recorder(bpy, log)
            if hasattr(panel, "draw_header"):
                panel.draw_header(fake, context)
            panel.draw(fake, context)
            drawn.update(entry[:3] for entry in log if entry[0] != "label")
    shown = {name for kind, *rest in drawn if kind == "prop" for name in rest[1:]}
    # what the states above must have brought on screen at least once
    for name in ("encoding", "range_source", "near", "far", "bit_depth", "codec",
                 "export_enabled", "output_dir", "name_pattern", "beauty", "write_preview",
                 "dof_focus_mode", "dof_focus_distance", "dof_focus_object", "dof_focus_pixel",
                 "dof_fstop_override", "dof_fstop", "dof_max_radius", "dof_blades",
                 "dof_rotation", "dof_source", "dof_input", "dof_output_dir", "dof_write_png",
                 "dof_output_name", "dof_multilayer",
                 "focus_distance", "aperture_fstop", "depth_layers", "depth_layer_samples",
                 "depth_layer_clips", "depth_layer_mode",
                 "dof_quality", "dof_aperture_override", "dof_anamorphic", "dof_use_scene_range",
                 "dof_frame_start", "dof_frame_end", "dof_frame_step", "live_preview",
                 "live_preview_mode", "aperture_blades", "aperture_rotation", "aperture_ratio"):
        assert name in shown, name
    live.LIVE.reset()
    ops = {rest[0] for kind, *rest in drawn if kind == "operator"}
    assert {"zdepth.setup_passes", "zdepth.apply_dof", "zdepth.add_node_group",
            "zdepth.export_render_result", "zdepth.dof_pick_focus",
            "zdepth.refresh_preview", "zdepth.render_depth_layers"} <= ops


def test_the_recorder_refuses_what_blender_would(bpy, addon):
    """The stand-in layout fails on names Blender would refuse (else the test above could not
    fail)."""
    scene = _scene(bpy)
    rec = Recorder(bpy, [])
    with pytest.raises(AssertionError, match="no property"):
        rec.prop(scene.zdepth, "dof_no_such_setting")
    with pytest.raises(AssertionError, match="no icon"):
        rec.prop(scene.zdepth, "live_preview", icon="NO_SUCH_ICON")
    with pytest.raises(AssertionError, match="no operator"):
        rec.operator("zdepth.no_such_operator")
    with pytest.raises(AssertionError, match="has no property"):
        rec.operator("zdepth.apply_dof").no_such_option = 1
    with pytest.raises(AssertionError, match="no method"):
        rec.no_such_method()
