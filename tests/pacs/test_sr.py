"""SR and GSPS writers: content, references and geometry, checked against independent readings."""

from __future__ import annotations

import io
from typing import Any

import pydicom
import pytest

from aris.engines.fake import FakeEngine
from aris.notice import NOTICE
from aris.pacs import gsps, sr
from aris.runner import run_task

DX = "dicom/cxr/highdicom_dx_image.dcm"
BOX_REPLY = '```json\n[{"box_2d": [100, 200, 600, 700], "label": "heart"}]\n```'


def _walk(items: Any) -> list[Any]:
    out = []
    for it in items:
        out.append(it)
        out.extend(_walk(it.get("ContentSequence", [])))
    return out


def hand_mapped_box(ds: pydicom.Dataset) -> tuple[float, float, float, float]:
    """[y0, x0, y1, x1] = [100, 200, 600, 700] of the padded square, mapped back by hand."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    side = max(rows, cols)
    top, left = (side - rows) // 2, (side - cols) // 2
    return (
        200 / 1000 * side - left,
        100 / 1000 * side - top,
        700 / 1000 * side - left,
        600 / 1000 * side - top,
    )


@pytest.fixture
def localized(samples: Any) -> tuple[Any, pydicom.Dataset]:
    result = run_task(
        "cxr-localize",
        samples(DX),
        models=FakeEngine(replies=[BOX_REPLY]),
        options={"labels": ["heart", "left lung"]},
    )
    assert result.errors == []
    return result, pydicom.dcmread(samples(DX), stop_before_pixels=True)


def test_localization_sr_has_the_box_on_the_referenced_image(localized: tuple[Any, pydicom.Dataset]) -> None:
    result, image = localized
    ds = pydicom.dcmread(io.BytesIO(sr.encode(sr.build(result, [image], key="k1", image=image))))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"
    assert ds.StudyInstanceUID == image.StudyInstanceUID
    assert ds.PatientID == image.PatientID  # filed with the patient it belongs to
    assert (ds.VerificationFlag, ds.CompletionFlag, ds.PreliminaryFlag) == (
        "UNVERIFIED",
        "COMPLETE",
        "PRELIMINARY",
    )
    items = _walk(ds.ContentSequence)
    (region,) = [i for i in items if i.ValueType == "SCOORD"]
    assert region.GraphicType == "POLYLINE"
    x0, y0, x1, y1 = hand_mapped_box(image)
    expected = [x0, y0, x1, y0, x1, y1, x0, y1, x0, y0]
    assert list(region.GraphicData) == pytest.approx(expected, abs=1e-3)
    (ref,) = region.ContentSequence
    assert ref.ValueType == "IMAGE"
    assert ref.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == image.SOPInstanceUID
    texts = [str(i.TextValue) for i in items if i.ValueType == "TEXT"]
    assert "heart" in texts
    assert "missing: left lung" in texts
    assert NOTICE in texts
    assert f"prompt_sha256={result.prompt_sha256}" in texts
    ev = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert ev.SeriesInstanceUID == image.SeriesInstanceUID
    assert ev.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == image.SOPInstanceUID


def test_report_sections_become_findings_and_impression(samples: Any) -> None:
    image = pydicom.dcmread(samples(DX), stop_before_pixels=True)
    reply = "FINDINGS: Lungs are clear. No effusion.\nIMPRESSION: No acute disease."
    result = run_task("cxr-report", samples(DX), models=FakeEngine(replies=[reply]))
    ds = sr.build(result, [image], key="k2")
    sections = {
        str(i.ConceptNameCodeSequence[0].CodeMeaning): i
        for i in ds.ContentSequence
        if i.ValueType == "CONTAINER"
    }
    assert sections["Findings"].ContentSequence[0].TextValue == "Lungs are clear. No effusion."
    assert sections["Impressions"].ContentSequence[0].TextValue == "No acute disease."
    algo = {
        str(i.ConceptNameCodeSequence[0].CodeValue): str(i.TextValue)
        for i in ds.ContentSequence
        if i.ValueType == "TEXT"
    }
    assert algo["111001"] == "fake"  # Algorithm Name: the model


def test_uids_follow_the_result_key(localized: tuple[Any, pydicom.Dataset]) -> None:
    result, image = localized
    a = sr.build(result, [image], key="same", image=image)
    b = sr.build(result, [image], key="same", image=image)
    c = sr.build(result, [image], key="other", image=image)
    assert a.SOPInstanceUID == b.SOPInstanceUID  # sent twice, stored once
    assert a.SOPInstanceUID != c.SOPInstanceUID


def test_a_reply_that_did_not_validate_makes_no_sr(samples: Any) -> None:
    image = pydicom.dcmread(samples(DX), stop_before_pixels=True)
    result = run_task("cxr-localize", samples(DX), models=FakeEngine(replies=["no idea", "still no idea"]))
    assert result.errors
    with pytest.raises(sr.SrError, match="did not validate"):
        sr.build(result, [image], key="k")


def test_the_check_catches_an_sr_that_says_something_else(localized: tuple[Any, pydicom.Dataset]) -> None:
    result, image = localized
    ds = sr.build(result, [image], key="k3", image=image)
    good = sr.encode(ds)
    sr.check(good, result, [image], boxes=sr.boxes_on(result, image), image=image)
    region = next(i for i in _walk(ds.ContentSequence) if i.ValueType == "SCOORD")
    region.GraphicData = [v + 5 for v in region.GraphicData]
    for item in _walk(ds.ContentSequence):
        if item.ValueType == "TEXT" and item.TextValue == NOTICE:
            item.TextValue = "Approved for diagnosis."
    with pytest.raises(sr.SrError, match=r"notice is missing.*does not read back as written"):
        sr.check(sr.encode(ds), result, [image], boxes=sr.boxes_on(result, image), image=image)


def test_gsps_draws_the_same_box(localized: tuple[Any, pydicom.Dataset]) -> None:
    result, image = localized
    ds = pydicom.dcmread(io.BytesIO(sr.encode(gsps.build(result, image, key="k4"))))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.11.1"
    ann = ds.GraphicAnnotationSequence[0]
    assert ann.ReferencedImageSequence[0].ReferencedSOPInstanceUID == image.SOPInstanceUID
    x0, y0, x1, y1 = hand_mapped_box(image)
    assert list(ann.GraphicObjectSequence[0].GraphicData) == pytest.approx(
        [x0, y0, x1, y0, x1, y1, x0, y1, x0, y0], abs=1e-3
    )
    assert ann.TextObjectSequence[0].UnformattedTextValue == "heart"
    assert "not for diagnosis" in ds.ContentDescription


def test_an_unreadable_finding_is_written_as_unreadable_not_left_out(samples: Any) -> None:
    series = sorted(samples("dicom/ct_series/head_ct2_4slices").iterdir())
    replies = [
        "Final Answer: no",
        "It may represent a small bleed; cannot be excluded.",
        "Final Answer: possibly",
    ]
    result = run_task(
        "ct",
        [series],
        models=FakeEngine(replies=replies),
        options={"findings": ["fracture", "hemorrhage"]},
    )
    assert result.parsed["findings"] == {"fracture": "no", "hemorrhage": None}
    image = pydicom.dcmread(series[0], stop_before_pixels=True)
    ds = pydicom.dcmread(io.BytesIO(sr.encode(sr.build(result, [image], key="k2", image=image))))
    found = [str(i.TextValue) for i in _walk(ds.ContentSequence) if i.ValueType == "TEXT"]
    assert "fracture: no" in found
    assert any(t.startswith("hemorrhage: unreadable") for t in found), found
