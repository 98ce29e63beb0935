"""``demo``: render the built-in procedural scene headless and write its depth outputs."""

import os
import time

NAME = "demo"
HELP = "render the built-in procedural demo scene with Cycles and write its depth outputs"


def add_arguments(parser):
    parser.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    parser.add_argument("--resolution", default="480x270", help="WIDTHxHEIGHT (default 480x270)")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples (default 16)")


def _resolution(text):
    from ..core.errors import UsageError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if w < 8 or h < 8:
            raise ValueError
    except ValueError:
        raise UsageError(f"--resolution must look like 480x270 (both at least 8), not {text!r}")
    return w, h


def run(args):
    from ..core.errors import ZDepthError

    try:
        import bpy  # noqa: F401
    except ImportError:
        raise ZDepthError("the demo renders with Blender: run it with the bpy module "
                          "('python3 build.py demo') or inside Blender")
    from ..blender import compat, scenes

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    scene = scenes.demo_scene(_resolution(args.resolution), "CYCLES", args.samples)
    compat.set_multilayer_exr(scene.render.image_settings)
    render_path = os.path.join(out, "render.exr")
    scene.render.filepath = render_path
    import bpy

    bpy.ops.render.render(write_still=True)
    print(f"rendered the demo scene with Cycles in {time.perf_counter() - t0:.1f} s")
    print(f"  beauty + Z pass (multilayer EXR): {render_path}")
    return 0
