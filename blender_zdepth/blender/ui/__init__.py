"""What Blender shows of blender_zdepth: the operators, the panels and the menu entry, and the one
place that registers them -- with the scene settings (:class:`~..props.ZDepthSettings`) and the
handlers of the compositor node groups, export on render and the live preview.

:func:`register` and :func:`unregister` are called by :func:`blender_zdepth.blender.register`
(which keeps them idempotent); :func:`register_settings` alone gives scenes their ``zdepth``
settings (the ``render`` command reads a file's settings with it).
"""

import bpy
from bpy.props import PointerProperty

from ..nodes import register_handlers as register_node_handlers
from ..nodes import unregister_handlers as unregister_node_handlers
from ..props import ZDepthSettings
from ..refocus import live
from ..render import handlers
from . import dof_operators, operators, panels
from .menus import draw_add_menu

#: Registered in this order (a sub-panel after its parent), unregistered in reverse.
CLASSES = operators.CLASSES + dof_operators.CLASSES + panels.CLASSES

#: ``(register_handlers, unregister_handlers)`` of the modules with handlers, in order.
_HANDLERS = ((register_node_handlers, unregister_node_handlers),
             (handlers.register_handlers, handlers.unregister_handlers),
             (live.register_handlers, live.unregister_handlers))


def register_settings():
    """Register the settings group and ``bpy.types.Scene.zdepth``."""
    bpy.utils.register_class(ZDepthSettings)
    bpy.types.Scene.zdepth = PointerProperty(type=ZDepthSettings, name="Z-Depth")


def unregister_settings():
    if hasattr(bpy.types.Scene, "zdepth"):
        del bpy.types.Scene.zdepth
    if getattr(ZDepthSettings, "is_registered", False):
        bpy.utils.unregister_class(ZDepthSettings)


def register():
    register_settings()
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.NODE_MT_add.append(draw_add_menu)
    for add, _ in _HANDLERS:
        add()


def unregister():
    for _, remove in reversed(_HANDLERS):
        remove()
    bpy.types.NODE_MT_add.remove(draw_add_menu)
    for cls in reversed(CLASSES):
        if getattr(cls, "is_registered", False):
            bpy.utils.unregister_class(cls)
    unregister_settings()


__all__ = ["CLASSES", "register", "register_settings", "unregister", "unregister_settings"]
