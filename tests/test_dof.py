"""The depth-of-field engine (core/dof/) against the physics it must get right.

Every scene is built here from numbers: a lens whose blur at infinity is a chosen number of
pixels, and depths picked from wanted blur radii with the lens' own inverse."""

import math

import numpy as np
import pytest

from blender_zdepth.core.dof import (DofSettings, aperture_kernel, defocus, focal_plane_view,
                                     layer_radii)
from blender_zdepth.core.errors import UsageError, ZDepthError
from blender_zdepth.core.lens import Lens, coc_radius_px, depth_for_coc

FOCUS = 2.0


def lens_for(r_inf, width, height, **kw):
    """A 50 mm lens focused at 2 m whose blur radius at infinity is ``r_inf`` pixels."""
    f_mm = 50.0
    fstop = (f_mm * 1e-3) * f_mm * width / 36.0 / (2 * FOCUS * r_inf)
    return Lens(f_mm, fstop, FOCUS, **kw)


def depth_of(radius, lens, width, height, shape=None):
    d = float(depth_for_coc(radius, lens, width, height))
    return np.full(shape or (height, width), d, np.float32)


def opaque(rgb):
    rgb = np.asarray(rgb, np.float32)
    return np.concatenate([rgb, np.ones(rgb.shape[:2] + (1,), np.float32)], axis=2)


def test_focal_plane_stays_sharp():
    h, w = 64, 96
    rng = np.random.default_rng(1)
    img = opaque(rng.random((h, w, 3)) * 2)
    lens = lens_for(12, w, h)
    depth = np.full((h, w), FOCUS, np.float32)
    depth[:, 60:] = 50.0  # a blurred background beside it, behind
    out = defocus(img, depth, lens, DofSettings(max_radius=12))
    np.testing.assert_array_equal(out[:, :59], img[:, :59])
    assert out[:, 70:].std() < img[:, 70:].std() * 0.5  # and the background did blur


@pytest.mark.parametrize("radius", [-6.0, 3.0, 9.5])
def test_constant_depth_keeps_the_mean(radius):
    h, w = 80, 80
    rng = np.random.default_rng(2)
    img = np.zeros((h, w, 4), np.float32)
    img[20:60, 20:60] = opaque(rng.random((40, 40, 3)) * 3)  # black margin wider than the blur
    lens = lens_for(12, w, h)
    out = defocus(img, depth_of(radius, lens, w, h), lens, DofSettings(max_radius=12))
    np.testing.assert_allclose(out.sum(axis=(0, 1)), img.sum(axis=(0, 1)), rtol=2e-4)
    # A textured frame edge to edge keeps its mean too (borders continue the picture).
    full = opaque(rng.random((h, w, 3)))
    out = defocus(full, depth_of(radius, lens, w, h), lens, DofSettings(max_radius=12))
    np.testing.assert_allclose(out.mean(axis=(0, 1)), full.mean(axis=(0, 1)), rtol=0.01)


def _spot(radius, settings, size=72, value=1000.0):
    lens = lens_for(abs(radius) * 1.5, size, size)
    img = np.zeros((size, size, 4), np.float32)
    img[..., 3] = 1
    c = size // 2
    img[c, c, :3] = value
    out = defocus(img, depth_of(radius, lens, size, size), lens, settings)
    return out[..., 0], c


@pytest.mark.parametrize("radius", [4.0, 7.5, 16.0])
def test_bright_pixel_becomes_a_disk_of_the_thin_lens_diameter(radius):
    out, c = _spot(radius, DofSettings(max_radius=40))
    assert out.sum() == pytest.approx(1000.0, rel=1e-3)  # energy, nothing clipped at 1
    assert out.max() > 1.0
    inner = out[c, c]
    # Diameter across the centre row and column, and from the area, at half the plateau.
    row = np.flatnonzero(out[c] > inner / 2)
    col = np.flatnonzero(out[:, c] > inner / 2)
    area_d = 2 * math.sqrt(np.count_nonzero(out > inner / 2) / math.pi)
    for diameter in (row.size, col.size, area_d):
        assert abs(diameter - 2 * radius) <= 1.0, (diameter, 2 * radius)
    # Flat inside: a disk, not a gaussian.
    core = out[c - int(radius / 2):c + int(radius / 2) + 1, c]
    assert core.min() > 0.9 * core.max()


def test_polygonal_aperture_and_rotation():
    radius = 14.0
    hexa, c = _spot(radius, DofSettings(max_radius=40, blades=6, rotation_deg=0))
    # Vertices on the horizontal axis (rotation 0): across the corners 2r, across flats
    # 2r cos(30 deg) vertically.
    # (At half the plateau a corner, being thin, reads up to a pixel short on each side.)
    half = hexa[c, c] / 2
    across_corners = np.count_nonzero(hexa[c] > half)
    across_flats = np.count_nonzero(hexa[:, c] > half)
    assert -2.0 <= across_corners - 2 * radius <= 1.0
    assert abs(across_flats - 2 * radius * math.cos(math.pi / 6)) <= 1.0
    area = 6 / 2 * radius ** 2 * math.sin(2 * math.pi / 6)
    equal_area_d = 2 * math.sqrt(np.count_nonzero(hexa > half) / math.pi)
    assert abs(equal_area_d - 2 * math.sqrt(area / math.pi)) <= 1.0
    assert hexa.sum() == pytest.approx(1000.0, rel=1e-3)
    turned, _ = _spot(radius, DofSettings(max_radius=40, blades=6, rotation_deg=30))
    assert abs(np.count_nonzero(turned[c] > half) - 2 * radius * math.cos(math.pi / 6)) <= 1
    assert -2.0 <= np.count_nonzero(turned[:, c] > half) - 2 * radius <= 1.0


def test_front_blur_is_the_mirrored_aperture_and_anamorphic_squeezes():
    tri_back = aperture_kernel(10.0, DofSettings(blades=3))
    tri_front = aperture_kernel(-10.0, DofSettings(blades=3))
    np.testing.assert_allclose(tri_front, tri_back[::-1, ::-1], atol=1e-6)
    assert not np.allclose(tri_front, tri_back, atol=1e-3)
    # As Cycles renders a 3-blade aperture at rotation 0 (checked against renders): behind
    # the focal plane a corner points left (the light's tail is on the left), in front right.
    xs = np.arange(tri_back.shape[1]) - tri_back.shape[1] // 2
    skew_back = (tri_back.sum(axis=0) * xs ** 3).sum()
    assert skew_back < 0 and (tri_front.sum(axis=0) * xs ** 3).sum() > 0
    oval = aperture_kernel(10.0, DofSettings(anamorphic=2.0))
    assert oval.shape[0] > 1.7 * oval.shape[1]  # Cycles' aperture ratio 2: tall bokeh


def _fg_bg_scene(h, w, fg_radius, bg_radius, split_x):
    """Left of ``split_x``: green surface at ``fg_radius``; right: red at ``bg_radius``."""
    lens = lens_for(12, w, h)
    img = opaque(np.zeros((h, w, 3)))
    img[:, :split_x, 1] = 1.0
    img[:, split_x:, 0] = 1.0
    depth = np.empty((h, w), np.float32)
    depth[:, :split_x] = depth_of(fg_radius, lens, w, h, (h, split_x))
    depth[:, split_x:] = depth_of(bg_radius, lens, w, h, (h, w - split_x))
    return img, depth, lens


def test_blurred_foreground_turns_see_through_at_its_edge():
    h, w, r = 48, 96, 10.0
    img, depth, lens = _fg_bg_scene(h, w, -r, 0.0, 48)
    out = defocus(img, depth, lens, DofSettings(max_radius=12))
    mid = h // 2
    # At the edge the lens sees half of the foreground and half of the subject.
    edge = out[mid, 47:49].mean(axis=0)
    assert 0.3 < edge[1] < 0.7 and 0.3 < edge[0] < 0.7
    # Inside the occluder's footprint, within its blur, the hidden subject shows through.
    assert out[mid, 48 - int(r / 2), 0] > 0.12
    # Far inside, the occluder is opaque; far outside, the subject is untouched.
    np.testing.assert_allclose(out[mid, 10], [0, 1, 0, 1], atol=1e-3)
    np.testing.assert_allclose(out[mid, 90], [1, 0, 0, 1], atol=1e-3)


def test_sharp_subject_does_not_smear_into_background_nor_background_over_it():
    h, w = 48, 96
    img, depth, lens = _fg_bg_scene(h, w, 0.0, 10.0, 48)  # sharp green, blurred red behind
    img[:, 48:, :3] *= np.linspace(0.2, 3.0, 48, dtype=np.float32)[None, :, None]  # textured
    out = defocus(img, depth, lens, DofSettings(max_radius=12))
    np.testing.assert_array_equal(out[:, :48], img[:, :48])  # no background bleeding over
    assert out[:, 48:, 1].max() < 1e-4                         # no green smeared behind
    np.testing.assert_allclose(out[..., 3], 1.0, atol=1e-5)


def _antialiased_edge(h, w, fg_radius, bg_radius, highlight=True):
    """A sharp/blurred edge rendered the way Blender does: colour anti-aliased over a slanted
    edge, depth taken from one sample (the nearer surface where it covers half or more)."""
    lens = lens_for(12, w, h)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    edge_x = 40 + 0.3 * yy[:, :1]
    # Coverage of the foreground (left of the edge) per pixel by 8x8 supersampling.
    sub = (np.arange(8, dtype=np.float32) + 0.5) / 8
    xs = xx[..., None] - 0.5 + sub
    cov = (xs < edge_x[..., None]).mean(axis=2)
    fg = np.array([0.2, 0.8, 0.1], np.float32)
    bg = np.zeros((h, w, 3), np.float32)
    bg[..., 2] = 0.3
    if highlight:
        bg[:, :, :] += (np.abs(yy - h / 2) < 6)[..., None] * 8.0  # bright band behind the edge
    rgb = cov[..., None] * fg + (1 - cov[..., None]) * bg
    depth = np.where(cov >= 0.5, depth_of(fg_radius, lens, w, h),
                     depth_of(bg_radius, lens, w, h)).astype(np.float32)
    return opaque(rgb), depth, lens, cov, fg, bg


@pytest.mark.parametrize("highlight", [False, True])
def test_mixed_edge_pixels_grow_no_halo_and_no_rim(highlight):
    h, w = 64, 96
    img, depth, lens, cov, fg, bg = _antialiased_edge(h, w, 0.0, 10.0, highlight)
    out = defocus(img, depth, lens, DofSettings(max_radius=12))
    # Reference: the background alone, blurred, seen through the foreground's coverage.
    bg_blur = defocus(opaque(bg), depth_of(10.0, lens, w, h), lens, DofSettings(max_radius=12))
    want = cov[..., None] * fg + (1 - cov[..., None]) * bg_blur[..., :3]
    err = np.abs(out[..., :3] - want).max(axis=2)
    edge = (cov > 0) & (cov < 1)
    if not highlight:
        fully_bg = np.zeros_like(edge)
        fully_bg[:, 1:-1] = (cov[:, 1:-1] == 0) & (cov[:, :-2] == 0)
        # No green halo spread into the blurred background, no rim along the edge.
        assert out[..., 1][fully_bg].max() < 0.005
        assert err[edge].max() < 0.1
    else:
        # The edge pixels show the blurred highlight (8.0) through their uncovered part
        # instead of a sharp rim of it: a rim would be off by about 2 here.
        assert err[edge].max() < 1.0, err[edge].max()
        assert err[edge].mean() < 0.2, err[edge].mean()
    # (The rest of the error is the background hidden behind the subject, which the input
    # does not hold: the reference has it, the engine guesses it.)
    assert err.mean() < 0.02


def test_split_edges_stage_conserves_colour_and_coverage():
    """The edge split only redistributes a pixel between its own sample and one extra
    sample: colours and coverages of the two parts add up to the pixel; the far part sits
    at the far side's radius."""
    from blender_zdepth.core.dof.edges import split_edges
    from blender_zdepth.core.dof.prepare import prepare

    h, w = 64, 96
    img, depth, lens, cov, fg, bg = _antialiased_edge(h, w, 0.0, 10.0, True)
    coc = coc_radius_px(depth, lens, w, h, max_radius=12).astype(np.float32)
    frame = prepare(img, coc, DofSettings(max_radius=12))
    before = frame.col.copy()
    parts = split_edges(frame.col, frame.coc, frame.cov)
    assert len(parts) == 1
    extra = parts[0]
    assert extra.idx.size > h  # every row crosses the edge: at least one split per row
    total_col = frame.col.reshape(4, -1).copy()
    total_cov = frame.cov.reshape(-1).copy()
    np.add.at(total_col, (slice(None), extra.idx), extra.col)
    np.add.at(total_cov, extra.idx, extra.cov)
    np.testing.assert_allclose(total_col, before.reshape(4, -1), atol=1e-5)
    np.testing.assert_allclose(total_cov, 1.0, atol=1e-5)
    # Extra samples carry the radius of one side of the edge (0 or 10 px).
    assert np.all((np.abs(extra.coc) < 0.5) | (np.abs(extra.coc - 10.0) < 0.5))


def test_pipeline_stages_compose_to_defocus():
    """The named stages run by hand give exactly what defocus() gives."""
    from blender_zdepth.core.dof.assign import assign_layers
    from blender_zdepth.core.dof.composite import composite_layers, finish, rgba_out
    from blender_zdepth.core.dof.edges import split_edges
    from blender_zdepth.core.dof.hidden import fill_hidden
    from blender_zdepth.core.dof.prepare import prepare
    from blender_zdepth.core.dof.samples import _concat_samples

    h, w = 64, 96
    img, depth, lens, _, _, _ = _antialiased_edge(h, w, -6.0, 10.0, True)
    st = DofSettings(max_radius=12)
    want = defocus(img, depth, lens, st)
    frame = prepare(img, coc_radius_px(depth, lens, w, h, max_radius=12), st)
    parts = split_edges(frame.col, frame.coc, frame.cov)
    parts += fill_hidden(frame.col, frame.coc, frame.maxr)
    assert len(parts) >= 2  # an edge split and a hidden-surface fill behind the blurred front
    extra = _concat_samples(parts)
    layers = assign_layers(frame.coc, extra.coc,
                           layer_radii(frame.maxr, quality=st.quality, coc=frame.coc))
    acc, budget, far = composite_layers(frame, extra, layers, st)
    finish(acc, budget, far, frame.col)
    got = rgba_out(acc, frame.pad, h, w, img)
    np.testing.assert_array_equal(got, want)


def test_transparent_film_background():
    h, w = 64, 64
    lens = lens_for(12, w, h)
    img = np.zeros((h, w, 4), np.float32)
    img[24:40, 24:40] = [0.5, 0.25, 1.0, 1.0]  # a premultiplied square on transparent film
    depth = np.full((h, w), np.inf, np.float32)  # film background: no surface
    depth[24:40, 24:40] = depth_of(6.0, lens, w, h, (16, 16))
    out = defocus(img, depth, lens, DofSettings(max_radius=12))
    alpha = out[..., 3]
    assert alpha.sum() == pytest.approx(img[..., 3].sum(), rel=1e-3)
    assert 0 < alpha[32, 20] < 1 and alpha.max() <= 1 + 1e-5 and alpha[2, 2] == 0
    # Still premultiplied: colour / alpha stays the square's colour where it is seen.
    seen = alpha > 0.05
    np.testing.assert_allclose(out[..., 0][seen] / alpha[seen], 0.5, atol=1e-3)
    np.testing.assert_allclose(out[..., 2][seen] / alpha[seen], 1.0, atol=1e-3)


def test_alpha_stays_within_coverage_on_noisy_edges():
    # Pixels that are either transparent or opaque, at random depths: every pixel is an edge.
    h, w = 48, 64
    rng = np.random.default_rng(5)
    lens = lens_for(10, w, h)
    img = rng.random((h, w, 4)).astype(np.float32) * 2
    img[..., 3] = rng.random((h, w)) > 0.3
    img[..., :3] *= img[..., 3:]
    depth = (0.5 + rng.random((h, w)) * 10).astype(np.float32)
    out = defocus(img, depth, lens, DofSettings(max_radius=12))
    assert out[..., 3].max() <= 1 + 1e-5 and out[..., 3].min() >= -1e-6
    assert out[..., 3].sum() == pytest.approx(img[..., 3].sum(), rel=0.01)


def test_background_depth_is_the_far_limit():
    h, w = 48, 48
    lens = lens_for(8, w, h)
    rng = np.random.default_rng(3)
    img = opaque(rng.random((h, w, 3)))
    a = defocus(img, np.full((h, w), np.inf, np.float32), lens, DofSettings(max_radius=20))
    b = defocus(img, np.full((h, w), 1e10, np.float32), lens, DofSettings(max_radius=20))
    c = defocus(img, depth_of(8.0, lens, w, h), lens, DofSettings(max_radius=20))
    assert np.isfinite(a).all()
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, c, atol=1e-4)


def test_highlights_blur_into_energy_conserving_bokeh():
    h, w = 64, 64
    lens = lens_for(12, w, h)
    img = opaque(np.full((h, w, 3), 0.1))
    img[20, 20, :3] = 50.0
    img[40, 44, :3] = 200.0
    out = defocus(img, depth_of(8.0, lens, w, h), lens, DofSettings(max_radius=12))
    assert out[..., 0].sum() == pytest.approx(img[..., 0].sum(), rel=1e-3)
    disk = out[36:45, 40:49, 0]
    assert disk.min() > 0.9 and disk.max() < 2.0  # 200 spread over ~200 pixels, no clip


def test_layer_radii_are_fine_near_focus():
    radii = layer_radii(32.0)
    assert radii[0] == -32 and radii[-1] == 32 and 0.0 in radii
    steps = np.diff(radii)
    assert steps[np.abs(radii[:-1]) < 2].max() <= 0.5 + 1e-9
    assert (steps > 0).all()


def test_bad_input_is_reported():
    lens = lens_for(5, 16, 16)
    with pytest.raises(ZDepthError, match="sizes differ"):
        defocus(np.zeros((16, 16, 4), np.float32), np.ones((8, 8), np.float32), lens)
    with pytest.raises(UsageError, match="blades"):
        defocus(np.zeros((16, 16, 4), np.float32), np.ones((16, 16), np.float32), lens,
                DofSettings(blades=2))


@pytest.mark.parametrize("bad", [-1, 1.5, "2", None, True])
def test_threads_must_be_a_whole_number_from_zero(bad):
    with pytest.raises(UsageError, match="threads must be a whole number >= 0"):
        DofSettings(threads=bad).validate()


def test_threads_zero_means_every_usable_core():
    from blender_zdepth.core.cpus import usable_cores

    assert DofSettings().thread_count() == usable_cores() >= 1
    assert DofSettings(threads=3).thread_count() == 3


def _busy_frame(h=96, w=144, seed=5):
    """Blocks at random depths on both sides of the focal plane, highlights, an
    anti-aliased look: many layers, edge splits, hidden-surface fills and sparkles."""
    rng = np.random.default_rng(seed)
    lens = lens_for(10, w, h)
    radii = rng.uniform(-14, 10, (h // 8 + 1, w // 8 + 1))
    blocks = np.array([[depth_for_coc(r, lens, w, h) for r in row] for row in radii])
    depth = np.kron(blocks, np.ones((8, 8)))[:h, :w].astype(np.float32)
    rgb = np.kron(rng.random((h // 8 + 1, w // 8 + 1, 3)), np.ones((8, 8, 1)))[:h, :w]
    rgb[1:-1, 1:-1] = 0.5 * rgb[1:-1, 1:-1] + 0.25 * (rgb[:-2, 1:-1] + rgb[1:-1, 2:])
    rgb[rng.random((h, w)) < 0.003] = 40.0
    return opaque(rgb), depth, lens


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_threads_give_the_same_result_as_one(threads):
    img, depth, lens = _busy_frame()
    one = defocus(img, depth, lens, DofSettings(max_radius=16, threads=1))
    many = defocus(img, depth, lens, DofSettings(max_radius=16, threads=threads))
    np.testing.assert_array_equal(many, one)


def test_edge_split_in_row_batches_on_threads_equals_one_batch(monkeypatch):
    from blender_zdepth.core.dof import edges

    img, depth, lens = _busy_frame()
    st = DofSettings(max_radius=16, threads=1)
    one = defocus(img, depth, lens, st)
    monkeypatch.setattr(edges, "_SPLIT_CHUNK", 97)  # many batches, uneven
    np.testing.assert_array_equal(defocus(img, depth, lens, st), one)
    np.testing.assert_array_equal(
        defocus(img, depth, lens, DofSettings(max_radius=16, threads=3)), one)


@pytest.mark.parametrize("radius", [1.5, 4.0, 9.0])
def test_sparse_layers_splat_to_the_same_convolution(radius):
    """The splat used for sparse layers gives the convolution the direct and FFT paths give."""
    from blender_zdepth.core.dof import convolve

    rng = np.random.default_rng(3)
    planes = np.zeros((4, 90, 130), np.float32)
    m = rng.random((90, 130)) < 0.03
    planes[:, m] = rng.random((4, int(m.sum()))).astype(np.float32) * 5
    kernel = aperture_kernel(radius)
    want = convolve._convolve_direct(planes, kernel)
    got = convolve._convolve_sparse(planes, kernel, np.flatnonzero(planes[-1].reshape(-1)))
    np.testing.assert_allclose(got, want, atol=2e-6)
    np.testing.assert_allclose(convolve._convolve(planes, kernel), want, atol=2e-6)


@pytest.mark.parametrize("on_tiles", ["fft", "direct"])
@pytest.mark.parametrize("tile", [16, 32, 64, 128])
@pytest.mark.parametrize("radius", [2.0, 7.5, 20.0])
def test_fft_on_tiles_of_any_size_gives_the_direct_convolution(tile, radius, on_tiles):
    """The tiled convolution (tiles gathered and added back as whole arrays, each by FFT or
    tap by tap; kernels larger than the tile included, partial tiles at the borders, empty
    tiles skipped) is the direct convolution."""
    from blender_zdepth.core.dof import convolve

    rng = np.random.default_rng(int(radius * 10) + tile)
    planes = np.zeros((4, 150, 203), np.float32)
    m = np.kron(rng.random((10, 13)) < 0.3, np.ones((16, 16), bool))[:150, :203]
    planes[:, m] = rng.random((4, int(m.sum()))).astype(np.float32)
    planes[:, 128:, 128:] = 0  # an empty corner tile at every tile size
    kernel = aperture_kernel(radius, DofSettings(blades=5, rotation_deg=10))
    kh, kw = kernel.shape
    occ = convolve._occupancy(planes[-1] != 0, 16)
    for _ in range(tile.bit_length() - 5):
        occ = convolve._coarser(occ)
    assert not occ.all()  # some tiles are skipped
    direct = on_tiles == "direct"
    fy = tile + kh - 1 if direct else convolve._next_fast_len(tile + kh - 1)
    fx = tile + kw - 1 if direct else convolve._next_fast_len(tile + kw - 1)
    got = convolve._convolve_fft_grid(planes, kernel, occ, tile, fy, fx, direct)
    want = convolve._convolve_direct(planes, kernel)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-6)


@pytest.mark.parametrize("on_tiles", ["fft", "direct"])
@pytest.mark.parametrize("fill", [1.0, 0.6, 0.1])
def test_fft_on_tiles_gathered_as_runs_is_bit_identical_to_fancy_indexing(fill, on_tiles,
                                                                           monkeypatch):
    """Runs of neighbouring tiles in a row are gathered and added back as slices: the result is
    bit for bit the fancy-indexed one (full boxes, gappy rows, scattered tiles, partial tiles
    at the borders)."""
    from blender_zdepth.core.dof import convolve

    rng = np.random.default_rng(int(fill * 10))
    planes = np.zeros((4, 120, 203), np.float32)
    m = np.kron(rng.random((8, 13)) < fill, np.ones((16, 16), bool))[:120, :203]
    planes[:, m] = rng.random((4, int(m.sum()))).astype(np.float32) * 3
    kernel = aperture_kernel(4.5, DofSettings())
    kh, kw = kernel.shape
    occ = convolve._occupancy(planes[-1] != 0, 16)
    direct = on_tiles == "direct"
    fy = 16 + kh - 1 if direct else convolve._next_fast_len(16 + kh - 1)
    fx = 16 + kw - 1 if direct else convolve._next_fast_len(16 + kw - 1)
    monkeypatch.setattr(convolve, "_MAX_RUNS", 1000)  # every batch as runs
    got = convolve._convolve_fft_grid(planes, kernel, occ, 16, fy, fx, direct)
    monkeypatch.setattr(convolve, "_MAX_RUNS", 0)  # every batch by fancy indexing
    want = convolve._convolve_fft_grid(planes, kernel, occ, 16, fy, fx, direct)
    assert np.array_equal(got, want)


def test_fft_plan_takes_small_tiles_for_scattered_content_and_large_for_dense():
    from blender_zdepth.core.dof import convolve

    rng = np.random.default_rng(4)
    scattered = np.kron(rng.random((72, 128)) < 0.02, np.ones((8, 8), bool))
    dense = np.ones((576, 1024), bool)
    k = aperture_kernel(4.0)
    _, t_scattered, *_ = convolve._fft_plan(convolve._occupancy(scattered, 16), 4, *k.shape)
    _, t_dense, *_ = convolve._fft_plan(convolve._occupancy(dense, 16), 4, *k.shape)
    assert t_scattered <= 32 < t_dense


def test_splat_adds_up_repeated_samples():
    from blender_zdepth.core.dof import convolve

    rng = np.random.default_rng(8)
    pix = rng.integers(0, 40 * 50, 300)
    vals = rng.random((4, 300)).astype(np.float32)
    kernel = aperture_kernel(3.0)
    planes = np.zeros((4, 40 * 50), np.float32)
    for c in range(4):
        np.add.at(planes[c], pix, vals[c])
    want = convolve._convolve_direct(planes.reshape(4, 40, 50), kernel)
    np.testing.assert_allclose(convolve._splat(pix, vals, 40, 50, kernel), want, atol=2e-6)


def test_edge_split_residuals_from_dot_products_equal_the_channel_by_channel_fit():
    """The edge split's candidate residuals (three dot products) are those of the best mix
    computed channel by channel, whichever of the two colours is the fixed one."""
    from blender_zdepth.core.dof import edges

    rng = np.random.default_rng(21)
    n = 500
    c = rng.random((4, n)).astype(np.float32)
    f = rng.random((4, n)).astype(np.float32)
    cand = rng.random((4, 24, n)).astype(np.float32)  # (channels, candidates, pixels)
    cand[:, 3, :5] = f[:, :5]  # a candidate equal to the fixed colour (no line)
    mask = rng.random((24, n)) < 0.7
    got = edges._line_residuals(c - f, f, cand, mask)
    _, want, _ = edges._split_fit(c[:, None, :], f[:, None, :], cand)
    _, swapped, _ = edges._split_fit(c[:, None, :], cand, f[:, None, :])
    np.testing.assert_allclose(swapped, want, atol=1e-6)
    assert (got[~mask] >= np.finfo(np.float32).max).all()
    np.testing.assert_allclose(got[mask], want[mask], atol=2e-6)
    # The first best candidate among those on the mask, as argmin picks it (ties included:
    # the candidate equal to the fixed colour fits every pixel's line as well as itself).
    got[4, :5] = got[3, :5]
    mask[3:5, :5] = True
    pick = np.argmin(np.where(mask, got, np.inf), axis=0)
    np.testing.assert_array_equal(edges._first_best(got, cand),
                                  cand[:, pick, np.arange(n)])


def test_reduced_layers_built_channel_by_channel_give_the_same_frame(monkeypatch):
    """Reduced-resolution layers without highlights are built one channel at a time (dense)
    or summed straight into their low-resolution pixels (scattered): the frame is the one the
    full-resolution planes give, within float rounding."""
    from blender_zdepth.core.dof import content

    img, depth, lens = _busy_frame()
    img[..., :3] = np.minimum(img[..., :3], 0.9)  # no highlights: the new paths run
    st = DofSettings(max_radius=16, threads=1)
    fast = defocus(img, depth, lens, st)
    monkeypatch.setattr(content, "_may_sparkle", lambda *a: True)  # the full-resolution path
    np.testing.assert_allclose(fast, defocus(img, depth, lens, st), atol=1e-5, rtol=1e-5)


def test_compositing_in_strips_and_releasing_memory_do_not_change_the_frame(monkeypatch):
    from blender_zdepth.core.dof import composite, schedule

    img, depth, lens = _busy_frame()
    one = defocus(img, depth, lens, DofSettings(max_radius=16, threads=1))
    monkeypatch.setattr(composite, "_COMPOSITE_ROWS", 7)
    monkeypatch.setattr(schedule, "_TRIM_PIXELS", 0)
    trims = []
    release = composite._release_free_memory
    monkeypatch.setattr(composite, "_release_free_memory", lambda: trims.append(1) or release())
    np.testing.assert_array_equal(
        defocus(img, depth, lens, DofSettings(max_radius=16, threads=2)), one)
    assert trims  # the release ran (a no-op where the C library has no malloc_trim)


def test_layer_assignment_in_parts_on_threads_equals_one_stable_sort(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from blender_zdepth.core.dof import assign

    rng = np.random.default_rng(6)
    coc = rng.uniform(-12, 9, (61, 83)).astype(np.float32)
    coc[10:20] = 3.0  # long runs of equal layers across the parts' cuts
    extra = rng.uniform(-12, 9, 50).astype(np.float32)
    radii = assign.layer_radii(12.0, quality="default", coc=coc)
    one = assign.assign_layers(coc, extra, radii)
    monkeypatch.setattr(assign, "_ASSIGN_PART", 1000)
    with ThreadPoolExecutor(3) as pool:
        many = assign.assign_layers(coc, extra, radii, pool=pool, parts=4)
    for name in ("m_order", "m_bounds", "m_t", "e_order", "e_bounds", "e_t"):
        np.testing.assert_array_equal(getattr(many, name), getattr(one, name), err_msg=name)
    assert many.m_order.dtype == one.m_order.dtype


def test_sparse_layers_kept_as_samples_give_the_same_frame(monkeypatch):
    """Full-resolution layers kept as samples and splatted (the dense-edge case) give the
    frame the dense planes give, within float rounding."""
    from blender_zdepth.core.dof import content, convolve

    img, depth, lens = _busy_frame()
    st = DofSettings(max_radius=16, threads=1)
    monkeypatch.setattr(content, "_SPARSE_SHARE", 0.0)
    dense = defocus(img, depth, lens, st)
    monkeypatch.setattr(content, "_SPARSE_SHARE", 2.0)
    monkeypatch.setitem(convolve._COST, "splat", 1e-3)  # the splat wins wherever it may run
    used = []
    splat = convolve._splat
    monkeypatch.setattr(convolve, "_splat", lambda *a: used.append(1) or splat(*a))
    sparse = defocus(img, depth, lens, st)
    assert used  # the splat did run
    np.testing.assert_allclose(sparse, dense, atol=1e-5, rtol=1e-5)


def test_layers_in_flight_stay_within_the_memory_budget():
    """The ordered map behind the threads yields in order, never runs more than its window
    at once, and keeps the summed cost of started-but-unconsumed items within its budget
    (one item always runs)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from blender_zdepth.core.dof.schedule import _ordered_map

    costs = [5, 1, 1, 1, 9, 1, 1, 3, 3, 3, 1, 1]
    lock = threading.Lock()
    state = {"held": 0, "peak": 0, "running": 0, "peak_running": 0}

    def cost(i):
        return costs[i]

    def work(i):
        with lock:
            state["running"] += 1
            state["peak_running"] = max(state["peak_running"], state["running"])
        time.sleep(0.005)
        with lock:
            state["running"] -= 1
        return i

    def started(i):  # what the budget accounts for: started and not yet consumed
        with lock:
            state["held"] += costs[i]
            state["peak"] = max(state["peak"], state["held"] if state["held"] > costs[i]
                                else 0)
        return work(i)

    got = []
    with ThreadPoolExecutor(4) as pool:
        for i in _ordered_map(pool, started, range(len(costs)), cost=cost, budget=6,
                              window=3):
            got.append(i)
            time.sleep(0.002)  # the consumer composites
            with lock:
                state["held"] -= costs[i]
    assert got == list(range(len(costs)))
    assert state["peak_running"] <= 3
    assert state["peak"] <= 6  # several at once only while they fit the budget


def test_focal_plane_view_colours_near_focus_far():
    h, w = 16, 48
    lens = lens_for(8, w, h)
    depth = np.empty((h, w), np.float32)
    depth[:, :16] = 0.5 * FOCUS
    depth[:, 16:32] = FOCUS
    depth[:, 32:] = 100.0
    view = focal_plane_view(opaque(np.full((h, w, 3), 0.5)), depth, lens, DofSettings(10))
    near, focus, far = view[8, 8], view[8, 24], view[8, 40]
    assert near[0] > near[1] and near[0] > near[2]
    assert focus[1] > focus[0] and focus[1] > focus[2]
    assert far[2] > far[0] and far[2] > far[1]
    assert view.dtype == np.float32 and view.shape == (h, w, 4)
    assert coc_radius_px(depth, lens)[8, 24] == 0


def test_dof_command_single_frame(tmp_path, run_cli):
    from blender_zdepth.core import exr

    h, w = 40, 56
    rng = np.random.default_rng(4)
    rgba = opaque(rng.random((h, w, 3)))
    depth = np.full((h, w), 1e10, np.float32)  # Cycles background
    depth[10:30, 10:30] = FOCUS
    src = tmp_path / "render.exr"
    exr.write_exr(src, {"ViewLayer.Combined.R": rgba[..., 0], "ViewLayer.Combined.G": rgba[..., 1],
                        "ViewLayer.Combined.B": rgba[..., 2], "ViewLayer.Combined.A": rgba[..., 3],
                        "ViewLayer.Depth.Z": depth})
    dst = tmp_path / "out.exr"
    args = [src, dst, "--focus-distance", FOCUS, "--fstop", 0.2, "--focal-length", 50,
            "--sensor-width", 36, "--max-radius", 8]
    result = run_cli("dof", *args)
    assert result.returncode == 0, result.stderr
    out = exr.read_exr(dst)
    assert sorted(out.channels) == ["A", "B", "G", "R"]
    r = np.stack([out.channels[c] for c in "RGBA"], axis=-1)
    assert r.shape == (h, w, 4) and r.dtype == np.float32
    np.testing.assert_array_equal(r[12:28, 12:28], rgba[12:28, 12:28])  # in focus
    assert r[:5, :, 0].std() < rgba[:5, :, 0].std() / 2                  # background blurred
    again = run_cli("dof", *args)
    assert again.returncode == 1 and "--overwrite" in again.stderr      # never overwrites
    missing = run_cli("dof", src, tmp_path / "x.exr", "--fstop", 2, "--focal-length", 50)
    assert missing.returncode == 2 and "--focus-distance" in missing.stderr
    assert not (tmp_path / "x.exr").exists()


# --------------------------------------------------------------------------------------------
# Hidden surfaces given by the caller (depth-peeled layers, deep samples)


def _subject_over_hidden_texture(h=64, w=128, bg_radius=8.0):
    """A sharp green subject (columns 48..80) in front of a blurred background: blue, with a
    red band (columns 52..76) that lies entirely behind the subject.  Returns the visible
    frame, its depth, the full background (what a peeled render sees), its depth, the subject
    mask and the lens."""
    lens = lens_for(12, w, h)
    d_bg = depth_of(bg_radius, lens, w, h, (h, w))
    d_fg = depth_of(0.0, lens, w, h, (h, w))
    xx = np.arange(w)[None, :].repeat(h, 0)
    subject = (xx >= 48) & (xx < 80)
    bg = np.zeros((h, w, 3), np.float32)
    bg[..., 2] = 0.5
    band = (xx >= 52) & (xx < 76)
    bg[band] = (0.9, 0.1, 0.0)
    bg *= (1.0 + 0.3 * np.sin(np.arange(h) / 3.0))[:, None, None].astype(np.float32)
    img = bg.copy()
    img[subject] = (0.1, 0.8, 0.2)
    depth = np.where(subject, d_fg, d_bg).astype(np.float32)
    return opaque(img), depth, opaque(bg), d_bg, subject, lens


def test_hidden_layer_shows_the_true_hidden_surface_around_a_sharp_subject():
    img, depth, bg, d_bg, subject, lens = _subject_over_hidden_texture()
    st = DofSettings(max_radius=12)
    hidden_rgba = bg * subject[..., None]           # only what the subject hides
    hidden_depth = np.where(subject, d_bg, np.inf).astype(np.float32)
    got = defocus(img, depth, lens, st, hidden=[(hidden_rgba, hidden_depth)])
    flat = defocus(img, depth, lens, st)
    # Reference by compositing: the whole background blurred, the sharp subject over it.
    want = defocus(bg, d_bg, lens, st)
    want[subject] = img[subject]
    near_edge = np.zeros_like(subject)
    near_edge[:, 38:48] = near_edge[:, 80:90] = True   # where the blurred red band shows
    err = np.abs(got[..., :3] - want[..., :3]).max(axis=2)
    err_flat = np.abs(flat[..., :3] - want[..., :3]).max(axis=2)
    assert err[near_edge].max() < 0.03, err[near_edge].max()
    assert err_flat[near_edge].max() > 0.15          # the invented fill cannot know the red
    assert got[..., 0][near_edge].max() > 0.1        # red light around the subject
    # The subject stays sharp and untouched.
    np.testing.assert_array_equal(got[subject], img[subject])
    assert err.mean() < 0.01


def test_hidden_samples_at_a_pinhole_give_the_main_image():
    img, depth, bg, d_bg, subject, _ = _subject_over_hidden_texture()
    h, w = depth.shape
    pin = Lens(focal_length_mm=50, fstop=1000.0, focus_distance=float(depth[0, 60]),
               sensor_width_mm=36)
    hidden = [(bg * subject[..., None], np.where(subject, d_bg, np.inf).astype(np.float32))]
    out = defocus(img, depth, pin, DofSettings(max_radius=12), hidden=hidden)
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("empty", [None, [], ()])
def test_no_hidden_layers_is_exactly_the_plain_result(empty):
    img, depth, lens = _busy_frame()
    st = DofSettings(max_radius=16, threads=1)
    np.testing.assert_array_equal(defocus(img, depth, lens, st, hidden=empty),
                                  defocus(img, depth, lens, st))


def test_hidden_samples_in_front_or_empty_change_nothing():
    """Samples that are not clearly behind the visible surface (in front of it, at its
    depth, alpha 0, invalid depth) hold nothing."""
    img, depth, bg, d_bg, subject, lens = _subject_over_hidden_texture()
    st = DofSettings(max_radius=12, threads=1)
    plain = defocus(img, depth, lens, st)
    h, w = depth.shape
    junk = np.full((h, w, 4), 0.7, np.float32)
    cases = [(junk, depth * 0.5), (junk, depth.copy()), (junk * 0, depth * 2),
             (junk, np.full((h, w), np.nan, np.float32)), (junk, np.full((h, w), 1e10))]
    np.testing.assert_array_equal(defocus(img, depth, lens, st, hidden=cases), plain)


def test_hidden_layers_are_used_where_given_and_the_fill_elsewhere():
    """A blurred foreground bar over a sharp subject: with the subject's hidden part given,
    the bar's see-through edge shows it; the result equals the compositing reference better
    than the invented fill does."""
    h, w = 48, 96
    lens = lens_for(12, w, h)
    d_fg = depth_of(-8.0, lens, w, h, (h, w))
    d_sub = depth_of(0.0, lens, w, h, (h, w))
    xx = np.arange(w)[None, :].repeat(h, 0)
    bar = (xx >= 40) & (xx < 56)
    sub = np.zeros((h, w, 3), np.float32)
    sub[..., 0] = 0.2 + 0.6 * ((xx // 3) % 2)          # a fine stripe texture
    sub[..., 1] = 0.3
    img = sub.copy()
    img[bar] = (0.05, 0.05, 0.6)
    depth = np.where(bar, d_fg, d_sub).astype(np.float32)
    st = DofSettings(max_radius=12, threads=1)
    got = defocus(opaque(img), depth, lens, st,
                  hidden=[(opaque(sub) * bar[..., None], np.where(bar, d_sub, np.inf))])
    flat = defocus(opaque(img), depth, lens, st)
    # Reference: the blurred bar alone over the sharp subject.
    bar_only = np.zeros((h, w, 4), np.float32)
    bar_only[bar] = (0.05, 0.05, 0.6, 1.0)
    bar_blur = defocus(bar_only, np.where(bar, d_fg, d_fg).astype(np.float32), lens, st)
    want = bar_blur[..., :3] + (1 - bar_blur[..., 3:]) * sub
    edge = np.zeros_like(bar)
    edge[8:-8, 32:64] = True
    e_got = np.abs(got[..., :3] - want)[edge].mean()
    e_flat = np.abs(flat[..., :3] - want)[edge].mean()
    assert e_got < 0.5 * e_flat, (e_got, e_flat)
    assert e_got < 0.02, e_got


def test_bad_hidden_layers_are_reported():
    img, depth, lens = _busy_frame()
    h, w = depth.shape
    with pytest.raises(ZDepthError, match="hidden layer 1: the image must be"):
        defocus(img, depth, lens, hidden=[(np.zeros((h, w + 1, 4), np.float32), depth)])
    with pytest.raises(ZDepthError, match="hidden layer 2: depth"):
        defocus(img, depth, lens, hidden=[(img, depth), (img, depth[:-1])])
    with pytest.raises(ZDepthError, match="must be a pair"):
        defocus(img, depth, lens, hidden=[img])


def test_a_long_layer_does_not_keep_the_other_threads_idle():
    """While the next result in order is still being computed, the ordered map keeps the
    other threads busy with the items after it (within its window of unfinished items and
    its budget): here item 0 can only finish once item 4 has run."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from blender_zdepth.core.dof.schedule import _ordered_map

    item4_ran = threading.Event()
    lock = threading.Lock()
    state = {"running": 0, "peak_running": 0}

    def work(i):
        with lock:
            state["running"] += 1
            state["peak_running"] = max(state["peak_running"], state["running"])
        try:
            if i == 0:
                return item4_ran.wait(10)
            if i == 4:
                item4_ran.set()
            return True
        finally:
            with lock:
                state["running"] -= 1

    with ThreadPoolExecutor(2) as pool:
        got = list(_ordered_map(pool, work, range(8), cost=lambda i: 1, budget=100,
                                window=2))
    assert got == [True] * 8  # item 0 saw item 4 run while it waited
    assert state["peak_running"] <= 2


def test_cost_model_is_the_one_measured_on_this_numpy():
    """numpy 2 transforms float32 natively (an FFT element ~0.6x numpy 1.26's): its own table."""
    from blender_zdepth.core.dof import convolve

    numpy2 = np.lib.NumpyVersion(np.__version__) >= "2.0.0"
    assert convolve._COST == (convolve._COST_NUMPY2 if numpy2 else convolve._COST_NUMPY1)
    assert convolve._COST_NUMPY2["fft"] < convolve._COST_NUMPY1["fft"]
