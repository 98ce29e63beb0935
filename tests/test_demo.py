"""The demo command end to end (render, export, refocus, contact sheet) on a small frame."""

import os

import numpy as np
import pytest

from blender_zdepth.core import exr, png
from blender_zdepth.core.frame import load_frame

pytestmark = [pytest.mark.blender, pytest.mark.slow]


def _rgba(path):
    image = exr.read_exr(path)
    return np.dstack([image.channels[c] for c in "RGBA"])


def test_demo_writes_depth_refocus_and_contact_sheet(bpy_module, run_cli, tmp_path):
    out = tmp_path / "demo"
    result = run_cli("demo", "--out", out, "--resolution", "192x108", "--samples", "4")
    assert result.returncode == 0, result.stderr
    depth_exr = out / "depth" / "demo_0001.exr"
    assert depth_exr.exists() and (out / "depth" / "demo_0001_preview.png").exists()
    frame = load_frame(str(depth_exr))
    assert frame.encoding.name == "log" and frame.rgba.shape == (108, 192, 4)
    # The sky is background; the ground and pillars are real depths inside the camera range.
    assert np.isinf(frame.depth[0]).all()
    assert 0.5 < np.nanmin(frame.depth) < 5.0
    near, far = (_rgba(out / "refocus" / f"refocus.{f:04d}.exr") for f in (1, 3))
    # Refocusing changes the picture, and differently for a near and a far focus.
    assert np.abs(near - frame.rgba).mean() > 1e-3
    assert np.abs(near - far).mean() > 1e-3
    sheet, bits = png.read_png(str(out / "contact_sheet.png"))
    assert bits == 8
    assert sheet.shape[0] > 2 * 108 and sheet.shape[1] > 2 * 192
    assert "contact sheet" in result.stdout
    # depth layers: the deep file beside the flat one flattens to its beauty, holds surfaces
    # behind the near pillars, and the refocus used it; the flat-only comparison is written
    from blender_zdepth.core import deep

    image = exr.read_deep(str(out / "depth" / "demo_0001_deep.exr"))
    assert image.header[deep.LAYERS_KEY] == 3
    flat_rgba, _ = deep.flatten(image)
    np.testing.assert_allclose(flat_rgba, frame.rgba, atol=1e-6)
    assert (image.counts >= 2).sum() > 100
    assert "3 depth layers (2 extra of 1 samples)" in result.stdout
    assert "demo_0001_deep.exr" in result.stdout.split("refocused")[0].split("[1/3]")[1]
    pair, _ = png.read_png(str(out / "before_after.png"))
    assert pair.shape[1] > 2 * 192
    assert (out / "refocus" / "flat.0003.exr").exists()


def test_demo_rejects_a_bad_resolution(run_cli, tmp_path):
    result = run_cli("demo", "--out", tmp_path, "--resolution", "wide")
    assert result.returncode == 2
    assert "--resolution" in result.stderr
    assert not os.listdir(tmp_path)
