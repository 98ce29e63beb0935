#!/usr/bin/env python3
"""One entry point for users and CI. Runs with any ``python3`` >= 3.11 (standard library only).

    python3 build.py demo                 set up .venv-5.3 (bpy 5.3), render the demo, print the results
    python3 build.py test [pytest args]   set up .venv-5.3, run the whole test suite against bpy 5.3
    python3 build.py test --blender 4.5   the same against bpy 4.5 LTS, in .venv-4.5 (5.0: .venv)
    python3 build.py extension            build dist/blender_zdepth-<version>-<platform>.zip for Blender
    python3 build.py repo --out DIR       the zips plus the listing of an extension repository in DIR
    python3 build.py bench [NAME ...]     run the benchmarks under benchmarks/ (all by default)

Each command creates the virtual environment it needs, or reuses it when its pinned requirements
have not changed. Each Blender needs its own Python (bpy is built for one version only: 3.11 for
4.2-5.0, 3.13 for 5.1 and later); build.py finds it (``python3.13`` on PATH, pyenv's versions,
``py -3.13`` on Windows) and creates the environment with it.
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
MANIFEST = "blender_manifest.toml"

#: Pinned requirements per Blender line. numpy is the one each bpy asks for (pip's choice, pinned).
REQUIREMENTS = {
    "5.3": ["bpy==5.3.0", "numpy==2.5.5", "OpenEXR==3.5.3", "pytest==9.2.0"],
    "5.0": ["bpy==5.0.1", "numpy==1.26.4", "OpenEXR==3.5.3", "pytest==9.2.0"],
    "4.5": ["bpy==4.5.15", "numpy==1.26.4", "OpenEXR==3.5.3", "pytest==9.2.0"],
}
#: The Python each Blender line runs (its bpy wheel exists for this version only).
PYTHONS = {"5.3": "3.13", "5.0": "3.11", "4.5": "3.11"}
VENVS = {"5.3": ".venv-5.3", "5.0": ".venv", "4.5": ".venv-4.5"}
STAMP = ".blender_zdepth-requirements"


def _version_key(text):
    return tuple(int(p) for p in text.split("."))


NEWEST = max(REQUIREMENTS, key=_version_key)


def log(message):
    print(f"[build] {message}", flush=True)


def fail(message):
    """One line on stderr, exit 2 (bad request or missing prerequisite)."""
    print(f"build.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def manifest_minimum():
    """``blender_version_min`` of the manifest as a tuple, e.g. ``(4, 2, 0)``."""
    import tomllib  # here, so that a Python older than 3.11 reaches its one-line refusal

    with open(os.path.join(ROOT, MANIFEST), "rb") as f:
        return _version_key(tomllib.load(f)["blender_version_min"])


def check_blender(version):
    """Refuse (one line, exit 2) a Blender version build.py cannot test; return it."""
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", version):
        fail(f"--blender {version!r}: give a version such as {NEWEST}")
    minimum = manifest_minimum()
    if _version_key(version) < minimum[:len(_version_key(version))]:
        fail(f"Blender {version} is older than the extension's minimum, "
             f"{'.'.join(map(str, minimum))} ({MANIFEST} blender_version_min)")
    line = ".".join(version.split(".")[:2])
    if line not in REQUIREMENTS:
        fail(f"no pinned bpy for Blender {version}: choose one of "
             f"{', '.join(sorted(REQUIREMENTS, key=_version_key, reverse=True))}")
    return line


def _runs_as(command, version):
    """True when ``command -c ...`` starts and is Python ``version`` (a pyenv shim may not be)."""
    try:
        done = subprocess.run([*command, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and done.stdout.strip() == version


def python_candidates(version):
    """Commands that may run Python ``version`` ("3.13"), most likely first."""
    if "%d.%d" % sys.version_info[:2] == version:
        yield [sys.executable]
    on_path = shutil.which(f"python{version}")
    if on_path:
        yield [on_path]
    # pyenv's installed versions, newest patch first (its shims only run the selected one).
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.join(os.path.expanduser("~"), ".pyenv")
    found = [d for d in glob.glob(os.path.join(pyenv_root, "versions", version + ".*"))
             if re.fullmatch(re.escape(version) + r"\.\d+", os.path.basename(d))]
    for folder in sorted(found, key=lambda d: _version_key(os.path.basename(d)), reverse=True):
        for exe in (os.path.join(folder, "bin", f"python{version}"),
                    os.path.join(folder, "python.exe")):  # pyenv-win's layout
            if os.path.exists(exe):
                yield [exe]
    if os.name == "nt":
        yield ["py", f"-{version}"]


def find_python(version):
    """A command that runs Python ``version``, or None."""
    for command in python_candidates(version):
        if _runs_as(command, version):
            return command
    return None


def _python_missing(blender, version):
    how = (f"'py install {version}' or python.org" if os.name == "nt" else
           f"your package manager (python{version}, python{version}-venv), python.org "
           f"or 'pyenv install {version}'")
    fail(f"Blender {blender} needs Python {version} (its bpy module is built for that version "
         f"only) and none was found: install it with {how}, so that 'python{version}' runs")


def venv_python(blender=NEWEST):
    """Create or reuse the virtual environment for ``blender``; return its python executable."""
    path = os.path.join(ROOT, VENVS[blender])
    python = os.path.join(path, "Scripts" if os.name == "nt" else "bin",
                          "python.exe" if os.name == "nt" else "python")
    wanted = "\n".join(REQUIREMENTS[blender]) + "\n"
    stamp = os.path.join(path, STAMP)
    try:
        with open(stamp) as f:
            if f.read() == wanted and os.path.exists(python):
                return python
    except OSError:
        pass
    version = PYTHONS[blender]
    log(f"setting up {VENVS[blender]} for Blender {blender} (Python {version}): "
        f"{' '.join(REQUIREMENTS[blender])}")
    if not (os.path.exists(python) and _runs_as([python], version)):
        base = find_python(version)
        if base is None:
            _python_missing(blender, version)
        log(f"creating {VENVS[blender]} with {' '.join(base)}")
        if subprocess.call([*base, "-m", "venv", "--clear", path]) != 0:
            fail(f"'{' '.join(base)} -m venv' could not create {VENVS[blender]}: install the venv "
                 f"module of Python {version} (e.g. the python{version}-venv package)")
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
    python = venv_python(args.blender)
    return run(python, "-m", "blender_zdepth", "demo", "--out", args.out, *extra)


def cmd_test(args, extra):
    python = venv_python(args.blender)
    log(f"running the tests against Blender {args.blender}")
    return run(python, "-m", "pytest", *extra)


def _extension_tool(args):
    """(python, blender_ext.py) of the chosen Blender's venv: Blender's own extension tool."""
    sys.path.insert(0, ROOT)
    from tools import extension

    python = venv_python(args.blender)
    return extension, python, extension.blender_ext_tool(os.path.dirname(os.path.dirname(python)))


def _wheel_pythons():
    """Every Python a supported Blender runs, e.g. ["3.11", "3.13"]: the OpenEXR wheels' tags."""
    return sorted(set(PYTHONS.values()), key=_version_key)


def _openexr():
    (pin,) = {r for reqs in REQUIREMENTS.values() for r in reqs if r.startswith("OpenEXR==")}
    return pin


def cmd_extension(args, extra):
    extension, python, tool = _extension_tool(args)
    return extension.main_build(python, tool, args.dist, _openexr(), _wheel_pythons(),
                                cache=args.cache, offline=args.offline)


def cmd_repo(args, extra):
    extension, python, tool = _extension_tool(args)
    return extension.main_repo(python, tool, args.out, _openexr(), _wheel_pythons(),
                               cache=args.cache, offline=args.offline)


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
    python = venv_python(args.blender)
    status = 0
    for script in scripts:
        log(f"benchmark {script}")
        status = run(python, script, *extra) or status
    return status


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 build.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    blender_help = (f"Blender version, one of {', '.join(sorted(REQUIREMENTS, key=_version_key))}"
                    f" (default: the newest, {NEWEST})")

    def with_blender(p):
        p.add_argument("--blender", default=NEWEST, help=blender_help)
        return p

    p = with_blender(sub.add_parser("demo", help="render the procedural demo scene and write its depth outputs"))
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.set_defaults(func=cmd_demo)
    p = with_blender(sub.add_parser("test", help="run the test suite (extra arguments go to pytest)"))
    p.set_defaults(func=cmd_test)
    for name, func, what in (("extension", cmd_extension, "build the extension zips into dist/"),
                             ("repo", cmd_repo, "write an extension repository (zips + listing)")):
        p = with_blender(sub.add_parser(name, help=f"{what} with the Blender's own extension tool"))
        if name == "extension":
            p.add_argument("--dist", default=os.path.join(ROOT, "dist"), help="output folder (default: dist/)")
        else:
            p.add_argument("--out", required=True, help="the repository folder (created when missing)")
        p.add_argument("--cache", default=os.path.join(ROOT, ".cache", "wheels"),
                       help="wheel cache folder (default: .cache/wheels/)")
        p.add_argument("--offline", action="store_true", help="use cached wheels only, never download")
        p.set_defaults(func=func)
    p = with_blender(sub.add_parser("bench", help="run benchmarks (extra arguments go to each script)"))
    p.add_argument("names", nargs="*", help="benchmark names, e.g. bench_exr (default: all)")
    p.set_defaults(func=cmd_bench)
    args, extra = parser.parse_known_args(argv)
    if args.command in ("extension", "repo") and extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.blender = check_blender(args.blender)
    return args.func(args, extra)


if __name__ == "__main__":
    if sys.version_info < (3, 11):
        print(f"build.py: error: Python 3.11 or later is needed to run build.py; this is "
              f"{sys.version.split()[0]}", file=sys.stderr)
        sys.exit(2)
    sys.exit(main())
