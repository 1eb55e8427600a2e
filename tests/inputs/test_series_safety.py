"""Series inputs that must fail loudly or warn, never come out silently wrong (audit of the readers)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut
from pydicom.uid import generate_uid

from aris.inputs import dicom
from aris.inputs.errors import CorruptFileError
from aris.inputs.series import read_series
from aris.inputs.volume import window_ct


def _source(name: str) -> Dataset:
    path = get_testdata_file(name)
    assert path is not None
    return pydicom.dcmread(path)


def _series(
    folder: Path,
    name: str,
    n: int,
    mutate: Callable[[Dataset, int], None] = lambda ds, i: None,
    *,
    z: Callable[[int], float] = lambda i: 5.0 * i,
) -> Path:
    """``n`` copies of a pydicom test slice as one series, slice ``i`` at ``z(i)``, then ``mutate``d."""
    folder.mkdir(parents=True, exist_ok=True)
    src = _source(name)
    uid = generate_uid()
    for i in range(n):
        ds = copy.deepcopy(src)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0, 0, z(i)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        mutate(ds, i)
        ds.save_as(folder / f"{i:03d}.dcm")
    return folder


def _fill(ds: Dataset, value: int) -> None:
    ds.PixelData = np.full((ds.Rows, ds.Columns), value, np.int16).tobytes()


# -- 1. CT slices without Rescale Slope/Intercept -------------------------------------------------


def test_ct_without_rescale_warns_that_stored_values_are_taken_as_hu(tmp_path: Path) -> None:
    def strip(ds: Dataset, i: int) -> None:
        del ds.RescaleSlope
        del ds.RescaleIntercept

    folder = _series(tmp_path / "s", "CT_small.dcm", 6, strip)
    prepared = read_series(folder)
    hit = [w for w in prepared.provenance.warnings if "no RescaleSlope/RescaleIntercept" in w]
    assert len(hit) == 1  # once per series
    assert "6 slices" in hit[0]
    assert "stored values taken as Hounsfield units" in hit[0]


def test_ct_with_a_complete_rescale_gives_no_rescale_warning(tmp_path: Path) -> None:
    prepared = read_series(_series(tmp_path / "s", "CT_small.dcm", 6))
    assert not any("Rescale" in w for w in prepared.provenance.warnings)


@pytest.mark.parametrize("drop", ["RescaleIntercept", "RescaleSlope"])
def test_ct_with_half_a_rescale_names_the_file(tmp_path: Path, drop: str) -> None:
    def half(ds: Dataset, i: int) -> None:
        ds.RescaleSlope = 2
        if i == 3:
            delattr(ds, drop)

    folder = _series(tmp_path / "s", "CT_small.dcm", 6, half)
    with pytest.raises(CorruptFileError) as e:
        read_series(folder)
    assert "003.dcm" in str(e.value)
    assert drop.replace("Rescale", "") in e.value.problem


# -- 2 and 3. Enhanced CT: Pixel Value Transformation ---------------------------------------------


def _enhanced(path: Path, mutate: Callable[[Dataset], None]) -> Path:
    ds = _source("eCT_Supplemental.dcm")
    mutate(ds)
    ds.save_as(path)
    return path


def _without_pvt(ds: Dataset) -> None:
    for item in [*ds.SharedFunctionalGroupsSequence, *ds.PerFrameFunctionalGroupsSequence]:
        if "PixelValueTransformationSequence" in item:
            del item.PixelValueTransformationSequence


def test_enhanced_ct_without_pixel_value_transformation_warns(tmp_path: Path) -> None:
    prepared = read_series(_enhanced(tmp_path / "e.dcm", _without_pvt), modality="ct")
    assert any(
        "no RescaleSlope/RescaleIntercept in 2 slices" in w and "Hounsfield" in w
        for w in prepared.provenance.warnings
    )


def test_enhanced_ct_with_half_a_pixel_value_transformation_names_the_file(tmp_path: Path) -> None:
    def half(ds: Dataset) -> None:
        del ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0].RescaleIntercept

    path = _enhanced(tmp_path / "half.dcm", half)
    with pytest.raises(CorruptFileError) as e:
        read_series(path, modality="ct")
    assert "half.dcm" in str(e.value)
    assert "RescaleIntercept" in e.value.problem


def test_enhanced_ct_functional_group_rescale_wins_over_the_top_level(tmp_path: Path) -> None:
    def leftover(ds: Dataset) -> None:
        ds.RescaleSlope = 1
        ds.RescaleIntercept = 0
        ds.RescaleType = "US"

    src = _source("eCT_Supplemental.dcm")
    pvt = src.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    expected = window_ct(apply_modality_lut(src.pixel_array[0], pvt))
    prepared = read_series(_enhanced(tmp_path / "top.dcm", leftover), modality="ct")
    assert np.array_equal(prepared.arrays[0], expected)
    assert any("top-level RescaleSlope/RescaleIntercept differ" in w for w in prepared.provenance.warnings)


def test_rescale_dataset_prefers_the_per_frame_group() -> None:
    ds = _source("eCT_Supplemental.dcm")
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    item = Dataset()
    item.RescaleSlope, item.RescaleIntercept = 2, -7
    pvt = Dataset()
    pvt.PixelValueTransformationSequence = [item]
    ds.PerFrameFunctionalGroupsSequence[
        1
    ].PixelValueTransformationSequence = pvt.PixelValueTransformationSequence
    assert float(dicom.rescale_dataset(ds, 1).RescaleIntercept) == -7  # per-frame
    assert float(dicom.rescale_dataset(ds, 0).RescaleIntercept) == -1024  # shared
    assert dicom.rescale_state(ds, 1) == ("pair", True)


# -- 4. A localizer inside the chosen series ------------------------------------------------------


def test_localizer_slice_inside_the_series_is_dropped(tmp_path: Path) -> None:
    def scout(ds: Dataset, i: int) -> None:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        if i == 6:
            ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
            _fill(ds, 3000)

    prepared = read_series(_series(tmp_path / "s", "CT_small.dcm", 7, scout))
    details = prepared.provenance.details
    assert details["n_slices"] == 6
    assert "006.dcm" not in details["files"]
    assert not any(a[..., 1].min() == 255 for a in prepared.arrays)
    assert any("1 localizer slice" in w and "dropped" in w for w in prepared.provenance.warnings)


# -- 5. Acquisitions over overlapping position ranges ---------------------------------------------


def test_acquisitions_over_overlapping_ranges_are_not_interleaved(tmp_path: Path) -> None:
    def acquisitions(ds: Dataset, i: int) -> None:
        ds.AcquisitionNumber = 1 + i // 10
        if i >= 10:
            _fill(ds, 3000)  # the repeat is bright

    # Acquisition 2 covers the same range shifted by half a slice: no position in common.
    folder = _series(
        tmp_path / "s", "CT_small.dcm", 20, acquisitions, z=lambda i: 5.0 * (i % 10) + 2.5 * (i // 10)
    )
    prepared = read_series(folder)
    assert prepared.provenance.details["n_slices"] == 10
    assert all(a[..., 1].mean() < 255 for a in prepared.arrays)
    assert not any("disjoint" in w for w in prepared.provenance.warnings)
    assert any("kept AcquisitionNumber" in w for w in prepared.provenance.warnings)


def test_acquisitions_over_touching_ranges_stay_one_volume(tmp_path: Path) -> None:
    def acquisitions(ds: Dataset, i: int) -> None:
        ds.AcquisitionNumber = 1 + i // 5

    prepared = read_series(_series(tmp_path / "s", "CT_small.dcm", 10, acquisitions))
    assert prepared.provenance.details["n_slices"] == 10
    assert any("disjoint positions kept together" in w for w in prepared.provenance.warnings)


# -- 6. MR MONOCHROME1 ------------------------------------------------------------------------------


def test_mr_monochrome1_is_inverted(tmp_path: Path) -> None:
    def halves(mono: str) -> Callable[[Dataset, int], None]:
        def mutate(ds: Dataset, i: int) -> None:
            ds.PhotometricInterpretation = mono
            arr = np.zeros((ds.Rows, ds.Columns), np.int16)
            arr[:, ds.Columns // 2 :] = 1000
            ds.PixelData = arr.tobytes()

        return mutate

    m2 = read_series(_series(tmp_path / "m2", "MR_small.dcm", 6, halves("MONOCHROME2"))).arrays[0]
    m1 = read_series(_series(tmp_path / "m1", "MR_small.dcm", 6, halves("MONOCHROME1")))
    assert m2[:, :8].max() == 0
    assert m2[:, -8:].min() == 255
    assert np.array_equal(m1.arrays[0], 255 - m2)
    assert m1.provenance.details["inverted_monochrome1"] == len(m1.arrays)


# -- 7. Echoes / time points at the same positions ------------------------------------------------


@pytest.mark.parametrize("keyword", ["EchoNumbers", "TemporalPositionIdentifier"])
def test_echoes_at_the_same_positions_keep_the_first(tmp_path: Path, keyword: str) -> None:
    def echoes(ds: Dataset, i: int) -> None:
        ds.AcquisitionNumber = 1
        setattr(ds, keyword, 1 + i // 8)
        arr = np.full((ds.Rows, ds.Columns), 100 if i < 8 else 3000, np.int16)
        arr[0, 0] = 0  # a range within each slice, so min-max is not all black
        ds.PixelData = arr.tobytes()

    folder = _series(tmp_path / "s", "MR_small.dcm", 16, echoes, z=lambda i: 5.0 * (i % 8))
    prepared = read_series(folder)
    details = prepared.provenance.details
    assert details["n_slices"] == 8
    assert all(f"{k:03d}.dcm" in details["files"] for k in range(8))
    assert details["minmax"] == [0.0, 100.0]
    assert any(f"kept {keyword} 1 (8 slices), dropped 2 (8)" in w for w in prepared.provenance.warnings)


def test_different_images_at_the_same_positions_are_reported(tmp_path: Path) -> None:
    def twice(ds: Dataset, i: int) -> None:
        _fill(ds, 100 if i < 8 else 3000)

    folder = _series(tmp_path / "s", "MR_small.dcm", 16, twice, z=lambda i: 5.0 * (i % 8))
    prepared = read_series(folder)
    assert any("8 positions hold 2+ different images" in w for w in prepared.provenance.warnings)


def test_scan_header_reads_echo_and_time_point(tmp_path: Path) -> None:
    def tags(ds: Dataset, i: int) -> None:
        ds.EchoNumbers = [2, 3]
        ds.TemporalPositionIdentifier = 4

    folder = _series(tmp_path / "s", "CT_small.dcm", 1, tags)
    summary: Any = dicom.scan_header(folder / "000.dcm")
    assert summary is not None
    assert (summary.echo, summary.temporal) == (2, 4)
