"""PDF pages and text layer against the lab report's ground truth; encrypted and broken PDFs."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest

from aris.inputs.errors import CorruptFileError, EncryptedPDFError
from aris.inputs.pdf import read_pdf

LAB = "lab/synthetic_lab_report.pdf"


def test_lab_report_pages_size_and_text_layer(samples) -> None:  # type: ignore[no-untyped-def]
    p = read_pdf(samples(LAB))
    assert p.kind == "pdf"
    assert p.labels == ["PAGE 1", "PAGE 2"]
    # A4 (595.28 x 841.89 pt) rendered with its long side at 1792 px (2x SigLIP's 896)
    for img in p.images:
        assert img.mode == "RGB"
        assert img.size == (1268, 1792)
        arr = np.asarray(img)
        assert (arr < 100).mean() > 0.005  # printed text, not a blank render
        assert arr.mean() > 200  # on a white page
    # every analyte and result of the ground truth is in the text layer, page by page
    truth = json.loads(samples("lab/synthetic_lab_report.truth.json").read_text())
    assert len(truth) == 39
    for row in truth:
        assert row["name"] in p.text
        assert row["result"] in p.text
    pages = p.provenance.details["pages"]
    assert [pg["page"] for pg in pages] == [1, 2]
    assert "HbA1c" in pages[1]["text"]
    assert "HbA1c" not in pages[0]["text"]
    assert p.text.startswith("[page 1]\n")
    assert p.provenance.warnings == []


def test_dpi_and_page_limit(samples) -> None:  # type: ignore[no-untyped-def]
    p = read_pdf(samples(LAB), dpi=72, max_pages=1)
    assert [img.size for img in p.images] == [
        (596, 842)
    ]  # 72 dpi: a pixel a point, partial pixels rounded up
    assert p.provenance.details["pages_total"] == 2
    assert p.provenance.details["pages_used"] == 1
    assert "only the first 1" in p.provenance.warnings[0]
    assert "[page 2]" not in p.text


# --- a real encrypted PDF, written by hand ----------------------------------------------------
# No installed library writes encrypted PDFs (pdfium only reads them; pypdf/pikepdf are not
# dependencies), so this builds a minimal one with the Standard security handler, revision 2
# (40-bit RC4), exactly per ISO 32000-1 §7.6.3 algorithms 2, 3 and 4. Opening it with the right
# password below proves the file is a genuine encrypted PDF, not just a damaged one.

PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def encrypted_pdf(user: bytes, owner: bytes, text: str) -> bytes:
    padded = lambda pw: (pw + PAD)[:32]  # noqa: E731
    perms = -44
    doc_id = hashlib.md5(b"aris-test").digest()
    o = rc4(hashlib.md5(padded(owner)).digest()[:5], padded(user))  # algorithm 3
    key = hashlib.md5(padded(user) + o + struct.pack("<i", perms) + doc_id).digest()[:5]  # algorithm 2
    u = rc4(key, PAD)  # algorithm 4
    content = f"BT /F1 24 Tf 20 100 Td ({text}) Tj ET".encode()
    obj_key = hashlib.md5(key + (4).to_bytes(3, "little") + (0).to_bytes(2, "little")).digest()[:10]
    stream = rc4(obj_key, content)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P %d >>"
        % (o.hex().encode(), u.hex().encode(), perms),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Encrypt 6 0 R /ID [<%s> <%s>] >>\n" % (
        len(objects) + 1,
        doc_id.hex().encode(),
        doc_id.hex().encode(),
    )
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def test_encrypted_pdf_is_refused_and_opens_with_its_password(tmp_path: Path) -> None:
    path = tmp_path / "locked.pdf"
    path.write_bytes(encrypted_pdf(b"secret", b"owner", "Potassium 4.6"))
    with pytest.raises(EncryptedPDFError, match=r"locked\.pdf: password-protected PDF"):
        read_pdf(path)
    with pytest.raises(EncryptedPDFError, match="wrong password"):
        read_pdf(path, password="guess")
    # independent check that the file is a valid encrypted PDF: pdfium decrypts it
    doc = pdfium.PdfDocument(path, password="secret")
    assert doc[0].get_textpage().get_text_bounded().strip() == "Potassium 4.6"
    doc.close()
    p = read_pdf(path, password="secret")
    assert p.text == "[page 1]\nPotassium 4.6"
    assert p.images[0].size == (1792, 1792)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty file"),
        (b"%PDF-1.7\nnot really a pdf\n", "not a readable PDF"),
        (None, "not a readable PDF"),  # the lab report cut in half
    ],
)
def test_broken_pdfs_are_corrupt_file_errors(
    samples,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    content: bytes | None,
    problem: str,
) -> None:
    if content is None:
        whole = samples(LAB).read_bytes()
        content = whole[: len(whole) // 2]
    path = tmp_path / "broken.pdf"
    path.write_bytes(content)
    with pytest.raises(CorruptFileError, match=rf"broken\.pdf: {problem}"):
        read_pdf(path)


def test_missing_pdf_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CorruptFileError, match=r"nowhere\.pdf: cannot be read"):
        read_pdf(tmp_path / "nowhere.pdf")
