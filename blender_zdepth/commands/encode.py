"""``encode``: re-encode the depth of an EXR (a Blender render or one of ours) into our format."""

NAME = "encode"
HELP = "write an EXR's depth log-encoded (or linear/normalized/inverse), range in the header"


def add_arguments(parser):
    from ..core.encodings import ENCODINGS

    parser.add_argument("input", metavar="IN.exr", help="a Blender render (multilayer EXR with "
                        "the Z pass), a single-part RGBA + Z file, or one of our files")
    parser.add_argument("output", metavar="OUT.exr", help="the file to write (single-part EXR)")
    parser.add_argument("--encoding", choices=ENCODINGS, default="log",
                        help="how depth is stored (default: log)")
    parser.add_argument("--near", type=float, metavar="M", help="near end of the range (world "
                        "units); give --far too")
    parser.add_argument("--far", type=float, metavar="M", help="far end of the range")
    parser.add_argument("--range", dest="range_source", choices=("auto", "camera", "data"),
                        default="auto", help="where the range comes from when --near/--far are "
                        "not given: the input's own encoding or camera clip range if it has one, "
                        "else the data (auto, default); the camera clip range; or the data")
    parser.add_argument("--half", action="store_true", help="store half float (default float32)")
    parser.add_argument("--codec", default="zip", help="lossless EXR codec: zip (default), piz, "
                        "zips, rle, none")
    parser.add_argument("--depth-channel", default="Z", help="depth channel name: Z (default) or "
                        "depth.Z (Nuke style)")
    parser.add_argument("--no-beauty", action="store_true",
                        help="leave the beauty (R,G,B,A) out of the output")
    add_source_arguments(parser)
    parser.add_argument("--preview", metavar="OUT.png", help="also write a 16-bit PNG preview "
                        "(white near, black far)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


BACKGROUND_HELP = ("what holds no surface in a plain render: auto (default) = NaN/inf, "
                   "Cycles' 1e10, EEVEE's sky at the clip end (recorded camera, or a large "
                   "region at the frame's largest depth reaching its border) and Z <= 0 on "
                   "fully transparent pixels; none = only NaN/inf; a depth M = at or beyond M")


def add_source_arguments(parser):
    """``--layer``, ``--view`` and ``--background``: the same on encode, decode and inspect."""
    parser.add_argument("--layer", metavar="NAME",
                        help="view layer to read when the input has several (default ViewLayer, "
                             "else the first); a layer the file lacks is an error listing its "
                             "layers")
    parser.add_argument("--view", metavar="NAME",
                        help="view of a stereo / multi-view file (default: the file's default "
                             "view, the first of its multiView list or of its parts); beauty and "
                             "depth always come from the same view")
    parser.add_argument("--background", default="auto", metavar="auto|none|M",
                        help=BACKGROUND_HELP)


def background_arg(text):
    """``--background`` -> ``"auto"``, ``"none"`` or a depth (:class:`UsageError` else)."""
    from ..core.encodings import parse_background

    return parse_background(text)


def report_background(frame, stream=None):
    """Print the background rule's one line (plain renders), and refuse ``Z <= 0`` on covered
    pixels with how many there are."""
    import sys

    from ..core.errors import ZDepthError

    info = frame.background_info
    if info is None:
        return
    if info.covered_nonpositive:
        raise ZDepthError(f"{frame.path}: {info.covered_nonpositive} covered pixel(s) of "
                          f"{frame.depth_channel!r} have zero or negative depth: camera depth is "
                          f"always positive; is this really a depth pass? (Z <= 0 is taken as "
                          f"'no surface' only where alpha is 0)")
    if info.background:
        print(f"note: {info.line()}", file=stream or sys.stdout)


def carried_header(header):
    """The input's plain metadata (strings and numbers) worth keeping in an output file."""
    from ..core.exr import STRUCTURAL

    keep = {}
    for key, value in (header or {}).items():
        if key in STRUCTURAL or str(key).startswith("zdepth"):
            continue
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            keep[key] = value
    return keep


def choose_range(args, frame):
    """``(near, far, source)`` for the output."""
    from ..core import encodings
    from ..core.errors import UsageError

    if (args.near is None) != (args.far is None):
        raise UsageError("give both --near and --far, or neither")
    if args.near is not None:
        return args.near, args.far, "manual"
    if args.range_source == "auto" and frame.encoding is not None:
        return frame.encoding.near, frame.encoding.far, "input file"
    cam = frame.camera
    has_clip = cam is not None and cam.clip_start is not None and cam.clip_end is not None
    if args.range_source == "camera" or (args.range_source == "auto" and has_clip):
        near, far = encodings.range_from_camera(cam)
        return near, far, "camera clip range"
    near, far = encodings.range_from_data(frame.depth)
    return near, far, "data"


def run(args):
    import os

    from ..core import encodings, exr, png
    from ..core.errors import ZDepthError
    from ..core.atomic import check_target
    from ..core.frame import load_frame

    background = background_arg(args.background)
    exr.codec_enum(args.codec)  # lossy or unknown codec: usage error before reading anything
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        raise ZDepthError("the output must not be the input file")
    if args.preview:
        from ..core.errors import UsageError

        if not args.preview.lower().endswith(".png"):
            raise UsageError(f"--preview {args.preview}: the preview is a PNG file: name it .png")
        if os.path.abspath(args.preview) in (os.path.abspath(args.input),
                                              os.path.abspath(args.output)):
            raise UsageError(f"--preview {args.preview}: must be another file than IN and OUT")
    frame = load_frame(args.input, background=background, layer=args.layer,
                           view=args.view)
    report_background(frame)
    surface = ~encodings.is_background(frame.depth, None)
    if not surface.any():
        raise ZDepthError(f"{args.input}: depth channel {frame.depth_channel!r} holds no "
                          f"surface (all background, NaN or inf): nothing to encode")
    near, far, source = choose_range(args, frame)
    enc = encodings.DepthEncoding(args.encoding, near, far,
                                  units=frame.encoding.units if frame.encoding else "m")
    # check every target before writing anything
    check_target(args.output, args.overwrite)
    if args.preview:
        check_target(args.preview, args.overwrite)
    values = exr.encode_for_file(frame.depth, enc, half=args.half)  # errors before any file exists
    del values
    rgba = None if args.no_beauty else frame.rgba
    written = []
    try:
        if args.preview:
            pic = encodings.preview(frame.depth, enc.near, enc.far)
            written.append(png.write_png(args.preview, pic, bits=16, overwrite=args.overwrite))
        exr.write_depth_exr(args.output, frame.depth, encoding=enc, rgba=rgba, camera=frame.camera,
                            half=args.half, codec=args.codec, depth_channel=args.depth_channel,
                            overwrite=args.overwrite, extra_header=carried_header(frame.header),
                            data_window=frame.data_window, display_window=frame.display_window)
    except BaseException:
        for path in written:
            if os.path.exists(path):
                os.remove(path)
        raise
    bg = int((~surface).sum())
    print(f"wrote {args.output}: {enc.name} depth in {args.depth_channel!r}, range "
          f"{enc.near:g}-{enc.far:g} {enc.units} (from {source}), "
          f"{'half' if args.half else 'float32'}, {args.codec.lower()}"
          f"{', beauty R,G,B,A' if rgba is not None else ''}; "
          f"{bg} background pixel(s) of {frame.depth.size}"
          f"{', view ' + frame.view if frame.view else ''}")
    if args.preview:
        print(f"wrote {args.preview}: 16-bit preview (white = {enc.near:g}, black = {enc.far:g})")
    out_of_range = surface & ((frame.depth < enc.near) | (frame.depth > enc.far))
    if out_of_range.any():
        share = 100.0 * out_of_range.sum() / surface.sum()
        print(f"note: {share:.3g} % of the surface pixels lie outside the range; they are "
              f"stored exactly all the same (no clamping)")
    return 0
