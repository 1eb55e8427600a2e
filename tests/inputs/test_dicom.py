"""Single DICOM files: header scan, decoding, and every bad-input error naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut
from pydicom.uid import JPEG2000MCLossless

from aris.inputs import dicom
from aris.inputs.errors import CorruptFileError, NoPixelDataError, UnsupportedTransferSyntaxError
from aris.inputs.images import read_image


def _truncate(src: Path, dest: Path, keep: int) -> Path:
    dest.write_bytes(src.read_bytes()[:keep])
    return dest


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(CorruptFileError, match="empty file") as e:
        dicom.read_header(empty)
    assert str(empty) in str(e.value)
    with pytest.raises(CorruptFileError, match="empty file"):
        read_image(empty)


def test_non_dicom_named_dcm(tmp_path: Path) -> None:
    fake = tmp_path / "scan.dcm"
    fake.write_text("this is a text file, not an image\n" * 10)
    with pytest.raises(CorruptFileError, match="not a DICOM file") as e:
        read_image(fake)
    assert e.value.path == str(fake)


def test_truncated_in_pixel_data(samples: Any, tmp_path: Path) -> None:
    src = samples("dicom/ct/CT_small.dcm")
    cut = _truncate(src, tmp_path / "cut.dcm", src.stat().st_size - 1000)
    with pytest.raises(CorruptFileError, match="truncated: pixel data needs 32768 bytes") as e:
        read_image(cut)
    assert str(cut) in str(e.value)
    assert dicom.scan_header(cut) is None  # the fast scan leaves the diagnosis to the full reader


def test_truncated_in_header(samples: Any, tmp_path: Path) -> None:
    src = samples("dicom/ct/CT_small.dcm")
    cut = _truncate(src, tmp_path / "cut.dcm", 3000)  # ends inside the data set, long before pixels
    with pytest.raises(CorruptFileError, match="truncated"):
        read_image(cut)


def test_sr_has_no_pixels(mv: Any, tmp_path: Path) -> None:
    sr = tmp_path / "report.dcm"
    mv._text_sr(sr, "1.2.3", seed=0)
    with pytest.raises(NoPixelDataError, match="Basic Text SR Storage object holds no image") as e:
        read_image(sr)
    assert str(sr) in str(e.value)


def test_dicomdir_is_not_an_image(tmp_path: Path) -> None:
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.FileSetID = "X"
    ds.DirectoryRecordSequence = []
    path = tmp_path / "DICOMDIR"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(NoPixelDataError, match="DICOMDIR"):
        read_image(path)


def test_transfer_syntax_without_decoder(samples: Any, tmp_path: Path) -> None:
    ds = pydicom.dcmread(samples("dicom/compressed/MR_small_RLE.dcm"))
    ds.file_meta.TransferSyntaxUID = JPEG2000MCLossless  # JPEG 2000 Part 2: nothing installed decodes it
    path = tmp_path / "mc.dcm"
    ds.save_as(path)
    with pytest.raises(UnsupportedTransferSyntaxError, match="JPEG 2000 Part 2 Multi-component") as e:
        read_image(path)
    assert "no installed decoder" in str(e.value)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    "compressed", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"]
)
def test_lossless_syntaxes_decode_like_the_uncompressed_file(samples: Any, compressed: str) -> None:
    plain = samples("dicom/mr/MR_small.dcm")
    other = samples(f"dicom/compressed/{compressed}")
    a = dicom.decode(dicom.read_header(plain), plain)
    b = dicom.decode(dicom.read_header(other), other)
    assert a.shape == (64, 64)
    assert np.array_equal(a, b)
    assert np.array_equal(np.asarray(read_image(plain).images[0]), np.asarray(read_image(other).images[0]))


def test_multiframe_jpeg2000_decodes_frame_by_frame(samples: Any) -> None:
    plain = samples("dicom/mr/emri_small.dcm")
    j2k = samples("dicom/compressed/emri_small_jpeg_2k_lossless.dcm")
    whole = pydicom.dcmread(plain).pixel_array
    hp, hj = dicom.read_header(plain), dicom.read_header(j2k)
    assert whole.shape == (10, 64, 64)
    for i in range(10):
        assert np.array_equal(dicom.decode(hj, j2k, i), whole[i])
        assert np.array_equal(dicom.decode(hp, plain, i), whole[i])


def test_jpeg_lossless_and_extended_decode(samples: Any) -> None:
    for name in ("JPEG-LL.dcm", "JPGExtended.dcm"):
        path = samples(f"dicom/compressed/{name}")
        arr = dicom.decode(dicom.read_header(path), path)
        assert arr.shape == (1024, 256)
        assert arr.max() > 0


def test_fast_scan_agrees_with_pydicom(samples: Any, build: Any) -> None:
    series = build("scan", n_slices=6, tilt=20.0, inplane_jitter=3.0)
    paths = [p for p in sorted((samples.root / "dicom").rglob("*")) if p.is_file()] + series.files
    scanned = 0
    for path in paths:
        summary = dicom.scan_header(path)
        if summary is None:
            continue
        scanned += 1
        ds = pydicom.dcmread(path)
        assert summary.series_uid == ds.SeriesInstanceUID
        assert summary.sop_class == ds.SOPClassUID
        assert summary.modality == ds.Modality
        assert summary.instance == ds.get("InstanceNumber")
        assert summary.acquisition == ds.get("AcquisitionNumber")
        assert summary.position == tuple(float(v) for v in ds.ImagePositionPatient)
        assert summary.orientation == tuple(float(v) for v in ds.ImageOrientationPatient)
        assert (summary.rows, summary.columns) == (ds.Rows, ds.Columns)
        assert summary.image_type == tuple(ds.ImageType)
        assert summary.rescale_slope == (str(ds.RescaleSlope) if "RescaleSlope" in ds else None)
        if summary.native_16bit_grey:
            assert np.array_equal(dicom.read_native(path, summary), ds.pixel_array)
            assert np.array_equal(
                apply_modality_lut(ds.pixel_array, summary.rescale()), apply_modality_lut(ds.pixel_array, ds)
            )
    assert scanned >= 20


def test_enhanced_rescale_comes_from_functional_groups(samples: Any) -> None:
    path = samples("dicom/ct/eCT_Supplemental.dcm")
    ds = dicom.read_header(path)
    assert "RescaleSlope" not in ds
    rds = dicom.rescale_dataset(ds, 1)
    assert float(rds.RescaleSlope) == 1.0
    assert float(rds.RescaleIntercept) == -1024.0
    assert dicom.frame_value(ds, 1, "PlanePositionSequence", "ImagePositionPatient") == [99.5, -301.5, -149.0]
