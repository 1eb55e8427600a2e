"""Worklists for the batch tests: distinct small images, and the corrupt files a batch must survive."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_images(folder: Path, n: int, size: int = 64, start: int = 0) -> list[Path]:
    """``n`` PNGs with different pixels (so different content keys)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        arr = ((np.arange(size * size).reshape(size, size) + 7 * i) % 251).astype(np.uint8)
        path = folder / f"img{i:03d}.png"
        Image.fromarray(arr).save(path)
        out.append(path)
    return out


def add_corrupt_files(folder: Path, dicom: Path) -> dict[str, str]:
    """An empty file, a DICOM cut inside its pixel data, a text file named .dcm -> the expected problem."""
    (folder / "empty.dcm").write_bytes(b"")
    data = dicom.read_bytes()
    (folder / "truncated.dcm").write_bytes(data[: len(data) - 5000])
    (folder / "notes.dcm").write_text("Patient seen in clinic; see report.\n")
    return {"empty.dcm": "empty file", "truncated.dcm": "truncated", "notes.dcm": "unknown format"}


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "worklist"
    make_images(folder, 6)
    return folder


@pytest.fixture
def dx_dicom(samples, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    src = samples("dicom/cxr/highdicom_dx_image.dcm")
    dst = tmp_path / "dx.dcm"
    shutil.copy(src, dst)
    return dst
