"""The Blender extension of blender_zdepth, built by Blender's own extension tool.

Blender's ``blender_ext.py`` (inside the bpy wheel: ``bpy/<version>/scripts/addons_core/bl_pkg/cli/``)
validates the manifest, builds the zips (``--split-platforms``: one per platform, each with that
platform's wheels) and writes an extension repository's listing (``server-generate``). What it does
not do is here:

* fetch the OpenEXR wheels, for every platform the manifest declares and every Python the supported
  Blenders run (cp311 for 4.2-5.0, cp313 for 5.1+), with pip, once, into ``.cache/wheels/<platform>/``;
* stage a folder for it: the package's files (no caches, no hidden files), the manifest with its
  ``wheels`` list filled in, the wheels under ``wheels/``; and check that the manifest's version is
  the package's ``__version__``;
* put the zips in place only after Blender's ``validate`` accepted each of them.

``python3 build.py extension`` and ``python3 build.py repo --out DIR`` call :func:`main_build` and
:func:`main_repo` with the Python and ``blender_ext.py`` of a bpy virtual environment.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "blender_zdepth"
MANIFEST = "blender_manifest.toml"

#: pip's --platform tag for each Blender platform name.
WHEEL_PLATFORM_TAGS = {
    "linux-x64": "manylinux_2_28_x86_64",
    "macos-arm64": "macosx_11_0_arm64",
    "macos-x64": "macosx_10_15_x86_64",
    "windows-x64": "win_amd64",
}


class BuildError(Exception):
    """The build cannot go on; the message says why and what to do."""


def _log(message):
    print(f"[extension] {message}", flush=True)


def blender_ext_tool(prefix):
    """Path of ``blender_ext.py`` in the bpy wheel installed in the environment ``prefix``."""
    patterns = [os.path.join(prefix, "lib", "python3.*", "site-packages"),
                os.path.join(prefix, "Lib", "site-packages")]
    for site in (s for p in patterns for s in glob.glob(p)):
        tools = glob.glob(os.path.join(site, "bpy", "*", "scripts", "addons_core", "bl_pkg", "cli",
                                       "blender_ext.py"))
        if tools:
            return sorted(tools)[-1]
    raise BuildError(f"no bpy/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py under {prefix}")


def _valid_tags(tool):
    """Blender's own tag list beside the tool (``--valid-tags``), or "" when it has none."""
    scripts = tool.split(os.sep + "addons_core" + os.sep)[0]
    tags = os.path.join(scripts, "modules", "_bpy_internal", "extensions", "tags.py")
    return tags if os.path.exists(tags) else ""


def load_manifest(root=ROOT):
    with open(os.path.join(root, MANIFEST), "rb") as f:
        return tomllib.load(f)


# --------------------------------------------------------------------------------------------
# Wheels

def _cached(folder, stem, python_tag):
    for path in sorted(glob.glob(os.path.join(folder, f"{stem}-*-{python_tag}-*.whl"))):
        return path
    return None


def fetch_wheels(python, requirement, platforms, pythons, cache, offline=False):
    """Paths of the wheels of ``requirement`` ("OpenEXR==3.5.3") for each platform and Python.

    ``pythons``: e.g. ["3.11", "3.13"]. Wheels come from ``cache/<platform>/``; missing ones are
    downloaded with ``python -m pip download`` (binary only, no dependencies: numpy ships with
    Blender) into a temporary folder, then moved into the cache.
    """
    name, _, version = requirement.partition("==")
    stem = f"{name.lower().replace('-', '_')}-{version}"
    wheels = []
    for platform in platforms:
        if platform not in WHEEL_PLATFORM_TAGS:
            raise BuildError(f"no wheel platform tag known for {platform!r}: add it to "
                             f"WHEEL_PLATFORM_TAGS in tools/extension.py or drop it from the manifest")
        folder = os.path.join(cache, platform)
        for py in pythons:
            tag = "cp" + py.replace(".", "")
            wheel = _cached(folder, stem, tag)
            if wheel is None:
                if offline:
                    raise BuildError(f"{requirement} for {platform}, Python {py} is not in {folder} (--offline)")
                _log(f"downloading {requirement} for {platform}, Python {py}")
                os.makedirs(folder, exist_ok=True)
                tmp = tempfile.mkdtemp(prefix=".download-", dir=folder)
                try:
                    done = subprocess.run(
                        [python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                         "--only-binary=:all:", "--no-deps", "--python-version", py,
                         "--implementation", "cp", "--platform", WHEEL_PLATFORM_TAGS[platform],
                         requirement, "-d", tmp], capture_output=True, text=True)
                    got = _cached(tmp, stem, tag)
                    if done.returncode != 0 or got is None:
                        raise BuildError(f"pip could not download {requirement} for {platform}, "
                                         f"Python {py}: {done.stderr.strip() or os.listdir(tmp)}")
                    wheel = os.path.join(folder, os.path.basename(got))
                    os.replace(got, wheel)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            wheels.append(wheel)
    return wheels


# --------------------------------------------------------------------------------------------
# Staging: the folder Blender's tool builds from

def manifest_with_wheels(text, wheel_paths):
    """The manifest ``text`` with its top-level ``wheels = [...]`` set to ``wheel_paths``."""
    block = "wheels = [\n" + "".join(f'    "{p}",\n' for p in wheel_paths) + "]"
    new, count = re.subn(r"^wheels[ \t]*=[ \t]*\[[^\]]*\]", lambda _: block, text, count=1, flags=re.M)
    if count != 1 or tomllib.loads(new).get("wheels") != list(wheel_paths):
        raise BuildError(f"{MANIFEST} needs a top-level 'wheels = []' line for the build to fill in")
    return new


def stage(folder, wheels, root=ROOT):
    """Fill ``folder`` with the package, the manifest (wheels listed) and ``wheels/``."""
    package = os.path.join(root, PACKAGE)
    with open(os.path.join(root, MANIFEST), encoding="utf-8") as f:
        text = f.read()
    manifest = tomllib.loads(text)
    with open(os.path.join(package, "__init__.py"), encoding="utf-8") as f:
        found = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', f.read(), re.M)
    if found is None or found.group(1) != manifest.get("version"):
        raise BuildError(f"{MANIFEST} says version {manifest.get('version')!r} but "
                         f"{PACKAGE}/__init__.py says {found and found.group(1)!r}: make them agree")
    shutil.copytree(package, folder, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*"))
    os.makedirs(os.path.join(folder, "wheels"), exist_ok=True)
    for wheel in wheels:
        shutil.copy2(wheel, os.path.join(folder, "wheels"))
    listed = [f"./wheels/{os.path.basename(w)}" for w in sorted(wheels, key=os.path.basename)]
    with open(os.path.join(folder, MANIFEST), "w", encoding="utf-8") as f:
        f.write(manifest_with_wheels(text, listed))
    return folder


# --------------------------------------------------------------------------------------------
# Blender's tool

def blender_ext(python, tool, *args):
    """Run ``blender_ext.py args``; raise BuildError with its output when it fails."""
    done = subprocess.run([python, tool, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"Blender's extension tool refused ({' '.join(args[:1])}):\n"
                         f"{(done.stdout + done.stderr).strip()}")
    return done.stdout


def build(python, tool, out_dir, requirement, pythons, cache, offline=False, root=ROOT):
    """Build, validate and place the per-platform zips in ``out_dir``; return their paths.

    Zips of the same extension id already in ``out_dir`` (other versions) are replaced, so a
    repository folder offers one version. Nothing in ``out_dir`` changes when a step fails.
    """
    manifest = load_manifest(root)
    wheels = fetch_wheels(python, requirement, manifest.get("platforms") or [], pythons, cache,
                          offline)
    tags = _valid_tags(tool)
    with tempfile.TemporaryDirectory(prefix="zdepth-extension-") as tmp:
        source = stage(os.path.join(tmp, "source"), wheels, root)
        built = os.path.join(tmp, "built")
        os.makedirs(built)
        blender_ext(python, tool, "build", "--source-dir", source, "--output-dir", built,
                    "--split-platforms", f"--valid-tags={tags}")
        zips = sorted(glob.glob(os.path.join(built, "*.zip")))
        if not zips:
            raise BuildError(f"Blender's extension tool built nothing in {built}")
        for path in zips:
            blender_ext(python, tool, "validate", path, f"--valid-tags={tags}")
        os.makedirs(out_dir, exist_ok=True)
        for old in glob.glob(os.path.join(out_dir, f"{manifest['id']}-*.zip")):
            os.remove(old)
        placed = []
        for path in zips:
            dest = os.path.join(out_dir, os.path.basename(path))
            shutil.move(path, dest)
            placed.append(dest)
    return placed


def repo(python, tool, out_dir, requirement, pythons, cache, offline=False, root=ROOT):
    """The zips in ``out_dir`` plus the listing Blender reads (``index.json``); return the zips."""
    zips = build(python, tool, out_dir, requirement, pythons, cache, offline, root)
    blender_ext(python, tool, "server-generate", "--repo-dir", out_dir)
    return zips


def _shown(path):
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _main(func, python, tool, out_dir, *args, **kwargs):
    try:
        zips = func(python, tool, out_dir, *args, **kwargs)
    except BuildError as exc:
        print(f"build.py: error: {exc}", file=sys.stderr)
        return 1
    for path in zips:
        print(f"built {_shown(path)} ({os.path.getsize(path) / 2**20:.1f} MiB)")
    return 0


def main_build(python, tool, out_dir, requirement, pythons, cache, offline=False):
    status = _main(build, python, tool, out_dir, requirement, pythons, cache, offline)
    if status == 0:
        print("install the zip of your platform in Blender: Edit > Preferences > Get Extensions > "
              "(menu) Install from Disk")
    return status


def main_repo(python, tool, out_dir, requirement, pythons, cache, offline=False):
    status = _main(repo, python, tool, out_dir, requirement, pythons, cache, offline)
    if status == 0:
        import pathlib

        url = pathlib.Path(os.path.abspath(out_dir), "index.json").as_uri()
        print(f"repository listing {_shown(os.path.join(out_dir, 'index.json'))}: add it in Blender "
              f"(Preferences > Get Extensions > Repositories > + > Add Remote Repository) with the "
              f"URL of the folder as served by your web server, or {url}")
    return status
