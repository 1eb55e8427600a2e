"""The MedSigLIP input recipe against an independent implementation (torch's bilinear, no antialias)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from aris.embed.preprocess import as_png_image, pad_square, pixel_values, resize_bilinear


@pytest.mark.parametrize(("h", "w", "size"), [(300, 200, 64), (17, 23, 64), (448, 448, 448), (97, 131, 40)])
def test_resize_matches_torch_bilinear_without_antialias(h: int, w: int, size: int) -> None:
    img = np.random.default_rng(h * w).random((h, w, 3), dtype=np.float32)
    ref = (
        torch.nn.functional.interpolate(
            torch.from_numpy(img).permute(2, 0, 1)[None],
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=False,
        )[0]
        .permute(1, 2, 0)
        .numpy()
    )
    np.testing.assert_allclose(resize_bilinear(img, size), ref, atol=1e-5)


def test_pad_square_is_symmetric_zero_padding_of_the_short_side() -> None:
    img = np.ones((3, 8, 3), dtype=np.float32)
    out = pad_square(img)
    assert out.shape == (8, 8, 3)
    assert out[:2].sum() == 0  # (8 - 3) // 2 = 2 rows above
    assert out[5:].sum() == 0  # 3 rows below
    assert out[2:5].min() == 1


def test_pixel_values_are_channels_first_in_minus_one_to_one() -> None:
    white = Image.new("RGB", (40, 20), (255, 255, 255))
    px = pixel_values([white], 32)
    assert px.shape == (1, 3, 32, 32)
    assert px.max() == pytest.approx(1.0)
    assert px.min() == pytest.approx(-1.0)  # the zero padding is black: -1 after scaling
    assert px[0, :, 16, 16].tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_png_for_servers_is_the_recipe_to_8_bits() -> None:
    img = Image.fromarray((np.random.default_rng(0).random((50, 30, 3)) * 255).astype(np.uint8))
    sent = np.asarray(as_png_image(img, 32), dtype=np.float32) / 127.5 - 1
    np.testing.assert_allclose(sent, pixel_values([img], 32)[0].transpose(1, 2, 0), atol=1 / 127.5)
