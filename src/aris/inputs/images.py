"""One 2D image -> one RGB picture: DICOM radiographs, secondary captures and photos, PNG and JPEG.

Chest CR/DX follow the chest X-ray recipe (:mod:`aris.inputs.cxr`); other grey DICOM get the same
display pipeline; colour DICOM and ordinary image files (dermatology, fundus, pathology patches) are
taken as they are, in RGB.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut

from aris.errors import InputError
from aris.inputs import cxr, dicom
from aris.inputs.base import PreparedInput
from aris.inputs.errors import CorruptFileError, ImageTooLargeError, UnsupportedFormatError
from aris.types import ImagePart, Provenance

logger = logging.getLogger(__name__)

MAX_PIXELS = 100_000_000
"""Decompression-bomb limit: a 2D image with more pixels is refused before decoding. The largest
radiographs (mammograms) are ~30 MP; whole-slide images go through the WSI reader, not here."""

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")


def read_image(path: str | Path, *, pad_square: bool = False, max_pixels: int = MAX_PIXELS) -> PreparedInput:
    """Read one 2D image as MedGemma should see it.

    Parameters
    ----------
    path
        A DICOM file (CR, DX, secondary capture, photo, any single grey or colour image), or an image
        file Pillow reads (PNG, JPEG, TIFF, ...).
    pad_square
        Pad to a square with symmetric zero padding (the localization recipe); ``padding`` on the
        result holds the offsets to map boxes back.
    max_pixels
        Refuse images with more pixels than this (decompression bombs) with ImageTooLargeError.

    Returns
    -------
    PreparedInput
        kind ``"cxr"`` for a chest CR/DX, else ``"image"``; one ImagePart.

    Raises
    ------
    CorruptFileError, NoPixelDataError, UnsupportedTransferSyntaxError, UnsupportedFormatError,
    ImageTooLargeError
    """
    path = Path(path)
    if _looks_like_dicom(path):
        try:
            ds = dicom.read_header(path)
        except CorruptFileError as e:
            # A .dcm that is really a PNG/JPEG is read as what it is; anything else keeps the error.
            try:
                image, details, warnings = _read_pillow(path, max_pixels)
            except InputError:
                raise e from None
            warnings.insert(0, "named like DICOM but is an ordinary image file")
            kind = "image"
        else:
            image, details, warnings = _read_dicom(ds, path, max_pixels)
            kind = "cxr" if cxr.is_chest(ds) else "image"
    else:
        image, details, warnings = _read_pillow(path, max_pixels)
        kind = "image"

    details["original_size"] = list(image.size)
    padding = None
    if pad_square:
        image, padding = cxr.pad_square(image)
        details["padding"] = {
            "left": padding.left,
            "top": padding.top,
            "size": padding.size,
            "width": padding.width,
            "height": padding.height,
        }
    else:
        details["padding"] = None
    logger.info("image: %dx%d %s", image.size[0], image.size[1], kind)
    return PreparedInput(
        kind=kind,
        parts=[ImagePart(image)],
        provenance=Provenance(kind=kind, sources=[str(path)], details=details, warnings=warnings),
        padding=padding,
    )


def _looks_like_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError as e:
        raise CorruptFileError(path, f"cannot be read ({e.strerror or type(e).__name__})") from e
    return head[128:132] == b"DICM" or (len(head) >= 4 and head[:2] == b"\x08\x00")


def _read_dicom(ds: Dataset, path: Path, max_pixels: int) -> tuple[Image.Image, dict[str, Any], list[str]]:
    dicom.check_pixels(ds, path)
    rows, cols = dicom.as_int(ds.get("Rows")) or 0, dicom.as_int(ds.get("Columns")) or 0
    if rows * cols > max_pixels:
        raise ImageTooLargeError(
            path, f"{cols}x{rows} = {rows * cols} pixels, over the limit of {max_pixels}"
        )
    frames = dicom.n_frames(ds)
    warnings: list[str] = []
    if frames > 1:
        warnings.append(f"multi-frame object ({frames} frames): frame 1 used")
    stored = dicom.decode(ds, path, 0 if frames > 1 else None)
    photometric = str(ds.get("PhotometricInterpretation") or "").upper()
    details: dict[str, Any] = {
        "format": "DICOM",
        "sop_class": dicom.sop_class_name(ds),
        "modality": str(ds.get("Modality") or ""),
        "body_part": str(ds.get("BodyPartExamined") or ""),
        "photometric": photometric,
        "transfer_syntax": dicom.transfer_syntax(ds).name,
        "bits_stored": dicom.as_int(ds.get("BitsStored")),
        "frames": frames,
    }
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(stored, ds)
        details["window"] = {"source": "palette colour LUT"}
        return Image.fromarray(_to_uint8_rgb(rgb), "RGB"), details, warnings
    if stored.ndim == 3 and stored.shape[-1] in (3, 4):
        # RGB and YBR (pydicom converts YBR to RGB while decoding): taken as they are.
        details["window"] = None
        return Image.fromarray(_to_uint8_rgb(stored[..., :3]), "RGB"), details, warnings
    if stored.ndim != 2:
        raise CorruptFileError(path, f"unexpected pixel array of shape {stored.shape}")
    grey, window = cxr.grey_to_uint8(stored, ds)
    details["window"] = window
    return Image.fromarray(grey, "L").convert("RGB"), details, warnings


def _to_uint8_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    top = float(arr.max()) if arr.size else 0.0
    bits = max(8, int(np.ceil(np.log2(top + 1)))) if top > 0 else 8
    out: np.ndarray = np.round(arr.astype(np.float64) / (2**bits - 1) * 255).astype(np.uint8)
    return out


def _read_pillow(path: Path, max_pixels: int) -> tuple[Image.Image, dict[str, Any], list[str]]:
    warnings: list[str] = []
    try:
        im = Image.open(path)
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(path, f"over Pillow's decompression-bomb limit ({e})") from e
    except UnidentifiedImageError as e:
        raise UnsupportedFormatError(
            path, "not an image format Aris can read (DICOM, PNG, JPEG, TIFF ...)"
        ) from e
    except OSError as e:
        raise CorruptFileError(path, f"cannot be read ({type(e).__name__})") from e
    with im:
        w, h = im.size
        if w * h > max_pixels:
            raise ImageTooLargeError(path, f"{w}x{h} = {w * h} pixels, over the limit of {max_pixels}")
        fmt, mode = im.format or "unknown", im.mode
        try:
            im.load()
            frames = getattr(im, "n_frames", 1)
            oriented = ImageOps.exif_transpose(im)  # phone photos (dermatology) carry a rotation
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(oriented, dtype=np.float64)
                lo, hi = float(arr.min()), float(arr.max())
                grey = (
                    np.round((arr - lo) / (hi - lo) * 255).astype(np.uint8)
                    if hi > lo
                    else np.zeros(arr.shape, np.uint8)
                )
                rgb = Image.fromarray(grey, "L").convert("RGB")
                warnings.append(f"{mode} image scaled min-max ({lo:g}..{hi:g}) to 8 bits")
            else:
                if "A" in mode or (mode == "P" and "transparency" in oriented.info):
                    warnings.append("transparency dropped")
                rgb = oriented.convert("RGB")
        except (OSError, SyntaxError, ValueError) as e:
            raise CorruptFileError(path, f"damaged or truncated {fmt} image ({type(e).__name__})") from e
    if frames > 1:
        warnings.append(f"{frames} frames/pages: the first used")
    details: dict[str, Any] = {"format": fmt, "mode": mode, "frames": frames, "window": None}
    return rgb, details, warnings
