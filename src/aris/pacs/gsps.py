"""Localization boxes as a Grayscale Softcopy Presentation State, for viewers that show no SR.

One closed POLYLINE per box on the referenced image (pixel units), its label as a text object
anchored at the box's top-left corner, on one graphic layer named ``ARIS``, with the model card's
position in the content description. Like the SR, its UIDs derive from the result's key, and it is
read back and compared before it may leave.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset

from aris import __version__
from aris.pacs.sr import MANUFACTURER, Box, SrError, as_result, boxes_on, encode, uids
from aris.result import Result

logger = logging.getLogger(__name__)

GSPS_SERIES_NUMBER = 9902
GSPS_CLASS = "1.2.840.10008.5.1.4.1.1.11.1"
LAYER = "ARIS"
DESCRIPTION = "Aris AI boxes: preliminary, not for diagnosis"


def build(result: Result | dict[str, Any], image: Dataset, *, key: str) -> Dataset:
    """The GSPS drawing ``result``'s boxes on ``image`` (a header suffices); SrError when there are none."""
    r = as_result(result)
    if r.errors:
        raise SrError("the model's reply did not validate; no presentation state is made")
    boxes = boxes_on(r, image)
    if not boxes:
        raise SrError("the result has no boxes to draw")
    series_uid, sop_uid = uids(key, "gsps")
    graphics = [
        hd.pr.GraphicObject(
            graphic_type=hd.pr.GraphicTypeValues.POLYLINE,
            graphic_data=b.polyline(),
            units=hd.pr.AnnotationUnitsValues.PIXEL,
        )
        for b in boxes
    ]
    texts = [
        hd.pr.TextObject(
            text_value=b.label[:64],
            units=hd.pr.AnnotationUnitsValues.PIXEL,
            anchor_point=(float(b.x0), float(b.y0)),
        )
        for b in boxes
    ]
    try:
        pr = hd.pr.GrayscaleSoftcopyPresentationState(
            referenced_images=[image],
            series_instance_uid=series_uid,
            series_number=GSPS_SERIES_NUMBER,
            sop_instance_uid=sop_uid,
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=f"Aris {__version__}",
            software_versions=f"aris {__version__}",
            device_serial_number="0",
            content_label="ARIS_BOXES",
            content_description=DESCRIPTION,
            graphic_layers=[hd.pr.GraphicLayer(layer_name=LAYER, order=1, description="Aris AI boxes")],
            graphic_annotations=[
                hd.pr.GraphicAnnotation(
                    referenced_images=[image],
                    graphic_layer=hd.pr.GraphicLayer(layer_name=LAYER, order=1),
                    graphic_objects=graphics,
                    text_objects=texts,
                )
            ],
            series_description=DESCRIPTION,
        )
    except (ValueError, TypeError, AttributeError) as e:
        raise SrError(f"highdicom refused the presentation state: {e}") from e
    check(encode(pr), image, boxes)
    logger.info("gsps: %d box(es), checked", len(boxes))
    return pr


def check(data: bytes, image: Dataset, boxes: Sequence[Box]) -> Dataset:
    """Read the encoded GSPS back and compare its graphics and reference with the boxes."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as e:
        raise SrError(f"the presentation state does not read back with pydicom: {e}") from e
    problems = []
    if ds.SOPClassUID != GSPS_CLASS:
        problems.append(f"SOP class {ds.SOPClassUID} is not a grayscale presentation state")
    if ds.StudyInstanceUID != image.StudyInstanceUID:
        problems.append("it is not in the image's study")
    ann = ds.get("GraphicAnnotationSequence", [])
    objs = [o for a in ann for o in a.get("GraphicObjectSequence", [])]
    refs = {str(r.ReferencedSOPInstanceUID) for a in ann for r in a.get("ReferencedImageSequence", [])}
    if refs != {str(image.SOPInstanceUID)}:
        problems.append("the graphics do not reference the image")
    if len(objs) != len(boxes):
        problems.append(f"{len(objs)} graphic(s) for {len(boxes)} box(es)")
    for o, b in zip(objs, boxes, strict=False):
        got = np.asarray(o.GraphicData, dtype=np.float64).reshape(-1, 2)
        if got.shape != (5, 2) or not np.allclose(got, b.polyline(), rtol=1e-5, atol=1e-3):
            problems.append(f"the box {b.label!r} does not read back as written")
    if problems:
        raise SrError("GSPS check failed: " + "; ".join(problems))
    return ds


__all__ = ["build", "check"]
