"""Build CT series with real pixels and awkward, realistic geometry, for tests and benchmarks.

The only real CT series in tests/data are 16x16 pixels; the full-resolution CT there is single
slices. This script turns a real slice (``dicom/ct/CT_small.dcm``, an axial spine CT, by default) into
series of any length as proper CT Image Storage files:

- N slices along a slice normal computed from ImageOrientationPatient (optionally oblique), with the
  in-plane origin free to wander so that raw z is not the slice order;
- shuffled file names and write order;
- a different RescaleSlope/RescaleIntercept per file, with stored values chosen so HU is identical;
- optionally a whole study folder: the main series with a second, shorter acquisition, a DERIVED
  reformat with more slices, a localizer, a duplicate InstanceNumber, and non-image clutter.

Everything is deterministic for a given seed (UIDs come from ``generate_uid`` with fixed entropy), so a
test can recompute the exact HU of true slice ``k`` with :func:`slice_hu`.

    python scripts/make_volumes.py OUT --slices 300 [--size 512] [--tilt 20] [--study] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    BasicTextSRStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    MRImageStorage,
    generate_uid,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "data"
# ct_small: a real axial CT slice, 128x128 (pydicom, downsized from NEMA WG04 CT1; MIT).
# ect_frame1: frame 1 of a 512x512 Enhanced CT (pydicom-data, NEMA; MIT): a perfusion (rCBF) map in
# CT storage, so its values are not tissue HU; use it when a native 512 source matters more than realism.
SOURCES = {"ct_small": "dicom/ct/CT_small.dcm", "ect_frame1": "dicom/ct/eCT_Supplemental.dcm"}
UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's root: these files are test data, not patients

# (slope, intercept, signed): stored = (HU - intercept) / slope is an integer for every integer HU in
# [-1024, 3071] and fits 16 bits, and stored * slope + intercept gives the same float64 HU exactly.
RESCALES: tuple[tuple[float, float, bool], ...] = (
    (1.0, -1024.0, False),
    (1.0, 0.0, True),
    (0.5, -1024.0, False),
    (1.0, -1000.0, True),
    (0.25, -1024.0, False),
    (2.0, -2048.0, False),  # only for even HU: used when the base image is even (see _rescale_for)
)


@dataclass
class SeriesSpec:
    """What to build. Distances in mm, angles in degrees."""

    n_slices: int = 40
    size: int = 64
    spacing: float = 1.25
    pixel_spacing: float | None = None  # default: the source's field of view spread over `size`
    tilt: float = 0.0  # rotation of the slice plane about the patient x axis (0: axial)
    orientation: str = "axial"  # axial, coronal or sagittal (before tilt)
    inplane_jitter: float = 0.0  # mm of per-slice wander of IPP within the plane
    mixed_rescale: bool = True
    shuffle: bool = True
    source: str = "ct_small"
    seed: int = 0
    series_number: int = 2
    acquisition_number: int = 1
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    description: str = "SYNTHETIC CT FROM REAL PIXELS"
    name_prefix: str = "IM"
    modality: str = "CT"  # "MR": MR Image Storage, stored = value + 1024, no rescale attributes
    uniform: bool = True  # False: one gap of 3x spacing in the middle (non-uniform spacing)
    compression: str | None = None  # "j2k": JPEG 2000 lossless pixel data (pylibjpeg-openjpeg encoder)


@dataclass
class BuiltSeries:
    """A written series and its ground truth, in true anatomical order (index k)."""

    spec: SeriesSpec
    folder: Path
    series_uid: str
    files: list[Path]  # files[k] holds true slice k
    positions: list[tuple[float, float, float]]
    normal: tuple[float, float, float]
    orientation: tuple[float, ...]
    rescales: list[tuple[float, float]] = field(default_factory=list)

    def hu(self, k: int) -> np.ndarray:
        """The exact HU of true slice ``k`` (float64), as the files encode it."""
        return slice_hu(self.spec, k).astype(np.float64)

    def value(self, k: int) -> np.ndarray:
        """What ``apply_modality_lut`` gives for true slice ``k``: HU for CT, stored signal for MR."""
        if self.spec.modality == "MR":
            return (slice_hu(self.spec, k).astype(np.int32) + 1024).astype(np.uint16)
        return self.hu(k)


@dataclass
class BuiltStudy:
    """A folder holding several series and clutter; ``main`` is the one the recipe must choose."""

    folder: Path
    main: BuiltSeries
    second_acquisition: BuiltSeries
    derived: BuiltSeries
    localizer: BuiltSeries
    duplicate: Path  # a file repeating an InstanceNumber of ``main``
    clutter: dict[str, Path]  # name -> path of non-image files


@cache
def _source_hu(source: str, data_root: str) -> np.ndarray:
    ds = pydicom.dcmread(Path(data_root) / SOURCES[source])
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:  # enhanced CT: rescale lives in the functional groups
        rescale = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
        return ds.pixel_array[0] * float(rescale.RescaleSlope) + float(rescale.RescaleIntercept)
    return apply_modality_lut(ds.pixel_array, ds)


@cache
def _base_hu(source: str, size: int, data_root: str = str(SAMPLES)) -> np.ndarray:
    """The real slice in HU, resampled to ``size`` (bilinear) and rounded to whole, even HU."""
    hu = _source_hu(source, data_root).astype(np.float32)
    if hu.shape != (size, size):
        hu = np.asarray(Image.fromarray(hu, mode="F").resize((size, size), Image.Resampling.BILINEAR))
    # Even whole HU in the CT range lets every rescale in RESCALES store it exactly.
    return (np.clip(np.round(hu / 2) * 2, -1024, 3070)).astype(np.int16)


def slice_hu(spec: SeriesSpec, k: int) -> np.ndarray:
    """HU of true slice ``k``: the real slice shifted a little per slice, so every slice differs."""
    base = _base_hu(spec.source, spec.size)
    scale = spec.size / 64
    dy = round(((k * 7) % 23 - 11) * scale / 2)
    dx = round(((k * 5) % 17 - 8) * scale / 2)
    out = np.roll(base, (dy, dx), axis=(0, 1))
    # A bright disc whose radius grows with k makes neighbours differ even when the shifts repeat.
    yy, xx = np.ogrid[: spec.size, : spec.size]
    r = (k % 29 + 2) * spec.size / 128
    disc = (yy - spec.size * 0.3) ** 2 + (xx - spec.size * 0.7) ** 2 <= r * r
    out = out.copy()
    out[disc] = 60 + 2 * (k % 13)  # soft-tissue HU: lands in the G and B windows
    return out


def _orientation(spec: SeriesSpec) -> tuple[np.ndarray, np.ndarray]:
    rows = {
        "axial": (np.array([1.0, 0, 0]), np.array([0, 1.0, 0])),
        "coronal": (np.array([1.0, 0, 0]), np.array([0, 0, -1.0])),
        "sagittal": (np.array([0, 1.0, 0]), np.array([0, 0, -1.0])),
    }[spec.orientation]
    t = np.deg2rad(spec.tilt)
    rot = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    return rot @ rows[0], rot @ rows[1]


def _uid(seed: int, *parts: object) -> str:
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=[str(seed), *map(str, parts)])


def _rescale_for(k: int, spec: SeriesSpec, rng: random.Random) -> tuple[float, float, bool]:
    if not spec.mixed_rescale:
        return RESCALES[0]
    return RESCALES[rng.randrange(len(RESCALES))]


def _dataset(
    spec: SeriesSpec,
    k: int,
    study_uid: str,
    series_uid: str,
    frame_uid: str,
    position: np.ndarray,
    row: np.ndarray,
    col: np.ndarray,
    rescale: tuple[float, float, bool],
    instance_number: int,
    sop_uid: str,
) -> Dataset:
    mr = spec.modality == "MR"
    slope, intercept, signed = (1.0, -1024.0, False) if mr else rescale
    hu = slice_hu(spec, k).astype(np.float64)
    stored = (hu - intercept) / slope
    assert np.array_equal(stored, np.round(stored)), "rescale must store HU exactly"
    pixels = stored.astype(np.int16 if signed else np.uint16)
    assert np.array_equal(pixels.astype(np.float64) * slope + intercept, hu)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage if mr else CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(spec.image_type)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20000101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.Modality = spec.modality
    ds.Manufacturer = "Aris synthetic"
    ds.StudyDescription = "SYNTHETIC STUDY"
    ds.SeriesDescription = spec.description
    ds.PatientName = "Synthetic^Volume"
    ds.PatientID = "SYNTH0001"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.SliceThickness = f"{spec.spacing:g}"
    ds.KVP = "120"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = spec.series_number
    ds.AcquisitionNumber = spec.acquisition_number
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row, *col)]
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = spec.size
    ps = spec.pixel_spacing or 0.661468 * 128 / spec.size
    ds.PixelSpacing = [f"{ps:.6f}", f"{ps:.6f}"]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    if not mr:  # MR images here carry raw signal: stored = value + 1024, no rescale
        ds.RescaleIntercept = f"{intercept:g}"
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleType = "HU"
    ds.PixelData = pixels.tobytes()
    if spec.compression is not None:
        _compress(ds, spec.compression)
    return ds


COMPRESSIONS = {"j2k": JPEG2000Lossless}


def _compress(ds: Dataset, compression: str) -> None:
    """Encode the pixel data in place (lossless, so the decoded stored values are unchanged)."""
    ds.compress(COMPRESSIONS[compression], encoding_plugin="pylibjpeg")


def make_series(
    folder: str | Path,
    spec: SeriesSpec | None = None,
    *,
    study_uid: str | None = None,
    frame_uid: str | None = None,
    instance_numbers: list[int] | None = None,
    slice_range: tuple[int, int] | None = None,
) -> BuiltSeries:
    """Write one CT series into ``folder`` and return its ground truth.

    ``slice_range`` writes only true slices ``[a, b)`` (a second acquisition over part of the volume).
    """
    spec = spec or SeriesSpec()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{spec.seed}-{spec.series_number}-{spec.acquisition_number}")
    study_uid = study_uid or _uid(spec.seed, "study")
    frame_uid = frame_uid or _uid(spec.seed, "frame")
    series_uid = _uid(spec.seed, "series", spec.series_number, spec.image_type, spec.orientation)
    row, col = _orientation(spec)
    normal = np.cross(row, col)
    origin = np.array([-spec.size * 0.33, -spec.size * 0.33, -150.0])
    a, b = slice_range or (0, spec.n_slices)
    ks = list(range(a, b))
    names = [
        f"{spec.name_prefix}{spec.series_number:02d}{spec.acquisition_number}{i:05d}" for i in range(len(ks))
    ]
    if spec.shuffle:
        rng.shuffle(names)
    order = list(range(len(ks)))
    if spec.shuffle:
        rng.shuffle(order)  # write order differs from name order and from anatomical order

    files: list[Path] = [Path()] * len(ks)
    positions: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)] * len(ks)
    rescales: list[tuple[float, float]] = [(1.0, 0.0)] * len(ks)
    for j in order:
        k = ks[j]
        dist = k * spec.spacing
        if not spec.uniform and k >= spec.n_slices // 2:
            dist += 2 * spec.spacing
        wander = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1)]) * spec.inplane_jitter
        pos = origin + dist * normal + wander[0] * row + wander[1] * col
        rescale = _rescale_for(k, spec, rng) if spec.modality == "CT" else (1.0, -1024.0, False)
        inst = instance_numbers[j] if instance_numbers else k + 1
        sop_uid = _uid(spec.seed, "sop", series_uid, spec.acquisition_number, k, inst)
        ds = _dataset(spec, k, study_uid, series_uid, frame_uid, pos, row, col, rescale, inst, sop_uid)
        path = folder / names[j]
        ds.save_as(path, enforce_file_format=True)
        files[j] = path
        positions[j] = (float(pos[0]), float(pos[1]), float(pos[2]))
        rescales[j] = (rescale[0], rescale[1])
    return BuiltSeries(
        spec=spec,
        folder=folder,
        series_uid=series_uid,
        files=files,
        positions=positions,
        normal=tuple(float(v) for v in normal),  # type: ignore[arg-type]
        orientation=tuple(float(v) for v in (*row, *col)),
        rescales=rescales,
    )


def _text_sr(path: Path, study_uid: str, seed: int) -> None:
    """A Basic Text SR: a DICOM object with no pixel data, as found next to images in real exports."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = BasicTextSRStorage
    meta.MediaStorageSOPInstanceUID = _uid(seed, "sr")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = BasicTextSRStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = _uid(seed, "sr-series")
    ds.SeriesNumber = 99
    ds.InstanceNumber = 1
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.save_as(path, enforce_file_format=True)


def make_study(folder: str | Path, spec: SeriesSpec | None = None, *, clutter: bool = True) -> BuiltStudy:
    """Write a study folder where only the recipe's rules find the right volume.

    - main series: ORIGINAL, acquisition 1, ``n_slices`` slices, plus a file repeating an InstanceNumber;
    - the same series, acquisition 2: the middle third again (a repeat run over the same positions);
    - a DERIVED reformat with more slices than the main series (the "largest" rule alone would take it);
    - a 2-image coronal LOCALIZER;
    - clutter (when ``clutter``): a text SR, a DICOMDIR-like non-image, an empty file, a text file named
      .dcm, and a truncated copy of a slice.
    """
    spec = spec or SeriesSpec()
    folder = Path(folder)
    study_uid = _uid(spec.seed, "study")
    frame_uid = _uid(spec.seed, "frame")
    main = make_series(folder, spec, study_uid=study_uid, frame_uid=frame_uid)
    third = spec.n_slices // 3
    second = make_series(
        folder,
        _replace(spec, acquisition_number=2, name_prefix="IMB"),
        study_uid=study_uid,
        frame_uid=frame_uid,
        slice_range=(third, 2 * third),
        instance_numbers=[spec.n_slices + 1 + i for i in range(third)],
    )
    derived = make_series(
        folder,
        _replace(
            spec,
            n_slices=spec.n_slices * 3 // 2,
            spacing=spec.spacing * 2 / 3,
            image_type=("DERIVED", "SECONDARY", "REFORMATTED"),
            series_number=3,
            description="SYNTHETIC REFORMAT",
            name_prefix="RF",
        ),
        study_uid=study_uid,
        frame_uid=frame_uid,
    )
    localizer = make_series(
        folder,
        _replace(
            spec,
            n_slices=2,
            orientation="coronal",
            image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
            series_number=1,
            description="SYNTHETIC LOCALIZER",
            name_prefix="LOC",
            spacing=20.0,
        ),
        study_uid=study_uid,
        frame_uid=frame_uid,
    )
    # A re-sent instance: same InstanceNumber as true slice 0, different SOP Instance UID and pixels.
    dup = pydicom.dcmread(main.files[1])
    dup.InstanceNumber = 1
    dup.SOPInstanceUID = dup.file_meta.MediaStorageSOPInstanceUID = _uid(spec.seed, "duplicate")
    duplicate = folder / "ZZDUPLICATE"
    dup.save_as(duplicate, enforce_file_format=True)

    extra: dict[str, Path] = {}
    if clutter:
        extra["sr"] = folder / "REPORT_SR"
        _text_sr(extra["sr"], study_uid, spec.seed)
        extra["empty"] = folder / "EMPTY.dcm"
        extra["empty"].write_bytes(b"")
        extra["text"] = folder / "notes.dcm"
        extra["text"].write_text("not a DICOM file\n" * 20)
        extra["truncated"] = folder / "TRUNCATED"
        data = main.files[0].read_bytes()
        extra["truncated"].write_bytes(data[: len(data) // 2])
    return BuiltStudy(
        folder=folder,
        main=main,
        second_acquisition=second,
        derived=derived,
        localizer=localizer,
        duplicate=duplicate,
        clutter=extra,
    )


def make_enhanced(folder: str | Path, spec: SeriesSpec | None = None) -> BuiltSeries:
    """Write the series as ONE Enhanced CT (or MR) Image Storage multi-frame object.

    Frames are stored in shuffled order, each placed by its per-frame Plane Position; orientation,
    pixel spacing and (CT) the rescale are shared functional groups. ``spec.compression`` encodes the
    frames (JPEG 2000: one codestream per frame). ``files`` of the result is ``[the file]``.
    """
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedCTImageStorage, EnhancedMRImageStorage

    spec = spec or SeriesSpec()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mr = spec.modality == "MR"
    rng = random.Random(f"{spec.seed}-enhanced")
    series_uid = _uid(spec.seed, "enhanced-series", spec.modality)
    row, col = _orientation(spec)
    normal = np.cross(row, col)
    origin = np.array([-spec.size * 0.33, -spec.size * 0.33, -150.0])
    order = list(range(spec.n_slices))
    if spec.shuffle:
        rng.shuffle(order)
    slope, intercept = 1.0, -1024.0  # MR: stored = value + 1024 and no rescale, as in make_series
    positions = [origin + k * spec.spacing * normal for k in range(spec.n_slices)]
    frames = [((slice_hu(spec, k).astype(np.float64) - intercept) / slope).astype(np.uint16) for k in order]

    sop_class = EnhancedMRImageStorage if mr else EnhancedCTImageStorage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = _uid(spec.seed, "enhanced-sop", spec.modality)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = [*spec.image_type[:2], "VOLUME", "NONE"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20000101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.Modality = spec.modality
    ds.SeriesDescription = spec.description + " (ENHANCED)"
    ds.PatientName = "Synthetic^Volume"
    ds.PatientID = "SYNTH0001"
    ds.StudyInstanceUID = _uid(spec.seed, "study")
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = spec.series_number
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = _uid(spec.seed, "frame")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = spec.size
    ds.NumberOfFrames = spec.n_slices
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ps = spec.pixel_spacing or 0.661468 * 128 / spec.size

    shared = Dataset()
    orient = Dataset()
    orient.ImageOrientationPatient = [f"{v:.6f}" for v in (*row, *col)]
    shared.PlaneOrientationSequence = Sequence([orient])
    measures = Dataset()
    measures.PixelSpacing = [f"{ps:.6f}", f"{ps:.6f}"]
    measures.SliceThickness = f"{spec.spacing:g}"
    shared.PixelMeasuresSequence = Sequence([measures])
    frame_type = Dataset()
    frame_type.FrameType = [*spec.image_type[:2], "VOLUME", "NONE"]
    shared.setdefault(
        "MRImageFrameTypeSequence" if mr else "CTImageFrameTypeSequence", Sequence([frame_type])
    )
    if not mr:
        pvt = Dataset()
        pvt.RescaleIntercept = f"{intercept:g}"
        pvt.RescaleSlope = f"{slope:g}"
        pvt.RescaleType = "HU"
        shared.PixelValueTransformationSequence = Sequence([pvt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for k in order:
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [f"{v:.6f}" for v in positions[k]]
        item.PlanePositionSequence = Sequence([pos])
        content = Dataset()
        content.InStackPositionNumber = k + 1
        item.FrameContentSequence = Sequence([content])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.stack(frames).tobytes()
    if spec.compression is not None:
        _compress(ds, spec.compression)
    path = folder / f"ENHANCED_{spec.modality}"
    ds.save_as(path, enforce_file_format=True)
    return BuiltSeries(
        spec=spec,
        folder=folder,
        series_uid=series_uid,
        files=[path],
        positions=[(float(v[0]), float(v[1]), float(v[2])) for v in positions],
        normal=tuple(float(v) for v in normal),  # type: ignore[arg-type]
        orientation=tuple(float(v) for v in (*row, *col)),
        rescales=[(slope, intercept)] * spec.n_slices,
    )


def _replace(spec: SeriesSpec, **changes: object) -> SeriesSpec:
    from dataclasses import replace

    return replace(spec, **changes)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--slices", type=int, default=300)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--spacing", type=float, default=1.25)
    p.add_argument("--tilt", type=float, default=0.0, help="degrees about the patient x axis")
    p.add_argument("--jitter", type=float, default=0.0, help="mm of in-plane IPP wander per slice")
    p.add_argument("--source", choices=sorted(SOURCES), default="ct_small")
    p.add_argument("--study", action="store_true", help="several series and clutter in one folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--j2k", action="store_true", help="JPEG 2000 lossless pixel data (not native)")
    p.add_argument("--mr", action="store_true", help="MR Image Storage (no rescale) instead of CT")
    p.add_argument(
        "--enhanced",
        action="store_true",
        help="one Enhanced CT/MR multi-frame object instead of one file a slice",
    )
    a = p.parse_args(argv)
    spec = SeriesSpec(
        n_slices=a.slices,
        size=a.size,
        spacing=a.spacing,
        tilt=a.tilt,
        inplane_jitter=a.jitter,
        source=a.source,
        seed=a.seed,
        compression="j2k" if a.j2k else None,
        modality="MR" if a.mr else "CT",
    )
    if a.enhanced:
        built = make_enhanced(a.out, spec)
        print(
            f"enhanced: {spec.n_slices} frames of {a.size}x{a.size} in {built.files[0].name}; {built.series_uid}"
        )
        return
    if a.study:
        study = make_study(a.out, spec)
        print(f"study: {len(list(a.out.iterdir()))} files; main series {study.main.series_uid}")
    else:
        built = make_series(a.out, spec)
        print(f"series: {len(built.files)} files of {a.size}x{a.size}; {built.series_uid}")


if __name__ == "__main__":
    main()
