"""A result as a DICOM Comprehensive SR (highdicom), checked before it may leave.

The content tree (TID 2000 sections, TID 4019 algorithm identification, TID 1004 device observer)::

    CONTAINER  Diagnostic Imaging Report (LN 18748-4)
      HAS CONCEPT MOD  TEXT Algorithm Name / Version / Parameters (task, prompt sha256, options)
      HAS OBS CONTEXT  device observer: Aris, the model as its model name
      CONTAINS  CONTAINER Findings (DCM 121070)
                  TEXT Finding: the answer (or the parsed "findings"), then each structured field
                  TEXT Finding: a box's label
                    INFERRED FROM  SCOORD Image Region, closed POLYLINE in the image's pixels
                      SELECTED FROM  IMAGE the referenced instance
      CONTAINS  CONTAINER Impressions (DCM 121072) > TEXT Impression       (when the task gives one)
      CONTAINS  TEXT Comment: the model card's position (preliminary, not for diagnosis)
      CONTAINS  TEXT Comment: each caveat the result was accepted with

The document is marked UNVERIFIED and PRELIMINARY, sits in the source study, and lists every
source instance in its evidence (study, series and instance UIDs). Its UIDs derive from the result's
key, so the same result always becomes the same SR instance (a second send replaces, never
duplicates). :func:`check` reads the encoded bytes back with pydicom and with highdicom and compares
them with what was meant; nothing leaves unless that passes.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID, generate_uid

from aris import __version__
from aris.errors import ArisError
from aris.result import Result

logger = logging.getLogger(__name__)

MANUFACTURER = "Aris"
SR_SERIES_NUMBER = 9901
SERIES_DESCRIPTION = "Aris AI result (preliminary, not for diagnosis)"
COMPREHENSIVE_SR = UID("1.2.840.10008.5.1.4.1.1.88.33")
DEVICE_UID = generate_uid(entropy_srcs=["aris-device-observer"])
# Parsed fields that are not findings (geometry, file names) and fields that map to report sections.
NOT_FINDINGS = frozenset({"files", "image_size", "padding", "boxes"})
SECTIONS = {
    "findings": (codes.DCM.Findings, codes.DCM.Finding),
    "impression": (codes.DCM.Impressions, codes.DCM.Impression),
    "recommendations": (codes.DCM.Recommendations, codes.DCM.Recommendation),
    "conclusion": (codes.DCM.Conclusions, codes.DCM.Conclusion),
}


class SrError(ArisError):
    """An SR could not be built, or did not read back as written: it is not sent."""


@dataclass(frozen=True)
class Box:
    """A box in the referenced image's pixel space: DICOM (column, row), origin at the top-left corner."""

    label: str
    x0: float
    y0: float
    x1: float
    y1: float

    def polyline(self) -> np.ndarray:
        pts = [
            (self.x0, self.y0),
            (self.x1, self.y0),
            (self.x1, self.y1),
            (self.x0, self.y1),
            (self.x0, self.y0),
        ]
        return np.array(pts, dtype=np.float32)


def uids(key: str, what: str = "sr") -> tuple[str, str]:
    """(series UID, SOP instance UID) for the ``what`` object of the result with this key (stable)."""
    return (
        str(generate_uid(entropy_srcs=[f"aris-{what}-series", key])),
        str(generate_uid(entropy_srcs=[f"aris-{what}", key])),
    )


def as_result(result: Result | dict[str, Any]) -> Result:
    return result if isinstance(result, Result) else Result.model_validate(result)


def boxes_on(result: Result, image: Dataset) -> list[Box]:
    """The result's boxes mapped to ``image``'s pixel grid (readers may have decoded it at another size)."""
    parsed = result.parsed if isinstance(result.parsed, dict) else {}
    raw = parsed.get("boxes") or []
    if not raw:
        return []
    width, height = parsed.get("image_size") or (image.Columns, image.Rows)
    sx, sy = float(image.Columns) / float(width), float(image.Rows) / float(height)
    out = []
    for b in raw:
        p = b["box_px"]
        out.append(Box(str(b["label"]), p["x0"] * sx, p["y0"] * sy, p["x1"] * sx, p["y1"] * sy))
    return out


def _text(name: Any, value: str, rel: str = "CONTAINS") -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=value, relationship_type=rel)


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str | int | float):
        text = str(value).strip()
        return text or None
    if isinstance(value, list) and value and all(isinstance(v, str | int | float | bool) for v in value):
        return ", ".join(_scalar(v) or "" for v in value)
    return None


def findings_of(result: Result) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(report sections found in the parsed result, other structured fields as (name, text))."""
    parsed = result.parsed if isinstance(result.parsed, dict) else {}
    sections: dict[str, str] = {}
    fields: list[tuple[str, str]] = []
    for key, value in parsed.items():
        if key in NOT_FINDINGS or key.startswith("_"):
            continue
        if isinstance(value, dict):  # {"effusion": "yes", ...}: one finding per entry
            prefix = "" if key.lower() == "findings" else f"{key.replace('_', ' ')} "
            for k, v in value.items():
                # A finding the model's reply did not settle (a hedge, a contradiction) is said to be
                # unreadable, never left out: a missing row reads as "not reported".
                t = "unreadable (the reply did not say yes or no clearly)" if v is None else _scalar(v)
                if t is not None:
                    fields.append((f"{prefix}{k}", t))
            continue
        text = _scalar(value)
        if text is None:
            continue
        name = key.lower()
        if name in ("recommendation",):
            name = "recommendations"
        if name in SECTIONS and isinstance(value, str):
            sections[name] = text
        else:
            fields.append((key.replace("_", " "), text))
    return sections, fields


def free_text(
    result: Result, sections: dict[str, str], fields: list[tuple[str, str]], boxes: Sequence[Box]
) -> bool:
    """The answer as written goes in only when nothing structured carries it (a JSON reply's fields do)."""
    return bool(result.text.strip()) and not (sections or fields or boxes)


def algorithm_parameters(result: Result) -> list[str]:
    params = [f"task={result.task}", f"engine={result.engine}", f"prompt_sha256={result.prompt_sha256}"]
    if result.repaired:
        params.append("repaired=true (the first reply failed validation)")
    return params


def _content(result: Result, image: Dataset | None, boxes: list[Box]) -> hd.sr.ContainerContentItem:
    root = hd.sr.ContainerContentItem(name=codes.LN.DiagnosticImagingReport, template_id="2000")
    items: list[Any] = []
    items.extend(
        hd.sr.AlgorithmIdentification(
            name=result.model,
            version=f"aris {__version__}",
            parameters=algorithm_parameters(result),
            manufacturer=MANUFACTURER,
        )
    )
    items.extend(
        hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=DEVICE_UID,
                name=f"Aris {__version__}",
                manufacturer_name=MANUFACTURER,
                model_name=result.model[-64:],
            ),
        )
    )
    sections, fields = findings_of(result)
    findings = hd.sr.ContainerContentItem(name=codes.DCM.Findings, relationship_type="CONTAINS")
    children: list[Any] = []
    if "findings" in sections:
        children.append(_text(codes.DCM.Finding, sections.pop("findings")))
    elif free_text(result, sections, fields, boxes):
        children.append(_text(codes.DCM.Finding, result.text.strip()))
    children.extend(_text(codes.DCM.Finding, f"{name}: {text}") for name, text in fields)
    for box in boxes:
        assert image is not None
        finding = _text(codes.DCM.Finding, box.label)
        region = hd.sr.ScoordContentItem(
            name=codes.DCM.ImageRegion,
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=box.polyline(),
            relationship_type=hd.sr.RelationshipTypeValues.INFERRED_FROM,
        )
        region.ContentSequence = hd.sr.ContentSequence(
            [
                hd.sr.ImageContentItem(
                    name=codes.DCM.SourceOfMeasurement,
                    referenced_sop_class_uid=image.SOPClassUID,
                    referenced_sop_instance_uid=image.SOPInstanceUID,
                    relationship_type=hd.sr.RelationshipTypeValues.SELECTED_FROM,
                )
            ]
        )
        finding.ContentSequence = hd.sr.ContentSequence([region])
        children.append(finding)
    if not children:
        raise SrError("the result has no text and no findings to report")
    findings.ContentSequence = hd.sr.ContentSequence(children)
    items.append(findings)
    for name, text in sections.items():
        section, concept = SECTIONS[name]
        container = hd.sr.ContainerContentItem(name=section, relationship_type="CONTAINS")
        container.ContentSequence = hd.sr.ContentSequence([_text(concept, text)])
        items.append(container)
    items.append(_text(codes.DCM.Comment, result.notice))
    items.extend(_text(codes.DCM.Comment, f"caveat: {w}") for w in result.warnings)
    root.ContentSequence = hd.sr.ContentSequence(items)
    return root


def build(
    result: Result | dict[str, Any],
    evidence: Sequence[Dataset],
    *,
    key: str,
    image: Dataset | None = None,
) -> Dataset:
    """The Comprehensive SR for ``result`` made from the ``evidence`` instances (headers suffice).

    ``image`` is the instance boxes refer to (localization). A result whose reply did not validate
    has no SR: a clinical system must not receive a guess (SrError names why). A result that settled
    some findings and not others (a hedge on one of five) has one, each unsettled finding written as
    unreadable.
    """
    r = as_result(result)
    if r.errors and r.parsed is None:
        raise SrError(f"the model's reply did not validate ({'; '.join(r.errors)[:300]}); no SR is made")
    if not evidence:
        raise SrError("no source instances to reference")
    studies = {str(ds.StudyInstanceUID) for ds in evidence}
    if len(studies) != 1:
        raise SrError(f"the sources span {len(studies)} studies; one SR refers to one study")
    boxes = boxes_on(r, image) if image is not None else []
    series_uid, sop_uid = uids(key)
    try:
        sr = hd.sr.ComprehensiveSR(
            evidence=list(evidence),
            content=_content(r, image, boxes),
            series_instance_uid=series_uid,
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=sop_uid,
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=True,
            is_final=False,
            is_verified=False,
            series_description=SERIES_DESCRIPTION,
            manufacturer_model_name=f"Aris {__version__}",
            software_versions=f"aris {__version__}",
        )
    except (ValueError, TypeError, AttributeError) as e:
        raise SrError(f"highdicom refused the SR: {e}") from e
    check(encode(sr), r, evidence, boxes=boxes, image=image)
    logger.info("sr: %d evidence instance(s), %d box(es), checked", len(evidence), len(boxes))
    return sr


def encode(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _walk(items: Sequence[Dataset]) -> list[Dataset]:
    out: list[Dataset] = []
    for it in items:
        out.append(it)
        out.extend(_walk(it.get("ContentSequence", [])))
    return out


def _name(item: Dataset) -> str:
    seq = item.get("ConceptNameCodeSequence")
    return str(seq[0].CodeValue) if seq else ""


def check(
    data: bytes,
    result: Result | dict[str, Any],
    evidence: Sequence[Dataset],
    *,
    boxes: Sequence[Box] = (),
    image: Dataset | None = None,
) -> Dataset:
    """Read an encoded SR back (pydicom, then highdicom) and compare it with what it must say.

    Returns the dataset read back; SrError naming the first difference otherwise.
    """
    r = as_result(result)
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as e:
        raise SrError(f"the SR does not read back with pydicom: {e}") from e
    problems: list[str] = []
    if ds.SOPClassUID != COMPREHENSIVE_SR:
        problems.append(f"SOP class {ds.SOPClassUID} is not Comprehensive SR")
    study = str(evidence[0].StudyInstanceUID)
    if ds.StudyInstanceUID != study:
        problems.append("the SR is not in the source study")
    if ds.get("VerificationFlag") != "UNVERIFIED":
        problems.append("the SR is not marked UNVERIFIED")
    refs = {
        (str(s.SeriesInstanceUID), str(i.ReferencedSOPInstanceUID))
        for st in ds.get("CurrentRequestedProcedureEvidenceSequence", [])
        if st.StudyInstanceUID == study
        for s in st.ReferencedSeriesSequence
        for i in s.ReferencedSOPSequence
    }
    wanted = {(str(e.SeriesInstanceUID), str(e.SOPInstanceUID)) for e in evidence}
    if refs != wanted:
        problems.append(f"evidence lists {len(refs)} instance(s), not the {len(wanted)} sources")
    items = _walk(ds.get("ContentSequence", []))
    texts = [str(i.TextValue) for i in items if i.ValueType == "TEXT"]
    if r.notice not in texts:
        problems.append("the model card's notice is missing")
    sections, fields = findings_of(r)
    expected = [*sections.values(), *(f"{n}: {t}" for n, t in fields)]
    if "findings" not in sections and free_text(r, sections, fields, boxes):
        expected.append(r.text.strip())
    expected.extend(b.label for b in boxes)
    missing = [t for t in expected if t not in texts]
    if missing:
        problems.append(f"{len(missing)} finding text(s) missing or altered")
    params = [str(i.TextValue) for i in items if _name(i) == "111002"]
    if f"prompt_sha256={r.prompt_sha256}" not in params:
        problems.append("the prompt hash is missing")
    regions = [i for i in items if i.ValueType == "SCOORD"]
    if len(regions) != len(boxes):
        problems.append(f"{len(regions)} image region(s) for {len(boxes)} box(es)")
    for region, box in zip(regions, boxes, strict=False):
        got = np.asarray(region.GraphicData, dtype=np.float64).reshape(-1, 2)
        if got.shape != (5, 2) or not np.allclose(got, box.polyline(), rtol=1e-5, atol=1e-3):
            problems.append(f"the region of {box.label!r} does not read back as written")
        ref = [i for i in region.get("ContentSequence", []) if i.ValueType == "IMAGE"]
        if (
            image is None
            or not ref
            or (ref[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID != image.SOPInstanceUID)
        ):
            problems.append(f"the region of {box.label!r} does not reference its image")
    if not problems:
        try:
            hd.sr.ComprehensiveSR.from_dataset(ds, copy=True)
        except Exception as e:
            problems.append(f"highdicom cannot read it back: {type(e).__name__}: {e}")
    if problems:
        raise SrError("SR check failed: " + "; ".join(problems))
    return ds


def summary(ds: Dataset) -> dict[str, Any]:
    """What an SR says, for status and tests: texts, regions, evidence UIDs (no patient attributes)."""
    items = _walk(ds.get("ContentSequence", []))
    return {
        "sop_instance_uid": str(ds.SOPInstanceUID),
        "study_instance_uid": str(ds.StudyInstanceUID),
        "texts": [str(i.TextValue) for i in items if i.ValueType == "TEXT"],
        "regions": [list(map(float, i.GraphicData)) for i in items if i.ValueType == "SCOORD"],
        "evidence": sorted(
            str(i.ReferencedSOPInstanceUID)
            for st in ds.get("CurrentRequestedProcedureEvidenceSequence", [])
            for s in st.ReferencedSeriesSequence
            for i in s.ReferencedSOPSequence
        ),
        "algorithm": {_name(i): str(i.TextValue) for i in items if _name(i) in ("111001", "111003")},
    }


def dumps(ds: Dataset) -> str:
    return json.dumps(summary(ds), indent=2)


__all__ = ["Box", "SrError", "boxes_on", "build", "check", "encode", "summary", "uids"]
