"""Display conversion (core) and the demo's contact sheets (commands._demo_sheet), no bpy."""

import numpy as np
import pytest

from blender_zdepth.commands import _demo_sheet as demo_sheet
from blender_zdepth.core import display


def test_srgb_transfer_matches_the_standard():
    values = display.linear_to_srgb([0.0, 0.002, 0.18, 0.5, 1.0, 4.0])
    # Hand values of the sRGB curve: 12.92*x below 0.0031308, 1.055*x^(1/2.4)-0.055 above.
    expected = [0.0, 0.02584, 0.46135, 0.73536, 1.0, 1.0]
    np.testing.assert_allclose(values, expected, atol=2e-5)


def test_premultiplied_rgba_composites_over_background():
    rgba = np.zeros((1, 2, 4), np.float32)
    rgba[0, 0] = (1.0, 0.0, 0.0, 1.0)   # opaque red
    rgba[0, 1] = (0.0, 0.0, 0.0, 0.0)   # transparent
    out = display.to_display(rgba, background=(0.0, 0.0, 1.0))
    np.testing.assert_allclose(out[0, 0], (1, 0, 0), atol=1e-6)
    np.testing.assert_allclose(out[0, 1], (0, 0, 1), atol=1e-6)


def test_contact_sheet_places_tiles_and_labels():
    a = np.full((10, 20, 3), 0.25, np.float32)
    b = np.full((10, 20, 3), 0.75, np.float32)
    sheet = demo_sheet.contact_sheet([a, b], labels=["A", "B"], gap=4, label_scale=1)
    label_h = 9
    assert sheet.shape == (4 + label_h + 10 + 4, 4 + 2 * (20 + 4), 3)
    np.testing.assert_allclose(sheet[4 + label_h:4 + label_h + 10, 4:24], 0.25)
    np.testing.assert_allclose(sheet[4 + label_h:4 + label_h + 10, 28:48], 0.75)
    # The labels put white pixels in the strip above each tile, and nowhere else.
    assert sheet[4:4 + label_h, 4:24].max() == 1.0
    assert sheet[4:4 + label_h, 28:48].max() == 1.0


def test_contact_sheet_refuses_mismatched_tiles():
    with pytest.raises(ValueError, match="differ in size"):
        demo_sheet.contact_sheet([np.zeros((4, 4, 3)), np.zeros((5, 4, 3))])
