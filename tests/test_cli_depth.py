"""``encode``, ``decode`` and ``inspect`` on the command line: results, and bad input."""

import json
import os

import numpy as np
import OpenEXR
import pytest

from blender_zdepth.core import exr
from blender_zdepth.core.camera import CameraInfo
from blender_zdepth.core.png import read_png
from blender_zdepth.core.frame import load_frame


def _render_like(path, depth, beauty=True):
    """A file laid out like Blender 5.0's multilayer render (two parts)."""
    h, w = depth.shape
    hdr = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage,
           "Camera": "Camera", "Frame": "001"}
    parts = []
    if beauty:
        rgba = {f"ViewLayer.Combined.{c}": np.full((h, w), v, np.float32)
                for c, v in zip("RGBA", (0.25, 0.5, 0.75, 1.0))}
        parts.append(OpenEXR.Part(dict(hdr), rgba, "ViewLayer.Combined"))
    parts.append(OpenEXR.Part(dict(hdr), {"ViewLayer.Depth.Z": depth.astype(np.float32)},
                              "ViewLayer.Depth"))
    OpenEXR.File(parts).write(str(path))
    return str(path)


@pytest.fixture
def render(tmp_path):
    d = np.geomspace(0.5, 80.0, 24 * 32).reshape(24, 32)
    d[:3] = 1e10  # sky
    return _render_like(tmp_path / "render.exr", d), d


def test_encode_decode_round_trip_keeps_depth_beauty_and_range(tmp_path, run_cli, render):
    src, d = render
    enc_path, dec_path, png_path = (str(tmp_path / n) for n in ("e.exr", "d.exr", "p.png"))
    r = run_cli("encode", src, enc_path, "--near", "0.5", "--far", "80", "--preview", png_path)
    assert r.returncode == 0, r.stderr
    assert "log" in r.stdout and "0.5-80" in r.stdout
    f = load_frame(enc_path)
    assert f.encoding.name == "log" and (f.encoding.near, f.encoding.far) == (0.5, 80.0)
    assert f.header["Camera"] == "Camera"  # Blender's metadata carried over
    assert np.allclose(f.rgba[0, 0], [0.25, 0.5, 0.75, 1.0])
    r = run_cli("decode", enc_path, dec_path)
    assert r.returncode == 0, r.stderr
    g = exr.read_exr(dec_path)
    assert g.channels["Z"].dtype == np.float32 and "R" in g.channels
    z = g.channels["Z"]
    assert np.all(np.isposinf(z[:3]))
    assert np.max(np.abs(z[3:] / d[3:] - 1)) < 1e-6
    assert g.header["zdepthEncoding"] == "linear"
    px, bits = read_png(png_path)
    expected = np.rint(65535 * (1 - np.log(d[3:] / 0.5) / np.log(160.0)))
    assert bits == 16 and np.abs(px[3:, :, 0] - expected).max() <= 1
    assert px[-1, -1, 0] == 0 and np.all(px[:3] == 0)  # far and sky are black


@pytest.mark.parametrize("encoding", ["linear", "normalized", "inverse"])
def test_encode_other_encodings_half_and_codec(tmp_path, run_cli, render, encoding):
    src, d = render
    out = str(tmp_path / "o.exr")
    r = run_cli("encode", src, out, "--encoding", encoding, "--half", "--codec", "piz",
                "--depth-channel", "depth.Z", "--no-beauty", "--near", "0.5", "--far", "80")
    assert r.returncode == 0, r.stderr
    img = exr.read_exr(out)
    assert set(img.channels) == {"depth.Z"} and img.half == {"depth.Z"}
    f = load_frame(out)
    assert f.encoding.name == encoding
    rel = np.abs(f.depth[3:] / d[3:] - 1)
    assert rel.max() < 2e-3 * (80 / 0.5 if encoding == "normalized" else 1)


def test_encode_range_from_data_and_camera(tmp_path, run_cli, render):
    src, d = render
    r = run_cli("encode", src, str(tmp_path / "a.exr"))
    assert r.returncode == 0 and "from data" in r.stdout
    enc = load_frame(tmp_path / "a.exr").encoding
    assert d[3, 0] <= enc.near < 1.01 * d[3, 0] and 79 < enc.far <= 80.0
    cam = CameraInfo(clip_start=0.1, clip_end=200.0)
    exr.write_exr(tmp_path / "cam.exr", {"Z": d}, header=cam.to_header())
    r = run_cli("encode", tmp_path / "cam.exr", tmp_path / "b.exr")
    assert r.returncode == 0 and "camera clip range" in r.stdout, r.stderr
    f = load_frame(tmp_path / "b.exr")
    assert (f.encoding.near, f.encoding.far) == (np.float32(0.1), 200.0)
    assert f.camera.clip_end == 200.0


def test_inspect_text_and_json(tmp_path, run_cli, render):
    src, _ = render
    out = str(tmp_path / "e.exr")
    assert run_cli("encode", src, out, "--near", "1", "--far", "500", "--half").returncode == 0
    r = run_cli("inspect", out, "--focus", "10", "--all")
    assert r.returncode == 0, r.stderr
    assert "encoding: log, range 1-500 m" in r.stdout
    assert "16-bit half float" in r.stdout and "depth step at focus" in r.stdout
    assert "8-bit integer" in r.stdout and "banding will show" in r.stdout
    r = run_cli("inspect", out, "--json")
    info = json.loads(r.stdout)
    assert info["encoding"]["name"] == "log" and info["precision"]["bits"] == "16-half"
    assert info["channels"] == {"Z": "half", "R": "half", "G": "half", "B": "half", "A": "half"}
    r = run_cli("inspect", src)
    assert r.returncode == 0 and "plain render depth" in r.stdout


def _bad_inputs(tmp_path, render):
    src, d = render
    (tmp_path / "text.exr").write_text("not an image")
    with open(src, "rb") as fh:
        data = fh.read()
    (tmp_path / "cut.exr").write_bytes(data[: len(data) // 2])
    exr.write_exr(tmp_path / "nodepth.exr", {c: np.ones((4, 4)) for c in "RGB"})
    exr.write_exr(tmp_path / "nan.exr", {"Z": np.full((4, 4), np.nan)})
    exr.write_exr(tmp_path / "neg.exr", {"Z": np.array([[1.0, -3.0], [2.0, 4.0]])})
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    unwritable = "/proc" if os.access(ro, os.W_OK) else str(ro)
    return {
        "missing": (["encode", tmp_path / "nope.exr"], 1, "no such file"),
        "not exr": (["encode", tmp_path / "text.exr"], 1, "not an OpenEXR file"),
        "truncated": (["encode", tmp_path / "cut.exr"], 1, "damaged or truncated"),
        "no depth": (["encode", tmp_path / "nodepth.exr"], 1, "no depth channel"),
        "nan": (["encode", tmp_path / "nan.exr"], 1, "holds no surface"),
        "negative": (["encode", tmp_path / "neg.exr"], 1, "negative depth"),
        "near>=far": (["encode", src, "--near", "5", "--far", "5"], 2, "less than far"),
        "near only": (["encode", src, "--near", "5"], 2, "both --near and --far"),
        "lossy": (["encode", src, "--codec", "dwaa"], 2, "lossy"),
        "unwritable": (["encode", src, "--out-folder", unwritable], 1, "cannot write"),
        "decode missing": (["decode", tmp_path / "nope.exr"], 1, "no such file"),
        "inspect not exr": (["inspect", tmp_path / "text.exr"], 1, "not an OpenEXR file"),
    }


def test_bad_input_one_line_exit_code_and_no_file_left(tmp_path, run_cli, render):
    cases = _bad_inputs(tmp_path, render)
    before = set(os.listdir(tmp_path))
    for label, (argv, code, words) in cases.items():
        argv = [str(a) for a in argv]
        folder = str(tmp_path)
        if "--out-folder" in argv:
            i = argv.index("--out-folder")
            folder = argv[i + 1]
            del argv[i:i + 2]
        out = os.path.join(folder, f"out_{label.replace(' ', '_').replace('>=', 'ge')}.exr")
        if argv[0] != "inspect":
            argv.insert(2, out)
        r = run_cli(*argv)
        assert r.returncode == code, (label, r.returncode, r.stderr)
        assert r.stderr.count("\n") == 1 and words in r.stderr, (label, r.stderr)
        assert r.stderr.startswith("blender_zdepth: error:"), (label, r.stderr)
        assert not os.path.exists(out), label
    assert set(os.listdir(tmp_path)) == before  # nothing left behind, no temporary file


def test_existing_output_needs_overwrite(tmp_path, run_cli, render):
    src, _ = render
    out = tmp_path / "o.exr"
    out.write_bytes(b"keep me")
    r = run_cli("encode", src, out)
    assert r.returncode == 1 and "already exists" in r.stderr
    assert out.read_bytes() == b"keep me"
    r = run_cli("encode", src, out, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert load_frame(out).encoding.name == "log"
