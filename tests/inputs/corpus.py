"""A public-file corpus for the readers, and a classifier that checks each message against the file.

The corpus is built at run time from INSTALLED packages, never copied into the repo:

- pydicom's own test files (``pydicom/data``: test_files, charset_files, palettes, DICOMDIRs);
- pydicom-data's files (the ``data_store`` package of ``pydicom-data``, when installed);
- nibabel's test data (every ``data`` folder inside the nibabel package);
- pynetdicom's test DICOM files (``pynetdicom/tests/dicom_files``: deflated, big endian, bad meta);
- a truncated copy of each public DICOM file larger than 2 KiB (cut at 60%), written to a temporary
  folder, because damaged files are where messages go wrong.

Each file is read with ``aris.inputs.read`` (kind ``auto``; DICOM files also as ``image``, and the
public ones as ``cxr``). An outcome is a *crash* when anything other than Aris's own error family escapes, and
*misleading* when its message claims something the file is not: a message saying "truncated" must be
about a file that is truncated, "holds no image" about one with no pixel data, "lacks Bits
Allocated" about one without it, and so on. The facts are established here with pydicom and nibabel
directly (full reads, no deferral), independently of the readers' own checks. A message that no rule
recognises is *unclassified*, so a new kind of message needs a rule before the corpus passes.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

SKIP_SUFFIXES = (".py", ".pyc")
DERIVED_MIN_BYTES = 2048
DERIVED_KEEP = 0.6


def public_files() -> list[tuple[str, Path]]:
    """(source package, path) of every data file the installed packages ship."""
    import nibabel
    import pydicom.data

    roots: list[tuple[str, Path]] = [("pydicom", Path(pydicom.data.__file__).parent)]
    try:
        import data_store  # pydicom-data

        roots.append(("pydicom-data", Path(data_store.__file__).parent / "data"))
    except ImportError:
        pass
    nib_root = Path(nibabel.__file__).parent
    roots += [("nibabel", d) for d in sorted(nib_root.rglob("data")) if d.is_dir()]
    try:
        import pynetdicom

        net = Path(pynetdicom.__file__).parent / "tests" / "dicom_files"
        if net.is_dir():
            roots.append(("pynetdicom", net))
    except ImportError:
        pass
    out: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    for source, root in roots:
        for p in sorted(root.rglob("*")):
            if (
                p.is_file()
                and p.suffix not in SKIP_SUFFIXES
                and "__pycache__" not in p.parts
                and p not in seen
            ):
                seen.add(p)
                out.append((source, p))
    return out


def truncated_copies(files: list[tuple[str, Path]], dest: Path) -> list[tuple[str, Path]]:
    """A copy of each DICOM file (``DICM`` marker) over 2 KiB, cut to 60% of its bytes."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (source, p) in enumerate(files):
        data = p.read_bytes()
        if len(data) > DERIVED_MIN_BYTES and data[128:132] == b"DICM":
            cut = dest / f"{i:04d}_{p.name}.cut"
            cut.write_bytes(data[: int(len(data) * DERIVED_KEEP)])
            out.append((f"{source} (truncated copy)", cut))
    return out


# -- facts about a file, established without Aris's readers --------------------------------------


@dataclass
class Facts:
    """What a file is, from pydicom and nibabel read fully (no deferred values)."""

    path: Path
    derived_truncation: bool = False

    @cached_property
    def head(self) -> bytes:
        with self.path.open("rb") as f:
            return f.read(1024)

    @cached_property
    def dicom(self) -> tuple[Any, list[str], BaseException | None]:
        """(data set or None, pydicom's warnings, the exception a full read raised)."""
        import pydicom

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ds = pydicom.dcmread(self.path, force=True)
                err = None
            except Exception as e:
                ds, err = None, e
        return ds, [str(w.message) for w in caught], err

    @property
    def ds(self) -> Any:
        return self.dicom[0]

    @cached_property
    def is_dicom(self) -> bool:
        """A DICOM data set with content: a SOP class, a modality or pixel data."""
        if self.head[128:132] == b"DICM":
            return True
        ds = self.ds
        return ds is not None and any(k in ds for k in ("SOPClassUID", "Modality", "PixelData"))

    @cached_property
    def truncated(self) -> bool:
        """Cut short: a derived copy, pydicom hitting the end of the file, or less pixel data than the
        header describes (for native encodings)."""
        if self.derived_truncation:
            return True
        ds, caught, err = self.dicom
        if err is not None and isinstance(err, EOFError | OSError | ValueError):
            return True
        if any("End of file" in w or "delimiter" in w for w in caught):
            return True
        if ds is not None and len(ds) > 0:
            # pydicom keeps a short last value without complaint: compare it with its declared length
            last = ds.get_item(next(reversed(ds.keys())))
            value, length = getattr(last, "value", None), getattr(last, "length", None)
            if isinstance(value, bytes) and length not in (None, 0xFFFFFFFF) and len(value) < length:
                return True
            end = getattr(last, "value_tell", 0) + (length or 0)
            if length != 0xFFFFFFFF and 0 < self.path.stat().st_size - end < 8:
                return True  # bytes left that cannot hold an element header
        if ds is None or "PixelData" not in ds:
            return False
        from pydicom.pixels.utils import get_expected_length

        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if ts is None or ts.is_encapsulated:
            return False
        try:
            need = get_expected_length(ds)
        except Exception:
            return False
        return len(ds.PixelData) < need

    @cached_property
    def has_pixels(self) -> bool:
        ds = self.ds
        return ds is not None and any(
            k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
        )

    @cached_property
    def decodes(self) -> bool:
        """pydicom (with the installed plugins) decodes the pixel data."""
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

        ds = self.ds
        if len(getattr(ds, "file_meta", None) or ()) == 0:
            # an ACR-NEMA style data set without file meta: its encoding is the one pydicom parsed
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = (
                ImplicitVRLittleEndian
                if ds.is_implicit_VR
                else ExplicitVRLittleEndian
                if ds.is_little_endian
                else ExplicitVRBigEndian
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _ = ds.pixel_array
        except Exception:
            return False
        return True

    @cached_property
    def invalid_values(self) -> bool:
        """Some element value does not parse as its VR says (pydicom in RAISE validation mode)."""
        from pydicom import config

        old = config.settings.reading_validation_mode
        config.settings.reading_validation_mode = config.RAISE
        try:
            for el in self.ds.iterall():
                _ = el.value
        except Exception:
            return True
        finally:
            config.settings.reading_validation_mode = old
        return False

    @property
    def modality(self) -> str:
        return str(self.ds.get("Modality", "") if self.ds is not None else "").upper()

    @property
    def sop_name(self) -> str:
        uid = self.ds.get("SOPClassUID") if self.ds is not None else None
        return uid.name if uid is not None else ""

    def missing(self, keyword: str) -> bool:
        ds = self.ds
        if keyword == "TransferSyntaxUID":
            meta = getattr(ds, "file_meta", None)
            return meta is None or "TransferSyntaxUID" not in meta
        return ds is None or keyword not in ds

    @cached_property
    def nifti(self) -> Any:
        """The nibabel image when nibabel loads this file as NIfTI-1/2, else the exception."""
        import nibabel as nib

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img = nib.load(str(self.path))
        except Exception as e:
            return e
        return img

    @property
    def is_nifti(self) -> bool:
        import nibabel as nib

        return isinstance(self.nifti, nib.Nifti1Image | nib.Nifti2Image | nib.Nifti1Pair | nib.Nifti2Pair)

    @property
    def is_gzip(self) -> bool:
        return self.head[:2] == b"\x1f\x8b"

    def no_position(self) -> bool:
        ds = self.ds
        if ds is None:
            return True
        if "ImagePositionPatient" in ds:
            return False
        for group in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
            for item in ds.get(group) or []:
                pps = item.get("PlanePositionSequence")
                if pps and "ImagePositionPatient" in pps[0]:
                    return False
        return True


# -- the classifier ------------------------------------------------------------------------------

Check = Callable[[Facts, re.Match[str]], bool]

RULES: list[tuple[str, re.Pattern[str], Check]] = [
    # (name, what the message says, what must then be true of the file)
    ("empty", re.compile(r"^empty file"), lambda f, m: f.path.stat().st_size == 0),
    ("truncated", re.compile(r"truncated|ends inside|end early"), lambda f, m: f.truncated),
    (
        "missing transfer syntax",
        re.compile(r"no Transfer Syntax UID"),
        lambda f, m: f.missing("TransferSyntaxUID"),
    ),
    (
        "missing attribute",
        re.compile(r"lacks ([A-Z][A-Za-z ]+) \((\w{4}),(\w{4})\)"),
        lambda f, m: all(
            f.ds is not None and (int(g, 16) << 16 | int(e, 16)) not in f.ds
            for g, e in re.findall(r"\((\w{4}),(\w{4})\)", m.string)
        ),
    ),
    (
        "no pixel data",
        re.compile(r"holds no image|without pixel data|\(no Pixel Data\)"),
        lambda f, m: (
            f.is_dicom and not f.has_pixels and (not f.truncated or "Image Storage" not in f.sop_name)
        ),
    ),
    (
        "image missing",
        re.compile(r"whose image is missing: no Pixel Data"),
        lambda f, m: f.is_dicom and not f.has_pixels,
    ),
    (
        "pixels that are not a picture",
        re.compile(r"a DICOM (SEG|RTDOSE) object: .*, not an image for the model"),
        lambda f, m: f.has_pixels and f.modality == m.group(1),
    ),
    ("invalid header value", re.compile(r"a header value is invalid"), lambda f, m: f.invalid_values),
    (
        "DICOMDIR",
        re.compile(r"DICOMDIR"),
        lambda f, m: "Directory" in f.sop_name or "DirectoryRecordSequence" in f.ds,
    ),
    (
        "modality named",
        re.compile(r"a DICOM (\w+) object"),
        lambda f, m: f.modality == m.group(1) or m.group(1) in f.sop_name.upper().replace(" ", ""),
    ),
    (
        "other modality for cxr",
        re.compile(r"\(DICOM Modality (\w+)\), not a chest X-ray"),
        lambda f, m: f.modality == m.group(1) and m.group(1) not in ("CR", "DX"),
    ),
    (
        "not a CT/MR image",
        re.compile(r"not a CT or MR image"),
        lambda f, m: "CT Image" not in f.sop_name and "MR Image" not in f.sop_name,
    ),
    (
        "no decoder",
        re.compile(r"no installed decoder|install a decoder|could not be decoded"),
        lambda f, m: f.has_pixels and not f.decodes,
    ),
    (
        "not DICOM",
        re.compile(r"not a DICOM file|unknown format: not DICOM|damaged DICOM data set"),
        lambda f, m: not f.is_dicom and not f.is_nifti,
    ),
    (
        "damaged DICOM",
        re.compile(r"damaged DICOM"),
        lambda f, m: f.is_dicom and (f.truncated or f.dicom[2] is not None or len(f.ds) == 0),
    ),
    (
        "hdr without img",
        re.compile(r"the image file (\S+) that goes with this header is missing"),
        lambda f, m: not (f.path.parent / m.group(1)).exists(),
    ),
    ("damaged NIfTI", re.compile(r"damaged (or truncated )?NIfTI"), lambda f, m: not f.is_nifti),
    (
        "not a NIfTI volume",
        re.compile(r"not a NIfTI (volume|file)"),
        lambda f, m: not isinstance(f.nifti, Exception) or not f.is_nifti,
    ),
    (
        "not FHIR",
        re.compile(r"not FHIR|neither JSON nor NDJSON|cannot be read as UTF-8"),
        lambda f, m: f.head.lstrip()[:1] in (b"{", b"["),
    ),
    (
        "no position",
        re.compile(r"no ImagePositionPatient"),
        lambda f, m: f.no_position(),
    ),
    (
        "not a volume",
        re.compile(r"\dD image, not a volume"),
        lambda f, m: f.is_nifti and len(f.nifti.shape) < 3,
    ),
    ("gzip", re.compile(r"gzip-compressed"), lambda f, m: f.is_gzip),
    (
        "damaged image",
        re.compile(r"damaged or truncated (\w+) image|damaged TIFF|unexpected pixel array"),
        lambda f, m: True,  # Pillow/tifffile formats: the reader's own verdict is the only one available
    ),
    (
        "too large",
        re.compile(r"over the limit|decompression-bomb"),
        lambda f, m: True,
    ),
    (
        "series of another modality",
        re.compile(r"no usable (CT|MR) series; found (\w+) series"),
        lambda f, m: f.modality != m.group(1) or f.no_position(),
    ),
    (
        "unsupported frame shape",
        re.compile(r"expected one grey frame"),
        lambda f, m: f.ds is not None and int(f.ds.get("SamplesPerPixel") or 1) > 1,
    ),
]


@dataclass
class Outcome:
    source: str
    path: Path
    kind: str
    status: str  # "ok", "error", "crash"
    message: str = ""
    error_type: str = ""
    verdict: str = ""  # ok-check or rule name or "misleading: ..." or "unclassified"
    escaped_warnings: list[str] = field(default_factory=list)


def classify(facts: Facts, outcome: Outcome, result: Any = None) -> str:
    """The rule a message satisfies, or why it is misleading/unclassified."""
    if outcome.status == "crash":
        return "crash"
    if outcome.status == "ok":
        return _check_success(facts, outcome, result)
    matched = [(name, m, check) for name, rx, check in RULES if (m := rx.search(outcome.message))]
    if not matched:
        return "unclassified"
    for name, m, check in matched:
        try:
            ok = check(facts, m)
        except Exception as e:  # a fact that cannot be established cannot support the claim
            return f"misleading: {name} (fact check failed: {type(e).__name__})"
        if not ok:
            return f"misleading: {name}"
    return matched[0][0]


def _check_success(facts: Facts, outcome: Outcome, prepared: Any) -> str:
    if not prepared.images and prepared.kind not in ("fhir", "pdf"):
        return "misleading: success without images"
    if facts.is_dicom:
        if facts.truncated:
            return "misleading: a truncated file read as good"
        if not facts.decodes and "PixelData" in facts.ds:
            return "misleading: read although pydicom cannot decode it"
        if prepared.kind == "ct" and facts.modality != "CT" and "CT Image" not in facts.sop_name:
            return "misleading: called CT"
        if prepared.kind == "mri" and facts.modality != "MR" and "MR Image" not in facts.sop_name:
            return "misleading: called MRI"
        if prepared.kind == "cxr" and facts.modality not in ("CR", "DX", "DR", "RG", "OT", ""):
            return "misleading: called a chest X-ray"
    elif facts.is_nifti and prepared.kind not in ("ct", "mri"):
        return "misleading: a NIfTI volume read as a 2D image"
    return "ok"


def run(files: list[tuple[str, Path]], truncated: set[Path]) -> Iterator[Outcome]:
    """Read every file (auto; DICOM also as image and cxr) and classify each outcome."""
    from aris.errors import ArisError
    from aris.inputs import read

    for source, path in files:
        facts = Facts(path, derived_truncation=path in truncated)
        kinds = ["auto"]
        if facts.head[128:132] == b"DICM":
            kinds += ["image"] if path in truncated else ["image", "cxr"]
        for kind in kinds:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = None
                try:
                    result = read(path, kind)
                    outcome = Outcome(source, path, kind, "ok", message="; ".join(result.provenance.warnings))
                except ArisError as e:
                    outcome = Outcome(
                        source,
                        path,
                        kind,
                        "error",
                        message=getattr(e, "problem", str(e)),
                        error_type=type(e).__name__,
                    )
                except Exception as e:
                    outcome = Outcome(source, path, kind, "crash", message=f"{type(e).__name__}: {e}")
            outcome.escaped_warnings = [str(w.message) for w in caught]
            outcome.verdict = classify(facts, outcome, result)
            yield outcome


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    files = {o.path for o in outcomes}
    return {
        "files": len(files),
        "reads": len(outcomes),
        "ok": sum(o.status == "ok" for o in outcomes),
        "errors": sum(o.status == "error" for o in outcomes),
        "crashes": [o for o in outcomes if o.status == "crash"],
        "misleading": [o for o in outcomes if o.verdict.startswith("misleading")],
        "unclassified": [o for o in outcomes if o.verdict == "unclassified"],
        "escaped_warnings": [o for o in outcomes if o.escaped_warnings],
        "by_rule": Counter(o.verdict for o in outcomes if o.status == "error"),
        "by_source": Counter(o.source for o in outcomes if o.kind == "auto"),
    }
