"""What an add-on leaves behind in Blender, as comparable snapshots (helper of the tests).

Used in-process by ``tests/test_register.py`` and inside the Blender subprocess of
``tests/test_extension_build.py``; it imports nothing but the ``bpy`` it is given.
"""

import sys


def snapshot(bpy):
    """Return a dict describing the registrations visible in ``bpy`` right now.

    * ``types``: names in ``bpy.types`` (operators, panels, menus, UI lists... appear there);
    * ``properties``: ``{type name: property identifiers}`` of every type (catches
      ``Scene.zdepth`` style pointer properties left behind);
    * ``ops``: operators under ``bpy.ops.zdepth``;
    * ``handlers``: ``{handler list: number of functions}`` of ``bpy.app.handlers``;
    * ``menus``: ``{type name: number of functions appended to its draw}`` (menu/panel/header
      entries added with ``.append`` / ``.prepend``);
    * ``keymap_items``: ``{keymap name: item count}`` of the add-on key configuration.
    """
    types = sorted(dir(bpy.types))
    properties = {}
    menus = {}
    for name in types:
        cls = getattr(bpy.types, name, None)
        rna = getattr(cls, "bl_rna", None)
        if rna is not None:
            try:
                properties[name] = sorted(rna.properties.keys())
            except (AttributeError, TypeError, ReferenceError):
                pass
        draw = getattr(cls, "draw", None)
        funcs = getattr(draw, "_draw_funcs", None)
        if funcs:
            menus[name] = len(funcs) - 1  # the class's own draw is the first entry
    handlers = {
        name: len(value) for name in dir(bpy.app.handlers)
        if not name.startswith("_") and isinstance(value := getattr(bpy.app.handlers, name), list)
    }
    keymap_items = {}
    keyconfig = bpy.context.window_manager.keyconfigs.addon if bpy.context.window_manager else None
    if keyconfig is not None:
        keymap_items = {km.name: len(km.keymap_items) for km in keyconfig.keymaps}
    return {
        "types": types,
        "properties": properties,
        "ops": sorted(dir(bpy.ops.zdepth)),
        "handlers": handlers,
        "menus": menus,
        "keymap_items": keymap_items,
    }


def differences(before, after):
    """Human-readable differences between two :func:`snapshot` results ([] when the same)."""
    out = []
    added = sorted(set(after["types"]) - set(before["types"]))
    removed = sorted(set(before["types"]) - set(after["types"]))
    if added:
        out.append(f"bpy.types gained {added}")
    if removed:
        out.append(f"bpy.types lost {removed}")
    for name in sorted(set(before["properties"]) & set(after["properties"])):
        a, b = set(before["properties"][name]), set(after["properties"][name])
        if a != b:
            out.append(f"{name} properties: gained {sorted(b - a)}, lost {sorted(a - b)}")
    if before["ops"] != after["ops"]:
        out.append(f"bpy.ops.zdepth: {before['ops']} -> {after['ops']}")
    for key in ("handlers", "menus", "keymap_items"):
        names = set(before[key]) | set(after[key])
        for name in sorted(names):
            a, b = before[key].get(name, 0), after[key].get(name, 0)
            if a != b:
                out.append(f"{key} {name}: {a} -> {b}")
    return out


def package_classes(bpy, prefix):
    """bpy classes defined in the loaded modules of package ``prefix`` (e.g. ``blender_zdepth``).

    Returns ``{qualified name: class}`` for every subclass of ``bpy.types.bpy_struct`` whose
    ``__module__`` is in the package; each has ``is_registered``.
    """
    found = {}
    for mod_name, module in list(sys.modules.items()):
        if module is None or not (mod_name == prefix or mod_name.startswith(prefix + ".")):
            continue
        for value in list(vars(module).values()):
            if (isinstance(value, type) and issubclass(value, bpy.types.bpy_struct)
                    and value.__module__.startswith(prefix)):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def meant_to_register(cls, bpy):
    """True for classes that only make sense registered.

    PropertyGroups, and operators, panels, menus, headers, UI lists and add-on preferences that
    name themselves (their own ``bl_idname`` or ``bl_label``); mix-in bases that name nothing are
    left out.
    """
    t = bpy.types
    if issubclass(cls, t.PropertyGroup):
        return True
    kinds = (t.Operator, t.Panel, t.Menu, t.Header, t.UIList, t.AddonPreferences)
    own = vars(cls)
    return issubclass(cls, kinds) and ("bl_idname" in own or "bl_label" in own)
