"""Render-farm integration files shipped with blender_zdepth (no bpy, standard library only).

* ``zdepth_render_refocus.js`` -- the Flamenco 3 job type "Render with Z-Depth + Refocus"
  (job type name ``zdepth-render-refocus``): render in chunks with the ``render`` command, then
  refocus each chunk with ``dof``. ``python -m blender_zdepth farm flamenco --out DIR`` writes it
  into a Flamenco Manager's ``scripts/`` folder; see docs/farm.md.
"""

import os

#: The Flamenco job type file, inside the package (and the extension zip).
FLAMENCO_JOB_TYPE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                 "zdepth_render_refocus.js")


def flamenco_job_type_bytes():
    """The job type file's content (bytes, as shipped)."""
    with open(FLAMENCO_JOB_TYPE, "rb") as f:
        return f.read()
