"""Run by tests/test_extension_build.py in a fresh bpy process (user folders in a temporary HOME).

    extension_probe.py install-file ZIP OUT_DIR   install, enable, render with Export on render
    extension_probe.py repo-install REPO_DIR      add REPO_DIR as a repository, install from it
    extension_probe.py repo-update REPO_DIR       (same HOME) sync, count updates, upgrade

Prints one line ``REPORT {json}`` and leaves without interpreter teardown.
"""

import glob
import json
import os
import pathlib
import sys

import bpy

PKG = "blender_zdepth"
REPO = "studio"
report = {"errors": []}


def repos():
    return list(bpy.context.preferences.extensions.repos)


def repo_index(module):
    return [r.module for r in repos()].index(module)


def installed_version(module):
    path = os.path.join(repos()[repo_index(module)].directory, PKG, "blender_manifest.toml")
    if not os.path.exists(path):
        return None
    import tomllib

    with open(path, "rb") as f:
        return tomllib.load(f)["version"]


def outdated(module):
    """Blender's own count of updates offered by the repository (what "Update All" shows)."""
    import bl_pkg

    return bl_pkg.repo_stats_calc_outdated_for_repo_directory(
        bl_pkg.repo_cache_store_ensure(), repos()[repo_index(module)].directory)


def install_file(zip_path, out_dir):
    module = f"bl_ext.user_default.{PKG}"
    report["install"] = sorted(bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True))
    report["enabled"] = module in bpy.context.preferences.addons
    site = os.path.join(report["extensions_dir"], ".local", "lib",
                        "python%d.%d" % sys.version_info[:2], "site-packages")
    report["site_packages"] = sorted(os.listdir(site)) if os.path.isdir(site) else []
    # The bpy venv has OpenEXR of its own, earlier on sys.path: load the wheel's module instead
    # (this proves the wheel of this Python's ABI installed and loads), for the add-on too.
    import importlib.util

    (binary,) = glob.glob(os.path.join(site, "OpenEXR*.so")) or glob.glob(os.path.join(site, "OpenEXR*.pyd"))
    spec = importlib.util.spec_from_file_location("OpenEXR", binary)
    OpenEXR = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(OpenEXR)
    sys.modules["OpenEXR"] = OpenEXR
    report["openexr_from"] = os.path.realpath(OpenEXR.__file__)

    # A tiny Cycles frame of the factory scene, exported on render.
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.render.resolution_x, scene.render.resolution_y = 32, 24
    scene.render.resolution_percentage = 100
    scene.frame_set(1)
    scene.zdepth.output_dir = out_dir
    scene.zdepth.export_enabled = True
    report["render"] = sorted(bpy.ops.render.render())
    report["written"] = sorted(os.path.basename(p) for p in glob.glob(os.path.join(out_dir, "*.exr")))
    if report["written"]:
        with OpenEXR.File(os.path.join(out_dir, report["written"][0])) as f:
            report["channels"] = sorted(f.channels())

    report["disable"] = sorted(bpy.ops.preferences.addon_disable(module=module))
    report["uninstall"] = sorted(bpy.ops.extensions.package_uninstall(
        repo_index=repo_index("user_default"), pkg_id=PKG))
    report["files_left"] = os.path.exists(os.path.join(repos()[repo_index("user_default")].directory, PKG))


def repo_install(repo_dir):
    index = add_repo(repo_dir)
    report["sync"] = sorted(bpy.ops.extensions.repo_sync(repo_index=index))
    report["install"] = sorted(bpy.ops.extensions.package_install(
        repo_index=index, pkg_id=PKG, enable_on_install=True))
    report["enabled"] = f"bl_ext.{REPO}.{PKG}" in bpy.context.preferences.addons
    report["installed_version"] = installed_version(REPO)
    report["outdated"] = outdated(REPO)


def add_repo(repo_dir):
    url = pathlib.Path(repo_dir).as_uri()
    report["add"] = sorted(bpy.ops.preferences.extension_repo_add(
        name=REPO, remote_url=url, type='REMOTE', use_sync_on_startup=False))
    return repo_index(REPO)


def repo_update(repo_dir):
    # The bpy module starts from factory preferences: add the repository again. Its folder (the
    # same name, the same user folders) still holds the version installed before.
    index = add_repo(repo_dir)
    report["installed_version"] = installed_version(REPO)
    report["sync"] = sorted(bpy.ops.extensions.repo_sync(repo_index=index))
    report["outdated"] = outdated(REPO)
    report["upgrade"] = sorted(bpy.ops.extensions.package_upgrade_all())
    report["upgraded_version"] = installed_version(REPO)
    module = f"bl_ext.{REPO}.{PKG}"
    report["enable"] = sorted(bpy.ops.preferences.addon_enable(module=module))
    report["running_version"] = sys.modules[module].__version__


def main():
    # A repository served from a file:// URL still asks for Blender's online-access setting to
    # install or update (as a studio's Blender would have it on).
    bpy.context.preferences.system.use_online_access = True
    report["user_dirs"] = [r.directory for r in repos() if r.module != "system"]
    report["extensions_dir"] = bpy.utils.user_resource("EXTENSIONS")
    mode, *args = sys.argv[1:]
    {"install-file": install_file, "repo-install": repo_install, "repo-update": repo_update}[mode](*args)


try:
    main()
except BaseException:
    import traceback

    report["errors"].append(traceback.format_exc())
finally:
    print("REPORT " + json.dumps(report), flush=True)
    # Skip interpreter teardown: bpy 4.5 can hang at exit when an add-on leaked a handler.
    os._exit(0)
