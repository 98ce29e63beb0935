"""Mixed pixels (issue 21): partial-coverage layers (``defocus(..., layers=...)``) and a flat Z
pass that dithers (read as coverage by the edge split)."""

import warnings

import numpy as np
import pytest

from blender_zdepth.core.dof import DofSettings, defocus
from blender_zdepth.core.dof.edges import _dither_map, split_edges
from blender_zdepth.core.lens import Lens

LENS = Lens(focal_length_mm=50.0, fstop=2.0, focus_distance=3.0, sensor_width_mm=36.0,
            sensor_height_mm=24.0, sensor_fit="AUTO")
SET = DofSettings(max_radius=16, threads=1)
H, W = 48, 64


def _wall(value=(0.2, 0.4, 0.6)):
    rgba = np.ones((H, W, 4), np.float32)
    rgba[..., :3] = value
    return rgba


def test_dithered_depth_is_found_and_a_clean_edge_is_not():
    rng = np.random.default_rng(1)
    coc = np.full((40, 60), 8.0, np.float32)
    trail = rng.random((40, 20)) < 0.35
    coc[:, 20:40] = np.where(trail, -10.0, 8.0)
    found = _dither_map(coc, 1.0)
    assert found is not None and found[5:-5, 24:36].mean() > 0.9
    assert not found[:, :8].any() and not found[:, 52:].any()
    edge = np.full((40, 60), 8.0, np.float32)
    edge[:, 30:] = -10.0
    edge[10:20, 29] = -10.0  # a ragged edge is still an edge
    assert _dither_map(edge, 1.0) is None


def test_dithered_pixels_are_shared_by_the_depth_share_around_them():
    rng = np.random.default_rng(2)
    h, w = 40, 60
    coc = np.full((h, w), 8.0, np.float32)
    coc[:, 20:40] = np.where(rng.random((h, 20)) < 0.35, -10.0, 8.0)
    col = np.ones((4, h, w), np.float32)
    col[:3] *= 0.5
    cov = np.ones((h, w), np.float32)
    before = col.copy()
    extra = split_edges(col, coc, cov)
    assert len(extra) == 1
    e = extra[0]
    inside = np.zeros(h * w, bool)
    inside.reshape(h, w)[8:-8, 26:34] = True
    at = inside[e.idx]
    # each pixel's own and other parts add up to the pixel (coverage and colour)
    flat_cov = cov.reshape(-1)
    total = flat_cov.copy()
    np.add.at(total, e.idx, e.cov)
    assert np.allclose(total, 1.0, atol=1e-5)
    summed = col.reshape(4, -1).copy()
    np.add.at(summed.T, e.idx, e.col.T)
    assert np.allclose(summed, before.reshape(4, -1), atol=1e-5)
    # the near share is about the trail's coverage, whatever the pixel's own depth
    near = np.where(e.coc[at] < 0, e.cov[at], 1 - e.cov[at])
    assert abs(float(near.mean()) - 0.35) < 0.08
    assert np.isfinite(e.col).all()


def test_dithered_pixels_keep_the_detail_on_the_sharper_side():
    # A blurred bar's trail (radius -12, 30 % of the samples) over a striped wall (radius 4):
    # the wall's stripes stay in the far (sharper) parts, the bar's parts are smooth.
    rng = np.random.default_rng(3)
    h, w = 48, 64
    coc = np.full((h, w), 4.0, np.float32)
    coc[:, 16:48] = np.where(rng.random((h, 32)) < 0.3, -12.0, 4.0)
    col = np.ones((4, h, w), np.float32)
    col[:3] = np.where(np.arange(w) % 4 < 2, 0.8, 0.2)[None, None, :]
    col[:3, :, 16:48] = 0.3 * 0.5 + 0.7 * col[:3, :, 16:48]  # the mix with a grey bar
    cov = np.ones((h, w), np.float32)
    before = col.copy()
    e, = split_edges(col, coc, cov)
    near = np.zeros((4, h * w), np.float32)
    far = np.zeros((4, h * w), np.float32)
    own_near = coc.reshape(-1) < 0
    flat = col.reshape(4, -1)
    near[:, own_near], far[:, ~own_near] = flat[:, own_near], flat[:, ~own_near]
    np.add.at(near.T, e.idx[e.coc < 0], e.col[:, e.coc < 0].T)
    np.add.at(far.T, e.idx[e.coc > 0], e.col[:, e.coc > 0].T)
    np.testing.assert_allclose(near + far, before.reshape(4, -1), atol=1e-5)  # conserved
    rows = slice(10, 38)
    inside = slice(24, 40)
    far_r = far[0].reshape(h, w)[rows, inside]
    near_r = near[0].reshape(h, w)[rows, inside]
    stripes = np.arange(w)[inside] % 4 < 2
    # the far parts hold the stripes at nearly the wall's full contrast times its share ...
    assert far_r[:, stripes].mean() - far_r[:, ~stripes].mean() > 0.8 * 0.7 * 0.6
    # ... the near parts hardly any
    assert abs(near_r[:, stripes].mean() - near_r[:, ~stripes].mean()) < 0.05


def test_dithered_frame_is_the_same_on_any_thread_count():
    rng = np.random.default_rng(4)
    rgba = _wall()
    rgba[..., :3] = rng.random((H, W, 3))
    depth = np.full((H, W), 8.0, np.float32)
    depth[:, 20:44] = np.where(rng.random((H, 24)) < 0.4, 1.2, 8.0)
    one = defocus(rgba, depth, LENS, DofSettings(max_radius=16, threads=1))
    two = defocus(rgba, depth, LENS, DofSettings(max_radius=16, threads=2))
    assert np.array_equal(one, two)


def test_flat_frame_without_dither_is_unchanged_by_the_dither_path():
    # Straight edges only: no pixel is isolated, the split is the one it always was.
    rgba = _wall()
    depth = np.full((H, W), 6.0, np.float32)
    depth[:, 30:] = 1.5
    rgba[:, 30:, :3] = (0.9, 0.3, 0.1)
    coc = np.zeros((H, W), np.float32)
    assert _dither_map(np.where(depth < 2, -8.0, 4.0).astype(np.float32), 1.0) is None
    out = defocus(rgba, depth, LENS, SET)
    assert np.isfinite(out).all()
    del coc


def test_curtain_in_focus_composites_over_and_a_blurred_one_melts():
    wall = _wall((0.2, 0.4, 0.6))
    curtain = np.zeros((H, W, 4), np.float32)
    pattern = np.indices((H, W)).sum(axis=0) % 2 == 0
    curtain[..., :3] = np.where(pattern[..., None], 0.9, 0.1) * 0.35
    curtain[..., 3] = 0.35
    flat = curtain + (1 - 0.35) * wall
    # both at the focus distance: the result is the composite, exactly as a pinhole sees it
    depth = np.full((H, W), 3.0, np.float32)
    out = defocus(flat, depth, LENS, SET, layers=[(curtain, depth), (wall, depth)])
    assert np.allclose(out, flat, atol=1e-5)
    # the curtain out of focus (0.25 m, ~4 px): its checker melts to its mean
    near = np.full((H, W), 0.25, np.float32)
    out = defocus(flat, depth, LENS, SET, layers=[(curtain, near), (wall, depth)])
    mid = out[12:-12, 16:-16, :3]
    expect = 0.35 * 0.5 + 0.65 * np.array([0.2, 0.4, 0.6], np.float32)
    assert np.allclose(mid, expect, atol=1e-2)
    assert np.isfinite(out).all()


def test_no_layers_is_bit_identical_and_unsorted_layers_are_sorted():
    wall = _wall()
    depth = np.full((H, W), 6.0, np.float32)
    base = defocus(wall, depth, LENS, SET)
    assert np.array_equal(base, defocus(wall, depth, LENS, SET, layers=[]))
    bar = np.zeros((H, W, 4), np.float32)
    bar[:, 20:30] = (0.5, 0.1, 0.1, 0.5)
    bar_d = np.full((H, W), 1.5, np.float32)
    flat = bar + (1 - bar[..., 3:]) * wall
    ordered = defocus(flat, depth, LENS, SET, layers=[(bar, bar_d), (wall, depth)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        swapped = defocus(flat, depth, LENS, SET, layers=[(wall, depth), (bar, bar_d)])
    assert np.allclose(ordered, swapped, atol=1e-6)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert "out of depth order" in str(caught[0].message)


def test_partial_sample_without_depth_takes_its_layers_depth_around_it():
    wall = _wall()
    depth = np.full((H, W), 6.0, np.float32)
    bar = np.zeros((H, W, 4), np.float32)
    bar[:, 20:30] = (0.4, 0.1, 0.1, 0.4)
    bar_d = np.full((H, W), np.inf, np.float32)
    bar_d[::3, 20:30] = 1.5  # the Z pass hit the bar in a third of its pixels
    flat = bar + (1 - bar[..., 3:]) * wall
    full = np.where(bar[..., 3] > 0, 1.5, np.inf).astype(np.float32)
    a = defocus(flat, depth, LENS, SET, layers=[(bar, bar_d), (wall, depth)])
    b = defocus(flat, depth, LENS, SET, layers=[(bar, full), (wall, depth)])
    assert np.allclose(a, b, atol=2e-3)


@pytest.mark.parametrize("bad", ["above", "below", "nan"])
def test_bad_samples_are_clamped_with_one_line_and_never_give_nan(bad):
    wall = _wall()
    depth = np.full((H, W), 6.0, np.float32)
    bar = np.zeros((H, W, 4), np.float32)
    bar[:, 20:30] = (0.4, 0.1, 0.1, 0.4)
    bar_d = np.full((H, W), 1.5, np.float32)
    if bad == "above":
        bar[5:9, 22:26] = (3.0, 1.0, 1.0, 2.0)
    elif bad == "below":
        bar[5:9, 22:26, 3] = -0.5
    else:
        bar[5:9, 22:26, 1] = np.nan
        bar_d[10, 10] = np.nan
    flat = np.clip(np.nan_to_num(bar), 0, None)[..., :3]
    flat = np.concatenate([flat + 0.5 * wall[..., :3], np.ones((H, W, 1), np.float32)], axis=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = defocus(flat, depth, LENS, SET, layers=[(bar, bar_d), (wall, depth)])
    assert np.isfinite(out).all()
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "\n" not in msg and msg.startswith("coverage layers:")
    assert ("clamped" in msg) if bad != "nan" else ("non-finite" in msg)
    assert float(out[..., 3].max()) <= 1.0 + 1e-5
