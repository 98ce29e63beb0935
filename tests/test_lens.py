"""Thin-lens optics (core/lens.py): circle of confusion in pixels, sensor fit, focus picking."""

import math

import numpy as np
import pytest

from blender_zdepth.core.errors import UsageError, ZDepthError
from blender_zdepth.core.lens import Lens, coc_radius_px, depth_for_coc
from blender_zdepth.core.dof import focus_from_pixel


def cycles_radius_px(f_mm, n, s, d, width, sensor_mm):
    """Blur radius of Cycles' camera model worked out by hand: aperture radius f/(2N) metres
    at the pinhole, rays aimed at the focal plane z = S."""
    aperture = f_mm * 1e-3 / (2 * n)
    offset_on_focal_plane = aperture * (1 - s / d)
    angle = offset_on_focal_plane / s
    return angle * f_mm * width / sensor_mm


def test_coc_matches_cycles_camera_model_and_is_signed():
    lens = Lens(focal_length_mm=50, fstop=2.8, focus_distance=4.0)
    depth = np.array([[1.0, 2.0, 4.0, 8.0, 100.0]], np.float32)
    r = coc_radius_px(depth, lens, 1920, 1080)
    want = [cycles_radius_px(50, 2.8, 4.0, d, 1920, 36.0) for d in depth[0]]
    np.testing.assert_allclose(r[0], want, rtol=1e-5)
    assert r[0, 0] < 0 and r[0, 1] < 0 and r[0, 2] == 0 and r[0, 3] > 0
    assert r.dtype == np.float32


def test_textbook_formula_differs_by_s_minus_f_only():
    lens = Lens(focal_length_mm=85, fstop=1.4, focus_distance=2.0)
    d = 5.0
    f = 0.085
    textbook_radius_mm = f * f * abs(d - 2.0) / (1.4 * d * (2.0 - f)) / 2 * 1000
    ours = coc_radius_px(np.float32([d]), lens, 1000, 1000)[0] * 36.0 / 1000
    assert ours == pytest.approx(textbook_radius_mm * (2.0 - f) / 2.0, rel=1e-5)


def test_background_is_the_far_limit():
    lens = Lens(50, 2.0, 3.0)
    depth = np.array([np.inf, 1e10, np.nan, 1e30], np.float32)
    r = coc_radius_px(depth, lens, 640, 480)
    limit = lens.coc_at_infinity_px(640, 480)
    np.testing.assert_allclose(r, [limit] * 4, rtol=1e-6)
    assert limit == pytest.approx(cycles_radius_px(50, 2.0, 3.0, 1e300, 640, 36), rel=1e-6)


def test_max_radius_clamps_both_sides():
    lens = Lens(50, 1.0, 2.0)
    r = coc_radius_px(np.float32([0.1, 1e10]), lens, 4000, 3000, max_radius=20)
    assert r[0] == -20 and r[1] == 20
    assert coc_radius_px(np.float32([0.0, -1.0]), lens, 100, 100, 8).tolist() == [-8, -8]


@pytest.mark.parametrize("fit,width,height,pixels_per_mm", [
    ("AUTO", 1920, 1080, 1920 / 36.0),      # landscape: sensor width spans the width
    ("AUTO", 1080, 1920, 1920 / 36.0),      # portrait: sensor width spans the height
    ("HORIZONTAL", 1080, 1920, 1080 / 36.0),
    ("VERTICAL", 1920, 1080, 1080 / 24.0),
])
def test_sensor_fit(fit, width, height, pixels_per_mm):
    lens = Lens(50, 2.0, 2.0, sensor_width_mm=36, sensor_height_mm=24, sensor_fit=fit)
    assert lens.pixels_per_mm(width, height) == pytest.approx(pixels_per_mm)


def test_pixel_aspect_changes_auto_fit_and_horizontal_pixels():
    # 1000x800 pixels twice as wide as tall: the picture is 2000 wide -> horizontal fit.
    lens = Lens(50, 2.0, 2.0, pixel_aspect=2.0)
    assert lens.pixels_per_mm(1000, 800) == pytest.approx(1000 / 36)
    # 400x800 with pixels 2 wide: 800 x 800 -> still horizontal (ties go horizontal).
    assert lens.pixels_per_mm(400, 800) == pytest.approx(400 / 36)
    # 300x800: display 600 x 800 -> vertical; a pixel is 2 mm-units wide, so half as many
    # horizontal pixels per mm of sensor as vertical ones.
    assert lens.pixels_per_mm(300, 800) == pytest.approx(800 / 36 / 2)


def test_coc_is_linear_in_inverse_depth_and_invertible():
    lens = Lens(35, 4.0, 5.0)
    d = np.float32([1.0, 2.5, 5.0, 10.0, 50.0])
    r = coc_radius_px(d, lens, 800, 600).astype(np.float64)
    inv = 1 / d.astype(np.float64)
    slope = np.diff(r) / np.diff(inv)
    np.testing.assert_allclose(slope, slope[0], rtol=1e-4)
    np.testing.assert_allclose(depth_for_coc(r, lens, 800, 600), d, rtol=1e-4)


def test_bad_lens_values_are_usage_errors():
    for kwargs in (dict(focal_length_mm=0, fstop=2, focus_distance=1),
                   dict(focal_length_mm=50, fstop=-1, focus_distance=1),
                   dict(focal_length_mm=50, fstop=2, focus_distance=float("nan")),
                   dict(focal_length_mm=50, fstop=2, focus_distance=1, sensor_fit="DIAGONAL")):
        with pytest.raises(UsageError):
            Lens(**kwargs)


def test_from_camera_takes_camera_values_and_overrides():
    class Cam:  # the attribute names of core.camera.CameraInfo
        focal_length_mm = 85.0
        sensor_width_mm = 24.0
        sensor_height_mm = 16.0
        sensor_fit = "VERTICAL"
        fstop = 1.8
        focus_distance = None
        pixel_aspect = 1.0

    lens = Lens.from_camera(Cam(), focus_distance=3.0, fstop=None)
    assert (lens.focal_length_mm, lens.fstop, lens.focus_distance) == (85.0, 1.8, 3.0)
    assert lens.sensor_fit == "VERTICAL" and lens.sensor_width_mm == 24.0
    with pytest.raises(UsageError, match="--focus-distance"):
        Lens.from_camera(Cam())
    with pytest.raises(UsageError, match="--focal-length"):
        Lens.from_camera(None, fstop=2, focus_distance=1)


def test_focus_from_pixel_is_robust_at_edges():
    depth = np.full((20, 20), 10.0, np.float32)
    depth[:, :9] = 2.0          # an edge through the neighbourhood, majority at 10
    depth[5, 10] = 3.0          # one odd sample
    assert focus_from_pixel(depth, 10, 5) == 10.0
    assert focus_from_pixel(depth, 2, 2) == 2.0
    depth[:8, :] = np.inf
    with pytest.raises(ZDepthError, match="background"):
        focus_from_pixel(depth, 10, 2)
    with pytest.raises(UsageError, match="outside"):
        focus_from_pixel(depth, 25, 2)
    assert math.isfinite(focus_from_pixel(depth, 10, 15))
