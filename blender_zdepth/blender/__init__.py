"""Everything of blender_zdepth that touches ``bpy``.

Each module named in :data:`MODULES` defines ``register()`` and ``unregister()``; they are called
in this order on register and in reverse on unregister. :func:`register` is idempotent: calling it
twice, or register / unregister / register, leaves exactly one copy of every class, handler and
menu entry.
"""

import importlib

#: Submodules with register()/unregister(), in registration order.
MODULES = ["properties", "operators", "nodes", "export", "panels", "dof_ops", "layers", "preview"]

_registered = []


def _modules():
    return [importlib.import_module(f"{__name__}.{name}") for name in MODULES]


def register():
    if _registered:
        unregister()
    for module in _modules():
        module.register()
        _registered.append(module)


def unregister():
    while _registered:
        module = _registered.pop()
        module.unregister()
