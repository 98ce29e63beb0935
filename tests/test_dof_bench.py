"""The benchmark harness itself: Blender's Defocus node driven from numpy, and the edge band.

Keeps ``benchmarks/_blender_defocus.py`` honest on both Blender lines (a broken harness would
make the DOF benchmarks compare against nothing).
"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))


def _node_radius(f_mm, fstop, focus_m, width, sensor_mm=36.0):
    """CoC radius at infinity in pixels with the textbook thin lens the node uses."""
    return 0.5 * f_mm * f_mm / (fstop * (focus_m * 1000.0 - f_mm)) * width / sensor_mm


@pytest.mark.blender
def test_defocus_node_passthrough_and_disk(bpy):
    import _blender_defocus as bd

    w, h = 96, 48
    rgba = np.zeros((h, w, 4), np.float32)
    rgba[..., 3] = 1.0
    rgba[..., 1] = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]  # an orientation cue
    rgba[10, 70, 0] = 50.0  # one bright pixel, far away
    depth = np.full((h, w), np.inf, np.float32)  # background: the lens' far limit
    depth[:, :20] = 1.0  # in focus: must stay sharp
    f, n, s = 50.0, 1.0, 1.0
    node = bd.DefocusNode(rgba, depth, focal_length_mm=f, fstop=n, focus_distance=s,
                          blur_max=20.0)
    try:
        plain, _ = node.run(defocus=False)
        out, timing = node.timed(repeats=1, baseline_repeats=1)
    finally:
        node.close()
    # Without the node the image comes back exactly (orientation, premultiplied alpha).
    np.testing.assert_array_equal(plain, rgba)
    assert timing["median_s"] >= 0.0 and len(timing["renders_s"]) == 1
    # The in-focus strip stays sharp.
    np.testing.assert_allclose(out[:, :16, 1], rgba[:, :16, 1], atol=1e-5)
    # The bright pixel becomes a disk of the node's radius, energy kept.
    r = _node_radius(f, n, s, w)
    red = out[..., 0]
    ys, xs = np.nonzero(red > 1e-3)
    assert abs((xs.max() - xs.min()) / 2.0 - r) <= 1.0
    assert abs((ys.max() - ys.min()) / 2.0 - r) <= 1.0
    assert red.sum() == pytest.approx(50.0, rel=0.02)
    # blur_max caps the radius.
    capped = bd.defocus(rgba, depth, focal_length_mm=f, fstop=n, focus_distance=s, blur_max=1.5)
    ys, xs = np.nonzero(capped[..., 0] > 1e-3)
    assert (xs.max() - xs.min()) / 2.0 <= 1.5 and (ys.max() - ys.min()) / 2.0 <= 1.5


def test_edge_band_follows_coc():
    import dof_quality as q

    coc = np.zeros((40, 60), np.float32)
    coc[:, 30:] = 6.0  # one vertical discontinuity, the right side blurred by 6 px
    band = q.edge_band(coc, jump=1.0, margin=3)
    cols = np.nonzero(band.any(axis=0))[0]
    # Edge pixels at columns 29 and 30, dilated by 3 + 6 px.
    assert cols.min() == 29 - 9 and cols.max() == 30 + 9
    assert not q.edge_band(np.full((20, 20), 5.0, np.float32)).any()


def test_cycles_coc_matches_thin_lens():
    import dof_quality as q

    p = {"resolution": [480, 270], "focal_length_mm": 50.0, "fstop": 2.0,
         "focus_distance": 4.0, "sensor_width_mm": 36.0, "sensor_height_mm": 24.0,
         "sensor_fit": "AUTO"}
    depth = np.array([[4.0, 2.0, np.inf, 1e10]], np.float32)
    coc = q.cycles_coc_radius(depth, p)
    r_inf = 0.5 * 50.0 ** 2 / (2.0 * 4000.0) * 480 / 36.0
    np.testing.assert_allclose(coc[0], [0.0, -r_inf, r_inf, r_inf], rtol=1e-6, atol=1e-6)


@pytest.mark.blender
@pytest.mark.slow
def test_cycles_renders_the_coc_the_benchmark_assumes(bpy, tmp_path):
    """A bright sphere far behind the focal plane, rendered with Cycles' DOF: its blur disk has
    the radius ``f^2 / (N S) (1 - S/D)`` (Cycles' mapping, used by dof_quality.py), not the
    textbook ``f^2 / (N (S - f))`` one (5% larger here)."""
    import math

    import _blender_defocus as bd
    import dof_quality as q
    from blender_zdepth.blender import compat, scenes

    w, h, dist, sphere = 400, 200, 50.0, 0.3
    scene = scenes.empty_scene((w, h), "CYCLES", 256)
    scene.cycles.max_bounces = 0
    scene.cycles.filter_width = 0.01
    scenes.set_world_color(scene, (0.0, 0.0, 0.0), 0.0)
    scenes.add_object(scene, "uv_sphere", "Light", scenes.emission_material("L", (1, 1, 1), 10.0),
                      radius=sphere, location=(0.0, dist, 0.0), segments=64, ring_count=32)
    cam = scenes.add_camera(scene, (0, 0, 0), (0, 10, 0), lens=50.0, sensor_width=36.0)
    cam.data.dof.use_dof = True
    cam.data.dof.focus_distance = 1.0
    cam.data.dof.aperture_fstop = 1.0
    compat.set_multilayer_exr(scene.render.image_settings)
    scene.render.filepath = str(tmp_path / "disk.exr")
    with bd.quiet_stdout():
        bpy.ops.render.render(write_still=True)
    rgba, _ = bd.read_render(str(tmp_path / "disk.exr"))
    lum = rgba[..., 0].astype(np.float64)
    y, x = np.mgrid[0:h, 0:w] + 0.5
    total = lum.sum()
    cx = (lum * x).sum() / total
    var = (lum * (x - cx) ** 2).sum() / total  # a uniform disk of radius R: R^2 / 4
    sphere_px = sphere / dist * 50.0 / 36.0 * w  # the sphere's own image, convolved in
    measured = math.sqrt(4.0 * var - sphere_px ** 2)
    p = {"resolution": [w, h], "focal_length_mm": 50.0, "fstop": 1.0, "focus_distance": 1.0,
         "sensor_width_mm": 36.0, "sensor_height_mm": 24.0, "sensor_fit": "AUTO"}
    expected = float(q.cycles_coc_radius(np.array([[dist]], np.float32), p)[0, 0])
    textbook = 0.5 * 50.0 ** 2 / (1.0 * (1000.0 - 50.0)) * (1 - 1 / dist) * w / 36.0
    assert measured == pytest.approx(expected, rel=0.015)
    assert abs(measured - textbook) > 0.03 * textbook


def test_thread_sweep_counts_and_bad_arguments(capsys):
    """bench_dof_threads: the thread counts it sweeps, and a bad argument exits 2 with one
    line (the sweep itself is a benchmark, not run here)."""
    import bench_dof_threads as bt

    assert bt.thread_counts(1) == [1]
    assert bt.thread_counts(2) == [1, 2]
    assert bt.thread_counts(12) == [1, 2, 4, 8, 12]
    assert bt.thread_counts(16) == [1, 2, 4, 8, 16]
    for bad in (["--threads", "0"], ["--threads", "two"], ["--frames", "rain"],
                ["--inflight-mb", "0"], ["--repeats", "0"]):
        with pytest.raises(SystemExit) as e:
            bt.main(bad)
        assert e.value.code == 2, bad
        err = capsys.readouterr().err.strip().splitlines()
        assert err and "error:" in err[-1], (bad, err)
