"""PDF documents (lab reports) as page images, with the text layer kept as optional context.

MedGemma 1.5 reads lab reports as rendered page images (pypdfium2 in Google's pipeline). A page is
rendered so its long side is ``LONG_SIDE`` = 1792 px, twice SigLIP's 896: the processor's bilinear
resize to 896x896 then averages about two source pixels per output pixel, which keeps small print
legible (rendering straight at 896 gives the same size but with pdfium's hinting tuned for a screen,
and a human checking the contact sheet can read 1792 px). ``dpi`` overrides this for callers who
want a fixed resolution.

The text layer, when the PDF has one, goes into ``PreparedInput.text`` (all pages, each headed
``[page N]``) and per page into the provenance, so a task can offer it as context or check its
extraction against it. Scanned pages without a text layer simply have none.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aris.inputs.base import PreparedInput
from aris.inputs.errors import CorruptFileError, EncryptedPDFError
from aris.types import ImagePart, Provenance

logger = logging.getLogger(__name__)

LONG_SIDE = 1792  # px of a page's long side when dpi is not given
MAX_PAGES = 20
"""Pages beyond this are left out with a warning: 20 pages are 5,120 image tokens, and lab reports
that long are better split into separate requests."""
POINTS_PER_INCH = 72.0

# pdfium's FPDF_GetLastError codes, as pypdfium2 reports them in PdfiumError.err_code
_ERR_FILE, _ERR_FORMAT, _ERR_PASSWORD, _ERR_SECURITY = 2, 3, 4, 5


def read_pdf(
    path: str | Path, *, dpi: float | None = None, max_pages: int = MAX_PAGES, password: str | None = None
) -> PreparedInput:
    """Render a PDF's pages to RGB images in page order and keep its text layer.

    Parameters
    ----------
    dpi
        Render at this resolution instead of the default long side of 1792 px.
    max_pages
        Pages after this many are dropped (with a warning).
    password
        For an encrypted PDF whose password the user knows.

    Raises
    ------
    EncryptedPDFError
        Password-protected and no (or a wrong) password given.
    CorruptFileError
        Missing, empty, truncated or otherwise unreadable.
    """
    import pypdfium2 as pdfium

    path = Path(path)
    if max_pages < 1:
        raise ValueError("max_pages must be at least 1")
    try:
        if path.stat().st_size == 0:
            raise CorruptFileError(path, "empty file (0 bytes)")
    except OSError as e:
        raise CorruptFileError(path, f"cannot be read ({e.strerror or type(e).__name__})") from e
    try:
        doc = pdfium.PdfDocument(path, password=password)
    except pdfium.PdfiumError as e:
        code = getattr(e, "err_code", None)
        if code == _ERR_PASSWORD:
            raise EncryptedPDFError(
                path,
                "password-protected PDF"
                + (": wrong password" if password else "; remove the password first"),
            ) from e
        if code == _ERR_SECURITY:
            raise EncryptedPDFError(path, "PDF uses an unsupported security handler") from e
        raise CorruptFileError(path, f"not a readable PDF ({e})") from e
    try:
        n = len(doc)
        if n == 0:
            raise CorruptFileError(path, "PDF has no pages")
        keep = min(n, max_pages)
        parts: list[ImagePart] = []
        pages: list[dict[str, Any]] = []
        texts: list[str] = []
        for i in range(keep):
            page = doc[i]
            try:
                w_pt, h_pt = page.get_size()
                # pdfium rounds partial pixels up: aim a hair under so the long side is exactly LONG_SIDE
                scale = dpi / POINTS_PER_INCH if dpi else (LONG_SIDE - 1e-3) / max(w_pt, h_pt)
                image = page.render(scale=scale, draw_annots=True).to_pil().convert("RGB")
                textpage = page.get_textpage()
                text = textpage.get_text_bounded().replace("\r\n", "\n").strip()
                textpage.close()
            except pdfium.PdfiumError as e:
                raise CorruptFileError(path, f"page {i + 1} cannot be rendered ({e})") from e
            finally:
                page.close()
            parts.append(ImagePart(image, label=f"PAGE {i + 1}"))
            pages.append(
                {
                    "page": i + 1,
                    "size_pt": [round(w_pt, 1), round(h_pt, 1)],
                    "size_px": list(image.size),
                    "scale": round(scale, 4),
                    "text": text,
                }
            )
            if text:
                texts.append(f"[page {i + 1}]\n{text}")
    finally:
        doc.close()
    warnings = []
    if n > keep:
        warnings.append(f"{n} pages; only the first {keep} are used (max_pages={max_pages})")
    if not texts:
        warnings.append("no text layer (a scanned document?): the model reads the page images only")
    logger.info("pdf: %d pages -> %d images, text layer %s", n, keep, "yes" if texts else "no")
    details = {
        "pages_total": n,
        "pages_used": keep,
        "render": f"{dpi:g} dpi" if dpi else f"long side {LONG_SIDE} px",
        "text_layer": bool(texts),
        "pages": pages,
    }
    return PreparedInput(
        kind="pdf",
        parts=list(parts),
        provenance=Provenance(kind="pdf", sources=[str(path)], details=details, warnings=warnings),
        text="\n\n".join(texts) or None,
    )
