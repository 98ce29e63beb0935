"""``dof``: depth of field on a rendered EXR frame (refocus after render)."""

import os
import time

NAME = "dof"
HELP = "apply a lens depth of field to a rendered EXR (beauty + Z pass) and write RGBA EXR"


def add_arguments(parser):
    parser.add_argument("input", metavar="IN.exr",
                        help="Blender multilayer render (ViewLayer.Combined + ViewLayer.Depth.Z) "
                             "or single-part RGBA + Z EXR")
    parser.add_argument("output", metavar="OUT.exr", help="single-part float32 RGBA EXR to write")
    parser.add_argument("--focus-distance", type=float, metavar="M",
                        help="focus distance in metres (scene units); default: the file's camera")
    parser.add_argument("--fstop", type=float, metavar="N",
                        help="f-number of the aperture; default: the file's camera")
    parser.add_argument("--focal-length", type=float, metavar="MM",
                        help="focal length in millimetres; default: the file's camera")
    parser.add_argument("--sensor-width", type=float, metavar="MM",
                        help="sensor width in millimetres (default: the file's camera, else 36)")
    parser.add_argument("--max-radius", type=float, default=64.0, metavar="PX",
                        help="largest blur radius in pixels (default 64)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT.exr if it exists")


def run(args):
    from ..core import exr
    from ..core.dof import DofSettings, defocus
    from ..core.errors import UsageError, ZDepthError
    from ..core.lens import Lens

    src = os.path.abspath(args.input)
    dst = os.path.abspath(args.output)
    if not dst.lower().endswith(".exr"):
        raise UsageError(f"{args.output}: the output must be an .exr file")
    if os.path.exists(dst) and not args.overwrite:
        raise ZDepthError(f"{dst}: already exists; pass --overwrite to replace it")
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise UsageError("the output would replace the input: give another OUT.exr")
    t0 = time.perf_counter()
    frame = exr.load_frame(src)
    if frame.rgba is None:
        raise ZDepthError(f"{src}: no beauty (RGBA) channels to blur")
    lens = Lens.from_camera(frame.camera, focal_length_mm=args.focal_length, fstop=args.fstop,
                            focus_distance=args.focus_distance,
                            sensor_width_mm=args.sensor_width)
    settings = DofSettings(max_radius=args.max_radius).validate()
    out = defocus(frame.rgba, frame.depth, lens, settings)
    channels = {name: out[..., i] for i, name in enumerate("RGBA")}
    header = {"zdepthDof": (f"focal {lens.focal_length_mm:g}mm f/{lens.fstop:g} focus "
                            f"{lens.focus_distance:g} sensor {lens.sensor_width_mm:g}mm "
                            f"max radius {settings.max_radius:g}px")}
    exr.write_exr(dst, channels, header=header, overwrite=args.overwrite,
                  data_window=frame.data_window, display_window=frame.display_window)
    h, w = out.shape[:2]
    print(f"{dst}: {w}x{h}, depth of field in {time.perf_counter() - t0:.2f} s")
    return 0
