"""``demo``: render the built-in procedural scene headless and show what the tool makes of it.

Steps (all through the same code paths a user reaches from the panel and the command line):

1. build the procedural demo scene (no downloaded assets) and render it with Cycles, with depth
   layers (``--layers``, default 3: two extra passes of few samples with the clip start moved
   past the near pillars, see :mod:`blender_zdepth.blender.render.peel`);
2. export the frame as our log-encoded 32-bit EXR (beauty in the same file) with a 16-bit depth
   preview and the deep EXR of its layers beside it, through the export-on-render path;
3. print the file's precision report;
4. refocus the frame after the render (from the deep file, which the refocus finds beside the
   flat one): a focus rack from the nearest pillar to the far one, plus the focal-plane
   diagnostic view; and the far focus once more from the flat file alone, for comparison;
5. write a labelled contact sheet (beauty, depth preview, refocused frames, diagnostic) and
   ``before_after.png`` (the far focus refocused from the flat file and from the layers).

The pictures of colour (beauty, refocused frames, their PNGs) are colour managed as Blender shows
the render: the scene's view transform (AgX), look, exposure and gamma recorded in the export's
header, through OpenColorIO and Blender's config (:mod:`blender_zdepth.core.colour`). The depth
preview is data (white near, black far) and the focal-plane view a colour code: both stay plain.
"""

import os
import time

NAME = "demo"
HELP = "render the built-in procedural demo scene, export its depth and refocus it"

#: Focus distances (metres) of the demo's focus rack: pillars stand at 3, 5, 8, 13, 25 and 60 m.
RACK = (3.0, 8.0, 25.0)

#: Depth layers of the demo's render (the beauty + two extra passes).
LAYERS = 3


def add_arguments(parser):
    parser.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    parser.add_argument("--resolution", default="480x270", help="WIDTHxHEIGHT (default 480x270)")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples (default 16)")
    parser.add_argument("--fstop", type=float, default=1.4,
                        help="f-number of the refocus (default 1.4, a shallow depth of field)")
    parser.add_argument("--layers", type=int, default=LAYERS,
                        help=f"depth layers of the render, 1-8 (default {LAYERS}; 1 = the flat "
                             f"render alone, no deep file and no comparison)")


def _resolution(text):
    from ..core.errors import UsageError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if w < 8 or h < 8:
            raise ValueError
    except ValueError:
        raise UsageError(f"--resolution must look like 480x270 (both at least 8), not {text!r}")
    return w, h


#: The files the demo writes under --out (and only those are ever removed or replaced).
DEMO_FILES = ["depth/demo_0001.exr", "depth/demo_0001_preview.png", "depth/demo_0001_deep.exr",
              "contact_sheet.png", "beauty.png", "before_after.png",
              "refocus/flat.0003.exr", "refocus/flat.0003.png"] + \
    [f"refocus/refocus.{i:04d}.{ext}" for i in (1, 2, 3) for ext in ("exr", "png")]


def _clear(folder, names):
    """Remove the demo's own earlier outputs (only those files: never a folder, whose other
    files may be the user's) so a rerun starts clean."""
    for name in names:
        path = os.path.join(folder, *name.split("/"))
        if os.path.isfile(path) or os.path.islink(path):
            os.remove(path)


def run(args):
    from ..core.errors import UsageError, ZDepthError

    try:
        import bpy
    except ImportError:
        raise ZDepthError("the demo renders with Blender: run it with the bpy module "
                          "('python3 build.py demo') or inside Blender")
    if args.samples < 1:
        raise UsageError(f"--samples must be at least 1, not {args.samples}")
    if not args.fstop > 0:
        raise UsageError(f"--fstop must be positive, not {args.fstop}")
    if not 1 <= args.layers <= 8:
        raise UsageError(f"--layers must be between 1 and 8, not {args.layers}")
    resolution = _resolution(args.resolution)

    import numpy as np

    from ..blender import scenes
    from ..blender.render.export import render_with_depth
    from ..core import batch, colour, display, exr, png, precision, refocus
    from ..core.dof import DofSettings, focal_plane_view
    from ..core.frame import load_frame
    from ..core.lens import Lens
    from ._demo_sheet import contact_sheet

    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ZDepthError(f"--out {out}: exists and is not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise ZDepthError(f"--out {out}: cannot create this folder ({exc.strerror})")
    _clear(out, DEMO_FILES)
    t0 = time.perf_counter()

    # 1-2. Render with Cycles and export depth through the export-on-render path.
    scene = scenes.demo_scene(resolution, "CYCLES", args.samples)
    depth_paths = render_with_depth(
        scene, os.path.join(out, "depth"), encoding="log", range_source="CAMERA",
        bit_depth="32", codec="ZIP", name_pattern="demo_####", write_preview=True,
        beauty="SAME_FILE", depth_layers=args.layers, layer_samples=0, layer_clips=(),
        with_paths=True)
    t_render = time.perf_counter() - t0
    depth_exr = depth_paths[0]["depth"]
    deep_exr = depth_paths[0]["deep"]
    frame = load_frame(depth_exr)
    layered = ""
    if deep_exr:
        from ..blender.render.peel import pass_samples
        from ..blender.scene.options import LayerOptions

        extra = pass_samples(scene, LayerOptions(args.layers))
        layered = f", {args.layers} depth layers ({args.layers - 1} extra of {extra} samples)"
    print(f"rendered and exported the demo frame ({resolution[0]}x{resolution[1]}, Cycles, "
          f"{args.samples} samples{layered}) in {t_render:.1f} s")
    print(f"  log-encoded 32-bit EXR (Z + beauty RGBA, camera in the header): {depth_exr}")
    if deep_exr:
        print(f"  deep EXR of the layers (R, G, B, A, Z, ZBack; flattens to the beauty): "
              f"{deep_exr}")
    preview_png = os.path.splitext(depth_exr)[0] + "_preview.png"
    if os.path.exists(preview_png):
        print(f"  16-bit depth preview (white near, black far): {preview_png}")

    # 3. What the file can hold.
    enc = frame.encoding
    report = precision.precision_report(enc, "32", focus=RACK[1])
    print(f"  encoding {enc.name} over {enc.near:g}-{enc.far:g} {enc.units}: "
          f"{report.text().splitlines()[0]}")

    # 4. Refocus after the render: a focus rack across the pillars, one frame per focus.
    cam = frame.camera
    base = Lens.from_camera(cam, fstop=args.fstop, focus_distance=RACK[0])
    lenses = {i + 1: base.with_focus(d) for i, d in enumerate(RACK)}
    settings = DofSettings(max_radius=48.0)
    t1 = time.perf_counter()
    result = refocus.refocus_sequence(
        {f: depth_exr for f in lenses}, os.path.join(out, "refocus", "refocus.####.exr"),
        lenses, settings=settings, png=True, overwrite=True,
        progress=lambda r, i, n: print("  " + batch.progress_line(r, i, n)))
    if not result.ok:
        raise ZDepthError(f"the demo refocus failed: {result.summary()}")
    print(f"refocused {len(lenses)} frames (f/{args.fstop:g}, focus {', '.join(f'{d:g}' for d in RACK)} m) "
          f"in {time.perf_counter() - t1:.1f} s: {os.path.join(out, 'refocus')}")
    flat_rgba = None
    if deep_exr:
        # the far focus again from the flat file alone: what the refocus makes without layers
        compare = max(lenses)
        flat = refocus.refocus_sequence(
            {compare: depth_exr}, os.path.join(out, "refocus", "flat.####.exr"),
            {compare: lenses[compare]}, settings=settings, png=True, overwrite=True, deep=False)
        if not flat.ok:
            raise ZDepthError(f"the demo refocus failed: {flat.summary()}")
        image = exr.read_exr(os.path.join(out, "refocus", f"flat.{compare:04d}.exr"))
        flat_rgba = np.dstack([image.channels[c] for c in "RGBA"])

    # 5. Contact sheet, the colour as Blender shows the render (the header's settings).
    shown = colour.complete(colour.resolve(None, frame.header))
    tiles = [display.to_display(frame.rgba, shown),
             np.repeat(_preview(frame)[..., None], 3, axis=2)]
    labels = ["beauty (pinhole render)", "depth: white near, black far"]
    for f, lens in lenses.items():
        image = exr.read_exr(os.path.join(out, "refocus", f"refocus.{f:04d}.exr"))
        tiles.append(display.to_display(np.dstack([image.channels[c] for c in "RGBA"]), shown))
        labels.append(f"refocused at {lens.focus_distance:g} m, f/{lens.fstop:g}")
    diag_lens = lenses[2]
    # a colour code (red near, green in focus, blue far): plain sRGB, no view transform
    tiles.append(display.to_display(focal_plane_view(frame.rgba, frame.depth, diag_lens,
                                                     settings)))
    labels.append(f"focal plane at {diag_lens.focus_distance:g} m: near/in focus/far")
    sheet = contact_sheet(tiles, labels, columns=2, label_scale=max(
        1, resolution[0] // 240))
    sheet_path = os.path.join(out, "contact_sheet.png")
    png.write_png(sheet_path, sheet, bits=8, overwrite=True)
    png.write_png(os.path.join(out, "beauty.png"), tiles[0], bits=8, overwrite=True)
    print(f"contact sheet: {sheet_path}")
    if flat_rgba is not None:
        lens = lenses[max(lenses)]
        flat_tile, layered_tile = (display.to_display(flat_rgba, shown),
                                   tiles[2 + len(lenses) - 1])
        zoom = _zoom_window(flat_tile, layered_tile)
        pair = contact_sheet(
            [flat_tile, layered_tile, zoom(flat_tile), zoom(layered_tile)],
            [f"flat render, {lens.focus_distance:g} m f/{lens.fstop:g}",
             f"{args.layers} depth layers, same focus", "x2 where they differ most",
             "x2 where they differ most"], columns=2,
            label_scale=max(1, resolution[0] // 240))
        pair_path = os.path.join(out, "before_after.png")
        png.write_png(pair_path, pair, bits=8, overwrite=True)
        print(f"refocus from the flat render vs from the depth layers: {pair_path}")
    print(f"demo finished in {time.perf_counter() - t0:.1f} s; everything is in {out}")
    return 0


def _zoom_window(a, b):
    """A function cropping an image to the half-size window centred on where the display
    images ``a`` and ``b`` differ most (the frame's centre when they do not), enlarged 2x
    (nearest pixel) back to the frame's size."""
    import numpy as np

    h, w = a.shape[:2]
    diff = np.abs(a[..., :3] - b[..., :3]).max(axis=2)
    ch, cw = max(1, h // 2), max(1, w // 2)
    if diff.max() > 0:
        # the window with the largest summed difference, from a summed-area table
        sat = np.zeros((h + 1, w + 1))
        sat[1:, 1:] = diff.cumsum(0).cumsum(1)
        sums = sat[ch:, cw:] - sat[:-ch, cw:] - sat[ch:, :-cw] + sat[:-ch, :-cw]
        y0, x0 = np.unravel_index(int(np.argmax(sums)), sums.shape)
    else:
        y0, x0 = (h - ch) // 2, (w - cw) // 2

    def crop(image):
        part = image[y0:y0 + ch, x0:x0 + cw]
        big = np.repeat(np.repeat(part, 2, axis=0), 2, axis=1)
        out = np.zeros_like(image)
        out[:big.shape[0], :big.shape[1]] = big[:h, :w]
        return out

    return crop


def _preview(frame):
    from ..core.encodings import preview

    return preview(frame.depth, frame.encoding.near, frame.encoding.far)
