"""Lossless PNGs of what the model sees (``aris prepare``, the demo's artefacts).

The zlib level, strategy and row filter were chosen by measurement (bench/decode_pool.py, CPU time
and bytes) on the 85 synthetic CT slices of bench/prep_ct.py and on real pixels from the test data:
20 CT frames, 20 MRI slices and a contact sheet. libpng at level 1 with the PAETH filter and zlib's
RLE strategy takes 321 / 58 / 13 / 99 ms for 10.9 / 2.0 / 0.9 / 4.0 MiB, where the earlier choice
(level 1, SUB, the default strategy) took 340 / 59 / 15 / 112 ms for 12.0 / 2.3 / 0.7 / 4.9 MiB: as
fast or faster everywhere, smaller but for the MRI. Pillow's level 1 (an adaptive filter per row) is
about twice as slow; higher levels buy 5-10% of bytes for 20% or more of time. libpng (through
imagecodecs) releases the GIL, so several PNGs encode at once on threads.
"""

from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image

PNG_LEVEL = 1
PNG_FILTER = imagecodecs.PNG.FILTER.PAETH
PNG_STRATEGY = imagecodecs.PNG.STRATEGY.RLE


def png_bytes(image: Image.Image | np.ndarray) -> bytes:
    """``image`` (a Pillow image, or an (H, W, 3) uint8 array) as the bytes of an RGB PNG."""
    if isinstance(image, Image.Image):
        image = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    return bytes(imagecodecs.png_encode(image, level=PNG_LEVEL, filter=PNG_FILTER, strategy=PNG_STRATEGY))


def write_png(image: Image.Image | np.ndarray, path: Path) -> None:
    """``image`` as an RGB PNG at ``path`` (see :func:`png_bytes`)."""
    path.write_bytes(png_bytes(image))
