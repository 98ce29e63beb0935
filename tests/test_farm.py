"""Render farms: the Flamenco 3 job type ``blender_zdepth/farm/zdepth_render_refocus.js``.

1. Its ``compileJob`` runs under Node.js with ``tests/flamenco_standin.js``, a small stand-in for
   the Manager's job-author API (author.Task/Command, frameChunker, path, print...): tasks,
   commands, arguments, chunking and dependencies for several settings. Skipped, with the reason,
   where ``node`` is not installed (``.ci/run`` installs it).
2. The commands a render task and a refocus task run on a worker are run here, end to end, on a
   tiny scene: the bpy module's Python stands in for the worker's Blender, so
   ``{blender} {blenderArgs} FILE.blend --python-exit-code 1 --python-expr CODE -- ARGS`` becomes
   ``python -c CODE -- ARGS`` (the render command loads FILE.blend itself: it is in ARGS).
3. ``python -m blender_zdepth farm flamenco --out DIR`` writes the file.
"""

import ast
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

from blender_zdepth.core import batch
from blender_zdepth.farm import FLAMENCO_JOB_TYPE, flamenco_job_type_bytes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STANDIN = os.path.join(ROOT, "tests", "flamenco_standin.js")
CLI = os.path.join(ROOT, "blender_zdepth", "cli.py")
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(
    NODE is None, reason="Node.js ('node') is not installed, so the Flamenco job type's compileJob "
                         "cannot run; .ci/run installs it (apt-get install nodejs)")

CREATED = "2026-11-30T21:05:09Z"
STAMP = "2026-11-30_210509"  # formatTimestampLocal(CREATED) with TZ=UTC


def settings(**changes):
    """The settings Flamenco's add-on submits (evaluated), with ``changes``."""
    base = {
        "frames": "1-10", "chunk_size": 4, "render_output_root": "/render",
        "add_path_components": 0, "render_output_path": "/render/shot010 depth/{timestamp}",
        "depth_encoding": "log", "depth_layers": 1, "refocus": "camera", "focus_keys": "",
        "fstop": 0.0, "max_radius": 64, "refocus_png": False, "zdepth_cli": "",
        "blendfile": "/proj/shot010.flamenco.blend",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def compile_job(tmp_path, job_settings, name="shot010 depth", script=FLAMENCO_JOB_TYPE):
    """Run compileJob under Node; return the stand-in's JSON (``error`` set when it threw)."""
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"name": name, "created": CREATED, "settings": job_settings}))
    env = dict(os.environ, TZ="UTC")
    done = subprocess.run([NODE, STANDIN, script, str(job_file)], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode in (0, 3), done.stderr
    result = json.loads(done.stdout)
    assert ("error" in result) == (done.returncode == 3)
    return result


def cli_args(task):
    """The blender_zdepth arguments of a task's only command (after Blender's own '--')."""
    (command,) = task["commands"]
    args = command["parameters"]["args"]
    return args[args.index("--") + 1:]


def bootstrap(task):
    """The Python code a task hands to ``--python-expr``."""
    args = task["commands"][0]["parameters"]["args"]
    return args[args.index("--python-expr") + 1]


# --------------------------------------------------------------------------------------------
# 1. compileJob under Node.js

@needs_node
def test_job_type_settings_are_well_formed(tmp_path):
    job_type = compile_job(tmp_path, settings())["jobType"]
    assert job_type["label"] == "Render with Z-Depth + Refocus"
    keys = [s["key"] for s in job_type["settings"]]
    assert len(keys) == len(set(keys))
    for key in ("frames", "chunk_size", "render_output_root", "render_output_path",
                "depth_encoding", "depth_layers", "refocus", "focus_keys", "fstop", "zdepth_cli",
                "blendfile"):
        assert key in keys
    for s in job_type["settings"]:
        assert s["type"] in ("string", "int32", "float", "bool"), s
        assert s.get("visible", "submission") in ("submission", "web", "hidden", "none"), s
        if "choices" in s and "default" in s:
            assert s["default"] in s["choices"], s
        if "eval" in s and s.get("visible", "submission") == "submission" and \
                s.get("editable", True):
            # a default would be the value and the eval would never run: the settings that
            # "start as the file's setting" have none, and a link button as 'frames' has
            assert "default" not in s and s["evalInfo"]["showLinkButton"], s
    by_key = {s["key"]: s for s in job_type["settings"]}
    assert by_key["refocus"]["choices"] == ["off", "camera", "keys"]
    assert by_key["depth_encoding"]["choices"] == ["log", "linear", "normalized", "inverse"]
    assert "{timestamp}" in by_key["render_output_path"]["eval"]
    assert "jobname" in by_key["render_output_path"]["eval"]


@needs_node
def test_chunks_render_and_refocus_tasks_with_dependencies(tmp_path):
    result = compile_job(tmp_path, settings())
    tasks = result["tasks"]
    out = f"/render/shot010 depth/{STAMP}"
    assert result["settings"]["render_output_path"] == out  # the folder actually used
    # frames 1-10 in chunks of 4: 1-4, 5-8, 9-10 (Flamenco writes a two-frame chunk as "9,10")
    assert [t["name"] for t in tasks] == ["render-1-4", "refocus-1-4", "render-5-8",
                                          "refocus-5-8", "render-9,10", "refocus-9,10"]
    # refocus has a task type of its own: a worker Flamenco blocks for failing refocus tasks
    # (its blocklist is per job and task type) still renders; 'misc' runs on default workers
    assert [t["type"] for t in tasks] == ["blender", "misc"] * 3
    # each command's step count is its chunk's frame count, as Flamenco's own Blender job
    assert [t["commands"][0]["totalSteps"] for t in tasks] == [4, 4, 4, 4, 2, 2]
    for render, refocus in zip(tasks[::2], tasks[1::2]):
        assert render["dependencies"] == []
        assert refocus["dependencies"] == [render["name"]]
    for task in tasks:
        (command,) = task["commands"]
        assert command["name"] == "blender-render"
        p = command["parameters"]
        assert (p["exe"], p["exeArgs"], p["argsBefore"]) == ("{blender}", "{blenderArgs}", [])
        assert p["blendfile"] == "/proj/shot010.flamenco.blend"
        assert p["args"][:3] == ["--python-exit-code", "1", "--python-expr"]
        assert p["args"][4] == "--"

    chunks = ["1-4", "5-8", "9,10"]
    for chunk, render, refocus in zip(chunks, tasks[::2], tasks[1::2]):
        assert cli_args(render) == [
            "render", "/proj/shot010.flamenco.blend", "--out", f"{out}/depth", "--frames", chunk,
            "--name", "shot010.####", "--beauty", "same-file", "--encoding", "log",
            "--depth-layers", "1"]
        assert cli_args(refocus) == [
            "dof", f"{out}/depth/shot010.####.exr", f"{out}/refocus/shot010.####.exr",
            "--frames", chunk, "--skip-existing", "--max-radius", "64"]
    # Our own parsers read Flamenco's chunk notation as exactly the chunk's frames.
    assert [batch.parse_frames(c) for c in chunks] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]


@needs_node
def test_encoding_and_layers_left_unset_use_the_files_settings(tmp_path):
    """Was: both settings had defaults (log, 1), so their eval (the .blend's own setting) never
    ran and every job rendered log with one layer. Unset (the eval did not run) or 0 layers,
    the render is given no option and uses the .blend's Z-Depth settings."""
    for unset in ({"depth_encoding": None, "depth_layers": None},
                  {"depth_encoding": "", "depth_layers": 0}):
        tasks = compile_job(tmp_path, settings(**unset))["tasks"]
        args = cli_args(tasks[0])
        assert "--encoding" not in args and "--depth-layers" not in args, args
    tasks = compile_job(tmp_path, settings(refocus_task_type="zdepth-refocus"))["tasks"]
    assert {t["type"] for t in tasks} == {"blender", "zdepth-refocus"}
    assert "task type" in compile_job(tmp_path, settings(refocus_task_type="a b"))["error"]


@needs_node
def test_refocus_off_gives_render_tasks_only(tmp_path):
    tasks = compile_job(tmp_path, settings(refocus="off", frames="1-3", chunk_size=10,
                                           depth_encoding="inverse"))["tasks"]
    assert [t["name"] for t in tasks] == ["render-1-3"]
    args = cli_args(tasks[0])
    assert args[args.index("--encoding") + 1] == "inverse"
    assert "--beauty" not in args  # the file's own beauty setting applies
    assert args[-2:] == ["--depth-layers", "1"]  # the job's value, not the file's


@needs_node
def test_focus_keys_fstop_png_layers_and_cli_path(tmp_path):
    tasks = compile_job(tmp_path, settings(
        refocus="keys", focus_keys=" 1001:2.5, 1048:8 ", fstop=2.8, refocus_png=True,
        max_radius=32, depth_layers=3, frames="1001-1003,1010", chunk_size=2,
        zdepth_cli="/opt/zdepth/blender_zdepth/cli.py"))["tasks"]
    assert [t["name"] for t in tasks] == ["render-1001,1002", "refocus-1001,1002",
                                          "render-1003,1010", "refocus-1003,1010"]
    render, refocus = tasks[2], tasks[3]
    assert refocus["dependencies"] == ["render-1003,1010"]
    assert [t["commands"][0]["totalSteps"] for t in tasks] == [2, 2, 2, 2]
    assert cli_args(render)[-2:] == ["--depth-layers", "3"]
    assert cli_args(refocus)[3:] == [
        "--frames", "1003,1010", "--skip-existing", "--max-radius", "32",
        "--focus-keys", "1001:2.5,1048:8", "--fstop", "2.8", "--png"]
    assert batch.parse_frames("1003,1010") == [1003, 1010]
    tree = ast.parse(bootstrap(refocus))  # valid Python, with the given path in it
    given = [n.value.value for n in tree.body if isinstance(n, ast.Assign)
             and getattr(n.targets[0], "id", None) == "given"]
    assert given == ["/opt/zdepth/blender_zdepth/cli.py"]


@needs_node
def test_depth_layer_mode_goes_to_the_render_command(tmp_path):
    tasks = compile_job(tmp_path, settings(depth_layers=3, depth_layer_mode="slabs",
                                           refocus="off"))["tasks"]
    assert cli_args(tasks[0])[-4:] == ["--layer-mode", "slabs", "--depth-layers", "3"]
    # left empty: the .blend's own Layer Mode
    tasks = compile_job(tmp_path, settings(depth_layers=3, refocus="off"))["tasks"]
    assert "--layer-mode" not in cli_args(tasks[0])


@needs_node
def test_camera_focus_uses_the_files_own_lens(tmp_path):
    args = cli_args(compile_job(tmp_path, settings(frames="7"))["tasks"][1])
    assert not {"--focus-keys", "--fstop", "--focus-distance", "--png"} & set(args)


@needs_node
def test_windows_cli_path_stays_a_valid_python_string(tmp_path):
    path = r"C:\Users\render\AppData\Roaming\Blender Foundation\Blender\4.5\extensions" \
           r"\user_default\blender_zdepth\cli.py"
    task = compile_job(tmp_path, settings(zdepth_cli=path))["tasks"][0]
    tree = ast.parse(bootstrap(task))
    assert [n.value.value for n in tree.body if isinstance(n, ast.Assign)
            and getattr(n.targets[0], "id", None) == "given"] == [path]


@needs_node
def test_output_folder_without_evaluated_path(tmp_path):
    result = compile_job(tmp_path, settings(render_output_path=None, render_output_root="/farm/out",
                                            frames="5", refocus="off"), name="shotA")
    assert result["settings"]["render_output_path"] == f"/farm/out/shotA/{STAMP}"
    assert cli_args(result["tasks"][0])[3] == f"/farm/out/shotA/{STAMP}/depth"


@needs_node
@pytest.mark.parametrize("changes, message", [
    ({"refocus": "keys", "focus_keys": ""}, "Focus Keys"),
    ({"refocus": "keys", "focus_keys": "1001=2.5"}, "FRAME:METRES"),
    ({"refocus": "sometimes"}, "refocus must be one of off, camera, keys"),
    ({"depth_encoding": "srgb"}, "depth_encoding must be one of"),
    ({"depth_layers": 9}, "depth_layers must be a whole number from 1 to 8"),
    ({"depth_layers": 3, "depth_layer_mode": "thick"}, "depth_layer_mode must be one of auto"),
    ({"chunk_size": 0}, "chunk_size must be a whole number"),
    ({"fstop": -2}, "fstop must be 0"),
    ({"zdepth_cli": 'C:\\x"y\\cli.py'}, "zdepth_cli must be a plain path"),
    ({"frames": "1-x"}, "invalid range"),
    ({"blendfile": ""}, "no blendfile"),
    ({"render_output_path": None, "render_output_root": None}, "render_output_root"),
])
def test_bad_settings_refuse_the_job(tmp_path, changes, message):
    result = compile_job(tmp_path, settings(**changes))
    assert message in result["error"], result["error"]


@needs_node
def test_standin_follows_flamenco_chunk_notation(tmp_path):
    # Blender's 'A..B' notation is accepted too; duplicates and order do not matter.
    result = compile_job(tmp_path, settings(frames="9..10, 1..3,2", chunk_size=2, refocus="off"))
    assert [t["name"] for t in result["tasks"]] == ["render-1,2", "render-3,9", "render-10"]


def evaluate_settings(bpy, job_type):
    """Each setting's ``eval`` as Flamenco's add-on evaluates it (its names: C, bpy, Path,
    jobname, settings, last_n_dir_parts)."""
    import pathlib
    import types

    def last_n_dir_parts(n, file_path=None):
        parts = pathlib.Path(file_path or bpy.data.filepath).parent.parts
        return pathlib.Path(*parts[len(parts) - n:]) if n else pathlib.Path()

    values = {"render_output_root": "/render", "add_path_components": 1}
    names = {"C": bpy.context, "bpy": bpy, "Path": pathlib.Path, "jobname": "shot-dof",
             "settings": types.SimpleNamespace(**values), "last_n_dir_parts": last_n_dir_parts}
    return {s["key"]: eval(s["eval"], {}, dict(names)) for s in job_type["settings"] if "eval" in s}


@needs_node
@pytest.mark.blender
def test_setting_evals_start_from_the_file(addon, bpy, tmp_path):
    job_type = compile_job(tmp_path, settings())["jobType"]
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 5, 9
    scene.zdepth.encoding = "inverse"
    scene.zdepth.depth_layers = 3
    (tmp_path / "sq01").mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "sq01" / "shot.blend"))
    values = evaluate_settings(bpy, job_type)
    assert values == {"frames": "5-9", "depth_encoding": "inverse", "depth_layers": 3,
                      "depth_layer_mode": "auto",
                      "render_output_path": "/render/sq01/shot-dof/{timestamp}"}
    addon.unregister()  # a submitting Blender without blender_zdepth enabled: the defaults
    try:
        values = evaluate_settings(bpy, job_type)
    finally:
        addon.register()
    assert (values["depth_encoding"], values["depth_layers"]) == ("log", 1)


# --------------------------------------------------------------------------------------------
# 2. The tasks' commands, run on a tiny scene with the bpy module standing in for Blender

def worker_command(task):
    """``python -c CODE -- ARGS`` for a task's ``blender-render`` command (see module doc)."""
    (command,) = task["commands"]
    p = command["parameters"]
    assert p["exe"] == "{blender}" and p["exeArgs"] == "{blenderArgs}" and p["argsBefore"] == []
    args = p["args"]
    assert args[:3] == ["--python-exit-code", "1", "--python-expr"] and args[4] == "--"
    return [sys.executable, "-c", args[3], "--", *args[5:]]


def run_on_worker(task, cwd, env=None):
    full_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full_env.update(env or {})
    return subprocess.run(worker_command(task), cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=300)


def save_tiny_shot(bpy, path):
    from blender_zdepth.blender import scenes

    scene = scenes.empty_scene((24, 16), "CYCLES", 1)
    scenes.add_object(scene, "uv_sphere", "Ball", scenes.emission_material("Ball", (1, .6, .2)),
                      radius=1.0, location=(0, 5, 0), segments=12, ring_count=6)
    cam = scenes.add_camera(scene, (0, 0, 0), (0, 5, 0), clip=(0.1, 50.0))
    cam.data.dof.aperture_fstop = 2.0
    for frame, value in ((1, 3.0), (3, 7.0)):
        cam.data.dof.focus_distance = value
        cam.data.dof.keyframe_insert("focus_distance", frame=frame)
    scene.frame_start, scene.frame_end = 1, 3
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return str(path)


def isolated_env(home):
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "BLENDER_USER_RESOURCES": str(home / "blender")}


def isolated_blender_with_extension(home):
    """Environment of a Blender whose user extension repository holds blender_zdepth (copied
    there as Blender installs an extension's files); returns ``(env, path of its cli.py)``."""
    env = isolated_env(home)
    probe = ("import bpy; print([r.directory for r in bpy.context.preferences.extensions.repos "
             "if r.module == 'user_default'][0])")
    full_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full_env.update(env)
    done = subprocess.run([sys.executable, "-c", probe], env=full_env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    repo = done.stdout.strip().splitlines()[-1]
    assert repo.startswith(str(home)), repo
    shutil.copytree(os.path.join(ROOT, "blender_zdepth"), os.path.join(repo, "blender_zdepth"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return env, os.path.join(repo, "blender_zdepth", "cli.py")


@needs_node
@pytest.mark.blender
@pytest.mark.slow
def test_worker_runs_render_then_refocus_tasks_end_to_end(bpy, tmp_path):
    from blender_zdepth.core import exr

    blend = save_tiny_shot(bpy, tmp_path / "shot.blend")
    result = compile_job(tmp_path, settings(
        frames="1-3", chunk_size=2, render_output_root=str(tmp_path / "render"),
        render_output_path=str(tmp_path / "render" / "shot" / "{timestamp}"), blendfile=blend,
        zdepth_cli=CLI, max_radius=8, depth_layers=2))
    tasks = {t["name"]: t for t in result["tasks"]}
    assert list(tasks) == ["render-1,2", "refocus-1,2", "render-3", "refocus-3"]
    out = tmp_path / "render" / "shot" / STAMP
    worker_cwd = tmp_path / "worker"
    worker_cwd.mkdir()
    # The last refocus task comes from the same job submitted with zdepth_cli empty: it finds
    # blender_zdepth where Blender installs extensions (a copy of the package in the user
    # extension repository of an isolated home).
    searched = compile_job(tmp_path, dict(result["settings"], zdepth_cli="",
                                          render_output_path=str(out)))["tasks"]
    tasks["refocus-3"] = searched[-1]
    env, installed_cli = isolated_blender_with_extension(tmp_path / "home")
    expected_cli = {name: CLI for name in tasks}
    expected_cli["refocus-3"] = installed_cli

    done_tasks = set()
    for name, task in tasks.items():  # in an order that honours the dependencies
        assert set(task["dependencies"]) <= done_tasks
        done = run_on_worker(task, worker_cwd, env=env)
        assert done.returncode == 0, f"{name}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        assert f"blender_zdepth farm: running {expected_cli[name]}" in done.stdout
        if name.startswith("refocus"):  # each frame is refocused with its depth-peeled layers
            frames = batch.parse_frames(name[len("refocus-"):])
            for frame in frames:
                assert f"deep shot.{frame:04d}_deep.exr" in done.stdout, done.stdout
        done_tasks.add(name)

    depth = sorted(os.path.basename(p) for p in glob.glob(str(out / "depth" / "*.exr")))
    refocused = sorted(os.path.basename(p) for p in glob.glob(str(out / "refocus" / "*.exr")))
    assert refocused == ["shot.0001.exr", "shot.0002.exr", "shot.0003.exr"]
    assert depth == sorted(refocused + [f"shot.000{f}_deep.exr" for f in (1, 2, 3)])
    for frame, focus in ((1, 3.0), (3, 7.0)):
        header = exr.read_exr(str(out / "refocus" / f"shot.{frame:04d}.exr")).header
        assert header["zdepthDofFocusDistance"] == pytest.approx(focus)  # the camera's, per frame
        assert header["zdepthDofFstop"] == pytest.approx(2.0)
        assert header["zdepthDofSource"] == f"shot.{frame:04d}.exr"

    # Re-running a refocus task (re-queued on the farm) keeps the finished frames.
    before = {p: os.stat(p).st_mtime_ns for p in glob.glob(str(out / "refocus" / "*.exr"))}
    again = run_on_worker(tasks["refocus-1,2"], worker_cwd)
    assert again.returncode == 0, again.stderr
    assert "2 skipped" in again.stdout
    assert {p: os.stat(p).st_mtime_ns for p in before} == before


@needs_node
@pytest.mark.blender
def test_worker_without_the_extension_or_openexr_gets_one_clear_error(bpy, tmp_path):
    isolated = isolated_env(tmp_path / "home")
    job = settings(frames="1-2", chunk_size=2, render_output_path=str(tmp_path / "out"),
                   blendfile=str(tmp_path / "missing.blend"))

    # No blender_zdepth installed in this "Blender" and no path given.
    refocus = compile_job(tmp_path, job)["tasks"][1]
    done = run_on_worker(refocus, tmp_path, env=isolated)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("blender_zdepth farm: error: no blender_zdepth extension is "
                               "installed in this Blender")
    assert "zdepth_cli" in lines[0] and "docs/farm.md" in lines[0]

    # A path that is not there.
    refocus = compile_job(tmp_path, dict(job, zdepth_cli="/nowhere/cli.py"))["tasks"][1]
    done = run_on_worker(refocus, tmp_path, env=isolated)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "zdepth_cli (/nowhere/cli.py) is not a file" in done.stderr

    # blender_zdepth found, but this Blender's Python has no OpenEXR (a module that fails to
    # import as a missing one does, placed first on the path): one line, before any frame.
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "OpenEXR.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'OpenEXR'\", name='OpenEXR')\n")
    refocus = compile_job(tmp_path, dict(job, zdepth_cli=CLI))["tasks"][1]
    done = run_on_worker(refocus, tmp_path, env=dict(isolated, PYTHONPATH=str(blocker)))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "needs the Python package 'OpenEXR'" in lines[0]
    assert "install the blender_zdepth extension in this Blender" in lines[0]
    assert not (tmp_path / "out" / "refocus").exists()


# --------------------------------------------------------------------------------------------
# 3. farm flamenco --out DIR

def test_farm_flamenco_writes_the_job_type(run_cli, tmp_path):
    scripts = tmp_path / "manager" / "scripts"
    done = run_cli("farm", "flamenco", "--out", scripts)
    assert done.returncode == 0, done.stderr
    target = scripts / "zdepth_render_refocus.js"
    assert target.read_bytes() == flamenco_job_type_bytes()
    assert os.listdir(scripts) == ["zdepth_render_refocus.js"]
    assert str(target) in done.stdout and "restart the Flamenco Manager" in done.stdout

    # Again: identical, nothing to do.
    done = run_cli("farm", "flamenco", "--out", scripts)
    assert done.returncode == 0 and "identical" in done.stdout

    # A different file is never replaced without --overwrite.
    target.write_text("// someone's edited copy\n")
    done = run_cli("farm", "flamenco", "--out", scripts)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"blender_zdepth: error: {target}: already exists and differs "
                                   f"(another version?); pass --overwrite to replace it")
    assert target.read_text() == "// someone's edited copy\n"
    done = run_cli("farm", "flamenco", "--out", scripts, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == flamenco_job_type_bytes()
    assert os.listdir(scripts) == ["zdepth_render_refocus.js"]  # no temporary file left


def test_farm_flamenco_bad_usage(run_cli, tmp_path):
    done = run_cli("farm")
    assert done.returncode == 2 and "farm flamenco --out DIR" in done.stderr
    done = run_cli("farm", "flamenco")
    assert done.returncode == 2 and "--out" in done.stderr
    a_file = tmp_path / "scripts"
    a_file.write_text("x")
    done = run_cli("farm", "flamenco", "--out", a_file)
    assert done.returncode == 1 and "is not a folder" in done.stderr
    assert a_file.read_text() == "x"


def test_job_type_ships_in_the_package():
    assert os.path.isfile(FLAMENCO_JOB_TYPE)
    text = flamenco_job_type_bytes().decode("utf-8")
    assert "const JOB_TYPE" in text and "function compileJob(job)" in text
