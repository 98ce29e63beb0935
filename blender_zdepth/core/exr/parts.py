"""The parts of an OpenEXR file and its views, from the headers alone (no pixels): what
:func:`read_layout` gives, and the rules that put a part or a channel in a view (a part's
``view`` attribute, a ``multiView`` list, stereo part names such as ``rgba_left``)."""

import os
from dataclasses import dataclass

import numpy as np

from ..errors import ZDepthError
from .binding import captured_output, clean_header, damaged, io_threads, open_file, window
from .scan import check_file


@dataclass
class ExrPart:
    """One part of a file: ``type`` is ``scanline``, ``tiled``, ``deep scanline`` or ``deep
    tiled``; ``view`` the part's view (its ``view`` attribute, or a view name its part name ends
    with), None for a part shared by all views; ``sample_counts`` (deep parts, when read): int32
    HxW samples per pixel."""

    name: str
    header: dict
    channel_names: list
    data_window: tuple
    display_window: tuple
    view: str = None
    type: str = "scanline"
    index: int = 0
    sample_counts: np.ndarray = None

    @property
    def deep(self):
        return self.type.startswith("deep")



_TYPES = {"scanlineimage": "scanline", "tiledimage": "tiled", "deepscanline": "deep scanline",
          "deeptile": "deep tiled"}


def _part_type(header):
    t = header.get("type")
    name = getattr(t, "name", None) or str(t or "scanlineimage")
    name = name.split(".")[-1]
    if t is None and header.get("tiles") is not None:
        name = "tiledimage"
    return _TYPES.get(name, name)


def _as_str_list(value):
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        value = [value]
    out = []
    for v in value:
        out.append(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
    return out


#: View names recognised in part names (``rgba_left``) when no part has a ``view`` attribute.
NAMED_VIEWS = ("left", "right", "center", "centre")


def _infer_part_views(names):
    """Views given only by part names (``rgba_left``, ``depth_left``, ``rgba_right``...): a
    suffix after the last ``_`` that is a stereo view name (:data:`NAMED_VIEWS`), shared by
    several parts whose other halves repeat with another such suffix (``enc_log``,
    ``enc_linear`` are no views). Returns {part index: view}."""
    split = {}
    for i, n in enumerate(names):
        if "_" in n:
            base, suffix = n.rsplit("_", 1)
            if base and suffix.lower() in NAMED_VIEWS:
                split[i] = (base, suffix)
    by_base = {}
    for i, (base, suffix) in split.items():
        by_base.setdefault(base, set()).add(suffix)
    groups = [s for s in by_base.values() if len(s) >= 2]
    if not groups:
        return {}
    views = set.intersection(*groups) if len(groups) > 1 else groups[0]
    if len(views) < 2:
        return {}
    return {i: s for i, (b, s) in split.items() if s in views}


def _layout_views(infos):
    """``(views, part_views)``: the file's views (default first) and each part's view (None =
    shared, or per channel by the ``multiView`` rule)."""
    multi = []
    for info in infos:
        multi = _as_str_list(info["header"].get("multiView"))
        if multi:
            break
    part_views = [None] * len(infos)
    for i, info in enumerate(infos):
        v = info["header"].get("view")
        if v is not None:
            part_views[i] = _as_str_list(v)[0] if _as_str_list(v) else None
    if not any(part_views) and len(infos) > 1:
        for i, v in _infer_part_views([info["name"] for info in infos]).items():
            part_views[i] = v
    views = list(multi)
    for v in part_views:
        if v and v not in views:
            views.append(v)
    return views, part_views


def channel_view(name, views, part_view, multi_view=False):
    """``(view, name without the view)`` of a channel (OpenEXR's multi-view rule: the view is
    the second-to-last ``.`` component; in a part with a ``multiView`` list, a name without one
    belongs to the default view). ``(None, name)``: a channel of a part shared by all views."""
    parts = name.split(".")
    if len(parts) >= 2 and parts[-2] in views and (part_view is None or parts[-2] == part_view):
        return parts[-2], ".".join(parts[:-2] + parts[-1:])
    if part_view is not None:
        return part_view, name
    if multi_view and views:
        return views[0], name  # OpenEXR: a channel without a view name is the default view's
    return None, name


def describe_views(views):
    return ", ".join(views) if views else "none (the file has no views)"


def open_checks(path):
    """``path`` as a string, after :func:`checked_file`'s checks."""
    return checked_file(path)[0]


def checked_file(path):
    """``(path, parts)``: ``path`` as a string and the number of parts its headers declare (None
    when the headers are too long for :func:`.scan.check_file`, which then leaves them to the
    library), once the file is known to exist, to be an OpenEXR file and to hold the sizes it
    declares; :class:`ZDepthError` otherwise."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ZDepthError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ZDepthError(f"{path}: is a folder, not an EXR file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ZDepthError(f"{path}: cannot read ({exc.strerror})")
    if magic != b"\x76\x2f\x31\x01":
        raise ZDepthError(f"{path}: not an OpenEXR file")
    try:
        parts = check_file(path)
    except OSError as exc:
        raise ZDepthError(f"{path}: cannot read ({exc.strerror})")
    return path, parts


def read_layout(path):
    """The parts of the EXR at ``path`` (headers only, no pixels): ``(parts, views)`` with one
    :class:`ExrPart` per part and the file's views, default first. :class:`ZDepthError` for a
    missing, damaged or hostile file."""
    import OpenEXR  # noqa: F401 -- missing, this is the command line's one clear line

    path = open_checks(path)
    failure = None
    with captured_output() as messages:
        try:
            io_threads()
            headers = [(p.name() if callable(getattr(p, "name", None)) else "",
                        dict(p.header)) for p in open_file(path, header_only=True).parts]
            result = layout(headers)
        except ZDepthError:  # a valid file the bindings cannot read (binding.open_file)
            raise
        except Exception as exc:  # the bindings raise RuntimeError (or a decoding error)
            failure = str(exc)
    text = (messages[0] if messages else "").strip()
    if failure is not None:
        raise damaged(path, text, failure)
    return result


def channel_names(path):
    """The names of the flat channels of the EXR at ``path``, each without its view (as
    :func:`~.flat.read_exr` gives them for a view), from the headers alone: no pixel is read."""
    parts, views = read_layout(path)
    names = set()
    for part in parts:
        if part.deep:
            continue
        for name in part.channel_names:
            names.add(channel_view(name, views, part.view, bool(part.header.get("multiView")))[1])
    return sorted(names)


def layout(headers):
    infos = [{"name": n or "", "header": h} for n, h in headers]
    views, part_views = _layout_views(infos)
    parts = []
    for i, info in enumerate(infos):
        h = info["header"]
        names = [c.name if hasattr(c, "name") else str(c) for c in h.get("channels", [])]
        parts.append(ExrPart(info["name"], clean_header(h), names, window(h.get("dataWindow")),
                             window(h.get("displayWindow")), part_views[i], _part_type(h), i))
    return parts, views

