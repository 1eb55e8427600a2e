"""Kind detection from content: every sample, plus files whose names lie."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image

from aris.inputs.detect import detect_kind
from aris.inputs.errors import CorruptFileError, NoPixelDataError, UnsupportedFormatError

SAMPLES = {
    "dicom/compressed/JPEG-LL.dcm": "image",  # NM
    "dicom/compressed/JPGExtended.dcm": "image",
    "dicom/compressed/MR2_J2KR.dcm": "mri",
    "dicom/compressed/MR_small_RLE.dcm": "mri",
    "dicom/compressed/MR_small_jp2klossless.dcm": "mri",
    "dicom/compressed/MR_small_jpeg_ls_lossless.dcm": "mri",
    "dicom/compressed/SC_jpeg_no_color_transform.dcm": "image",
    "dicom/compressed/emri_small_jpeg_2k_lossless.dcm": "mri",
    "dicom/compressed/examples_ybr_color.dcm": "image",  # US
    "dicom/ct/CT_small.dcm": "ct",
    "dicom/ct/eCT_Supplemental.dcm": "ct",
    "dicom/ct_series/head_ct2_4slices/17106": "ct",  # no extension
    "dicom/ct_series/cardiac_ct5n_5slices/2062": "ct",
    "dicom/cxr/RG1_J2KI.dcm": "cxr",
    "dicom/cxr/RG1_UNCR.dcm": "cxr",
    "dicom/cxr/highdicom_dx_image.dcm": "cxr",
    "dicom/mr/MR_small.dcm": "mri",
    "dicom/mr/emri_small.dcm": "mri",
    "dicom/mr/dicom3tools_0051_brain_asl.dcm": "mri",
    "dicom/mr_series/mra_mr700_7slices/4467": "mri",
    "dicom/sm/sm_image.dcm": "wsi",
    "dicom/sm/sm_image_jpegls.dcm": "wsi",
    "nifti/mricron_ch2_colin27_t1.nii.gz": "mri",
    "nifti/anatomical.nii": "mri",
    "nifti/example4d.nii.gz": "mri",
    "wsi/cmu_small_region.svs": "wsi",
    "wsi/cmu_small_region_pyramid.tiff": "wsi",
    "lab/synthetic_lab_report.pdf": "pdf",
    "fhir/synthetic_patient_bundle_r4.json": "fhir",
    # folders
    "dicom/ct_series/head_ct2_4slices": "ct",
    "dicom/ct_series/cardiac_ct5n_5slices": "ct",
    "dicom/ct_series": "ct",  # two CT series and a SEG: still CT
    "dicom/mr_series/mra_mr700_7slices": "mri",
    "dicom/sm": "wsi",
}


@pytest.mark.parametrize(("rel", "kind"), sorted(SAMPLES.items()))
def test_every_sample(samples, rel: str, kind: str) -> None:  # type: ignore[no-untyped-def]
    assert detect_kind(samples(rel)) == kind


def test_modality_answers_agree_with_pydicom(samples) -> None:  # type: ignore[no-untyped-def]
    """The DICOM answers above follow the files' own Modality/SOP Class, read independently."""
    for rel, kind in SAMPLES.items():
        path = samples(rel)
        if path.is_dir() or not rel.startswith("dicom/"):
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "Secondary Capture" in ds.SOPClassUID.name:  # pydicom's own name of the SOP Class
            assert kind == "image", rel
        else:
            expected = {"CT": "ct", "MR": "mri", "SM": "wsi", "CR": "cxr", "DX": "cxr"}.get(
                ds.Modality, "image"
            )
            assert kind == expected, rel


def test_dicom_with_a_tiff_preamble_is_dicom(samples) -> None:  # type: ignore[no-untyped-def]
    path = samples("dicom/cxr/RG1_UNCR.dcm")
    assert path.read_bytes()[:4] == b"II*\x00"  # dual-personality DICOM/TIFF
    assert detect_kind(path) == "cxr"


def test_names_do_not_decide(samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    png = tmp_path / "looks_like.dcm"
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    jpg = tmp_path / "photo.bin"
    Image.new("RGB", (8, 8)).save(jpg, format="JPEG")
    dcm = tmp_path / "scan.png"
    shutil.copy(samples("dicom/ct/CT_small.dcm"), dcm)
    pdf = tmp_path / "report"
    shutil.copy(samples("lab/synthetic_lab_report.pdf"), pdf)
    assert detect_kind(png) == "image"
    assert detect_kind(jpg) == "image"
    assert detect_kind(dcm) == "ct"
    assert detect_kind(pdf) == "pdf"


def test_dicom_without_preamble(samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ds = pydicom.dcmread(samples("dicom/ct/CT_small.dcm"))
    del ds.file_meta
    ds.preamble = None
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=True, little_endian=True, enforce_file_format=False)
    raw = tmp_path / "raw"
    raw.write_bytes(buf.getvalue())
    assert raw.read_bytes()[128:132] != b"DICM"
    assert detect_kind(raw) == "ct"


def test_non_image_dicom_is_refused(samples) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NoPixelDataError, match=r"seg_image_ct_binary_for_head_ct2\.dcm: a DICOM SEG object"):
        detect_kind(samples("dicom/ct_series/seg_image_ct_binary_for_head_ct2.dcm"))


def test_nifti_ct_by_hounsfield_range(tmp_path: Path) -> None:
    vol = np.full((16, 16, 8), -1000, np.int16)
    vol[4:12, 4:12] = 40  # soft tissue in air
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image((vol + 1000).astype(np.uint16), np.eye(4)), tmp_path / "mr.nii")
    assert detect_kind(tmp_path / "ct.nii.gz") == "ct"
    assert detect_kind(tmp_path / "mr.nii") == "mri"


def test_small_plain_tiff_is_an_image_tiled_one_a_slide(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "scan.tif", np.zeros((64, 64, 3), np.uint8))
    tifffile.imwrite(tmp_path / "tiled.tif", np.zeros((512, 512, 3), np.uint8), tile=(256, 256))
    assert detect_kind(tmp_path / "scan.tif") == "image"
    assert detect_kind(tmp_path / "tiled.tif") == "wsi"


def test_fhir_json_and_ndjson(samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = json.loads(samples("fhir/synthetic_patient_bundle_r4.json").read_text())
    nd = tmp_path / "obs.ndjson"
    nd.write_text("\n".join(json.dumps(e["resource"]) for e in bundle["entry"][:3]))
    assert detect_kind(nd) == "fhir"
    with pytest.raises(UnsupportedFormatError, match="JSON list without a FHIR resourceType"):
        detect_kind(samples("lab/synthetic_lab_report.truth.json"))


def test_zips(samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    series = samples("dicom/mr_series/mra_mr700_7slices")
    mr_zip = tmp_path / "mr.zip"
    with zipfile.ZipFile(mr_zip, "w") as zf:
        for f in sorted(series.iterdir()):
            zf.write(f, f"study/{f.name}")
        zf.writestr("__MACOSX/._4467", b"junk")
    assert detect_kind(mr_zip) == "mri"
    pdf_zip = tmp_path / "report.zip"
    with zipfile.ZipFile(pdf_zip, "w") as zf:
        zf.write(samples("lab/synthetic_lab_report.pdf"), "report.pdf")
    assert detect_kind(pdf_zip) == "pdf"
    mixed = tmp_path / "mixed.zip"
    with zipfile.ZipFile(mixed, "w") as zf:
        zf.write(samples("lab/synthetic_lab_report.pdf"), "a.pdf")
        zf.write(samples("fhir/synthetic_patient_bundle_r4.json"), "b.json")
    with pytest.raises(UnsupportedFormatError, match=r"mixed\.zip: zip of 2 files"):
        detect_kind(mixed)


def test_folder_of_separate_images_is_not_one_input(samples) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnsupportedFormatError, match=r"cxr: holds separate files \(3 cxr\)"):
        detect_kind(samples("dicom/cxr"))


def test_bad_files(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "noise").write_bytes(bytes(range(256)) * 8)
    gz = tmp_path / "notnifti.nii.gz"
    gz.write_bytes(gzip.compress(b"hello"))
    with pytest.raises(CorruptFileError, match=r"empty: empty file"):
        detect_kind(tmp_path / "empty")
    with pytest.raises(CorruptFileError, match=r"missing\.dcm: no such file"):
        detect_kind(tmp_path / "missing.dcm")
    with pytest.raises(UnsupportedFormatError, match=r"noise: unknown format"):
        detect_kind(tmp_path / "noise")
    with pytest.raises(UnsupportedFormatError, match=r"notnifti\.nii\.gz: unknown format"):
        detect_kind(gz)
