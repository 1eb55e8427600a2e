"""A contact sheet: every image the model will see, in model order, with its label, on one PNG.

It is for the person checking a prepared input at a glance (did the right slices, windows or tiles
get chosen?), not for the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from aris.inputs.base import PreparedInput

CELL = 256  # thumbnail side
LABEL_H = 22  # label strip under each thumbnail
GAP = 4
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)


def contact_sheet(
    source: PreparedInput | Sequence[Image.Image | np.ndarray],
    labels: Sequence[str] | None = None,
    *,
    cell: int = CELL,
    columns: int | None = None,
) -> Image.Image:
    """Thumbnails in a grid, row-major in model order, each with its label drawn beneath.

    ``columns`` defaults to a near-square grid (10 for 85 CT slices, 12 for 126 tiles). Aspect
    ratios are kept inside each cell; the model itself sees every image stretched to 896x896.
    """
    return Image.fromarray(contact_sheet_array(source, labels, cell=cell, columns=columns), "RGB")


def contact_sheet_array(
    source: PreparedInput | Sequence[Image.Image | np.ndarray],
    labels: Sequence[str] | None = None,
    *,
    cell: int = CELL,
    columns: int | None = None,
) -> np.ndarray:
    """:func:`contact_sheet` as an (H, W, 3) uint8 array.

    The sheet is composed in numpy, a label strip at a time, because a Pillow RGB image holds four
    bytes a pixel and handing it to an encoder copies it again: for 85 CT slices that was 45 MB more
    at the peak of ``aris prepare`` than this 20 MB array.
    """
    images: list[Image.Image | np.ndarray]
    if isinstance(source, PreparedInput):
        images, labels = list(source.arrays), labels if labels is not None else source.labels
    else:
        images = list(source)
    labels = list(labels) if labels is not None else [f"IMAGE {i}" for i in range(1, len(images) + 1)]
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    # one thumbnail at a time: the sheet is drawn from the images as they are held
    return compose((thumbnail(img, cell) for img in images), labels, cell=cell, columns=columns)


def thumbnail(image: Image.Image | np.ndarray, cell: int = CELL) -> np.ndarray:
    """``image`` fitted inside a ``cell`` x ``cell`` square, aspect kept, as an (h, w, 3) uint8 array.

    Small images (16x16 test series, 33x41 NIfTI) are enlarged with nearest-neighbour so their pixels
    stay honest; large images are shrunk smoothly.
    """
    pic = Image.fromarray(image, "RGB") if isinstance(image, np.ndarray) else image.convert("RGB")
    resample = Image.Resampling.NEAREST if max(pic.size) < cell else Image.Resampling.BILINEAR
    return np.asarray(ImageOps.contain(pic, (cell, cell), method=resample))


def compose(
    thumbs: Iterable[np.ndarray], labels: Sequence[str], *, cell: int = CELL, columns: int | None = None
) -> np.ndarray:
    """Thumbnails (from :func:`thumbnail`, one per label, consumed in order) in a grid, each centred in
    its cell with its label beneath, as an (H, W, 3) uint8 array."""
    if not labels:
        raise ValueError("no images to put on a contact sheet")
    h, w, cols = _grid(len(labels), cell, columns)
    sheet = np.empty((h, w, 3), np.uint8)
    sheet[...] = BACKGROUND
    strip = Image.new("RGB", (cell, LABEL_H), BACKGROUND)
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default(size=max(10, LABEL_H - 8))
    for i, (thumb, label) in enumerate(zip(thumbs, labels, strict=True)):
        r, c = divmod(i, cols)
        x = GAP + c * (cell + GAP)
        y = GAP + r * (cell + LABEL_H + GAP)
        tx, ty = x + (cell - thumb.shape[1]) // 2, y + (cell - thumb.shape[0]) // 2
        sheet[ty : ty + thumb.shape[0], tx : tx + thumb.shape[1]] = thumb
        draw.rectangle((0, 0, cell, LABEL_H), fill=BACKGROUND)
        draw.text((2, 3), _fit(draw, label, font, cell), fill=TEXT, font=font)
        sheet[y + cell : y + cell + LABEL_H, x : x + cell] = np.asarray(strip)
    return sheet


def sheet_pixels(n: int, cell: int = CELL, columns: int | None = None) -> int:
    """Pixels of the sheet for ``n`` images."""
    h, w, _ = _grid(n, cell, columns)
    return h * w


def _grid(n: int, cell: int, columns: int | None) -> tuple[int, int, int]:
    """(height, width, columns) of the sheet for ``n`` images: a near-square grid by default."""
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    return rows * (cell + LABEL_H) + (rows + 1) * GAP, cols * cell + (cols + 1) * GAP, cols


def _fit(
    draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int
) -> str:
    """The label, shortened with an ellipsis to fit under its thumbnail."""
    if draw.textlength(text, font=font) <= width - 4:
        return text
    while text and draw.textlength(text + "…", font=font) > width - 4:
        text = text[:-1]
    return text + "…"
