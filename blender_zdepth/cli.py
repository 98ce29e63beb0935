"""Command line of blender_zdepth.

Three ways in, one parser:

* ``python -m blender_zdepth SUBCOMMAND ...`` (the ``bpy`` module or no Blender at all);
* ``blender -b [FILE.blend] -P path/to/blender_zdepth/cli.py -- SUBCOMMAND ...`` (a full Blender:
  the arguments after ``--`` are ours);
* :func:`main` from Python, with an explicit ``argv`` list.

Subcommands live in :mod:`blender_zdepth.commands`, one module each, and are found at run time.
Only the module of the subcommand being run is imported (``python -m blender_zdepth dof ...``
never loads the other commands); ``--help``, no subcommand or an unknown one build the parser
with every subcommand, so the help and argparse's "invalid choice" list them all.
Exit codes: 0 success, 1 processing error, 2 usage error (bad options or arguments).
"""

import argparse
import importlib
import importlib.util
import os
import sys

if __package__ in (None, ""):
    # Run as a script (``blender -b -P .../blender_zdepth/cli.py -- ...``): make the package
    # importable by its name, then hand over to the real module.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from blender_zdepth.cli import main as _main

    _args = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    sys.exit(_main(_args, prog="blender -b -P cli.py --"))

from . import __version__, commands
from .core.errors import ZDepthError


def _command_modules():
    """Yield the subcommand modules of :mod:`blender_zdepth.commands`, sorted by name."""
    import pkgutil

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{commands.__name__}.{info.name}")


def _named_command(argv):
    """The module of the subcommand ``argv`` runs, imported alone, or None when ``argv`` asks
    for the top-level parser (``--help``, ``--version``, no subcommand, a name that is no
    subcommand: those need every subcommand, for the help and argparse's list of choices)."""
    for arg in argv:
        if arg.startswith("-"):  # a top-level option before the subcommand: the full parser
            return None
        if not arg.isidentifier() or arg.startswith("_"):
            return None
        try:
            spec = importlib.util.find_spec(f"{commands.__name__}.{arg}")
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        module = importlib.import_module(spec.name)
        return module if getattr(module, "NAME", None) == arg else None
    return None


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One clear line and exit code 2, like argparse, but pointing at --help.
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser(prog="python -m blender_zdepth", only=None):
    """Return the :class:`argparse.ArgumentParser` with every subcommand added (``only``: a
    subcommand module: that one alone, as :func:`main` does when it runs one)."""
    parser = _Parser(
        prog=prog,
        description="Z-depth export, inspection and depth of field for Blender renders.",
    )
    parser.add_argument("--version", action="version", version=f"blender_zdepth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in ([only] if only is not None else _command_modules()):
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _needs=tuple(getattr(module, "NEEDS", ())))
    return parser


def main(argv=None, prog="python -m blender_zdepth"):
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(prog, only=_named_command(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        for name in args._needs:  # packages the command needs, checked before any work
            importlib.import_module(name)
        return int(args._run(args) or 0)
    except ZDepthError as exc:
        print(f"blender_zdepth: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        if exc.name not in ("OpenEXR", "numpy"):
            raise
        in_blender = "bpy" in sys.modules  # e.g. a farm worker's Blender: the extension brings it
        print(f"blender_zdepth: error: this command needs the Python package {exc.name!r}, "
              f"which this Python ({sys.executable}) does not have: install it with "
              f"'{sys.executable} -m pip install {exc.name}'"
              + (" or install the blender_zdepth extension in this Blender (it brings OpenEXR)"
                 if in_blender else ""), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("blender_zdepth: interrupted", file=sys.stderr)
        return 130
