"""Which reader a file, folder or zip needs, decided from its content rather than its name.

File names lie (``.dcm`` files without a preamble, DICOM series with no extension at all, a chest
CR whose 128-byte preamble is a TIFF header); magic numbers and DICOM headers do not. The order of
the checks matters: DICOM's ``DICM`` at offset 128 comes before the TIFF magic at offset 0, because
dual-personality DICOM/TIFF files exist (NEMA's RG1 chest CR is one).

- DICOM: the SOP Class first (Secondary Capture -> image, whatever its Modality; VL Whole Slide
  Microscopy -> wsi), then the Modality (CT -> ct, MR -> mri, SM -> wsi, CR/DX -> cxr, other images
  -> image).
- Folders and zips: DICOM headers decide (a CT or MR series -> ct/mri, a DICOM-SM pyramid -> wsi);
  a folder of several separate images or documents is not one input and is refused here
  (``aris prepare`` and :func:`aris.inputs.read_many` read such folders file by file).
- NIfTI (.nii / .nii.gz by header magic): ct when the data reach HU-like values (below -500,
  air is -1000 HU), else mri, since NIfTI stores no modality.
- TIFF/SVS -> wsi when tiled, pyramidal or large; a small plain TIFF is an ordinary image.
- PDF magic -> pdf; JSON/NDJSON with ``resourceType`` -> fhir; PNG/JPEG/BMP/GIF/WebP -> image.
"""

from __future__ import annotations

import gzip
import json
import logging
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from aris.inputs.base import Kind
from aris.inputs.errors import CorruptFileError, NoPixelDataError, UnsupportedFormatError

logger = logging.getLogger(__name__)

KINDS: tuple[Kind, ...] = ("cxr", "image", "ct", "mri", "wsi", "pdf", "fhir")
HEAD = 1024  # bytes read to classify a file
MAX_HEADERS = 400  # DICOM headers read to classify a folder or zip (spread over its files)
WSI_MIN_SIDE = 10_000  # a plain TIFF this large is a slide, not a photo

SOP_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # and multi-frame SC, …7.1-7.4 (not …77: VL)
SOP_WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
SOP_CT = {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}
SOP_MR = {"1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.4.4"}
SOP_DICOMDIR = "1.2.840.10008.1.3.10"
RADIOGRAPH_MODALITIES = {"CR", "DX"}
NON_IMAGE_MODALITIES = {"SR", "KO", "PR", "SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "REG", "DOC"}

PIXEL_BEARING = {"SEG": "segmentation masks", "RTDOSE": "a radiation dose grid"}  # pixels, but no picture


def _has_pixels(ds: Any) -> bool:
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF87a", b"GIF89a")
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def detect_kind(path: str | Path) -> Kind:
    """The input kind of a file, folder or zip, from its content.

    Raises
    ------
    UnsupportedFormatError
        A format Aris does not read, or a folder/zip of separate files rather than one input.
    NoPixelDataError
        A DICOM object without an image (SR, KOS, RT plan ...).
    CorruptFileError
        Missing, empty or unreadable.
    """
    path = Path(path)
    if path.is_dir():
        return _detect_folder(path)
    head = _head(path)
    if head[128:132] != b"DICM" and head[:4] == b"PK\x03\x04":
        return _detect_zip(path)
    return _detect_file(path, head)


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            head = f.read(HEAD)
    except FileNotFoundError as e:
        raise CorruptFileError(path, "no such file or folder") from e
    except OSError as e:
        raise CorruptFileError(path, f"cannot be read ({e.strerror or type(e).__name__})") from e
    if not head:
        raise CorruptFileError(path, "empty file (0 bytes)")
    return head


def looks_like_dicom(head: bytes) -> bool:
    """DICOM Part 10 (``DICM`` after the preamble), or a preamble-less data set starting in group 0008."""
    if head[128:132] == b"DICM":
        return True
    if len(head) <= 8:
        return False
    little = head[:2] in (b"\x08\x00", b"\x02\x00") and head[3] == 0
    big = head[:2] == b"\x00\x08" and head[2] == 0  # explicit VR big endian, no file meta
    return little or big


def _detect_file(path: Path, head: bytes) -> Kind:
    if looks_like_dicom(head):
        return dicom_kind(_dicom_header(path), path)
    nifti = _nifti_magic(path, head)
    if nifti:
        return _nifti_kind(path)
    if b"%PDF-" in head:
        return "pdf"
    if head[:4] in TIFF_MAGIC:
        return _tiff_kind(path)
    if head.startswith(IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        return _json_kind(path)
    raise UnsupportedFormatError(
        path, "unknown format: not DICOM, NIfTI, TIFF/SVS, PDF, FHIR JSON/NDJSON, PNG or JPEG"
    )


# --- DICOM ---------------------------------------------------------------------------------------


def _dicom_header(source: Path | IO[bytes], name: Path | None = None) -> Any:
    from pydicom.errors import InvalidDicomError

    from aris.inputs.dicom import dcmread_checked, read_failure

    label = name or source
    try:
        ds = dcmread_checked(source, label, stop_before_pixels=False, defer_size=256, force=True)  # type: ignore[arg-type]
    except (OSError, zlib.error) as e:
        raise CorruptFileError(label, read_failure(e)) from e  # type: ignore[arg-type]
    except (InvalidDicomError, EOFError, ValueError, TypeError, KeyError) as e:
        raise CorruptFileError(label, f"damaged DICOM header ({type(e).__name__})") from e  # type: ignore[arg-type]
    if len(ds) == 0:
        raise CorruptFileError(label, "damaged DICOM file: no data elements could be read")  # type: ignore[arg-type]
    return ds


def dicom_kind(ds: Any, path: Path) -> Kind:
    """The kind a DICOM data set calls for; raises for objects with no image for the model."""
    sop = str(ds.get("SOPClassUID", "") or "")
    modality = str(ds.get("Modality", "") or "").upper()
    if sop == SOP_DICOMDIR:
        raise UnsupportedFormatError(path, "a DICOMDIR index, not an image: give the folder it describes")
    if sop == SOP_WSI or modality == "SM":
        return "wsi"
    if modality in NON_IMAGE_MODALITIES:
        what = PIXEL_BEARING.get(modality) if _has_pixels(ds) else None
        if what:
            raise NoPixelDataError(path, f"a DICOM {modality} object: {what}, not an image for the model")
        raise NoPixelDataError(path, f"a DICOM {modality} object holds no image for the model")
    if not _has_pixels(ds):
        from aris.inputs.dicom import expects_pixels, sop_class_name

        if expects_pixels(ds):  # an image object: cut short between elements, or stored without it
            raise CorruptFileError(
                path,
                f"a {sop_class_name(ds)} file whose image is missing: no Pixel Data (cut short or stripped)",
            )
        raise NoPixelDataError(path, f"DICOM object without pixel data (Modality {modality or 'unset'})")
    if sop == SOP_SECONDARY_CAPTURE or sop.startswith(SOP_SECONDARY_CAPTURE + "."):
        return "image"  # a screenshot or photo: no geometry for a volume, whatever the Modality says
    if sop in SOP_CT or modality == "CT":
        return "ct"
    if sop in SOP_MR or modality == "MR":
        return "mri"
    if modality in RADIOGRAPH_MODALITIES:
        return "cxr"
    return "image"


def _dicom_kinds(items: Iterable[tuple[str, Any]]) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for name, ds in items:
        try:
            kinds[dicom_kind(ds, Path(name))] += 1
        except (UnsupportedFormatError, NoPixelDataError):
            kinds["none"] += 1
    return kinds


def _folder_verdict(path: Path, kinds: Counter[str], others: int) -> Kind:
    """One input from a folder's DICOM kinds, or a refusal naming what is there."""
    volume = {k: n for k, n in kinds.items() if k in ("ct", "mri")}
    if volume:
        return "ct" if volume.get("ct", 0) >= volume.get("mri", 0) else "mri"
    if kinds.get("wsi"):
        return "wsi"
    found = ", ".join(f"{n} {k}" for k, n in kinds.most_common() if k != "none")
    raise UnsupportedFormatError(
        path,
        f"holds separate files ({found or 'no images'}{f', {others} other file(s)' if others else ''}), "
        "not one DICOM series: read each file (aris prepare reads such folders file by file)",
    )


# --- folders and zips ----------------------------------------------------------------------------


def _visible_files(root: Path) -> list[Path]:
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if any(part.startswith(".") or part == "__MACOSX" for part in rel) or not p.is_file():
            continue
        if p.name.upper() == "DICOMDIR":
            continue
        out.append(p)
    return out


def _spread(items: list[Any], k: int) -> list[Any]:
    """At most k items spread evenly, so a large series is judged by its whole extent."""
    if len(items) <= k:
        return items
    step = len(items) / k
    return [items[int(i * step)] for i in range(k)]


def _detect_folder(path: Path) -> Kind:
    files = _visible_files(path)
    if not files:
        raise UnsupportedFormatError(path, "empty folder")
    if len(files) == 1:
        return detect_kind(files[0])
    dicom, fhir, nifti, others = [], 0, [], 0
    for f in files:
        try:
            head = _head(f)
        except CorruptFileError:
            others += 1  # an empty or unreadable file does not decide what the folder is
            continue
        if looks_like_dicom(head):
            dicom.append(f)
        elif _nifti_magic(f, head):
            nifti.append(f)
        elif f.suffix.lower() in (".json", ".ndjson") and head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{":
            fhir += 1
        else:
            others += 1
    if dicom:
        headers = []
        for f in _spread(dicom, MAX_HEADERS):
            try:
                headers.append((str(f), _dicom_header(f)))
            except CorruptFileError:
                others += 1
        return _folder_verdict(path, _dicom_kinds(headers), others + fhir + len(nifti))
    if fhir and not nifti and not others:
        return "fhir"
    raise UnsupportedFormatError(
        path,
        f"holds {len(files)} separate files, not one DICOM series: read each file "
        "(aris prepare reads such folders file by file)",
    )


def _detect_zip(path: Path) -> Kind:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [
                i.filename
                for i in zf.infolist()
                if not i.is_dir()
                and not any(part.startswith(".") or part == "__MACOSX" for part in i.filename.split("/"))
                and i.filename.rsplit("/", 1)[-1].upper() != "DICOMDIR"
            ]
            if not names:
                raise UnsupportedFormatError(path, "empty zip")
            heads = {n: zf.open(n).read(HEAD) for n in _spread(names, MAX_HEADERS)}
            dicom = [n for n, h in heads.items() if looks_like_dicom(h)]
            if dicom:
                headers = [(n, _dicom_header(zf.open(n), path)) for n in dicom]
                return _folder_verdict(path, _dicom_kinds(headers), len(heads) - len(dicom))
            if len(names) == 1:
                return _kind_from_head(heads[names[0]], names[0], path)
    except zipfile.BadZipFile as e:
        raise CorruptFileError(path, f"damaged zip ({e})") from e
    raise UnsupportedFormatError(
        path, f"zip of {len(names)} files that are not one DICOM series: unzip it and read each file"
    )


def _kind_from_head(head: bytes, name: str, path: Path) -> Kind:
    """Magic-number kind of a zip member (no random access, so no TIFF or NIfTI data checks)."""
    if head[:4] in TIFF_MAGIC:
        return "wsi"
    if b"%PDF-" in head:
        return "pdf"
    if head.startswith(IMAGE_MAGIC):
        return "image"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{":
        return "fhir"
    if name.lower().endswith((".nii", ".nii.gz")):
        return "mri"
    raise UnsupportedFormatError(path, "zip member of an unknown format")


# --- NIfTI, TIFF, JSON ---------------------------------------------------------------------------


def _nifti_header_ok(hdr: bytes) -> bool:
    if len(hdr) >= 348 and hdr[344:348] in (b"n+1\x00", b"ni1\x00"):
        return int.from_bytes(hdr[:4], "little") == 348 or int.from_bytes(hdr[:4], "big") == 348
    return len(hdr) >= 8 and hdr[4:8] in (b"n+2\x00", b"ni2\x00")


def _nifti_magic(path: Path, head: bytes) -> bool:
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as f:
                return _nifti_header_ok(f.read(352))
        except (OSError, EOFError):
            return False
    return _nifti_header_ok(head)


def _nifti_kind(path: Path) -> Kind:
    """CT when the data reach air in HU (below -500), else MRI: NIfTI stores no modality.

    Reads the central slab only (nibabel's lazy proxy), so a large volume costs one slice.
    """
    import nibabel as nib
    import numpy as np

    try:
        img: Any = nib.load(str(path))
        shape = img.shape
        proxy = img.dataobj
        z = shape[2] // 2 if len(shape) >= 3 else None
        data = np.asarray(proxy[:, :, z, ...] if z is not None else proxy[...], dtype=np.float32)
    except FileNotFoundError as e:
        raise missing_pair_error(path, e) from e
    except Exception as e:  # nibabel raises many types for damaged files
        raise CorruptFileError(path, f"damaged NIfTI ({type(e).__name__})") from e
    return "ct" if looks_like_hu(data) else "mri"


def looks_like_hu(data: Any) -> bool:
    """CT in Hounsfield units shows air (-1000 HU) around and inside the body: at least 1% of the voxels
    below -500. MRI signal is not negative, and resampling ringing leaves only a few voxels below zero."""
    import numpy as np

    values = np.asarray(data)
    return bool(values.size) and float(np.nanpercentile(values, 1)) < -500


def missing_pair_error(path: Path, e: FileNotFoundError) -> CorruptFileError:
    """A NIfTI/Analyze header (.hdr) whose image file (.img) is not beside it, said in those words."""
    missing = Path(e.filename).name if e.filename else None
    if missing and missing != path.name:
        return CorruptFileError(
            path, f"the image file {missing} that goes with this header is missing (a .hdr needs its .img)"
        )
    return CorruptFileError(path, "no such file")


def _tiff_kind(path: Path) -> Kind:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages.first
            series = tf.series[0] if tf.series else None
            tiled = page.is_tiled
            big = max(page.shape[:2]) >= WSI_MIN_SIDE
            pyramid = series is not None and len(series.levels) > 1
            svs = tf.is_svs
    except Exception as e:  # tifffile raises several types for damaged files
        raise CorruptFileError(path, f"damaged TIFF ({type(e).__name__}: {e})") from e
    return "wsi" if tiled or big or pyramid or svs else "image"


def _json_kind(path: Path) -> Kind:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UnsupportedFormatError(path, f"JSON that cannot be read as UTF-8 ({type(e).__name__})") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        try:
            data = json.loads(first)  # NDJSON: one resource per line
        except json.JSONDecodeError as e:
            raise UnsupportedFormatError(path, f"neither JSON nor NDJSON ({e.msg})") from e
    if isinstance(data, dict) and "resourceType" in data:
        return "fhir"
    what = "object" if isinstance(data, dict) else type(data).__name__
    raise UnsupportedFormatError(path, f"JSON {what} without a FHIR resourceType: not FHIR")
