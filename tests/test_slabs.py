"""Depth slabs in the numpy core: the slab boundaries (core/layers.py) and the slab deep samples
reconciled to the beauty (core/slabs.slab_samples), written and read back as a deep file."""

import numpy as np
import pytest
from blender_zdepth.core import deep, exr, layers
from blender_zdepth.core import slabs as slabs_mod
from blender_zdepth.core.errors import ZDepthError

WORLD = np.array([0.1, 0.1, 0.3])


def _slabs(h=20, w=30):
    """A 35 % yellow curtain at 2 m (left half), a red box at 4 m with a half-covered column
    (a motion trail), a green wall at 10 m (not at the right edge: the world shows there)."""
    s0 = np.zeros((h, w, 4), np.float32)
    s0[:, :15] = [0.35, 0.35, 0, 0.35]
    z0 = np.full((h, w), np.inf, np.float32)
    z0[:, :15] = 2
    s1 = np.zeros((h, w, 4), np.float32)
    s1[5:15, 10:20] = [1, 0, 0, 1]
    s1[5:15, 20] = [0.5, 0, 0, 0.5]
    z1 = np.full((h, w), np.inf, np.float32)
    z1[5:15, 10:21] = 4
    s2 = np.zeros((h, w, 4), np.float32)
    s2[:, :25] = [0, 1, 0, 1]
    z2 = np.full((h, w), np.inf, np.float32)
    z2[:, :25] = 10
    return [(s0, z0), (s1, z1), (s2, z2)], [0.1, 3.0, 7.0, 50.0]


def _composite(slabs, world=WORLD):
    acc = np.zeros(slabs[0][0].shape, np.float64)
    t = np.ones(slabs[0][0].shape[:2])
    for s, _ in slabs:
        acc += t[..., None] * s
        t *= 1 - s[..., 3]
    acc[..., :3] += t[..., None] * world
    acc[..., 3] = 1.0
    return acc.astype(np.float32)


def _samples(image, y, x):
    off = image.offsets
    p = y * image.shape[1] + x
    return [(float(image.channels["A"][i]), float(image.channels["Z"][i]))
            for i in range(off[p], off[p + 1])]


def test_slab_samples_keep_partial_coverage_at_each_depth_and_flatten_to_the_beauty():
    slabs, bounds = _slabs()
    beauty = _composite(slabs)
    image = slabs_mod.packed_from_slabs(beauty, slabs, bounds)
    rgba, _ = deep.flatten(image)
    np.testing.assert_allclose(rgba, beauty, atol=1e-6)
    # curtain over the half-covered box column over the wall: three samples, partial first
    assert _samples(image, 8, 12) == [(pytest.approx(0.35), 2.0), (1.0, 4.0), (1.0, 10.0)]
    assert _samples(image, 8, 20) == [(0.5, 4.0), (1.0, 10.0)]
    # the world past the wall's edge: a background sample
    assert _samples(image, 0, 28) == [(1.0, deep.BACKGROUND_Z)]


def test_slab_noise_does_not_move_the_beauty():
    rng = np.random.default_rng(3)
    slabs, bounds = _slabs()
    beauty = _composite(slabs)
    noisy = [((s * (1 + 0.05 * rng.standard_normal(s.shape))).clip(0, 1).astype(np.float32), z)
             for s, z in slabs]
    counts, samples, stats = slabs_mod.slab_samples(beauty, noisy, bounds)
    image = deep.tidy(deep.DeepImage("<t>", counts, samples))
    rgba, _ = deep.flatten(image)
    assert np.abs(rgba - beauty).mean() < 1e-6
    assert np.abs(rgba - beauty).max() < 1e-4
    assert 0 < stats["moved"] < 0.2


def test_a_covered_pixel_without_its_own_depth_takes_its_neighbours():
    slabs, bounds = _slabs()
    slabs[1][1][5:8, 20] = np.inf  # Z from one sample: the trail's first sample missed the box
    image = slabs_mod.packed_from_slabs(_composite(slabs), slabs, bounds)
    assert _samples(image, 6, 20)[0] == (0.5, 4.0)


def test_slab_deep_file_records_how_it_was_made(tmp_path):
    slabs, bounds = _slabs()
    beauty = _composite(slabs)
    path = exr.write_deep_exr(str(tmp_path / "s_deep.exr"), beauty,
                              np.zeros(beauty.shape[:2], np.float32), slabs=slabs, bounds=bounds)
    image = exr.read_deep(path)
    assert image.header[deep.MODE_KEY] == "slabs"
    assert image.header[deep.SLAB_BOUNDS_KEY] == "0.1 3 7 50"
    assert image.header[deep.LAYERS_KEY] == 3
    np.testing.assert_allclose(deep.flatten(image)[0], beauty, atol=1e-6)


def test_slab_samples_refuse_slabs_that_do_not_match():
    slabs, bounds = _slabs()
    with pytest.raises(ZDepthError, match="3 slab"):
        slabs_mod.slab_samples(_composite(slabs), slabs, bounds[:3])
    with pytest.raises(ZDepthError, match="registered"):
        slabs_mod.slab_samples(_composite(slabs)[:10], slabs, bounds)


def test_slab_boundaries_sit_in_the_gaps_and_in_front_of_the_nearest_surface():
    depth = np.full((40, 60), 10.0, np.float32)
    depth[10:20, 10:20] = 4.0
    depth[25:30, 40:50] = 2.0
    # foreground, subject, wall: the gaps behind the foreground and the subject
    b = layers.slab_boundaries(depth, 3, 4.0, 0.1, 50.0)
    assert 2.0 < b[0] < 4.0 < b[1] < 10.0
    # a subject and a wall: behind the subject, and in front of it (a curtain the depth pass
    # did not see lands in a slab of its own)
    depth = np.full((40, 60), 10.0, np.float32)
    depth[10:20, 10:20] = 5.0
    b = layers.slab_boundaries(depth, 3, 5.0, 0.1, 50.0)
    assert 4.0 < b[0] < 5.0 < 7.0 < b[1] < 10.0
    assert layers.slab_boundaries(depth, 1, 5.0, 0.1, 50.0) == []
    for n in range(2, 9):
        b = layers.slab_boundaries(depth, n, 5.0, 0.1, 50.0)
        assert len(b) == n - 1 and all(0.1 < x < 50 for x in b)
        assert all(y > x for x, y in zip(b, b[1:]))
