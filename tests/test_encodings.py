"""Depth encodings: maps, round trips in memory, background rule, ranges, header, preview."""

import math

import numpy as np
import pytest

from blender_zdepth.core.camera import CameraInfo
from blender_zdepth.core.encodings import (ENCODINGS, DepthEncoding, background_threshold,
                                           is_background, preview, range_from_camera,
                                           range_from_data, sequence_range)
from blender_zdepth.core.errors import UsageError, ZDepthError


def test_default_is_log():
    assert ENCODINGS[0] == "log"
    assert DepthEncoding().name == "log"


@pytest.mark.parametrize("name", ENCODINGS)
def test_monotonic_and_invertible_inside_and_outside_range(name):
    enc = DepthEncoding(name, near=0.5, far=200.0)
    z = np.geomspace(0.01, 5000.0, 2001)  # well outside [near, far] on both sides
    v = enc.encode(z)
    dv = np.diff(v.astype(np.float64))
    assert np.all(dv > 0) or np.all(dv < 0), "encoding must be strictly monotonic"
    back = enc.decode(v)
    assert back.dtype == np.float32
    # no clamping outside [near, far]; normalized is a linear map, so its error is absolute
    err = np.abs(back - z) / (np.maximum(z, enc.far) if name == "normalized" else z)
    assert np.max(err) < 2e-6


def test_log_maps_near_to_0_far_to_1_and_formula_by_hand():
    enc = DepthEncoding("log", 0.25, 64.0)  # exact in float32
    assert enc.encode([0.25, 64.0]).tolist() == [0.0, 1.0]
    # 4 m: ln(16) / ln(256) = 0.5
    assert enc.encode([4.0])[0] == pytest.approx(0.5, abs=1e-7)
    assert enc.decode([0.5])[0] == pytest.approx(4.0, rel=1e-7)
    assert enc.encode([0.0])[0] == -np.inf and enc.decode([-np.inf])[0] == 0.0


def test_linear_normalized_inverse_by_hand():
    assert DepthEncoding("linear", 1, 10).encode([3.5])[0] == 3.5
    assert DepthEncoding("normalized", 2, 12).encode([7.0])[0] == pytest.approx(0.5)
    assert DepthEncoding("normalized", 2, 12).encode([22.0])[0] == pytest.approx(2.0)
    assert DepthEncoding("inverse", 1, 10).encode([4.0])[0] == 0.25


@pytest.mark.parametrize("name", ENCODINGS)
def test_background_survives_and_decodes_to_inf(name):
    enc = DepthEncoding(name, 0.1, 100.0)
    z = np.array([1.0, 1e10, np.nan, np.inf, -np.inf, 2e9, 50.0])
    v = enc.encode(z)
    assert np.all(v[1:6] == enc.background_value)
    assert enc.background_value == (0.0 if name == "inverse" else np.inf)
    d = enc.decode(v)
    assert np.all(np.isinf(d[1:6])) and np.all(d[1:6] > 0)
    assert d[0] == pytest.approx(1.0, rel=1e-6) and d[6] == pytest.approx(50.0, rel=1e-6)
    # background survives half float too
    d16 = enc.decode(v.astype(np.float16))
    assert np.all(np.isposinf(d16[1:6])) and np.all(np.isfinite(d16[[0, 6]]))


def test_is_background_rule():
    d = np.array([0.0, 5.0, 999_999_999.0, 1e9, 1e10, np.nan, np.inf, -np.inf])
    assert is_background(d).tolist() == [False, False, False, True, True, True, True, True]
    assert is_background(d, 5.0)[1]
    assert is_background(d, None).tolist() == [False] * 5 + [True] * 3


def test_background_threshold_for_eevee_and_cycles():
    assert background_threshold(100.0, 0.1, "CYCLES") == 1e9
    assert background_threshold(None) == 1e9
    t = background_threshold(100.0, 0.1, "BLENDER_EEVEE")
    # EEVEE wrote 99.99771 for clip 0.1-100 (measured): must be background, 99.9 m must not
    assert 99.9 < t <= 99.99771
    t = background_threshold(1000.0, 0.1, "BLENDER_EEVEE_NEXT")
    assert 990.0 < t < 1000.0


def test_negative_depth_is_an_error():
    with pytest.raises(ZDepthError, match="negative depth"):
        DepthEncoding().encode(np.array([1.0, -2.0]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="cubic"), "unknown depth encoding"),
    (dict(near=10.0, far=10.0), "must be less than far"),
    (dict(near=20.0, far=10.0), "must be less than far"),
    (dict(name="log", near=0.0, far=10.0), "greater than 0"),
    (dict(near=float("nan")), "finite"),
])
def test_bad_parameters_are_usage_errors(kwargs, match):
    with pytest.raises(UsageError, match=match):
        DepthEncoding(**kwargs)


def test_linear_and_normalized_accept_near_zero():
    assert DepthEncoding("linear", 0.0, 10.0).near == 0.0


@pytest.mark.parametrize("name", ENCODINGS)
def test_header_round_trip(name):
    enc = DepthEncoding(name, 0.1, 1234.5, units="cm", background=500.0)
    h = enc.to_header()
    assert all(k.startswith("zdepth") for k in h)
    assert h["zdepthEncoding"] == name and "background" in h["zdepthBackground"]
    # floats pass through float32 in an EXR header; near/far are float32 already
    h32 = {k: (float(np.float32(v)) if isinstance(v, float) else v) for k, v in h.items()}
    assert DepthEncoding.from_header(h32) == enc
    assert DepthEncoding.from_header({"foo": 1}) is None


def test_damaged_header_is_an_error():
    with pytest.raises(ZDepthError, match="damaged"):
        DepthEncoding.from_header({"zdepthEncoding": "log", "zdepthNear": 5.0})


def test_range_from_data_ignores_background_and_outliers():
    rng = np.random.default_rng(1)
    d = rng.uniform(2.0, 40.0, size=(200, 300))
    d[:20] = 1e10
    d[25, :5] = np.nan
    d[30, 0] = 1e8  # a single stray pixel below the background threshold
    near, far = range_from_data(d)
    assert 2.0 <= near < 2.1 and 39.9 < far <= 40.0


def test_sequence_range_is_one_range_for_all_frames():
    a = np.full((10, 10), 5.0)
    b = np.full((10, 10), 50.0)
    near, far = sequence_range([a, b], low=0.0, high=1.0)
    assert near == 5.0 and far == 50.0
    assert range_from_data(a) != range_from_data(b)


def test_range_from_data_needs_a_surface():
    with pytest.raises(ZDepthError, match="no pixel holds a surface"):
        range_from_data(np.full((4, 4), np.nan))


def test_range_from_camera():
    assert range_from_camera(CameraInfo(clip_start=0.1, clip_end=100.0)) == (0.1, 100.0)
    with pytest.raises(ZDepthError):
        range_from_camera(CameraInfo())


def test_preview_white_near_black_far():
    p = preview(np.array([[1.0, 10.0, 100.0, 1e10, 0.5, 400.0]]), 1.0, 100.0)
    assert p.dtype == np.float32
    assert p[0, 0] == 1.0 and p[0, 2] == pytest.approx(0.0, abs=1e-7) and p[0, 3] == 0.0
    assert p[0, 1] == pytest.approx(0.5, abs=1e-6)
    assert p[0, 4] == 1.0 and p[0, 5] == 0.0  # clipped outside the range


def test_camera_header_round_trip():
    m = np.arange(16, dtype=np.float32).reshape(4, 4)
    cam = CameraInfo(35.0, 36.0, 20.25, "HORIZONTAL", 2.8, 6.5, 0.1, 500.0, 12, 1.0, m, m * 2)
    h = cam.to_header()
    assert h["focus"] == 6.5 and h["aperture"] == 2.8 and h["worldToCamera"].dtype == np.float32
    back = CameraInfo.from_header(h)
    assert back.focal_length_mm == 35.0 and back.sensor_fit == "HORIZONTAL"
    assert back.frame == 12 and back.fstop == 2.8 and back.clip_end == 500.0
    assert np.array_equal(back.world_to_ndc, m * 2)
    assert CameraInfo.from_header({"zdepthEncoding": "log"}) is None
    assert math.isclose(CameraInfo.from_header({"focus": 3.0}).focus_distance, 3.0)
