"""One error type per kind of bad input. Each message names the file and the problem."""

from __future__ import annotations

from aris.errors import InputError


class CorruptFileError(InputError):
    """Unreadable, truncated or empty file."""


class UnsupportedFormatError(InputError):
    """A file Aris does not know how to read (or the wrong kind for the request)."""


class NoPixelDataError(InputError):
    """A DICOM object with no image (SR, RT plan, KOS ...)."""


class UnsupportedTransferSyntaxError(InputError):
    """Compressed pixel data no installed decoder handles."""


class SeriesError(InputError):
    """A series that cannot become a volume: mixed, incomplete, no geometry, not found."""


class ImageTooLargeError(InputError):
    """Over the decompression-bomb limit."""


class NoTissueError(InputError):
    """A whole-slide image whose tissue mask is empty."""


class EncryptedPDFError(InputError):
    """A password-protected PDF."""


class InvalidFHIRError(InputError):
    """JSON that is not a valid FHIR R4 Bundle or NDJSON of resources."""


class UnsafeArchiveError(InputError):
    """A zip entry that would escape the extraction folder (path traversal), or a zip bomb."""
