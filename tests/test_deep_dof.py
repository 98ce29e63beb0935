"""Deep input for the depth of field: ``dof`` on a deep OpenEXR (ours or another renderer's), a
flat export with ``<name>_deep.exr`` beside it, bad deep files, and the pinhole identity."""

import numpy as np
import OpenEXR
import pytest

from blender_zdepth.core import deep, dof, exr, refocus
from blender_zdepth.core.camera import CameraInfo
from blender_zdepth.core.encodings import DepthEncoding
from blender_zdepth.core.slabs import packed_from_slabs
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


def curtain_slabs():
    """A 35 % curtain (1.5 m, left half) before a textured wall (8 m): the beauty, its Z pass
    (the wall: a curtain under the alpha threshold has no depth there) and the two
    coverage-correct slabs, near to far."""
    rng = np.random.default_rng(7)
    wall = np.ones((H, W, 4), np.float32)
    wall[..., :3] = rng.random((H, W, 3))
    wdepth = np.full((H, W), 8.0, np.float32)
    curtain = np.zeros((H, W, 4), np.float32)
    curtain[:, :W // 2] = [0.35 * 0.9, 0.35 * 0.1, 0.35 * 0.1, 0.35]
    cdepth = np.where(curtain[..., 3] > 0, 1.5, 1e10).astype(np.float32)
    beauty = curtain + (1 - curtain[..., 3:]) * wall
    return beauty, wdepth, [(curtain, cdepth), (wall, wdepth)]


def test_deep_file_with_partial_coverage_refocuses_as_coverage_layers(tmp_path, run_cli):
    beauty, depth, slabs = curtain_slabs()
    src = exr.write_deep_exr(tmp_path / "slabs_deep.exr", beauty, depth, slabs=slabs,
                             camera=CAMERA)
    image = exr.read_deep(src)
    assert deep.has_partial_coverage(image)
    flat, _ = deep.flatten(image)
    np.testing.assert_allclose(flat, beauty, atol=1e-6)  # the file flattens to the beauty
    frame = refocus.load_input(src)
    assert frame.layers and not frame.hidden
    r = run_cli("dof", src, tmp_path / "out.exr", "--focus-distance", "8")
    assert r.returncode == 0, r.stderr
    assert "coverage layer(s)" in r.stdout
    out = rgba_of(tmp_path / "out.exr")
    lens = Lens(focal_length_mm=100.0, fstop=0.8, focus_distance=8.0, sensor_width_mm=36.0,
                frame_size=(W, H))
    layered = dof.defocus(beauty, depth, lens, dof.DofSettings(), layers=slabs)
    flat_only = dof.defocus(beauty, depth, lens, dof.DofSettings())
    np.testing.assert_allclose(out, layered, atol=1e-4)
    # the curtain melts (blurred at its own 1.5 m) where the flat Z pass would keep it crisp
    assert np.abs(out - flat_only).max() > 0.05



def test_inspect_says_how_the_layers_were_made_and_the_recorded_colour(tmp_path, run_cli):
    import json

    from blender_zdepth.core.colour import ColourSettings

    beauty, depth, slabs = curtain_slabs()
    colour = ColourSettings(display="sRGB", view="AgX", look="AgX - Punchy", exposure=1.0)
    src = exr.write_deep_exr(tmp_path / "slabs_deep.exr", beauty, depth, slabs=slabs,
                             camera=CAMERA, bounds=(0.1, 4.0, 100.0),
                             extra_header=colour.to_header())
    r = run_cli("inspect", src)
    assert r.returncode == 0, r.stderr
    assert "depth layers: 2 coverage slabs" in r.stdout and "boundaries 0.1 4 100" in r.stdout
    assert "peeled" not in r.stdout
    assert ("colour management at render: view AgX, display sRGB, look AgX - Punchy, "
            "exposure +1") in r.stdout
    info = json.loads(run_cli("inspect", src, "--json").stdout)
    assert info["layer_mode"] == "slabs" and info["slab_bounds"] == [0.1, 4.0, 100.0]
    assert info["colour"] == {"display": "sRGB", "view": "AgX", "look": "AgX - Punchy",
                              "exposure": 1.0}
    rgba, depth, hidden = layers()  # a peeled file, without colour settings
    src = exr.write_deep_exr(tmp_path / "peel_deep.exr", rgba, depth, hidden, camera=CAMERA)
    r = run_cli("inspect", src)
    assert "depth layers: 2 (the beauty and 1 peeled pass(es))" in r.stdout
    assert "colour management: not recorded" in r.stdout
    assert json.loads(run_cli("inspect", src, "--json").stdout)["layer_mode"] == "peel"


def test_peeled_deep_files_keep_their_hidden_layers():
    rgba, depth, hidden = layers()
    image = deep.packed_from_layers(rgba, depth, hidden)
    assert not deep.has_partial_coverage(image)
    inp = deep.engine_input(image)
    ref = deep.to_engine(image)
    assert inp.layers == [] and len(inp.hidden) == len(ref[2]) == 1
    for a, b in zip(inp[:2] + tuple(inp.hidden[0]), ref[:2] + tuple(ref[2][0])):
        assert np.array_equal(a, b)


def test_coverage_layers_hold_each_pixels_kth_sample_within_the_budget():
    beauty, depth, slabs = curtain_slabs()
    extra = np.zeros((H, W, 4), np.float32)
    extra[:, :W // 2] = [0.1, 0.1, 0.1, 0.5]
    slabs = [(extra, np.full((H, W), 1.0, np.float32))] + slabs  # 3 samples on the left
    beauty = extra + (1 - extra[..., 3:]) * beauty  # the beauty the three slabs make
    image = packed_from_slabs(beauty, slabs)
    three = deep.coverage_layers(image, max_layers=2)
    assert len(three) == 3
    (l0, z0), (l1, z1), (l2, z2) = three
    assert np.all(z0[:, :W // 2] == 1.0) and np.all(z0[:, W // 2:] == 8.0)
    assert np.all(z1[:, :W // 2] == 1.5) and np.all(np.isinf(z1[:, W // 2:]))
    assert np.all(l1[:, W // 2:] == 0) and np.all(z2[:, :W // 2] == 8.0)
    # a budget of 1 (two layers): the rest of a pixel's samples over each other in the last
    (m0, _), (m1, w1) = deep.coverage_layers(image, max_layers=1)
    assert np.all(w1[:, :W // 2] == 1.5)
    expect = slabs[1][0] + (1 - 0.35) * slabs[2][0]
    np.testing.assert_allclose(m1[:, :W // 2], expect[:, :W // 2], atol=1e-6)
    assert deep.coverage_layers(image, max_layers=0) == []
