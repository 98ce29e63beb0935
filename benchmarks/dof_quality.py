"""Depth-of-field quality against Cycles' ray-traced DOF: ours vs Blender's Defocus node.

    .venv/bin/python benchmarks/dof_quality.py [--shot NAME] [--save-images DIR]
                                               [--picture docs/images/dof_side_by_side.png]

Each procedural shot is rendered twice with Cycles (bpy module, emission-only materials, an
emissive world): once with a pinhole camera (beauty + Z pass, few samples, Blender's default
1.5 px pixel filter, so edges are anti-aliased as users have them while the depth pass is not) and
once with the camera's real depth of field (many samples): the ground truth. Both renders are
cached under ``.cache/dof_shots/`` keyed by a hash of the shot's parameters, its builder's source
and the Blender version, so a rerun only recomputes the DOF.

Then the project's DOF (``blender_zdepth.core.dof.defocus``) and the Defocus node
(``_blender_defocus.py``: same camera, f-stop, and ``blur_max`` = the largest CoC radius in the
shot) run on the same pinhole RGBA + Z, and the table gives PSNR against the truth:

* ``frame``: over the whole frame.
* ``edges``: inside the edge band. A depth discontinuity is a pixel whose CoC radius (Cycles'
  thin lens, below) differs from one of its 8 neighbours' by more than 1 px; the band is every
  pixel within ``3 px + r`` of a discontinuity pixel, r = the largest |CoC radius| in that pixel's
  3x3 neighbourhood (the blur of the blurrier side: how far a halo or a hard edge can reach).

PSNR is computed on display values, as a viewer sees them: RGB clipped to 0..1 and encoded with
the sRGB transfer (the pictures use the same transform), peak 1; ``--space linear`` uses
scene-linear RGB clipped to 0..1 instead. The pinhole input's own PSNR is the sanity baseline
(doing nothing). Target (issue #5): ours >= Defocus + 3 dB on every shot, both metrics.

Thin-lens mapping, as Cycles renders it: aperture radius ``R = f / (2 N)`` (focal length f,
f-number N), rays converge on the plane at planar distance S (``dof.focus_distance``); a point at
planar depth D then spreads over a circle of diameter ``c = f^2 |D - S| / (N S D)`` on the sensor
(the textbook formula has ``S - f`` where Cycles has ``S``), times image width / sensor width
(sensor fit AUTO, landscape frames). The Lens passed to our engine carries exactly the camera's
values (focal length, f-stop, focus distance, sensor width/height, fit).
"""

import argparse
import hashlib
import inspect
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

CACHE = os.path.join(ROOT, ".cache", "dof_shots")
RES = (480, 270)
PINHOLE_SAMPLES = 32
TRUTH_SAMPLES = 2048  # rendered as two halves with different seeds
TARGET_DB = 3.0
#: Shots with their own flat target (margin over the Defocus node, dB; issue 21): motion blur
#: (the Z pass dithers in the trails) and a half-transparent curtain (the Z pass does not show
#: it), where a flat render lacks what the lens needs.
FLAT_TARGET_DB = {"motion": 1.0, "curtain": 0.0}
#: Shots whose flat render hides what the lens sees (lights partly behind the subject): no
#: post-process of the flat render can show it, so their flat margin over the Defocus node is
#: printed for information and judged with depth layers instead (the layered table).
FLAT_INFO_ONLY = ("peek",)


# --------------------------------------------------------------------------------------------
# Shots: procedural Cycles scenes (emission only).


def _base(bpy_scene_params):
    from blender_zdepth.blender import scenes

    p = bpy_scene_params
    scene = scenes.empty_scene(tuple(p["resolution"]), "CYCLES", 1)
    scene.cycles.max_bounces = 0
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.seed = 1
    scene.render.film_transparent = False
    return scene, scenes


def _camera(scene, scenes, p):
    cam = scenes.add_camera(scene, tuple(p["cam_location"]), tuple(p["cam_target"]),
                            lens=p["focal_length_mm"], sensor_width=p["sensor_width_mm"],
                            clip=(0.05, 5000.0))
    cam.data.sensor_height = p["sensor_height_mm"]
    cam.data.sensor_fit = p["sensor_fit"]
    cam.data.dof.focus_distance = p["focus_distance"]
    cam.data.dof.aperture_fstop = p["fstop"]
    cam.data.dof.aperture_blades = 0
    cam.data.dof.aperture_ratio = 1.0
    return cam


def _panel_before_wall(scene, scenes, *, wall_y, panel_at, panel_scale, ball_at):
    """The subject of ``occluder``, ``bars`` and ``curtain``: a checker panel and a checkered ball
    before a textured wall at ``wall_y``, under a dark world."""
    scenes.set_world_color(scene, (0.05, 0.06, 0.08))
    wall = scenes.checker_material("Wall", (0.35, 0.3, 0.25), (0.12, 0.14, 0.2), scale=30.0)
    scenes.add_object(scene, "plane", "Wall", wall, size=12.0, location=(0.0, wall_y, 1.2),
                      rotation=(math.pi / 2, 0.0, 0.0))
    panel = scenes.checker_material("Panel", (0.95, 0.85, 0.2), (0.1, 0.25, 0.8), scale=8.0)
    scenes.add_object(scene, "cube", "Panel", panel, size=1.0, location=panel_at,
                      scale=panel_scale)
    ball = scenes.checker_material("Ball", (0.9, 0.2, 0.15), (0.95, 0.9, 0.85), scale=6.0)
    scenes.add_object(scene, "uv_sphere", "Ball", ball, radius=0.22, location=ball_at,
                      segments=48, ring_count=24)


def shot_occluder(p):
    """(a) A blurred foreground post and ball in front of a sharp checker panel at the focus
    distance, a textured wall behind."""
    scene, scenes = _base(p)
    _panel_before_wall(scene, scenes, wall_y=6.0, panel_at=(0.1, 3.0, 1.2),
                       panel_scale=(0.6, 0.02, 0.45), ball_at=(-0.75, 3.1, 0.95))
    post = scenes.emission_material("Post", (0.08, 0.35, 0.12), 1.0)
    scenes.add_object(scene, "cylinder", "Post", post, radius=0.035, depth=4.0,
                      location=(0.02, 0.8, 1.2), vertices=48)
    leaf = scenes.emission_material("Leaf", (0.6, 0.55, 0.1), 1.2)
    scenes.add_object(scene, "uv_sphere", "Leaf", leaf, radius=0.07,
                      location=(-0.28, 1.0, 1.25), segments=32, ring_count=16)
    _camera(scene, scenes, p)
    return scene


def shot_highlights(p):
    """(b) A sharp subject at the focus distance in front of a far, strongly blurred background
    with small bright highlights (emission far above 1)."""
    scene, scenes = _base(p)
    scenes.set_world_color(scene, (0.02, 0.02, 0.03))
    wall = scenes.checker_material("Far", (0.08, 0.06, 0.1), (0.2, 0.12, 0.06), scale=10.0)
    scenes.add_object(scene, "plane", "Far", wall, size=40.0, location=(0.0, 40.0, 1.2),
                      rotation=(math.pi / 2, 0.0, 0.0))
    # No highlight hides, even partly, behind the subject in the pinhole view: in the truth its
    # bokeh would peek around the subject, and no post-process can know a hidden light (that
    # error would be common to both methods and measure missing information, not the method).
    # Test in angular camera coordinates (camera at z 1.1 looking along +Y), 0.004 rad margin.
    def hidden(x, y, z, r):
        u, v, a = x / y, (z - 1.1) / y, r / y + 0.004
        head = math.hypot(u + 0.05, v - 0.05) < 0.075 / 2.0 + a
        body = -0.15 / 1.975 - a < u < -0.05 / 1.975 + a and -0.16 / 1.975 - a < v < -0.04 / 1.975 + a
        return head or body

    rng = np.random.default_rng(5)
    i = 0
    while i < 44:
        x, z = rng.uniform(-5.5, 5.5), rng.uniform(-1.6, 4.0)
        y = rng.uniform(22.0, 34.0)
        hue = rng.uniform(0.0, 1.0, 3)
        color = tuple(float(c) for c in 0.35 + 0.65 * hue / hue.max())
        strength, radius = float(rng.uniform(4.0, 16.0)), float(rng.uniform(0.05, 0.1))
        if hidden(x, y, z, radius):
            continue
        mat = scenes.emission_material(f"Light{i}", color, strength)
        scenes.add_object(scene, "uv_sphere", f"Light{i}", mat, radius=radius,
                          location=(x, y, z), segments=12, ring_count=6)
        i += 1
    body = scenes.checker_material("Subject", (0.85, 0.75, 0.6), (0.3, 0.12, 0.1), scale=10.0)
    scenes.add_object(scene, "uv_sphere", "Head", body, radius=0.075, location=(-0.1, 2.0, 1.2),
                      segments=48, ring_count=24)
    coat = scenes.checker_material("Coat", (0.15, 0.3, 0.6), (0.6, 0.65, 0.7), scale=6.0)
    scenes.add_object(scene, "cube", "Body", coat, size=1.0, location=(-0.1, 2.0, 1.0),
                      scale=(0.1, 0.05, 0.12))
    _camera(scene, scenes, p)
    return scene


def shot_ground(p):
    """(c) A checkered ground plane receding from about 1 m to the horizon, a few posts, a sky."""
    scene, scenes = _base(p)
    scenes.set_world_color(scene, (0.35, 0.5, 0.8), 1.0)
    size = 2000.0
    ground = scenes.checker_material("Ground", (0.7, 0.65, 0.5), (0.15, 0.14, 0.12),
                                     scale=size / 0.3)
    scenes.add_object(scene, "plane", "Ground", ground, size=size, location=(0.0, size / 2 - 5, 0.0))
    for i, (x, y) in enumerate(((-0.5, 2.0), (0.45, 5.0), (-1.2, 12.0), (3.0, 40.0),
                                (-12.0, 120.0))):
        mat = scenes.checker_material(f"Post{i}", (0.9, 0.3, 0.2), (0.95, 0.95, 0.9), scale=5.0)
        h = 0.4 + 0.02 * y
        scenes.add_object(scene, "cube", f"Post{i}", mat, size=1.0, location=(x, y, h / 2),
                          scale=(0.05 + 0.004 * y, 0.05 + 0.004 * y, h / 2))
    _camera(scene, scenes, p)
    return scene


def _subject(scene, scenes):
    """The sharp subject of the highlight shots: a head and a coat at 2 m (camera at z 1.1)."""
    body = scenes.checker_material("Subject", (0.85, 0.75, 0.6), (0.3, 0.12, 0.1), scale=10.0)
    scenes.add_object(scene, "uv_sphere", "Head", body, radius=0.075, location=(-0.1, 2.0, 1.2),
                      segments=48, ring_count=24)
    coat = scenes.checker_material("Coat", (0.15, 0.3, 0.6), (0.6, 0.65, 0.7), scale=6.0)
    scenes.add_object(scene, "cube", "Body", coat, size=1.0, location=(-0.1, 2.0, 1.0),
                      scale=(0.1, 0.05, 0.12))


def shot_peek(p):
    """(d) Highlights partly behind a sharp subject: a lens sees their bokeh around the subject's
    edge, a pinhole sees only the part outside it. The subject of ``highlights`` at 2 m; small
    bright lights at 25 m straddle its silhouette (head and coat edges), a few more are free."""
    scene, scenes = _base(p)
    scenes.set_world_color(scene, (0.02, 0.02, 0.03))
    wall = scenes.checker_material("Far", (0.08, 0.06, 0.1), (0.2, 0.12, 0.06), scale=10.0)
    scenes.add_object(scene, "plane", "Far", wall, size=40.0, location=(0.0, 40.0, 1.2),
                      rotation=(math.pi / 2, 0.0, 0.0))
    y = 25.0
    spots = []  # angular camera coordinates (u = x / y, v = (z - 1.1) / y)
    for k in range(10):  # around the head (centre (-0.05, 0.05), angular radius 0.0375)
        ang = 2 * math.pi * (k + 0.5) / 10
        rr = 0.0375 + (0.002 if k % 2 else -0.003)
        spots.append((-0.05 + rr * math.cos(ang), 0.05 + rr * math.sin(ang)))
    for v in (-0.095, -0.07, -0.045, -0.02):  # along both sides of the coat
        spots += [(-0.0253 + 0.001 * (v * 100 % 2), v), (-0.0757, v + 0.012)]
    rng = np.random.default_rng(9)
    for _ in range(14):
        spots.append((rng.uniform(-0.2, 0.2), rng.uniform(-0.12, 0.1)))
    for i, (u, v) in enumerate(spots):
        hue = rng.uniform(0.0, 1.0, 3)
        color = tuple(float(c) for c in 0.35 + 0.65 * hue / hue.max())
        mat = scenes.emission_material(f"Light{i}", color, float(rng.uniform(4.0, 12.0)))
        scenes.add_object(scene, "uv_sphere", f"Light{i}", mat, radius=0.09,
                          location=(u * y, y, 1.1 + v * y), segments=12, ring_count=6)
    _subject(scene, scenes)
    _camera(scene, scenes, p)
    return scene


def shot_bars(p):
    """(e) A sharp subject seen through thin, strongly blurred foreground bars: vertical rods at
    0.7 m (about 11 px wide, blurred over ~26 px) before a checker panel and a ball at the focus
    distance (3 m), a textured wall behind (6 m)."""
    scene, scenes = _base(p)
    _panel_before_wall(scene, scenes, wall_y=6.0, panel_at=(0.1, 3.0, 1.2),
                       panel_scale=(0.6, 0.02, 0.45), ball_at=(-0.75, 3.1, 0.95))
    bar = scenes.emission_material("Bar", (0.12, 0.3, 0.1), 1.0)
    for i, x in enumerate(np.arange(-0.33, 0.34, 0.1)):
        scenes.add_object(scene, "cylinder", f"Bar{i}", bar, radius=0.006, depth=3.0,
                          location=(float(x), 0.7, 1.2), vertices=24)
    _camera(scene, scenes, p)
    return scene


def shot_dense(p):
    """(f) Dense depth edges (issue #12's content: leaves, particles, crowds): squares at random
    depths from 1 to 20 m, each of a random colour, one on every 8 px cell of the pinhole view
    and twice the cell's size, so they overlap their neighbours: the frame is a mosaic of
    surfaces ~4-12 px across whose edges are anti-aliased in colour but not in depth, and a
    surface goes on behind the nearer ones (as leaves do; what the lens sees around a near
    square is mostly its neighbours); a checkered wall at 30 m behind the gaps that remain."""
    import bpy

    scene, scenes = _base(p)
    scenes.set_world_color(scene, (0.05, 0.06, 0.08))
    wall = scenes.checker_material("Wall", (0.35, 0.3, 0.25), (0.12, 0.14, 0.2), scale=30.0)
    scenes.add_object(scene, "plane", "Wall", wall, size=60.0, location=(0.0, 30.0, 1.2),
                      rotation=(math.pi / 2, 0.0, 0.0))
    w, h = p["resolution"]
    f_px = p["focal_length_mm"] / p["sensor_width_mm"] * w
    cx, cy = p["cam_location"][0], p["cam_location"][2]
    cell, grow = 8, 4  # each square reaches 4 px into its neighbours' cells
    rng = np.random.default_rng(12)
    verts, faces, colours = [], [], []
    for row in range(-(-h // cell)):
        for col in range(w // cell):
            d = float(rng.uniform(1.0, 20.0))
            u0, u1 = col * cell - grow - w / 2, (col + 1) * cell + grow - w / 2
            v0, v1 = h / 2 - row * cell + grow, h / 2 - (row + 1) * cell - grow
            n = len(verts)
            for u, v in ((u0, v0), (u1, v0), (u1, v1), (u0, v1)):
                verts.append((cx + u / f_px * d, d, cy + v / f_px * d))
            faces.append((n, n + 1, n + 2, n + 3))
            colours.append(tuple(float(c) for c in rng.uniform(0.05, 0.9, 3)))
    mesh = bpy.data.meshes.new("Blocks")
    mesh.from_pydata(verts, [], faces)
    attr = mesh.color_attributes.new("Col", "FLOAT_COLOR", "CORNER")
    for poly, colour in zip(mesh.polygons, colours):
        for li in poly.loop_indices:
            attr.data[li].color = (*colour, 1.0)
    from blender_zdepth.blender import compat

    mat = bpy.data.materials.new("Blocks")
    compat.use_nodes(mat)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    col_node = nodes.new("ShaderNodeAttribute")
    col_node.attribute_name = "Col"
    emit = nodes.new("ShaderNodeEmission")
    out = nodes.new("ShaderNodeOutputMaterial")
    links.new(col_node.outputs["Color"], emit.inputs["Color"])
    links.new(emit.outputs["Emission"], out.inputs["Surface"])
    mesh.materials.append(mat)
    obj = bpy.data.objects.new("Blocks", mesh)
    scene.collection.objects.link(obj)
    _camera(scene, scenes, p)
    return scene


def _keyed_motion(obj, velocity, frame=1):
    """Keyframe ``obj`` moving at ``velocity`` (scene units per frame) through its location at
    ``frame``, linearly (one key a frame before and after)."""
    import bpy

    prefs = bpy.context.preferences.edit
    kept = prefs.keyframe_new_interpolation_type
    prefs.keyframe_new_interpolation_type = "LINEAR"
    try:
        base = tuple(obj.location)
        for df in (-1, 1):
            obj.location = tuple(b + df * v for b, v in zip(base, velocity))
            obj.keyframe_insert("location", frame=frame + df)
    finally:
        prefs.keyframe_new_interpolation_type = kept
    obj.location = base


def shot_motion(p):
    """(g) Motion blur: a checkered ball moving fast in focus (4 m), a thin bar moving in front
    of it (2 m), small highlights on a checkered wall behind (12 m); Cycles motion blur, shutter
    0.5 (Cycles writes the Z pass from one sample: in a trail it is the moving object's depth
    or what lies behind it, at random)."""
    scene, scenes = _base(p)
    scene.render.use_motion_blur = True
    scene.render.motion_blur_shutter = p["shutter"]
    scene.frame_set(1)
    scenes.set_world_color(scene, (0.05, 0.06, 0.08))
    wall = scenes.checker_material("Wall", (0.3, 0.26, 0.22), (0.1, 0.12, 0.18), scale=48.0)
    scenes.add_object(scene, "plane", "Wall", wall, size=10.0, location=(0.0, 12.0, 1.2),
                      rotation=(math.pi / 2, 0.0, 0.0))
    # Highlights clear of the bar's and the ball's trails (angular camera coordinates u = x / y,
    # v = (z - 1.2) / y, 0.02 margin): a light hidden behind a trail is not the point here.
    rng = np.random.default_rng(21)
    i = 0
    while i < 24:
        x, z = rng.uniform(-1.5, 1.5), rng.uniform(0.4, 2.0)
        u, v = x / 11.9, (z - 1.2) / 11.9
        if -0.115 < u < -0.035 or (-0.06 < u < 0.085 and abs(v) < 0.055):
            continue
        hue = rng.uniform(0.0, 1.0, 3)
        color = tuple(float(c) for c in 0.35 + 0.65 * hue / hue.max())
        mat = scenes.emission_material(f"Light{i}", color, float(rng.uniform(5.0, 14.0)))
        scenes.add_object(scene, "uv_sphere", f"Light{i}", mat, radius=0.025,
                          location=(x, 11.9, z), segments=12, ring_count=6)
        i += 1
    ball = scenes.checker_material("Ball", (0.9, 0.2, 0.15), (0.95, 0.9, 0.85), scale=6.0)
    obj = scenes.add_object(scene, "uv_sphere", "Ball", ball, radius=0.12,
                            location=(0.05, 4.0, 1.2), segments=48, ring_count=24)
    _keyed_motion(obj, (0.15, 0.0, 0.0))
    bar = scenes.emission_material("Bar", (0.15, 0.45, 0.2), 1.2)
    obj = scenes.add_object(scene, "cylinder", "Bar", bar, radius=0.008, depth=3.0,
                            location=(-0.15, 2.0, 1.2), vertices=24)
    _keyed_motion(obj, (-0.08, 0.0, 0.0))
    _camera(scene, scenes, p)
    return scene


def shot_curtain(p):
    """(h) A half-transparent curtain: a 35 % opaque checkered plane 1.8 m from the camera over
    the left part of the view, in front of a sharp panel and ball at the focus distance (5 m), a
    checkered wall behind (15 m).  Cycles writes no depth for a surface under the view layer's
    alpha threshold (0.5): the Z pass shows what lies behind the curtain."""
    scene, scenes = _base(p)
    _panel_before_wall(scene, scenes, wall_y=15.0, panel_at=(0.15, 5.0, 1.25),
                       panel_scale=(0.45, 0.02, 0.3), ball_at=(-0.55, 5.1, 1.0))
    cloth = scenes.checker_material("Curtain", (0.95, 0.9, 0.75), (0.55, 0.08, 0.12), scale=10.0,
                                    alpha=p["curtain_alpha"])
    scenes.add_object(scene, "plane", "Curtain", cloth, size=0.5, location=(-0.21, 1.8, 1.2),
                      rotation=(math.pi / 2, 0.0, 0.0))
    _camera(scene, scenes, p)
    return scene


COMMON = {"resolution": list(RES), "sensor_width_mm": 36.0, "sensor_height_mm": 24.0,
          "sensor_fit": "AUTO"}

SHOTS = {
    "occluder": (shot_occluder, {**COMMON, "focal_length_mm": 50.0, "fstop": 1.4,
                                 "focus_distance": 3.0, "cam_location": [0.0, -0.0, 1.2],
                                 "cam_target": [0.0, 10.0, 1.2]}),
    "highlights": (shot_highlights, {**COMMON, "focal_length_mm": 85.0, "fstop": 1.4,
                                     "focus_distance": 2.0, "cam_location": [0.0, 0.0, 1.1],
                                     "cam_target": [0.0, 10.0, 1.1]}),
    "ground": (shot_ground, {**COMMON, "focal_length_mm": 50.0, "fstop": 1.4,
                             "focus_distance": 5.0, "cam_location": [0.0, 0.0, 0.35],
                             "cam_target": [0.0, 10.0, 0.35 - 10.0 * math.tan(math.radians(8.0))]}),
    "peek": (shot_peek, {**COMMON, "focal_length_mm": 85.0, "fstop": 1.4,
                         "focus_distance": 2.0, "cam_location": [0.0, 0.0, 1.1],
                         "cam_target": [0.0, 10.0, 1.1]}),
    "bars": (shot_bars, {**COMMON, "focal_length_mm": 50.0, "fstop": 1.4,
                         "focus_distance": 3.0, "cam_location": [0.0, -0.0, 1.2],
                         "cam_target": [0.0, 10.0, 1.2]}),
    "dense": (shot_dense, {**COMMON, "focal_length_mm": 50.0, "fstop": 1.4,
                           "focus_distance": 5.0, "cam_location": [0.0, 0.0, 1.2],
                           "cam_target": [0.0, 10.0, 1.2]}),
    "motion": (shot_motion, {**COMMON, "focal_length_mm": 135.0, "fstop": 1.8,
                             "focus_distance": 4.0, "cam_location": [0.0, 0.0, 1.2],
                             "cam_target": [0.0, 10.0, 1.2], "shutter": 0.5,
                             "slabs": [3.0, 8.0]}),
    "curtain": (shot_curtain, {**COMMON, "focal_length_mm": 85.0, "fstop": 1.4,
                               "focus_distance": 5.0, "cam_location": [0.0, 0.0, 1.2],
                               "cam_target": [0.0, 10.0, 1.2], "curtain_alpha": 0.35,
                               "slabs": [3.5, 10.0]}),
}

#: Shots where a lens sees what the pinhole hides: layered input must gain >= 5 dB (edges) there.
SEE_BEHIND = ("peek", "bars")
LAYER_TARGET_DB = 5.0
LAYER_LOSS_DB = 0.1
#: Shots rendered as coverage-correct slabs (their ``slabs``: the boundaries, m) and their
#: layered targets (issue 21): (what the layered result is measured against, dB).  "node": the
#: Defocus node on the flat render; "ours": the engine on the flat render.
SLAB_TARGET_DB = {"motion": {"frame": ("node", 4.0), "edges": ("node", 4.0)},
                  "curtain": {"frame": ("ours", 1.0), "edges": ("ours", 3.0)}}
#: Camera clip range of every shot (see _camera).
CLIP = (0.05, 5000.0)


# --------------------------------------------------------------------------------------------
# Rendering with a cache.


def _blender_version():
    import bpy

    return ".".join(map(str, bpy.app.version))


def shot_key(name, kind, samples, seed=1, clip=None, *, params=None):
    builder = SHOTS[name][0]
    params = SHOTS[name][1] if params is None else params
    fields = {"params": params, "source": inspect.getsource(builder),
              "base": inspect.getsource(_base) + inspect.getsource(_camera),
              "kind": kind, "samples": samples, "seed": seed,
              "blender": _blender_version()}
    if builder in (shot_peek,):
        fields["source"] += inspect.getsource(_subject)
    if builder in (shot_motion,):
        fields["source"] += inspect.getsource(_keyed_motion)
    if builder in (shot_occluder, shot_bars, shot_curtain):
        fields["source"] += inspect.getsource(_panel_before_wall)
    if clip is not None:  # a peeled pass or a slab (the key of the other renders is unchanged)
        fields["clip"] = [round(float(c), 6) for c in clip] if isinstance(clip, (tuple, list)) \
            else round(float(clip), 6)
    blob = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _read_multilayer(path):
    from _blender_defocus import read_render

    return read_render(path)


def render_shot(name, kind, samples, log, seed=1, clip=None, *, params=None, cache=CACHE):
    """Render (or load from the cache) shot ``name`` with ``kind`` 'pinhole', 'truth',
    'peel' (a pinhole pass with the camera's clip start at ``clip``: a depth layer) or 'slab'
    (a pinhole pass with the film transparent, clip start and end ``clip = (start, end)`` and
    the view layer's alpha threshold 0: premultiplied colour with its true partial coverage
    and its own Z, see ``shared/GUIDE.md`` "Depth slabs");
    ``params``: another version of the shot's parameters (default its own, :data:`SHOTS`);
    ``cache``: the folder of the cached renders.
    return ``(rgba HxWx4, depth HxW or None, seconds, cached, exr_path)``."""
    os.makedirs(cache, exist_ok=True)
    params = SHOTS[name][1] if params is None else params
    key = shot_key(name, kind, samples, seed, clip, params=params)
    tag = kind if seed == 1 else f"{kind}{seed}"
    if kind == "slab":
        tag += f"{clip[0]:.3f}-{clip[1]:.3f}"
    elif clip is not None:
        tag += f"{clip:.3f}"
    exr = os.path.join(cache, f"{name}-{tag}-{key}.exr")
    if os.path.exists(exr):
        rgba, depth = _read_multilayer(exr)
        meta = exr[:-4] + ".json"
        seconds = json.load(open(meta))["seconds"] if os.path.exists(meta) else float("nan")
        return rgba, depth, seconds, True, exr
    import bpy
    from blender_zdepth.blender import compat

    builder = SHOTS[name][0]
    log(f"rendering {name} {kind} ({samples} samples, seed {seed}, {params['resolution'][0]}x"
        f"{params['resolution'][1]}) with Cycles ...")
    scene = builder(params)
    scene.cycles.samples = samples
    scene.cycles.seed = seed
    scene.camera.data.dof.use_dof = kind == "truth"
    if kind == "slab":
        scene.camera.data.clip_start, scene.camera.data.clip_end = map(float, clip)
        scene.render.film_transparent = True
        scene.view_layers[0].pass_alpha_threshold = 0.0
    elif clip is not None:
        scene.camera.data.clip_start = float(clip)
    compat.set_multilayer_exr(scene.render.image_settings, "32", "ZIP")
    tmp = exr[:-4] + ".zdepth-tmp.exr"
    scene.render.filepath = tmp
    scene.render.use_file_extension = False
    from _blender_defocus import quiet_stdout

    with quiet_stdout():
        t0 = time.perf_counter()
        bpy.ops.render.render(write_still=True)
        seconds = time.perf_counter() - t0
    os.replace(tmp, exr)
    with open(exr[:-4] + ".json", "w") as f:
        json.dump({"shot": name, "kind": kind, "samples": samples, "seed": seed,
                   "seconds": seconds,
                   "params": params, "blender": _blender_version()}, f, indent=1)
    rgba, depth = _read_multilayer(exr)
    log(f"  {seconds:.1f} s -> {os.path.relpath(exr, ROOT)}")
    return rgba, depth, seconds, False, exr


# --------------------------------------------------------------------------------------------
# Lens, edge band, metrics.


def cycles_coc_radius(depth, p):
    """Signed CoC radius in pixels as Cycles renders it (see the module docstring)."""
    w, h = p["resolution"]
    f = p["focal_length_mm"]
    fit = p["sensor_fit"]
    if fit == "VERTICAL" or (fit == "AUTO" and h > w):
        px_per_mm = h / (p["sensor_height_mm"] if fit == "VERTICAL" else p["sensor_width_mm"])
    else:
        px_per_mm = w / p["sensor_width_mm"]
    s_mm = p["focus_distance"] * 1000.0
    d = np.where(np.isfinite(depth) & (depth < 1e9), depth, np.inf).astype(np.float64) * 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(np.isfinite(d), 1.0 / d, 0.0)
    c = f * f / (p["fstop"] * s_mm) * (1.0 - s_mm * inv)  # diameter on the sensor, mm, signed
    return (0.5 * c * px_per_mm).astype(np.float32)


def _disk(r):
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return (x * x + y * y <= r * r + 0.5).astype(np.float32)


def _dilate(mask, r):
    """Binary dilation of ``mask`` by a disk of radius ``r`` (FFT convolution)."""
    if r <= 0:
        return mask.copy()
    h, w = mask.shape
    k = _disk(r)
    sh, sw = h + k.shape[0], w + k.shape[1]
    out = np.fft.irfft2(np.fft.rfft2(mask.astype(np.float32), (sh, sw)) *
                        np.fft.rfft2(k, (sh, sw)), (sh, sw))
    return out[r:r + h, r:r + w] > 0.5


def edge_band(coc, jump=1.0, margin=3):
    """The edge band (see the module docstring): boolean HxW."""
    h, w = coc.shape
    pad = np.pad(coc, 1, mode="edge")
    absmax = np.zeros_like(coc)
    edges = np.zeros(coc.shape, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            nb = pad[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
            absmax = np.maximum(absmax, np.abs(nb))
            if dy or dx:
                edges |= np.abs(nb - coc) > jump
    band = np.zeros(coc.shape, bool)
    radii = np.where(edges, np.ceil(absmax).astype(int) + margin, -1)
    for r in np.unique(radii[edges]):
        band |= _dilate(edges & (radii == r), int(r))
    return band


def to_metric_space(rgba, space):
    rgb = np.clip(np.asarray(rgba, np.float64)[..., :3], 0.0, 1.0)
    if space == "linear":
        return rgb
    return np.where(rgb <= 0.0031308, rgb * 12.92, 1.055 * np.power(rgb, 1 / 2.4) - 0.055)


def psnr(a, b, mask=None):
    d2 = (a - b) ** 2
    if mask is not None:
        d2 = d2[mask]
    mse = float(d2.mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


# --------------------------------------------------------------------------------------------
# The two methods under test.


def engine_info():
    """(description of the engine's commit, defocus function, Lens, DofSettings or None)."""
    try:
        from blender_zdepth.core import dof as dof_mod
        from blender_zdepth.core.lens import Lens
    except ImportError as e:
        return f"PLACEHOLDER (engine not importable: {e})", None, None, None
    paths = ["blender_zdepth/core/dof", "blender_zdepth/core/lens.py"]
    try:
        commit = subprocess.run(["git", "log", "-1", "--format=%h %cI", "--", *paths], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=ROOT,
                               capture_output=True, text=True).stdout.rstrip()
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip()
    except OSError:
        commit, dirty, head = "?", "", "?"
    desc = f"engine {commit or 'uncommitted'} (HEAD {head})" + (
        " + UNCOMMITTED changes in " + ", ".join(l[3:] for l in dirty.splitlines()) if dirty else "")
    return desc, dof_mod.defocus, Lens, dof_mod.DofSettings


def placeholder_defocus(rgba, coc, max_radius):
    """A trivial layered blur used only until the engine exists (never a published figure)."""
    out = np.zeros_like(rgba)
    weight = np.zeros(rgba.shape[:2], np.float32)
    r = np.clip(np.abs(coc), 0, max_radius)
    levels = np.arange(0, math.ceil(max_radius) + 1, 2)
    for lv in levels:
        m = (np.abs(r - lv) <= 1).astype(np.float32)
        if not m.any():
            continue
        k = _disk(max(int(lv), 0))
        k /= k.sum()
        h, w = m.shape
        sh, sw = h + k.shape[0], w + k.shape[1]
        kf = np.fft.rfft2(k, (sh, sw))
        o = k.shape[0] // 2
        conv = lambda a: np.fft.irfft2(np.fft.rfft2(a, (sh, sw)) * kf, (sh, sw))[o:o + h, o:o + w]
        for c in range(4):
            out[..., c] += conv(rgba[..., c] * m)
        weight += conv(m)
    return (out / np.maximum(weight, 1e-6)[..., None]).astype(np.float32)


def run_ours(rgba, depth, p, max_radius, engine):
    desc, defocus, Lens, DofSettings = engine
    t0 = time.perf_counter()
    if defocus is None:
        out = placeholder_defocus(rgba, cycles_coc_radius(depth, p), max_radius)
    else:
        lens = Lens(focal_length_mm=p["focal_length_mm"], fstop=p["fstop"],
                    focus_distance=p["focus_distance"], sensor_width_mm=p["sensor_width_mm"],
                    sensor_height_mm=p["sensor_height_mm"], sensor_fit=p["sensor_fit"])
        out = defocus(rgba, depth, lens, DofSettings(max_radius=float(max_radius)))
    return np.asarray(out, np.float32), time.perf_counter() - t0


def run_layered(rgba, depth, peels, p, max_radius, engine, max_layers=None):
    """The same engine on layered input, as ``dof`` gets it from a deep file: our deep samples
    of the pinhole render and its peeled passes (:func:`core.deep.packed_from_layers`), then
    :func:`core.deep.engine_input` (flattened image, visible depth, hidden layers)."""
    from blender_zdepth.core import deep

    image = deep.packed_from_layers(rgba, depth, peels)
    return _run_deep(image, p, max_radius, engine, max_layers)


def _run_deep(image, p, max_radius, engine, max_layers=None):
    """The engine on a deep image as ``dof`` reads a deep file (:func:`core.deep.engine_input`:
    hidden layers for opaque samples, partial-coverage layers otherwise); returns
    ``(result, seconds, layers handed over, share of pixels they cover partly or hide)``."""
    from blender_zdepth.core import deep

    desc, defocus, Lens, DofSettings = engine
    budget = deep.DEFAULT_MAX_LAYERS if max_layers is None else max_layers
    flat, front, hidden, layers = deep.engine_input(image, max_layers=budget)
    lens = Lens(focal_length_mm=p["focal_length_mm"], fstop=p["fstop"],
                focus_distance=p["focus_distance"], sensor_width_mm=p["sensor_width_mm"],
                sensor_height_mm=p["sensor_height_mm"], sensor_fit=p["sensor_fit"])
    t0 = time.perf_counter()
    settings = DofSettings(max_radius=float(max_radius))
    kwargs = {}
    if hidden and engine_takes_hidden(engine):
        kwargs["hidden"] = hidden
    if layers and engine_takes_layers(engine):
        kwargs["layers"] = layers
    out = defocus(flat, front, lens, settings, **kwargs)
    if layers:
        a = layers[0][0][..., 3]
        covered = float(np.mean((a > 0) & (a < 1)))
    else:
        covered = float(np.mean(hidden[0][0][..., 3] > 0)) if hidden else 0.0
    return (np.asarray(out, np.float32), time.perf_counter() - t0, len(hidden) + len(layers),
            covered)


def engine_takes_hidden(engine):
    defocus = engine[1]
    return defocus is not None and "hidden" in inspect.signature(defocus).parameters


def engine_takes_layers(engine):
    defocus = engine[1]
    return defocus is not None and "layers" in inspect.signature(defocus).parameters


def run_slabs(rgba, depth, slabs, p, max_radius, engine):
    """The same engine on depth slabs (:func:`render_shot` 'slab': premultiplied colour with
    its true partial coverage and its own Z each), as ``dof`` gets them from a deep file: the
    deep image of the slabs and what they leave of the beauty
    (:func:`core.slabs.packed_from_slabs`: reconciled to the beauty, as our depth layers' slab files are), then :func:`core.deep.engine_input` (its samples
    cover pixels partly: ``defocus(..., layers=...)``, each pixel's samples near to far); an
    engine without that input gets the flat render."""
    from blender_zdepth.core import deep

    from blender_zdepth.core.slabs import packed_from_slabs

    image = packed_from_slabs(rgba, slabs) if slabs else deep.packed_from_layers(rgba, depth)
    return _run_deep(image, p, max_radius, engine)


def run_node(rgba, depth, p, max_radius):
    from _blender_defocus import DefocusNode

    node = DefocusNode(rgba, depth, focal_length_mm=p["focal_length_mm"], fstop=p["fstop"],
                       focus_distance=p["focus_distance"], blur_max=float(max_radius),
                       sensor_width_mm=p["sensor_width_mm"], sensor_height_mm=p["sensor_height_mm"],
                       sensor_fit=p["sensor_fit"])
    try:
        out, t = node.timed(repeats=1, baseline_repeats=1)
    finally:
        node.close()
    return out, t["median_s"]


def lens_check(depth, p):
    """Largest difference (px) between the engine's CoC radius and Cycles' over the shot."""
    try:
        from blender_zdepth.core.lens import Lens, coc_radius_px
    except ImportError:
        return None
    lens = Lens(focal_length_mm=p["focal_length_mm"], fstop=p["fstop"],
                focus_distance=p["focus_distance"], sensor_width_mm=p["sensor_width_mm"],
                sensor_height_mm=p["sensor_height_mm"], sensor_fit=p["sensor_fit"])
    ours = coc_radius_px(depth, lens, depth.shape[1], depth.shape[0])
    return float(np.max(np.abs(ours - cycles_coc_radius(depth, p))))


# --------------------------------------------------------------------------------------------
# Pictures.


def _display(rgba):
    from blender_zdepth.core.display import to_display

    return to_display(rgba)


def _write_png(path, rgb):
    try:
        from blender_zdepth.core.png import write_png
    except ImportError:
        write_png = None
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if write_png is not None:
        if os.path.exists(path):
            os.remove(path)
        write_png(path, rgb)
        return
    import struct
    import zlib

    a = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    h, w = a.shape[:2]
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(h))

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data +
                struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    tmp = path + ".zdepth-tmp.png"
    with open(tmp, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------


def measure_shot(name, engine, log, *, params=None, cache=CACHE, pinhole_samples=PINHOLE_SAMPLES,
                 truth_samples=TRUTH_SAMPLES, layers=2, layer_samples=None, node=True,
                 space="srgb"):
    """Render (or load) shot ``name`` and measure the engine on it against Cycles' truth: the
    flat render, and -- with ``layers`` > 1 -- its depth layers (peeled passes, or the shot's
    coverage slabs), as ``dof`` gets them from a deep file; the Defocus node with ``node``.
    ``params`` / ``cache``: another version of the shot (e.g. smaller, for the test suite's
    quality check) and where its renders are kept. Returns ``(row, images)``: the figures
    (PSNR of frame and edge band per method, as the table and ``--json`` give them) and the
    pictures (``rgba``, ``truth``, ``ours``, ``node``, ``layered``, ``band``)."""
    params = dict(SHOTS[name][1] if params is None else params)
    where = {"params": params, "cache": cache}
    rgba, depth, t_pin, c1, exr = render_shot(name, "pinhole", pinhole_samples, log, **where)
    half = max(1, truth_samples // 2)
    truth_a, _, t_a, _, _ = render_shot(name, "truth", half, log, seed=1, **where)
    truth_b, _, t_b, _, _ = render_shot(name, "truth", half, log, seed=2, **where)
    truth, t_truth = 0.5 * (truth_a + truth_b), t_a + t_b
    coc = cycles_coc_radius(depth, params)
    slabs = None
    if "slabs" in params and layers > 1:
        # Coverage-correct slabs (their Z shows what the flat Z pass cannot: a curtain
        # under the alpha threshold), rendered at the pinhole's samples.
        cuts = [CLIP[0]] + list(params["slabs"]) + [CLIP[1]]
        slabs = [render_shot(name, "slab", pinhole_samples, log, clip=c, **where)[:2]
                 for c in zip(cuts[:-1], cuts[1:])]
    # The blur cap: the largest CoC in the shot (the slabs' depths included: a surface the
    # Z pass does not show still blurs in the truth).
    biggest = float(np.abs(coc).max())
    for s_rgba, s_depth in slabs or ():
        s_coc = cycles_coc_radius(s_depth, params)[s_rgba[..., 3] > 0]
        biggest = max(biggest, float(np.abs(s_coc).max()) if s_coc.size else 0.0)
    max_radius = max(1.0, math.ceil(biggest))
    ours, t_ours = run_ours(rgba, depth, params, max_radius, engine)
    layered = None
    if slabs is not None:
        clips = list(params["slabs"])
        peel_samples = pinhole_samples
        layered, t_layered, n_hidden, covered = run_slabs(rgba, depth, slabs, params,
                                                          max_radius, engine)
        # no slab: the layers input must give today's result bit for bit
        single = run_slabs(rgba, depth, [], params, max_radius, engine)[0]
    elif layers > 1:
        from blender_zdepth.core import layers as core_layers

        clips = core_layers.clip_distances(depth, layers,
                                           focus_distance=params["focus_distance"],
                                           clip_start=CLIP[0], clip_end=CLIP[1])
        peel_samples = layer_samples or max(1, round(pinhole_samples / 8))
        peels = [render_shot(name, "peel", peel_samples, log, clip=c, **where)[:2] for c in clips]
        layered, t_layered, n_hidden, covered = run_layered(rgba, depth, peels, params,
                                                            max_radius, engine)
        # N = 1: the deep path with no peeled pass must give today's result bit for bit
        single = run_layered(rgba, depth, [], params, max_radius, engine)[0]
    if not node:
        node_img, t_node = None, float("nan")
    else:
        node_img, t_node = run_node(rgba, depth, params, max_radius)
    band = edge_band(coc)
    T = to_metric_space(truth, space)
    A, B = to_metric_space(truth_a, space), to_metric_space(truth_b, space)
    # The truth's own noise: the two halves differ by twice the noise of their mean, so a
    # perfect method would score PSNR(A, B) + 6.02 dB against the mean (the ceiling).
    row = {"shot": name, "max_radius": max_radius, "band_fraction": float(band.mean()),
           "ours_s": t_ours, "node_s": t_node, "lens_check_px": lens_check(depth, params),
           "pinhole_exr": os.path.relpath(exr, ROOT), "render_s": [t_pin, t_truth],
           "truth_ceiling": {"frame": psnr(A, B) + 10 * math.log10(4),
                             "edges": psnr(A, B, band) + 10 * math.log10(4)}}
    if layered is not None:
        row["layers"] = {"clips": clips, "peel_samples": peel_samples,
                         "hidden_layers": n_hidden, "covered": covered,
                         "layered_s": t_layered,
                         "single_identical": bool(np.array_equal(single, ours))}
    for label, img in (("pinhole", rgba), ("node", node_img), ("ours", ours),
                       ("layered", layered)):
        if img is None and label == "layered":
            continue
        if img is None:
            row[label] = {"frame": float("nan"), "edges": float("nan")}
            continue
        X = to_metric_space(img, space)
        lin, tl = np.asarray(img, np.float64)[..., :3][band], truth[..., :3][band]
        row[label] = {"frame": psnr(X, T), "edges": psnr(X, T, band),
                      "band_bias": float(lin.mean() / max(tl.mean(), 1e-12) - 1.0)}
    images = {"rgba": rgba, "truth": truth, "ours": ours, "node": node_img, "layered": layered,
              "band": band}
    return row, images


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shot", action="append", choices=sorted(SHOTS),
                    help="run only this shot (repeatable; default: all)")
    ap.add_argument("--save-images", metavar="DIR",
                    help="write pinhole / ours / defocus / truth / strip / edge band / error "
                         "PNGs per shot")
    ap.add_argument("--picture", metavar="PNG",
                    help="write one side-by-side sheet (rows: shots; columns: pinhole, ours, "
                         "Defocus node, Cycles truth), e.g. docs/images/dof_side_by_side.png")
    ap.add_argument("--space", choices=["srgb", "linear"], default="srgb",
                    help="PSNR on display sRGB (default) or scene-linear values, clipped to 0..1")
    ap.add_argument("--truth-samples", type=int, default=TRUTH_SAMPLES)
    ap.add_argument("--pinhole-samples", type=int, default=PINHOLE_SAMPLES)
    ap.add_argument("--no-node", action="store_true", help="skip the Defocus node (faster)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    ap.add_argument("--layers", type=int, default=2, metavar="N",
                    help="depth layers for the layered comparison: the pinhole render + N-1 "
                         "peeled passes at core.layers.clip_distances (default 2; 1 = skip)")
    ap.add_argument("--layers-picture", metavar="PNG",
                    help="write one sheet of the layered comparison (rows: the shots run; "
                         "columns: pinhole, ours on the flat render, ours on the layers, truth), "
                         "e.g. docs/images/dof_layers.png")
    ap.add_argument("--layer-samples", type=int, default=None, metavar="S",
                    help="samples of a peeled pass (default: the pinhole's / 8, as the "
                         "render's depth layers do)")
    args = ap.parse_args(argv)
    names = args.shot or list(SHOTS)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    engine = engine_info()
    import bpy  # noqa: F401  (renders and the Defocus node)

    print(f"DOF quality vs Cycles truth — {engine[0]}")
    print(f"Blender {_blender_version()}, {RES[0]}x{RES[1]}, pinhole {args.pinhole_samples} spp, "
          f"truth {args.truth_samples} spp, PSNR on {args.space} (dB, higher is better)")
    rows, sheet_tiles, sheet_labels = [], [], []
    layer_tiles, layer_labels = [], []
    for name in names:
        row, images = measure_shot(
            name, engine, log, pinhole_samples=args.pinhole_samples,
            truth_samples=args.truth_samples, layers=args.layers,
            layer_samples=args.layer_samples, node=not args.no_node, space=args.space)
        rgba, truth, ours, node, layered, band = (images[k] for k in (
            "rgba", "truth", "ours", "node", "layered", "band"))
        rows.append(row)
        tiles = [_display(x) for x in (rgba, ours, node if node is not None else rgba * 0, truth)]
        labels = [f"{name}: pinhole", "ours (blender_zdepth)", "Defocus node", "Cycles truth"]
        sheet_tiles += tiles
        sheet_labels += labels
        if layered is not None:
            layer_tiles += [tiles[0], tiles[1], _display(layered), tiles[3]]
            layer_labels += [f"{name}: pinhole", "ours, flat render",
                             (f"ours, {len(SHOTS[name][1]['slabs']) + 1} coverage slabs"
                              if "slabs" in SHOTS[name][1] else
                              f"ours, {args.layers} depth layers"), "Cycles truth"]
        if args.save_images:
            from blender_zdepth.commands._demo_sheet import contact_sheet

            for suffix, tile in zip(("pinhole", "ours", "defocus", "truth"), tiles):
                _write_png(os.path.join(args.save_images, f"{name}_{suffix}.png"), tile)
            band_img = tiles[0] * 0.4
            band_img[band] = band_img[band] * 0.5 + np.array([0.5, 0.35, 0.0], np.float32)
            _write_png(os.path.join(args.save_images, f"{name}_edge_band.png"), band_img)
            for suffix, img in (("ours", ours), ("defocus", node)):
                if img is not None:  # |error| on display values, x4, band outlined in blue
                    err = np.clip(4.0 * np.abs(tiles[3] - _display(img)), 0.0, 1.0)
                    err[_dilate(band, 1) & ~band] = (0.1, 0.3, 1.0)
                    _write_png(os.path.join(args.save_images, f"{name}_error_{suffix}.png"), err)
            _write_png(os.path.join(args.save_images, f"{name}_strip.png"),
                       contact_sheet(tiles, labels, columns=4))
            if layered is not None:
                _write_png(os.path.join(args.save_images, f"{name}_layered.png"),
                           layer_tiles[-2])
                _write_png(os.path.join(args.save_images, f"{name}_layers_strip.png"),
                           contact_sheet(layer_tiles[-4:], layer_labels[-4:], columns=4))

    # The table.
    ok_all = True
    print()
    print(f"{'shot':<11}{'metric':<8}{'pinhole':>9}{'Defocus':>9}{'ours':>9}{'margin':>9}"
          f"{'ceiling':>9}  {'target >= +3 dB (motion +1, curtain +0)'}")
    for r in rows:
        for metric in ("frame", "edges"):
            margin = r["ours"][metric] - r["node"][metric]
            ok = margin >= FLAT_TARGET_DB.get(r["shot"], TARGET_DB)
            info = r["shot"] in FLAT_INFO_ONLY
            if not args.no_node and not info:  # without the node there is no margin to judge
                ok_all &= ok
            verdict = ("n/a (--no-node)" if args.no_node else
                       "info (the flat render hides it: see layered)" if info else
                       "PASS" if ok else "FAIL")
            print(f"{r['shot']:<11}{metric:<8}{r['pinhole'][metric]:9.2f}{r['node'][metric]:9.2f}"
                  f"{r['ours'][metric]:9.2f}{margin:+9.2f}{r['truth_ceiling'][metric]:9.2f}"
                  f"  {verdict}")
    print()
    print(f"{'shot':<11}{'max CoC px':>11}{'band %':>8}{'bias ours':>10}{'bias node':>10}"
          f"{'ours s':>8}{'node s':>8}{'lens vs Cycles px':>19}")
    for r in rows:
        lc = r["lens_check_px"]
        print(f"{r['shot']:<11}{r['max_radius']:11.0f}{100 * r['band_fraction']:8.1f}"
              f"{100 * r['ours'].get('band_bias', np.nan):+9.1f}%"
              f"{100 * r['node'].get('band_bias', np.nan):+9.1f}%"
              f"{r['ours_s']:8.2f}{r['node_s']:8.2f}"
              f"{('%.4f' % lc) if lc is not None else 'n/a':>19}")
    print("(bias: mean scene-linear RGB in the edge band relative to the truth's; negative = "
          "too dark, e.g. lost energy or dark rims)")
    layered_rows = [r for r in rows if "layered" in r]
    if layered_rows:
        hidden_ok = engine_takes_hidden(engine)
        print()
        print(f"Layered input ({args.layers} depth layers: the pinhole render + peeled passes "
              f"at core.layers.clip_distances, through core.deep; {', '.join(SLAB_TARGET_DB)}: "
              f"coverage-correct slabs at their boundaries, as a deep file through core.deep: "
              f"partial coverage, defocus(layers=)) vs flat, "
              f"same engine"
              + ("" if hidden_ok else " -- NOTE: this engine has no hidden= input, the layers "
                                      "cannot be used: layered = flat"))
        print(f"{'shot':<11}{'metric':<8}{'flat':>9}{'layered':>9}{'gain':>9}  target")
        for r in layered_rows:
            for metric in ("frame", "edges"):
                gain = r["layered"][metric] - r["ours"][metric]
                need = LAYER_TARGET_DB if (metric == "edges" and r["shot"] in SEE_BEHIND) \
                    else -LAYER_LOSS_DB
                what = "flat"
                if r["shot"] in SLAB_TARGET_DB:
                    base, need = SLAB_TARGET_DB[r["shot"]][metric]
                    what = "flat" if base == "ours" else "Defocus"
                    if base == "node" and args.no_node:
                        print(f"{r['shot']:<11}{metric:<8}{r['ours'][metric]:9.2f}"
                              f"{r['layered'][metric]:9.2f}{gain:+9.2f}  n/a (--no-node)")
                        continue
                    gain = r["layered"][metric] - r[base][metric]
                ok = gain >= need
                ok_all &= ok
                print(f"{r['shot']:<11}{metric:<8}{r['ours'][metric]:9.2f}"
                      f"{r['layered'][metric]:9.2f}{gain:+9.2f}  >= {what} {need:+.1f} dB "
                      f"{'PASS' if ok else 'FAIL'}")
        print()
        print(f"{'shot':<11}{'clip distances (m)':<26}{'peel spp':>9}{'hidden':>7}"
              f"{'covered %':>10}{'layered s':>10}  N=1 bit-identical  (slab shots: 'hidden' "
              f"= coverage layers, 'covered' = partly covered pixels of the nearest)")
        for r in layered_rows:
            L = r["layers"]
            ok_all &= L["single_identical"]
            print(f"{r['shot']:<11}{', '.join(f'{c:.3g}' for c in L['clips']):<26}"
                  f"{L['peel_samples']:9d}{L['hidden_layers']:7d}{100 * L['covered']:10.1f}"
                  f"{L['layered_s']:10.2f}  {'yes' if L['single_identical'] else 'NO'}")
    print()
    print(f"overall: {'PASS' if ok_all else 'FAIL'} (ours >= Defocus + {TARGET_DB:g} dB on every "
          f"shot but {', '.join(FLAT_INFO_ONLY)}, frame and edges"
          + (f"; layered >= flat + {LAYER_TARGET_DB:g} dB in the edge band on "
             f"{', '.join(SEE_BEHIND)}, never below flat - {LAYER_LOSS_DB:g} dB, N=1 "
             f"bit-identical)" if layered_rows else ")"))
    if args.picture:
        from blender_zdepth.commands._demo_sheet import contact_sheet

        _write_png(args.picture, contact_sheet(sheet_tiles, sheet_labels, columns=4))
        print(f"wrote {args.picture}")
    if args.layers_picture and layer_tiles:
        from blender_zdepth.commands._demo_sheet import contact_sheet

        _write_png(args.layers_picture, contact_sheet(layer_tiles, layer_labels, columns=4))
        print(f"wrote {args.layers_picture}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"engine": engine[0], "space": args.space, "rows": rows}, f, indent=1)
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
