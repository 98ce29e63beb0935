"""Shared pytest set-up.

* ``bpy`` fixture: the real Blender module (tests that use it are integration tests); the test is
  skipped only when bpy is not installed at all, which never happens under ``build.py test``.
* ``blender_version``: ``(major, minor, patch)`` of that bpy.
* ``run_cli``: runs ``python -m blender_zdepth ...`` in a subprocess and returns the
  :class:`subprocess.CompletedProcess` (text output).
* ``@pytest.mark.isolated``: the test runs in a pytest process of its own (a test that could
  crash Blender: its crash is that test's failure, with the signal and the end of its output,
  not the end of the whole run).
"""

import os
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def bpy_module():
    return pytest.importorskip("bpy")


@pytest.fixture
def bpy(bpy_module):
    """The bpy module, with Blender reset to an empty file before the test."""
    bpy_module.ops.wm.read_factory_settings(use_empty=True)
    return bpy_module


@pytest.fixture(scope="session")
def blender_version(bpy_module):
    return tuple(bpy_module.app.version)


@pytest.fixture
def addon(bpy):
    """The blender_zdepth package registered for the test (its former state restored after)."""
    import blender_zdepth
    from blender_zdepth import blender as blender_side

    was = bool(blender_side._registered)
    blender_zdepth.register()
    yield blender_zdepth
    blender_zdepth.unregister()
    if was:
        blender_zdepth.register()


def cli(*args, cwd=None, timeout=600, env=None):
    """Run ``python -m blender_zdepth *args`` with this interpreter; return CompletedProcess."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "blender_zdepth", *map(str, args)],
        cwd=cwd or ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def run_cli():
    return cli


@pytest.fixture(scope="session", autouse=True)
def _addon_unregistered_at_exit():
    """Leave no add-on handlers behind when the session ends: the bpy 4.5 module hangs at
    interpreter exit while anything is left in ``bpy.app.handlers``."""
    yield
    addon = sys.modules.get("blender_zdepth.blender")
    if addon is not None and getattr(addon, "_registered", None):
        addon.unregister()


#: Set in the process that runs one ``isolated`` test.
ISOLATED_ENV = "ZDEPTH_ISOLATED_TEST"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run an ``isolated`` test in a pytest process of its own; its exit status is the test's
    result (a signal, e.g. Blender's segmentation fault, is named)."""
    if pyfuncitem.get_closest_marker("isolated") is None or os.environ.get(ISOLATED_ENV):
        return None
    env = dict(os.environ)
    env[ISOLATED_ENV] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", pyfuncitem.nodeid, "-q", "-p", "no:randomly",
         "-p", "no:cacheprovider", "-o", "addopts=", "--no-header"],
        cwd=str(pyfuncitem.config.rootpath), env=env, capture_output=True, text=True,
        timeout=900)
    if proc.returncode != 0:
        if proc.returncode < 0:
            how = f"died with {signal.Signals(-proc.returncode).name}"
        else:
            how = f"failed (exit status {proc.returncode})"
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
        pytest.fail(f"{pyfuncitem.nodeid} in a process of its own {how}:\n{tail}",
                    pytrace=False)
    return True


_exit_status = {}


def pytest_sessionfinish(session, exitstatus):
    _exit_status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """With bpy loaded, leave without running C++ static destructors once pytest has reported:
    the bpy 4.5 module can deadlock at interpreter exit (its delayed file-close thread waits on
    a condition variable being destroyed), which would hang the test run after it passed.
    ``python -m blender_zdepth`` does the same (see ``blender_zdepth/__main__.py``)."""
    if "bpy" in sys.modules and "code" in _exit_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status["code"])
