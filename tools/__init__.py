"""Developer tools of blender_zdepth (standard library only; not part of the add-on)."""
