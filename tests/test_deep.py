"""Deep OpenEXR (core/deep.py): our writer, reading any deep file, sorting, tidying volumes,
flattening and the engine's hidden layers -- all through real files written by the official
bindings."""

import math

import numpy as np
import OpenEXR
import pytest

from blender_zdepth.core import deep, exr
from blender_zdepth.core.camera import CameraInfo
from blender_zdepth.core.errors import ZDepthError
from blender_zdepth.core.exr import deep as exr_deep
from blender_zdepth.core.frame import deep_beside_path


def _frame(h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    rgba = rng.random((h, w, 4)).astype(np.float32)
    rgba[..., 3] = 1.0
    depth = np.full((h, w), 4.0, np.float32)
    depth[:, : w // 2] = 2.0           # a near subject on the left
    depth[:3] = np.inf                 # sky
    behind = rng.random((h, w, 4)).astype(np.float32)
    behind[..., 3] = 1.0
    bdepth = np.full((h, w), 9.0, np.float32)
    bdepth[:, w // 2:] = 4.0           # the peel sees the same wall where nothing was in front
    return rgba, depth, behind, bdepth


def _object(values_per_pixel, shape, dtype=np.float32):
    obj = np.empty(shape, dtype=object)
    for (y, x), values in values_per_pixel.items():
        obj[y, x] = np.asarray(values, dtype)
    return obj


def _write_raw(path, samples, shape, tiled=False, half_colour=False, with_z=True):
    """Write a deep file from ``{(y, x): [(r, g, b, a, z, zback), ...]}`` as given (order kept)."""
    names = ["R", "G", "B", "A"] + (["Z", "ZBack"] if with_z else [])
    channels = {}
    for i, name in enumerate(names):
        dtype = np.float16 if (half_colour and name in "RGBA") else np.float32
        channels[name] = _object({k: [s[i] for s in v] for k, v in samples.items()}, shape, dtype)
    header = {"compression": OpenEXR.ZIPS_COMPRESSION}
    if tiled:
        tiles = OpenEXR.TileDescription()
        tiles.xSize, tiles.ySize, tiles.mode = 4, 4, OpenEXR.ONE_LEVEL
        header["type"] = OpenEXR.deeptile
        header["tiles"] = tiles
    else:
        header["type"] = OpenEXR.deepscanline
    OpenEXR.File(header, channels).write(str(path))
    return str(path)


def test_our_file_round_trip_flattens_to_the_beauty(tmp_path):
    rgba, depth, behind, bdepth = _frame()
    cam = CameraInfo(focal_length_mm=50.0, sensor_width_mm=36.0, fstop=2.8, focus_distance=2.0)
    path = exr.write_deep_exr(tmp_path / "shot_deep.exr", rgba, depth, [(behind, bdepth)],
                               camera=cam, extra_header={"zdepthFrame": 7})
    # a standard deep scanline file with the agreed channels and header
    part = OpenEXR.File(path, header_only=True).parts[0]
    assert str(part.header["type"]).endswith("deepscanline")
    assert part.header["compression"] == OpenEXR.ZIPS_COMPRESSION
    assert sorted(c.name for c in part.header["channels"]) == sorted(deep.DEEP_CHANNELS)
    assert part.header[deep.LAYERS_KEY] == 2
    assert CameraInfo.from_header(part.header).focal_length_mm == 50.0
    image = exr.read_deep(path)
    assert image.resorted == 0 and image.tidied == 0
    # samples: one per pixel where the peel saw the same wall, two behind the subject
    assert image.counts[5, 0] == 2 and image.counts[5, -1] == 1 and image.counts[0, 0] == 1
    flat, front = deep.flatten(image)
    assert np.array_equal(flat, rgba)  # bit for bit: the beauty is the front, opaque sample
    assert np.array_equal(front[3:], depth[3:]) and np.all(np.isinf(front[:3]))
    # sky samples are stored at 1e10, like Cycles' Z pass
    z = image.channels["Z"]
    assert z.max() == np.float32(deep.BACKGROUND_Z)


def test_engine_input_from_our_file(tmp_path):
    rgba, depth, behind, bdepth = _frame()
    path = exr.write_deep_exr(tmp_path / "d.exr", rgba, depth, [(behind, bdepth)])
    flat, front, hidden = deep.to_engine(exr.read_deep(path))
    assert np.array_equal(flat, rgba)
    assert len(hidden) == 1
    hrgba, hdepth = hidden[0]
    assert hrgba.dtype == np.float32 and hrgba.shape == rgba.shape and hdepth.shape == depth.shape
    left = np.zeros(depth.shape, bool)
    left[3:, : depth.shape[1] // 2] = True
    assert np.array_equal(hrgba[left], behind[left]) and np.all(hdepth[left] == 9.0)
    # where the peel saw the visible wall again, or under the sky, there is no hidden sample
    assert np.all(hrgba[~left][:, 3] == 0) and np.all(np.isinf(hdepth[~left]))
    # a budget of 0 gives no hidden layers
    assert deep.to_engine(exr.read_deep(path), max_layers=0)[2] == []


def test_transparent_beauty_keeps_flatten_exact(tmp_path):
    rgba, depth, behind, bdepth = _frame()
    rgba[5:10, :4, 3] = 0.4           # partly covered pixels (film transparent, an edge)
    rgba[5:10, :4, :3] *= 0.4
    path = exr.write_deep_exr(tmp_path / "d.exr", rgba, depth, [(behind, bdepth)])
    image = exr.read_deep(path)
    assert np.all(image.counts[5:10, :4] == 1)   # no sample that would show through
    assert np.allclose(deep.flatten(image)[0], rgba, atol=1e-7)


def test_unsorted_samples_are_sorted(tmp_path):
    s = {(0, 0): [(0.1, 0.1, 0.1, 1.0, 5.0, 5.0), (0.5, 0.5, 0.5, 0.5, 1.0, 1.0)],
         (0, 1): [(0.2, 0.0, 0.0, 0.2, 3.0, 3.0)]}
    path = _write_raw(tmp_path / "u.exr", s, (2, 2))
    image = exr.read_deep(path)
    assert image.resorted == 1
    assert list(image.channels["Z"][:2]) == [1.0, 5.0]
    flat, front = deep.flatten(image)
    # 0.5 over (0.1 opaque): 0.5 + 0.5 * 0.1
    assert flat[0, 0, 0] == pytest.approx(0.55) and flat[0, 0, 3] == pytest.approx(1.0)
    assert front[0, 0] == 1.0          # accumulated alpha reaches 0.5 at the front sample
    assert front[0, 1] == 3.0          # never 0.5 opaque: the sample that contributes most
    assert np.isinf(front[1, 1]) and np.all(flat[1, 1] == 0)   # empty pixel


def test_overlapping_volumes_are_split_and_merged(tmp_path):
    # two volume samples of the same density over [1, 3] and [2, 4]; alpha 0.75 each over 2 m
    s = {(0, 0): [(0.75, 0.0, 0.0, 0.75, 1.0, 3.0), (0.0, 0.75, 0.0, 0.75, 2.0, 4.0)]}
    image = exr.read_deep(_write_raw(tmp_path / "v.exr", s, (1, 1)))
    assert image.tidied == 1
    assert list(image.channels["Z"]) == [1.0, 2.0, 3.0]
    assert list(image.channels["ZBack"]) == [2.0, 3.0, 4.0]
    a = image.channels["A"]
    assert a[0] == pytest.approx(0.5) and a[2] == pytest.approx(0.5)
    assert a[1] == pytest.approx(0.75)           # two halves of 0.5: 1 - 0.5 * 0.5
    flat, _ = deep.flatten(image)
    # total transmittance: 0.5 * 0.25 * 0.5; both volumes equally dense, so the shared slab
    # gives red and green equal shares
    assert flat[0, 0, 3] == pytest.approx(1 - 0.0625)
    assert flat[0, 0, 1] < flat[0, 0, 0]
    # a volume split in two composites back to itself
    one = deep.tidy_pixel([(0.6, 0.6, 0.6, 0.6, 1.0, 3.0), (0, 0, 0, 0.0, 2.0, 2.0)])
    t = 1.0
    c = 0.0
    for r, _g, _b, al, _z, _zb in one:
        c += t * r
        t *= 1 - al
    assert c == pytest.approx(0.6) and 1 - t == pytest.approx(0.6)


def test_half_colour_float_z_tiled_and_many_samples(tmp_path):
    rng = np.random.default_rng(3)
    s = {}
    for y in range(6):
        for x in range(7):
            n = int(rng.integers(0, 40))   # hair: up to 40 samples, shuffled
            z = rng.uniform(1.0, 10.0, n)
            s[(y, x)] = [(0.05, 0.04, 0.03, 0.1, float(v), float(v)) for v in z]
    for tiled in (False, True):
        path = _write_raw(tmp_path / f"h{tiled}.exr", s, (6, 7), tiled=tiled, half_colour=True)
        image = exr.read_deep(path)
        assert image.half == {"R", "G", "B", "A"}
        assert int(image.counts.sum()) == sum(len(v) for v in s.values())
        flat, front = deep.flatten(image)
        for (y, x), v in s.items():
            n = len(v)
            # the stored alpha is half 0.1; the expectation in float64 (numpy 2 would keep a
            # float16 scalar in float16 and lose the 1e-5 this checks)
            assert flat[y, x, 3] == pytest.approx(1 - (1 - float(np.float16(0.1))) ** n, abs=1e-5)
        rgba, depth, hidden = deep.to_engine(image, max_layers=2)
        assert len(hidden) <= 2   # the budget holds whatever the sample count


def test_hidden_groups_cluster_by_depth_and_respect_the_budget():
    # one pixel: a front surface at 2, hair strands at 5.00-5.05, a wall at 9, a far wall at 20
    counts = np.array([[6]], np.int64)
    z = np.array([2.0, 5.0, 5.02, 5.05, 9.0, 20.0], np.float32)
    a = np.array([1.0, 0.3, 0.3, 0.3, 1.0, 1.0], np.float32)
    chans = {"R": a * 0.5, "G": a * 0.5, "B": a * 0.5, "A": a, "Z": z, "ZBack": z.copy()}
    image = deep.tidy(deep.DeepImage("x", counts, chans))
    _, front, hidden = deep.to_engine(image, max_layers=3)
    assert front[0, 0] == 2.0
    assert [float(h[1][0, 0]) for h in hidden] == [5.0, 9.0, 20.0]
    assert hidden[0][0][0, 0, 3] == pytest.approx(1 - 0.7 ** 3)   # the strands are one layer
    _, _, two = deep.to_engine(image, max_layers=2)
    assert [float(h[1][0, 0]) for h in two] == [5.0, 9.0]
    assert two[1][0][0, 0, 3] == pytest.approx(1.0)  # the far wall joined the last group


def test_no_z_is_one_clear_error(tmp_path):
    path = _write_raw(tmp_path / "noz.exr", {(0, 0): [(1, 1, 1, 1)]}, (1, 1), with_z=False)
    with pytest.raises(ZDepthError, match="no Z channel"):
        exr.read_deep(path)


def test_damaged_and_flat_files_are_errors(tmp_path):
    rgba, depth, behind, bdepth = _frame(64, 64)
    path = exr.write_deep_exr(tmp_path / "d.exr", rgba, depth, [(behind, bdepth)])
    data = open(path, "rb").read()
    cut = tmp_path / "cut.exr"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ZDepthError, match="damaged or truncated"):
        exr.read_deep(cut)
    flat = exr.write_depth_exr(tmp_path / "flat.exr", depth)
    assert exr.is_deep(path) and not exr.is_deep(flat)
    with pytest.raises(ZDepthError, match="not a deep OpenEXR"):
        exr.read_deep(flat)
    (tmp_path / "junk.exr").write_bytes(b"not an exr at all")
    with pytest.raises(ZDepthError, match="not an OpenEXR"):
        exr.read_deep(tmp_path / "junk.exr")


def test_nan_depth_is_damaged(tmp_path):
    path = _write_raw(tmp_path / "n.exr", {(0, 0): [(1, 1, 1, 1, math.nan, math.nan)]}, (1, 1))
    with pytest.raises(ZDepthError, match="NaN"):
        exr.read_deep(path)


def test_writer_refuses_unregistered_layers_and_existing_files(tmp_path):
    rgba, depth, behind, bdepth = _frame()
    with pytest.raises(ZDepthError, match="registered"):
        exr.write_deep_exr(tmp_path / "a.exr", rgba, depth, [(behind[:-1], bdepth[:-1])])
    assert not list(tmp_path.iterdir())     # nothing half-written
    path = exr.write_deep_exr(tmp_path / "a.exr", rgba, depth)
    with pytest.raises(ZDepthError, match="already exists"):
        exr.write_deep_exr(path, rgba, depth)
    assert deep_beside_path("/x/shot_0001.exr") == "/x/shot_0001_deep.exr"


def test_packed_from_layers_matches_the_file(tmp_path):
    rgba, depth, behind, bdepth = _frame()
    path = exr.write_deep_exr(tmp_path / "d.exr", rgba, depth, [(behind, bdepth)])
    a = exr.read_deep(path)
    b = deep.packed_from_layers(rgba, depth, [(behind, bdepth)])
    assert np.array_equal(a.counts, b.counts)
    for name in deep.DEEP_CHANNELS:
        assert np.array_equal(a.channels[name], b.channels[name])


def test_flat_encoding_attributes_are_not_copied(tmp_path):
    from blender_zdepth.core.encodings import DepthEncoding

    rgba, depth, behind, bdepth = _frame()
    extra = {**DepthEncoding("log", 0.1, 100.0).to_header(), "zdepthDepthChannel": "Z",
             "zdepthFrame": 12}
    path = exr.write_deep_exr(tmp_path / "d.exr", rgba, depth, camera=None, extra_header=extra)
    header = OpenEXR.File(path, header_only=True).parts[0].header
    assert "zdepthEncoding" not in header and "zdepthNear" not in header
    assert header["zdepthFrame"] == 12 and header[deep.LAYERS_KEY] == 1


def test_vectorised_tidy_matches_the_per_pixel_rule():
    rng = np.random.default_rng(11)
    n, c = 300, 5
    z = np.sort(rng.uniform(1, 5, (n, c)), axis=1).astype(np.float32)
    zb = z + rng.choice([0.0, 0.3, 1.5], (n, c)).astype(np.float32)   # points and volumes
    z[:40, 1] = z[:40, 0]                                              # coincident fronts
    zb[:40, 1] = zb[:40, 0]
    zb[:20, 2] = z[:20, 2]                                             # point samples at a depth
    z[:20, 3] = z[:20, 2]
    zb[:20, 3] = z[:20, 2]
    a = rng.choice([0.2, 0.6, 1.0, 0.0], (n, c)).astype(np.float32)
    rgb = (rng.random((n, c, 3)) * a[..., None]).astype(np.float32)
    for i in range(n):   # keep each row sorted by (z, zback)
        o = np.lexsort((zb[i], z[i]))
        z[i], zb[i], a[i], rgb[i] = z[i][o], zb[i][o], a[i][o], rgb[i][o]
    chans = {"R": rgb[..., 0].ravel(), "G": rgb[..., 1].ravel(), "B": rgb[..., 2].ravel(),
             "A": a.ravel(), "Z": z.ravel(), "ZBack": zb.ravel()}
    image = deep.tidy(deep.DeepImage("x", np.full((1, n), c, np.int64),
                                     {k: v.copy() for k, v in chans.items()}))
    assert image.tidied > 200
    off = image.offsets
    compared = 0
    for i in range(n):
        samples = [tuple(float(v) for v in (rgb[i, j, 0], rgb[i, j, 1], rgb[i, j, 2], a[i, j],
                                            z[i, j], zb[i, j])) for j in range(c)]
        if not any(samples[j + 1][4] < samples[j][5] for j in range(c - 1)):
            continue   # not an overlapping pixel: left as it is
        compared += 1
        want = np.array(deep.tidy_pixel(samples))
        got = np.stack([image.channels[k][off[i]:off[i + 1]] for k in deep.DEEP_CHANNELS], 1)
        assert got.shape == want.shape, i
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert compared == image.tidied


def _naive_objects(counts, packed, dtypes=None):
    """The bindings' form built the plain way: one slice per pixel and channel."""
    h, w = counts.shape
    off = np.concatenate([[0], np.cumsum(counts.ravel())])
    out = {}
    for name, values in packed.items():
        obj = np.empty(h * w, dtype=object)
        for i in range(h * w):
            if counts.flat[i]:
                obj[i] = np.asarray(values[off[i]:off[i + 1]], (dtypes or {}).get(name,
                                                                                 np.float32))
        out[name] = obj.reshape(h, w)
    return out


@pytest.mark.parametrize("half", [False, True])
def test_object_arrays_write_the_same_file_as_one_array_per_pixel_and_channel(tmp_path, half):
    rng = np.random.default_rng(3)
    counts = rng.choice([0, 1, 1, 1, 2, 3, 7], size=(9, 13)).astype(np.int64)
    n = int(counts.sum())
    z = np.sort(rng.uniform(1, 50, n)).astype(np.float32)
    packed = {c: rng.random(n).astype(np.float32) for c in "RGBA"}
    packed["A"][::3] = 1.0
    packed.update(Z=z, ZBack=z.copy())
    dtypes = {c: np.float16 for c in "RGBA"} if half else None
    objects = exr_deep._to_object_arrays(counts, packed, dtypes)
    # colour goes in as one (count, 4) array per pixel; ZBack shares Z's arrays
    assert sorted(objects) == ["RGBA", "Z", "ZBack"]
    assert objects["ZBack"] is objects["Z"]
    naive = _naive_objects(counts, packed, dtypes)
    for (y, x), c in np.ndenumerate(counts):
        got = objects["RGBA"][y, x]
        if c == 0:
            assert got is None and objects["Z"][y, x] is None
            continue
        assert got.shape == (c, 4) and got.flags.c_contiguous
        for i, name in enumerate("RGBA"):
            assert np.array_equal(got[:, i], naive[name][y, x])
        assert np.array_equal(objects["Z"][y, x], naive["Z"][y, x])
    header = {"type": OpenEXR.deepscanline, "compression": OpenEXR.ZIPS_COMPRESSION}
    OpenEXR.File(dict(header), objects).write(str(tmp_path / "fast.exr"))
    OpenEXR.File(dict(header), naive).write(str(tmp_path / "naive.exr"))
    assert (tmp_path / "fast.exr").read_bytes() == (tmp_path / "naive.exr").read_bytes()


def _write_channels(path, channels, shape, rng):
    """A deep file with the named channels ({name: dtype}): 0-4 point samples a pixel, sorted
    front to back (Z and ZBack increase), random colour; returns (counts, {name: object array
    written})."""
    counts = rng.integers(0, 5, size=shape)
    objects = {name: np.empty(shape, dtype=object) for name in channels}
    for (y, x), c in np.ndenumerate(counts):
        if not c:
            continue
        z = np.sort(rng.uniform(0.5, 20.0, c))
        for name, dtype in channels.items():
            base = name.rsplit(".", 1)[-1]
            values = z if base in ("Z", "ZBack") else rng.uniform(0.0, 1.0, c)
            objects[name][y, x] = values.astype(dtype)
    OpenEXR.File({"type": OpenEXR.deepscanline, "compression": OpenEXR.ZIPS_COMPRESSION},
                 dict(objects)).write(str(path))  # (the bindings replace the dict's values)
    return counts, objects


@pytest.mark.parametrize("channels, grouped", [
    ({"R": np.float32, "G": np.float32, "B": np.float32, "A": np.float32, "Z": np.float32,
      "ZBack": np.float32}, True),
    ({"R": np.float16, "G": np.float16, "B": np.float16, "Z": np.float32}, True),
    ({"beauty.R": np.float16, "beauty.G": np.float16, "beauty.B": np.float16,
      "beauty.A": np.float16, "beauty.Z": np.float32}, True),
    # mixed colour types: the bindings cannot group them; read channel by channel
    ({"R": np.float16, "G": np.float16, "B": np.float16, "A": np.float32, "Z": np.float32},
     False),
])
def test_read_groups_colour_where_the_bindings_can_and_reads_the_same_samples(
        tmp_path, channels, grouped):
    rng = np.random.default_rng(len(channels))
    path = tmp_path / "g.exr"
    counts, written = _write_channels(path, channels, (5, 6), rng)
    _, loaded = exr_deep._read_channels(OpenEXR, str(path))
    chans = loaded[0][1]
    assert sorted(chans) == sorted(channels)
    colour = sorted(n for n in channels if n.rsplit(".", 1)[-1] in "RGBA")
    assert sorted(k for k, (_, col) in chans.items() if col is not None) == (
        colour if grouped else [])
    image = exr.read_deep(path)
    assert image.resorted == 0 and image.tidied == 0
    assert np.array_equal(image.counts, counts)
    for name in channels:
        want = np.concatenate([v for v in written[name].ravel() if v is not None])
        assert image.channels[name.rsplit(".", 1)[-1]].dtype == np.float32
        assert np.array_equal(image.channels[name.rsplit(".", 1)[-1]],
                              want.astype(np.float32)), name
    assert image.half == {n.rsplit(".", 1)[-1] for n, t in channels.items() if t == np.float16}
