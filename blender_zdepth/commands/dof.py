"""``dof``: depth of field on rendered EXR frames (refocus after render): one frame or a sequence.

    python -m blender_zdepth dof render.0042.exr refocused.0042.exr --focus-distance 3 --fstop 2
    python -m blender_zdepth dof shot.####.exr dof/shot.####.exr --frames 1001-1048 \\
        --focus-keys 1001:2.5,1048:8.0 --fstop 1.4 --focal-length 50 --png

IN is a plain Blender render with the Z pass (multilayer EXR) or one of our own exports; camera
values (lens, sensor, f-stop, focus) come from our header when present, and options override
them. A deep OpenEXR (ours, or another renderer's) is read too, and an export with its
<name>_deep.exr beside it is refocused from the deep file (the progress line says so): the
surfaces it holds behind the visible ones are what a lens sees past an edge. Each frame is written atomically as a single-part float32 RGBA EXR; a bad frame is reported
once (its progress line, on stderr; the summary names it) and skipped, and the exit code is 1
when any frame failed (0 when all succeeded). Said once per run on stderr too: the frames whose
render had the camera's own depth of field (their header's ``zdepthCameraDofEnabled``) and the
36x24 mm sensor assumed for files that record none.
"""

import os
import sys

NAME = "dof"
HELP = "apply a lens depth of field to rendered EXR frames (beauty + Z pass) and write RGBA EXR"
NEEDS = ("numpy", "OpenEXR")  # checked by cli.main before the command runs


#: ``dof``'s lens options (metres and millimetres; default: the file's camera).
_LENS_OPTIONS = (
    ("--fstop", "N", "f-number of the aperture; default: the file's camera"),
    ("--focal-length", "MM", "focal length in millimetres; default: the file's camera"),
    ("--sensor-width", "MM", "sensor width in millimetres (default: the file's camera, else 36)"),
    ("--sensor-height", "MM", "sensor height in millimetres, for --sensor-fit vertical "
                              "(default: the file's camera, else 24)"),
)
#: The blur cap and the aperture's shape: (flag, type, default, metavar, help).
_APERTURE_OPTIONS = (
    ("--max-radius", float, 64.0, "PX", "largest blur radius in pixels (default 64)"),
    ("--blades", int, 0, "N", "aperture blades: 3 or more = polygon; 0, 1 or 2 = round, as "
                              "Cycles (default 0)"),
    ("--rotation", float, 0.0, "DEG", "rotation of a polygonal aperture in degrees (default 0)"),
    ("--anamorphic", float, 1.0, "RATIO", "aperture height / width, as the camera's aperture "
                                          "ratio: above 1 tall (anamorphic) bokeh, below 1 wide; "
                                          "0.1 to 10 (default 1)"),
)
#: The PNG's colour management beside --view-transform and --ocio-config.
_COLOUR_OPTIONS = (
    ("--look", str, "NAME", "look, e.g. 'AgX - Punchy'; None = no look"),
    ("--exposure", float, "EV", "exposure in stops, applied in scene-linear before the view"),
    ("--gamma", float, "G", "display gamma, applied after the view (1 = none)"),
    ("--display", str, "NAME", "display device of the config, e.g. sRGB, Display P3"),
)


def add_arguments(parser):
    parser.add_argument("input", metavar="IN",
                        help="a rendered EXR -- Blender multilayer render (ViewLayer.Combined + "
                             "ViewLayer.Depth.Z), single-part RGBA + Z, or a blender_zdepth "
                             "export -- or a frame pattern such as shot.####.exr / shot.%%04d.exr")
    parser.add_argument("output", metavar="OUT",
                        help="the .exr to write, a pattern (dof/shot.####.exr) for a sequence, "
                             "or an existing folder (outputs keep the input names); never IN")
    parser.add_argument("--frames", metavar="A-B",
                        help="frames of a pattern to do: 1001-1048, 1,5,9 or 1-100x5 (default: "
                             "every matching file on disk); a farm task gives its chunk here")
    focus = parser.add_mutually_exclusive_group()
    focus.add_argument("--focus-distance", type=float, metavar="M",
                       help="focus distance in metres (scene units); default: the file's camera")
    focus.add_argument("--focus-pixel", metavar="X,Y",
                       help="focus on the surface under pixel X,Y of the display window, "
                            "counted from the BOTTOM-LEFT corner (x right, y up), as Blender's "
                            "Image Editor and Nuke show it; read from each frame's depth")
    focus.add_argument("--focus-keys", metavar="F:M,...",
                       help="focus rack: frame:distance keys, e.g. 1001:2.5,1048:8.0, eased "
                            "smoothly between keys (monotone cubic, flat at the keys' ends); "
                            "frames outside the keys hold the end values")
    for flag, metavar, text in _LENS_OPTIONS:
        parser.add_argument(flag, type=float, metavar=metavar, help=text)
    parser.add_argument("--sensor-fit", type=str.upper, choices=("AUTO", "HORIZONTAL", "VERTICAL"),
                        metavar="auto|horizontal|vertical",
                        help="which image side the sensor spans, as Blender's camera "
                             "(default: the file's camera, else auto = the larger side)")
    for flag, kind, default, metavar, text in _APERTURE_OPTIONS:
        parser.add_argument(flag, type=kind, default=default, metavar=metavar, help=text)
    parser.add_argument("--quality", choices=("draft", "default", "high"), default="default",
                        help="layer spacing of the engine: draft is fastest, high best for "
                             "small blur (default: default)")
    from .encode import add_source_arguments

    add_source_arguments(parser)  # --layer, --view, --background: as encode, decode, inspect
    parser.add_argument("--diagnostic", action="store_true",
                        help="write the focal-plane view instead of the blur: red in front of "
                             "the focal plane, green in focus, blue behind")
    parser.add_argument("--output-name", metavar="PATTERN",
                        help="names of the outputs when OUT is a folder: {name} = the input's "
                             "name without frame number, {frame} or #### = the frame number, "
                             "e.g. '{name}_dof.####.exr' (default: the input's name)")
    parser.add_argument("--multilayer", action="store_true",
                        help="write a multilayer EXR that keeps every pass of the input (depth, "
                             "normals, AOVs ... and its header), the beauty refocused, instead "
                             "of RGBA only")
    parser.add_argument("--png", action="store_true",
                        help="also write an 8-bit PNG beside each EXR, colour managed as Blender "
                             "shows the render (the view transform, look, exposure and gamma "
                             "the file's header recorded; RGBA when the frame has alpha)")
    colour = parser.add_argument_group(
        "colour management of the PNG (OpenColorIO; default: the scene's settings recorded in "
        "the file's header, else Blender's defaults: sRGB display, AgX view)")
    colour.add_argument("--view-transform", metavar="NAME",
                        help="view transform, as Blender's Color Management panel: AgX, "
                             "Filmic, Khronos PBR Neutral ...; Standard = the plain sRGB "
                             "transfer (needs no OpenColorIO). (--view is the stereo view)")
    for flag, kind, metavar, text in _COLOUR_OPTIONS:
        colour.add_argument(flag, type=kind, metavar=metavar, help=text)
    colour.add_argument("--ocio-config", metavar="PATH",
                        help="OpenColorIO config (default: the config of the Blender that "
                             "rendered the file, if it is here, else $OCIO, else Blender's "
                             "config of the bpy module)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace outputs that exist")
    parser.add_argument("--skip-existing", action="store_true",
                        help="keep outputs that exist and do only the missing frames (resume)")
    parser.add_argument("--no-deep", action="store_true",
                        help="ignore deep data: a <name>_deep.exr beside a flat IN is not "
                             "read, a deep IN is refocused flattened (by default the deep "
                             "file's hidden surfaces are used, and the progress line says so)")
    parser.add_argument("--deep-layers", type=int, default=None, metavar="K",
                        help="deep input: at most K hidden layers per pixel handed to the "
                             "engine (memory: 20 bytes per pixel per layer; default 3)")
    parser.add_argument("--jobs", type=_count("--jobs", 1), metavar="N",
                        help="frames refocused at once, each in its own worker process "
                             "(default: chosen from the cores and the available memory, about "
                             "1 GB for a 4K frame, never more than fit; 1 = one after another)")
    parser.add_argument("--threads", type=_count("--threads", 1), default=0, metavar="N",
                        help="threads for each frame (default: all cores, shared between the "
                             "--jobs; 1 = one thread for everything)")


def _count(option, smallest):
    """An argparse type: a whole number >= ``smallest``; anything else is one clear line and
    exit code 2 (argparse's error path)."""
    import argparse

    what = ("frames to refocus at once, or leave --jobs out to choose from the cores and memory"
            if option == "--jobs" else
            "threads for each frame, or leave --threads out to use all cores")

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: give the number "
                                             f"of {what}")
        if value < smallest:
            raise argparse.ArgumentTypeError(f"{value} is too small: give {smallest} or more "
                                             f"({what})")
        return value
    parse.__name__ = option  # argparse names the type in some messages
    return parse


def _focus_pixel(text):
    from ..core.errors import UsageError

    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--focus-pixel must look like 120,80 (X,Y in pixels), not {text!r}")
    return x, y


def run(args):
    from ..core import batch, refocus
    from ..core.dof import DofSettings
    from ..core.errors import UsageError

    if args.overwrite and args.skip_existing:
        raise UsageError("--overwrite and --skip-existing contradict each other: choose one")
    for option, what, value in (
            ("--fstop", "f-stop", args.fstop),
            ("--focal-length", "focal length", args.focal_length),
            ("--sensor-width", "sensor width", args.sensor_width),
            ("--sensor-height", "sensor height", args.sensor_height),
            ("--focus-distance", "focus distance", args.focus_distance)):
        if value is not None and not (value > 0 and value != float("inf")):
            raise UsageError(f"{option}: the {what} must be a positive number, not {value:g}")
    deep_layers = getattr(args, "deep_layers", None)
    if deep_layers is not None and not 0 <= deep_layers <= 16:
        raise UsageError(f"--deep-layers: from 0 to 16 hidden layers, not {deep_layers}")
    deep = False if getattr(args, "no_deep", False) else deep_layers
    frames = batch.parse_frames(args.frames) if args.frames else None
    keys = refocus.parse_focus_keys(args.focus_keys) if args.focus_keys else None
    pixel = _focus_pixel(args.focus_pixel) if args.focus_pixel else None
    from .encode import background_arg

    background = background_arg(args.background)
    if args.blades < 0:
        raise UsageError(f"--blades must be 0 (round) or 3 or more, not {args.blades}")
    # as Cycles: fewer than 3 blades is a round aperture
    blades = args.blades if args.blades >= 3 else 0
    settings = DofSettings(max_radius=args.max_radius, blades=blades,
                           rotation_deg=args.rotation, threads=args.threads).validate()
    settings.anamorphic, settings.quality = args.anamorphic, args.quality
    settings.validate()
    lens_for = refocus.lens_resolver(
        focus_distance=args.focus_distance, focus_pixel=pixel, focus_keys=keys,
        fstop=args.fstop, focal_length_mm=args.focal_length, sensor_width_mm=args.sensor_width,
        sensor_height_mm=args.sensor_height, sensor_fit=args.sensor_fit)
    lens_for_frame = _LensOrStop(lens_for)

    noted = _Notes(args)

    def progress(result, index, total):
        line = batch.progress_line(result, index, total)
        if result.status == "failed":  # said once, here, on stderr (the summary only counts)
            print(f"blender_zdepth: error: {line}", file=sys.stderr, flush=True)
        else:
            print(line, flush=True)
        noted.seen(result)

    report = refocus.refocus_sequence(
        os.path.abspath(args.input), _abs_out(args.output), lens_for_frame, settings=settings,
        frames=frames, png=args.png, diagnostic=args.diagnostic,
        skip_existing=args.skip_existing, overwrite=args.overwrite, progress=progress,
        layer=args.layer, deep=deep, workers=args.jobs, notify=_note, view=args.view,
        background=background, name_pattern=args.output_name, multilayer=args.multilayer,
        colour=_colour(args))
    print(report.summary(details=False), flush=True)
    noted.finish()
    return 0 if report.ok else 1


class _Notes:
    """What the user is told once per run, on stderr, however many frames it concerns: the
    frames whose render had the camera's own depth of field (their headers say so), and the
    36x24 mm sensor assumed for files that record no camera sensor."""

    def __init__(self, args):
        self.args = args
        self.double_dof = []
        self.sensor_checked = False

    def seen(self, result):
        if result.status != "written":
            return
        info = result.info or {}
        if info.get("double_dof"):
            self.double_dof.append(result.frame)
        if not self.sensor_checked:
            self.sensor_checked = True
            self._check_sensor(result.job.input, info.get("lens"))

    def _check_sensor(self, path, lens):
        args = self.args
        fit = str(getattr(lens, "sensor_fit", "AUTO") or "AUTO")
        given = args.sensor_height if fit == "VERTICAL" else args.sensor_width
        if given is not None or lens is None:
            return
        from ..core import exr

        try:
            header = exr.read_layout(path)[0][0].header
        except Exception:
            return
        key = "zdepthCameraSensorHeight" if fit == "VERTICAL" else "zdepthCameraSensorWidth"
        if key not in header:
            _note(f"{path} records no camera sensor: assuming Blender's default "
                  f"{lens.sensor_width_mm:g}x{lens.sensor_height_mm:g} mm sensor (give "
                  f"--sensor-width / --sensor-height if the render used another)")

    def finish(self):
        if self.double_dof:
            from ..core.batch import format_frames
            from ..core.refocus import CAMERA_DOF_WARNING

            frames = [f for f in self.double_dof if f is not None]
            what = f"frame(s) {format_frames(frames)}" if frames else "the frame"
            print(f"blender_zdepth: warning: {what}: {CAMERA_DOF_WARNING}", file=sys.stderr,
                  flush=True)


def _colour(args):
    """The command line's colour settings of the PNGs (None where not given: the header's)."""
    from ..core.colour import ColourSettings, check_settings
    from ..core.errors import UsageError

    config = getattr(args, "ocio_config", None)
    if config is not None:
        config = os.path.abspath(config)
        if not os.path.isfile(config):
            raise UsageError(f"--ocio-config {config}: no such file")
    return check_settings(ColourSettings(
        display=getattr(args, "display", None), view=getattr(args, "view_transform", None),
        look=getattr(args, "look", None), exposure=getattr(args, "exposure", None),
        gamma=getattr(args, "gamma", None), config=config))


class _LensOrStop:
    """The lens of a frame; options that cannot work (no focal length in the file and none
    given, ...) stop the run with a usage error on the first frame instead of failing every
    frame alike. A class, not a closure: worker processes (--jobs) get their own copy."""

    def __init__(self, lens_for):
        self.lens_for = lens_for
        self.seen = False

    def __call__(self, frame, loaded):
        from ..core import batch
        from ..core.errors import UsageError

        try:
            lens = self.lens_for(frame, loaded)
        except UsageError as exc:
            if not self.seen:
                where = f"frame {frame} ({loaded.path})" if frame is not None else loaded.path
                raise batch.AbortRun(f"{where}: {exc}")
            raise
        self.seen = True
        return lens


def _note(text):
    print(f"blender_zdepth: note: {text}", file=sys.stderr, flush=True)


def _abs_out(text):
    trailing = text.endswith(("/", os.sep))
    path = os.path.abspath(text)
    return path + os.sep if trailing else path
