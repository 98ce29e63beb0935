"""Fuzz driver (run by tests/test_exr_fuzz.py in its own process): damages every kind of file at
many offsets (truncations and flipped bytes) and runs every command on each, in this process.

Prints one JSON line: how many runs, the exit codes seen, the slowest run, and every problem
(an exception that escaped the command line, a Python error named in an error line, an exit
code other than 0/1/2, an output file left behind by a failed command, a run slower than the
limit)."""

import contextlib
import io
import json
import os
import re
import sys
import time

import numpy as np

import exr_samples as S

from blender_zdepth import cli
from blender_zdepth.core import encodings, exr
from blender_zdepth.core.camera import CameraInfo

PY_ERROR = re.compile(r"\b(Traceback|[A-Z][A-Za-z]*(Error|Exception)):")


def make_sources(folder):
    rng = np.random.default_rng(7)
    h, w = 20, 28
    rgba = rng.random((h, w, 4)).astype(np.float32)
    depth = (2.0 + 6.0 * rng.random((h, w))).astype(np.float32)
    src = {}
    src["ours"] = os.path.join(folder, "ours.exr")
    exr.write_depth_exr(src["ours"], depth, encoding=encodings.DepthEncoding("log", 0.1, 100.0),
                        rgba=rgba, camera=CameraInfo(50.0, fstop=2.0, focus_distance=4.0))
    src["plain"] = os.path.join(folder, "plain.exr")
    S.plain_file(src["plain"], rgba, depth, data_window=(3, 2, 30, 21),
                 display_window=(0, 0, 35, 25))
    src["stereo"] = os.path.join(folder, "stereo.exr")
    S.stereo_multipart(src["stereo"])
    src["multiview"] = os.path.join(folder, "multiview.exr")
    S.multiview_singlepart(src["multiview"])
    src["deep"] = os.path.join(folder, "deep.exr")
    S.deep_file(src["deep"])
    src["deeptiled"] = os.path.join(folder, "deeptiled.exr")
    S.deep_file(src["deeptiled"], tiled=True)
    src["tiled"] = os.path.join(folder, "tiled.exr")
    S.tiled_file(src["tiled"])
    return src


def variants(data, rng, n_cut, n_flip):
    """Truncations and byte flips, half of them inside the header (the first 600 bytes)."""
    size = len(data)
    head = min(size, 600)
    cuts = sorted(set(int(c) for c in np.concatenate([
        rng.integers(1, head, n_cut // 2), rng.integers(1, size, n_cut - n_cut // 2)])))
    for cut in cuts:
        yield f"cut{cut}", data[:cut]
    for k in range(n_flip):
        at = int(rng.integers(8, head) if k % 2 == 0 else rng.integers(8, size))
        flipped = bytearray(data)
        flipped[at] ^= int(rng.integers(1, 256))
        if k % 3 == 0 and at + 4 <= size:  # and sometimes a whole int made huge
            flipped[at:at + 4] = (0x7FFFFFF0).to_bytes(4, "little")
        yield f"flip{at}", bytes(flipped)


def run_one(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in args])
            escaped = None
        except SystemExit as exc:
            code, escaped = exc.code, None
        except BaseException as exc:  # noqa: BLE001 -- exactly what this driver looks for
            code, escaped = None, f"{type(exc).__name__}: {exc}"
    return code, out.getvalue(), err.getvalue(), escaped


def main(folder, n_cut=8, n_flip=12, limit_s=5.0):
    src = make_sources(folder)
    rng = np.random.default_rng(11)
    problems, codes, runs, slowest = [], {}, 0, (0.0, "")
    for kind, path in src.items():
        data = open(path, "rb").read()
        for label, blob in variants(data, rng, n_cut, n_flip):
            bad = os.path.join(folder, f"bad_{kind}_{label}.exr")
            with open(bad, "wb") as fh:
                fh.write(blob)
            for command in ("inspect", "encode", "decode", "dof"):
                target = os.path.join(folder, f"out_{command}.exr")
                args = [command, bad]
                if command != "inspect":
                    args.append(target)
                if command == "dof":
                    args += ["--focus-distance", "3", "--fstop", "2", "--focal-length", "50"]
                t0 = time.perf_counter()
                code, out, err, escaped = run_one(args)
                took = time.perf_counter() - t0
                runs += 1
                codes[str(code)] = codes.get(str(code), 0) + 1
                where = f"{command} {kind} {label}"
                if took > slowest[0]:
                    slowest = (took, where)
                if escaped:
                    problems.append(f"{where}: escaped {escaped}")
                if PY_ERROR.search(err):
                    problems.append(f"{where}: {err.strip()[:300]}")
                if code not in (0, 1, 2):
                    problems.append(f"{where}: exit code {code}")
                if took > limit_s:
                    problems.append(f"{where}: took {took:.1f} s")
                if os.path.exists(target):
                    if code != 0:
                        problems.append(f"{where}: exit {code} but left {target}")
                    os.remove(target)
                leftovers = [n for n in os.listdir(folder) if ".tmp" in n or n.startswith(".")]
                if leftovers:
                    problems.append(f"{where}: left {leftovers}")
                    for n in leftovers:
                        os.remove(os.path.join(folder, n))
            os.remove(bad)
    print(json.dumps({"runs": runs, "codes": codes, "slowest": slowest, "problems": problems,
                      "peak_kb": peak_kb()}))


def peak_kb():
    """This process's peak resident memory since it started (``VmHWM``: unlike getrusage's
    maxrss it does not include the memory of the process it was forked from)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


if __name__ == "__main__":
    main(sys.argv[1])
