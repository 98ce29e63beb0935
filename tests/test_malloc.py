"""core.malloc: frame-sized arrays are reused instead of being mapped and faulted in again."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CODE = r"""
import resource, sys
from blender_zdepth.core import malloc
done = malloc.keep_frame_buffers() if sys.argv[1] == "keep" else None
import numpy as np
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
from concurrent.futures import ThreadPoolExecutor
def planes():  # several 16 MB planes alive at once, then all freed, as in the engine
    p = [np.ones(2 * 2 ** 20) for _ in range(4)]
    del p
def frame():  # on the main thread and on the engine's worker threads
    planes()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: planes(), range(2)))
frame()  # once: their pages are faulted in here
before = faults()
for _ in range(10):
    frame()
print(done, faults() - before)
"""


def _run(mode, **env):
    result = subprocess.run([sys.executable, "-c", CODE, mode], capture_output=True, text=True,
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT, **env))
    assert result.returncode == 0, result.stderr
    done, faults = result.stdout.split()
    return done, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc options")
def test_freed_frame_arrays_are_reused_not_faulted_in_again():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    done, kept = _run("keep")
    assert done == "True"
    _, plain = _run("plain")
    # without: glibc unmaps or trims part of the freed planes (and the threads' own arenas)
    # and faults them in again each time (61,000 pages of 4 KB in 10 rounds with glibc 2.36);
    # with: the new threads' stacks only (20 threads: 0 to ~3,000 pages)
    assert plain > 10_000 and kept * 10 < plain, (plain, kept)
    # the user's own malloc settings win
    done, _ = _run("keep", MALLOC_MMAP_THRESHOLD_="1000000")
    assert done == "False"
    done, _ = _run("keep", GLIBC_TUNABLES="glibc.malloc.trim_threshold=1000")
    assert done == "False"
    done, _ = _run("keep", MALLOC_ARENA_MAX="4")
    assert done == "False"
