"""Lossless PNGs of what the model sees (``aris prepare``, the demo's artefacts).

The zlib level and row filter were chosen by measurement on 85 CT slices of 512x512
(bench/decode_pool.py): libpng at level 1 with the SUB filter writes them in 0.48 s of CPU for
19.9 MB, where Pillow's level 1 (an adaptive filter per row) takes 0.90 s for 20.0 MB; level 2 saves 6%
of the bytes for 20% more time, level 3 12% for 2.8x; the other single filters are no smaller, and
level 0 (stored) is 3.8x larger. libpng (through imagecodecs) releases the GIL, so several PNGs encode
at once on threads.
"""

from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image

PNG_LEVEL = 1
PNG_FILTER = imagecodecs.PNG.FILTER.SUB


def png_bytes(image: Image.Image | np.ndarray) -> bytes:
    """``image`` (a Pillow image, or an (H, W, 3) uint8 array) as the bytes of an RGB PNG."""
    if isinstance(image, Image.Image):
        image = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    return bytes(imagecodecs.png_encode(image, level=PNG_LEVEL, filter=PNG_FILTER))


def write_png(image: Image.Image | np.ndarray, path: Path) -> None:
    """``image`` as an RGB PNG at ``path`` (see :func:`png_bytes`)."""
    path.write_bytes(png_bytes(image))
