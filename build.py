#!/usr/bin/env python3
"""One entry point for users and CI. Runs with a plain ``python3`` (3.11, standard library only).

    python3 build.py demo                 set up .venv (bpy 5.0), render the demo, print the results
    python3 build.py test [pytest args]   set up .venv, run the whole test suite against bpy 5.0
    python3 build.py test --blender 4.5   the same against bpy 4.5 LTS, in .venv-4.5
    python3 build.py extension            build dist/blender_zdepth-<version>.zip for Blender
    python3 build.py bench [NAME ...]     run the benchmarks under benchmarks/ (all by default)

Each command creates the virtual environment it needs, or reuses it when its pinned requirements
have not changed, so a fresh clone needs nothing but Python 3.11.
"""

import argparse
import os
import subprocess
import sys
import venv

ROOT = os.path.dirname(os.path.abspath(__file__))

#: Pinned requirements per Blender line. bpy wants numpy 1.26; pin it so both lines agree.
REQUIREMENTS = {
    "5.0": ["bpy==5.0.1", "numpy==1.26.4", "OpenEXR==3.5.3", "pytest==9.2.0"],
    "4.5": ["bpy==4.5.15", "numpy==1.26.4", "OpenEXR==3.5.3", "pytest==9.2.0"],
}
VENVS = {"5.0": ".venv", "4.5": ".venv-4.5"}
STAMP = ".blender_zdepth-requirements"


def log(message):
    print(f"[build] {message}", flush=True)


def venv_python(blender="5.0"):
    """Create or reuse the virtual environment for ``blender``; return its python executable."""
    if sys.version_info[:2] != (3, 11):
        sys.exit(
            f"build.py: error: Python 3.11 is needed (the bpy wheels exist for 3.11 only); "
            f"this is {sys.version.split()[0]}. Run it as 'python3.11 build.py ...'."
        )
    path = os.path.join(ROOT, VENVS[blender])
    python = os.path.join(path, "Scripts" if os.name == "nt" else "bin", "python")
    wanted = "\n".join(REQUIREMENTS[blender]) + "\n"
    stamp = os.path.join(path, STAMP)
    try:
        with open(stamp) as f:
            if f.read() == wanted and os.path.exists(python):
                return python
    except OSError:
        pass
    log(f"setting up {VENVS[blender]} for Blender {blender}: {' '.join(REQUIREMENTS[blender])}")
    if not os.path.exists(python):
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
    subprocess.check_call([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    subprocess.check_call([python, "-m", "pip", "install", "--quiet", *REQUIREMENTS[blender]])
    with open(stamp, "w") as f:
        f.write(wanted)
    return python


def run(python, *args):
    """Run ``python args...`` in the repository root; return its exit code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.call([python, *args], cwd=ROOT, env=env)


def cmd_demo(args, extra):
    python = venv_python("5.0")
    return run(python, "-m", "blender_zdepth", "demo", "--out", args.out, *extra)


def cmd_test(args, extra):
    python = venv_python(args.blender)
    log(f"running the tests against Blender {args.blender}")
    return run(python, "-m", "pytest", *extra)


def cmd_extension(args, extra):
    sys.path.insert(0, ROOT)
    from tools import extension

    return extension.main(extra)


def cmd_bench(args, extra):
    bench_dir = os.path.join(ROOT, "benchmarks")
    names = args.names or sorted(
        n[:-3] for n in os.listdir(bench_dir) if n.startswith("bench_") and n.endswith(".py")
    )
    scripts = []
    for name in names:  # 'dof_quality', 'bench_exr', 'exr' or 'bench_exr.py'
        stem = name[:-3] if name.endswith(".py") else name
        found = [c for c in (stem, "bench_" + stem)
                 if os.path.isfile(os.path.join(bench_dir, c + ".py"))]
        if not found:
            known = sorted(n[:-3] for n in os.listdir(bench_dir)
                           if n.endswith(".py") and not n.startswith("_"))
            print(f"python3 build.py bench: error: no benchmark {name!r}; there are: "
                  f"{', '.join(known)}", file=sys.stderr)
            return 2
        scripts.append(os.path.join("benchmarks", found[0] + ".py"))
    python = venv_python("5.0")
    status = 0
    for script in scripts:
        log(f"benchmark {script}")
        status = run(python, script, *extra) or status
    return status


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 build.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="render the procedural demo scene and write its depth outputs")
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("test", help="run the test suite (extra arguments go to pytest)")
    p.add_argument("--blender", choices=sorted(REQUIREMENTS), default="5.0")
    p.set_defaults(func=cmd_test)
    p = sub.add_parser("extension", help="build the extension zip into dist/")
    p.set_defaults(func=cmd_extension)
    p = sub.add_parser("bench", help="run benchmarks (extra arguments go to each script)")
    p.add_argument("names", nargs="*", help="benchmark names, e.g. bench_exr (default: all)")
    p.set_defaults(func=cmd_bench)
    args, extra = parser.parse_known_args(argv)
    return args.func(args, extra)


if __name__ == "__main__":
    sys.exit(main())
