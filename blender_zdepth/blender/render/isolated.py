"""Depth-layer passes rendered in a child process: export on render where its handler may not
render them itself (:func:`..compat.renders_from_render_handlers`: Blender 5.3 crashes at the
next frame of an animation render when ``render_post`` starts a render).

The handler has written the frame's flat files and holds its beauty and depth. Here it works
out the mode (peel or slabs) and the clip distances or slab boundaries (from that depth and the
camera's focus, as the passes in the process would), saves a copy of the open .blend in a
temporary folder (``save_as_mainfile(copy=True)``: safe from ``render_post``, and the user's
file, its name and its dirty state do not change),
and starts a second Blender on it that renders the passes of that frame and writes each one as a
plain EXR (beauty RGBA + linear depth Z). The handler reads them back and writes the deep file
itself, with the frame's own camera header: the deep file is the one the passes in the process
give. The child is

* the Blender executable, ``blender -b --factory-startup copy.blend -P isolated_main.py -- args``
  (factory settings: no add-on of the user, ours included, registers render handlers there), or
* for the bpy module (``bpy.app.binary_path`` is empty, ``sys.executable`` is a Python),
  ``python isolated_main.py -- args``, which opens the copy itself.

Either way the child imports this package from the folder it is in (also when it is installed
as an extension, ``bl_ext.<repository>.blender_zdepth``) with the parent's ``sys.path``
(bundled wheels), and registers nothing: no handler of ours runs there.

A failure costs that frame's deep file only: the child's error, a crash (the signal named) or
a cancel (Ctrl+C reaches the child with the parent; in the bpy module the parent's
KeyboardInterrupt kills it) is raised here as :class:`ZDepthError` or
:class:`.peel.PassCancelled`, with the end of the child's output printed. The temporary folder
(the .blend copy, the passes, the child's log) is removed in every case.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import bpy
import numpy as np

from ...core import exr as core_exr
from ...core.errors import ZDepthError
from ..scene.options import LayerOptions
from .export import DIRECT_KEY, shared_flags
from .peel import Layer, PassCancelled, clip_distances, layer_mode, render_passes
from .result import read_render_result

#: The child's exit status for a cancelled pass (Esc / Ctrl+C inside the child).
CANCELLED_STATUS = 3

#: Lines of the child's output printed when it fails.
LOG_LINES = 12

#: The script the child runs (it bootstraps the import of this package, then :func:`child_main`).
ENTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "isolated_main.py")

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _is_blender_executable(path):
    name = os.path.basename(path or "").lower()
    return bool(path) and os.path.isfile(path) and name.startswith("blender") \
        and "python" not in name


def child_command(args_path, blend):
    """The command line of the child for the arguments file ``args_path`` and the .blend copy
    ``blend``: Blender's executable when this is Blender, else this Python (the bpy module)."""
    binary = bpy.app.binary_path
    if _is_blender_executable(binary):
        return [binary, "-b", "--factory-startup", "--python-exit-code", "1", blend,
                "-P", ENTRY, "--", args_path]
    return [sys.executable, ENTRY, "--", args_path]


def _save_copy(path):
    """Save the open .blend as it is now (this frame's state) to ``path``, leaving the open
    file's name and dirty state as they are."""
    if "CANCELLED" in bpy.ops.wm.save_as_mainfile(filepath=path, copy=True, compress=False,
                                                  check_existing=False):
        raise ZDepthError("could not save a copy of the .blend for the depth-layer passes")


def _signal_name(status):
    try:
        return signal.Signals(-status).name
    except ValueError:
        return f"signal {-status}"


def _tail(log_path):
    try:
        with open(log_path, errors="replace") as f:
            lines = [line.rstrip() for line in f if line.strip()]
    except OSError:
        return []
    return lines[-LOG_LINES:]


def _wait(proc):
    """Wait for ``proc``; on any interruption (KeyboardInterrupt) kill it first."""
    try:
        while True:
            try:
                return proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def render_passes_isolated(scene, opts, rendered):
    """The extra passes of ``rendered``'s frame (``scene`` at that frame, main thread), rendered
    by a child process; returns their :class:`.peel.Layer` list (near to far), as
    :func:`.export.render_layers` does in this process. Prints the time the child took."""
    mode = layer_mode(scene, opts)
    clips = clip_distances(scene, opts, rendered.loaded.depth, rendered.info.focus_distance,
                           mode)
    work = tempfile.mkdtemp(prefix="zdepth_passes_")
    try:
        blend = os.path.join(work, "frame.blend")
        start = time.perf_counter()
        _save_copy(blend)
        args = {"blend": blend, "scene": scene.name, "frame": int(rendered.frame),
                "layers": int(opts.layers), "samples": int(opts.samples),
                "clips": [float(c) for c in clips], "mode": mode,
                "shape": list(rendered.loaded.depth.shape), "out": work,
                "package_dir": _PACKAGE_DIR, "sys_path": list(sys.path)}
        args_path = os.path.join(work, "args.json")
        with open(args_path, "w") as f:
            json.dump(args, f)
        log_path = os.path.join(work, "child.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(child_command(args_path, blend), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, cwd=work)
            try:
                status = _wait(proc)
            except KeyboardInterrupt:
                raise PassCancelled("cancelled: the depth-layer process was stopped")
        if status != 0:
            raise _failure(status, work, log_path)
        layers = _read_passes(work, clips, rendered.loaded.depth.shape, mode)
        print(f"blender_zdepth: frame {rendered.frame}: {len(layers)} depth-layer pass(es) "
              f"rendered in a separate process in {time.perf_counter() - start:.1f} s")
        return layers
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _failure(status, work, log_path):
    tail = _tail(log_path)
    for line in tail:
        print(f"blender_zdepth:   | {line}")
    if status == CANCELLED_STATUS:
        return PassCancelled("cancelled in the depth-layer process")
    if status < 0:
        return ZDepthError(f"the depth-layer process crashed ({_signal_name(status)})")
    try:
        with open(os.path.join(work, "error.txt")) as f:
            message = f.read().strip()
    except OSError:
        message = tail[-1] if tail else "no output"
    return ZDepthError(f"the depth-layer process failed (exit status {status}): {message}")


def _read_passes(work, clips, shape, mode="PEEL"):
    with open(os.path.join(work, "passes.json")) as f:
        done = json.load(f)
    layers = []
    ends = done.get("ends") or [None] * len(done["clips"])
    for clip, end, name in zip(done["clips"], ends, done["files"]):
        channels = core_exr.read_exr(os.path.join(work, name)).channels
        rgba = np.stack([channels[c] for c in "RGBA"], axis=-1)
        if rgba.shape[:2] != tuple(shape):
            raise ZDepthError(f"the depth layer at {clip:g} came back at {rgba.shape[1]}x"
                              f"{rgba.shape[0]}, not at the beauty's {shape[1]}x{shape[0]}")
        layers.append(Layer(float(clip), rgba, channels["Z"],
                            None if end is None else float(end)))
    wanted = len(clips) + 1 if mode == "SLABS" else len(clips)
    if len(layers) != wanted:
        raise ZDepthError(f"the depth-layer process rendered {len(layers)} of {wanted} "
                          f"passes")
    return layers


# -- in the child ---------------------------------------------------------------------------------

def child_main(args):
    """Render the passes that ``args`` (the parent's :func:`render_passes_isolated`) asks for
    and write them to ``args["out"]``; returns the exit status (0, or :data:`CANCELLED_STATUS`;
    errors propagate to :mod:`.isolated_main`, which writes them to ``error.txt``)."""
    blend = args["blend"]
    if os.path.realpath(bpy.data.filepath or "") != os.path.realpath(blend):
        bpy.ops.wm.open_mainfile(filepath=blend, load_ui=False)
    scene = bpy.data.scenes.get(args["scene"])
    if scene is None:
        raise ZDepthError(f"the scene {args['scene']!r} is not in the saved copy")
    shared_flags()[DIRECT_KEY] = True  # no export of ours here, even if a handler were there
    scene.frame_set(int(args["frame"]))
    opts = LayerOptions(int(args["layers"]), int(args["samples"]), tuple(args["clips"]),
                        args.get("mode", "PEEL"))
    out = args["out"]

    def read_pass(pass_scene):
        result = read_render_result(pass_scene, folder=out)[0]
        return result.rgba, result.depth

    try:
        layers = render_passes(scene, opts, np.zeros(args["shape"], np.float32), None,
                               read_pass, clips=list(args["clips"]))
    except PassCancelled as exc:
        print(f"blender_zdepth: {exc}")
        return CANCELLED_STATUS
    files = []
    for i, layer in enumerate(layers):
        name = f"pass_{i}.exr"
        core_exr.write_exr(os.path.join(out, name), {"RGBA": layer.rgba, "Z": layer.depth},
                           codec="none", overwrite=True)
        files.append(name)
    with open(os.path.join(out, "passes.json"), "w") as f:
        json.dump({"clips": [layer.clip for layer in layers],
                   "ends": [layer.end for layer in layers], "files": files}, f)
    return 0
