"""Depth of field on a rendered frame: a layered, occlusion-aware lens blur (numpy only).

Input: premultiplied RGBA ``float32 (H, W, 4)`` and planar depth ``float32 (H, W)`` (``+inf`` or
Cycles' 1e10 for background), a :class:`~blender_zdepth.core.lens.Lens` and
:class:`DofSettings`.  Output: premultiplied RGBA ``float32 (H, W, 4)``.

How it works (see ``docs/dof-engine.md`` for the user's view):

1. Every pixel gets a signed circle-of-confusion radius ``r`` (pixels, negative in front of the
   focal plane) from the lens (:mod:`..lens`, Cycles' camera model).  The frame is padded by the
   largest radius so borders blur like the picture continued: radii and colours repeated from
   the edge, except small highlights on the edge (they would pour a streak of light back in).
2. *Mixed edge pixels.*  Blender's depth comes from one sample while the colour is
   anti-aliased, so a pixel on a depth edge holds two surfaces' colours under one depth.  Such a
   pixel is split into two samples -- the part that looks like the near neighbours, at their
   radius, and the part that looks like the far neighbours, at theirs -- with coverages that add
   up to one, so neither halo nor rim is left behind.  A depth that dithers (Cycles writes Z
   from one sample: in a motion trail each pixel is the moving object or what is behind it,
   at random) is read as coverage instead: each such pixel is shared between the two
   surfaces by their share of the depths around it.  Samples that cover pixels partly can
   also come from the caller (``defocus(..., layers=...)``: depth slabs, deep samples), each
   blurred at its own depth (:mod:`.coverage`).
3. *Hidden surfaces.*  Blurred foreground pixels in front of their surroundings ("occluders")
   hide what a lens sees around them.  A push-pull fill of the surfaces behind (the nearest
   wins) invents that hidden surface as an extra sample behind each occluder.  It only shows
   where the blurred occluder turns see-through.  Where the caller gives real hidden surfaces
   (``defocus(..., hidden=...)``: depth-peeled renders, deep samples), those are used instead.
4. *Layers.*  Samples are assigned softly (linear weights) to layers of signed radius: 0 (the
   focal plane, copied untouched), fine 0.5 px steps near focus, steps growing with the radius,
   and layers snapped onto radii many pixels share.  Each layer (premultiplied colour and
   coverage) is convolved with the aperture -- a disk, or a polygon with N blades, optionally
   squeezed (anamorphic), mirrored in front of the focal plane -- by FFT on the tiles it
   occupies, with a small direct kernel, or (sparse layers) by splatting its samples, whichever
   is estimated cheapest.  Layers with large radii are
   processed at reduced resolution (a radius-32 blur needs no pixel detail), except their small
   highlights ("sparkles"), which are blurred at (nearly) full resolution so that bokeh disks
   keep crisp edges.
5. *Compositing*, near to far, by coverage budget: each layer takes the share of the pixel that
   the nearer layers left free (``min(1, S + a) - S``).  A surface split over two neighbouring
   layers thus adds up instead of hiding itself (which a product of "over" operations would
   do).  Coverage still missing at the end (a blurred background reaching behind a sharp edge:
   disocclusion) is filled with the farthest layers' own colour, else normalised.

The stages, one module each, in the order :mod:`.pipeline` runs them: :mod:`.coverage` (the
caller's ``layers``, if any), :mod:`.prepare`, :mod:`.edges`, :mod:`.hidden`, :mod:`.assign`,
:mod:`.content`, :mod:`.convolve`, :mod:`.composite`; beside them :mod:`.settings`,
:mod:`.schedule` (threads, memory in flight, timing), :mod:`.samples`, :mod:`.aperture`,
:mod:`.resample` and :mod:`.views` (focus picking, the focal-plane view).  Imports go one way, from the pipeline down to the helpers.
"""

from .aperture import aperture_kernel
from .assign import layer_radii
from .pipeline import defocus
from .schedule import TIMING
from .settings import QUALITIES, DofSettings
from .views import focal_plane_view, focus_from_pixel

__all__ = ["QUALITIES", "TIMING", "DofSettings", "aperture_kernel", "defocus", "focal_plane_view",
           "focus_from_pixel", "layer_radii"]
