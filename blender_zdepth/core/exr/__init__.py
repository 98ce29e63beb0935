"""OpenEXR files through the official OpenEXR Python bindings (imported lazily, when a file is
read or written).

Reading understands what Blender writes -- multilayer EXR (Blender 5.0: one part per pass,
``ViewLayer.Combined`` and ``ViewLayer.Depth``; 4.x: one part), several view layers, stereo and
multi-view files, single-part ``R,G,B,A`` + ``Z`` -- and our own files, whose header says how the
depth is encoded (``zdepth*`` attributes, see :mod:`blender_zdepth.core.encodings`). Writing makes
single-part scanline files (flat) or deep scanline files, lossless, atomically.

Modules, one way (each imports only those above it):

* :mod:`.scan` -- the sizes a file declares, checked before anything is allocated (hostile
  headers);
* :mod:`.binding` -- the bindings' plumbing: thread pool, captured messages, windows, codecs,
  the one guarded atomic write, :func:`open_file` (also for attributes the bindings refuse);
* :mod:`.parts` -- parts and views, from the headers;
* :mod:`.channels` -- which channels are the depth and the beauty, the view layers;
* :mod:`.flat` -- flat images: :func:`read_exr`, :func:`write_exr`, :func:`write_depth_exr`,
  :func:`place_in_frame` (a cropped render placed in its full frame);
* :mod:`.deep` -- deep files: :func:`read_deep`, :func:`write_deep_exr`, :func:`is_deep`.

A rendered frame as the depth-of-field engine's input (beauty + depth, flat or deep) is
:func:`blender_zdepth.core.frame.load_frame`.
"""

from .binding import LOSSLESS_CODECS, LOSSY_CODECS, STRUCTURAL, UnreadableAttribute, codec_enum, \
    io_threads, open_file, set_io_threads, unreadable_attributes
from .channels import BEAUTY_PREFIXES, DEPTH_PATTERNS, file_layers, find_beauty_channels, \
    find_depth_channel
from .deep import is_deep, read_deep, write_deep_exr
from .flat import DeepFileError, ExrImage, encode_for_file, place_in_frame, read_exr, \
    write_depth_exr, write_exr
from .parts import NAMED_VIEWS, ExrPart, channel_names, describe_views, read_layout
from .scan import check_file

__all__ = [
    "BEAUTY_PREFIXES", "DEPTH_PATTERNS", "LOSSLESS_CODECS", "LOSSY_CODECS", "NAMED_VIEWS",
    "STRUCTURAL", "DeepFileError", "UnreadableAttribute", "ExrImage", "ExrPart", "channel_names",
    "check_file", "codec_enum",
    "describe_views", "encode_for_file", "file_layers", "find_beauty_channels",
    "find_depth_channel", "io_threads", "is_deep", "open_file", "place_in_frame", "read_deep",
    "read_exr", "read_layout", "set_io_threads", "unreadable_attributes", "write_deep_exr",
    "write_depth_exr", "write_exr",
]
