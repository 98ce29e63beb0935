"""Blender's compositor Defocus node as a function over numpy arrays (the reference to beat).

Used by ``dof_quality.py`` and ``bench_dof_speed.py``; runs inside the bpy module (5.0, and 4.5
LTS through the 4.x compositor API) and also works as a script::

    .venv/bin/python benchmarks/_blender_defocus.py IN.exr OUT.exr --fstop 2 \
        --focus-distance 4 --focal-length 50 --sensor-width 36 --blur-max 32

How it runs, headless:

* ``bpy.ops.wm.read_factory_settings(use_empty=True)``: an empty file; the scene gets a camera
  with the lens (focal length, sensor size and fit, ``dof.focus_distance``); nothing else.
* The RGBA (premultiplied, scene-linear) and the depth go into two generated float images (the
  colour space is set before the pixels are filled; the depth image is Non-Color, depth in R, G
  and B, non-finite depth written as Cycles' 1e10 background).
* Compositor: Image -> Defocus(Image, Z) -> output. 5.0: a ``CompositorNodeTree`` assigned to
  ``scene.compositing_node_group`` (5.3: the active compositor effect's node group,
  ``compat.set_compositor_tree``) ending in a Group Output; 4.x: ``scene.use_nodes`` +
  ``scene.node_tree`` ending in a Composite node. Defocus: ``use_zbuffer=True`` (the Z input is
  planar depth, as Blender's Depth pass), ``f_stop``, ``blur_max``, ``scene`` = this scene (the
  node takes the scene camera's focal length, sensor and focus distance), ``bokeh='CIRCLE'``.
* ``bpy.ops.render.render(write_still=True)`` to a 32-bit single-layer EXR, read back with
  OpenEXR. No Render Layers node is in the tree, and Blender then skips the 3D render: a render of
  an identical tree without the Defocus node (the *baseline*: image in, same EXR out) takes
  hundredths of a second at 1080p.
* Timing: wall time of ``render.render`` with the Defocus node minus the median wall time of the
  baseline tree (compositor set-up, EXR write), so the figure is the Defocus node's own cost.
  Blender's compositor uses all CPU threads (render threads: auto).

What the node does (read from Blender's source, 4.2-5.0 CPU compositor; matters when judging it):

* CoC radius from depth with the textbook thin lens (Potmesil & Chakravarty eq. 8):
  ``c = f^2 |D - S| / (N D (S - f))`` on the sensor, times pixels per metre of the fitted sensor
  axis; clamped to ``blur_max``; then eroded so in-focus pixels keep their edges.
* A gather: a pixel takes a neighbour only when the offset lies within *both* radii (its own and
  the neighbour's), so a blurred foreground never spreads over a sharp pixel (hard edges).
* The search window is ``min(blur_max, CoC radius at infinity)``: the node assumes far defocus,
  so foreground blur larger than the far limit is cut to it whatever ``blur_max`` says.
"""

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time

import numpy as np

BACKGROUND_DEPTH = 1e10


@contextlib.contextmanager
def quiet_stdout():
    """Send what Blender prints on stdout (``Saved: ...``, ``Fra:...``) to /dev/null meanwhile,
    so the benchmarks' tables stay readable."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _bpy():
    import bpy

    return bpy


def _is_5(bpy):
    return tuple(bpy.app.version) >= (5, 0, 0)


def _new_image(bpy, name, pixels, colorspace):
    """A generated float image holding ``pixels`` (HxWx4, top row first)."""
    h, w = pixels.shape[:2]
    img = bpy.data.images.new(name, w, h, alpha=True, float_buffer=True)
    # Set the colour space first: changing it after filling the pixels regenerates the buffer.
    img.colorspace_settings.name = colorspace
    img.pixels.foreach_set(np.ascontiguousarray(pixels[::-1], dtype=np.float32).ravel())
    return img


class DefocusNode:
    """One Blender file set up to run the Defocus node on one frame, repeatedly.

    ``rgba``: float32 HxWx4 premultiplied scene-linear (HxWx3 gets alpha 1); ``depth``: float32
    HxW planar depth in metres (+inf / >= 1e9 = background). Lens values in millimetres and
    metres as Blender's camera has them. Creating it resets bpy to an empty file.
    """

    def __init__(self, rgba, depth, *, focal_length_mm, fstop, focus_distance, blur_max,
                 sensor_width_mm=36.0, sensor_height_mm=24.0, sensor_fit="AUTO",
                 bokeh="CIRCLE", angle_deg=0.0, tmpdir=None):
        bpy = _bpy()
        rgba = np.asarray(rgba, dtype=np.float32)
        if rgba.ndim != 3 or rgba.shape[2] not in (3, 4):
            raise ValueError(f"rgba must be HxWx3 or HxWx4, got {rgba.shape}")
        if rgba.shape[2] == 3:
            rgba = np.concatenate([rgba, np.ones_like(rgba[..., :1])], axis=2)
        depth = np.asarray(depth, dtype=np.float32)
        if depth.shape != rgba.shape[:2]:
            raise ValueError(f"depth {depth.shape} does not match rgba {rgba.shape[:2]}")
        depth = np.where(np.isfinite(depth) & (depth < 1e9), depth, BACKGROUND_DEPTH)
        self.height, self.width = depth.shape
        self.bpy = bpy
        self._own_tmp = tmpdir is None
        self.tmpdir = tmpdir or tempfile.mkdtemp(prefix="zdepth-defocus-")

        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        self.scene = scene
        scene.render.resolution_x, scene.render.resolution_y = self.width, self.height
        scene.render.resolution_percentage = 100
        scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
        scene.render.use_compositing = True
        scene.render.use_sequencer = False
        settings = scene.render.image_settings
        if hasattr(settings, "media_type"):
            settings.media_type = "IMAGE"
        settings.file_format = "OPEN_EXR"
        settings.color_mode = "RGBA"
        settings.color_depth = "32"
        settings.exr_codec = "NONE"

        cam_data = bpy.data.cameras.new("Camera")
        cam_data.lens = float(focal_length_mm)
        cam_data.sensor_width = float(sensor_width_mm)
        cam_data.sensor_height = float(sensor_height_mm)
        cam_data.sensor_fit = sensor_fit
        cam_data.dof.use_dof = True
        cam_data.dof.focus_distance = float(focus_distance)
        cam_data.dof.aperture_fstop = float(fstop)
        cam = bpy.data.objects.new("Camera", cam_data)
        scene.collection.objects.link(cam)
        scene.camera = cam

        self.image = _new_image(bpy, "zdepth_rgba", rgba, "Linear Rec.709")
        z4 = np.repeat(depth[..., None], 4, axis=2)
        z4[..., 3] = 1.0
        self.zimage = _new_image(bpy, "zdepth_z", z4, "Non-Color")

        self.tree, out_socket = self._tree(bpy, scene)
        nodes, links = self.tree.nodes, self.tree.links
        n_img = nodes.new("CompositorNodeImage")
        n_img.image = self.image
        n_z = nodes.new("CompositorNodeImage")
        n_z.image = self.zimage
        node = nodes.new("CompositorNodeDefocus")
        node.use_zbuffer = True
        node.scene = scene
        node.f_stop = float(fstop)
        node.blur_max = float(blur_max)
        node.bokeh = bokeh
        node.angle = np.radians(angle_deg)
        if hasattr(node, "use_gamma_correction"):
            node.use_gamma_correction = False
        links.new(n_img.outputs["Image"], node.inputs["Image"])
        links.new(n_z.outputs["Image"], node.inputs["Z"])
        self.node = node
        self._img_output = n_img.outputs["Image"]
        self._out_socket = out_socket
        self._use(defocus=True)

    @staticmethod
    def _tree(bpy, scene):
        if _is_5(bpy):
            from blender_zdepth.blender.compat import set_compositor_tree

            tree = bpy.data.node_groups.new("zdepth_defocus", "CompositorNodeTree")
            set_compositor_tree(scene, tree)
            tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
            out = tree.nodes.new("NodeGroupOutput")
            return tree, out.inputs[0]
        scene.use_nodes = True
        tree = scene.node_tree
        tree.nodes.clear()
        out = tree.nodes.new("CompositorNodeComposite")
        if hasattr(out, "use_alpha"):
            out.use_alpha = True
        return tree, out.inputs["Image"]

    def _use(self, defocus):
        links = self.tree.links
        for link in list(self._out_socket.links):
            links.remove(link)
        source = self.node.outputs["Image"] if defocus else self._img_output
        links.new(source, self._out_socket)

    def _render(self):
        bpy, scene = self.bpy, self.scene
        path = os.path.join(self.tmpdir, "defocus_out.exr")
        scene.render.filepath = path
        with quiet_stdout():
            t0 = time.perf_counter()
            bpy.ops.render.render(write_still=True)
            seconds = time.perf_counter() - t0
        return path, seconds

    def run(self, defocus=True):
        """Render once; return ``(rgba float32 HxWx4, wall seconds of render.render)``."""
        self._use(defocus)
        path, seconds = self._render()
        image = read_rgba(path)
        os.remove(path)
        if image.shape[:2] != (self.height, self.width):
            raise RuntimeError(f"compositor wrote {image.shape}, expected {self.height}x{self.width}")
        return image, seconds

    def timed(self, repeats=3, baseline_repeats=3):
        """Run ``repeats`` times; return ``(rgba, dict)`` with the Defocus node's own seconds
        (each render minus the median baseline render) and the raw figures."""
        base = [self.run(defocus=False)[1] for _ in range(max(1, baseline_repeats))]
        runs = []
        image = None
        for _ in range(max(1, repeats)):
            image, seconds = self.run(defocus=True)
            runs.append(seconds)
        b = statistics.median(base)
        return image, {
            "renders_s": runs,
            "baseline_s": base,
            "node_s": [max(0.0, r - b) for r in runs],
            "median_s": max(0.0, statistics.median(runs) - b),
        }

    def close(self):
        if self._own_tmp:
            try:
                os.rmdir(self.tmpdir)
            except OSError:
                pass


def read_rgba(path):
    """A single-part EXR's R, G, B, A channels as float32 HxWx4 (top row first)."""
    import OpenEXR

    with OpenEXR.File(path) as f:
        channels = f.channels()
        if "RGBA" in channels:
            return np.asarray(channels["RGBA"].pixels, dtype=np.float32)
        if "RGB" in channels:
            rgb = np.asarray(channels["RGB"].pixels, dtype=np.float32)
            return np.concatenate([rgb, np.ones_like(rgb[..., :1])], axis=2)
        planes = [np.asarray(channels[c].pixels, dtype=np.float32) for c in "RGBA" if c in channels]
        if len(planes) == 3:
            planes.append(np.ones_like(planes[0]))
        return np.stack(planes, axis=2)


def read_render(path):
    """RGBA (HxWx4) and depth (HxW) from a Blender multilayer render EXR (``*.Combined`` +
    ``*.Depth.Z``) or a single-part RGBA + Z EXR."""
    import OpenEXR

    ch = {}
    with OpenEXR.File(path, separate_channels=True) as f:
        for part in f.parts:  # Blender 5.0 writes one part per pass
            for name, c in part.channels.items():
                ch.setdefault(name, np.asarray(c.pixels, dtype=np.float32))

    def find(suffixes):
        for s in suffixes:
            for name in ch:
                if name == s or name.endswith("." + s):
                    return ch[name]
        return None

    rgba = [find([f"Combined.{c}", c]) for c in "RGBA"]
    z = find(["Depth.Z", "Z"])
    if any(p is None for p in rgba[:3]) or z is None:
        raise SystemExit(f"{path}: needs RGB(A) and a Z / Depth.Z channel; has {sorted(ch)}")
    if rgba[3] is None:
        rgba[3] = np.ones_like(rgba[0])
    return np.stack(rgba, axis=2), z


def write_rgba(path, rgba):
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    tmp = path + ".zdepth-tmp.exr"
    OpenEXR.File(header, {"RGBA": np.ascontiguousarray(rgba, dtype=np.float32)}).write(tmp)
    os.replace(tmp, path)


def defocus(rgba, depth, **lens):
    """Run the Defocus node once on ``rgba``/``depth``; return float32 HxWx4 RGBA."""
    node = DefocusNode(rgba, depth, **lens)
    try:
        return node.run()[0]
    finally:
        node.close()


def main(argv=None):
    p = argparse.ArgumentParser(description="Run Blender's Defocus node on an EXR (RGBA + Z).")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--fstop", type=float, required=True)
    p.add_argument("--focus-distance", type=float, required=True)
    p.add_argument("--focal-length", type=float, default=50.0)
    p.add_argument("--sensor-width", type=float, default=36.0)
    p.add_argument("--sensor-height", type=float, default=24.0)
    p.add_argument("--sensor-fit", default="AUTO", choices=["AUTO", "HORIZONTAL", "VERTICAL"])
    p.add_argument("--blur-max", type=float, default=32.0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    if os.path.exists(a.output) and not a.overwrite:
        p.error(f"{a.output} exists; pass --overwrite to replace it")
    rgba, depth = read_render(a.input)
    node = DefocusNode(rgba, depth, focal_length_mm=a.focal_length, fstop=a.fstop,
                       focus_distance=a.focus_distance, blur_max=a.blur_max,
                       sensor_width_mm=a.sensor_width, sensor_height_mm=a.sensor_height,
                       sensor_fit=a.sensor_fit)
    image, t = node.timed(a.repeats)
    node.close()
    write_rgba(a.output, image)
    print(f"Defocus node {rgba.shape[1]}x{rgba.shape[0]} blur_max {a.blur_max:g}: "
          f"median {t['median_s']:.3f} s (renders {['%.3f' % s for s in t['renders_s']]}, "
          f"baseline {['%.3f' % s for s in t['baseline_s']]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
