"""Build and validate the Blender extension zip of blender_zdepth (standard library only).

``python3 build.py extension`` calls :func:`main`. It

1. reads ``blender_manifest.toml`` and refuses to go on when it is not valid (all problems are
   listed, each naming its field);
2. fetches the OpenEXR wheels for CPython 3.11 on every platform the manifest declares (pip
   ``download``, cached under ``.cache/wheels/<platform>/``; nothing is fetched when the cache has
   them);
3. writes ``dist/blender_zdepth-<version>.zip`` atomically: the manifest (with its ``wheels`` list
   filled in) and the files of the ``blender_zdepth`` package at the archive root, the wheels under
   ``wheels/``; the archive is read back and validated before it takes its final name.

The validation follows the rules of Blender's ``blender --command extension validate`` (strict
mode), plus a few it leaves to the extensions platform or to install time: licenses are ``SPDX:``
identifiers, platforms come from Blender's known set, wheel paths exist in the archive and suit a
declared platform, unknown keys are errors.

Public API (used by ``build.py`` and the tests):

* :func:`validate_manifest` ``(data, archive_names=None) -> list[str]``
* :func:`validate_archive` ``(zip_path) -> list[str]``
* :func:`load_manifest` ``(path) -> dict`` (raises :class:`ManifestError`)
* :func:`fetch_wheels` ``(platforms, cache_dir, requirement=None, offline=False) -> dict``
* :func:`build_zip` ``(out_path, manifest_path, package_dir, wheel_files) -> str``
* :func:`build` ``(root=ROOT, dist_dir=None, cache_dir=None, offline=False) -> str``
* :func:`main` ``(argv=None) -> int``
"""

import argparse
import ast
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    sys.exit(f"build.py extension: error: Python 3.11 or later is needed (tomllib); this is "
             f"{sys.version.split()[0]}. Run it as 'python3.11 build.py extension'.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "blender_zdepth"
MANIFEST = "blender_manifest.toml"
WHEELS_DIR = "wheels"
#: Files of the package that are not Python but must ship (checked in every built archive).
SHIPPED_FILES = (
    "farm/zdepth_render_refocus.js",  # the Flamenco 3 job type (docs/farm.md)
)
TMP_MARK = ".zdepth-tmp"

# --------------------------------------------------------------------------------------------
# Rules (after Blender's bl_pkg/cli/blender_ext.py and the extensions manifest documentation)

#: Short texts shown in Blender's UI (tagline, permission reasons).
TERSE_MAX = 64
#: Blender platform -> pip ``--platform`` tag of the wheel to fetch for it.
WHEEL_PLATFORM_TAGS = {
    "linux-x64": "manylinux_2_28_x86_64",
    "macos-arm64": "macosx_11_0_arm64",
    "macos-x64": "macosx_11_0_x86_64",
    "windows-x64": "win_amd64",
}
KNOWN_PLATFORMS = ("windows-x64", "windows-arm64", "macos-x64", "macos-arm64", "linux-x64")
PERMISSION_KEYS = ("files", "network", "clipboard", "camera", "microphone")
TYPES = ("add-on", "theme")
#: Tags accepted by Blender's validator (``_bpy_internal/extensions/tags.py``), per type.
TAGS = {
    "add-on": frozenset({
        "3D View", "Add Curve", "Add Mesh", "Animation", "Bake", "Camera", "Compositing",
        "Development", "Game Engine", "Geometry Nodes", "Grease Pencil", "Import-Export",
        "Lighting", "Material", "Mesh", "Modeling", "Node", "Object", "Paint", "Physics",
        "Pipeline", "Render", "Rigging", "Scene", "Sculpt", "Sequencer", "System", "Text Editor",
        "Tracking", "User Interface", "UV",
    }),
    "theme": frozenset({
        "Accessibility", "Colorful", "Dark", "High Contrast", "Inspired By", "Light", "Print",
    }),
}
#: Extensions exist from Blender 4.2 on.
FIRST_EXTENSIONS_BLENDER = (4, 2, 0)

REQUIRED_KEYS = (
    "schema_version", "id", "version", "name", "tagline", "maintainer", "type", "license",
    "blender_version_min",
)
OPTIONAL_KEYS = (
    "blender_version_max", "website", "copyright", "permissions", "tags", "platforms", "wheels",
    "build",
)
BUILD_KEYS = ("paths", "paths_exclude_pattern", "generated")

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SPDX_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")


class ManifestError(Exception):
    """The manifest (or the archive built from it) is not valid; ``problems`` lists why."""

    def __init__(self, problems, source=MANIFEST):
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source} is not valid ({len(self.problems)} problem(s)):\n{lines}")


class BuildError(Exception):
    """Building the zip failed for a reason other than the manifest (wheels, files)."""


def _log(message):
    print(f"[extension] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# Field checks: each returns None (fine) or a message without the field name.

def _type_name(value):
    return {str: "a string", list: "a list", dict: "a table", int: "an integer",
            float: "a number", bool: "a boolean"}.get(type(value), type(value).__name__)


def _plain_text(value):
    """Non-empty, no leading/trailing white space, no control characters."""
    if not value.strip():
        return "must not be empty"
    if value != value.strip():
        return "must not start or end with white space"
    if _CONTROL.search(value):
        return "must not contain control characters"
    return None


def _terse(value):
    """A short UI text: plain, at most 64 characters, not ending with punctuation."""
    if len(value) > TERSE_MAX:
        return f"must be at most {TERSE_MAX} characters, found {len(value)}"
    if (problem := _plain_text(value)) is not None:
        return problem
    if not (value[-1].isalnum() or value[-1] in ")]}"):
        return f"must not end with punctuation ({value[-1]!r}): end with a letter or digit"
    return None


def _semver(value):
    if not _SEMVER.match(value):
        return f"must be a semantic version like '1.2.3', found {value!r}"
    return None


def _blender_version(value):
    parts = value.split(".")
    if not all(p.isdigit() for p in parts):
        return f"must be numbers separated by single '.', found {value!r}"
    if len(parts) != 3:
        return f"must have three numbers like '4.2.0', found {value!r}"
    return None


def _version_tuple(value):
    return tuple(int(p) for p in value.split("."))


def _string_list(value, allow_empty=False):
    if not value and not allow_empty:
        return "must not be an empty list"
    for i, item in enumerate(value):
        if not isinstance(item, str):
            return f"item {i} must be a string, not {_type_name(item)}"
        if not item.strip():
            return f"item {i} must not be empty"
    return None


def _check_id(value):
    if not value.isidentifier():
        return f"must be a valid Python identifier, found {value!r}"
    if value.startswith("_") or value.endswith("_"):
        return f"must not start or end with '_', found {value!r}"
    if "__" in value:
        return f"must not contain '__', found {value!r}"
    return None


def _check_type(value):
    if value not in TYPES:
        return f"must be one of {', '.join(TYPES)}, found {value!r}"
    return None


def _check_license(value):
    if (problem := _string_list(value)) is not None:
        return problem
    for item in value:
        prefix, _, ident = item.partition(":")
        if prefix != "SPDX" or not _SPDX_ID.match(ident):
            return f"items must be 'SPDX:<identifier>' like 'SPDX:GPL-3.0-or-later', found {item!r}"
    return None


def _check_website(value):
    if (problem := _plain_text(value)) is not None:
        return problem
    if not value.startswith(("http://", "https://")):
        return f"must start with http:// or https://, found {value!r}"
    return None


def _check_copyright(value):
    if (problem := _string_list(value)) is not None:
        return problem
    for i, item in enumerate(value):
        year, _, name = item.partition(" ")
        first, dash, last = year.partition("-")
        if not (first.isdigit() and (not dash or last.isdigit())):
            return f"item {i} must start with a year or 'YEAR-YEAR', found {item!r}"
        if not name.strip():
            return f"item {i} must name the copyright holder after the year, found {item!r}"
    return None


def _check_permissions(value):
    if not isinstance(value, dict):
        return f"must be a table of reasons, e.g. files = \"Write depth EXR files\", not {_type_name(value)}"
    for key, reason in value.items():
        if key not in PERMISSION_KEYS:
            return f"unknown permission {key!r} (known: {', '.join(PERMISSION_KEYS)})"
        if not isinstance(reason, str):
            return f"{key}: the reason must be a string, not {_type_name(reason)}"
        if (problem := _terse(reason)) is not None:
            return f"{key}: the reason {problem}"
    return None


def _check_platforms(value):
    if (problem := _string_list(value)) is not None:
        return problem
    for item in value:
        if item not in KNOWN_PLATFORMS:
            return f"unknown platform {item!r} (known: {', '.join(KNOWN_PLATFORMS)})"
    if len(set(value)) != len(value):
        return "lists a platform more than once"
    return None


def wheel_platforms(wheel_filename):
    """Blender platforms a wheel file suits, from its platform tag (``["any"]`` for pure wheels).

    ``openexr-3.5.3-cp311-cp311-manylinux_2_28_x86_64.whl`` -> ``["linux-x64"]``;
    ``..._macosx_10_9_universal2.whl`` -> ``["macos-x64", "macos-arm64"]``.
    """
    tags = os.path.basename(wheel_filename)[:-len(".whl")].split("-")[-1]
    result = []
    for tag in tags.split("."):
        if tag == "any":
            return ["any"]
        system, _, rest = tag.partition("_")
        machine = rest.rpartition("_")[2] if not rest.endswith("x86_64") else "x86_64"
        if system.startswith(("manylinux", "musllinux", "linux")):
            system = "linux"
        elif system.startswith("macosx"):
            system = "macos"
        elif system.startswith("win"):
            system, machine = "windows", {"": "x86", "amd64": "x64"}.get(rest, rest)
        machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(machine, machine)
        machines = ["x64", "arm64"] if machine == "universal2" else [machine]
        result += [f"{system}-{m}" for m in machines if f"{system}-{m}" not in result]
    return result


def _check_wheels(value, archive_names, platforms):
    if (problem := _string_list(value, allow_empty=True)) is not None:
        return problem
    for path in value:
        if '"' in path or "\\" in path:
            return f"paths must use '/' and no quotes, found {path!r}"
        if _plain_text(path) is not None:
            return f"paths must not have white space or control characters, found {path!r}"
        if not path.startswith("./"):
            return f"paths must be relative to the archive root and start with './', found {path!r}"
        if ".." in path.split("/"):
            return f"paths must stay inside the archive, found {path!r}"
        name = os.path.basename(path)
        if not name.lower().endswith(".whl"):
            return f"paths must end with '.whl', found {path!r}"
        if not 5 <= len(name.split("-")) <= 6:
            return f"wheel file names must follow 'name-version(-build)?-python-abi-platform.whl', found {name!r}"
        if archive_names is not None and path[2:] not in archive_names:
            return f"{path!r} is listed but not in the archive"
        if platforms and isinstance(platforms, list):
            suits = wheel_platforms(name)
            if "any" not in suits and not set(suits) & set(platforms):
                return f"{name!r} is for {', '.join(suits)}, none of the declared platforms"
    if len(set(value)) != len(value):
        return "lists a wheel more than once"
    return None


def _check_build(value):
    if not isinstance(value, dict):
        return f"must be a table, not {_type_name(value)}"
    for key, item in value.items():
        if key not in BUILD_KEYS:
            return f"unknown key {key!r} (known: {', '.join(BUILD_KEYS)})"
        if key == "generated":
            if not isinstance(item, dict):
                return f"generated must be a table, not {_type_name(item)}"
            continue
        if not isinstance(item, list) or _string_list(item) is not None:
            return f"{key} must be a non-empty list of strings"
        for pattern in item:
            if "\\" in pattern:
                return f"{key} must use '/' as separator, found {pattern!r}"
            if key == "paths" and (pattern.startswith("/") or ".." in pattern.split("/")):
                return f"paths must be relative and inside the project, found {pattern!r}"
    if "paths" in value and "paths_exclude_pattern" in value:
        return "declare either paths or paths_exclude_pattern, not both"
    return None


#: key -> (expected type, check(value) -> problem or None)
_FIELDS = {
    "schema_version": (str, _semver),
    "id": (str, _check_id),
    "version": (str, _semver),
    "name": (str, _plain_text),
    "tagline": (str, _terse),
    "maintainer": (str, _plain_text),
    "type": (str, _check_type),
    "license": (list, _check_license),
    "blender_version_min": (str, _blender_version),
    "blender_version_max": (str, lambda v: _blender_version(v) if v else None),
    "website": (str, _check_website),
    "copyright": (list, _check_copyright),
    "permissions": (dict, _check_permissions),
    "tags": (list, lambda v: _string_list(v)),
    "platforms": (list, _check_platforms),
    "wheels": (list, None),  # needs the archive names and platforms: see validate_manifest
    "build": (dict, _check_build),
}


def validate_manifest(data, archive_names=None):
    """Return the problems of a parsed manifest ``data`` (a dict from ``tomllib``); [] when valid.

    Each problem is one line that starts with the field it concerns, e.g.
    ``"tagline: must not end with punctuation ('.'): end with a letter or digit"``.
    ``archive_names``, when given (the names inside the built zip), also checks that every wheel
    listed exists in the archive.
    """
    if not isinstance(data, dict):
        return [f"manifest: must be a TOML table, not {_type_name(data)}"]
    problems = []
    for key in REQUIRED_KEYS:
        if key not in data:
            problems.append(f"{key}: missing (required)")
    for key in data:
        if key not in _FIELDS:
            problems.append(
                f"{key}: unknown key (known: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})"
            )
    for key, (kind, check) in _FIELDS.items():
        if key not in data:
            continue
        value = data[key]
        if not isinstance(value, kind):
            problems.append(f"{key}: must be {_type_name(kind())}, not {_type_name(value)}")
            continue
        if key == "wheels":
            names = None if archive_names is None else set(archive_names)
            problem = _check_wheels(value, names, data.get("platforms"))
        else:
            problem = check(value)
        if problem is not None:
            problems.append(f"{key}: {problem}")

    # Checks across fields, once the fields themselves are fine.
    bad = {p.partition(":")[0] for p in problems}
    if "blender_version_min" in data and "blender_version_min" not in bad:
        low = _version_tuple(data["blender_version_min"])
        if low < FIRST_EXTENSIONS_BLENDER:
            problems.append(
                f"blender_version_min: extensions need Blender 4.2.0 or later, found "
                f"{data['blender_version_min']!r}"
            )
        high = data.get("blender_version_max")
        if high and "blender_version_max" not in bad and _version_tuple(high) <= low:
            problems.append(
                f"blender_version_max: must be above blender_version_min "
                f"({data['blender_version_min']}), found {high!r}"
            )
    if data.get("type") in TAGS and isinstance(data.get("tags"), list) and "tags" not in bad:
        unknown = [t for t in data["tags"] if t not in TAGS[data["type"]]]
        if unknown:
            problems.append(
                f"tags: unknown tag(s) {', '.join(map(repr, unknown))} for type {data['type']!r} "
                f"(known: {', '.join(sorted(TAGS[data['type']]))})"
            )
    return problems


def load_manifest(path):
    """Parse the TOML manifest at ``path``; raise :class:`ManifestError` when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ManifestError([f"manifest: cannot read it ({exc.strerror})"], path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError([f"manifest: not valid TOML ({exc})"], path) from None


def validate_archive(zip_path):
    """Return the problems of a built extension zip (manifest, layout, wheels); [] when valid."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = zf.namelist()
            try:
                text = zf.read(MANIFEST)
            except KeyError:
                return [f"archive: no {MANIFEST} at the archive root"]
            bad = zf.testzip()
    except (OSError, zipfile.BadZipFile) as exc:
        return [f"archive: cannot read {zip_path} as a zip ({exc})"]
    if bad is not None:
        return [f"archive: {bad} is corrupt"]
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return [f"manifest: not valid TOML ({exc})"]
    problems = validate_manifest(data, archive_names=names)
    if data.get("type", "add-on") == "add-on" and "__init__.py" not in names:
        problems.append("archive: no __init__.py at the archive root (Blender imports it)")
    if data.get("id") == PACKAGE:
        for name in SHIPPED_FILES:
            if name not in names:
                problems.append(f"archive: {name} is missing (it ships with {PACKAGE})")
    junk = [n for n in names if "__pycache__/" in n or n.endswith((".pyc", ".pyo"))]
    if junk:
        problems.append(f"archive: holds compiled Python files, e.g. {junk[0]!r}")
    listed = {w[2:] for w in data.get("wheels", []) if isinstance(w, str)}
    present = {n for n in names if n.startswith(WHEELS_DIR + "/") and n.endswith(".whl")}
    for name in sorted(present - listed):
        problems.append(f"wheels: {name!r} is in the archive but not listed in the manifest")
    return problems


# --------------------------------------------------------------------------------------------
# Wheels

def openexr_requirement(root=ROOT):
    """``("OpenEXR", "3.5.3")``: the OpenEXR pin of build.py's REQUIREMENTS (one source of truth)."""
    with open(os.path.join(root, "build.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "REQUIREMENTS" for t in node.targets
        ):
            pins = {
                r.partition("==")[0]: r.partition("==")[2]
                for reqs in ast.literal_eval(node.value).values() for r in reqs
            }
            if pins.get("OpenEXR"):
                return "OpenEXR", pins["OpenEXR"]
    raise BuildError("build.py REQUIREMENTS has no 'OpenEXR==<version>' pin")


def _cached_wheel(folder, name, version, platform):
    prefix = f"{name.lower().replace('-', '_')}-{version}-"
    try:
        entries = sorted(os.listdir(folder))
    except FileNotFoundError:
        return None
    for entry in entries:
        if (entry.lower().startswith(prefix) and entry.endswith(".whl")
                and platform in wheel_platforms(entry) and zipfile.is_zipfile(os.path.join(folder, entry))):
            return os.path.join(folder, entry)
    return None


def _pip_python():
    """A Python that has pip: this one, else build.py's .venv, else a small tool venv."""
    import importlib.util

    if importlib.util.find_spec("pip") is not None:
        return sys.executable
    for candidate in (os.path.join(ROOT, ".venv", "bin", "python"),
                      os.path.join(ROOT, ".venv", "Scripts", "python.exe")):
        if os.path.exists(candidate):
            return candidate
    import venv

    path = os.path.join(ROOT, ".cache", "pip-venv")
    python = os.path.join(path, "Scripts" if os.name == "nt" else "bin", "python")
    if not os.path.exists(python):
        _log("creating .cache/pip-venv (this Python has no pip)")
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return python


def fetch_wheels(platforms, cache_dir, requirement=None, offline=False):
    """Return ``{platform: wheel path}`` with one wheel of ``requirement`` per Blender platform.

    Wheels come from ``cache_dir/<platform>/`` when present; otherwise pip downloads the CPython
    3.11 binary wheel (no dependencies: numpy ships with Blender) into a temporary folder that is
    then moved into the cache, so an interrupted download leaves nothing half-written.
    """
    name, version = requirement or openexr_requirement()
    result = {}
    for platform in platforms:
        if platform not in WHEEL_PLATFORM_TAGS:
            raise BuildError(
                f"no wheel platform tag known for {platform!r}: add it to WHEEL_PLATFORM_TAGS in "
                f"tools/extension.py or remove it from the manifest's platforms"
            )
        folder = os.path.join(cache_dir, platform)
        wheel = _cached_wheel(folder, name, version, platform)
        if wheel is None:
            if offline:
                raise BuildError(f"{name} {version} for {platform} is not in {folder} (--offline)")
            _log(f"downloading {name}=={version} for {platform}")
            os.makedirs(folder, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=TMP_MARK, dir=folder)
            try:
                cmd = [_pip_python(), "-m", "pip", "download", "--quiet",
                       "--disable-pip-version-check", "--only-binary=:all:", "--no-deps",
                       "--python-version", "3.11", "--implementation", "cp",
                       "--platform", WHEEL_PLATFORM_TAGS[platform],
                       f"{name}=={version}", "-d", tmp]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    raise BuildError(
                        f"pip could not download {name}=={version} for {platform} "
                        f"(--platform {WHEEL_PLATFORM_TAGS[platform]}):\n{done.stderr.strip()}"
                    )
                got = _cached_wheel(tmp, name, version, platform)
                if got is None:
                    raise BuildError(f"pip gave no {platform} wheel of {name}=={version}: {os.listdir(tmp)}")
                wheel = os.path.join(folder, os.path.basename(got))
                os.replace(got, wheel)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        result[platform] = wheel
    return result


# --------------------------------------------------------------------------------------------
# The zip

def _excluded(rel_path, is_dir, patterns):
    """True when ``rel_path`` (relative, '/') matches a [build] paths_exclude_pattern."""
    name = rel_path.rsplit("/", 1)[-1]
    for pattern in patterns:
        dir_only = pattern.endswith("/")
        pat = pattern.rstrip("/")
        if dir_only and not is_dir:
            continue
        if pat.startswith("/"):
            if fnmatch.fnmatchcase(rel_path, pat[1:]):
                return True
        elif fnmatch.fnmatchcase(name, pat) or fnmatch.fnmatchcase(rel_path, pat):
            return True
    return False


def package_files(package_dir, exclude_patterns=()):
    """Sorted ``[(archive name, file path)]`` of the package: no caches, no hidden files."""
    patterns = ["__pycache__/", "*.pyc", "*.pyo", ".*", f"*{TMP_MARK}*", *exclude_patterns]
    files = []
    for folder, dirs, names in os.walk(package_dir):
        rel_folder = os.path.relpath(folder, package_dir).replace(os.sep, "/")
        rel_folder = "" if rel_folder == "." else rel_folder + "/"
        dirs[:] = sorted(d for d in dirs if not _excluded(rel_folder + d, True, patterns))
        for name in sorted(names):
            if not _excluded(rel_folder + name, False, patterns):
                files.append((rel_folder + name, os.path.join(folder, name)))
    return files


def manifest_with_wheels(text, wheel_paths):
    """Return the manifest ``text`` with its top-level ``wheels`` list set to ``wheel_paths``."""
    block = "wheels = [\n" + "".join(f'    "{p}",\n' for p in wheel_paths) + "]"
    pattern = re.compile(r"^wheels[ \t]*=[ \t]*\[[^\]]*\]", re.M)
    first_table = re.search(r"^\[", text, re.M)
    match = pattern.search(text)
    if match and (first_table is None or match.start() < first_table.start()):
        new = text[:match.start()] + block + text[match.end():]
    elif first_table is not None:
        new = text[:first_table.start()] + block + "\n\n" + text[first_table.start():]
    else:
        new = text.rstrip("\n") + "\n" + block + "\n"
    if tomllib.loads(new).get("wheels") != list(wheel_paths):
        raise BuildError("could not set the wheels list of the manifest (unexpected layout)")
    return new


def _package_version(package_dir):
    try:
        with open(os.path.join(package_dir, "__init__.py"), encoding="utf-8") as f:
            match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', f.read(), re.M)
    except OSError:
        return None
    return match.group(1) if match else None


def build_zip(out_path, manifest_path, package_dir, wheel_files):
    """Write the extension zip ``out_path`` atomically; return it.

    ``wheel_files``: paths of the wheels to ship (under ``wheels/``, listed in the manifest).
    Raises :class:`ManifestError` (nothing written) when the manifest or the result is not valid.
    """
    with open(manifest_path, encoding="utf-8") as f:
        text = f.read()
    data = load_manifest(manifest_path)
    exclude = (data.get("build") or {}).get("paths_exclude_pattern") or []
    wheel_paths = [f"./{WHEELS_DIR}/{os.path.basename(w)}" for w in wheel_files]
    files = package_files(package_dir, exclude if isinstance(exclude, list) else [])
    names = [MANIFEST, *(n for n, _ in files), *(p[2:] for p in wheel_paths)]

    problems = validate_manifest({**data, "wheels": wheel_paths}, archive_names=names)
    version = _package_version(package_dir)
    if version is not None and isinstance(data.get("version"), str) and version != data["version"]:
        problems.append(
            f"version: the manifest says {data['version']!r} but {PACKAGE}/__init__.py says "
            f"__version__ = {version!r}: make them agree"
        )
    if "__init__.py" not in {n for n, _ in files}:
        problems.append(f"archive: {package_dir} has no __init__.py")
    if problems:
        raise ManifestError(problems, manifest_path)
    archive_text = manifest_with_wheels(text, wheel_paths)

    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(out_path), suffix=TMP_MARK, dir=out_dir)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            def add(name, data_bytes, compress=zipfile.ZIP_DEFLATED):
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = compress
                zf.writestr(info, data_bytes)

            add(MANIFEST, archive_text.encode("utf-8"))
            for name, path in files:
                with open(path, "rb") as f:
                    add(name, f.read())
            for wheel, path in zip(wheel_paths, wheel_files):
                with open(path, "rb") as f:
                    add(wheel[2:], f.read(), zipfile.ZIP_STORED)  # wheels are zips already
        problems = validate_archive(tmp)
        if problems:
            raise ManifestError(problems, out_path)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a build output is not
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return out_path


def build(root=ROOT, dist_dir=None, cache_dir=None, offline=False):
    """Validate the manifest, fetch the wheels and build ``dist/<id>-<version>.zip``; return it."""
    manifest_path = os.path.join(root, MANIFEST)
    data = load_manifest(manifest_path)
    problems = validate_manifest(data)
    if problems:
        raise ManifestError(problems, manifest_path)
    cache_dir = cache_dir or os.path.join(root, ".cache", "wheels")
    wheels = fetch_wheels(data.get("platforms") or [], cache_dir, openexr_requirement(root), offline)
    out = os.path.join(dist_dir or os.path.join(root, "dist"), f"{data['id']}-{data['version']}.zip")
    return build_zip(out, manifest_path, os.path.join(root, PACKAGE), list(wheels.values()))


def main(argv=None):
    """``python3 build.py extension [--dist DIR] [--cache DIR] [--offline] [--check]``."""
    parser = argparse.ArgumentParser(
        prog="python3 build.py extension",
        description="Build the Blender extension zip (manifest + package + OpenEXR wheels).",
    )
    parser.add_argument("--dist", default=os.path.join(ROOT, "dist"),
                        help="output folder (default: dist/)")
    parser.add_argument("--cache", default=os.path.join(ROOT, ".cache", "wheels"),
                        help="wheel cache folder (default: .cache/wheels/)")
    parser.add_argument("--offline", action="store_true",
                        help="use cached wheels only, never download")
    parser.add_argument("--check", metavar="ZIP_OR_MANIFEST", nargs="?", const=os.path.join(ROOT, MANIFEST),
                        help="only validate a manifest or a built zip (default: blender_manifest.toml)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            if args.check.endswith(".zip"):
                problems = validate_archive(args.check)
            else:
                problems = validate_manifest(load_manifest(args.check))
            if problems:
                raise ManifestError(problems, args.check)
            print(f"{args.check}: valid")
            return 0
        path = build(dist_dir=args.dist, cache_dir=args.cache, offline=args.offline)
    except ManifestError as exc:
        print(f"{parser.prog}: error: {exc}\nNothing was built; fix the problems above.",
              file=sys.stderr)
        return 1
    except BuildError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(path) as zf:
        count = len(zf.namelist())
        wheels = [n for n in zf.namelist() if n.endswith(".whl")]
    size = os.path.getsize(path)
    shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    print(f"built {shown} ({size / 2**20:.1f} MiB, {count} files, {len(wheels)} wheels)")
    print("install it in Blender: Edit > Preferences > Get Extensions > (menu) Install from Disk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
