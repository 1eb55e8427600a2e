"""The careful single-threaded reference a skilled user would write for MedGemma's volume recipes.

Imports only pydicom and numpy. Reads every header without pixels, sorts the slices along the normal
of ImageOrientationPatient, takes the 85 indices ``round(i/85*(n-1))``, and decodes only those (CT:
HU by the rescale, the three windows with the notebook's float32 arithmetic). MRI decodes every slice,
because the recipe scales min-max over the whole volume. An enhanced multi-frame object is one file:
positions come from its per-frame functional groups and only the chosen frames are decoded.

    python bench/careful.py ct|mri FOLDER
    python bench/careful.py enhanced-ct|enhanced-mri FILE
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_rescale, pixel_array

MAX_SLICE = 85
WINDOWS = [(-1024, 1024), (-135, 215), (0, 80)]


def norm(vol: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The notebook's norm(): clip, float32, shift, scale to 0..255."""
    vol = np.clip(vol, lo, hi).astype(np.float32)
    vol -= lo
    vol /= hi - lo
    vol *= 255.0
    return vol


def window(hu: np.ndarray) -> np.ndarray:
    return np.round(np.stack([norm(hu, lo, hi) for lo, hi in WINDOWS], axis=-1), 0).astype(np.uint8)


def chosen(n: int) -> list[int]:
    if n <= MAX_SLICE:
        return list(range(n))
    return [round(i / MAX_SLICE * (n - 1)) for i in range(1, MAX_SLICE + 1)]


def _normal(iop: list[float]) -> np.ndarray:
    n = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    return n if n[int(np.argmax(np.abs(n)))] > 0 else -n


def sorted_files(folder: Path) -> list[Path]:
    """Every header read without pixel data; files ordered along the slice normal."""
    heads = [(f, pydicom.dcmread(f, stop_before_pixels=True)) for f in sorted(folder.iterdir())]
    normal = _normal([float(v) for v in heads[0][1].ImageOrientationPatient])
    heads.sort(key=lambda h: float(np.dot([float(v) for v in h[1].ImagePositionPatient], normal)))
    return [f for f, _ in heads]


def careful_ct(folder: Path) -> list[np.ndarray]:
    files = sorted_files(folder)
    out = []
    for i in chosen(len(files)):
        ds = pydicom.dcmread(files[i])
        out.append(window(apply_rescale(ds.pixel_array, ds)))
    return out


def careful_mri(folder: Path) -> list[np.ndarray]:
    files = sorted_files(folder)
    keep = set(chosen(len(files)))
    lo, hi, kept = np.inf, -np.inf, {}
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        values = apply_rescale(ds.pixel_array, ds)
        lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
        if i in keep:
            kept[i] = values
    return [
        np.repeat(np.round(norm(kept[i], lo, hi), 0).astype(np.uint8)[..., None], 3, -1) for i in sorted(kept)
    ]


def careful_enhanced(path: Path, modality: str) -> list[np.ndarray]:
    ds = pydicom.dcmread(path)
    shared = ds.SharedFunctionalGroupsSequence[0]
    normal = _normal([float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient])
    frames = ds.PerFrameFunctionalGroupsSequence
    z = [
        float(np.dot([float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient], normal))
        for f in frames
    ]
    order = sorted(range(len(frames)), key=z.__getitem__)
    if modality == "mri":
        values = [pixel_array(ds, index=i).astype(np.float64) for i in order]
        lo, hi = min(float(v.min()) for v in values), max(float(v.max()) for v in values)
        return [
            np.repeat(np.round(norm(values[k], lo, hi), 0).astype(np.uint8)[..., None], 3, -1)
            for k in chosen(len(order))
        ]
    pvt = shared.PixelValueTransformationSequence[0]
    slope, intercept = float(pvt.RescaleSlope), float(pvt.RescaleIntercept)
    return [window(pixel_array(ds, index=order[k]) * slope + intercept) for k in chosen(len(order))]


def run(mode: str, path: Path) -> list[np.ndarray]:
    if mode == "ct":
        return careful_ct(path)
    if mode == "mri":
        return careful_mri(path)
    return careful_enhanced(path, mode.split("-", 1)[1])


if __name__ == "__main__":
    run(sys.argv[1], Path(sys.argv[2]))
