"""Refocusing frames from plans read out of a Blender scene: plain, picklable values (no bpy).

Blender's Apply (:mod:`blender_zdepth.blender.refocus.batch`) reads the scene on the main thread --
each frame's camera (focus, f-stop, lens, aperture) at that frame's time -- into a
:class:`FramePlan` per frame. From there on nothing needs Blender: :class:`PlannedRefocus` is a
task ``task(job) -> info`` for :class:`~blender_zdepth.core.batch.jobs.SequenceRun` (one frame
after another, in a thread) or :class:`~blender_zdepth.core.batch.workers.ParallelRun` (several
frames at once in worker processes, which get a pickled copy). The live preview uses
:class:`LensPlan` the same way in its worker thread.
"""

import dataclasses

from ..errors import ZDepthError
from ..lens import Lens
from .focus import pixel_focus
from .frame import refocus_frame

@dataclasses.dataclass
class LensPlan:
    """The lens of one frame: ``values`` (the :class:`~blender_zdepth.core.lens.Lens` fields but
    the focus distance) and either a focus distance ``focus`` (with its ``source`` text) or a
    ``pixel`` ``(x, y)`` counted from the bottom left, whose depth is looked up in the loaded
    frame. Call it with the loaded frame (anything with a ``depth`` array; only needed for
    pixel focus): returns ``(Lens, focus_source)``."""

    values: dict
    focus: float = None
    source: str = ""
    pixel: tuple = None

    def __call__(self, loaded=None):
        if self.pixel is None:
            return Lens(focus_distance=self.focus, **self.values), self.source
        if loaded is None:
            raise ZDepthError("focus on a pixel needs the frame's depth")
        # The panel counts display-window pixels from the bottom left (as Blender's Image Editor
        # shows them), as the command line's --focus-pixel does.
        x, y = self.pixel
        width, height = getattr(loaded, "display_size", None) or loaded.depth.shape[::-1]
        if not (0 <= x < width and 0 <= y < height):  # say it in the panel's own coordinates
            raise ZDepthError(f"focus pixel {x},{y} (from the bottom left) is outside the "
                              f"{width}x{height} frame: pick it again or change Pixel in the "
                              f"Depth of Field panel")
        picked = pixel_focus(loaded, x, y,
                             remedy="choose another Focus in the Depth of Field panel")
        return Lens(focus_distance=picked, **self.values), f"pixel {x},{y}"


@dataclasses.dataclass
class FramePlan:
    """One frame's plan: its :class:`LensPlan`, its engine settings
    (:class:`~blender_zdepth.core.dof.DofSettings`, the aperture of that frame) and whether
    the camera's own depth of field was on (used when the file's header does not say)."""

    lens: LensPlan
    settings: object
    camera_dof: bool = False


class PlannedRefocus:
    """``task(job) -> info``: refocus a :class:`~blender_zdepth.core.batch.jobs.FrameJob` with the
    plan of its frame (``plans``: ``{frame: FramePlan}``), writing atomically as
    :func:`~blender_zdepth.core.refocus.frame.refocus_frame` does. Picklable (worker processes).

    ``info`` gets ``double_dof`` (True when the render already had the camera's depth of field,
    by the file's header or else the plan's ``camera_dof``: the output's header then carries
    :data:`~.frame.DOUBLE_DOF_KEY`) and, with ``keep_result``, the
    refocused ``rgba``. ``diagnostic``, ``layer``, ``deep``, ``multilayer``: as for
    ``refocus_frame``.

    A job of one view of a stereo / multi-view render (``job.view``) uses the plan
    ``plans[(frame, view)]`` when there is one (that view's camera), else ``plans[frame]``;
    with ``read_view`` it reads that view of a multi-view input (Blender's own multi-view EXR),
    else the input holds that view alone (our per-view exports). ``colour``: the
    :class:`~blender_zdepth.core.colour.ColourSettings` of the PNGs (the scene's)."""

    def __init__(self, plans, diagnostic=False, layer=None, keep_result=False, deep=None,
                 multilayer=False, read_view=False, colour=None):
        self.plans = dict(plans)
        self.diagnostic = diagnostic
        self.layer = layer
        self.keep_result = keep_result
        self.deep = deep
        self.multilayer = multilayer
        self.read_view = read_view
        self.colour = colour
        self.state = {}  # the sequence's frame size, once the first frame is loaded

    def with_settings(self, change):
        """A copy whose every frame's settings are ``change(settings)``."""
        other = PlannedRefocus({}, self.diagnostic, self.layer, self.keep_result, self.deep,
                               self.multilayer, self.read_view, self.colour)
        other.plans = {f: dataclasses.replace(p, settings=change(p.settings))
                       for f, p in self.plans.items()}
        other.state = dict(self.state)
        return other

    def __call__(self, job):
        view = getattr(job, "view", None)
        plan = self.plans.get((job.frame, view)) if view is not None else None
        plan = plan if plan is not None else self.plans[job.frame]
        def lens_for(frame, loaded):
            return plan.lens(loaded)

        kwargs = {"deep": self.deep} if self.deep is not None else {}
        if self.read_view and view is not None:
            kwargs["view"] = view
        info = refocus_frame(job, lens_for, plan.settings, diagnostic=self.diagnostic,
                             state=self.state, keep_result=self.keep_result, layer=self.layer,
                             multilayer=self.multilayer, colour=self.colour,
                             camera_dof=plan.camera_dof, **kwargs)
        return info
