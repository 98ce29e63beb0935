"""register() / unregister() of the add-on, in one Blender process (run on bpy 5.0 and 4.5).

The add-on must be idempotent: register, unregister, register again (and register twice) gives
no error and leaves exactly one copy of every class, handler, menu entry and key map item;
unregister leaves Blender as it was before (classes, properties, handlers, menu entries).
"""

import pytest

import bpy_state

pytestmark = pytest.mark.blender


@pytest.fixture
def addon(bpy):
    """The blender_zdepth package, unregistered at the start; its former state restored after."""
    import blender_zdepth
    from blender_zdepth import blender as blender_side

    was_registered = bool(blender_side._registered)
    blender_zdepth.unregister()
    yield blender_zdepth
    blender_zdepth.unregister()
    if was_registered:
        blender_zdepth.register()


def test_import_without_registering_touches_nothing(bpy):
    before = bpy_state.snapshot(bpy)
    import blender_zdepth  # noqa: F401  (importing must not register anything)
    from blender_zdepth import cli  # noqa: F401

    assert bpy_state.differences(before, bpy_state.snapshot(bpy)) == []


def test_register_unregister_register(bpy, addon):
    clean = bpy_state.snapshot(bpy)

    addon.register()
    registered = bpy_state.snapshot(bpy)
    classes = bpy_state.package_classes(bpy, "blender_zdepth")
    meant = {name for name, cls in classes.items() if bpy_state.meant_to_register(cls, bpy)}
    missing = sorted(name for name in meant if not classes[name].is_registered)
    assert missing == [], f"classes not registered by register(): {missing}"

    addon.unregister()
    assert bpy_state.differences(clean, bpy_state.snapshot(bpy)) == []
    left = sorted(name for name, cls in classes.items() if cls.is_registered)
    assert left == [], f"classes still registered after unregister(): {left}"

    addon.register()
    assert bpy_state.differences(registered, bpy_state.snapshot(bpy)) == []

    addon.register()  # twice in a row: still one copy of everything
    assert bpy_state.differences(registered, bpy_state.snapshot(bpy)) == []

    addon.unregister()
    addon.unregister()  # a second unregister is harmless
    assert bpy_state.differences(clean, bpy_state.snapshot(bpy)) == []


def test_registered_names(bpy, addon):
    """The public names other areas and users rely on (contracts.md)."""
    addon.register()
    assert hasattr(bpy.ops.zdepth, "setup_passes")
    assert hasattr(bpy.types, "RENDER_PT_zdepth")
    assert bpy.types.RENDER_PT_zdepth.bl_context == "render"
    assert "zdepth" in bpy.types.Scene.bl_rna.properties
    addon.unregister()
    assert not hasattr(bpy.types, "RENDER_PT_zdepth")
    assert "zdepth" not in bpy.types.Scene.bl_rna.properties


def test_registration_survives_loading_a_file(bpy, addon, tmp_path):
    """Handlers the add-on needs must be persistent: loading a .blend keeps one copy of each."""
    addon.register()
    registered = bpy_state.snapshot(bpy)
    path = str(tmp_path / "empty.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    assert bpy_state.differences(registered, bpy_state.snapshot(bpy)) == []
    addon.unregister()
    assert bpy_state.snapshot(bpy)["ops"] == []
