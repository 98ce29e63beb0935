"""Which channels of a file are the depth and the beauty: Blender's multilayer names
(``ViewLayer.Depth.Z``, ``ViewLayer.Combined.R``), Nuke's (``depth.Z``), plain ``R, G, B, A, Z``,
and the view layers a file holds."""

import fnmatch

#: Depth channel names tried in order (``*`` = a view layer / layer prefix).
DEPTH_PATTERNS = ("Z", "depth.Z", "*.Depth.Z", "*.depth.Z", "*.Depth.V", "*.depth.V", "depth.V",
                  "*.Z")

#: Beauty layer prefixes tried in order (``""`` = plain ``R,G,B,A``).
BEAUTY_PREFIXES = ("", "rgba", "*.Combined", "Combined", "Image", "*.Image", "beauty", "*.beauty")


def _match(pattern, name):
    if "*" not in pattern:
        return name == pattern
    return fnmatch.fnmatchcase(name, pattern) and "." in name


def find_depth_channel(names, *, layer=None, preferred=None):
    """The depth channel among ``names`` (``preferred`` first, then a layer's ``<layer>.Depth.Z``,
    then :data:`DEPTH_PATTERNS` in order); None when nothing matches."""
    names = list(names)
    if preferred and preferred in names:
        return preferred
    if layer:
        for suffix in ("Depth.Z", "depth.Z", "Depth.V", "Z"):
            if f"{layer}.{suffix}" in names:
                return f"{layer}.{suffix}"
    for pattern in DEPTH_PATTERNS:
        for name in names:
            if _match(pattern, name):
                return name
    return None


def find_beauty_channels(names, *, layer=None):
    """``[R, G, B, A-or-None]`` channel names of the beauty among ``names``, or None."""
    names = list(names)
    prefixes = ([f"{layer}.Combined", f"{layer}.Image", layer] if layer else []) \
        + list(BEAUTY_PREFIXES)
    for prefix in prefixes:
        if "*" in prefix:
            heads = sorted({n.rsplit(".", 1)[0] for n in names if "." in n},
                           key=lambda h: next(i for i, n in enumerate(names)
                                              if n.startswith(h + ".")))
            heads = [h for h in heads if fnmatch.fnmatchcase(h, prefix)]
        else:
            heads = [prefix]
        for head in heads:
            dot = f"{head}." if head else ""
            rgb = [f"{dot}{c}" for c in "RGB"]
            if all(c in names for c in rgb):
                alpha = f"{dot}A" if f"{dot}A" in names else None
                return rgb + [alpha]
    return None


def file_layers(names):
    """The layer names among channel ``names``: ``X`` of ``X.Depth.Z``, ``X.Combined.R``,
    ``X.R`` (three or more components: the layer is all but the last two)."""
    layers = []
    for n in names:
        bits = n.split(".")
        if len(bits) >= 3:
            layers.append(".".join(bits[:-2]))
        elif len(bits) == 2 and bits[1] in ("R", "G", "B", "A", "Z"):
            layers.append(bits[0])
    return list(dict.fromkeys(layers))

