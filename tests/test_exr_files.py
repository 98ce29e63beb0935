"""Files from other tools: stereo and multi-view files, deep files, crop and overscan windows,
other renderers' background conventions, unknown views and layers. All files are generated here
with the OpenEXR binding (tests/exr_samples.py)."""

import os

import numpy as np
import pytest

from blender_zdepth import cli
from blender_zdepth.core import exr
from blender_zdepth.core.errors import UsageError, ZDepthError

import exr_samples as S
from blender_zdepth.core.frame import load_frame

LENS = ["--fstop", "1", "--focal-length", "80"]


def run(capsys, *args):
    """The command line, in this process (fast): ``(exit code, stdout, stderr)``."""
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


# -- views and parts ------------------------------------------------------------------------------

@pytest.mark.parametrize("view_attr", [True, False], ids=["view-attribute", "part-names"])
def test_stereo_multipart_beauty_and_depth_from_one_view_placed_by_data_window(tmp_path,
                                                                               view_attr):
    path = tmp_path / "stereo.exr"
    S.stereo_multipart(path, view_attr=view_attr)
    default = load_frame(path)
    assert default.views == ["right", "left"] and default.view == "right"  # the first part's
    for view in ("left", "right"):
        f = load_frame(path, view=view)
        x0, y0, x1, y1 = S.STEREO_WINDOWS[view]
        assert f.view == view and f.data_window == ((x0, y0), (x1, y1))
        assert f.display_window == ((0, 0), (159, 79)) and f.display_size == (160, 80)
        # every pixel's depth and beauty come from that view, at their absolute x
        xs = np.arange(x0, x1 + 1, dtype=np.float32)
        expect = 10.0 + xs / 100.0 + (1.0 if view == "right" else 0.0)
        np.testing.assert_allclose(f.depth, np.broadcast_to(expect, f.depth.shape), rtol=1e-6)
        np.testing.assert_allclose(f.rgba[..., 0], np.broadcast_to(xs / 1000.0, f.depth.shape),
                                   rtol=1e-6)
        assert np.all(f.rgba[..., 2] == np.float32(S.VIEW_MARKER[view]))


def test_beauty_and_depth_parts_with_different_windows_are_placed_not_indexed(tmp_path):
    path = tmp_path / "shifted.exr"
    S.stereo_multipart(path, depth_shift=(5, -3))
    f = load_frame(path, view="left")
    x0, y0, x1, y1 = S.STEREO_WINDOWS["left"]
    # the frame is the union of both windows
    assert f.data_window == ((x0, y0 - 3), (x1 + 5, y1))
    (fx0, fy0), _ = f.data_window
    cols = np.arange(f.depth.shape[1]) + fx0
    rows = np.arange(f.depth.shape[0]) + fy0
    in_depth = (cols >= x0 + 5) & (cols <= x1 + 5)
    depth_rows = (rows >= y0 - 3) & (rows <= y1 - 3)
    has_depth = np.outer(depth_rows, in_depth)
    assert np.all(np.isposinf(f.depth[~has_depth]))  # no depth part there: background
    np.testing.assert_allclose(f.depth[has_depth],
                               np.broadcast_to(10.0 + cols / 100.0, f.depth.shape)[has_depth],
                               rtol=1e-6)
    in_beauty = np.outer((rows >= y0) & (rows <= y1), (cols >= x0) & (cols <= x1))
    assert np.all(f.rgba[..., 3][~in_beauty] == 0)  # no beauty there: transparent
    np.testing.assert_allclose(f.rgba[..., 0][in_beauty],
                               np.broadcast_to(cols / 1000.0, f.depth.shape)[in_beauty])


def test_single_part_multiview(tmp_path):
    path = tmp_path / "mv.exr"
    S.multiview_singlepart(path)
    left = load_frame(path)
    assert left.view == "left" and left.views == ["left", "right"]
    assert left.depth_channel == "Z" and left.beauty_channels[:3] == ["R", "G", "B"]
    right = load_frame(path, view="right")
    np.testing.assert_allclose(right.depth, left.depth + 1.0)
    assert np.all(right.rgba[..., 2] == np.float32(0.75))
    assert np.all(left.rgba[..., 2] == np.float32(0.25))


def test_view_option_on_every_command(tmp_path, capsys):
    path = tmp_path / "stereo.exr"
    S.stereo_multipart(path)
    code, out, err = run(capsys, "inspect", path, "--view", "left")
    assert code == 0 and "views: right, left (default right); showing view left" in out
    assert "part rgba_right: scanline, view right, data window (6,10)-(85,59)" in out
    code, out, err = run(capsys, "decode", path, tmp_path / "left.exr", "--view", "left")
    assert code == 0, err
    back = load_frame(tmp_path / "left.exr")
    assert back.data_window == ((40, 10), (119, 59))
    np.testing.assert_allclose(back.depth[0, 0], 10.40, rtol=1e-6)
    code, out, err = run(capsys, "encode", path, tmp_path / "right.exr", "--view", "right")
    assert code == 0, err
    back = load_frame(tmp_path / "right.exr")
    np.testing.assert_allclose(back.depth[0, 0], 10.06 + 1.0, rtol=1e-5)
    code, out, err = run(capsys, "dof", path, tmp_path / "dof_left.exr", "--view", "left",
                         "--focus-distance", "10.5", *LENS)
    assert code == 0, err
    img = exr.read_exr(tmp_path / "dof_left.exr")
    assert img.data_window == ((40, 10), (119, 59))


SOURCES = {
    "plain": lambda p: S.plain_file(p, np.ones((8, 8, 4), np.float32),
                                    np.full((8, 8), 3.0, np.float32)),
    "stereo": S.stereo_multipart,
    "multiview": S.multiview_singlepart,
    "deep": S.deep_file,
    "tiled": S.tiled_file,
}


@pytest.mark.parametrize("kind", sorted(SOURCES))
@pytest.mark.parametrize("command", ["inspect", "encode", "decode", "dof"])
def test_unknown_view_or_layer_is_exit_2_listing_what_the_file_has(tmp_path, capsys, kind,
                                                                   command):
    src = tmp_path / "in.exr"
    SOURCES[kind](src)
    out = [] if command == "inspect" else [tmp_path / "out.exr"]
    extra = [*LENS, "--focus-distance", "3"] if command == "dof" else []
    code, _, err = run(capsys, command, src, *out, "--view", "middle", *extra)
    assert code == 2, err
    assert "no view 'middle'; its views: " in err and len(err.strip().splitlines()) == 1
    if kind == "stereo":
        assert "its views: right, left" in err
    code, _, err = run(capsys, command, src, *out, "--layer", "Nope", *extra)
    assert code == 2, err
    assert "no view layer 'Nope'; its view layers: " in err
    assert not os.path.exists(tmp_path / "out.exr")


# -- deep files -----------------------------------------------------------------------------------

@pytest.mark.parametrize("tiled", [False, True], ids=["deep-scanline", "deep-tiled"])
def test_deep_files_inspected_and_refused_cleanly(tmp_path, capsys, tiled):
    path = tmp_path / "deep.exr"
    counts = S.deep_file(path, tiled=tiled)
    code, out, err = run(capsys, "inspect", path)
    assert code == 0, err
    kind = "deep tiled" if tiled else "deep scanline"
    assert f": {kind}, data window (0,0)-(15,11)" in out
    assert (f"deep samples per pixel: min 0, median {np.median(counts):g}, max 3 "
            f"({counts.sum()} in all)") in out
    code, out, err = run(capsys, "inspect", path, "--json")
    assert code == 0
    for command in ("encode", "decode"):
        code, out, err = run(capsys, command, path, tmp_path / "o.exr")
        assert code == 1 and "holds deep samples" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
        assert not os.path.exists(tmp_path / "o.exr")


# -- the lens sees the display window -------------------------------------------------------------

def _edge_scene(h=64, w=128):
    """A textured near surface (left) in front of a far one (right)."""
    rng = np.random.default_rng(3)
    rgba = np.ones((h, w, 4), np.float32)
    rgba[..., :3] = rng.random((h, w, 3)).astype(np.float32)
    depth = np.where(np.arange(w)[None, :] < w // 2, 2.0, 6.0).astype(np.float32)
    return rgba, np.broadcast_to(depth, (h, w)).copy()


@pytest.mark.parametrize("window", ["crop", "overscan"])
def test_crop_and_overscan_change_no_blur_size(tmp_path, capsys, window):
    rgba, depth = _edge_scene()
    full = tmp_path / "full.exr"
    S.plain_file(full, rgba, depth)
    if window == "crop":  # a border render: the data window covers the middle of the frame
        x0, y0, x1, y1 = 24, 8, 103, 55
        sub = tmp_path / "crop.exr"
        S.plain_file(sub, rgba[y0:y1 + 1, x0:x1 + 1], depth[y0:y1 + 1, x0:x1 + 1],
                     data_window=(x0, y0, x1, y1), display_window=(0, 0, 127, 63))
        region = np.s_[y0 + 14:y1 + 1 - 14, x0 + 14:x1 + 1 - 14]
        sub_region = np.s_[14:-14, 14:-14]
    else:  # overscan: the display window is the middle of the data
        sub = tmp_path / "overscan.exr"
        S.plain_file(sub, rgba, depth, data_window=(-16, -8, 111, 55),
                     display_window=(0, 0, 95, 47))
        region = sub_region = np.s_[14:-14, 14:-14]
    args = ["--focus-distance", "2", *LENS, "--max-radius", "12"]
    assert run(capsys, "dof", full, tmp_path / "a.exr", *args)[0] == 0
    assert run(capsys, "dof", sub, tmp_path / "b.exr", *args)[0] == 0
    a = load_frame(tmp_path / "a.exr", need_depth=False).rgba
    b = load_frame(tmp_path / "b.exr", need_depth=False).rgba
    if window == "crop":
        # the same pixels, the same lens: the same blur (the frame is 128 px wide either way)
        np.testing.assert_allclose(b[sub_region], a[region], atol=2e-3)
    else:
        # the overscan frame's display window is 96 px wide: its blur is 96/128 of the full
        # frame's -- exactly what the same lens gives a 96 px wide full frame
        small = tmp_path / "small.exr"
        S.plain_file(small, rgba, depth, data_window=(0, 0, 127, 63),
                     display_window=(16, 8, 111, 55))
        assert run(capsys, "dof", small, tmp_path / "c.exr", *args)[0] == 0
        c = load_frame(tmp_path / "c.exr", need_depth=False).rgba
        np.testing.assert_allclose(b[region], c[region], atol=2e-3)
        assert np.abs(b[region] - a[region]).max() > 0.02  # and differs from 128 px wide


def test_focus_pixel_is_counted_from_the_bottom_left_of_the_display_window(tmp_path, capsys):
    h, w = 40, 60
    rgba = np.ones((h, w, 4), np.float32)
    depth = np.where(np.arange(h)[:, None] < h // 2, 2.0, 8.0) * np.ones((1, w))
    path = tmp_path / "in.exr"
    # a crop: data window rows 10..49 of an 80-row display window, columns 20..79 of 100
    S.plain_file(path, rgba, depth, data_window=(20, 10, 79, 49), display_window=(0, 0, 99, 79))
    # bottom-left y = 79 - row: display row 45 (data row 35, the 8 m half) is y = 34
    code, out, err = run(capsys, "dof", path, tmp_path / "o.exr", "--focus-pixel", "50,34",
                         *LENS)
    assert code == 0, err
    assert exr.read_exr(tmp_path / "o.exr").header["zdepthDofFocusDistance"] == 8.0
    code, out, err = run(capsys, "dof", path, tmp_path / "p.exr", "--focus-pixel", "50,60",
                         *LENS)
    assert code == 0, err  # display row 19 = data row 9: the 2 m half
    assert exr.read_exr(tmp_path / "p.exr").header["zdepthDofFocusDistance"] == 2.0
    code, out, err = run(capsys, "dof", path, tmp_path / "q.exr", "--focus-pixel", "5,5", *LENS)
    assert code == 1 and "outside the pixels the file holds" in err
    code, out, err = run(capsys, "dof", path, tmp_path / "q.exr", "--focus-pixel", "100,5",
                         *LENS)
    assert code == 2 and "outside the 100x80 frame" in err


# -- one background rule --------------------------------------------------------------------------

def test_z0_on_transparent_pixels_is_background_everywhere(tmp_path, capsys):
    h, w = 16, 24
    rgba = np.ones((h, w, 4), np.float32)
    depth = np.full((h, w), 4.0, np.float32)
    rgba[:, :6] = 0.0  # transparent, Z = 0 (a renderer writing "no surface" as 0)
    depth[:, :6] = 0.0
    path = tmp_path / "z0.exr"
    S.plain_file(path, rgba, depth)
    f = load_frame(path)
    assert np.isposinf(f.depth[:, :6]).all() and f.background_info.transparent == 6 * h
    code, out, err = run(capsys, "inspect", path)
    assert code == 0 and f"{6 * h} transparent with Z <= 0" in out
    for encoding in ("log", "inverse"):
        code, out, err = run(capsys, "encode", path, tmp_path / f"{encoding}.exr",
                             "--encoding", encoding)
        assert code == 0 and f"{6 * h} transparent with Z <= 0" in out
        back = load_frame(tmp_path / f"{encoding}.exr")
        assert np.isposinf(back.depth[:, :6]).all() and np.all(back.depth[:, 6:] == 4.0)
    assert run(capsys, "decode", path, tmp_path / "d.exr")[0] == 0
    assert np.isposinf(load_frame(tmp_path / "d.exr").depth[:, :6]).all()
    code, out, err = run(capsys, "dof", path, tmp_path / "dof.exr", "--focus-distance", "4",
                         *LENS)
    assert code == 0, err
    # a covered pixel with Z = 0 stays an error naming how many
    depth[3, 10] = 0.0
    depth[4, 11] = -1.0
    S.plain_file(path, rgba, depth)
    for command in ("encode", "decode", "dof"):
        extra = ["--focus-distance", "4", *LENS] if command == "dof" else []
        code, out, err = run(capsys, command, path, tmp_path / "x.exr", *extra)
        assert code == 1 and "2 covered pixel(s)" in err, err
        assert not os.path.exists(tmp_path / "x.exr")
    code, out, err = run(capsys, "inspect", path)
    assert code == 0 and "warning: 2 covered pixel(s)" in out


def test_eevee_sky_without_our_header(tmp_path, capsys):
    h, w = 32, 48
    rng = np.random.default_rng(1)
    rgba = np.ones((h, w, 4), np.float32)
    depth = (3.0 + rng.random((h, w))).astype(np.float32)
    depth[:10, :] = np.float32(1000.55)  # the sky along the top: EEVEE's clip end
    depth[:10, :5] = np.float32(1000.31)
    path = tmp_path / "eevee.exr"
    S.plain_file(path, rgba, depth)
    f = load_frame(path)
    assert f.background_info.sky == 10 * w and np.isposinf(f.depth[:10]).all()
    code, out, err = run(capsys, "inspect", path)
    assert code == 0 and f"{10 * w} at 1000.55, EEVEE's sky at the clip end" in out
    assert "use --background" not in out
    code, out, err = run(capsys, "encode", path, tmp_path / "e.exr")
    assert code == 0 and "EEVEE's sky" in out
    assert np.isposinf(load_frame(tmp_path / "e.exr").depth[:10]).all()
    # a patch at the same depth that the sky does not reach is kept (not connected)
    depth[20:26, 20:30] = np.float32(1000.55)
    S.plain_file(path, rgba, depth)
    f = load_frame(path)
    assert f.background_info.sky == 10 * w and np.isfinite(f.depth[20:26, 20:30]).all()
    # 'none' keeps them, a depth marks what is at or beyond it
    assert np.isfinite(load_frame(path, background="none").depth).all()
    assert np.isposinf(load_frame(path, background=500).depth[:10]).all()
    # a flat wall at 8 m is no sky
    depth[:10, :] = 8.0
    S.plain_file(path, rgba, depth)
    assert load_frame(path).background_info.sky == 0
    # Cycles' 1e10 and +inf are background under every rule but 'none' for 1e10
    depth[0, :3] = [1e10, np.inf, np.nan]
    S.plain_file(path, rgba, depth)
    rep = load_frame(path).background_info
    assert rep.far == 1 and rep.nonfinite == 2


def test_background_option_is_checked(tmp_path, capsys):
    path = tmp_path / "p.exr"
    SOURCES["plain"](path)
    for command in ("inspect", "encode", "decode", "dof"):
        out = [] if command == "inspect" else [tmp_path / "o.exr"]
        code, _, err = run(capsys, command, path, *out, "--background", "sky")
        assert code == 2 and "--background must be auto, none or a depth" in err


def test_single_file_name_digits_make_no_frame_number(tmp_path, capsys):
    rgba, depth = np.ones((8, 8, 4), np.float32), np.full((8, 8), 3.0, np.float32)
    path = tmp_path / "v1.7.test.exr"
    S.plain_file(path, rgba, depth)
    code, out, err = run(capsys, "dof", path, tmp_path / "o.exr", "--focus-distance", "3",
                         *LENS)
    assert code == 0 and "frame 7" not in out + err


def test_reader_errors_are_zdepth_errors(tmp_path):
    with pytest.raises(UsageError, match="no view 'x'"):
        exr.read_exr(_stereo(tmp_path), view="x")
    with pytest.raises(ZDepthError, match="holds deep samples"):
        S.deep_file(tmp_path / "d.exr")
        load_frame(tmp_path / "d.exr")


def _stereo(tmp_path):
    path = tmp_path / "s.exr"
    S.stereo_multipart(path)
    return path


def test_deep_stereo_is_refocused_per_view(tmp_path, capsys):
    from blender_zdepth.core import refocus

    path = tmp_path / "deep_stereo.exr"
    S.deep_stereo(path)
    assert np.all(refocus.load_input(str(path)).depth == 2.0)  # the default view: left
    assert np.all(refocus.load_input(str(path), view="right").depth == 4.0)
    code, out, err = run(capsys, "dof", path, tmp_path / "o.exr", "--view", "right",
                         "--focus-distance", "4", *LENS)
    assert code == 0, err
    code, out, err = run(capsys, "dof", path, tmp_path / "p.exr", "--view", "centre",
                         "--focus-distance", "4", *LENS)
    assert code == 2 and "its views: left, right" in err


def test_part_name_suffixes_that_are_no_views(tmp_path):
    """Parts enc_log, enc_linear, dec_log, dec_linear (a compositor's File Output) are no
    views: every channel is read."""
    import OpenEXR

    parts = []
    for name in ("enc_log", "dec_log", "enc_linear", "dec_linear"):
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        parts.append(OpenEXR.Part(header, {f"{name}.V": np.ones((4, 6), np.float32)}, name))
    OpenEXR.File(parts).write(str(tmp_path / "f.exr"))
    img = exr.read_exr(tmp_path / "f.exr")
    assert img.views == [] and len(img.channels) == 4


def test_a_part_without_a_view_is_shared_by_every_view(tmp_path):
    """A multi-part stereo file's part without a view (a disparity map) is in every view; in a
    single-part multi-view file a channel without a view name is the default view's only."""
    import OpenEXR

    path = tmp_path / "stereo.exr"
    S.stereo_multipart(path)
    parts = [p for p in OpenEXR.File(str(path)).parts]
    rebuilt = [OpenEXR.Part(p.header, {n: c.pixels for n, c in p.channels.items()}, p.name())
               for p in parts]
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage,
              "dataWindow": S.win(6, 10, 119, 59), "displayWindow": S.win(*S.STEREO_DISPLAY)}
    rebuilt.append(OpenEXR.Part(header, {"disparity.x": np.ones((50, 114), np.float32)},
                                "disparity"))
    OpenEXR.File(rebuilt).write(str(tmp_path / "with_disparity.exr"))
    for view in ("left", "right"):
        img = exr.read_exr(tmp_path / "with_disparity.exr", view=view)
        assert "disparity.x" in img.channels and img.windows["disparity.x"] == ((6, 10),
                                                                                (119, 59))
    S.multiview_singlepart(tmp_path / "mv.exr")
    right = exr.read_exr(tmp_path / "mv.exr", view="right")
    np.testing.assert_allclose(right.channels["B"], 0.75)  # right.B, not the default view's B


# -- attributes the OpenEXR Python bindings cannot read (issue 22) -------------------------------

def test_attributes_the_bindings_refuse_are_skipped_and_the_pixels_read(tmp_path, capsys):
    """Was: a valid file with a ``deepImageState`` or ``idmanifest`` attribute (the OpenEXR
    project's own 11.deep.exr has both; exrheader reads it) was called "damaged or truncated
    OpenEXR file (unsupported attribute type: deepImageState)"."""
    import OpenEXR

    rgba = np.random.default_rng(3).random((12, 16, 4)).astype(np.float32)
    depth = np.full((12, 16), 4.0, np.float32)
    S.plain_file(tmp_path / "plain.exr", rgba, depth, header={"zdepthCameraDofEnabled": 1})
    flat = tmp_path / "flat.exr"
    S.splice_attribute(tmp_path / "plain.exr", flat, "deepImageState", "deepImageState", b"\x01")
    with pytest.raises(RuntimeError, match="unsupported attribute type"):
        OpenEXR.File(str(flat), header_only=True)  # the bindings themselves refuse it
    exr.check_file(flat)  # our scan skips it by its declared size
    got, want = exr.read_exr(flat), exr.read_exr(tmp_path / "plain.exr")
    for name, pixels in want.channels.items():
        np.testing.assert_array_equal(got.channels[name], pixels)
    assert "deepImageState" not in got.header and got.header["zdepthCameraDofEnabled"] == 1
    assert exr.unreadable_attributes(flat) == [(0, "deepImageState", "deepImageState")]
    assert exr.unreadable_attributes(tmp_path / "plain.exr") == []
    # deep, with both types (the idmanifest's bytes are not even a valid manifest: not read)
    S.deep_file(tmp_path / "deep0.exr")
    S.splice_attribute(tmp_path / "deep0.exr", tmp_path / "deep1.exr", "deepImageState",
                       "deepImageState", b"\x02")
    S.splice_attribute(tmp_path / "deep1.exr", tmp_path / "deep.exr", "idManifest", "idmanifest",
                       b"\0" * 8)
    a, b = exr.read_deep(tmp_path / "deep.exr"), exr.read_deep(tmp_path / "deep0.exr")
    np.testing.assert_array_equal(a.counts, b.counts)
    # multi-part: an attribute in the third part
    S.stereo_multipart(tmp_path / "s0.exr")
    S.splice_attribute(tmp_path / "s0.exr", tmp_path / "s.exr", "deepImageState",
                       "deepImageState", b"\x01", part=2)
    assert exr.unreadable_attributes(tmp_path / "s.exr") == [(2, "deepImageState",
                                                              "deepImageState")]
    assert load_frame(str(tmp_path / "s.exr")).depth.shape == \
        load_frame(str(tmp_path / "s0.exr")).depth.shape
    # inspect says which attributes were left out, and that the render had the camera's DOF
    code, out, err = run(capsys, "inspect", flat)
    assert code == 0, err
    assert "cannot read, left out: deepImageState (deepImageState)" in out
    assert "zdepthCameraDofEnabled=1" in out and "warning:" in out
    code, out, err = run(capsys, "inspect", tmp_path / "deep.exr")
    assert code == 0 and "idManifest (idmanifest)" in out, err
    code, out, err = run(capsys, "dof", flat, tmp_path / "out.exr", "--focus-distance", "4",
                         *LENS)
    assert code == 0, err
    assert err.count("zdepthCameraDofEnabled=1") == 1 and "warning:" in err
    assert "WARNING" in out
    assert "camera's depth of field" in exr.read_exr(tmp_path / "out.exr").header[
        "zdepthDofWarning"]


def test_a_file_the_bindings_still_refuse_is_called_valid(tmp_path, monkeypatch):
    """Should the bindings refuse a file even with those attributes retyped, the error says the
    file is valid and names the attribute, instead of "damaged"."""
    from blender_zdepth.core.exr import binding

    rgba = np.ones((4, 4, 4), np.float32)
    S.plain_file(tmp_path / "p.exr", rgba, np.ones((4, 4), np.float32))
    S.splice_attribute(tmp_path / "p.exr", tmp_path / "x.exr", "state", "deepImageState", b"\x01")
    monkeypatch.setattr(binding, "REFUSED_TYPES", ())
    monkeypatch.setattr(binding, "retyped_header", lambda path, types: (b"", []))
    with pytest.raises(ZDepthError, match=r"valid OpenEXR file, but the OpenEXR Python bindings "
                                          r"cannot read its attribute 'state' \(type "
                                          r"deepImageState\)") as caught:
        exr.read_exr(tmp_path / "x.exr")
    assert "damaged" not in str(caught.value)
