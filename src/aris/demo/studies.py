"""The studies ``aris demo`` shows, and what MedGemma sees of each.

Five bundled studies (``src/aris/demo/README.md`` says where each came from): a human chest
radiograph, a CT series built here from one real CT slice, an H&E slide region, a synthetic lab-report
PDF and a synthetic FHIR record. :func:`prepare_study` turns one into exactly the model's input through
the task's own reader settings (:func:`aris.runner.prepare_inputs`) and :func:`write_artefacts` writes
that input as files a person can open.
"""

from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from aris.inputs import estimate_tokens
from aris.inputs.base import PreparedInput

logger = logging.getLogger(__name__)

CT_SLICES = 100  # more than the recipe's 85, so the demo shows the sampling
CT_SPACING_MM = 2.5
HBA1C = "4548-4"  # LOINC: the trend the FHIR study asks about
UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's root: demo data, not patients


@dataclass(frozen=True)
class Study:
    """One bundled study and the task MedGemma runs on it."""

    key: str  # folder-safe name, also the artefact prefix
    title: str
    origin: str  # where the bytes came from, in a few words
    file: str  # bundled file, or "" for the CT series built at run time
    kind: str
    task: str
    question: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    read_options: dict[str, Any] = field(default_factory=dict)


STUDIES: tuple[Study, ...] = (
    Study(
        "chest-xray",
        "Chest X-ray",
        "NEMA WG04 RG1 CR",
        "chest_cr.dcm",
        "cxr",
        "cxr-report",
    ),
    Study(
        "ct",
        "CT series",
        f"{CT_SLICES} slices from 1 real slice",
        "",
        "ct",
        "ct",
        question="Is there any abnormality in this CT?",
    ),
    Study(
        "slide",
        "Slide region",
        "CMU-1 H&E SVS, CC0",
        "cmu_small_region.svs",
        "wsi",
        "wsi",
        read_options={"magnification": "20X"},
    ),
    Study(
        "lab-report",
        "Lab report",
        "synthetic PDF",
        "synthetic_lab_report.pdf",
        "pdf",
        "lab-extract",
    ),
    Study(
        "fhir",
        "FHIR record",
        "synthetic R4 bundle",
        "synthetic_patient_bundle_r4.json",
        "fhir",
        "trends",
        question="How has the HbA1c changed?",
        options={"codes": [HBA1C]},
    ),
)


def study(key: str) -> Study:
    return next(s for s in STUDIES if s.key == key)


def bundled(name: str) -> Path:
    """Path of a file bundled with Aris for the demo."""
    return Path(str(files("aris.demo").joinpath(name)))


def demo_image() -> Path:
    """The bundled human chest radiograph (DICOM CR, MONOCHROME1)."""
    return bundled("chest_cr.dcm")


# -- inputs ---------------------------------------------------------------------------------------------


def build_ct_series(folder: Path, n_slices: int = CT_SLICES) -> list[Path]:
    """Write a synthetic axial CT series built from one real slice; the same bytes on every run.

    The source is pydicom's ``CT_small.dcm`` (a 128x128 axial slice through a vertebra, downsized from
    NEMA WG04 CT1, MIT). Slice ``k`` is that slice shrunk about its centre by up to 20% towards the ends
    of the series, in air (-1000 HU): a volume whose slices differ, for showing the recipe (sorting,
    sampling, windows), not anatomy. Files are named in reverse order so the reader must sort them.
    """
    import pydicom
    from PIL import Image
    from pydicom.pixels.processing import apply_modality_lut
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    src = pydicom.dcmread(bundled("ct_small.dcm"))
    hu = apply_modality_lut(src.pixel_array, src).astype(np.float32)
    size = hu.shape[0]

    def uid(*parts: object) -> str:
        return str(generate_uid(prefix=UID_PREFIX, entropy_srcs=["aris-demo-ct", *map(str, parts)]))

    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid, frame_uid = uid("study"), uid("series"), uid("frame")
    paths: list[Path] = []
    mid = (n_slices - 1) / 2
    for k in range(n_slices):
        scale = 1.0 - 0.2 * ((k - mid) / mid) ** 2
        side = max(8, round(size * scale))
        small = np.asarray(Image.fromarray(hu, mode="F").resize((side, side), Image.Resampling.BILINEAR))
        canvas = np.full((size, size), -1000.0, dtype=np.float32)
        at = (size - side) // 2
        canvas[at : at + side, at : at + side] = small
        stored = np.clip(np.rint(canvas) + 1024, 0, 4095).astype(np.uint16)

        ds = copy.deepcopy(src)  # Dataset.copy() is shallow: its elements would be shared
        for keyword in ("OtherPatientIDsSequence", "InstitutionName", "StationName", "InstanceCreatorUID"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.remove_private_tags()
        ds.PatientName = "Demo^CT"
        ds.PatientID = "ARIS-DEMO-CT"
        ds.PatientBirthDate = ""
        ds.StudyDescription = "AXIAL CT (SYNTHETIC SERIES)"
        ds.SeriesDescription = "SYNTHETIC CT FROM ONE REAL SLICE"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.SOPInstanceUID = uid("instance", k)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = 2, k + 1, 1
        x, y, z = (float(v) for v in src.ImagePositionPatient)
        ds.ImagePositionPatient = [f"{x:.6f}", f"{y:.6f}", f"{z + k * CT_SPACING_MM:.6f}"]
        ds.SliceLocation = f"{z + k * CT_SPACING_MM:.6f}"
        ds.SliceThickness = ds.SpacingBetweenSlices = f"{CT_SPACING_MM:g}"
        ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 0
        ds.PixelData = stored.tobytes()
        path = folder / f"CT{n_slices - k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_inputs(folder: Path) -> dict[str, Path]:
    """The five studies as files in ``folder`` (copies, and the CT series built), by study key."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for s in STUDIES:
        if s.file:
            target = folder / s.file
            shutil.copyfile(bundled(s.file), target)
            out[s.key] = target
        else:
            series = folder / "ct-series"
            if series.exists():
                shutil.rmtree(series)
            build_ct_series(series)
            out[s.key] = series
    return out


# -- what the model sees ------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """A study as MedGemma sees it, with the files written for a person to open."""

    study: Study
    source: Path
    input: PreparedInput
    artefacts: list[Path] = field(default_factory=list)
    extra: PreparedInput | None = None  # the padded square a localization prompt would carry

    @property
    def tokens(self) -> dict[str, int]:
        return estimate_tokens(self.input)


def prepare_study(s: Study, source: Path) -> Prepared:
    """Read a study with its task's reader settings (the same path ``aris run`` takes)."""
    from aris.runner import prepare_inputs

    prepared = prepare_inputs(s.task, source, kind=s.kind, read_options=s.read_options or None)[0]
    extra = None
    if s.kind == "cxr":  # the localization recipe pads to a square: show that too
        extra = prepare_inputs("cxr-localize", source)[0]
    return Prepared(s, source, prepared, extra=extra)


def write_artefacts(p: Prepared, out: Path) -> list[Path]:
    """Write what the model sees as PNG/text files named after the study; returns them."""
    from aris.inputs.png import write_png
    from aris.inputs.sheet import contact_sheet_array

    out.mkdir(parents=True, exist_ok=True)
    key, images = p.study.key, p.input.arrays
    written: list[Path] = []

    def save(img: Any, name: str) -> None:
        write_png(img, out / name)
        written.append(out / name)

    if p.study.kind == "cxr":
        save(images[0], f"{key}.png")
        if p.extra is not None:
            save(p.extra.arrays[0], f"{key}-square.png")
    elif p.study.kind == "pdf":
        for i, img in enumerate(images, 1):
            save(img, f"{key}-page{i}.png")
    elif images:
        save(
            contact_sheet_array(p.input), f"{key}-{'tiles' if p.study.kind == 'wsi' else 'contact-sheet'}.png"
        )
    text = p.input.text
    if text:
        name = f"{key}.txt"
        (out / name).write_text(text + "\n", encoding="utf-8")
        written.append(out / name)
    p.artefacts = written
    return written


# -- the table's words ----------------------------------------------------------------------------------------


def recipe_summary(p: Prepared) -> str:
    """What the recipe did to this study, in a line or two, read from the reader's own provenance."""
    d = p.input.provenance.details
    kind = p.study.kind
    if kind == "cxr":
        w = d.get("window") or {}
        steps = ["Modality LUT"]
        if w:
            steps.append(f"VOI {w.get('center', 0):g}/{w.get('width', 0):g} ({w.get('source', 'window')})")
            if w.get("inverted"):
                steps.append(f"{d.get('photometric', 'MONOCHROME1')} inverted")
        steps.append("8-bit RGB")
        text = " → ".join(steps)
        pad = p.extra.padding if p.extra is not None else None
        return text + (f"; padded to {pad.size}² to localize" if pad is not None else "")
    if kind == "ct":
        n, used = d.get("n_slices"), len(p.input.arrays)
        windows = d.get("windows_hu") or {}
        wtxt = " ".join(f"{c}[{v[0]},{v[1]}]" for c, v in windows.items())
        picked = f"{used} of {n} slices" if n else f"{used} slices"
        return f"sorted along the normal, HU, {picked} (round(i/85·(n−1))), windows {wtxt}"
    if kind == "wsi":
        tiles = d.get("tiles") or []
        return (
            f"{d.get('magnification', '?')}, tissue mask, {len(tiles)} of {d.get('candidates', len(tiles))} "
            f"tissue tiles of {d.get('tile', 896)} px, spatial order"
        )
    if kind == "pdf":
        return f"pages rendered at {d.get('render', '1792 px')}" + (
            " + their text layer" if d.get("text_layer") else ""
        )
    if kind == "fhir":
        m = d.get("manifest") or {}
        kept = (d.get("trimmed") or {}).get("kept_tokens")
        return (
            f"{m.get('total', '?')} resources → {len(m.get('resource_types') or {})} sections citing ids"
            + (f", {kept:,} tokens (budget {d.get('token_budget', 0):,})" if kept else "")
        )
    return p.input.kind


def sees_summary(p: Prepared) -> str:
    """What reaches the model: images and their sizes, text."""
    images = p.input.arrays
    parts = []
    if images:
        sizes = {(a.shape[1], a.shape[0]) for a in images}
        size = "×".join(map(str, next(iter(sizes)))) if len(sizes) == 1 else "various sizes"
        noun = {"ct": "slice", "wsi": "tile", "pdf": "page"}.get(p.study.kind, "image")
        parts.append(f"{len(images)} {noun}{'s' if len(images) != 1 else ''} {size}")
    if p.input.text:
        parts.append(f"{len(p.input.text):,} chars")
    return " + ".join(parts) or "nothing"


def for_each(
    inputs: dict[str, Path], out: Path, on_done: Callable[[Prepared], None] | None = None
) -> list[Prepared]:
    """Prepare every study and write its artefacts into ``out``."""
    done = []
    for s in STUDIES:
        p = prepare_study(s, inputs[s.key])
        write_artefacts(p, out)
        done.append(p)
        if on_done is not None:
            on_done(p)
    return done
