"""One DICOM file: read its header cheaply, decode its pixels, and say clearly why not.

Headers are parsed with large values deferred (pixel data stays on disk until a slice is chosen),
which is what lets a 300-slice series be ordered before any pixel is decoded. Every failure becomes
one of the input errors naming the file. Nothing here logs tag values: patient data stays out of logs.
"""

from __future__ import annotations

import functools
import logging
import os
import struct
import threading
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError
from pydicom.filereader import data_element_generator
from pydicom.pixels.decoders.base import get_decoder
from pydicom.tag import BaseTag
from pydicom.uid import UID

from aris.inputs.errors import (
    CorruptFileError,
    NoPixelDataError,
    UnsupportedTransferSyntaxError,
)

logger = logging.getLogger(__name__)


def _not_a_warning_copy(record: logging.LogRecord) -> bool:
    """pydicom logs every warning it also raises (``warn_and_log``); the warning reaches the provenance
    through ``aris.inputs.read``, so the log copy (which can hold file paths) is dropped."""
    return record.funcName != "warn_and_log"


logging.getLogger("pydicom").addFilter(_not_a_warning_copy)

DEFER_BYTES = 4096
"""Values larger than this (pixel data, big LUTs) are read from disk only when used."""

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR

_READ_ERRORS = (EOFError, ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)


def read_header(path: str | Path) -> Dataset:
    """Parse a DICOM file without loading its pixel data.

    Raises
    ------
    CorruptFileError
        Missing, empty, not DICOM, truncated inside its data set, or damaged beyond parsing.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise CorruptFileError(path, f"cannot be read ({e.strerror or type(e).__name__})") from e
    if size == 0:
        raise CorruptFileError(path, "empty file (0 bytes)")
    try:
        return dcmread_checked(path, path, defer_size=DEFER_BYTES)
    except InvalidDicomError as e:
        # No 'DICM' marker. Old ACR-NEMA style files start straight with a group 0008 element; read
        # those, and only those, without the marker (forcing arbitrary bytes yields garbage data sets).
        if _starts_like_raw_dataset(path):
            try:
                ds = dcmread_checked(path, path, defer_size=DEFER_BYTES, force=True)
            except _READ_ERRORS as e2:
                raise CorruptFileError(path, "damaged DICOM data set (cannot be parsed)") from e2
            if len(ds) > 0 and ("SOPClassUID" in ds or any(k in ds for k in PIXEL_KEYWORDS)):
                return ds
        raise CorruptFileError(path, "not a DICOM file (no 'DICM' marker and no DICOM data set)") from e
    except _READ_ERRORS as e:
        raise CorruptFileError(path, f"damaged DICOM file ({type(e).__name__} while parsing)") from e
    except (OSError, zlib.error) as e:
        raise CorruptFileError(path, read_failure(e)) from e


def read_failure(e: BaseException) -> str:
    """Why pydicom could not parse a file, for the errors that say more than "damaged"."""
    text = str(e)
    if isinstance(e, zlib.error):
        return "truncated or damaged deflated data set (it cannot be inflated)"
    if "No tag to read" in text or "end of file" in text.lower():
        return "truncated: the file ends inside its data"
    return f"damaged DICOM file ({type(e).__name__} while parsing)"


_TRUNCATION_SIGNS = ("End of file reached before delimiter", "ended before the end of the sequence")


def dcmread_checked(source: Any, name: str | Path, **kwargs: Any) -> Dataset:
    """``pydicom.dcmread`` that turns pydicom's end-of-file warnings into a truncation error.

    pydicom reads a file that ends inside an encapsulated (compressed) pixel data item as a data set
    with that element, or everything, missing, and only warns; taken at face value that is "a DICOM
    object without pixel data". Any other warning pydicom gives is passed on (``aris.inputs.read``
    records it in the provenance, not on the console).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = pydicom.dcmread(source, **kwargs)
    for w in caught:
        message = str(w.message)
        if any(sign in message for sign in _TRUNCATION_SIGNS):
            raise CorruptFileError(
                name, "truncated: the file ends inside its data (pydicom found no closing delimiter)"
            )
    cut = _cut_inside(ds, source)
    if cut is not None:
        raise CorruptFileError(name, f"truncated: {cut}")
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ds


def _cut_inside(ds: Dataset, source: Any) -> str | None:
    """How the file is cut short, when its last element runs past the end of the file; else None.

    pydicom stops quietly at the end of a file, keeping a short (or deferred, never read) last value,
    so a file cut anywhere but inside encapsulated pixel data parses as a shorter, valid-looking data
    set. Elements are in tag order, so the last one tells.
    """
    if not isinstance(source, str | Path) or len(ds) == 0:
        return None
    if transfer_syntax(ds) == DEFLATED:
        return None  # offsets count in the inflated stream
    tag = list(ds.keys())[-1]
    raw = ds.get_item(tag, keep_deferred=True)
    tell, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
    if tell is None or length in (None, 0xFFFFFFFF):
        return None
    size = os.path.getsize(source)
    if tell + length > size:
        if tag == _PIXEL_DATA:
            return f"pixel data needs {length} bytes, the file holds {max(0, size - tell)}"
        return f"the file ends inside element {BaseTag(tag)}"
    if 0 < size - (tell + length) < 8:  # a few bytes left: an element header cut short
        return f"the file ends inside the element after {BaseTag(tag)}"
    return None


def _starts_like_raw_dataset(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(4)
    return len(head) == 4 and ((head[:2] == b"\x08\x00" and head[3] == 0) or head[:3] == b"\x00\x08\x00")


def sop_class(ds: Dataset) -> UID | None:
    """The SOP class from the data set, or the file meta when the data set lacks it."""
    uid = ds.get("SOPClassUID") or getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID")
    return UID(str(uid)) if uid else None


def sop_class_name(ds: Dataset) -> str:
    """A readable name for the object's SOP class ("CT Image Storage"), or "unknown SOP class"."""
    uid = sop_class(ds)
    if uid is None:
        return "unknown SOP class"
    return uid.name if uid.name != str(uid) else f"SOP class {uid}"


def is_dicomdir(ds: Dataset) -> bool:
    return str(sop_class(ds) or "") == MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds


def expects_pixels(ds: Dataset) -> bool:
    """True for SOP classes that are images, so a missing Pixel Data means a damaged file."""
    name = sop_class_name(ds)
    return "Image Storage" in name or name in ("Segmentation Storage", "RT Dose Storage")


def has_pixels(ds: Dataset) -> bool:
    return any(k in ds for k in PIXEL_KEYWORDS)


def transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return UID(str(ts))
    # A raw data set read without file meta: pydicom worked out the encoding while parsing.
    implicit, little = getattr(ds, "is_implicit_VR", True), getattr(ds, "is_little_endian", True)
    if implicit:
        return UID("1.2.840.10008.1.2")
    return UID("1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2")


def check_pixels(ds: Dataset, path: str | Path) -> None:
    """Raise the right error when ``ds`` has no decodable image; cheap, decodes nothing.

    Raises
    ------
    NoPixelDataError
        A non-image object (SR, RT plan, KOS, presentation state, DICOMDIR ...).
    CorruptFileError
        An image object whose pixel data is missing or runs past the end of the file (truncated).
    UnsupportedTransferSyntaxError
        Compressed with a scheme no installed decoder handles.
    """
    path = Path(path)
    if is_dicomdir(ds):
        raise NoPixelDataError(path, "a DICOMDIR (media index) holds no image; open the folder instead")
    if not has_pixels(ds):
        if expects_pixels(ds):
            # A file cut exactly between two elements and one stored without its image read the same.
            raise CorruptFileError(
                path,
                f"a {sop_class_name(ds)} file whose image is missing: no Pixel Data (cut short or stripped)",
            )
        raise NoPixelDataError(path, f"a {sop_class_name(ds)} object holds no image (no Pixel Data)")
    meta = getattr(ds, "file_meta", None)
    if meta is not None and len(meta) > 0 and "TransferSyntaxUID" not in meta:
        raise CorruptFileError(
            path,
            "the file meta has no Transfer Syntax UID (0002,0010): how the pixel data are encoded is unknown",
        )
    absent = [name for tag, name in _PIXEL_MODULE if tag not in ds]
    if absent and "PixelData" in ds:
        raise CorruptFileError(path, f"the header lacks {', '.join(absent)}, needed to decode the pixel data")
    raw = ds.get_item("PixelData", keep_deferred=True) if "PixelData" in ds else None
    value_tell = getattr(raw, "value_tell", None)
    length = getattr(raw, "length", None)
    # In a deflated file offsets count in the inflated stream, not in the file on disk.
    deflated = transfer_syntax(ds) == DEFLATED
    if value_tell is not None and length not in (None, 0xFFFFFFFF) and not deflated:
        size = Path(path).stat().st_size
        if value_tell + length > size:
            raise CorruptFileError(
                path,
                f"truncated: pixel data needs {length} bytes, the file holds {max(0, size - value_tell)}",
            )
    ts = transfer_syntax(ds)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as e:
        name = ts.name if ts.is_transfer_syntax else f"an unknown transfer syntax ({ts})"
        raise UnsupportedTransferSyntaxError(
            path, f"pixel data is encoded as {name}; no installed decoder reads it"
        ) from e
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies)
        raise UnsupportedTransferSyntaxError(
            path, f"pixel data is encoded as {ts.name}; install a decoder for it ({missing})"
        )


DEFLATED = UID("1.2.840.10008.1.2.1.99")
_PIXEL_MODULE = (
    (0x00280002, "Samples per Pixel (0028,0002)"),
    (0x00280004, "Photometric Interpretation (0028,0004)"),
    (0x00280010, "Rows (0028,0010)"),
    (0x00280011, "Columns (0028,0011)"),
    (0x00280100, "Bits Allocated (0028,0100)"),
    (0x00280101, "Bits Stored (0028,0101)"),
    (0x00280103, "Pixel Representation (0028,0103)"),
)
"""Image Pixel attributes pydicom needs to decode integer Pixel Data."""


def decode(ds: Dataset, path: str | Path, index: int | None = None) -> np.ndarray:
    """Decode the stored pixel values (before any rescale) of one frame, or all frames.

    ``index`` picks one frame of a multi-frame object without decoding the others. Colour data comes
    back as RGB (pydicom converts YBR). The result is not cached on ``ds``.
    """
    check_pixels(ds, path)
    path = Path(path)
    try:
        if "PixelData" not in ds:  # float pixel data: only the generic path knows it
            arr = np.asarray(ds.pixel_array)
            return arr if index is None or arr.ndim < 3 or _frames(ds) == 1 else arr[index]
        fast = _j2k_frame(ds, index)
        if fast is not None:
            return fast
        decoded, _ = get_decoder(transfer_syntax(ds)).as_array(ds, index=index)
        return np.asarray(decoded)
    except (NotImplementedError, RuntimeError) as e:
        raise UnsupportedTransferSyntaxError(
            path,
            f"pixel data encoded as {transfer_syntax(ds).name} could not be decoded ({type(e).__name__})",
        ) from e
    except (*_READ_ERRORS, OSError) as e:
        raise CorruptFileError(path, _decode_problem(e)) from e


# -- JPEG 2000 lossless without the GIL -------------------------------------------------------------

J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
"""JPEG 2000 Image Compression (Lossless Only): every correct decoder gives the same values."""


_CODEC_LOCK = threading.Lock()
_JPEG2K: list[Any] = []


def jpeg2k_decoder() -> Any:
    """imagecodecs' ``jpeg2k_decode``, imported once under a lock (call it before starting threads:
    two threads importing a package at once can see it half-initialised); None without imagecodecs."""
    if not _JPEG2K:
        with _CODEC_LOCK:
            if not _JPEG2K:
                try:
                    import imagecodecs

                    _JPEG2K.append(imagecodecs.jpeg2k_decode)
                except ImportError:
                    _JPEG2K.append(None)
    return _JPEG2K[0]


def decode_j2k_grey(
    frame: bytes, *, rows: int, columns: int, signed: bool, bits_allocated: int, bits_stored: int
) -> np.ndarray | None:
    """One lossless JPEG 2000 grey frame decoded by imagecodecs, which releases the GIL (pydicom's
    OpenJPEG plugin holds it), or None when anything differs from what pydicom would return: then the
    caller decodes with pydicom, which applies its corrections (a codestream whose signedness or
    precision disagrees with the header) and names any error.
    """
    decoder = jpeg2k_decoder()
    if decoder is None:
        return None
    try:
        arr = np.asarray(decoder(frame))
    except Exception:  # a failing codec: pydicom decodes it, or says why not
        return None
    if bits_allocated not in (8, 16) or not 1 <= bits_stored <= bits_allocated:
        return None
    expected = np.dtype(f"{'i' if signed else 'u'}{bits_allocated // 8}")
    if arr.shape != (rows, columns) or arr.dtype != expected:
        return None
    if bits_stored < bits_allocated and arr.size:
        lo, hi = (
            (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1)
            if signed
            else (0, (1 << bits_stored) - 1)
        )
        if int(arr.min()) < lo or int(arr.max()) > hi:
            return None
    return arr


def j2k_frames_from_file(ds: Dataset) -> bool:
    """Whether :func:`decode` reads each frame's codestream from the file itself (a lossless JPEG 2000
    object whose pixel data were left in the file): then threads decode frames side by side without
    the whole pixel data being loaded first."""
    elem = ds.get_item("PixelData", keep_deferred=True) if "PixelData" in ds else None
    return (
        isinstance(elem, RawDataElement)
        and elem.value is None
        and isinstance(ds.filename, str)
        and str(transfer_syntax(ds)) == J2K_LOSSLESS
    )


def _frame_bytes(ds: Dataset, index: int, frames: int) -> bytes:
    """One frame's codestream. From an enhanced CT of 340 frames the 85 shown need a quarter of its
    30 MB: when the pixel data are still in the file, only their fragments are read."""
    if j2k_frames_from_file(ds):
        elem = ds.get_item("PixelData", keep_deferred=True)
        with open(str(ds.filename), "rb") as f:
            f.seek(elem.value_tell)
            return bytes(get_frame(f, index, number_of_frames=frames))
    return bytes(get_frame(ds.PixelData, index, number_of_frames=frames))


def _j2k_frame(ds: Dataset, index: int | None) -> np.ndarray | None:
    """The fast path of :func:`decode` for one grey frame of a lossless JPEG 2000 object."""
    frames = _frames(ds)
    if str(transfer_syntax(ds)) != J2K_LOSSLESS or (index is None and frames > 1):
        return None
    if as_int(ds.get("SamplesPerPixel")) != 1 or "ModalityLUTSequence" in ds:
        return None
    try:
        frame = _frame_bytes(ds, index or 0, frames)
    except (OSError, ValueError, KeyError, IndexError):
        return None
    return decode_j2k_grey(
        frame,
        rows=as_int(ds.get("Rows")) or 0,
        columns=as_int(ds.get("Columns")) or 0,
        signed=as_int(ds.get("PixelRepresentation")) == 1,
        bits_allocated=as_int(ds.get("BitsAllocated")) or 0,
        bits_stored=as_int(ds.get("BitsStored")) or 0,
    )


def read_j2k_native(path: str | Path, summary: HeaderSummary) -> np.ndarray | None:
    """A single-frame lossless JPEG 2000 slice found by the fast scan, decoded without reading a
    Dataset: the codestream is read from the offset the scan noted. None: decode it with pydicom."""
    if not summary.j2k_grey:
        return None
    try:
        with open(path, "rb") as f:
            f.seek(summary.pixel_offset)
            frame = get_frame(f.read(), 0, number_of_frames=1)
    except (OSError, ValueError, KeyError, IndexError):
        return None
    return decode_j2k_grey(
        frame,
        rows=summary.rows,
        columns=summary.columns,
        signed=summary.pixel_representation == 1,
        bits_allocated=summary.bits_allocated or 0,
        bits_stored=summary.bits_stored or 0,
    )


def _decode_problem(e: BaseException) -> str:
    """What a decode failure says about the file, in words that match what is wrong with it."""
    text = str(e)
    if "Missing required element" in text or "has no (0002,0010)" in text:
        what = text.split(":", 1)[-1].strip().strip(".")
        return f"the header lacks {what}, needed to decode the pixel data"
    if "invalid literal" in text:
        return f"a header value is invalid ({text[:80]})"
    if "is invalid" in text and "(0028," in text:
        return f"a pixel description in the header is invalid ({text.split(',', 1)[0]}...)"
    if isinstance(e, EOFError) or "end of file" in text.lower() or "truncat" in text.lower():
        return f"truncated: the pixel data end early ({type(e).__name__})"
    return f"pixel data cannot be decoded: damaged ({type(e).__name__}: {text[:120]})"


def _frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def n_frames(ds: Dataset) -> int:
    """Number of frames (1 for a single-frame object or a bad value)."""
    return _frames(ds)


def image_type(ds: Dataset) -> tuple[str, ...]:
    """ImageType values, upper-case; multi-frame objects keep theirs in the frame type too."""
    value = ds.get("ImageType")
    if value is None:
        return ()
    if isinstance(value, str):
        return (value.upper(),)
    return tuple(str(v).upper() for v in value)


def as_floats(value: Any, n: int) -> tuple[float, ...] | None:
    """A multi-valued DS/FD element as ``n`` floats, or None when absent or malformed."""
    if value is None:
        return None
    try:
        seq = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        out = tuple(float(v) for v in seq)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def as_int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def frame_value(ds: Dataset, frame: int, sequence: str, keyword: str) -> Any:
    """An attribute of an enhanced multi-frame object for one frame: per-frame group first, then shared.

    e.g. ``frame_value(ds, 3, "PlanePositionSequence", "ImagePositionPatient")``.
    """
    for groups, i in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if not seq or i >= len(seq):
            continue
        item = seq[i].get(sequence)
        if item and keyword in item[0]:
            return item[0][keyword].value
    return None


def rescale_dataset(ds: Dataset, frame: int | None = None) -> Dataset:
    """The data set to hand to ``apply_modality_lut`` for one frame.

    Single-frame objects carry Rescale Slope/Intercept (or a Modality LUT) at the top level, which is
    what pydicom reads. Enhanced multi-frame objects keep them in the Pixel Value Transformation
    functional group (per-frame first, then shared), which pydicom does not look into: copy them up
    for that frame. A top-level pair is used only when no functional group holds one (a leftover of a
    legacy converter must not override the frame's own values; :func:`rescale_state` reports both).
    """
    if frame is None or "ModalityLUTSequence" in ds:
        return ds
    slope, intercept = _group_rescale(ds, frame)
    if slope is None and intercept is None:
        return ds
    out = Dataset()
    if slope is not None and intercept is not None:
        out.RescaleSlope = slope
        out.RescaleIntercept = intercept
    return out


def _group_rescale(ds: Dataset, frame: int) -> tuple[Any, Any]:
    """A frame's Rescale Slope and Intercept from its functional groups (None where absent)."""
    slope = frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    return (None if _blank(slope) else slope), (None if _blank(intercept) else intercept)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str | bytes) and not value.strip())


def pair_state(slope: Any, intercept: Any, lut: bool) -> str:
    """How stored values become modality units: ``"lut"`` (a Modality LUT), ``"pair"`` (Rescale Slope
    and Intercept), ``"none"`` (neither: the stored values are taken as they are), or, for a header
    that cannot be right, ``"RescaleSlope without RescaleIntercept"`` (or the other way round)."""
    if lut:
        return "lut"
    has_slope, has_intercept = not _blank(slope), not _blank(intercept)
    if has_slope and has_intercept:
        return "pair"
    if not has_slope and not has_intercept:
        return "none"
    return "RescaleSlope without RescaleIntercept" if has_slope else "RescaleIntercept without RescaleSlope"


def rescale_state(ds: Dataset, frame: int | None = None) -> tuple[str, bool]:
    """The :func:`pair_state` of the rescale :func:`rescale_dataset` uses for one frame, and whether an
    enhanced object's top-level Rescale Slope/Intercept differ from the functional group's (which is
    the one used). Header values only: nothing is decoded."""
    top = pair_state(ds.get("RescaleSlope"), ds.get("RescaleIntercept"), "ModalityLUTSequence" in ds)
    if frame is None or top == "lut":
        return top, False
    slope, intercept = _group_rescale(ds, frame)
    if slope is None and intercept is None:
        return top, False
    state = pair_state(slope, intercept, False)
    conflict = False
    if top == "pair" and state == "pair":
        try:
            conflict = (float(slope), float(intercept)) != (
                float(ds.RescaleSlope),
                float(ds.RescaleIntercept),
            )
        except (TypeError, ValueError):
            conflict = True
    elif top != "none":
        conflict = True
    return state, conflict


# -- fast header scan -------------------------------------------------------------------------------

_SCAN_TAGS: dict[int, str] = {
    0x00041220: "DirectoryRecordSequence",
    0x00080008: "ImageType",
    0x00080016: "SOPClassUID",
    0x00080060: "Modality",
    0x00180086: "EchoNumbers",
    0x0020000E: "SeriesInstanceUID",
    0x00200011: "SeriesNumber",
    0x00200012: "AcquisitionNumber",
    0x00200013: "InstanceNumber",
    0x00200032: "ImagePositionPatient",
    0x00200037: "ImageOrientationPatient",
    0x00200100: "TemporalPositionIdentifier",
    0x00280002: "SamplesPerPixel",
    0x00280004: "PhotometricInterpretation",
    0x00280008: "NumberOfFrames",
    0x00280010: "Rows",
    0x00280011: "Columns",
    0x00280100: "BitsAllocated",
    0x00280101: "BitsStored",
    0x00280103: "PixelRepresentation",
    0x00281052: "RescaleIntercept",
    0x00281053: "RescaleSlope",
    0x00283000: "ModalityLUTSequence",
    0x52009229: "SharedFunctionalGroupsSequence",
    0x52009230: "PerFrameFunctionalGroupsSequence",
}
_FAST_SYNTAXES = {"1.2.840.10008.1.2": True, "1.2.840.10008.1.2.1": False}  # uid -> implicit VR
_FAST_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"}  # CT, MR Image Storage
_PIXEL_DATA = 0x7FE00010


@dataclass(frozen=True)
class HeaderSummary:
    """What ordering a single-frame CT/MR slice needs, read without building a pydicom Dataset."""

    sop_class: str
    series_uid: str
    series_number: int | None
    modality: str
    image_type: tuple[str, ...]
    acquisition: int | None
    instance: int | None
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    rows: int
    columns: int
    transfer_syntax: str
    pixel_length: int | None  # None: encapsulated (undefined length)
    pixel_offset: int
    samples: int | None
    photometric: str
    bits_allocated: int | None
    bits_stored: int | None
    pixel_representation: int | None
    rescale_slope: str | None
    rescale_intercept: str | None
    modality_lut: bool
    echo: int | None = None  # EchoNumbers (the first, when several)
    temporal: int | None = None  # TemporalPositionIdentifier

    @property
    def native_16bit_grey(self) -> bool:
        """Uncompressed little-endian 16-bit grey with every bit used: the stored values are the
        file's bytes, so they can be read straight into numpy (what pydicom returns for them)."""
        return (
            self.transfer_syntax in _FAST_SYNTAXES
            and self.samples == 1
            and self.photometric == "MONOCHROME2"
            and self.bits_allocated == 16
            and self.bits_stored == 16
            and self.pixel_representation in (0, 1)
            and not self.modality_lut
            and self.pixel_length == self.rows * self.columns * 2
        )

    @property
    def j2k_grey(self) -> bool:
        """A lossless JPEG 2000 grey slice: :func:`read_j2k_native` may decode it without the GIL."""
        return (
            self.transfer_syntax == J2K_LOSSLESS
            and self.samples == 1
            and self.photometric in ("MONOCHROME1", "MONOCHROME2")
            and self.pixel_length is None
            and not self.modality_lut
        )

    @property
    def rescale_state(self) -> str:
        """:func:`pair_state` of this slice's header: "pair", "lut", "none", or what is half there."""
        return pair_state(self.rescale_slope, self.rescale_intercept, self.modality_lut)

    def rescale(self) -> Dataset:
        """A Dataset holding just this slice's Rescale Slope/Intercept, for ``apply_modality_lut``."""
        ds = Dataset()
        if self.rescale_state == "pair":
            ds.RescaleSlope = self.rescale_slope
            ds.RescaleIntercept = self.rescale_intercept
        return ds


def scan_header(path: str | Path) -> HeaderSummary | None:
    """Read the few attributes that order a slice, for single-frame CT/MR Image Storage files.

    A folder scan is dominated by per-file parsing, not by bytes: pydicom's ``dcmread`` builds and
    validates a whole Dataset (file meta included) even when only a dozen values are needed. This walks
    the same raw elements with pydicom's own ``data_element_generator``, keeps the dozen, and stops at
    Pixel Data: two to three times faster than ``dcmread`` plus attribute access (bench/prep_ct.py). Anything else (no DICM marker, big endian or deflated
    encoding, multi-frame, DICOMDIR, other SOP classes, a damaged file) returns None: the caller then
    uses :func:`read_header`, which handles and names every case.
    """
    try:
        with open(path, "rb") as fp:
            if fp.read(132)[128:132] != b"DICM":
                return None
            meta: dict[int, bytes] = {}
            for el in data_element_generator(fp, False, True, stop_when=_not_meta):
                meta[int(el.tag)] = el.value or b""
            ts = _text(meta.get(0x00020010, b""))
            implicit = _FAST_SYNTAXES.get(ts)
            if implicit is None and not (UID(ts).is_encapsulated and _decodable(ts)):
                return None
            values: dict[str, bytes] = {}
            pixel: list[int] = []

            def stop(tag: BaseTag, vr: str | None, length: int) -> bool:
                t = int(tag)  # int comparison: BaseTag's rich comparisons are slow in a hot loop
                if t >= _PIXEL_DATA:
                    if t == _PIXEL_DATA:
                        pixel.append(length)
                    return True
                return False

            for el in data_element_generator(fp, bool(implicit), True, stop_when=stop, defer_size=256):
                name = _SCAN_TAGS.get(int(el.tag))
                if name is not None:
                    values[name] = el.value if isinstance(el.value, bytes) else b"?"
            if not pixel:
                return None
            value_start = fp.tell() + (8 if implicit else 12)
            size = os.fstat(fp.fileno()).st_size
    except (OSError, *_READ_ERRORS, struct.error):
        return None
    sop = _text(values.get("SOPClassUID", b""))
    if (
        sop not in _FAST_SOP_CLASSES
        or "DirectoryRecordSequence" in values
        or "PerFrameFunctionalGroupsSequence" in values
        or "SharedFunctionalGroupsSequence" in values
        or (_int(values.get("NumberOfFrames")) or 1) != 1
    ):
        return None
    length = pixel[0]
    if length != 0xFFFFFFFF and value_start + length > size:
        return None  # truncated: read_header/check_pixels say so, naming the file
    rows, cols = _us(values.get("Rows")), _us(values.get("Columns"))
    if not rows or not cols:
        return None
    image_type = _text(values.get("ImageType", b""))
    return HeaderSummary(
        sop_class=sop,
        series_uid=_text(values.get("SeriesInstanceUID", b"")) or "(no SeriesInstanceUID)",
        series_number=_int(values.get("SeriesNumber")),
        modality=_text(values.get("Modality", b"")).upper(),
        image_type=tuple(v.strip().upper() for v in image_type.split("\\")) if image_type else (),
        acquisition=_int(values.get("AcquisitionNumber")),
        instance=_int(values.get("InstanceNumber")),
        position=as_floats(_multi(values.get("ImagePositionPatient")), 3),
        orientation=as_floats(_multi(values.get("ImageOrientationPatient")), 6),
        rows=rows,
        columns=cols,
        transfer_syntax=ts,
        pixel_length=None if length == 0xFFFFFFFF else length,
        pixel_offset=value_start,
        samples=_us(values.get("SamplesPerPixel")),
        photometric=_text(values.get("PhotometricInterpretation", b"")).upper(),
        bits_allocated=_us(values.get("BitsAllocated")),
        bits_stored=_us(values.get("BitsStored")),
        pixel_representation=_us(values.get("PixelRepresentation")),
        rescale_slope=_text(values["RescaleSlope"]) if "RescaleSlope" in values else None,
        rescale_intercept=_text(values["RescaleIntercept"]) if "RescaleIntercept" in values else None,
        modality_lut="ModalityLUTSequence" in values,
        echo=_int(_first(values.get("EchoNumbers"))),
        temporal=_int(values.get("TemporalPositionIdentifier")),
    )


def read_native(path: str | Path, summary: HeaderSummary) -> np.ndarray:
    """The stored values of a slice for which ``summary.native_16bit_grey`` holds, read with numpy.

    Equal to pydicom's ``pixel_array`` for such files (tested), at a fraction of the cost.
    """
    dtype = np.dtype("<i2" if summary.pixel_representation == 1 else "<u2")
    count = summary.rows * summary.columns
    try:
        arr = np.fromfile(path, dtype=dtype, count=count, offset=summary.pixel_offset)
    except OSError as e:
        raise CorruptFileError(path, f"pixel data cannot be read ({type(e).__name__})") from e
    if arr.size != count:
        raise CorruptFileError(path, f"truncated: {arr.size} of {count} pixel values present")
    return arr.reshape(summary.rows, summary.columns).astype(dtype.newbyteorder("="), copy=False)


@functools.cache
def _decodable(ts: str) -> bool:
    """Whether an installed plugin decodes this transfer syntax (else the full reader says which)."""
    try:
        return bool(get_decoder(UID(ts)).is_available)
    except NotImplementedError:
        return False


def _not_meta(tag: BaseTag, vr: str | None, length: int) -> bool:
    return int(tag) >> 16 != 0x0002


def _text(raw: bytes) -> str:
    return raw.decode("ascii", "replace").strip(" \x00")


def _multi(raw: bytes | None) -> list[str] | None:
    return None if raw is None else _text(raw).split("\\")


def _first(raw: bytes | None) -> bytes | None:
    """The first of a multi-valued element's values."""
    return None if raw is None else raw.split(b"\\", 1)[0]


def _us(raw: bytes | None) -> int | None:
    """An unsigned short (VR US), little endian as in every syntax the fast scan accepts."""
    return int.from_bytes(raw[:2], "little") if raw is not None and len(raw) >= 2 else None


def _int(raw: bytes | None) -> int | None:
    return None if raw is None else as_int(_text(raw))
