"""Hostile and damaged files: declared sizes are refused before anything is allocated, and no
command prints a traceback on any damaged file (a fuzz run over every kind of file)."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import OpenEXR
import pytest

from blender_zdepth import cli
from blender_zdepth.core import exr
from blender_zdepth.core.exr import scan as exrscan
from blender_zdepth.core.errors import ZDepthError

import exr_samples as S

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _flat(path, codec):
    rgba = np.random.default_rng(0).random((64, 64, 4)).astype(np.float32)
    chans = {c: np.ascontiguousarray(rgba[..., i]) for i, c in enumerate("RGBA")}
    chans["Z"] = np.full((64, 64), 5.0, np.float32)
    OpenEXR.File({"compression": codec, "type": OpenEXR.scanlineimage}, chans).write(str(path))


@pytest.mark.parametrize("codec", [OpenEXR.NO_COMPRESSION, OpenEXR.ZIP_COMPRESSION,
                                   OpenEXR.RLE_COMPRESSION, OpenEXR.PIZ_COMPRESSION])
@pytest.mark.parametrize("xmax", [4_000_000, 100_000_000])
def test_a_declared_data_window_the_file_cannot_hold_is_refused_at_once(tmp_path, capsys, codec,
                                                                        xmax):
    src, bad = tmp_path / "src.exr", tmp_path / "bad.exr"
    _flat(src, codec)
    S.patch_data_window(src, bad, xmax)
    for command in ("inspect", "encode", "decode", "dof"):
        out = [] if command == "inspect" else [tmp_path / "o.exr"]
        extra = ["--focus-distance", "3", "--fstop", "2", "--focal-length", "50"] \
            if command == "dof" else []
        t0 = time.perf_counter()
        code = cli.main([command, str(bad), *map(str, out), *extra])
        took = time.perf_counter() - t0
        err = capsys.readouterr().err
        assert code == 1 and "refused before reading its pixels" in err, err
        assert took < 1.0 and not os.path.exists(tmp_path / "o.exr")


def test_deep_sample_tables_are_checked(tmp_path):
    src, bad = tmp_path / "deep.exr", tmp_path / "bad.exr"
    S.deep_file(src)
    S.patch_data_window(src, bad, 3_000_000)
    with pytest.raises(ZDepthError, match="refused before reading its pixels"):
        exr.read_exr(bad)
    assert exrscan.check_file(src) == 1  # the intact file passes


def test_limits_hold_for_valid_files(tmp_path):
    """Every kind of valid file passes the check (no false alarm)."""
    for name, make in (("stereo", S.stereo_multipart), ("mv", S.multiview_singlepart),
                       ("deep", S.deep_file), ("tiled", S.tiled_file),
                       ("deeptiled", lambda p: S.deep_file(p, tiled=True))):
        make(tmp_path / f"{name}.exr")
        assert exrscan.check_file(tmp_path / f"{name}.exr") >= 1
    # a constant frame compresses very well and is no hostile file
    big = np.zeros((1080, 1920), np.float32)
    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                 {"R": big, "G": big, "B": big, "Z": big}).write(str(tmp_path / "black.exr"))
    assert exrscan.check_file(tmp_path / "black.exr") == 1


def test_fuzzed_files_never_traceback_in_any_command(tmp_path):
    """Truncations and flipped bytes of every kind of file (ours, a plain render with crop
    windows, stereo multi-part, single-part multi-view, deep scanline, deep tiled, tiled),
    each through inspect, encode, decode and dof: one line and exit 1/2 (or 0 for a flip that
    leaves a valid file), no output left behind, each run within 5 s, and the whole run's peak
    memory under 400 MB."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, HERE, env.get("PYTHONPATH", "")])
    work = tmp_path / "work"
    work.mkdir()
    report_path = tmp_path / "report.txt"
    with open(report_path, "w") as report_file:
        proc = subprocess.run([sys.executable, os.path.join(HERE, "exr_fuzz.py"), str(work)],
                              env=env, stdout=report_file, stderr=subprocess.STDOUT,
                              timeout=300)
    text = report_path.read_text()
    assert proc.returncode == 0, text[-2000:]
    report = json.loads(text.strip().splitlines()[-1])
    assert report["runs"] >= 500
    assert report["problems"] == []
    assert set(report["codes"]) <= {"0", "1", "2"} and report["codes"].get("1", 0) > 300
    assert report["peak_kb"] < 400 * 1024, report["peak_kb"]
