"""The volume recipe's numbers, against values written out by hand or computed independently."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from aris.inputs.volume import (
    CT_WINDOWS,
    ct_lut,
    envelope_warnings,
    minmax_grey,
    sample_indices,
    slice_normal,
    slice_parts,
    window_ct,
)
from aris.types import ImagePart, TextPart


@pytest.mark.parametrize("n", [1, 2, 5, 84, 85, 86, 100, 171, 300, 500])
def test_sample_indices_follow_the_notebook_formula(n: int) -> None:
    # Written out from the recipe: all slices up to 85, else round(i/85*(n-1)) for i = 1..85.
    expected = list(range(n)) if n <= 85 else [round(i / 85 * (n - 1)) for i in range(1, 86)]
    got = sample_indices(n)
    assert got == expected
    assert len(got) == min(n, 85)
    assert got == sorted(set(got)), "strictly increasing, no slice twice"
    assert got[-1] == n - 1


def test_sample_indices_known_values() -> None:
    assert sample_indices(0) == []
    assert sample_indices(1) == [0]
    assert sample_indices(86) == list(range(1, 86))  # i/85*85 = i: slice 0 is the one left out
    assert sample_indices(171) == list(range(2, 171, 2))
    s300 = sample_indices(300)
    assert s300[:5] == [4, 7, 11, 14, 18]  # 299/85 = 3.52 -> 4, 7.04 -> 7, 10.55 -> 11, ...
    assert s300[-1] == 299
    s500 = sample_indices(500)
    assert s500[:3] == [6, 12, 18]
    assert s500[42] == 252


def test_no_exact_half_in_the_index_formula() -> None:
    # i*(n-1)/85 = k + 1/2 needs 2*i*(n-1) = 85*(2k+1): even = odd, impossible; so Python's
    # half-to-even rounding never decides an index. Checked numerically too.
    for n in range(86, 1000):
        for i in range(1, 86):
            assert Fraction(i * (n - 1), 85).denominator != 2


# HU -> (R, G, B), by hand: R = (x+1024)/2048*255, G = (x+135)/350*255, B = x/80*255, clipped,
# rounded half to even. The .5 cases: 0 HU in R is 127.5 -> 128; 40 HU in G and B is 127.5 -> 128;
# -30 HU in G and 24 HU in B are 76.5 -> 76 (half to even, not up); 110 HU in G and 56 HU in B are
# 178.5 -> 178; 8 HU in B is 25.5 -> 26.
BOUNDARY = {
    -2000: (0, 0, 0),
    -1024: (0, 0, 0),
    -135: (111, 0, 0),
    -30: (124, 76, 0),
    0: (128, 98, 0),
    8: (128, 104, 26),
    24: (130, 116, 76),
    40: (132, 128, 128),
    56: (134, 139, 178),
    80: (137, 157, 255),
    110: (141, 178, 255),
    215: (154, 255, 255),
    1024: (255, 255, 255),
    3000: (255, 255, 255),
}


def test_ct_windows_at_boundaries() -> None:
    assert CT_WINDOWS == ((-1024, 1024), (-135, 215), (0, 80))
    hu = np.array(list(BOUNDARY), dtype=np.float64)
    rgb = window_ct(hu)
    assert rgb.dtype == np.uint8
    assert rgb.shape == (len(BOUNDARY), 3)
    for value, got in zip(BOUNDARY, rgb, strict=True):
        assert tuple(int(v) for v in got) == BOUNDARY[value], value


def test_ct_windows_match_exact_arithmetic_on_a_quarter_hu_grid() -> None:
    # Independent: exact rationals and Python's round (half to even) vs the float32 notebook steps.
    hu = np.arange(-1100, 1100, 0.25)
    rgb = window_ct(hu)
    for c, (lo, hi) in enumerate(CT_WINDOWS):
        exact = [round(Fraction(min(max(Fraction(x), lo), hi) - lo) / (hi - lo) * 255) for x in hu.tolist()]
        assert rgb[:, c].tolist() == exact


def test_window_is_the_same_per_slice_or_stacked() -> None:
    rng = np.random.default_rng(0)
    stack = rng.integers(-1100, 3000, size=(4, 8, 9)).astype(np.float64) * 0.5
    together = window_ct(stack)
    assert together.shape == (4, 8, 9, 3)
    for i in range(4):
        assert np.array_equal(together[i], window_ct(stack[i]))


@pytest.mark.parametrize(
    ("slope", "intercept", "dtype"),
    [
        ("1", "-1024", np.uint16),
        ("1", "0", np.int16),
        ("0.5", "-1024", np.uint16),
        ("2.5", "-1000", np.int16),
    ],
)
def test_lookup_table_equals_direct_windowing(slope: str, intercept: str, dtype: type) -> None:
    ds = Dataset()
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    info = np.iinfo(dtype)
    domain = np.arange(info.min, info.max + 1, dtype=np.int64).astype(dtype)
    lut = ct_lut(apply_modality_lut(domain, ds))
    rng = np.random.default_rng(1)
    stored = rng.integers(info.min, info.max, size=(16, 16), endpoint=True).astype(dtype)
    direct = window_ct(apply_modality_lut(stored, ds))
    assert np.array_equal(lut[stored.astype(np.int64) - info.min], direct)


def test_mri_minmax_over_the_whole_volume() -> None:
    volume = np.array([[[0, 50], [100, 200]], [[20, 30], [40, 60]]], dtype=np.uint16)
    rgb, (lo, hi) = minmax_grey(volume)
    assert (lo, hi) == (0.0, 200.0)
    # x/200*255: 0, 63.75, 127.5, 255 | 25.5, 38.25, 51, 76.5 -> half to even
    assert rgb[..., 0].tolist() == [[[0, 64], [128, 255]], [[26, 38], [51, 76]]]
    assert np.array_equal(rgb[..., 0], rgb[..., 1])
    assert np.array_equal(rgb[..., 1], rgb[..., 2])
    # The second slice alone is scaled by the volume's range, not its own.
    alone, _ = minmax_grey(volume[1:], (0.0, 200.0))
    assert np.array_equal(alone, rgb[1:])
    own, _ = minmax_grey(volume[1:])
    assert own[0, 1, 1, 0] == 255


def test_constant_volume_is_black() -> None:
    rgb, rng = minmax_grey(np.full((2, 3, 3), 7.0))
    assert rng == (7.0, 7.0)
    assert not rgb.any()


def test_slice_parts_put_each_label_after_its_image() -> None:
    parts = slice_parts(np.zeros((3, 4, 5, 3), dtype=np.uint8))
    assert [type(p) for p in parts] == [ImagePart, TextPart] * 3
    assert [p.text for p in parts if isinstance(p, TextPart)] == ["SLICE 1", "SLICE 2", "SLICE 3"]
    assert [p.label for p in parts if isinstance(p, ImagePart)] == ["SLICE 1", "SLICE 2", "SLICE 3"]
    assert parts[0].image.size == (5, 4)
    assert parts[0].image.mode == "RGB"


def test_slice_normal_points_to_the_dominant_positive_axis() -> None:
    assert slice_normal([1, 0, 0, 0, 1, 0]).tolist() == [0, 0, 1]
    assert slice_normal([-1, 0, 0, 0, 1, 0]).tolist() == [0, 0, 1]  # rows flipped: still feet->head
    assert slice_normal([0, 1, 0, 0, 0, -1]).tolist() == [1, 0, 0]  # sagittal
    t = np.deg2rad(30)
    n = slice_normal([1, 0, 0, 0, np.cos(t), np.sin(t)])
    assert np.allclose(n, [0, -np.sin(t), np.cos(t)])
    with pytest.raises(ValueError, match="parallel"):
        slice_normal([1, 0, 0, 1, 0, 0])


def test_envelope_warnings() -> None:
    axial = np.array([0.0, 0.0, 1.0])
    ok, facts = envelope_warnings(n_slices=40, rows=512, columns=512, normal=axial, gaps=[1.25] * 39)
    assert ok == []
    assert facts["orientation"] == "axial"
    assert facts["spacing_mm"] == 1.25
    t = np.deg2rad(25)
    warnings, facts = envelope_warnings(
        n_slices=3,
        rows=600,
        columns=512,
        normal=np.array([0, np.sin(t), np.cos(t)]),
        gaps=[1.0, 3.0],
    )
    text = " | ".join(warnings)
    assert "25 degrees from axial" in text
    assert facts["orientation"] == "oblique"
    assert "512x600 pixels" in text
    assert "only 3 slices" in text
    assert "not uniform (1 to 3 mm)" in text
    sagittal, facts = envelope_warnings(
        n_slices=10, rows=8, columns=8, normal=np.array([1.0, 0, 0]), gaps=None
    )
    assert facts["orientation"] == "sagittal"
    assert "sagittal (90 degrees" in sagittal[0]
