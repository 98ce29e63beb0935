"""Everything of blender_zdepth that touches ``bpy``.

* :mod:`.scene` -- readers: ``scene.zdepth`` and the camera as plain values (export and layer
  options, the lens of a refocused frame), views, paths and depth passes;
* :mod:`.render` -- the Render Result as files, the depth export, depth-layer passes, export on
  render (handlers and their queue);
* :mod:`.refocus` -- the Apply batch, the live preview and the image they show;
* :mod:`.ui` -- operators, panels and menus: the only place that registers classes;
* :mod:`.props` (the settings group), :mod:`.nodes` (compositor node groups), :mod:`.compat`
  (the one module that knows Blender versions), :mod:`.scenes` (test and demo scenes).

:func:`register` is idempotent: calling it twice, or register / unregister / register, leaves
exactly one copy of every class, handler and menu entry.
"""

__all__ = ["register", "unregister"]

_registered = []


def register():
    if _registered:
        unregister()
    # imported here: importing this package (and blender_zdepth) needs no bpy
    from . import ui

    ui.register()
    _registered.append(ui)


def unregister():
    while _registered:
        module = _registered.pop()
        module.unregister()
