"""The scene camera, seen from blender_zdepth: :func:`camera_info` turns a Blender camera at the
current frame into a :class:`~blender_zdepth.core.camera.CameraInfo` (what goes in the EXR
header), and :func:`scene_depth_range` measures the depth range of what the camera sees.
"""

import threading

import bpy
from mathutils import Vector

from ...core.camera import CameraInfo
from ...core.errors import ZDepthError
from ..compat import fcurve_value

#: Object types whose bounding box counts for the measured depth range.
GEOMETRY_TYPES = {"MESH", "CURVE", "CURVES", "SURFACE", "META", "FONT", "VOLUME",
                  "POINTCLOUD", "GPENCIL", "GREASEPENCIL"}


def check_camera(scene, *, perspective=False):
    """The scene's camera object, or :class:`ZDepthError` when there is none or it cannot give
    planar depth (panoramic); with ``perspective`` (depth of field) also when it is not a
    perspective camera."""
    cam = scene.camera
    if cam is None:
        raise ZDepthError(f"scene {scene.name!r} has no camera: add one and set it as the "
                          f"scene camera (Scene properties > Camera)")
    if cam.type != "CAMERA":
        raise ZDepthError(f"the scene camera {cam.name!r} is a {cam.type.lower()} object, "
                          f"not a camera")
    if perspective and cam.data.type != "PERSP":
        kind = {"ORTHO": "orthographic", "PANO": "panoramic"}.get(cam.data.type,
                                                                  cam.data.type.lower())
        raise ZDepthError(f"camera {cam.name!r} is {kind}: depth of field needs a perspective "
                          f"camera")
    if cam.data.type == "PANO":
        raise ZDepthError(f"camera {cam.name!r} is panoramic: a panoramic render has no planar "
                          f"depth (its Z pass is distance along each ray), so it cannot be "
                          f"exported or refocused; use a perspective or orthographic camera")
    return cam


def planar_distance(camera_obj, point):
    """Distance of world-space ``point`` in front of the camera along its view axis (how
    Blender measures a focus object's distance, and what the Z pass holds); negative behind
    the camera (callers choose: :func:`focus_distance` takes its size, the depth of field's
    lens plan clamps it)."""
    local = camera_obj.matrix_world.inverted() @ Vector(point)
    return -local.z


def focus_distance(camera_obj, depsgraph=None):
    """The camera's focus distance as evaluated now (or in ``depsgraph``): its focus object's
    planar distance when one is set, else the focus distance value."""
    cam = camera_obj.evaluated_get(depsgraph) if depsgraph is not None else camera_obj
    dof = cam.data.dof
    if dof.focus_object is not None:
        target = dof.focus_object
        if depsgraph is not None:
            target = target.evaluated_get(depsgraph)
        return abs(planar_distance(cam, target.matrix_world.translation))
    return float(dof.focus_distance)


def frame_depsgraph():
    """The view layer's depsgraph evaluated at the scene's current frame, or None when that is
    not safe here (a render job thread of the user interface: evaluating there could crash).

    During ``blender -b -a`` the render pipeline moves ``frame_current`` but evaluates its own
    depsgraph only: the original datablocks still hold the previous frame's animated values until
    this depsgraph is evaluated."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return bpy.context.evaluated_depsgraph_get()
    except Exception:
        return None


_ANIMATED = (("lens", "focal_length_mm"), ("sensor_width", "sensor_width_mm"),
             ("sensor_height", "sensor_height_mm"), ("dof.aperture_fstop", "fstop"),
             ("dof.focus_distance", "focus_distance"), ("clip_start", "clip_start"),
             ("clip_end", "clip_end"))


def camera_info(scene, camera_obj=None, frame=None, depsgraph=None):
    """:class:`CameraInfo` of ``camera_obj`` (default: the scene camera) at the frame being
    rendered (``frame`` defaults to ``scene.frame_current``): read from ``depsgraph`` when given
    (see :func:`frame_depsgraph`), else from the datablocks with the camera data's own F-Curves
    evaluated at ``frame`` (so animated focus, f-stop and lens are right even off the main
    thread)."""
    cam = camera_obj or check_camera(scene)
    frame = int(scene.frame_current if frame is None else frame)
    src = cam.evaluated_get(depsgraph) if depsgraph is not None else cam
    data = src.data
    render = scene.render
    world_to_camera = src.matrix_world.inverted()
    info = CameraInfo(
        focal_length_mm=float(data.lens),
        sensor_width_mm=float(data.sensor_width),
        sensor_height_mm=float(data.sensor_height),
        sensor_fit=str(data.sensor_fit),
        fstop=float(data.dof.aperture_fstop),
        focus_distance=float(focus_distance(cam, depsgraph)),
        clip_start=float(data.clip_start),
        clip_end=float(data.clip_end),
        frame=frame,
        pixel_aspect=float(render.pixel_aspect_x) / float(render.pixel_aspect_y),
        world_to_camera=[list(row) for row in world_to_camera.transposed()],
    )
    if depsgraph is None:
        for path, name in _ANIMATED:
            if name == "focus_distance" and cam.data.dof.focus_object is not None:
                continue
            value = fcurve_value(cam.data, path, frame)
            if value is not None:
                setattr(info, name, float(value))
    if depsgraph is not None:
        try:
            proj = src.calc_matrix_camera(depsgraph, x=render.resolution_x,
                                          y=render.resolution_y, scale_x=render.pixel_aspect_x,
                                          scale_y=render.pixel_aspect_y)
            info.world_to_ndc = [list(row) for row in (proj @ world_to_camera).transposed()]
        except Exception:  # the matrix is optional
            pass
    return info


def extra_header(scene, camera_obj=None):
    """Header attributes beside :meth:`CameraInfo.to_header`: camera name and type, whether
    the camera's own depth of field is on, engine, resolution, and the scene's colour management
    (:func:`.colour.colour_header`: how the pictures made from the file are shown)."""
    from .colour import colour_header

    cam = camera_obj or scene.camera
    h = {"zdepthEngine": str(scene.render.engine), **colour_header(scene)}
    if cam is not None and cam.type == "CAMERA":
        h["zdepthCameraName"] = cam.name
        h["zdepthCameraType"] = str(cam.data.type)
        h["zdepthCameraDofEnabled"] = 1 if cam.data.dof.use_dof else 0
        if cam.data.dof.focus_object is not None:
            h["zdepthCameraFocusObject"] = cam.data.dof.focus_object.name
    return h


def _frustum_test(cam, scene):
    """A function telling whether camera-space corner points can be in the view."""
    data = cam.data
    frame = [Vector(v) for v in data.view_frame(scene=scene)]
    if data.type == "ORTHO":
        xs = [v.x for v in frame]
        ys = [v.y for v in frame]

        def inside(points):
            return not (all(p.x < min(xs) for p in points) or all(p.x > max(xs) for p in points)
                        or all(p.y < min(ys) for p in points)
                        or all(p.y > max(ys) for p in points))
        return inside
    # perspective: four planes through the origin and the frame's edges, normals pointing in
    centre = sum(frame, Vector()) / 4.0
    normals = []
    for a, b in zip(frame, frame[1:] + frame[:1]):
        n = a.cross(b)
        if n.dot(centre) < 0:
            n = -n
        normals.append(n)

    def inside(points):
        return not any(all(n.dot(p) < 0 for p in points) for n in normals)
    return inside


def scene_depth_range(scene, camera_obj=None, max_objects=None):
    """``(near, far)`` planar depth of the renderable objects the camera can see, measured from
    their bounding boxes and clamped to the camera's clip range; None when nothing is in view
    (or the scene holds more than ``max_objects`` objects, when given: too slow to measure in a
    panel's redraw)."""
    cam = camera_obj or scene.camera
    if cam is None or cam.type != "CAMERA" or cam.data.type == "PANO":
        return None
    objects = scene.objects
    if max_objects is not None and len(objects) > max_objects:
        return None
    clip_start, clip_end = float(cam.data.clip_start), float(cam.data.clip_end)
    to_cam = cam.matrix_world.inverted()
    inside = _frustum_test(cam, scene)
    lo, hi = None, None
    for obj in objects:
        if obj.type not in GEOMETRY_TYPES or obj.hide_render:
            continue
        m = to_cam @ obj.matrix_world
        points = [m @ Vector(c) for c in obj.bound_box]
        depths = [-p.z for p in points]
        if max(depths) < clip_start or min(depths) > clip_end or not inside(points):
            continue
        near, far = max(min(depths), clip_start), min(max(depths), clip_end)
        lo = near if lo is None else min(lo, near)
        hi = far if hi is None else max(hi, far)
    if lo is None or not hi > lo:
        return None
    return float(lo), float(hi)
