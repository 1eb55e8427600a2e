"""MedSigLIP's input recipe, in NumPy so every engine (local or remote) feeds the model the same pixels.

Google's recipe (MedSigLIP notebooks and serving code): zero-pad the image to a square (symmetric, the
short side), resize to the model's input size with bilinear interpolation WITHOUT antialiasing (Big
Vision's ``tf.image.resize``, half-pixel centres), scale RGB to [-1, 1] (mean = std = 0.5). Text goes
through the model's SentencePiece tokenizer padded to ``max_length`` (64 tokens), as in training.

A Pillow or transformers ``SiglipImageProcessor`` resize would antialias (or use bicubic) and give
different embeddings for large images such as chest X-rays, so the resize is written here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

# The recipe's name and parameters go into every embedding's provenance: embeddings made with another
# recipe are never mixed with these.
RECIPE_NAME = "medsiglip-v1"
TEXT_TOKENS = 64


def recipe(image_size: int) -> dict[str, Any]:
    """What identifies the preprocessing, for store keys and ``Embedder.identity()``."""
    return {
        "name": RECIPE_NAME,
        "pad": "zero-square",
        "resize": "bilinear-no-antialias-half-pixel",
        "size": image_size,
        "scale": "[-1,1]",
        "text_tokens": TEXT_TOKENS,
        "text_padding": "max_length",
        "pool": "mean-of-l2-normalised-parts",
    }


def pad_square(rgb: np.ndarray) -> np.ndarray:
    """Symmetric zero padding of the short side (Google's ``_zero_pad_image_to_square``)."""
    h, w = rgb.shape[:2]
    if h == w:
        return rgb
    d = abs(h - w)
    lo, hi = d // 2, d - d // 2
    pads = ((lo, hi), (0, 0), (0, 0)) if h < w else ((0, 0), (lo, hi), (0, 0))
    return np.pad(rgb, pads)


def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights for one axis: half-pixel centres, edges clamped (no antialias)."""
    scale = n_in / n_out
    x = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    x = np.clip(x, 0, n_in - 1)
    i0 = np.floor(x).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (x - i0).astype(np.float32)


def resize_bilinear(img: np.ndarray, size: int) -> np.ndarray:
    """``img`` (H, W, C) float32 resized to (size, size, C) like ``tf.image.resize(..., antialias=False)``."""
    h, w = img.shape[:2]
    r0, r1, rw = _axis_weights(h, size)
    c0, c1, cw = _axis_weights(w, size)
    rows = img[r0] * (1 - rw)[:, None, None] + img[r1] * rw[:, None, None]
    out: np.ndarray = rows[:, c0] * (1 - cw)[None, :, None] + rows[:, c1] * cw[None, :, None]
    return out.astype(np.float32, copy=False)


def to_array(image: Image.Image) -> np.ndarray:
    """An image as (H, W, 3) float32 in [0, 1]; 16-bit greys keep their depth."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(a.max()), 1.0)
        a = np.clip(a / top, 0, 1)
        return np.repeat(a[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def square_resized(image: Image.Image, size: int) -> np.ndarray:
    """Padded and resized, (size, size, 3) in [0, 1]: what the model sees before scaling."""
    return resize_bilinear(pad_square(to_array(image)), size)


def pixel_values(images: list[Image.Image], size: int) -> np.ndarray:
    """A batch as the model takes it: (N, 3, size, size) float32 in [-1, 1]."""
    batch = np.stack([square_resized(im, size) for im in images]) if images else np.zeros((0, size, size, 3))
    return np.ascontiguousarray((batch * 2.0 - 1.0).transpose(0, 3, 1, 2), dtype=np.float32)


def as_png_image(image: Image.Image, size: int) -> Image.Image:
    """The padded, resized image as 8-bit RGB, for engines that take images over HTTP.

    A server then resizing ``size`` to ``size`` changes nothing, so it sees this recipe's pixels
    (to within 8-bit rounding).
    """
    arr = np.clip(np.rint(square_resized(image, size) * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    out: np.ndarray = (x / np.maximum(norms, 1e-12)).astype(np.float32)
    return out
