"""``python -m blender_zdepth``: the command line (see :mod:`blender_zdepth.cli`)."""

import os
import sys

from .cli import main

if __name__ == "__main__":
    code = main()
    if "bpy" in sys.modules:
        # The bpy 4.5 module can deadlock at exit in a C++ static destructor (its delayed
        # file-close thread waits on a condition variable being destroyed): with everything
        # written and flushed, leave without running the static destructors.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
