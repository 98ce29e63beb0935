"""EXR files: round trips through real files, reading Blender-style layouts, errors, PNG."""

import math
import os

import numpy as np
import OpenEXR
import pytest

from blender_zdepth.core import exr
from blender_zdepth.core.camera import CameraInfo
from blender_zdepth.core.encodings import ENCODINGS, DepthEncoding
from blender_zdepth.core.errors import UsageError, ZDepthError
from blender_zdepth.core.png import read_png, write_png
from blender_zdepth.core.exr import binding as exr_binding
from blender_zdepth.core.frame import load_frame


def _depth_ramp(near, far, shape=(64, 96), outside=True):
    """Geometric ramp over [near, far] (and a bit beyond on both sides) plus background."""
    h, w = shape
    lo, hi = (near / 3, far * 3) if outside else (near, far)
    d = np.geomspace(lo, hi, h * w).reshape(h, w)
    d[0, :4] = [1e10, np.nan, np.inf, 2e9]
    return d


@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("name", ENCODINGS)
def test_round_trip_through_file(tmp_path, name, half):
    near, far = 0.5, 300.0
    enc = DepthEncoding(name, near, far)
    d = _depth_ramp(near, far)
    path = exr.write_depth_exr(tmp_path / "d.exr", d, encoding=enc, half=half)
    frame = load_frame(path)
    assert frame.encoding == enc and frame.depth_channel == "Z" and frame.half == half
    assert frame.depth.dtype == np.float32 and frame.depth.shape == d.shape
    bg = np.zeros(d.shape, bool)
    bg[0, :4] = True
    assert np.all(np.isposinf(frame.depth[bg])) and np.all(np.isfinite(frame.depth[~bg]))
    rel = np.abs(frame.depth[~bg] / d[~bg] - 1)
    if not half:
        assert rel.max() < (2e-6 if name != "normalized" else 5e-6)
    else:
        inside = (d[~bg] >= near) & (d[~bg] <= far)
        bound = {"log": math.log(far / near) * 2.0 ** -11, "linear": 2.0 ** -11,
                 "inverse": 2.0 ** -11, "normalized": 2.0 ** -11 * far / near}[name]
        assert rel[inside].max() <= bound
    # the stored channel is what the header says
    img = exr.read_exr(path)
    assert set(img.channels) == {"Z"}
    assert img.header["zdepthEncoding"] == name


@pytest.mark.parametrize("near, far", [(0.01, 10000.0), (0.1, 1000.0), (1.0, 500.0)])
def test_float32_log_error_at_most_1e6(tmp_path, near, far):
    d = np.geomspace(near, far, 512 * 512).reshape(512, 512)
    path = exr.write_depth_exr(tmp_path / "log.exr", d, encoding=DepthEncoding("log", near, far))
    back = load_frame(path).depth.astype(np.float64)
    assert np.max(np.abs(back / d - 1)) <= 1e-6


def test_half_log_error_within_the_half_limit(tmp_path):
    near, far = 0.1, 1000.0
    d = np.geomspace(near, far, 256 * 256).reshape(256, 256)
    path = exr.write_depth_exr(tmp_path / "h.exr", d, encoding=DepthEncoding("log", near, far), half=True)
    back = load_frame(path).depth.astype(np.float64)
    err = np.max(np.abs(back / d - 1))
    bound = math.log(far / near) * 2.0 ** -11  # about 4.5e-3
    assert err <= bound
    assert err > bound / 4  # and the bound is a fair prediction, not a loose one


def test_half_linear_beyond_65504_is_an_error(tmp_path):
    d = np.array([[1.0, 70000.0]])
    with pytest.raises(ZDepthError, match="half float"):
        exr.write_depth_exr(tmp_path / "x.exr", d, encoding=DepthEncoding("linear", 1.0, 1e5), half=True)
    assert os.listdir(tmp_path) == []


def test_beauty_and_camera_in_the_same_file(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.random((20, 30, 4)).astype(np.float32)
    d = rng.uniform(1.0, 9.0, (20, 30))
    m = np.eye(4, dtype=np.float32) * 2
    cam = CameraInfo(85.0, 36.0, 24.0, "AUTO", 1.4, 3.0, 0.1, 100.0, 7, world_to_camera=m)
    path = exr.write_depth_exr(tmp_path / "b.exr", d, encoding=DepthEncoding("log", 1, 10), rgba=rgba,
                               camera=cam, depth_channel="depth.Z", codec="piz")
    f = load_frame(path)
    assert f.depth_channel == "depth.Z" and f.beauty_channels == ["R", "G", "B", "A"]
    assert np.array_equal(f.rgba, rgba)
    assert f.camera.focal_length_mm == 85.0 and f.camera.frame == 7
    assert np.array_equal(f.camera.world_to_camera, m)
    assert f.header["worldToCamera"].shape == (4, 4)
    assert f.header["compression"] == OpenEXR.PIZ_COMPRESSION


def test_beauty_not_registered_is_an_error(tmp_path):
    with pytest.raises(ZDepthError, match="not registered"):
        exr.write_depth_exr(tmp_path / "b.exr", np.ones((20, 30)), rgba=np.ones((20, 31, 4)))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("codec", ["zip", "PIZ", "zips", "rle", "none"])
def test_lossless_codecs_are_exact(tmp_path, codec):
    d = np.random.default_rng(3).uniform(0.2, 80.0, (33, 17))
    enc = DepthEncoding("log", 0.2, 80.0)
    path = exr.write_depth_exr(tmp_path / "c.exr", d, encoding=enc, codec=codec)
    stored = exr.read_exr(path).channels["Z"]
    assert np.array_equal(stored, enc.encode(d))


@pytest.mark.parametrize("codec", ["dwaa", "DWAB", "b44", "b44a", "pxr24"])
def test_lossy_codecs_are_refused(tmp_path, codec):
    with pytest.raises(UsageError, match="lossy"):
        exr.write_depth_exr(tmp_path / "c.exr", np.ones((4, 4)), codec=codec)
    assert os.listdir(tmp_path) == []


def test_no_overwrite_unless_asked_and_atomic(tmp_path):
    target = tmp_path / "d.exr"
    target.write_bytes(b"precious")
    with pytest.raises(ZDepthError, match="already exists"):
        exr.write_depth_exr(target, np.ones((4, 4)))
    assert target.read_bytes() == b"precious"
    exr.write_depth_exr(target, np.ones((4, 4)), overwrite=True)
    assert load_frame(target).depth.shape == (4, 4)
    assert sorted(os.listdir(tmp_path)) == ["d.exr"]  # no temporary file left


def _unwritable_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # running as root: /proc refuses new files even to root
        return "/proc"
    return str(ro)


def test_missing_folder_and_unwritable_folder(tmp_path):
    with pytest.raises(ZDepthError, match="does not exist"):
        exr.write_depth_exr(tmp_path / "nope" / "d.exr", np.ones((4, 4)))
    folder = _unwritable_folder(tmp_path)
    with pytest.raises(ZDepthError, match="cannot write"):
        exr.write_depth_exr(os.path.join(folder, "zdepth_test.exr"), np.ones((4, 4)))
    assert not os.path.exists(os.path.join(folder, "zdepth_test.exr"))


def _blender5_like(path, layers=("ViewLayer",), depth=None, h=8, w=12):
    """A multi-part file laid out like Blender 5.0's multilayer EXR."""
    parts = []
    for i, layer in enumerate(layers):
        rgba = {f"{layer}.Combined.{c}": np.full((h, w), 0.1 * (i + 1), np.float32)
                for c in "RGBA"}
        parts.append(OpenEXR.Part({"compression": OpenEXR.ZIP_COMPRESSION,
                                   "type": OpenEXR.scanlineimage}, rgba, f"{layer}.Combined"))
        z = depth if depth is not None else np.full((h, w), 3.0 + i, np.float32)
        parts.append(OpenEXR.Part({"compression": OpenEXR.ZIP_COMPRESSION,
                                   "type": OpenEXR.scanlineimage},
                                  {f"{layer}.Depth.Z": z.astype(np.float32)}, f"{layer}.Depth"))
    OpenEXR.File(parts).write(str(path))
    return path


def test_reads_blender5_multipart_with_several_view_layers(tmp_path):
    z = np.full((8, 12), 4.0, np.float32)
    z[0, 0] = 1e10
    path = _blender5_like(tmp_path / "ml.exr", ("ViewLayer", "Fog"), z)
    f = load_frame(path)
    assert f.depth_channel == "ViewLayer.Depth.Z"
    assert f.beauty_channels[:3] == [f"ViewLayer.Combined.{c}" for c in "RGB"]
    assert f.depth[0, 0] == np.inf and f.depth[1, 1] == 4.0 and f.encoding is None
    assert np.allclose(f.rgba[..., 0], 0.1)
    g = load_frame(path, layer="Fog")
    assert g.depth_channel == "Fog.Depth.Z" and np.allclose(g.rgba[..., 0], 0.2)


def test_reads_single_part_rgba_plus_z_and_depth_v(tmp_path):
    h, w = 6, 5
    ch = {c: np.full((h, w), 0.5, np.float32) for c in "RGBA"}
    ch["Z"] = np.full((h, w), 2.5, np.float32)
    exr.write_exr(tmp_path / "a.exr", ch)
    f = load_frame(tmp_path / "a.exr")
    assert f.depth_channel == "Z" and f.rgba.shape == (h, w, 4) and f.depth[0, 0] == 2.5
    exr.write_exr(tmp_path / "v.exr", {"RenderLayer.Depth.V": np.ones((h, w))})
    f = load_frame(tmp_path / "v.exr")
    assert f.depth_channel == "RenderLayer.Depth.V" and f.rgba is None


def test_background_rule_for_plain_renders(tmp_path):
    z = np.array([[3.0, 99.99771, 1e10, np.nan]], np.float32)
    exr.write_exr(tmp_path / "p.exr", {"Z": z})
    f = load_frame(tmp_path / "p.exr")  # auto: only >= 1e9 or non-finite
    assert f.depth[0].tolist()[:2] == [3.0, pytest.approx(99.99771)] and f.background == 1e9
    assert np.all(np.isposinf(f.depth[0, 2:]))
    f = load_frame(tmp_path / "p.exr", background=99.0)
    assert np.isposinf(f.depth[0, 1])
    # with the camera in the header (EEVEE, clip end 100), auto uses the clip end
    cam = CameraInfo(clip_start=0.1, clip_end=100.0)
    exr.write_exr(tmp_path / "c.exr", {"Z": z}, header=cam.to_header())
    f = load_frame(tmp_path / "c.exr")
    assert f.depth[0, 0] == 3.0 and np.isposinf(f.depth[0, 1])


def test_no_depth_channel_lists_what_was_found(tmp_path):
    exr.write_exr(tmp_path / "n.exr", {"R": np.ones((2, 2)), "G": np.ones((2, 2)),
                                       "B": np.ones((2, 2)), "Normal.X": np.ones((2, 2))})
    with pytest.raises(ZDepthError, match=r"no depth channel.*B, G, Normal.X, R"):
        load_frame(tmp_path / "n.exr")


def test_missing_not_exr_and_truncated_files(tmp_path):
    with pytest.raises(ZDepthError, match="no such file"):
        exr.read_exr(tmp_path / "missing.exr")
    (tmp_path / "t.exr").write_text("hello, not an image")
    with pytest.raises(ZDepthError, match="not an OpenEXR file"):
        exr.read_exr(tmp_path / "t.exr")
    d = np.random.default_rng(0).uniform(1, 100, (64, 64))
    full = exr.write_depth_exr(tmp_path / "full.exr", d, codec="none")
    with open(full, "rb") as fh:
        data = fh.read()
    for cut in (len(data) - 7, len(data) // 2, 200, 10):
        (tmp_path / "cut.exr").write_bytes(data[:cut])
        with pytest.raises(ZDepthError, match="damaged or truncated|not an OpenEXR"):
            load_frame(tmp_path / "cut.exr")


def test_data_window_is_kept(tmp_path):
    d = np.full((4, 6), 2.0)
    exr.write_depth_exr(tmp_path / "w.exr", d, data_window=((10, 20), (15, 23)),
                        display_window=((0, 0), (99, 49)))
    f = load_frame(tmp_path / "w.exr")
    assert f.data_window == ((10, 20), (15, 23)) and f.display_window == ((0, 0), (99, 49))


def test_png_16_bit_round_trip(tmp_path):
    a = np.linspace(0, 1, 7 * 9).reshape(7, 9)
    write_png(tmp_path / "g.png", a, bits=16)
    px, bits = read_png(tmp_path / "g.png")
    assert bits == 16 and px.shape == (7, 9, 1)
    assert np.array_equal(px[..., 0], np.rint(a * 65535).astype(np.uint16))
    rgb = np.random.default_rng(0).random((5, 4, 3))
    write_png(tmp_path / "c.png", rgb, bits=8)
    px, _ = read_png(tmp_path / "c.png")
    assert np.array_equal(px, np.rint(rgb * 255).astype(np.uint8))
    with pytest.raises(ZDepthError, match="already exists"):
        write_png(tmp_path / "c.png", rgb)


def test_truncated_multipart_file_is_detected(tmp_path):
    z = np.random.default_rng(5).uniform(1, 50, (64, 48)).astype(np.float32)
    path = _blender5_like(tmp_path / "ml.exr", ("ViewLayer",), z, h=64, w=48)
    with open(path, "rb") as fh:
        data = fh.read()
    for cut in np.linspace(40, len(data) - 1, 25).astype(int):
        (tmp_path / "cut.exr").write_bytes(data[:cut])
        with pytest.raises(ZDepthError, match="damaged or truncated|not an OpenEXR"):
            exr.read_exr(tmp_path / "cut.exr")


def test_beauty_comes_from_the_depth_layer(tmp_path):
    ch = {f"Alpha.Combined.{c}": np.full((4, 4), 0.1) for c in "RGBA"}
    ch.update({f"Beta.Combined.{c}": np.full((4, 4), 0.7) for c in "RGBA"})
    ch["Beta.Depth.Z"] = np.full((4, 4), 2.0)
    exr.write_exr(tmp_path / "two.exr", ch)
    f = load_frame(tmp_path / "two.exr")
    assert f.depth_channel == "Beta.Depth.Z" and f.beauty_channels[0] == "Beta.Combined.R"
    assert np.allclose(f.rgba[..., 0], 0.7)


def test_outputs_get_ordinary_permissions_not_private_temp_ones(tmp_path):
    """Atomic writes go through a temporary file; the result must still be readable by the
    rest of the pipeline (0666 less the umask), not private like a mkstemp file."""
    umask = os.umask(0o022)
    try:
        exr_path = tmp_path / "d.exr"
        exr.write_exr(str(exr_path), {"Z": np.ones((4, 4), np.float32)})
        png_path = tmp_path / "d.png"
        write_png(str(png_path), np.zeros((4, 4), np.float32), bits=16)
    finally:
        os.umask(umask)
    for path in (exr_path, png_path):
        assert os.stat(path).st_mode & 0o777 == 0o644
    assert sorted(os.listdir(tmp_path)) == ["d.exr", "d.png"]


@pytest.fixture
def restore_io_pool():
    before = OpenEXR.global_thread_count(), dict(exr_binding._io_pool)
    yield
    OpenEXR.set_global_thread_count(before[0])
    exr_binding._io_pool.clear()
    exr_binding._io_pool.update(before[1])


def test_io_threads_follow_the_threads_rule_and_change_no_byte(tmp_path, restore_io_pool,
                                                               monkeypatch):
    from blender_zdepth.core import cpus

    # 1 thread = the calling thread alone (no pool); N = a pool of N; 0 = every usable core
    assert exr.set_io_threads(1) == 0 == OpenEXR.global_thread_count()
    assert exr.set_io_threads(3) == 3 == OpenEXR.global_thread_count()
    monkeypatch.setattr(cpus, "usable_cores", lambda: 5)
    assert exr.set_io_threads(0) == 5
    monkeypatch.setattr(cpus, "usable_cores", lambda: 1)
    assert exr.set_io_threads(0) == 0
    # io_threads() leaves a pool that was set alone, and sets one when nobody did
    exr.set_io_threads(2)
    assert exr.io_threads() == 2
    OpenEXR.set_global_thread_count(0)
    exr_binding._io_pool["threads"] = None
    monkeypatch.setattr(cpus, "usable_cores", lambda: 4)
    assert exr.io_threads() == 4 == OpenEXR.global_thread_count()
    # the same file and the same values whatever the pool
    rng = np.random.default_rng(3)
    rgba = rng.random((67, 45, 4), dtype=np.float32)
    depth = rng.uniform(0.5, 50.0, (67, 45)).astype(np.float32)
    files = []
    for n in (1, 3):
        exr.set_io_threads(n)
        path = tmp_path / f"pool{n}.exr"
        exr.write_exr(path, {"RGBA": rgba, "Z": depth})
        frame = load_frame(path)
        assert np.array_equal(frame.rgba, rgba) and np.array_equal(frame.depth, depth)
        files.append(path.read_bytes())
    assert files[0] == files[1]
