"""Each message says what is actually wrong with the file (issue 13, found on public test files).

Files come from pydicom's own test data (installed with pydicom), from tests/data, or are built here.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from aris.inputs import read
from aris.inputs.errors import CorruptFileError, NoPixelDataError, UnsupportedFormatError


def _pydicom_file(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} ships with pydicom"
    return Path(str(path))


def _quietly(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, list[warnings.WarningMessage]]:
    """Call fn and return what it returned (or raised) and every warning that escaped it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = fn(*args, **kwargs)
        except Exception as e:
            out = e
    return out, list(caught)


def test_deflated_explicit_vr_is_read_not_called_truncated() -> None:
    path = _pydicom_file("image_dfl.dcm")
    prepared = read(path)
    expected = pydicom.dcmread(path).pixel_array
    grey = np.asarray(prepared.images[0])[..., 0]
    assert grey.shape == expected.shape
    assert prepared.provenance.details["transfer_syntax"] == "Deflated Explicit VR Little Endian"


def test_missing_transfer_syntax_is_named() -> None:
    with pytest.raises(CorruptFileError) as e:
        read(_pydicom_file("meta_missing_tsyntax.dcm"))
    assert "no Transfer Syntax UID (0002,0010)" in e.value.problem
    assert "truncated" not in e.value.problem


def test_missing_bits_allocated_is_named(samples: Any, tmp_path: Path) -> None:
    ds = pydicom.dcmread(samples("dicom/ct/CT_small.dcm"))
    del ds.BitsAllocated
    ds.save_as(tmp_path / "nobits.dcm")
    for kind in ("auto", "image", "ct"):
        with pytest.raises(CorruptFileError) as e:
            read(tmp_path / "nobits.dcm", kind)
        assert "lacks Bits Allocated (0028,0100)" in e.value.problem
        assert "truncated" not in e.value.problem


def test_truncated_jpeg2000_multiframe_is_truncated_not_without_pixels(samples: Any, tmp_path: Path) -> None:
    data = samples("dicom/compressed/emri_small_jpeg_2k_lossless.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) * 2 // 3])
    for kind in ("auto", "mri", "image"):
        err, escaped = _quietly(read, cut, kind)
        assert isinstance(err, CorruptFileError), (kind, err)
        assert err.problem.startswith("truncated"), (kind, err.problem)
        assert escaped == []  # pydicom's end-of-file warning became the message, not console noise


def test_hdr_without_its_img_says_so(tmp_path: Path) -> None:
    img = nib.Nifti1Pair(np.zeros((4, 4, 4), dtype=np.int16), np.eye(4))
    nib.save(img, tmp_path / "pair.hdr")
    (tmp_path / "pair.img").unlink()
    for kind in ("auto", "mri"):
        with pytest.raises(CorruptFileError) as e:
            read(tmp_path / "pair.hdr", kind)
        assert e.value.problem == (
            "the image file pair.img that goes with this header is missing (a .hdr needs its .img)"
        )


def test_big_endian_data_set_without_meta_is_known_as_dicom() -> None:
    with pytest.raises(NoPixelDataError, match="RTPLAN"):
        read(_pydicom_file("ExplVR_BigEndNoMeta.dcm"))


def test_library_warnings_go_into_the_provenance_without_paths(caplog: pytest.LogCaptureFixture) -> None:
    prepared, escaped = _quietly(read, _pydicom_file("SC_rgb_jpeg.dcm"))
    assert escaped == []
    notes = [w for w in prepared.provenance.warnings if w.startswith("pydicom: ")]
    assert notes == ["pydicom: Expected explicit VR, but found implicit VR - using implicit VR for reading"]
    padded, escaped = _quietly(read, _pydicom_file("MR_small_padded.dcm"))
    assert escaped == []
    assert any("excess padding" in w for w in padded.provenance.warnings)
    assert not [r for r in caplog.records if r.name == "pydicom"]  # nor logged a second time
    assert not any("site-packages" in w for w in padded.provenance.warnings)


@pytest.mark.parametrize(
    ("modality", "name"), [("CT", "a CT image"), ("US", "an? ultrasound image"), ("MR", "a MR image")]
)
def test_cxr_kind_refuses_another_modality_naming_it(
    samples: Any, tmp_path: Path, modality: str, name: str
) -> None:
    ds = pydicom.dcmread(samples("dicom/ct/CT_small.dcm"))
    ds.Modality = modality
    ds.save_as(tmp_path / "x.dcm")
    with pytest.raises(
        UnsupportedFormatError, match=rf"{name} \(DICOM Modality {modality}\), not a chest X-ray"
    ):
        read(tmp_path / "x.dcm", "cxr")
    assert read(tmp_path / "x.dcm", "image").kind == "image"  # read as what it is, it is fine


def test_cxr_kind_on_a_radiograph_of_another_part_warns(samples: Any, tmp_path: Path) -> None:
    ds = pydicom.dcmread(samples("dicom/cxr/highdicom_dx_image.dcm"))
    ds.BodyPartExamined = "HAND"
    ds.save_as(tmp_path / "hand.dcm")
    prepared = read(tmp_path / "hand.dcm", "cxr")
    assert prepared.kind == "cxr"
    assert "BodyPartExamined is HAND, not chest: read as a chest X-ray because kind cxr was asked" in (
        prepared.provenance.warnings
    )


def test_ct_kind_on_an_mr_nifti_warns_naming_it(samples: Any) -> None:
    prepared = read(samples("nifti/anatomical.nii"), "ct")
    assert any("not CT in Hounsfield units (an MR volume?)" in w for w in prepared.provenance.warnings)
    assert not any(
        "Hounsfield" in w for w in read(samples("nifti/anatomical.nii"), "mri").provenance.warnings
    )


def test_mri_kind_on_a_ct_nifti_warns(tmp_path: Path) -> None:
    hu = np.full((16, 16, 8), -1000, dtype=np.int16)
    hu[4:12, 4:12] = 40
    nib.save(nib.Nifti1Image(hu, np.eye(4)), tmp_path / "ct.nii")
    prepared = read(tmp_path / "ct.nii", "mri")
    assert any("this looks like CT" in w for w in prepared.provenance.warnings)
    assert not any("looks like CT" in w for w in read(tmp_path / "ct.nii", "ct").provenance.warnings)


def test_sagittal_anisotropic_nifti_warns_like_the_dicom_path(tmp_path: Path) -> None:
    # voxel axes: i -> posterior-anterior (1 mm), j -> inferior-superior (1 mm), k -> left-right (4 mm):
    # a stack of sagittal slices 4 mm apart. Shown as axial, each image is 4 mm x 1 mm pixels.
    affine = np.array([[0, 0, 4.0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])
    nib.save(
        nib.Nifti1Image(np.arange(16 * 16 * 8, dtype=np.int16).reshape(16, 16, 8), affine), tmp_path / "s.nii"
    )
    warnings_ = read(tmp_path / "s.nii", "mri").provenance.warnings
    assert any(w.startswith("the file holds sagittal slices (axes ASR)") for w in warnings_), warnings_
    assert any(w.startswith("axial pixels are 4 x 1 mm (not square)") for w in warnings_), warnings_
    axial = nib.Nifti1Image(np.zeros((16, 16, 8), dtype=np.int16), np.diag([1.0, 1.0, 3.0, 1.0]))
    nib.save(axial, tmp_path / "a.nii")
    assert not any(
        "slices (axes" in w or "not square" in w for w in read(tmp_path / "a.nii", "mri").provenance.warnings
    )


def test_copied_public_deflated_file_in_a_folder_is_one_image(tmp_path: Path) -> None:
    shutil.copy(_pydicom_file("image_dfl.dcm"), tmp_path / "one.dcm")
    assert read(tmp_path).kind == "image"
