"""core.batch and core.refocus: frame patterns, frame ranges, focus keys, the job runner, atomic
outputs."""

import multiprocessing
import os

import pytest

from blender_zdepth.core import atomic, batch, cpus, refocus
from blender_zdepth.core.batch import workers
from blender_zdepth.core.errors import UsageError, ZDepthError
from blender_zdepth.core.exr import binding as exr_binding


# --- patterns ---------------------------------------------------------------------------------

def test_hash_pattern_pads_and_parses(tmp_path):
    p = batch.FramePattern(str(tmp_path / "shot.####.exr"))
    assert p.is_sequence and p.padding == 4
    assert p.path_for(7) == str(tmp_path / "shot.0007.exr")
    assert p.path_for(12345) == str(tmp_path / "shot.12345.exr")
    assert p.frame_of("shot.1001.exr") == 1001
    assert p.frame_of("shot.001.exr") is None  # not this padding
    assert p.frame_of("other.1001.exr") is None


def test_printf_pattern_and_plain_path(tmp_path):
    p = batch.FramePattern(str(tmp_path / "shot_%04d.exr"))
    assert p.path_for(42) == str(tmp_path / "shot_0042.exr")
    q = batch.FramePattern(str(tmp_path / "shot_%d.exr"))
    assert q.path_for(42) == str(tmp_path / "shot_42.exr")
    plain = batch.FramePattern(str(tmp_path / "still.exr"))
    assert not plain.is_sequence and plain.path_for(3) == str(tmp_path / "still.exr")
    with pytest.raises(UsageError):
        batch.FramePattern("a.##.%04d.exr")


def test_last_hash_run_is_the_frame(tmp_path):
    p = batch.FramePattern("v#2/shot_##_####.exr")
    assert p.path_for(5) == os.path.join("v#2", "shot_##_0005.exr")


def test_existing_frames_found_on_disk(tmp_path):
    for f in (3, 1, 12):
        (tmp_path / f"r.{f:04d}.exr").write_bytes(b"x")
    (tmp_path / "r.0002.exr.zdepth-tmp-1-ab.exr").write_bytes(b"x")
    (tmp_path / "r.2.exr").write_bytes(b"x")
    assert batch.FramePattern(str(tmp_path / "r.####.exr")).existing_frames() == [1, 3, 12]


# --- frame ranges -------------------------------------------------------------------------------

@pytest.mark.parametrize("text,frames", [
    ("1001-1004", [1001, 1002, 1003, 1004]),
    ("7", [7]),
    ("1-3,10,2", [1, 2, 3, 10]),
    ("1-10x4", [1, 5, 9]),
    ("0-6:3", [0, 3, 6]),
    ("-2-1", [-2, -1, 0, 1]),
])
def test_parse_frames(text, frames):
    assert batch.parse_frames(text) == frames


@pytest.mark.parametrize("text", ["", "a-b", "10-1", "1-5x0", "1..5", "1-"])
def test_parse_frames_rejects(text):
    with pytest.raises(UsageError):
        batch.parse_frames(text)


def test_format_and_chunk_frames():
    assert batch.format_frames([1, 2, 3, 7, 9, 10]) == "1-3,7,9-10"
    assert batch.chunk_frames(range(1, 8), 3) == [[1, 2, 3], [4, 5, 6], [7]]
    with pytest.raises(UsageError):
        batch.chunk_frames([1], 0)


# --- focus keys -------------------------------------------------------------------------------

def test_two_keys_ease_like_smoothstep_and_hold_ends():
    keys = refocus.parse_focus_keys("1001:2.5, 1048:8.0")
    assert keys(900) == 2.5 and keys(1001) == 2.5
    assert keys(1048) == 8.0 and keys(2000) == 8.0
    for f in (1005, 1012.5, 1024.5, 1040):
        t = (f - 1001) / 47
        assert keys(f) == pytest.approx(2.5 + 5.5 * (3 * t * t - 2 * t ** 3))
    # eases: the first step is much smaller than a middle step
    assert keys(1002) - keys(1001) < 0.2 * (keys(1025) - keys(1024))


def test_keys_pass_through_values_monotone_no_overshoot():
    keys = refocus.parse_focus_keys("1:2,10:3,20:10,30:4")
    for f, v in ((1, 2), (10, 3), (20, 10), (30, 4)):
        assert keys(f) == pytest.approx(v)
    values = [keys(1 + i * 0.25) for i in range(int(29 / 0.25) + 1)]
    frames = [1 + i * 0.25 for i in range(len(values))]
    for (fa, a), (fb, b) in zip(zip(frames, values), zip(frames[1:], values[1:])):
        if fb <= 20:
            assert b >= a - 1e-12  # rising part never dips
        else:
            assert b <= a + 1e-12  # falling part never rises
    assert max(values) <= 10 + 1e-9 and min(values) >= 2 - 1e-9
    # smooth (C1) through an interior key: left and right slopes agree at frame 10
    eps = 1e-4
    left = (keys(10) - keys(10 - eps)) / eps
    right = (keys(10 + eps) - keys(10)) / eps
    assert left == pytest.approx(right, rel=1e-2)
    assert left > 0


def test_single_key_is_constant_and_bad_keys_rejected():
    assert refocus.parse_focus_keys("5:3.0")(100) == 3.0
    for bad in ("", "1001", "1001:x", "1:2,1:3", "1:-2", "1:0"):
        with pytest.raises(UsageError):
            refocus.parse_focus_keys(bad)


# --- the runner ---------------------------------------------------------------------------------

def _write(path, text):
    with batch.atomic_output(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def _jobs(tmp_path, frames):
    return [batch.FrameJob(f, str(tmp_path / f"in.{f}"), (str(tmp_path / f"out.{f}"),))
            for f in frames]


def test_bad_frame_is_collected_and_others_written(tmp_path):
    def process(job):
        if job.frame == 2:
            raise ZDepthError("truncated")
        _write(job.output, str(job.frame))
        return {"details": "ok"}

    lines = []
    run = batch.SequenceRun(_jobs(tmp_path, [1, 2, 3]), process,
                          progress=lambda r, i, n: lines.append(batch.progress_line(r, i, n)))
    report = run.run()
    assert [r.status for r in report.results] == ["written", "failed", "written"]
    assert not report.ok
    assert (tmp_path / "out.1").read_text() == "1" and (tmp_path / "out.3").exists()
    assert not (tmp_path / "out.2").exists()
    assert len(lines) == 3 and "FAILED" in lines[1] and "truncated" in lines[1]
    assert "frame 2" in report.summary() and "1 failed" in report.summary()


def test_skip_existing_resumes(tmp_path):
    done = []

    def process(job):
        done.append(job.frame)
        _write(job.output, "new")

    (tmp_path / "out.2").write_text("old")
    report = batch.SequenceRun(_jobs(tmp_path, [1, 2, 3]), process, skip_existing=True).run()
    assert done == [1, 3]
    assert (tmp_path / "out.2").read_text() == "old"
    assert [r.status for r in report.results] == ["written", "skipped", "written"]
    assert report.ok


def test_cancel_between_frames_keeps_finished(tmp_path):
    def process(job):
        _write(job.output, "x")

    run = batch.SequenceRun(_jobs(tmp_path, [1, 2, 3, 4]), process)
    run.step()
    run.step()
    run.cancel()
    assert run.done and run.step() is None
    assert [r.status for r in run.report.results] == ["written", "written", "cancelled", "cancelled"]
    assert sorted(os.listdir(tmp_path)) == ["out.1", "out.2"]
    assert not run.report.ok and "cancelled" in run.report.summary()


def test_atomic_output_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.exr"
    target.write_text("previous")
    with pytest.raises(RuntimeError):
        with batch.atomic_output(str(target)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("disk full")
    assert os.listdir(tmp_path) == ["out.exr"] and target.read_text() == "previous"
    names = {os.path.basename(atomic.unique_temp_path(str(target))) for _ in range(50)}
    assert len(names) == 50 and all(".zdepth-tmp" in n and n.endswith(".exr") for n in names)


# --- planning ---------------------------------------------------------------------------------

def test_plan_jobs_patterns_folders_and_refusals(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for f in (1, 2):
        (src / f"r.{f:04d}.exr").write_bytes(b"x")
    jobs = batch.plan_jobs(str(src / "r.####.exr"), str(tmp_path / "o.%04d.exr"), png=True)
    assert [j.frame for j in jobs] == [1, 2]
    assert jobs[1].outputs == (str(tmp_path / "o.0002.exr"), str(tmp_path / "o.0002.png"))
    # an output folder keeps the input names
    out = tmp_path / "out"
    out.mkdir()
    jobs = batch.plan_jobs(str(src / "r.####.exr"), str(out), frames=[2, 3])
    assert [j.output for j in jobs] == [str(out / "r.0002.exr"), str(out / "r.0003.exr")]
    with pytest.raises(UsageError, match="input"):
        batch.plan_jobs(str(src / "r.####.exr"), str(src))
    with pytest.raises(UsageError, match="input"):
        batch.plan_jobs(str(src / "r.0001.exr"), str(src / "r.0001.exr"))
    with pytest.raises(UsageError, match="single file"):
        batch.plan_jobs(str(src / "r.####.exr"), str(tmp_path / "one.exr"))
    with pytest.raises(UsageError, match="no file matches"):
        batch.plan_jobs(str(tmp_path / "none.####.exr"), str(out))
    single = batch.plan_jobs(str(src / "r.0002.exr"), str(tmp_path / "x.exr"))
    assert single[0].frame is None  # only ####, %04d or --frames make frame numbers
    jobs = batch.plan_jobs(str(src / "r.####.exr"), str(tmp_path / "o.####.exr"))
    (tmp_path / "o.0001.exr").write_bytes(b"y")
    with pytest.raises(ZDepthError, match="already exists"):
        batch.check_existing(jobs)
    batch.check_existing(jobs, skip_existing=True)


# --- parallel chunks ----------------------------------------------------------------------------

def _chunk_worker(args):
    folder, frames = args
    jobs = [batch.FrameJob(f, "", (os.path.join(folder, f"o.{f:04d}.txt"),)) for f in frames]

    def process(job):
        _write(job.output, f"{job.frame}\n" * 2000)

    report = batch.SequenceRun(jobs, process).run()
    return [r.status for r in report.results]


def test_parallel_chunks_into_one_folder(tmp_path):
    # two processes on overlapping chunks writing the same folder (and the same frames 5-6)
    chunks = [(str(tmp_path), list(range(1, 7))), (str(tmp_path), list(range(5, 11)))]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        statuses = pool.map(_chunk_worker, chunks)
    assert all(s == "written" for st in statuses for s in st)
    names = sorted(os.listdir(tmp_path))
    assert names == [f"o.{f:04d}.txt" for f in range(1, 11)]  # no temp files left
    for f in range(1, 11):
        assert (tmp_path / f"o.{f:04d}.txt").read_text() == f"{f}\n" * 2000


def test_derived_path_keeps_sequences():
    assert batch.derived_path("/r/shot.0042.exr") == "/r/shot_dof.0042.exr"
    assert batch.derived_path("/r/shot_0042.exr", folder="/o") == "/o/shot_dof_0042.exr"
    assert batch.derived_path("/r/still.exr") == "/r/still_dof.exr"
    assert batch.derived_path("/r/0042.exr") == "/r/dof.0042.exr"


# --- refocus_sequence (the Python entry point of the demo) ---------------------------------------

def test_refocus_sequence_lens_per_frame_png_and_cancel(tmp_path):
    import numpy as np

    from blender_zdepth.core import exr
    from blender_zdepth.core.dof import DofSettings
    from blender_zdepth.core.lens import Lens

    h, w = 24, 32
    rng = np.random.default_rng(1)
    rgba = np.ones((h, w, 4), np.float32)
    rgba[..., :3] = rng.random((h, w, 3))
    depth = np.where(np.arange(w)[None, :] < w // 2, 2.0, 8.0).astype(np.float32) * np.ones((h, 1))
    for f in (1, 2, 3):
        exr.write_exr(str(tmp_path / f"in.{f:04d}.exr"),
                      {**{c: rgba[..., i] for i, c in enumerate("RGBA")}, "Z": depth})
    lenses = {f: Lens(100.0, 0.8, d) for f, d in ((1, 2.0), (2, 5.0), (3, 8.0))}
    done = []
    report = refocus.refocus_sequence(
        str(tmp_path / "in.####.exr"), str(tmp_path / "new" / "out.####.exr"), lenses,
        settings=DofSettings(max_radius=8), frames=[3])
    assert report.ok and (tmp_path / "new" / "out.0003.exr").exists()  # folder made
    report = refocus.refocus_sequence(
        str(tmp_path / "in.####.exr"), str(tmp_path / "out.####.exr"), lenses,
        settings=DofSettings(max_radius=8), png=True,
        progress=lambda r, i, n: done.append((r.frame, r.status, i, n)),
        should_cancel=lambda: len(done) == 2)
    assert done == [(1, "written", 1, 3), (2, "written", 2, 3)]
    assert [r.status for r in report.results] == ["written", "written", "cancelled"]
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith("out")) == [
        "out.0001.exr", "out.0001.png", "out.0002.exr", "out.0002.png"]
    assert (tmp_path / "out.0001.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = exr.read_exr(str(tmp_path / "out.0002.exr"))
    assert out.header["zdepthDofFocusDistance"] == 5.0 and set(out.channels) == set("RGBA")
    with pytest.raises(ZDepthError, match="outputs .* and 1 more already exist:"):
        refocus.refocus_sequence(str(tmp_path / "in.####.exr"), str(tmp_path / "out.####.exr"),
                             lenses)
    report = refocus.refocus_sequence(str(tmp_path / "in.####.exr"), str(tmp_path / "out.####.exr"),
                                  lenses, png=True, skip_existing=True)
    assert [r.status for r in report.results] == ["skipped", "skipped", "written"]


def test_unwritable_input_metadata_falls_back_to_ours(tmp_path):
    import numpy as np

    from blender_zdepth.core import exr

    job = batch.FrameJob(1, "in.exr", (str(tmp_path / "o.exr"),))
    rgba = np.ones((4, 6, 4), np.float32)
    used = refocus.write_refocused(job, rgba, {"weird": object(), "zdepthDofFstop": 2.0},
                               fallback_header={"zdepthDofFstop": 2.0, "zdepthDofNote": "x"})
    assert "weird" not in used
    assert exr.read_exr(str(tmp_path / "o.exr")).header["zdepthDofNote"] == "x"
    assert os.listdir(tmp_path) == ["o.exr"]
    with pytest.raises(ZDepthError):
        refocus.write_refocused(batch.FrameJob(1, "in.exr", (str(tmp_path / "p.exr"),)), rgba,
                            {"weird": object()})
    assert os.listdir(tmp_path) == ["o.exr"]


def test_single_file_without_frame_number(tmp_path):
    import numpy as np

    from blender_zdepth.core import exr

    rgba = np.ones((8, 8, 4), np.float32)
    depth = np.full((8, 8), 3.0, np.float32)
    exr.write_exr(str(tmp_path / "still.exr"),
                  {**{c: rgba[..., i] for i, c in enumerate("RGBA")}, "Z": depth},
                  header={"Frame": "042"})
    lines = []
    keys = refocus.parse_focus_keys("1:2,100:9")
    report = refocus.refocus_sequence(str(tmp_path / "still.exr"), str(tmp_path / "o.exr"),
                                  refocus.lens_resolver(focus_keys=keys, fstop=2,
                                                    focal_length_mm=50),
                                  progress=lambda r, i, n: lines.append(batch.progress_line(r, i, n)))
    assert report.ok and report.results[0].frame is None
    assert lines[0].startswith("[1/1] frame: still.exr")
    # the header's frame (Blender's "Frame") places it on the focus keys
    assert exr.read_exr(str(tmp_path / "o.exr")).header["zdepthDofFocusDistance"] == \
        pytest.approx(keys(42))


# --- several frames at once (ParallelRun, choose_jobs) -------------------------------------------

GB = 2 ** 30


def test_choose_jobs_from_cores_memory_and_frame_size():
    hd, uhd = 1920 * 1080, 3840 * 2160
    # cores and frames limit; the cores are shared between the jobs
    assert batch.choose_jobs(8, pixels=hd, cores=2, memory=16 * GB) == (2, 1, "")
    assert batch.choose_jobs(100, pixels=hd, cores=16, memory=64 * GB) == (16, 1, "")
    assert batch.choose_jobs(3, pixels=hd, cores=16, memory=64 * GB) == (3, 5, "")
    # memory limits: 4K frames need about 1.2 GB each, 80% of 4 GB holds two
    assert batch.choose_jobs(100, pixels=uhd, cores=16, memory=4 * GB) == (2, 8, "")
    n, threads, note = batch.choose_jobs(100, pixels=uhd, jobs=8, cores=16, memory=4 * GB)
    assert (n, threads) == (2, 8) and "--jobs 8 lowered to 2" in note and "GB" in note
    # a given number is used as given (not more than the frames); threads as given
    assert batch.choose_jobs(100, pixels=hd, jobs=3, cores=2, memory=64 * GB) == (3, 1, "")
    assert batch.choose_jobs(2, pixels=hd, jobs=8, cores=16, memory=64 * GB)[0] == 2
    assert batch.choose_jobs(8, pixels=hd, jobs=2, threads=3, cores=16, memory=64 * GB) == (2, 3, "")
    # one job: threads 0 = the engine's all cores
    assert batch.choose_jobs(8, pixels=hd, jobs=1, cores=16, memory=64 * GB) == (1, 0, "")
    # a small sequence is not worth starting processes for; memory unknown: at most 4
    assert batch.choose_jobs(4, pixels=64 * 40, cores=16, memory=64 * GB) == (1, 0, "")
    assert batch.choose_jobs(100, pixels=hd, cores=16, memory=None)[0] == workers.UNKNOWN_MEMORY_JOBS
    # never less than one, even without memory to spare
    assert batch.choose_jobs(100, pixels=uhd, cores=16, memory=0)[0] == 1


def test_machine_figures():
    assert cpus.usable_cores() >= 1
    memory = batch.available_memory()
    if os.path.exists("/proc/meminfo"):
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        assert 0 < memory <= int(fields["MemAvailable"].split()[0]) * 1024


def _slow_writer(job):
    """A worker task (module level: picklable): frame 2 fails, frame 4 kills its own process
    halfway through writing, the others are written after a pause inside the atomic write."""
    import signal
    import time

    if job.frame == 2:
        raise ZDepthError("truncated")
    with batch.atomic_output(job.output) as tmp:
        with open(tmp, "w") as f:
            f.write("half")
        if job.frame == 4:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(float(os.path.basename(job.input).split("-")[-1] or 0))
        with open(tmp, "w") as f:
            f.write(str(job.frame))
    return {"details": f"done {job.frame}"}


def _timed_jobs(folder, frames, pause=0.0):
    """Jobs writing ``out.F`` in ``folder`` (inputs: names only, never read)."""
    return [batch.FrameJob(f, f"in.{f}-{pause}", (str(folder / f"out.{f}"),)) for f in frames]


def test_parallel_run_same_report_as_serial(tmp_path):
    serial_dir, parallel_dir = tmp_path / "s", tmp_path / "p"
    serial_dir.mkdir()
    parallel_dir.mkdir()
    frames = [1, 2, 3, 5, 6]
    serial = batch.SequenceRun(_timed_jobs(serial_dir, frames), _slow_writer).run()
    lines = []
    run = batch.ParallelRun(_timed_jobs(parallel_dir, frames), _slow_writer, workers=3,
                          progress=lambda r, i, n: lines.append(batch.progress_line(r, i, n)))
    parallel = run.run()
    assert [r.frame for r in parallel.results] == frames  # job order, whatever finished first
    assert [r.status for r in parallel.results] == [r.status for r in serial.results]
    assert [r.message for r in parallel.results] == [r.message for r in serial.results]
    assert [r.info for r in parallel.results] == [r.info for r in serial.results]
    assert len(lines) == 5 and sorted(line[:5] for line in lines) == [f"[{i}/5]" for i in
                                                                      range(1, 6)]
    assert any("FAILED" in line and "truncated" in line and "frame 2" in line for line in lines)
    assert sorted(os.listdir(parallel_dir)) == sorted(os.listdir(serial_dir))
    for f in (1, 3, 5, 6):
        assert (parallel_dir / f"out.{f}").read_text() == str(f)
    # the summary's failure lines are the serial run's
    assert parallel.summary().splitlines()[1:] == serial.summary().splitlines()[1:]
    assert "(3 at a time)" in parallel.summary()
    assert not run._pool  # workers gone


@pytest.mark.skipif(os.name != "posix", reason="the task kills its process with SIGKILL")
def test_killed_worker_fails_its_frame_only_and_leaves_no_temp_file(tmp_path):
    jobs = _timed_jobs(tmp_path, [3, 4, 5, 6])
    report = batch.ParallelRun(jobs, _slow_writer, workers=2).run()
    assert [r.status for r in report.results] == ["written", "failed", "written", "written"]
    assert "killed by signal 9" in report.results[1].message
    assert sorted(os.listdir(tmp_path)) == ["out.3", "out.5", "out.6"]


def test_cancel_stops_workers_and_leaves_no_partial_file(tmp_path):
    jobs = _timed_jobs(tmp_path, [1, 3, 5, 6, 7, 8], pause=30)
    run = batch.ParallelRun(jobs, _slow_writer, workers=2).start()
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until both workers are writing
        run.poll(0.1)
        if len([n for n in os.listdir(tmp_path) if ".zdepth-tmp-" in n]) == 2:
            break
    assert len(run.running) == 2
    t0 = time.monotonic()
    run.cancel()
    assert time.monotonic() - t0 < 15  # stopped, not waited for (each frame takes 30 s)
    assert run.done and all(r.status == "cancelled" for r in run.report.results)
    assert os.listdir(tmp_path) == []
    assert not run.report.ok and "cancelled" in run.report.summary()


def test_parallel_skip_existing_and_abort(tmp_path):
    (tmp_path / "out.3").write_text("old")
    report = batch.ParallelRun(_timed_jobs(tmp_path, [1, 3, 5]), _slow_writer, workers=2,
                             skip_existing=True).run()
    assert [r.status for r in report.results] == ["written", "skipped", "written"]
    assert (tmp_path / "out.3").read_text() == "old"
    run = batch.ParallelRun(_timed_jobs(tmp_path, [7, 8]), _abort_task, workers=2)
    with pytest.raises(batch.AbortRun, match="cannot work"):
        run.run()
    assert run.cancelled and not run._pool
    assert not (tmp_path / "out.7").exists() and not (tmp_path / "out.8").exists()


def _abort_task(job):
    try:
        raise UsageError("no focal length")
    except UsageError as exc:
        if job.frame in (2, 7, 8):
            raise batch.AbortRun(f"frame {job.frame}: these options cannot work: {exc}")
    return _slow_writer(job)


def test_an_abort_stops_the_run_only_before_any_frame_was_written(tmp_path):
    """As in a serial run: options that cannot work stop the run on the first frame; once a
    frame was written, a frame that cannot work is a failed frame like any other."""
    run = batch.ParallelRun(_timed_jobs(tmp_path, [1, 2, 3, 5], pause=1.0), _abort_task,
                          workers=2)
    report = run.run()
    assert [r.status for r in report.results] == ["written", "failed", "written", "written"]
    assert report.results[1].message == "no focal length"
    run = batch.ParallelRun(_timed_jobs(tmp_path, [7, 8, 9]), _abort_task, workers=3)
    with pytest.raises(batch.AbortRun, match="frame 7: these options cannot work"):
        run.run()


def test_stale_temp_paths_lists_only_the_given_processes(tmp_path):
    out = str(tmp_path / "o.0001.exr")
    mine = os.path.basename(atomic.unique_temp_path(out)).replace(str(os.getpid()), "12345")
    for name in (mine, ".o.0001.exr.zdepth-tmp-999-abcdef12.exr", ".o.0002.exr.zdepth-tmp-12345-"
                 "abcdef12.exr", "o.0001.exr"):
        (tmp_path / name).write_text("x")
    assert atomic.stale_temp_paths([out], [12345]) == [str(tmp_path / mine)]



_DIES_WRITING = r"""
import os, sys
import numpy as np
from blender_zdepth.core import atomic, batch, refocus

outputs = tuple(sys.argv[1:])
replaced = []
def dies_on_the_exr(src, dst):  # a worker killed between the PNG and the EXR's rename
    if dst.endswith(".exr"):
        os._exit(7)
    replaced.append(dst)
    os.rename(src, dst)
atomic.os.replace = dies_on_the_exr
job = batch.FrameJob(1, "in.exr", outputs)
refocus.write_refocused(job, np.full((4, 6, 4), 0.5, np.float32), {})
"""


@pytest.mark.skipif(os.name != "posix", reason="the writer ends itself with os._exit")
def test_a_writer_killed_mid_frame_leaves_only_temp_files_the_sweep_finds(tmp_path):
    """What a stopped worker leaves is exactly what the run's sweep (stale_temp_paths) removes:
    each output has one temporary file named after it, never a temporary file of a temporary
    file (which the sweep cannot tie to an output; Ctrl+C once left one behind)."""
    import subprocess
    import sys

    outputs = [str(tmp_path / "o.0001.exr"), str(tmp_path / "o.0001.png")]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-c", _DIES_WRITING, *outputs], cwd=root,
                            env=dict(os.environ, PYTHONPATH=root), stderr=subprocess.PIPE,
                            text=True)
    assert proc.wait(timeout=120) == 7, proc.stderr.read()
    left = sorted(str(tmp_path / n) for n in os.listdir(tmp_path))
    assert str(tmp_path / "o.0001.png") in left  # the PNG was finished, the EXR was not
    temps = [p for p in left if ".zdepth-tmp-" in p]
    assert temps and sorted(atomic.stale_temp_paths(outputs, [proc.pid])) == temps


BL_EXT_SCRIPT = r'''
import os, sys, types
root, tmp = sys.argv[1], sys.argv[2]
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.abspath(root)]
os.makedirs(os.path.join(tmp, "repo"))
os.symlink(os.path.join(root, "blender_zdepth"), os.path.join(tmp, "repo", "blender_zdepth"))
for name, path in (("fakeext", tmp), ("fakeext.repo", os.path.join(tmp, "repo"))):
    module = types.ModuleType(name)
    module.__path__ = [path]
    sys.modules[name] = module  # like Blender's bl_ext: not importable by a plain Python
import numpy as np
from fakeext.repo.blender_zdepth.core import exr, refocus
from fakeext.repo.blender_zdepth.core.dof import DofSettings
from fakeext.repo.blender_zdepth.core.lens import Lens
rgba = np.ones((16, 24, 4), np.float32)
for f in (1, 2, 3):
    exr.write_exr(os.path.join(tmp, f"in.{f}.exr"),
                  {**{c: rgba[..., i] for i, c in enumerate("RGBA")},
                   "Z": np.full((16, 24), 2.0 + f, np.float32)})
report = refocus.refocus_sequence(os.path.join(tmp, "in.#.exr"), os.path.join(tmp, "o.#.exr"),
                                  Lens(50.0, 2.0, 3.0), settings=DofSettings(max_radius=4),
                                  workers=2)
print(report.summary())
print("workers:", report.workers)
'''


def test_workers_start_inside_a_package_a_plain_python_cannot_import(tmp_path):
    """Blender loads extensions as ``bl_ext.<repository>.blender_zdepth``, a package its Python
    cannot import in a fresh process: the workers recreate the parents. The parent here is also
    a script without a ``__main__`` guard, which the workers must not re-run."""
    import subprocess
    import sys

    from conftest import ROOT

    script = tmp_path / "script.py"
    script.write_text(BL_EXT_SCRIPT)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, str(script), ROOT, str(work)], cwd=str(tmp_path),
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 frames: 3 written" in r.stdout and "workers: 2" in r.stdout, r.stdout + r.stderr
    assert r.stderr == ""
    assert sorted(n for n in os.listdir(work) if n.startswith("o")) == ["o.1.exr", "o.2.exr",
                                                                         "o.3.exr"]


def test_parallel_run_refuses_a_task_it_cannot_send(tmp_path):
    run = batch.ParallelRun(_timed_jobs(tmp_path, [1, 2]), lambda job: None, workers=2)
    with pytest.raises(TypeError, match="picklable"):
        run.start()
    assert not run._pool and os.listdir(tmp_path) == []


def test_a_run_in_this_process_reads_and_writes_with_the_engines_threads(tmp_path):
    """``dof --threads N``: the EXR reading and writing of a run in this process use N threads
    as the engine does (1 = no OpenEXR pool at all), 0 = every usable core."""
    import numpy as np
    import OpenEXR

    from blender_zdepth.core import exr
    from blender_zdepth.core.dof import DofSettings
    from blender_zdepth.core.lens import Lens

    rgba = np.ones((8, 8, 4), np.float32)
    depth = np.full((8, 8), 3.0, np.float32)
    exr.write_exr(str(tmp_path / "in.exr"), {"RGBA": rgba, "Z": depth})
    before = OpenEXR.global_thread_count(), dict(exr_binding._io_pool)
    try:
        for threads, pool in ((1, 0), (3, 3), (0, cpus.usable_cores())):
            report = refocus.refocus_sequence(str(tmp_path / "in.exr"), str(tmp_path / "o.exr"),
                                          Lens(50.0, 2.0, 3.0), settings=DofSettings(threads=threads),
                                          overwrite=True)
            assert report.ok
            assert OpenEXR.global_thread_count() == (pool if pool > 1 else 0), threads
    finally:
        OpenEXR.set_global_thread_count(before[0])
        exr_binding._io_pool.clear()
        exr_binding._io_pool.update(before[1])
