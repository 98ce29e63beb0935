"""How the depth-of-field engine scales with threads: ``defocus()`` on issue #12's smooth and
dense-edge 1080p frames with 1, 2, 4, ... threads up to every usable core, in one run.

    .venv/bin/python benchmarks/bench_dof_threads.py [--repeats 3] [--threads 1,2,4,8,16]
                                                     [--frames smooth,dense] [--json PATH]

Needs numpy only (no Blender, no OpenEXR: the frames are made in memory), so it runs as it is
on a machine with many cores and a plain Python.  For each frame and thread count: the median
wall time of ``--repeats`` calls (after one untimed call), the CPU seconds the process used
(all threads) and the speed-up over one thread, with the allocator set up as the ``dof`` command
and its frame workers set it (:mod:`blender_zdepth.core.malloc`; ``--default-malloc``: glibc's
defaults, as inside Blender); the output of every thread count is checked
against one thread's (it must match within 1e-6: the engine's result does not depend on it).

Target (issue #12): on a machine with 16 or more usable cores, ``defocus()`` at least 6x faster
with 16 threads than with one.  The script says whether that target applies here (by the usable
cores) and exits 1 when it applies and is missed; elsewhere it only prints the figures.  The
frames and lens are ``bench_dof_speed.py``'s (50 mm, f/1.4, focus 5 m, blur cap 32 px).
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from bench_dof_speed import I12, SENSOR, dense_frame, smooth_frame  # noqa: E402

from blender_zdepth.core.cpus import usable_cores  # noqa: E402
from blender_zdepth.core.malloc import keep_frame_buffers  # noqa: E402
from blender_zdepth.core.dof import DofSettings, defocus, schedule  # noqa: E402
from blender_zdepth.core.lens import Lens  # noqa: E402

TARGET_CORES = 16
TARGET_SPEEDUP = 6.0
FRAMES = {"smooth": smooth_frame, "dense": dense_frame}


def _cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def thread_counts(cores):
    """1, 2, 4, ... and ``cores`` itself."""
    out, n = [], 1
    while n < cores:
        out.append(n)
        n *= 2
    out.append(cores)
    return out


def measure(rgba, depth, lens, threads, repeats):
    """(median wall seconds, median CPU seconds, output of the last call)."""
    st = DofSettings(max_radius=I12["radius"], threads=threads)
    out = defocus(rgba, depth, lens, st)  # untimed: first-call costs, page faults
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = _cpu_seconds(), time.perf_counter()
        out = defocus(rgba, depth, lens, st)
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu_seconds() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def _positive_ints(text):
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"thread counts must be 1 or more, got {text!r}")
    return vals


def _frame_names(text):
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [n for n in names if n not in FRAMES]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"unknown frame {', '.join(bad) or text!r}; choose from {', '.join(FRAMES)}")
    return names


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per figure (median)")
    ap.add_argument("--threads", type=_positive_ints, default=None,
                    help="thread counts, comma-separated (default: 1, 2, 4, ... every core)")
    ap.add_argument("--frames", type=_frame_names, default=list(FRAMES),
                    help="frames, comma-separated: smooth, dense (default: both)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    ap.add_argument("--inflight-mb", type=float, default=None,
                    help="memory (MB) the engine lets layers being blurred at once hold "
                         "(default: the engine's, dof.schedule._INFLIGHT_BYTES); for trying "
                         "whether it limits the speed-up on many cores")
    ap.add_argument("--default-malloc", action="store_true",
                    help="keep glibc's malloc settings (as inside Blender) instead of the "
                         "ones the dof command and its workers use (core.malloc)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be 1 or more")
    # As `python -m blender_zdepth dof` and its frame workers do (before any thread starts).
    kept = False if args.default_malloc else keep_frame_buffers()
    if args.inflight_mb is not None:
        if args.inflight_mb <= 0:
            ap.error("--inflight-mb must be more than 0")
        schedule._INFLIGHT_BYTES = int(args.inflight_mb * 2**20)
    cores = usable_cores()
    counts = args.threads or thread_counts(cores)
    if 1 not in counts:
        counts = [1] + counts
    counts = sorted(set(counts))
    lens = Lens(focal_length_mm=I12["focal"], fstop=I12["fstop"], focus_distance=I12["focus"],
                sensor_width_mm=SENSOR)
    print(f"defocus() thread scaling: 1920x1080, {I12['focal']:g} mm f/{I12['fstop']:g}, focus "
          f"{I12['focus']:g} m, cap {I12['radius']:g} px")
    print(f"machine: {cores} usable cores ({os.cpu_count()} CPUs), numpy {np.__version__}; "
          f"medians of {args.repeats} calls; allocator: "
          f"{'the dof command settings (core.malloc)' if kept else 'glibc defaults'}; layers in "
          f"flight up to {schedule._INFLIGHT_BYTES / 2**20:.0f} MB")
    print()
    print(f"{'frame':<8} {'threads':>7} {'wall s':>8} {'CPU s':>8} {'speed-up':>9} "
          f"{'CPU/wall':>9}  same output")
    results = {"cores": cores, "numpy": np.__version__, "repeats": args.repeats,
               "keep_frame_buffers": kept, "inflight_bytes": schedule._INFLIGHT_BYTES, "frames": {}}
    failed = False
    for name in args.frames:
        rgba, depth = FRAMES[name]()
        rows = {}
        ref = None
        for n in counts:
            wall, cpu, out = measure(rgba, depth, lens, n, args.repeats)
            if ref is None:
                ref = out
            diff = float(np.max(np.abs(out - ref)))
            same = diff <= 1e-6
            failed |= not same
            rows[n] = {"wall_s": wall, "cpu_s": cpu, "speedup": rows.get(1, {}).get(
                "wall_s", wall) / wall, "max_diff": diff}
            print(f"{name:<8} {n:>7} {wall:>8.3f} {cpu:>8.2f} {rows[n]['speedup']:>8.2f}x "
                  f"{cpu / wall:>9.2f}  {'yes' if same else f'NO (max diff {diff:.2e})'}",
                  flush=True)
        results["frames"][name] = rows
        del rgba, depth, ref
    print()
    if cores >= TARGET_CORES and TARGET_CORES in counts:
        for name, rows in results["frames"].items():
            s = rows[TARGET_CORES]["speedup"]
            ok = s >= TARGET_SPEEDUP
            failed |= not ok
            print(f"target: {name}: {TARGET_CORES} threads / 1 thread = {s:.2f}x "
                  f"(>= {TARGET_SPEEDUP:g}x) {'PASS' if ok else 'FAIL'}")
    else:
        print(f"(the {TARGET_SPEEDUP:g}x target is for {TARGET_CORES} threads on "
              f"{TARGET_CORES}+ cores; this machine has {cores}: figures only)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
