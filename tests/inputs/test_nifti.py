"""NIfTI volumes: orientation, slice direction, scl_slope/inter, 4D, and bad files."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from aris.inputs.errors import CorruptFileError, SeriesError, UnsupportedFormatError
from aris.inputs.nifti import read_nifti
from aris.inputs.volume import minmax_grey, sample_indices, window_ct


def _grey(prepared: Any) -> np.ndarray:
    return np.stack([np.asarray(im) for im in prepared.images])


def test_ras_brain_t1(samples: Any) -> None:
    path = samples("nifti/mricron_ch2_colin27_t1.nii.gz")
    prepared = read_nifti(path, modality="mri")
    data = nib.load(path).get_fdata()
    assert nib.aff2axcodes(nib.load(path).affine) == ("R", "A", "S")
    idx = [round(i / 85 * 180) for i in range(1, 86)]
    assert prepared.provenance.details["indices"] == idx == sample_indices(181)
    # Radiological axial view of RAS data: rows from anterior (top) to posterior, columns from the
    # patient's right (image left) to left: out[r, c] = data[X-1-c, Y-1-r, k].
    nx, ny, _ = data.shape
    r, c = np.mgrid[0:ny, 0:nx]
    slices = np.stack([data[nx - 1 - c, ny - 1 - r, k] for k in idx])
    expected, _ = minmax_grey(slices, (float(data.min()), float(data.max())))
    got = _grey(prepared)
    assert got.shape == (85, 217, 181, 3)
    assert np.array_equal(got, expected)
    assert prepared.kind == "mri"
    assert prepared.provenance.details["minmax"] == [0.0, 254.0]
    assert prepared.provenance.warnings == []


def test_las_volume_is_flipped_to_ras(samples: Any) -> None:
    path = samples("nifti/anatomical.nii")
    img = nib.load(path)
    assert "".join(nib.aff2axcodes(img.affine)) == "LAS"
    prepared = read_nifti(path, modality="mri")
    d = prepared.provenance.details
    assert d["orientation_in_file"] == "LAS"
    assert d["orientation_used"] == "RAS"
    data = img.get_fdata()  # x runs to the LEFT here: the patient's right is x = 0 already
    nx, ny, nz = data.shape
    r, c = np.mgrid[0:ny, 0:nx]
    slices = np.stack([data[c, ny - 1 - r, k] for k in range(nz)])
    expected, _ = minmax_grey(slices, (float(data.min()), float(data.max())))
    assert np.array_equal(_grey(prepared), expected)


def test_4d_uses_the_first_volume(samples: Any) -> None:
    path = samples("nifti/example4d.nii.gz")
    prepared = read_nifti(path, modality="mri")
    assert prepared.provenance.warnings[0] == "4D file (2 volumes): the first volume used"
    first = nib.as_closest_canonical(nib.load(path).slicer[..., 0]).get_fdata()
    expected, _ = minmax_grey(
        np.stack([first[::-1, ::-1, k].T for k in range(24)]), (float(first.min()), float(first.max()))
    )
    assert np.array_equal(_grey(prepared), expected)


def test_ct_nifti_applies_scl_slope_and_inter(mv: Any, tmp_path: Path) -> None:
    spec = mv.SeriesSpec(n_slices=6, size=24)
    hu = np.stack([mv.slice_hu(spec, k) for k in range(6)], axis=-1).astype(np.float64)  # (x, y, z)
    stored = ((hu + 1024) * 2).astype(np.int16)  # HU = stored * 0.5 - 1024
    img = nib.Nifti1Image(stored, np.diag([0.7, 0.7, 2.0, 1.0]))
    img.header.set_slope_inter(0.5, -1024)
    path = tmp_path / "ct.nii.gz"
    nib.save(img, path)
    prepared = read_nifti(path, modality="ct")
    d = prepared.provenance.details
    assert (d["scl_slope"], d["scl_inter"]) == (0.5, -1024.0)
    expected = window_ct(np.stack([hu[::-1, ::-1, k].T for k in range(6)]))
    assert prepared.kind == "ct"
    assert np.array_equal(_grey(prepared), expected)
    assert d["spacing_mm"] == 2.0
    assert d["orientation"] == "axial"


def test_bad_nifti_inputs(tmp_path: Path, samples: Any) -> None:
    (tmp_path / "notes.nii").write_text("not a volume")
    with pytest.raises((UnsupportedFormatError, CorruptFileError)):
        read_nifti(tmp_path / "notes.nii")
    whole = gzip.decompress(samples("nifti/example4d.nii.gz").read_bytes())
    (tmp_path / "cut.nii").write_bytes(whole[: len(whole) // 3])
    with pytest.raises(CorruptFileError, match=r"cut\.nii"):
        read_nifti(tmp_path / "cut.nii", modality="mri")
    flat = nib.Nifti1Image(np.zeros((4, 4), dtype=np.int16), np.eye(4))
    nib.save(flat, tmp_path / "flat.nii")
    with pytest.raises(SeriesError, match="2D image, not a volume"):
        read_nifti(tmp_path / "flat.nii")
    with pytest.raises(SeriesError, match="no volume recipe"):
        read_nifti(tmp_path / "flat.nii", modality="pet")  # type: ignore[arg-type]
