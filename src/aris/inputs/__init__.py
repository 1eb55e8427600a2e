"""Clinical inputs: ``read(path, kind="auto", **options) -> PreparedInput``.

One call turns a file, folder, zip (or list of DICOM files) into exactly what MedGemma was trained
on, following the recipes in MEDGEMMA.md. The readers, one per format:

=========  ===========================================  ===================================
kind       source                                       reader
=========  ===========================================  ===================================
cxr/image  DICOM CR/DX/SC/photo, PNG, JPEG              :func:`aris.inputs.images.read_image`
ct/mri     DICOM folder/zip/file list, NIfTI            :func:`aris.inputs.series.read_series`,
                                                        :func:`aris.inputs.nifti.read_nifti`
wsi        SVS, tiled TIFF, DICOM-SM                    :func:`aris.inputs.wsi.read_wsi`
pdf        PDF (lab reports)                            :func:`aris.inputs.pdf.read_pdf`
fhir       R4 Bundle JSON, NDJSON                       :func:`aris.inputs.fhir.read_fhir`
=========  ===========================================  ===================================

Readers are imported when first used, so ``import aris.inputs`` stays light and a reader's heavy
libraries (wsidicom, pypdfium2, fhir.resources) load only for its kind.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aris.errors import ArisError, ConfigError, InputError
from aris.inputs.base import Kind, Padding, PreparedInput
from aris.registry import Registry, load_target
from aris.types import TextPart

logger = logging.getLogger(__name__)

IMAGE_TOKENS = 256  # soft tokens per image (mm_tokens_per_image)
IMAGE_MARKER_TOKENS = 4  # "\n\n", <start_of_image>, <end_of_image>, "\n\n" around each image
CHARS_PER_TOKEN = 3  # the same deliberately high estimate as Engine.count_text_tokens

# CLI-style aliases for reader options
_ALIASES = {"series": "series_uid"}


@dataclass(frozen=True)
class Reader:
    """One input kind: how to read it, the options it takes, and (for plugins) how to recognise it.

    ``read`` and ``sniff`` may be ``"module:function"`` strings, imported only when that kind is read, so
    checking options or listing kinds imports no reader. ``options`` are the keyword options ``read``
    accepts; ``sniff(path) -> bool`` lets a plugin claim files before the built-in detection runs.
    """

    kind: str
    read: str | Callable[..., PreparedInput]
    options: tuple[str, ...] = ()
    sniff: str | Callable[[Path], bool] | None = None
    description: str = ""

    def reader(self) -> Callable[..., PreparedInput]:
        fn = load_target(self.read) if isinstance(self.read, str) else self.read
        return fn  # type: ignore[no-any-return,unused-ignore]  # load_target is Any

    def claims(self, path: Path) -> bool:
        if self.sniff is None:
            return False
        fn = load_target(self.sniff) if isinstance(self.sniff, str) else self.sniff
        return bool(fn(path))


READERS: Registry[Reader] = Registry("reader")
READERS.register(
    "cxr",
    Reader("cxr", "aris.inputs.images:read_image", ("pad_square", "max_pixels"), description="chest X-ray"),
)
READERS.register(
    "image",
    Reader("image", "aris.inputs.images:read_image", ("pad_square", "max_pixels"), description="2D image"),
)
_VOLUME_OPTIONS = ("modality", "series_uid")
READERS.register("ct", Reader("ct", "aris.inputs:read_volume", _VOLUME_OPTIONS, description="CT volume"))
READERS.register("mri", Reader("mri", "aris.inputs:read_volume", _VOLUME_OPTIONS, description="MRI volume"))
READERS.register(
    "wsi",
    Reader(
        "wsi",
        "aris.inputs.wsi:read_wsi",
        ("magnification", "max_tiles", "seed", "tile", "min_tissue", "pad_edges"),
        description="whole-slide image",
    ),
)
READERS.register(
    "pdf",
    Reader("pdf", "aris.inputs.pdf:read_pdf", ("dpi", "max_pages", "password"), description="PDF report"),
)
READERS.register(
    "fhir", Reader("fhir", "aris.inputs.fhir:read_fhir", ("token_budget",), description="FHIR record")
)
READERS.register(
    "audio",
    Reader(
        "audio",
        "aris.speech.audio:read_audio",
        options=("max_seconds",),
        sniff="aris.speech.audio:sniff_audio",
        description="dictation audio",
    ),
)

# Remote sources by URL scheme: ``fetch(url, dest) -> Path`` brings the study/series into ``dest`` (a private
# temporary folder) and returns what to read there; ``digest(url) -> str`` names its content for result keys.
# Example: "dicomweb" -> aris.pacs.source (``aris run ct dicomweb://pacs/studies/<uid>/series/<uid>``).
SOURCES: Registry[Any] = Registry("source")
SOURCES.register("dicomweb", "aris.pacs.source")


def kinds() -> tuple[str, ...]:
    """Every input kind a reader is registered for, then ``auto``."""
    return (*READERS.names(), "auto")


def read_volume(
    source: Path | list[Path], *, modality: str = "ct", series_uid: str | None = None
) -> PreparedInput:
    """A CT/MRI volume: a NIfTI file, or a DICOM series (folder, zip or file list)."""
    if isinstance(source, Path) and source.is_file() and _is_nifti(source):
        from aris.inputs.nifti import read_nifti

        if series_uid is not None:
            raise ConfigError("series_uid applies to DICOM series, not to a NIfTI file")
        return read_nifti(source, modality=modality)  # type: ignore[arg-type]
    from aris.inputs.series import read_series

    return read_series(source, modality=modality, series_uid=series_uid)


def _is_nifti(path: Path) -> bool:
    from aris.inputs.detect import HEAD, _nifti_magic

    with path.open("rb") as f:
        return _nifti_magic(path, f.read(HEAD))


# The built-in readers, declared above: checking a kind or an option against these imports nothing.
# Plugins are consulted (which imports each plugin's module) only for what the built-ins do not know.
_BUILTIN: dict[str, Reader] = {
    name: READERS.get(name) for name in ("cxr", "image", "ct", "mri", "wsi", "pdf", "fhir")
}


_IMPORT_LOCK = threading.Lock()
_IMPORTED: set[str] = set()


def _import_once(kind: str) -> None:
    """Import pydicom and the kind's reader in one thread at a time, the first time.

    pydicom's package imports are circular; two threads importing it at once (a batch's preparing
    threads, the server's) can see half-initialised modules and fail with ImportError.
    """
    if kind in _IMPORTED:
        return
    with _IMPORT_LOCK:
        if kind in _IMPORTED:
            return
        import aris.inputs.dicom  # noqa: F401  (pydicom, whole)

        if kind in _BUILTIN or kind in READERS:  # built-ins first: no entry-point scan for them
            READERS.get(kind).reader()
        _IMPORTED.add(kind)


def _all_options() -> frozenset[str]:
    return frozenset(o for _, r in READERS.items() for o in r.options)


def _unknown_options(options: dict[str, Any]) -> set[str]:
    unknown = set(options) - {o for r in _BUILTIN.values() for o in r.options}
    return unknown - _all_options() if unknown else unknown


def _scheme(path: object) -> str | None:
    if isinstance(path, str | Path):
        text = str(path)
        scheme, sep, rest = text.partition(":/")
        if sep and scheme.isidentifier():
            scheme = scheme.lower()
            # "scheme://...", or "scheme:/..." of a registered source: what pathlib.Path leaves of a URL
            # (CLI arguments and batch items are Paths), so a URL survives them.
            if rest.startswith("/") or scheme in SOURCES:
                return scheme
    return None


def _read_source(url: str, kind: str, options: dict[str, Any]) -> PreparedInput:
    """A remote study/series: fetched into a private temporary folder, read, then forgotten.

    Readers return images decoded into memory, so the folder can go once they return.
    """
    scheme = _scheme(url)
    assert scheme is not None
    source = SOURCES.get(scheme)
    with tempfile.TemporaryDirectory(prefix="aris-src-") as tmp:
        local = source.fetch(url, Path(tmp))
        prepared = read(local, kind, **options)
    prepared.provenance.sources = [source.public(url) if hasattr(source, "public") else url]
    return prepared


def read(path: str | Path | Sequence[str | Path], kind: str = "auto", **options: Any) -> PreparedInput:
    """Read a file, folder, zip or list of DICOM files into the model-ready input.

    Parameters
    ----------
    path
        What to read. A folder or zip is one input when it holds one DICOM series (CT/MR) or one
        DICOM-SM pyramid, or a single file; folders of separate files go through :func:`read_many`.
    kind
        ``cxr``, ``image``, ``ct``, ``mri``, ``wsi``, ``pdf``, ``fhir`` or ``auto`` (detected from the
        content by :func:`aris.inputs.detect.detect_kind`).
    options
        Passed to the reader that takes them: ``pad_square`` (images), ``series_uid``/``series``
        (series), ``magnification``, ``max_tiles``, ``seed``, ``pad_edges`` (wsi), ``dpi``,
        ``max_pages`` (pdf), ``token_budget`` (fhir). An option another reader takes is ignored
        with a warning in the provenance; an option no reader takes is an error.

    Raises
    ------
    InputError
        (one of :mod:`aris.inputs.errors`) naming the file and the problem.
    ConfigError
        An unknown kind or option.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepared = _read(path, kind, options)
    _record_library_warnings(prepared, caught)
    return prepared


_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?(?:[\\/][^\s'\"\\/]+)+[\\/]([^\s'\"\\/]+)")


def _record_library_warnings(prepared: PreparedInput, caught: list[warnings.WarningMessage]) -> None:
    """Library warnings (pydicom's "found implicit VR", "excess padding" ...) go into the provenance.

    Printed by Python they would appear above Aris's own output with site-packages paths; here each
    becomes one line naming only the file, and repeats are kept once.
    """
    for w in caught:
        origin = Path(w.filename).parts
        library = next(
            (p for p in ("pydicom", "nibabel", "PIL", "tifffile", "pypdfium2") if p in origin), None
        )
        text = _PATH.sub(r"\1", str(w.message)).strip()
        line = f"{library or 'library'}: {text}"
        if text and line not in prepared.provenance.warnings:
            prepared.provenance.warnings.append(line)


def _read(path: str | Path | Sequence[str | Path], kind: str, options: dict[str, Any]) -> PreparedInput:
    if kind not in _BUILTIN and kind != "auto" and kind not in kinds():
        raise ConfigError(f"unknown input kind {kind!r}; choose one of {', '.join(kinds())}")
    options = {_ALIASES.get(k, k): v for k, v in options.items()}
    unknown = _unknown_options(options)
    if unknown:
        raise ConfigError(f"unknown input option(s) {', '.join(sorted(unknown))}")
    _import_once(kind)
    if _scheme(path) is not None:
        return _read_source(str(path), kind, options)
    if not isinstance(path, str | Path):
        return _read_list([Path(p) for p in path], kind, options)
    path = Path(path)
    from aris.inputs.detect import detect_kind

    if path.is_dir():
        from aris.inputs.detect import _visible_files

        files = _visible_files(path)
        if len(files) == 1:
            return read(files[0], kind, **options)  # an upload folder (or unpacked zip) of one file
    if kind == "auto":
        kind = _claimed(path) or detect_kind(path)
    if path.is_dir() and kind in ("cxr", "image", "pdf"):
        from aris.inputs.errors import UnsupportedFormatError

        raise UnsupportedFormatError(
            path,
            f"a folder of several files is not one {kind} input: read each file (read_many, aris prepare)",
        )
    if path.is_file() and zipfile.is_zipfile(path) and kind not in ("ct", "mri") and not _is_dicom(path):
        return _read_zip(path, kind, options)
    return _dispatch(path, kind, options)


def _claimed(path: Path) -> str | None:
    """The kind of the first registered reader that recognises ``path`` (plugins declare ``sniff``)."""
    for name, r in READERS.items():
        if r.sniff is not None and r.claims(path):
            return name
    return None


def _is_dicom(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(132)[128:132] == b"DICM"


def _dispatch(source: Path | list[Path], kind: str, options: dict[str, Any]) -> PreparedInput:
    _import_once(kind)
    r = READERS.get(kind)
    accepted = set(r.options)
    ignored = sorted(set(options) - accepted)
    call = {k: v for k, v in options.items() if k in accepted}
    if "modality" in accepted and kind in ("ct", "mri"):
        call.setdefault("modality", kind)
    prepared = r.reader()(source, **call)
    if kind == "cxr":
        _check_radiograph(source, prepared)
    if kind in ("cxr", "image") and prepared.kind != kind:
        prepared.kind = "cxr" if kind == "cxr" else "image"  # the caller knows a PNG is a chest X-ray
        prepared.provenance.kind = kind
    if ignored:
        prepared.provenance.warnings.append(
            f"option(s) {', '.join(ignored)} do not apply to {kind} input; ignored"
        )
    return prepared


RADIOGRAPH_MODALITIES = ("CR", "DX", "DR", "RG", "OT")  # OT: other, as many exported radiographs say
_MODALITY_NAMES = {"CT": "CT", "MR": "MR", "US": "ultrasound", "MG": "mammography", "NM": "nuclear medicine",
                   "PT": "PET", "XA": "angiography", "RF": "fluoroscopy", "OP": "ophthalmic photography",
                   "SM": "slide microscopy", "XC": "photography", "ES": "endoscopy", "IO": "intra-oral X-ray",
                   "PX": "panoramic X-ray", "OCT": "OCT"}  # fmt: skip


def _check_radiograph(source: Path | list[Path], prepared: PreparedInput) -> None:
    """``kind="cxr"`` on a DICOM that says it is something else: refuse a CT, MR, ultrasound ...; warn
    for a radiograph of another body part. PNG/JPEG carry no modality and are taken at the caller's word."""
    details = prepared.provenance.details
    if details.get("format") != "DICOM":
        return
    modality = str(details.get("modality") or "").upper()
    path = source if isinstance(source, Path) else None
    if modality and modality not in RADIOGRAPH_MODALITIES:
        from aris.inputs.errors import UnsupportedFormatError

        name = _MODALITY_NAMES.get(modality, f"Modality {modality}")
        raise UnsupportedFormatError(
            path,
            f"a {name} image (DICOM Modality {modality}), not a chest X-ray: the chest X-ray recipe does "
            "not apply (read CT/MR series as kind ct/mri, other images as kind image)",
        )
    from aris.inputs.cxr import CHEST_WORDS

    body = str(details.get("body_part") or "").upper()
    if body and not any(w in body for w in CHEST_WORDS):
        prepared.provenance.warnings.append(
            f"BodyPartExamined is {body}, not chest: read as a chest X-ray because kind cxr was asked"
        )


def _read_list(files: list[Path], kind: str, options: dict[str, Any]) -> PreparedInput:
    """A list of files is one DICOM series (CT/MR) or one DICOM-SM pyramid."""
    if not files:
        raise InputError(None, "no files given")
    if kind == "auto":
        from aris.inputs.detect import detect_kind

        kinds = {detect_kind(f) for f in files}
        vol = kinds & {"ct", "mri", "wsi"}
        if len(files) == 1:
            kind = kinds.pop()
        elif len(vol) == 1:
            kind = vol.pop()
        else:
            raise InputError(
                files[0],
                f"a list of {len(files)} files of kinds {sorted(kinds)} is not one input; use read_many",
            )
    if len(files) == 1:
        return _dispatch(files[0], kind, options)
    if kind not in ("ct", "mri", "wsi"):
        raise InputError(
            files[0], f"a list of files is one input only for ct, mri or wsi, not {kind}; use read_many"
        )
    return _dispatch(files, kind, options)


def _read_zip(path: Path, kind: str, options: dict[str, Any]) -> PreparedInput:
    """A zip for a non-series kind: unpack it safely, read the one input inside, forget the files.

    Readers return images decoded into memory, so the temporary folder can go once they return.
    """
    from aris.inputs.archive import safe_extract

    with tempfile.TemporaryDirectory(prefix="aris-zip-") as tmp:
        safe_extract(path, Path(tmp) / "x")
        root = Path(tmp) / "x"
        try:
            prepared = read(root, kind, **options)
        except InputError as e:  # name the zip the user gave, not our temporary folder
            raise type(e)(path, e.problem) from e
    prepared.provenance.sources = [str(path)]
    return prepared


@dataclass(frozen=True)
class Failure:
    """A file ``read_many`` could not read, and why (the error's message names the file)."""

    path: str
    error: str
    type: str


def read_many(
    paths: Iterable[str | Path],
    kind: str = "auto",
    *,
    on_progress: Callable[[int, Path, PreparedInput | Failure], None] | None = None,
    keep: bool = True,
    **options: Any,
) -> tuple[list[PreparedInput], list[Failure]]:
    """Read several inputs, going on past bad ones.

    Returns the inputs read, in order, and a :class:`Failure` for each one that could not be read.
    ``on_progress(i, path, result)`` is called after each (for progress bars, or to write each
    input out); with ``keep=False`` the inputs are handed to it only, not collected, so a folder of
    slides is never held in memory at once. Option and kind errors (:class:`~aris.errors.ConfigError`)
    are not per-file problems and still raise.
    """
    inputs: list[PreparedInput] = []
    failures: list[Failure] = []
    for i, p in enumerate(paths):
        p = Path(p)
        result: PreparedInput | Failure
        try:
            result = read(p, kind, **options)
            if keep:
                inputs.append(result)
        except ConfigError:
            raise
        except ArisError as e:
            result = Failure(str(p), str(e), type(e).__name__)
            failures.append(result)
        if on_progress is not None:
            on_progress(i, p, result)
    logger.info("read_many: %d read, %d failed", len(inputs), len(failures))
    return inputs, failures


def text_tokens(text: str) -> int:
    """Tokens of plain text, estimated high (3 characters a token) like ``Engine.count_text_tokens``."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def estimate_tokens(prepared: PreparedInput, image_tokens: int = IMAGE_TOKENS) -> dict[str, int]:
    """What a prepared input costs in the prompt: images x 256 soft tokens plus its text.

    ``label_tokens`` counts the text parts between images ("SLICE 1" ...); ``context_tokens`` the
    optional ``text`` (a PDF's text layer; for FHIR it is the same text as the part and is not
    counted twice). ``total`` = images x (256 + 4 marker tokens) + labels + context, the number to
    hold against an engine's context length.
    """
    n_images = len(prepared.arrays)
    labels = sum(text_tokens(p.text) for p in prepared.parts if isinstance(p, TextPart))
    in_parts = any(isinstance(p, TextPart) and p.text == prepared.text for p in prepared.parts)
    context = 0 if in_parts or not prepared.text else text_tokens(prepared.text)
    image_total = n_images * image_tokens
    return {
        "images": n_images,
        "image_tokens": image_total,
        "marker_tokens": n_images * IMAGE_MARKER_TOKENS,
        "label_tokens": labels,
        "context_tokens": context,
        "total": image_total + n_images * IMAGE_MARKER_TOKENS + labels + context,
    }


def __getattr__(name: str) -> Any:
    """Readers and helpers by name, imported on first use (``from aris.inputs import read_wsi``)."""
    lazy = {
        "read_image": "aris.inputs.images",
        "read_series": "aris.inputs.series",
        "read_nifti": "aris.inputs.nifti",
        "read_wsi": "aris.inputs.wsi",
        "read_pdf": "aris.inputs.pdf",
        "read_fhir": "aris.inputs.fhir",
        "detect_kind": "aris.inputs.detect",
        "contact_sheet": "aris.inputs.sheet",
    }
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(f"module 'aris.inputs' has no attribute {name!r}")


__all__ = [
    "READERS",
    "SOURCES",
    "Failure",
    "Kind",
    "Padding",
    "PreparedInput",
    "Reader",
    "contact_sheet",
    "detect_kind",
    "estimate_tokens",
    "kinds",
    "read",
    "read_fhir",
    "read_image",
    "read_many",
    "read_nifti",
    "read_pdf",
    "read_series",
    "read_volume",
    "read_wsi",
    "text_tokens",
]
