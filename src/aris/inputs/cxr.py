"""The chest X-ray recipe: grey DICOM pixels to what a reader sees, and padding to a square.

MedGemma was trained on display-ready radiographs: Modality LUT (rescale), then the VOI LUT or
window the file carries, MONOCHROME1 inverted so bone is white, 8 bits. For localization the image is
padded to a square with zeros on both sides of the short edge, and boxes come back in that square.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from aris.inputs.base import Padding

PERCENTILES = (0.5, 99.5)
"""Window used when the file carries none: robust to a few hot or dead pixels."""

CHEST_WORDS = ("CHEST", "THORAX", "LUNG", "CXR", "TORAX", "THORAC")


def is_chest(ds: Dataset) -> bool:
    """CR/DX of the chest: BodyPartExamined says so, or (when absent) a description does."""
    if str(ds.get("Modality") or "").upper() not in ("CR", "DX"):
        return False
    body = str(ds.get("BodyPartExamined") or "").upper()
    if body:
        return any(w in body for w in CHEST_WORDS)
    text = " ".join(
        str(ds.get(k) or "") for k in ("StudyDescription", "SeriesDescription", "ProtocolName")
    ).upper()
    return any(w in text for w in CHEST_WORDS)


def _voi_kind(ds: Dataset) -> str | None:
    """Which VOI transform pydicom's ``apply_voi_lut(prefer_lut=True)`` will apply, if any."""
    seq = ds.get("VOILUTSequence")
    if seq and seq[0].get("LUTDescriptor") is not None and seq[0].get("LUTData") is not None:
        return "lut"
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        return "window"
    return None


def _first(value: Any) -> float:
    try:
        return (
            float(value[0])
            if not isinstance(value, str | bytes) and hasattr(value, "__len__")
            else float(value)
        )
    except (TypeError, ValueError, IndexError):
        return float("nan")


def grey_to_uint8(stored: np.ndarray, ds: Dataset) -> tuple[np.ndarray, dict[str, Any]]:
    """Stored grey values -> 8-bit display values, and a record of the window used.

    Modality LUT via ``apply_modality_lut``, then the header's VOI LUT or window via ``apply_voi_lut``
    (first of several), or a percentile window when the header has none; MONOCHROME1 is inverted.
    The result spans 0..255 over the VOI output range (not over the image's own min/max), so a
    window that clips is kept as the file meant it.
    """
    values = apply_modality_lut(stored, ds)
    kind = _voi_kind(ds)
    info: dict[str, Any]
    if kind == "lut":
        if np.issubdtype(values.dtype, np.floating) and np.array_equal(values, np.round(values)):
            values = values.astype(np.int64)  # VOI LUTs index integers; float input warns in pydicom
        out = apply_voi_lut(values, ds, prefer_lut=True).astype(np.float64)
        lut_data = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float64)
        lo, hi = float(lut_data.min()), float(lut_data.max())
        info = {"source": "VOI LUT sequence", "output_range": [lo, hi]}
    elif kind == "window":
        out = apply_voi_lut(values, ds, prefer_lut=True)
        # pydicom maps a window onto the stored range (rescaled when a rescale exists); ask it for
        # that range by windowing two extreme values, instead of re-deriving its rules here.
        lo, hi = (float(v) for v in apply_voi_lut(np.array([-1e300, 1e300]), ds, prefer_lut=True))
        wc, ww = ds["WindowCenter"], ds["WindowWidth"]
        info = {
            "source": "header window",
            "center": _first(wc.value),
            "width": _first(ww.value),
            "function": str(ds.get("VOILUTFunction") or "LINEAR"),
            "output_range": [lo, hi],
        }
        if wc.VM > 1:
            info["note"] = f"first of {wc.VM} windows"
    else:
        out = values.astype(np.float64)
        lo, hi = (float(v) for v in np.percentile(out, PERCENTILES))
        if hi <= lo:
            lo, hi = float(out.min()), float(out.max())
        info = {
            "source": f"percentile {PERCENTILES[0]}-{PERCENTILES[1]} (no window in the file)",
            "low": lo,
            "high": hi,
        }
    monochrome1 = str(ds.get("PhotometricInterpretation") or "").upper() == "MONOCHROME1"
    info["inverted"] = monochrome1
    if hi <= lo:
        return np.zeros(out.shape, dtype=np.uint8), info
    scaled = (np.clip(out, lo, hi) - lo) / (hi - lo)
    if monochrome1:
        scaled = 1.0 - scaled  # MONOCHROME1: the lowest value is white
    return np.round(scaled * 255.0).astype(np.uint8), info


def pad_square(image: Image.Image) -> tuple[Image.Image, Padding]:
    """Pad the short side with zeros on both sides (the extra pixel, if odd, goes right/bottom).

    Returns the S x S image (S = max(H, W)) and the offsets to map boxes back:
    ``x_px = x / 1000 * S - left``, ``y_px = y / 1000 * S - top``.
    """
    w, h = image.size
    s = max(w, h)
    left, top = (s - w) // 2, (s - h) // 2
    if (w, h) == (s, s):
        return image, Padding(left=0, top=0, size=s, width=w, height=h)
    square = Image.new(image.mode, (s, s), 0)
    square.paste(image, (left, top))
    return square, Padding(left=left, top=top, size=s, width=w, height=h)
