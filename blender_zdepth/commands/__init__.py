"""Subcommands of ``python -m blender_zdepth``.

Each module in this package is one subcommand and defines:

* ``NAME`` -- the subcommand name, e.g. ``"encode"``;
* ``HELP`` -- one line for ``--help``;
* ``add_arguments(parser)`` -- adds its options to an :class:`argparse.ArgumentParser`;
* ``run(args) -> int`` -- does the work and returns the exit code.

Raise :class:`blender_zdepth.core.errors.ZDepthError` (exit 1) or
:class:`~blender_zdepth.core.errors.UsageError` (exit 2) for bad input; :mod:`blender_zdepth.cli`
prints the message as one line on stderr. Modules whose name starts with ``_`` are helpers, not
subcommands. Import heavy dependencies (numpy, OpenEXR, bpy) inside ``run``, so ``--help`` stays
fast.
"""
