"""Time to encode+write and read+decode a depth frame (HD and UHD), against plain OpenEXR I/O.

    .venv/bin/python benchmarks/bench_exr.py [--repeats N] [--codec zip] [--sizes 1920x1080,...]

For each size: a procedural depth frame (a ground plane receding to the horizon, a few boxes,
sky = 1e10 background, like a Cycles Z pass) is

* ``ours write``: encoded (log, float32) and written with ``core.exr.write_depth_exr``;
* ``ours read``: read back and decoded with ``core.frame.load_frame``;
* ``raw write`` / ``raw read``: the same float32 depth written/read with the bare OpenEXR
  bindings (no encoding, no checks, no atomic rename): the reference.

Prints the median of N repeats (default 5) in milliseconds and the ratio ours / raw. Also
checks the round trip (max relative error) so a fast but wrong build shows.

Then the threads of EXR reading and writing (:func:`core.exr.set_io_threads`, the rule of
``dof --threads``): a float32 RGBA + Z frame of each size (the ``dof`` command's input) read with
``load_frame`` and its RGBA written with ``write_exr`` (ZIP, the refocused output), with one
thread and with every usable core: wall-clock and CPU milliseconds, and a check that both
files are byte-for-byte the same. ``--skip-threads`` leaves this table out.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import OpenEXR  # noqa: E402

from blender_zdepth.core import exr  # noqa: E402
from blender_zdepth.core.encodings import DepthEncoding  # noqa: E402
from blender_zdepth.core.frame import load_frame  # noqa: E402


def depth_frame(w, h):
    """Planar depth of a camera 1.5 m above a ground plane, horizon at 40 % height, plus boxes."""
    y = (np.arange(h, dtype=np.float64)[:, None] + 0.5) / h
    x = (np.arange(w, dtype=np.float64)[None, :] + 0.5) / w
    below = y - 0.4  # rows below the horizon see the ground
    with np.errstate(divide="ignore"):
        ground = np.where(below > 0, 1.5 * 0.9 / np.maximum(below, 1e-9), 1e10)
    d = np.broadcast_to(ground, (h, w)).copy()
    for cx, cy, r, z in ((0.3, 0.6, 0.08, 4.0), (0.7, 0.55, 0.05, 12.0), (0.5, 0.5, 0.02, 60.0)):
        box = (np.abs(x - cx) < r) & (np.abs(y - cy) < 2 * r)
        d = np.where(box, z + 0.5 * (x - cx), d)
    d[d > 5e4] = 1e10
    return d.astype(np.float32)


def median_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--codec", default="zip")
    parser.add_argument("--sizes", default="1920x1080,3840x2160")
    parser.add_argument("--skip-threads", action="store_true",
                        help="leave out the one-thread / all-cores table")
    args = parser.parse_args(argv)
    enc = DepthEncoding("log", 0.1, 1000.0)
    comp = exr.codec_enum(args.codec)
    print(f"EXR depth I/O, log float32, codec {args.codec}, median of {args.repeats} "
          f"(threads: every usable core, core.exr.io_threads), milliseconds")
    print(f"{'size':>10} {'ours write':>11} {'raw write':>10} {'ratio':>6} "
          f"{'ours read':>10} {'raw read':>9} {'ratio':>6} {'MB':>6} {'max rel err':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.lower().split("x"))
            d = depth_frame(w, h)
            ours = os.path.join(tmp, f"ours_{w}.exr")
            raw = os.path.join(tmp, f"raw_{w}.exr")

            def write_ours():
                exr.write_depth_exr(ours, d, encoding=enc, codec=args.codec, overwrite=True)

            def write_raw():
                hdr = {"compression": comp, "type": OpenEXR.scanlineimage}
                OpenEXR.File(hdr, {"Z": d}).write(raw)

            t_wo = median_ms(write_ours, args.repeats)
            t_wr = median_ms(write_raw, args.repeats)
            result = {}

            def read_ours():
                result["depth"] = load_frame(ours).depth

            def read_raw():
                f = OpenEXR.File(raw, separate_channels=True)
                result["raw"] = f.channels()["Z"].pixels

            t_ro = median_ms(read_ours, args.repeats)
            t_rr = median_ms(read_raw, args.repeats)
            back = result["depth"]
            fin = d < 1e9
            err = float(np.max(np.abs(back[fin].astype(np.float64) / d[fin] - 1)))
            assert np.all(np.isposinf(back[~fin]))
            mb = os.path.getsize(ours) / 1e6
            print(f"{size:>10} {t_wo:11.1f} {t_wr:10.1f} {t_wo / t_wr:6.2f} "
                  f"{t_ro:10.1f} {t_rr:9.1f} {t_ro / t_rr:6.2f} {mb:6.1f} {err:12.2e}")
        if not args.skip_threads:
            threads_table(args, tmp)
    return 0


def _timed(fn, repeats):
    """(median wall ms, median CPU ms of this process, all its threads) of ``fn()``."""
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append((time.perf_counter() - t0) * 1e3)
        cpus.append((time.process_time() - c0) * 1e3)
    return statistics.median(walls), statistics.median(cpus)


def threads_table(args, tmp):
    from blender_zdepth.core.cpus import usable_cores

    cores = usable_cores()
    print(f"\nEXR reading and writing threads (core.exr.set_io_threads; {cores} usable cores): "
          f"float32 RGBA + Z, load_frame / RGBA write_exr {args.codec}, median of "
          f"{args.repeats}, wall (CPU) ms")
    print(f"{'size':>10} {'read 1 thr':>15} {'read all':>15} {'write 1 thr':>15} "
          f"{'write all':>15} {'speed-up r/w':>13}")
    rng = np.random.default_rng(5)
    before = OpenEXR.global_thread_count()
    try:
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.lower().split("x"))
            rgba = np.empty((h, w, 4), np.float32)
            rgba[..., :3] = rng.random((h, w, 3), dtype=np.float32)
            rgba[..., :3] += np.linspace(0, 2, w, dtype=np.float32)[None, :, None]
            rgba[..., 3] = 1.0
            src = os.path.join(tmp, f"rgbaz_{w}.exr")
            exr.write_exr(src, {"RGBA": rgba, "Z": depth_frame(w, h)}, codec=args.codec,
                          overwrite=True)
            row, files = [], []
            for threads in (1, 0):
                exr.set_io_threads(threads)
                row.append(_timed(lambda: load_frame(src), args.repeats))
            for threads in (1, 0):
                exr.set_io_threads(threads)
                out = os.path.join(tmp, f"out_{w}_{threads}.exr")
                row.append(_timed(lambda: exr.write_exr(out, {"RGBA": rgba}, codec=args.codec,
                                                        overwrite=True), args.repeats))
                with open(out, "rb") as f:
                    files.append(f.read())
            same = "same bytes" if files[0] == files[1] else "FILES DIFFER"
            cells = " ".join(f"{f'{wall:.0f} ({cpu:.0f})':>15}" for wall, cpu in row)
            print(f"{size:>10} {cells} {row[0][0] / row[1][0]:5.2f}/{row[2][0] / row[3][0]:.2f}"
                  f"  {same}")
    finally:
        OpenEXR.set_global_thread_count(before)


if __name__ == "__main__":
    sys.exit(main())
