"""Frame numbers and file names of a sequence: patterns (``shot.####.exr`` <-> frame numbers),
frame lists (``"1001-1048"``, ``"1-100x5"``) and farm chunks, the names of outputs."""

import os
import re

from ..errors import UsageError

_HASHES = re.compile(r"#+")
_PRINTF = re.compile(r"%(0?)(\d*)d")


class FramePattern:
    """A file path with a frame-number placeholder, or a plain path.

    The placeholder is the last run of ``#`` in the file name (``shot.####.exr``: padded to 4
    digits, as Blender writes it) or a printf field (``shot.%04d.exr``, ``shot.%d.exr``). A path
    without one is a single file (:attr:`is_sequence` False) and :meth:`path_for` returns it as is.
    Frame numbers wider than the padding are written in full; negative frames get a minus sign.
    """

    def __init__(self, text):
        if not text:
            raise UsageError("an empty path was given where a file or a frame pattern is needed")
        self.text = os.fspath(text)
        folder, name = os.path.split(self.text)
        self.folder = folder
        prefix = suffix = None
        padding = 0
        hashes = list(_HASHES.finditer(name))
        printf = list(_PRINTF.finditer(name))
        if hashes and printf:
            raise UsageError(f"{self.text!r} mixes '#' and '%d' frame placeholders: use one")
        if len(printf) > 1:
            raise UsageError(f"{self.text!r} has more than one '%d' frame placeholder")
        if hashes:
            m = hashes[-1]
            prefix, suffix, padding = name[:m.start()], name[m.end():], len(m.group())
        elif printf:
            m = printf[0]
            prefix, suffix = name[:m.start()], name[m.end():]
            padding = int(m.group(2) or 0)
        self.prefix, self.suffix, self.padding = prefix, suffix, padding

    @property
    def is_sequence(self):
        return self.prefix is not None

    def path_for(self, frame):
        """The path of ``frame`` (the plain path itself when this is not a sequence)."""
        if not self.is_sequence:
            return self.text
        return os.path.join(self.folder, f"{self.prefix}{int(frame):0{self.padding}d}{self.suffix}")

    def frame_of(self, path):
        """The frame number ``path`` stands for under this pattern, or None if it does not match."""
        if not self.is_sequence:
            return None
        name = os.path.basename(os.fspath(path))
        if not (name.startswith(self.prefix) and name.endswith(self.suffix)):
            return None
        digits = name[len(self.prefix):len(name) - len(self.suffix)]
        if not re.fullmatch(r"-?\d+", digits):
            return None
        frame = int(digits)
        return frame if f"{frame:0{self.padding}d}" == digits else None

    def existing_frames(self):
        """Sorted frame numbers whose files exist on disk (empty when the folder is missing)."""
        if not self.is_sequence:
            return []
        try:
            names = os.listdir(self.folder or ".")
        except OSError:
            return []
        frames = {self.frame_of(n) for n in names}
        frames.discard(None)
        return sorted(frames)

    def with_suffix(self, ext):
        """The same pattern with the file extension replaced by ``ext`` (e.g. ``".png"``)."""
        root, _ = os.path.splitext(self.text)
        return FramePattern(root + ext)

    def __repr__(self):
        return f"FramePattern({self.text!r})"


def frame_from_name(path):
    """The frame number in a file name like ``shot.1001.exr`` or ``shot_0042.exr`` (the last run
    of digits before the extension), or None."""
    stem = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    m = re.search(r"(\d+)\D*$", stem)
    return int(m.group(1)) if m else None


def derived_path(path, *, tag="_dof", folder=None, ext=".exr"):
    """The name of a derived file beside ``path`` (or in ``folder``): ``tag`` goes before the
    frame number, so sequences stay sequences: ``shot.0042.exr`` -> ``shot_dof.0042.exr``,
    ``shot_0042.exr`` -> ``shot_dof_0042.exr``, ``still.exr`` -> ``still_dof.exr``."""
    src_folder, name = os.path.split(os.fspath(path))
    stem = os.path.splitext(name)[0]
    m = re.match(r"^(.*?)([._-]?)(-?\d+)$", stem)
    if m and m.group(1):
        new = f"{m.group(1)}{tag}{m.group(2)}{m.group(3)}{ext}"
    elif m:  # the name is only a number
        new = f"{tag.lstrip('_.-') or 'out'}{m.group(2) or '.'}{m.group(3)}{ext}"
    else:
        new = f"{stem}{tag}{ext}"
    return os.path.join(src_folder if folder is None else folder, new)


_NAME_FIELDS = re.compile(r"\{(\w*)\}")


def check_output_name(pattern, *, sequence=True):
    """:class:`UsageError` unless ``pattern`` is a usable output name pattern (see
    :func:`output_name`); ``sequence``: several frames will be named by it, so it needs the
    frame number."""
    text = str(pattern)
    if not text.strip():
        raise UsageError("the output name pattern is empty: e.g. {name}_dof.####.exr")
    if "/" in text or "\\" in text or (os.sep in text):
        raise UsageError(f"the output name pattern {text!r} must be a file name, not a path: "
                         f"choose the folder separately")
    unknown = [f for f in _NAME_FIELDS.findall(text) if f not in ("name", "frame")]
    if unknown:
        raise UsageError(f"the output name pattern {text!r} has an unknown field "
                         f"{{{unknown[0]}}}: use {{name}}, {{frame}} or #### (the frame, "
                         f"zero-padded)")
    if sequence and "{frame}" not in text and "#" not in text:
        raise UsageError(f"the output name pattern {text!r} has no frame number, so every frame "
                         f"would get the same name: add {{frame}} or ####")
    ext = os.path.splitext(text)[1].lower()
    if ext in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dpx", ".hdr", ".webp", ".bmp"):
        raise UsageError(f"the output name pattern {text!r} must end in .exr (or have no "
                         f"extension: .exr is added)")


def output_name(pattern, src, frame=None, ext=".exr"):
    """The output file name for input ``src`` at ``frame`` from a name ``pattern``:
    ``{name}`` is the input's name without its frame number and extension (``shot`` for
    ``shot.0042.exr``), ``{frame}`` the frame number (4 digits at least), a run of ``#`` the
    frame zero-padded to that many digits; ``.exr`` is added when missing. Without a frame
    number the frame fields are dropped (with the separator before them)."""
    check_output_name(pattern, sequence=False)
    stem = os.path.splitext(os.path.basename(os.fspath(src)))[0]
    m = re.match(r"^(.*?)[._-]?(-?\d+)$", stem)
    name = m.group(1) if m and m.group(1) else stem
    if frame is None:
        frame = frame_from_name(src)
    text = str(pattern)
    if text.lower().endswith(ext):
        text = text[:-len(ext)]
    if frame is None:
        text = re.sub(r"[._-]?(\{frame\}|#+)", "", text)
    else:
        sign = "-" if frame < 0 else ""
        text = text.replace("{frame}", f"{sign}{abs(int(frame)):04d}")
        text = re.sub(r"#+", lambda g: f"{sign}{abs(int(frame)):0{len(g.group())}d}", text)
    text = text.replace("{name}", name).strip()
    if not text.strip("._-"):
        raise UsageError(f"the output name pattern {pattern!r} gives an empty name for {src}")
    return text + ext


def frame_from_header(header):
    """The frame number an EXR header records (ours: ``zdepthFrame``; Blender's: ``Frame``),
    or None."""
    for key in ("zdepthFrame", "Frame"):
        try:
            return int(str((header or {})[key]).strip())
        except (KeyError, ValueError):
            pass
    return None




_RANGE = re.compile(r"^(-?\d+)(?:-(-?\d+))?(?:[x:](\d+))?$")


def parse_frames(text):
    """Parse a frame list: ``"1001-1048"``, ``"7"``, ``"1-10,20,30-40"``, with an optional step
    ``"1-100x5"`` (or ``"1-100:5"``). Returns the frames sorted, without duplicates.

    Raises :class:`UsageError` for anything else (descending ranges, zero step, garbage).
    """
    frames = set()
    items = [t.strip() for t in str(text).replace(" ", "").split(",")]
    if not any(items):
        raise UsageError("--frames is empty: give a range like 1001-1048 or a list like 1,5,9")
    for item in items:
        m = _RANGE.match(item)
        if not m:
            raise UsageError(f"--frames: cannot read {item!r}: use A-B (e.g. 1001-1048), a single "
                             f"frame, a list 1,5,9 or a step 1-100x5")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        step = int(m.group(3)) if m.group(3) is not None else 1
        if b < a:
            raise UsageError(f"--frames: range {item!r} runs backwards: write {b}-{a}")
        if step < 1:
            raise UsageError(f"--frames: the step in {item!r} must be at least 1")
        frames.update(range(a, b + 1, step))
    return sorted(frames)


def format_frames(frames):
    """Compact text for a frame list: ``[1, 2, 3, 7]`` -> ``"1-3,7"``."""
    frames = sorted(set(frames))
    parts, start, prev = [], None, None
    for f in frames + [None]:
        if start is not None and (f is None or f != prev + 1):
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if f is not None and start is None:
            start = f
        prev = f
    return ",".join(parts)


def chunk_frames(frames, size):
    """Split ``frames`` into consecutive chunks of at most ``size`` frames (for farm tasks)."""
    if size < 1:
        raise UsageError("the chunk size must be at least 1")
    frames = list(frames)
    return [frames[i:i + size] for i in range(0, len(frames), size)]


def same_file(a, b):
    """True when paths ``a`` and ``b`` name the same file (existing or not)."""
    a, b = os.fspath(a), os.fspath(b)
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))
