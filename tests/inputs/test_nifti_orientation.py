"""NIfTI orientation the header does not vouch for: no qform/sform, or a qform and sform that disagree.

nibabel falls back to LAS when both codes are 0 and uses the sform when both are set; either way the
same voxels can come out mirrored left-right, so the reader must say so in the provenance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from aris.inputs import read
from aris.inputs.nifti import read_nifti
from aris.inputs.volume import window_ct

RAS = np.diag([2.0, 2.0, 3.0, 1.0])
LAS = np.diag([-2.0, 2.0, 3.0, 1.0])
NO_FORMS = (
    "no qform/sform in the header: orientation unknown, the voxel axes were assumed to be LAS; "
    "left and right may be swapped"
)


def _volume(n_slices: int = 10) -> np.ndarray:
    """CT in HU: air, with a bright block at high voxel i (the patient's right if the axes are RAS)."""
    data = np.full((64, 64, n_slices), -1000, dtype=np.int16)
    data[40:60, 20:44, :] = 400
    return data


def _save(
    tmp_path: Path,
    name: str,
    *,
    sform: np.ndarray = RAS,
    scode: int = 1,
    qform: np.ndarray = RAS,
    qcode: int = 1,
    data: np.ndarray | None = None,
    cls: Any = nib.Nifti1Image,
) -> Path:
    img = cls(_volume() if data is None else data, None)
    img.header.set_sform(sform, code=scode)
    img.header.set_qform(qform, code=qcode)
    path = tmp_path / name
    nib.save(img, path)
    h = nib.load(path).header
    assert (int(h["qform_code"]), int(h["sform_code"])) == (qcode, scode)
    return path


def _orientation_warnings(prepared: Any) -> list[str]:
    return [w for w in prepared.provenance.warnings if "qform" in w or "orientation unknown" in w]


def _marker_on_image_left(prepared: Any) -> bool:
    a = np.asarray(prepared.images[0])[..., 0]
    cols = np.where(a.max(axis=0) > 150)[0]
    return bool(cols.mean() < a.shape[1] / 2)


def test_agreeing_forms_give_no_orientation_warning(tmp_path: Path) -> None:
    prepared = read_nifti(_save(tmp_path, "ras.nii"), modality="ct")
    d = prepared.provenance.details
    assert (d["qform_code"], d["sform_code"], d["affine_from"]) == (1, 1, "sform")
    assert _orientation_warnings(prepared) == []
    assert _marker_on_image_left(prepared)  # the patient's right is on the image left


@pytest.mark.parametrize(("qcode", "scode", "source"), [(1, 0, "qform"), (0, 2, "sform")])
def test_one_form_alone_is_trusted(tmp_path: Path, qcode: int, scode: int, source: str) -> None:
    prepared = read_nifti(_save(tmp_path, "one.nii", qcode=qcode, scode=scode), modality="ct")
    d = prepared.provenance.details
    assert (d["qform_code"], d["sform_code"], d["affine_from"]) == (qcode, scode, source)
    assert d["orientation_in_file"] == "RAS"
    assert _orientation_warnings(prepared) == []


@pytest.mark.parametrize("name", ["none.nii", "none.nii.gz"])
def test_no_qform_or_sform_warns_that_orientation_was_assumed(tmp_path: Path, name: str) -> None:
    data = _volume()
    path = _save(tmp_path, name, qcode=0, scode=0, data=data)
    prepared = read(path, "ct")
    d = prepared.provenance.details
    assert (d["qform_code"], d["sform_code"], d["affine_from"]) == (0, 0, "default")
    assert d["orientation_in_file"] == "LAS"
    assert NO_FORMS in prepared.provenance.warnings
    # The pixels are unchanged: nibabel's LAS default, turned to RAS as before (x = 0 is the right).
    hu = data.astype(np.float64)
    expected = window_ct(np.stack([hu[:, ::-1, k].T for k in prepared.provenance.details["indices"]]))
    assert np.array_equal(np.stack([np.asarray(im) for im in prepared.images]), expected)
    assert not _marker_on_image_left(prepared)  # read as LAS: the block is taken for the left


def test_no_forms_in_a_4d_file_still_warns(tmp_path: Path) -> None:
    data = np.stack([_volume(), _volume()], axis=-1)
    prepared = read_nifti(_save(tmp_path, "4d.nii", qcode=0, scode=0, data=data), modality="ct")
    assert prepared.provenance.warnings[:2] == ["4D file (2 volumes): the first volume used", NO_FORMS]


def test_nifti2_without_forms_warns(tmp_path: Path) -> None:
    path = _save(tmp_path, "two.nii", qcode=0, scode=0, cls=nib.Nifti2Image)
    prepared = read_nifti(path, modality="ct")
    assert prepared.provenance.details["affine_from"] == "default"
    assert NO_FORMS in prepared.provenance.warnings


@pytest.mark.parametrize(
    ("sform", "qform", "used", "other", "marker_left"),
    [(RAS, LAS, "RAS", "LAS", True), (LAS, RAS, "LAS", "RAS", False)],
)
def test_qform_and_sform_disagreeing_left_right_warns(
    tmp_path: Path, sform: np.ndarray, qform: np.ndarray, used: str, other: str, marker_left: bool
) -> None:
    prepared = read_nifti(_save(tmp_path, "clash.nii", sform=sform, qform=qform), modality="ct")
    d = prepared.provenance.details
    assert (d["qform_code"], d["sform_code"], d["affine_from"]) == (1, 1, "sform")
    assert d["orientation_in_file"] == used
    assert _orientation_warnings(prepared) == [
        f"the header's qform ({other}) and sform ({used}) disagree on the orientation: the sform was used; "
        "if the qform is right, left and right are swapped as shown"
    ]
    assert _marker_on_image_left(prepared) is marker_left  # the sform decides, as nibabel does


def test_qform_and_sform_placing_voxels_apart_warns(tmp_path: Path) -> None:
    shifted = RAS.copy()
    shifted[:3, 3] = [0.0, 5.0, 0.0]
    prepared = read_nifti(_save(tmp_path, "shift.nii", qform=shifted), modality="ct")
    assert _orientation_warnings(prepared) == [
        "the header's qform and sform disagree (they place voxels up to 5 mm apart): the sform was used"
    ]


def test_forms_equal_up_to_rounding_do_not_warn(tmp_path: Path) -> None:
    nearly = RAS.copy()
    nearly[:3, 3] = [1e-4, -1e-4, 2e-5]
    prepared = read_nifti(_save(tmp_path, "near.nii", qform=nearly), modality="ct")
    assert _orientation_warnings(prepared) == []


def test_analyze_without_spm_mat_warns(tmp_path: Path) -> None:
    nib.save(nib.AnalyzeImage(_volume(), RAS), tmp_path / "an.hdr")
    assert not (tmp_path / "an.mat").exists()
    prepared = read_nifti(tmp_path / "an.hdr", modality="ct")
    assert prepared.provenance.details["affine_from"] == "default"
    assert (
        "an Analyze header stores no orientation: orientation unknown, the voxel axes were assumed to be LAS; "
        "left and right may be swapped"
    ) in prepared.provenance.warnings


def test_analyze_with_spm_mat_is_trusted(tmp_path: Path) -> None:
    nib.save(nib.Spm2AnalyzeImage(_volume(), RAS), tmp_path / "spm.hdr")
    assert (tmp_path / "spm.mat").exists()
    prepared = read_nifti(tmp_path / "spm.hdr", modality="ct")
    assert prepared.provenance.details["affine_from"] == "SPM .mat"
    assert prepared.provenance.details["orientation_in_file"] == "RAS"
    assert _orientation_warnings(prepared) == []


def test_sample_files_keep_their_clean_provenance(samples: Any) -> None:
    # colin27 has a stale RPI qform with qform_code 0 beside its sform: only the sform counts.
    colin = read_nifti(samples("nifti/mricron_ch2_colin27_t1.nii.gz"), modality="mri")
    assert colin.provenance.details["affine_from"] == "sform"
    assert colin.provenance.warnings == []
    # example4d's qform and sform differ by float rounding only.
    four = read_nifti(samples("nifti/example4d.nii.gz"), modality="mri")
    assert _orientation_warnings(four) == []
