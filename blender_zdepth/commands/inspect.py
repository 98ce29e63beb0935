"""``inspect``: what an EXR holds -- channels, depth encoding and range, camera, precision."""

NAME = "inspect"
HELP = "show an EXR's channels, depth encoding, range, camera and precision report"


def add_arguments(parser):
    parser.add_argument("input", metavar="IN.exr", help="an EXR file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--focus", type=float, metavar="M", help="focus distance for the "
                        "precision report (default: the camera's, when recorded)")
    parser.add_argument("--all", action="store_true", help="also compare every encoding and "
                        "bit depth over the file's range")
    from .encode import add_source_arguments

    add_source_arguments(parser)


def _num(x):
    import math

    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else ("inf" if x > 0 else ("-inf" if x < 0 else "nan"))


def _part_info(part):
    import numpy as np

    info = {"name": part.name, "view": part.view, "type": part.type,
            "data_window": part.data_window, "display_window": part.display_window,
            "channels": list(part.channel_names)}
    if part.deep and part.sample_counts is not None:
        c = part.sample_counts
        info["samples"] = {"total": int(c.sum()), "min": int(c.min()),
                           "median": float(np.median(c)), "max": int(c.max())}
    return info


def describe(path, focus=None, layer=None, background="auto", compare=False, view=None):
    """Everything ``inspect`` reports, as a JSON-ready dict."""
    import os

    import numpy as np

    from ..core import encodings, exr, precision
    from ..core.frame import load_frame

    img = exr.read_exr(path, view=view, sample_counts=True)
    info = {
        "path": os.path.abspath(path),
        "size": None,
        "data_window": img.data_window,
        "display_window": img.display_window,
        "parts": [_part_info(p) for p in img.parts],
        "views": list(img.views),
        "view": img.view,
        "channels": {n: ("half" if n in img.half else "float") for n in sorted(img.channels)},
    }
    comp = img.header.get("compression")
    info["compression"] = getattr(comp, "name", str(comp)) if comp is not None else None
    info.update(_render_notes(path, img))
    if layer is None and img.parts and all(p.deep for p in img.parts):
        if exr.is_deep(path):  # deep samples only: what they hold, besides the parts
            info.update(describe_deep(path, view))
            return info
    try:
        frame = load_frame(path, background=background, layer=layer, need_depth=False,
                               view=view)
    except exr.DeepFileError as exc:
        frame, info["deep_note"] = None, str(exc)
    if frame is None or frame.depth is None:  # a refocused frame (RGBA only), a deep file
        (x0, y0), (x1, y1) = img.data_window
        info.update(size=[int(x1) - int(x0) + 1, int(y1) - int(y0) + 1], depth_channel=None,
                    beauty_channels=frame.beauty_channels if frame else None, depth=None,
                    encoding=None, camera=None, precision=None, comparison=[])
        return info
    info["data_window"], info["display_window"] = frame.data_window, frame.display_window
    h, w = frame.depth.shape
    info["size"] = [w, h]
    info["depth_channel"] = frame.depth_channel
    info["beauty_channels"] = frame.beauty_channels
    enc = frame.encoding
    d = frame.depth
    surface = np.isfinite(d)
    stats = {"background_pixels": int((~surface).sum()), "pixels": int(d.size)}
    if surface.any():
        stats.update(min=float(d[surface].min()), max=float(d[surface].max()),
                     median=float(np.median(d[surface])))
    info["depth"] = stats
    if enc is not None:
        info["encoding"] = {"name": enc.name, "near": enc.near, "far": enc.far,
                            "units": enc.units, "planar": enc.planar,
                            "background_threshold": _num(enc.background),
                            "background_value": _num(enc.background_value),
                            "formula": enc.formula,
                            "background": frame.header.get("zdepthBackground")}
        report_enc = enc
    else:
        info["encoding"] = None
        bg = frame.background_info
        info["background_rule"] = bg.rule if bg is not None else None
        info["background"] = bg.to_dict() if bg is not None else None
        info["background_line"] = bg.line() if bg is not None else None
        report_enc = None
        if (surface & (d > 0)).any():  # zero/negative depth is no range to report on
            near, far = encodings.range_from_data(d)
            report_enc = encodings.DepthEncoding("linear", near, far)
    cam = frame.camera
    info["camera"] = None
    if cam is not None:
        info["camera"] = {k: (v.tolist() if hasattr(v, "tolist") else v)
                          for k, v in vars(cam).items()}
    if focus is None and cam is not None:
        focus = cam.focus_distance
    info["precision"] = None
    info["comparison"] = []
    if report_enc is not None:
        bits = "16-half" if frame.half else "32"
        rep = precision.precision_report(report_enc, bits, focus=focus)
        info["precision"] = rep.to_dict()
        info["precision_text"] = rep.text()
        if compare:
            info["comparison"] = [r.to_dict() for r in precision.precision_table(
                report_enc.near, report_enc.far, focus, report_enc.units)]
    return info


def _render_notes(path, img):
    """What the file says that a user must know before refocusing it: whether its render had
    the camera's own depth of field (``camera_dof``: True / False / None when not recorded),
    and the attributes the OpenEXR Python bindings cannot read (left out of the header)."""
    from ..core import exr
    from ..core.refocus import header_had_dof

    recorded = [header_had_dof(p.header) for p in img.parts]
    known = [r for r in recorded if r is not None]
    return {"camera_dof": any(known) if known else None,
            "colour": _recorded_colour(img.parts),
            "unread_attributes": [{"part": part, "name": name, "type": typ}
                                  for part, name, typ in exr.unreadable_attributes(path)]}


def _recorded_colour(parts):
    """The colour management the render recorded (display, view transform, look, exposure,
    gamma, OpenColorIO config, working space: what ``dof --png`` uses), from the first part
    that records any; None when no part does (a plain Blender render)."""
    import dataclasses

    from ..core.colour import ColourSettings

    for part in parts:
        settings = ColourSettings.from_header(part.header)
        given = {k: v for k, v in dataclasses.asdict(settings).items() if v is not None}
        if given:
            return given
    return None


def _print_notes(info):
    from ..core.refocus import CAMERA_DOF_WARNING

    if info.get("camera_dof"):
        print(f"  warning: {CAMERA_DOF_WARNING}")
    colour = info.get("colour")
    if colour:
        from ..core.colour import ColourSettings

        said = ColourSettings(**colour).describe()
        if colour.get("working_space"):
            said += f"{', ' if said else ''}working space {colour['working_space']}"
        print(f"  colour management at render: {said or 'the config only'} "
              f"(dof --png shows the frame so)")
        if colour.get("config"):
            print(f"    OpenColorIO config: {colour['config']}")
    else:
        print("  colour management: not recorded (dof --png uses Blender's defaults: the sRGB "
              "display, the AgX view; --view-transform and --look change it)")
    unread = info.get("unread_attributes") or []
    if unread:
        names = ", ".join(f"{a['name']} ({a['type']})" for a in unread)
        print(f"  note: attributes the OpenEXR Python bindings cannot read, left out: {names} "
              f"(the file is valid; its pixels are read)")


def run(args):
    import json

    from .encode import background_arg

    info = describe(args.input, args.focus, args.layer, background_arg(args.background),
                    args.all, args.view)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    if info.get("deep"):
        print(info["path"])
        if info["views"]:
            print(f"  views: {', '.join(info['views'])} (default {info['views'][0]}); "
                  f"showing view {info['view']}")
        _print_parts(info)
        _print_notes(info)
        return _print_deep(info)
    w, h = info["size"]
    print(f"{info['path']}")
    print(f"  size {w}x{h}, data window {info['data_window']}, "
          f"display window {info['display_window']}, compression {info['compression']}")
    if info["views"]:
        print(f"  views: {', '.join(info['views'])} (default {info['views'][0]}); "
              f"showing view {info['view']}")
    _print_parts(info)
    _print_notes(info)
    chans = ", ".join(f"{n} ({t})" for n, t in info["channels"].items())
    print(f"  channels{' of view ' + info['view'] if info['view'] else ''}: {chans or 'none'}")
    if info.get("deep_note"):
        print("  flat image: none (deep samples only: encode and decode need a flat image; "
              "dof reads deep files)")
        return 0
    beauty = info["beauty_channels"]
    print(f"  beauty: {', '.join(c for c in beauty if c) if beauty else 'none'}")
    if info["depth_channel"] is None:
        print("  depth: none (no Z pass in this file: nothing to decode or refocus)")
        return 0
    print(f"  depth: {info['depth_channel']}")
    enc = info["encoding"]
    if enc:
        print(f"  encoding: {enc['name']}, range {enc['near']:g}-{enc['far']:g} {enc['units']}, "
              f"{'planar' if enc['planar'] else 'radial'} depth")
        print(f"    decode: {enc['formula']}")
        print(f"    background: {enc['background']}")
    else:
        print(f"  encoding: none (plain render depth, linear planar); background rule: "
              f"{info['background_rule']}")
        if info.get("background_line"):
            print(f"    {info['background_line']}")
        bg = info.get("background") or {}
        if bg.get("covered_nonpositive"):
            print(f"    warning: {bg['covered_nonpositive']} covered pixel(s) have zero or "
                  f"negative depth: camera depth is always positive; encode, decode and dof "
                  f"refuse this file")
    st = info["depth"]
    if "min" in st:
        print(f"  depth values: {st['min']:.6g} to {st['max']:.6g} (median {st['median']:.6g}), "
              f"{st['background_pixels']} background pixel(s) of {st['pixels']}")
        if st["min"] <= 0 and not (info.get("background") or {}).get("covered_nonpositive"):
            print("    warning: zero or negative depth: camera depth is always positive; is "
                  "this really a depth pass?")
    else:
        print(f"  depth values: all {st['pixels']} pixels are background")
    cam = info["camera"]
    if cam:
        parts = [f"{cam['focal_length_mm']:g} mm lens",
                 f"sensor {cam['sensor_width_mm']:g}x{cam['sensor_height_mm']:g} mm "
                 f"({cam['sensor_fit']})"]
        if cam.get("fstop"):
            parts.append(f"f/{cam['fstop']:g}")
        if cam.get("focus_distance"):
            parts.append(f"focus {cam['focus_distance']:g}")
        if cam.get("clip_start") is not None and cam.get("clip_end") is not None:
            parts.append(f"clip {cam['clip_start']:g}-{cam['clip_end']:g}")
        if cam.get("frame") is not None:
            parts.append(f"frame {cam['frame']}")
        if cam.get("world_to_camera") is not None:
            parts.append("worldToCamera")
        print(f"  camera: {', '.join(parts)}")
    else:
        print("  camera: not recorded (dof needs --focal-length, --fstop and a focus, and "
              "assumes Blender's default 36x24 mm sensor unless --sensor-width / "
              "--sensor-height say otherwise)")
    if info.get("precision_text"):
        print("  precision:")
        for line in info["precision_text"].splitlines():
            print(f"    {line}")
    if info["comparison"]:
        print("  other encodings and bit depths over this range (worst rounding error):")
        from ..core.precision import format_relative

        for r in info["comparison"]:
            flag = ("  banding will show" if any("banding will show" in w for w in r["warnings"])
                    else "  fine banding may show" if any("banding may show" in w
                                                           for w in r["warnings"]) else "")
            print(f"    {r['encoding']:<10} {r['label']:<22} "
                  f"{format_relative(r['worst_relative_error']):>10}{flag}")
    return 0


def describe_deep(path, view=None):
    """What ``inspect`` reports about a deep OpenEXR: size, channels, samples per pixel (a
    histogram), depth range, layers, camera."""
    import os

    import numpy as np

    from ..core import deep, exr
    from ..core.camera import CameraInfo

    image = exr.read_deep(path, view=view)
    h, w = image.shape
    counts = image.counts.ravel()
    z = image.channels["Z"]
    surface = z[np.isfinite(z) & (z < deep.BACKGROUND_DEPTH)]
    edges = [0, 1, 2, 3, 5, 9, 17, 33, 65]
    histogram = {}
    for lo, hi in zip(edges, edges[1:] + [None]):
        n = int(np.count_nonzero((counts >= lo) & ((counts < hi) if hi else True)))
        label = str(lo) if hi == lo + 1 else (f"{lo}-{hi - 1}" if hi else f"{lo}+")
        histogram[label] = n
    comp = image.header.get("compression")
    cam = CameraInfo.from_header(image.header)
    return {
        "path": os.path.abspath(path), "deep": True, "size": [w, h],
        "type": str(image.header.get("type", "")).rsplit(".", 1)[-1],
        "compression": getattr(comp, "name", str(comp)) if comp is not None else None,
        "channels": {n: ("half" if n in image.half else "float") for n in deep.DEEP_CHANNELS},
        "samples": image.total, "pixels_with_samples": int(np.count_nonzero(counts)),
        "max_samples": int(counts.max()) if counts.size else 0,
        "mean_samples": float(counts.mean()) if counts.size else 0.0,
        "samples_per_pixel": histogram,
        "depth": ({"min": float(surface.min()), "max": float(surface.max())}
                  if surface.size else None),
        "depth_layers": image.header.get(deep.LAYERS_KEY),
        "layer_mode": _text(image.header.get(deep.MODE_KEY)) or (
            "peel" if image.header.get(deep.LAYERS_KEY) else None),
        "slab_bounds": _bounds(image.header.get(deep.SLAB_BOUNDS_KEY)),
        "resorted_pixels": image.resorted, "tidied_pixels": image.tidied,
        "camera": ({k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in vars(cam).items()}
                   if cam is not None else None),
        "summary": deep.describe(image),
    }


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _bounds(value):
    """A slab file's boundaries (``zdepthSlabBounds``, space separated) as numbers; None when
    absent or unreadable."""
    try:
        return [float(v) for v in str(_text(value)).split()] if value is not None else None
    except ValueError:
        return None


def _print_parts(info):
    """One line per part (name, type, view, windows, channels; deep sample counts)."""
    for part in info["parts"]:
        (x0, y0), (x1, y1) = part["data_window"]
        (dx0, dy0), (dx1, dy1) = part["display_window"] or part["data_window"]
        name = part["name"] or "(unnamed)"
        view = f", view {part['view']}" if part["view"] else ""
        print(f"  part {name}: {part['type']}{view}, data window ({x0},{y0})-({x1},{y1}) "
              f"{x1 - x0 + 1}x{y1 - y0 + 1}, display window ({dx0},{dy0})-({dx1},{dy1}) "
              f"{dx1 - dx0 + 1}x{dy1 - dy0 + 1}; channels {', '.join(part['channels'])}")
        if "samples" in part:
            st = part["samples"]
            print(f"    deep samples per pixel: min {st['min']}, median {st['median']:g}, "
                  f"max {st['max']} ({st['total']} in all)")


def _print_deep(info):
    w, h = info["size"]
    print(f"  deep {info['type']}, size {w}x{h}, compression {info['compression']}")
    print(f"  channels: {', '.join(f'{n} ({t})' for n, t in info['channels'].items())}")
    print(f"  samples: {info['samples']} in {info['pixels_with_samples']} of {w * h} pixels, "
          f"{info['mean_samples']:.2f} per pixel on average, at most {info['max_samples']}")
    print("  samples per pixel: " + ", ".join(f"{k}: {v}" for k, v in
                                             info["samples_per_pixel"].items() if v))
    if info["depth"]:
        print(f"  depth (Z, linear): {info['depth']['min']:.6g} to {info['depth']['max']:.6g}")
    if info["depth_layers"] and info.get("layer_mode") == "slabs":
        bounds = info.get("slab_bounds")
        print(f"  depth layers: {info['depth_layers']} coverage slabs (partial coverage "
              f"kept: motion blur, transparency, soft edges)"
              + (f", boundaries {' '.join(f'{b:g}' for b in bounds)}" if bounds else ""))
    elif info["depth_layers"]:
        print(f"  depth layers: {info['depth_layers']} (the beauty and "
              f"{int(info['depth_layers']) - 1} peeled pass(es))")
    if info["resorted_pixels"] or info["tidied_pixels"]:
        print(f"  note: {info['resorted_pixels']} pixel(s) had unsorted samples, "
              f"{info['tidied_pixels']} overlapping volume samples (fixed when read)")
    cam = info["camera"]
    if cam:
        print(f"  camera: {cam.get('focal_length_mm')} mm lens, f/{cam.get('fstop')}, "
              f"focus {cam.get('focus_distance')}")
    else:
        print("  camera: not recorded")
    return 0
