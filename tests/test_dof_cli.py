"""The ``dof`` command on single frames and sequences: plain Blender renders, our own exports,
focus keys, bad frames, resume, parallel farm chunks, refusals."""

import os
import subprocess
import sys

import numpy as np
import pytest

from blender_zdepth.core import exr, refocus
from blender_zdepth.core.camera import CameraInfo
from blender_zdepth.core.encodings import DepthEncoding

from conftest import ROOT
from blender_zdepth.core.frame import load_frame

H, W = 40, 64
NEAR, FAR = 2.0, 8.0


def scene_arrays(seed=0):
    """A frame with a near surface (left half, 2 m) and a far one (right half, 8 m), both
    textured with random noise (its gradient energy falls steadily as the blur grows, unlike a
    periodic pattern's)."""
    yy, xx = np.mgrid[0:H, 0:W]
    checker = np.random.default_rng(seed).random((H, W)).astype(np.float32)
    rgba = np.ones((H, W, 4), np.float32)
    rgba[..., 0] = 0.1 + 0.8 * checker
    rgba[..., 1] = 0.2 + 0.6 * checker
    rgba[..., 2] = 0.3 + 0.1 * seed
    depth = np.where(xx < W // 2, NEAR, FAR).astype(np.float32)
    return rgba, depth


def write_plain(path, rgba, depth):
    """A single-part RGBA + Z file without our header (like a plain render)."""
    chans = {c: rgba[..., i] for i, c in enumerate("RGBA")}
    chans["Z"] = depth
    exr.write_exr(str(path), chans, overwrite=True)


def write_ours(path, rgba, depth, camera):
    exr.write_depth_exr(str(path), depth, encoding=DepthEncoding("log", 0.1, 100.0), rgba=rgba,
                        camera=camera)


def sharpness(rgba, region):
    """Mean absolute horizontal + vertical gradient of the red channel inside ``region``."""
    r = rgba[..., 0][region]
    return float(np.abs(np.diff(r, axis=0)).mean() + np.abs(np.diff(r, axis=1)).mean())


NEAR_REGION = np.s_[8:32, 4:24]
FAR_REGION = np.s_[8:32, 40:60]
LENS = ["--fstop", "0.8", "--focal-length", "100"]  # ~4 px of blur on a 64 px frame


def rgba_of(path):
    img = exr.read_exr(str(path))
    assert set(img.channels) == {"R", "G", "B", "A"}
    assert not img.half
    return np.stack([img.channels[c] for c in "RGBA"], axis=-1), img.header


def test_single_frame_options_and_metadata(tmp_path, run_cli):
    rgba, depth = scene_arrays()
    src = tmp_path / "plain.exr"
    write_plain(src, rgba, depth)
    out = tmp_path / "out.exr"
    r = run_cli("dof", src, out, "--focus-distance", NEAR, *LENS, "--max-radius", "12", "--png")
    assert r.returncode == 0, r.stderr
    assert "1 frame" in r.stdout and "1 written" in r.stdout
    result, header = rgba_of(out)
    assert (tmp_path / "out.png").exists()
    # near half in focus (unchanged), far half blurred
    assert sharpness(result, NEAR_REGION) == pytest.approx(sharpness(rgba, NEAR_REGION), rel=0.05)
    assert sharpness(result, FAR_REGION) < 0.3 * sharpness(rgba, FAR_REGION)
    assert header["zdepthDofFocusDistance"] == pytest.approx(NEAR)
    assert header["zdepthDofFstop"] == pytest.approx(0.8)
    assert header["zdepthDofMaxRadius"] == pytest.approx(12)
    assert header["zdepthDofSource"] == "plain.exr"
    # the input is untouched, and never an output
    assert exr.read_exr(str(src)).channels.keys() >= {"R", "Z"}
    r = run_cli("dof", src, src, "--focus-distance", "2", *LENS)
    assert r.returncode == 2 and "input" in r.stderr
    # an existing output needs --overwrite
    r = run_cli("dof", src, out, "--focus-distance", "2", *LENS)
    assert r.returncode == 1 and "--overwrite" in r.stderr
    r = run_cli("dof", src, out, "--focus-distance", FAR, *LENS, "--overwrite")
    assert r.returncode == 0, r.stderr
    result, _ = rgba_of(out)
    assert sharpness(result, NEAR_REGION) < 0.3 * sharpness(rgba, NEAR_REGION)


def test_diagnostic_view(tmp_path, run_cli):
    rgba, depth = scene_arrays()
    write_plain(tmp_path / "plain.exr", rgba, depth)
    r = run_cli("dof", tmp_path / "plain.exr", tmp_path / "diag.exr", "--focus-distance", FAR,
                *LENS, "--diagnostic")
    assert r.returncode == 0, r.stderr
    view, header = rgba_of(tmp_path / "diag.exr")
    assert header["zdepthDofView"] == "focal-plane diagnostic"
    near = view[NEAR_REGION][..., :3].mean(axis=(0, 1))
    far = view[FAR_REGION][..., :3].mean(axis=(0, 1))
    assert near[0] > near[1] and near[0] > near[2]  # in front of the focal plane: red
    assert far[1] > far[0] and far[1] > far[2]  # in focus: green


def test_missing_lens_value_is_a_usage_error(tmp_path, run_cli):
    rgba, depth = scene_arrays()
    write_plain(tmp_path / "plain.exr", rgba, depth)
    r = run_cli("dof", tmp_path / "plain.exr", tmp_path / "o.exr", "--focus-distance", "2",
                "--fstop", "2")
    assert r.returncode == 2
    assert "--focal-length" in r.stderr
    assert not (tmp_path / "o.exr").exists()


def test_our_export_uses_its_header_camera(tmp_path, run_cli):
    rgba, depth = scene_arrays()
    cam = CameraInfo(focal_length_mm=100.0, sensor_width_mm=36.0, fstop=0.8, focus_distance=FAR,
                     frame=12)
    write_ours(tmp_path / "ours.0012.exr", rgba, depth, cam)
    r = run_cli("dof", tmp_path / "ours.0012.exr", tmp_path / "o.exr")
    assert r.returncode == 0, r.stderr
    result, header = rgba_of(tmp_path / "o.exr")
    assert header["zdepthDofFocusDistance"] == pytest.approx(FAR)
    assert header["zdepthDofFstop"] == pytest.approx(0.8)
    assert header["zdepthCameraFocalLength"] == pytest.approx(100.0)  # input metadata kept
    assert "zdepthEncoding" not in header  # the output has no depth channel
    assert sharpness(result, FAR_REGION) == pytest.approx(sharpness(rgba, FAR_REGION), rel=0.05)
    assert sharpness(result, NEAR_REGION) < 0.3 * sharpness(rgba, NEAR_REGION)
    # options override the header
    r = run_cli("dof", tmp_path / "ours.0012.exr", tmp_path / "o2.exr", "--focus-pixel", "5,20",
                "--fstop", "4")
    assert r.returncode == 0, r.stderr
    _, header = rgba_of(tmp_path / "o2.exr")
    assert header["zdepthDofFocusDistance"] == pytest.approx(NEAR, rel=1e-3)
    assert header["zdepthDofFstop"] == pytest.approx(4.0)


def test_focus_keys_rack_a_sequence(tmp_path, run_cli):
    rgba, depth = scene_arrays()
    for f in range(1001, 1006):
        write_plain(tmp_path / f"shot.{f}.exr", rgba, depth)
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("dof", tmp_path / "shot.####.exr", out / "rack.%04d.exr", "--frames", "1001-1005",
                "--focus-keys", "1001:2,1005:8", *LENS, "--max-radius", "16")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("] frame ") == 5 and "5 written" in r.stdout
    keys = refocus.parse_focus_keys("1001:2,1005:8")
    near, far = [], []
    for f in range(1001, 1006):
        result, header = rgba_of(out / f"rack.{f}.exr")
        assert header["zdepthDofFocusDistance"] == pytest.approx(keys(f), rel=1e-6)
        near.append(sharpness(result, NEAR_REGION))
        far.append(sharpness(result, FAR_REGION))
    # the sharp plane moves from near to far: near loses sharpness, far gains it
    assert near[0] > 2 * near[-1] and far[-1] > 2 * far[0]
    assert all(a >= b - 1e-6 for a, b in zip(near, near[1:]))
    assert all(a <= b + 1e-6 for a, b in zip(far, far[1:]))


def test_bad_frames_reported_others_written_then_resume(tmp_path, run_cli):
    rgba, depth = scene_arrays()
    for f in (1, 2, 3, 4, 5, 6):
        write_plain(tmp_path / f"r.{f:04d}.exr", rgba, depth)
    # 2: truncated, 3: missing, 4: no depth, 5: wrong size
    data = (tmp_path / "r.0002.exr").read_bytes()
    (tmp_path / "r.0002.exr").write_bytes(data[:len(data) // 2])
    os.remove(tmp_path / "r.0003.exr")
    exr.write_exr(str(tmp_path / "r.0004.exr"), {c: rgba[..., i] for i, c in enumerate("RGBA")},
                  overwrite=True)
    small_rgba, small_depth = rgba[:20, :32], depth[:20, :32]
    write_plain(tmp_path / "r.0005.exr", small_rgba, small_depth)
    out = tmp_path / "out"
    out.mkdir()
    args = ["dof", tmp_path / "r.####.exr", out / "o.####.exr", "--frames", "1-6",
            "--focus-distance", "2", *LENS, "--max-radius", "8"]
    r = run_cli(*args)
    assert r.returncode == 1
    assert "6 frames: 2 written, 4 failed" in r.stdout
    for f, why in ((2, ""), (3, "missing"), (4, "depth"), (5, "size")):
        line = next(line for line in r.stderr.splitlines() if f"] frame {f}: FAILED:" in line)
        assert f"r.{f:04d}.exr" in line and why in line
    # each failure once: on stderr, not again in the progress on stdout or the summary
    assert "FAILED" not in r.stdout and r.stderr.count("FAILED") == 4
    assert "failed: frame(s) 2-5" in r.stdout
    assert sorted(os.listdir(out)) == ["o.0001.exr", "o.0006.exr"]
    stamp = os.stat(out / "o.0001.exr").st_mtime_ns
    # repair the bad frames and resume: only the missing outputs are made
    for f in (2, 3, 4, 5):
        write_plain(tmp_path / f"r.{f:04d}.exr", rgba, depth)
    r = run_cli(*args, "--skip-existing")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 written, 2 skipped" in r.stdout
    assert os.stat(out / "o.0001.exr").st_mtime_ns == stamp
    assert sorted(os.listdir(out)) == [f"o.{f:04d}.exr" for f in range(1, 7)]


def test_parallel_farm_chunks_into_one_folder(tmp_path):
    rgba, depth = scene_arrays()
    for f in range(1, 9):
        write_plain(tmp_path / f"r.{f:04d}.exr", rgba, depth)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen(
        [sys.executable, "-m", "blender_zdepth", "dof", str(tmp_path / "r.####.exr"),
         str(out / "o.####.exr"), "--frames", chunk, "--focus-distance", "2", *LENS,
         "--max-radius", "8", "--skip-existing"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for chunk in ("1-4", "5-8", "3-6")]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert sorted(os.listdir(out)) == [f"o.{f:04d}.exr" for f in range(1, 9)]
    for f in range(1, 9):
        result, _ = rgba_of(out / f"o.{f:04d}.exr")
        assert result.shape == (H, W, 4)


@pytest.mark.parametrize("extra,message", [
    (["--frames", "9-1"], "backwards"),
    (["--focus-keys", "1:abc"], "FRAME:DISTANCE"),
    (["--focus-pixel", "3"], "X,Y"),
    (["--fstop", "-1"], "f-stop"),
    (["--overwrite", "--skip-existing"], "choose one"),
])
def test_usage_errors(tmp_path, run_cli, extra, message):
    rgba, depth = scene_arrays()
    for f in (1, 2):
        write_plain(tmp_path / f"r.{f:04d}.exr", rgba, depth)
    args = ["--focus-distance", "2", "--fstop", "2", "--focal-length", "50"]
    if "--focus-keys" in extra or "--focus-pixel" in extra:
        args = ["--fstop", "2", "--focal-length", "50"]
    if "--fstop" in extra:
        args = ["--focus-distance", "2", "--focal-length", "50"]
    r = run_cli("dof", tmp_path / "r.####.exr", tmp_path / "o.####.exr", *args, *extra)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr
    assert not any(n.startswith("o.") for n in os.listdir(tmp_path))


@pytest.mark.blender
def test_plain_blender_multilayer_render(bpy, tmp_path, run_cli):
    """A real Cycles render saved as Blender's multilayer EXR (ViewLayer.Combined +
    ViewLayer.Depth.Z), refocused from the command line with lens options."""
    from blender_zdepth.blender import compat

    from test_dof_operator import build_two_plane_scene

    scene = build_two_plane_scene(bpy)
    compat.set_multilayer_exr(scene.render.image_settings)
    scene.render.filepath = str(tmp_path / "render.exr")
    bpy.ops.render.render(write_still=True)
    frame = load_frame(str(tmp_path / "render.exr"))
    assert frame.camera is None and frame.depth is not None
    r = run_cli("dof", tmp_path / "render.exr", tmp_path / "dof.exr", "--focus-distance", "2",
                "--fstop", "0.8", "--focal-length", "100", "--max-radius", "12")
    assert r.returncode == 0, r.stderr
    result, header = rgba_of(tmp_path / "dof.exr")
    src = frame.rgba
    h, w = src.shape[:2]
    near = np.s_[4:h - 4, 3:w // 2 - 6]
    far = np.s_[4:h - 4, w // 2 + 6:w - 3]
    assert sharpness(result, near) > 0.8 * sharpness(src, near)
    assert sharpness(result, far) < 0.5 * sharpness(src, far)
    assert header["Camera"] == "Camera"  # Blender's metadata is kept
    assert header["zdepthDofFocusDistance"] == pytest.approx(2.0)


def test_layer_option_picks_the_view_layer(tmp_path, run_cli):
    rgba, depth = scene_arrays()
    chans = {}
    for layer, d in (("ViewLayer", depth), ("Fg", np.full_like(depth, 3.0))):
        chans.update({f"{layer}.Combined.{c}": rgba[..., i] for i, c in enumerate("RGBA")})
        chans[f"{layer}.Depth.Z"] = d
    exr.write_exr(str(tmp_path / "two.exr"), chans)
    for layer, expected in ((None, NEAR), ("Fg", 3.0)):
        out = tmp_path / f"o_{layer}.exr"
        extra = ["--layer", layer] if layer else []
        r = run_cli("dof", tmp_path / "two.exr", out, "--focus-pixel", "5,20", *LENS, *extra)
        assert r.returncode == 0, r.stderr
        assert rgba_of(out)[1]["zdepthDofFocusDistance"] == pytest.approx(expected)


def test_failed_frames_are_reported_on_stderr_and_bad_depth_is_refused(tmp_path, run_cli):
    rgba, depth = scene_arrays()
    write_plain(tmp_path / "r.0001.exr", rgba, depth)
    write_plain(tmp_path / "r.0002.exr", rgba, -depth)  # not a camera depth pass
    r = run_cli("dof", tmp_path / "r.####.exr", tmp_path / "o.####.exr",
                "--focus-distance", "2", "--fstop", "2", "--focal-length", "50")
    assert r.returncode == 1
    assert (tmp_path / "o.0001.exr").exists() and not (tmp_path / "o.0002.exr").exists()
    lines = [line for line in r.stderr.strip().splitlines() if "note:" not in line]
    assert len(lines) == 1 and "frame 2: FAILED" in lines[0] and "negative" in lines[0]
    # the sensor these plain files do not record is said once
    notes = [line for line in r.stderr.splitlines() if "note:" in line]
    assert len(notes) == 1 and "36x24 mm sensor" in notes[0]
    missing = run_cli("dof", tmp_path / "nope.exr", tmp_path / "x.exr",
                      "--focus-distance", "2", "--fstop", "2", "--focal-length", "50")
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_lens_option_errors_name_the_option_before_reading_anything(tmp_path, run_cli):
    r = run_cli("dof", tmp_path / "not-read.exr", tmp_path / "o.exr",
                "--focus-distance", "2", "--fstop", "2", "--focal-length", "0")
    assert r.returncode == 2
    assert "--focal-length: the focal length must be a positive number" in r.stderr
    assert "None" not in r.stderr


def test_depth_export_with_the_beauty_beside_it(tmp_path, run_cli):
    """Export on render with Beauty 'Beside' writes zdepth_0001.exr (depth only) and
    zdepth_0001_beauty.exr: refocusing the depth file takes its colour from the file beside it,
    with the same result as an export with the beauty in the same file."""
    rgba, depth = scene_arrays()
    cam = CameraInfo(focal_length_mm=100.0, fstop=0.8, focus_distance=NEAR)
    write_ours(tmp_path / "same.exr", rgba, depth, cam)
    exr.write_depth_exr(str(tmp_path / "zdepth_0001.exr"), depth,
                        encoding=DepthEncoding("log", 0.1, 100.0), camera=cam)
    args = ["--focus-distance", str(NEAR)]
    r = run_cli("dof", tmp_path / "zdepth_0001.exr", tmp_path / "out_missing.exr", *args)
    assert r.returncode == 1 and "zdepth_0001_beauty.exr" in r.stderr
    assert not (tmp_path / "out_missing.exr").exists()
    exr.write_exr(str(tmp_path / "zdepth_0001_beauty.exr"),
                  {c: rgba[..., i] for i, c in enumerate("RGBA")})
    for name in ("zdepth_0001.exr", "same.exr"):
        r = run_cli("dof", tmp_path / name, tmp_path / f"out_{name}", *args)
        assert r.returncode == 0, r.stderr
    beside, _ = rgba_of(tmp_path / "out_zdepth_0001.exr")
    same, _ = rgba_of(tmp_path / "out_same.exr")
    np.testing.assert_array_equal(beside, same)
    assert sharpness(beside, FAR_REGION) < 0.8 * sharpness(rgba, FAR_REGION)
    # A beauty of another size is refused, never resampled.
    exr.write_exr(str(tmp_path / "zdepth_0001_beauty.exr"),
                  {c: rgba[:-2, :, i] for i, c in enumerate("RGBA")}, overwrite=True)
    r = run_cli("dof", tmp_path / "zdepth_0001.exr", tmp_path / "out_bad.exr", *args)
    assert r.returncode == 1 and "refusing to resample" in r.stderr


def test_a_failed_frame_names_its_file_once(tmp_path, run_cli):
    rgba, _ = scene_arrays()
    path = tmp_path / "colour_only.exr"
    exr.write_exr(str(path), {c: rgba[..., i] for i, c in enumerate("RGBA")})
    r = run_cli("dof", path, tmp_path / "o.exr", "--focus-distance", "2", "--fstop", "2",
                "--focal-length", "50")
    assert r.returncode == 1 and "no depth channel" in r.stderr
    assert r.stderr.count(str(path)) == 1, r.stderr


# --- several frames at once (--jobs) and engine threads (--threads) ------------------------------

def _bad_sequence(folder):
    """Frames 1-6: 2 truncated, 3 missing, 4 without depth, 5 of another size; 1 and 6 good."""
    rgba, depth = scene_arrays()
    for f in (1, 2, 3, 4, 5, 6):
        write_plain(folder / f"r.{f:04d}.exr", rgba, depth)
    data = (folder / "r.0002.exr").read_bytes()
    (folder / "r.0002.exr").write_bytes(data[:len(data) // 2])
    os.remove(folder / "r.0003.exr")
    exr.write_exr(str(folder / "r.0004.exr"), {c: rgba[..., i] for i, c in enumerate("RGBA")},
                  overwrite=True)
    write_plain(folder / "r.0005.exr", rgba[:20, :32], depth[:20, :32])
    return rgba, depth


def test_jobs_same_outputs_reports_and_exit_codes_as_serial_then_resume(tmp_path, run_cli):
    rgba, depth = _bad_sequence(tmp_path)
    write_plain(tmp_path / "r.0007.exr", *scene_arrays(seed=1))
    runs = {}
    for jobs in ("1", "3"):
        out = tmp_path / f"out{jobs}"
        out.mkdir()
        r = run_cli("dof", tmp_path / "r.####.exr", out / "o.####.exr", "--frames", "1-7",
                    "--focus-distance", "2", *LENS, "--max-radius", "8", "--png",
                    "--jobs", jobs)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "7 frames: 3 written, 4 failed" in r.stdout
        assert r.stdout.count("] frame ") + r.stderr.count("] frame ") == 7
        runs[jobs] = r
    serial, parallel = runs["1"], runs["3"]
    assert "(3 at a time)" in parallel.stdout and "at a time" not in serial.stdout
    # failures: by name, the same lines, the same stderr
    def failed(stderr):  # progress lines without their "[i/n]" (the order frames finish)
        return sorted(line.split("] ", 1)[-1] for line in stderr.splitlines() if "FAILED" in line)

    assert len(failed(serial.stderr)) == 4 and "FAILED" not in serial.stdout
    assert failed(parallel.stderr) == failed(serial.stderr)
    summary = serial.stdout[serial.stdout.index("7 frames"):].splitlines()[1:]
    assert parallel.stdout[parallel.stdout.index("7 frames"):].splitlines()[1:] == summary
    for r in (serial, parallel):  # 4 failures and the note of the assumed sensor
        assert r.stderr.count("\n") == 5 and r.stderr.count("36x24 mm sensor") == 1
    # the same files, bit for bit (EXR and PNG)
    names = sorted(os.listdir(tmp_path / "out1"))
    assert names == ["o.0001.exr", "o.0001.png", "o.0006.exr", "o.0006.png", "o.0007.exr",
                     "o.0007.png"]
    assert sorted(os.listdir(tmp_path / "out3")) == names
    for name in names:
        a, b = (tmp_path / "out1" / name), (tmp_path / "out3" / name)
        if name.endswith(".png"):
            assert a.read_bytes() == b.read_bytes()
        else:
            np.testing.assert_array_equal(rgba_of(a)[0], rgba_of(b)[0])
    # repair and resume in parallel: only the missing frames are made
    stamp = os.stat(tmp_path / "out3" / "o.0001.exr").st_mtime_ns
    for f in (2, 3, 4, 5):
        write_plain(tmp_path / f"r.{f:04d}.exr", rgba, depth)
    r = run_cli("dof", tmp_path / "r.####.exr", tmp_path / "out3" / "o.####.exr", "--frames",
                "1-7", "--focus-distance", "2", *LENS, "--max-radius", "8", "--png", "--jobs",
                "2", "--skip-existing")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 written, 3 skipped" in r.stdout
    assert [line for line in r.stderr.splitlines() if "sensor" not in line] == []
    assert os.stat(tmp_path / "out3" / "o.0001.exr").st_mtime_ns == stamp
    assert len(os.listdir(tmp_path / "out3")) == 14


def test_threads_give_the_same_result(tmp_path, run_cli):
    rgba, depth = scene_arrays()
    write_plain(tmp_path / "plain.exr", rgba, depth)
    results = []
    for threads in ("1", "2", None):
        out = tmp_path / f"t{threads}.exr"
        r = run_cli("dof", tmp_path / "plain.exr", out, "--focus-distance", FAR, *LENS,
                    *(("--threads", threads) if threads else ()))
        assert r.returncode == 0, r.stderr
        results.append(rgba_of(out)[0])
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], atol=1e-6)


def test_jobs_stop_on_options_that_cannot_work(tmp_path, run_cli):
    rgba, depth = scene_arrays()
    for f in (1, 2, 3, 4):
        write_plain(tmp_path / f"r.{f:04d}.exr", rgba, depth)
    r = run_cli("dof", tmp_path / "r.####.exr", tmp_path / "o.####.exr", "--focus-distance", "2",
                "--fstop", "2", "--jobs", "2")
    assert r.returncode == 2 and "--focal-length" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert f"frame 1 ({tmp_path / 'r.0001.exr'})" in r.stderr  # the first, as in a serial run
    assert not any(n.startswith(("o.", ".o.")) for n in os.listdir(tmp_path))


@pytest.mark.parametrize("option,value,message", [
    ("--jobs", "0", "0 is too small: give 1 or more"),
    ("--jobs", "-2", "-2 is too small"),
    ("--jobs", "many", "'many' is not a whole number"),
    ("--jobs", "1.5", "not a whole number"),
    ("--threads", "0", "0 is too small: give 1 or more"),
    ("--threads", "-1", "-1 is too small: give 1 or more"),
    ("--threads", "all", "not a whole number"),
])
def test_bad_jobs_and_threads(tmp_path, run_cli, option, value, message):
    rgba, depth = scene_arrays()
    write_plain(tmp_path / "r.0001.exr", rgba, depth)
    r = run_cli("dof", tmp_path / "r.####.exr", tmp_path / "o.####.exr", "--focus-distance", "2",
                *LENS, option, value)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert sorted(os.listdir(tmp_path)) == ["r.0001.exr"]


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT to a process group")
def test_ctrl_c_stops_the_workers_and_leaves_no_partial_file(tmp_path):
    import signal

    rng = np.random.default_rng(3)
    size = 384
    rgba = np.ones((size, size, 4), np.float32)
    rgba[..., :3] = rng.random((size, size, 3))
    depth = (1.0 + 19.0 * rng.random((size // 8, size // 8))).astype(np.float32)
    depth = np.kron(depth, np.ones((8, 8), np.float32))  # dense depth edges: slow frames
    # Many frames, so that the run cannot end between the first progress line and the signal,
    # however loaded the machine and however fast the engine (24 frames once did: exit 0, all
    # written); when Ctrl+C works, only the first few are refocused. Hard links: one file.
    frames = 240
    write_plain(tmp_path / "r.0001.exr", rgba, depth)
    for f in range(2, frames + 1):
        os.link(tmp_path / "r.0001.exr", tmp_path / f"r.{f:04d}.exr")
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "blender_zdepth", "dof", str(tmp_path / "r.####.exr"),
         str(out / "o.####.exr"), "--focus-distance", "2", "--fstop", "0.5", "--focal-length",
         "100", "--max-radius", "32", "--png", "--jobs", "2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        first = proc.stdout.readline()  # a frame is done: the workers are running
        assert "frame" in first, first + proc.stderr.read()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl+C in a terminal does
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stdout + stderr
    # (besides the note of the 36x24 mm sensor these plain files do not record)
    assert [line for line in stderr.strip().splitlines()
            if "36x24 mm sensor" not in line] == ["blender_zdepth: interrupted"]
    names = os.listdir(out)
    assert 0 < len(names) < 2 * frames and not [n for n in names if n.startswith(".")]
    for name in names:  # whatever is there is whole
        if name.endswith(".exr"):
            assert rgba_of(out / name)[0].shape == (size, size, 4)
    # no worker is left behind
    import time

    time.sleep(0.5)
    ps = subprocess.run(["ps", "-o", "stat=,pid=,args=", "-g", str(proc.pid)],
                        capture_output=True, text=True)
    running = [line for line in ps.stdout.splitlines() if not line.strip().startswith("Z")]
    assert running == [], ps.stdout  # (a zombie is an exited process its parent has not reaped)


def test_jobs_with_deep_input_beside_flat_exports(tmp_path, run_cli):
    """Deep input (a <name>_deep.exr beside each flat export) in worker processes: the same
    results and progress details as one frame after another."""
    rgba, depth = scene_arrays()
    behind = rgba.copy()
    behind[..., :3] = 0.5
    cam = CameraInfo(focal_length_mm=100.0, sensor_width_mm=36.0, fstop=0.8, focus_distance=FAR)
    for f in (1, 2, 3):
        exr.write_depth_exr(str(tmp_path / f"shot.{f:04d}.exr"), depth,
                            encoding=DepthEncoding("log", 0.1, 100.0), rgba=rgba, camera=cam)
        exr.write_deep_exr(tmp_path / f"shot.{f:04d}_deep.exr", rgba, depth,
                            [(behind, np.full_like(depth, 12.0))], camera=cam)
    outs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}"
        out.mkdir()
        r = run_cli("dof", tmp_path / "shot.####.exr", out / "o.####.exr", "--frames", "1-3",
                    "--jobs", jobs)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.count("deep shot.") == 3, r.stdout
        outs[jobs] = out
    for f in (1, 2, 3):
        np.testing.assert_array_equal(rgba_of(outs["1"] / f"o.{f:04d}.exr")[0],
                                      rgba_of(outs["2"] / f"o.{f:04d}.exr")[0])
