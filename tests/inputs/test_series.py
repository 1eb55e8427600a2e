"""CT/MR series: choosing, ordering, rescaling, sampling and windowing, against the builder's truth."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from aris.inputs.errors import CorruptFileError, NoPixelDataError, SeriesError, UnsafeArchiveError
from aris.inputs.series import read_series
from aris.inputs.volume import minmax_grey, sample_indices, window_ct
from aris.types import ImagePart, TextPart


def _images(prepared: Any) -> list[np.ndarray]:
    return [np.asarray(im) for im in prepared.images]


def _assert_truth(prepared: Any, series: Any, ks: list[int]) -> None:
    """The prepared slices are exactly the recipe applied to the true slices ``ks``."""
    got = _images(prepared)
    assert len(got) == len(ks)
    for img, k in zip(got, ks, strict=True):
        assert np.array_equal(img, window_ct(series.hu(k))), f"true slice {k}"


def test_oblique_shuffled_series_sorts_along_the_normal(build: Any) -> None:
    s = build("oblique", n_slices=30, tilt=30.0, inplane_jitter=4.0, spacing=1.0)
    # The test means something only if raw z gets the order wrong here.
    z_order = sorted(range(30), key=lambda k: s.positions[k][2])
    assert z_order != list(range(30))
    prepared = read_series(s.folder)
    _assert_truth(prepared, s, list(range(30)))
    d = prepared.provenance.details
    assert d["n_slices"] == 30
    assert d["indices"] == list(range(30))
    assert np.allclose(d["slice_normal"], s.normal, atol=1e-6)
    assert d["orientation"] == "oblique"
    assert d["tilt_from_axial_deg"] == pytest.approx(30, abs=0.01)
    assert any("30 degrees from axial" in w for w in prepared.provenance.warnings)
    assert d["spacing_mm"] == pytest.approx(1.0, abs=1e-4)
    assert [p.text for p in prepared.parts if isinstance(p, TextPart)] == [f"SLICE {i}" for i in range(1, 31)]
    assert isinstance(prepared.parts[0], ImagePart)
    assert prepared.parts[1] == TextPart("SLICE 1")


def test_mixed_rescale_gives_the_same_hu(build: Any) -> None:
    s = build("axial", n_slices=20)
    rescales = {(pydicom.dcmread(f).RescaleSlope, pydicom.dcmread(f).RescaleIntercept) for f in s.files}
    assert len(rescales) >= 3
    for k, f in enumerate(s.files):
        ds = pydicom.dcmread(f)
        assert np.array_equal(apply_modality_lut(ds.pixel_array, ds), s.hu(k))
    prepared = read_series(s.folder)
    _assert_truth(prepared, s, list(range(20)))
    assert prepared.kind == "ct"
    assert prepared.provenance.warnings == []
    assert prepared.provenance.details["windows_hu"] == {"R": [-1024, 1024], "G": [-135, 215], "B": [0, 80]}


@pytest.mark.parametrize("n", [100])
def test_long_series_is_sampled_to_85(build: Any, n: int) -> None:
    s = build(f"long{n}", n_slices=n, size=16)
    prepared = read_series(s.folder)
    expected = [round(i / 85 * (n - 1)) for i in range(1, 86)]
    assert prepared.provenance.details["indices"] == expected == sample_indices(n)
    _assert_truth(prepared, s, expected)


def test_sagittal_series_warns_and_orders(build: Any) -> None:
    s = build("sagittal", n_slices=8, orientation="sagittal")
    # The builder steps along row x column = -x; slices are ordered along +x (the normal's dominant
    # axis made positive, as +z is for axial), so the truth is reversed here.
    assert s.normal[0] == -1.0
    prepared = read_series(s.folder)
    _assert_truth(prepared, s, sorted(range(8), key=lambda k: s.positions[k][0]))
    assert prepared.provenance.details["orientation"] == "sagittal"
    assert any("sagittal (90 degrees from axial)" in w for w in prepared.provenance.warnings)


def test_envelope_warnings_for_size_count_and_spacing(build: Any) -> None:
    big = read_series(build("big", n_slices=3, size=520).folder)
    text = " | ".join(big.provenance.warnings)
    assert "520x520 pixels" in text
    assert "only 3 slices" in text
    gap = read_series(build("gap", n_slices=10, uniform=False).folder)
    assert any("not uniform (1.25 to 3.75 mm)" in w for w in gap.provenance.warnings)


def test_study_choice_rules(study: Any) -> None:
    prepared = read_series(study.folder)
    d = prepared.provenance.details
    main = study.main
    assert d["series_uid"] == main.series_uid
    # Acquisition 2 repeats the middle third: the larger acquisition 1 is kept. The re-sent file
    # repeating InstanceNumber 1 sits on slice 1's position, so slice 0 is kept and it is dropped.
    _assert_truth(prepared, main, list(range(24)))
    assert any("kept AcquisitionNumber 1 (25 slices), the largest; dropped 2 (8)" in n for n in d["notes"])
    assert any("1 re-sent slice dropped (an InstanceNumber repeated at a position" in n for n in d["notes"])
    reason = d["chosen_because"]
    assert "ORIGINAL preferred over DERIVED" in reason
    assert "localizers are not volumes" in reason
    by_uid = {c["series_uid"]: c for c in d["candidates"]}
    assert set(by_uid) == {main.series_uid, study.derived.series_uid, study.localizer.series_uid}
    assert by_uid[study.derived.series_uid]["usable_slices"] == 36  # more slices, yet not chosen
    text = " | ".join(prepared.provenance.warnings)
    assert "3 series found" in text
    assert "DERIVED/SECONDARY/REFORMATTED" in text
    for name in ("EMPTY.dcm", "REPORT_SR", "TRUNCATED", "notes.dcm"):
        assert name in text
    assert "skipped 4 files" in text
    assert d["skipped_files"] == 4


def test_series_uid_overrides_the_rules(study: Any) -> None:
    derived = read_series(study.folder, series_uid=study.derived.series_uid)
    assert derived.provenance.details["chosen_because"] == "named by series_uid"
    assert derived.provenance.details["n_slices"] == 36
    _assert_truth(derived, study.derived, list(range(36)))
    with pytest.raises(SeriesError, match=r"no series 1\.2\.3; found CT series") as e:
        read_series(study.folder, series_uid="1.2.3")
    assert str(study.folder) in str(e.value)


def test_modality_filter(study: Any) -> None:
    with pytest.raises(SeriesError, match="no usable MR series"):
        read_series(study.folder, modality="mri")
    assert read_series(study.folder, modality="ct").kind == "ct"
    with pytest.raises(SeriesError, match="no volume recipe"):
        read_series(study.folder, modality="pet")


def test_folder_without_a_usable_series(study: Any, tmp_path: Path) -> None:
    for path in study.clutter.values():
        shutil.copy(path, tmp_path / path.name)
    with pytest.raises(SeriesError, match="no CT or MR images found") as e:
        read_series(tmp_path)
    assert str(tmp_path) in str(e.value)
    assert "non-DICOM files" in str(e.value)
    assert "truncated files" in str(e.value)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(SeriesError, match="holds no files"):
        read_series(tmp_path / "nothing")


def test_single_bad_files_raise_their_own_error(study: Any) -> None:
    with pytest.raises(CorruptFileError, match="truncated") as e:
        read_series(study.clutter["truncated"])
    assert str(study.clutter["truncated"]) in str(e.value)
    with pytest.raises(CorruptFileError, match="empty"):
        read_series(study.clutter["empty"])
    with pytest.raises(NoPixelDataError, match="holds no image"):
        read_series([study.clutter["sr"]])


def test_seg_next_to_a_real_series_is_skipped(samples: Any, tmp_path: Path) -> None:
    src = samples("dicom/ct_series/head_ct2_4slices")
    for f in src.iterdir():
        shutil.copy(f, tmp_path / f.name)
    shutil.copy(samples("dicom/ct_series/seg_image_ct_binary_for_head_ct2.dcm"), tmp_path / "seg.dcm")
    prepared = read_series(tmp_path)
    assert "seg.dcm (a Segmentation Storage object, not a CT or MR image)" in " ".join(
        prepared.provenance.warnings
    )
    # Real series: sorted by z, HU from pydicom, windowed.
    dss = sorted((pydicom.dcmread(f) for f in src.iterdir()), key=lambda d: float(d.ImagePositionPatient[2]))
    assert len(prepared.images) == 4
    for img, ds in zip(_images(prepared), dss, strict=True):
        assert np.array_equal(img, window_ct(apply_modality_lut(ds.pixel_array, ds)))
    # Acquisitions 4, 44, 45 cover different positions: one volume acquired in steps, all kept.
    assert any("disjoint positions kept together" in n for n in prepared.provenance.details["notes"])
    assert any("only 4 slices" in w for w in prepared.provenance.warnings)


def test_zip_and_file_list_sources(build: Any, tmp_path: Path) -> None:
    s = build("zipped", n_slices=12)
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in s.files:
            zf.write(f, f"nested/{f.name}")
        zf.writestr("__MACOSX/._junk", b"junk")
    from_zip = read_series(archive)
    _assert_truth(from_zip, s, list(range(12)))
    assert from_zip.provenance.sources == [str(archive)]
    from_list = read_series(list(reversed(s.files)))
    _assert_truth(from_list, s, list(range(12)))
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escape.dcm", s.files[0].read_bytes())
    with pytest.raises(UnsafeArchiveError, match="escape"):
        read_series(bad)


def test_enhanced_multiframe_ct_matches_highdicom(samples: Any) -> None:
    path = samples("dicom/ct/eCT_Supplemental.dcm")
    prepared = read_series(path)
    # Independent: highdicom builds the volume from the functional groups and applies the rescale.
    vol = hd.imread(path).get_volume(
        apply_real_world_transform=False,
        apply_modality_transform=True,
        apply_palette_color_lut=False,
        apply_icc_profile=False,
    )
    assert vol.affine[2, 3] == -159.0
    assert vol.affine[2, 0] == 10.0
    got = _images(prepared)
    assert len(got) == 2
    for i in range(2):
        assert np.array_equal(got[i], window_ct(vol.array[i]))
    d = prepared.provenance.details
    assert d["files"] == ["eCT_Supplemental.dcm[frame 1]", "eCT_Supplemental.dcm[frame 2]"]
    assert d["positions_mm"] == [-159.0, -149.0]  # rows run -x: the normal is flipped to +z


def test_enhanced_mr_without_plane_positions_is_refused(samples: Any) -> None:
    # This downsized sample lost its functional groups; the recipe requires ImagePositionPatient.
    for name in ("dicom/mr/emri_small.dcm", "dicom/compressed/emri_small_jpeg_2k_lossless.dcm"):
        with pytest.raises(SeriesError, match="cannot be ordered"):
            read_series(samples(name))


def test_mr_series_minmax_over_the_whole_volume(build: Any) -> None:
    s = build("mr", n_slices=90, size=16, modality="MR", mixed_rescale=False)
    # Put the volume's maximum in true slice 0, which the 85-slice sampling leaves out.
    ds = pydicom.dcmread(s.files[0])
    pixels = ds.pixel_array.copy()
    pixels[0, 0] = 4000
    ds.PixelData = pixels.tobytes()
    ds.save_as(s.files[0])
    values = [s.value(k) for k in range(90)]
    values[0] = pixels
    lo = min(float(v.min()) for v in values)
    hi = max(float(v.max()) for v in values)
    prepared = read_series(s.folder)
    indices = sample_indices(90)
    assert 0 not in indices
    assert prepared.kind == "mri"
    assert prepared.provenance.details["minmax"] == [lo, hi]
    assert hi == 4000.0
    expected, _ = minmax_grey(np.stack([values[k] for k in indices]), (lo, hi))
    assert np.array_equal(np.stack(_images(prepared)), expected)


def test_real_mr_projection_series_keeps_one_orientation(samples: Any) -> None:
    prepared = read_series(samples("dicom/mr_series/mra_mr700_7slices"))
    assert prepared.kind == "mri"
    assert "6 slices in other orientations dropped" in prepared.provenance.details["notes"]


def test_slice_without_a_decoder_is_skipped_and_named(samples: Any, tmp_path: Path) -> None:
    src = samples("dicom/ct_series/cardiac_ct5n_5slices")
    for f in src.iterdir():
        shutil.copy(f, tmp_path / f.name)
    ds = pydicom.dcmread(tmp_path / "2062")
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000MCLossless
    ds.PixelData = pydicom.encaps.encapsulate([ds.PixelData])
    ds.save_as(tmp_path / "2062")
    prepared = read_series(tmp_path)
    assert len(prepared.images) == 4
    assert any(
        "2062 (pixel data is encoded as JPEG 2000 Part 2" in w and "no installed decoder" in w
        for w in prepared.provenance.warnings
    )


def test_instance_numbers_restarting_per_acquisition_keep_both(mv: Any, tmp_path: Path) -> None:
    # Two acquisitions at disjoint positions, each numbered 1..10: all 20 slices are one volume.
    spec = mv.SeriesSpec(n_slices=20, size=16)
    first = mv.make_series(tmp_path, spec, slice_range=(0, 10), instance_numbers=list(range(1, 11)))
    mv.make_series(
        tmp_path,
        mv._replace(spec, acquisition_number=2, name_prefix="B"),
        slice_range=(10, 20),
        instance_numbers=list(range(1, 11)),
    )
    prepared = read_series(tmp_path)
    _assert_truth(prepared, first, list(range(20)))
    assert not any("dropped" in n for n in prepared.provenance.details["notes"])
    # A true re-send (the same file again under another name: same instance, same position) is dropped.
    shutil.copy(first.files[3], tmp_path / "RESENT")
    again = read_series(tmp_path)
    _assert_truth(again, first, list(range(20)))
    assert any("1 re-sent slice dropped" in n for n in again.provenance.details["notes"])


def test_axial_volume_is_chosen_over_a_one_slice_sagittal_scout(mv: Any, tmp_path: Path) -> None:
    # The scout carries no LOCALIZER type and is ORIGINAL; the axial series is a DERIVED export.
    axial = mv.make_series(
        tmp_path,
        mv.SeriesSpec(n_slices=5, size=16, image_type=("DERIVED", "SECONDARY", "AXIAL"), series_number=3),
    )
    mv.make_series(
        tmp_path,
        mv.SeriesSpec(
            n_slices=1,
            size=16,
            orientation="sagittal",
            image_type=("ORIGINAL", "PRIMARY", "OTHER"),
            name_prefix="S",
        ),
    )
    prepared = read_series(tmp_path)
    d = prepared.provenance.details
    assert d["series_uid"] == axial.series_uid
    assert d["orientation"] == "axial"
    assert "series of fewer than 5 slices are not volumes" in d["chosen_because"]
    _assert_truth(prepared, axial, list(range(5)))


def test_axial_is_preferred_over_a_larger_sagittal_series(mv: Any, tmp_path: Path) -> None:
    axial = mv.make_series(tmp_path, mv.SeriesSpec(n_slices=6, size=16, series_number=3))
    mv.make_series(tmp_path, mv.SeriesSpec(n_slices=9, size=16, orientation="sagittal", name_prefix="S"))
    d = read_series(tmp_path).provenance.details
    assert d["series_uid"] == axial.series_uid
    assert "axial preferred" in d["chosen_because"]


def test_every_skipped_file_is_recorded_with_its_reason(build: Any, tmp_path: Path) -> None:
    series = build("for_skips", n_slices=6)
    shutil.copytree(series.folder, tmp_path / "s")
    (tmp_path / "s" / "junk").mkdir()
    for i in range(12):
        (tmp_path / "s" / "junk" / f"note{i:02d}.txt").write_text("not DICOM\n" * 30)
    d = read_series(tmp_path / "s").provenance.details
    assert d["skipped_files"] == 12
    assert [s["file"] for s in d["skipped"]] == [f"junk/note{i:02d}.txt" for i in range(12)]
    assert all("not a DICOM file" in s["reason"] for s in d["skipped"])
