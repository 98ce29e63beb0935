"""The child process of :mod:`.isolated` (run as a script: ``blender -b copy.blend -P
isolated_main.py -- args.json``, or ``python isolated_main.py -- args.json`` with the bpy module).

It makes this package importable by its folder (the parent may know it as
``bl_ext.<repository>.blender_zdepth``), with the parent's ``sys.path`` for the bundled wheels,
and hands over to :func:`.isolated.child_main`. An error is written to ``error.txt`` beside the
arguments and gives exit status 1; the process leaves with ``os._exit`` once everything is
written (the bpy 4.5 module can hang in its teardown).
"""

import importlib
import json
import os
import sys
import traceback


def _main():
    args_path = sys.argv[sys.argv.index("--") + 1]
    with open(args_path) as f:
        args = json.load(f)
    package_dir = args["package_dir"]
    for entry in [os.path.dirname(package_dir)] + list(args["sys_path"]):
        if entry and entry not in sys.path and os.path.isdir(entry):
            sys.path.append(entry)
    sys.path.insert(0, os.path.dirname(package_dir))
    status = 1
    isolated = None
    try:
        isolated = importlib.import_module(
            os.path.basename(package_dir) + ".blender.render.isolated")
        status = isolated.child_main(args)
    except KeyboardInterrupt:  # Ctrl+C reached this process too
        status = isolated.CANCELLED_STATUS if isolated is not None else 1
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        traceback.print_exc()
        with open(os.path.join(os.path.dirname(args_path), "error.txt"), "w") as f:
            f.write(str(exc) or type(exc).__name__)
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    _main()
