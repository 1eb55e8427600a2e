"""A small three-class image dataset built from the shared samples: chest X-ray, CT slice, pathology.

Each class gets four different PNG views (crops and flips) of one real study, rendered here with
pydicom and tiffslide directly, so the images do not depend on the code under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

N_PER_CLASS = 4


def _to_uint8(a: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a, [1, 99])
    return (np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def _views(img: Image.Image, n: int) -> list[Image.Image]:
    w, h = img.size
    boxes = [
        (0, 0, w, h),
        (w // 8, h // 8, w, h),
        (0, 0, w - w // 8, h - h // 8),
        (w // 10, 0, w, h - h // 10),
    ]
    out = [img.crop(b) for b in boxes[:n]]
    return [v.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else v for i, v in enumerate(out)]


def sample_images(samples) -> dict[str, list[Image.Image]]:  # type: ignore[no-untyped-def]
    import pydicom
    import tiffslide
    from pydicom.pixels import apply_rescale

    cxr = pydicom.dcmread(samples("dicom/cxr/highdicom_dx_image.dcm"))
    px = cxr.pixel_array.astype(float)
    if cxr.PhotometricInterpretation == "MONOCHROME1":
        px = px.max() - px
    cxr_img = Image.fromarray(_to_uint8(px)).convert("RGB")

    ct = pydicom.dcmread(samples("dicom/ct/CT_small.dcm"))
    hu = apply_rescale(ct.pixel_array, ct)
    ct_img = Image.fromarray((np.clip((hu + 135) / 350, 0, 1) * 255).astype(np.uint8)).convert("RGB")

    with tiffslide.TiffSlide(samples("wsi/cmu_small_region.svs")) as slide:
        patch = slide.read_region((800, 1200), 0, (448, 448)).convert("RGB")

    return {
        "chest_xray": _views(cxr_img, N_PER_CLASS),
        "ct_slice": _views(ct_img, N_PER_CLASS),
        "pathology": _views(patch, N_PER_CLASS),
    }


def write_class_folder(root: Path, images: dict[str, list[Image.Image]]) -> Path:
    for cls, views in images.items():
        (root / cls).mkdir(parents=True)
        for i, img in enumerate(views):
            img.save(root / cls / f"{i:02d}.png")
    return root


@pytest.fixture(scope="session")
def class_images(samples) -> dict[str, list[Image.Image]]:  # type: ignore[no-untyped-def]
    return sample_images(samples)


@pytest.fixture(scope="session")
def class_folder(tmp_path_factory: pytest.TempPathFactory, class_images) -> Path:  # type: ignore[no-untyped-def]
    return write_class_folder(tmp_path_factory.mktemp("classes") / "data", class_images)
