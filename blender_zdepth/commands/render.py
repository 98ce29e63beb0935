"""``render``: render a .blend headless and write one depth EXR per frame.

    python -m blender_zdepth render SCENE.blend --out DIR [--frames A-B]
        [--engine cycles|eevee|workbench]
        [--encoding log|linear|normalized|inverse] [--samples N] [--resolution-percentage P] ...
    blender -b SCENE.blend -P .../blender_zdepth/cli.py -- render --out DIR ...

Uses :func:`blender_zdepth.blender.render.export.render_with_depth`; the file's own Z-Depth
settings (encoding, range, bit depth, codec, beauty, name) apply unless an option overrides them.
"""

import os
import re
import time

NAME = "render"
HELP = "render a .blend headless (Cycles, EEVEE or Workbench) and write one depth EXR per frame"
NEEDS = ("numpy", "OpenEXR")  # checked by cli.main before the command runs

_ENCODINGS = ("log", "linear", "normalized", "inverse")


def add_arguments(parser):
    parser.add_argument("blend", nargs="?", metavar="SCENE.blend",
                        help="the .blend to render (inside 'blender -b SCENE.blend -P cli.py --' "
                             "it may be left out: the loaded file is used)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (created when missing)")
    parser.add_argument("--frames", metavar="A-B",
                        help="frames to render: A-B, A or A,B,C (default: the scene's frame "
                             "range and frame step); they must lie inside the scene's frame range")
    parser.add_argument("--scene", metavar="NAME", help="scene to render (default: the active one)")
    parser.add_argument("--engine", choices=("cycles", "eevee", "workbench"),
                        help="render engine (default: the file's; it must be Cycles, EEVEE or "
                             "Workbench)")
    parser.add_argument("--samples", type=int, metavar="N",
                        help="render samples (Workbench: anti-aliasing samples, rounded up to "
                             "its nearest setting: 1 = off, 5, 8, 11, 16 or 32)")
    parser.add_argument("--resolution-percentage", type=int, metavar="P",
                        help="resolution scale in percent (1-10000)")
    parser.add_argument("--encoding", choices=_ENCODINGS,
                        help="depth encoding (default: the file's Z-Depth setting, else log)")
    parser.add_argument("--range", dest="range_source", choices=("camera", "scene", "manual"),
                        help="where near/far come from: camera clip range, scene bounds, or "
                             "--near/--far (default: the file's setting, else camera)")
    parser.add_argument("--near", type=float, help="near depth (implies --range manual)")
    parser.add_argument("--far", type=float, help="far depth (implies --range manual)")
    parser.add_argument("--half", action="store_true",
                        help="store depth as 16-bit half float (default: 32-bit float)")
    parser.add_argument("--codec", choices=("zip", "piz", "zips", "rle", "none"),
                        help="lossless EXR codec (default: the file's setting, else zip)")
    parser.add_argument("--beauty", choices=("same-file", "beside", "none"),
                        help="beauty as RGBA in the depth file (default), in its own file "
                             "beside it, or not at all")
    parser.add_argument("--name", metavar="PATTERN",
                        help="file name pattern, # = frame digits (default: zdepth_####)")
    parser.add_argument("--preview", action="store_true",
                        help="also write a 16-bit white-near depth preview PNG per frame")
    parser.add_argument("--depth-layers", type=int, metavar="N",
                        help="layers per frame, the beauty included (1-8; default: the file's "
                             "setting, else 1): N-1 extra passes with the clip start moved past "
                             "nearer surfaces, written as <name>_deep.exr beside each depth EXR")
    parser.add_argument("--layer-samples", type=int, metavar="S",
                        help="samples of each extra pass (default: the file's setting; 0 = an "
                             "eighth of the render's samples, at least 1)")
    parser.add_argument("--layer-clips", metavar="D1,D2",
                        help="clip distances of the extra passes (with --slabs: the N-1 slab "
                             "boundaries), increasing, inside the camera's clip range (default: "
                             "automatic from each frame's depth; given alone, N = their count + 1)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--slabs", dest="layer_mode", action="store_const", const="SLABS",
                      help="depth layers as slabs: N renders of consecutive depth ranges with "
                           "the film transparent, each surface with its partial coverage "
                           "(motion blur, transparency, soft edges) at its own depth")
    mode.add_argument("--peel", dest="layer_mode", action="store_const", const="PEEL",
                      help="depth layers as peeled passes behind the beauty (opaque samples). "
                           "Default: the file's setting; automatic = slabs where the scene has "
                           "motion blur or transparent surfaces, else peel")
    mode.add_argument("--layer-mode", dest="layer_mode", choices=("auto", "peel", "slabs"),
                      type=str.lower,
                      help="the same as a choice (auto: slabs where the scene has motion blur "
                           "or transparent surfaces, else peel)")


def parse_frames(text, start, end, step=1):
    """Frame numbers from ``A-B``, ``A`` or ``A,B,C`` (each inside ``[start, end]``); without
    ``text``, the scene's range every ``step`` frames (its Frame Step, as Blender renders it)."""
    from ..core.errors import UsageError

    if text is None:
        return list(range(start, end + 1, max(1, int(step))))
    frames = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(-?\d+)(?:\s*(?:-|\.\.)\s*(-?\d+))?", part)
        if not m:
            raise UsageError(f"--frames must look like 1-24, 7 or 1,5,9, not {text!r}")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise UsageError(f"--frames {part}: the range ends before it starts")
        frames.extend(range(a, b + 1))
    outside = [f for f in frames if not start <= f <= end]
    if outside:
        raise UsageError(f"--frames {text}: frame(s) {_short(outside)} outside the scene's frame "
                         f"range {start}-{end}")
    return list(dict.fromkeys(frames))


#: Workbench's anti-aliasing settings (``scene.display.render_aa``) and their sample counts.
_WORKBENCH_AA = (("OFF", 1), ("5", 5), ("8", 8), ("11", 11), ("16", 16), ("32", 32))


def workbench_aa(samples):
    """Workbench's ``render_aa`` for ``--samples N``: the first setting with at least N samples
    (32 beyond)."""
    for name, count in _WORKBENCH_AA:
        if count >= samples:
            return name
    return _WORKBENCH_AA[-1][0]


def _short(values, limit=6):
    text = ", ".join(str(v) for v in values[:limit])
    return text + (", ..." if len(values) > limit else "")


def _warn_camera_dof(written):
    """One warning on stderr when the written files' headers say their render had the camera's
    own depth of field (``zdepthCameraDofEnabled``, recorded per frame as it rendered)."""
    import sys

    from ..core import exr
    from ..core.refocus import CAMERA_DOF_WARNING, header_had_dof

    names = []
    for paths in written:
        try:
            parts = exr.read_layout(paths["depth"])[0]
        except Exception:
            continue
        if any(header_had_dof(p.header) for p in parts):
            names.append(os.path.basename(paths["depth"]))
    if names:
        print(f"blender_zdepth: warning: {_short(names, 3)}: {CAMERA_DOF_WARNING}",
              file=sys.stderr, flush=True)


def _load(path):
    import bpy

    from ..core.errors import ZDepthError

    if path is None:
        if not bpy.data.filepath:
            raise ZDepthError("no .blend given and none is loaded: pass SCENE.blend")
        return
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise ZDepthError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ZDepthError(f"{path}: is a folder, not a .blend file")
    if bpy.data.filepath and os.path.samefile(bpy.data.filepath, path):
        return  # 'blender -b SCENE.blend -P cli.py -- render SCENE.blend': already loaded
    try:
        bpy.ops.wm.open_mainfile(filepath=path, load_ui=False)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise ZDepthError(f"{path}: cannot open this .blend ({detail})")


def run(args):
    from ..core.errors import UsageError, ZDepthError

    try:
        import bpy
    except ImportError:
        raise ZDepthError("rendering needs Blender: run this with the bpy module, or as "
                          "'blender -b SCENE.blend -P .../blender_zdepth/cli.py -- render ...'")
    if args.samples is not None and args.samples < 1:
        raise UsageError("--samples must be at least 1")
    if args.resolution_percentage is not None and not 1 <= args.resolution_percentage <= 10000:
        raise UsageError("--resolution-percentage must be between 1 and 10000")
    if (args.near is None) != (args.far is None):
        raise UsageError("--near and --far go together")
    if args.near is not None and not 0 < args.near < args.far:
        raise UsageError(f"need 0 < --near < --far, not {args.near:g} and {args.far:g}")
    if args.depth_layers is not None and not 1 <= args.depth_layers <= 8:
        raise UsageError(f"--depth-layers must be between 1 and 8, not {args.depth_layers}")
    if args.depth_layers == 1 and args.layer_clips:
        raise UsageError("--layer-clips needs more than one depth layer (--depth-layers 1 "
                         "renders no extra pass)")
    if args.layer_samples is not None and args.layer_samples < 0:
        raise UsageError(f"--layer-samples must be 0 (automatic) or more, not "
                         f"{args.layer_samples}")

    from ..blender import compat, ui
    from ..blender.render.export import check_renderable, render_with_depth
    from ..blender.render.peel import layer_mode, pass_samples
    from ..blender.scene.coverage import flat_depth_warning
    from ..blender.scene.options import LayerOptions, check_options, parse_clips
    from ..blender.scene.paths import check_output_folder

    clips = parse_clips(args.layer_clips) if args.layer_clips is not None else None
    from ..blender.scene.passes import engine_label

    _load(args.blend)
    registered_here = False
    if not hasattr(bpy.types.Scene, "zdepth"):
        ui.register_settings()  # so the file's own Z-Depth settings are read
        registered_here = True
    try:
        scene = bpy.context.scene
        if args.scene:
            scene = bpy.data.scenes.get(args.scene)
            if scene is None:
                raise UsageError(f"no scene {args.scene!r} in the file; it has: "
                                 f"{', '.join(s.name for s in bpy.data.scenes)}")
        if args.engine:
            scene.render.engine = {"cycles": "CYCLES", "workbench": "BLENDER_WORKBENCH"}.get(
                args.engine) or compat.eevee_engine_id()
        check_renderable(scene)
        layer_opts = LayerOptions.from_scene(scene, layers=args.depth_layers,
                                             samples=args.layer_samples, clips=clips,
                                             mode=getattr(args, "layer_mode", None))
        check_options(scene, layer_opts)
        frames = parse_frames(args.frames, scene.frame_start, scene.frame_end, scene.frame_step)
        out = os.path.abspath(args.out)
        if os.path.exists(out) and not os.path.isdir(out):
            raise ZDepthError(f"{out}: exists and is not a folder")
        check_output_folder(out)
        if args.samples is not None:
            if scene.render.engine == "CYCLES":
                scene.cycles.samples = args.samples
            elif scene.render.engine == "BLENDER_WORKBENCH":
                scene.display.render_aa = workbench_aa(args.samples)
            else:
                scene.eevee.taa_render_samples = args.samples
        if args.resolution_percentage is not None:
            scene.render.resolution_percentage = args.resolution_percentage
        options = {
            "encoding": args.encoding,
            "range_source": "MANUAL" if args.near is not None else
            (args.range_source.upper() if args.range_source else None),
            "near": args.near, "far": args.far,
            "bit_depth": "16" if args.half else None,
            "codec": args.codec.upper() if args.codec else None,
            "beauty": args.beauty.upper().replace("-", "_") if args.beauty else None,
            "name_pattern": args.name,
            "write_preview": True if args.preview else None,
        }
        r = scene.render
        scale = r.resolution_percentage / 100.0
        print(f"rendering {len(frames)} frame(s) of scene {scene.name!r} with "
              f"{engine_label(r.engine)} at "
              f"{int(r.resolution_x * scale)}x{int(r.resolution_y * scale)}", flush=True)
        mode = layer_mode(scene, layer_opts) if layer_opts.enabled else None
        if mode == "SLABS":
            where = "automatic boundaries" if not layer_opts.clips else \
                "boundaries at " + ", ".join(f"{c:g}" for c in layer_opts.clips)
            samples = pass_samples(scene, layer_opts, mode)
            samples = "the scene's anti-aliasing" if samples is None else f"{samples} samples"
            print(f"  with {layer_opts.layers} depth layers as slabs: {layer_opts.layers} slab "
                  f"render(s) per frame of {samples}, {where}", flush=True)
        elif layer_opts.enabled:
            where = "automatic clip distances" if not layer_opts.clips else \
                "clip at " + ", ".join(f"{c:g}" for c in layer_opts.clips)
            samples = pass_samples(scene, layer_opts)
            samples = "the scene's anti-aliasing" if samples is None else f"{samples} samples"
            print(f"  with {layer_opts.layers} depth layers: {layer_opts.layers - 1} extra "
                  f"pass(es) per frame of {samples}, {where}", flush=True)
        flat_warning = flat_depth_warning(scene) if mode != "SLABS" else None
        if flat_warning:
            import sys

            print(f"blender_zdepth: warning: {flat_warning}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        written = render_with_depth(
            scene, out, frames=frames, depth_layers=layer_opts.layers,
            layer_samples=layer_opts.samples, layer_clips=layer_opts.clips,
            layer_mode=layer_opts.mode, with_paths=True,
            **options)
        for paths in written:
            print(f"  {paths['depth']}")
            if paths.get("deep"):
                clips = ", ".join(f"{c:.3g}" for c in paths.get("layer_clips", ()))
                what = "slabs" if paths.get("layer_mode") == "slabs" else "clip distances"
                print(f"  {paths['deep']}  ({what} {clips})")
        deep = sum(1 for p in written if p.get("deep"))
        print(f"wrote {len(written)} depth EXR(s)" + (f" and {deep} deep EXR(s)" if deep else "")
              + f" in {time.perf_counter() - t0:.1f} s")
        _warn_camera_dof(written)
    finally:
        if registered_here:
            ui.unregister_settings()
    return 0
