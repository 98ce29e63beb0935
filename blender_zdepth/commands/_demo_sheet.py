"""The demo's pictures: labelled contact sheets of display images, drawn with a 5x7 bitmap font
(no font files, no imaging library). Used by the ``demo`` command and the quality benchmark."""

import numpy as np

# A 5x7 bitmap font for labels: each glyph is 7 rows of 5 bits (MSB = leftmost column).
_FONT = {
    "A": "0E 11 11 1F 11 11 11", "B": "1E 11 11 1E 11 11 1E", "C": "0E 11 10 10 10 11 0E",
    "D": "1E 11 11 11 11 11 1E", "E": "1F 10 10 1E 10 10 1F", "F": "1F 10 10 1E 10 10 10",
    "G": "0E 11 10 17 11 11 0F", "H": "11 11 11 1F 11 11 11", "I": "0E 04 04 04 04 04 0E",
    "J": "07 02 02 02 02 12 0C", "K": "11 12 14 18 14 12 11", "L": "10 10 10 10 10 10 1F",
    "M": "11 1B 15 15 11 11 11", "N": "11 11 19 15 13 11 11", "O": "0E 11 11 11 11 11 0E",
    "P": "1E 11 11 1E 10 10 10", "Q": "0E 11 11 11 15 12 0D", "R": "1E 11 11 1E 14 12 11",
    "S": "0F 10 10 0E 01 01 1E", "T": "1F 04 04 04 04 04 04", "U": "11 11 11 11 11 11 0E",
    "V": "11 11 11 11 11 0A 04", "W": "11 11 11 15 15 15 0A", "X": "11 11 0A 04 0A 11 11",
    "Y": "11 11 0A 04 04 04 04", "Z": "1F 01 02 04 08 10 1F",
    "0": "0E 11 13 15 19 11 0E", "1": "04 0C 04 04 04 04 0E", "2": "0E 11 01 02 04 08 1F",
    "3": "1F 02 04 02 01 11 0E", "4": "02 06 0A 12 1F 02 02", "5": "1F 10 1E 01 01 11 0E",
    "6": "06 08 10 1E 11 11 0E", "7": "1F 01 02 04 08 08 08", "8": "0E 11 11 0E 11 11 0E",
    "9": "0E 11 11 0F 01 02 0C", " ": "00 00 00 00 00 00 00", ".": "00 00 00 00 00 0C 0C",
    ",": "00 00 00 00 0C 04 08", "-": "00 00 00 1F 00 00 00", "/": "01 01 02 04 08 10 10",
    ":": "00 0C 0C 00 0C 0C 00", "=": "00 00 1F 00 1F 00 00", "(": "02 04 08 08 08 04 02",
    ")": "08 04 02 02 02 04 08", "+": "00 04 04 1F 04 04 00", "%": "18 19 02 04 08 13 03",
    "_": "00 00 00 00 00 00 1F", "'": "04 04 08 00 00 00 00", "?": "0E 11 01 02 04 00 04",
}


def draw_text(canvas, text, x, y, *, scale=2, color=(1.0, 1.0, 1.0)):
    """Draw ``text`` (upper-cased; unknown characters as ``?``) into ``canvas`` (HxWx3 float)
    with its top-left corner at ``(x, y)``; clipped at the canvas edges."""
    h, w = canvas.shape[:2]
    for i, ch in enumerate(text.upper()):
        rows = _FONT.get(ch, _FONT["?"]).split()
        gx = x + i * 6 * scale
        for r, hexrow in enumerate(rows):
            bits = int(hexrow, 16)
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
