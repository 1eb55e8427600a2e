"""2D images: the chest X-ray display pipeline, padding to a square, photos and image files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from aris.inputs.cxr import pad_square
from aris.inputs.errors import ImageTooLargeError, UnsupportedFormatError
from aris.inputs.images import read_image


def test_monochrome1_chest_cr_is_windowed_and_inverted(samples: Any) -> None:
    path = samples("dicom/cxr/RG1_UNCR.dcm")
    got = read_image(path)
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert ds.BitsStored == 15
    # Independent: pydicom's own decode and window, then DICOM's output range for 15-bit unsigned
    # data (0..32767), inverted because MONOCHROME1 shows its lowest value as white.
    voi = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    expected = np.round((1 - np.clip(voi, 0, 32767) / 32767) * 255).astype(np.uint8)
    img = np.asarray(got.images[0])
    assert img.shape == (1955, 1841, 3)
    assert np.array_equal(img[..., 0], expected)
    assert np.array_equal(img[..., 0], img[..., 2])
    assert got.kind == "cxr"
    assert got.padding is None
    d = got.provenance.details
    assert d["window"]["source"] == "header window"
    assert d["window"]["inverted"] is True
    assert (d["window"]["center"], d["window"]["width"]) == (15000.0, 30000.0)
    assert d["modality"] == "CR"
    assert d["photometric"] == "MONOCHROME1"
    assert d["original_size"] == [1841, 1955]
    # Inversion: the brightest raw pixels (dense exposure) end up darkest.
    raw = ds.pixel_array
    assert img[..., 0][raw == raw.max()].max() <= img[..., 0][raw == raw.min()].min()


def test_dx_for_presentation(samples: Any) -> None:
    path = samples("dicom/cxr/highdicom_dx_image.dcm")
    got = read_image(path)
    ds = pydicom.dcmread(path)
    voi = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    expected = np.round((1 - np.clip(voi, 0, 255) / 255) * 255).astype(np.uint8)
    assert got.kind == "cxr"
    assert np.array_equal(np.asarray(got.images[0])[..., 1], expected)


def test_voi_lut_sequence_is_used(samples: Any, tmp_path: Path) -> None:
    ds = pydicom.dcmread(samples("dicom/mr/MR_small.dcm"))
    item = pydicom.Dataset()
    item.add_new("LUTDescriptor", "US", [512, 0, 12])  # 512 entries from stored value 0, 12-bit
    item.add_new("LUTData", "US", [min(4095, v * 16) for v in range(512)])
    ds.VOILUTSequence = [item]
    path = tmp_path / "voilut.dcm"
    ds.save_as(path)
    got = read_image(path)
    window = got.provenance.details["window"]
    assert window["source"] == "VOI LUT sequence"
    assert window["output_range"] == [0.0, 4095.0]
    stored = ds.pixel_array.astype(np.int64)
    lut = np.array(item.LUTData, dtype=np.float64)
    expected = np.round(lut[np.clip(stored, 0, 511)] / 4095 * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(got.images[0])[..., 0], expected)


def test_percentile_window_when_the_file_has_none(samples: Any) -> None:
    path = samples("dicom/ct/CT_small.dcm")
    got = read_image(path)
    ds = pydicom.dcmread(path)
    hu = apply_modality_lut(ds.pixel_array, ds)
    lo, hi = np.percentile(hu, [0.5, 99.5])
    expected = np.round((np.clip(hu, lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)
    assert got.kind == "image"
    assert got.provenance.details["window"]["source"].startswith("percentile")
    assert np.array_equal(np.asarray(got.images[0])[..., 0], expected)


@pytest.mark.parametrize(
    ("size", "left", "top", "side"),
    [((300, 200), 0, 50, 300), ((201, 300), 49, 0, 300), ((7, 4), 0, 1, 7), ((5, 5), 0, 0, 5)],
)
def test_pad_square_offsets(size: tuple[int, int], left: int, top: int, side: int) -> None:
    w, h = size
    img = Image.new("RGB", size, (200, 100, 50))
    square, pad = pad_square(img)
    assert square.size == (side, side)
    assert (pad.left, pad.top, pad.size, pad.width, pad.height) == (left, top, side, w, h)
    arr = np.asarray(square)
    assert (arr[top : top + h, left : left + w] == [200, 100, 50]).all()
    mask = np.ones((side, side), dtype=bool)
    mask[top : top + h, left : left + w] = False
    assert not arr[mask].any()  # zero padding everywhere else
    # Symmetric: the two sides differ by at most one pixel.
    assert abs(left - (side - w - left)) <= 1
    assert abs(top - (side - h - top)) <= 1


def test_read_image_pad_square_maps_boxes_back(samples: Any) -> None:
    got = read_image(samples("dicom/cxr/RG1_UNCR.dcm"), pad_square=True)
    pad = got.padding
    assert pad is not None
    assert (pad.left, pad.top, pad.size, pad.width, pad.height) == ((1955 - 1841) // 2, 0, 1955, 1841, 1955)
    assert got.images[0].size == (1955, 1955)
    assert got.provenance.details["padding"]["left"] == 57
    # A box over the whole original image, in 0..1000 of the square, maps back to its corners.
    x0 = pad.left / pad.size * 1000
    x1 = (pad.left + pad.width) / pad.size * 1000
    assert round(x0 / 1000 * pad.size - pad.left) == 0
    assert round(x1 / 1000 * pad.size - pad.left) == pad.width


def test_ybr_ultrasound_frame_one_in_rgb(samples: Any) -> None:
    path = samples("dicom/compressed/examples_ybr_color.dcm")
    got = read_image(path)
    frames = pydicom.dcmread(path).pixel_array  # pydicom converts YBR_FULL_422 to RGB
    assert np.array_equal(np.asarray(got.images[0]), frames[0])
    assert got.kind == "image"
    assert "30 frames" in got.provenance.warnings[0]
    assert got.provenance.details["photometric"] == "YBR_FULL_422"


def test_secondary_capture_rgb(samples: Any) -> None:
    path = samples("dicom/compressed/SC_jpeg_no_color_transform.dcm")
    got = read_image(path)
    assert np.array_equal(np.asarray(got.images[0]), pydicom.dcmread(path).pixel_array)


def test_png_jpeg_and_exif_rotation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "derm.png")
    got = read_image(tmp_path / "derm.png")
    assert got.kind == "image"
    assert np.array_equal(np.asarray(got.images[0]), arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(arr).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    rotated = read_image(tmp_path / "photo.jpg")
    assert rotated.images[0].size == (40, 60)


def test_16bit_png_and_alpha(tmp_path: Path) -> None:
    arr = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    got = read_image(tmp_path / "deep.png")
    assert np.asarray(got.images[0])[..., 0].tolist() == [[0, 64], [128, 255]]
    assert "scaled min-max" in got.provenance.warnings[0]
    Image.new("RGBA", (4, 4), (10, 20, 30, 0)).save(tmp_path / "alpha.png")
    assert "transparency dropped" in read_image(tmp_path / "alpha.png").provenance.warnings


def test_png_named_dcm(tmp_path: Path) -> None:
    Image.new("RGB", (8, 6), (1, 2, 3)).save(tmp_path / "x.png")
    (tmp_path / "x.dcm").write_bytes((tmp_path / "x.png").read_bytes())
    got = read_image(tmp_path / "x.dcm")
    assert got.images[0].size == (8, 6)
    assert "named like DICOM" in got.provenance.warnings[0]


def test_decompression_bomb_limit(samples: Any, tmp_path: Path) -> None:
    with pytest.raises(ImageTooLargeError, match="over the limit of 1000000"):
        read_image(samples("dicom/cxr/RG1_UNCR.dcm"), max_pixels=1_000_000)
    Image.new("L", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageTooLargeError, match="10000 pixels"):
        read_image(tmp_path / "big.png", max_pixels=9_999)
    assert read_image(tmp_path / "big.png", max_pixels=10_000).images[0].size == (100, 100)


def test_unknown_format(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnsupportedFormatError, match="not an image format"):
        read_image(tmp_path / "notes.txt")
