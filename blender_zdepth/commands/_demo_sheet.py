"""The demo's pictures: labelled contact sheets of display images, drawn with a 5x7 bitmap font
(font5x7.txt beside this module; no imaging library). Used by the ``demo`` command and the
quality benchmark."""

import functools
import os

import numpy as np

#: The label font: 5x7 bitmaps in font5x7.txt beside this module (data, not code).
FONT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "font5x7.txt")


@functools.lru_cache(maxsize=1)
def _font():
    """``{character: 7 row bit masks}`` read from :data:`FONT_FILE`."""
    glyphs = {}
    with open(FONT_FILE, encoding="utf-8") as fh:
        for line in fh:
            if line.strip() and not line.startswith("#"):
                name, *rows = line.split()
                glyphs[" " if name == "space" else name] = [int(r, 16) for r in rows]
    return glyphs


def draw_text(canvas, text, x, y, *, scale=2, color=(1.0, 1.0, 1.0)):
    """Draw ``text`` (upper-cased; unknown characters as ``?``) into ``canvas`` (HxWx3 float)
    with its top-left corner at ``(x, y)``; clipped at the canvas edges."""
    h, w = canvas.shape[:2]
    font = _font()
    for i, ch in enumerate(text.upper()):
        gx = x + i * 6 * scale
        for r, bits in enumerate(font.get(ch, font["?"])):
            for c in range(5):
                if bits & (0x10 >> c):
                    y0, x0 = y + r * scale, gx + c * scale
                    if 0 <= y0 < h and 0 <= x0 < w:
                        canvas[y0:y0 + scale, x0:x0 + scale] = color
    return canvas


def contact_sheet(tiles, labels=None, *, columns=None, gap=6, label_scale=2,
                  background=(0.08, 0.08, 0.08)):
    """Lay out display images (``HxWx3`` floats in 0..1, all the same size) in a grid with a
    label strip above each; return the sheet as ``HxWx3`` float32.
    """
    if not tiles:
        raise ValueError("contact_sheet needs at least one tile")
    th, tw = tiles[0].shape[:2]
    for t in tiles:
        if t.shape[:2] != (th, tw):
            raise ValueError(f"contact sheet tiles differ in size: {t.shape[:2]} vs {(th, tw)}")
    columns = columns or len(tiles)
    rows = -(-len(tiles) // columns)
    label_h = (9 * label_scale) if labels else 0
    cell_h, cell_w = th + label_h + gap, tw + gap
    sheet = np.empty((rows * cell_h + gap, columns * cell_w + gap, 3), np.float32)
    sheet[:] = background
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        y, x = gap + r * cell_h, gap + c * cell_w
        if labels:
            draw_text(sheet, labels[i], x, y, scale=label_scale)
        sheet[y + label_h:y + label_h + th, x:x + tw] = tile[..., :3]
    return sheet


__all__ = ["contact_sheet", "draw_text"]
