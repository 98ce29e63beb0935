"""Precision report against hand calculations, and against errors measured through real files."""

import math

import numpy as np
import pytest

from blender_zdepth.core import exr
from blender_zdepth.core.encodings import ENCODINGS, DepthEncoding
from blender_zdepth.core.errors import UsageError
from blender_zdepth.core.precision import (BIT_DEPTHS, bit_depth_name, depth_step,
                                           precision_report, precision_table)
from blender_zdepth.core.frame import load_frame


def _step(report, label):
    return next(s for s in report.steps if s.label == label)


def test_8bit_linear_1_to_500_trap_by_hand():
    r = precision_report("linear", "8", 1.0, 500.0, focus=10.0)
    for label in ("near", "focus", "far"):
        assert _step(r, label).step == pytest.approx(499.0 / 255.0, rel=1e-6)  # 1.957 m
    assert _step(r, "near").relative == pytest.approx(499.0 / 255.0, rel=1e-6)
    assert any("banding will show" in w for w in r.warnings)
    assert any("256" in w for w in r.warnings)


def test_8bit_log_by_hand():
    r = precision_report("log", "8", 1.0, 500.0, focus=20.0)
    per = math.log(500.0) / 255.0  # relative step, the same everywhere
    assert _step(r, "near").step == pytest.approx(1.0 * per, rel=1e-6)  # 2.4 cm
    assert _step(r, "focus").step == pytest.approx(20.0 * per, rel=1e-6)
    assert _step(r, "far").step == pytest.approx(500.0 * per, rel=1e-6)  # 12.2 m
    assert any("banding will show" in w for w in r.warnings)


def test_16bit_integer_log_and_inverse_by_hand():
    r = precision_report("log", "16-int", 0.1, 1000.0)
    assert _step(r, "far").step == pytest.approx(1000.0 * math.log(1e4) / 65535, rel=1e-5)
    assert not any("banding" in w for w in r.warnings)
    r = precision_report("inverse", "16-int", 1.0, 100.0, focus=10.0)
    span = 1.0 / 1.0 - 1.0 / 100.0
    assert _step(r, "focus").step == pytest.approx(span / 65535 * 10.0 ** 2, rel=1e-5)
    assert _step(r, "far").step == pytest.approx(span / 65535 * 100.0 ** 2, rel=1e-5)


def test_float_steps_by_hand():
    # float32 linear at 1000: one ulp of a value in [512, 1024) is 2^-14
    r = precision_report("linear", "32", 0.1, 1000.0, focus=3.0)
    assert _step(r, "far").step == 2.0 ** -14
    assert _step(r, "focus").step == 2.0 ** -22  # 3.0 lies in [2, 4)
    # half log 0.1-1000 just below far: v in [0.5, 1) has ulp 2^-11, dz = z ln(far/near) dv
    r = precision_report("log", "16-half", 0.1, 1000.0)
    assert _step(r, "far").step == pytest.approx(1000.0 * math.log(1e4) * 2.0 ** -11, rel=1e-4)
    assert r.worst_relative_error == pytest.approx(math.log(1e4) * 2.0 ** -12, rel=0.01)
    # float32 log 0.01 m - 10 km stays under 1e-6
    r = precision_report("log", "32", 0.01, 1e4)
    assert r.worst_relative_error < 1e-6


def test_half_log_recommends_half_linear_when_it_fits():
    r = precision_report("log", "16-half", 0.1, 1000.0)
    assert any("half linear would serve better" in w for w in r.warnings)
    r = precision_report("log", "16-half", 0.1, 1e6)  # beyond half's 65504: log is the only way
    assert not any("half linear" in w for w in r.warnings)
    r = precision_report("linear", "16-half", 1.0, 1e5)
    assert any("65504" in w for w in r.warnings)
    assert r.steps[-1].step == math.inf


@pytest.mark.parametrize("name", ENCODINGS)
@pytest.mark.parametrize("bits", ["16-half", "32"])
def test_report_predicts_the_measured_error(tmp_path, name, bits):
    near, far = 0.2, 2000.0
    enc = DepthEncoding(name, near, far)
    z = np.geomspace(near, far, 300 * 300).reshape(300, 300)
    path = exr.write_depth_exr(tmp_path / "p.exr", z, encoding=enc, half=bits == "16-half")
    back = load_frame(path).depth.astype(np.float64)
    measured = float(np.max(np.abs(back / z - 1)))
    predicted = precision_report(enc, bits).worst_relative_error
    assert measured <= predicted * 1.01
    assert measured >= predicted / 3


def test_depth_step_matches_neighbouring_stored_values():
    enc = DepthEncoding("log", 0.5, 50.0)
    z = 7.0
    v = np.float32(enc.encode_value(z))
    below = np.nextafter(v, np.float32(0))
    by_values = float(enc.decode_value(v)) - float(enc.decode_value(below))
    assert float(depth_step(enc, "32", z)) == pytest.approx(by_values, rel=1e-3)


def test_table_and_names():
    table = precision_table(1.0, 100.0, focus=5.0)
    assert len(table) == len(ENCODINGS) * len(BIT_DEPTHS)
    assert bit_depth_name(16) == "16-half" and bit_depth_name("half") == "16-half"
    with pytest.raises(UsageError):
        bit_depth_name("12")
    text = precision_report("log", "8", 1.0, 500.0, focus=5.0).text()
    assert "depth step at focus" in text and "warning: banding will show" in text
