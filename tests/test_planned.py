"""The panel's plans (core.refocus.planned, no bpy): a picked pixel counts in the display window, from
the bottom left, as the command line's --focus-pixel does."""

import numpy as np
import pytest

import exr_samples as S
from blender_zdepth.core import refocus
from blender_zdepth.core.refocus import planned
from blender_zdepth.core.errors import ZDepthError

VALUES = dict(focal_length_mm=50.0, fstop=2.0, sensor_width_mm=36.0)


def _cropped(tmp_path):
    """A 40x30 frame whose data window holds only x 10-29, y 5-24 (rows from the top); the
    depth tells the row and column it was written at: 1 + row + col / 100."""
    h, w = 20, 20
    rows, cols = np.mgrid[5:25, 10:30]
    depth = (1.0 + rows + cols / 100.0).astype(np.float32)
    path = tmp_path / "crop.exr"
    S.plain_file(path, np.ones((h, w, 4), np.float32), depth, data_window=(10, 5, 29, 24),
                 display_window=(0, 0, 39, 29))
    return refocus.load_input(str(path))


def test_pixel_focus_is_in_display_window_coordinates_from_the_bottom_left(tmp_path):
    frame = _cropped(tmp_path)
    # display pixel (x 20, y 10 from the bottom) = row 29 - 10 = 19 from the top, column 20
    lens, source = planned.LensPlan(VALUES, pixel=(20, 10))(frame)
    assert lens.focus_distance == pytest.approx(1.0 + 19 + 20 / 100.0)
    assert source == "pixel 20,10"
    # the same pixel through the command line's function
    assert refocus.pixel_focus(frame, 20, 10) == pytest.approx(lens.focus_distance)


def test_pixel_outside_the_frame_or_the_data_window_is_a_clear_error(tmp_path):
    frame = _cropped(tmp_path)
    with pytest.raises(ZDepthError, match="outside the 40x30 frame"):
        planned.LensPlan(VALUES, pixel=(40, 3))(frame)
    with pytest.raises(ZDepthError, match="data window is smaller"):
        planned.LensPlan(VALUES, pixel=(2, 2))(frame)
