"""MedSigLIP test fixtures: the tiny random SigLIP (real transformers path) and a small image dataset.

The dataset has three classes made from the shared samples (chest X-ray, CT slice, pathology tile),
four views each (crops and flips), rendered here with pydicom and tiffslide directly so the images do
not depend on the code under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

N_PER_CLASS = 5


@pytest.fixture(scope="session")
def tiny_siglip(test_cache: Path) -> Path:
    from aris.embed.tiny import build_tiny_siglip

    return build_tiny_siglip(test_cache)


@pytest.fixture(scope="session")
def other_siglip(test_cache: Path) -> Path:
    """A second tiny SigLIP with other weights (another model identity)."""
    from aris.embed.tiny import build_tiny_siglip

    return build_tiny_siglip(test_cache, seed=1)


@pytest.fixture
def embed_env(tiny_siglip: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings that load the tiny SigLIP as the embedder (ARIS_EMBED_MODEL)."""
    monkeypatch.setenv("ARIS_EMBED_MODEL", str(tiny_siglip))
    monkeypatch.setenv("ARIS_DEVICE", "cpu")
    return tiny_siglip


@pytest.fixture(scope="session")
def embedder(tiny_siglip: Path):  # type: ignore[no-untyped-def]
    from aris.embed.local import TransformersEmbedder

    e = TransformersEmbedder(str(tiny_siglip), device="cpu")
    yield e
    e.close()


def _to_uint8(a: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a, [1, 99])
    return (np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def _views(img: Image.Image) -> list[Image.Image]:
    """Crops of one study: the same content framed a little differently (a random network has no
    flip invariance, so flips would test the network, not the probe)."""
    w, h = img.size
    dx, dy = w // 25, h // 25
    boxes = [
        (0, 0, w - dx, h - dy),
        (dx, dy, w, h),
        (dx, 0, w, h - dy),
        (0, dy, w - dx, h),
        (dx // 2, dy // 2, w - dx // 2, h - dy // 2),
    ]
    return [img.crop(b) for b in boxes[:N_PER_CLASS]]


@pytest.fixture(scope="session")
def class_images(samples) -> dict[str, list[Image.Image]]:  # type: ignore[no-untyped-def]
    import pydicom
    import tiffslide
    from pydicom.pixels import apply_rescale

    cxr = pydicom.dcmread(samples("dicom/cxr/highdicom_dx_image.dcm"))
    px = cxr.pixel_array.astype(float)
    if cxr.PhotometricInterpretation == "MONOCHROME1":
        px = px.max() - px
    ct = pydicom.dcmread(samples("dicom/ct/CT_small.dcm"))
    hu = apply_rescale(ct.pixel_array, ct)
    with tiffslide.TiffSlide(samples("wsi/cmu_small_region.svs")) as slide:
        patch = slide.read_region((800, 1200), 0, (448, 448)).convert("RGB")
    return {
        "chest_xray": _views(Image.fromarray(_to_uint8(px)).convert("RGB")),
        "ct_slice": _views(
            Image.fromarray((np.clip((hu + 135) / 350, 0, 1) * 255).astype(np.uint8)).convert("RGB")
        ),
        "pathology": _views(patch),
    }


@pytest.fixture
def class_folder(tmp_path: Path, class_images: dict[str, list[Image.Image]]) -> Path:
    root = tmp_path / "dataset"
    for cls, images in class_images.items():
        (root / cls).mkdir(parents=True)
        for i, im in enumerate(images):
            im.save(root / cls / f"{i:02d}.png")
    return root
