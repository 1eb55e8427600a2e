"""The read() dispatcher end to end, read_many, token estimates and the engine budget check."""

from __future__ import annotations

import math
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from aris.engines.fake import FakeEngine
from aris.errors import BudgetError, ConfigError
from aris.inputs import Failure, estimate_tokens, read, read_many
from aris.inputs.errors import CorruptFileError, UnsupportedFormatError
from aris.inputs.fhir import read_fhir
from aris.inputs.images import read_image
from aris.inputs.nifti import read_nifti
from aris.inputs.pdf import read_pdf
from aris.inputs.series import read_series
from aris.inputs.wsi import read_wsi
from aris.prompt import build_turns
from aris.types import GenerationParams, Message, TextPart


def same_images(a: list[Image.Image], b: list[Image.Image]) -> bool:
    return len(a) == len(b) and all(
        x.tobytes() == y.tobytes() and x.size == y.size for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize(
    ("rel", "kind", "direct"),
    [
        ("dicom/cxr/highdicom_dx_image.dcm", "cxr", lambda p: read_image(p)),
        ("dicom/compressed/SC_jpeg_no_color_transform.dcm", "image", lambda p: read_image(p)),
        ("dicom/ct_series/head_ct2_4slices", "ct", lambda p: read_series(p, modality="ct")),
        ("dicom/mr_series/mra_mr700_7slices", "mri", lambda p: read_series(p, modality="mri")),
        ("dicom/mr/MR_small.dcm", "mri", lambda p: read_series(p, modality="mri")),
        ("nifti/anatomical.nii", "mri", lambda p: read_nifti(p, modality="mri")),
        ("wsi/cmu_small_region_pyramid.tiff", "wsi", lambda p: read_wsi(p)),
        ("lab/synthetic_lab_report.pdf", "pdf", lambda p: read_pdf(p)),
        ("fhir/synthetic_patient_bundle_r4.json", "fhir", lambda p: read_fhir(p)),
    ],
)
def test_auto_dispatch_gives_the_readers_own_result(samples, rel, kind, direct) -> None:  # type: ignore[no-untyped-def]
    path = samples(rel)
    got = read(path)
    want = direct(path)
    assert got.kind == kind
    assert same_images(got.images, want.images)
    assert got.labels == want.labels
    assert got.text == want.text
    assert got.provenance.warnings == want.provenance.warnings


def test_kind_given_by_the_caller_wins_for_2d(tmp_path: Path) -> None:
    png = tmp_path / "chest.png"
    Image.new("L", (40, 30), 128).save(png)
    assert read(png).kind == "image"
    assert read(png, kind="cxr").kind == "cxr"
    assert read(png, kind="cxr").provenance.kind == "cxr"


def test_options_reach_their_reader(samples) -> None:  # type: ignore[no-untyped-def]
    cxr = read(samples("dicom/cxr/highdicom_dx_image.dcm"), pad_square=True)
    assert cxr.padding is not None
    assert cxr.images[0].size[0] == cxr.images[0].size[1] == cxr.padding.size
    wsi = read(samples("wsi/cmu_small_region_pyramid.tiff"), magnification="20X", max_tiles=2)
    assert wsi.provenance.details["magnification"] == "20X"
    assert len(wsi.images) == 2
    # an option of another reader is ignored, with a warning; an option no reader takes is an error
    pdf = read(samples("lab/synthetic_lab_report.pdf"), magnification="20X")
    assert "magnification do not apply to pdf input" in pdf.provenance.warnings[-1]
    with pytest.raises(ConfigError, match="unknown input option"):
        read(samples("lab/synthetic_lab_report.pdf"), colour="blue")
    with pytest.raises(ConfigError, match="unknown input kind 'xray'"):
        read(samples("lab/synthetic_lab_report.pdf"), kind="xray")


def test_series_option_and_alias(samples) -> None:  # type: ignore[no-untyped-def]
    import pydicom

    folder = samples("dicom/ct_series")
    uid = pydicom.dcmread(
        next((folder / "cardiac_ct5n_5slices").iterdir()), stop_before_pixels=True
    ).SeriesInstanceUID
    a = read(folder, series=uid)
    b = read(folder, kind="ct", series_uid=uid)
    assert len(a.images) == 5
    assert same_images(a.images, b.images)


def test_list_folder_of_one_and_zips(samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    series = samples("dicom/ct_series/cardiac_ct5n_5slices")
    files = sorted(series.iterdir())
    by_folder = read(series)
    assert same_images(read(files).images, by_folder.images)
    zipped = tmp_path / "ct.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for f in files:
            zf.write(f, f"x/{f.name}")
    assert same_images(read(zipped).images, by_folder.images)
    one = tmp_path / "upload"
    one.mkdir()
    shutil.copy(samples("lab/synthetic_lab_report.pdf"), one / "00000.pdf")
    assert read(one).kind == "pdf"  # an upload folder holding one file is that file
    nested = tmp_path / "unzipped" / "inner"
    nested.mkdir(parents=True)
    shutil.copy(samples("lab/synthetic_lab_report.pdf"), nested / "r.pdf")
    assert read(tmp_path / "unzipped").kind == "pdf"  # ...however deep it sits
    shutil.copy(samples("dicom/cxr/highdicom_dx_image.dcm"), nested / "c.dcm")
    with pytest.raises(UnsupportedFormatError, match="not one pdf input: read each file"):
        read(tmp_path / "unzipped", kind="pdf")
    pdf_zip = tmp_path / "report.zip"
    with zipfile.ZipFile(pdf_zip, "w") as zf:
        zf.write(samples("lab/synthetic_lab_report.pdf"), "report.pdf")
    p = read(pdf_zip)
    assert p.kind == "pdf"
    assert p.provenance.sources == [str(pdf_zip)]
    assert same_images(p.images, read_pdf(samples("lab/synthetic_lab_report.pdf")).images)


def test_read_many_goes_on_past_bad_files(samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01 not anything")
    paths = [
        samples("dicom/cxr/highdicom_dx_image.dcm"),
        empty,
        samples("lab/synthetic_lab_report.pdf"),
        junk,
    ]
    seen: list[tuple[int, str]] = []
    inputs, failures = read_many(paths, on_progress=lambda i, p, r: seen.append((i, type(r).__name__)))
    assert [p.kind for p in inputs] == ["cxr", "pdf"]
    assert [f.path for f in failures] == [str(empty), str(junk)]
    assert failures[0] == Failure(str(empty), f"{empty}: empty file (0 bytes)", "CorruptFileError")
    assert failures[1].type == UnsupportedFormatError.__name__
    assert seen == [(0, "PreparedInput"), (1, "Failure"), (2, "PreparedInput"), (3, "Failure")]
    kept, _ = read_many(paths[:1], keep=False)
    assert kept == []
    with pytest.raises(ConfigError):
        read_many(paths, colour="blue")


def test_missing_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(CorruptFileError, match=r"nothere\.dcm: no such file"):
        read(tmp_path / "nothere.dcm")


# --- token estimates and the engine budget -------------------------------------------------------


def test_estimate_tokens_by_hand(samples) -> None:  # type: ignore[no-untyped-def]
    ct = read(samples("dicom/ct_series/head_ct2_4slices"))
    est = estimate_tokens(ct)
    assert est["images"] == 4
    assert est["image_tokens"] == 4 * 256
    assert est["label_tokens"] == 4 * math.ceil(len("SLICE 1") / 3)
    assert est["context_tokens"] == 0
    assert est["total"] == 4 * 256 + 4 * 4 + est["label_tokens"]
    pdf = read(samples("lab/synthetic_lab_report.pdf"))
    est = estimate_tokens(pdf)
    assert est["label_tokens"] == 0  # pages carry no text parts
    assert est["context_tokens"] == math.ceil(len(pdf.text) / 3)
    fhir = read(samples("fhir/synthetic_patient_bundle_r4.json"))
    est = estimate_tokens(fhir)
    assert est["images"] == 0
    assert est["context_tokens"] == 0  # the rendering is the text part: not counted twice
    assert est["label_tokens"] == math.ceil(len(fhir.text) / 3)


def _turns(parts: list) -> list:  # type: ignore[type-arg]
    return build_turns([Message("user", [*parts, TextPart("Describe.")])])


def test_126_tiles_do_not_fit_a_small_engine(samples) -> None:  # type: ignore[no-untyped-def]
    # 64 px tiles of the real slide: 126 images is what matters to the budget, not their size
    wsi = read(samples("wsi/cmu_small_region_pyramid.tiff"), magnification="20X", tile=64)
    assert len(wsi.images) == 126
    need = estimate_tokens(wsi)["total"]
    assert need > 126 * 256
    turns = _turns(wsi.parts)
    params = GenerationParams(max_new_tokens=256)
    with pytest.raises(BudgetError, match=r"126 images x 256 .* context is 8192"):
        FakeEngine(max_context=8192).check_budget(turns, params)
    with pytest.raises(BudgetError, match="126 images exceed this engine's limit of 85"):
        FakeEngine(max_images=85).check_budget(turns, params)
    # 126 x 256 = 32,256 image tokens alone: a slide needs more than the 32K that suffices for CT
    FakeEngine(max_context=40960, max_images=128).check_budget(turns, params)


def test_85_slice_ct_needs_a_32k_context(tmp_path: Path) -> None:
    vol = np.full((32, 32, 120), -1000, np.int16)
    vol[8:24, 8:24] = 40
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    ct = read(path)
    assert ct.kind == "ct"
    assert len(ct.images) == 85
    assert ct.labels[-1] == "SLICE 85"
    turns = _turns(ct.parts)
    params = GenerationParams(max_new_tokens=512)
    with pytest.raises(BudgetError, match=r"85 images x 256 .* --max-model-len >= 32768"):
        FakeEngine(max_context=16384).check_budget(turns, params)
    FakeEngine(max_context=32768).check_budget(turns, params)
    assert estimate_tokens(ct)["total"] < 32768 - 512
