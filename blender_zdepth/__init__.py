"""blender_zdepth: Z-depth as a first-class citizen of a Blender render.

The package has two halves:

* :mod:`blender_zdepth.core` -- pure Python + numpy (depth encodings, EXR I/O, lens maths,
  the depth-of-field engine). It never imports ``bpy`` and can be used on any machine.
* :mod:`blender_zdepth.blender` -- everything that touches ``bpy`` (properties, operators,
  panels, compositor node groups, render handlers).

Importing this package never imports ``bpy``; :func:`register` / :func:`unregister` are the
hooks Blender calls when the extension is enabled or disabled.
"""

__version__ = "0.1.0"


def register():
    """Register the add-on's classes, handlers and menu entries (called by Blender)."""
    from . import blender

    blender.register()


def unregister():
    """Undo :func:`register` (called by Blender)."""
    from . import blender

    blender.unregister()
