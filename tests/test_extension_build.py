"""The Blender extension zip: manifest validation, archive layout, and a real install.

* Unit tests (no bpy): ``tools.extension.validate_manifest`` accepts the project's manifest and
  refuses each kind of invalid one with a message naming the field; ``build_zip`` lays the
  archive out the way Blender's "Install from Disk" expects, atomically.
* Cross-check: Blender's own validator (``bl_pkg/cli/blender_ext.py validate``, shipped inside the
  bpy wheel) accepts our zip and refuses the invalid manifests it also knows about.
* Integration (``blender``, ``slow``): ``python3 build.py extension``'s zip, with the real
  OpenEXR wheels, is installed into the user extension repository of a fresh Blender process
  whose user folders live in a temporary directory, enabled, inspected, disabled and uninstalled.
"""

import copy
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import tomllib
import zipfile

import pytest

from tools import extension as ext

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))
FAKE_WHEEL_TAGS = {
    "linux-x64": "manylinux_2_28_x86_64",
    "macos-arm64": "macosx_11_0_arm64",
    "macos-x64": "macosx_10_15_x86_64",
    "windows-x64": "win_amd64",
}


@pytest.fixture
def manifest():
    """The project's manifest as parsed by tomllib (a fresh copy per test)."""
    with open(os.path.join(ROOT, ext.MANIFEST), "rb") as f:
        return tomllib.load(f)


def problems_for(data, field, archive_names=None):
    problems = ext.validate_manifest(data, archive_names=archive_names)
    assert problems, f"an invalid {field} was accepted"
    named = [p for p in problems if p.startswith(f"{field}:")]
    assert named, f"no problem names {field!r}: {problems}"
    return named


# --------------------------------------------------------------------------------------------
# The validator

def test_project_manifest_is_valid(manifest):
    assert ext.validate_manifest(manifest) == []
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["type"] == "add-on"
    import blender_zdepth

    assert manifest["version"] == blender_zdepth.__version__


def test_minimal_manifest_is_valid():
    data = {
        "schema_version": "1.0.0", "id": "my_addon", "version": "1.0.0-beta.2+build.5",
        "name": "My Add-on", "tagline": "Does one thing well (EXR)", "maintainer": "Jo <jo@x.org>",
        "type": "add-on", "license": ["SPDX:GPL-3.0-or-later"], "blender_version_min": "4.2.0",
    }
    assert ext.validate_manifest(data) == []


INVALID = [
    # (field, value or DELETE, words the message must contain)
    ("schema_version", "1.0", "semantic version"),
    ("id", "z-depth", "identifier"),
    ("id", "_zdepth", "'_'"),
    ("id", "zdepth_", "'_'"),
    ("id", "z__depth", "'__'"),
    ("id", 7, "string"),
    ("version", "0.1", "semantic version"),
    ("version", "v0.1.0", "semantic version"),
    ("version", "01.0.0", "semantic version"),
    ("name", "", "empty"),
    ("name", " Z-Depth", "white space"),
    ("tagline", "x" * 65, "64"),
    ("tagline", "Exact Z-depth as log EXR.", "punctuation"),
    ("tagline", "Depth!", "punctuation"),
    ("tagline", "Two\nlines", "control"),
    ("maintainer", "DELETE", "missing"),
    ("maintainer", "   ", "empty"),
    ("type", "addon", "add-on"),
    ("license", "SPDX:GPL-3.0-or-later", "list"),
    ("license", ["GPL-3.0-or-later"], "SPDX:"),
    ("license", [], "empty"),
    ("blender_version_min", "4.2", "three numbers"),
    ("blender_version_min", "4.2.x", "numbers"),
    ("blender_version_min", "4.1.0", "4.2.0"),
    ("blender_version_min", "DELETE", "missing"),
    ("blender_version_max", "4.2.0", "above"),
    ("blender_version_max", "5", "three numbers"),
    ("permissions", {"files": "Writes depth files."}, "punctuation"),
    ("permissions", {"files": "x" * 65}, "64"),
    ("permissions", {"disk": "Writes depth files"}, "unknown permission"),
    ("permissions", {"files": True}, "string"),
    ("permissions", ["files"], "table"),
    ("platforms", ["linux-x86_64"], "unknown platform"),
    ("platforms", [], "empty"),
    ("platforms", ["linux-x64", "linux-x64"], "more than once"),
    ("tags", ["Rendering"], "unknown tag"),
    ("website", "github.com/blender-zdepth", "http"),
    ("copyright", ["Blender developers"], "year"),
    ("wheels", ["wheels/openexr-3.5.3-cp311-cp311-win_amd64.whl"], "'./'"),
    ("wheels", ["./wheels/openexr.whl"], "wheel file names"),
    ("wheels", ["./wheels\\openexr-3.5.3-cp311-cp311-win_amd64.whl"], "'/'"),
    ("wheels", ["./wheels/openexr-3.5.3-cp311-cp311-win_amd64.zip"], ".whl"),
    ("wheels", ["./../openexr-3.5.3-cp311-cp311-win_amd64.whl"], "inside the archive"),
    ("wheels", ["./wheels/openexr-3.5.3-cp311-cp311-win_arm64.whl"], "declared platforms"),
    ("build", {"paths": ["a.py"], "paths_exclude_pattern": ["*.pyc"]}, "not both"),
    ("build", {"paths": ["../outside.py"]}, "inside the project"),
    ("build", {"paths_exclude_pattern": "*.pyc"}, "list of strings"),
    ("build", {"exclude": ["*.pyc"]}, "unknown key"),
    ("descripton", "A typo of a key", "unknown key"),
]


@pytest.mark.parametrize("field, value, words", INVALID, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(INVALID)])
def test_invalid_manifest_is_refused_naming_the_field(manifest, field, value, words):
    data = copy.deepcopy(manifest)
    if value == "DELETE":
        del data[field]
    else:
        data[field] = value
    messages = problems_for(data, field)
    assert any(words in m for m in messages), messages


def test_wheels_must_exist_in_the_archive(manifest):
    wheel = "./wheels/openexr-3.5.3-cp311-cp311-win_amd64.whl"
    data = dict(manifest, wheels=[wheel])
    names = [ext.MANIFEST, "__init__.py"]
    assert "not in the archive" in problems_for(data, "wheels", archive_names=names)[0]
    assert ext.validate_manifest(data, archive_names=names + [wheel[2:]]) == []


def test_all_problems_are_listed_at_once(manifest):
    data = dict(manifest, tagline="Too loud!", version="1", platforms=["amiga-68k"])
    problems = ext.validate_manifest(data)
    assert sorted(p.partition(":")[0] for p in problems) == ["platforms", "tagline", "version"]


def test_wheel_platforms():
    assert ext.wheel_platforms("openexr-3.5.3-cp311-cp311-manylinux_2_28_x86_64.whl") == ["linux-x64"]
    assert ext.wheel_platforms("a-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl") == ["linux-x64"]
    assert ext.wheel_platforms("a-1-cp311-cp311-manylinux2014_aarch64.whl") == ["linux-arm64"]
    assert ext.wheel_platforms("a-1-cp311-cp311-macosx_10_15_x86_64.whl") == ["macos-x64"]
    assert ext.wheel_platforms("a-1-cp311-cp311-macosx_11_0_arm64.whl") == ["macos-arm64"]
    assert ext.wheel_platforms("a-1-cp311-cp311-macosx_10_9_universal2.whl") == ["macos-x64", "macos-arm64"]
    assert ext.wheel_platforms("a-1-cp311-cp311-win_amd64.whl") == ["windows-x64"]
    assert ext.wheel_platforms("a-1-py3-none-any.whl") == ["any"]


def test_openexr_pin_is_the_one_of_build_py():
    name, version = ext.openexr_requirement()
    assert name == "OpenEXR"
    spec = importlib.util.spec_from_file_location("zdepth_build_py", os.path.join(ROOT, "build.py"))
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for requirements in build.REQUIREMENTS.values():
        assert f"OpenEXR=={version}" in requirements


def test_check_command_lists_every_problem(tmp_path, capsys):
    bad = tmp_path / ext.MANIFEST
    text = open(os.path.join(ROOT, ext.MANIFEST), encoding="utf-8").read()
    text = text.replace('version = "0.1.0"', 'version = "0.1"')
    text = text.replace('type = "add-on"', 'type = "addon"')
    bad.write_text(text, encoding="utf-8")
    assert ext.main(["--check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "version: must be a semantic version" in err
    assert "type: must be one of" in err
    assert "Nothing was built" in err
    assert ext.main(["--check", os.path.join(ROOT, ext.MANIFEST)]) == 0

    bad.write_text("id = [unclosed", encoding="utf-8")
    assert ext.main(["--check", str(bad)]) == 1
    assert "not valid TOML" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# The zip layout (fake wheels: small real zip files with real wheel names)

def fake_wheels(folder):
    folder.mkdir(exist_ok=True)
    paths = []
    for tag in FAKE_WHEEL_TAGS.values():
        path = folder / f"openexr-3.5.3-cp311-cp311-{tag}.whl"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("OpenEXR.py", f"# fake wheel for {tag}\n")
        paths.append(str(path))
    return paths


def package_copy(tmp_path):
    """A copy of blender_zdepth/ with the litter a working tree has: caches, hidden files."""
    import shutil

    dest = tmp_path / "pkg"
    shutil.copytree(os.path.join(ROOT, ext.PACKAGE), dest,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (dest / "__pycache__").mkdir()
    (dest / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"\0" * 16)
    (dest / "core" / "stale.pyc").write_bytes(b"\0" * 16)
    (dest / ".DS_Store").write_bytes(b"x")
    return dest


def source_files(package_dir):
    out = set()
    for folder, dirs, names in os.walk(package_dir):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            if not name.endswith(".pyc") and not name.startswith("."):
                out.add(os.path.relpath(os.path.join(folder, name), package_dir).replace(os.sep, "/"))
    return out


def test_zip_layout(tmp_path):
    pkg = package_copy(tmp_path)
    wheels = fake_wheels(tmp_path / "wheels")
    out = tmp_path / "dist" / "blender_zdepth-0.1.0.zip"
    assert ext.build_zip(str(out), os.path.join(ROOT, ext.MANIFEST), str(pkg), wheels) == str(out)

    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        archive_manifest = tomllib.loads(zf.read(ext.MANIFEST).decode())
    assert ext.MANIFEST in names and "__init__.py" in names
    assert not any(n.startswith(ext.PACKAGE + "/") for n in names), "package must be at the root"
    assert not any("__pycache__" in n or n.endswith(".pyc") or "/." in "/" + n for n in names)
    package_names = {n for n in names if n != ext.MANIFEST and not n.startswith("wheels/")}
    assert package_names == source_files(pkg)
    # The Flamenco job type ships as it is in the package (farm flamenco writes the same bytes).
    assert "farm/zdepth_render_refocus.js" in names
    with zipfile.ZipFile(out) as zf:
        assert zf.read("farm/zdepth_render_refocus.js") == (
            pkg / "farm" / "zdepth_render_refocus.js").read_bytes()
    listed = archive_manifest["wheels"]
    assert sorted(w[2:] for w in listed) == sorted(n for n in names if n.startswith("wheels/"))
    assert sorted(os.path.basename(w) for w in listed) == sorted(os.path.basename(w) for w in wheels)
    with open(os.path.join(ROOT, ext.MANIFEST), "rb") as f:
        source = tomllib.load(f)
    assert {k: v for k, v in archive_manifest.items() if k != "wheels"} == {
        k: v for k, v in source.items() if k != "wheels"}
    assert ext.validate_archive(str(out)) == []
    assert os.listdir(out.parent) == [out.name], "temporary files left behind"
    assert (os.stat(out).st_mode & 0o777) != 0o600


def test_invalid_manifest_builds_nothing_and_keeps_the_old_zip(tmp_path):
    pkg = package_copy(tmp_path)
    wheels = fake_wheels(tmp_path / "wheels")
    out = tmp_path / "dist" / "blender_zdepth-0.1.0.zip"
    ext.build_zip(str(out), os.path.join(ROOT, ext.MANIFEST), str(pkg), wheels)
    before = out.read_bytes()

    bad = tmp_path / ext.MANIFEST
    text = open(os.path.join(ROOT, ext.MANIFEST), encoding="utf-8").read()
    bad.write_text(text.replace("tagline = \"", "tagline = \"Loud. "
                                ).replace("Import-Export", "Imports"), encoding="utf-8")
    with pytest.raises(ext.ManifestError) as info:
        ext.build_zip(str(out), str(bad), str(pkg), wheels)
    assert sorted(p.partition(":")[0] for p in info.value.problems) == ["tagline", "tags"]
    assert out.read_bytes() == before
    assert os.listdir(out.parent) == [out.name]


def test_version_mismatch_is_refused(tmp_path):
    pkg = package_copy(tmp_path)
    init = pkg / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9.'))
    with pytest.raises(ext.ManifestError, match="version: the manifest says"):
        ext.build_zip(str(tmp_path / "x.zip"), os.path.join(ROOT, ext.MANIFEST), str(pkg),
                      fake_wheels(tmp_path / "wheels"))
    assert not (tmp_path / "x.zip").exists()


def test_validate_archive_finds_bad_layouts(tmp_path):
    good = tmp_path / "good.zip"
    ext.build_zip(str(good), os.path.join(ROOT, ext.MANIFEST), str(package_copy(tmp_path)),
                  fake_wheels(tmp_path / "wheels"))

    def rewrite(name, skip=(), extra=()):
        path = tmp_path / name
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
            for item in src.namelist():
                if item not in skip:
                    dst.writestr(item, src.read(item))
            for item, data in extra:
                dst.writestr(item, data)
        return ext.validate_archive(str(path))

    wheel = [n for n in zipfile.ZipFile(good).namelist() if n.endswith("win_amd64.whl")][0]
    assert any(p.startswith("wheels:") and "not in the archive" in p for p in rewrite("a.zip", skip=[wheel]))
    assert any("__init__.py" in p for p in rewrite("b.zip", skip=["__init__.py"]))
    assert any("compiled Python" in p for p in rewrite("c.zip", extra=[("core/__pycache__/x.pyc", b"")]))
    assert any("not listed" in p for p in rewrite("d.zip", extra=[("wheels/x-1-py3-none-any.whl", b"")]))
    assert any(ext.MANIFEST in p for p in rewrite("e.zip", skip=[ext.MANIFEST]))
    assert any("farm/zdepth_render_refocus.js is missing" in p
               for p in rewrite("g.zip", skip=["farm/zdepth_render_refocus.js"]))
    (tmp_path / "f.zip").write_bytes(b"not a zip")
    assert ext.validate_archive(str(tmp_path / "f.zip"))[0].startswith("archive:")


# --------------------------------------------------------------------------------------------
# Blender's own validator agrees (it ships inside the bpy wheel; no bpy import needed)

def blender_ext_validator():
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("bpy is not installed")
    base = spec.submodule_search_locations[0]
    for version in sorted(os.listdir(base), reverse=True):
        scripts = os.path.join(base, version, "scripts")
        cli = os.path.join(scripts, "addons_core", "bl_pkg", "cli", "blender_ext.py")
        tags = os.path.join(scripts, "modules", "_bpy_internal", "extensions", "tags.py")
        if os.path.exists(cli):
            return cli, tags
    pytest.fail(f"no bl_pkg/cli/blender_ext.py under {base}")


def blender_validate(path):
    cli, tags = blender_ext_validator()
    done = subprocess.run([sys.executable, cli, "validate", str(path), f"--valid-tags={tags}"],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


# Invalid manifests that Blender's own strict validation refuses too.
BLENDER_ALSO_REFUSES = [
    ("tagline", "Exact Z-depth as log EXR."), ("id", "z-depth"), ("version", "0.1"),
    ("blender_version_min", "4.2"), ("permissions", {"files": "Writes depth files."}),
    ("type", "addon"), ("tags", ["Rendering"]),
]


@pytest.mark.blender
def test_blender_validator_accepts_our_zip_and_agrees_on_refusals(tmp_path):
    pkg = package_copy(tmp_path)
    wheels = fake_wheels(tmp_path / "wheels")
    good = tmp_path / "good.zip"
    ext.build_zip(str(good), os.path.join(ROOT, ext.MANIFEST), str(pkg), wheels)
    code, out = blender_validate(good)
    assert code == 0, out

    text = open(os.path.join(ROOT, ext.MANIFEST), encoding="utf-8").read()
    for field, value in BLENDER_ALSO_REFUSES:
        with zipfile.ZipFile(good) as zf:
            data = tomllib.loads(zf.read(ext.MANIFEST).decode())
        data[field] = value
        assert ext.validate_manifest(data, archive_names=None), field
        # The same change written into a zip, for Blender's validator.
        lines = [line for line in text.splitlines() if not line.startswith(field + " =")]
        toml_value = json.dumps(value) if not isinstance(value, dict) else None
        if toml_value is None:  # [permissions] table: replace its line
            lines = [l if not l.startswith("files =") else f"files = {json.dumps(value['files'])}"
                     for l in lines]
        else:
            lines.insert(1, f"{field} = {toml_value}")
        bad = tmp_path / f"bad-{field}.zip"
        with zipfile.ZipFile(bad, "w") as zf:
            zf.writestr(ext.MANIFEST, "\n".join(lines) + "\n")
            zf.writestr("__init__.py", "")
        code, out = blender_validate(bad)
        assert code != 0, f"Blender accepted {field} = {value!r}: {out}"
        assert field in out, out


# --------------------------------------------------------------------------------------------
# Integration: install the real zip into a fresh Blender's user extension repository

INSTALL_SCRIPT = textwrap.dedent('''
    import json, os, sys
    sys.path.insert(0, sys.argv[-2])            # tests/ (for bpy_state only)
    import bpy, bpy_state

    zip_path = sys.argv[-1]
    MODULE = "bl_ext.user_default.blender_zdepth"
    report = {"errors": []}
    assert "blender_zdepth" not in sys.modules, "the repository's package leaked into the test"

    repos = {r.module: r for r in bpy.context.preferences.extensions.repos}
    report["repo_dir"] = repos["user_default"].directory
    clean = bpy_state.snapshot(bpy)

    result = bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True)
    report["install"] = sorted(result)
    report["enabled"] = MODULE in bpy.context.preferences.addons
    report["ops"] = sorted(dir(bpy.ops.zdepth))
    report["types_added"] = sorted(set(dir(bpy.types)) - set(clean["types"]))
    classes = bpy_state.package_classes(bpy, MODULE)
    report["classes"] = {n: bool(c.is_registered) for n, c in classes.items()}
    report["meant"] = sorted(n for n, c in classes.items() if bpy_state.meant_to_register(c, bpy))
    report["panel_context"] = getattr(getattr(bpy.types, "RENDER_PT_zdepth", None), "bl_context", None)
    site = os.path.join(bpy.utils.user_resource("EXTENSIONS"), ".local", "lib",
                        "python%d.%d" % sys.version_info[:2], "site-packages")
    report["site_packages"] = sorted(os.listdir(site)) if os.path.isdir(site) else []
    enabled = bpy_state.snapshot(bpy)

    result = bpy.ops.preferences.addon_disable(module=MODULE)
    report["disable"] = sorted(result)
    report["disabled_differences"] = bpy_state.differences(clean, bpy_state.snapshot(bpy))
    report["left_registered"] = sorted(n for n, c in classes.items() if c.is_registered)

    # Enable again through Blender's own add-on path, then disable: same state each time.
    bpy.ops.preferences.addon_enable(module=MODULE)
    report["reenabled_differences"] = bpy_state.differences(enabled, bpy_state.snapshot(bpy))
    bpy.ops.preferences.addon_disable(module=MODULE)
    report["redisabled_differences"] = bpy_state.differences(clean, bpy_state.snapshot(bpy))

    result = bpy.ops.extensions.package_uninstall(repo_index=list(repos).index("user_default"),
                                                  pkg_id="blender_zdepth")
    report["uninstall"] = sorted(result)
    report["files_left"] = os.path.exists(os.path.join(report["repo_dir"], "blender_zdepth"))
    print("REPORT " + json.dumps(report), flush=True)
    # Skip interpreter teardown: bpy 4.5 can hang at exit when an add-on leaked a handler, and
    # what was left behind is already in the report.
    os._exit(0)
''')


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory):
    """``python3 build.py extension`` into a temporary dist/ (wheels cached in .cache/wheels)."""
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "build.py"), "extension",
                           "--dist", str(dist)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    import blender_zdepth

    name = f"blender_zdepth-{blender_zdepth.__version__}.zip"
    assert os.listdir(dist) == [name], "exactly the zip, no temporary files"
    assert f"built {dist / name}" in done.stdout and "MiB" in done.stdout, done.stdout
    return dist / name


@pytest.mark.slow
def test_real_build_ships_one_openexr_wheel_per_platform(built_zip):
    with zipfile.ZipFile(built_zip) as zf:
        data = tomllib.loads(zf.read(ext.MANIFEST).decode())
        names = zf.namelist()
    assert ext.validate_archive(str(built_zip)) == []
    by_platform = {}
    for wheel in data["wheels"]:
        name = os.path.basename(wheel)
        assert name.startswith("openexr-3.5.3-cp311-cp311-"), name
        for platform in ext.wheel_platforms(name):
            by_platform.setdefault(platform, []).append(name)
    assert sorted(by_platform) == sorted(data["platforms"]) == sorted(FAKE_WHEEL_TAGS)
    assert all(len(v) == 1 for v in by_platform.values()), by_platform
    assert len([n for n in names if n.endswith(".whl")]) == 4
    with zipfile.ZipFile(built_zip) as zf:
        with open(os.path.join(ROOT, ext.PACKAGE, "farm", "zdepth_render_refocus.js"), "rb") as f:
            assert zf.read("farm/zdepth_render_refocus.js") == f.read()
    with zipfile.ZipFile(built_zip) as zf:  # each wheel is itself a readable zip with OpenEXR
        import io

        for wheel in data["wheels"]:
            inner = zipfile.ZipFile(io.BytesIO(zf.read(wheel[2:]))).namelist()
            assert any(n.startswith("OpenEXR") for n in inner), wheel


@pytest.mark.blender
@pytest.mark.slow
def test_install_enable_disable_in_blender(built_zip, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLENDER_", "PYTHON"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"),
               BLENDER_USER_RESOURCES=str(home / "blender"))
    script = tmp_path / "install_probe.py"
    script.write_text(INSTALL_SCRIPT)
    done = subprocess.run([sys.executable, str(script), TESTS, str(built_zip)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    lines = [l for l in done.stdout.splitlines() if l.startswith("REPORT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT "):])

    # Installed where we asked, never in the real home.
    assert report["repo_dir"].startswith(str(home)), report["repo_dir"]
    assert report["install"] == ["FINISHED"] and report["enabled"]
    # The wheel for this platform was installed beside the extensions.
    assert any(n.startswith("OpenEXR") for n in report["site_packages"]), report["site_packages"]

    # Every class meant to be registered is, and the public names exist.
    not_registered = [n for n in report["meant"] if not report["classes"][n]]
    assert not_registered == [], not_registered
    assert "setup_passes" in report["ops"], report["ops"]
    assert "RENDER_PT_zdepth" in report["types_added"], report["types_added"]
    assert report["panel_context"] == "render"

    # Disabled cleanly: nothing left (classes, properties, handlers, menu entries).
    assert report["disable"] == ["FINISHED"]
    assert report["disabled_differences"] == []
    assert report["left_registered"] == []
    assert report["reenabled_differences"] == []
    assert report["redisabled_differences"] == []
    assert report["uninstall"] == ["FINISHED"] and not report["files_left"]
