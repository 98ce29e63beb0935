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
    parser.add_argument("--layer", help="view layer to read when the input has several")
    parser.add_argument("--background", default="auto", metavar="auto|M",
                        help="for plain renders: depth at or beyond M (or non-finite) is "
                        "background; auto (default) = 1e9, or the camera clip end for EEVEE "
                        "renders whose header records the camera")
    parser.add_argument("--preview", metavar="OUT.png", help="also write a 16-bit PNG preview "
                        "(white near, black far)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def background_arg(text):
    from ..core.errors import UsageError

    if text is None or str(text).lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--background must be 'auto' or a depth, not {text!r}")
    if not value > 0:
        raise UsageError(f"--background must be a positive depth, not {text!r}")
    return value


def check_layer(path, layer):
    """:class:`UsageError` when ``layer`` is given and ``path`` has view layers with depth but
    not that one (the readers would quietly fall back to another layer). Reads headers only."""
    if not layer:
        return
    import os

    from ..core.errors import UsageError

    if not os.path.isfile(path):
        return  # the reader says what is wrong with the path
    try:
        import OpenEXR

        names = [getattr(c, "name", str(c)) for part in OpenEXR.File(path, header_only=True).parts
                 for c in part.header.get("channels", [])]
    except Exception:
        return  # not readable: the reader reports it
    layers = list(dict.fromkeys(n.rsplit(".", 2)[0] for n in names
                                if n.endswith((".Depth.Z", ".depth.Z", ".Depth.V")) and
                                n.count(".") >= 2))
    if layers and layer not in layers:
        raise UsageError(f"--layer {layer}: {path} has no view layer {layer!r} with depth; "
                         f"its view layers: {', '.join(layers)}")


def carried_header(header):
    """The input's plain metadata (strings and numbers) worth keeping in an output file."""
    from ..core.exr import _STRUCTURAL

    keep = {}
    for key, value in (header or {}).items():
        if key in _STRUCTURAL or str(key).startswith("zdepth"):
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

    background = background_arg(args.background)
    exr._codec_enum(args.codec)  # lossy or unknown codec: usage error before reading anything
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        raise ZDepthError("the output must not be the input file")
    if args.preview:
        from ..core.errors import UsageError

        if not args.preview.lower().endswith(".png"):
            raise UsageError(f"--preview {args.preview}: the preview is a PNG file: name it .png")
        if os.path.abspath(args.preview) in (os.path.abspath(args.input),
                                              os.path.abspath(args.output)):
            raise UsageError(f"--preview {args.preview}: must be another file than IN and OUT")
    check_layer(args.input, args.layer)
    frame = exr.load_frame(args.input, background=background, layer=args.layer)
    surface = ~encodings.is_background(frame.depth, None)
    if not surface.any():
        raise ZDepthError(f"{args.input}: depth channel {frame.depth_channel!r} holds no "
                          f"surface (all background, NaN or inf): nothing to encode")
    negative = surface & (frame.depth < 0)
    if negative.any():
        raise ZDepthError(f"{args.input}: {int(negative.sum())} pixel(s) of {frame.depth_channel!r} "
                          f"have negative depth (smallest {float(frame.depth[negative].min()):g}):"
                          f" camera depth is never negative; is this really a depth pass?")
    if background == "auto":
        suspect = exr.suspected_clip_end_background(frame)
        if suspect is not None and suspect > 0:  # zero/negative: not a clip end (refused below)
            import sys

            print(f"blender_zdepth: warning: {int((frame.depth == suspect).sum())} pixels hold "
                  f"exactly the largest depth, {suspect:g}: if this is an EEVEE render, that is "
                  f"its background (the camera clip end); pass --background "
                  f"{suspect * 0.9999:.6g} to mark it as background", file=sys.stderr)
    near, far, source = choose_range(args, frame)
    enc = encodings.DepthEncoding(args.encoding, near, far,
                                  units=frame.encoding.units if frame.encoding else "m")
    # check every target before writing anything
    exr._check_target(args.output, args.overwrite)
    if args.preview:
        exr._check_target(args.preview, args.overwrite)
    values = exr.encode_for_file(frame.depth, enc, args.half)  # errors before any file exists
    del values
    rgba = None if args.no_beauty else frame.rgba
    written = []
    try:
        if args.preview:
            pic = encodings.preview(frame.depth, enc.near, enc.far)
            written.append(png.write_png(args.preview, pic, bits=16, overwrite=args.overwrite))
        exr.write_depth_exr(args.output, frame.depth, enc, rgba=rgba, camera=frame.camera,
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
          f"{bg} background pixel(s) of {frame.depth.size}")
    if args.preview:
        print(f"wrote {args.preview}: 16-bit preview (white = {enc.near:g}, black = {enc.far:g})")
    out_of_range = surface & ((frame.depth < enc.near) | (frame.depth > enc.far))
    if out_of_range.any():
        share = 100.0 * out_of_range.sum() / surface.sum()
        print(f"note: {share:.3g} % of the surface pixels lie outside the range; they are "
              f"stored exactly all the same (no clamping)")
    return 0
