"""``python -m blender_zdepth``: the command line (see :mod:`blender_zdepth.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
