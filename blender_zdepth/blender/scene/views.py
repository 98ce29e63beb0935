"""Stereo and multi-view renders: which views a scene renders (:func:`rendered_views`), the file
suffix of each (:func:`view_suffixes`), the camera rendering a view (:func:`view_camera`) and,
in Stereo 3D, the eye's own matrix (:func:`eye_matrix`).
"""

import math
import os

from mathutils import Matrix


STEREO_LAYERS = ("depth layers are not rendered for a stereo / multi-view render (Stereoscopy "
                 "is on): set Depth Layers to 1, or turn Stereoscopy off for the layered render")


def rendered_views(scene):
    """The names of the views ``scene`` renders, in order, when it renders more than one
    (Stereoscopy on: ``left`` and ``right``, or the enabled views of a Multi-View set-up);
    else ``[]`` (one depth file per frame, as without Stereoscopy)."""
    r = scene.render
    if not r.use_multiview:
        return []
    names = [v.name for v in r.views if v.use
             and (r.views_format == "MULTIVIEW" or v.name in ("left", "right"))]
    return names if len(names) > 1 else []


def view_suffixes(scene, views):
    """``{view: suffix}`` of the depth files: the view's own File Suffix (Blender's ``_L`` and
    ``_R`` for stereo), or ``_<view name>`` where that suffix is empty or shared by two views."""
    given = {v: scene.render.views[v].file_suffix for v in views}
    counts = {}
    for s in given.values():
        counts[s] = counts.get(s, 0) + 1
    return {v: s if s and counts[s] == 1 else f"_{v}" for v, s in given.items()}


def view_camera(scene, cam, view):
    """The camera object rendering ``view``: the scene camera for Stereo 3D; in a Multi-View
    set-up the object named like it with that view's Camera Suffix, when there is one (as
    Blender picks it)."""
    r = scene.render
    if r.views_format != "MULTIVIEW":
        return cam
    name = cam.name
    best = None
    for v in r.views:  # the longest camera suffix the camera's name ends with
        s = v.camera_suffix
        if name.endswith(s) and len(s) <= len(name) and (best is None or len(s) >= len(best)):
            best = s
    if best is None:
        return cam
    other = scene.objects.get(name[:len(name) - len(best)] + r.views[view].camera_suffix)
    return other if other is not None and other.type == "CAMERA" else cam


def eye_matrix(scene, cam, view, depsgraph=None):
    """World matrix (scale removed) of the eye rendering ``view`` of a Stereo 3D render: the
    camera moved along its own X axis by the interocular distance (all of it, or half each way
    with the Center pivot) and, with Toe-in convergence, turned toward the convergence plane --
    Blender's own stereo camera rule."""
    src = cam.evaluated_get(depsgraph) if depsgraph is not None else cam
    world = src.matrix_world.normalized()
    st = src.data.stereo
    left = view == "left"
    if (st.pivot == "LEFT" and left) or (st.pivot == "RIGHT" and not left):
        return world
    iod = float(st.interocular_distance)
    fac = 0.5 if st.pivot == "CENTER" else 1.0
    signed = fac if left else -fac
    if st.convergence_mode != "TOE":
        return world @ Matrix.Translation((-iod * signed, 0.0, 0.0))
    if st.pivot == "CENTER":
        fac, signed = -fac, -signed
    angle = math.atan(iod * 0.5 / float(st.convergence_distance)) / fac * signed
    c, s = math.cos(angle), math.sin(angle)
    rot = Matrix(((c, 0.0, -s, 0.0), (0.0, 1.0, 0.0, 0.0), (s, 0.0, c, 0.0),
                  (0.0, 0.0, 0.0, 1.0)))
    if st.pivot == "CENTER":
        toe = rot.copy()
        toe[0][3] = iod * signed
        return world @ toe
    return world @ rot @ Matrix.Translation((-iod * signed, 0.0, 0.0)) @ rot


def with_view_suffix(path, suffix):
    """``path`` with a view's file suffix before its extension, as the depth export and
    Blender's own per-view files name views: ``render_dof.0001.exr`` ->
    ``render_dof.0001_L.exr``."""
    stem, ext = os.path.splitext(path)
    return stem + suffix + ext
