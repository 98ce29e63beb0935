"""Deep OpenEXR cost: write, read (bindings' per-pixel object arrays -> packed arrays), sort and
tidy, flatten, and the engine's hidden layers, for a frame with ~N samples per pixel.

    .venv/bin/python benchmarks/bench_deep.py                 # 960x540 and 1920x1080, 10 samples
    .venv/bin/python benchmarks/bench_deep.py --size 3840x2160 --samples 10

Each size runs in its own process so that its peak memory (ru_maxrss) is its own. The frame is
synthetic hair-like data: per pixel 5-15 point samples (10 on average) at shuffled depths, colour
stored as half (as other renderers write it), Z and ZBack float. Figures print per stage; the
4K figure is the HD one times 4 when 4K is not run (the costs are linear in the sample count:
compare the two sizes run)."""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _synthetic(width, height, samples):
    import numpy as np

    rng = np.random.default_rng(1)
    p = width * height
    counts = rng.integers(max(1, samples // 2), samples + samples // 2 + 1, p).astype(np.int64)
    n = int(counts.sum())
    z = rng.uniform(1.0, 30.0, n).astype(np.float32)      # unsorted within pixels
    a = np.full(n, 0.25, np.float32)
    packed = {"R": a * 0.6, "G": a * 0.5, "B": a * 0.4, "A": a, "Z": z, "ZBack": z.copy()}
    return counts.reshape(height, width), packed


def stage_write(width, height, samples, path):
    """Build the bindings' object arrays from packed samples and write the file."""
    import numpy as np
    import OpenEXR

    from blender_zdepth.core.exr import deep as exr_deep

    counts, packed = _synthetic(width, height, samples)
    figures = {"size": f"{width}x{height}", "samples": int(counts.sum()),
               "per_pixel": float(counts.mean()), "input_mb": _rss_mb()}
    t = time.perf_counter()
    objects = exr_deep._to_object_arrays(counts, packed, {c: np.float16 for c in "RGBA"})
    figures["to_object_arrays_s"] = time.perf_counter() - t
    t = time.perf_counter()
    OpenEXR.File({"type": OpenEXR.deepscanline, "compression": OpenEXR.ZIPS_COMPRESSION},
                 objects).write(path)
    figures["write_s"] = time.perf_counter() - t
    figures["file_mb"] = os.path.getsize(path) / 2 ** 20
    figures["write_peak_mb"] = _rss_mb()
    return figures


def _our_frame(width, height, layers):
    """A frame as a layered render gives it: an opaque beauty (a near subject over a third of
    the frame, a wall, sky at the top) and ``layers - 1`` passes, each seeing a farther surface
    behind the subject (and the same wall elsewhere: no new sample there)."""
    import numpy as np

    rng = np.random.default_rng(2)
    rgba = rng.random((height, width, 4), dtype=np.float32)
    rgba[..., 3] = 1.0
    depth = np.full((height, width), 6.0, np.float32)
    subject = np.zeros((height, width), bool)
    subject[height // 4:, width // 3: 2 * width // 3] = True
    depth[subject] = 2.0
    depth[: height // 8] = np.inf
    hidden = []
    for k in range(1, layers):
        c = rng.random((height, width, 4), dtype=np.float32)
        c[..., 3] = 1.0
        d = np.where(subject, np.float32(2.0 + 2.0 * k), depth).astype(np.float32)
        hidden.append((c, d))
    return rgba, depth, hidden


def stage_write_ours(width, height, layers, path):
    """core.exr.write_deep_exr on a frame as a layered render gives it."""
    from blender_zdepth.core import exr

    rgba, depth, hidden = _our_frame(width, height, layers)
    figures = {"size": f"{width}x{height}", "input_mb": _rss_mb()}
    t = time.perf_counter()
    exr.write_deep_exr(path, rgba, depth, hidden, overwrite=True)
    figures["write_deep_exr_s"] = time.perf_counter() - t
    figures["file_mb"] = os.path.getsize(path) / 2 ** 20
    figures["write_peak_mb"] = _rss_mb()
    return figures


def stage_read(path):
    """read_deep (bindings + packing + sort) then flatten and the engine's layers."""
    from blender_zdepth.core import deep, exr

    base = _rss_mb()
    figures = {"import_mb": base}
    t = time.perf_counter()
    image = exr.read_deep(path)
    figures["read_deep_s"] = time.perf_counter() - t
    figures["read_peak_mb"] = _rss_mb()
    figures["packed_mb"] = image.nbytes() / 2 ** 20
    figures["pixels_resorted"] = image.resorted
    t = time.perf_counter()
    deep.flatten(image)
    figures["flatten_s"] = time.perf_counter() - t
    t = time.perf_counter()
    rgba, depth, hidden = deep.to_engine(image, max_layers=deep.DEFAULT_MAX_LAYERS)
    figures["to_engine_s"] = time.perf_counter() - t
    figures["engine_input_mb"] = (rgba.nbytes + depth.nbytes
                                  + sum(h[0].nbytes + h[1].nbytes for h in hidden)) / 2 ** 20
    figures["peak_mb"] = _rss_mb()
    return figures


def deep_layers():
    from blender_zdepth.core import deep

    return deep.DEFAULT_MAX_LAYERS


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", action="append", help="WxH (repeatable; default 960x540 and "
                                                    "1920x1080)")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--ours", type=int, metavar="N",
                    help="instead: our own deep file of an N-layer render (beauty + N-1 "
                         "passes, a hidden sample behind a subject over a third of the frame), "
                         "written by write_deep_exr and read as dof reads it")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        stage, size, path = args.child.split(",")
        w, h = (int(v) for v in size.split("x"))
        if stage == "write":
            out = stage_write(w, h, args.samples, path)
        elif stage == "ours":
            out = stage_write_ours(w, h, args.ours, path)
        else:
            out = stage_read(path)
        print(json.dumps(out))
        return 0
    if args.ours:
        return _run_ours(args)
    sizes = args.size or ["960x540", "1920x1080"]
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            path = os.path.join(folder, f"deep_{size}.exr")
            r = _child_stages(("write", "read"), size, path, ["--samples", str(args.samples)])
            if r is not None:
                results.append(r)
                print(f"{r['size']}: {r['samples']} samples ({r['per_pixel']:.1f}/px), file "
                      f"{r['file_mb']:.0f} MB")
                for key in ("to_object_arrays_s", "write_s", "read_deep_s", "flatten_s",
                            "to_engine_s"):
                    print(f"  {key:22s} {r[key]:8.2f} s")
                print(f"  write peak             {r['write_peak_mb']:8.0f} MB (of it the packed "
                      f"input {r['input_mb']:.0f} MB)")
                w, h = (int(v) for v in r["size"].split("x"))
                print(f"  read peak              {r['read_peak_mb']:8.0f} MB (packed result "
                      f"{r['packed_mb']:.0f} MB; {r['read_peak_mb'] * 2 ** 20 / (w * h):.0f} "
                      f"bytes a pixel, imports included)")
                print(f"  engine input           {r['engine_input_mb']:8.0f} MB (flat + "
                      f"{deep_layers()} hidden layers)")
                print(f"  peak with engine input {r['peak_mb']:8.0f} MB")
            if os.path.exists(path):
                os.remove(path)
    if results and not any(r["size"] == "3840x2160" for r in results):
        r = results[-1]
        w, h = (int(v) for v in r["size"].split("x"))
        scale = 3840 * 2160 / (w * h)
        print(f"4K frame, ~{r['per_pixel']:.0f} samples per pixel, projected (x{scale:g} of "
              f"{r['size']}; the costs grow linearly with the samples, compare the sizes above): "
              f"read {r['read_deep_s'] * scale:.0f} s, "
              f"flatten + layers {(r['flatten_s'] + r['to_engine_s']) * scale:.0f} s, read peak "
              f"{r['read_peak_mb'] * scale / 1024:.1f} GB, write peak "
              f"{r['write_peak_mb'] * scale / 1024:.1f} GB")
    return 0


def _child_stages(stages, size, path, extra):
    """Run each stage in a process of its own (its peak memory alone); their figures merged, or
    None (the failure printed) when one fails."""
    r = {}
    for stage in stages:
        out = subprocess.run([sys.executable, __file__, "--child", f"{stage},{size},{path}"]
                             + extra, capture_output=True, text=True)
        if out.returncode:
            print(f"{size} {stage}: failed: {out.stderr.strip().splitlines()[-1:]}")
            return None
        r.update(json.loads(out.stdout.strip().splitlines()[-1]))
    return r


def _run_ours(args):
    sizes = args.size or ["1920x1080"]
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            path = os.path.join(folder, f"ours_{size}.exr")
            r = _child_stages(("ours", "read"), size, path, ["--ours", str(args.ours)])
            if r is None:
                return 1
            print(f"{size}, our deep file of {args.ours} layers: {r['file_mb']:.0f} MB")
            print(f"  write_deep_exr         {r['write_deep_exr_s']:8.2f} s, peak "
                  f"{r['write_peak_mb']:.0f} MB (of it the frame and its passes "
                  f"{r['input_mb']:.0f} MB)")
            print(f"  read_deep              {r['read_deep_s']:8.2f} s, peak "
                  f"{r['read_peak_mb']:.0f} MB")
            print(f"  flatten / to_engine    {r['flatten_s']:8.2f} / {r['to_engine_s']:.2f} s, "
                  f"peak with the engine input {r['peak_mb']:.0f} MB")
            os.remove(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
