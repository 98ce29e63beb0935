"""The Blender extension, built by Blender's own tool, installed and used in real bpy.

* ``tools.extension.build`` with the running bpy's ``blender_ext.py``: one zip per platform
  (``--split-platforms``), each validated by Blender and holding the OpenEXR wheels of its platform
  for every Python a supported Blender runs (cp311: 4.2-5.0, cp313: 5.1+).
* The zip of this machine's platform is installed with ``extensions.package_install_files`` in a
  fresh Blender process whose user folders live in a temporary directory, enabled, and a tiny
  frame rendered with Export on render writes its depth EXR; then disabled and uninstalled.
* ``build.py repo``'s folder added as a repository: installed from it, and a newer version
  written there later is offered as an update (Blender's own count) and installed.
* build.py's refusals: a Blender older than the manifest's minimum, a Python that is missing.

Everything runs on the running bpy, so ``python3 build.py test --blender 4.5 / 5.0 / 5.3`` each
check their own Blender.
"""

import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from tools import extension

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "extension_probe.py")
WHEEL_CACHE = os.path.join(ROOT, ".cache", "wheels")
PLATFORM_WHEEL_ENDS = {
    "linux-x64": "manylinux_2_28_x86_64.whl",
    "macos-arm64": "macosx_11_0_arm64.whl",
    "macos-x64": "macosx_10_15_x86_64.whl",
    "windows-x64": "win_amd64.whl",
}


def load_build_py():
    spec = importlib.util.spec_from_file_location("zdepth_build_py", os.path.join(ROOT, "build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = load_build_py()
OPENEXR = BUILD._openexr()
PYTHONS = BUILD._wheel_pythons()


def tool():
    """Blender's blender_ext.py of the running environment (the bpy wheel ships it)."""
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("bpy is not installed")
    return extension.blender_ext_tool(sys.prefix)


def build_into(out, root=ROOT, do=extension.build):
    return do(sys.executable, tool(), str(out), OPENEXR, PYTHONS, WHEEL_CACHE, root=root)


def this_platform():
    machine = platform.machine().lower()
    arch = "arm64" if machine in ("arm64", "aarch64") else "x64"
    system = {"linux": "linux", "darwin": "macos", "win32": "windows"}[sys.platform]
    return f"{system}-{arch}"


def copy_with_version(tmp_path, version):
    """A copy of the project's manifest and package with ``version`` in both."""
    root = tmp_path / f"src-{version}"
    shutil.copytree(os.path.join(ROOT, extension.PACKAGE), root / extension.PACKAGE,
                    ignore=shutil.ignore_patterns("__pycache__"))
    init = root / extension.PACKAGE / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "0.1.0"', f'__version__ = "{version}"'))
    text = open(os.path.join(ROOT, extension.MANIFEST), encoding="utf-8").read()
    (root / extension.MANIFEST).write_text(text.replace('version = "0.1.0"', f'version = "{version}"'))
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    return build_into(out)


# --------------------------------------------------------------------------------------------
# The build

@pytest.mark.blender
def test_one_validated_zip_per_platform_with_its_wheels_for_every_python(built):
    with open(os.path.join(ROOT, extension.MANIFEST), "rb") as f:
        manifest = tomllib.load(f)
    version = manifest["version"]
    assert manifest["wheels"] == [], "the source manifest leaves the wheels to the build"
    assert sorted(os.path.basename(z) for z in built) == sorted(
        f"blender_zdepth-{version}-{p.replace('-', '_')}.zip" for p in manifest["platforms"])
    pin = OPENEXR.partition("==")[2]
    for path in built:
        plat = next(p for p in manifest["platforms"] if path.endswith(p.replace("-", "_") + ".zip"))
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            inner = tomllib.loads(zf.read(extension.MANIFEST).decode())
        wheels = sorted(n for n in names if n.endswith(".whl"))
        expected = sorted(f"wheels/openexr-{pin}-cp{py.replace('.', '')}-cp{py.replace('.', '')}-"
                          f"{PLATFORM_WHEEL_ENDS[plat]}" for py in ("3.11", "3.13"))
        assert wheels == expected, (path, wheels)
        assert sorted(w[2:] for w in inner["build"]["generated"]["wheels"]) == expected
        assert inner["build"]["generated"]["platforms"] == [plat]
        assert "__init__.py" in names and "farm/zdepth_render_refocus.js" in names
        assert "commands/font5x7.txt" in names  # data files travel with the code
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        done = subprocess.run([sys.executable, tool(), "validate", path], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        with zipfile.ZipFile(path) as zf:  # each wheel is a real OpenEXR wheel
            import io

            for wheel in wheels:
                assert any(n.startswith("OpenEXR") for n in
                           zipfile.ZipFile(io.BytesIO(zf.read(wheel))).namelist()), wheel


@pytest.mark.blender
def test_an_invalid_manifest_is_refused_by_blender_and_nothing_is_placed(tmp_path):
    root = copy_with_version(tmp_path, "0.1.0")
    manifest = root / extension.MANIFEST
    manifest.write_text(manifest.read_text().replace('tagline = "Exact', 'tagline = "Loud. Exact')
                        .replace('", "Import-Export"', '", "Imports"'))
    out = tmp_path / "out"
    out.mkdir()
    (out / "blender_zdepth-0.0.9-linux_x64.zip").write_bytes(b"older")
    with pytest.raises(extension.BuildError, match="Blender's extension tool refused"):
        build_into(out, root=str(root))
    assert os.listdir(out) == ["blender_zdepth-0.0.9-linux_x64.zip"]


@pytest.mark.blender
def test_a_version_that_differs_from_the_package_is_refused(tmp_path):
    root = copy_with_version(tmp_path, "0.2.0")
    init = root / extension.PACKAGE / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "0.2.0"', '__version__ = "0.3.0"'))
    with pytest.raises(extension.BuildError, match="make them agree"):
        build_into(tmp_path / "out", root=str(root))


# --------------------------------------------------------------------------------------------
# build.py's refusals (one line, exit 2)

def run_build_py(*args, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "build.py"), *args],
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("version, words", [
    ("4.1", "older than the extension's minimum, 4.2.0"),
    ("3.6", "older than the extension's minimum"),
    ("4.7", "no pinned bpy for Blender 4.7: choose one of 5.3, 5.0, 4.5"),
    ("five", "give a version such as 5.3"),
])
def test_a_blender_build_py_cannot_test_is_one_line_exit_2(version, words):
    done = run_build_py("test", "--blender", version)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
    assert done.stdout == ""


def test_newest_blender_is_the_default_and_each_has_its_python():
    assert BUILD.NEWEST == "5.3"
    assert BUILD.PYTHONS == {"5.3": "3.13", "5.0": "3.11", "4.5": "3.11"}
    assert BUILD._wheel_pythons() == ["3.11", "3.13"]
    assert OPENEXR == "OpenEXR==3.5.3"
    for blender, reqs in BUILD.REQUIREMENTS.items():
        assert reqs[0] == f"bpy=={blender}" or reqs[0].startswith(f"bpy=={blender}.")


def fake_python(path, prints, code=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {prints}\nexit {code}\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.skipif(os.name == "nt", reason="shell-script stand-ins for interpreters")
def test_find_python_skips_a_shim_that_does_not_run_and_finds_pyenvs(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    fake_python(bin_dir / "python3.97", "pyenv: python3.97: command not found", code=127)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    assert BUILD.find_python("3.97") is None
    fake_python(tmp_path / "pyenv" / "versions" / "3.97.0t" / "bin" / "python3.97", "3.97")
    older = fake_python(tmp_path / "pyenv" / "versions" / "3.97.1" / "bin" / "python3.97", "3.97")
    newer = fake_python(tmp_path / "pyenv" / "versions" / "3.97.10" / "bin" / "python3.97", "3.97")
    assert BUILD.find_python("3.97") == [newer]
    os.remove(newer)
    assert BUILD.find_python("3.97") == [older]
    fake_python(bin_dir / "python3.97", "3.97")  # a working one on PATH comes first
    assert BUILD.find_python("3.97") == [str(bin_dir / "python3.97")]
    here = "%d.%d" % sys.version_info[:2]
    assert BUILD.find_python(here) == [sys.executable]


def test_a_missing_python_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(BUILD.PYTHONS, "5.3", "3.97")
    monkeypatch.setitem(BUILD.VENVS, "5.3", str(tmp_path / "venv"))  # absolute: joins to itself
    monkeypatch.setattr(BUILD, "find_python", lambda version: None)
    with pytest.raises(SystemExit) as info:
        BUILD.main(["test", "--blender", "5.3"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Blender 5.3 needs Python 3.97" in err and "python3.97" in err
    assert not (tmp_path / "venv").exists()


# --------------------------------------------------------------------------------------------
# In Blender: install the zip, render with Export on render; a studio repository and its update

def run_probe(tmp_path, *args):
    """Run tests/extension_probe.py in a fresh process whose user folders are under tmp_path."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLENDER_", "PYTHON"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"), APPDATA=str(home / "appdata"),
               BLENDER_USER_RESOURCES=str(home / "blender"))
    done = subprocess.run([sys.executable, PROBE, *map(str, args)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT "):])
    assert report["errors"] == [], report["errors"][0] + done.stdout[-2000:]
    assert all(d.startswith(str(home)) for d in report["user_dirs"]), report["user_dirs"]
    return report


@pytest.mark.blender
@pytest.mark.slow
def test_install_the_zip_enable_render_with_export_and_uninstall(built, tmp_path):
    (zip_path,) = [z for z in built if z.endswith(this_platform().replace("-", "_") + ".zip")]
    report = run_probe(tmp_path, "install-file", zip_path, tmp_path / "depth")
    assert report["install"] == ["FINISHED"] and report["enabled"], report
    # The wheel of this Blender's Python was installed beside the extensions.
    assert any(n.startswith("OpenEXR") for n in report["site_packages"]), report["site_packages"]
    assert report["openexr_from"].startswith(report["extensions_dir"]), report["openexr_from"]
    assert report["render"] == ["FINISHED"]
    assert report["written"] == ["zdepth_0001.exr"], report["written"]
    assert "Z" in report["channels"], report["channels"]  # read back with the wheel's OpenEXR
    assert report["disable"] == ["FINISHED"] and report["uninstall"] == ["FINISHED"]
    assert not report["files_left"]


@pytest.mark.blender
@pytest.mark.slow
def test_a_studio_repository_installs_and_offers_a_newer_version(tmp_path):
    repo = tmp_path / "repo"
    build_into(repo, do=extension.repo)
    assert (repo / "index.json").exists()
    listed = json.loads((repo / "index.json").read_text())["data"]
    assert {d["id"] for d in listed} == {"blender_zdepth"}

    first = run_probe(tmp_path, "repo-install", repo)
    assert first["sync"] == ["FINISHED"] and first["install"] == ["FINISHED"], first
    assert first["enabled"] and first["installed_version"] == "0.1.0"
    assert first["outdated"] == 0

    build_into(repo, root=str(copy_with_version(tmp_path, "0.1.1")), do=extension.repo)
    assert sorted(os.listdir(repo))[0].startswith("blender_zdepth-0.1.1-")
    second = run_probe(tmp_path, "repo-update", repo)
    assert second["installed_version"] == "0.1.0" and second["outdated"] == 1, second
    assert second["upgrade"] == ["FINISHED"]
    assert second["upgraded_version"] == "0.1.1"
    assert second["enable"] == ["FINISHED"] and second["running_version"] == "0.1.1"
