"""MedGemma's volume recipe: which slices, how CT is windowed into RGB, how MRI becomes grey.

Numbers follow Google's CT notebook (``high_dimensional_ct_hugging_face.ipynb``) operation for
operation: clip, cast to float32, subtract, divide, multiply by 255, round half to even, uint8.
For HU on a quarter-HU grid this equals exact arithmetic with round-half-to-even (so 40 HU in the
soft-tissue window is 127.5 -> 128, and -30 HU is 76.5 -> 76; tests check both), and keeping the
notebook's float32 steps makes any other value round the way the notebook's images did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from aris.types import ImagePart, Part, TextPart

MAX_SLICES = 85
"""MedGemma 1.5 saw at most 85 slices per volume: 85 x 256 = 21,760 image tokens."""

CT_WINDOWS: tuple[tuple[int, int], ...] = ((-1024, 1024), (-135, 215), (0, 80))
"""HU ranges for R (wide), G (soft tissue) and B (brain). Google's serving code has +135 for green:
a bug; the notebook and model card use -135."""

# Training envelope (MedGemma 1.5 report): axial, <= 512 x 512, uniform thickness, >= 5 slices.
MAX_TRAINED_SIDE = 512
MIN_TRAINED_SLICES = 5
AXIAL_TOLERANCE_DEG = 10.0
SPACING_TOLERANCE = 0.05  # relative spread of slice gaps still called uniform


def sample_indices(n: int, k: int = MAX_SLICES) -> list[int]:
    """Indices of the slices MedGemma is shown, out of ``n`` sorted slices.

    For ``n > k`` the recipe takes ``round(i / k * (n - 1))`` for ``i = 1..k`` (Python's ``round``, as
    the notebook does; ``i / k * (n - 1)`` never lands on an exact half, so the rounding rule cannot
    change the result). Note ``i`` starts at 1, so the first slice is skipped and the last is kept.
    For ``n <= k`` every slice is used, in order: ``[0, 1, ..., n - 1]``.
    """
    if n <= 0:
        return []
    if n <= k:
        return list(range(n))
    return [round(i / k * (n - 1)) for i in range(1, k + 1)]


def _norm(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The notebook's ``norm``: clip in the input dtype, then float32 arithmetic in its order."""
    out: np.ndarray = np.clip(values, lo, hi).astype(np.float32)
    out -= lo
    out /= hi - lo
    out *= 255.0
    return out


def window_ct(hu: np.ndarray) -> np.ndarray:
    """HU (any shape) -> uint8 with a trailing RGB axis: R, G, B = the three CT windows.

    Works on one slice or a whole stack at once (vectorised); every element sees the same operations
    as in the notebook, so results are identical whichever way it is called.
    """
    rgb = np.empty((*hu.shape, 3), dtype=np.uint8)
    for c, (lo, hi) in enumerate(CT_WINDOWS):
        rgb[..., c] = np.round(_norm(hu, lo, hi), 0).astype(np.uint8)
    return rgb


def ct_lut(hu_of_stored: np.ndarray) -> np.ndarray:
    """A (m, 3) uint8 table: the windowed RGB for each of ``m`` possible stored values.

    A CT slice holds 16-bit stored values, so windowing the 65,536 possible HU once per distinct
    rescale and indexing the table gives the same bytes as windowing every pixel, several times faster.
    """
    return window_ct(hu_of_stored)


def minmax_grey(
    volume: np.ndarray, value_range: tuple[float, float] | None = None
) -> tuple[np.ndarray, tuple[float, float]]:
    """MRI recipe: min-max over the WHOLE volume to 0..255, the same value in R, G and B.

    ``value_range`` is the whole volume's (min, max) when ``volume`` holds only the slices to show;
    by default it is taken from ``volume``. Uses the CT windowing arithmetic with that range as the
    window. A constant volume has no range and becomes black. Returns the (..., 3) uint8 array and
    the (min, max) used.
    """
    if value_range is None:
        value_range = (float(np.min(volume)), float(np.max(volume)))
    lo, hi = value_range
    if hi > lo:
        grey = np.round(_norm(volume, lo, hi), 0).astype(np.uint8)
    else:
        grey = np.zeros(volume.shape, dtype=np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1), (lo, hi)


def slice_parts(slices: Sequence[np.ndarray | Image.Image] | np.ndarray) -> list[Part]:
    """``[img, "SLICE 1", img, "SLICE 2", ...]``: each label AFTER its image, as in training.

    Takes RGB uint8 arrays (H, W, 3) or RGB images.
    """
    parts: list[Part] = []
    for i, rgb in enumerate(slices, start=1):
        label = f"SLICE {i}"
        parts.append(ImagePart(rgb, label=label))
        parts.append(TextPart(label))
    return parts


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit normal of the slice plane from ImageOrientationPatient (row cosines x column cosines).

    The sign is chosen so the normal points along + its dominant patient axis (head, left or posterior
    in DICOM's LPS), so an axial stack sorts from feet to head exactly like "sort by z", whatever way
    the rows run.
    """
    iop = np.asarray(orientation, dtype=np.float64)
    n = np.cross(iop[:3], iop[3:6])
    norm = float(np.linalg.norm(n))
    if norm == 0:
        raise ValueError("row and column cosines are parallel")
    n /= norm
    if n[int(np.argmax(np.abs(n)))] < 0:
        n = -n
    return n


def plane_name(normal: np.ndarray) -> str:
    """axial / coronal / sagittal for the patient axis the normal is closest to."""
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]


def tilt_from_axial(normal: np.ndarray) -> float:
    """Degrees between the slice normal and the patient's head-feet axis."""
    return math.degrees(math.acos(min(1.0, abs(float(normal[2])))))


def envelope_warnings(
    *,
    n_slices: int,
    rows: int,
    columns: int,
    normal: np.ndarray | None,
    gaps: Sequence[float] | None,
) -> tuple[list[str], dict[str, Any]]:
    """Warnings for a volume outside what MedGemma 1.5 was trained on; never an error.

    Returns (warnings, facts) where facts hold the measured orientation and spacing for provenance.
    """
    warnings: list[str] = []
    facts: dict[str, Any] = {}
    if normal is not None:
        tilt = tilt_from_axial(normal)
        plane = plane_name(normal)
        facts["orientation"] = plane if plane != "axial" or tilt <= AXIAL_TOLERANCE_DEG else "oblique"
        facts["tilt_from_axial_deg"] = round(tilt, 2)
        if tilt > AXIAL_TOLERANCE_DEG:
            warnings.append(
                f"slices are {facts['orientation']} ({tilt:.0f} degrees from axial); "
                "MedGemma was trained on axial volumes"
            )
    if max(rows, columns) > MAX_TRAINED_SIDE:
        warnings.append(
            f"slices are {columns}x{rows} pixels; MedGemma was trained on at most "
            f"{MAX_TRAINED_SIDE}x{MAX_TRAINED_SIDE} (the processor resizes to 896x896)"
        )
    if n_slices < MIN_TRAINED_SLICES:
        warnings.append(
            f"only {n_slices} slice{'s' if n_slices != 1 else ''}; MedGemma was trained on volumes of "
            f"at least {MIN_TRAINED_SLICES}"
        )
    if gaps:
        g = np.asarray(gaps, dtype=np.float64)
        median = float(np.median(g))
        facts["spacing_mm"] = round(median, 4)
        facts["spacing_range_mm"] = [round(float(g.min()), 4), round(float(g.max()), 4)]
        if median <= 0 or float(np.max(np.abs(g - median))) > SPACING_TOLERANCE * max(median, 1e-6):
            warnings.append(
                f"slice spacing is not uniform ({g.min():.3g} to {g.max():.3g} mm); "
                "MedGemma was trained on uniform slice thickness"
            )
    return warnings, facts
