"""Atomic output files: a temporary file in the output's folder, renamed into place when
complete, so an output exists whole or not at all (also when a run is killed). Standard library
only; used by every writer (EXR, PNG, refocused frames)."""

import contextlib
import os
import uuid

from .errors import ZDepthError


def check_target(path, overwrite):
    """``(absolute path, folder)`` of an output; :class:`ZDepthError` when it is a folder, exists
    (unless ``overwrite``) or its folder is missing."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise ZDepthError(f"{path}: is a folder; give a file name")
    if os.path.exists(path) and not overwrite:
        raise ZDepthError(f"{path}: already exists; pass --overwrite to "
                          f"replace it")
    if not os.path.isdir(folder):
        raise ZDepthError(f"{folder}: output folder does not exist")
    return path, folder


def unique_temp_path(path):
    """A temporary path in the same folder as ``path``, unique to this process and call.

    The name holds the process id and a random part, so parallel processes (farm chunks)
    writing into one folder never share a temporary file; it matches ``*.zdepth-tmp*``.
    """
    folder, name = os.path.split(os.fspath(path))
    ext = os.path.splitext(name)[1]
    return os.path.join(folder, f".{name}.zdepth-tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{ext}")


def stale_temp_paths(paths, pids):
    """The temporary files that processes ``pids`` left for outputs ``paths`` (made by
    :func:`unique_temp_path` in a process that was killed before it could remove them): the
    names ``.<output name>.zdepth-tmp-<pid>-*`` in each output's folder. Other processes'
    temporary files (farm chunks writing into the same folder) are never listed."""
    pids = {str(int(p)) for p in pids}
    wanted = {}
    for path in paths:
        folder, name = os.path.split(os.path.abspath(os.fspath(path)))
        wanted.setdefault(folder, set()).add(name)
    found = []
    for folder, names in sorted(wanted.items()):
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in sorted(entries):
            if not entry.startswith(".") or ".zdepth-tmp-" not in entry:
                continue
            name, rest = entry[1:].rsplit(".zdepth-tmp-", 1)
            if name in names and rest.split("-", 1)[0] in pids:
                found.append(os.path.join(folder, entry))
    return found


@contextlib.contextmanager
def atomic_target(path, overwrite=False):
    """Yield a temporary path in ``path``'s folder; on success it is renamed to ``path``, on any
    error it is removed. :class:`ZDepthError` if ``path`` exists (unless ``overwrite``) or its
    folder is missing or not writable. The file gets the usual permissions (0666 less the
    umask), like any file the user writes."""
    path, folder = check_target(path, overwrite)
    tmp = unique_temp_path(path)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise ZDepthError(f"{folder}: cannot write in this folder ({exc.strerror})")
    try:
        yield tmp
        if os.path.exists(path) and not overwrite:  # appeared meanwhile
            raise ZDepthError(f"{path}: already exists; pass --overwrite to replace it")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
