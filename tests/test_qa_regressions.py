"""Regression tests for problems found in QA (user journeys through the CLI and inside Blender).

Each test fails without its fix. Real bpy, tiny renders; CLI through a subprocess.
"""

import os

import numpy as np
import pytest
from blender_zdepth.core.frame import load_frame


def _moving_camera_scene(frames=(1, 3)):
    """A ball and a box, a camera that moves sideways with a keyed focus distance."""
    from blender_zdepth.blender import scenes

    scene = scenes.empty_scene((32, 24), "CYCLES", 1)
    scenes.add_object(scene, "uv_sphere", "Ball", scenes.emission_material("Ball", (1, .5, .2)),
                      radius=1.0, location=(-0.8, 5, 0), segments=16, ring_count=8)
    scenes.add_object(scene, "cube", "Box", scenes.emission_material("Box", (.2, .4, .9)),
                      size=2.0, location=(1.5, 9, 0.3))
    scenes.add_camera(scene, (0, 0, 0), (0, 5, 0), lens=35.0, clip=(0.1, 100.0))
    cam = scene.camera
    for frame, x, focus in ((frames[0], -1.0, 2.0), (frames[1], 1.5, 6.0)):
        cam.location.x = x
        cam.keyframe_insert("location", index=0, frame=frame)
        cam.data.dof.focus_distance = focus
        cam.data.dof.keyframe_insert("focus_distance", frame=frame)
    scene.frame_start, scene.frame_end = frames
    scene.frame_set(frames[0])
    return scene


@pytest.mark.blender
@pytest.mark.slow
def test_last_render_export_and_dof_use_the_frame_render_result_holds(bpy, addon, tmp_path):
    """After an animation render Blender 5.0 puts frame_current back to the first frame while
    Render Result holds the last one. "Export Depth of Last Render" wrote the last frame's
    pixels over zdepth_0001.exr (with frame 1's camera in the header), and Apply DOF on the
    Render Result named its output after frame 1 and used frame 1's focus."""
    from blender_zdepth.core.camera import CameraInfo

    scene = _moving_camera_scene((1, 3))
    zd = scene.zdepth
    zd.output_dir = str(tmp_path / "depth")
    zd.export_enabled = True
    scene.render.filepath = str(tmp_path / "beauty" / "b_####")
    bpy.ops.render.render(animation=True)
    first = str(tmp_path / "depth" / "zdepth_0001.exr")
    last = str(tmp_path / "depth" / "zdepth_0003.exr")
    before_first = open(first, "rb").read()
    depth_last = load_frame(last).depth
    scene.frame_set(1)  # where Blender 5.0 leaves it (4.5 too, when the user goes back)

    assert bpy.ops.zdepth.export_render_result() == {"FINISHED"}
    assert open(first, "rb").read() == before_first  # the good frame-1 export is untouched
    again = load_frame(last)
    np.testing.assert_array_equal(again.depth, depth_last)
    cam = CameraInfo.from_header(again.header)
    assert cam.frame == 3 and cam.focus_distance == pytest.approx(6.0)
    assert scene.frame_current == 1  # the user's frame is restored

    zd.dof_output_dir = str(tmp_path / "dof")
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT") == {"FINISHED"}
    assert os.listdir(tmp_path / "dof") == ["b_dof.0003.exr"]
    assert scene.frame_current == 1


# -- encode / inspect on depth that is no camera depth ------------------------------------------

def _write_depth(path, z):
    import OpenEXR

    h, w = z.shape
    channels = {c: np.full((h, w), 0.5, np.float32) for c in "RGBA"}
    channels["Z"] = z.astype(np.float32)
    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION}, channels).write(str(path))


@pytest.mark.parametrize("ranged", [False, True])
def test_encode_negative_depth_is_one_clear_error(run_cli, tmp_path, ranged):
    """Was: a bogus 'EEVEE background, pass --background -1.9998' warning plus an error that
    asked for --near/--far -- which then failed with another message."""
    src = tmp_path / "neg.exr"
    _write_depth(src, np.full((8, 8), -2.0))
    out = tmp_path / "out.exr"
    r = run_cli("encode", src, out, *(["--near", "1", "--far", "10"] if ranged else []))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "negative depth" in lines[0] and "--background" not in lines[0]
    assert "Traceback" not in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["neg.exr"]


@pytest.mark.parametrize("value", [-2.0, 0.0])
def test_inspect_shows_a_file_with_zero_or_negative_depth(run_cli, tmp_path, value):
    """Was: exit 1 with 'give --near and --far' -- options inspect does not have."""
    src = tmp_path / "bad.exr"
    _write_depth(src, np.full((8, 8), value))
    r = run_cli("inspect", src)
    assert r.returncode == 0, r.stderr
    assert "--near" not in r.stdout + r.stderr and "--background" not in r.stdout
    assert "zero or negative depth" in r.stdout
    assert f"depth values: {value:g} to {value:g}" in r.stdout


def test_encode_out_of_range_share_is_readable(run_cli, tmp_path):
    """Was: 'note: 1e+02 % of the surface pixels lie outside the range'."""
    src = tmp_path / "far.exr"
    _write_depth(src, np.full((8, 8), 50.0))
    r = run_cli("encode", src, tmp_path / "out.exr", "--near", "1", "--far", "10")
    assert r.returncode == 0, r.stderr
    assert "note: 100 % of the surface pixels" in r.stdout


@pytest.mark.blender
@pytest.mark.slow
@pytest.mark.parametrize("cam_type", ["ORTHO", "PANO"])
def test_apply_dof_refuses_a_non_perspective_camera_before_any_work(bpy, addon, tmp_path,
                                                                     cam_type):
    """Was: the Render Result was saved to a temporary file, then the frame 'FAILED' with that
    temporary path in a warning ('camera is ortho'); now one error, nothing saved or written."""
    import tempfile

    scene = _moving_camera_scene((1, 1))
    bpy.ops.render.render()
    scene.camera.data.type = cam_type
    scene.zdepth.dof_output_dir = str(tmp_path / "dof")
    temps_before = set(os.listdir(tempfile.gettempdir()))
    with pytest.raises(RuntimeError) as err:
        bpy.ops.zdepth.apply_dof(source="RENDER_RESULT")
    message = str(err.value)
    assert "needs a perspective camera" in message
    assert ("orthographic" if cam_type == "ORTHO" else "panoramic") in message
    assert "render_result.exr" not in message
    assert not (tmp_path / "dof").exists()
    new = set(os.listdir(tempfile.gettempdir())) - temps_before
    assert not [n for n in new if n.startswith("zdepth_dof_")]


# -- --layer that the file does not have, output into a closed pipe ---------------------------

def _write_two_layer_render(path):
    """A Blender 4.x-style single-part multilayer EXR with view layers ViewLayer and Second."""
    import OpenEXR

    channels = {}
    for layer, depth in (("ViewLayer", 2.0), ("Second", 7.0)):
        for c in "RGBA":
            channels[f"{layer}.Combined.{c}"] = np.full((6, 8), 0.5, np.float32)
        channels[f"{layer}.Depth.Z"] = np.full((6, 8), depth, np.float32)
    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION}, channels).write(str(path))


@pytest.mark.parametrize("command", ["encode", "decode", "inspect"])
def test_unknown_layer_is_refused_not_silently_replaced(run_cli, tmp_path, command):
    """Was: --layer Nope quietly read ViewLayer and wrote its depth."""
    src = tmp_path / "render.exr"
    _write_two_layer_render(src)
    out = [tmp_path / "out.exr"] if command != "inspect" else []
    r = run_cli(command, src, *out, "--layer", "Nope")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"blender_zdepth: error: --layer Nope: {src} has no view layer 'Nope'; its "
        f"view layers: Second, ViewLayer"]  # the order in the file (sorted channels)
    assert sorted(os.listdir(tmp_path)) == ["render.exr"]
    ok = run_cli("inspect", src, "--layer", "Second")
    assert ok.returncode == 0 and "depth: Second.Depth.Z" in ok.stdout


def test_output_into_a_closed_pipe_is_no_traceback(tmp_path):
    """Was: 'inspect x.exr | head -1' ended in a BrokenPipeError traceback."""
    import subprocess
    import sys

    from conftest import ROOT

    src = tmp_path / "render.exr"
    _write_two_layer_render(src)
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "blender_zdepth", "inspect", str(src), "--all"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    proc.stdout.close()  # the reader is gone before the first line (imports take far longer)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err


@pytest.mark.parametrize("preview", ["out.exr", "depth.jpg", "in.png"])
def test_encode_preview_name_checked_before_any_work(run_cli, tmp_path, preview):
    """Was: --preview out.exr wrote a PNG there, then failed with 'out.exr: already exists';
    --preview depth.jpg wrote PNG bytes into a .jpg."""
    src = tmp_path / "in.exr"
    _write_depth(src, np.linspace(1, 9, 64).reshape(8, 8))
    if preview == "in.png":
        src = tmp_path / "in.png"  # the preview would replace the input
        _write_depth(src, np.linspace(1, 9, 64).reshape(8, 8))
    before = sorted(os.listdir(tmp_path))
    r = run_cli("encode", src, tmp_path / "out.exr", "--preview", tmp_path / preview)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "--preview" in r.stderr
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.blender
@pytest.mark.parametrize("prop, value", [("output_dir", "//zdepth/"),
                                         ("dof_input", "//render/shot.####.exr"),
                                         ("dof_output_dir", "//dof/")])
def test_path_settings_take_blend_relative_paths_without_warning(bpy, addon, prop, value):
    """Was (4.5 and 5.0): setting the documented '//render/shot.####.exr' (or the default
    '//zdepth/') printed 'RuntimeWarning: ZDepthSettings.dof_input: does not support blend
    relative "//" prefix'."""
    import warnings

    zd = bpy.context.scene.zdepth
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        setattr(zd, prop, value)
    assert getattr(zd, prop) == value


@pytest.mark.blender
@pytest.mark.slow
def test_focal_plane_view_says_where_it_is_not_that_it_was_written(bpy, addon, tmp_path, capsys):
    """Was: 'Focal-plane view: 1 frame: 1 written' although the diagnostic writes no file."""
    scene = _moving_camera_scene((1, 1))
    bpy.ops.render.render()
    scene.zdepth.dof_output_dir = str(tmp_path / "dof")
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT", diagnostic=True) == {"FINISHED"}
    out = capsys.readouterr()
    reported = out.out + out.err
    assert "Focal-plane view of frame 1: shown in the image 'Z-Depth DOF'" in reported
    assert "Focal-plane view: 1 frame: 1 written" not in reported
    assert bpy.data.images.get("Z-Depth DOF") is not None
    assert not (tmp_path / "dof").exists() or not os.listdir(tmp_path / "dof")


def test_build_bench_unknown_name_is_one_clear_line():
    """Was: 'can't open file .../benchmarks/nonexistent.py' from Python, after setting up the
    venv, and exit status 2 from the interpreter."""
    import subprocess
    import sys

    from conftest import ROOT

    r = subprocess.run([sys.executable, "build.py", "bench", "no_such_bench"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "python3 build.py bench: error: no benchmark 'no_such_bench'; there are: "
        + ", ".join(sorted(n[:-3] for n in os.listdir(os.path.join(ROOT, "benchmarks"))
                           if n.endswith(".py") and not n.startswith("_")))]
    assert "[build]" not in r.stdout + r.stderr


@pytest.mark.blender
@pytest.mark.slow
def test_apply_dof_panel_focus_errors_speak_the_panels_language(bpy, addon, tmp_path):
    """Was: Pixel (100, 100) on a 32x24 frame failed as 'focus pixel (100, -77) is outside'
    (a flipped row the user never typed); Object mode without an object failed per frame
    after saving the Render Result; Blender's default output path '/tmp/' named the result
    'tmp_dof.0001.exr'."""
    scene = _moving_camera_scene((1, 1))
    scene.render.filepath = "/tmp/"
    bpy.ops.render.render()
    zd = scene.zdepth
    zd.dof_output_dir = str(tmp_path / "dof")

    zd.dof_focus_mode = "OBJECT"
    with pytest.raises(RuntimeError, match="no object is set in the Depth of Field panel"):
        bpy.ops.zdepth.apply_dof(source="RENDER_RESULT")

    zd.dof_focus_mode = "PIXEL"
    zd.dof_focus_pixel = (100, 100)
    from blender_zdepth.blender.refocus.batch import DofBatch

    batch = DofBatch(scene, "RENDER_RESULT")
    while not batch.done:
        batch.step()
    report = batch.finish()
    assert len(report.failed) == 1
    assert "focus pixel 100,100 (from the bottom left) is outside the 32x24 frame" in \
        report.summary()
    assert "-77" not in report.summary()

    zd.dof_focus_pixel = (16, 12)
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT") == {"FINISHED"}
    assert os.listdir(tmp_path / "dof") == ["render_dof.0001.exr"]


@pytest.mark.parametrize("command", ["inspect", "encode", "decode"])
def test_missing_openexr_package_is_one_clear_line(tmp_path, command):
    """Was: a ModuleNotFoundError traceback on a workstation Python without OpenEXR."""
    import subprocess
    import sys

    from conftest import ROOT

    src = tmp_path / "in.exr"
    _write_depth(src, np.linspace(1, 9, 64).reshape(8, 8))
    args = [str(src)] + ([] if command == "inspect" else [str(tmp_path / "out.exr")])
    code = ("import sys; sys.modules['OpenEXR'] = None\n"  # as if not installed
            "from blender_zdepth.cli import main\n"
            f"sys.exit(main({[command] + args!r}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs the Python package 'OpenEXR'" in lines[0], r.stderr
    assert sorted(os.listdir(tmp_path)) == ["in.exr"]


@pytest.mark.blender
@pytest.mark.slow
def test_demo_never_deletes_the_users_files_in_out(run_cli, tmp_path):
    """Was: 'demo --out DIR' ran shutil.rmtree on DIR/depth and DIR/refocus, whatever they
    held; and an --out that is a file or cannot be created ended in a traceback."""
    out = tmp_path / "shots"
    (out / "depth").mkdir(parents=True)
    (out / "depth" / "seq010_0001.exr").write_bytes(b"the user's render")
    (out / "refocus" / "keep").mkdir(parents=True)
    (out / "refocus" / "keep" / "notes.txt").write_text("mine")
    r = run_cli("demo", "--out", out, "--resolution", "64x36", "--samples", "1", timeout=240)
    assert r.returncode == 0, r.stderr
    assert (out / "depth" / "seq010_0001.exr").read_bytes() == b"the user's render"
    assert (out / "refocus" / "keep" / "notes.txt").read_text() == "mine"
    from blender_zdepth.commands.demo import DEMO_FILES

    written = sorted(str(p.relative_to(out)).replace(os.sep, "/") for p in out.rglob("*")
                     if p.is_file())
    assert written == sorted(DEMO_FILES + ["depth/seq010_0001.exr", "refocus/keep/notes.txt"])

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for bad in (a_file, a_file / "sub"):
        r = run_cli("demo", "--out", bad, "--resolution", "64x36", "--samples", "1")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "--out" in r.stderr
    assert a_file.read_text() == "x"


@pytest.mark.blender
@pytest.mark.slow
def test_render_command_default_frames_follow_the_frame_step(run_cli, tmp_path):
    """Was: with Frame Step 2 over 1-5, 'render' (no --frames) rendered all five frames where
    Blender renders 1, 3, 5."""
    script = tmp_path / "make.py"
    blend = tmp_path / "step.blend"
    script.write_text(
        "import sys, bpy\n"
        "from blender_zdepth.blender import scenes\n"
        "s = scenes.demo_scene(resolution=(16, 9), samples=1)\n"
        "s.frame_start, s.frame_end, s.frame_step = 1, 5, 2\n"
        f"bpy.ops.wm.save_as_mainfile(filepath={str(blend)!r})\n")
    import subprocess
    import sys

    from conftest import ROOT

    subprocess.run([sys.executable, str(script)], cwd=ROOT, check=True, capture_output=True,
                   env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    r = run_cli("render", blend, "--out", tmp_path / "z", timeout=240)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "z")) == ["zdepth_0001.exr", "zdepth_0003.exr",
                                                  "zdepth_0005.exr"]


def test_inspect_shows_an_exr_without_depth(run_cli, tmp_path):
    """Was: 'inspect' of a refocused frame (RGBA only) or a 'Beside' beauty file failed with
    exit 1 ('no depth channel') instead of showing what the file holds."""
    import OpenEXR

    src = tmp_path / "rgba.exr"
    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION},
                 {c: np.full((6, 10), 0.25, np.float32) for c in "RGBA"}).write(str(src))
    r = run_cli("inspect", src)
    assert r.returncode == 0, r.stderr
    assert "size 10x6" in r.stdout and "channels: A (float), B (float)" in r.stdout
    assert "depth: none" in r.stdout
    j = run_cli("inspect", src, "--json")
    import json

    info = json.loads(j.stdout)
    assert info["size"] == [10, 6] and info["depth_channel"] is None and info["depth"] is None
