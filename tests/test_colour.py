"""Colour management of the pictures people look at (core.colour, core.display, the PNGs of
``dof --png`` and Apply) against Blender's own PNG of the same frame.

The core tests use PyOpenColorIO and Blender's config of the installed bpy module (found on
disk, bpy is not imported); the integration tests render tiny Cycles frames (emission
materials) with the real bpy, let Blender write its PNG of the Render Result, export the EXR
with our export, refocus it at f/1000 (no blur) with ``dof --png`` and compare.
"""

import os

import numpy as np
import pytest

from blender_zdepth.core import colour, display
from blender_zdepth.core.errors import UsageError
from blender_zdepth.core.png import encode_png, read_png

needs_ocio = pytest.mark.skipif(colour.ocio_module() is None or colour.blender_config() is None,
                                reason="needs PyOpenColorIO and Blender's config (bpy module)")


def test_settings_round_trip_through_the_header():
    s = colour.ColourSettings(display="sRGB", view="Filmic", look="None", exposure=1.5,
                              gamma=1.2, config="/x/config.ocio", working_space="Linear Rec.709")
    header = s.to_header()
    assert header["zdepthViewTransform"] == "Filmic" and header["zdepthExposure"] == 1.5
    assert colour.ColourSettings.from_header(header) == s
    assert colour.ColourSettings.from_header({}) == colour.ColourSettings()


def test_command_line_overrides_the_header_and_defaults_fill_the_rest(monkeypatch):
    monkeypatch.delenv("OCIO", raising=False)
    header = colour.ColourSettings(view="Filmic", exposure=2.0, look="None").to_header()
    s = colour.resolve(colour.ColourSettings(exposure=-1.0), header)
    assert (s.view, s.exposure, s.gamma, s.look) == ("Filmic", -1.0, 1.0, "None")
    # the header's config is used only where it exists; $OCIO next
    monkeypatch.setenv("OCIO", __file__)
    s = colour.resolve(None, {"zdepthOcioConfig": "/nowhere/config.ocio"})
    assert s.config == __file__
    assert colour.resolve(None, {"zdepthOcioConfig": os.__file__}).config == os.__file__


def test_plain_srgb_needs_no_opencolorio(monkeypatch):
    monkeypatch.setattr(colour, "ocio_module", lambda: None)
    s = colour.complete(colour.resolve(colour.ColourSettings(view="Standard")))
    rgb = np.array([[[0.0, 0.18, 1.0], [0.5, 2.0, 0.002]]], np.float32)
    np.testing.assert_allclose(display.to_display(rgb, s), display.linear_to_srgb(rgb),
                               atol=1e-6)
    # a view transform without OpenColorIO: one clear line
    with pytest.raises(UsageError, match="PyOpenColorIO is needed for the .AgX. view.*"
                                         "--view-transform Standard"):
        colour.complete(colour.resolve(colour.ColourSettings(config=__file__)))


def test_dof_png_without_opencolorio_is_one_line_and_exit_2(tmp_path):
    """Neither PyOpenColorIO nor bpy importable (hidden by an import hook, nothing mocked): a
    view transform stops the run with one line; plain sRGB still works."""
    import subprocess
    import sys

    from blender_zdepth.core import exr as core_exr

    from conftest import ROOT

    rgba = np.full((8, 10, 4), 0.5, np.float32)
    rgba[..., 3] = 1.0
    src = tmp_path / "in.exr"
    core_exr.write_exr(str(src), {"RGBA": rgba, "Z": np.full((8, 10), 3.0, np.float32)})
    runner = tmp_path / "run.py"
    runner.write_text(
        "import importlib.abc, runpy, sys\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('bpy', 'PyOpenColorIO'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "sys.argv = ['blender_zdepth'] + sys.argv[1:]\n"
        "runpy.run_module('blender_zdepth', run_name='__main__')\n")
    env = {k: v for k, v in os.environ.items() if k != "OCIO"}
    env["PYTHONPATH"] = ROOT

    def dof(*extra):
        return subprocess.run([sys.executable, str(runner), "dof", str(src),
                               str(tmp_path / "out.exr"), "--fstop", "2", "--focal-length", "50",
                               "--focus-distance", "3", "--png", "--overwrite", *extra],
                              env=env, capture_output=True, text=True, timeout=300)

    done = dof()
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "PyOpenColorIO is needed" in errors[0], done.stderr
    assert not os.path.exists(tmp_path / "out.png")
    done = dof("--view-transform", "Standard")
    assert done.returncode == 0, done.stderr
    shown = read_png(str(tmp_path / "out.png"))[0]
    assert shown.shape == (8, 10, 3)
    np.testing.assert_array_equal(shown, np.rint(display.linear_to_srgb(0.5) * 255))


def test_gamma_must_be_positive():
    with pytest.raises(UsageError, match="--gamma must be a positive"):
        colour.check_settings(colour.ColourSettings(gamma=0.0))


@needs_ocio
def test_standard_view_of_blenders_config_is_the_srgb_transfer():
    s = colour.complete(colour.resolve(colour.ColourSettings(view="Standard")))
    full = colour.complete(colour.resolve(colour.ColourSettings(view="AgX")))
    rgb = np.random.default_rng(1).random((8, 9, 3), dtype=np.float32) * 2
    import dataclasses

    # the same view through OpenColorIO's processor (apply() skips it for plain sRGB)
    ocio_standard = colour._processor(dataclasses.replace(full, view="Standard"))
    out = np.ascontiguousarray(rgb.copy())
    ocio_standard.applyRGB(out)
    np.testing.assert_allclose(colour.apply(rgb, s), np.clip(out, 0, 1), atol=2e-5)


@needs_ocio
def test_agx_is_not_plain_srgb_and_names_are_checked():
    agx = colour.complete(colour.resolve())
    assert (agx.display, agx.view) == ("sRGB", "AgX")  # Blender's defaults
    rgb = np.zeros((2, 2, 3), np.float32)
    rgb[..., 0] = 1.0  # saturated red: AgX desaturates and compresses it (mid gray it keeps)
    shown = display.to_display(rgb, agx)
    assert np.abs(shown - display.linear_to_srgb(rgb)).max() > 0.05
    with pytest.raises(UsageError, match="no view transform for the sRGB display 'Nope'"):
        colour.complete(colour.resolve(colour.ColourSettings(view="Nope")))
    with pytest.raises(UsageError, match="no look 'Nope'"):
        colour.complete(colour.resolve(colour.ColourSettings(look="Nope")))


@needs_ocio
def test_rgba_keeps_straight_alpha_and_transforms_the_unpremultiplied_colour():
    s = colour.complete(colour.resolve(colour.ColourSettings(view="Filmic")))
    rgba = np.zeros((1, 3, 4), np.float32)
    rgba[0, 0] = (0.4, 0.2, 0.1, 1.0)
    rgba[0, 1] = (0.2, 0.1, 0.05, 0.5)  # the same colour, half covered (premultiplied)
    out = display.to_display(rgba, s, keep_alpha=True)
    assert out.shape == (1, 3, 4)
    np.testing.assert_allclose(out[0, :, 3], (1.0, 0.5, 0.0))
    np.testing.assert_allclose(out[0, 1, :3], out[0, 0, :3], atol=1e-6)
    # an opaque frame stays RGB
    assert display.to_display(rgba[:, :1], s, keep_alpha=True).shape == (1, 1, 3)


def test_read_png_undoes_row_filters():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (5, 7, 4)).astype(np.uint8)
    data = encode_png(img / 255.0)
    import struct
    import zlib

    # re-encode with every filter type, as other writers (Blender) do
    raw = img.reshape(5, -1).astype(np.int32)
    bpp, rows = 4, []
    for y in range(5):
        kind = y % 5
        prev = raw[y - 1] if y else np.zeros_like(raw[0])
        cur = raw[y]
        left = np.concatenate([np.zeros(bpp, np.int32), cur[:-bpp]])
        corner = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        if kind == 0:
            pred = 0
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = prev
        elif kind == 3:
            pred = (left + prev) >> 1
        else:
            p = left + prev - corner
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - corner)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, corner))
        rows.append(bytes([kind]) + ((cur - pred) & 0xFF).astype(np.uint8).tobytes())
    ihdr_end = 8 + 12 + 13
    body = zlib.compress(b"".join(rows))
    idat = struct.pack(">I", len(body)) + b"IDAT" + body + struct.pack(
        ">I", zlib.crc32(b"IDAT" + body) & 0xFFFFFFFF)
    filtered = data[:ihdr_end] + idat + data[-12:]
    path = os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "filtered.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(filtered)
    got, bits = read_png(path)
    assert bits == 8
    np.testing.assert_array_equal(got, img)


# -- against Blender's own PNG ---------------------------------------------------------------

def _render(bpy, folder, *, view, look="None", exposure=0.0, gamma=1.0, transparent=False):
    """A tiny Cycles frame of emission materials: our export (EXR) and Blender's PNG of the
    same Render Result."""
    from blender_zdepth.blender import scenes
    from blender_zdepth.blender.render.export import render_with_depth

    scene = scenes.empty_scene((48, 36), "CYCLES", 4)
    scenes.add_object(scene, "uv_sphere", "Ball",
                      scenes.emission_material("Ball", (1, .5, .2), 3.0),
                      radius=1.0, location=(-0.5, 4, 0), segments=16, ring_count=8)
    scenes.add_object(scene, "cube", "Box", scenes.checker_material(
        "Box", (.02, .4, .9), (.9, .9, .1), strength=1.5), size=4.0, location=(1.5, 12, 0.3))
    if not transparent:
        scenes.set_world_color(scene, (0.05, 0.1, 0.3), 0.7)
    scenes.add_camera(scene, (0, 0, 0), (0, 5, 0), lens=50.0, clip=(0.1, 100.0))
    scene.render.film_transparent = transparent
    vs = scene.view_settings
    vs.view_transform, vs.look, vs.exposure, vs.gamma = view, look, exposure, gamma
    exr_path = render_with_depth(scene, str(folder), encoding="log", range_source="CAMERA",
                                 bit_depth="32", codec="ZIP", name_pattern="frame_####",
                                 write_preview=False, beauty="SAME_FILE")[0]
    im = scene.render.image_settings
    im.file_format, im.color_depth = "PNG", "8"
    im.color_mode = "RGBA" if transparent else "RGB"
    blender_png = str(folder / "blender.png")
    bpy.data.images["Render Result"].save_render(blender_png, scene=scene)
    return exr_path, blender_png


def _refocused_png(run_cli, exr_path, folder, *extra):
    out = folder / "dof.exr"
    done = run_cli("dof", exr_path, out, "--fstop", "1000", "--png", *extra)
    assert done.returncode == 0, done.stderr
    return read_png(str(folder / "dof.png"))[0]


@pytest.mark.parametrize("view,look,exposure,gamma", [
    ("AgX", "None", 0.0, 1.0),
    ("Filmic", "None", 0.0, 1.0),
    ("AgX", "AgX - Punchy", 1.0, 1.0),
    ("AgX", "None", 0.5, 1.6),
])
def test_dof_png_matches_blenders_png(bpy, run_cli, tmp_path, view, look, exposure, gamma):
    exr_path, blender_png = _render(bpy, tmp_path, view=view, look=look, exposure=exposure,
                                    gamma=gamma)
    ours = _refocused_png(run_cli, exr_path, tmp_path).astype(int)
    theirs = read_png(blender_png)[0].astype(int)
    assert ours.shape == theirs.shape == (36, 48, 3)
    diff = np.abs(ours - theirs).mean()
    print(f"{view} {look} {exposure:+g} EV gamma {gamma:g}: {diff:.3f}/255 off Blender's PNG")
    assert diff <= 1.5
    # plain sRGB only when asked: then far from Blender's (unless the view is Standard)
    plain = _refocused_png(run_cli, exr_path, tmp_path, "--view-transform", "Standard",
                           "--look", "None", "--exposure", "0", "--gamma", "1",
                           "--overwrite").astype(int)
    assert np.abs(plain - theirs).mean() > 5


def test_film_transparent_png_alpha_matches_the_exr(bpy, run_cli, tmp_path):
    from blender_zdepth.core import exr

    exr_path, blender_png = _render(bpy, tmp_path, view="AgX", transparent=True)
    ours = _refocused_png(run_cli, exr_path, tmp_path)
    assert ours.shape == (36, 48, 4)
    alpha = exr.read_exr(str(tmp_path / "dof.exr")).channels["A"]
    assert alpha.min() == 0.0 and alpha.max() == 1.0  # the frame has alpha
    np.testing.assert_array_equal(ours[..., 3], np.rint(np.clip(alpha, 0, 1) * 255))
    theirs = read_png(blender_png)[0].astype(int)
    np.testing.assert_array_equal(ours[..., 3], theirs[..., 3])
    seen = theirs[..., 3] > 0  # colour where there is coverage: as Blender writes it
    assert np.abs(ours[..., :3].astype(int) - theirs[..., :3])[seen].mean() <= 1.5


def test_apply_png_follows_the_scenes_colour_management(bpy, addon, tmp_path):
    exr_path, blender_png = _render(bpy, tmp_path, view="Filmic", exposure=0.5)
    scene = bpy.context.scene
    zd = scene.zdepth
    zd.dof_output_dir = str(tmp_path / "applied")
    zd.dof_write_png = True
    zd.dof_max_radius = 4.0
    scene.camera.data.dof.aperture_fstop = 1000.0
    assert bpy.ops.zdepth.apply_dof(source="RENDER_RESULT") == {"FINISHED"}
    pngs = [n for n in os.listdir(tmp_path / "applied") if n.endswith(".png")]
    assert len(pngs) == 1
    ours = read_png(str(tmp_path / "applied" / pngs[0]))[0].astype(int)
    theirs = read_png(blender_png)[0].astype(int)
    assert np.abs(ours - theirs).mean() <= 1.5
