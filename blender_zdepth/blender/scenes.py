"""Procedural scenes built from nothing (no downloaded assets), for the demo, tests and benchmarks.

Every builder starts from an empty file (``read_factory_settings(use_empty=True)``), so call it
before anything else touches the scene; it returns the new scene.
"""

import math

import bpy
from mathutils import Vector

from .compat import eevee_engine_id, use_nodes


def empty_scene(resolution=(320, 180), engine="CYCLES", samples=16):
    """Reset Blender to an empty file and return its scene set up for a tiny, fast render."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = resolution
    scene.render.resolution_percentage = 100
    scene.render.engine = eevee_engine_id() if engine == "EEVEE" else engine
    if scene.render.engine == "CYCLES":
        scene.cycles.samples = samples
        scene.cycles.use_denoising = False
        scene.cycles.device = "CPU"
    else:
        scene.eevee.taa_render_samples = max(1, samples)
    scene.view_layers[0].use_pass_z = True
    return scene


def emission_material(name, color, strength=1.0, alpha=1.0):
    """A material that only emits ``color`` (converges in a few samples, no lights needed);
    ``alpha`` below 1: that share of it is the surface, the rest see-through (a curtain)."""
    mat = bpy.data.materials.new(name)
    use_nodes(mat)
    mat.node_tree.nodes.clear()
    emit = mat.node_tree.nodes.new("ShaderNodeEmission")
    emit.inputs["Color"].default_value = (*color, 1.0)
    emit.inputs["Strength"].default_value = strength
    _surface(mat, emit.outputs["Emission"], alpha)
    return mat


def _surface(mat, shader, alpha):
    """Wire ``shader`` (an output socket) to ``mat``'s output; ``alpha`` below 1 mixes it with a
    Transparent BSDF (``alpha`` of it is the shader)."""
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    out = nodes.new("ShaderNodeOutputMaterial")
    if alpha < 1.0:
        clear = nodes.new("ShaderNodeBsdfTransparent")
        mix = nodes.new("ShaderNodeMixShader")
        mix.inputs["Fac"].default_value = alpha
        links.new(clear.outputs["BSDF"], mix.inputs[1])
        links.new(shader, mix.inputs[2])
        shader = mix.outputs["Shader"]
    links.new(shader, out.inputs["Surface"])


def checker_material(name, color_a, color_b, scale=4.0, strength=1.0, alpha=1.0):
    """An emissive checkerboard, so blur and registration are visible in pictures (``alpha``:
    as :func:`emission_material`)."""
    mat = bpy.data.materials.new(name)
    use_nodes(mat)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    checker = nodes.new("ShaderNodeTexChecker")
    checker.inputs["Color1"].default_value = (*color_a, 1.0)
    checker.inputs["Color2"].default_value = (*color_b, 1.0)
    checker.inputs["Scale"].default_value = scale
    emit = nodes.new("ShaderNodeEmission")
    emit.inputs["Strength"].default_value = strength
    links.new(checker.outputs["Color"], emit.inputs["Color"])
    _surface(mat, emit.outputs["Emission"], alpha)
    return mat


def add_camera(scene, location, target, lens=50.0, sensor_width=36.0, clip=(0.1, 1000.0)):
    """Add a perspective camera at ``location`` looking at ``target``; make it the scene camera."""
    data = bpy.data.cameras.new("Camera")
    data.lens = lens
    data.sensor_width = sensor_width
    data.sensor_fit = "AUTO"
    data.clip_start, data.clip_end = clip
    cam = bpy.data.objects.new("Camera", data)
    scene.collection.objects.link(cam)
    cam.location = location
    direction = Vector(target) - Vector(location)
    cam.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam
    return cam


def add_object(scene, primitive, name, material, **kwargs):
    """Add a mesh primitive (``bpy.ops.mesh.primitive_<primitive>_add``) with ``material``."""
    getattr(bpy.ops.mesh, f"primitive_{primitive}_add")(**kwargs)
    obj = bpy.context.active_object
    obj.name = name
    obj.data.materials.append(material)
    return obj


def set_world_color(scene, color, strength=1.0):
    world = bpy.data.worlds.new("World")
    use_nodes(world)
    bg = world.node_tree.nodes.get("Background")
    bg.inputs["Color"].default_value = (*color, 1.0)
    bg.inputs["Strength"].default_value = strength
    scene.world = world
    return world


def demo_scene(resolution=(480, 270), engine="CYCLES", samples=16):
    """The demo shot: a checkered ground receding to the horizon, a row of checkered pillars
    from 3 m to 60 m from the camera, a small bright lamp (a highlight above 1) behind the
    pillars, and a dark sky (the background: no surface hit).

    Camera: 85 mm lens on a 36 mm sensor at the origin looking along +Y, 1.2 m above the
    ground, clip 0.5-300 m, depth of field f/1.4 focused at 8 m (off for the render itself:
    the render is the pinhole image that the tool refocuses).
    """
    scene = empty_scene(resolution, engine, samples)
    set_world_color(scene, (0.02, 0.03, 0.06))
    ground = checker_material("Ground", (0.55, 0.5, 0.42), (0.12, 0.11, 0.1), scale=80.0)
    add_object(scene, "plane", "Ground", ground, size=400.0, location=(0.0, 190.0, 0.0))
    colors = [(0.9, 0.25, 0.2), (0.95, 0.7, 0.2), (0.3, 0.8, 0.35), (0.25, 0.5, 0.95),
              (0.7, 0.35, 0.9), (0.9, 0.9, 0.9)]
    # (distance along the view, angle off the axis in degrees): spread across the frame.
    placements = [(3.0, -7.5), (5.0, -3.5), (8.0, 0.5), (13.0, 4.0), (25.0, 7.0), (60.0, -9.5)]
    for i, (dist, angle) in enumerate(placements):
        mat = checker_material(f"Pillar{i}", colors[i], tuple(0.35 * c for c in colors[i]), 6.0)
        x = dist * math.tan(math.radians(angle))
        height = 1.0 + 0.04 * dist
        add_object(scene, "cube", f"Pillar{i}", mat, size=1.0,
                   location=(x, dist, height / 2.0),
                   scale=(0.15 + 0.01 * dist, 0.15 + 0.01 * dist, height / 2.0))
    lamp = emission_material("Lamp", (1.0, 0.85, 0.6), 12.0)
    add_object(scene, "uv_sphere", "Lamp", lamp, radius=0.12, location=(0.9, 18.0, 1.9),
               segments=16, ring_count=8)
    cam = add_camera(scene, (0.0, 0.0, 1.2), (0.0, 10.0, 0.9), lens=85.0, clip=(0.5, 300.0))
    cam.data.dof.use_dof = False
    cam.data.dof.focus_distance = 8.0
    cam.data.dof.aperture_fstop = 1.4
    scene.frame_start = scene.frame_end = scene.frame_current = 1
    return scene
