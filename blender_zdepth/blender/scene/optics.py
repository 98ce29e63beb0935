"""What the lens of a refocused frame is, read from the scene at its current frame: the
Depth of Field panel's settings (``scene.zdepth``) over the scene camera's own -- focus, f-stop,
lens and sensor (:func:`lens_plan`), aperture (:func:`camera_aperture`), the engine's settings
(:func:`engine_settings`) -- and whether the render already had the camera's depth of field.
Everything returned is plain values (no bpy), so it may travel to worker threads and processes.
"""

import dataclasses
import math

from ...core.dof import DofSettings
from ...core.errors import ZDepthError
from ...core.refocus.frame import header_had_dof
from ...core.refocus.planned import LensPlan
from .camera import check_camera, planar_distance
from .options import dof_settings, setting
from .views import view_camera


def _object_focus(cam, obj):
    """The focus distance of object ``obj`` seen from ``cam``: its planar distance, at least
    0.1 mm (an object behind the camera focuses as near as can be)."""
    return max(planar_distance(cam, obj.matrix_world.translation), 1e-4)


def lens_plan(scene):
    """Read everything the lens needs from ``scene`` now (main thread: it touches bpy) and
    return a :class:`~blender_zdepth.core.refocus.planned.LensPlan`, ``plan(loaded) -> (lens,
    focus_source)``, which touches no bpy and is picklable, so it may run in a worker thread or
    process; ``loaded`` (anything with a ``depth`` array) is needed for PIXEL focus only.
    See :func:`camera_lens`."""
    cam = check_camera(scene, perspective=True)
    data = cam.data
    zd = dof_settings(scene)
    mode = setting(zd, "dof_focus_mode", "CAMERA")
    focus = source = pixel = None
    if mode == "DISTANCE":
        focus, source = float(zd.dof_focus_distance), "panel distance"
    elif mode == "OBJECT":
        obj = setting(zd, "dof_focus_object", None)
        if obj is None:
            raise ZDepthError("focus on an object was chosen but no object is set in the "
                              "Depth of Field panel")
        focus, source = _object_focus(cam, obj), f"object {obj.name}"
    elif mode == "PIXEL":
        pixel = tuple(int(v) for v in zd.dof_focus_pixel)
    elif data.dof.focus_object is not None:
        obj = data.dof.focus_object
        focus = _object_focus(cam, obj)
        source = f"camera focus object {obj.name}"
    else:
        focus, source = float(data.dof.focus_distance), "camera"
    if setting(zd, "dof_fstop_override", False):
        fstop = float(zd.dof_fstop)
    else:
        fstop = float(data.dof.aperture_fstop)
    render = scene.render
    values = dict(focal_length_mm=float(data.lens), fstop=fstop,
                  sensor_width_mm=float(data.sensor_width),
                  sensor_height_mm=float(data.sensor_height), sensor_fit=str(data.sensor_fit),
                  pixel_aspect=float(render.pixel_aspect_x) / float(render.pixel_aspect_y))
    return LensPlan(values, focus=None if focus is None else float(focus), source=source or "",
                    pixel=pixel)


def camera_lens(scene, loaded=None):
    """The :class:`~blender_zdepth.core.lens.Lens` of ``scene``'s camera at the current frame,
    with the panel's overrides; returns ``(lens, focus_source)``.

    Focus (panel ``dof_focus_mode``): CAMERA = the camera's focus object if set, else its focus
    distance; DISTANCE = the panel's distance; OBJECT = the panel's object; PIXEL = the depth
    under the panel's pixel in ``loaded`` (the frame being refocused). f-stop: the camera's,
    unless the panel overrides it.
    """
    return lens_plan(scene)(loaded)


def view_lens_plan(scene, plan, view):
    """``plan`` (:func:`lens_plan`, the scene camera's) for the view ``view`` of a stereo /
    multi-view render: the lens (focal length, sensor) of the camera rendering that view
    (:func:`.views.view_camera`: the scene camera in Stereo 3D, where the eyes share its lens;
    the view's own camera in a Multi-View set-up); the focus and f-stop stay the scene
    camera's."""
    cam = view_camera(scene, scene.camera, view)
    if cam is scene.camera or cam.data is scene.camera.data:
        return plan
    data = cam.data
    values = dict(plan.values, focal_length_mm=float(data.lens),
                  sensor_width_mm=float(data.sensor_width),
                  sensor_height_mm=float(data.sensor_height), sensor_fit=str(data.sensor_fit))
    return dataclasses.replace(plan, values=values)


def camera_aperture(scene):
    """``(blades, rotation_degrees, ratio, source)`` of the aperture at the current frame: the
    scene camera's (Camera > Depth of Field > Aperture: blades, rotation, ratio, with their
    animated values) unless the panel's Aperture Override is on. As in Cycles, fewer than 3
    blades is a round aperture (blades 0); the ratio is clamped to the engine's 0.1 to 10."""
    zd = dof_settings(scene)
    cam = scene.camera
    if setting(zd, "dof_aperture_override", False) or cam is None or cam.type != "CAMERA":
        blades = int(setting(zd, "dof_blades", 0))
        rotation = math.degrees(float(setting(zd, "dof_rotation", 0.0)))
        ratio = float(setting(zd, "dof_anamorphic", 1.0))
        source = "panel"
    else:
        dof = cam.data.dof
        blades = int(dof.aperture_blades)
        rotation = math.degrees(float(dof.aperture_rotation))
        ratio = float(dof.aperture_ratio)
        source = "camera"
    if blades < 3:
        blades = 0  # Cycles' rule: 1 or 2 blades make no polygon, the aperture is round
    ratio = min(max(ratio, 0.1), 10.0)
    return blades, rotation, ratio, source


def engine_settings(scene):
    """:class:`~blender_zdepth.core.dof.DofSettings` at the current frame: the panel's radius
    cap and quality, the aperture of :func:`camera_aperture`."""
    zd = dof_settings(scene)
    blades, rotation, ratio, _ = camera_aperture(scene)
    return DofSettings(max_radius=float(setting(zd, "dof_max_radius", 64.0)), blades=blades,
                       rotation_deg=rotation, anamorphic=ratio,
                       quality=str(setting(zd, "dof_quality", "default")))


def camera_had_dof(scene, header=None, render_result=False):
    """Whether the frame was rendered with the camera's own depth of field on: the header's
    ``zdepthCameraDofEnabled`` (our exports record it) when there is one; for the Render Result
    (``render_result``) what the camera had when it rendered (recorded by the render handler);
    else the scene camera's Depth of Field setting now (plain renders record nothing)."""
    recorded = header_had_dof(header)
    if recorded is not None:
        return recorded
    if render_result:
        from ..render.handlers import render_had_dof  # the render layer, above this one

        rendered = render_had_dof(scene)
        if rendered is not None:
            return rendered
    cam = scene.camera
    return bool(cam is not None and cam.type == "CAMERA" and cam.data.dof.use_dof)


DOUBLE_DOF_WARNING = ("the render already has the camera's depth of field (Camera > Depth of "
                      "Field was on): its beauty is defocused and its depth comes from one "
                      "point of the lens, so refocusing blurs it a second time; render with "
                      "it off")
