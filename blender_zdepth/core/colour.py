"""Colour management for pictures people look at: scene-linear colour to display values the way
Blender shows it, with OpenColorIO and Blender's own config (no hand-written tone curves).

A :class:`ColourSettings` holds what Blender's Color Management panel says -- display device,
view transform, look, exposure, gamma -- plus the OpenColorIO config and the scene-linear
(working) colour space. Our exports record them in the header at render time (:data:`HEADER_KEYS`,
``zdepthDisplayDevice`` ...), refocused files keep them, and the command line may override each
(``dof --view/--look/--exposure/--gamma/--display/--ocio-config``).

:func:`display_transform` builds the same chain as Blender's display processor: exposure as a
scale in scene-linear, the look (into the look's result colour space), the display/view
transform, then the display gamma as an exponent ``1/gamma`` on display values.

Where PyOpenColorIO comes from (:func:`ocio_module`): an importable ``PyOpenColorIO`` (inside
Blender; the PyPI package ``opencolorio`` elsewhere), else the copy bundled in the ``bpy``
module's wheel (``bpy/<version>/python/lib/python3.*/site-packages``, not on ``sys.path`` of the
module build) -- found by the package's location on disk, without importing ``bpy``, which keeps
this module free of Blender. The default config (:func:`default_config`) is found the same way.

The plain sRGB transfer (``--view-transform Standard`` on an sRGB display, no look) needs no OpenColorIO:
Blender's config defines that view as the sRGB transfer function, so
:func:`linear_to_srgb` gives the same values.
"""

import dataclasses
import functools
import glob
import importlib.util
import math
import os
import sys

import numpy as np

from .errors import UsageError

#: Header attribute of each setting (written by the Blender side at render time).
HEADER_KEYS = {
    "display": "zdepthDisplayDevice",
    "view": "zdepthViewTransform",
    "look": "zdepthLook",
    "exposure": "zdepthExposure",
    "gamma": "zdepthGamma",
    "config": "zdepthOcioConfig",
    "working_space": "zdepthWorkingSpace",
}

#: Blender's defaults for a new scene (sRGB display, AgX view, no look): used for a file whose
#: header records nothing (a plain Blender render), where the config has them.
BLENDER_DISPLAY, BLENDER_VIEW = "sRGB", "AgX"

_NO_LOOK = ("", "none")
_MISSING = ("PyOpenColorIO is needed for the {view!r} view transform: install it "
            "('pip install opencolorio') or run with Blender's bpy module, or ask for plain sRGB "
            "with --view-transform Standard")


@dataclasses.dataclass(frozen=True)
class ColourSettings:
    """Blender's colour management of a picture; None = not said (taken from elsewhere, see
    :meth:`over`). ``look`` ``"None"`` or ``""`` is no look; ``exposure`` in stops; ``gamma``
    the display gamma (1 = none); ``config`` the path of an OpenColorIO config;
    ``working_space`` the colour space of the file's scene-linear colour (default: the config's
    ``scene_linear`` role)."""

    display: str = None
    view: str = None
    look: str = None
    exposure: float = None
    gamma: float = None
    config: str = None
    working_space: str = None

    def over(self, other):
        """These settings, with what they leave unsaid (None) taken from ``other``."""
        if other is None:
            return self
        return dataclasses.replace(self, **{
            f.name: getattr(other, f.name) for f in dataclasses.fields(self)
            if getattr(self, f.name) is None})

    def to_header(self):
        """The header attributes of the settings that are given (see :data:`HEADER_KEYS`)."""
        out = {}
        for name, key in HEADER_KEYS.items():
            value = getattr(self, name)
            if value is not None:
                out[key] = float(value) if name in ("exposure", "gamma") else str(value)
        return out

    @classmethod
    def from_header(cls, header):
        """The settings a header records (None where it records nothing)."""
        header = header or {}
        values = {}
        for name, key in HEADER_KEYS.items():
            value = header.get(key)
            if value is None:
                continue
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if name in ("exposure", "gamma"):
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    continue
            values[name] = value
        return cls(**values)

    @property
    def has_look(self):
        return self.look is not None and str(self.look).strip().lower() not in _NO_LOOK

    def is_plain_srgb(self):
        """True for the plain sRGB transfer: view Standard on the sRGB display, no look (exposure
        and gamma apart), which needs no OpenColorIO."""
        return (self.view == "Standard" and self.display in (None, "sRGB")
                and not self.has_look)

    def describe(self):
        """``view AgX, display sRGB, look ..., exposure +1, gamma 2``: what is said (a look,
        exposure or gamma that changes nothing is left out)."""
        parts = [f"{name} {value}" for name, value in (("view", self.view),
                                                         ("display", self.display))
                 if value is not None]
        if self.has_look:
            parts.append(f"look {self.look}")
        if self.exposure:
            parts.append(f"exposure {self.exposure:+g}")
        if self.gamma not in (None, 1.0):
            parts.append(f"gamma {self.gamma:g}")
        return ", ".join(parts)


def check_settings(settings):
    """:class:`UsageError` for values no picture can have (a gamma of 0, a NaN exposure)."""
    if settings.gamma is not None and not (settings.gamma > 0 and math.isfinite(settings.gamma)):
        raise UsageError(f"--gamma must be a positive number, not {settings.gamma:g}")
    if settings.exposure is not None and not math.isfinite(settings.exposure):
        raise UsageError(f"--exposure must be a finite number of stops, not {settings.exposure}")
    return settings


# -- where OpenColorIO and Blender's config are ---------------------------------------------------

def _bpy_folder():
    """The installed ``bpy`` package's folder, found without importing it (None without one)."""
    try:
        spec = importlib.util.find_spec("bpy")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    places = list(spec.submodule_search_locations or [])
    if not places and spec.origin:
        places = [os.path.dirname(spec.origin)]
    return places[0] if places else None


def _bpy_resources():
    """``bpy.utils.resource_path('LOCAL')`` of the installed bpy module (``bpy/<version>``),
    newest version first; [] without one. Inside Blender itself, ``bpy.utils`` is asked."""
    found = []
    bpy = sys.modules.get("bpy")
    utils = getattr(bpy, "utils", None) if bpy is not None else None
    if utils is not None and hasattr(utils, "resource_path"):
        try:
            found.append(utils.resource_path("LOCAL"))
        except Exception:  # a stub or an odd build: look on disk instead
            pass
    folder = _bpy_folder()
    if folder:
        found += sorted(glob.glob(os.path.join(folder, "[0-9]*.[0-9]*")), reverse=True)
    return [p for p in found if p and os.path.isdir(p)]


@functools.lru_cache(maxsize=1)
def ocio_module():
    """The PyOpenColorIO module, or None when neither an importable one nor the bpy wheel's copy
    exists. The bpy wheel's folder goes on ``sys.path`` only while importing it."""
    try:
        import PyOpenColorIO
        return PyOpenColorIO
    except ImportError:
        pass
    for resources in _bpy_resources():
        for site in sorted(glob.glob(os.path.join(resources, "python", "lib", "python3*",
                                                  "site-packages")), reverse=True):
            if not os.path.isdir(os.path.join(site, "PyOpenColorIO")):
                continue
            sys.path.insert(0, site)
            try:
                import PyOpenColorIO
                return PyOpenColorIO
            except ImportError:  # built for another Python: try the next
                sys.modules.pop("PyOpenColorIO", None)
            finally:
                sys.path.remove(site)
    return None


def blender_config():
    """Blender's own ``config.ocio`` shipped with the bpy module (or the running Blender), or
    None."""
    for resources in _bpy_resources():
        path = os.path.join(resources, "datafiles", "colormanagement", "config.ocio")
        if os.path.isfile(path):
            return path
    return None


def default_config(recorded=None):
    """The OpenColorIO config to use: ``recorded`` (the header's config, of the Blender that
    rendered the frame) when it exists here, else ``$OCIO``, else Blender's config of the bpy
    module (:func:`blender_config`); None when there is none."""
    if recorded and os.path.isfile(recorded):
        return recorded
    env = os.environ.get("OCIO")
    if env and os.path.isfile(env):
        return env
    return blender_config()


# -- the transform --------------------------------------------------------------------------------

def resolve(overrides=None, header=None):
    """The settings of a picture: ``overrides`` (command line, or the scene in Blender) over what
    ``header`` records, the rest Blender's defaults (sRGB, AgX, no look, exposure 0, gamma 1)
    where the config has them. The config path is resolved with :func:`default_config`; names are
    checked against the config when OpenColorIO is needed (:func:`display_transform`)."""
    recorded = ColourSettings.from_header(header)
    given = overrides or ColourSettings()
    settings = given.over(dataclasses.replace(recorded, config=None)).over(
        ColourSettings(look="None", exposure=0.0, gamma=1.0))
    config = given.config or default_config(recorded.config)
    return dataclasses.replace(settings, config=config)


@functools.lru_cache(maxsize=16)
def _config(path):
    ocio = ocio_module()
    try:
        return ocio.Config.CreateFromFile(path)
    except Exception as exc:
        raise UsageError(f"cannot read the OpenColorIO config {path}: {exc}") from None


def _pick(name, choices, what, fallback):
    if name is None:
        return fallback
    if name not in choices:
        raise UsageError(f"the OpenColorIO config has no {what} {name!r} (it has: "
                         f"{', '.join(choices)})")
    return name


def _complete(settings):
    """``settings`` with display and view filled in from the config (Blender's defaults, else
    the config's) and the names checked. Needs OpenColorIO."""
    config = _config(settings.config)
    displays = list(config.getDisplays())
    default = BLENDER_DISPLAY if BLENDER_DISPLAY in displays else config.getDefaultDisplay()
    display = _pick(settings.display, displays, "display device", default)
    views = list(config.getViews(display))
    default = BLENDER_VIEW if BLENDER_VIEW in views else config.getDefaultView(display)
    view = _pick(settings.view, views, f"view transform for the {display} display", default)
    if settings.has_look:
        _pick(settings.look, [lk.getName() for lk in config.getLooks()], "look", None)
    space = settings.working_space
    if space is not None and config.getColorSpace(space) is None:
        space = None  # recorded by another config: the scene-linear role is the best guess
    return dataclasses.replace(settings, display=display, view=view, working_space=space)


def display_transform(settings):
    """The OpenColorIO ``GroupTransform`` Blender's display processor builds for ``settings``
    (complete: see :func:`resolve`): exposure as a scale in scene-linear, the look, the display
    and view, then the display gamma (an exponent ``1/gamma`` on display values)."""
    ocio = ocio_module()
    config = _config(settings.config)
    group = ocio.GroupTransform()
    source = settings.working_space or ocio.ROLE_SCENE_LINEAR
    scale = 2.0 ** float(settings.exposure or 0.0)
    if scale != 1.0:
        group.appendTransform(ocio.MatrixTransform(
            [scale, 0, 0, 0, 0, scale, 0, 0, 0, 0, scale, 0, 0, 0, 0, 1]))
    use_look = False
    if settings.has_look:
        # OpenColorIO's GetLooksResultColorSpace (not in its Python API): the process space of
        # the (last) look
        last = str(settings.look).split(",")[-1].strip().lstrip("+-")
        found = config.getLook(last)
        result = found.getProcessSpace() if found is not None else ""
        if result:  # a look of no colour space changes nothing (as Blender)
            group.appendTransform(ocio.LookTransform(src=source, dst=result,
                                                     looks=settings.look))
            source, use_look = result, True
    group.appendTransform(ocio.DisplayViewTransform(
        src=source, display=settings.display, view=settings.view, looksBypass=use_look))
    gamma = float(settings.gamma or 1.0)
    if gamma != 1.0:
        e = 1.0 / gamma
        group.appendTransform(ocio.ExponentTransform([e, e, e, 1.0]))
    return group


@functools.lru_cache(maxsize=16)
def _processor(settings):
    config = _config(settings.config)
    try:
        return config.getProcessor(display_transform(settings)).getDefaultCPUProcessor()
    except Exception as exc:  # OpenColorIO's own message names what is wrong
        raise UsageError(f"OpenColorIO cannot build the display transform ({settings.describe()}"
                         f"): {exc}") from None


def needs_ocio(settings):
    return not settings.is_plain_srgb()


def complete(settings):
    """``settings`` (from :func:`resolve`) ready to apply: names filled in and checked against
    the config. Plain sRGB needs neither OpenColorIO nor a config; anything else raises
    :class:`UsageError` (one line) when PyOpenColorIO or the config is missing."""
    check_settings(settings)
    if not needs_ocio(settings):
        return dataclasses.replace(settings, display=settings.display or "sRGB")
    if ocio_module() is None:
        raise UsageError(_MISSING.format(view=settings.view or BLENDER_VIEW))
    if not settings.config:
        raise UsageError("no OpenColorIO config found for the view transform: give "
                         "--ocio-config (Blender's datafiles/colormanagement/config.ocio), set "
                         "$OCIO, or ask for plain sRGB with --view-transform Standard")
    return _complete(settings)


def linear_to_srgb(values):
    """Scene-linear values to the sRGB display transfer (clipped to 0..1), float32: the sRGB
    standard's own piecewise curve (Blender's Standard view on the sRGB display)."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * np.power(v, 1.0 / 2.4) - 0.055).astype(
        np.float32)


def apply(rgb, settings):
    """Scene-linear ``HxWx3`` float colour (straight, not premultiplied) to display values
    (``HxWx3`` float32, clipped to 0..1) with ``settings`` (from :func:`complete`)."""
    out = np.array(rgb, dtype=np.float32, copy=True, order="C")
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    if not needs_ocio(settings):
        # Blender's Standard view: the sRGB transfer after the exposure, then the gamma
        out *= np.float32(2.0 ** float(settings.exposure or 0.0))
        out = linear_to_srgb(out)
        gamma = float(settings.gamma or 1.0)
        if gamma != 1.0:
            out = np.power(out, np.float32(1.0 / gamma))
        return out
    _processor(settings).applyRGB(out)
    return np.clip(out, 0.0, 1.0)
