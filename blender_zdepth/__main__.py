"""``python -m blender_zdepth``: the command line (see :mod:`blender_zdepth.cli`)."""

import os
import sys

if __name__ == "__main__" and sys.argv[1:2] == ["dof"]:
    # A process of our own that refocuses frames: keep freed frame-sized arrays for reuse,
    # before numpy allocates anything (see core/malloc.py). Not for the commands that load
    # bpy (render, demo): Blender's threads keep glibc's defaults.
    from .core.malloc import keep_frame_buffers

    keep_frame_buffers()

from .cli import main  # noqa: E402

if __name__ == "__main__":
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # 'python -m blender_zdepth inspect x.exr | head': no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
        code = 1  # as Python advises; the reader stopped, the output is incomplete
    # Every output is written and closed: run the atexit handlers (multiprocessing's, the
    # finalizers of temporary folders ...), flush, and leave without Python's teardown of every
    # module (numpy, OpenEXR, the engine: ~20 ms a run, and the whole cost of a farm task that
    # refocuses one frame is what the user waits for). With bpy loaded this is needed anyway:
    # the bpy 4.5 module can deadlock at exit in a C++ static destructor (its delayed
    # file-close thread waits on a condition variable being destroyed).
    # Under a profiler, a tracer, a debugger or coverage, exit normally: they report at exit.
    if "bpy" not in sys.modules and (sys.getprofile() is not None or
                                     sys.gettrace() is not None):
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
