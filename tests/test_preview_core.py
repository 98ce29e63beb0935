"""The numpy side of the live preview (core/refocus/preview.py): shrinking a frame to the preview
budget and refocusing the small copy with the same optics."""

import numpy as np
import pytest

from blender_zdepth.core import dof
from blender_zdepth.core.refocus import preview
from blender_zdepth.core.lens import Lens, coc_radius_px


def test_shrink_factor_fits_the_budget():
    assert preview.shrink_factor(1920, 1080) == 3  # 640 x 360
    assert preview.shrink_factor(3840, 2160) == 6
    assert preview.shrink_factor(640, 360) == 1
    assert preview.shrink_factor(641, 360) == 2
    for w, h in ((1920, 1080), (2048, 858), (4096, 2160), (1000, 1000)):
        f = preview.shrink_factor(w, h)
        assert -(-w // f) * -(-h // f) <= preview.PREVIEW_PIXELS * 1.01
        assert f == 1 or -(-w // (f - 1)) * -(-h // (f - 1)) > preview.PREVIEW_PIXELS
    with pytest.raises(ValueError):
        preview.shrink_factor(0, 10)


def test_shrink_rgba_is_a_box_filter_with_edges_repeated():
    rgba = np.arange(5 * 7 * 4, dtype=np.float32).reshape(5, 7, 4)
    small = preview.shrink_rgba(rgba, 2)
    assert small.shape == (3, 4, 4) and small.dtype == np.float32
    np.testing.assert_allclose(small[0, 0], rgba[:2, :2].mean(axis=(0, 1)))
    # bottom right: the last row and column repeated
    np.testing.assert_allclose(small[2, 3], rgba[4, 6])
    np.testing.assert_array_equal(preview.shrink_rgba(rgba, 1), rgba)


def test_shrink_depth_keeps_to_one_surface_and_the_sky():
    depth = np.full((6, 6), 10.0, np.float32)
    depth[:, :2] = 2.0  # a near surface covering a third of each 3x3 block of the left column
    depth[3:, 3:] = np.inf  # sky
    depth[3, 3] = 5.0  # one stray pixel in the sky block
    small = preview.shrink_depth(depth, 3)
    assert small.shape == (2, 2)
    assert small[0, 0] == 2.0  # 6 of 9 pixels near: the median is a real depth, not 7.3
    assert small[0, 1] == 10.0
    assert np.isinf(small[1, 1])
    depth[0, 5] = np.nan
    assert np.isfinite(preview.shrink_depth(depth, 3)[0, 1])


def test_shrinks_give_numpys_block_mean_and_median():
    # the shrinks add / partition block by block for speed; the values are those of numpy's
    # mean over the block axes and its median (the preview a frame had before), edges too
    rng = np.random.default_rng(7)
    for h, w, f in ((61, 95, 3), (60, 90, 3), (40, 50, 2), (49, 71, 4), (30, 35, 5)):
        rgba = (rng.random((h, w, 4), dtype=np.float32)
                * rng.choice([1.0, 10.0, 1e4], (h, w, 1))).astype(np.float32)
        expected = preview._blocks(rgba, f).mean(axis=(1, 3), dtype=np.float32)
        np.testing.assert_allclose(preview.shrink_rgba(rgba, f), expected, rtol=1e-6, atol=0)
        depth = (rng.random((h, w), dtype=np.float32) * 100).astype(np.float32)
        depth[rng.random((h, w)) < 0.3] = np.inf
        depth[rng.random((h, w)) < 0.05] = np.nan
        blocks = preview._blocks(np.where(np.isnan(depth), np.inf, depth), f)
        flat = blocks.transpose(0, 2, 1, 3).reshape(blocks.shape[0], blocks.shape[2], f * f)
        small = preview.shrink_depth(depth, f)
        assert small.dtype == np.float32 and small.flags.c_contiguous
        np.testing.assert_array_equal(small, np.median(flat, axis=-1).astype(np.float32))


def test_preview_has_the_full_frames_optics():
    h, w = 60, 90
    yy, xx = np.mgrid[0:h, 0:w]
    depth = (1.0 + 9.0 * xx / w).astype(np.float32)
    depth[:, -5:] = np.inf
    rng = np.random.default_rng(3)
    rgba = np.ones((h, w, 4), np.float32)
    rgba[..., :3] = rng.random((h, w, 3))
    lens = Lens(50.0, 1.4, 3.0)
    frame = preview.shrink_frame(rgba, depth, header={"a": 1}, budget=(w * h) // 9)
    assert frame.factor == 3 and frame.size == (w, h) and frame.preview_size == (30, 20)
    assert frame.rgba.shape == (20, 30, 4) and frame.depth is not None
    # the circle of confusion of the copy is the full one divided by the factor
    full = coc_radius_px(depth, lens)
    small = coc_radius_px(frame.small_depth, lens)
    np.testing.assert_allclose(small[5, 10], full[16, 31] / 3, rtol=0.05)
    settings = dof.DofSettings(max_radius=12.0, blades=6, quality="high")
    scaled = preview.preview_settings(settings, 3)
    assert (scaled.max_radius, scaled.quality, scaled.blades) == (4.0, "draft", 6)
    out = preview.render_preview(frame, lens, settings)
    expected = dof.defocus(frame.rgba, frame.small_depth, lens, scaled)
    np.testing.assert_array_equal(out, expected)
    view = preview.render_preview(frame, lens, settings, view="FOCAL_PLANE")
    assert view.shape == (20, 30, 4)
    # the in-focus band is that of the full view: green only where the full blur is <= 0.5 px
    green = view[..., 1] > view[..., 0] + 0.3
    assert green.any() and (np.abs(small[green]) <= 0.5 / 3 + 1e-6).all()


def test_cli_anamorphic_and_quality(tmp_path, run_cli):
    """``dof --anamorphic`` (the camera's aperture ratio) stretches the bokeh of a point light
    vertically; ``--quality`` is accepted; bad values are one line and exit 2."""
    from blender_zdepth.core import exr

    h, w = 64, 64
    rgba = np.zeros((h, w, 4), np.float32)
    rgba[..., 3] = 1.0
    rgba[32, 32, :3] = 100.0  # a point light far behind the focus
    depth = np.full((h, w), 50.0, np.float32)
    src = tmp_path / "point.exr"
    exr.write_exr(str(src), {**{c: rgba[..., i] for i, c in enumerate("RGBA")}, "Z": depth},
                  overwrite=True)
    lens = ["--focus-distance", "1", "--fstop", "0.5", "--focal-length", "100", "--max-radius",
            "8"]

    def spread(name, *extra):
        out = tmp_path / name
        r = run_cli("dof", src, out, *lens, *extra)
        assert r.returncode == 0, r.stderr
        img = exr.read_exr(str(out)).channels["R"]
        ys, xs = np.nonzero(img > img.max() * 0.05)
        return ys.max() - ys.min() + 1, xs.max() - xs.min() + 1

    tall_h, tall_w = spread("tall.exr", "--anamorphic", "2", "--quality", "draft")
    round_h, round_w = spread("round.exr", "--quality", "high")
    assert abs(round_h - round_w) <= 1
    assert tall_h > tall_w + 3
    for bad in (["--anamorphic", "0"], ["--anamorphic", "x"], ["--quality", "best"]):
        r = run_cli("dof", src, tmp_path / "bad.exr", *lens, *bad)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "bad.exr").exists()
