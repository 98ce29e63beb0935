"""Crops placed in their frame and non-square pixels, without Blender: the file rewrite that
places a crop (:func:`blender_zdepth.core.exr.place_in_frame`), ``pixelAspectRatio`` in our
headers and read from others', and the live preview of a crop sized by the full frame."""

import dataclasses

import numpy as np
import pytest

from blender_zdepth.core import dof, exr
from blender_zdepth.core.camera import CameraInfo
from blender_zdepth.core.frame import load_frame, window_index
from blender_zdepth.core.lens import Lens
from blender_zdepth.core.refocus import lens_resolver, preview


def _scene(h=40, w=64):
    y, x = np.mgrid[0:h, 0:w]
    rgba = np.zeros((h, w, 4), np.float32)
    rgba[..., 0] = (x // 4 + y // 4) % 2
    rgba[..., 1] = 0.5
    rgba[..., 3] = 1.0
    depth = np.where(x < w // 2, 2.0, 8.0).astype(np.float32)
    return rgba, depth


def test_place_in_frame_moves_every_part_and_keeps_the_pixels(tmp_path):
    rgba, depth = _scene()
    path = tmp_path / "crop.exr"
    exr.write_exr(path, {"ViewLayer.Combined.R": rgba[..., 0], "ViewLayer.Combined.G":
                         rgba[..., 1], "ViewLayer.Combined.B": rgba[..., 2],
                         "ViewLayer.Combined.A": rgba[..., 3], "ViewLayer.Depth.Z": depth},
                  header={"Note": "kept"})
    exr.place_in_frame(path, (30, 12), ((0, 0), (159, 89)), header={"pixelAspectRatio": 2.0})
    frame = load_frame(str(path))
    assert frame.data_window == ((30, 12), (93, 51))
    assert frame.display_window == ((0, 0), (159, 89))
    assert frame.display_size == (160, 90)
    np.testing.assert_array_equal(frame.rgba, rgba)
    np.testing.assert_array_equal(frame.depth, depth)
    assert frame.header["Note"] == "kept"
    assert frame.header["pixelAspectRatio"] == pytest.approx(2.0)
    # pixels of the display window from the bottom left, into the crop's array
    assert window_index(30, 89 - 12, frame.depth.shape, frame.data_window,
                        frame.display_window) == (0, 0)
    assert frame.array_index(93, 89 - 51) == (39, 63)


def test_pixel_aspect_ratio_in_headers():
    header = CameraInfo(focal_length_mm=50, pixel_aspect=2.0).to_header()
    assert header["pixelAspectRatio"] == 2.0 and header["zdepthCameraPixelAspect"] == 2.0
    # another tool's file: the standard attribute when ours is missing
    assert CameraInfo.from_header({"focus": 3.0, "pixelAspectRatio": 1.5}).pixel_aspect == 1.5
    assert CameraInfo.from_header({"zdepthCameraPixelAspect": 2.0,
                                   "pixelAspectRatio": 1.0}).pixel_aspect == 2.0
    assert CameraInfo.from_header({"pixelAspectRatio": 2.0}) is None  # no camera at all


def test_a_plain_render_gives_the_lens_its_pixel_aspect(tmp_path):
    rgba, depth = _scene()
    path = tmp_path / "plain.exr"
    exr.write_exr(path, {"R": rgba[..., 0], "G": rgba[..., 1], "B": rgba[..., 2],
                         "A": rgba[..., 3], "Z": depth}, header={"pixelAspectRatio": 2.0})
    loaded = load_frame(str(path))
    lens, _ = lens_resolver(focus_distance=2.0, fstop=2.0, focal_length_mm=50.0)(1, loaded)
    assert lens.pixel_aspect == 2.0
    lens, _ = lens_resolver(focus_distance=2.0, fstop=2.0, focal_length_mm=50.0,
                            pixel_aspect=1.0)(1, loaded)
    assert lens.pixel_aspect == 1.0  # an option wins


def test_preview_of_a_crop_sizes_the_lens_by_the_full_frame():
    rgba, depth = _scene()
    data, display = ((30, 12), (93, 51)), ((0, 0), (159, 89))
    frame = preview.shrink_frame(rgba, depth, data_window=data, display_window=display)
    assert frame.factor == 1 and frame.display_size == (160, 90) and frame.size == (64, 40)
    assert frame.array_index(30, 89 - 12) == (0, 0)
    lens = Lens(focal_length_mm=50.0, fstop=1.4, focus_distance=2.0)
    settings = dof.DofSettings(max_radius=16.0)
    got = preview.render_preview(frame, lens, settings)
    expected = dof.defocus(rgba, depth, dataclasses.replace(lens, frame_size=(160, 90)),
                           preview.preview_settings(settings, 1))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    as_whole = dof.defocus(rgba, depth, lens, preview.preview_settings(settings, 1))
    assert np.abs(as_whole - got).max() > 0.05  # the crop's own width would blur otherwise
