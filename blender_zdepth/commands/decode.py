"""``decode``: turn an encoded depth EXR back into linear planar depth (float32, channel ``Z``)."""

NAME = "decode"
HELP = "write linear planar depth (float32, channel Z, background = +inf) from an encoded EXR"


def add_arguments(parser):
    parser.add_argument("input", metavar="IN.exr", help="one of our files, or a Blender render")
    parser.add_argument("output", metavar="OUT.exr", help="the file to write")
    parser.add_argument("--no-beauty", action="store_true",
                        help="leave the beauty (R,G,B,A) out of the output")
    from .encode import add_source_arguments

    add_source_arguments(parser)
    parser.add_argument("--codec", default="zip", help="lossless EXR codec (default zip)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def run(args):
    import os

    import numpy as np

    from ..core import encodings, exr
    from ..core.errors import ZDepthError
    from ..core.atomic import check_target
    from ..core.frame import load_frame
    from .encode import background_arg, carried_header, report_background

    background = background_arg(args.background)
    exr.codec_enum(args.codec)
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        raise ZDepthError("the output must not be the input file")
    frame = load_frame(args.input, background=background, layer=args.layer,
                           view=args.view)
    report_background(frame)
    check_target(args.output, args.overwrite)
    if frame.encoding is not None:
        near, far, units = frame.encoding.near, frame.encoding.far, frame.encoding.units
    else:
        surface = frame.depth[np.isfinite(frame.depth) & (frame.depth > 0)]
        near, far = (float(surface.min()), float(surface.max())) if surface.size else (0.0, 1.0)
        if not far > near:
            near, far = near / 2, near * 2 + 1.0
        units = "m"
    enc = encodings.DepthEncoding("linear", near, far, units=units)
    rgba = None if args.no_beauty else frame.rgba
    exr.write_depth_exr(args.output, frame.depth, encoding=enc, rgba=rgba, camera=frame.camera,
                        codec=args.codec, depth_channel="Z", overwrite=args.overwrite,
                        extra_header=carried_header(frame.header),
                        data_window=frame.data_window, display_window=frame.display_window)
    source = frame.encoding.name if frame.encoding else "plain render"
    print(f"wrote {args.output}: linear planar depth in 'Z' (float32, from {source} "
          f"{frame.depth_channel!r}), background = +inf"
          f"{', beauty R,G,B,A' if rgba is not None else ''}"
          f"{', view ' + frame.view if frame.view else ''}")
    return 0
