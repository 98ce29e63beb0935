"""Deep input for the depth of field: ``dof`` on a deep OpenEXR (ours or another renderer's), a
flat export with ``<name>_deep.exr`` beside it, bad deep files, and the pinhole identity."""

import numpy as np
import OpenEXR
import pytest

from blender_zdepth.core import deep, dof, exr, refocus
from blender_zdepth.core.camera import CameraInfo
from blender_zdepth.core.encodings import DepthEncoding
from blender_zdepth.core.lens import Lens

H, W = 40, 64
CAMERA = CameraInfo(focal_length_mm=100.0, sensor_width_mm=36.0, fstop=0.8, focus_distance=2.0)


def layers():
    """A near subject (2 m, middle) before a wall (8 m); the peeled pass sees the wall behind
    the subject, with its own colour."""
    rng = np.random.default_rng(4)
    rgba = np.ones((H, W, 4), np.float32)
    rgba[..., :3] = rng.random((H, W, 3)) * 0.5
    depth = np.full((H, W), 8.0, np.float32)
    depth[10:30, 20:44] = 2.0
    rgba[10:30, 20:44, :3] = [0.9, 0.2, 0.1]
    behind = rgba.copy()
    behind[10:30, 20:44, :3] = [0.1, 0.8, 0.2]
    bdepth = np.full((H, W), 8.0, np.float32)
    return rgba, depth, [(behind, bdepth)]


def rgba_of(path):
    img = exr.read_exr(str(path))
    return np.dstack([img.channels[c] for c in "RGBA"])


def test_dof_on_our_deep_file(tmp_path, run_cli):
    rgba, depth, hidden = layers()
    src = exr.write_deep_exr(tmp_path / "shot_deep.exr", rgba, depth, hidden, camera=CAMERA)
    r = run_cli("dof", src, tmp_path / "out.exr")
    assert r.returncode == 0, r.stderr
    assert "deep shot_deep.exr: 1 hidden layer(s)" in r.stdout
    out = rgba_of(tmp_path / "out.exr")
    assert out.shape == rgba.shape and np.all(np.isfinite(out))
    assert not np.allclose(out, rgba)  # it was blurred


def test_flat_export_uses_the_deep_file_beside_it(tmp_path, run_cli):
    rgba, depth, hidden = layers()
    flat = exr.write_depth_exr(tmp_path / "shot.exr", depth, encoding=DepthEncoding("log", 0.1, 100.0),
                               rgba=rgba, camera=CAMERA)
    exr.write_deep_exr(tmp_path / "shot_deep.exr", rgba, depth, hidden, camera=CAMERA)
    r = run_cli("dof", flat, tmp_path / "a.exr")
    assert r.returncode == 0, r.stderr
    assert "deep shot_deep.exr" in r.stdout
    r = run_cli("dof", flat, tmp_path / "b.exr", "--no-deep")
    assert r.returncode == 0, r.stderr
    assert "hidden layer" not in r.stdout
    # the flat beauty and the deep file's flattened image agree: what differs is the hidden
    # surface (the wall behind the subject) that only the deep file gives the engine
    a, b = rgba_of(tmp_path / "a.exr"), rgba_of(tmp_path / "b.exr")
    assert a.shape == b.shape
    assert not np.allclose(a, b, atol=1e-5)


def test_deep_beside_of_another_size_is_one_clear_error(tmp_path, run_cli):
    rgba, depth, hidden = layers()
    flat = exr.write_depth_exr(tmp_path / "shot.exr", depth, rgba=rgba, camera=CAMERA)
    exr.write_deep_exr(tmp_path / "shot_deep.exr", rgba[:20], depth[:20], camera=CAMERA)
    r = run_cli("dof", flat, tmp_path / "o.exr")
    assert r.returncode == 1
    assert "not the same frame" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o.exr").exists()


def _raw_deep(path, samples, with_z=True):
    names = ["R", "G", "B", "A"] + (["Z", "ZBack"] if with_z else [])
    chans = {}
    for i, name in enumerate(names):
        obj = np.empty((H, W), dtype=object)
        for (y, x), ss in samples.items():
            obj[y, x] = np.array([s[i] for s in ss],
                                 np.float16 if name in "RGBA" else np.float32)
        chans[name] = obj
    OpenEXR.File({"type": OpenEXR.deepscanline, "compression": OpenEXR.ZIPS_COMPRESSION,
                  "aperture": 0.8, "nominalFocalLength": 100.0, "focus": 2.0},
                 chans).write(str(path))
    return str(path)


def test_another_renderers_file_with_unsorted_samples(tmp_path, run_cli):
    samples = {}
    for y in range(H):
        for x in range(W):
            far = (0.2, 0.2, 0.2, 1.0, 8.0, 8.0)
            near = (0.45, 0.05, 0.05, 0.5, 2.0, 2.0)
            samples[(y, x)] = [far, near] if 20 <= x < 40 else [far]  # back to front: unsorted
    src = _raw_deep(tmp_path / "other.exr", samples)
    r = run_cli("dof", src, tmp_path / "o.exr", "--sensor-width", "36")
    assert r.returncode == 0, r.stderr
    assert f"{H * 20} pixel(s) sorted" in r.stdout


@pytest.mark.parametrize("what", ["truncated", "no_z"])
def test_bad_deep_files_are_one_line_exit_1(tmp_path, run_cli, what):
    rgba, depth, hidden = layers()
    if what == "truncated":
        src = exr.write_deep_exr(tmp_path / "d.exr", rgba, depth, hidden, camera=CAMERA)
        data = open(src, "rb").read()
        open(src, "wb").write(data[: len(data) // 2])
        expect = "damaged or truncated"
    else:
        src = _raw_deep(tmp_path / "d.exr", {(0, 0): [(1, 1, 1, 1)]}, with_z=False)
        expect = "no Z channel"
    r = run_cli("dof", src, tmp_path / "o.exr", "--focus-distance", "2")
    assert r.returncode == 1
    assert expect in r.stderr and "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "o.exr").exists()


def test_pinhole_dof_of_a_deep_file_is_its_flattened_image(tmp_path):
    rgba, depth, hidden = layers()
    rgba[5:8, 5:9, :] *= 0.5     # some partly transparent pixels too
    src = exr.write_deep_exr(tmp_path / "d.exr", rgba, depth, hidden, camera=CAMERA)
    frame = refocus.load_input(src)
    flat, _ = deep.flatten(exr.read_deep(src))
    lens = Lens(focal_length_mm=100.0, fstop=1000.0, focus_distance=2.0, sensor_width_mm=36.0)
    out = refocus.refocus_array(frame, lens, dof.DofSettings())
    assert frame.hidden  # hidden layers were handed over
    assert np.allclose(out, flat, atol=1e-5)


def test_hidden_layers_reach_the_engine(tmp_path, monkeypatch):
    rgba, depth, hidden = layers()
    src = exr.write_deep_exr(tmp_path / "d.exr", rgba, depth, hidden, camera=CAMERA)
    seen = {}

    def recording_defocus(rgba, depth, lens, settings=None, hidden=None):
        seen["hidden"] = hidden
        return rgba

    monkeypatch.setattr(dof, "defocus", recording_defocus)
    frame = refocus.load_input(src)
    refocus.refocus_array(frame, Lens(focal_length_mm=100.0, fstop=2.0, focus_distance=2.0),
                           dof.DofSettings())
    (hrgba, hdepth), = seen["hidden"]
    assert np.all(hdepth[10:30, 20:44] == 8.0) and np.all(np.isinf(hdepth[:10]))
    assert np.allclose(hrgba[10:30, 20:44, 1], 0.8)
    # a budget of 0 hands nothing over; --no-deep on a flat file beside a deep one neither
    frame = refocus.load_input(src, deep=0)
    assert frame.hidden == []


def test_inspect_shows_a_deep_files_sample_counts(tmp_path, run_cli):
    import json

    rgba, depth, hidden = layers()
    src = exr.write_deep_exr(tmp_path / "d.exr", rgba, depth, hidden, camera=CAMERA)
    r = run_cli("inspect", src)
    assert r.returncode == 0, r.stderr
    behind = 20 * 24  # the subject's pixels hold a second sample (the wall behind)
    assert f"samples: {H * W + behind} in {H * W} of {H * W} pixels" in r.stdout
    assert f"1: {H * W - behind}, 2: {behind}" in r.stdout
    assert "depth layers: 2" in r.stdout
    info = json.loads(run_cli("inspect", src, "--json").stdout)
    assert info["deep"] and info["max_samples"] == 2 and info["depth"] == {"min": 2.0,
                                                                            "max": 8.0}
    bad = tmp_path / "bad.exr"
    bad.write_bytes(open(src, "rb").read()[:300])
    r = run_cli("inspect", bad)
    assert r.returncode == 1 and "Traceback" not in r.stderr
